// Data-parallel training under `mpirun -np 2` (lib/train/loop/dist.ts): the commands from source
// (`node --import tsx lib/cli/run.ts ...`) as 2 ranks against the same command as one process
// with the same global batch: the same loss curve to float tolerance (base training with dropout,
// augmentation, condition dropout, accumulation and EMA; a DPO stage), resume at 2 ranks and at 1,
// a killed and a stuck rank, and the bad input each rank must refuse at start. Needs Open MPI:
// without mpirun every test here fails saying how to install it (.ci/run installs it).
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Generator, randn } from '../../lib/ops/random.js';
import { readTrainerState } from '../../lib/train/loop/state.js';
import { collectiveTimeout, launcherEvidence, rankLabel, ShardedGenerator, shardedGenerator, shardOf, worldCommunicator } from '../../lib/train/loop/dist.js';
import { checkMemoryGuards, expectClose } from '../helpers.js';

checkMemoryGuards();

const root = path.join(__dirname, '..', '..');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-dist-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const mpirunPath = spawnSync('sh', ['-c', 'command -v mpirun'], { encoding: 'utf8' }).stdout.trim();
const installHint = 'mpirun was not found: these tests run training as 2 MPI ranks; install Open MPI (Debian/Ubuntu, as root: apt-get install -y --no-install-recommends openmpi-bin; .ci/run does this)';

// Every rank single-threaded: 2 ranks x 1 thread on this 2-core machine, and the 1-process runs alike.
const env = { ...process.env, REALTUNE_NUM_THREADS: '1' };
const cliArgs = ['--import', 'tsx', path.join(root, 'lib/cli/run.ts')];
// As root (CI containers) Open MPI wants both confirmations; --oversubscribe: more ranks than cores is fine here.
const mpirunFlags = ['--allow-run-as-root', '--oversubscribe', '--bind-to', 'none'];

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function oneProcess(args: string[], extraEnv: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, [...cliArgs, ...args], { cwd: root, encoding: 'utf8', env: { ...env, ...extraEnv }, timeout: 120_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** `mpirun` with the given app contexts (each: ranks and the CLI arguments, optionally a command in front of node). */
function mpirunArgs(contexts: { np: number; args: string[]; prefix?: string[] }[]): string[] {
  if (mpirunPath === '') throw new Error(installHint);
  return [...mpirunFlags, ...contexts.flatMap((c, i) => [...(i > 0 ? [':'] : []), '-np', String(c.np), ...(c.prefix ?? []), process.execPath, ...cliArgs, ...c.args])];
}

function ranks(np: number, args: string[], extraEnv: Record<string, string> = {}): Run {
  const r = spawnSync(mpirunPath || 'mpirun', mpirunArgs([{ np, args }]), { cwd: root, encoding: 'utf8', env: { ...env, ...extraEnv }, timeout: 120_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function succeeds(run: Run, what: string): Run {
  expect(run.status, `${what} failed:\n${run.stderr}`).toBe(0);
  return run;
}

interface Trainer {
  step: number;
  losses: number[];
  metrics?: Record<string, number[]>;
  run: Record<string, unknown>;
}

function trainer(out: string): Trainer {
  return (JSON.parse(readFileSync(path.join(out, 'checkpoint', 'state.json'), 'utf8')) as { trainer: Trainer }).trainer;
}

const baseArgs = ['--figures', '8', '--preset', 'tiny', '--batch', '4', '--accumulate', '2', '--lr', '1e-3', '--dropout', '0.1', '--cond-dropout', '0.3', '--flip', '0.5', '--crop', '0.9', '--rotate', '5', '--ema', '0.9', '--clip-norm', '1', '--seed', '3', '--quiet'];

describe('shards of a global batch (one process)', () => {
  it("a ShardedGenerator hands each rank its rows of the one-process draw and moves the stream past the whole batch's", () => {
    const whole = new Generator(11, 5);
    const full = randn([4, 3, 5], { generator: whole });
    const expected = full.toArray();
    full.dispose();
    for (const rank of [0, 1]) {
      const base = new Generator(11, 5);
      const shard = shardOf('test', 'batch', 4, { rank, size: 2 });
      expect(shard).toEqual({ rank, size: 2, start: 2 * rank, count: 2 });
      const part = randn([2, 3, 5], { generator: shardedGenerator(base, shard) });
      expect(Array.from(part.toArray()), `rank ${rank}'s rows`).toEqual(Array.from(expected.subarray(rank * 30, rank * 30 + 30)));
      part.dispose();
      expect(base.state(), 'the stream after the draw').toEqual(whole.state());
    }
    expect(shardedGenerator(whole, shardOf('test', 'batch', 4, { rank: 0, size: 1 })), 'one process draws from the stream itself').toBe(whole);
  });

  it('a world size that does not divide the batch, and a draw that is not batch-major, are refused', () => {
    expect(() => shardOf('train', 'batch', 6, { rank: 0, size: 4 })).toThrow('train: batch 6 cannot be split over 4 ranks (mpirun -np 4); give a batch that is a multiple of 4, or a number of ranks that divides 6');
    expect(() => randn([3], { generator: new ShardedGenerator(new Generator(1), { rank: 0, size: 2, start: 0, count: 2 }) })).toThrow(/a draw of 3 values is not 2 rows of equal size/);
  });

  it('reads the launcher from the environment: a plain run is a world of one', () => {
    expect(launcherEvidence({})).toBe('');
    expect(launcherEvidence({ OMPI_COMM_WORLD_SIZE: '1' })).toBe('');
    expect(launcherEvidence({ OMPI_COMM_WORLD_SIZE: '4' })).toBe('OMPI_COMM_WORLD_SIZE=4');
    expect(launcherEvidence({ PMI_SIZE: '2', PMI_RANK: '1' })).toBe('PMI_SIZE=2');
    expect(launcherEvidence({ PMIX_RANK: '0' }), 'a PMIx launcher that sets no size').toBe('PMIX_RANK=0');
    expect(rankLabel({ OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_RANK: '3' })).toBe('rank 3 of 4');
    expect(worldCommunicator()).toMatchObject({ rank: 0, size: 1 });
    expect(() => collectiveTimeout({ REALTUNE_DIST_TIMEOUT: 'soon' })).toThrow('data-parallel: REALTUNE_DIST_TIMEOUT must be a number of seconds > 0, got "soon"');
  });
});

describe('mpirun', () => {
  it('is installed (Open MPI)', () => {
    expect(mpirunPath, installHint).not.toBe('');
    const version = spawnSync(mpirunPath, ['--version'], { encoding: 'utf8' });
    expect(version.stdout, 'mpirun --version').toMatch(/Open MPI/);
  });
});

describe('the collectives on 2 ranks', () => {
  it('allreduce (sum, mean, max), broadcast, allgather of JSON and of bytes, the flat tensor allreduce and the barrier give every rank the same results', () => {
    if (mpirunPath === '') throw new Error(installHint);
    const script = path.join(root, 'test/train/scripts/dist_collectives.ts');
    const r = spawnSync(mpirunPath, [...mpirunFlags, '-np', '2', process.execPath, '--import', 'tsx', script], { cwd: root, encoding: 'utf8', env, timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const results = r.stdout.split('\n').filter((l) => l.startsWith('COLLECTIVES ')).map((l) => JSON.parse(l.slice('COLLECTIVES '.length)) as Record<string, unknown>);
    expect(results.map((x) => x.rank).sort()).toEqual([0, 1]);
    for (const x of results) {
      expect(x).toMatchObject({
        size: 2,
        sum: [3, 30],
        mean: [1.5],
        max: [5, 1],
        broadcast: [1, 1, 1],
        gathered: [{ rank: 0, text: '' }, { rank: 1, text: 'xxx' }],
        bytes: [[7], [8, 8]],
        tensorsSum: [1, 2, 3, 3],
        tensorsMean: [0.5, 2],
      });
    }
  });
});

describe('train-base on 2 ranks', () => {
  const one = path.join(scratch, 'base-1');
  const two = path.join(scratch, 'base-2');
  beforeAll(() => {
    succeeds(oneProcess(['train-base', ...baseArgs, '--steps', '4', '--out', one]), 'train-base, one process');
    succeeds(ranks(2, ['train-base', ...baseArgs, '--steps', '4', '--out', two]), 'train-base, 2 ranks');
  });

  it('gives the loss curve of one process with the same global batch, and a checkpoint that does not depend on the world size', () => {
    const a = trainer(one);
    const b = trainer(two);
    expect(b.step).toBe(4);
    expectClose(b.losses, a.losses, { rtol: 1e-5, atol: 1e-6 }, 'losses, 2 ranks vs 1 process');
    // Steps that differ in their data would differ by far more than float rounding.
    expect(new Set(a.losses.map((l) => l.toFixed(3))).size, `losses ${a.losses}`).toBeGreaterThan(1);
    expect(b.run, 'the settings saved with the run').toEqual(a.run);
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    // Rank 0 alone wrote: one checkpoint, one model, no temporary leftovers.
    expect(readdirSync(two).sort()).toEqual(readdirSync(one).sort());
  });

  it('resumes at 2 ranks exactly like the uninterrupted 2-rank run, and at 1 process within float tolerance', () => {
    const interrupted = path.join(scratch, 'base-2-interrupted');
    succeeds(ranks(2, ['train-base', ...baseArgs, '--steps', '2', '--out', interrupted]), 'train-base, 2 ranks, 2 steps');
    const atOne = path.join(scratch, 'base-2-resumed-at-1');
    cpSync(interrupted, atOne, { recursive: true });
    succeeds(ranks(2, ['train-base', ...baseArgs, '--steps', '4', '--out', interrupted, '--resume']), 'train-base, 2 ranks, resumed');
    expect(trainer(interrupted).losses, 'resumed at 2 ranks vs uninterrupted at 2 ranks').toEqual(trainer(two).losses);
    expect(readFileSync(path.join(interrupted, 'checkpoint', 'model.safetensors')).equals(readFileSync(path.join(two, 'checkpoint', 'model.safetensors'))), 'weights').toBe(true);
    succeeds(oneProcess(['train-base', ...baseArgs, '--steps', '4', '--out', atOne, '--resume']), 'train-base, one process, resumed from the 2-rank checkpoint');
    expectClose(trainer(atOne).losses, trainer(two).losses, { rtol: 1e-5, atol: 1e-6 }, 'resumed at 1 process vs 2 ranks');
  });
});

describe('a DPO stage on 2 ranks', () => {
  it('gives the loss and accuracy curve of one process with the same global batch', () => {
    // A base without dropout: the policy's dropout masks are per rank (lib/train/dpo.ts).
    const base = path.join(scratch, 'dpo-base');
    succeeds(oneProcess(['train-base', '--figures', '8', '--preset', 'tiny', '--steps', '1', '--batch', '2', '--out', base, '--quiet']), 'base for DPO');
    const dpoArgs = ['train-dpo', '--from', path.join(base, 'model'), '--figures', '6', '--steps', '3', '--batch', '4', '--lr', '1e-2', '--rank', '2', '--text-rank', '1', '--stat-weight', '10', '--sample-steps', '0', '--ckpt-every', '1', '--quiet'];
    const one = path.join(scratch, 'dpo-1');
    const two = path.join(scratch, 'dpo-2');
    succeeds(oneProcess([...dpoArgs, '--out', one]), 'train-dpo, one process');
    succeeds(ranks(2, [...dpoArgs, '--out', two]), 'train-dpo, 2 ranks');
    const a = trainer(one);
    const b = trainer(two);
    expectClose(b.losses, a.losses, { rtol: 1e-5, atol: 1e-6 }, 'DPO losses, 2 ranks vs 1 process');
    expect(b.losses.some((l) => Math.abs(l - Math.log(2)) > 1e-4), `the adapters moved the loss off log 2: ${b.losses}`).toBe(true);
    expect(b.metrics!.accuracy, 'implicit accuracy per step').toEqual(a.metrics!.accuracy);
    expect(existsSync(path.join(two, 'lora.safetensors'))).toBe(true);
  });
});

describe("personalisation's hypernetwork training on 2 ranks", () => {
  it('gives the loss curve of one process with the same batch of views', () => {
    const preopt = path.join(scratch, 'preopt');
    succeeds(oneProcess(['personalize', 'preopt', '--identities', '2', '--views', '2', '--steps', '2', '--batch', '2', '--out', preopt, '--quiet']), 'preopt');
    const args = ['personalize', 'train-hypernet', '--preopt', preopt, '--steps', '3', '--identities-per-step', '2', '--batch', '2', '--quiet'];
    const one = path.join(scratch, 'hypernet-1');
    const two = path.join(scratch, 'hypernet-2');
    succeeds(oneProcess([...args, '--out', one]), 'train-hypernet, one process');
    succeeds(ranks(2, [...args, '--out', two]), 'train-hypernet, 2 ranks');
    expectClose(trainer(two).losses, trainer(one).losses, { rtol: 1e-5, atol: 1e-6 }, 'hypernetwork losses, 2 ranks vs 1 process');
    expectClose(trainer(two).metrics!.diffusion!, trainer(one).metrics!.diffusion!, { rtol: 1e-5, atol: 1e-6 }, 'diffusion term');
    expect(existsSync(path.join(two, 'hypernet.safetensors'))).toBe(true);
    // Step 3 drew only fresh identities, which have no weight term: the checkpoint still has the
    // metric for every step, so it can be resumed.
    expect(trainer(two).metrics!.weights, 'the weight term of every step').toHaveLength(3);
    expect(readTrainerState('train-hypernet', path.join(two, 'checkpoint')).state.step).toBe(3);
  });
});

describe("the curriculum's data and the evaluation's images on 2 ranks", () => {
  it('pools, reconstructions and evaluation images are byte for byte those of one process', () => {
    const script = path.join(root, 'test/train/scripts/dist_data.ts');
    const one = path.join(scratch, 'data-1');
    const two = path.join(scratch, 'data-2');
    const r1 = spawnSync(process.execPath, ['--import', 'tsx', script, one], { cwd: root, encoding: 'utf8', env, timeout: 120_000 });
    expect(r1.status, r1.stderr).toBe(0);
    if (mpirunPath === '') throw new Error(installHint);
    const r2 = spawnSync(mpirunPath, [...mpirunFlags, '-np', '2', process.execPath, '--import', 'tsx', script, two], { cwd: root, encoding: 'utf8', env, timeout: 120_000 });
    expect(r2.status, r2.stderr).toBe(0);
    const files = (dir: string): string[] => (readdirSync(dir, { recursive: true }) as string[]).filter((f) => !f.endsWith('images') && !['pools', 'recon'].includes(f)).sort();
    expect(files(two)).toEqual(files(one));
    // 3 prompts x 2 samples and 3 images x 7 levels, one unit each, split over the ranks.
    expect(readFileSync(path.join(one, 'pools', 'index.jsonl'), 'utf8').trim().split('\n')).toHaveLength(6);
    expect(readFileSync(path.join(one, 'recon', 'index.jsonl'), 'utf8').trim().split('\n')).toHaveLength(21);
    for (const f of files(one)) expect(readFileSync(path.join(two, f)).equals(readFileSync(path.join(one, f))), f).toBe(true);
  });
});

/** Starts a long 2-rank training run in the background; resolves its result when it ends. */
function longRun(out: string, extraEnv: Record<string, string>): { done: Promise<Run & { seconds: number }>; child: ReturnType<typeof spawn> } {
  const started = performance.now();
  const child = spawn(mpirunPath || 'mpirun', mpirunArgs([{ np: 2, args: ['train-base', '--figures', '8', '--preset', 'tiny', '--steps', '1000', '--batch', '2', '--ckpt-every', '1', '--out', out, '--quiet'] }]), {
    cwd: root,
    env: { ...env, ...extraEnv },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Run & { seconds: number }>((resolve) => child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr, seconds: (performance.now() - started) / 1000 })));
  return { done, child };
}

/** The pid of rank `rank` of the job whose processes carry REALTUNE_TEST_MARK=mark. */
function rankPid(mark: string, rank: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${entry}/environ`, 'latin1');
    } catch {
      continue;
    }
    const vars = environ.split('\0');
    if (vars.includes(`REALTUNE_TEST_MARK=${mark}`) && vars.includes(`OMPI_COMM_WORLD_RANK=${rank}`)) return Number(entry);
  }
  return undefined;
}

async function untilCheckpoint(out: string, done: Promise<unknown>): Promise<void> {
  let finished = false;
  void done.then(() => (finished = true));
  for (let waited = 0; waited < 120_000 && !finished; waited += 100) {
    if (existsSync(path.join(out, 'checkpoint', 'state.json'))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no checkpoint appeared in ${out}`);
}

describe('a rank that dies or stops', () => {
  it('killed: the other rank stops with a clear error, and the job ends within seconds', async () => {
    const out = path.join(scratch, 'killed');
    const mark = `killed-${process.pid}`;
    const { done } = longRun(out, { REALTUNE_TEST_MARK: mark });
    await untilCheckpoint(out, done);
    const pid = rankPid(mark, 1);
    expect(pid, 'rank 1 of the job').toBeDefined();
    const killedAt = performance.now();
    process.kill(pid!, 'SIGKILL');
    const result = await done;
    const seconds = (performance.now() - killedAt) / 1000;
    expect(result.status === 0, 'the job must fail').toBe(false);
    expect(seconds, `the job ended ${seconds.toFixed(1)} s after the kill`).toBeLessThan(60);
    expect(result.stderr).toMatch(/process rank 1 .*exited on signal 9/);
    expect(result.stderr, 'rank 0 says why it stopped').toMatch(/rank 0 of 2\)?:? .*stopped by mpirun|rank 0 of 2 was stopped by mpirun/);
  });

  it('stopped (stuck): the other rank fails after REALTUNE_DIST_TIMEOUT with an error naming the wait', async () => {
    const out = path.join(scratch, 'stuck');
    const mark = `stuck-${process.pid}`;
    const { done, child } = longRun(out, { REALTUNE_TEST_MARK: mark, REALTUNE_DIST_TIMEOUT: '3' });
    await untilCheckpoint(out, done);
    const pid = rankPid(mark, 1);
    expect(pid, 'rank 1 of the job').toBeDefined();
    process.kill(pid!, 'SIGSTOP');
    try {
      const result = await Promise.race([done, new Promise<null>((r) => setTimeout(() => r(null), 90_000))]);
      expect(result, 'the job ended').not.toBeNull();
      expect(result!.status === 0).toBe(false);
      expect(result!.stderr).toMatch(/rank 0 of 2 waited 3 s for train: the gradients of step \d+ without the other ranks taking part: another rank stopped or is stuck/);
    } finally {
      try {
        process.kill(pid!, 'SIGKILL');
      } catch {
        // ended with the job
      }
      child.kill('SIGKILL');
    }
  });
});

describe('bad input: every rank refuses at start, before any work', () => {
  const expectEveryRank = (run: Run, pattern: RegExp, out: string): void => {
    expect(run.status === 0, 'the job must fail').toBe(false);
    for (const rank of [0, 1]) expect(run.stderr, `rank ${rank}'s error`).toMatch(new RegExp(`\\(rank ${rank} of 2\\): ${pattern.source}`));
    expect(existsSync(path.join(out, 'checkpoint')), 'no checkpoint was written').toBe(false);
  };
  const short = ['train-base', '--figures', '8', '--preset', 'tiny', '--steps', '1', '--quiet'];

  it('MPI that cannot be loaded', () => {
    const out = path.join(scratch, 'no-mpi');
    const run = ranks(2, [...short, '--batch', '2', '--out', out], { REALTUNE_LIBMPI: '/nonexistent/libmpi.so.40' });
    expectEveryRank(run, /data-parallel: running under mpirun \(OMPI_COMM_WORLD_SIZE=2\) but \/nonexistent\/libmpi\.so\.40 could not be loaded: .*; install Open MPI \(Debian: apt-get install openmpi-bin\)/, out);
  });

  it('a world size that does not divide the batch', () => {
    const out = path.join(scratch, 'odd-batch');
    expectEveryRank(ranks(2, [...short, '--batch', '3', '--out', out]), /train: batch 3 cannot be split over 2 ranks \(mpirun -np 2\); give a batch that is a multiple of 2/, out);
  });

  it('ranks started with different options', () => {
    const out = path.join(scratch, 'different-options');
    const r = spawnSync(mpirunPath || 'mpirun', mpirunArgs([{ np: 1, args: [...short, '--batch', '2', '--out', out] }, { np: 1, args: [...short, '--batch', '4', '--out', out] }]), { cwd: root, encoding: 'utf8', env, timeout: 120_000 });
    expectEveryRank({ status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }, /train: the 2 ranks of this mpirun job were not started the same way: rank 1 has batch 4 \(rank 0: 2\)/, out);
  });

  it('ranks running different builds of the addon', () => {
    const out = path.join(scratch, 'different-builds');
    const other = path.join(root, process.env.REALTUNE_BUILD_DIR ?? 'build-test', 'package', 'cpu', 'realtune.node');
    expect(existsSync(other), `${other} (built by scripts/build-native.mjs --test)`).toBe(true);
    const args = [...short, '--batch', '2', '--out', out];
    const r = spawnSync(mpirunPath || 'mpirun', mpirunArgs([{ np: 1, args }, { np: 1, args, prefix: ['env', `REALTUNE_ADDON=${other}`] }]), { cwd: root, encoding: 'utf8', env, timeout: 120_000 });
    expectEveryRank({ status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }, /train: the 2 ranks of this mpirun job were not started the same way: rank 1 runs realtune addon [0-9a-f]+ \(rank 0: [0-9a-f]+\)/, out);
  });
});
