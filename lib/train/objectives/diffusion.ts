// The plain diffusion loss of a batch, what base training and personalisation minimise: noise the
// images to the given timesteps (uniform in [0, T) when training), predict with the model (eps or v, see TextToImage), mean
// squared error against the target. Pure function of the batch and the streams it draws from.
import * as F from '../../autograd/functions.js';
import { backward } from '../../autograd/backward.js';
import type { Variable } from '../../autograd/variable.js';
import { qSample } from '../../diffusion/sampler.js';
import type { TextToImage } from '../../models/text_to_image.js';
import { randn, type Generator } from '../../ops/random.js';
import { tidy } from '../../scope.js';
import { fromArray } from '../../tensor.js';

export interface DiffusionBatch {
  /** Images one after another (CHW each, values in [-1, 1]) at `resolution`. */
  pixels: Float32Array;
  captions: readonly string[];
  /** One timestep in [0, T) per image. */
  timesteps: readonly number[];
  resolution: number;
}

export interface DiffusionLossOptions {
  noise: Generator;
  /** Multiplies the loss before the backward (1 / micro-batches when accumulating). */
  lossScale?: number;
}

/** The diffusion loss of `batch` (noise from `noise`) as a Variable, for objectives that add terms to it. */
export function diffusionLoss(model: TextToImage, batch: DiffusionBatch, noise: Generator): Variable {
  const count = batch.captions.length;
  const x0 = fromArray(batch.pixels, [count, model.channels, batch.resolution, batch.resolution]);
  const eps = randn(x0.shape, { generator: noise });
  const xt = qSample(x0, [...batch.timesteps], eps, model.schedule);
  return F.mse(model.predict(xt, [...batch.timesteps], model.encodePrompts(batch.captions)), model.target(x0, eps, [...batch.timesteps]));
}

/**
 * Forward and backward of the diffusion loss of `batch` (noise from `noise`); gradients accumulate in the parameters. Returns the loss value (after lossScale).
 */
export function diffusionLossStep(model: TextToImage, batch: DiffusionBatch, options: DiffusionLossOptions): number {
  return tidy(() => {
    let loss: Variable = diffusionLoss(model, batch, options.noise);
    if ((options.lossScale ?? 1) !== 1) loss = F.scale(loss, options.lossScale!);
    const value = loss.value.item();
    backward(loss);
    return value;
  });
}
