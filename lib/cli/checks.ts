// Checks the commands make before any work, on what only the model or the machine can tell:
// sampling steps against the model's noise schedule, counts against this machine's memory.
// Each error names the flag.
import { checkCountFits, exampleBytes, samplingBytesPerImage, trainingBytesPerImage } from '../models/limits.js';
import type { TextToImage } from '../models/text_to_image.js';
import { FlagError } from './flags.js';

/** DDIM/DDPM take at most one step per timestep of the schedule: more would be fewer, silently. */
export function checkSamplingSteps(flag: string, steps: number, model: TextToImage): void {
  if (steps > model.schedule.steps) {
    throw new FlagError(`--${flag} ${steps} is more than the model's ${model.schedule.steps} noise-schedule steps (a sampler takes at most one step per timestep)`);
  }
}

/** `count` figures (or pairs of `perItem` figures) held in memory at `resolution`. */
export function checkFiguresFit(flag: string, count: number, resolution: number, unit = 'figure', perItem = 1): void {
  checkCountFits(`--${flag} ${count} (${resolution}x${resolution})`, count, perItem * exampleBytes(resolution), unit);
}

/** A training step's activations for `batch` items of `imagesPerItem` images at `resolution`. */
export function checkBatchFits(flag: string, batch: number, model: TextToImage, resolution: number, imagesPerItem = 1): void {
  checkCountFits(`--${flag} ${batch} (${resolution}x${resolution})`, batch, imagesPerItem * trainingBytesPerImage(model.dit.config, resolution), imagesPerItem === 1 ? 'image' : 'item');
}

/** `images` images sampled at once (all prompts x images per prompt). */
export function checkSamplesFit(what: string, images: number, model: TextToImage): void {
  checkCountFits(what, images, samplingBytesPerImage(model.dit.config, model.imageSize), 'image');
}
