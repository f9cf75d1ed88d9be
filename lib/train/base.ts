// Base training of the text-to-image model, a thin use of the one training engine
// (lib/train/loop/engine.ts): the diffusion loss (lib/train/objectives/diffusion.ts) with
// timesteps uniform in [0, T), 10% condition dropout (the caption replaced by the empty prompt,
// which is what classifier-free guidance's unconditional branch reads), dropout inside the DiT's
// blocks, host-side augmentation, and stage-wise resolution (each stage a phase of the engine;
// positions, their Adam moments and their EMA interpolated between stages). The engine owns the
// optimiser (AdamW with weight decay and an optional L1 penalty, a learning-rate schedule,
// clipping, accumulation, EMA), the random streams and exact resume.
import path from 'node:path';
import { loadCheckpoint } from '../io/checkpoint.js';
import { checkOutputDirectory } from '../io/output_paths.js';
import { firstNonFinite } from '../numeric.js';
import { noGrad } from '../autograd/variable.js';
import { resizeGrid } from '../nn/dit.js';
import type { AdamW } from '../optim/adamw.js';
import { EMA } from '../optim/ema.js';
import { keep } from '../scope.js';
import { fromArray, type Tensor } from '../tensor.js';
import { applyAugmentation, drawAugmentation, type AugmentOptions } from './augment.js';
import { TextToImage } from '../models/text_to_image.js';
import { EpochSampler } from '../data/epoch_sampler.js';
import { batchDrawer, phaseOrderSeed, type BatchDrawer, type DataSource, type Example, type ExampleStream } from './loop/batches.js';
import { inShard, shardedGenerator } from './loop/dist.js';
import { checkOptimOptions, runTraining, type LoopResult, type OptimOptions, type RunOptions, type StepReport as LoopStepReport } from './loop/engine.js';
import { diffusionLossStep } from './objectives/diffusion.js';

export { EpochSampler };
export type { DataSource, Example, ExampleStream };

export interface Stage {
  /** Image side in pixels (a multiple of the patch size). */
  resolution: number;
  /** Optimiser steps spent in this stage. */
  steps: number;
}

/**
 * Base training's options: the engine's optimisation and run options (steps, lr and its
 * schedule, weight decay, clipping, L1, EMA, accumulation, seed; out, checkpoints, grids, resume),
 * and what base training adds.
 */
export interface BaseTrainOptions extends OptimOptions, Omit<RunOptions, 'onStep'> {
  /** Total optimiser steps (the sum of the stages' steps when stages are given). */
  steps: number;
  batch: number;
  /**
   * Dropout probability inside the DiT's blocks while training (attention outputs and MLP
   * activations; see DiTConfig.dropout). Sets the model's dropout, which its saved config keeps;
   * default: leave the model's as it is (0 unless it was built or trained with dropout).
   */
  dropout?: number;
  /** Probability of training a sample on the empty prompt (classifier-free guidance). */
  condDropout?: number;
  augment?: AugmentOptions;
  /** Resolutions in order; default one stage at the model's current size for all steps. */
  stages?: readonly Stage[];
  samplePrompts?: readonly string[];
  sampleSteps?: number;
  /** Names the training data (e.g. "256 procedural figures (seed 0)"): saved with the checkpoint, so a resume on other data is refused. */
  dataIdentity?: string;
  onStep?: (report: StepReport) => void;
  /** Writes a labelled grid of images [N, 3, H, W] in [-1, 1]; injected so tests can skip images. */
  writeGrid?: (file: string, images: Tensor<'f32'>, labels: readonly string[]) => Promise<void>;
}

/** The engine's step report, with the stage's resolution in place of the generic metrics. */
export interface StepReport extends Omit<LoopStepReport, 'metrics'> {
  resolution: number;
}

export interface TrainResult {
  /** Loss of every step taken by this call (resumed runs: from the resume point). */
  losses: number[];
  /** Step reached. */
  step: number;
  checkpoint?: string;
}

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


/** The options trainBase checks itself; the engine checks the optimisation and run options. */
function checkBaseOptions(options: BaseTrainOptions): void {
  const probability = (name: string, v: number | undefined): void => {
    if (v !== undefined && !(v >= 0 && v < 1)) throw new RangeError(`train: ${name} must be in [0, 1), got ${v}`);
  };
  if (!Number.isInteger(options.batch) || options.batch < 1) throw new RangeError(`train: batch must be an integer >= 1, got ${options.batch}`);
  probability('condDropout', options.condDropout);
  probability('dropout', options.dropout);
}

/**
 * Trains `model` in place. Returns the losses of the steps taken; writes checkpoints (model,
 * optimiser, EMA, random streams, step) and sample grids under `options.out` when given.
 */
export async function trainBase(model: TextToImage, data: DataSource, options: BaseTrainOptions): Promise<TrainResult> {
  checkOptimOptions('train', options, { ...(options.ckptEvery === undefined ? {} : { ckptEvery: options.ckptEvery }), ...(options.sampleEvery === undefined ? {} : { sampleEvery: options.sampleEvery }), ...(options.stopAt === undefined ? {} : { stopAt: options.stopAt }) });
  checkBaseOptions(options);
  const stages = resolveStages(model, options);
  if (options.out !== undefined) checkOutputDirectory(path.join(options.out, 'samples'), 'train: out');
  const seed = options.seed ?? 0;
  const condDropout = options.condDropout ?? 0.1;
  if (options.dropout !== undefined) model.dit.dropout = options.dropout;
  let drawer: BatchDrawer | null = null;
  let drawerPhase = -1;
  const result: LoopResult = await runTraining({
    op: 'train',
    optim: options,
    run: { ...options, onStep: (r: LoopStepReport) => options.onStep?.({ step: r.step, total: r.total, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm, resolution: r.metrics.resolution!, seconds: r.seconds }) },
    settings: {
      batch: options.batch,
      data: options.dataIdentity ?? null,
      condDropout,
      augment: options.augment ? { ...options.augment } : null,
      dropout: model.dit.dropout,
      stages: stages.map((s) => ({ resolution: s.resolution, steps: s.steps })),
    },
    phases: stages.map((s) => s.steps),
    shardedBatch: { option: 'batch', size: options.batch },
    parameters: () => [...model.dit.namedParameters()],
    enterPhase: (phase, optimizer, ema) => changeResolution(model, stages[phase]!.resolution, optimizer, ema),
    leavePhase: async () => {
      await drawer?.close();
      drawer = null;
      drawerPhase = -1;
    },
    micro: async ({ phase, phaseStep, micro, accumulate, streams, shard }) => {
      const resolution = stages[phase]!.resolution;
      model.dit.dropoutGenerator = shardedGenerator(streams.dropout, shard);
      if (drawer === null || drawerPhase !== phase) {
        await drawer?.close();
        drawer = batchDrawer('train', await data(resolution), options.batch, model.channels * resolution * resolution, phaseOrderSeed(seed, phase), shard);
        drawerPhase = phase;
      }
      const examples = await drawer.batch((phaseStep * accumulate + micro) * options.batch);
      const perImage = model.channels * resolution * resolution;
      const pixels = new Float32Array(shard.count * perImage);
      const captions: string[] = [];
      const timesteps: number[] = [];
      // The randomness of every sample of the micro-batch, in the one-process order; this rank keeps its shard's.
      for (let i = 0; i < options.batch; i++) {
        const augmentation = options.augment ? drawAugmentation(options.augment, resolution, resolution, () => streams.host.next()) : null;
        const dropCaption = streams.host.next() < condDropout;
        const timestep = streams.host.int(model.schedule.steps);
        if (!inShard(i, shard)) continue;
        const example = examples[i - shard.start]!;
        const image = augmentation ? applyAugmentation({ data: example.image, channels: model.channels, height: resolution, width: resolution }, augmentation).data : example.image;
        pixels.set(image, (i - shard.start) * perImage);
        captions.push(dropCaption ? '' : example.caption);
        timesteps.push(timestep);
      }
      const loss = diffusionLossStep(model, { pixels, captions, timesteps, resolution }, { noise: shardedGenerator(streams.noise, shard), lossScale: 1 / accumulate });
      return { loss, metrics: { resolution } };
    },
    checkCheckpointTarget: (dir) => TextToImage.checkSaveTarget(dir, 'train: out'),
    saveCheckpoint: (dir, payload) => model.save(dir, { dtype: 'f32', optimizer: payload.optimizer, trainer: { ...payload.trainer }, extraFiles: payload.extraFiles }),
    restoreCheckpoint: (requested) => {
      const { model: weights, optimizer: moments, files, dir } = loadCheckpoint(requested);
      const dispose = (): void => {
        for (const t of [...Object.values(weights), ...Object.values(moments)]) t.dispose();
      };
      try {
        const nonFinite = firstNonFinite(weights);
        if (nonFinite !== undefined) throw new Error(`train: cannot resume from ${path.join(dir, 'model.safetensors')}: ${nonFinite}`);
        noGrad(() => model.dit.loadStateDict(weights));
      } catch (err) {
        dispose();
        throw err instanceof Error && err.message.startsWith('train:') ? err : new Error(`train: cannot resume from ${path.join(dir, 'model.safetensors')}: ${(err as Error).message}`);
      }
      return { dir, moments, files, dispose };
    },
    writeSamples: async (file, withWeights) => {
      const prompts = options.samplePrompts ?? [];
      if (prompts.length === 0 || options.writeGrid === undefined) return;
      const images = withWeights(() => keep(model.generate({ prompts, steps: options.sampleSteps ?? 25, seed, cfg: 5 })));
      try {
        await options.writeGrid(file, images, prompts);
      } finally {
        images.dispose();
      }
    },
    train: () => model.dit.train(),
    finish: () => model.dit.eval(),
  });
  return { losses: result.losses, step: result.step, ...(result.checkpoint ? { checkpoint: result.checkpoint } : {}) };
}
