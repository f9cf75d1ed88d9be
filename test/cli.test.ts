import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.join(__dirname, '..');
const cli = (args: string[]) => execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli/run.ts'), ...args], { cwd: root, encoding: 'utf8', env: process.env });

describe('cli', () => {
  it('info --json prints version, devices, threads and isa', () => {
    const out = JSON.parse(cli(['info', '--json'])) as { version: string; devices: { type: string }[]; threads: number; isa: string };
    expect(out.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(out.devices.map((d) => d.type)).toContain('cpu');
    expect(out.threads).toBeGreaterThanOrEqual(1);
    expect(['avx512', 'avx2', 'scalar']).toContain(out.isa);
  });

  it('REALTUNE_NUM_THREADS sets the cpu thread count', () => {
    const out = JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli/run.ts'), 'info', '--json'], { cwd: root, encoding: 'utf8', env: { ...process.env, REALTUNE_NUM_THREADS: '1' } })) as { threads: number };
    expect(out.threads).toBe(1);
  });

  it('REALTUNE_ISA caps the cpu kernels dispatch', () => {
    const run = (isa: string) => JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli/run.ts'), 'info', '--json'], { cwd: root, encoding: 'utf8', env: { ...process.env, REALTUNE_ISA: isa } })) as { isa: string };
    expect(run('scalar').isa).toBe('scalar');
    expect(['avx2', 'scalar']).toContain(run('avx2').isa);
  });

  it('an unknown command exits 2 with usage on stderr; --help prints the same usage on stdout and exits 0', () => {
    const run = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli/run.ts'), ...args], { cwd: root, encoding: 'utf8', env: process.env });
    const help = run(['--help']);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^usage: realtune <command> \[options\]\n\ncommands:\n/);
    for (const command of ['info', 'train-base', 'train-dpo', 'sample', 'demo']) expect(help.stdout).toMatch(new RegExp(`^  ${command} +\\S`, 'm'));
    const unknown = run(['frobnicate', '--steps', '2']);
    expect(unknown.status, unknown.stderr).toBe(2);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr).toBe(`realtune: unknown command "frobnicate"\n\n${help.stdout}`);
  });
});
