// The Diffusion-DPO objective of a batch of preference pairs for the text-to-image model
// (SPEC section 1), the step every HG-DPO stage repeats. The trained part of the model is a set
// of adapters (LoRA on the denoiser and, optionally, its text encoder); the reference is the same
// model with them disabled, so no second copy of the weights exists.
//
// A pair (prompt, winner, loser) shares one timestep and one noise. Winners and losers go through
// the model as one batch [winners; losers] for the policy (with gradients) and once more for the
// reference (no gradients, adapters disabled, eval mode: a frozen model has no dropout).
import * as F from '../autograd/index.js';
import { noGrad, type Variable } from '../autograd/variable.js';
import { qSample } from '../diffusion/sampler.js';
import type { HostRandom } from '../host_random.js';
import { adapters, withAdaptersDisabled } from '../nn/lora.js';
import { randn, type Generator } from '../ops/random.js';
import { tidy } from '../scope.js';
import { shapeString, type Tensor } from '../tensor.js';
import type { TextToImage } from './model.js';

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

function checkPairs(model: TextToImage, pairs: PreferencePairs): number {
  const count = pairs.prompts.length;
  if (count === 0) throw new RangeError('dpoObjective: expected at least one pair, got no prompts');
  const size = model.imageSize;
  const expected = [count, model.channels, size, size];
  for (const name of ['winners', 'losers'] as const) {
    const t = pairs[name];
    if (t.dtype !== 'f32') throw new TypeError(`dpoObjective: ${name} has dtype ${t.dtype}, expected f32`);
    if (shapeString(t.shape) !== shapeString(expected)) {
      throw new RangeError(`dpoObjective: ${name} has shape ${shapeString(t.shape)}, expected ${shapeString(expected)} (one image per prompt)`);
    }
  }
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
  if (![...adapters(model.dit).values()].some((a) => a.enabled)) {
    throw new Error('dpoObjective: the model has no enabled adapter to train (the reference is the model with its adapters disabled)');
  }
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
    const reference = noGrad(() => {
      const wasTraining = model.dit.training;
      model.dit.eval();
      try {
        return withAdaptersDisabled(model.dit, () => tidy(() => model.predictEps(noisy, both, model.encodePrompts(prompts)).value));
      } finally {
        model.dit.train(wasTraining);
      }
    });
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
