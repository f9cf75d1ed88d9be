// Data-parallel training: the processes of an `mpirun -np N` job (one per device) as one
// Communicator. A plain `node` run is a world of one and needs no MPI; under mpirun (seen from
// the launcher's environment) the addon loads Open MPI at run time (csrc/napi/dist.cc) and sums
// cuda tensors with NCCL where it is present.
//
// How a run is shared (lib/train/loop/engine.ts does it for every trainer):
//   - every rank draws the randomness of the whole global micro-batch (data indices, timesteps,
//     augmentation, condition dropout) from the same streams, and computes forward and backward
//     on its contiguous slice of it only (shardOf); tensor noise and dropout masks come from a
//     ShardedGenerator, which hands each rank its counters of the draw the one-process run makes;
//   - after the micro-batches of a step the gradients of all trained parameters are averaged in
//     one flat buffer, and so are the loss and the metrics, so clipping and AdamW see the same
//     numbers on every rank and the weights stay equal (checked by a checksum every so often);
//   - rank 0 alone writes checkpoints and sample grids; nothing saved depends on the world size.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Variable } from '../../autograd/variable.js';
import { version } from '../../info.js';
import { native, nativePath, type NativeHandle } from '../../native.js';
import { Generator } from '../../ops/random.js';
import type { Tensor } from '../../tensor.js';

declare module '../../native.js' {
  interface NativeModule {
    distInit(launcher: string, timeoutSeconds: number): { rank: number; size: number; library: string };
    distAllreduceArray(data: Float32Array | Float64Array, op: 'sum' | 'max', what: string): void;
    distAllreduceTensors(tensors: readonly NativeHandle[], average: boolean, what: string): void;
    distBroadcast(data: Uint8Array, root: number, what: string): void;
    distAllgather(data: Uint8Array, what: string): Uint8Array[];
    distBarrier(what: string): void;
    distFinalize(): void;
  }
}

export type ReduceOp = 'sum' | 'mean' | 'max';

/** The processes of one training job. Every collective must be called by every rank, in the same order. */
export interface Communicator {
  readonly rank: number;
  readonly size: number;
  /** Reduces `data` across ranks in place. */
  allreduce(data: Float32Array | Float64Array, op: ReduceOp, what: string): void;
  /** Sums (or averages) f32 tensors on one device across ranks in place, as one flat buffer. */
  allreduceTensors(tensors: readonly Tensor<'f32'>[], op: 'sum' | 'mean', what: string): void;
  /** Rank `root`'s bytes into `data` on every rank (the same length everywhere). */
  broadcast(data: Uint8Array, root: number, what: string): void;
  /** Every rank's `value` (small JSON), in rank order. */
  allgather<T>(value: T, what: string): T[];
  /** Every rank's bytes (any lengths), in rank order. */
  allgatherBytes(data: Uint8Array, what: string): Uint8Array[];
  barrier(what: string): void;
}

/**
 * What shows that this process was started by an MPI launcher, as NAME=value ("" when it was
 * not, or in a world of one): the world size Open MPI or a PMI launcher sets, else a rank that a
 * PMIx launcher sets (the size then comes from MPI itself).
 */
export function launcherEvidence(env: NodeJS.ProcessEnv = process.env): string {
  const present = (name: string): boolean => env[name] !== undefined && env[name] !== '';
  const size = ['OMPI_COMM_WORLD_SIZE', 'PMI_SIZE'].find(present);
  if (size !== undefined) return env[size] === '1' ? '' : `${size}=${env[size]}`;
  const rank = ['PMIX_RANK', 'PMI_RANK'].find(present);
  return rank === undefined ? '' : `${rank}=${env[rank]}`;
}

/** "rank R of N" from the launcher's environment ("" outside mpirun), for messages that must say which process wrote them. */
export function rankLabel(env: NodeJS.ProcessEnv = process.env): string {
  if (launcherEvidence(env) === '') return '';
  return `rank ${env.OMPI_COMM_WORLD_RANK ?? env.PMI_RANK ?? env.PMIX_RANK ?? '?'} of ${env.OMPI_COMM_WORLD_SIZE ?? env.PMI_SIZE ?? '?'}`;
}

// Long enough for rank 0 to write a large checkpoint or sample grid while the others wait for it.
const defaultTimeoutSeconds = 1800;

/** REALTUNE_DIST_TIMEOUT: how long a collective waits for the other ranks before it fails (seconds). */
export function collectiveTimeout(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.REALTUNE_DIST_TIMEOUT;
  if (text === undefined || text === '') return defaultTimeoutSeconds;
  const value = Number(text);
  if (!(Number.isFinite(value) && value > 0)) throw new RangeError(`data-parallel: REALTUNE_DIST_TIMEOUT must be a number of seconds > 0, got ${JSON.stringify(text)}`);
  return value;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

class ProcessGroup implements Communicator {
  constructor(
    readonly rank: number,
    readonly size: number,
  ) {}

  allreduce(data: Float32Array | Float64Array, op: ReduceOp, what: string): void {
    if (this.size === 1) return;
    native.distAllreduceArray(data, op === 'max' ? 'max' : 'sum', what);
    if (op === 'mean') for (let i = 0; i < data.length; i++) data[i]! /= this.size;
  }

  allreduceTensors(tensors: readonly Tensor<'f32'>[], op: 'sum' | 'mean', what: string): void {
    if (this.size === 1 || tensors.length === 0) return;
    native.distAllreduceTensors(tensors.map((t) => t.handle), op === 'mean', what);
  }

  broadcast(data: Uint8Array, root: number, what: string): void {
    if (this.size > 1) native.distBroadcast(data, root, what);
  }

  allgather<T>(value: T, what: string): T[] {
    if (this.size === 1) return [value];
    return this.allgatherBytes(encoder.encode(JSON.stringify(value)), what).map((bytes) => JSON.parse(decoder.decode(bytes)) as T);
  }

  allgatherBytes(data: Uint8Array, what: string): Uint8Array[] {
    return this.size === 1 ? [data] : native.distAllgather(data, what);
  }

  barrier(what: string): void {
    if (this.size > 1) native.distBarrier(what);
  }
}

let world: Communicator | undefined;

/**
 * This process's job: a world of one for a plain run; under mpirun, MPI is initialised on the
 * first call (an error naming what to install when it cannot be loaded).
 */
export function worldCommunicator(): Communicator {
  if (world !== undefined) return world;
  const evidence = launcherEvidence();
  if (evidence === '') {
    world = new ProcessGroup(0, 1);
    return world;
  }
  const { rank, size } = native.distInit(evidence, collectiveTimeout());
  // A rank that fails exits without MPI_Finalize, so the launcher ends the whole job at once.
  process.on('exit', (code) => {
    if (code === 0) native.distFinalize();
  });
  world = new ProcessGroup(rank, size);
  return world;
}

/** Fails (on every rank) when `op`, which has no batch to split, is started as several processes. */
export function requireOneProcess(op: string, comm: Communicator = worldCommunicator()): void {
  if (comm.size > 1) throw new Error(`${op}: cannot run as ${comm.size} processes (mpirun -np ${comm.size}): it has no batch to split; run it as one process`);
}

/** A rank's contiguous part of a global micro-batch of `batch` samples. */
export interface Shard {
  rank: number;
  size: number;
  /** Index of the rank's first sample in the global micro-batch. */
  start: number;
  /** Samples the rank computes (batch / size). */
  count: number;
}

/** The one-process shard: the whole batch. */
export function wholeBatch(batch: number): Shard {
  return { rank: 0, size: 1, start: 0, count: batch };
}

/** `comm`'s shard of a micro-batch of `batch` samples; the world size must divide it. */
export function shardOf(op: string, what: string, batch: number, comm: Pick<Communicator, 'rank' | 'size'>): Shard {
  if (batch % comm.size !== 0) {
    throw new RangeError(`${op}: ${what} ${batch} cannot be split over ${comm.size} ranks (mpirun -np ${comm.size}); give a ${what} that is a multiple of ${comm.size}, or a number of ranks that divides ${batch}`);
  }
  const count = batch / comm.size;
  return { rank: comm.rank, size: comm.size, start: comm.rank * count, count };
}

/** Whether sample `index` of the global micro-batch is in `shard`. */
export function inShard(index: number, shard: Shard): boolean {
  return index >= shard.start && index < shard.start + shard.count;
}

/** The elements [start, start + count) of `items` (a rank's part of what every rank drew). */
export function sliceOf<T>(items: readonly T[], shard: Shard): T[] {
  return items.slice(shard.start, shard.start + shard.count);
}

/**
 * A view of `base` for a rank that computes `shard` of a batch-major draw: a draw of this rank's
 * n elements takes counters [first + start * n / count, ...) of the size * n / count that the
 * whole batch's draw takes, and advances `base` past all of them, so every rank's numbers are
 * its rows of the one-process draw and the streams stay the same on every rank.
 */
export class ShardedGenerator extends Generator {
  constructor(
    readonly base: Generator,
    readonly shard: Shard,
  ) {
    super(base.seed, base.offset);
  }

  override advance(count: number): number {
    if (count % this.shard.count !== 0) throw new RangeError(`ShardedGenerator: a draw of ${count} values is not ${this.shard.count} rows of equal size; draws under data-parallel training must be batch-major`);
    const row = count / this.shard.count;
    const first = this.base.advance(row * this.shard.count * this.shard.size);
    this.seed = this.base.seed;
    this.offset = this.base.offset;
    return first + this.shard.start * row;
  }
}

/** `generator` itself for a whole batch, else the rank's ShardedGenerator view of it. */
export function shardedGenerator(generator: Generator, shard: Shard): Generator {
  return shard.size === 1 ? generator : new ShardedGenerator(generator, shard);
}

let addonId: string | undefined;

/** What must be the same on every rank besides the settings: the realtune version and the addon binary. */
function buildIdentity(): { version: string; addon: string } {
  addonId ??= createHash('sha256').update(readFileSync(nativePath)).digest('hex').slice(0, 16);
  return { version, addon: addonId };
}

const describe = (value: unknown): string => JSON.stringify(value) ?? 'unset';

/**
 * Fails on every rank, before any work, unless every rank was started with the same `settings`
 * and the same realtune build (version and addon binary).
 */
export function checkSameRun(op: string, comm: Communicator, settings: Record<string, unknown>): void {
  if (comm.size === 1) return;
  const mine = { ...buildIdentity(), settings };
  const all = comm.allgather(mine, `${op}: the check that every rank runs the same job`);
  const first = all[0]!;
  const differences: string[] = [];
  all.forEach((other, rank) => {
    if (rank === 0) return;
    for (const key of ['version', 'addon'] as const) {
      if (other[key] !== first[key]) differences.push(`rank ${rank} runs realtune ${key} ${other[key]} (rank 0: ${first[key]})`);
    }
    for (const key of new Set([...Object.keys(first.settings), ...Object.keys(other.settings)])) {
      if (describe(other.settings[key]) !== describe(first.settings[key])) differences.push(`rank ${rank} has ${key} ${describe(other.settings[key])} (rank 0: ${describe(first.settings[key])})`);
    }
  });
  if (differences.length > 0) {
    throw new Error(`${op}: the ${comm.size} ranks of this mpirun job were not started the same way: ${differences.join('; ')}; start every rank with the same options, data and realtune build`);
  }
}

/** A checksum of the values of `parameters` (equal on every rank while the ranks agree). */
export function parametersChecksum(parameters: readonly [string, Variable][]): string {
  const hash = createHash('sha256');
  for (const [name, p] of parameters) {
    const values = p.value.toArray();
    hash.update(name).update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
  return hash.digest('hex').slice(0, 16);
}

/** Fails on every rank when the trained weights of the ranks are no longer equal after `step`. */
export function checkWeightsAgree(op: string, comm: Communicator, step: number, parameters: readonly [string, Variable][]): void {
  if (comm.size === 1) return;
  const sums = comm.allgather(parametersChecksum(parameters), `${op}: the weights checksum of step ${step}`);
  const differing = sums.map((s, rank) => (s === sums[0] ? -1 : rank)).filter((rank) => rank >= 0);
  if (differing.length > 0) {
    throw new Error(`${op}: after step ${step} the weights of rank${differing.length > 1 ? 's' : ''} ${differing.join(', ')} differ from rank 0's (checksums ${sums.join(', ')}); the ranks diverged (a nondeterministic op, or ranks on different hardware or builds)`);
  }
}

/**
 * Fails on every rank unless every rank has gradients of the same size and the same metrics
 * after the micro-batches of a step (checked once: the flat buffers of the collectives must line up).
 */
export function checkStepLayout(op: string, comm: Communicator, gradientValues: number, metrics: readonly string[]): void {
  if (comm.size === 1) return;
  const all = comm.allgather({ gradientValues, metrics }, `${op}: the check of the gradients' layout`);
  const differing = all.map((l, rank) => (describe(l) === describe(all[0]) ? -1 : rank)).filter((rank) => rank >= 0);
  if (differing.length > 0) {
    throw new Error(`${op}: the ranks computed different gradients or metrics in their first step (${all.map((l, rank) => `rank ${rank}: ${l.gradientValues} gradient values, metrics [${l.metrics.join(', ')}]`).join('; ')}); every rank must train the same parameters`);
  }
}

/** Whether this process writes the job's files and prints its progress (rank 0, or the only process). */
export function isRankZero(): boolean {
  return worldCommunicator().rank === 0;
}

/** Runs `fn` on rank 0 only; the other ranks wait for it at a barrier (also when it fails there: its error ends the job). */
export async function onRankZero<T>(comm: Communicator, what: string, fn: () => Promise<T> | T): Promise<T | undefined> {
  const result = comm.rank === 0 ? await fn() : undefined;
  comm.barrier(what);
  return result;
}
