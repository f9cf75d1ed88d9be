// Data-parallel benchmark (measured, never asserted): base training of the `tiny` preset on
// procedural figures as 2 MPI ranks x 1 thread against 1 process x 2 threads with the same
// global batch (samples/s from the median step), the allreduce of one step's gradients alone
// (time and bytes, tiny and small presets), and the projection of a step's time on 8 and 64
// GPUs with a ring allreduce, from the formula below (README "Training on many processes").
// Each configuration runs `--runs` times, alternating, and the medians are reported.
// Run: npm run bench -- dist [--batch 8] [--steps 12] [--runs 3] [--json out.json]
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { intFlag, machineInfo, median, printTable, type MachineInfo } from './harness.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const worker = path.join(here, 'dist_worker.ts');

interface WorkerResult {
  ranks: number;
  threads: number;
  batch: number;
  stepSeconds: number;
  tiny: { parameters: number; allreduceSeconds: number };
  small: { parameters: number; allreduceSeconds: number };
}

export interface Link {
  name: string;
  /** Effective bandwidth per rank, bytes/s. */
  bandwidth: number;
  /** Per ring step, seconds. */
  latency: number;
}

export interface ProjectedModel {
  name: string;
  parameters: number;
  bytesPerGradient: number;
  /** Assumed forward + backward + optimiser time of one GPU's share of a step, seconds. */
  computeSeconds: number;
  computeAssumption: string;
}

export interface ProjectionRow {
  model: string;
  gpus: number;
  link: string;
  gradientBytes: number;
  allreduceSeconds: number;
  stepSeconds: number;
  /** compute / step: the share of the step the GPU computes. */
  efficiency: number;
}

export interface DistBenchResult {
  machine: MachineInfo;
  load: string;
  batch: number;
  steps: number;
  runs: number;
  oneProcess?: { threads: number; stepSeconds: number; samplesPerSecond: number };
  twoRanks?: { threads: number; stepSeconds: number; samplesPerSecond: number; allreduceSeconds: number; allreduceBytes: number; smallAllreduceSeconds: number; smallAllreduceBytes: number };
  skipped?: string;
  projection: ProjectionRow[];
  links: Link[];
  models: ProjectedModel[];
}

/** Ring allreduce of `bytes` over `n` ranks: 2 (n-1)/n * bytes / bandwidth + 2 (n-1) * latency. */
export function ringAllreduceSeconds(bytes: number, n: number, link: Link): number {
  return n <= 1 ? 0 : (2 * (n - 1) * bytes) / (n * link.bandwidth) + 2 * (n - 1) * link.latency;
}

// Effective per-GPU bandwidths and per-step latencies assumed for NCCL's ring.
export const links: Link[] = [
  { name: 'NVLink 300 GB/s', bandwidth: 300e9, latency: 5e-6 },
  { name: 'NVLink 450 GB/s', bandwidth: 450e9, latency: 5e-6 },
  { name: '400 Gb/s network', bandwidth: 400e9 / 8, latency: 15e-6 },
  { name: '100 Gb/s network', bandwidth: 100e9 / 8, latency: 15e-6 },
];

// H100 SXM dense bf16: ~790 TFLOP/s measured (DESIGN.md); a training step reaches a fraction of it.
const h100 = 790e12;

/**
 * The models projected. tiny and small: f32 gradients (what the engine sends), a transformer's
 * 6 x parameters x tokens FLOP per image, 64 images per GPU, 20% of H100 peak, and a floor of
 * 5 ms per step for kernel launches (models this small cannot fill an H100). SD-sized: an
 * 860M-parameter UNet with bf16 gradients, ~0.4 TFLOP per 64x64-latent image forward (an
 * order-of-magnitude figure from MAC counts of SD 1.x's UNet), x3 for forward + backward,
 * 8 images per GPU, 20% of H100 peak (conv and norm layers keep it memory-bound).
 */
export function projectedModels(tinyParameters: number, smallParameters: number): ProjectedModel[] {
  const transformer = (name: string, parameters: number, tokens: number): ProjectedModel => {
    const flop = 6 * parameters * tokens * 64;
    return {
      name,
      parameters,
      bytesPerGradient: 4,
      computeSeconds: Math.max(5e-3, flop / (0.2 * h100)),
      computeAssumption: `6 x ${(parameters / 1e6).toFixed(1)}M x ${tokens} tokens x 64 images = ${(flop / 1e12).toFixed(2)} TFLOP at 20% of H100 peak, at least 5 ms (launch-bound)`,
    };
  };
  const sdFlop = 3 * 0.4e12 * 8;
  return [
    transformer('tiny preset', tinyParameters, (32 / 4) ** 2),
    transformer('small preset', smallParameters, (64 / 4) ** 2),
    {
      name: 'SD-sized UNet',
      parameters: 860e6,
      bytesPerGradient: 2,
      computeSeconds: sdFlop / (0.2 * h100),
      computeAssumption: `3 x 0.4 TFLOP x 8 images = ${(sdFlop / 1e12).toFixed(1)} TFLOP at 20% of H100 peak`,
    },
  ];
}

/** Step time = compute + allreduce (the engine sums the gradients after the backward, without overlap). */
export function projection(models: readonly ProjectedModel[]): ProjectionRow[] {
  const rows: ProjectionRow[] = [];
  for (const model of models) {
    for (const gpus of [8, 64]) {
      for (const link of links) {
        const gradientBytes = model.parameters * model.bytesPerGradient;
        const allreduceSeconds = ringAllreduceSeconds(gradientBytes, gpus, link);
        const stepSeconds = model.computeSeconds + allreduceSeconds;
        rows.push({ model: model.name, gpus, link: link.name, gradientBytes, allreduceSeconds, stepSeconds, efficiency: model.computeSeconds / stepSeconds });
      }
    }
  }
  return rows;
}

/** Runs the worker behind `launcher` (empty: as one process). */
function runWorker(launcher: string[], threads: number, steps: number, batch: number): WorkerResult | string {
  const [command, ...args] = [...launcher, process.execPath, '--import', 'tsx', worker, String(steps), '2', String(batch), '10'];
  const result = spawnSync(command!, args, {
    encoding: 'utf8',
    env: { ...process.env, REALTUNE_NUM_THREADS: String(threads), REALTUNE_DEVICE: 'cpu' },
    maxBuffer: 1 << 26,
  });
  const line = (result.stdout ?? '').split('\n').find((l) => l.startsWith('DIST-BENCH '));
  if (result.status !== 0 || line === undefined) return `${command} failed (${result.status}): ${(result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ')}`;
  return JSON.parse(line.slice('DIST-BENCH '.length)) as WorkerResult;
}

export async function run(args: string[]): Promise<DistBenchResult> {
  const batch = intFlag('bench dist', args, '--batch', 8);
  const steps = intFlag('bench dist', args, '--steps', 12);
  const runs = intFlag('bench dist', args, '--runs', 3);
  const mpirun = spawnSync('sh', ['-c', 'command -v mpirun'], { encoding: 'utf8' }).stdout.trim();
  const load = spawnSync('uptime', { encoding: 'utf8' }).stdout.trim();
  const ones: WorkerResult[] = [];
  const twos: WorkerResult[] = [];
  let skipped: string | undefined;
  for (let r = 0; r < runs && skipped === undefined; r++) {
    const one = runWorker([], 2, steps, batch);
    if (typeof one === 'string') throw new Error(`bench dist: one process: ${one}`);
    ones.push(one);
    if (mpirun === '') {
      skipped = 'mpirun not found: install Open MPI (apt-get install openmpi-bin) to measure 2 ranks';
      break;
    }
    const two = runWorker([mpirun, '--allow-run-as-root', '--oversubscribe', '--bind-to', 'none', '-np', '2'], 1, steps, batch);
    if (typeof two === 'string') throw new Error(`bench dist: 2 ranks: ${two}`);
    twos.push(two);
  }
  const first = ones[0]!;
  const models = projectedModels(first.tiny.parameters, first.small.parameters);
  const result: DistBenchResult = { machine: machineInfo(), load, batch, steps, runs, projection: projection(models), links, models };
  const oneStep = median(ones.map((o) => o.stepSeconds));
  result.oneProcess = { threads: 2, stepSeconds: oneStep, samplesPerSecond: batch / oneStep };
  if (twos.length > 0) {
    const twoStep = median(twos.map((t) => t.stepSeconds));
    result.twoRanks = {
      threads: 1,
      stepSeconds: twoStep,
      samplesPerSecond: batch / twoStep,
      allreduceSeconds: median(twos.map((t) => t.tiny.allreduceSeconds)),
      allreduceBytes: 4 * first.tiny.parameters,
      smallAllreduceSeconds: median(twos.map((t) => t.small.allreduceSeconds)),
      smallAllreduceBytes: 4 * first.small.parameters,
    };
  }
  if (skipped !== undefined) result.skipped = skipped;

  console.log(`base training of the tiny preset, global batch ${batch}, median step of ${steps} (after 2 warm-up steps), median of ${runs} runs; load: ${load}`);
  printTable(
    ['', 'step s', 'samples/s', 'allreduce ms/step', 'MB/step'],
    [
      ['1 process x 2 threads', oneStep.toFixed(3), result.oneProcess.samplesPerSecond.toFixed(2), '-', '-'],
      ...(result.twoRanks
        ? [['2 ranks x 1 thread', result.twoRanks.stepSeconds.toFixed(3), result.twoRanks.samplesPerSecond.toFixed(2), (1000 * result.twoRanks.allreduceSeconds).toFixed(2), (result.twoRanks.allreduceBytes / 1e6).toFixed(1)]]
        : []),
    ],
  );
  if (result.twoRanks) console.log(`allreduce of the small preset's gradients (${(result.twoRanks.smallAllreduceBytes / 1e6).toFixed(1)} MB) between 2 ranks here: ${(1000 * result.twoRanks.smallAllreduceSeconds).toFixed(2)} ms`);
  if (skipped) console.log(`2 ranks skipped: ${skipped}`);
  console.log('\nprojection: step = compute + ring allreduce, t_allreduce = 2 (N-1)/N * bytes / bandwidth + 2 (N-1) * latency');
  for (const m of models) console.log(`  ${m.name}: ${(m.parameters / 1e6).toFixed(1)}M parameters, ${m.bytesPerGradient === 2 ? 'bf16' : 'f32'} gradients; compute ${(1000 * m.computeSeconds).toFixed(1)} ms/step (${m.computeAssumption})`);
  printTable(
    ['model', 'GPUs', 'link', 'grad MB', 'allreduce ms', 'step ms', 'compute share'],
    result.projection.map((r) => [r.model, r.gpus, r.link, (r.gradientBytes / 1e6).toFixed(1), (1000 * r.allreduceSeconds).toFixed(2), (1000 * r.stepSeconds).toFixed(1), `${(100 * r.efficiency).toFixed(0)}%`]),
  );
  return result;
}
