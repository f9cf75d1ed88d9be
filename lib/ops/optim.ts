// Optimizer ops: the fused AdamW step and global gradient norms / clipping computed on the device.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { zeros, type Tensor } from '../tensor.js';
import { expectDType, expectInteger, expectNumber, expectSameDevice, expectShape, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    adamw(
      param: NativeHandle,
      grad: NativeHandle,
      m: NativeHandle,
      v: NativeHandle,
      lr: number,
      beta1: number,
      beta2: number,
      eps: number,
      weightDecay: number,
      step: number,
    ): void;
    sumSquares(x: NativeHandle, out: NativeHandle, accumulate: boolean): void;
    clipByNorm(x: NativeHandle, totalSq: NativeHandle, maxNorm: number): void;
  }
}

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** The 1-based step number, for the bias corrections 1 - beta^step. */
  step: number;
}

function checkF32(op: string, name: string, t: unknown): asserts t is Tensor<'f32'> {
  expectTensor(op, name, t);
  expectDType(op, name, t, 'f32');
}

/**
 * One AdamW step in place on param, m and v (decoupled weight decay, bias-corrected moments):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr (m^ / (sqrt(v^) + eps) + wd p)
 */
export function adamwStep(param: Tensor<'f32'>, grad: Tensor<'f32'>, m: Tensor<'f32'>, v: Tensor<'f32'>, options: AdamWOptions): void {
  const op = 'adamwStep';
  checkF32(op, 'param', param);
  for (const [name, t] of [['grad', grad], ['m', m], ['v', v]] as const) {
    checkF32(op, name, t);
    expectSameDevice(op, name, t, param.device);
    expectShape(op, name, t, param.shape);
  }
  const inUnit = (v: number): boolean => v >= 0 && v < 1;
  const lr = expectNumber(op, 'lr', options.lr, Number.isFinite, 'finite');
  const beta1 = expectNumber(op, 'beta1', options.beta1 ?? 0.9, inUnit, 'in [0, 1)');
  const beta2 = expectNumber(op, 'beta2', options.beta2 ?? 0.999, inUnit, 'in [0, 1)');
  const eps = expectNumber(op, 'eps', options.eps ?? 1e-8, (e) => e > 0 && Number.isFinite(e), 'finite and > 0');
  const weightDecay = expectNumber(op, 'weightDecay', options.weightDecay ?? 0.01, (w) => w >= 0 && Number.isFinite(w), 'finite and >= 0');
  const step = expectInteger(op, 'step', options.step, 1);
  native.adamw(param.handle, grad.handle, m.handle, v.handle, lr, beta1, beta2, eps, weightDecay, step);
}

export interface SumSquaresOptions {
  /** Where the sum goes: a one-element f32 tensor on x's device (new when not given). */
  out?: Tensor<'f32'>;
  /** Add to out's value instead of overwriting it (default false). */
  accumulate?: boolean;
}

/** sum(x^2) as a one-element tensor on x's device, accumulated in double where the backend can. */
export function sumSquares(x: Tensor<'f32'>, options: SumSquaresOptions = {}): Tensor<'f32'> {
  checkF32('sumSquares', 'x', x);
  const out = options.out ?? zeros([1], { device: x.device });
  checkF32('sumSquares', 'out', out);
  expectSameDevice('sumSquares', 'out', out, x.device);
  if (out.size !== 1) throw new RangeError(`sumSquares: out has ${out.size} elements, expected 1`);
  native.sumSquares(x.handle, out.handle, options.accumulate ?? false);
  return out;
}

function squaredNormOf(op: string, tensors: readonly Tensor<'f32'>[]): Tensor<'f32'> | undefined {
  if (!Array.isArray(tensors)) throw new TypeError(`${op}: tensors must be an array of tensors, got ${typeof tensors}`);
  const first = tensors[0];
  if (first === undefined) return undefined;
  tensors.forEach((t, i) => {
    checkF32(op, `tensors[${i}]`, t);
    expectSameDevice(op, `tensors[${i}]`, t, first.device);
  });
  const total = zeros([1], { device: first.device });
  for (const t of tensors) native.sumSquares(t.handle, total.handle, true);
  return total;
}

/** sqrt(sum over all tensors of sum(t^2)): one device scalar, read back once. 0 for no tensors. */
export function globalNorm(tensors: readonly Tensor<'f32'>[]): number {
  const total = squaredNormOf('globalNorm', tensors);
  if (total === undefined) return 0;
  try {
    return Math.sqrt(total.item());
  } finally {
    total.dispose();
  }
}

/**
 * Scales every tensor in place by min(1, maxNorm / (norm + 1e-6)), norm being their global
 * norm, which the device reads from its own memory (no host round trip before the clip).
 * Returns the norm before clipping.
 */
export function clipGradNorm(tensors: readonly Tensor<'f32'>[], maxNorm: number): number {
  expectNumber('clipGradNorm', 'maxNorm', maxNorm, (v) => v >= 0 && Number.isFinite(v), 'finite and >= 0');
  const total = squaredNormOf('clipGradNorm', tensors);
  if (total === undefined) return 0;
  try {
    for (const t of tensors) native.clipByNorm(t.handle, total.handle, maxNorm);
    return Math.sqrt(total.item());
  } finally {
    total.dispose();
  }
}
