// Channel-statistics loss (HG-DPO's L_stat, SPEC section 2): matches per-channel means (and
// optionally stds) of the trained model's one-step denoised latent to the frozen base model's.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { shapeString, wrap, type Tensor } from '../tensor.js';
import { expectDType, expectNumber, expectSameDevice, expectShape, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    channelStatLoss(a: NativeHandle, b: NativeHandle, batch: number, channels: number, n: number, matchStd: boolean): NativeHandle[];
    channelStatLossBackward(
      a: NativeHandle,
      meanA: NativeHandle,
      meanB: NativeHandle,
      stdA: NativeHandle | null,
      stdB: NativeHandle | null,
      batch: number,
      channels: number,
      n: number,
      matchStd: boolean,
      dloss: number,
    ): NativeHandle;
  }
}

export interface ChannelStatLossOptions {
  /** Also match the population std over N; false by default (the paper matches the mean only). */
  matchStd?: boolean;
}

export interface ChannelStatLossResult {
  /** mean over (batch, channel) of (meanA - meanB)^2 (+ (stdA - stdB)^2 with matchStd), [1]. */
  loss: Tensor<'f32'>;
  meanA: Tensor<'f32'>;
  meanB: Tensor<'f32'>;
  /** Present with matchStd. */
  stdA?: Tensor<'f32'>;
  stdB?: Tensor<'f32'>;
}

/** [batch, channels, n] of a [B, C, N] or [B, C, H, W] tensor. */
function rows(op: string, name: string, t: Tensor): [number, number, number] {
  if (t.ndim !== 3 && t.ndim !== 4) {
    throw new RangeError(`${op}: ${name} has ${t.ndim} dims, expected 3 [batch, channels, n] or 4 [batch, channels, height, width]`);
  }
  const [batch, channels, ...rest] = t.shape as number[];
  const n = rest.reduce((p, d) => p * d, 1);
  if (batch! < 1 || channels! < 1 || n < 1) throw new RangeError(`${op}: ${name} has shape ${shapeString(t.shape)}, expected no empty axis`);
  return [batch!, channels!, n];
}

/**
 * loss = mean over (batch, channel) of (mean_N a - mean_N b)^2, plus (std_N a - std_N b)^2 with
 * matchStd (population std). a is the trained model's output, b the frozen base model's: only a
 * gets a gradient (channelStatLossBackward). Statistics are saved for the backward.
 */
export function channelStatLoss(a: Tensor<'f32'>, b: Tensor<'f32'>, options: ChannelStatLossOptions = {}): ChannelStatLossResult {
  const op = 'channelStatLoss';
  expectTensor(op, 'a', a);
  expectDType(op, 'a', a, 'f32');
  expectTensor(op, 'b', b);
  expectDType(op, 'b', b, 'f32');
  expectSameDevice(op, 'b', b, a.device);
  const [batch, channels, n] = rows(op, 'a', a);
  expectShape(op, 'b', b, a.shape);
  const matchStd = options.matchStd ?? false;
  if (typeof matchStd !== 'boolean') throw new TypeError(`${op}: matchStd must be a boolean, got ${typeof matchStd}`);
  const handles = native.channelStatLoss(a.handle, b.handle, batch, channels, n, matchStd);
  const stat = (i: number): Tensor<'f32'> => wrap(handles[i]!, [batch, channels], 'f32', a.device);
  const result: ChannelStatLossResult = { loss: wrap(handles[0]!, [1], 'f32', a.device), meanA: stat(1), meanB: stat(2) };
  if (matchStd) {
    result.stdA = stat(3);
    result.stdB = stat(4);
  }
  return result;
}

export interface ChannelStatLossBackwardOptions extends ChannelStatLossOptions {
  /** The incoming gradient of the loss (a host scalar); 1 by default. */
  dloss?: number;
}

/**
 * d(loss)/d(a) from the forward's saved statistics, in one pass:
 * da = dloss / (B C) * (2 (meanA - meanB) / N + 2 (stdA - stdB) (a - meanA) / (N stdA)),
 * the std term only with matchStd (default: whether `saved` carries stds), and 0 where stdA = 0.
 */
export function channelStatLossBackward(
  a: Tensor<'f32'>,
  saved: Pick<ChannelStatLossResult, 'meanA' | 'meanB' | 'stdA' | 'stdB'>,
  options: ChannelStatLossBackwardOptions = {},
): { da: Tensor<'f32'> } {
  const op = 'channelStatLossBackward';
  expectTensor(op, 'a', a);
  expectDType(op, 'a', a, 'f32');
  const [batch, channels, n] = rows(op, 'a', a);
  if (typeof saved !== 'object' || saved === null) throw new TypeError(`${op}: saved must be the forward's result, got ${String(saved)}`);
  const matchStd = options.matchStd ?? saved.stdA !== undefined;
  const stats: [string, Tensor | undefined][] = [
    ['saved.meanA', saved.meanA],
    ['saved.meanB', saved.meanB],
    ...(matchStd ? ([['saved.stdA', saved.stdA], ['saved.stdB', saved.stdB]] as [string, Tensor | undefined][]) : []),
  ];
  for (const [name, t] of stats) {
    if (t === undefined) throw new TypeError(`${op}: ${name} is missing (matchStd needs the forward run with matchStd)`);
    expectTensor(op, name, t);
    expectDType(op, name, t, 'f32');
    expectSameDevice(op, name, t, a.device);
    expectShape(op, name, t, [batch, channels]);
  }
  const dloss = expectNumber(op, 'dloss', options.dloss ?? 1, Number.isFinite, 'finite');
  const handle = native.channelStatLossBackward(
    a.handle,
    saved.meanA.handle,
    saved.meanB.handle,
    matchStd ? saved.stdA!.handle : null,
    matchStd ? saved.stdB!.handle : null,
    batch,
    channels,
    n,
    matchStd,
    dloss,
  );
  return { da: wrap(handle, a.shape, 'f32', a.device) };
}
