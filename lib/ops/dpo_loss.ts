// Diffusion-DPO loss (Wallace et al. 2023), fused: one native pass over the six inputs.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { wrap, type Tensor } from '../tensor.js';
import { expectDType, expectNumber, expectSameDevice, expectShape, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    dpoLoss(
      predW: NativeHandle,
      predL: NativeHandle,
      refW: NativeHandle,
      refL: NativeHandle,
      noiseW: NativeHandle,
      noiseL: NativeHandle,
      pairs: number,
      beta: number,
    ): NativeHandle[];
    dpoLossBackward(
      predW: NativeHandle,
      predL: NativeHandle,
      noiseW: NativeHandle,
      noiseL: NativeHandle,
      inside: NativeHandle,
      beta: number,
      dloss: number,
    ): NativeHandle[];
  }
}

export interface DpoLossOptions {
  /** The coefficient on the mse difference; 2500 by default (see dpoLoss). */
  beta?: number;
}

export interface DpoLossResult {
  /** -mean over pairs of logsigmoid(inside), [1]. */
  loss: Tensor<'f32'>;
  /** Implicit accuracy: mean over pairs of (inside > 0), ties counting 0.5, [1]. */
  accuracy: Tensor<'f32'>;
  /** Per pair -beta ((mseW - mseL) - (refMseW - refMseL)), [pairs]: what the backward needs. */
  inside: Tensor<'f32'>;
  mseW: Tensor<'f32'>;
  mseL: Tensor<'f32'>;
  refMseW: Tensor<'f32'>;
  refMseL: Tensor<'f32'>;
}

function checkInputs(op: string, names: readonly string[], tensors: readonly unknown[]): Tensor<'f32'>[] {
  const checked: Tensor<'f32'>[] = [];
  tensors.forEach((t, i) => {
    const name = names[i]!;
    expectTensor(op, name, t);
    expectDType(op, name, t, 'f32');
    checked.push(t);
  });
  const first = checked[0]!;
  if (first.ndim < 2) throw new RangeError(`${op}: ${names[0]} has ${first.ndim} dims, expected at least 2 [pairs, ...]`);
  if (first.size === 0) throw new RangeError(`${op}: ${names[0]} is empty (shape [${first.shape.join(', ')}])`);
  checked.forEach((t, i) => {
    expectSameDevice(op, names[i]!, t, first.device);
    expectShape(op, names[i]!, t, first.shape);
  });
  return checked;
}

/** The largest finite f32: the kernels compute in f32, where a larger beta is infinite. */
const f32Max = 3.4028234663852886e38;

/**
 * beta > 0: it scales how strongly the winner is preferred, 0 erases the preference and a
 * negative beta prefers the loser.
 */
export function checkBeta(op: string, beta: unknown): number {
  return expectNumber(op, 'beta', beta, (v) => Number.isFinite(v) && v > 0 && v <= f32Max, `finite, > 0 and at most ${f32Max} (0 erases the preference, a negative beta prefers the loser, and the kernels compute in f32)`);
}

/**
 * Diffusion-DPO loss, diffusers form (SPEC section 1). The leading axis indexes pairs; a pair's
 * winner and loser share one timestep and one noise. Per pair, over all non-pair axes:
 *
 *     mseW = mse(predW, noiseW)    mseL = mse(predL, noiseL)       (policy, trained)
 *     refMseW = mse(refW, noiseW)  refMseL = mse(refL, noiseL)     (frozen reference)
 *     inside = -beta ((mseW - mseL) - (refMseW - refMseL))
 *     loss = -mean(logsigmoid(inside))       (logsigmoid per pair, then the mean)
 *
 * logsigmoid is evaluated as min(x, 0) - log1p(exp(-|x|)), exact for |inside| in the thousands.
 * beta = 2500 by default. The official Diffusion-DPO code writes inside = -0.5 beta (...) with
 * beta = 5000: the same coefficient 2500 on the difference, so the two spellings agree.
 * At step 0 (policy == reference) every inside is 0 and the loss is log 2.
 */
export function dpoLoss(
  predW: Tensor<'f32'>,
  predL: Tensor<'f32'>,
  refW: Tensor<'f32'>,
  refL: Tensor<'f32'>,
  noiseW: Tensor<'f32'>,
  noiseL: Tensor<'f32'>,
  options: DpoLossOptions = {},
): DpoLossResult {
  const op = 'dpoLoss';
  const [pw, pl, rw, rl, nw, nl] = checkInputs(op, ['predW', 'predL', 'refW', 'refL', 'noiseW', 'noiseL'], [
    predW,
    predL,
    refW,
    refL,
    noiseW,
    noiseL,
  ]) as [Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>];
  const beta = checkBeta(op, options.beta ?? 2500);
  const pairs = pw.shape[0]!;
  const handles = native.dpoLoss(pw.handle, pl.handle, rw.handle, rl.handle, nw.handle, nl.handle, pairs, beta);
  const device = pw.device;
  const at = (i: number, shape: number[]): Tensor<'f32'> => wrap(handles[i]!, shape, 'f32', device);
  return {
    loss: at(0, [1]),
    accuracy: at(1, [1]),
    inside: at(2, [pairs]),
    mseW: at(3, [pairs]),
    mseL: at(4, [pairs]),
    refMseW: at(5, [pairs]),
    refMseL: at(6, [pairs]),
  };
}

export interface DpoLossBackwardOptions extends DpoLossOptions {
  /** The incoming gradient of the loss (a host scalar); 1 by default. */
  dloss?: number;
}

export interface DpoLossGradients {
  dPredW: Tensor<'f32'>;
  dPredL: Tensor<'f32'>;
}

/**
 * Gradients of dpoLoss with respect to the policy predictions, from the forward's saved `inside`
 * (pass the same beta): dPredW = dloss 2 beta sigmoid(-inside) (predW - noiseW) / (pairs perPair),
 * dPredL the same with the opposite sign on (predL - noiseL). One elementwise pass.
 */
export function dpoLossBackward(
  predW: Tensor<'f32'>,
  predL: Tensor<'f32'>,
  noiseW: Tensor<'f32'>,
  noiseL: Tensor<'f32'>,
  inside: Tensor<'f32'>,
  options: DpoLossBackwardOptions = {},
): DpoLossGradients {
  const op = 'dpoLossBackward';
  const [pw, pl, nw, nl] = checkInputs(op, ['predW', 'predL', 'noiseW', 'noiseL'], [predW, predL, noiseW, noiseL]) as [
    Tensor<'f32'>,
    Tensor<'f32'>,
    Tensor<'f32'>,
    Tensor<'f32'>,
  ];
  expectTensor(op, 'inside', inside);
  expectDType(op, 'inside', inside, 'f32');
  expectSameDevice(op, 'inside', inside, pw.device);
  expectShape(op, 'inside', inside, [pw.shape[0]!]);
  const beta = checkBeta(op, options.beta ?? 2500);
  const dloss = expectNumber(op, 'dloss', options.dloss ?? 1, Number.isFinite, 'finite');
  const [dw, dl] = native.dpoLossBackward(pw.handle, pl.handle, nw.handle, nl.handle, inside.handle, beta, dloss);
  return { dPredW: wrap(dw!, pw.shape, 'f32', pw.device), dPredL: wrap(dl!, pw.shape, 'f32', pw.device) };
}
