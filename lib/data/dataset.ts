// The dataset interface the training loops consume, batching onto a device, and datasets over
// image files (a folder with .txt captions, or a JSON Lines manifest).
import { accessSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import type { DeviceRequest } from '../device.js';
import { loadImage, resizeImage, type CropMode } from '../io/images.js';
import { readJsonl } from '../io/jsonl.js';
import { fromArray, type Tensor } from '../tensor.js';
import { seededRandom } from '../host_random.js';

/** One training example: an RGB image, CHW, values in [-1, 1], and its caption. */
export interface Example {
  image: Float32Array;
  caption: string;
}

/**
 * A finite, indexable set of examples at one square image size.
 *
 * `get(i)` is synchronous. Datasets backed by files decode images with sharp, which is
 * asynchronous, so they decode lazily in `load(indices)` (and cache what they decoded);
 * `get(i)` on an index not loaded yet throws. `batchOf` calls `load` for you. In-memory
 * datasets (procedural figures) resolve `load` at once.
 */
export interface Dataset {
  /** Number of examples. */
  readonly size: number;
  /** Side of every image in pixels (images are 3 x imageSize x imageSize). */
  readonly imageSize: number;
  /** The caption of example i, without decoding its image. */
  caption(i: number): string;
  get(i: number): Example;
  /** Makes `get` ready for these indices (default: all). */
  load(indices?: readonly number[]): Promise<void>;
}

export interface BatchOptions {
  /** Image side of the batch; examples at another size are resampled (default: the dataset's). */
  size?: number;
  device?: DeviceRequest;
}

export interface Batch {
  /** [N, 3, size, size], f32, values in [-1, 1]. */
  images: Tensor;
  captions: string[];
}

function checkIndex(op: string, dataset: Dataset, i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= dataset.size) throw new RangeError(`${op}: index ${i} out of range [0, ${dataset.size})`);
}

/** Loads the examples at `indices` and stacks them into one image tensor on `device`. */
export async function batchOf(dataset: Dataset, indices: readonly number[], options: BatchOptions = {}): Promise<Batch> {
  if (indices.length === 0) throw new RangeError('batchOf: indices is empty');
  for (const i of indices) checkIndex('batchOf', dataset, i);
  const size = options.size ?? dataset.imageSize;
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`batchOf: size must be an integer >= 1, got ${size}`);
  await dataset.load(indices);
  const per = 3 * size * size;
  const data = new Float32Array(indices.length * per);
  const captions: string[] = [];
  indices.forEach((index, k) => {
    const { image, caption } = dataset.get(index);
    const from = dataset.imageSize;
    data.set(size === from ? image : resizeImage(image, from, from, size, size), k * per);
    captions.push(caption);
  });
  const images = fromArray(data, [indices.length, 3, size, size], options.device === undefined ? {} : { device: options.device });
  return { images, captions };
}

/** A permutation of 0..n-1 (Fisher-Yates over a seeded host stream), the same for the same seed. */
export function shuffledIndices(n: number, seed: number): number[] {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`shuffledIndices: n must be an integer >= 0, got ${n}`);
  const random = seededRandom(seed);
  const out = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}

export interface FileDatasetOptions {
  /** Image side in pixels: shorter side resized to it, then cropped square. */
  size: number;
  /** 'center' (default) or 'random': a random crop, fixed per example by `seed`. */
  crop?: CropMode;
  seed?: number;
  /** Images decoded at once while loading (default 4). */
  concurrency?: number;
}

/** An image file and its caption. */
export interface FileEntry {
  image: string;
  caption: string;
}

/** A dataset over image files with known captions; images decode on first `load` and stay cached. */
function fileDataset(entries: readonly FileEntry[], options: FileDatasetOptions, op: string): Dataset {
  const size = options.size;
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`${op}: size must be an integer >= 1, got ${String(size)}`);
  const crop = options.crop ?? 'center';
  const seed = options.seed ?? 0;
  const concurrency = options.concurrency ?? 4;
  const cache = new Map<number, Float32Array>();
  const pending = new Map<number, Promise<void>>();
  const decode = (i: number): Promise<void> => {
    const existing = pending.get(i);
    if (existing) return existing;
    const entry = entries[i]!;
    const job = loadImage(entry.image, { size, crop, seed: (seed * 0x9e3779b1 + i) >>> 0 }).then(
      (image) => {
        cache.set(i, image);
        pending.delete(i);
      },
      (error: unknown) => {
        pending.delete(i);
        throw error;
      },
    );
    pending.set(i, job);
    return job;
  };
  const dataset: Dataset = {
    size: entries.length,
    imageSize: size,
    caption(i) {
      checkIndex(op, dataset, i);
      return entries[i]!.caption;
    },
    get(i) {
      checkIndex(op, dataset, i);
      const image = cache.get(i);
      if (image === undefined) throw new Error(`${op}: image ${i} (${entries[i]!.image}) is not loaded yet: await dataset.load([${i}]) first (batchOf does this)`);
      return { image, caption: entries[i]!.caption };
    },
    async load(indices) {
      const wanted = (indices ?? entries.map((_, i) => i)).filter((i) => {
        checkIndex(op, dataset, i);
        return !cache.has(i);
      });
      const queue = [...new Set(wanted)];
      const workers = Array.from({ length: Math.max(1, Math.min(concurrency, queue.length)) }, async () => {
        for (let next = queue.shift(); next !== undefined; next = queue.shift()) await decode(next);
      });
      await Promise.all(workers);
    },
  };
  return dataset;
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp']);

/** Files read or looked up between two turns of the event loop while listing. */
const LISTING_SLICE = 1000;

/**
 * fn over 0..n-1 in order, synchronously in slices with a turn of the event loop between them:
 * a synchronous read of a small file costs a fraction of an asynchronous one (100000 captions in
 * about 2 s instead of 11 on 2 cores), and the loop still runs every slice.
 */
async function forEachInSlices(n: number, fn: (i: number) => void): Promise<void> {
  for (let start = 0; start < n; start += LISTING_SLICE) {
    for (let i = start; i < Math.min(n, start + LISTING_SLICE); i++) fn(i);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * The entries of a folder: every `*.png|*.jpg|*.jpeg|*.webp` in `dir` (not recursive, sorted by
 * name) with the caption in the same-name `.txt` file beside it (trimmed); a missing caption file
 * is an error naming the image. Nothing is decoded.
 */
export async function listFolder(dir: string, op: string): Promise<FileEntry[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    throw new Error(`${op}: cannot read directory ${dir}: ${(error as Error).message}`);
  }
  const images = names.filter((n) => IMAGE_EXTENSIONS.has(path.extname(n).toLowerCase())).sort();
  if (images.length === 0) throw new Error(`${op}: no images (*.png, *.jpg, *.jpeg, *.webp) in ${dir}`);
  const entries: FileEntry[] = new Array(images.length);
  await forEachInSlices(images.length, (i) => {
    const name = images[i]!;
    const image = path.join(dir, name);
    const captionFile = path.join(dir, `${name.slice(0, name.length - path.extname(name).length)}.txt`);
    let caption: string;
    try {
      caption = readFileSync(captionFile, 'utf8').trim();
    } catch {
      throw new Error(`${op}: image ${image} has no caption file ${captionFile}`);
    }
    entries[i] = { image, caption };
  });
  return entries;
}

/**
 * The entries of a JSON Lines manifest, one `{"image": "path", "caption": "..."}` per line (blank
 * lines skipped); image paths are relative to the manifest's directory and must exist. Errors
 * name file and line. Nothing is decoded.
 */
export async function readManifest(file: string, op: string): Promise<FileEntry[]> {
  const base = path.dirname(file);
  const records = await readJsonl(file, op, '{"image": ..., "caption": ...}');
  const entries: FileEntry[] = records.map(({ where, record }) => {
    const { image, caption } = record;
    if (typeof image !== 'string' || image === '') throw new Error(`${op}: ${where}: "image" must be a non-empty string path`);
    if (typeof caption !== 'string') throw new Error(`${op}: ${where}: "caption" must be a string`);
    return { image: path.resolve(base, image), caption };
  });
  await forEachInSlices(entries.length, (i) => {
    try {
      accessSync(entries[i]!.image);
    } catch {
      throw new Error(`${op}: ${records[i]!.where}: image ${entries[i]!.image} does not exist`);
    }
  });
  if (entries.length === 0) throw new Error(`${op}: ${file} has no entries`);
  return entries;
}

/**
 * Every `*.png|*.jpg|*.jpeg|*.webp` in `dir` (not recursive, sorted by name) with the caption in
 * the same-name `.txt` file beside it; a missing caption file is an error naming the image.
 */
export async function folderDataset(dir: string, options: FileDatasetOptions): Promise<Dataset> {
  return fileDataset(await listFolder(dir, 'folderDataset'), options, 'folderDataset');
}

/**
 * A JSON Lines manifest, one `{"image": "path", "caption": "..."}` per line (blank lines
 * skipped); image paths are relative to the manifest's directory. Errors name file and line.
 */
export async function jsonlDataset(file: string, options: FileDatasetOptions): Promise<Dataset> {
  return fileDataset(await readManifest(file, 'jsonlDataset'), options, 'jsonlDataset');
}
