// What a trainer draws its examples from, and the micro-batches it draws: a fixed list in a new
// seeded order each epoch (EpochSampler), or a stream whose example k is made on demand (figures
// rendered, files decoded) with the next batch made ahead while the current one trains. Either
// way example k of a run is a pure function of the seed, which is what makes resume exact.
import { EpochSampler } from '../../data/epoch_sampler.js';
import type { Example } from '../../data/dataset.js';
import { wholeBatch, type Shard } from './dist.js';

export type { Example };

/**
 * Examples made on demand: example k of a stage is the k-th drawn (e.g. lib/data's FigureStream
 * or FolderStream). `prefetch` announces the next batch so it can be made while the current one
 * trains; the trainer closes the stream when its phase ends.
 */
export interface ExampleStream {
  readonly kind: 'stream';
  take(start: number, count: number): Promise<Example[]>;
  prefetch(start: number, count: number): void;
  close(): Promise<void>;
}

/** The training set at a resolution (stage-wise training asks once per stage): a fixed list, or a stream. */
export type DataSource = (imageSize: number) => Promise<readonly Example[] | ExampleStream> | readonly Example[] | ExampleStream;

export interface BatchDrawer {
  /** The examples of this rank's shard of the micro-batch that starts with the `drawn`-th example of the phase. */
  batch(drawn: number): Promise<Example[]>;
  close(): Promise<void>;
}

/**
 * Micro-batches of `batch` examples from a list (in EpochSampler order) or from a stream (in its
 * order, the next one made ahead); a data-parallel rank gets its `shard` of each.
 */
export function batchDrawer(op: string, source: readonly Example[] | ExampleStream, batch: number, valuesPerImage: number, orderSeed: number, shard: Shard = wholeBatch(batch)): BatchDrawer {
  const checked = <T extends readonly Example[]>(examples: T): T => {
    const bad = examples.find((e) => e.image.length !== valuesPerImage);
    if (bad !== undefined) throw new RangeError(`${op}: an image has ${bad.image.length} values, expected ${valuesPerImage}`);
    return examples;
  };
  if (!Array.isArray(source)) {
    const stream = source as ExampleStream;
    return {
      batch: async (drawn) => {
        const examples = stream.take(drawn + shard.start, shard.count);
        stream.prefetch(drawn + batch + shard.start, shard.count);
        return checked(await examples);
      },
      close: () => stream.close(),
    };
  }
  const examples = source as readonly Example[];
  if (examples.length === 0) throw new Error(`${op}: the dataset is empty`);
  checked(examples);
  const sampler = new EpochSampler(examples.length, orderSeed);
  return {
    batch: async (drawn) => Array.from({ length: shard.count }, (_, i) => examples[sampler.at(drawn + shard.start + i)]!),
    close: async () => {},
  };
}

/** The order seed of phase `phase` of a run seeded `seed` (each phase draws its own epoch order). */
export function phaseOrderSeed(seed: number, phase: number): number {
  return (seed ^ Math.imul(phase + 1, 0x85ebca6b)) >>> 0;
}
