// Measuring a personalisation (SPEC section 6; HyperDreamBooth's Face Rec / CLIP-T / diversity on
// our data): the person in new contexts is generated, then
//   identity     mean cosine similarity (identity embedder) of each image to the reference
//   adherence    share of images whose classified pose, background and light match the prompt
//   diversity    mean pairwise cosine distance of the classifier's features among the images
//                of one prompt (different seeds): 0 when every sample is the same image
import { promptAdherence } from '../../eval/attributes.js';
import type { AttributeClassifier, IdentityEmbedder } from '../../eval/networks.js';
import type { LoraSource } from '../../nn/adapter_file.js';
import type { TextToImage } from '../../models/text_to_image.js';
import { rowDot, rowNorms } from '../../numeric.js';
import { fromArray, type Tensor } from '../../tensor.js';

export interface MeasureOptions {
  /** CHW in [-1, 1]: the one image the personalisation saw. */
  reference: Float32Array;
  /** Recontextualisation prompts. */
  prompts: readonly string[];
  /** Samples per prompt (diversity needs 2 or more). */
  n: number;
  lora?: LoraSource | readonly LoraSource[];
  steps?: number;
  cfg?: number;
  seed?: number;
}

export interface IdentityMeasure {
  identity: number;
  /** Per attribute the prompts name (pose, background, backgroundColor, light), and their mean. */
  adherence: Record<string, number>;
  adherenceMean: number;
  diversity: number;
  /** The generated images [prompts * n, C, H, W], prompt-major (the caller disposes them). */
  images: Tensor<'f32'>;
}

export interface Evaluators {
  identity: IdentityEmbedder;
  attributes: AttributeClassifier;
}

/** Generates the person in the prompts' contexts (options.lora applied) and measures the images. */
export function measureIdentity(model: TextToImage, evaluators: Evaluators, options: MeasureOptions): IdentityMeasure {
  const images = model.generate({
    prompts: options.prompts,
    n: options.n,
    steps: options.steps ?? 25,
    cfg: options.cfg ?? 5,
    seed: options.seed ?? 0,
    ...(options.lora !== undefined ? { lora: options.lora } : {}),
  });
  try {
    return measureImages(evaluators, options.reference, options.prompts, options.n, images);
  } catch (err) {
    images.dispose();
    throw err;
  }
}

/**
 * The measures of `images` [prompts * n, C, H, W] (prompt-major) against `reference`: what
 * measureIdentity reports for generated images, for any set (e.g. real views of the person).
 * The result holds `images`.
 */
export function measureImages(evaluators: Evaluators, reference: Float32Array, prompts: readonly string[], n: number, images: Tensor<'f32'>): IdentityMeasure {
  const [, channels, size] = images.shape as [number, number, number, number];
  const referenceTensor = fromArray(reference, [1, channels, size, size]);
  const ref = evaluators.identity.embed(referenceTensor);
  referenceTensor.dispose();
  const emb = evaluators.identity.embed(images);
  let identity = 0;
  for (let i = 0; i < emb.count; i++) identity += rowDot(emb.data, i, ref.data, 0, emb.dim);
  identity /= emb.count;

  const adherence = promptAdherence(prompts, evaluators.attributes.predict(images), n);
  const values = Object.values(adherence);

  const features = evaluators.attributes.features(images);
  const norms = rowNorms(features.data, features.count, features.dim);
  let distance = 0;
  let pairs = 0;
  for (let p = 0; p < prompts.length; p++) {
    for (let s = 0; s < n; s++) {
      for (let u = s + 1; u < n; u++) {
        const i = p * n + s;
        const j = p * n + u;
        distance += 1 - rowDot(features.data, i, features.data, j, features.dim) / (norms[i]! * norms[j]!);
        pairs++;
      }
    }
  }
  return { identity, adherence, adherenceMean: values.reduce((s, v) => s + v, 0) / Math.max(1, values.length), diversity: pairs > 0 ? distance / pairs : 0, images };
}
