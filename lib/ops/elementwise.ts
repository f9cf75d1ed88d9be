// Elementwise ops on f32 tensors.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { wrap, type Tensor } from '../tensor.js';
import { expectDType, expectInteger, expectNumber, expectTensor, expectSameDevice, expectShape, expectOutLike } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    binary(a: NativeHandle, b: NativeHandle, op: number, out?: NativeHandle | null): NativeHandle;
    scale(x: NativeHandle, alpha: number, out?: NativeHandle | null): NativeHandle;
    axpy(alpha: number, x: NativeHandle, y: NativeHandle, beta: number): void;
    biasAdd(x: NativeHandle, bias: NativeHandle, axis: number, out?: NativeHandle | null): NativeHandle;
  }
}

export interface OutOption {
  /** Write the result here (same shape; may be an input, for an in-place update). */
  out?: Tensor<'f32'>;
}

function checkF32(op: string, name: string, x: unknown): asserts x is Tensor<'f32'> {
  expectTensor(op, name, x);
  expectDType(op, name, x, 'f32');
}

const binaryCodes = { add: 0, sub: 1, mul: 2 } as const;

function binary(op: keyof typeof binaryCodes, a: Tensor<'f32'>, b: Tensor<'f32'>, options: OutOption): Tensor<'f32'> {
  checkF32(op, 'a', a);
  checkF32(op, 'b', b);
  expectSameDevice(op, 'b', b, a.device);
  expectShape(op, 'b', b, a.shape);
  expectOutLike(op, a, options.out);
  const handle = native.binary(a.handle, b.handle, binaryCodes[op], options.out?.handle ?? null);
  return options.out ?? wrap(handle, a.shape, 'f32', a.device);
}

/** a + b (same shape). */
export function add(a: Tensor<'f32'>, b: Tensor<'f32'>, options: OutOption = {}): Tensor<'f32'> {
  return binary('add', a, b, options);
}

/** a - b (same shape). */
export function sub(a: Tensor<'f32'>, b: Tensor<'f32'>, options: OutOption = {}): Tensor<'f32'> {
  return binary('sub', a, b, options);
}

/** a * b elementwise (same shape). */
export function mul(a: Tensor<'f32'>, b: Tensor<'f32'>, options: OutOption = {}): Tensor<'f32'> {
  return binary('mul', a, b, options);
}

/** alpha * x */
export function scale(x: Tensor<'f32'>, alpha: number, options: OutOption = {}): Tensor<'f32'> {
  checkF32('scale', 'x', x);
  expectNumber('scale', 'alpha', alpha);
  expectOutLike('scale', x, options.out);
  const handle = native.scale(x.handle, alpha, options.out?.handle ?? null);
  return options.out ?? wrap(handle, x.shape, 'f32', x.device);
}

export interface AxpyOptions {
  /** y = alpha x + beta y; 1 by default (y += alpha x). With 0, y's old contents are ignored. */
  beta?: number;
}

/** y = alpha * x + beta * y in place (beta = 1 by default); returns y. */
export function axpy(alpha: number, x: Tensor<'f32'>, y: Tensor<'f32'>, options: AxpyOptions = {}): Tensor<'f32'> {
  expectNumber('axpy', 'alpha', alpha);
  checkF32('axpy', 'x', x);
  checkF32('axpy', 'y', y);
  expectSameDevice('axpy', 'y', y, x.device);
  expectShape('axpy', 'y', y, x.shape);
  const beta = expectNumber('axpy', 'beta', options.beta ?? 1);
  native.axpy(alpha, x.handle, y.handle, beta);
  return y;
}

/** Normalises a possibly negative axis of a rank-`ndim` tensor; the error names op and argument. */
export function normalizeAxis(op: string, name: string, axis: number, ndim: number): number {
  expectInteger(op, name, axis);
  if (axis < -ndim || axis >= ndim) throw new RangeError(`${op}: ${name} ${axis} is out of range for ${ndim} dims, expected -${ndim}..${ndim - 1}`);
  return axis < 0 ? axis + ndim : axis;
}

export interface BiasAddOptions extends OutOption {
  /** The axis the bias runs along (default -1, the last). */
  axis?: number;
}

/** x + bias, bias of length x.shape[axis] broadcast over every other axis. */
export function biasAdd(x: Tensor<'f32'>, bias: Tensor<'f32'>, options: BiasAddOptions = {}): Tensor<'f32'> {
  checkF32('biasAdd', 'x', x);
  checkF32('biasAdd', 'bias', bias);
  expectSameDevice('biasAdd', 'bias', bias, x.device);
  if (x.ndim === 0) throw new RangeError('biasAdd: x has 0 dims, expected at least 1');
  const axis = normalizeAxis('biasAdd', 'axis', options.axis ?? -1, x.ndim);
  expectShape('biasAdd', 'bias', bias, [x.shape[axis]!]);
  expectOutLike('biasAdd', x, options.out);
  const handle = native.biasAdd(x.handle, bias.handle, axis, options.out?.handle ?? null);
  return options.out ?? wrap(handle, x.shape, 'f32', x.device);
}
