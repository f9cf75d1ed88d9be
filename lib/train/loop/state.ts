// What a resumed run must agree with: the trainer state saved in the checkpoint (checked field by
// field), the settings the run was started with (a resume with another batch, data or learning
// rate would silently be another run), and the optimiser's moments (missing moments would reset
// Adam without a word). Anything that disagrees is an error naming the file and the field, or
// needs an explicit option saying what is reset.
import path from 'node:path';
import { existsSync } from 'node:fs';
import { readCheckpointState } from '../../io/checkpoint.js';
import { JsonFields, type JsonObject } from '../../io/json_fields.js';
import type { GeneratorState } from '../../ops/random.js';
import type { Tensor } from '../../tensor.js';

/** Settings that shape every step of a run, as JSON; `steps` is not among them (extending a run is what resuming is for). */
export type JsonSettings = Record<string, unknown>;

/** `defaults` with each of its keys that `options` gives (not undefined) taken from `options`. */
export function settingsWithDefaults<T extends object>(defaults: T, options: Partial<T>): T {
  const out = { ...defaults };
  for (const key of Object.keys(defaults) as (keyof T)[]) if (options[key] !== undefined) out[key] = options[key] as T[keyof T];
  return out;
}

/** What a training checkpoint's state.json holds under `trainer`, besides the tensors. */
export interface TrainerState {
  step: number;
  optimizerStep: number;
  /** The phase the run is in (stage-wise resolution: the stage). */
  stage: number;
  hostRandom: number;
  noise: GeneratorState;
  /** Absent in checkpoints written before the DiT had dropout. */
  dropout?: GeneratorState;
  losses: number[];
  /** Per-step metrics besides the loss (e.g. DPO's implicit accuracy), as long as `losses`. */
  metrics?: Record<string, number[]>;
  ema: boolean;
  /** Absent in checkpoints written before runs recorded their settings. */
  run?: JsonSettings;
}

function generatorState(fields: JsonFields, value: unknown, field: string): GeneratorState {
  const state = fields.object(value, field);
  return { seed: fields.integer(state.seed, `${field}.seed`, 0), offset: fields.integer(state.offset, `${field}.offset`, 0) };
}

/** The trainer state of the checkpoint at `dir` (an interrupted save's previous version when that is what is there), checked field by field. */
export function readTrainerState(op: string, dir: string): { state: TrainerState; file: string } {
  let read;
  try {
    read = readCheckpointState(dir);
  } catch (err) {
    throw new Error(`${op}: cannot resume from ${dir}: ${(err as Error).message}`);
  }
  const { state: saved, file } = read;
  if (saved.trainer === undefined) throw new Error(`${op}: cannot resume from ${dir}: it holds a model but no training state (use it with --init instead)`);
  const fields = new JsonFields(`${op}: cannot resume from ${file}`);
  const trainer = fields.object(saved.trainer, 'trainer');
  const step = fields.integer(trainer.step, 'trainer.step', 1);
  const losses = fields.array(trainer.losses, 'trainer.losses');
  losses.forEach((loss, i) => fields.number(loss, `trainer.losses[${i}]`));
  if (losses.length !== step) fields.fail('trainer.losses', `an array of trainer.step = ${step} losses`, `${losses.length} entries`);
  let metrics: Record<string, number[]> | undefined;
  if (trainer.metrics !== undefined) {
    metrics = {};
    for (const [name, value] of Object.entries(fields.object(trainer.metrics, 'trainer.metrics'))) {
      const values = fields.array(value, `trainer.metrics.${name}`);
      values.forEach((v, i) => fields.number(v, `trainer.metrics.${name}[${i}]`));
      if (values.length !== step) fields.fail(`trainer.metrics.${name}`, `an array of trainer.step = ${step} values`, `${values.length} entries`);
      metrics[name] = values as number[];
    }
  }
  const state: TrainerState = {
    step,
    optimizerStep: fields.integer(trainer.optimizerStep, 'trainer.optimizerStep', 0),
    stage: fields.integer(trainer.stage, 'trainer.stage', 0),
    hostRandom: fields.integer(trainer.hostRandom, 'trainer.hostRandom', 0, 0xffffffff),
    noise: generatorState(fields, trainer.noise, 'trainer.noise'),
    ...(trainer.dropout === undefined ? {} : { dropout: generatorState(fields, trainer.dropout, 'trainer.dropout') }),
    losses: losses as number[],
    ...(metrics === undefined ? {} : { metrics }),
    ema: fields.boolean(trainer.ema, 'trainer.ema'),
    ...(trainer.run === undefined ? {} : { run: fields.object(trainer.run, 'trainer.run') as JsonObject }),
  };
  return { state, file };
}

const describe = (value: unknown): string => JSON.stringify(value) ?? 'unset';

/**
 * Fails unless a run with `current` settings continues the one saved in `state` (read from
 * `file`). `phases` (steps per phase): the phases already finished must be the same, the current
 * one may get more steps. `data`: compared only when both runs name their data. Checkpoints
 * written before runs recorded their settings are resumed without the comparison.
 */
export function checkSettings(op: string, state: TrainerState, file: string, current: JsonSettings): void {
  const saved = state.run;
  if (saved === undefined) return;
  const differences: string[] = [];
  for (const key of Object.keys(current)) {
    if (key === 'phases' || key === 'stages' || (key === 'data' && (current.data === null || saved.data === null || saved.data === undefined))) continue;
    if (describe(saved[key]) !== describe(current[key])) differences.push(`${key} ${describe(current[key])} (the run has ${describe(saved[key])})`);
  }
  for (const key of ['phases', 'stages']) {
    if (current[key] === undefined) continue;
    const now = Array.isArray(current[key]) ? (current[key] as unknown[]) : [];
    const before = Array.isArray(saved[key]) ? (saved[key] as unknown[]) : [];
    // Phases already finished must be the same; the current one keeps its shape (stages: resolution) and may get more steps.
    const finished = (list: unknown[]): string => describe(list.slice(0, state.stage));
    const shape = (x: unknown): string => describe(typeof x === 'object' && x !== null && 'resolution' in x ? (x as { resolution: unknown }).resolution : 'phase');
    if (finished(before) !== finished(now) || shape(before[state.stage]) !== shape(now[state.stage])) {
      differences.push(`${key} ${describe(now)} (the run has ${describe(before)}, and is in phase ${state.stage + 1})`);
    }
  }
  if (differences.length > 0) {
    throw new Error(`${op}: cannot resume from ${file}: this resume asks for ${differences.join(', ')}; resume with the run's settings, or start a new run from its weights (--init)`);
  }
}

/**
 * Fails unless `moments` (optimizer.safetensors of the checkpoint in `dir`) hold both moments of
 * every trained parameter, so that Adam continues where it was. With `resetOptimizer` they may be
 * missing: the run then continues with zero moments, which it was asked to do.
 */
export function checkOptimizerMoments(op: string, dir: string, moments: Record<string, Tensor>, parameters: readonly string[], state: TrainerState, resetOptimizer: boolean): void {
  if (resetOptimizer || state.optimizerStep === 0) return;
  const file = path.join(dir, 'optimizer.safetensors');
  if (!existsSync(file)) {
    throw new Error(`${op}: cannot resume from ${dir}: optimizer.safetensors is missing, so Adam's moments after ${state.optimizerStep} steps are lost; resume with --reset-optimizer (resetOptimizer) to continue with zero moments`);
  }
  const missing = parameters.flatMap((name) => [`${name}.m`, `${name}.v`]).filter((key) => moments[key] === undefined);
  if (missing.length > 0) {
    throw new Error(`${op}: cannot resume from ${file}: it has no ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` (and ${missing.length - 3} more)` : ''}; resume with --reset-optimizer (resetOptimizer) to continue with zero moments`);
  }
}
