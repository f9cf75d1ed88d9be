import { native, type NativeHandle } from '../native.js';
import { wrap, type Tensor } from '../tensor.js';
import { expectDType, expectNumber, expectOutLike, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    clamp(x: NativeHandle, lo: number, hi: number, out?: NativeHandle | null): NativeHandle;
  }
}

/** min(max(x, lo), hi), elementwise; `out` may be x (in place). */
export function clamp(x: Tensor<'f32'>, lo: number, hi: number, options: { out?: Tensor<'f32'> } = {}): Tensor<'f32'> {
  expectTensor('clamp', 'x', x);
  expectDType('clamp', 'x', x, 'f32');
  expectNumber('clamp', 'lo', lo);
  expectNumber('clamp', 'hi', hi, (v) => v >= lo, `>= lo (${lo})`);
  const { out } = options;
  expectOutLike('clamp', x, out);
  const handle = native.clamp(x.handle, lo, hi, out?.handle ?? null);
  return out ?? wrap(handle, x.shape, 'f32', x.device);
}
