// What a resumed run must agree with: the trainer state saved in the checkpoint (checked field by
// field), the settings the run was started with (a resume with another batch, data or learning
// rate would silently be another run), and the optimiser's moments (missing moments would reset
// Adam without a word). Anything that disagrees is an error naming the file and the field, or
// needs an explicit option saying what is reset.
import path from 'node:path';
import { existsSync } from 'node:fs';
import { readCheckpointState } from '../io/checkpoint.js';
import { JsonFields, type JsonObject } from '../io/json_fields.js';
import type { Tensor } from '../tensor.js';
import type { BaseTrainOptions, Stage, TrainerState } from './base.js';

/**
 * The settings that shape every step of a run (batch, data, randomness, optimiser), recorded in
 * its checkpoints; `steps` is not among them, since extending a run is what resuming is for.
 */
export interface RunSettings {
  batch: number;
  accumulate: number;
  seed: number;
  /** Names the training data (BaseTrainOptions.dataIdentity); null when the caller gave none. */
  data: string | null;
  condDropout: number;
  augment: JsonObject | null;
  /** The DiT's dropout while training: the option, or the model's own when the option is not given. */
  dropout: number;
  lr: number;
  lrSchedule: string;
  warmup: number;
  weightDecay: number;
  clipNorm: number;
  l1: number;
  ema: number;
  stages: Stage[];
}

export function runSettings(options: BaseTrainOptions, stages: readonly Stage[], dropout: number): RunSettings {
  return {
    batch: options.batch,
    accumulate: options.accumulate ?? 1,
    seed: options.seed ?? 0,
    data: options.dataIdentity ?? null,
    condDropout: options.condDropout ?? 0.1,
    augment: options.augment ? { ...options.augment } : null,
    dropout,
    lr: options.lr,
    lrSchedule: options.lrSchedule ?? 'constant',
    warmup: options.warmup ?? 0,
    weightDecay: options.weightDecay ?? 0,
    clipNorm: options.clipNorm ?? 0,
    l1: options.l1 ?? 0,
    ema: options.ema ?? 0,
    stages: stages.map((s) => ({ resolution: s.resolution, steps: s.steps })),
  };
}

function generatorState(fields: JsonFields, value: unknown, field: string): { seed: number; offset: number } {
  const state = fields.object(value, field);
  return { seed: fields.integer(state.seed, `${field}.seed`, 0), offset: fields.integer(state.offset, `${field}.offset`, 0) };
}

/** The trainer state of the checkpoint at `dir` (an interrupted save's previous version when that is what is there), checked field by field. */
export function readTrainerState(dir: string): { state: TrainerState; file: string } {
  let read;
  try {
    read = readCheckpointState(dir);
  } catch (err) {
    throw new Error(`train: cannot resume from ${dir}: ${(err as Error).message}`);
  }
  const { state: saved, file } = read;
  if (saved.trainer === undefined) throw new Error(`train: cannot resume from ${dir}: it holds a model but no training state (use it with --init instead)`);
  const fields = new JsonFields(`train: cannot resume from ${file}`);
  const trainer = fields.object(saved.trainer, 'trainer');
  const step = fields.integer(trainer.step, 'trainer.step', 1);
  const losses = fields.array(trainer.losses, 'trainer.losses');
  losses.forEach((loss, i) => fields.number(loss, `trainer.losses[${i}]`));
  if (losses.length !== step) fields.fail('trainer.losses', `an array of trainer.step = ${step} losses`, `${losses.length} entries`);
  const state: TrainerState = {
    step,
    optimizerStep: fields.integer(trainer.optimizerStep, 'trainer.optimizerStep', 0),
    stage: fields.integer(trainer.stage, 'trainer.stage', 0),
    hostRandom: fields.integer(trainer.hostRandom, 'trainer.hostRandom', 0, 0xffffffff),
    noise: generatorState(fields, trainer.noise, 'trainer.noise'),
    ...(trainer.dropout === undefined ? {} : { dropout: generatorState(fields, trainer.dropout, 'trainer.dropout') }),
    losses: losses as number[],
    ema: fields.boolean(trainer.ema, 'trainer.ema'),
    ...(trainer.run === undefined ? {} : { run: fields.object(trainer.run, 'trainer.run') as unknown as RunSettings }),
  };
  return { state, file };
}

const describe = (value: unknown): string => JSON.stringify(value) ?? 'unset';

/**
 * Fails unless a run with `options` continues the one saved in `state` (read from `file`):
 * more steps than it reached, and the settings it was started with. Checkpoints written before
 * runs recorded their settings are resumed without that comparison.
 */
export function checkResume(state: TrainerState, file: string, options: BaseTrainOptions, stages: readonly Stage[], dropout: number): void {
  const where = `train: cannot resume from ${file}`;
  if (options.steps <= state.step) {
    throw new RangeError(`${where}: it is at step ${state.step} already, so steps ${options.steps} leaves nothing to train; give more steps than ${state.step}`);
  }
  if (state.stage >= stages.length) throw new Error(`${where}: it is in stage ${state.stage + 1} but this run has ${stages.length} stage(s)`);
  const saved = state.run;
  if (saved === undefined) return;
  const current = runSettings(options, stages, dropout);
  const differences: string[] = [];
  for (const key of Object.keys(current) as (keyof RunSettings)[]) {
    if (key === 'stages' || (key === 'data' && (current.data === null || saved.data === null))) continue;
    if (describe(saved[key]) !== describe(current[key])) differences.push(`${key} ${describe(current[key])} (the run has ${describe(saved[key])})`);
  }
  // Stages already finished must be the same; the current one keeps its resolution and may get more steps.
  const savedStages = Array.isArray(saved.stages) ? saved.stages : [];
  const finished = (s: readonly Stage[]): string => describe(s.slice(0, state.stage).map((x) => [x.resolution, x.steps]));
  if (finished(savedStages) !== finished(stages) || savedStages[state.stage]?.resolution !== stages[state.stage]?.resolution) {
    differences.push(`stages ${describe(current.stages)} (the run has ${describe(savedStages)}, and is in stage ${state.stage + 1})`);
  }
  if (differences.length > 0) {
    throw new Error(`${where}: this resume asks for ${differences.join(', ')}; resume with the run's settings, or start a new run from its weights (--init)`);
  }
}

/**
 * Fails unless `moments` (optimizer.safetensors of the checkpoint in `dir`) hold both moments of
 * every trained parameter, so that Adam continues where it was. With `resetOptimizer` they may be
 * missing: the run then continues with zero moments, which it was asked to do.
 */
export function checkOptimizerMoments(dir: string, moments: Record<string, Tensor>, parameters: readonly string[], state: TrainerState, resetOptimizer: boolean): void {
  if (resetOptimizer || state.optimizerStep === 0) return;
  const file = path.join(dir, 'optimizer.safetensors');
  if (!existsSync(file)) {
    throw new Error(`train: cannot resume from ${dir}: optimizer.safetensors is missing, so Adam's moments after ${state.optimizerStep} steps are lost; resume with --reset-optimizer (resetOptimizer) to continue with zero moments`);
  }
  const missing = parameters.flatMap((name) => [`${name}.m`, `${name}.v`]).filter((key) => moments[key] === undefined);
  if (missing.length > 0) {
    throw new Error(`train: cannot resume from ${file}: it has no ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` (and ${missing.length - 3} more)` : ''}; resume with --reset-optimizer (resetOptimizer) to continue with zero moments`);
  }
}
