// `realtune train-base`: base training of the text-to-image model from the command line.
import path from 'node:path';
import { resolveStages, trainBase, type BaseTrainOptions, type Example, type Stage } from '../train/base.js';
import { TextToImage, type PredictionKind } from '../models/text_to_image.js';
import { describeSpec, loadTrainingData, trainingSource, trainTokenizer, writeLabelledGrid, type DataSpec } from '../train/data.js';
import type { BetaScheduleKind } from '../diffusion/schedule.js';
import { isCheckpoint } from '../io/checkpoint.js';
import { checkOutputDirectory, isWithin } from '../io/output_paths.js';
import { ditConfig, type DiTPreset } from '../nn/dit.js';
import { checkBatchFits, checkFiguresFit, checkSamplingSteps } from './checks.js';
import { FlagError, flagHelp, parseFlags, type FlagSpecs, type FlagValues } from './flags.js';
import { ProgressBar } from './progress.js';
import { isRankZero } from '../train/loop/dist.js';

export const trainBaseFlags: FlagSpecs = {
  data: { kind: 'string', help: 'a folder of images with same-name .txt captions' },
  manifest: { kind: 'string', help: 'a JSONL manifest ({"image": path, "caption": text} per line)' },
  figures: { kind: 'int', min: 1, help: 'N procedural figures (the embedded default data)' },
  'figures-seed': { kind: 'int', min: 0, default: 0, help: 'seed of the figures generator' },
  fresh: { kind: 'boolean', help: 'a new procedural figure for every example drawn (instead of --figures N), rendered ahead in worker threads' },
  'render-workers': { kind: 'int', min: 0, max: 64, help: 'threads rendering --fresh figures ahead of training (1 when not given; 0: on the training thread)' },
  prediction: { kind: 'string', choices: ['epsilon', 'v'], help: 'what a new model predicts: the noise or the velocity (v when not given; must match the checkpoint with --init/--resume)' },
  preset: { kind: 'string', choices: ['tiny', 'small'], help: 'model size of a new model (tiny when not given; must match the checkpoint with --init/--resume)' },
  init: { kind: 'string', help: 'start from this checkpoint directory (weights and tokenizer; fresh optimiser)' },
  schedule: { kind: 'string', choices: ['linear', 'cosine'], default: 'cosine', help: 'noise schedule of a new model (cosine is better at 32x32 in pixel space)' },
  vocab: { kind: 'int', min: 260, default: 1024, help: 'tokenizer vocabulary for a new model' },
  steps: { kind: 'int', min: 1, help: 'optimiser steps (when not given: the sum of --stages, or 1000)' },
  batch: { kind: 'int', min: 1, default: 8, help: 'images per step' },
  accumulate: { kind: 'int', min: 1, default: 1, help: 'micro-batches per step, gradients averaged' },
  lr: { kind: 'number', min: 1e-12, default: 3e-4, help: 'peak learning rate' },
  'lr-schedule': { kind: 'string', choices: ['constant', 'cosine'], default: 'constant', help: 'after warm-up' },
  warmup: { kind: 'int', min: 0, default: 0, help: 'linear warm-up steps' },
  'weight-decay': { kind: 'number', min: 0, default: 0, help: 'AdamW decoupled weight decay' },
  'clip-norm': { kind: 'number', min: 0, default: 1, help: 'clip the global gradient norm (0: off)' },
  l1: { kind: 'number', min: 0, default: 0, help: 'L1 penalty on the weights' },
  ema: { kind: 'number', min: 0, below: 1, default: 0, help: 'EMA decay of the weights (0: off)' },
  dropout: { kind: 'number', min: 0, below: 1, help: "dropout in the DiT blocks while training: attention outputs, MLP activations (when not given: the model's, 0 for a new one)" },
  'cond-dropout': { kind: 'number', min: 0, below: 1, default: 0.1, help: 'probability of the empty prompt' },
  flip: { kind: 'number', min: 0, max: 1, help: 'probability of a horizontal flip (off when not given)' },
  crop: { kind: 'number', min: 0.1, max: 1, help: 'random crop of this fraction of the side, resized back (off when not given)' },
  rotate: { kind: 'number', min: 0, max: 180, help: 'random rotation up to this many degrees (off when not given)' },
  stages: { kind: 'string', help: 'stage-wise resolution, e.g. 32:800,64:200 (steps per stage)' },
  out: { kind: 'string', default: 'runs/base', help: 'output directory: checkpoint/, samples/ and model/ go there' },
  'model-out': { kind: 'string', help: 'where the final model goes (OUT/model when not given; not inside OUT/checkpoint or OUT/samples, nor around them)' },
  'save-dtype': { kind: 'string', choices: ['f32', 'bf16'], default: 'f32', help: 'weights of the final model' },
  resume: { kind: 'optional-string', help: 'continue exactly from a checkpoint (OUT/checkpoint when no value is given)' },
  'reset-optimizer': { kind: 'boolean', help: "with --resume: start Adam's moments and its step count over from zero (for a checkpoint without optimizer.safetensors)" },
  'sample-every': { kind: 'int', min: 0, default: 0, help: 'write a labelled sample grid every N steps and at the end (0: none)' },
  'sample-prompts': { kind: 'string', help: 'prompts of the sample grids, separated by | (four captions of the data when not given)' },
  'sample-steps': { kind: 'int', min: 1, default: 25, help: "DDIM steps for sample grids (at most the model's noise-schedule steps)" },
  'ckpt-every': { kind: 'int', min: 0, default: 100, help: 'write a checkpoint every N steps (0: only at the end; always at the end)' },
  seed: { kind: 'int', min: 0, default: 0, help: 'seed of initialisation, batches, noise' },
  quiet: { kind: 'boolean', help: 'no progress bar' },
  help: { kind: 'boolean', help: 'this text' },
};

const usage = 'usage: realtune train-base (--data DIR | --manifest FILE.jsonl | --figures N) [options]';

/** "32:800,64:200" -> stages. */
export function parseStages(text: string): Stage[] {
  return text.split(',').map((part) => {
    const match = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(part);
    if (match === null) throw new FlagError(`--stages expects RESOLUTION:STEPS pairs separated by commas (e.g. 32:800,64:200), got ${JSON.stringify(text)}`);
    return { resolution: Number(match[1]), steps: Number(match[2]) };
  });
}

export function dataSpecFromFlags(flags: FlagValues): DataSpec {
  const given = (['data', 'manifest', 'figures', 'fresh'] as const).filter((k) => flags[k] !== undefined);
  if (given.length !== 1) {
    throw new FlagError(
      given.length === 0 ? 'give the training data: --data DIR, --manifest FILE.jsonl, --figures N or --fresh' : `give one of --data, --manifest, --figures, --fresh (got ${given.map((k) => `--${k}`).join(' and ')})`,
    );
  }
  if (flags['render-workers'] !== undefined && flags.fresh === undefined) throw new FlagError('--render-workers applies to --fresh figures only');
  if (flags.data !== undefined) return { kind: 'folder', dir: String(flags.data) };
  if (flags.manifest !== undefined) return { kind: 'manifest', file: String(flags.manifest) };
  if (flags.fresh !== undefined) return { kind: 'fresh-figures', seed: Number(flags['figures-seed'] ?? 0), workers: Number(flags['render-workers'] ?? 1) };
  return { kind: 'figures', count: Number(flags.figures), seed: Number(flags['figures-seed'] ?? 0) };
}

/** The training options of train-base from parsed flags (their defaults filled in by parseFlags). */
export function trainOptionsFromFlags(flags: FlagValues, out: string): Omit<BaseTrainOptions, 'steps' | 'stages'> {
  const augment = {
    ...(flags.flip !== undefined ? { flip: Number(flags.flip) } : {}),
    ...(flags.crop !== undefined ? { cropScale: Number(flags.crop) } : {}),
    ...(flags.rotate !== undefined ? { maxRotation: Number(flags.rotate) } : {}),
  };
  return {
    batch: Number(flags.batch),
    accumulate: Number(flags.accumulate),
    lr: Number(flags.lr),
    lrSchedule: flags['lr-schedule'] as 'constant' | 'cosine',
    warmup: Number(flags.warmup),
    weightDecay: Number(flags['weight-decay']),
    clipNorm: Number(flags['clip-norm']),
    l1: Number(flags.l1),
    ema: Number(flags.ema),
    ...(flags.dropout !== undefined ? { dropout: Number(flags.dropout) } : {}),
    condDropout: Number(flags['cond-dropout']),
    ...(Object.keys(augment).length > 0 ? { augment } : {}),
    seed: Number(flags.seed),
    out,
    ckptEvery: Number(flags['ckpt-every']),
    sampleEvery: Number(flags['sample-every']),
    sampleSteps: Number(flags['sample-steps']),
  };
}

/** What the training data is, for the checkpoint: a resume on other data is refused. */
export function dataIdentity(spec: DataSpec): string {
  switch (spec.kind) {
    case 'folder':
      return describeSpec({ ...spec, dir: path.resolve(spec.dir) });
    case 'manifest':
      return describeSpec({ ...spec, file: path.resolve(spec.file) });
    default:
      return describeSpec(spec);
  }
}

/**
 * Fails before any work unless every path a training run writes can take what goes there:
 * OUT a writable directory, OUT/checkpoint and the final model's directory absent, empty or
 * checkpoints (a save replaces nothing else), and none of them inside or around another.
 */
export function checkTrainingOutputs(out: string, modelOut: string, flag: { out: string; modelOut: string }): void {
  const checkpoint = path.join(out, 'checkpoint');
  const samples = path.join(out, 'samples');
  checkOutputDirectory(out, `--${flag.out}`);
  TextToImage.checkSaveTarget(checkpoint, `--${flag.out}`);
  checkOutputDirectory(samples, `--${flag.out}`);
  for (const [name, other] of [['checkpoint directory', checkpoint], ['sample directory', samples]] as const) {
    if (isWithin(other, modelOut)) throw new FlagError(`--${flag.modelOut} ${modelOut} holds the run's ${name} ${other}: saving the model there would replace it; give a directory of its own`);
    if (isWithin(modelOut, other)) throw new FlagError(`--${flag.modelOut} ${modelOut} is inside the run's ${name} ${other}; give a directory of its own`);
  }
  TextToImage.checkSaveTarget(modelOut, `--${flag.modelOut}`);
}

/** Runs training with a progress bar (step, loss, steps/s, ETA over the steps left). */
export async function runTraining(model: TextToImage, spec: DataSpec, options: BaseTrainOptions, quiet: boolean, label = 'train'): Promise<void> {
  let bar: ProgressBar | null = null;
  const result = await trainBase(model, (size) => trainingSource(spec, size, options.seed ?? 0), {
    ...options,
    writeGrid: writeLabelledGrid,
    onStart: (start) => {
      if (!quiet) bar = new ProgressBar({ total: options.steps - start, label: start > 0 ? `${label} (from step ${start})` : label });
    },
    onStep: (r) => (bar as ProgressBar | null)?.tick({ loss: r.loss, lr: r.lr }),
    onArtifact: (kind, file) => {
      if (kind === 'samples' && !quiet) process.stderr.write(`\n${label}: samples ${file}\n`);
    },
  });
  (bar as ProgressBar | null)?.finish();
  if (result.losses.length > 0) {
    const last = result.losses.slice(-Math.min(50, result.losses.length));
    console.log(`${label}: step ${result.step}/${options.steps}, mean loss of the last ${last.length} steps ${(last.reduce((a, b) => a + b, 0) / last.length).toFixed(4)}`);
  }
}

export async function run(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, trainBaseFlags);
  if (flags.help) {
    console.log(flagHelp(usage, trainBaseFlags));
    return;
  }
  const spec = dataSpecFromFlags(flags);
  const out = path.resolve(String(flags.out));
  const stepsFlag = flags.steps === undefined ? undefined : Number(flags.steps);
  const stages = flags.stages === undefined ? undefined : parseStages(String(flags.stages));
  const steps = stepsFlag ?? stages?.reduce((n, s) => n + s.steps, 0) ?? 1000;
  if (stages && stepsFlag !== undefined && stages.reduce((n, s) => n + s.steps, 0) !== stepsFlag) {
    throw new FlagError(`--stages adds up to ${stages.reduce((n, s) => n + s.steps, 0)} steps but --steps is ${stepsFlag}`);
  }
  const resume = flags.resume === undefined ? undefined : flags.resume === true ? path.join(out, 'checkpoint') : path.resolve(String(flags.resume));
  if (resume !== undefined && flags.init !== undefined) throw new FlagError('--resume and --init exclude each other (--resume continues a run, --init starts one from weights)');
  if (flags['reset-optimizer'] && resume === undefined) throw new FlagError('--reset-optimizer goes with --resume (a new run starts with zero moments anyway)');
  const from = resume ?? (flags.init === undefined ? undefined : path.resolve(String(flags.init)));
  if (from !== undefined && !isCheckpoint(from)) throw new FlagError(`--${resume !== undefined ? 'resume' : 'init'} ${from}: no checkpoint there (needs model.safetensors and state.json)`);
  const modelOut = path.resolve(String(flags['model-out'] ?? path.join(out, 'model')));
  checkTrainingOutputs(out, modelOut, { out: 'out', modelOut: 'model-out' });
  const seed = Number(flags.seed);

  let model: TextToImage;
  if (from !== undefined) {
    model = TextToImage.load(from);
  } else {
    const preset = (flags.preset as DiTPreset | undefined) ?? 'tiny';
    if (spec.kind === 'figures') checkFiguresFit('figures', spec.count, Math.max(ditConfig(preset).imageSize, ...(stages ?? []).map((s) => s.resolution)));
    const captions = (await loadTrainingData(spec, null)).map((e: Example) => e.caption);
    const tokenizer = trainTokenizer(captions, Number(flags.vocab));
    model = TextToImage.create(tokenizer, { preset, schedule: flags.schedule as BetaScheduleKind, prediction: (flags.prediction as PredictionKind | undefined) ?? 'v', seed });
  }
  try {
    if (flags.preset !== undefined && from !== undefined && model.preset !== flags.preset) {
      throw new FlagError(`--preset ${String(flags.preset)} does not match the checkpoint's preset ${model.preset}`);
    }
    if (flags.prediction !== undefined && from !== undefined && model.prediction !== flags.prediction) {
      throw new FlagError(`--prediction ${String(flags.prediction)} does not match the checkpoint's prediction ${model.prediction}`);
    }
    const base = trainOptionsFromFlags(flags, out);
    const options: BaseTrainOptions = {
      ...base,
      steps,
      ...(stages ? { stages } : {}),
      ...(resume ? { resume, resetOptimizer: Boolean(flags['reset-optimizer']) } : {}),
      dataIdentity: dataIdentity(spec),
    };
    const largest = Math.max(...resolveStages(model, options).map((s) => s.resolution));
    if (spec.kind === 'figures') checkFiguresFit('figures', spec.count, largest);
    checkBatchFits('batch', options.batch, model, largest);
    if (options.sampleEvery) checkSamplingSteps('sample-steps', options.sampleSteps!, model);
    options.samplePrompts = flags['sample-prompts'] === undefined ? await defaultSamplePrompts(spec) : String(flags['sample-prompts']).split('|');
    console.log(
      `train-base: ${model.preset} model, ${(model.dit.parameterCount() / 1e6).toFixed(2)}M parameters, ${model.imageSize}x${model.imageSize}, ` +
        `${steps} steps of ${options.batch}${resume ? `, resuming from ${resume}${options.resetOptimizer ? " with Adam's moments reset to zero" : ''}` : ''}`,
    );
    await runTraining(model, spec, options, Boolean(flags.quiet), 'train-base');
    if (!isRankZero()) return;
    model.save(modelOut, { dtype: flags['save-dtype'] as 'f32' | 'bf16' });
    console.log(`train-base: model written to ${modelOut}; checkpoint (resumable) in ${path.join(out, 'checkpoint')}`);
  } finally {
    model.dispose();
  }
}

/** Four captions from the data, for the sample grids. */
async function defaultSamplePrompts(spec: DataSpec): Promise<string[]> {
  const examples = await loadTrainingData(spec, null);
  const prompts: string[] = [];
  for (let i = 0; i < examples.length && prompts.length < 4; i += Math.max(1, Math.floor(examples.length / 4))) prompts.push(examples[i]!.caption);
  return prompts;
}
