// A folder of captioned images (or a JSON Lines manifest) streamed to a trainer with flat memory.
// The listing (file names and captions, by folderDataset's and jsonlDataset's rules) is read once;
// images are decoded and resized on demand in worker threads, at most `ahead` ranges ahead, and
// come back as bytes (a quarter of float32). A folder of 100k photos at 32x32 would take 1.2 GB
// as float32 decoded up front; the stream holds the listing and the batches in flight.
//
// Example k of the stream is a pure function of (seed, k) and the files: the set is drawn in a
// new seeded order each epoch (EpochSampler). A file that cannot be decoded is skipped with a
// message naming it, and the draws that land on it go to the next readable file in listing
// order, so the bytes do not depend on the worker count, on timing or on which ranges were asked
// for first (a resumed run sees what the uninterrupted one saw).
import type { Worker } from 'node:worker_threads';
import { startDataWorker } from './worker_thread.js';
import { checkSize, decodeImageFiles, type DecodedFiles } from '../io/image_decode.js';
import { listFolder, readManifest, type Example, type FileEntry } from './dataset.js';
import { EpochSampler } from './epoch_sampler.js';
import { dequantizeImage, mixSeed } from './figures.js';

export type FolderSource = { folder: string } | { manifest: string };

export interface FolderStreamOptions {
  /** Image side in pixels: shorter side resized to it, then a centre square. */
  size: number;
  /** Seed of the epoch order. */
  seed: number;
  /** Decode threads (default 1; 0 decodes on the calling thread, still asynchronously through sharp). */
  workers?: number;
  /**
   * Ranges decoded or decoding ahead of the takes, at most (default 2: a trainer prefetches one
   * batch ahead); prefetching more drops the oldest not taken (its decoding finishes and is discarded).
   */
  ahead?: number;
  /** Where skipped files are reported (default console.warn). */
  log?: (message: string) => void;
}

interface DecodeRequest {
  id: number;
  files: string[];
}

type DecodeReply = { id: number } & ({ decoded: DecodedFiles } | { error: string });

/** The decoded bytes of a range and the file each of its examples came from. */
interface LoadedRange {
  bytes: Uint8Array;
  files: number[];
}

export class FolderStream {
  /** Tells the trainers a stream from a list of examples. */
  readonly kind = 'stream';
  /** Image side in pixels. */
  readonly size: number;
  readonly seed: number;
  /** Every file of the set and its caption, in listing order (no image data is kept). */
  readonly entries: readonly FileEntry[];
  /** The folder or manifest, for messages. */
  readonly where: string;
  readonly #order: EpochSampler;
  readonly #ahead: number;
  readonly #log: (message: string) => void;
  /** Files that failed to decode, by listing index, with the reason. */
  readonly #unreadable = new Map<number, string>();
  readonly #workers: Worker[] = [];
  readonly #pending = new Map<number, { resolve: (decoded: DecodedFiles) => void; reject: (err: Error) => void }>();
  /** Decoded or decoding ranges by their first position, oldest first. */
  readonly #ranges = new Map<number, { count: number; loaded: Promise<LoadedRange> }>();
  #nextRequest = 0;
  #nextWorker = 0;
  #closed = false;
  /** Why the decode threads can no longer answer: every later decode fails with it. */
  #workerFailure: Error | null = null;

  /** Lists the folder or reads the manifest (nothing decoded but the first readable image) and starts the decode threads. */
  static async open(source: FolderSource, options: FolderStreamOptions): Promise<FolderStream> {
    checkOptions(options);
    const where = 'folder' in source ? `folder ${source.folder}` : `manifest ${source.manifest}`;
    const entries = 'folder' in source ? await listFolder(source.folder, 'FolderStream') : await readManifest(source.manifest, 'FolderStream');
    const stream = new FolderStream(entries, where, options);
    try {
      await stream.#findReadable();
    } catch (error) {
      await stream.close();
      throw error;
    }
    return stream;
  }

  private constructor(entries: readonly FileEntry[], where: string, options: FolderStreamOptions) {
    const { size, seed, workers = 1, ahead = 2 } = options;
    this.size = size;
    this.seed = seed;
    this.entries = entries;
    this.where = where;
    this.#order = new EpochSampler(entries.length, mixSeed(seed, 0xf0));
    this.#ahead = ahead;
    this.#log = options.log ?? ((message) => console.warn(message));
    for (let w = 0; w < workers; w++) {
      const worker = startDataWorker('folder', { size });
      worker.on('message', (reply: DecodeReply) => {
        const waiting = this.#pending.get(reply.id);
        if (waiting === undefined) return;
        this.#pending.delete(reply.id);
        if ('decoded' in reply) waiting.resolve(reply.decoded);
        else waiting.reject(new Error(`FolderStream: a decode worker failed: ${reply.error}`));
      });
      worker.on('error', (err) => this.#workerFailed(err));
      worker.on('exit', (code) => {
        if (!this.#closed) this.#workerFailed(new Error(`FolderStream: a decode worker exited (code ${code})`));
      });
      this.#workers.push(worker);
    }
  }

  /** Number of files in the set (readable or not). */
  get count(): number {
    return this.entries.length;
  }

  /** Files found unreadable so far. */
  get skipped(): number {
    return this.#unreadable.size;
  }

  /** The listing index of the file drawn at stream position k, before unreadable files are passed over. */
  fileAt(position: number): number {
    return this.#order.at(position);
  }

  /** Starts decoding stream positions [start, start + count) unless that range is on its way; beyond `ahead` ranges, the oldest not taken is dropped. */
  prefetch(start: number, count: number): void {
    if (this.#closed) throw new Error('FolderStream: closed');
    if (!Number.isInteger(start) || start < 0) throw new RangeError(`FolderStream: start must be an integer >= 0, got ${start}`);
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`FolderStream: count must be an integer >= 1, got ${count}`);
    if (this.#ranges.has(start)) return;
    while (this.#ranges.size >= this.#ahead) this.#ranges.delete(this.#ranges.keys().next().value!);
    const loaded = this.#load(start, count);
    // A range made ahead may never be taken (the run ends first): its failure is only news to a take.
    loaded.catch(() => {});
    this.#ranges.set(start, { count, loaded });
  }

  /** Stream positions [start, start + count) as examples, decoded now or awaited from the workers. */
  async take(start: number, count: number): Promise<Example[]> {
    this.prefetch(start, count);
    const range = this.#ranges.get(start)!;
    if (range.count !== count) throw new RangeError(`FolderStream: examples from ${start} were requested as ${range.count}, now as ${count}`);
    this.#ranges.delete(start);
    const { bytes, files } = await range.loaded;
    const per = 3 * this.size * this.size;
    return files.map((file, k) => ({ image: dequantizeImage(bytes.subarray(k * per, (k + 1) * per)), caption: this.entries[file]!.caption }));
  }

  /** Stops the workers (they keep the process alive until then); pending takes fail. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#ranges.clear();
    this.#failAll(new Error('FolderStream: closed'));
    await Promise.all(this.#workers.map((w) => w.terminate()));
    this.#workers.length = 0;
  }

  async #load(start: number, count: number): Promise<LoadedRange> {
    const per = 3 * this.size * this.size;
    const bytes = new Uint8Array(count * per);
    const files = Array.from({ length: count }, (_, k) => this.#readableFrom(this.fileAt(start + k)));
    // Examples whose file is still to be decoded; a failure moves it to the next readable file.
    let slots = files.map((_, k) => k);
    while (slots.length > 0) {
      const decoded = await this.#decode(slots.map((k) => this.entries[files[k]!]!.image));
      const failed = new Set<number>();
      for (const { slot, reason } of decoded.failed) {
        failed.add(slot);
        this.#markUnreadable(files[slots[slot]!]!, reason);
      }
      slots.forEach((k, s) => {
        if (!failed.has(s)) bytes.set(decoded.bytes.subarray(s * per, (s + 1) * per), k * per);
      });
      slots = slots.filter((_, s) => failed.has(s));
      for (const k of slots) files[k] = this.#readableFrom(files[k]!);
    }
    return { bytes, files };
  }

  /** The first file at or after `file` (in listing order, wrapping) not known to be unreadable. */
  #readableFrom(file: number): number {
    if (this.#unreadable.size >= this.count) throw new Error(`FolderStream: no readable image left in ${this.where} (all ${this.count} failed to decode)`);
    let f = file;
    while (this.#unreadable.has(f)) f = (f + 1) % this.count;
    return f;
  }

  #markUnreadable(file: number, reason: string): void {
    if (this.#unreadable.has(file)) return;
    this.#unreadable.set(file, reason);
    this.#log(`FolderStream: skipping ${this.entries[file]!.image}: ${reason} (${this.#unreadable.size} unreadable of ${this.count} in ${this.where} so far; their draws go to the next readable file)`);
  }

  /** Decodes files from the first on until one is readable, so a set with none fails before training starts. */
  async #findReadable(): Promise<void> {
    const probe = 16;
    for (let first = 0; first < this.count; first += probe) {
      const files = this.entries.slice(first, first + probe).map((e) => e.image);
      const decoded = await decodeImageFiles(files, this.size);
      for (const { slot, reason } of decoded.failed) this.#markUnreadable(first + slot, reason);
      if (decoded.failed.length < files.length) return;
    }
    const reasons = [...this.#unreadable.entries()].slice(0, 3).map(([file, reason]) => `${this.entries[file]!.image}: ${reason}`);
    throw new Error(`FolderStream: no readable image in ${this.where}: all ${this.count} files failed to decode (${reasons.join('; ')}${this.count > 3 ? '; ...' : ''})`);
  }

  #decode(files: string[]): Promise<DecodedFiles> {
    if (this.#closed) return Promise.reject(new Error('FolderStream: closed'));
    if (this.#workerFailure !== null) return Promise.reject(this.#workerFailure);
    if (this.#workers.length === 0) return decodeImageFiles(files, this.size);
    const id = this.#nextRequest++;
    const worker = this.#workers[this.#nextWorker++ % this.#workers.length]!;
    return new Promise<DecodedFiles>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ id, files } satisfies DecodeRequest);
    });
  }

  #workerFailed(err: Error): void {
    this.#workerFailure ??= err;
    this.#failAll(err);
  }

  #failAll(err: Error): void {
    for (const waiting of this.#pending.values()) waiting.reject(err);
    this.#pending.clear();
  }
}

function checkOptions(options: FolderStreamOptions): void {
  const { size, workers = 1, ahead = 2 } = options;
  checkSize('FolderStream', 'size', size);
  if (!Number.isInteger(workers) || workers < 0 || workers > 64) throw new RangeError(`FolderStream: workers must be an integer in [0, 64], got ${workers}`);
  if (!Number.isInteger(ahead) || ahead < 1) throw new RangeError(`FolderStream: ahead must be an integer >= 1, got ${ahead}`);
  if (!Number.isInteger(options.seed)) throw new RangeError(`FolderStream: seed must be an integer, got ${options.seed}`);
}
