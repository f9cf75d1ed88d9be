// The Diffusion-DPO objective of a batch of preference pairs for the text-to-image model
// (SPEC section 1), the step every HG-DPO stage repeats, and HG-DPO's statistics-matching term
// of the easy stage (SPEC section 2). The trained part of the model is a set
// of adapters (LoRA on the denoiser and, optionally, its text encoder); the reference is the same
// model with them disabled, so no second copy of the weights exists.
//
// A pair (prompt, winner, loser) shares one timestep and one noise. Winners and losers go through
// the model as one batch [winners; losers] for the policy (with gradients) and once more for the
// reference (no gradients, adapters disabled, eval mode: a frozen model has no dropout).
import * as F from '../../autograd/index.js';
import { noGrad, type Variable } from '../../autograd/variable.js';
import { qSample } from '../../diffusion/sampler.js';
import { HostRandom } from '../../host_random.js';
import { adapters, withAdaptersDisabled } from '../../nn/lora.js';
import { axpy, scale as scaleTensor } from '../../ops/elementwise.js';
import { Generator, randn } from '../../ops/random.js';
import { tidy } from '../../scope.js';
import { fromArray, shapeString, type Tensor } from '../../tensor.js';
import type { TextToImage } from '../../models/text_to_image.js';

/**
 * The default coefficient on the mse difference (diffusers form). Diffusion-DPO's 2500 was tuned
 * for SD latents of 16384 values per image; README "Choosing beta" measures it on our 3072.
 */
export const defaultBeta = 2500;

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
      const terms = F.dpoLoss(predW, predL, refW, refL, noise, noise, { beta: options.beta ?? defaultBeta });
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

