// Diffusion-DPO training of LoRA adapters on preference pairs, a thin use of the one training
// engine (lib/train/loop/engine.ts): the objective is lib/train/objectives/dpo.ts (plus the easy
// stage's statistics term when it is weighted in), the trained parameters are the adapters, and a
// checkpoint holds only them (with the optimiser's moments, the random streams and the run's
// settings), so a DPO run resumes exactly like base training, with the same learning-rate
// schedules, EMA and clipping. The base weights are frozen; the reference is the same model with
// its adapters disabled.
import path from 'node:path';
import * as F from '../autograd/index.js';
import { backward } from '../autograd/backward.js';
import { noGrad, type Variable } from '../autograd/variable.js';
import { checkCheckpointTarget, loadCheckpoint, saveCheckpoint } from '../io/checkpoint.js';
import { adapters, adapterStateDict, attachLora, loadAdapterStateDict, maxLoraRank, withAdaptersDisabled } from '../nn/lora.js';
import { concatFloat32, firstNonFinite } from '../numeric.js';
import { checkBeta } from '../ops/dpo_loss.js';
import { Generator } from '../ops/random.js';
import type { LrScheduleKind } from '../optim/schedule.js';
import { tidy } from '../scope.js';
import { fromArray, type Tensor } from '../tensor.js';
import { EpochSampler } from '../data/epoch_sampler.js';
import type { TextToImage } from '../models/text_to_image.js';
import type { PreferenceExample } from './preferences.js';
import { shardedGenerator, sliceOf } from './loop/dist.js';
import { runTraining, type RunOptions } from './loop/engine.js';
import { defaultBeta, dpoObjective, statMatchObjective } from './objectives/dpo.js';

export { defaultBeta, dpoObjective, statMatchObjective };
export type { DpoObjective, DpoObjectiveOptions, PreferencePairs, StatMatchBatch, StatMatchOptions } from './objectives/dpo.js';

/** The defaults of every DPO option, in one place: trainDpo, `train-dpo` and `curriculum` read them from here. */
export const dpoDefaults = {
  batch: 4,
  lr: 1e-4,
  beta: defaultBeta,
  rank: 8,
  textRank: 0,
  statWeight: 0,
  clipNorm: 1,
  seed: 0,
} as const;

export interface DpoStepReport {
  step: number;
  total: number;
  loss: number;
  accuracy: number;
  lr: number;
  gradNorm: number;
}

export interface DpoTrainOptions extends Omit<RunOptions, 'onStep'> {
  steps: number;
  /** Pairs per step (default 4). */
  batch?: number;
  /** AdamW learning rate of the adapters (default 1e-4). */
  lr?: number;
  lrSchedule?: LrScheduleKind;
  warmup?: number;
  /** EMA decay of the adapters (0: none). */
  ema?: number;
  /** Coefficient on the mse difference (default dpoDefaults.beta). */
  beta?: number;
  /** LoRA rank on the denoiser's attention projections (default 8). */
  rank?: number;
  /** LoRA rank on the text encoder's attention projections (default 0: none). */
  textRank?: number;
  /** Weight of statMatchObjective on the winners (HG-DPO's easy stage: 10000; default 0: off). */
  statWeight?: number;
  /** Clip the adapters' global gradient norm (default 1; 0: off). */
  clipNorm?: number;
  /** Seed of the pair order, the timesteps, the noise and the adapter initialisation (default 0). */
  seed?: number;
  /**
   * Which denoiser layers get adapters (default every attention projection). The curriculum's
   * hard stage trains the same layers; its inference rule restricts them afterwards.
   */
  pattern?: RegExp;
  /** Names the pairs (e.g. a pool directory and its index hash): saved with checkpoints, so a resume on other pairs is refused. */
  dataIdentity?: string;
  /** Prompts of the periodic grids (every `sampleEvery` steps under out/samples): the base row, then with the adapters. */
  samplePrompts?: readonly string[];
  sampleSteps?: number;
  /** Writes a labelled grid of images [N, 3, H, W] in [-1, 1]; injected so tests can skip images. */
  writeGrid?: (file: string, images: Tensor<'f32'>, labels: readonly string[]) => Promise<void>;
  onStep?: (report: DpoStepReport) => void;
}

/** The denoiser's and the text encoder's attention projections, where HG-DPO puts its LoRA. */
export const denoiserAttention = /^blocks\.\d+\.(attn|cross)\.(q|k|v|out)$/;
export const textEncoderAttention = /^text\.blocks\.\d+\.attn\.(q|k|v|out)$/;

/**
 * Checks `options` against `model` before any work (trainDpo runs it first; a command can run it
 * before loading its pairs): counts, ranks no larger than the adapted layers allow, a beta the
 * loss accepts, a finite learning rate.
 */
export function checkDpoOptions(model: TextToImage, options: DpoTrainOptions): void {
  const op = 'trainDpo';
  const positiveInt = (name: string, value: number): void => {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`${op}: ${name} must be an integer >= 1, got ${value}`);
  };
  positiveInt('steps', options.steps);
  positiveInt('batch', options.batch ?? dpoDefaults.batch);
  const rank = options.rank ?? dpoDefaults.rank;
  positiveInt('rank', rank);
  const textRank = options.textRank ?? dpoDefaults.textRank;
  if (!Number.isInteger(textRank) || textRank < 0) throw new RangeError(`${op}: textRank must be an integer >= 0, got ${textRank}`);
  for (const [name, value, pattern] of [['rank', rank, options.pattern ?? denoiserAttention], ['textRank', textRank, textEncoderAttention]] as const) {
    const limit = value > 0 ? maxLoraRank(model.dit, pattern) : undefined;
    if (value > 0 && limit === undefined) throw new RangeError(`${op}: no layer of the model matches the ${name} pattern ${String(pattern)}`);
    if (limit !== undefined && value > limit.rank) {
      throw new RangeError(`${op}: ${name} ${value} is more than ${limit.rank}, the most a LoRA update of ${limit.layer} can have (min of its input and output features)`);
    }
  }
  const statWeight = options.statWeight ?? dpoDefaults.statWeight;
  if (!(statWeight >= 0 && Number.isFinite(statWeight))) throw new RangeError(`${op}: statWeight must be finite and >= 0, got ${statWeight}`);
  const lr = options.lr ?? dpoDefaults.lr;
  if (!(lr > 0 && Number.isFinite(lr))) throw new RangeError(`${op}: lr must be finite and > 0, got ${lr}`);
  const clipNorm = options.clipNorm ?? dpoDefaults.clipNorm;
  if (!(clipNorm >= 0 && Number.isFinite(clipNorm))) throw new RangeError(`${op}: clipNorm must be finite and >= 0, got ${clipNorm}`);
  checkBeta(op, options.beta ?? dpoDefaults.beta);
  if ([...adapters(model.dit).keys()].length > 0) {
    throw new Error(`${op}: the model already carries ${adapters(model.dit).size} adapter(s); merge them into the weights first (bakeAdapters), since the reference is the model with its adapters disabled`);
  }
}

/**
 * Diffusion-DPO training of LoRA adapters on `pairs`: the base weights are frozen, adapters are
 * attached to the attention projections, and `steps` AdamW steps follow on dpoObjective (plus
 * statWeight times statMatchObjective on the winners). The adapters stay attached and the model
 * ends in eval mode; save them with adapterStateDict(model.dit). A step whose loss or gradient
 * norm is not finite stops the run with an error naming it. With `out`, checkpoints (adapters,
 * moments, streams) go to out/checkpoint and `resume` continues one exactly.
 */
export async function trainDpo(
  model: TextToImage,
  pairs: readonly PreferenceExample[],
  options: DpoTrainOptions,
): Promise<{ losses: number[]; accuracies: number[]; step: number; checkpoint?: string }> {
  const op = 'trainDpo';
  checkDpoOptions(model, options);
  const batch = options.batch ?? dpoDefaults.batch;
  const rank = options.rank ?? dpoDefaults.rank;
  const textRank = options.textRank ?? dpoDefaults.textRank;
  const statWeight = options.statWeight ?? dpoDefaults.statWeight;
  const beta = options.beta ?? dpoDefaults.beta;
  const seed = options.seed ?? dpoDefaults.seed;
  if (pairs.length === 0) throw new RangeError(`${op}: expected at least one preference pair`);
  const length = model.channels * model.imageSize * model.imageSize;
  pairs.forEach((p, i) => {
    if (p.winner.length !== length || p.loser.length !== length) {
      throw new RangeError(`${op}: pair ${i} has images of ${p.winner.length} and ${p.loser.length} values, expected ${length} (${model.channels} x ${model.imageSize} x ${model.imageSize})`);
    }
  });
  const initGenerator = new Generator(seed);
  model.dit.freeze();
  attachLora(model.dit, { pattern: options.pattern ?? denoiserAttention, rank, generator: initGenerator });
  if (textRank > 0) attachLora(model.dit, { pattern: textEncoderAttention, rank: textRank, generator: initGenerator });
  const sampler = new EpochSampler(pairs.length, seed);
  const trained = (): [string, Variable][] => [...model.dit.namedParameters()].filter(([, p]) => p.requiresGrad);

  const result = await runTraining({
    op,
    optim: {
      steps: options.steps,
      lr: options.lr ?? dpoDefaults.lr,
      clipNorm: options.clipNorm ?? dpoDefaults.clipNorm,
      seed,
      ...(options.lrSchedule === undefined ? {} : { lrSchedule: options.lrSchedule }),
      ...(options.warmup === undefined ? {} : { warmup: options.warmup }),
      ...(options.ema === undefined ? {} : { ema: options.ema }),
    },
    run: {
      ...options,
      onStep: (r) => options.onStep?.({ step: r.step, total: r.total, loss: r.loss, accuracy: r.metrics.accuracy ?? 0, lr: r.lr, gradNorm: r.gradNorm }),
    },
    settings: {
      batch,
      beta,
      rank,
      textRank,
      statWeight,
      pattern: String(options.pattern ?? denoiserAttention),
      pairs: pairs.length,
      data: options.dataIdentity ?? null,
    },
    shardedBatch: { option: 'batch', size: batch },
    parameters: trained,
    micro: ({ step, streams, shard }) => {
      // The pairs and timesteps of the whole batch, in the one-process order; this rank computes its shard of them.
      const batchPairs = Array.from({ length: batch }, (_, i) => pairs[sampler.at(step * batch + i)]!);
      const timesteps = sliceOf(Array.from({ length: batch }, () => streams.host.int(model.schedule.steps)), shard);
      const chosen = sliceOf(batchPairs, shard);
      const shape = [shard.count, model.channels, model.imageSize, model.imageSize];
      const noiseGenerator = shardedGenerator(streams.noise, shard);
      // The policy's batch is [winners; losers] of this rank's pairs: with dropout in the DiT, a
      // rank's masks are its contiguous part of the checkpointed dropout stream, not the rows the
      // one-process run would draw for those pairs (exact across world sizes only without dropout).
      model.dit.dropoutGenerator = shardedGenerator(streams.dropout, shard);
      const [loss, accuracy] = tidy(() => {
        const winners = fromArray(concatFloat32(chosen.map((p) => p.winner)), shape);
        const losers = fromArray(concatFloat32(chosen.map((p) => p.loser)), shape);
        const prompts = chosen.map((p) => p.prompt);
        const terms = dpoObjective(model, { prompts, winners, losers }, { noiseGenerator, timesteps, beta });
        const reported: [number, number] = [terms.loss.value.toArray()[0]!, terms.accuracy.toArray()[0]!]; // the backward frees the graph
        let total: Variable = terms.loss;
        if (statWeight > 0) total = F.add(total, F.scale(statMatchObjective(model, { prompts, images: winners }, { noiseGenerator, hostRandom: streams.host }).loss, statWeight));
        backward(total);
        return reported;
      });
      return { loss, metrics: { accuracy } };
    },
    checkCheckpointTarget: (dir) => checkCheckpointTarget(dir, `${op}: out`, checkpointFiles),
    saveCheckpoint: (dir, payload) =>
      saveCheckpoint(
        dir,
        { model: adapterStateDict(model.dit), optimizer: payload.optimizer, state: { format: dpoRunFormat, trainer: { ...payload.trainer } }, files: payload.extraFiles },
        { knownFiles: checkpointFiles },
      ),
    restoreCheckpoint: (requested) => {
      const { model: weights, optimizer: moments, files, dir, state } = loadCheckpoint(requested);
      const dispose = (): void => {
        for (const t of [...Object.values(weights), ...Object.values(moments)]) t.dispose();
      };
      try {
        if (state.format !== dpoRunFormat) throw new Error(`${op}: cannot resume from ${dir}: it is not a DPO run checkpoint (state.json format ${JSON.stringify(state.format)}, expected "${dpoRunFormat}")`);
        const nonFinite = firstNonFinite(weights);
        if (nonFinite !== undefined) throw new Error(`${op}: cannot resume from ${path.join(dir, 'model.safetensors')}: ${nonFinite}`);
        try {
          noGrad(() => loadAdapterStateDict(model.dit, weights));
        } catch (err) {
          throw new Error(`${op}: cannot resume from ${path.join(dir, 'model.safetensors')}: ${(err as Error).message}`);
        }
      } catch (err) {
        dispose();
        throw err;
      }
      return { dir, moments, files, dispose };
    },
    writeSamples: async (file, withWeights) => {
      const prompts = options.samplePrompts ?? [];
      if (prompts.length === 0 || options.writeGrid === undefined) return;
      const settings = { prompts, steps: options.sampleSteps ?? 25, seed, cfg: 5 };
      const before = withAdaptersDisabled(model.dit, () => model.generate(settings));
      const after = withWeights(() => model.generate(settings));
      const images = tidy(() => noGrad(() => F.concat([before, after], 0).value));
      try {
        await options.writeGrid(file, images, [...prompts.map((p) => `reference: ${p}`), ...prompts.map((p) => `DPO: ${p}`)]);
      } finally {
        for (const t of [before, after, images]) t.dispose();
      }
    },
    train: () => model.dit.train(),
    finish: () => model.dit.eval(),
  });
  return { losses: result.losses, accuracies: result.metrics.accuracy ?? [], step: result.step, ...(result.checkpoint ? { checkpoint: result.checkpoint } : {}) };
}

/** state.json's format of a DPO run's checkpoint (adapters, moments, trainer state). */
const dpoRunFormat = 'realtune-dpo-run';
const checkpointFiles = ['ema.safetensors'];
