// The evaluators' networks, each a small ViT (lib/nn/vit.ts) trained on the figures, whose
// generator knows every attribute and identity, so labels are free:
//   AttributeClassifier  one linear head per captioned attribute; its pooled features are the
//                        feature space of the Fréchet distance (FID's recipe with our network)
//   IdentityEmbedder     an embedding where two images of one person are close and two people
//                        are apart, including people whose captions are identical (unnamed traits)
//   CaptionScorer        a CLIP-style dual encoder: score(prompt, image), the role PickScore
//                        plays in HG-DPO when ranking an image pool
// Embeddings are normalised by a LayerNorm without affine parameters: every embedding then has
// mean 0 and norm sqrt(dim), so a dot product over dim is a cosine similarity.
//
// An evaluator is one safetensors file: its weights, and metadata naming the kind, the config,
// the tokenizer (scorer) and the command that trained it.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../native.js';
import * as F from '../autograd/functions.js';
import { noGrad, type Input, type Variable } from '../autograd/variable.js';
import { atomicWriteFile } from '../io/atomic.js';
import { parseJsonMetadata } from '../io/json_fields.js';
import { encodeSafetensors, loadSafetensors } from '../io/safetensors.js';
import { LayerNorm, Linear } from '../nn/layers.js';
import { Module, ModuleList } from '../nn/module.js';
import { TextEncoder, type TextEncoderConfig } from '../nn/text_encoder.js';
import { checkImageEncoderConfig, ImageEncoder, type ImageEncoderConfig } from '../nn/vit.js';
import { Generator } from '../ops/random.js';
import { tidy } from '../scope.js';
import { fromArray, shapeString, type Tensor } from '../tensor.js';
import { Tokenizer } from '../text/tokenizer.js';
import { ATTRIBUTE_HEADS } from './attributes.js';

export const evaluatorFormat = 'realtune-evaluator';
export type EvaluatorKind = 'attributes' | 'identity' | 'scorer';

/** The file of a shipped evaluator (models/eval in the package; scripts/train-evaluators.sh makes them). */
export function shippedEvaluator(kind: EvaluatorKind): string {
  return path.join(packageRoot, 'models', 'eval', `${kind}.safetensors`);
}

/** Images a forward pass takes at once when an evaluator reads a large set. */
const inferenceBatch = 128;

/** The image encoder of every shipped evaluator (~0.35M parameters: 64 patches of 4x4 at 32x32). */
export function defaultImageEncoderConfig(imageSize = 32): ImageEncoderConfig {
  return { imageSize, patchSize: 4, channels: 3, width: 96, depth: 3, heads: 4, mlpRatio: 3 };
}

/** Runs `fn` over `images` [N, 3, H, W] in chunks without recording, concatenating its [chunk, d] rows. */
function inChunks(images: Tensor<'f32'>, fn: (chunk: Tensor<'f32'>) => Tensor<'f32'>): { data: Float32Array; count: number; dim: number } {
  const count = images.shape[0]!;
  const rows: Float32Array[] = [];
  let dim = 0;
  noGrad(() => {
    for (let start = 0; start < count; start += inferenceBatch) {
      const size = Math.min(inferenceBatch, count - start);
      tidy(() => {
        const out = fn(images.slice(start, start + size));
        dim = out.shape[1]!;
        rows.push(out.toArray());
      });
    }
  });
  const data = new Float32Array(count * dim);
  let offset = 0;
  for (const r of rows) {
    data.set(r, offset);
    offset += r.length;
  }
  return { data, count, dim };
}

function checkImages(what: string, images: Tensor, size: number): void {
  if (images.ndim !== 4 || images.shape[1] !== 3 || images.shape[2] !== size || images.shape[3] !== size) {
    throw new RangeError(`${what}: images have shape ${shapeString(images.shape)}, expected [N, 3, ${size}, ${size}] (this evaluator was trained at ${size}x${size})`);
  }
  if (images.shape[0] === 0) throw new RangeError(`${what}: no images`);
}

export class AttributeClassifier extends Module {
  readonly kind = 'attributes';
  readonly encoder: ImageEncoder;
  readonly heads: ModuleList<Linear>;

  constructor(
    readonly config: ImageEncoderConfig,
    options: { seed?: number } = {},
  ) {
    super();
    const generator = new Generator(options.seed ?? 0);
    this.encoder = this.addModule('encoder', new ImageEncoder(config, { generator }));
    this.heads = this.addModule('heads', new ModuleList(ATTRIBUTE_HEADS.map((h) => new Linear(config.width, h.classes.length, { generator }))));
  }

  /** Logits [B, classes] per head, and the pooled features [B, width]. */
  forward(images: Input): { logits: Variable[]; features: Variable } {
    const { pooled } = this.encoder.forward(images);
    return { logits: [...this.heads].map((h) => h.forward(pooled)), features: pooled };
  }

  /** The predicted class of every head for each image: [head][image]. */
  predict(images: Tensor<'f32'>): number[][] {
    checkImages('AttributeClassifier.predict', images, this.config.imageSize);
    const predictions = ATTRIBUTE_HEADS.map(() => [] as number[]);
    noGrad(() => {
      for (let start = 0; start < images.shape[0]!; start += inferenceBatch) {
        tidy(() => {
          const { logits } = this.forward(images.slice(start, Math.min(images.shape[0]!, start + inferenceBatch)));
          logits.forEach((l, h) => {
            const classes = l.shape[1]!;
            const values = l.value.toArray();
            for (let i = 0; i < values.length / classes; i++) {
              let best = 0;
              for (let c = 1; c < classes; c++) if (values[i * classes + c]! > values[i * classes + best]!) best = c;
              predictions[h]!.push(best);
            }
          });
        });
      }
    });
    return predictions;
  }

  /** Penultimate features [N, width] (what Fréchet distances are computed in). */
  features(images: Tensor<'f32'>): { data: Float32Array; count: number; dim: number } {
    checkImages('AttributeClassifier.features', images, this.config.imageSize);
    return inChunks(images, (chunk) => this.forward(chunk).features.value);
  }
}

export class IdentityEmbedder extends Module {
  readonly kind = 'identity';
  readonly encoder: ImageEncoder;
  readonly project: Linear;
  readonly normalize: LayerNorm;

  constructor(
    readonly config: ImageEncoderConfig & { embedding: number },
    options: { seed?: number } = {},
  ) {
    super();
    const generator = new Generator(options.seed ?? 0);
    this.encoder = this.addModule('encoder', new ImageEncoder(config, { generator }));
    this.project = this.addModule('project', new Linear(config.width, config.embedding, { generator }));
    this.normalize = this.addModule('normalize', new LayerNorm(config.embedding, { affine: false }));
  }

  /** Embeddings [B, embedding] with norm sqrt(embedding). */
  forward(images: Input): Variable {
    return this.normalize.forward(this.project.forward(this.encoder.forward(images).pooled));
  }

  /** Unit embeddings [N, embedding]: cosine similarity is their dot product. */
  embed(images: Tensor<'f32'>): { data: Float32Array; count: number; dim: number } {
    checkImages('IdentityEmbedder.embed', images, this.config.imageSize);
    const out = inChunks(images, (chunk) => this.forward(chunk).value);
    const scale = 1 / Math.sqrt(out.dim);
    for (let i = 0; i < out.data.length; i++) out.data[i]! *= scale;
    return out;
  }
}

export interface CaptionScorerConfig {
  image: ImageEncoderConfig;
  text: Omit<TextEncoderConfig, 'vocabSize'>;
  embedding: number;
}

export class CaptionScorer extends Module {
  readonly kind = 'scorer';
  readonly image: ImageEncoder;
  readonly text: TextEncoder;
  readonly imageProject: Linear;
  readonly textProject: Linear;
  readonly normalize: LayerNorm;

  constructor(
    readonly config: CaptionScorerConfig,
    readonly tokenizer: Tokenizer,
    options: { seed?: number } = {},
  ) {
    super();
    const generator = new Generator(options.seed ?? 0);
    this.image = this.addModule('image', new ImageEncoder(config.image, { generator }));
    this.text = this.addModule('text', new TextEncoder({ ...config.text, vocabSize: tokenizer.vocabSize }, { generator }));
    this.imageProject = this.addModule('imageProject', new Linear(config.image.width, config.embedding, { generator }));
    this.textProject = this.addModule('textProject', new Linear(config.text.width, config.embedding, { generator }));
    this.normalize = this.addModule('normalize', new LayerNorm(config.embedding, { affine: false }));
  }

  encodeImages(images: Input): Variable {
    return this.normalize.forward(this.imageProject.forward(this.image.forward(images).pooled));
  }

  encodePrompts(prompts: readonly string[]): Variable {
    if (prompts.length === 0) throw new RangeError('CaptionScorer: no prompts');
    const { ids, lengths } = this.tokenizer.encodeBatch(prompts, this.config.text.contextLength);
    const idTensor = fromArray(ids, [prompts.length, this.config.text.contextLength], { dtype: 'i32' });
    const lengthTensor = fromArray(lengths, [prompts.length], { dtype: 'i32' });
    const { pooled } = this.text.forward(idTensor, lengthTensor);
    idTensor.dispose();
    return this.normalize.forward(this.textProject.forward(pooled));
  }

  /**
   * Cosine similarity x 100 (CLIP score's scale) of each image with its prompt: prompts has one
   * entry per image, or one for all.
   */
  score(prompts: string | readonly string[], images: Tensor<'f32'>): Float32Array {
    checkImages('CaptionScorer.score', images, this.config.image.imageSize);
    const count = images.shape[0]!;
    const list = typeof prompts === 'string' ? Array<string>(count).fill(prompts) : prompts;
    if (list.length !== count) throw new RangeError(`CaptionScorer.score: ${list.length} prompts for ${count} images (give one per image, or one for all)`);
    const imageEmb = inChunks(images, (chunk) => this.encodeImages(chunk).value);
    const scores = new Float32Array(count);
    const dim = imageEmb.dim;
    noGrad(() => {
      for (let start = 0; start < count; start += inferenceBatch) {
        const end = Math.min(count, start + inferenceBatch);
        const textEmb = tidy(() => this.encodePrompts(list.slice(start, end)).value.toArray());
        for (let i = start; i < end; i++) {
          let dot = 0;
          for (let d = 0; d < dim; d++) dot += imageEmb.data[i * dim + d]! * textEmb[(i - start) * dim + d]!;
          scores[i] = (100 * dot) / dim;
        }
      }
    });
    return scores;
  }
}

export type Evaluator = AttributeClassifier | IdentityEmbedder | CaptionScorer;

/** Writes an evaluator file atomically: weights plus metadata (kind, config, tokenizer, how it was made). */
export function saveEvaluator(file: string, evaluator: Evaluator, provenance: Record<string, string> = {}): void {
  const metadata: Record<string, string> = { format: evaluatorFormat, kind: evaluator.kind, config: JSON.stringify(evaluator.config), ...provenance };
  if (evaluator instanceof CaptionScorer) metadata.tokenizer = JSON.stringify(evaluator.tokenizer.toJSON());
  atomicWriteFile(file, encodeSafetensors(evaluator.stateDict(), { metadata }));
}

/** Reads an evaluator file written by saveEvaluator; `kind`, when given, must match. */
export function loadEvaluator<K extends EvaluatorKind>(file: string, kind?: K): K extends 'attributes' ? AttributeClassifier : K extends 'identity' ? IdentityEmbedder : K extends 'scorer' ? CaptionScorer : Evaluator {
  if (!existsSync(file)) throw new Error(`evaluator ${file} does not exist (the shipped ones are in models/eval; scripts/train-evaluators.sh makes them)`);
  const { tensors, metadata } = loadSafetensors(file, { dtype: 'f32' });
  try {
    if (metadata.format !== evaluatorFormat) throw new Error(`evaluator ${file}: metadata format is ${JSON.stringify(metadata.format)}, expected ${evaluatorFormat}`);
    const found = metadata.kind as EvaluatorKind;
    if (kind !== undefined && found !== kind) throw new Error(`evaluator ${file} is a ${JSON.stringify(found)} evaluator, expected ${JSON.stringify(kind)}`);
    const config = parseJsonMetadata(`evaluator ${file}`, 'config', metadata.config) as Record<string, unknown>;
    let evaluator: Evaluator;
    try {
      if (found === 'attributes') {
        checkImageEncoderConfig(config as unknown as ImageEncoderConfig, `evaluator ${file}`);
        evaluator = new AttributeClassifier(config as unknown as ImageEncoderConfig);
      } else if (found === 'identity') {
        checkImageEncoderConfig(config as unknown as ImageEncoderConfig, `evaluator ${file}`);
        evaluator = new IdentityEmbedder(config as unknown as ImageEncoderConfig & { embedding: number });
      } else if (found === 'scorer') {
        checkImageEncoderConfig((config as unknown as CaptionScorerConfig).image, `evaluator ${file}`);
        const tokenizer = Tokenizer.fromJSON(parseJsonMetadata(`evaluator ${file}`, 'tokenizer', metadata.tokenizer) as Parameters<typeof Tokenizer.fromJSON>[0]);
        evaluator = new CaptionScorer(config as unknown as CaptionScorerConfig, tokenizer);
      } else {
        throw new Error(`evaluator ${file}: metadata kind is ${JSON.stringify(found)}, expected attributes, identity or scorer`);
      }
    } catch (err) {
      if ((err as Error).message.startsWith(`evaluator ${file}`)) throw err;
      throw new Error(`evaluator ${file}: config does not build a network (${(err as Error).message})`);
    }
    try {
      evaluator.loadStateDict(tensors);
    } catch (err) {
      evaluator.dispose();
      throw new Error(`evaluator ${file}: weights do not fit its config (${(err as Error).message})`);
    }
    evaluator.eval();
    return evaluator as never;
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}
