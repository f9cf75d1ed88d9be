// `realtune train-base`: base training of the text-to-image model from the command line.
import path from 'node:path';
import { resolveStages, trainBase, type BaseTrainOptions, type Example, type Stage } from '../train/base.js';
import { TextToImage, type PredictionKind } from '../train/model.js';
import { loadTrainingData, trainingSource, trainTokenizer, writeLabelledGrid, type DataSpec } from '../train/data.js';
import type { BetaScheduleKind } from '../diffusion/schedule.js';
import type { DiTPreset } from '../nn/dit.js';
import { FlagError, flagHelp, parseFlags, type FlagSpecs, type FlagValues } from './flags.js';
import { ProgressBar } from './progress.js';

export const trainBaseFlags: FlagSpecs = {
  data: { kind: 'string', help: 'a folder of images with same-name .txt captions' },
  manifest: { kind: 'string', help: 'a JSONL manifest ({"image": path, "caption": text} per line)' },
  figures: { kind: 'int', min: 1, help: 'N procedural figures (the embedded default data)' },
  'figures-seed': { kind: 'int', min: 0, help: 'seed of the figures generator (default 0)' },
  fresh: { kind: 'boolean', help: 'a new procedural figure for every example drawn (instead of --figures N), rendered ahead in worker threads' },
  'render-workers': { kind: 'int', min: 0, help: 'threads rendering --fresh figures ahead of training (default 1; 0: on the training thread)' },
  prediction: { kind: 'string', choices: ['epsilon', 'v'], help: 'what a new model predicts: the noise or the velocity (default v)' },
  preset: { kind: 'string', choices: ['tiny', 'small'], help: 'model size for a new model (default tiny)' },
  init: { kind: 'string', help: 'start from this checkpoint directory (weights and tokenizer; fresh optimiser)' },
  schedule: { kind: 'string', choices: ['linear', 'cosine'], help: 'noise schedule of a new model (default cosine: better at 32x32 in pixel space)' },
  vocab: { kind: 'int', min: 260, help: 'tokenizer vocabulary for a new model (default 1024)' },
  steps: { kind: 'int', min: 1, help: 'optimiser steps (default 1000)' },
  batch: { kind: 'int', min: 1, help: 'images per step (default 8)' },
  accumulate: { kind: 'int', min: 1, help: 'micro-batches per step, gradients averaged (default 1)' },
  lr: { kind: 'number', min: 1e-12, help: 'peak learning rate (default 3e-4)' },
  'lr-schedule': { kind: 'string', choices: ['constant', 'cosine'], help: 'after warm-up (default constant)' },
  warmup: { kind: 'int', min: 0, help: 'linear warm-up steps (default 0)' },
  'weight-decay': { kind: 'number', min: 0, help: 'AdamW decoupled weight decay (default 0)' },
  'clip-norm': { kind: 'number', min: 0, help: 'clip the global gradient norm (default 1; 0 off)' },
  l1: { kind: 'number', min: 0, help: 'L1 penalty on the weights (default 0)' },
  ema: { kind: 'number', min: 0, below: 1, help: 'EMA decay of the weights (default 0: off)' },
  dropout: { kind: 'number', min: 0, below: 1, help: "dropout in the DiT blocks while training: attention outputs, MLP activations (default: the model's; 0 for a new one)" },
  'cond-dropout': { kind: 'number', min: 0, below: 1, help: 'probability of the empty prompt (default 0.1)' },
  flip: { kind: 'number', min: 0, below: 1.0000001, help: 'probability of a horizontal flip (default 0)' },
  crop: { kind: 'number', min: 0.1, below: 1.0000001, help: 'random crop of this fraction of the side, resized back (default 1: off)' },
  rotate: { kind: 'number', min: 0, help: 'random rotation up to this many degrees (default 0)' },
  stages: { kind: 'string', help: 'stage-wise resolution, e.g. 32:800,64:200 (steps per stage)' },
  out: { kind: 'string', help: 'output directory (default runs/base)' },
  'model-out': { kind: 'string', help: 'where the final model goes (default OUT/model)' },
  'save-dtype': { kind: 'string', choices: ['f32', 'bf16'], help: 'weights of the final model (default f32)' },
  resume: { kind: 'optional-string', help: 'continue exactly from a checkpoint (default OUT/checkpoint)' },
  'sample-every': { kind: 'int', min: 0, help: 'write a labelled sample grid every N steps and at the end (default 0: none)' },
  'sample-prompts': { kind: 'string', help: 'prompts of the sample grids, separated by |' },
  'sample-steps': { kind: 'int', min: 1, help: 'DDIM steps for sample grids (default 25)' },
  'ckpt-every': { kind: 'int', min: 0, help: 'write a checkpoint every N steps (default 100; always at the end)' },
  seed: { kind: 'int', min: 0, help: 'seed of initialisation, batches, noise (default 0)' },
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

/** The shared options of train-base and demo, from parsed flags. */
export function trainOptionsFromFlags(flags: FlagValues, out: string): Omit<BaseTrainOptions, 'steps' | 'stages'> {
  const num = (name: string, fallback: number): number => (flags[name] === undefined ? fallback : Number(flags[name]));
  const augment = {
    ...(flags.flip !== undefined ? { flip: Number(flags.flip) } : {}),
    ...(flags.crop !== undefined ? { cropScale: Number(flags.crop) } : {}),
    ...(flags.rotate !== undefined ? { maxRotation: Number(flags.rotate) } : {}),
  };
  return {
    batch: num('batch', 8),
    accumulate: num('accumulate', 1),
    lr: num('lr', 3e-4),
    lrSchedule: (flags['lr-schedule'] as 'constant' | 'cosine' | undefined) ?? 'constant',
    warmup: num('warmup', 0),
    weightDecay: num('weight-decay', 0),
    clipNorm: num('clip-norm', 1),
    l1: num('l1', 0),
    ema: num('ema', 0),
    ...(flags.dropout !== undefined ? { dropout: Number(flags.dropout) } : {}),
    condDropout: num('cond-dropout', 0.1),
    ...(Object.keys(augment).length > 0 ? { augment } : {}),
    seed: num('seed', 0),
    out,
    ckptEvery: num('ckpt-every', 100),
    sampleEvery: num('sample-every', 0),
    sampleSteps: num('sample-steps', 25),
  };
}

/** Runs training with a progress bar (step, loss, steps/s, ETA over the steps left). */
export async function runTraining(model: TextToImage, spec: DataSpec, options: BaseTrainOptions, quiet: boolean, label = 'train'): Promise<void> {
  let bar: ProgressBar | null = null;
  const result = await trainBase(model, (size) => trainingSource(spec, size), {
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
  const out = path.resolve(String(flags.out ?? 'runs/base'));
  const stepsFlag = flags.steps === undefined ? undefined : Number(flags.steps);
  const stages = flags.stages === undefined ? undefined : parseStages(String(flags.stages));
  const steps = stepsFlag ?? stages?.reduce((n, s) => n + s.steps, 0) ?? 1000;
  if (stages && stepsFlag !== undefined && stages.reduce((n, s) => n + s.steps, 0) !== stepsFlag) {
    throw new FlagError(`--stages adds up to ${stages.reduce((n, s) => n + s.steps, 0)} steps but --steps is ${stepsFlag}`);
  }
  const resume = flags.resume === undefined ? undefined : flags.resume === true ? path.join(out, 'checkpoint') : path.resolve(String(flags.resume));
  if (resume !== undefined && flags.init !== undefined) throw new FlagError('--resume and --init exclude each other (--resume continues a run, --init starts one from weights)');
  const seed = Number(flags.seed ?? 0);

  let model: TextToImage;
  if (resume !== undefined) {
    model = TextToImage.load(resume);
  } else if (flags.init !== undefined) {
    model = TextToImage.load(path.resolve(String(flags.init)));
  } else {
    const captions = (await loadTrainingData(spec, null)).map((e: Example) => e.caption);
    const tokenizer = trainTokenizer(captions, Number(flags.vocab ?? 1024));
    model = TextToImage.create(tokenizer, {
      preset: (flags.preset as DiTPreset | undefined) ?? 'tiny',
      schedule: (flags.schedule as BetaScheduleKind | undefined) ?? 'cosine',
      prediction: (flags.prediction as PredictionKind | undefined) ?? 'v',
      seed,
    });
  }
  if (flags.prediction !== undefined && (resume !== undefined || flags.init !== undefined) && model.prediction !== flags.prediction) {
    throw new FlagError(`--prediction ${String(flags.prediction)} does not match the checkpoint's prediction ${model.prediction}`);
  }
  if (flags.preset !== undefined && (resume !== undefined || flags.init !== undefined) && model.preset !== flags.preset) {
    throw new FlagError(`--preset ${String(flags.preset)} does not match the checkpoint's preset ${model.preset}`);
  }
  const base = trainOptionsFromFlags(flags, out);
  const samplePrompts = flags['sample-prompts'] === undefined ? await defaultSamplePrompts(spec) : String(flags['sample-prompts']).split('|');
  const options: BaseTrainOptions = { ...base, steps, ...(stages ? { stages } : {}), samplePrompts, ...(resume ? { resume } : {}) };
  resolveStages(model, options);
  console.log(
    `train-base: ${model.preset} model, ${(model.dit.parameterCount() / 1e6).toFixed(2)}M parameters, ${model.imageSize}x${model.imageSize}, ` +
      `${steps} steps of ${options.batch}${resume ? `, resuming from ${resume}` : ''}`,
  );
  await runTraining(model, spec, options, Boolean(flags.quiet), 'train-base');
  const modelOut = path.resolve(String(flags['model-out'] ?? path.join(out, 'model')));
  model.save(modelOut, { dtype: (flags['save-dtype'] as 'f32' | 'bf16' | undefined) ?? 'f32' });
  console.log(`train-base: model written to ${modelOut}; checkpoint (resumable) in ${path.join(out, 'checkpoint')}`);
  model.dispose();
}

/** Four captions from the data, for the sample grids. */
async function defaultSamplePrompts(spec: DataSpec): Promise<string[]> {
  const examples = await loadTrainingData(spec, null);
  const prompts: string[] = [];
  for (let i = 0; i < examples.length && prompts.length < 4; i += Math.max(1, Math.floor(examples.length / 4))) prompts.push(examples[i]!.caption);
  return prompts;
}
