// DreamBooth as the baseline of the personalisation table: every weight of the denoiser (and its
// text encoder) finetuned with the plain diffusion loss on the one reference image and its
// "[V]" prompt, the same data and augmentation as the fast finetune, for the usual step count.
// Prior preservation is left out: with one image and a few hundred steps it is the setting the
// HyperDreamBooth paper compares against.
import type { TextToImage } from '../../models/text_to_image.js';
import { fitIdentity } from './fit.js';

export interface DreamBoothOptions {
  reference: Float32Array;
  prompt: string;
  steps?: number;
  lr?: number;
  batch?: number;
  seed?: number;
}

/** Finetunes `model` in place; returns the losses and the numbers it trained. */
export async function dreamBooth(model: TextToImage, options: DreamBoothOptions): Promise<{ losses: number[]; numbers: number }> {
  const parameters = [...model.dit.namedParameters()];
  const losses = await fitIdentity('dreambooth', model, parameters, { images: [options.reference], prompts: [options.prompt] }, {
    steps: options.steps ?? 400,
    batch: options.batch ?? 4,
    lr: options.lr ?? 1e-4,
    seed: options.seed ?? 0,
    augment: { cropScale: 0.92, maxRotation: 4 },
  });
  return { losses, numbers: parameters.reduce((n, [, p]) => n + p.value.size, 0) };
}
