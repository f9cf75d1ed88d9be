// Differentiable functions: each runs the forward op and records a closure computing the
// gradients of its inputs from the gradient of its output. Inputs may be Variables or plain
// Tensors (constants).
import * as act from '../ops/activation.js';
import * as attn from '../ops/attention.js';
import * as clampOp from '../ops/clamp.js';
import * as ew from '../ops/elementwise.js';
import * as emb from '../ops/embedding.js';
import * as ln from '../ops/layernorm.js';
import * as mm from '../ops/matmul.js';
import * as perm from '../ops/permute.js';
import * as rnd from '../ops/random.js';
import * as red from '../ops/reduce.js';
import * as sm from '../ops/softmax.js';
import { shapeString, zeros, type Shape, type Tensor } from '../tensor.js';
import { asVariable, record, type Input, type Variable } from './variable.js';

function normaliseAxis(op: string, axis: number, ndim: number): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) throw new RangeError(`${op}: axis ${axis} is out of range for ${ndim} dims`);
  return a;
}

function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** `t` with another shape; `t`'s handle is given up (disposed when a view replaces it). */
function reshapeOwned(t: Tensor<'f32'>, shape: Shape): Tensor<'f32'> {
  if (sameShape(t.shape, shape)) return t;
  const view = t.reshape(shape);
  t.dispose();
  return view;
}

// ---------------------------------------------------------------------------------------------
// Elementwise

export function add(a: Input, b: Input): Variable {
  const va = asVariable(a, 'add', 'a');
  const vb = asVariable(b, 'add', 'b');
  return record('add', ew.add(va.value, vb.value), [va, vb], (g) => [g, g]);
}

export function sub(a: Input, b: Input): Variable {
  const va = asVariable(a, 'sub', 'a');
  const vb = asVariable(b, 'sub', 'b');
  return record('sub', ew.sub(va.value, vb.value), [va, vb], (g, needs) => [g, needs[1] ? ew.scale(g, -1) : null]);
}

export function mul(a: Input, b: Input): Variable {
  const va = asVariable(a, 'mul', 'a');
  const vb = asVariable(b, 'mul', 'b');
  return record('mul', ew.mul(va.value, vb.value), [va, vb], (g, needs) => [
    needs[0] ? ew.mul(g, vb.value) : null,
    needs[1] ? ew.mul(g, va.value) : null,
  ]);
}

export function scale(x: Input, alpha: number): Variable {
  const vx = asVariable(x, 'scale', 'x');
  return record('scale', ew.scale(vx.value, alpha), [vx], (g) => [ew.scale(g, alpha)]);
}

/** x + bias broadcast along `axis` (default the last): bias has x.shape[axis] elements. */
export function biasAdd(x: Input, bias: Input, options: { axis?: number } = {}): Variable {
  const vx = asVariable(x, 'biasAdd', 'x');
  const vb = asVariable(bias, 'biasAdd', 'bias');
  const axis = normaliseAxis('biasAdd', options.axis ?? -1, vx.ndim);
  const others = vx.shape.map((_, i) => i).filter((i) => i !== axis);
  return record('biasAdd', ew.biasAdd(vx.value, vb.value, { axis }), [vx, vb], (g, needs) => [
    g,
    needs[1] ? (others.length === 0 ? g.reshape(vb.shape) : reshapeOwned(red.sum(g, others), vb.shape)) : null,
  ]);
}

// ---------------------------------------------------------------------------------------------
// Reductions and broadcasting

function reducedShape(shape: Shape, axes: readonly number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

function resolveAxes(op: string, axes: number | readonly number[] | undefined, ndim: number): number[] {
  if (axes === undefined) return [...Array(ndim).keys()];
  const list = typeof axes === 'number' ? [axes] : [...axes];
  return [...new Set(list.map((a) => normaliseAxis(op, a, ndim)))].sort((p, q) => p - q);
}

export interface ReduceOptions {
  keepDims?: boolean;
}

/** Sum over `axes` (default all). */
export function sum(x: Input, axes?: number | readonly number[], options: ReduceOptions = {}): Variable {
  const vx = asVariable(x, 'sum', 'x');
  const resolved = resolveAxes('sum', axes, vx.ndim);
  const keep = reducedShape(vx.shape, resolved);
  const y = red.sum(vx.value, resolved, { keepDims: options.keepDims ?? false });
  return record('sum', y, [vx], (g) => [broadcastTo(g, keep, vx.shape, 1)]);
}

/** Mean over `axes` (default all). */
export function mean(x: Input, axes?: number | readonly number[], options: ReduceOptions = {}): Variable {
  const vx = asVariable(x, 'mean', 'x');
  const resolved = resolveAxes('mean', axes, vx.ndim);
  const keep = reducedShape(vx.shape, resolved);
  const count = resolved.reduce((n, a) => n * vx.shape[a]!, 1);
  const y = red.mean(vx.value, resolved, { keepDims: options.keepDims ?? false });
  return record('mean', y, [vx], (g) => [broadcastTo(g, keep, vx.shape, 1 / count)]);
}

function broadcastTo(g: Tensor<'f32'>, keepShape: Shape, shape: Shape, alpha: number): Tensor<'f32'> {
  const view = g.reshape(keepShape);
  const out = red.expand(view, shape, { scale: alpha });
  view.dispose();
  return out;
}

/** Broadcasts size-1 axes of x to `shape` (same rank). */
export function expand(x: Input, shape: Shape): Variable {
  const vx = asVariable(x, 'expand', 'x');
  if (vx.ndim !== shape.length) throw new RangeError(`expand: x has ${vx.ndim} dims, expected ${shape.length} like ${shapeString(shape)}`);
  const axes = vx.shape.flatMap((d, i) => (d === 1 && shape[i] !== 1 ? [i] : []));
  return record('expand', red.expand(vx.value, shape), [vx], (g) => [
    axes.length === 0 ? g.reshape(vx.shape) : red.sum(g, axes, { keepDims: true }),
  ]);
}

// ---------------------------------------------------------------------------------------------
// Shapes

export function reshape(x: Input, shape: Shape): Variable {
  const vx = asVariable(x, 'reshape', 'x');
  return record('reshape', vx.value.reshape(shape), [vx], (g) => [g.reshape(vx.shape)]);
}

export function permute(x: Input, order: readonly number[]): Variable {
  const vx = asVariable(x, 'permute', 'x');
  const inverse = new Array<number>(order.length);
  order.forEach((p, i) => {
    inverse[p] = i;
  });
  return record('permute', perm.permute(vx.value, order), [vx], (g) => [perm.permute(g, inverse)]);
}

export function transpose(x: Input, dim0: number, dim1: number): Variable {
  const vx = asVariable(x, 'transpose', 'x');
  return record('transpose', perm.transpose(vx.value, dim0, dim1), [vx], (g) => [perm.transpose(g, dim0, dim1)]);
}

/** The order that brings `axis` to the front (its own inverse composed with moveAxisBack). */
function axisFirst(ndim: number, axis: number): number[] {
  return [axis, ...[...Array(ndim).keys()].filter((i) => i !== axis)];
}

function axisBack(ndim: number, axis: number): number[] {
  const order = axisFirst(ndim, axis);
  const inverse = new Array<number>(ndim);
  order.forEach((p, i) => {
    inverse[p] = i;
  });
  return inverse;
}

/** Concatenates along `axis` by copying into leading-axis slices of the (permuted) output. */
function concatTensors(parts: readonly Tensor<'f32'>[], axis: number): Tensor<'f32'> {
  const first = parts[0]!;
  const ndim = first.ndim;
  const moved = axis === 0 ? [...parts] : parts.map((p) => perm.permute(p, axisFirst(ndim, axis)));
  const total = moved.reduce((n, p) => n + p.shape[0]!, 0);
  const joined = zeros([total, ...moved[0]!.shape.slice(1)], { device: first.device });
  let offset = 0;
  for (const p of moved) {
    const slot = joined.slice(offset, offset + p.shape[0]!);
    slot.copy_(p);
    slot.dispose();
    offset += p.shape[0]!;
  }
  if (axis === 0) return joined;
  for (const p of moved) p.dispose();
  const out = perm.permute(joined, axisBack(ndim, axis));
  joined.dispose();
  return out;
}

/** Pieces [start, start + size) of `axis`, each a new tensor. */
function sliceAlong(x: Tensor<'f32'>, axis: number, start: number, size: number): Tensor<'f32'> {
  if (axis === 0) {
    const view = x.slice(start, start + size);
    const copy = view.clone();
    view.dispose();
    return copy;
  }
  const moved = perm.permute(x, axisFirst(x.ndim, axis));
  const view = moved.slice(start, start + size);
  const out = perm.permute(view, axisBack(x.ndim, axis));
  view.dispose();
  moved.dispose();
  return out;
}

/** Joins tensors along `axis` (all other axes equal). */
export function concat(inputs: readonly Input[], axis: number): Variable {
  if (inputs.length === 0) throw new RangeError('concat: needs at least one input');
  const vs = inputs.map((x, i) => asVariable(x, 'concat', `inputs[${i}]`));
  const first = vs[0]!;
  const a = normaliseAxis('concat', axis, first.ndim);
  vs.forEach((v, i) => {
    if (v.ndim !== first.ndim || v.shape.some((d, j) => j !== a && d !== first.shape[j])) {
      throw new RangeError(`concat: input ${i} has shape ${shapeString(v.shape)}, expected ${shapeString(first.shape)} except on axis ${a}`);
    }
    if (v.device !== first.device) throw new TypeError(`concat: input ${i} is on ${v.device}, expected ${first.device} like input 0`);
  });
  const starts: number[] = [];
  let offset = 0;
  for (const v of vs) {
    starts.push(offset);
    offset += v.shape[a]!;
  }
  const y = concatTensors(
    vs.map((v) => v.value),
    a,
  );
  return record('concat', y, vs, (g, needs) => vs.map((v, i) => (needs[i] ? sliceAlong(g, a, starts[i]!, v.shape[a]!) : null)));
}

/** Splits x along `axis` into pieces of the given sizes (they must add up to the axis). */
export function split(x: Input, sizes: readonly number[], axis: number): Variable[] {
  const vx = asVariable(x, 'split', 'x');
  const a = normaliseAxis('split', axis, vx.ndim);
  const total = sizes.reduce((n, s) => n + s, 0);
  if (total !== vx.shape[a] || sizes.some((s) => !Number.isInteger(s) || s < 1)) {
    throw new RangeError(`split: sizes [${sizes.join(', ')}] must be positive and add up to ${vx.shape[a]} (axis ${a} of ${shapeString(vx.shape)})`);
  }
  const starts = sizes.map((_, i) => sizes.slice(0, i).reduce((m, q) => m + q, 0));
  return sizes.map((n, index) =>
    record('split', sliceAlong(vx.value, a, starts[index]!, n), [vx], (g) => {
      // The gradient is zero outside this piece's range.
      const pieces = sizes.map((s, i) => (i === index ? g : zeros(vx.shape.map((d, j) => (j === a ? s : d)), { device: vx.device })));
      const whole = concatTensors(pieces, a);
      for (const p of pieces) if (p !== g) p.dispose();
      return [whole];
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Products

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/** op(a) op(b): 2-D, or batched 3-D where a 2-D operand is shared by the batch. */
export function matmul(a: Input, b: Input, options: MatmulOptions = {}): Variable {
  const va = asVariable(a, 'matmul', 'a');
  const vb = asVariable(b, 'matmul', 'b');
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  const y = mm.matmul(va.value, vb.value, { transA, transB });
  return record('matmul', y, [va, vb], (g, needs) => {
    const A = va.value;
    const B = vb.value;
    let da: Tensor<'f32'> | null = null;
    let db: Tensor<'f32'> | null = null;
    if (needs[0]) {
      da = transA ? mm.matmul(B, g, { transA: transB, transB: true }) : mm.matmul(g, B, { transB: !transB });
      da = unbroadcastBatch(da, A.ndim);
    }
    if (needs[1]) {
      db = transB ? mm.matmul(g, A, { transA: true, transB: transA }) : mm.matmul(A, g, { transA: !transA });
      db = unbroadcastBatch(db, B.ndim);
    }
    return [da, db];
  });
}

/** A 2-D operand was shared across the batch: its gradient is the sum over the batch. */
function unbroadcastBatch(grad: Tensor<'f32'>, ndim: number): Tensor<'f32'> {
  if (grad.ndim === ndim) return grad;
  const summed = red.sum(grad, [0]);
  grad.dispose();
  return summed;
}

// ---------------------------------------------------------------------------------------------
// Neural-network functions

/** Softmax over the last axis. */
export function softmax(x: Input): Variable {
  const vx = asVariable(x, 'softmax', 'x');
  const y = sm.softmax(vx.value);
  return record('softmax', y, [vx], (g) => [sm.softmaxBackward(y, g)]);
}

export function gelu(x: Input): Variable {
  const vx = asVariable(x, 'gelu', 'x');
  return record('gelu', act.gelu(vx.value), [vx], (g) => [act.geluBackward(vx.value, g)]);
}

export function silu(x: Input): Variable {
  const vx = asVariable(x, 'silu', 'x');
  return record('silu', act.silu(vx.value), [vx], (g) => [act.siluBackward(vx.value, g)]);
}

export interface LayerNormOptions {
  gamma?: Input;
  beta?: Input;
  /** adaLN: y * (1 + scale) + shift, [rows / group, cols] (one row per sample). */
  scale?: Input;
  shift?: Input;
  eps?: number;
}

/** Layer norm over the last axis, with optional affine and adaLN modulation. */
export function layerNorm(x: Input, options: LayerNormOptions = {}): Variable {
  const vx = asVariable(x, 'layerNorm', 'x');
  const opt = (t: Input | undefined, name: string): Variable | undefined => (t === undefined ? undefined : asVariable(t, 'layerNorm', name));
  const gamma = opt(options.gamma, 'gamma');
  const beta = opt(options.beta, 'beta');
  const scaleV = opt(options.scale, 'scale');
  const shift = opt(options.shift, 'shift');
  const { y, mean: mu, rstd } = ln.layerNorm(vx.value, {
    gamma: gamma?.value,
    beta: beta?.value,
    scale: scaleV?.value,
    shift: shift?.value,
    eps: options.eps,
  });
  const parents = [vx, gamma, beta, scaleV, shift];
  const present = parents.filter((p): p is Variable => p !== undefined);
  return record(
    'layerNorm',
    y,
    present,
    (g, needs) => {
      const need = (v: Variable | undefined): boolean => v !== undefined && needs[present.indexOf(v)] === true;
      const grads = ln.layerNormBackward(vx.value, g, {
        gamma: gamma?.value,
        beta: beta?.value,
        scale: scaleV?.value,
        shift: shift?.value,
        mean: mu,
        rstd,
        needGamma: need(gamma),
        needBeta: need(beta),
        needScale: need(scaleV),
        needShift: need(shift),
      });
      return present.map((p) => {
        if (p === vx) return grads.dx;
        if (p === gamma) return grads.dgamma;
        if (p === beta) return grads.dbeta;
        if (p === scaleV) return grads.dscale;
        return grads.dshift;
      });
    },
    [mu, rstd],
  );
}

/** Rows of `table` picked by i32 `ids` (any shape): output [...ids.shape, dim]. */
export function embedding(table: Input, ids: Tensor<'i32'>): Variable {
  const vt = asVariable(table, 'embedding', 'table');
  const vocab = vt.shape[0]!;
  // A handle of our own, so the backward still works if the caller disposes theirs.
  const savedIds = ids.reshape(ids.shape);
  return record('embedding', emb.embedding(vt.value, savedIds), [vt], (g) => [emb.embeddingBackward(savedIds, g, vocab)], [savedIds]);
}

export interface AttentionOptions {
  scale?: number;
  causal?: boolean;
  kvLengths?: Tensor<'i32'>;
}

/** softmax(scale q k^T + mask) v; q [B, H, Lq, D], k and v [B, H, Lk, D]. */
export function attention(q: Input, k: Input, v: Input, options: AttentionOptions = {}): Variable {
  const vq = asVariable(q, 'attention', 'q');
  const vk = asVariable(k, 'attention', 'k');
  const vv = asVariable(v, 'attention', 'v');
  const { out, lse } = attn.attentionForward(vq.value, vk.value, vv.value, options);
  return record(
    'attention',
    out,
    [vq, vk, vv],
    (g) => {
      const { dq, dk, dv } = attn.attentionBackward(vq.value, vk.value, vv.value, out, g, lse, options);
      return [dq, dk, dv];
    },
    [lse],
  );
}

export interface DropoutOptions {
  /** Where the mask comes from: a fixed seed, or a generator (advanced); default the global one. */
  seed?: number;
  generator?: rnd.Generator;
  /** When false, dropout is the identity. */
  training?: boolean;
}

/** Zeroes each element with probability p and scales the rest by 1 / (1 - p). */
export function dropout(x: Input, p: number, options: DropoutOptions = {}): Variable {
  const vx = asVariable(x, 'dropout', 'x');
  if (!(p >= 0 && p < 1)) throw new RangeError(`dropout: p must be in [0, 1), got ${p}`);
  if (options.training === false || p === 0) return record('dropout', vx.value.reshape(vx.shape), [vx], (g) => [g.reshape(vx.shape)]);
  // u - p with u uniform in [0, 1): kept where >= 0. Scaling by a huge factor and clamping to
  // [0, 1] turns it into an exact 0/1 mask on the device (uniform draws are multiples of 2^-24).
  const shifted = rnd.rand(vx.shape, { low: -p, high: 1 - p, device: vx.device, ...(options.seed === undefined ? {} : { seed: options.seed }), ...(options.generator === undefined ? {} : { generator: options.generator }) });
  const mask = clampOp.clamp(ew.scale(shifted, 1e30, { out: shifted }), 0, 1, { out: shifted });
  ew.scale(mask, 1 / (1 - p), { out: mask });
  return record('dropout', ew.mul(vx.value, mask), [vx], (g) => [ew.mul(g, mask)], [mask]);
}

export type MseReduction = 'mean' | 'perSample';

/**
 * Mean squared error: 'mean' over every element (a scalar), or 'perSample' the mean over all
 * non-batch axes ([batch]).
 */
export function mse(prediction: Input, target: Input, options: { reduction?: MseReduction } = {}): Variable {
  const vp = asVariable(prediction, 'mse', 'prediction');
  const vt = asVariable(target, 'mse', 'target');
  if (!sameShape(vp.shape, vt.shape)) {
    throw new RangeError(`mse: prediction has shape ${shapeString(vp.shape)}, target ${shapeString(vt.shape)}; expected equal shapes`);
  }
  const diff = sub(vp, vt);
  const squared = mul(diff, diff);
  if ((options.reduction ?? 'mean') === 'mean') return mean(squared);
  return mean(squared, [...Array(vp.ndim).keys()].slice(1));
}
