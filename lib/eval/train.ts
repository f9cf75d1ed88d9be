// Training and validation of the evaluators on procedural figures. Training draws fresh figures
// (a new one for every example); validation uses figures and identities from seeds no training
// run draws from, so every number it reports is on images and people the network never saw.
//   attributes: cross-entropy summed over the heads (a bald person's hair colour is unlabelled)
//   identity:   batches of people seen twice each (another pose, scene and light), half of them
//               in "twin" pairs that share every captioned attribute and differ only in the
//               unnamed traits; a symmetric InfoNCE over the two views. Validation: ROC-AUC of
//               cosine similarity, same person vs different people (and vs the twin alone)
//   scorer:     CLIP's symmetric InfoNCE over (image, caption) pairs of a batch, with a blurred
//               or noised copy of every figure among the images a caption is matched against
//               (a scorer must prefer the clean image, as PickScore prefers the better one).
//               Validation: caption-to-image retrieval among 32 and real-above-degraded ranking
import * as F from '../autograd/index.js';
import { backward } from '../autograd/backward.js';
import type { Variable } from '../autograd/variable.js';
import type { Example } from '../data/dataset.js';
import { FigureStream } from '../data/figure_stream.js';
import { captionFor, figureAttributesAt, mixSeed, renderFigure, sampleFigureAttributes, sampleIdentity, type IdentityAttributes } from '../data/figures.js';
import { HostRandom } from '../host_random.js';
import { AdamW } from '../optim/adamw.js';
import { lrSchedule } from '../optim/schedule.js';
import { tidy } from '../scope.js';
import { fromArray, type Tensor } from '../tensor.js';
import { Tokenizer } from '../text/tokenizer.js';
import { ATTRIBUTE_HEADS, attributeLabels } from './attributes.js';
import { addNoise, blurImage } from './metrics.js';
import { AttributeClassifier, CaptionScorer, defaultImageEncoderConfig, IdentityEmbedder, type Evaluator } from './networks.js';
import { rowDot } from '../numeric.js';

export interface EvaluatorTrainOptions {
  steps: number;
  /** Images per step (identity: two per person). */
  batch: number;
  lr?: number;
  seed?: number;
  imageSize?: number;
  onStep?: (step: number, loss: number) => void;
}

/** Seeds no training run draws figures or people from. */
export const VALIDATION_SEED = 900_001;
const temperature = 0.07;

function checkTrainOptions(what: string, options: EvaluatorTrainOptions): void {
  if (!Number.isInteger(options.steps) || options.steps < 1) throw new RangeError(`${what}: steps must be an integer >= 1, got ${options.steps}`);
  if (!Number.isInteger(options.batch) || options.batch < 4 || options.batch % 2 !== 0) throw new RangeError(`${what}: batch must be an even integer >= 4, got ${options.batch}`);
}

function stack(images: readonly Float32Array[], size: number): Tensor<'f32'> {
  const per = 3 * size * size;
  const data = new Float32Array(images.length * per);
  images.forEach((im, i) => data.set(im, i * per));
  return fromArray(data, [images.length, 3, size, size]);
}

/** Mild degradations, so that the evaluators still read the imperfect images a generator makes. */
function augmentForEvaluator(image: Float32Array, size: number, random: HostRandom): Float32Array {
  let out = image;
  if (random.next() < 0.3) out = blurImage(out, 3, size, size, 0.3 + 0.5 * random.next());
  if (random.next() < 0.5) out = addNoise(out, 0.12 * random.next(), random.int(0x7fffffff));
  return out;
}

/**
 * Runs `steps` AdamW steps (cosine schedule, 5% warm-up, clipping at 1). `batchOf(step)` fetches
 * a step's data and returns the function that builds its loss, which runs in a tidy scope.
 */
async function optimise(
  model: { namedParameters(): Iterable<[string, Variable]>; train(): unknown; eval(): unknown },
  options: EvaluatorTrainOptions,
  batchOf: (step: number) => Promise<() => Variable>,
): Promise<number[]> {
  const optimizer = new AdamW(model.namedParameters(), { lr: options.lr ?? 1e-3, weightDecay: 0.05 });
  const schedule = lrSchedule('cosine', options.lr ?? 1e-3, options.steps, Math.ceil(options.steps * 0.05));
  const losses: number[] = [];
  model.train();
  try {
    for (let step = 0; step < options.steps; step++) {
      optimizer.lr = schedule(step);
      const lossOf = await batchOf(step);
      const value = tidy(() => {
        const loss = lossOf();
        const v = loss.value.toArray()[0]!;
        if (!Number.isFinite(v)) throw new Error(`evaluator training: the loss is ${v} at step ${step + 1}`);
        backward(loss);
        return v;
      });
      optimizer.clipGradNorm(1);
      optimizer.step();
      optimizer.zeroGrad();
      losses.push(value);
      options.onStep?.(step + 1, value);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  } finally {
    optimizer.dispose();
    model.eval();
  }
  return losses;
}

/** Symmetric InfoNCE of two [B, D] embedding sets (norm sqrt(D)) whose rows pair up. */
function symmetricInfoNce(a: Variable, b: Variable): Variable {
  const [rows, dim] = a.shape as [number, number];
  const logits = F.scale(F.matmul(a, b, { transB: true }), 1 / (dim * temperature));
  const diagonal = Array.from({ length: rows }, (_, i) => i);
  return F.scale(F.add(F.crossEntropy(logits, diagonal), F.crossEntropy(F.transpose(logits, 0, 1), diagonal)), 0.5);
}

/**
 * Trains `model` on a stream of fresh figures: `lossOf(examples, first)` builds a step's loss
 * from its batch (`first` is the batch's first stream position). The stream is closed after;
 * the model is disposed if training fails.
 */
async function trainOnFigures<M extends Evaluator>(
  model: M,
  stream: FigureStream,
  options: EvaluatorTrainOptions,
  lossOf: (examples: Example[], first: number) => () => Variable,
): Promise<M> {
  try {
    await optimise(model, options, async (step) => {
      const first = step * options.batch;
      const examples = await stream.take(first, options.batch);
      stream.prefetch(first + options.batch, options.batch);
      return lossOf(examples, first);
    });
    return model;
  } catch (err) {
    model.dispose();
    throw err;
  } finally {
    await stream.close();
  }
}

export async function trainAttributeClassifier(options: EvaluatorTrainOptions): Promise<AttributeClassifier> {
  checkTrainOptions('trainAttributeClassifier', options);
  const size = options.imageSize ?? 32;
  const seed = options.seed ?? 0;
  const stream = new FigureStream({ size, seed: mixSeed(seed, 0xa77), workers: 1 });
  const random = new HostRandom(seed + 17);
  const model = new AttributeClassifier(defaultImageEncoderConfig(size), { seed });
  return trainOnFigures(model, stream, options, (examples, first) => {
    const labels = examples.map((_, i) => attributeLabels(figureAttributesAt(stream.seed, stream.figureAt(first + i))));
    return () => {
      const images = stack(examples.map((e) => augmentForEvaluator(e.image, size, random)), size);
      const { logits } = model.forward(images);
      const terms = logits.map((l, h) => F.crossEntropy(l, labels.map((row) => row[h]!)));
      return terms.reduce((sum, t) => F.add(sum, t));
    };
  });
}

/** The unnamed traits of an identity (no caption word names them). */
function unnamedTraits(identity: IdentityAttributes): Pick<IdentityAttributes, 'body' | 'shirtPattern' | 'patternColor' | 'accessory' | 'accessoryColor'> {
  const { body, shirtPattern, patternColor, accessory, accessoryColor } = identity;
  return { body: { ...body }, shirtPattern, patternColor, accessory, accessoryColor };
}

/**
 * `count` people from `seed`, in pairs: person 2k + 1 has person 2k's captioned attributes and
 * its own unnamed traits (a "twin" whose caption is the same).
 */
export function identitiesWithTwins(seed: number, count: number): IdentityAttributes[] {
  return Array.from({ length: count }, (_, i) => {
    const base = sampleIdentity(mixSeed(seed, 0x1d, i - (i % 2)));
    return i % 2 === 0 ? base : { ...base, ...unnamedTraits(sampleIdentity(mixSeed(seed, 0x7e, i))) };
  });
}

/** Image `view` of a person: their identity in a scene, pose and light of its own. */
export function renderIdentityView(identity: IdentityAttributes, sceneSeed: number, size: number): Float32Array {
  return renderFigure(sampleFigureAttributes(sceneSeed, { fixed: identity }), size);
}

export async function trainIdentityEmbedder(options: EvaluatorTrainOptions): Promise<IdentityEmbedder> {
  checkTrainOptions('trainIdentityEmbedder', options);
  const size = options.imageSize ?? 32;
  const seed = options.seed ?? 0;
  const people = options.batch / 2;
  if (people % 2 !== 0) throw new RangeError(`trainIdentityEmbedder: batch must be a multiple of 4 (people come in twin pairs, two views each), got ${options.batch}`);
  const model = new IdentityEmbedder({ ...defaultImageEncoderConfig(size), embedding: 64 }, { seed });
  const random = new HostRandom(seed + 29);
  try {
    await optimise(model, options, async (step) => {
      const batchSeed = mixSeed(seed, 0x1de, step);
      const identities = identitiesWithTwins(batchSeed, people);
      const views = [0, 1].map((v) => identities.map((identity, i) => augmentForEvaluator(renderIdentityView(identity, mixSeed(batchSeed, v, i), size), size, random)));
      return () => symmetricInfoNce(model.forward(stack(views[0]!, size)), model.forward(stack(views[1]!, size)));
    });
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

/** The captions a scorer's tokenizer learns from. */
function scorerTokenizer(seed: number): Tokenizer {
  return Tokenizer.train(
    Array.from({ length: 4000 }, (_, i) => captionFor(figureAttributesAt(seed, i))),
    { vocabSize: 512 },
  );
}

export async function trainCaptionScorer(options: EvaluatorTrainOptions): Promise<CaptionScorer> {
  checkTrainOptions('trainCaptionScorer', options);
  const size = options.imageSize ?? 32;
  const seed = options.seed ?? 0;
  const dataSeed = mixSeed(seed, 0x5c0);
  const model = new CaptionScorer(
    { image: defaultImageEncoderConfig(size), text: { contextLength: 32, width: 96, depth: 2, heads: 4, mlpRatio: 3, causal: false }, embedding: 64 },
    scorerTokenizer(dataSeed),
    { seed },
  );
  const random = new HostRandom(seed + 31);
  return trainOnFigures(model, new FigureStream({ size, seed: dataSeed, workers: 1 }), options, (examples) => {
    const degraded = examples.map((e) => degradeForScorer(e.image, size, random));
    return () => {
      const clean = model.encodeImages(stack(examples.map((e) => e.image), size));
      const worse = model.encodeImages(stack(degraded, size));
      const text = model.encodePrompts(examples.map((e) => e.caption));
      const [rows, dim] = text.shape as [number, number];
      const diagonal = Array.from({ length: rows }, (_, i) => i);
      // Caption -> image among the clean figures and their degraded copies: a caption prefers
      // its own figure to every other and to a blurred or noisy version of itself.
      const textToImage = F.scale(F.matmul(text, F.concat([clean, worse], 0), { transB: true }), 1 / (dim * temperature));
      const imageToText = F.scale(F.matmul(clean, text, { transB: true }), 1 / (dim * temperature));
      return F.scale(F.add(F.crossEntropy(textToImage, diagonal), F.crossEntropy(imageToText, diagonal)), 0.5);
    };
  });
}

/** A copy that a scorer must rank below the original: blurred, noised, or both, clearly. */
function degradeForScorer(image: Float32Array, size: number, random: HostRandom): Float32Array {
  const kind = random.int(3);
  let out = image;
  if (kind !== 1) out = blurImage(out, 3, size, size, 0.6 + random.next());
  if (kind !== 0) out = addNoise(out, 0.08 + 0.15 * random.next(), random.int(0x7fffffff));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Validation on held-out figures and people

/** Figures [start, start + count) of the validation seed: images [N, 3, S, S] and their attributes. */
export function validationFigures(count: number, size = 32, start = 0) {
  const attributes = Array.from({ length: count }, (_, i) => figureAttributesAt(VALIDATION_SEED, start + i));
  return { attributes, images: stack(attributes.map((a) => renderFigure(a, size)), size), captions: attributes.map(captionFor) };
}

/** Accuracy of every head on held-out figures (unlabelled cases skipped). */
export function validateAttributeClassifier(model: AttributeClassifier, count = 1000): Record<string, number> {
  const { attributes, images } = validationFigures(count, model.config.imageSize);
  try {
    const predictions = model.predict(images);
    const accuracy: Record<string, number> = {};
    ATTRIBUTE_HEADS.forEach((h, k) => {
      let hits = 0;
      let total = 0;
      attributes.forEach((a, i) => {
        const label = h.label(a);
        if (label < 0) return;
        total++;
        if (predictions[k]![i] === label) hits++;
      });
      accuracy[h.name] = hits / total;
    });
    return accuracy;
  } finally {
    images.dispose();
  }
}

/** ROC-AUC: the probability that a random positive scores above a random negative (ties half). */
export function rocAuc(positives: readonly number[], negatives: readonly number[]): number {
  if (positives.length === 0 || negatives.length === 0) throw new RangeError('rocAuc: needs at least one positive and one negative');
  const all = [...positives.map((s) => ({ s, p: 1 })), ...negatives.map((s) => ({ s, p: 0 }))].sort((a, b) => a.s - b.s);
  let rankSum = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j < all.length && all[j]!.s === all[i]!.s) j++;
    const rank = (i + j + 1) / 2;
    for (let k = i; k < j; k++) if (all[k]!.p === 1) rankSum += rank;
    i = j;
  }
  const n = positives.length;
  return (rankSum - (n * (n + 1)) / 2) / (n * negatives.length);
}

export interface IdentityValidation {
  /** Same person vs any other person. */
  auc: number;
  /** Same person vs their twin (the same caption, other unnamed traits). */
  twinAuc: number;
  people: number;
  views: number;
}

/** Verification on `people` held-out people (twin pairs), `views` images each. */
export function validateIdentityEmbedder(model: IdentityEmbedder, people = 100, views = 4): IdentityValidation {
  const size = model.config.imageSize;
  const identities = identitiesWithTwins(VALIDATION_SEED, people);
  const images = stack(identities.flatMap((identity, i) => Array.from({ length: views }, (_, v) => renderIdentityView(identity, mixSeed(VALIDATION_SEED, 0x5ce, i, v), size))), size);
  try {
    const { data, dim } = model.embed(images);
    // Unit embeddings: the dot product is the cosine.
    const cosine = (a: number, b: number) => rowDot(data, a, data, b, dim);
    const genuine: number[] = [];
    const impostor: number[] = [];
    const twin: number[] = [];
    const n = people * views;
    for (let a = 0; a < n; a++) {
      for (let b = a + 1; b < n; b++) {
        const pa = Math.floor(a / views);
        const pb = Math.floor(b / views);
        const s = cosine(a, b);
        if (pa === pb) genuine.push(s);
        else {
          impostor.push(s);
          if (Math.floor(pa / 2) === Math.floor(pb / 2)) twin.push(s);
        }
      }
    }
    return { auc: rocAuc(genuine, impostor), twinAuc: rocAuc(genuine, twin), people, views };
  } finally {
    images.dispose();
  }
}

export interface ScorerValidation {
  /** Caption-to-image top-1 retrieval among groups of 32 held-out figures (chance 1/32). */
  retrievalTop1: number;
  /** Share of held-out figures that score above their own blurred and noised copy. */
  realAboveDegraded: number;
}

export function validateCaptionScorer(model: CaptionScorer, count = 512): ScorerValidation {
  const size = model.config.image.imageSize;
  const group = 32;
  const usable = Math.floor(count / group) * group;
  const { images, captions } = validationFigures(usable, size);
  const degraded = stack(
    Array.from({ length: usable }, (_, i) => addNoise(blurImage(images.slice(i, i + 1).toArray(), 3, size, size, 1), 0.15, i + 1)),
    size,
  );
  try {
    let hits = 0;
    for (let g = 0; g < usable; g += group) {
      const groupImages = images.slice(g, g + group);
      for (let i = 0; i < group; i++) {
        const scores = model.score(captions[g + i]!, groupImages);
        let best = 0;
        for (let j = 1; j < group; j++) if (scores[j]! > scores[best]!) best = j;
        if (best === i) hits++;
      }
      groupImages.dispose();
    }
    const real = model.score(captions, images);
    const worse = model.score(captions, degraded);
    let above = 0;
    for (let i = 0; i < usable; i++) if (real[i]! > worse[i]!) above++;
    return { retrievalTop1: hits / usable, realAboveDegraded: above / usable };
  } finally {
    images.dispose();
    degraded.dispose();
  }
}
