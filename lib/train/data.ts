// Where the training commands get their data and write their pictures: the embedded procedural
// figures, a folder of captioned images or a JSONL manifest (lib/data), the tokenizer learned
// from the captions (lib/text), and labelled sample grids (lib/io).
import { figuresDataset } from '../data/figures.js';
import { saveImageGrid } from '../io/images.js';
import { folderDataset, jsonlDataset, type Dataset } from '../data/dataset.js';
import { Tokenizer } from '../text/tokenizer.js';
import type { Tensor } from '../tensor.js';
import type { Example } from './base.js';

export type DataSpec =
  | { kind: 'figures'; count: number; seed: number }
  | { kind: 'folder'; dir: string }
  | { kind: 'manifest'; file: string };

const loaded = new Map<string, readonly Example[]>();

async function openDataset(spec: DataSpec, size: number): Promise<Dataset> {
  if (spec.kind === 'figures') return figuresDataset(spec.count, { size, seed: spec.seed });
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

export function describeSpec(spec: DataSpec): string {
  return spec.kind === 'figures' ? `${spec.count} procedural figures (seed ${spec.seed})` : spec.kind === 'folder' ? `folder ${spec.dir}` : `manifest ${spec.file}`;
}

/** A byte-level BPE tokenizer learned from the training captions. */
export function trainTokenizer(captions: readonly string[], vocabSize: number): Tokenizer {
  return Tokenizer.train(captions, { vocabSize });
}

/** Writes images [N, 3, H, W] in [-1, 1] as one PNG grid with a label under each image. */
export async function writeLabelledGrid(file: string, images: Tensor<'f32'>, labels: readonly string[], columns?: number): Promise<void> {
  await saveImageGrid(file, images, { labels, ...(columns === undefined ? {} : { cols: columns }) });
}
