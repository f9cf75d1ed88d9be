// The on-disk image stores of the curriculum: image pools (samples of the base per prompt) and
// SDRecon reconstructions (real images noised and denoised back). A store is a directory:
//
//   store.json    what made it: kind, the base model's weights hash, the settings, the scorer
//   index.jsonl   one line per image: {unit, prompt, item, seed, file, score, ...}
//   images/       one PNG per image
//
// Work is done in units (a group of prompts or real images). A unit's PNGs are written first,
// then its index lines in one append (under mpirun: by rank 0, for the units of every rank), so an interrupted run leaves at most one unit half done:
// on reopening, lines of incomplete units and a torn last line are dropped (logged) and those
// units are made again with the same seeds, hence the same images. A store made by another
// base model or with other settings is refused with the reason, never mixed.
import { appendFileSync, existsSync, mkdirSync, readFileSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { atomicWriteFile, writeJsonAtomic } from '../../io/atomic.js';
import { imageToPng, loadImage } from '../../io/images.js';
import type { Tensor } from '../../tensor.js';

export const storeFormat = 'realtune-image-store';

export interface StoreRecord {
  /** The unit (group of prompts or images) this record was made in. */
  unit: number;
  prompt: string;
  /** Index of the prompt (pools) or of the real image (reconstructions) in the store's list. */
  item: number;
  /** Sample index within the prompt's pool, or the SDRecon level k (1..10). */
  sample: number;
  /** The image, relative to the store directory. */
  file: string;
  /** The scorer's value; null when it returned NaN or infinity (the image is then never chosen). */
  score: number | null;
  /** SDRecon: the timestep the real image was noised to. */
  t?: number;
}

export interface StoreHeader {
  format: typeof storeFormat;
  kind: 'pool' | 'recon';
  /** weightsHash of the model that made the images. */
  base: string;
  /** Everything that decides the images (counts, steps, guidance, seeds, the item list's hash). */
  settings: Record<string, unknown>;
  /** Records per unit when complete. */
  unitSizes: number[];
  scorer: string;
}

export class ImageStore {
  readonly records: StoreRecord[];

  private constructor(
    readonly dir: string,
    readonly header: StoreHeader,
    records: StoreRecord[],
  ) {
    this.records = records;
  }

  /**
   * Opens (or creates) the store at `dir` for `header`. An existing store must have been made by
   * the same base with the same settings; its complete units are kept.
   */
  static open(op: string, dir: string, header: StoreHeader, log: (line: string) => void = () => {}): ImageStore {
    const headerFile = path.join(dir, 'store.json');
    if (existsSync(dir) && !existsSync(headerFile)) {
      const entries = existsSync(path.join(dir, 'index.jsonl')) || existsSync(path.join(dir, 'images'));
      if (entries) throw new Error(`${op}: ${dir} holds an image store without store.json (not written by this version, or damaged); give another directory or delete it`);
    }
    if (!existsSync(headerFile)) {
      mkdirSync(path.join(dir, 'images'), { recursive: true });
      writeJsonAtomic(headerFile, header);
      atomicWriteFile(path.join(dir, 'index.jsonl'), '');
      return new ImageStore(dir, header, []);
    }
    let saved: StoreHeader;
    try {
      saved = JSON.parse(readFileSync(headerFile, 'utf8')) as StoreHeader;
    } catch (err) {
      throw new Error(`${op}: cannot read ${headerFile}: ${(err as Error).message}`);
    }
    if (saved.format !== storeFormat) throw new Error(`${op}: ${headerFile} has format ${JSON.stringify(saved.format)}, expected "${storeFormat}"`);
    if (saved.kind !== header.kind) throw new Error(`${op}: ${dir} is a ${saved.kind} store, expected a ${header.kind} store`);
    if (saved.base !== header.base) {
      throw new Error(`${op}: ${dir} was made by another base model (weights ${String(saved.base).slice(0, 12)}, this one is ${header.base.slice(0, 12)}); give another directory or delete it`);
    }
    const differences = Object.keys({ ...saved.settings, ...header.settings }).filter((k) => JSON.stringify(saved.settings?.[k]) !== JSON.stringify(header.settings[k]));
    if (differences.length > 0) {
      const shown = differences.map((k) => `${k} ${JSON.stringify(header.settings[k])} (the store has ${JSON.stringify(saved.settings?.[k])})`).join(', ');
      throw new Error(`${op}: ${dir} was made with other settings: ${shown}; give another directory or delete it`);
    }
    const records = readRecords(op, dir, log);
    // Keep only complete units: an interrupted unit is made again.
    const counts = new Map<number, number>();
    for (const r of records) counts.set(r.unit, (counts.get(r.unit) ?? 0) + 1);
    const complete = records.filter((r) => counts.get(r.unit) === header.unitSizes[r.unit]);
    if (complete.length !== records.length) {
      log(`${op}: ${dir}: dropped ${records.length - complete.length} record(s) of interrupted unit(s); they are made again`);
      atomicWriteFile(path.join(dir, 'index.jsonl'), complete.map((r) => `${JSON.stringify(r)}\n`).join(''));
    }
    const store = new ImageStore(dir, { ...header, scorer: saved.scorer }, complete);
    return store;
  }

  /** The units that are complete. */
  doneUnits(): Set<number> {
    return new Set(this.records.map((r) => r.unit));
  }

  /** Writes a unit's images (PNG); returns its records, for appendRecords (data-parallel ranks write images, rank 0 the index). */
  async writeImages(records: readonly Omit<StoreRecord, 'file'>[], images: Tensor<'f32'>, name: (r: Omit<StoreRecord, 'file'>) => string): Promise<StoreRecord[]> {
    const size = images.shape[2]!;
    const per = 3 * size * size;
    const data = images.toArray();
    const complete: StoreRecord[] = [];
    for (let i = 0; i < records.length; i++) {
      const file = path.join('images', `${name(records[i]!)}.png`);
      await imageToPng(data.subarray(i * per, (i + 1) * per), path.join(this.dir, file), { height: size, width: size });
      complete.push({ ...records[i]!, file });
    }
    return complete;
  }

  /** Appends complete units' records to the index in one write (`write` false: only to this object, another process writes the file). */
  appendRecords(records: readonly StoreRecord[], write = true): void {
    if (write && records.length > 0) appendFileSync(path.join(this.dir, 'index.jsonl'), records.map((r) => `${JSON.stringify(r)}\n`).join(''));
    this.records.push(...records);
  }

  /** Replaces every record's score (a store scored by another scorer), written atomically. */
  rescore(scores: ReadonlyMap<StoreRecord, number | null>, scorer: string): void {
    for (const r of this.records) r.score = scores.get(r) ?? null;
    atomicWriteFile(path.join(this.dir, 'index.jsonl'), this.records.map((r) => `${JSON.stringify(r)}\n`).join(''));
    this.header.scorer = scorer;
    writeJsonAtomic(path.join(this.dir, 'store.json'), this.header);
  }

  /** The image of a record, CHW in [-1, 1]. */
  async image(record: StoreRecord, size: number): Promise<Float32Array> {
    const file = path.join(this.dir, record.file);
    try {
      return await loadImage(file, { size });
    } catch (err) {
      throw new Error(`${this.header.kind} store ${this.dir}: cannot read ${file}: ${(err as Error).message}`);
    }
  }
}

function readRecords(op: string, dir: string, log: (line: string) => void): StoreRecord[] {
  const file = path.join(dir, 'index.jsonl');
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const records: StoreRecord[] = [];
  let goodBytes = 0;
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!;
    const last = n === lines.length - 1;
    if (line.trim() === '') {
      if (!last) goodBytes += Buffer.byteLength(line) + 1;
      continue;
    }
    let record: StoreRecord;
    try {
      record = JSON.parse(line) as StoreRecord;
    } catch {
      // A torn last line is an interrupted append; anywhere else the index is damaged.
      if (n >= lines.length - 2) {
        log(`${op}: ${file}: dropped a torn last line (an interrupted write)`);
        truncateSync(file, goodBytes);
        break;
      }
      throw new Error(`${op}: ${file}:${n + 1}: not valid JSON; the store is damaged (delete the line or the store)`);
    }
    if (typeof record.prompt !== 'string' || typeof record.file !== 'string' || !Number.isInteger(record.unit) || !Number.isInteger(record.item)) {
      throw new Error(`${op}: ${file}:${n + 1}: expected {unit, prompt, item, sample, file, score}`);
    }
    if (!existsSync(path.join(dir, record.file))) throw new Error(`${op}: ${file}:${n + 1}: its image ${record.file} is missing; the store is damaged (delete it to start over)`);
    records.push(record);
    goodBytes += Buffer.byteLength(line) + 1;
  }
  return records;
}
