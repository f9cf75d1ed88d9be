// The scorer that ranks image pools and reconstructions (the role PickScore plays in HG-DPO),
// pluggable: the shipped caption scorer (models/eval/scorer.safetensors, or another file of that
// kind), an ONNX network with one score per image, or any function given through the SDK.
import { loadEvaluator, shippedEvaluator, type CaptionScorer } from '../../eval/networks.js';
import { onnxScorer } from '../../eval/onnx.js';
import type { Tensor } from '../../tensor.js';

export interface PoolScorer {
  /** Names the scorer in store headers: a store scored by another scorer is scored again. */
  readonly name: string;
  /** The image side the scorer reads, when it reads only one (checked against the model before any work). */
  readonly imageSize?: number;
  /** One score per image (higher is better); NaN marks an image as unscorable. */
  score(prompts: readonly string[], images: Tensor<'f32'>): Promise<ArrayLike<number>> | ArrayLike<number>;
  dispose?(): void;
}

/** The built-in caption scorer (cosine x 100 of image and prompt embeddings). */
export function captionPoolScorer(file?: string): PoolScorer {
  const resolved = file ?? shippedEvaluator('scorer');
  const scorer: CaptionScorer = loadEvaluator(resolved, 'scorer');
  return {
    name: file === undefined ? 'builtin' : `scorer:${resolved}`,
    imageSize: scorer.config.image.imageSize,
    score: (prompts, images) => scorer.score(prompts, images),
    dispose: () => scorer.dispose(),
  };
}

/** An ONNX scorer (images [N, 3, H, W] in [-1, 1] -> one score each); it does not read the prompt. */
export async function onnxPoolScorer(file: string): Promise<PoolScorer> {
  const run = await onnxScorer(file);
  return { name: `onnx:${file}`, score: (_prompts, images) => run(images) };
}

/** A scorer from a function (the SDK's way to plug in any preference model). */
export function functionPoolScorer(name: string, score: PoolScorer['score']): PoolScorer {
  if (typeof name !== 'string' || name === '') throw new TypeError('functionPoolScorer: name must be a non-empty string (it names the scores saved in a store)');
  if (typeof score !== 'function') throw new TypeError(`functionPoolScorer: score must be a function, got ${typeof score}`);
  return { name: `fn:${name}`, score };
}

/**
 * Scores `images` with `scorer`, checking the answer: one finite-or-NaN number per image. NaN
 * and infinite scores come back as null (that image is never chosen) and are counted.
 */
export async function scoreImages(op: string, scorer: PoolScorer, prompts: readonly string[], images: Tensor<'f32'>): Promise<{ scores: (number | null)[]; invalid: number }> {
  const raw = await scorer.score(prompts, images);
  const count = images.shape[0]!;
  if (raw === null || typeof raw !== 'object' || typeof (raw as ArrayLike<number>).length !== 'number') {
    throw new TypeError(`${op}: scorer ${scorer.name} returned ${raw === null ? 'null' : typeof raw}, expected an array of ${count} numbers`);
  }
  if (raw.length !== count) throw new RangeError(`${op}: scorer ${scorer.name} returned ${raw.length} scores for ${count} images`);
  let invalid = 0;
  const scores = Array.from(raw, (s) => {
    if (typeof s !== 'number' || !Number.isFinite(s)) {
      invalid++;
      return null;
    }
    return s;
  });
  return { scores, invalid };
}
