// The Diffusion-DPO objective of a batch of preference pairs for the text-to-image model
// (SPEC section 1), the step every HG-DPO stage repeats, and HG-DPO's statistics-matching term
// of the easy stage (SPEC section 2). The trained part of the model is a set
// of adapters (LoRA on the denoiser and, optionally, its text encoder); the reference is the same
// model with them disabled, so no second copy of the weights exists.
//
// A pair (prompt, winner, loser) shares one timestep and one noise. Winners and losers go through
// the model as one batch [winners; losers] for the policy (with gradients) and once more for the
// reference (no gradients, adapters disabled, eval mode: a frozen model has no dropout).
import { backward } from '../autograd/backward.js';
import * as F from '../autograd/index.js';
import { noGrad, type Variable } from '../autograd/variable.js';
import { qSample } from '../diffusion/sampler.js';
import { HostRandom } from '../host_random.js';
import { adapters, attachLora, maxLoraRank, withAdaptersDisabled } from '../nn/lora.js';
import { nonFiniteStepError } from '../numeric.js';
import { checkBeta } from '../ops/dpo_loss.js';
import { axpy, scale as scaleTensor } from '../ops/elementwise.js';
import { Generator, randn } from '../ops/random.js';
import { AdamW } from '../optim/adamw.js';
import { tidy } from '../scope.js';
import { fromArray, shapeString, type Tensor } from '../tensor.js';
import { EpochSampler } from '../data/epoch_sampler.js';
import type { TextToImage } from '../models/text_to_image.js';
import type { PreferenceExample } from './preferences.js';

export interface PreferencePairs {
  /** One prompt per pair. */
  prompts: readonly string[];
  /** Images [pairs, C, H, W] in [-1, 1] at the model's size: the preferred one of each pair. */
  winners: Tensor<'f32'>;
  losers: Tensor<'f32'>;
}

export interface DpoObjectiveOptions {
  /** Coefficient on the mse difference (diffusers form); 2500 by default. */
  beta?: number;
  /** The stream of the shared noise. */
  noiseGenerator: Generator;
  /** Draws the shared timesteps, uniform in [0, T): one per pair. */
  hostRandom?: HostRandom;
  /** Fixed timesteps instead (one per pair), e.g. to evaluate on a grid. */
  timesteps?: readonly number[];
}

export interface DpoObjective extends F.DpoLossTerms {
  /** The timestep each pair was noised to. */
  timesteps: number[];
}

/**
 * eps of the frozen reference: the model with its adapters disabled, in eval mode (a frozen model
 * has no dropout), outside the graph.
 */
function referencePrediction(model: TextToImage, xt: Tensor<'f32'>, timesteps: readonly number[], prompts: readonly string[]): Tensor<'f32'> {
  return noGrad(() => {
    const wasTraining = model.dit.training;
    model.dit.eval();
    try {
      return withAdaptersDisabled(model.dit, () => tidy(() => model.predictEps(xt, timesteps, model.encodePrompts(prompts)).value));
    } finally {
      model.dit.train(wasTraining);
    }
  });
}

function requireAdapters(op: string, model: TextToImage): void {
  if (![...adapters(model.dit).values()].some((a) => a.enabled)) {
    throw new Error(`${op}: the model has no enabled adapter to train (the reference is the model with its adapters disabled)`);
  }
}

/** Checks that `images` holds `count` f32 images at the model's size, one per prompt. */
function checkImages(op: string, name: string, images: Tensor, model: TextToImage, count: number): void {
  const size = model.imageSize;
  const expected = [count, model.channels, size, size];
  if (images.dtype !== 'f32') throw new TypeError(`${op}: ${name} has dtype ${images.dtype}, expected f32`);
  if (shapeString(images.shape) !== shapeString(expected)) {
    throw new RangeError(`${op}: ${name} has shape ${shapeString(images.shape)}, expected ${shapeString(expected)} (one image per prompt)`);
  }
}

function checkPairs(model: TextToImage, pairs: PreferencePairs): number {
  const count = pairs.prompts.length;
  if (count === 0) throw new RangeError('dpoObjective: expected at least one pair, got no prompts');
  checkImages('dpoObjective', 'winners', pairs.winners, model, count);
  checkImages('dpoObjective', 'losers', pairs.losers, model, count);
  return count;
}

function pairTimesteps(model: TextToImage, count: number, options: DpoObjectiveOptions): number[] {
  const steps = model.schedule.steps;
  if (options.timesteps !== undefined) {
    const given = [...options.timesteps];
    if (given.length !== count || !given.every((t) => Number.isInteger(t) && t >= 0 && t < steps)) {
      throw new RangeError(`dpoObjective: timesteps must be ${count} integers in [0, ${steps}), got [${given.join(', ')}]`);
    }
    return given;
  }
  if (options.hostRandom === undefined) throw new TypeError('dpoObjective: give hostRandom (to draw the timesteps) or timesteps');
  return Array.from({ length: count }, () => options.hostRandom!.int(steps));
}

/**
 * The Diffusion-DPO loss of `pairs` for `model`, differentiable in the model's enabled adapters
 * (and any other parameter that requires grad). The model must carry adapters: without them the
 * policy is the reference and nothing can be learned. Metrics (implicit accuracy, the policy's
 * and the reference's mse per pair) come with the loss; dispose them or run inside tidy().
 */
export function dpoObjective(model: TextToImage, pairs: PreferencePairs, options: DpoObjectiveOptions): DpoObjective {
  const count = checkPairs(model, pairs);
  requireAdapters('dpoObjective', model);
  const timesteps = pairTimesteps(model, count, options);
  const both = [...timesteps, ...timesteps];
  const prompts = [...pairs.prompts, ...pairs.prompts];
  // The noise and the noised batch are constants of the graph: the loss's node frees them after
  // the backward (or now, when nothing was recorded).
  const { noise, noisy } = tidy(() => {
    const eps = randn(pairs.winners.shape, { generator: options.noiseGenerator });
    const xw = qSample(pairs.winners, timesteps, eps, model.schedule);
    const xl = qSample(pairs.losers, timesteps, eps, model.schedule);
    return { noise: eps, noisy: noGrad(() => F.concat([xw, xl], 0).value) };
  });
  const constants = [noise, noisy];
  try {
    const reference = referencePrediction(model, noisy, both, prompts);
    const refW = reference.slice(0, count);
    const refL = reference.slice(count, 2 * count);
    try {
      const policy = model.predictEps(noisy, both, model.encodePrompts(prompts));
      const [predW, predL] = F.split(policy, [count, count], 0) as [Variable, Variable];
      const terms = F.dpoLoss(predW, predL, refW, refL, noise, noise, { beta: options.beta ?? 2500 });
      const node = terms.loss.node;
      if (node !== null) node.owned.push(...constants.splice(0));
      return { ...terms, timesteps };
    } finally {
      for (const t of [reference, refW, refL]) t.dispose();
    }
  } finally {
    for (const t of constants) t.dispose();
  }
}

export interface StatMatchBatch {
  /** One prompt per image. */
  prompts: readonly string[];
  /** The easy stage's winners, [B, C, H, W] in [-1, 1] at the model's size. */
  images: Tensor<'f32'>;
}

export interface StatMatchOptions {
  /** The stream of the forward and the reverse-step noise. */
  noiseGenerator: Generator;
  /** Draws the batch's timestep, uniform in [0, T). */
  hostRandom?: HostRandom;
  /** A fixed timestep instead. */
  timestep?: number;
  /** Also match the channel standard deviations (default false: HG-DPO matches the mean only). */
  matchStd?: boolean;
}

/**
 * HG-DPO's statistics-matching term (SPEC section 2, easy stage; weighted 10000 against the DPO
 * loss there): noise the images to l_t (one t for the batch), take one reverse DDPM step, no
 * guidance, with the trained model and with the reference (adapters disabled),
 *   l_{t-1} = (l_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) + sigma_t z
 * (the same z for both, sigma_t the posterior std), and compare the channel means over the
 * spatial positions: mean over images and channels of (mu(l_{t-1}^theta) - mu(l_{t-1}^base))^2.
 * Differentiable in the model's enabled adapters.
 */
export function statMatchObjective(model: TextToImage, batch: StatMatchBatch, options: StatMatchOptions): { loss: Variable; timestep: number } {
  const op = 'statMatchObjective';
  const count = batch.prompts.length;
  if (count === 0) throw new RangeError(`${op}: expected at least one image, got no prompts`);
  checkImages(op, 'images', batch.images, model, count);
  requireAdapters(op, model);
  const steps = model.schedule.steps;
  let t: number;
  if (options.timestep !== undefined) {
    t = options.timestep;
    if (!Number.isInteger(t) || t < 0 || t >= steps) throw new RangeError(`${op}: timestep must be an integer in [0, ${steps}), got ${t}`);
  } else if (options.hostRandom !== undefined) {
    t = options.hostRandom.int(steps);
  } else {
    throw new TypeError(`${op}: give hostRandom (to draw the timestep) or timestep`);
  }
  const { betas, alphas, alphasCumprod } = model.schedule;
  const abar = alphasCumprod[t]!;
  const epsCoefficient = betas[t]! / Math.sqrt(1 - abar);
  const inverseSqrtAlpha = 1 / Math.sqrt(alphas[t]!);
  const sigma = t > 0 ? Math.sqrt((betas[t]! * (1 - alphasCumprod[t - 1]!)) / (1 - abar)) : 0;
  const timesteps = Array<number>(count).fill(t);
  const { lt, stepNoise } = tidy(() => {
    const eps = randn(batch.images.shape, { generator: options.noiseGenerator });
    const z = randn(batch.images.shape, { generator: options.noiseGenerator });
    return { lt: qSample(batch.images, timesteps, eps, model.schedule), stepNoise: scaleTensor(z, sigma) };
  });
  try {
    // l_{t-1} from an eps prediction; the base's outside the graph.
    const base = tidy(() => {
      const prev = scaleTensor(lt, inverseSqrtAlpha);
      axpy(-epsCoefficient * inverseSqrtAlpha, referencePrediction(model, lt, timesteps, batch.prompts), prev);
      return axpy(1, stepNoise, prev);
    });
    try {
      const eps = model.predictEps(lt, timesteps, model.encodePrompts(batch.prompts));
      const prev = F.add(F.scale(F.sub(lt, F.scale(eps, epsCoefficient)), inverseSqrtAlpha), stepNoise);
      return { loss: F.channelStatLoss(prev, base, { matchStd: options.matchStd ?? false }), timestep: t };
    } finally {
      base.dispose();
    }
  } finally {
    lt.dispose();
    stepNoise.dispose();
  }
}

export interface DpoTrainOptions {
  steps: number;
  /** Pairs per step (default 4). */
  batch?: number;
  /** AdamW learning rate of the adapters (default 1e-4). */
  lr?: number;
  /** Coefficient on the mse difference (default 2500). */
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
  onStep?: (report: { step: number; total: number; loss: number; accuracy: number }) => void;
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
  positiveInt('batch', options.batch ?? 4);
  const rank = options.rank ?? 8;
  positiveInt('rank', rank);
  const textRank = options.textRank ?? 0;
  if (!Number.isInteger(textRank) || textRank < 0) throw new RangeError(`${op}: textRank must be an integer >= 0, got ${textRank}`);
  for (const [name, value, pattern] of [['rank', rank, denoiserAttention], ['textRank', textRank, textEncoderAttention]] as const) {
    const limit = value > 0 ? maxLoraRank(model.dit, pattern) : undefined;
    if (limit !== undefined && value > limit.rank) {
      throw new RangeError(`${op}: ${name} ${value} is more than ${limit.rank}, the most a LoRA update of ${limit.layer} can have (min of its input and output features)`);
    }
  }
  const statWeight = options.statWeight ?? 0;
  if (!(statWeight >= 0 && Number.isFinite(statWeight))) throw new RangeError(`${op}: statWeight must be finite and >= 0, got ${statWeight}`);
  const lr = options.lr ?? 1e-4;
  if (!(lr > 0 && Number.isFinite(lr))) throw new RangeError(`${op}: lr must be finite and > 0, got ${lr}`);
  checkBeta(op, options.beta ?? 2500);
}

/**
 * Diffusion-DPO training of LoRA adapters on `pairs`: the base weights are frozen, adapters are
 * attached to the attention projections, and `steps` AdamW steps follow on dpoObjective (plus
 * statWeight times statMatchObjective on the winners). The adapters stay attached and the model
 * ends in eval mode; save them with adapterStateDict(model.dit). A step whose loss or gradient
 * norm is not finite stops the run with an error naming it.
 */
export async function trainDpo(
  model: TextToImage,
  pairs: readonly PreferenceExample[],
  options: DpoTrainOptions,
): Promise<{ losses: number[]; accuracies: number[] }> {
  const op = 'trainDpo';
  checkDpoOptions(model, options);
  const { steps } = options;
  const batch = options.batch ?? 4;
  const rank = options.rank ?? 8;
  const textRank = options.textRank ?? 0;
  const statWeight = options.statWeight ?? 0;
  if (pairs.length === 0) throw new RangeError(`${op}: expected at least one preference pair`);
  const length = model.channels * model.imageSize * model.imageSize;
  pairs.forEach((p, i) => {
    if (p.winner.length !== length || p.loser.length !== length) {
      throw new RangeError(`${op}: pair ${i} has images of ${p.winner.length} and ${p.loser.length} values, expected ${length} (${model.channels} x ${model.imageSize} x ${model.imageSize})`);
    }
  });
  const seed = options.seed ?? 0;
  const generator = new Generator(seed);
  model.dit.freeze();
  attachLora(model.dit, { pattern: denoiserAttention, rank, generator });
  if (textRank > 0) attachLora(model.dit, { pattern: textEncoderAttention, rank: textRank, generator });
  const optimizer = new AdamW([...model.dit.namedParameters()].filter(([, p]) => p.requiresGrad), { lr: options.lr ?? 1e-4, weightDecay: 0 });
  const hostRandom = new HostRandom(seed);
  const noiseGenerator = new Generator(seed + 1);
  const clipNorm = options.clipNorm ?? 1;
  const losses: number[] = [];
  const accuracies: number[] = [];
  const sampler = new EpochSampler(pairs.length, seed);
  model.dit.train();
  try {
    for (let step = 1; step <= steps; step++) {
      const chosen = Array.from({ length: batch }, (_, i) => pairs[sampler.at((step - 1) * batch + i)]!);
      const shape = [batch, model.channels, model.imageSize, model.imageSize];
      const [loss, accuracy] = tidy(() => {
        const winners = fromArray(concatArrays(chosen.map((p) => p.winner)), shape);
        const losers = fromArray(concatArrays(chosen.map((p) => p.loser)), shape);
        const prompts = chosen.map((p) => p.prompt);
        const terms = dpoObjective(model, { prompts, winners, losers }, { noiseGenerator, hostRandom, ...(options.beta === undefined ? {} : { beta: options.beta }) });
        const reported: [number, number] = [terms.loss.value.toArray()[0]!, terms.accuracy.toArray()[0]!];  // the backward frees the graph
        let total: Variable = terms.loss;
        if (statWeight > 0) total = F.add(total, F.scale(statMatchObjective(model, { prompts, images: winners }, { noiseGenerator, hostRandom }).loss, statWeight));
        backward(total);
        return reported;
      });
      const gradNorm = clipNorm > 0 ? optimizer.clipGradNorm(clipNorm) : optimizer.gradNorm();
      const failure = nonFiniteStepError(op, step, { loss, gradNorm }, 'no adapters were written');
      if (failure !== undefined) throw failure;
      optimizer.step();
      optimizer.zeroGrad();
      losses.push(loss);
      accuracies.push(accuracy);
      options.onStep?.({ step, total: steps, loss, accuracy });
      // N-API runs the finalisers of collected wrappers from the event loop (see trainBase).
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    optimizer.dispose();
    model.dit.eval();
  }
  return { losses, accuracies };
}

function concatArrays(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
