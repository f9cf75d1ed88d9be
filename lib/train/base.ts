// Base training of the text-to-image model: MSE of the model's prediction (eps or v, see
// TextToImage) with timesteps uniform in [0, T), 10% condition dropout (the caption replaced by the empty prompt, which is what
// classifier-free guidance's unconditional branch reads), AdamW with weight decay and an
// optional L1 penalty, a learning-rate schedule, clipping by global norm, optional EMA of the
// weights, dropout inside the DiT's blocks, host-side augmentation, gradient accumulation and
// stage-wise resolution (positions interpolated between stages).
//
// Exact resume: everything random in a step is drawn from three streams whose states are saved
// with the checkpoint (a host stream for batch order, timesteps, condition dropout and
// augmentation; a Philox generator for the noise; another for the DiT's dropout masks, so that
// switching dropout on or off leaves the noise of every step as it was), and the model,
// optimiser moments and EMA are saved in f32. A run resumed at step k therefore computes the same
// numbers as the uninterrupted run from step k on.
import path from 'node:path';
import { loadCheckpoint } from '../io/checkpoint.js';
import { checkOutputDirectory } from '../io/output_paths.js';
import { firstNonFinite, nonFiniteStepError } from '../numeric.js';
import * as F from '../autograd/functions.js';
import { backward } from '../autograd/backward.js';
import { noGrad, type Variable } from '../autograd/variable.js';
import { qSample } from '../diffusion/sampler.js';
import { resizeGrid } from '../nn/dit.js';
import { Generator, randn, type GeneratorState } from '../ops/random.js';
import { AdamW } from '../optim/adamw.js';
import { EMA } from '../optim/ema.js';
import { lrSchedule, type LrScheduleKind } from '../optim/schedule.js';
import { keep, tidy } from '../scope.js';
import { fromArray, type Tensor } from '../tensor.js';
import { decodeSafetensors, encodeSafetensors } from '../io/safetensors.js';
import { augment, type AugmentOptions } from './augment.js';
import { TextToImage } from '../models/text_to_image.js';
import { HostRandom } from '../host_random.js';
import { EpochSampler } from '../data/epoch_sampler.js';
import { checkOptimizerMoments, checkResume, readTrainerState, runSettings, type RunSettings } from './resume.js';

export { EpochSampler };

/** One training image (CHW, values in [-1, 1]) and its caption. */
export interface Example {
  image: Float32Array;
  caption: string;
}

/**
 * Examples made on demand: example k of a stage is the k-th drawn (no epochs, nothing repeats),
 * e.g. lib/data's FigureStream. `prefetch` announces the next batch so it can be made while the
 * current one trains; the trainer closes the stream when its stage ends.
 */
export interface ExampleStream {
  readonly kind: 'stream';
  take(start: number, count: number): Promise<Example[]>;
  prefetch(start: number, count: number): void;
  close(): Promise<void>;
}

/** The training set at a resolution (stage-wise training asks once per stage): a fixed list, or a stream. */
export type DataSource = (imageSize: number) => Promise<readonly Example[] | ExampleStream> | readonly Example[] | ExampleStream;

export interface Stage {
  /** Image side in pixels (a multiple of the patch size). */
  resolution: number;
  /** Optimiser steps spent in this stage. */
  steps: number;
}

export interface BaseTrainOptions {
  /** Total optimiser steps (the sum of the stages' steps when stages are given). */
  steps: number;
  batch: number;
  lr: number;
  lrSchedule?: LrScheduleKind;
  warmup?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this (0: off). */
  clipNorm?: number;
  /** L1 penalty on every weight (0: off). */
  l1?: number;
  /** EMA decay (0: no EMA). Samples and the final model use the averaged weights. */
  ema?: number;
  /**
   * Dropout probability inside the DiT's blocks while training (attention outputs and MLP
   * activations; see DiTConfig.dropout). Sets the model's dropout, which its saved config keeps;
   * default: leave the model's as it is (0 unless it was built or trained with dropout).
   */
  dropout?: number;
  /** Probability of training a sample on the empty prompt (classifier-free guidance). */
  condDropout?: number;
  augment?: AugmentOptions;
  /** Micro-batches per optimiser step (their gradients are averaged). */
  accumulate?: number;
  /** Resolutions in order; default one stage at the model's current size for all steps. */
  stages?: readonly Stage[];
  seed?: number;
  /** Output directory: checkpoints under out/checkpoint, sample grids under out/samples. */
  out?: string;
  /** Write a checkpoint every k steps (and always at the end when `out` is set; 0: only at the end). */
  ckptEvery?: number;
  /** Write a labelled sample grid every k steps (0: off). */
  sampleEvery?: number;
  samplePrompts?: readonly string[];
  sampleSteps?: number;
  /** Resume from this checkpoint directory (written by a run with the same options). */
  resume?: string;
  /** Resume with zero AdamW moments (a checkpoint without optimizer.safetensors); default: that is an error. */
  resetOptimizer?: boolean;
  /** Names the training data (e.g. "256 procedural figures (seed 0)"): saved with the checkpoint, so a resume on other data is refused. */
  dataIdentity?: string;
  /** Stop after this step even though `steps` is larger (an interrupted run; for tests). */
  stopAt?: number;
  /** Called once before the first step with the step training starts from (0, or the resume point). */
  onStart?: (startStep: number) => void;
  onStep?: (report: StepReport) => void;
  /** Called with the path of each sample grid and checkpoint written. */
  onArtifact?: (kind: 'samples' | 'checkpoint', file: string) => void;
  /** Writes a labelled grid of images [N, 3, H, W] in [-1, 1]; injected so tests can skip images. */
  writeGrid?: (file: string, images: Tensor<'f32'>, labels: readonly string[]) => Promise<void>;
}

export interface StepReport {
  /** 1-based index of the step just taken. */
  step: number;
  total: number;
  loss: number;
  lr: number;
  gradNorm: number;
  resolution: number;
  seconds: number;
}

export interface TrainResult {
  /** Loss of every step taken by this call (resumed runs: from the resume point). */
  losses: number[];
  /** Step reached. */
  step: number;
  checkpoint?: string;
}

/** What a training checkpoint's state.json holds under `trainer`, besides the tensors. */
export interface TrainerState {
  step: number;
  optimizerStep: number;
  stage: number;
  hostRandom: number;
  noise: GeneratorState;
  /** Absent in checkpoints written before the DiT had dropout. */
  dropout?: GeneratorState;
  losses: number[];
  ema: boolean;
  /** Absent in checkpoints written before runs recorded their settings. */
  run?: RunSettings;
}

const emaFile = 'ema.safetensors';

/** The stages for `options`, checked against the model. */
export function resolveStages(model: TextToImage, options: Pick<BaseTrainOptions, 'steps' | 'stages'>): Stage[] {
  const stages = options.stages && options.stages.length > 0 ? [...options.stages] : [{ resolution: model.imageSize, steps: options.steps }];
  const patch = model.dit.config.patchSize;
  for (const s of stages) {
    if (!Number.isInteger(s.resolution) || s.resolution < patch || s.resolution % patch !== 0) {
      throw new RangeError(`train: stage resolution ${s.resolution} must be a positive multiple of the patch size ${patch}`);
    }
    if (!Number.isInteger(s.steps) || s.steps < 1) throw new RangeError(`train: stage steps must be integers >= 1, got ${s.steps}`);
  }
  const total = stages.reduce((n, s) => n + s.steps, 0);
  if (total !== options.steps) throw new RangeError(`train: the stages add up to ${total} steps but steps is ${options.steps}`);
  return stages;
}

/** Resizes the per-position rows of a [gh * gw, width] tensor (positions, their moments, their EMA). */
function resizePositionRows(t: Tensor<'f32'>, from: number, to: number): Tensor<'f32'> {
  const width = t.shape[1]!;
  return fromArray(resizeGrid(t.toArray(), from, from, width, to, to), [to * to, width], { device: t.device });
}

/**
 * Moves the model to another resolution: the DiT interpolates its position table, and the
 * optimiser's moments and the EMA shadow of that table are resampled the same way.
 */
function changeResolution(model: TextToImage, resolution: number, optimizer: AdamW, ema: EMA | null): EMA | null {
  if (resolution === model.imageSize) return ema;
  const patch = model.dit.config.patchSize;
  const fromGrid = model.imageSize / patch;
  const toGrid = resolution / patch;
  const hasLearnedPositions = model.dit.config.positions === 'learned';
  const state = optimizer.stateDict();
  const moments: Record<string, Tensor<'f32'>> = {};
  if (hasLearnedPositions) {
    for (const key of ['pos.m', 'pos.v']) {
      const t = state.tensors[key];
      if (t !== undefined) moments[key] = resizePositionRows(t, fromGrid, toGrid);
    }
  }
  const oldPositions = ema?.shadow.get('pos');
  const emaPositions = hasLearnedPositions && oldPositions ? resizePositionRows(oldPositions, fromGrid, toGrid) : null;
  model.dit.interpolatePositions(resolution);
  if (Object.keys(moments).length > 0) optimizer.loadStateDict({ tensors: moments, step: state.step });
  for (const t of Object.values(moments)) t.dispose();
  if (ema === null) return null;
  // A new EMA over the same (now resized) parameters, carrying the old averages over.
  const next = new EMA(model.dit.namedParameters(), ema.decay);
  for (const [name, shadow] of next.shadow) {
    const old = name === 'pos' && emaPositions ? emaPositions : ema.shadow.get(name);
    if (old !== undefined) shadow.copy_(old);
  }
  emaPositions?.dispose();
  ema.dispose();
  return next;
}

function checkOptions(options: BaseTrainOptions): void {
  const positiveInt = (name: string, v: number | undefined): void => {
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new RangeError(`train: ${name} must be an integer >= 1, got ${v}`);
  };
  const probability = (name: string, v: number | undefined): void => {
    if (v !== undefined && !(v >= 0 && v < 1)) throw new RangeError(`train: ${name} must be in [0, 1), got ${v}`);
  };
  const nonNegative = (name: string, v: number | undefined): void => {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new RangeError(`train: ${name} must be finite and >= 0, got ${v}`);
  };
  positiveInt('steps', options.steps);
  positiveInt('batch', options.batch);
  positiveInt('accumulate', options.accumulate);
  if (!(options.lr > 0 && Number.isFinite(options.lr))) throw new RangeError(`train: lr must be finite and > 0, got ${options.lr}`);
  probability('condDropout', options.condDropout);
  probability('dropout', options.dropout);
  probability('ema', options.ema);
  for (const name of ['weightDecay', 'clipNorm', 'l1', 'warmup', 'ckptEvery', 'sampleEvery'] as const) nonNegative(name, options[name]);
}

/**
 * Trains `model` in place. Returns the losses of the steps taken; writes checkpoints (model,
 * optimiser, EMA, RNG states, step) and sample grids under `options.out` when given.
 */
export async function trainBase(model: TextToImage, data: DataSource, options: BaseTrainOptions): Promise<TrainResult> {
  checkOptions(options);
  const stages = resolveStages(model, options);
  if (options.out !== undefined) {
    TextToImage.checkSaveTarget(path.join(options.out, 'checkpoint'), 'train: out');
    checkOutputDirectory(path.join(options.out, 'samples'), 'train: out');
  }
  const seed = options.seed ?? 0;
  const accumulate = options.accumulate ?? 1;
  const condDropout = options.condDropout ?? 0.1;
  const schedule = lrSchedule(options.lrSchedule ?? 'constant', options.lr, options.steps, options.warmup ?? 0);
  const hostRandom = new HostRandom(seed);
  const noiseGenerator = new Generator(seed + 1);
  const dropoutGenerator = new Generator(seed + 2);
  if (options.dropout !== undefined) model.dit.dropout = options.dropout;
  model.dit.dropoutGenerator = dropoutGenerator;
  const stopAt = Math.min(options.stopAt ?? options.steps, options.steps);

  const optimizer = new AdamW(model.dit.namedParameters(), {
    lr: options.lr,
    weightDecay: options.weightDecay ?? 0,
    l1: options.l1 ?? 0,
  });
  let ema: EMA | null = (options.ema ?? 0) > 0 ? new EMA(model.dit.namedParameters(), options.ema) : null;
  let step = 0;
  let stageIndex = 0;
  const previousLosses: number[] = [];

  if (options.resume !== undefined) {
    const { state, file } = readTrainerState(options.resume);
    if (state.ema !== (ema !== null)) throw new Error(`train: ${options.resume} was written ${state.ema ? 'with' : 'without'} --ema; resume with the same setting`);
    checkResume(state, file, options, stages, model.dit.dropout);
    ema = changeResolution(model, stages[state.stage]!.resolution, optimizer, ema);
    loadTrainingTensors(options.resume, model, optimizer, ema, state, options.resetOptimizer ?? false);
    step = state.step;
    stageIndex = state.stage;
    hostRandom.state = state.hostRandom;
    noiseGenerator.setState(state.noise);
    // An older checkpoint's run drew no dropout masks in the DiT: its stream is still at the start.
    if (state.dropout !== undefined) dropoutGenerator.setState(state.dropout);
    previousLosses.push(...state.losses);
  }

  const losses: number[] = [];
  let lastCheckpoint: string | undefined;
  let lastGoodCheckpoint = options.resume;
  const stageStart = (index: number): number => stages.slice(0, index).reduce((n, s) => n + s.steps, 0);
  model.dit.train();
  options.onStart?.(step);

  while (step < stopAt) {
    while (step >= stageStart(stageIndex + 1)) stageIndex += 1;
    const stage = stages[stageIndex]!;
    ema = changeResolution(model, stage.resolution, optimizer, ema);
    const draw = batchDrawer(await data(stage.resolution), options.batch, model.channels * stage.resolution * stage.resolution, (seed ^ Math.imul(stageIndex + 1, 0x85ebca6b)) >>> 0);
    const stageEnd = Math.min(stageStart(stageIndex + 1), stopAt);

    try {
      while (step < stageEnd) {
        const started = performance.now();
        const lr = schedule(step);
        optimizer.lr = lr;
        let loss = 0;
        for (let micro = 0; micro < accumulate; micro++) {
          const drawn = ((step - stageStart(stageIndex)) * accumulate + micro) * options.batch;
          const examples = await draw.batch(drawn);
          loss += microStep(model, examples, options, { hostRandom, noiseGenerator, condDropout, accumulate, resolution: stage.resolution });
        }
        const gradNorm = (options.clipNorm ?? 0) > 0 ? optimizer.clipGradNorm(options.clipNorm!) : optimizer.gradNorm();
        const kept = lastGoodCheckpoint === undefined ? 'no checkpoint had been written' : `the last checkpoint, ${lastGoodCheckpoint}, holds the last good weights`;
        const failure = nonFiniteStepError('train', step + 1, { loss, gradNorm }, kept);
        if (failure !== undefined) {
          optimizer.zeroGrad();
          ema?.dispose();
          optimizer.dispose();
          model.dit.eval();
          throw failure;
        }
        optimizer.step();
        optimizer.zeroGrad();
        ema?.update();
        step += 1;
        losses.push(loss);
        options.onStep?.({ step, total: options.steps, loss, lr, gradNorm, resolution: stage.resolution, seconds: (performance.now() - started) / 1000 });
        // N-API runs the finalisers of collected tensor wrappers from the event loop: without
        // this turn a synchronous run of steps holds every step's wrapper memory until it ends.
        await new Promise<void>((resolve) => setImmediate(resolve));

        const finished = step === stopAt;
        if (options.out !== undefined && ((options.ckptEvery && step % options.ckptEvery === 0) || finished)) {
          lastCheckpoint = path.join(options.out, 'checkpoint');
          saveTrainingCheckpoint(lastCheckpoint, model, optimizer, ema, {
            step,
            optimizerStep: optimizer.stepCount,
            stage: stageIndex,
            hostRandom: hostRandom.state,
            noise: noiseGenerator.state(),
            dropout: dropoutGenerator.state(),
            losses: [...previousLosses, ...losses],
            ema: ema !== null,
            run: runSettings(options, stages, model.dit.dropout),
          });
          lastGoodCheckpoint = lastCheckpoint;
          options.onArtifact?.('checkpoint', lastCheckpoint);
        }
        if (options.out !== undefined && options.sampleEvery && (step % options.sampleEvery === 0 || (finished && step === options.steps))) {
          const file = path.join(options.out, 'samples', `step-${String(step).padStart(6, '0')}.png`);
          await writeSamples(model, ema, options, file, seed);
          options.onArtifact?.('samples', file);
        }
      }
    } finally {
      await draw.close();
    }
  }
  if (ema !== null && step === options.steps) {
    // The final model is the averaged one.
    for (const [name, p] of model.dit.namedParameters()) p.value.copy_(ema.shadow.get(name)!);
  }
  ema?.dispose();
  optimizer.dispose();
  model.dit.eval();
  return { losses, step, ...(lastCheckpoint ? { checkpoint: lastCheckpoint } : {}) };
}

interface MicroContext {
  hostRandom: HostRandom;
  noiseGenerator: Generator;
  condDropout: number;
  accumulate: number;
  resolution: number;
}

interface BatchDrawer {
  /** The examples of the micro-batch that starts with the `drawn`-th example of the stage. */
  batch(drawn: number): Promise<Example[]>;
  close(): Promise<void>;
}

/** Micro-batches from a list (in EpochSampler order) or from a stream (in its order, the next one made ahead). */
function batchDrawer(source: readonly Example[] | ExampleStream, batch: number, valuesPerImage: number, orderSeed: number): BatchDrawer {
  const checked = <T extends readonly Example[]>(examples: T): T => {
    const bad = examples.find((e) => e.image.length !== valuesPerImage);
    if (bad !== undefined) throw new RangeError(`train: an image has ${bad.image.length} values, expected ${valuesPerImage}`);
    return examples;
  };
  if (!Array.isArray(source)) {
    const stream = source as ExampleStream;
    return {
      batch: async (drawn) => {
        const examples = stream.take(drawn, batch);
        stream.prefetch(drawn + batch, batch);
        return checked(await examples);
      },
      close: () => stream.close(),
    };
  }
  const examples = source as readonly Example[];
  if (examples.length === 0) throw new Error('train: the dataset is empty');
  checked(examples);
  const sampler = new EpochSampler(examples.length, orderSeed);
  return {
    batch: async (drawn) => Array.from({ length: batch }, (_, i) => examples[sampler.at(drawn + i)]!),
    close: async () => {},
  };
}

/** Forward and backward of one micro-batch; gradients accumulate in the parameters. Returns its loss share. */
function microStep(model: TextToImage, examples: readonly Example[], options: BaseTrainOptions, ctx: MicroContext): number {
  const { batch } = options;
  const { hostRandom, noiseGenerator, resolution } = ctx;
  const perImage = model.channels * resolution * resolution;
  const pixels = new Float32Array(batch * perImage);
  const captions: string[] = [];
  const timesteps: number[] = [];
  for (let i = 0; i < batch; i++) {
    const example = examples[i]!;
    const image = options.augment
      ? augment({ data: example.image, channels: model.channels, height: resolution, width: resolution }, options.augment, () => hostRandom.next()).data
      : example.image;
    pixels.set(image, i * perImage);
    captions.push(hostRandom.next() < ctx.condDropout ? '' : example.caption);
    timesteps.push(hostRandom.int(model.schedule.steps));
  }
  return tidy(() => {
    const x0 = fromArray(pixels, [batch, model.channels, resolution, resolution]);
    const noise = randn(x0.shape, { generator: noiseGenerator });
    const xt = qSample(x0, timesteps, noise, model.schedule);
    let loss: Variable = F.mse(model.predict(xt, timesteps, model.encodePrompts(captions)), model.target(x0, noise, timesteps));
    if (ctx.accumulate > 1) loss = F.scale(loss, 1 / ctx.accumulate);
    const value = loss.value.item();
    backward(loss);
    return value;
  });
}

async function writeSamples(model: TextToImage, ema: EMA | null, options: BaseTrainOptions, file: string, seed: number): Promise<void> {
  const prompts = options.samplePrompts ?? [];
  if (prompts.length === 0 || options.writeGrid === undefined) return;
  const render = (): Tensor<'f32'> => keep(model.generate({ prompts, steps: options.sampleSteps ?? 25, seed, cfg: 5 }));
  const images = ema ? ema.withAveraged(render) : render();
  try {
    await options.writeGrid(file, images, prompts);
  } finally {
    images.dispose();
  }
  model.dit.train();
}

function saveTrainingCheckpoint(dir: string, model: TextToImage, optimizer: AdamW, ema: EMA | null, state: TrainerState): void {
  model.save(dir, {
    dtype: 'f32',
    optimizer: optimizer.stateDict().tensors,
    trainer: { ...state },
    ...(ema !== null ? { extraFiles: { [emaFile]: encodeSafetensors(Object.fromEntries(ema.shadow), { metadata: { decay: String(ema.decay) } }) } } : {}),
  });
}

function loadTrainingTensors(requested: string, model: TextToImage, optimizer: AdamW, ema: EMA | null, state: TrainerState, resetOptimizer: boolean): void {
  const { model: weights, optimizer: moments, files, dir } = loadCheckpoint(requested);
  try {
    for (const [file, tensors] of [['model.safetensors', weights], ['optimizer.safetensors', moments]] as const) {
      const nonFinite = firstNonFinite(tensors);
      if (nonFinite !== undefined) throw new Error(`train: cannot resume from ${path.join(dir, file)}: ${nonFinite}`);
    }
    checkOptimizerMoments(dir, moments, optimizer.params.map((p) => p.name), state, resetOptimizer);
    try {
      noGrad(() => model.dit.loadStateDict(weights));
    } catch (err) {
      throw new Error(`train: cannot resume from ${path.join(dir, 'model.safetensors')}: ${(err as Error).message}`);
    }
    try {
      // A reset starts Adam over: zero moments with the bias correction of step 0, not of the run's step.
      optimizer.loadStateDict(resetOptimizer ? { tensors: {}, step: 0 } : { tensors: moments as Record<string, Tensor<'f32'>>, step: state.optimizerStep });
    } catch (err) {
      throw new Error(`train: cannot resume from ${path.join(dir, 'optimizer.safetensors')}: ${(err as Error).message}`);
    }
    if (ema !== null) {
      const bytes = files[emaFile];
      if (bytes === undefined) throw new Error(`train: ${dir} has no ${emaFile}`);
      const shadow = decodeSafetensors(typeof bytes === 'string' ? Buffer.from(bytes) : bytes, { source: path.join(dir, emaFile) }).tensors;
      try {
        for (const [name, t] of ema.shadow) {
          const saved = shadow[name];
          if (saved === undefined) throw new Error(`train: ${dir}/${emaFile} has no ${name}`);
          t.copy_(saved as Tensor<'f32'>);
        }
      } finally {
        for (const t of Object.values(shadow)) t.dispose();
      }
    }
  } finally {
    for (const t of [...Object.values(weights), ...Object.values(moments)]) t.dispose();
  }
}
