// A user's own exported networks (CLIP, PickScore, Inception, ...) as feature extractors and
// scorers for lib/eval, run by onnxruntime-node on the cpu. onnxruntime-node is an optional peer
// dependency: it is imported on first use, and a missing install is reported with the command
// that fixes it, so realtune itself installs and runs without it.
import { readFile } from 'node:fs/promises';
import type * as OnnxRuntime from 'onnxruntime-node';
import { Tensor } from '../tensor.js';
import type { FeatureMatrix } from './metrics.js';

const installHint =
  'install it with `npm install onnxruntime-node` (add `--onnxruntime-node-install=skip` where NuGet is unreachable: ' +
  'the cpu runtime ships in the package, only the CUDA providers of linux-x64 are downloaded)';

let runtime: Promise<typeof OnnxRuntime> | undefined;

function onnxRuntime(): Promise<typeof OnnxRuntime> {
  runtime ??= import('onnxruntime-node').catch((error: NodeJS.ErrnoException) => {
    // Not cached: a later call after `npm install` should succeed.
    runtime = undefined;
    const missing = (error.code === 'ERR_MODULE_NOT_FOUND' || error.code === 'MODULE_NOT_FOUND') && String(error.message).includes("'onnxruntime-node'");
    throw new Error(
      missing
        ? `onnx: onnxruntime-node is not installed (an optional peer dependency of realtune, needed only for ONNX models); ${installHint}`
        : `onnx: onnxruntime-node is installed but did not load (${error.message}); reinstall it for this platform: ${installHint}`,
    );
  });
  return runtime;
}

/** A network's declared tensor shape; a string is a symbolic dimension (any size), e.g. 'N'. */
export type DeclaredShape = readonly (number | string)[];

export interface OnnxModelOptions {
  /** The input the images go to (default: the model's only input). */
  inputName?: string;
  /** The output to read (default: the model's only output). */
  outputName?: string;
  /**
   * Per-channel normalisation the network was trained with, applied to pixels mapped to [0, 1]
   * (CLIP: mean [0.4815, 0.4578, 0.4082], std [0.2686, 0.2613, 0.2758]). Default: none, the
   * network gets the images as they are, in [-1, 1].
   */
  normalize?: { mean: readonly [number, number, number]; std: readonly [number, number, number] };
  /** Images per run (default: all at once, or the model's batch size when it declares a fixed one). */
  batchSize?: number;
}

/** One output row per image, row-major [count, dim]: features, or scores when dim is 1. */
export interface OnnxOutput extends FeatureMatrix {
  data: Float32Array;
}

function formatShape(shape: DeclaredShape): string {
  return `[${shape.join(', ')}]`;
}

/** A fixed dimension of a declared shape, or undefined for a symbolic one. */
function fixedDim(dim: number | string | undefined): number | undefined {
  return typeof dim === 'number' && dim > 0 ? dim : undefined;
}

function tensorMetadata(
  metadata: readonly OnnxRuntime.InferenceSession.ValueMetadata[] | undefined,
  name: string,
  file: string,
): OnnxRuntime.InferenceSession.TensorValueMetadata {
  if (metadata === undefined) throw new Error(`onnx: ${file}: this onnxruntime-node does not report tensor shapes; realtune needs onnxruntime-node >= 1.22`);
  const value = metadata.find((m) => m.name === name);
  if (value === undefined || !value.isTensor) throw new TypeError(`onnx: ${file}: '${name}' is not a tensor`);
  return value;
}

function pickName(kind: 'input' | 'output', requested: string | undefined, names: readonly string[], file: string): string {
  const list = names.map((n) => `'${n}'`).join(', ');
  if (requested !== undefined) {
    if (!names.includes(requested)) throw new RangeError(`onnx: ${file} has no ${kind} '${requested}'; its ${kind}s are ${list}`);
    return requested;
  }
  if (names.length !== 1) throw new RangeError(`onnx: ${file} has ${names.length} ${kind}s (${list}); choose one with the ${kind}Name option`);
  return names[0]!;
}

export class OnnxModel {
  readonly file: string;
  readonly inputName: string;
  readonly outputName: string;
  /** The input's declared shape, [N, 3, H, W] with any of them symbolic. */
  readonly inputShape: DeclaredShape;
  /** The output's declared shape. */
  readonly outputShape: DeclaredShape;
  readonly #runtime: typeof OnnxRuntime;
  readonly #session: OnnxRuntime.InferenceSession;
  readonly #options: OnnxModelOptions;

  private constructor(file: string, runtime: typeof OnnxRuntime, session: OnnxRuntime.InferenceSession, options: OnnxModelOptions) {
    this.file = file;
    this.#runtime = runtime;
    this.#session = session;
    this.#options = options;
    this.inputName = pickName('input', options.inputName, session.inputNames, file);
    this.outputName = pickName('output', options.outputName, session.outputNames, file);
    const input = tensorMetadata(session.inputMetadata, this.inputName, file);
    const output = tensorMetadata(session.outputMetadata, this.outputName, file);
    this.inputShape = Object.freeze([...input.shape]);
    this.outputShape = Object.freeze([...output.shape]);
    if (input.type !== 'float32') throw new TypeError(`onnx: ${file}: input '${this.inputName}' has type ${input.type}, expected float32`);
    if (input.shape.length !== 4 || (fixedDim(input.shape[1]) ?? 3) !== 3) {
      throw new RangeError(`onnx: ${file}: input '${this.inputName}' has shape ${formatShape(input.shape)}, expected an image batch [N, 3, H, W]`);
    }
    const fixedBatch = fixedDim(input.shape[0]);
    if (fixedBatch !== undefined && options.batchSize !== undefined && options.batchSize !== fixedBatch) {
      throw new RangeError(`onnx: ${file}: input '${this.inputName}' has a fixed batch of ${fixedBatch}, got batchSize ${options.batchSize}`);
    }
  }

  /** Loads an ONNX file; fails on a missing or unreadable file or a model that does not take image batches. */
  static async load(file: string, options: OnnxModelOptions = {}): Promise<OnnxModel> {
    checkOptions(options);
    const runtime = await onnxRuntime();
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (error) {
      throw new Error(`onnx: cannot read ${file}: ${(error as Error).message}`);
    }
    let session: OnnxRuntime.InferenceSession;
    try {
      session = await runtime.InferenceSession.create(bytes);
    } catch (error) {
      throw new Error(`onnx: ${file} is not a model onnxruntime can load: ${(error as Error).message}`);
    }
    try {
      return new OnnxModel(file, runtime, session, options);
    } catch (error) {
      await session.release();
      throw error;
    }
  }

  /**
   * Runs the network on a batch of CHW images in [-1, 1]: a Tensor [N, 3, H, W], or a
   * Float32Array with its `shape` (which may be left out when the model fixes H and W).
   * Returns one row per image: the output flattened after its batch dimension. Images are not
   * resized: bring them to the model's H x W first (resizeImage in lib/io).
   */
  async run(images: Tensor | Float32Array, shape?: readonly number[]): Promise<OnnxOutput> {
    const { data, dims } = this.#batch(images, shape);
    const [count, , height, width] = dims;
    const perImage = 3 * height * width;
    const fixedBatch = fixedDim(this.inputShape[0]);
    const chunk = fixedBatch ?? this.#options.batchSize ?? count;
    if (fixedBatch !== undefined && count % fixedBatch !== 0) {
      throw new RangeError(`onnx: ${this.file}: input '${this.inputName}' has a fixed batch of ${chunk}, got ${count} images (not a multiple)`);
    }
    const rows: Float32Array[] = [];
    let dim = 0;
    for (let start = 0; start < count; start += chunk) {
      const size = Math.min(chunk, count - start);
      const input = new this.#runtime.Tensor('float32', this.#normalized(data.subarray(start * perImage, (start + size) * perImage), height * width), [size, 3, height, width]);
      let output: OnnxRuntime.Tensor;
      try {
        output = (await this.#session.run({ [this.inputName]: input }, [this.outputName]))[this.outputName]!;
      } catch (error) {
        throw new Error(`onnx: ${this.file}: running on ${formatShape([size, 3, height, width])} failed: ${(error as Error).message}`);
      }
      if (output.type !== 'float32' || output.dims[0] !== size) {
        throw new RangeError(`onnx: ${this.file}: output '${this.outputName}' is ${output.type} ${formatShape(output.dims)}, expected float32 [${size}, ...] (one row per image)`);
      }
      dim = output.size / size;
      rows.push(output.data as Float32Array);
    }
    const out = new Float32Array(count * dim);
    let offset = 0;
    for (const row of rows) {
      out.set(row, offset);
      offset += row.length;
    }
    return { data: out, count, dim };
  }

  /** Frees the session. */
  async dispose(): Promise<void> {
    await this.#session.release();
  }

  #batch(images: Tensor | Float32Array, shape: readonly number[] | undefined): { data: Float32Array; dims: [number, number, number, number] } {
    const declared = formatShape(this.inputShape);
    let data: Float32Array;
    let dims: number[];
    if (images instanceof Tensor) {
      if (shape !== undefined) throw new TypeError(`onnx: ${this.file}: shape is for a Float32Array; a Tensor has its own`);
      if (images.dtype === 'i32') throw new TypeError(`onnx: ${this.file}: images have dtype i32, expected f32 or bf16`);
      data = images.toArray() as Float32Array;
      dims = [...images.shape];
    } else if (images instanceof Float32Array) {
      data = images;
      if (shape !== undefined) {
        dims = [...shape];
      } else {
        const height = fixedDim(this.inputShape[2]);
        const width = fixedDim(this.inputShape[3]);
        if (height === undefined || width === undefined) {
          throw new RangeError(`onnx: ${this.file}: input '${this.inputName}' is ${declared} with a symbolic height or width; give the images' shape [N, 3, H, W] with the Float32Array`);
        }
        dims = [data.length / (3 * height * width), 3, height, width];
      }
      if (dims.some((d) => !Number.isInteger(d) || d < 0) || dims.reduce((a, b) => a * b, 1) !== data.length) {
        throw new RangeError(`onnx: ${this.file}: a Float32Array of ${data.length} values is not a batch of shape ${formatShape(dims.map((d) => (Number.isInteger(d) ? d : '?')))}`);
      }
    } else {
      throw new TypeError(`onnx: ${this.file}: images must be a Tensor [N, 3, H, W] or a Float32Array, got ${String(images)}`);
    }
    const fits = dims.length === 4 && dims[0]! > 0 && this.inputShape.every((d, i) => i === 0 || fixedDim(d) === undefined || d === dims[i]);
    if (!fits) throw new RangeError(`onnx: ${this.file}: input '${this.inputName}' is declared ${declared}, got images of shape ${formatShape(dims)}`);
    return { data, dims: dims as [number, number, number, number] };
  }

  /** Pixels of whole images, `plane` = H x W per channel. */
  #normalized(pixels: Float32Array, plane: number): Float32Array {
    const { normalize } = this.#options;
    if (normalize === undefined) return pixels;
    const out = new Float32Array(pixels.length);
    for (let i = 0; i < pixels.length; i++) {
      const c = Math.floor(i / plane) % 3;
      out[i] = ((pixels[i]! + 1) / 2 - normalize.mean[c]!) / normalize.std[c]!;
    }
    return out;
  }
}

function checkOptions(options: OnnxModelOptions): void {
  const { batchSize, normalize } = options;
  if (batchSize !== undefined && (!Number.isInteger(batchSize) || batchSize < 1)) throw new RangeError(`onnx: batchSize must be an integer >= 1, got ${batchSize}`);
  if (normalize !== undefined) {
    for (const key of ['mean', 'std'] as const) {
      const values = normalize[key];
      if (!Array.isArray(values) || values.length !== 3 || !values.every((v) => Number.isFinite(v))) throw new RangeError(`onnx: normalize.${key} must be 3 finite numbers (R, G, B), got ${JSON.stringify(values)}`);
    }
    if (!normalize.std.every((s) => s > 0)) throw new RangeError(`onnx: normalize.std must be positive, got ${JSON.stringify(normalize.std)}`);
  }
}

/** Images to one feature row each: what frechetDistance compares. */
export type FeatureExtractor = (images: Tensor | Float32Array, shape?: readonly number[]) => Promise<OnnxOutput>;

/** Images to one score each. */
export type Scorer = (images: Tensor | Float32Array, shape?: readonly number[]) => Promise<Float32Array>;

/** An exported feature network (Inception pool features, CLIP image embeddings, ...) as a FeatureExtractor. */
export async function onnxFeatureExtractor(file: string, options: OnnxModelOptions = {}): Promise<FeatureExtractor> {
  const model = await OnnxModel.load(file, options);
  return (images, shape) => model.run(images, shape);
}

/** An exported scoring network (an aesthetic or preference head with one output per image) as a Scorer. */
export async function onnxScorer(file: string, options: OnnxModelOptions = {}): Promise<Scorer> {
  const model = await OnnxModel.load(file, options);
  const perImage = model.outputShape.slice(1);
  if (perImage.every((d) => fixedDim(d) !== undefined) && perImage.reduce<number>((a, d) => a * (d as number), 1) !== 1) {
    throw new RangeError(`onnx: ${file}: output '${model.outputName}' has shape ${formatShape(model.outputShape)}, expected one score per image ([N] or [N, 1])`);
  }
  return async (images, shape) => {
    const { data, dim } = await model.run(images, shape);
    if (dim !== 1) throw new RangeError(`onnx: ${file}: output '${model.outputName}' has ${dim} values per image, expected one score`);
    return data;
  };
}
