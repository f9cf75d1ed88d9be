import { native, type NativeHandle } from '../native.js';
import { wrap, type Tensor } from '../tensor.js';
import { expectDType, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    sign(x: NativeHandle): NativeHandle;
  }
}

/** -1, 0 or 1 elementwise (the subgradient of |x|; 0 at 0). */
export function sign(x: Tensor<'f32'>): Tensor<'f32'> {
  expectTensor('sign', 'x', x);
  expectDType('sign', 'x', x, 'f32');
  return wrap(native.sign(x.handle), x.shape, 'f32', x.device);
}
