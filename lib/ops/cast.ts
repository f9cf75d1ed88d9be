// Dtype conversion: f32 <-> bf16 (round to nearest, ties to even; NaN stays NaN), i32 <-> f32
// (float to int truncates toward zero, saturates, NaN -> 0), and bf16 <-> i32 through f32.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { dtypeCode, wrap, type DType, type Tensor } from '../tensor.js';
import { expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    cast(x: NativeHandle, dtype: number): NativeHandle;
  }
}

/** A copy of x converted to `dtype` (a copy even when x already has it). */
export function cast<D extends DType>(x: Tensor, dtype: D): Tensor<D> {
  expectTensor('cast', 'x', x);
  if (dtype !== 'f32' && dtype !== 'bf16' && dtype !== 'i32') {
    throw new TypeError(`cast: dtype must be 'f32', 'bf16' or 'i32', got ${JSON.stringify(dtype)}`);
  }
  return wrap(native.cast(x.handle, dtypeCode(dtype)), x.shape, dtype, x.device);
}
