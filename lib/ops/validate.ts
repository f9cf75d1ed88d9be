// Argument validation for ops: errors name the op, the argument, what was expected and what came.
//   attention: k has 3 dims, expected 4 [batch, heads, seq, dim]
import type { DeviceType } from '../device.js';
import { Tensor, shapeString, type DType } from '../tensor.js';

export function expectTensor(op: string, name: string, value: unknown): asserts value is Tensor {
  if (!(value instanceof Tensor)) {
    const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
    throw new TypeError(`${op}: ${name} must be a Tensor, got ${got}`);
  }
  if (value.disposed) throw new TypeError(`${op}: ${name} was disposed`);
}

/** `dims` names the axes, e.g. ['batch', 'heads', 'seq', 'dim']. */
export function expectRank(op: string, name: string, t: Tensor, dims: readonly string[]): void {
  if (t.ndim !== dims.length) {
    throw new RangeError(`${op}: ${name} has ${t.ndim} dims, expected ${dims.length} [${dims.join(', ')}]`);
  }
}

export function expectDType<D extends DType>(op: string, name: string, t: Tensor, ...dtypes: D[]): asserts t is Tensor<D> {
  if (!(dtypes as DType[]).includes(t.dtype)) {
    throw new TypeError(`${op}: ${name} has dtype ${t.dtype}, expected ${dtypes.join(' or ')}`);
  }
}

export function expectSameDevice(op: string, name: string, t: Tensor, device: DeviceType): void {
  if (t.device !== device) throw new TypeError(`${op}: ${name} is on ${t.device}, expected ${device} like the first input`);
}

export function expectShape(op: string, name: string, t: Tensor, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new RangeError(`${op}: ${name} has shape ${shapeString(t.shape)}, expected ${shapeString(shape)}`);
  }
}

export function expectDim(op: string, name: string, t: Tensor, axis: number, axisName: string, size: number): void {
  if (t.shape[axis] !== size) {
    throw new RangeError(`${op}: ${name} has ${axisName} ${t.shape[axis]} (shape ${shapeString(t.shape)}), expected ${size}`);
  }
}

export function expectNumber(op: string, name: string, value: unknown, check?: (v: number) => boolean, expectation?: string): number {
  if (typeof value !== 'number' || Number.isNaN(value)) throw new TypeError(`${op}: ${name} must be a number, got ${String(value)}`);
  if (check && !check(value)) throw new RangeError(`${op}: ${name} must be ${expectation}, got ${value}`);
  return value;
}

export function expectInteger(op: string, name: string, value: unknown, min = -Infinity): number {
  return expectNumber(op, name, value, (v) => Number.isInteger(v) && v >= min, min === -Infinity ? 'an integer' : `an integer >= ${min}`);
}

/** An `out` option, when given: an f32 tensor on `like`'s device with `like`'s shape. */
export function expectOutLike(op: string, like: Tensor, out: Tensor | undefined): void {
  if (out === undefined) return;
  expectTensor(op, 'out', out);
  expectSameDevice(op, 'out', out, like.device);
  expectDType(op, 'out', out, 'f32');
  expectShape(op, 'out', out, like.shape);
}
