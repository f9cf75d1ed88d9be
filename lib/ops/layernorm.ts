// Layer norm over the last axis with optional affine parameters and adaLN modulation, and its
// backward. x is [..., C]; with modulation x is [B, ..., C] and scale/shift are [B, C]: every
// row of sample b is modulated by row b (the DiT's per-sample conditioning).
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { numel, shapeString, wrap, type Tensor } from '../tensor.js';
import { expectDType, expectNumber, expectSameDevice, expectShape, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    layerNorm(
      x: NativeHandle,
      gamma: NativeHandle | null,
      beta: NativeHandle | null,
      scale: NativeHandle | null,
      shift: NativeHandle | null,
      group: number,
      eps: number,
    ): [NativeHandle, NativeHandle, NativeHandle];
    layerNormBackward(
      x: NativeHandle,
      dy: NativeHandle,
      gamma: NativeHandle | null,
      beta: NativeHandle | null,
      scale: NativeHandle | null,
      mean: NativeHandle,
      rstd: NativeHandle,
      group: number,
      needGamma: boolean,
      needBeta: boolean,
      needScale: boolean,
      needShift: boolean,
    ): [NativeHandle, NativeHandle | null, NativeHandle | null, NativeHandle | null, NativeHandle | null];
  }
}

export interface LayerNormOptions {
  /** [C] multiplies the normalised x. */
  gamma?: Tensor<'f32'>;
  /** [C] added after gamma. */
  beta?: Tensor<'f32'>;
  /** [B, C] adaLN: y = y * (1 + scale[b]) + shift[b]. */
  scale?: Tensor<'f32'>;
  /** [B, C] adaLN shift. */
  shift?: Tensor<'f32'>;
  /** Added to the variance; default 1e-6. */
  eps?: number;
}

export interface LayerNormResult {
  y: Tensor<'f32'>;
  /** Per-row mean and 1/sqrt(var + eps), shaped like x without its last axis: the backward needs them. */
  mean: Tensor<'f32'>;
  rstd: Tensor<'f32'>;
}

export interface LayerNormBackwardOptions {
  /** The forward's inputs, as given to layerNorm (shift only says it was present). */
  gamma?: Tensor<'f32'>;
  beta?: Tensor<'f32'>;
  scale?: Tensor<'f32'>;
  shift?: Tensor<'f32'>;
  mean: Tensor<'f32'>;
  rstd: Tensor<'f32'>;
  /** Which parameter gradients to compute; each defaults to whether that input was given. */
  needGamma?: boolean;
  needBeta?: boolean;
  needScale?: boolean;
  needShift?: boolean;
}

export interface LayerNormGradients {
  dx: Tensor<'f32'>;
  /** null when not computed (the input was absent or its need flag false). */
  dgamma: Tensor<'f32'> | null;
  dbeta: Tensor<'f32'> | null;
  dscale: Tensor<'f32'> | null;
  dshift: Tensor<'f32'> | null;
}

function checkX(op: string, x: Tensor): number {
  expectTensor(op, 'x', x);
  expectDType(op, 'x', x, 'f32');
  const cols = x.shape[x.ndim - 1];
  if (cols === undefined || cols === 0) {
    throw new RangeError(`${op}: x has shape ${shapeString(x.shape)}, expected [..., C] with C > 0`);
  }
  return cols;
}

function checkVector(op: string, name: string, t: Tensor | undefined, x: Tensor, cols: number): void {
  if (t === undefined) return;
  expectTensor(op, name, t);
  expectDType(op, name, t, 'f32');
  expectSameDevice(op, name, t, x.device);
  expectShape(op, name, t, [cols]);
}

/** Checks scale/shift against x [B, ..., C]; returns `group`, the rows per sample (rows when unmodulated). */
function modulationGroup(op: string, x: Tensor, cols: number, modulation: Record<string, Tensor | undefined>): number {
  const rows = numel(x.shape) / cols;
  let group = Math.max(rows, 1);
  for (const [name, t] of Object.entries(modulation)) {
    if (t === undefined) continue;
    expectTensor(op, name, t);
    expectDType(op, name, t, 'f32');
    expectSameDevice(op, name, t, x.device);
    if (x.ndim < 2) {
      throw new RangeError(`${op}: ${name} needs x with a batch axis [B, ..., C], got x of shape ${shapeString(x.shape)}`);
    }
    const batch = x.shape[0]!;
    expectShape(op, name, t, [batch, cols]);
    group = batch === 0 ? 1 : rows / batch;
  }
  return group;
}

/**
 * y = (x - mean) / sqrt(var + eps) over the last axis, then * gamma + beta, then
 * * (1 + scale[b]) + shift[b]. Returns y and the per-row statistics the backward needs.
 */
export function layerNorm(x: Tensor<'f32'>, options: LayerNormOptions = {}): LayerNormResult {
  const op = 'layerNorm';
  const cols = checkX(op, x);
  const { gamma, beta, scale, shift } = options;
  const eps = expectNumber(op, 'eps', options.eps ?? 1e-6, (v) => v >= 0, '>= 0');
  checkVector(op, 'gamma', gamma, x, cols);
  checkVector(op, 'beta', beta, x, cols);
  const group = modulationGroup(op, x, cols, { scale, shift });
  const [y, mean, rstd] = native.layerNorm(
    x.handle,
    gamma?.handle ?? null,
    beta?.handle ?? null,
    scale?.handle ?? null,
    shift?.handle ?? null,
    group,
    eps,
  );
  const rowShape = x.shape.slice(0, -1);
  return {
    y: wrap(y, x.shape, 'f32', x.device),
    mean: wrap(mean, rowShape, 'f32', x.device),
    rstd: wrap(rstd, rowShape, 'f32', x.device),
  };
}

/** Gradients of layerNorm; parameter gradients are fresh tensors (written, not accumulated). */
export function layerNormBackward(x: Tensor<'f32'>, dy: Tensor<'f32'>, options: LayerNormBackwardOptions): LayerNormGradients {
  const op = 'layerNormBackward';
  const cols = checkX(op, x);
  expectTensor(op, 'dy', dy);
  expectDType(op, 'dy', dy, 'f32');
  expectSameDevice(op, 'dy', dy, x.device);
  expectShape(op, 'dy', dy, x.shape);
  const { gamma, beta, scale, shift, mean, rstd } = options;
  const rowShape = x.shape.slice(0, -1);
  for (const [name, t] of [['mean', mean], ['rstd', rstd]] as const) {
    expectTensor(op, name, t);
    expectDType(op, name, t, 'f32');
    expectSameDevice(op, name, t, x.device);
    expectShape(op, name, t, rowShape);
  }
  checkVector(op, 'gamma', gamma, x, cols);
  checkVector(op, 'beta', beta, x, cols);
  const group = modulationGroup(op, x, cols, { scale, shift });
  const needGamma = options.needGamma ?? gamma !== undefined;
  const needBeta = options.needBeta ?? beta !== undefined;
  const needScale = options.needScale ?? scale !== undefined;
  const needShift = options.needShift ?? shift !== undefined;
  if (needGamma && gamma === undefined) throw new RangeError(`${op}: needGamma is set but gamma was not given`);
  if (needScale && scale === undefined) throw new RangeError(`${op}: needScale is set but scale was not given`);
  if (needShift && scale === undefined && shift === undefined) {
    throw new RangeError(`${op}: needShift is set but neither shift nor scale was given (their [B, C] shape is needed)`);
  }
  const [dx, dgamma, dbeta, dscale, dshift] = native.layerNormBackward(
    x.handle,
    dy.handle,
    gamma?.handle ?? null,
    beta?.handle ?? null,
    scale?.handle ?? null,
    mean.handle,
    rstd.handle,
    group,
    needGamma,
    needBeta,
    needScale,
    needShift,
  );
  const modulationShape = [x.shape[0] ?? 0, cols];
  const maybe = (h: NativeHandle | null, shape: readonly number[]): Tensor<'f32'> | null =>
    h === null ? null : wrap(h, shape, 'f32', x.device);
  return {
    dx: wrap(dx, x.shape, 'f32', x.device),
    dgamma: maybe(dgamma, [cols]),
    dbeta: maybe(dbeta, [cols]),
    dscale: maybe(dscale, modulationShape),
    dshift: maybe(dshift, modulationShape),
  };
}
