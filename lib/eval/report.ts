// Measuring a text-to-image checkpoint on held-out prompts: the captions of validation figures
// (a seed no training run draws from) are generated, and the images are compared with those
// real figures and read by the evaluators:
//   fd            Fréchet distance to the real figures in the attribute classifier's features,
//                 next to the real-vs-real floor (another real set of the same size); from 64
//                 prompts on also FD-infinity, the same with the sample-size bias extrapolated away
//   adherence     per captioned attribute, the share of images whose classified value is the
//                 prompt's (GenEval's idea), and the mean over attributes
//   scorer        the caption scorer's mean score of (prompt, image), and of (prompt, real figure)
//   hue           hue distance (degrees) to the real figures, and to the base model's images
//                 when a LoRA is measured (HG-DPO's colour-shift check)
//   sharpness     std of the Laplacian, generated and real
// A user's own networks exported to ONNX (an Inception or CLIP image tower, a PickScore-style
// head) add their FD and their mean score through lib/eval/onnx.ts.
import { captionFor, figureAttributesAt } from '../data/figures.js';
import { fromArray, type Tensor } from '../tensor.js';
import { loraSources, openAdapterFiles, type AdapterFile, type LoraSelection, type LoraSource, type OpenedAdapterFiles } from '../nn/adapter_file.js';
import type { TextToImage } from '../models/text_to_image.js';
import { promptAdherence } from './attributes.js';
import { channelMeanDrift, frechetDistance, frechetDistanceInfinity, hueDistance, meanSharpness } from './metrics.js';
import { loadEvaluator, shippedEvaluator, type AttributeClassifier, type CaptionScorer } from './networks.js';
import { onnxFeatureExtractor, onnxScorer, type FeatureExtractor, type Scorer } from './onnx.js';
import { VALIDATION_SEED, validationFigures } from './train.js';
import { worldCommunicator } from '../train/loop/dist.js';

export interface EvaluateOptions extends LoraSelection {
  /** Held-out prompts (default 256): one image each. */
  prompts?: number;
  /** Noise seed of the generated images (default 0). */
  seed?: number;
  /** DDIM steps (default 50) and guidance scale (default 5). */
  steps?: number;
  cfg?: number;
  /**
   * Adapter files measured on top of the checkpoint (several stack), with generate's inference
   * rules (loraScale, loraGroups, allowOtherBase); the checkpoint alone is then the base.
   */
  lora?: LoraSource | readonly LoraSource[];
  /**
   * The checkpoint's own images of the same prompts, seed, steps and guidance (what the hue
   * distance to the base compares against), when the caller has them already: a table of many
   * adapter files over one base generates them once (see baseImagesFor).
   */
  baseImages?: Tensor<'f32'>;
  /** Evaluator files or networks (default: the shipped models/eval/attributes.safetensors and scorer.safetensors). */
  classifier?: string | AttributeClassifier;
  scorer?: string | CaptionScorer;
  /** An ONNX feature network (images [N, 3, H, W] -> [N, d]): adds the FD in its features. */
  onnxFeatures?: string | FeatureExtractor;
  /** An ONNX scorer (images -> one score each): adds its mean over generated and real images. */
  onnxScorer?: string | Scorer;
  /** Images generated per forward pass (default 64). */
  batch?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface EvaluationReport {
  prompts: number;
  fd: number;
  /** FD between two disjoint real sets of the same size: the best a model can do. */
  fdRealFloor: number;
  /**
   * From twice the classifier's feature dimension of prompts on (192 with the shipped one): FD and the floor with their sample-size bias extrapolated away
   * (frechetDistanceInfinity). At 256 images the bias is most of the floor; these compare across
   * set sizes, and the floor's is about 0.
   */
  fdInfinity?: number;
  fdInfinityRealFloor?: number;
  adherence: Record<string, number>;
  adherenceMean: number;
  scorer: number;
  scorerReal: number;
  hueToReal: number;
  hueToBase?: number;
  sharpness: number;
  sharpnessReal: number;
  channelDriftToReal: number;
  /** With options.onnxFeatures: FD in that network's features, and its real-vs-real floor. */
  onnxFd?: number;
  onnxFdRealFloor?: number;
  /** With options.onnxScorer: its mean score of generated and of real images. */
  onnxScore?: number;
  onnxScoreReal?: number;
  /** Wall time of generation, and images per second. */
  generationSeconds: number;
  imagesPerSecond: number;
}

/** The held-out prompts: the captions of validation figures start..start+count. */
export function heldOutPrompts(count: number, start = 0): string[] {
  return Array.from({ length: count }, (_, i) => captionFor(figureAttributesAt(VALIDATION_SEED, start + i)));
}

/** The held-out prompts and their real images (the validation figures the evaluators are checked on). */
export function heldOutSet(count: number, size: number, start = 0): { prompts: string[]; images: Tensor<'f32'> } {
  const { captions, images } = validationFigures(count, size, start);
  return { prompts: captions, images };
}

function resolve<T>(given: string | T | undefined, file: string, kind: 'attributes' | 'scorer'): { evaluator: T; owned: boolean } {
  if (given !== undefined && typeof given !== 'string') return { evaluator: given, owned: false };
  return { evaluator: loadEvaluator((given as string | undefined) ?? file, kind) as T, owned: true };
}

/**
 * Generates `prompts` images in batches (prompt i with seed + i's noise batch), with `lora` on top
 * when given. Under mpirun the batches are split over the ranks and every rank gets all images.
 */
function generateAll(model: TextToImage, prompts: readonly string[], options: EvaluateOptions, lora: readonly AdapterFile[]): Tensor<'f32'> {
  const batch = options.batch ?? 64;
  const size = model.imageSize;
  const per = 3 * size * size;
  const data = new Float32Array(prompts.length * per);
  const { loraScale, loraGroups, allowOtherBase } = options;
  const selection: LoraSelection = {
    ...(loraScale !== undefined ? { loraScale } : {}),
    ...(loraGroups !== undefined ? { loraGroups } : {}),
    ...(allowOtherBase !== undefined ? { allowOtherBase } : {}),
  };
  const comm = worldCommunicator();
  const starts = Array.from({ length: Math.ceil(prompts.length / batch) }, (_, i) => i * batch);
  for (let round = 0; round < starts.length; round += comm.size) {
    const start = starts[round + comm.rank];
    if (start !== undefined) {
      const images = model.generate({
        prompts: prompts.slice(start, start + batch),
        steps: options.steps ?? 50,
        cfg: options.cfg ?? 5,
        seed: (options.seed ?? 0) + start,
        ...(lora.length > 0 ? { lora, ...selection } : {}),
      });
      data.set(images.toArray(), start * per);
      images.dispose();
    }
    const roundStarts = starts.slice(round, round + comm.size);
    if (comm.size > 1) {
      const mine = start === undefined ? new Uint8Array(0) : new Uint8Array(data.buffer, start * per * 4, Math.min(batch, prompts.length - start) * per * 4);
      comm.allgatherBytes(mine, `evaluation: the images of prompts ${roundStarts[0]}..`).forEach((bytes, rank) => {
        const from = roundStarts[rank];
        if (from !== undefined && rank !== comm.rank) data.set(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)), from * per);
      });
    }
    options.onProgress?.(Math.min(prompts.length, roundStarts[roundStarts.length - 1]! + batch), prompts.length);
  }
  return fromArray(data, [prompts.length, 3, size, size]);
}

/** The checkpoint's own images of the held-out prompts evaluateModel would generate (its options.baseImages). */
export function baseImagesFor(model: TextToImage, options: Pick<EvaluateOptions, 'prompts' | 'seed' | 'steps' | 'cfg' | 'batch'> = {}): Tensor<'f32'> {
  return generateAll(model, heldOutPrompts(options.prompts ?? 256), options, []);
}

/** Measures `model` (with options.lora on top, when given) on held-out prompts. */
export async function evaluateModel(model: TextToImage, options: EvaluateOptions = {}): Promise<EvaluationReport> {
  const count = options.prompts ?? 256;
  if (!Number.isInteger(count) || count < 2) throw new RangeError(`evaluate: prompts must be an integer >= 2 (FD needs two images a set), got ${count}`);
  if (loraSources(options.lora).length === 0 && (options.loraScale !== undefined || options.loraGroups !== undefined || options.allowOtherBase !== undefined)) {
    throw new RangeError('evaluate: loraScale, loraGroups and allowOtherBase apply to adapter files: pass them with lora');
  }
  const onnxFeatures = typeof options.onnxFeatures === 'string' ? await onnxFeatureExtractor(options.onnxFeatures) : options.onnxFeatures;
  const onnxScore = typeof options.onnxScorer === 'string' ? await onnxScorer(options.onnxScorer) : options.onnxScorer;
  const size = model.imageSize;
  const classifier = resolve<AttributeClassifier>(options.classifier, shippedEvaluator('attributes'), 'attributes');
  if (classifier.evaluator.config.imageSize !== size) {
    if (classifier.owned) classifier.evaluator.dispose();
    throw new RangeError(`evaluate: the model makes ${size}x${size} images but the classifier reads ${classifier.evaluator.config.imageSize}x${classifier.evaluator.config.imageSize}`);
  }
  let scorer: { evaluator: CaptionScorer; owned: boolean };
  try {
    scorer = resolve<CaptionScorer>(options.scorer, shippedEvaluator('scorer'), 'scorer');
  } catch (err) {
    if (classifier.owned) classifier.evaluator.dispose();
    throw err;
  }
  let lora: OpenedAdapterFiles;
  try {
    lora = openAdapterFiles(loraSources(options.lora));
  } catch (err) {
    if (classifier.owned) classifier.evaluator.dispose();
    if (scorer.owned) scorer.evaluator.dispose();
    throw err;
  }
  const real = heldOutSet(count, size);
  const otherReal = heldOutSet(count, size, count);
  let generated: Tensor<'f32'> | undefined;
  let base: Tensor<'f32'> | undefined;
  try {
    const started = performance.now();
    generated = generateAll(model, real.prompts, options, lora.files);
    const generationSeconds = (performance.now() - started) / 1000;
    if (lora.files.length > 0 && options.baseImages !== undefined) {
      const expected = [count, 3, size, size];
      if (options.baseImages.shape.length !== 4 || options.baseImages.shape.some((d, i) => d !== expected[i])) {
        throw new RangeError(`evaluate: baseImages has shape [${options.baseImages.shape.join(', ')}], expected [${expected.join(', ')}]`);
      }
    } else if (lora.files.length > 0) {
      base = generateAll(model, real.prompts, options, []);
    }

    const realFeatures = classifier.evaluator.features(real.images);
    const generatedFeatures = classifier.evaluator.features(generated);
    const otherRealFeatures = classifier.evaluator.features(otherReal.images);
    const fd = frechetDistance(generatedFeatures, realFeatures);
    const fdRealFloor = frechetDistance(otherRealFeatures, realFeatures);
    const unbiased: Partial<EvaluationReport> =
      // Fewer images and the line would be fitted through subsets with singular covariances.
      count >= 2 * realFeatures.dim
        ? {
            fdInfinity: frechetDistanceInfinity(generatedFeatures, realFeatures).fdInfinity,
            fdInfinityRealFloor: frechetDistanceInfinity(otherRealFeatures, realFeatures).fdInfinity,
          }
        : {};

    const adherence = promptAdherence(real.prompts, classifier.evaluator.predict(generated));
    const values = Object.values(adherence);
    const mean = (xs: ArrayLike<number>) => Array.from(xs).reduce((s, x) => s + x, 0) / xs.length;
    const onnx: Partial<EvaluationReport> = {};
    if (onnxFeatures !== undefined) {
      const realOnnx = await onnxFeatures(real.images);
      onnx.onnxFd = frechetDistance(await onnxFeatures(generated), realOnnx);
      onnx.onnxFdRealFloor = frechetDistance(await onnxFeatures(otherReal.images), realOnnx);
    }
    if (onnxScore !== undefined) {
      onnx.onnxScore = mean(await onnxScore(generated));
      onnx.onnxScoreReal = mean(await onnxScore(real.images));
    }

    return {
      prompts: count,
      fd,
      fdRealFloor,
      ...unbiased,
      adherence,
      adherenceMean: mean(values),
      scorer: mean(scorer.evaluator.score(real.prompts, generated)),
      scorerReal: mean(scorer.evaluator.score(real.prompts, real.images)),
      hueToReal: hueDistance(generated, real.images),
      ...(base !== undefined || (lora.files.length > 0 && options.baseImages !== undefined) ? { hueToBase: hueDistance(generated, base ?? options.baseImages!) } : {}),
      sharpness: meanSharpness(generated),
      sharpnessReal: meanSharpness(real.images),
      channelDriftToReal: channelMeanDrift(generated, real.images).norm,
      ...onnx,
      generationSeconds,
      imagesPerSecond: count / generationSeconds,
    };
  } finally {
    for (const t of [real.images, otherReal.images, generated, base]) t?.dispose();
    for (const f of lora.owned) f.dispose();
    if (classifier.owned) classifier.evaluator.dispose();
    if (scorer.owned) scorer.evaluator.dispose();
  }
}

/** The report as a table (one row per measure). */
export function formatReport(report: EvaluationReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const rows: [string, string][] = [
    ['held-out prompts', String(report.prompts)],
    ['FD to real (real-vs-real floor)', `${report.fd.toFixed(2)} (${report.fdRealFloor.toFixed(2)})`],
    ...(report.fdInfinity !== undefined ? [['FD-infinity to real (floor)', `${report.fdInfinity.toFixed(2)} (${report.fdInfinityRealFloor!.toFixed(2)})`] as [string, string]] : []),
    ...Object.entries(report.adherence).map(([k, v]): [string, string] => [`adherence: ${k}`, pct(v)]),
    ['adherence: mean', pct(report.adherenceMean)],
    ['scorer (real figures)', `${report.scorer.toFixed(2)} (${report.scorerReal.toFixed(2)})`],
    ['hue distance to real, degrees', report.hueToReal.toFixed(2)],
    ...(report.hueToBase !== undefined ? [['hue distance to base, degrees', report.hueToBase.toFixed(2)] as [string, string]] : []),
    ['sharpness (real)', `${report.sharpness.toFixed(4)} (${report.sharpnessReal.toFixed(4)})`],
    ['channel-mean drift to real', report.channelDriftToReal.toFixed(4)],
    ...(report.onnxFd !== undefined ? [['FD in the ONNX features (floor)', `${report.onnxFd.toFixed(3)} (${report.onnxFdRealFloor!.toFixed(3)})`] as [string, string]] : []),
    ...(report.onnxScore !== undefined ? [['ONNX score (real figures)', `${report.onnxScore.toFixed(4)} (${report.onnxScoreReal!.toFixed(4)})`] as [string, string]] : []),
    ['generation', `${report.imagesPerSecond.toFixed(1)} images/s`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}
