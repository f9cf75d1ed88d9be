// Loads realtune_dev.node, the addon of native functions only test/ and bench/ use (csrc/dev/):
// the machine's peaks and OpenBLAS for the benchmarks, the cuda-emu self-test scenarios and
// launch counter for the tests. The production addon carries none of them, and the SDK does not
// export this module. Its users type the functions they call by merging into `DevModule`, as
// op families do with `NativeModule`.
//
// scripts/build-native.mjs builds it beside realtune.node, and it links against that addon (it
// shares its tensors, thread pool and emulator), so it is loaded from the folder the main addon
// came from, after it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { nativePath } from './native.js';

export interface DevModule {}

let loaded: DevModule | undefined;

/** realtune_dev.node from the main addon's folder; throws saying how to build it when missing. */
export function devNative(): DevModule {
  if (loaded) return loaded;
  const file = path.join(path.dirname(nativePath), 'realtune_dev.node');
  if (!existsSync(file)) {
    throw new Error(
      [
        `realtune: ${file} is not built; test/ and bench/ need it beside the addon they load (${nativePath}).`,
        '`node scripts/build-native.mjs --test` (or --emu, --cpu, --cuda) builds both into build-<mode>/Release/;',
        'point REALTUNE_ADDON at that realtune.node. The node-gyp build (build/Release) has no dev addon.',
      ].join('\n'),
    );
  }
  loaded = createRequire(import.meta.url)(file) as DevModule;
  return loaded;
}
