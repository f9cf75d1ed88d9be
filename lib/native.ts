// Loads the native addon and types what it exports. Op families add their functions to
// `NativeModule` by interface merging (see lib/ops/*.ts), so each binding is typed beside the
// TS code that calls it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** An opaque native tensor handle; only lib/ code touches it. */
export interface NativeHandle {
  readonly __nativeTensor: unique symbol;
}

export interface NativeDevice {
  type: 'cpu' | 'cuda' | 'cuda-emu';
  code: number;
  available: boolean;
  name?: string;
  reason?: string;
}

export interface NativeModule {
  devices(): NativeDevice[];
  info(): {
    threads: number;
    isa: string;
    memoryChecking: boolean;
    memoryCheckFailures: number;
    /** Tensor memory blocks alive now (views share one) and their bytes, on every device. */
    liveStorages: number;
    liveBytes: number;
  };
  setNumThreads(threads: number): void;
  opTable(): Record<string, string[]>;
  /** Calls dispatched in this process per op and compiled backend: { opName: { backendType: calls } }. */
  opCalls(): Record<string, Record<string, number>>;
  empty(shape: readonly number[], dtype: number, device: number): NativeHandle;
  fromArray(data: Float32Array | Int32Array, shape: readonly number[], dtype: number, device: number): NativeHandle;
  toArray(t: NativeHandle): Float32Array | Int32Array;
  view(t: NativeHandle, shape: readonly number[]): NativeHandle;
  viewRange(t: NativeHandle, start: number, shape: readonly number[]): NativeHandle;
  copyTo(t: NativeHandle, device: number): NativeHandle;
  copyInto(dst: NativeHandle, src: NativeHandle): void;
  dispose(t: NativeHandle): void;
  isDisposed(t: NativeHandle): boolean;
  fill(out: NativeHandle, value: number): void;
}

export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Where the addon is looked for, in order. */
export function addonCandidates(): string[] {
  const fromEnv = process.env.REALTUNE_ADDON;
  return [
    ...(fromEnv ? [path.resolve(fromEnv)] : []),
    path.join(packageRoot, 'build-cuda', 'Release', 'realtune.node'),
  ];
}

function load(): { module: NativeModule; path: string } {
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const candidate of addonCandidates()) {
    if (!existsSync(candidate)) {
      tried.push(`${candidate} (not built)`);
      continue;
    }
    return { module: require(candidate) as NativeModule, path: candidate };
  }
  try {
    const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
    const found = nodeGypBuild.path(packageRoot);
    return { module: require(found) as NativeModule, path: found };
  } catch (err) {
    tried.push(`prebuilds/ and build/Release under ${packageRoot} (${(err as Error).message.split('\n')[0]})`);
  }
  throw new Error(
    [
      'realtune: the native addon could not be loaded.',
      'Tried:',
      ...tried.map((t) => `  - ${t}`),
      'The cpu addon is built by `npm install` (node-gyp, needs python3, make and a C++20 compiler).',
      'To build it again: `npm rebuild realtune` (as a dependency) or `npm run build:native` (in a checkout).',
      'Set REALTUNE_ADDON=/path/to/realtune.node to load a specific build.',
    ].join('\n'),
  );
}

const loaded = load();
export const native: NativeModule = loaded.module;
export const nativePath: string = loaded.path;
