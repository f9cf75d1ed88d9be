// Fitting weights to one identity's images with the plain diffusion loss, through the one training
// engine: what pre-optimisation (LiDB per training identity), the rank-relaxed fast finetune, LiDB
// from zero and the DreamBooth baseline all do, with different trained parameters.
import type { Variable } from '../../autograd/variable.js';
import type { TextToImage } from '../../models/text_to_image.js';
import { augment, type AugmentOptions } from '../augment.js';
import { runTraining, type StepReport } from '../loop/engine.js';
import { parameterCheckpoints } from '../loop/param_checkpoint.js';
import { diffusionLossStep } from '../objectives/diffusion.js';

export interface IdentityExamples {
  /** Images (CHW in [-1, 1]) at the model's size. */
  images: readonly Float32Array[];
  /** One prompt per image. */
  prompts: readonly string[];
}

export interface FitOptions {
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  weightDecay?: number;
  /** Light augmentation of each drawn image (default none). */
  augment?: AugmentOptions;
  onStep?: (report: StepReport) => void;
}

/** Trains `parameters` of `model` on `examples` for options.steps steps; returns the losses. */
export async function fitIdentity(op: string, model: TextToImage, parameters: [string, Variable][], examples: IdentityExamples, options: FitOptions): Promise<number[]> {
  const count = examples.images.length;
  if (count === 0 || examples.prompts.length !== count) throw new RangeError(`${op}: expected one prompt per image and at least one image, got ${count} images and ${examples.prompts.length} prompts`);
  if (!Number.isInteger(options.batch) || options.batch < 1) throw new RangeError(`${op}: batch must be an integer >= 1, got ${options.batch}`);
  const size = model.imageSize;
  const perImage = model.channels * size * size;
  for (const [i, image] of examples.images.entries()) {
    if (image.length !== perImage) throw new RangeError(`${op}: image ${i} has ${image.length} values, expected ${perImage} (${model.channels}x${size}x${size})`);
  }
  const result = await runTraining({
    op,
    optim: { steps: options.steps, lr: options.lr, seed: options.seed, weightDecay: options.weightDecay ?? 0 },
    run: options.onStep ? { onStep: options.onStep } : {},
    settings: { batch: options.batch, images: count, augment: options.augment ? { ...options.augment } : null },
    parameters: () => parameters,
    micro: ({ streams }) => {
      const pixels = new Float32Array(options.batch * perImage);
      const captions: string[] = [];
      const timesteps: number[] = [];
      for (let i = 0; i < options.batch; i++) {
        const k = streams.host.int(count);
        const image = options.augment
          ? augment({ data: examples.images[k]!, channels: model.channels, height: size, width: size }, options.augment, () => streams.host.next()).data
          : examples.images[k]!;
        pixels.set(image, i * perImage);
        captions.push(examples.prompts[k]!);
        timesteps.push(streams.host.int(model.schedule.steps));
      }
      return { loss: diffusionLossStep(model, { pixels, captions, timesteps, resolution: size }, { noise: streams.noise }) };
    },
    ...parameterCheckpoints(op, 'realtune-identity-fit', () => parameters),
    train: () => model.dit.train(),
    finish: () => model.dit.eval(),
  });
  return result.losses;
}
