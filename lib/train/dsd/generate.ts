// Sampling with a DSD adapter: the person of a reference image in the context of a prompt, with
// no training per person. Every denoising step runs the two-frame model on three conditions at
// once and combines them with two guidance scales, as image-editing models do (InstructPix2Pix):
//   eps = e(no image, no text) + cfgImage (e(image, no text) - e(no image, no text))
//                              + cfgText  (e(image, text)    - e(image, no text))
// where "no image" is a reference of zeros and "no text" the negative (default empty) prompt.
import * as F from '../../autograd/functions.js';
import { noGrad } from '../../autograd/variable.js';
import { sample } from '../../diffusion/sampler.js';
import type { TextToImage } from '../../models/text_to_image.js';
import { splitFrames, twoFrames } from '../../nn/dsd.js';
import { axpy } from '../../ops/elementwise.js';
import { keep, tidy } from '../../scope.js';
import { fromArray, type Tensor } from '../../tensor.js';
import { describeSource } from '../../io/image_decode.js';
import { readReference, type ReferenceSource } from '../personalize/identities.js';
import { loadDsd, shippedDsd, type DsdAdapter } from './adapter.js';

export interface DsdGenerateOptions {
  /** One prompt per reference (or one for all). */
  prompts: string | readonly string[];
  /** References CHW in [-1, 1] at the model's size: one per prompt, or one for every prompt. */
  references: Float32Array | readonly Float32Array[];
  /** Images per prompt (default 1): prompts.length * n images, prompt-major. */
  n?: number;
  /** Text guidance (default the adapter's). */
  cfgText?: number;
  /** Image guidance (default the adapter's). */
  cfgImage?: number;
  negative?: string;
  steps?: number;
  seed?: number;
  onStep?: (index: number, total: number) => void;
}

export interface DsdGuidance {
  cfgText: number;
  cfgImage: number;
}

/** Images [prompts * n, C, H, W] in [-1, 1] of the references' people in the prompts' contexts. */
export function dsdGenerate(model: TextToImage, dsd: DsdAdapter, guidance: DsdGuidance, options: DsdGenerateOptions): Tensor<'f32'> {
  const prompts = typeof options.prompts === 'string' ? [options.prompts] : [...options.prompts];
  if (prompts.length === 0) throw new RangeError('dsd generate: expected at least one prompt');
  const n = options.n ?? 1;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`dsd generate: n must be an integer >= 1, got ${n}`);
  const size = model.imageSize;
  const per = model.channels * size * size;
  const refs = options.references instanceof Float32Array ? [options.references] : [...options.references];
  if (refs.length !== 1 && refs.length !== prompts.length) {
    throw new RangeError(`dsd generate: expected one reference or one per prompt (${prompts.length}), got ${refs.length}`);
  }
  refs.forEach((r, i) => {
    if (r.length !== per) throw new RangeError(`dsd generate: reference ${i} has ${r.length} values, expected ${per} (${model.channels}x${size}x${size}, CHW in [-1, 1])`);
  });
  const cfgText = options.cfgText ?? guidance.cfgText;
  const cfgImage = options.cfgImage ?? guidance.cfgImage;
  for (const [name, value] of [['cfgText', cfgText], ['cfgImage', cfgImage]] as const) {
    if (!(Number.isFinite(value) && value >= 0)) throw new RangeError(`dsd generate: ${name} must be a finite number >= 0, got ${value}`);
  }
  const steps = options.steps ?? 25;
  const batch = prompts.length * n;
  const wasTraining = model.dit.training;
  model.dit.eval();
  try {
    return noGrad(() => {
      // Three conditions per image, condition-major: (image, text), (image, no text), (no image, no text).
      const batchPrompts = prompts.flatMap((p) => Array<string>(n).fill(p));
      const negative = options.negative ?? '';
      const prompts3 = [...batchPrompts, ...Array<string>(2 * batch).fill(negative)];
      const references = new Float32Array(3 * batch * per);
      for (let i = 0; i < batch; i++) {
        const ref = refs.length === 1 ? refs[0]! : refs[Math.floor(i / n)]!;
        references.set(ref, i * per);
        references.set(ref, (batch + i) * per);
      }
      const present = Array.from({ length: 3 * batch }, (_, i) => i < 2 * batch);
      const text = tidy(() => {
        const encoded = model.encodePrompts(prompts3.flatMap((p) => [p, p]));
        return { tokens: encoded.tokens.value, pooled: encoded.pooled.value, lengths: encoded.lengths };
      });
      for (const t of [text.tokens, text.pooled, text.lengths]) keep(t);
      const refTensor = fromArray(references, [3 * batch, model.channels, size, size]);
      try {
        const predict = (xt: Tensor<'f32'>, t: number): Tensor<'f32'> =>
          tidy(() => {
            const x3 = F.concat([xt, xt, xt], 0).value;
            const tokens = dsd.conditioner.tokens(model.dit, refTensor, x3, present);
            const out = splitFrames(model.predictEps(twoFrames(x3).value, t, text, { frames: 2, tokens }))[1].value;
            const full = out.slice(0, batch);
            const noText = out.slice(batch, 2 * batch);
            const none = out.slice(2 * batch, 3 * batch).clone();
            // none + cfgImage (noText - none) + cfgText (full - noText)
            axpy(cfgImage - cfgText, noText, none, { beta: 1 - cfgImage });
            return axpy(cfgText, full, none);
          });
        return sample(predict, [batch, model.channels, size, size], model.schedule, {
          sampler: 'ddim',
          steps,
          seed: options.seed ?? 0,
          ...(options.onStep ? { onStep: (index: number) => options.onStep!(index, steps) } : {}),
        });
      } finally {
        for (const t of [text.tokens, text.pooled, text.lengths, refTensor]) t.dispose();
      }
    });
  } finally {
    model.dit.train(wasTraining);
  }
}

export interface DsdSampleOptions extends Omit<DsdGenerateOptions, 'references'> {
  /** The DSD adapter file (default the shipped models/dsd-tiny/dsd.safetensors). */
  adapter?: string;
  /** The reference: an image file or its bytes (any format sharp reads; converted as loadReferenceImage does), or CHW pixels in [-1, 1]. */
  reference: ReferenceSource;
  /** Apply an adapter trained on other base weights (default: that is an error). */
  allowOtherBase?: boolean;
  /** Told each conversion made to the reference (resized, alpha dropped, grey to RGB). */
  log?: (line: string) => void;
}

/**
 * The SDK's one call: reads the reference, attaches the adapter to `model` for this call only,
 * samples with the adapter's guidance defaults (unless given), and leaves `model` as it was.
 */
export async function dsdSample(model: TextToImage, options: DsdSampleOptions): Promise<Tensor<'f32'>> {
  const { adapter, reference, allowOtherBase, log, ...rest } = options;
  const { pixels, conversions } = await readReference(reference, model.imageSize, 'dsd');
  // Only a file or bytes are converted (pixels come back as given).
  for (const c of conversions) log?.(`dsd: reference ${describeSource(reference as string | Buffer)}: ${c}`);
  const dsd = loadDsd(adapter ?? shippedDsd, model, { allowOtherBase: allowOtherBase ?? false });
  try {
    return dsdGenerate(model, dsd, dsd.meta, { ...rest, references: pixels });
  } finally {
    dsd.detach();
  }
}
