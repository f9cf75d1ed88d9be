// Random tensors from a counter-based generator (Philox-4x32-10): element i of a draw is a pure
// function of (seed, offset + i), so cpu, cuda and cuda-emu produce the same numbers and a
// (seed, offset) pair reproduces a draw exactly.
import type { DeviceRequest } from '../device.js';
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { empty, shapeString, type Shape, type Tensor } from '../tensor.js';
import { expectNumber } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    random(out: NativeHandle, kind: number, seed: number, offset: number, a: number, b: number): void;
  }
}

export interface GeneratorState {
  seed: number;
  offset: number;
}

function checkCounter(op: string, name: string, value: unknown): number {
  return expectNumber(op, name, value, (v) => Number.isSafeInteger(v) && v >= 0, 'an integer in [0, 2^53)');
}

/** A seed and a position in its stream; each draw takes the next `numel` counters. */
export class Generator {
  seed: number;
  offset: number;

  constructor(seed: number = Generator.defaultSeed, offset = 0) {
    this.seed = checkCounter('Generator', 'seed', seed);
    this.offset = checkCounter('Generator', 'offset', offset);
  }

  /** The seed the global generator starts from (PyTorch's default, so runs are reproducible). */
  static readonly defaultSeed = 67280421310721;

  /** Restarts the stream at `seed`. */
  manualSeed(seed: number): this {
    this.seed = checkCounter('manualSeed', 'seed', seed);
    this.offset = 0;
    return this;
  }

  /** The position, for checkpoints. */
  state(): GeneratorState {
    return { seed: this.seed, offset: this.offset };
  }

  setState(state: GeneratorState): this {
    this.seed = checkCounter('setState', 'seed', state.seed);
    this.offset = checkCounter('setState', 'offset', state.offset);
    return this;
  }

  /** Reserves `count` counters; returns the first. */
  advance(count: number): number {
    const first = this.offset;
    this.offset = checkCounter('Generator', 'offset', first + count);
    return first;
  }
}

const globalGenerator = new Generator();

/** The generator draws use when given neither a seed nor a generator. */
export function defaultGenerator(): Generator {
  return globalGenerator;
}

/** Reseeds the global generator: the sequence of draws that follows is reproducible. */
export function manualSeed(seed: number): Generator {
  return globalGenerator.manualSeed(seed);
}

export interface RandomOptions {
  /** A fixed seed: the draw starts at offset 0 and advances no generator. */
  seed?: number;
  /** Draw from this generator (advancing it) instead of the global one. */
  generator?: Generator;
  device?: DeviceRequest;
}

function draw(op: string, shape: Shape, options: RandomOptions, kind: number, a: number, b: number): Tensor<'f32'> {
  if (options.seed !== undefined && options.generator !== undefined) {
    throw new TypeError(`${op}: pass either seed or generator, not both`);
  }
  if (options.generator !== undefined && !(options.generator instanceof Generator)) {
    throw new TypeError(`${op}: generator must be a Generator, got ${typeof options.generator}`);
  }
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new RangeError(`${op}: shape must be an array of integers >= 0, got ${Array.isArray(shape) ? shapeString(shape) : typeof shape}`);
  }
  const out = empty(shape, { dtype: 'f32', ...(options.device === undefined ? {} : { device: options.device }) });
  let seed: number;
  let offset: number;
  if (options.seed !== undefined) {
    seed = checkCounter(op, 'seed', options.seed);
    offset = 0;
  } else {
    const generator = options.generator ?? globalGenerator;
    seed = generator.seed;
    offset = generator.advance(out.size);
  }
  native.random(out.handle, kind, seed, offset, a, b);
  return out;
}

export interface RandnOptions extends RandomOptions {
  mean?: number;
  std?: number;
}

/** Normal samples, mean + std * z. */
export function randn(shape: Shape, options: RandnOptions = {}): Tensor<'f32'> {
  const mean = expectNumber('randn', 'mean', options.mean ?? 0, Number.isFinite, 'finite');
  const std = expectNumber('randn', 'std', options.std ?? 1, (v) => Number.isFinite(v) && v >= 0, 'finite and >= 0');
  return draw('randn', shape, options, 1, mean, std);
}

export interface RandOptions extends RandomOptions {
  low?: number;
  high?: number;
}

/** Uniform samples in [low, high). */
export function rand(shape: Shape, options: RandOptions = {}): Tensor<'f32'> {
  const low = expectNumber('rand', 'low', options.low ?? 0, Number.isFinite, 'finite');
  const high = expectNumber('rand', 'high', options.high ?? 1, (v) => Number.isFinite(v) && v >= low, `finite and >= low (${low})`);
  return draw('rand', shape, options, 0, low, high);
}
