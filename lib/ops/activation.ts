// Elementwise activations on f32 tensors: GELU (tanh approximation) and SiLU, with backward.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { wrap, type Tensor } from '../tensor.js';
import { expectDType, expectSameDevice, expectShape, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    activation(x: NativeHandle, kind: number): NativeHandle;
    activationBackward(x: NativeHandle, dy: NativeHandle, kind: number): NativeHandle;
  }
}

const kinds = { gelu: 0, silu: 1 } as const;
type Kind = keyof typeof kinds;

function forward(op: string, kind: Kind, x: Tensor<'f32'>): Tensor<'f32'> {
  expectTensor(op, 'x', x);
  expectDType(op, 'x', x, 'f32');
  return wrap(native.activation(x.handle, kinds[kind]), x.shape, 'f32', x.device);
}

function backward(op: string, kind: Kind, x: Tensor<'f32'>, dy: Tensor<'f32'>): Tensor<'f32'> {
  expectTensor(op, 'x', x);
  expectTensor(op, 'dy', dy);
  expectDType(op, 'x', x, 'f32');
  expectDType(op, 'dy', dy, 'f32');
  expectSameDevice(op, 'dy', dy, x.device);
  expectShape(op, 'dy', dy, x.shape);
  return wrap(native.activationBackward(x.handle, dy.handle, kinds[kind]), x.shape, 'f32', x.device);
}

/** GELU, tanh approximation: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
export function gelu(x: Tensor<'f32'>): Tensor<'f32'> {
  return forward('gelu', 'gelu', x);
}

/** SiLU (swish): x * sigmoid(x). */
export function silu(x: Tensor<'f32'>): Tensor<'f32'> {
  return forward('silu', 'silu', x);
}

/** dy * gelu'(x), from the forward's input x. */
export function geluBackward(x: Tensor<'f32'>, dy: Tensor<'f32'>): Tensor<'f32'> {
  return backward('geluBackward', 'gelu', x, dy);
}

/** dy * silu'(x), from the forward's input x. */
export function siluBackward(x: Tensor<'f32'>, dy: Tensor<'f32'>): Tensor<'f32'> {
  return backward('siluBackward', 'silu', x, dy);
}
