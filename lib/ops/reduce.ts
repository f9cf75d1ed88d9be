// Reductions (sum, mean) over any axes, and expand: the broadcast that is their backward.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { shapeString, wrap, wrapReshaped, type Shape, type Tensor } from '../tensor.js';
import { normalizeAxis } from './elementwise.js';
import { expectDType, expectNumber, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    reduce(x: NativeHandle, axisBegin: number, axisEnd: number, mean: boolean): NativeHandle;
    broadcast(x: NativeHandle, shape: readonly number[], axisBegin: number, axisEnd: number, alpha: number): NativeHandle;
  }
}

export interface ReduceOptions {
  /** Keep reduced axes as size-1 dimensions (default false). */
  keepDims?: boolean;
}

/** Sorted, distinct, non-negative axes; all axes when `axes` is undefined. */
function normalizeAxes(op: string, axes: number | readonly number[] | undefined, ndim: number): number[] {
  if (axes === undefined) return Array.from({ length: ndim }, (_, i) => i);
  const list = typeof axes === 'number' ? [axes] : axes;
  if (!Array.isArray(list)) throw new TypeError(`${op}: axes must be a number or an array of numbers, got ${typeof axes}`);
  const normalized = list.map((a: number) => normalizeAxis(op, 'axis', a, ndim));
  const sorted = [...new Set(normalized)].sort((a, b) => a - b);
  if (sorted.length !== normalized.length) throw new RangeError(`${op}: axes ${shapeString(list)} name an axis twice`);
  return sorted;
}

/** Runs of adjacent axes, as [begin, end) pairs. */
function axisRuns(axes: readonly number[]): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (const a of axes) {
    const last = runs[runs.length - 1];
    if (last && last[1] === a) last[1] = a + 1;
    else runs.push([a, a + 1]);
  }
  return runs;
}

function reduceOver(op: string, x: Tensor<'f32'>, axes: number | readonly number[] | undefined, options: ReduceOptions, mean: boolean): Tensor<'f32'> {
  expectTensor(op, 'x', x);
  expectDType(op, 'x', x, 'f32');
  const list = normalizeAxes(op, axes, x.ndim);
  const runs = axisRuns(list);
  // Later runs first, so the axes of earlier runs keep their positions. A mean of means over
  // disjoint axes is the mean over their union.
  let shape = [...x.shape];
  let handle: NativeHandle | undefined;
  if (runs.length === 0) handle = native.reduce(x.handle, 0, 0, mean);
  for (let r = runs.length - 1; r >= 0; r--) {
    const [begin, end] = runs[r]!;
    const next = native.reduce(handle ?? x.handle, begin, end, mean);
    if (handle) native.dispose(handle);
    handle = next;
    shape = [...shape.slice(0, begin), ...shape.slice(end)];
  }
  const finalShape = options.keepDims ? x.shape.map((d, i) => (list.includes(i) ? 1 : d)) : shape;
  return finalShape.length !== shape.length ? wrapReshaped(handle!, finalShape, 'f32', x.device) : wrap(handle!, finalShape, 'f32', x.device);
}

/** Sum over `axes` (a number or a list, negative allowed; all axes by default). */
export function sum(x: Tensor<'f32'>, axes?: number | readonly number[], options: ReduceOptions = {}): Tensor<'f32'> {
  return reduceOver('sum', x, axes, options, false);
}

/** Mean over `axes` (a number or a list, negative allowed; all axes by default). */
export function mean(x: Tensor<'f32'>, axes?: number | readonly number[], options: ReduceOptions = {}): Tensor<'f32'> {
  return reduceOver('mean', x, axes, options, true);
}

export interface ExpandOptions {
  /** Multiplies the result (e.g. 1/n for the backward of a mean); default 1. */
  scale?: number;
}

/**
 * x repeated to `shape`: each of x's dims (right-aligned, missing ones count as 1) is 1 or
 * equal to shape's. A materialised copy; the backward of sum over the expanded axes.
 */
export function expand(x: Tensor<'f32'>, shape: Shape, options: ExpandOptions = {}): Tensor<'f32'> {
  expectTensor('expand', 'x', x);
  expectDType('expand', 'x', x, 'f32');
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new RangeError(`expand: shape must be an array of integers >= 0, got ${Array.isArray(shape) ? shapeString(shape) : typeof shape}`);
  }
  const alpha = expectNumber('expand', 'scale', options.scale ?? 1);
  if (x.ndim > shape.length) throw new RangeError(`expand: x has ${x.ndim} dims, more than the ${shape.length} of shape ${shapeString(shape)}`);
  const current = [...Array<number>(shape.length - x.ndim).fill(1), ...x.shape];
  for (let d = 0; d < shape.length; d++) {
    if (current[d] !== 1 && current[d] !== shape[d]) {
      throw new RangeError(`expand: x ${shapeString(x.shape)} cannot be expanded to ${shapeString(shape)}: dim ${d} is ${current[d]}, expected 1 or ${shape[d]}`);
    }
  }
  const runs = axisRuns(current.flatMap((c, d) => (c === 1 && shape[d] !== 1 ? [d] : [])));
  if (runs.length === 0) {
    const copy = native.broadcast(x.handle, shape, 0, 0, alpha);
    return wrap(copy, shape, 'f32', x.device);
  }
  let handle: NativeHandle | undefined;
  runs.forEach(([begin, end], r) => {
    for (let d = begin; d < end; d++) current[d] = shape[d]!;
    const next = native.broadcast(handle ?? x.handle, current, begin, end, r === 0 ? alpha : 1);
    if (handle) native.dispose(handle);
    handle = next;
  });
  return wrap(handle!, shape, 'f32', x.device);
}
