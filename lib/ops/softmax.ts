// Softmax over the last axis of an f32 tensor of any rank, and its backward.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { wrap, type Tensor } from '../tensor.js';
import { expectDType, expectSameDevice, expectShape, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    softmax(x: NativeHandle): NativeHandle;
    softmaxBackward(y: NativeHandle, dy: NativeHandle): NativeHandle;
  }
}

/** exp(x - max) / sum(exp(x - max)) along the last axis; -inf entries get probability 0. */
export function softmax(x: Tensor<'f32'>): Tensor<'f32'> {
  expectTensor('softmax', 'x', x);
  expectDType('softmax', 'x', x, 'f32');
  return wrap(native.softmax(x.handle), x.shape, 'f32', x.device);
}

/** The gradient of softmax from its output y: dx = y * (dy - sum(dy * y)) along the last axis. */
export function softmaxBackward(y: Tensor<'f32'>, dy: Tensor<'f32'>): Tensor<'f32'> {
  const op = 'softmaxBackward';
  expectTensor(op, 'y', y);
  expectTensor(op, 'dy', dy);
  expectDType(op, 'y', y, 'f32');
  expectDType(op, 'dy', dy, 'f32');
  expectSameDevice(op, 'dy', dy, y.device);
  expectShape(op, 'dy', dy, y.shape);
  return wrap(native.softmaxBackward(y.handle, dy.handle), y.shape, 'f32', y.device);
}
