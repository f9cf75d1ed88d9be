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

/** Everything the choice of addon depends on; `currentAddonSearch()` describes this process. */
export interface AddonSearch {
  packageRoot: string;
  platform: string;
  arch: string;
  /** The C library on Linux; the prebuilt binaries link glibc. */
  libc?: 'glibc' | 'musl';
  /** Whether an NVIDIA driver looks installed, and what showed it. */
  cudaDriver: { present: boolean; evidence: string };
  /** REALTUNE_ADDON: the one build to load; nothing else is tried when it is set. */
  addon?: string;
  /** REALTUNE_PREBUILDS: the prebuilds folder to look in instead of the package's own. */
  prebuilds?: string;
  /** REALTUNE_VARIANT: which prebuilt binary to take; `auto` prefers cuda when a driver is present. */
  variant: 'auto' | 'cpu' | 'cuda';
}

export interface AddonCandidate {
  path: string;
  /** What this binary is, for messages: "prebuilt cuda addon", "node-gyp build", ... */
  label: string;
  /** Why it is not tried at all (e.g. built for another C library); absent when it is tried. */
  skip?: string;
}

/** The file name prebuilds/<platform>-<arch>/ uses; node-gyp-build's install check reads the same tags. */
export const prebuiltFileName = 'realtune.napi.glibc.node';

/** Where the cpu and cuda prebuilt binaries of a platform live (`cuda/` is a folder node-gyp-build skips). */
export function prebuiltPaths(prebuildsDir: string, platform: string, arch: string): { cpu: string; cuda: string } {
  const dir = path.join(prebuildsDir, `${platform}-${arch}`);
  return { cpu: path.join(dir, prebuiltFileName), cuda: path.join(dir, 'cuda', prebuiltFileName) };
}

function detectLibc(): 'glibc' | 'musl' | undefined {
  if (process.platform !== 'linux') return undefined;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime ? 'glibc' : 'musl';
}

// The cuda addon links the CUDA runtime statically and loads the driver (libcuda) at run time;
// these files show that a driver is installed (native Linux, then WSL).
const driverEvidence = [
  '/proc/driver/nvidia/version',
  '/usr/lib/x86_64-linux-gnu/libcuda.so.1',
  '/usr/lib/aarch64-linux-gnu/libcuda.so.1',
  '/usr/lib64/libcuda.so.1',
  '/usr/lib/wsl/lib/libcuda.so.1',
];

function detectCudaDriver(): { present: boolean; evidence: string } {
  if (process.platform !== 'linux') return { present: false, evidence: `no cuda prebuilt binary for ${process.platform}` };
  const found = driverEvidence.find((file) => existsSync(file));
  return found ? { present: true, evidence: found } : { present: false, evidence: `none of ${driverEvidence.join(', ')}` };
}

function parseVariant(value: string | undefined): AddonSearch['variant'] {
  if (value === undefined || value === '' || value === 'auto') return 'auto';
  if (value === 'cpu' || value === 'cuda') return value;
  throw new Error(`realtune: REALTUNE_VARIANT is "${value}", expected auto, cpu or cuda`);
}

export function currentAddonSearch(env: NodeJS.ProcessEnv = process.env): AddonSearch {
  return {
    packageRoot,
    platform: process.platform,
    arch: process.arch,
    libc: detectLibc(),
    cudaDriver: detectCudaDriver(),
    addon: env.REALTUNE_ADDON || undefined,
    prebuilds: env.REALTUNE_PREBUILDS || undefined,
    variant: parseVariant(env.REALTUNE_VARIANT),
  };
}

/**
 * Where the addon is looked for, in order: a checkout's `npm run build:cuda`; the node-gyp build
 * (`npm run build:native` in a checkout, `npm rebuild realtune` as a dependency); the prebuilt
 * binaries, cuda first when a driver is present. REALTUNE_ADDON replaces the whole list, so a
 * test or benchmark never runs on another build than the one it names.
 */
export function addonCandidates(search: AddonSearch = currentAddonSearch()): AddonCandidate[] {
  if (search.addon) return [{ path: path.resolve(search.addon), label: 'REALTUNE_ADDON' }];
  const candidates: AddonCandidate[] = [];
  candidates.push({ path: path.join(search.packageRoot, 'build-cuda', 'Release', 'realtune.node'), label: 'npm run build:cuda' });
  // A build from source wins over the prebuilt binaries, as in node-gyp-build: it exists only when asked for.
  candidates.push({ path: path.join(search.packageRoot, 'build', 'Release', 'realtune.node'), label: 'node-gyp build from source' });

  const prebuilt = prebuiltPaths(search.prebuilds ?? path.join(search.packageRoot, 'prebuilds'), search.platform, search.arch);
  const wrongLibc = search.libc === 'musl' ? 'built for glibc, this system uses musl' : undefined;
  const cuda: AddonCandidate = { path: prebuilt.cuda, label: 'prebuilt cuda addon', ...(wrongLibc ? { skip: wrongLibc } : {}) };
  const cpu: AddonCandidate = { path: prebuilt.cpu, label: 'prebuilt cpu addon', ...(wrongLibc ? { skip: wrongLibc } : {}) };
  if (search.variant === 'cuda') candidates.push(cuda);
  else if (search.variant === 'cpu') candidates.push(cpu);
  else if (search.cudaDriver.present) candidates.push(cuda, cpu);
  else candidates.push({ ...cuda, skip: cuda.skip ?? `no NVIDIA driver found (${search.cudaDriver.evidence})` }, cpu);
  return candidates;
}

/** The message when no candidate loaded: what was tried, and how to get a binary that fits. */
export function noAddonMessage(search: AddonSearch, tried: readonly string[]): string {
  const platform = `${search.platform}-${search.arch}${search.libc ? ` (${search.libc})` : ''}`;
  return [
    `realtune: no native addon could be loaded for ${platform}, Node ${process.versions.node}.`,
    'Tried, in order:',
    ...tried.map((t) => `  - ${t}`),
    'Prebuilt binaries ship for linux-x64 (glibc): the cpu addon, and the cuda addon taken when an NVIDIA driver is present.',
    'To build one:',
    '  - as a dependency: `npm rebuild realtune` compiles the cpu addon from source with node-gyp',
    '    (needs python3, make and a C++20 compiler) into node_modules/realtune/build/Release;',
    '  - in a checkout: `npm run build:native` (cpu), `npm run build:cuda` (cpu + cuda, needs nvcc 12 or newer),',
    '    or `npm run build:prebuilds` (the binaries `npm pack` ships, into prebuilds/);',
    '  - or set REALTUNE_ADDON=/path/to/realtune.node to load a build of your own.',
  ].join('\n');
}

/** Loads the first candidate that exists and loads; throws `noAddonMessage` when none does. */
export function loadAddon(search: AddonSearch = currentAddonSearch()): { module: NativeModule; path: string } {
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const candidate of addonCandidates(search)) {
    const where = `${candidate.path} [${candidate.label}]`;
    if (candidate.skip) {
      tried.push(`${where}: skipped, ${candidate.skip}`);
      continue;
    }
    if (!existsSync(candidate.path)) {
      tried.push(`${where}: not there`);
      continue;
    }
    try {
      const module = require(candidate.path) as NativeModule;
      const failed = tried.filter((t) => t.includes(': failed to load'));
      if (failed.length > 0) process.emitWarning(`realtune: loaded ${candidate.path} after:\n${failed.join('\n')}`);
      return { module, path: candidate.path };
    } catch (err) {
      tried.push(`${where}: failed to load (${(err as Error).message.split('\n')[0]})`);
    }
  }
  throw new Error(noAddonMessage(search, tried));
}

const loaded = loadAddon();
export const native: NativeModule = loaded.module;
export const nativePath: string = loaded.path;
