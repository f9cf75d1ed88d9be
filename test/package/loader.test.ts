// Which addon the loader takes (lib/native.ts), and what it says when none fits.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { addonCandidates, loadAddon, prebuiltPaths, type AddonSearch } from '../../lib/native.js';

const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-loader-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function search(overrides: Partial<AddonSearch> = {}): AddonSearch {
  return {
    packageRoot: path.join(scratch, 'pkg'),
    platform: 'linux',
    arch: 'x64',
    libc: 'glibc',
    cudaDriver: { present: false, evidence: 'none of /proc/driver/nvidia/version' },
    variant: 'auto',
    ...overrides,
  };
}

const tried = (s: AddonSearch) => addonCandidates(s).filter((c) => !c.skip).map((c) => c.label);

describe('addon resolution', () => {
  it('prefers the prebuilt cuda addon when a driver is present, and skips it (saying why) when not', () => {
    expect(tried(search({ cudaDriver: { present: true, evidence: '/proc/driver/nvidia/version' } }))).toEqual([
      'npm run build:cuda',
      'node-gyp build from source',
      'prebuilt cuda addon',
      'prebuilt cpu addon',
    ]);
    const noDriver = addonCandidates(search());
    expect(noDriver.filter((c) => !c.skip).map((c) => c.label)).toEqual(['npm run build:cuda', 'node-gyp build from source', 'prebuilt cpu addon']);
    expect(noDriver.find((c) => c.label === 'prebuilt cuda addon')?.skip).toMatch(/no NVIDIA driver found \(none of \/proc/);
  });

  it('REALTUNE_ADDON is the only candidate; REALTUNE_VARIANT picks one prebuilt binary; REALTUNE_PREBUILDS moves the folder', () => {
    expect(addonCandidates(search({ addon: 'own/realtune.node' }))).toEqual([{ path: path.resolve('own/realtune.node'), label: 'REALTUNE_ADDON' }]);
    expect(tried(search({ variant: 'cuda' }))).toEqual(['npm run build:cuda', 'node-gyp build from source', 'prebuilt cuda addon']);
    expect(tried(search({ variant: 'cpu', cudaDriver: { present: true, evidence: 'x' } }))).toEqual(['npm run build:cuda', 'node-gyp build from source', 'prebuilt cpu addon']);
    const elsewhere = path.join(scratch, 'elsewhere');
    expect(addonCandidates(search({ prebuilds: elsewhere })).map((c) => c.path)).toContain(prebuiltPaths(elsewhere, 'linux', 'x64').cpu);
  });

  it('skips the glibc binaries on musl', () => {
    const musl = addonCandidates(search({ libc: 'musl' }));
    expect(musl.filter((c) => c.label.startsWith('prebuilt')).map((c) => c.skip)).toEqual([
      'built for glibc, this system uses musl',
      'built for glibc, this system uses musl',
    ]);
  });

  it('with no binary that fits, the error lists every path tried and how to build one', () => {
    const s = search({ platform: 'linux', arch: 'arm64' });
    let message = '';
    try {
      loadAddon(s);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('realtune: no native addon could be loaded for linux-arm64 (glibc)');
    for (const candidate of addonCandidates(s)) expect(message).toContain(candidate.path);
    expect(message).toContain(`${prebuiltPaths(path.join(s.packageRoot, 'prebuilds'), 'linux', 'arm64').cpu} [prebuilt cpu addon]: not there`);
    expect(message).toContain('npm rebuild realtune');
    expect(message).toContain('npm run build:cuda');
    expect(message).toContain('REALTUNE_ADDON=');
  });

  it('REALTUNE_ADDON naming a missing build is an error, not a fall back to another build', () => {
    const missing = path.join(scratch, 'no-such-build', 'realtune.node');
    expect(() => loadAddon(search({ addon: missing }))).toThrow(`${missing} [REALTUNE_ADDON]: not there`);
  });

  it('a binary that is there but does not load is reported with its error, and the next one is tried', () => {
    const s = search({ platform: 'linux', arch: 'riscv64' });
    const broken = prebuiltPaths(path.join(s.packageRoot, 'prebuilds'), 'linux', 'riscv64').cpu;
    mkdirSync(path.dirname(broken), { recursive: true });
    writeFileSync(broken, 'not an ELF file');
    expect(() => loadAddon(s)).toThrow(/realtune\.napi\.glibc\.node \[prebuilt cpu addon\]: failed to load \(.+\)/);
  });
});
