// The DSD objective (SPEC section 4): a batch of pairs (reference, target, the target's prompt)
// is noised once, x_t = sqrt(abar) target + sqrt(1 - abar) eps, and both frames of each pair see
// that x_t (lib/nn/dsd.ts). Then
//   target frame     the model's usual loss toward the target (eps or v, as the base predicts)
//   condition frame  the identity mapping: its clean-image estimate from x_t is the reference,
//                    || sqrt(abar) (x0_hat - reference) ||^2 for eps models and
//                    || x0_hat - reference ||^2 for v models (x0_hat = sqrt(abar) x_t - sqrt(1 - abar) v),
//                    both bounded at every timestep
//   loss = target term + identityWeight * condition term
// For the two guidance scales of sampling, a pair's prompt is dropped (the empty prompt) and its
// reference dropped (zeros, "no image": the condition term then does not count) at the rates
// the caller decides; see lib/train/dsd/train.ts.
import * as F from '../../autograd/functions.js';
import { backward } from '../../autograd/backward.js';
import type { Variable } from '../../autograd/variable.js';
import { qSample } from '../../diffusion/sampler.js';
import type { TextToImage } from '../../models/text_to_image.js';
import { twoFrames, splitFrames } from '../../nn/dsd.js';
import { randn, type Generator } from '../../ops/random.js';
import { tidy } from '../../scope.js';
import { fromArray } from '../../tensor.js';
import type { DsdAdapter } from './adapter.js';

export interface DsdBatch {
  /** References then targets, CHW each in [-1, 1] at the model's size; a dropped reference is zeros. */
  references: Float32Array;
  targets: Float32Array;
  /** The target's prompt per pair ('' when dropped). */
  prompts: readonly string[];
  /** Per pair: false when its reference was dropped (its condition term does not count). */
  withReference: readonly boolean[];
  timesteps: readonly number[];
}

export interface DsdLossTerms {
  loss: Variable;
  target: Variable;
  condition: Variable;
}

/** The DSD loss of `batch` as Variables (noise drawn from `noise`). */
export function dsdLoss(model: TextToImage, dsd: DsdAdapter, batch: DsdBatch, noise: Generator, identityWeight: number): DsdLossTerms {
  const b = batch.prompts.length;
  const size = model.imageSize;
  const c = model.channels;
  const per = c * size * size;
  if (batch.references.length !== b * per || batch.targets.length !== b * per || batch.timesteps.length !== b || batch.withReference.length !== b) {
    throw new RangeError(`dsdLoss: a batch of ${b} pairs needs ${b * per} reference and target values and ${b} timesteps and flags`);
  }
  const x0 = fromArray(batch.targets, [b, c, size, size]);
  const references = fromArray(batch.references, [b, c, size, size]);
  const eps = randn(x0.shape, { generator: noise });
  const xt = qSample(x0, [...batch.timesteps], eps, model.schedule);
  const timesteps2 = batch.timesteps.flatMap((t) => [t, t]);
  const text = model.encodePrompts(batch.prompts.flatMap((p) => [p, p]));
  const out = model.predict(twoFrames(xt), timesteps2, text, { frames: 2, tokens: dsd.conditioner.tokens(model.dit, references, xt, batch.withReference) });
  const [conditionOut, targetOut] = splitFrames(out);
  const target = F.mse(targetOut, model.target(x0, eps, [...batch.timesteps]));

  // condition residual = a * x_t + p * prediction - r * reference, per pair (zero when dropped).
  const kept = batch.withReference.filter(Boolean).length;
  const levels = batch.timesteps.map((t) => model.schedule.signalNoise(t));
  const column = (values: number[]) => F.expand(F.reshape(fromArray(values, [b]), [b, 1, 1, 1]), [b, c, size, size]);
  const keep = batch.withReference.map((k) => (k ? 1 : 0));
  const v = model.prediction === 'v';
  const a = levels.map((l, i) => keep[i]! * (v ? l.signal : 1));
  const p = levels.map((l, i) => -keep[i]! * l.noise);
  const r = levels.map((l, i) => -keep[i]! * (v ? 1 : l.signal));
  const constant = F.add(F.mul(column(a), xt), F.mul(column(r), references));
  const residual = F.add(F.mul(column(p), conditionOut), constant);
  // Mean over the pairs that kept their reference (the residual of the others is zero).
  const condition = F.scale(F.sum(F.mul(residual, residual)), 1 / (Math.max(1, kept) * per));
  return { loss: F.add(target, F.scale(condition, identityWeight)), target, condition };
}

/** Forward and backward of the DSD loss; gradients accumulate in the adapter. Returns the terms' values. */
export function dsdLossStep(model: TextToImage, dsd: DsdAdapter, batch: DsdBatch, noise: Generator, identityWeight: number, lossScale = 1): { loss: number; target: number; condition: number } {
  return tidy(() => {
    const terms = dsdLoss(model, dsd, batch, noise, identityWeight);
    const loss = lossScale === 1 ? terms.loss : F.scale(terms.loss, lossScale);
    const values = { loss: loss.value.item(), target: terms.target.value.item(), condition: terms.condition.value.item() };
    backward(loss);
    return values;
  });
}
