// Where the training commands get their data and write their pictures: the embedded procedural
// figures, a folder of captioned images or a JSONL manifest (lib/data), the tokenizer learned
// from the captions (lib/text), and labelled sample grids (lib/io).
import { figuresDataset } from '../data/figures.js';
import { FigureStream } from '../data/figure_stream.js';
import { FolderStream } from '../data/folder_stream.js';
import { saveImageGrid } from '../io/images.js';
import { folderDataset, jsonlDataset, type Dataset } from '../data/dataset.js';
import { Tokenizer } from '../text/tokenizer.js';
import type { Tensor } from '../tensor.js';
import type { Example } from './loop/batches.js';

export type DataSpec =
  | { kind: 'figures'; count: number; seed: number }
  /** A new figure for every example drawn, rendered ahead by `workers` threads. */
  | { kind: 'fresh-figures'; seed: number; workers: number }
  | { kind: 'folder'; dir: string }
  | { kind: 'manifest'; file: string };

const loaded = new Map<string, readonly Example[]>();

/** Captions a tokenizer for a fresh-figures run learns from: those of its first figures. */
const freshCaptionCount = 20000;

async function openDataset(spec: DataSpec, size: number): Promise<Dataset> {
  if (spec.kind === 'figures') return figuresDataset(spec.count, { size, seed: spec.seed });
  if (spec.kind === 'fresh-figures') return figuresDataset(freshCaptionCount, { size, seed: spec.seed, cache: false });
  return spec.kind === 'folder' ? folderDataset(spec.dir, { size }) : jsonlDataset(spec.file, { size });
}

/**
 * Every example of the data at `size` x `size` (decoded once and cached for the process), or
 * with `size` null the captions only (images at the smallest size, for the tokenizer).
 */
export async function loadTrainingData(spec: DataSpec, size: number | null): Promise<readonly Example[]> {
  const side = size ?? 8;
  const key = `${JSON.stringify(spec)}@${side}`;
  const cached = loaded.get(key);
  if (cached !== undefined) return cached;
  const dataset = await openDataset(spec, side);
  if (dataset.size === 0) throw new Error(`training data ${describeSpec(spec)} holds no examples`);
  let examples: Example[];
  if (size === null) {
    examples = Array.from({ length: dataset.size }, (_, i) => ({ image: new Float32Array(0), caption: dataset.caption(i) }));
  } else {
    await dataset.load();
    examples = Array.from({ length: dataset.size }, (_, i) => dataset.get(i));
  }
  loaded.set(key, examples);
  return examples;
}

/** Figure sets larger than this (as float32) are rendered ahead each epoch instead of kept. */
const keptFiguresBytes = 256 * 1024 * 1024;

/**
 * What a trainer draws from at `size`: fresh figures, a figure set too large to keep, or a folder
 * or manifest of images, as a stream made ahead in worker threads (a folder is decoded on demand,
 * never whole, drawn in epoch order from `seed`: give the run's seed); otherwise every figure,
 * rendered once.
 */
export async function trainingSource(spec: DataSpec, size: number, seed = 0): Promise<readonly Example[] | FigureStream | FolderStream> {
  if (spec.kind === 'fresh-figures') return new FigureStream({ size, seed: spec.seed, workers: spec.workers });
  if (spec.kind === 'figures' && spec.count * 3 * size * size * 4 > keptFiguresBytes) return new FigureStream({ size, seed: spec.seed, count: spec.count, workers: 1 });
  if (spec.kind === 'folder') return FolderStream.open({ folder: spec.dir }, { size, seed, workers: 1 });
  if (spec.kind === 'manifest') return FolderStream.open({ manifest: spec.file }, { size, seed, workers: 1 });
  return loadTrainingData(spec, size);
}

export function describeSpec(spec: DataSpec): string {
  switch (spec.kind) {
    case 'figures':
      return `${spec.count} procedural figures (seed ${spec.seed})`;
    case 'fresh-figures':
      return `fresh procedural figures (seed ${spec.seed})`;
    case 'folder':
      return `folder ${spec.dir}`;
    case 'manifest':
      return `manifest ${spec.file}`;
  }
}

/** A byte-level BPE tokenizer learned from the training captions. */
export function trainTokenizer(captions: readonly string[], vocabSize: number): Tokenizer {
  return Tokenizer.train(captions, { vocabSize });
}

/** Writes images [N, 3, H, W] in [-1, 1] as one PNG grid with a label under each image. */
export async function writeLabelledGrid(file: string, images: Tensor<'f32'>, labels: readonly string[], columns?: number): Promise<void> {
  await saveImageGrid(file, images, { labels, ...(columns === undefined ? {} : { cols: columns }) });
}
