// The two generated data sets of the curriculum, both stored as ImageStores (lib/train/curriculum/
// store.ts) and both resumable unit by unit:
//   pools            for each prompt, N samples of the base (HG-DPO's image pools), made for a
//                    group of prompts at once so the sampler runs in large batches;
//   reconstructions  SDRecon (SPEC section 2): each real image noised to t_k = 100 k (k = 1..T,
//                    as timestep index 100 k - 1) and denoised back to t = 0 by the base with
//                    the image's own prompt; t_1 looks real, t_10 looks generated.
// Every image is scored when it is made; a store scored by another scorer is scored again.
import { createHash } from 'node:crypto';
import { mixSeed } from '../../data/figures.js';
import { concatFloat32 } from '../../numeric.js';
import type { TextToImage } from '../../models/text_to_image.js';
import { fromArray, type Tensor } from '../../tensor.js';
import { weightsHash } from '../../nn/adapter_file.js';
import { worldCommunicator, type Communicator } from '../loop/dist.js';
import { ImageStore, type StoreHeader, type StoreRecord } from './store.js';
import { scoreImages, type PoolScorer } from './scorer.js';

export interface SamplingSettings {
  /** DDIM steps of a full trajectory (reconstructions spend them pro rata). */
  steps: number;
  /** Guidance scale. */
  cfg: number;
  seed: number;
}

export interface PoolOptions extends SamplingSettings {
  /** Samples per prompt (HG-DPO: 20). */
  poolSize: number;
  /** Prompts per sampler batch (the batch is promptsPerBatch x poolSize images). */
  promptsPerBatch?: number;
  log?: (line: string) => void;
  onProgress?: (done: number, total: number) => void;
}

export interface ReconOptions extends SamplingSettings {
  /** Levels T (t_k = 100 k for k = 1..T, scaled to the schedule's length). */
  levels?: number;
  /** Real images per sampler batch. */
  imagesPerBatch?: number;
  log?: (line: string) => void;
  onProgress?: (done: number, total: number) => void;
}

/** A real image and its prompt (the caption it came with). */
export interface RealImage {
  prompt: string;
  image: Float32Array;
}

export function hashStrings(items: readonly string[]): string {
  const h = createHash('sha256');
  for (const s of items) h.update(s).update('\0');
  return h.digest('hex').slice(0, 16);
}

/** Re-scores every record of `store` with `scorer` when the store was scored by another one. */
async function ensureScored(op: string, store: ImageStore, scorer: PoolScorer, size: number, log: (line: string) => void): Promise<void> {
  if (store.header.scorer === scorer.name || store.records.length === 0) return;
  log(`${op}: ${store.dir} was scored by ${store.header.scorer}; scoring its ${store.records.length} images with ${scorer.name}`);
  const scores = new Map<StoreRecord, number | null>();
  const chunk = 256;
  for (let start = 0; start < store.records.length; start += chunk) {
    const records = store.records.slice(start, start + chunk);
    const images = fromArray(concatFloat32(await Promise.all(records.map((r) => store.image(r, size)))), [records.length, 3, size, size]);
    try {
      const { scores: values } = await scoreImages(op, scorer, records.map((r) => r.prompt), images);
      records.forEach((r, i) => scores.set(r, values[i]!));
    } finally {
      images.dispose();
    }
  }
  store.rescore(scores, scorer.name);
}

/**
 * Opens the store shared by the ranks of a data-parallel job: rank 0 opens it (creating it,
 * dropping interrupted units, re-scoring) while the others wait, then they read what it left.
 */
async function openSharedStore(comm: Communicator, op: string, dir: string, header: StoreHeader, scorer: PoolScorer, size: number, log: (line: string) => void): Promise<ImageStore> {
  let store: ImageStore | undefined;
  if (comm.rank === 0) {
    store = ImageStore.open(op, dir, header, log);
    await ensureScored(op, store, scorer, size, log);
  }
  comm.barrier(`${op}: opening ${dir}`);
  return store ?? ImageStore.open(op, dir, { ...header, scorer: scorer.name }, log);
}

/**
 * Makes the units of `store` that are not done, split over the ranks: in each round of
 * `comm.size` pending units, rank r makes the r-th and writes its images (make returns its
 * records); rank 0 then appends the round's records in unit order, so the store is the one a
 * single process writes, and an interrupted run resumes at the first unit not appended.
 */
async function makeUnits(comm: Communicator, op: string, store: ImageStore, units: number, make: (unit: number) => Promise<StoreRecord[]>, progress: (unitsDone: number) => void): Promise<void> {
  const done = store.doneUnits();
  if (done.size > 0) progress(done.size);
  const pending = Array.from({ length: units }, (_, u) => u).filter((u) => !done.has(u));
  for (let round = 0; round < pending.length; round += comm.size) {
    const unit = pending[round + comm.rank];
    const mine = unit === undefined ? [] : await make(unit);
    const all = comm.allgather(mine, `${op}: the records of units ${pending.slice(round, round + comm.size).join(', ')}`);
    store.appendRecords(all.flat(), comm.rank === 0);
    progress(done.size + Math.min(pending.length, round + comm.size));
  }
}

/**
 * The image pool of every prompt under `dir`: poolSize samples each, scored. Resumes where an
 * earlier call stopped (the same seeds give the same images).
 */
export async function generatePools(model: TextToImage, prompts: readonly string[], dir: string, scorer: PoolScorer, options: PoolOptions): Promise<ImageStore> {
  const op = 'pools';
  const log = options.log ?? (() => {});
  const per = options.promptsPerBatch ?? Math.max(1, Math.floor(64 / options.poolSize));
  const units = Math.ceil(prompts.length / per);
  const unitSizes = Array.from({ length: units }, (_, u) => Math.min(per, prompts.length - u * per) * options.poolSize);
  const comm = worldCommunicator();
  const store = await openSharedStore(
    comm,
    op,
    dir,
    {
      format: 'realtune-image-store',
      kind: 'pool',
      base: weightsHash(model.dit),
      settings: { prompts: prompts.length, promptsHash: hashStrings(prompts), poolSize: options.poolSize, promptsPerBatch: per, steps: options.steps, cfg: options.cfg, seed: options.seed },
      unitSizes,
      scorer: scorer.name,
    },
    scorer,
    model.imageSize,
    log,
  );
  let invalidTotal = 0;
  const makeUnit = async (unit: number): Promise<StoreRecord[]> => {
    const chunk = prompts.slice(unit * per, (unit + 1) * per);
    const seed = mixSeed(options.seed, unit);
    const images = model.generate({ prompts: chunk, n: options.poolSize, steps: options.steps, cfg: options.cfg, seed });
    try {
      const batchPrompts = chunk.flatMap((p) => Array<string>(options.poolSize).fill(p));
      const { scores, invalid } = await scoreImages(op, scorer, batchPrompts, images);
      invalidTotal += invalid;
      const records = batchPrompts.map((prompt, i) => ({
        unit,
        prompt,
        item: unit * per + Math.floor(i / options.poolSize),
        sample: i % options.poolSize,
        seed,
        score: scores[i]!,
      }));
      return await store.writeImages(records, images, (r) => `p${String(r.item).padStart(6, '0')}-s${String(r.sample).padStart(3, '0')}`);
    } finally {
      images.dispose();
    }
  };
  await makeUnits(comm, op, store, units, makeUnit, (unitsDone) => options.onProgress?.(Math.min(prompts.length, unitsDone * per), prompts.length));
  const invalid = Float64Array.of(invalidTotal);
  comm.allreduce(invalid, 'sum', `${op}: the count of images the scorer could not score`);
  invalidTotal = invalid[0]!;
  if (invalidTotal > 0) log(`${op}: the scorer returned NaN or infinity for ${invalidTotal} image(s); they are never chosen`);
  return store;
}

/** The timestep index of SDRecon level k (t_k = 100 k on a 1000-step schedule). */
export function reconTimestep(k: number, levels: number, scheduleSteps: number): number {
  return Math.max(0, Math.round((k * scheduleSteps) / levels) - 1);
}

/**
 * SDRecon of every real image under `dir`: `levels` reconstructions each, scored. Resumes where
 * an earlier call stopped.
 */
export async function generateReconstructions(model: TextToImage, reals: readonly RealImage[], dir: string, scorer: PoolScorer, options: ReconOptions): Promise<ImageStore> {
  const op = 'sdrecon';
  const log = options.log ?? (() => {});
  const levels = options.levels ?? 10;
  const per = options.imagesPerBatch ?? 64;
  const size = model.imageSize;
  const length = 3 * size * size;
  reals.forEach((r, i) => {
    if (r.image.length !== length) throw new RangeError(`${op}: real image ${i} has ${r.image.length} values, expected ${length} (3 x ${size} x ${size})`);
  });
  const units = Math.ceil(reals.length / per);
  const unitSizes = Array.from({ length: units }, (_, u) => Math.min(per, reals.length - u * per) * levels);
  const imageHash = createHash('sha256');
  for (const r of reals) imageHash.update(Buffer.from(r.image.buffer, r.image.byteOffset, r.image.byteLength));
  const comm = worldCommunicator();
  const store = await openSharedStore(
    comm,
    op,
    dir,
    {
      format: 'realtune-image-store',
      kind: 'recon',
      base: weightsHash(model.dit),
      settings: { images: reals.length, promptsHash: hashStrings(reals.map((r) => r.prompt)), imagesHash: imageHash.digest('hex').slice(0, 16), levels, imagesPerBatch: per, steps: options.steps, cfg: options.cfg, seed: options.seed },
      unitSizes,
      scorer: scorer.name,
    },
    scorer,
    size,
    log,
  );
  const makeUnit = async (unit: number): Promise<StoreRecord[]> => {
    const chunk = reals.slice(unit * per, (unit + 1) * per);
    const prompts = chunk.map((r) => r.prompt);
    const x0 = fromArray(concatFloat32(chunk.map((r) => r.image)), [chunk.length, 3, size, size]);
    const outputs: Tensor<'f32'>[] = [];
    try {
      for (let k = 1; k <= levels; k++) {
        const t = reconTimestep(k, levels, model.schedule.steps);
        const steps = Math.max(1, Math.round((options.steps * (t + 1)) / model.schedule.steps));
        outputs.push(model.generate({ prompts, cfg: options.cfg, steps, seed: mixSeed(options.seed, unit, k), from: { images: x0, timestep: t } }));
      }
      // Records image-major: image i's levels 1..T together.
      const order: { i: number; k: number }[] = [];
      for (let i = 0; i < chunk.length; i++) for (let k = 1; k <= levels; k++) order.push({ i, k });
      const levelData = outputs.map((o) => o.toArray());
      const all = new Float32Array(order.length * length);
      order.forEach(({ i, k }, j) => all.set(levelData[k - 1]!.subarray(i * length, (i + 1) * length), j * length));
      const images = fromArray(all, [order.length, 3, size, size]);
      try {
        const { scores, invalid } = await scoreImages(op, scorer, order.map(({ i }) => prompts[i]!), images);
        if (invalid > 0) log(`${op}: the scorer returned NaN or infinity for ${invalid} reconstruction(s); they are never chosen`);
        const records = order.map(({ i, k }, j) => ({ unit, prompt: prompts[i]!, item: unit * per + i, sample: k, t: reconTimestep(k, levels, model.schedule.steps), seed: options.seed, score: scores[j]! }));
        return await store.writeImages(records, images, (r) => `r${String(r.item).padStart(6, '0')}-t${String(r.sample).padStart(2, '0')}`);
      } finally {
        images.dispose();
      }
    } finally {
      for (const o of outputs) o.dispose();
      x0.dispose();
    }
  };
  await makeUnits(comm, op, store, units, makeUnit, (unitsDone) => options.onProgress?.(Math.min(reals.length, unitsDone * per), reals.length));
  return store;
}
