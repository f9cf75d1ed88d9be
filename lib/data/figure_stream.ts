// Procedural figures for training, rendered ahead of the trainer in worker threads while the
// native ops run, and passed back as bytes (a quarter of float32), so data costs the trainer
// almost nothing and holds only the batches in flight:
//   fresh (default)  example k of the stream is figure k of the seed: a new person, pose and
//                    scene every time, never repeated, so a model sees as many distinct images
//                    as it takes steps instead of cycling over a fixed set
//   count: N         a fixed set of N figures, drawn in a new seeded order each epoch (a set too
//                    large to keep rendered, e.g. 60000 figures: 740 MB as float32)
// The bytes are the same with or without workers: a run is a pure function of its seed.
import type { Worker } from 'node:worker_threads';
import { startDataWorker } from './worker_thread.js';
import { EpochSampler } from './epoch_sampler.js';
import { captionFor, dequantizeImage, figureAttributesAt, mixSeed, quantizeImage, renderFigure } from './figures.js';
import type { Example } from './dataset.js';

export interface FigureStreamOptions {
  /** Image side in pixels. */
  size: number;
  seed: number;
  /** With it, figure k shows identity k % identities (default: every figure a new person). */
  identities?: number;
  /** Render threads (default 1; 0 renders on the calling thread when asked). */
  workers?: number;
  /** A fixed set of this many figures, drawn in epoch order (default: fresh figures, no set). */
  count?: number;
}

type RenderSpec = Pick<FigureStreamOptions, 'size' | 'seed' | 'identities'>;

/** The bytes of the figures with these indices, one image after another (CHW). */
export function renderFigures(spec: RenderSpec, indices: readonly number[]): Uint8Array {
  const per = 3 * spec.size * spec.size;
  const out = new Uint8Array(indices.length * per);
  indices.forEach((figure, k) => quantizeImage(renderFigure(figureAttributesAt(spec.seed, figure, spec.identities), spec.size), out.subarray(k * per, (k + 1) * per)));
  return out;
}

interface RenderRequest {
  id: number;
  indices: number[];
}

export class FigureStream {
  /** Tells the trainers a stream from a list of examples. */
  readonly kind = 'stream';
  readonly size: number;
  readonly seed: number;
  readonly identities: number | undefined;
  readonly #order: EpochSampler | null;
  readonly #workers: Worker[] = [];
  readonly #pending = new Map<number, { resolve: (bytes: Uint8Array) => void; reject: (err: Error) => void }>();
  /** Rendered or rendering ranges by their first index. */
  readonly #ranges = new Map<number, { count: number; bytes: Promise<Uint8Array> }>();
  #nextRequest = 0;
  #nextWorker = 0;
  #closed = false;

  constructor(options: FigureStreamOptions) {
    const { size, seed, identities, workers = 1, count } = options;
    if (count !== undefined && (!Number.isInteger(count) || count < 1)) throw new RangeError(`FigureStream: count must be an integer >= 1, got ${count}`);
    if (!Number.isInteger(size) || size < 8) throw new RangeError(`FigureStream: size must be an integer >= 8, got ${size}`);
    if (!Number.isInteger(workers) || workers < 0 || workers > 64) throw new RangeError(`FigureStream: workers must be an integer in [0, 64], got ${workers}`);
    if (identities !== undefined && (!Number.isInteger(identities) || identities < 1)) throw new RangeError(`FigureStream: identities must be an integer >= 1, got ${identities}`);
    this.size = size;
    this.seed = seed;
    this.identities = identities;
    this.#order = count === undefined ? null : new EpochSampler(count, mixSeed(seed, 0xe0));
    for (let w = 0; w < workers; w++) {
      const worker = startDataWorker('figure', { size, seed, identities });
      worker.on('message', (message: { id: number; bytes?: Uint8Array; error?: string }) => {
        const waiting = this.#pending.get(message.id);
        if (waiting === undefined) return;
        this.#pending.delete(message.id);
        if (message.bytes !== undefined) waiting.resolve(message.bytes);
        else waiting.reject(new Error(`FigureStream: a render worker failed: ${message.error}`));
      });
      worker.on('error', (err) => this.#failAll(err));
      this.#workers.push(worker);
    }
  }

  /** The figure at stream position k. */
  figureAt(position: number): number {
    return this.#order === null ? position : this.#order.at(position);
  }

  /** The caption of the example at stream position k. */
  caption(position: number): string {
    return captionFor(figureAttributesAt(this.seed, this.figureAt(position), this.identities));
  }

  /** Starts rendering stream positions [start, start + count) if that range is not already on its way. */
  prefetch(start: number, count: number): void {
    if (this.#closed) throw new Error('FigureStream: closed');
    if (this.#ranges.has(start)) return;
    const bytes = this.#render(start, count);
    // A range made ahead may never be taken (the run ends first): its failure is only news to a take.
    bytes.catch(() => {});
    this.#ranges.set(start, { count, bytes });
  }

  /** Stream positions [start, start + count) as examples, rendered now or awaited from the workers. */
  async take(start: number, count: number): Promise<Example[]> {
    this.prefetch(start, count);
    const range = this.#ranges.get(start)!;
    if (range.count !== count) throw new RangeError(`FigureStream: figures from ${start} were requested as ${range.count}, now as ${count}`);
    this.#ranges.delete(start);
    const bytes = await range.bytes;
    const per = 3 * this.size * this.size;
    return Array.from({ length: count }, (_, k) => ({ image: dequantizeImage(bytes.subarray(k * per, (k + 1) * per)), caption: this.caption(start + k) }));
  }

  /** Stops the workers (they keep the process alive until then); pending takes fail. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#failAll(new Error('FigureStream: closed'));
    await Promise.all(this.#workers.map((w) => w.terminate()));
    this.#workers.length = 0;
  }

  #render(start: number, count: number): Promise<Uint8Array> {
    const indices = Array.from({ length: count }, (_, k) => this.figureAt(start + k));
    if (this.#workers.length === 0) return Promise.resolve(renderFigures(this, indices));
    const id = this.#nextRequest++;
    const worker = this.#workers[this.#nextWorker++ % this.#workers.length]!;
    return new Promise<Uint8Array>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ id, indices } satisfies RenderRequest);
    });
  }

  #failAll(err: Error): void {
    for (const waiting of this.#pending.values()) waiting.reject(err);
    this.#pending.clear();
  }
}
