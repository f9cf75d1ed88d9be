// Fused attention, flash-attention style: softmax(scale * q k^T + mask) v without ever storing
// the [Lq, Lk] score matrix. The forward also returns the row log-sum-exp, which is what the
// backward needs to recompute the probabilities tile by tile.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { wrap, type Tensor } from '../tensor.js';
import { expectDType, expectNumber, expectRank, expectSameDevice, expectShape, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    attention(
      q: NativeHandle,
      k: NativeHandle,
      v: NativeHandle,
      kvLengths: NativeHandle | null,
      scale: number,
      causal: boolean,
    ): [out: NativeHandle, lse: NativeHandle];
    attentionBackward(
      q: NativeHandle,
      k: NativeHandle,
      v: NativeHandle,
      out: NativeHandle,
      dout: NativeHandle,
      lse: NativeHandle,
      kvLengths: NativeHandle | null,
      scale: number,
      causal: boolean,
    ): [dq: NativeHandle, dk: NativeHandle, dv: NativeHandle];
  }
}

export type AttentionDType = 'f32' | 'bf16';

/** The largest head dimension the kernels take. */
export const maxAttentionHeadDim = 256;

export interface AttentionOptions {
  /** Multiplies q k^T before the softmax; default 1 / sqrt(head dim). */
  scale?: number;
  /** Query i sees keys j <= i + (Lk - Lq) (the diagonal aligned to the last key). */
  causal?: boolean;
  /** i32 [batch]: batch entry b sees keys j < kvLengths[b] (0..Lk; 0 gives zero output). */
  kvLengths?: Tensor<'i32'>;
}

export interface AttentionForward<D extends AttentionDType> {
  /** [batch, heads, Lq, dim], dtype of q. */
  out: Tensor<D>;
  /** f32 [batch, heads, Lq]: log-sum-exp of the scaled, masked scores; -inf for rows that see no key. */
  lse: Tensor<'f32'>;
}

export interface AttentionGradients<D extends AttentionDType> {
  dq: Tensor<D>;
  dk: Tensor<D>;
  dv: Tensor<D>;
}

const qkvDims = ['batch', 'heads', 'seq', 'dim'] as const;

interface Resolved {
  scale: number;
  causal: boolean;
  kvLengths: NativeHandle | null;
}

function checkInputs(op: string, q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Resolved {
  expectTensor(op, 'q', q);
  expectTensor(op, 'k', k);
  expectTensor(op, 'v', v);
  expectRank(op, 'q', q, qkvDims);
  expectRank(op, 'k', k, qkvDims);
  expectRank(op, 'v', v, qkvDims);
  expectDType(op, 'q', q, 'f32', 'bf16');
  for (const [name, t] of [['k', k], ['v', v]] as const) {
    expectSameDevice(op, name, t, q.device);
    if (t.dtype !== q.dtype) throw new TypeError(`${op}: ${name} has dtype ${t.dtype}, expected ${q.dtype} like q`);
  }
  const [batch, heads, , dim] = q.shape as [number, number, number, number];
  const lk = k.shape[2]!;
  const axes = [
    [0, 'batch', batch],
    [1, 'heads', heads],
    [3, 'dim', dim],
  ] as const;
  for (const [axis, axisName, size] of axes) {
    if (k.shape[axis] !== size) throw new RangeError(`${op}: k has ${axisName} ${k.shape[axis]}, expected ${size} like q`);
    if (v.shape[axis] !== size) throw new RangeError(`${op}: v has ${axisName} ${v.shape[axis]}, expected ${size} like q`);
  }
  if (v.shape[2] !== lk) throw new RangeError(`${op}: v has seq ${v.shape[2]}, expected ${lk} like k`);
  if (dim < 1 || dim > maxAttentionHeadDim) {
    throw new RangeError(`${op}: q has head dim ${dim}, expected 1..${maxAttentionHeadDim}`);
  }

  const scale = options.scale ?? 1 / Math.sqrt(dim);
  expectNumber(op, 'scale', scale, Number.isFinite, 'finite');
  const causal = options.causal ?? false;
  if (typeof causal !== 'boolean') throw new TypeError(`${op}: causal must be a boolean, got ${typeof causal}`);

  const lengths = options.kvLengths;
  if (lengths === undefined) return { scale, causal, kvLengths: null };
  expectTensor(op, 'kvLengths', lengths);
  expectDType(op, 'kvLengths', lengths, 'i32');
  expectShape(op, 'kvLengths', lengths, [batch]);
  expectSameDevice(op, 'kvLengths', lengths, q.device);
  const values = lengths.toArray();
  values.forEach((n, b) => {
    if (n < 0 || n > lk) throw new RangeError(`${op}: kvLengths[${b}] is ${n}, expected 0..${lk} (the key count)`);
  });
  return { scale, causal, kvLengths: lengths.handle };
}

/** Attention's output and row log-sum-exp (what attentionBackward needs). */
export function attentionForward<D extends AttentionDType>(
  q: Tensor<D>,
  k: Tensor<D>,
  v: Tensor<D>,
  options: AttentionOptions = {},
): AttentionForward<D> {
  const { scale, causal, kvLengths } = checkInputs('attention', q, k, v, options);
  const [out, lse] = native.attention(q.handle, k.handle, v.handle, kvLengths, scale, causal);
  return {
    out: wrap(out, q.shape, q.dtype, q.device),
    lse: wrap(lse, q.shape.slice(0, 3), 'f32', q.device),
  };
}

/** softmax(scale * q k^T + mask) v for q [batch, heads, Lq, dim], k and v [batch, heads, Lk, dim]. */
export function attention<D extends AttentionDType>(
  q: Tensor<D>,
  k: Tensor<D>,
  v: Tensor<D>,
  options: AttentionOptions = {},
): Tensor<D> {
  const { out, lse } = attentionForward(q, k, v, options);
  lse.dispose();
  return out;
}

/** Gradients of attention with respect to q, k and v, given dout = dLoss/dout (same options as the forward). */
export function attentionBackward<D extends AttentionDType>(
  q: Tensor<D>,
  k: Tensor<D>,
  v: Tensor<D>,
  out: Tensor<D>,
  dout: Tensor<D>,
  lse: Tensor<'f32'>,
  options: AttentionOptions = {},
): AttentionGradients<D> {
  const op = 'attentionBackward';
  const { scale, causal, kvLengths } = checkInputs(op, q, k, v, options);
  for (const [name, t] of [['out', out], ['dout', dout]] as const) {
    expectTensor(op, name, t);
    expectSameDevice(op, name, t, q.device);
    if (t.dtype !== q.dtype) throw new TypeError(`${op}: ${name} has dtype ${t.dtype}, expected ${q.dtype} like q`);
    expectShape(op, name, t, q.shape);
  }
  expectTensor(op, 'lse', lse);
  expectSameDevice(op, 'lse', lse, q.device);
  expectDType(op, 'lse', lse, 'f32');
  expectShape(op, 'lse', lse, q.shape.slice(0, 3));
  const [dq, dk, dv] = native.attentionBackward(
    q.handle,
    k.handle,
    v.handle,
    out.handle,
    dout.handle,
    lse.handle,
    kvLengths,
    scale,
    causal,
  );
  return {
    dq: wrap(dq, q.shape, q.dtype, q.device),
    dk: wrap(dk, k.shape, k.dtype, k.device),
    dv: wrap(dv, v.shape, v.dtype, v.device),
  };
}
