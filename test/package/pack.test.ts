// realtune as a dependency: `npm pack`, then the tarball installed into a fresh consumer project
// with install scripts disabled and no compiler on the PATH, used through `import`, `require` and
// its bin. The binaries packed are the ones `npm test`'s build linked (scripts/build-native.mjs
// --test: <build>/package/{cpu,cuda}), laid out in prebuilds/ by scripts/prebuilds.mjs.
// The consumer's dependencies (sharp, ...) come from the npm registry or npm's cache.
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.join(__dirname, '..', '..');
const buildDir = path.resolve(root, process.env.REALTUNE_BUILD_DIR ?? 'build-test');
const platformDir = `${process.platform}-${process.arch}`;
const cpuPrebuilt = `prebuilds/${platformDir}/realtune.napi.glibc.node`;
const cudaPrebuilt = `prebuilds/${platformDir}/cuda/realtune.napi.glibc.node`;
const withCuda = existsSync(path.join(buildDir, 'package', 'cuda', 'realtune.node'));

const work = mkdtempSync(path.join(os.tmpdir(), 'realtune-pack-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const consumer = path.join(work, 'consumer');
const binDir = path.join(work, 'bin');

// What would let a package compile on install; none of it may be reachable from the consumer's PATH.
const buildTools = ['cc', 'gcc', 'g++', 'c++', 'clang', 'clang++', 'nvcc', 'make', 'cmake', 'python3', 'python'];

function onPath(name: string, searchPath: string): string | undefined {
  return searchPath
    .split(path.delimiter)
    .filter(Boolean)
    .map((dir) => path.join(dir, name))
    .find((file) => existsSync(file));
}

function npmCli(): string {
  const fromNpm = process.env.npm_execpath;
  if (fromNpm && /npm-cli\.js$/.test(fromNpm)) return fromNpm;
  const npm = onPath('npm', process.env.PATH ?? '');
  if (!npm) throw new Error('npm is not on PATH');
  return realpathSync(npm);
}

// Only node and npm on PATH; npm's registry and cache settings pass through, the checkout's
// REALTUNE_* (which point at its own build) and npm's lifecycle variables do not.
const consumerEnv: NodeJS.ProcessEnv = {
  PATH: binDir,
  HOME: os.homedir(),
  TMPDIR: os.tmpdir(),
  REALTUNE_NUM_THREADS: process.env.REALTUNE_NUM_THREADS ?? '1',
  ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip',
  ...Object.fromEntries(
    Object.entries(process.env).filter(([key]) =>
      /^(npm_config_(cache|registry|userconfig|globalconfig|strict_ssl|cafile|proxy|https_proxy|noproxy)|https?_proxy|no_proxy)$/i.test(key),
    ),
  ),
};

function inConsumer(command: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return spawnSync(command, args, { cwd: consumer, encoding: 'utf8', env: { ...consumerEnv, ...env }, maxBuffer: 1 << 26 });
}

function ok(result: SpawnSyncReturns<string>, what: string): string {
  if (result.error) throw result.error;
  expect(result.status, `${what}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`).toBe(0);
  return result.stdout;
}

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

let packed: PackResult;
let tarball: string;

describe('npm pack, installed into a project with no compiler', () => {
  beforeAll(() => {
    const started = Date.now();
    execFileSync(process.execPath, [path.join(root, 'scripts', 'prebuilds.mjs'), buildDir], { cwd: root, encoding: 'utf8' });
    // dist/ is built here (what `prepare` runs), and `npm pack` runs no scripts, so its stdout is
    // only the JSON: a script's output (tsup's, coloured under FORCE_COLOR) would precede it.
    execFileSync(process.execPath, [path.join(root, 'node_modules', 'tsup', 'dist', 'cli-default.js')], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const out = execFileSync(process.execPath, [npmCli(), 'pack', '--json', '--ignore-scripts', '--pack-destination', work], {
      cwd: root,
      encoding: 'utf8',
      maxBuffer: 1 << 26,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    packed = (JSON.parse(out) as PackResult[])[0]!;
    tarball = path.join(work, packed.filename);
    console.log(
      `realtune pack: ${packed.filename} ${(packed.size / 2 ** 20).toFixed(1)} MiB packed, ` +
        `${(packed.unpackedSize / 2 ** 20).toFixed(1)} MiB unpacked, ${packed.files.length} files`,
    );

    mkdirSync(binDir, { recursive: true });
    symlinkSync(process.execPath, path.join(binDir, 'node'));
    symlinkSync(npmCli(), path.join(binDir, 'npm'));
    mkdirSync(consumer, { recursive: true });
    writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'realtune-consumer', version: '1.0.0', private: true }, null, 2));
    ok(
      inConsumer(path.join(binDir, 'npm'), ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', tarball]),
      'npm install of the tarball',
    );
    console.log(`realtune pack: packed and installed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  it('holds the TypeScript build, the models and the prebuilt binaries, and nothing else', () => {
    const files = packed.files.map((f) => f.path);
    const allowed = [/^package\.json$/, /^README\.md$/, /^LICENSE/, /^dist\/[^/]+\.(js|cjs|d\.ts|d\.cts)$/, /^bin\/realtune\.js$/, /^models\//, /^prebuilds\//, /^binding\.gyp$/, /^scripts\/sources\.cjs$/, /^csrc\/(cpu\/|napi\/)?[^/]+\.(cc|h)$/];
    expect(files.filter((f) => !allowed.some((pattern) => pattern.test(f)))).toEqual([]);
    const required = ['dist/index.js', 'dist/index.cjs', 'dist/index.d.ts', 'dist/index.d.cts', 'dist/cli.js', 'bin/realtune.js', cpuPrebuilt, 'models/base-tiny/model.safetensors', 'models/eval/scorer.safetensors', 'models/hypernet-tiny/hypernet.safetensors'];
    if (withCuda) required.push(cudaPrebuilt);
    for (const file of required) expect(files, file).toContain(file);
    // The cpu sources binding.gyp builds from when no prebuilt binary fits (`npm rebuild realtune`).
    const sources = execFileSync(process.execPath, [path.join(root, 'scripts', 'sources.cjs')], { cwd: root, encoding: 'utf8' }).split(' ');
    for (const source of sources) expect(files, source).toContain(source);
  });

  it('installed without compiling: no build tool on the PATH, no build/ folder, and the optional onnxruntime-node peer left out', () => {
    for (const tool of buildTools) expect(onPath(tool, consumerEnv.PATH!), tool).toBeUndefined();
    const installed = path.join(consumer, 'node_modules', 'realtune');
    expect(existsSync(path.join(installed, cpuPrebuilt))).toBe(true);
    expect(existsSync(path.join(installed, 'build'))).toBe(false);
    expect(existsSync(path.join(consumer, 'node_modules', 'onnxruntime-node'))).toBe(false);
    expect(existsSync(path.join(consumer, 'node_modules', 'sharp'))).toBe(true);
  });

  it('its install script (node-gyp-build, as npm runs it when scripts are allowed) takes the prebuilt cpu addon and compiles nothing', () => {
    // npm runs install scripts in the package folder with node_modules/.bin on the PATH.
    const runInstallScript = (packageDir: string) =>
      spawnSync(path.join(binDir, 'node'), [path.join(consumer, 'node_modules', 'node-gyp-build', 'bin.js')], {
        cwd: packageDir,
        encoding: 'utf8',
        env: { ...consumerEnv, PATH: `${path.join(consumer, 'node_modules', '.bin')}${path.delimiter}${binDir}` },
      });
    const installed = path.join(consumer, 'node_modules', 'realtune');
    ok(runInstallScript(installed), 'the install script');
    expect(existsSync(path.join(installed, 'build'))).toBe(false);
    // The same package without its prebuilds/ needs a compiler, which is not there: the script fails.
    const withoutPrebuilds = path.join(work, 'realtune-without-prebuilds');
    cpSync(installed, withoutPrebuilds, { recursive: true, filter: (source) => !source.startsWith(path.join(installed, 'prebuilds')) });
    const failed = runInstallScript(withoutPrebuilds);
    expect(failed.status).not.toBe(0);
    expect(failed.stderr).toMatch(/node-gyp/);
  });

  const useIt = (load: string) => `
const { info, fromArray, add } = ${load};
const sum = add(fromArray([1, 2, 3], [3]), fromArray([10, 20, 30], [3]));
const found = info();
console.log(JSON.stringify({ sum: Array.from(sum.toArray()), addon: found.addon, devices: found.devices.map((d) => d.type), version: found.version }));
`;

  interface UseResult {
    sum: number[];
    addon: string;
    devices: string[];
    version: string;
  }

  it('loads with import (ESM) and with require (CJS), runs an op and info() on the prebuilt cpu addon', () => {
    writeFileSync(path.join(consumer, 'use.mjs'), useIt("await import('realtune')"));
    writeFileSync(path.join(consumer, 'use.cjs'), useIt("require('realtune')"));
    const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
    for (const file of ['use.mjs', 'use.cjs']) {
      const out = JSON.parse(ok(inConsumer(path.join(binDir, 'node'), [file]), file)) as UseResult;
      expect(out.sum, file).toEqual([11, 22, 33]);
      expect(out.version, file).toBe(version);
      // No NVIDIA driver on the machines this runs on: the cpu prebuilt binary, from the consumer's node_modules.
      expect(out.addon, file).toBe(realpathSync(path.join(consumer, 'node_modules', 'realtune', cpuPrebuilt)));
      expect(out.devices, file).toContain('cpu');
    }
  });

  it.runIf(withCuda)('REALTUNE_VARIANT=cuda loads the prebuilt cuda addon, which reports cuda (unavailable without a driver)', () => {
    const out = JSON.parse(ok(inConsumer(path.join(binDir, 'node'), ['use.mjs'], { REALTUNE_VARIANT: 'cuda' }), 'use.mjs with the cuda variant')) as UseResult;
    expect(out.sum).toEqual([11, 22, 33]);
    expect(out.addon).toBe(realpathSync(path.join(consumer, 'node_modules', 'realtune', cudaPrebuilt)));
    expect(out.devices).toContain('cuda');
  });

  it('runs `realtune info` and `realtune sample` through its bin', () => {
    const bin = path.join(consumer, 'node_modules', '.bin', 'realtune');
    const found = JSON.parse(ok(inConsumer(bin, ['info', '--json']), 'realtune info')) as { addon: string; devices: { type: string }[] };
    expect(found.addon).toContain(path.join('node_modules', 'realtune', 'prebuilds'));
    const out = path.join(consumer, 'sample.png');
    ok(
      inConsumer(bin, ['sample', '--ckpt', 'node_modules/realtune/models/base-tiny', '--prompt', 'a portrait of a woman', '--steps', '2', '--n', '1', '--out', out, '--quiet']),
      'realtune sample',
    );
    expect(readFileSync(out).subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    // personalize with the shipped hypernetwork, found from the installed package (the sample as the reference).
    const id = path.join(consumer, 'id.safetensors');
    const log = ok(inConsumer(bin, ['personalize', '--ref', out, '--steps', '1', '--out', id, '--quiet']), 'realtune personalize');
    expect(log).toMatch(/personalize: .*id\.safetensors in [0-9.]+ s \(identity 8400, relax \d+ numbers/);
  });

  it('with no binary for the platform, the error says what was tried and how to build one', () => {
    const empty = path.join(work, 'empty-prebuilds');
    mkdirSync(empty, { recursive: true });
    const result = inConsumer(path.join(binDir, 'node'), ['use.mjs'], { REALTUNE_PREBUILDS: empty });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('realtune: no native addon could be loaded');
    expect(result.stderr).toContain(path.join(empty, platformDir, 'realtune.napi.glibc.node'));
    expect(result.stderr).toContain('not there');
    expect(result.stderr).toContain('npm rebuild realtune');
  });
});
