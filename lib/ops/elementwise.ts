// Elementwise ops on f32 tensors.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { wrap, type Tensor } from '../tensor.js';
import { expectDType, expectNumber, expectTensor, expectSameDevice, expectShape } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    scale(x: NativeHandle, alpha: number, out?: NativeHandle | null): NativeHandle;
  }
}

export interface OutOption {
  /** Write the result here (same shape; may be an input, for an in-place update). */
  out?: Tensor<'f32'>;
}

function checkOut(op: string, x: Tensor, out: Tensor | undefined): void {
  if (out === undefined) return;
  expectTensor(op, 'out', out);
  expectSameDevice(op, 'out', out, x.device);
  expectDType(op, 'out', out, 'f32');
  expectShape(op, 'out', out, x.shape);
}

/** alpha * x */
export function scale(x: Tensor<'f32'>, alpha: number, options: OutOption = {}): Tensor<'f32'> {
  expectTensor('scale', 'x', x);
  expectDType('scale', 'x', x, 'f32');
  expectNumber('scale', 'alpha', alpha);
  checkOut('scale', x, options.out);
  const handle = native.scale(x.handle, alpha, options.out?.handle ?? null);
  return options.out ?? wrap(handle, x.shape, 'f32', x.device);
}
