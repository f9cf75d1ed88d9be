// The one training engine. Base training, each DPO stage of the curriculum and personalisation
// are thin uses of it: a job names its trainable parameters, how one micro-batch is computed
// (forward and backward), and how its weights are written and read back; the engine owns the
// rest, the same for every job:
//   - the step loop over phases (e.g. the resolutions of stage-wise training), gradient
//     accumulation, the learning-rate schedule, clipping by global norm, AdamW, an optional EMA;
//   - the random streams (lib/train/loop/streams.ts) and the trainer state, saved in every
//     checkpoint with the optimiser's moments, so a run resumed at step k computes the same
//     numbers as the uninterrupted run from step k on; a resume with other settings is refused;
//   - a step whose loss or gradient norm is not finite stops the run, naming the last good
//     checkpoint (which it never overwrites);
//   - periodic checkpoints and sample grids, progress callbacks;
//   - data-parallel training under `mpirun -np N` (lib/train/loop/dist.ts): each rank computes
//     its shard of every micro-batch, gradients, loss and metrics are averaged across ranks each
//     step, rank 0 alone writes checkpoints, grids and calls the callbacks.
import path from 'node:path';
import { decodeSafetensors, encodeSafetensors } from '../../io/safetensors.js';
import type { Variable } from '../../autograd/variable.js';
import { firstNonFinite, nonFiniteStepError } from '../../numeric.js';
import { AdamW } from '../../optim/adamw.js';
import { EMA } from '../../optim/ema.js';
import { lrSchedule, type LrScheduleKind } from '../../optim/schedule.js';
import type { Tensor } from '../../tensor.js';
import { checkSameRun, checkStepLayout, checkWeightsAgree, onRankZero, requireOneProcess, shardOf, worldCommunicator, type Communicator, type Shard } from './dist.js';
import { RandomStreams } from './streams.js';
import { checkOptimizerMoments, checkSettings, readTrainerState, type JsonSettings, type TrainerState } from './state.js';

/** The optimisation settings every job shares (defaults and checks live here, once). */
export interface OptimOptions {
  /** Total optimiser steps. */
  steps: number;
  lr: number;
  lrSchedule?: LrScheduleKind;
  warmup?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this (0: off). */
  clipNorm?: number;
  /** L1 penalty on every trained weight (0: off). */
  l1?: number;
  /** EMA decay (0: no EMA). Samples and the final weights use the averaged ones. */
  ema?: number;
  /** Micro-batches per optimiser step (their gradients are averaged by the job's loss scale). */
  accumulate?: number;
  seed?: number;
}

/** Where and how often a run writes, and what it resumes from. */
export interface RunOptions {
  /** Output directory: checkpoints under out/checkpoint, sample grids under out/samples. */
  out?: string;
  /** Write a checkpoint every k steps (and always at the end when `out` is set; 0: only at the end). */
  ckptEvery?: number;
  /** Write a sample grid every k steps (0: off). */
  sampleEvery?: number;
  /** Resume from this checkpoint directory (written by a run with the same settings). */
  resume?: string;
  /** Resume with zero AdamW moments when the checkpoint has none; default: that is an error. */
  resetOptimizer?: boolean;
  /** Stop after this step even though `steps` is larger (an interrupted run; for tests). */
  stopAt?: number;
  /** Called once before the first step with the step training starts from (0, or the resume point). */
  onStart?: (startStep: number) => void;
  /** Called after each step. */
  onStep?: (report: StepReport) => void;
  /** Called with the path of each sample grid and checkpoint written. */
  onArtifact?: (kind: 'samples' | 'checkpoint', file: string) => void;
}

export interface StepReport {
  /** 1-based index of the step just taken. */
  step: number;
  total: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** The job's own per-step numbers (e.g. DPO's implicit accuracy, the resolution). */
  metrics: Record<string, number>;
  seconds: number;
}

/** What one micro-batch computes: the loss share it added to the gradients, and its metrics. */
export interface MicroResult {
  loss: number;
  metrics?: Record<string, number>;
}

export interface MicroContext {
  /** 0-based index of the step being taken. */
  step: number;
  phase: number;
  /** 0-based step index within the phase. */
  phaseStep: number;
  micro: number;
  accumulate: number;
  streams: RandomStreams;
  /**
   * This rank's part of the micro-batch (the whole of it in a one-process run): draw the
   * randomness of every sample, compute forward and backward of samples [start, start + count)
   * as their mean, and draw tensor noise through shardedGenerator (lib/train/loop/dist.ts).
   */
  shard: Shard;
}

/** What a job saves besides the engine's own state: its weights, under its own files. */
export interface CheckpointPayload {
  optimizer: Record<string, Tensor>;
  trainer: TrainerState;
  extraFiles: Record<string, Uint8Array>;
}

/** What a job's restore hands back: the moments and extra files of the checkpoint it read. */
export interface RestoredCheckpoint {
  dir: string;
  moments: Record<string, Tensor>;
  files: Record<string, string | Uint8Array>;
  dispose(): void;
}

export interface TrainingJob {
  /** Prefix of every error and message ("train", "trainDpo", ...). */
  op: string;
  optim: OptimOptions;
  run: RunOptions;
  /** Settings that shape every step (data, batch, objective weights...): saved, and compared on resume. */
  settings: JsonSettings;
  /** Steps of each phase in order (default one phase of optim.steps). */
  phases?: readonly number[];
  /**
   * The samples of one micro-batch that data-parallel training splits over the ranks, and the
   * option that sets them (named in the error when the world size does not divide it). A job
   * without it runs in one process only.
   */
  shardedBatch?: { option: string; size: number };
  /** The parameters the optimiser trains, by name. */
  parameters(): [string, Variable][];
  /** Called when a phase starts (also on resume); may swap the EMA (e.g. after resizing positions). */
  enterPhase?(phase: number, optimizer: AdamW, ema: EMA | null): Promise<EMA | null> | EMA | null;
  /** Called when a phase ends or the run stops (close data streams). */
  leavePhase?(phase: number): Promise<void> | void;
  /** Forward and backward of one micro-batch; gradients accumulate in the parameters. */
  micro(ctx: MicroContext): Promise<MicroResult> | MicroResult;
  /** Fails before any work when the job's checkpoint cannot be written at `dir`. */
  checkCheckpointTarget?(dir: string): void;
  /** Writes the checkpoint directory atomically: the job's weights plus the payload. */
  saveCheckpoint(dir: string, payload: CheckpointPayload): void;
  /** Loads the job's weights from a checkpoint dir and returns the rest of it. */
  restoreCheckpoint(dir: string): RestoredCheckpoint;
  /** Writes a sample grid (with the EMA weights swapped in when there is an EMA). */
  writeSamples?(file: string, withWeights: <T>(fn: () => T) => T): Promise<void>;
  /** Called before the first step and after each phase entry: switch the model to training mode. */
  train?(): void;
  /** Called when the run ends or fails: back to eval mode. */
  finish?(): void;
}

export interface LoopResult {
  /** Loss of every step taken by this call (resumed runs: from the resume point). */
  losses: number[];
  /** Per-step metrics of this call, by name. */
  metrics: Record<string, number[]>;
  /** Step reached. */
  step: number;
  checkpoint?: string;
}

const emaFile = 'ema.safetensors';
/** Steps between the checks that the ranks' weights are still equal (also after the first and the last step). */
const weightsCheckEvery = 100;

/** Checks the shared options; every trainer calls this first, so the rules are the same everywhere. */
export function checkOptimOptions(op: string, optim: OptimOptions, run: RunOptions = {}): void {
  const positiveInt = (name: string, v: number | undefined): void => {
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new RangeError(`${op}: ${name} must be an integer >= 1, got ${v}`);
  };
  const nonNegative = (name: string, v: number | undefined): void => {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new RangeError(`${op}: ${name} must be finite and >= 0, got ${v}`);
  };
  positiveInt('steps', optim.steps);
  positiveInt('accumulate', optim.accumulate);
  if (!(optim.lr > 0 && Number.isFinite(optim.lr))) throw new RangeError(`${op}: lr must be finite and > 0, got ${optim.lr}`);
  if (optim.ema !== undefined && !(optim.ema >= 0 && optim.ema < 1)) throw new RangeError(`${op}: ema must be in [0, 1), got ${optim.ema}`);
  if (optim.seed !== undefined && !(Number.isInteger(optim.seed) && optim.seed >= 0 && optim.seed <= 0xffffffff)) {
    throw new RangeError(`${op}: seed must be an integer in [0, 2^32), got ${optim.seed}`);
  }
  if (optim.lrSchedule !== undefined && optim.lrSchedule !== 'constant' && optim.lrSchedule !== 'cosine') {
    throw new RangeError(`${op}: lrSchedule must be "constant" or "cosine", got ${JSON.stringify(optim.lrSchedule)}`);
  }
  for (const name of ['weightDecay', 'clipNorm', 'l1', 'warmup'] as const) nonNegative(name, optim[name]);
  for (const name of ['ckptEvery', 'sampleEvery'] as const) nonNegative(name, run[name]);
  if (run.stopAt !== undefined) positiveInt('stopAt', run.stopAt);
}

/** The optimisation settings as saved with a run (every default filled in). */
export function optimSettings(optim: OptimOptions): JsonSettings {
  return {
    lr: optim.lr,
    lrSchedule: optim.lrSchedule ?? 'constant',
    warmup: optim.warmup ?? 0,
    weightDecay: optim.weightDecay ?? 0,
    clipNorm: optim.clipNorm ?? 0,
    l1: optim.l1 ?? 0,
    ema: optim.ema ?? 0,
    accumulate: optim.accumulate ?? 1,
    seed: optim.seed ?? 0,
  };
}

const yieldToEventLoop = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

/** Runs `job` to optim.steps (or run.stopAt), resuming when asked. */
export async function runTraining(job: TrainingJob): Promise<LoopResult> {
  const { op, optim, run } = job;
  checkOptimOptions(op, optim, run);
  const phases = job.phases && job.phases.length > 0 ? [...job.phases] : [optim.steps];
  const total = phases.reduce((n, s) => n + s, 0);
  if (total !== optim.steps) throw new RangeError(`${op}: the phases add up to ${total} steps but steps is ${optim.steps}`);
  const checkpointDir = run.out === undefined ? undefined : path.join(run.out, 'checkpoint');
  if (checkpointDir !== undefined) job.checkCheckpointTarget?.(checkpointDir);
  const seed = optim.seed ?? 0;
  const accumulate = optim.accumulate ?? 1;
  const schedule = lrSchedule(optim.lrSchedule ?? 'constant', optim.lr, optim.steps, optim.warmup ?? 0);
  const streams = new RandomStreams(seed);
  const stopAt = Math.min(run.stopAt ?? optim.steps, optim.steps);
  const settings: JsonSettings = { ...optimSettings(optim), ...job.settings, phases };
  const comm = worldCommunicator();
  if (comm.size > 1) {
    checkSameRun(op, comm, { ...settings, steps: optim.steps, stopAt: run.stopAt ?? null, out: run.out ?? null, resume: run.resume ?? null, resetOptimizer: run.resetOptimizer ?? false });
    if (job.shardedBatch === undefined) requireOneProcess(op, comm);
  }
  const shard = shardOf(op, job.shardedBatch?.option ?? 'batch', job.shardedBatch?.size ?? 1, comm);
  const rankZero = comm.rank === 0;

  const optimizer = new AdamW(job.parameters(), { lr: optim.lr, weightDecay: optim.weightDecay ?? 0, l1: optim.l1 ?? 0 });
  let ema: EMA | null = (optim.ema ?? 0) > 0 ? new EMA(job.parameters(), optim.ema) : null;
  let step = 0;
  let phase = 0;
  const previousLosses: number[] = [];
  const previousMetrics: Record<string, number[]> = {};
  const phaseStart = (index: number): number => phases.slice(0, index).reduce((n, s) => n + s, 0);
  const release = (): void => {
    ema?.dispose();
    optimizer.dispose();
    job.finish?.();
  };

  try {
    if (run.resume !== undefined) {
      const { state, file } = readTrainerState(op, run.resume);
      if (state.ema !== (ema !== null)) throw new Error(`${op}: ${run.resume} was written ${state.ema ? 'with' : 'without'} an EMA; resume with the same setting`);
      if (optim.steps <= state.step) {
        throw new RangeError(`${op}: cannot resume from ${file}: it is at step ${state.step} already, so steps ${optim.steps} leaves nothing to train; give more steps than ${state.step}`);
      }
      if (state.stage >= phases.length) throw new Error(`${op}: cannot resume from ${file}: it is in phase ${state.stage + 1} but this run has ${phases.length}`);
      checkSettings(op, state, file, settings);
      ema = (await job.enterPhase?.(state.stage, optimizer, ema)) ?? ema;
      const restored = job.restoreCheckpoint(run.resume);
      try {
        restoreOptimizerAndEma(op, restored, optimizer, ema, state, run.resetOptimizer ?? false);
      } finally {
        restored.dispose();
      }
      step = state.step;
      phase = state.stage;
      streams.restore({ host: state.hostRandom, noise: state.noise, dropout: state.dropout ?? { seed: seed + 2, offset: 0 } });
      previousLosses.push(...state.losses);
      for (const [name, values] of Object.entries(state.metrics ?? {})) previousMetrics[name] = [...values];
    }
  } catch (err) {
    release();
    throw err;
  }

  const losses: number[] = [];
  const metrics: Record<string, number[]> = {};
  let lastCheckpoint: string | undefined;
  let lastGoodCheckpoint = run.resume;
  job.train?.();
  if (rankZero) run.onStart?.(step);
  const firstStep = step;

  try {
    while (step < stopAt) {
      while (step >= phaseStart(phase + 1)) phase += 1;
      ema = (await job.enterPhase?.(phase, optimizer, ema)) ?? ema;
      job.train?.();
      const phaseEnd = Math.min(phaseStart(phase + 1), stopAt);
      try {
        while (step < phaseEnd) {
          const started = performance.now();
          const lr = schedule(step);
          optimizer.lr = lr;
          let loss = 0;
          const stepMetrics: Record<string, number> = {};
          for (let micro = 0; micro < accumulate; micro++) {
            const result = await job.micro({ step, phase, phaseStep: step - phaseStart(phase), micro, accumulate, streams, shard });
            loss += result.loss;
            for (const [name, value] of Object.entries(result.metrics ?? {})) stepMetrics[name] = (stepMetrics[name] ?? 0) + value / accumulate;
          }
          if (comm.size > 1) loss = averageAcrossRanks(op, comm, optimizer, step, loss, stepMetrics, step === firstStep);
          const gradNorm = (optim.clipNorm ?? 0) > 0 ? optimizer.clipGradNorm(optim.clipNorm!) : optimizer.gradNorm();
          const kept = lastGoodCheckpoint === undefined ? 'no checkpoint had been written' : `the last checkpoint, ${lastGoodCheckpoint}, holds the last good weights`;
          const failure = nonFiniteStepError(op, step + 1, { loss, gradNorm }, kept);
          if (failure !== undefined) {
            optimizer.zeroGrad();
            throw failure;
          }
          optimizer.step();
          optimizer.zeroGrad();
          ema?.update();
          step += 1;
          losses.push(loss);
          for (const [name, value] of Object.entries(stepMetrics)) (metrics[name] ??= []).push(value);
          if (comm.size > 1 && (step === firstStep + 1 || step % weightsCheckEvery === 0 || step === stopAt)) checkWeightsAgree(op, comm, step, job.parameters());
          if (rankZero) job.run.onStep?.({ step, total: optim.steps, loss, lr, gradNorm, metrics: stepMetrics, seconds: (performance.now() - started) / 1000 });
          // N-API runs the finalisers of collected tensor wrappers from the event loop: without
          // this turn a synchronous run of steps holds every step's wrapper memory until it ends.
          await yieldToEventLoop();

          const finished = step === stopAt;
          if (checkpointDir !== undefined && ((run.ckptEvery && step % run.ckptEvery === 0) || finished)) {
            const allMetrics: Record<string, number[]> = {};
            for (const name of new Set([...Object.keys(previousMetrics), ...Object.keys(metrics)])) allMetrics[name] = [...(previousMetrics[name] ?? []), ...(metrics[name] ?? [])];
            const streamState = streams.state();
            const trainer: TrainerState = {
              step,
              optimizerStep: optimizer.stepCount,
              stage: phase,
              hostRandom: streamState.host,
              noise: streamState.noise,
              dropout: streamState.dropout,
              losses: [...previousLosses, ...losses],
              ...(Object.keys(allMetrics).length > 0 ? { metrics: allMetrics } : {}),
              ema: ema !== null,
              run: settings,
            };
            const extraFiles: Record<string, Uint8Array> =
              ema !== null && rankZero ? { [emaFile]: encodeSafetensors(Object.fromEntries(ema.shadow), { metadata: { decay: String(ema.decay) } }) } : {};
            await onRankZero(comm, `${op}: the checkpoint of step ${step}`, () => job.saveCheckpoint(checkpointDir, { optimizer: optimizer.stateDict().tensors, trainer, extraFiles }));
            lastCheckpoint = checkpointDir;
            lastGoodCheckpoint = checkpointDir;
            if (rankZero) run.onArtifact?.('checkpoint', checkpointDir);
          }
          if (run.out !== undefined && run.sampleEvery && job.writeSamples && (step % run.sampleEvery === 0 || (finished && step === optim.steps))) {
            const file = path.join(run.out, 'samples', `step-${String(step).padStart(6, '0')}.png`);
            const averaged = ema;
            const writeSamples = job.writeSamples;
            await onRankZero(comm, `${op}: the sample grid of step ${step}`, () => writeSamples(file, averaged === null ? (fn) => fn() : (fn) => averaged.withAveraged(fn)));
            job.train?.();
            if (rankZero) run.onArtifact?.('samples', file);
          }
        }
      } finally {
        await job.leavePhase?.(phase);
      }
    }
    if (ema !== null && step === optim.steps) {
      // The final weights are the averaged ones.
      for (const [name, p] of job.parameters()) p.value.copy_(ema.shadow.get(name)!);
    }
  } finally {
    release();
  }
  return { losses, metrics, step, ...(lastCheckpoint ? { checkpoint: lastCheckpoint } : {}) };
}

/**
 * Averages the gradients (one flat buffer), the loss and the metrics of a step across the ranks
 * in place, so clipping, AdamW and the reports see the same numbers everywhere; returns the loss.
 */
function averageAcrossRanks(op: string, comm: Communicator, optimizer: AdamW, step: number, loss: number, metrics: Record<string, number>, first: boolean): number {
  const grads = optimizer.params.map((p) => p.variable.grad).filter((g): g is Tensor<'f32'> => g !== null);
  const names = Object.keys(metrics).sort();
  if (first) checkStepLayout(op, comm, grads.reduce((n, g) => n + g.size, 0), names);
  comm.allreduceTensors(grads, 'mean', `${op}: the gradients of step ${step + 1}`);
  const numbers = Float64Array.from([loss, ...names.map((name) => metrics[name]!)]);
  comm.allreduce(numbers, 'mean', `${op}: the loss and metrics of step ${step + 1}`);
  names.forEach((name, i) => (metrics[name] = numbers[i + 1]!));
  return numbers[0]!;
}

function restoreOptimizerAndEma(op: string, restored: RestoredCheckpoint, optimizer: AdamW, ema: EMA | null, state: TrainerState, resetOptimizer: boolean): void {
  const { dir, moments, files } = restored;
  const nonFinite = firstNonFinite(moments);
  if (nonFinite !== undefined) throw new Error(`${op}: cannot resume from ${path.join(dir, 'optimizer.safetensors')}: ${nonFinite}`);
  checkOptimizerMoments(op, dir, moments, optimizer.params.map((p) => p.name), state, resetOptimizer);
  try {
    // A reset starts Adam over: zero moments with the bias correction of step 0, not of the run's step.
    optimizer.loadStateDict(resetOptimizer ? { tensors: {}, step: 0 } : { tensors: moments as Record<string, Tensor<'f32'>>, step: state.optimizerStep });
  } catch (err) {
    throw new Error(`${op}: cannot resume from ${path.join(dir, 'optimizer.safetensors')}: ${(err as Error).message}`);
  }
  if (ema === null) return;
  const bytes = files[emaFile];
  if (bytes === undefined) throw new Error(`${op}: cannot resume from ${dir}: it has no ${emaFile}`);
  const shadow = decodeSafetensors(typeof bytes === 'string' ? Buffer.from(bytes) : bytes, { source: path.join(dir, emaFile) }).tensors;
  try {
    for (const [name, t] of ema.shadow) {
      const saved = shadow[name];
      if (saved === undefined) throw new Error(`${op}: cannot resume from ${dir}/${emaFile}: it has no ${name}`);
      t.copy_(saved as Tensor<'f32'>);
    }
  } finally {
    for (const t of Object.values(shadow)) t.dispose();
  }
}
