// The Tensor handle: native memory on a device, with shape, dtype and device known in TS.
// Data crosses into JS only through toArray()/item().
import { deviceCode, deviceFromCode, getDefaultDevice, resolveDevice, type DeviceRequest, type DeviceType } from './device.js';
import { native, type NativeHandle } from './native.js';
import { track } from './scope.js';

export type DType = 'f32' | 'bf16' | 'i32';
export type Shape = readonly number[];
/** What toArray() returns for a dtype: bf16 is widened to f32. */
export type ArrayFor<D extends DType> = D extends 'i32' ? Int32Array : Float32Array;

const dtypeCodes: Record<DType, number> = { f32: 0, bf16: 1, i32: 2 };

export function dtypeCode(dtype: DType): number {
  const code = dtypeCodes[dtype];
  if (code === undefined) throw new TypeError(`dtype: expected 'f32', 'bf16' or 'i32', got ${JSON.stringify(dtype)}`);
  return code;
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeString(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export class Tensor<D extends DType = DType, V extends DeviceType = DeviceType> {
  readonly shape: Shape;
  readonly dtype: D;
  readonly device: V;
  #handle: NativeHandle | undefined;

  /** Wraps a native handle; ops and creation functions call this, users do not. */
  constructor(handle: NativeHandle, shape: Shape, dtype: D, device: V) {
    this.#handle = handle;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.device = device;
    track(this);
  }

  /** The native handle; throws when the tensor was disposed. */
  get handle(): NativeHandle {
    if (this.#handle === undefined) throw new TypeError(`tensor ${this.describe()} was disposed`);
    return this.#handle;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get size(): number {
    return numel(this.shape);
  }

  get disposed(): boolean {
    return this.#handle === undefined;
  }

  /** Frees the memory now (views share it: it is freed when the last one goes). Idempotent. */
  dispose(): void {
    if (this.#handle === undefined) return;
    native.dispose(this.#handle);
    this.#handle = undefined;
  }

  /** A copy of the data in JS memory. */
  toArray(): ArrayFor<D> {
    return native.toArray(this.handle) as ArrayFor<D>;
  }

  /** The single element of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new RangeError(`item: tensor ${this.describe()} has ${this.size} elements, expected 1`);
    return this.toArray()[0]!;
  }

  /** The same memory seen with another shape; one dimension may be -1 (inferred). */
  reshape(shape: Shape): Tensor<D, V> {
    const resolved = inferShape(shape, this.size, 'reshape');
    return new Tensor(native.view(this.handle, resolved), resolved, this.dtype, this.device);
  }

  /** Alias of reshape: every tensor is contiguous, so every view is a reshape. */
  view(shape: Shape): Tensor<D, V> {
    return this.reshape(shape);
  }

  /** Rows [start, end) of the leading axis, as a view sharing memory. */
  slice(start: number, end: number = this.shape[0] ?? 0): Tensor<D, V> {
    const rows = this.shape[0];
    if (rows === undefined) throw new RangeError(`slice: tensor ${this.describe()} has no leading axis`);
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > rows || start > end) {
      throw new RangeError(`slice: range [${start}, ${end}) is outside the leading axis of ${this.describe()}`);
    }
    const rowSize = rows === 0 ? 0 : this.size / rows;
    const shape = [end - start, ...this.shape.slice(1)];
    return new Tensor(native.viewRange(this.handle, start * rowSize, shape), shape, this.dtype, this.device);
  }

  /** Row `index` of the leading axis without that axis, as a view sharing memory. */
  select(index: number): Tensor<D, V> {
    const row = this.slice(index, index + 1);
    return row.reshape(this.shape.slice(1));
  }

  /** A copy on `device` (a copy even when it is already there). */
  to<T extends DeviceType>(device: T | DeviceRequest): Tensor<D, T> {
    const target = resolveDevice(device) as T;
    return new Tensor(native.copyTo(this.handle, deviceCode(target)), this.shape, this.dtype, target);
  }

  clone(): Tensor<D, V> {
    return new Tensor(native.copyTo(this.handle, deviceCode(this.device)), this.shape, this.dtype, this.device);
  }

  /** Overwrites this tensor's data with `src` (same dtype, device and size). */
  copy_(src: Tensor<D, V>): this {
    native.copyInto(this.handle, src.handle);
    return this;
  }

  describe(): string {
    return `${this.dtype} ${shapeString(this.shape)} on ${this.device}`;
  }

  toString(): string {
    return `Tensor(${this.describe()})`;
  }
}

export function inferShape(shape: Shape, size: number, op: string): number[] {
  const unknown = shape.filter((d) => d === -1).length;
  if (unknown > 1) throw new RangeError(`${op}: only one dimension may be -1, got ${shapeString(shape)}`);
  for (const d of shape) {
    if (!Number.isInteger(d) || d < -1) throw new RangeError(`${op}: dimensions must be integers >= 0 (or one -1), got ${shapeString(shape)}`);
  }
  const known = shape.reduce((n, d) => (d === -1 ? n : n * d), 1);
  if (unknown === 1) {
    if (known === 0 || size % known !== 0) throw new RangeError(`${op}: cannot infer -1 in ${shapeString(shape)} for ${size} elements`);
    return shape.map((d) => (d === -1 ? size / known : d));
  }
  if (known !== size) throw new RangeError(`${op}: shape ${shapeString(shape)} has ${known} elements, expected ${size}`);
  return [...shape];
}

export interface CreateOptions<D extends DType = DType> {
  dtype?: D;
  device?: DeviceRequest;
}

function placement<D extends DType>(options: CreateOptions<D>): { dtype: D; device: DeviceType } {
  const dtype = (options.dtype ?? 'f32') as D;
  dtypeCode(dtype);
  const device = options.device === undefined ? getDefaultDevice() : resolveDevice(options.device);
  return { dtype, device };
}

function checkShape(shape: Shape, op: string): void {
  if (!Array.isArray(shape)) throw new TypeError(`${op}: shape must be an array of dimensions, got ${typeof shape}`);
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`${op}: shape dimensions must be integers >= 0, got ${shapeString(shape)}`);
  }
}

/** Uninitialised memory. */
export function empty<D extends DType = 'f32'>(shape: Shape, options: CreateOptions<D> = {}): Tensor<D> {
  checkShape(shape, 'empty');
  const { dtype, device } = placement(options);
  return new Tensor(native.empty(shape, dtypeCode(dtype), deviceCode(device)), shape, dtype, device);
}

export function full<D extends DType = 'f32'>(shape: Shape, value: number, options: CreateOptions<D> = {}): Tensor<D> {
  if (typeof value !== 'number') throw new TypeError(`full: value must be a number, got ${typeof value}`);
  const t = empty(shape, options);
  native.fill(t.handle, value);
  return t;
}

export function zeros<D extends DType = 'f32'>(shape: Shape, options: CreateOptions<D> = {}): Tensor<D> {
  return full(shape, 0, options);
}

export function ones<D extends DType = 'f32'>(shape: Shape, options: CreateOptions<D> = {}): Tensor<D> {
  return full(shape, 1, options);
}

/** A tensor from JS numbers; `shape` defaults to 1-D. Integers for i32, anything for f32/bf16. */
export function fromArray<D extends DType = 'f32'>(
  data: ArrayLike<number>,
  shape?: Shape,
  options: CreateOptions<D> = {},
): Tensor<D> {
  const { dtype, device } = placement(options);
  const resolved = shape ?? [data.length];
  checkShape(resolved, 'fromArray');
  if (numel(resolved) !== data.length) {
    throw new RangeError(`fromArray: data has ${data.length} elements, shape ${shapeString(resolved)} needs ${numel(resolved)}`);
  }
  const typed = dtype === 'i32' ? toInt32(data) : data instanceof Float32Array ? data : Float32Array.from(data);
  return new Tensor(native.fromArray(typed, resolved, dtypeCode(dtype), deviceCode(device)), resolved, dtype, device);
}

function toInt32(data: ArrayLike<number>): Int32Array {
  if (data instanceof Int32Array) return data;
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
      throw new RangeError(`fromArray: i32 data must be 32-bit integers, element ${i} is ${v}`);
    }
    out[i] = v;
  }
  return out;
}

/** Wraps a handle an op returned; for lib/ops code. */
export function wrap<D extends DType, V extends DeviceType>(handle: NativeHandle, shape: Shape, dtype: D, device: V): Tensor<D, V> {
  return new Tensor(handle, shape, dtype, device);
}

/**
 * Wraps a handle an op returned as a view of another `shape`, freeing the op's own handle now
 * (left to the garbage collector, its storage would outlive the view's dispose()).
 */
export function wrapReshaped<D extends DType, V extends DeviceType>(handle: NativeHandle, shape: Shape, dtype: D, device: V): Tensor<D, V> {
  const view = native.view(handle, shape);
  native.dispose(handle);
  return wrap(view, shape, dtype, device);
}

export { deviceFromCode };
