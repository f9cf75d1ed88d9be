// Axis reordering as materialised (contiguous) copies, for f32, bf16 and i32 tensors.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { shapeString, wrap, type DType, type Tensor } from '../tensor.js';
import { normalizeAxis } from './elementwise.js';
import { expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    permute(x: NativeHandle, perm: readonly number[]): NativeHandle;
  }
}

const maxDims = 8;

/** x with its axes reordered: result.shape[d] = x.shape[perm[d]]; negative entries count from the end. */
export function permute<D extends DType>(x: Tensor<D>, perm: readonly number[]): Tensor<D> {
  expectTensor('permute', 'x', x);
  if (!Array.isArray(perm)) throw new TypeError(`permute: perm must be an array of axes, got ${typeof perm}`);
  if (x.ndim > maxDims) throw new RangeError(`permute: x has ${x.ndim} dims, at most ${maxDims} are supported`);
  if (perm.length !== x.ndim) throw new RangeError(`permute: perm ${shapeString(perm)} has ${perm.length} entries, expected ${x.ndim} (one per axis of x ${shapeString(x.shape)})`);
  const axes = perm.map((a: number) => normalizeAxis('permute', 'axis', a, x.ndim));
  if (new Set(axes).size !== axes.length) throw new RangeError(`permute: perm ${shapeString(perm)} is not a permutation of 0..${x.ndim - 1}`);
  const handle = native.permute(x.handle, axes);
  return wrap(handle, axes.map((a) => x.shape[a]!), x.dtype, x.device);
}

/** x with axes dim0 and dim1 swapped (a copy). */
export function transpose<D extends DType>(x: Tensor<D>, dim0: number, dim1: number): Tensor<D> {
  expectTensor('transpose', 'x', x);
  const a = normalizeAxis('transpose', 'dim0', dim0, x.ndim);
  const b = normalizeAxis('transpose', 'dim1', dim1, x.ndim);
  const perm = Array.from({ length: x.ndim }, (_, i) => (i === a ? b : i === b ? a : i));
  return permute(x, perm);
}
