// Matrix products: 2-D [M, K] x [K, N] and batched 3-D [B, M, K] x [B, K, N], f32 or bf16 inputs,
// f32 output. A 2-D operand broadcasts over the batch of a 3-D one.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { shapeString, wrap, type Tensor } from '../tensor.js';
import { expectDType, expectNumber, expectSameDevice, expectShape, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    matmul(
      a: NativeHandle,
      b: NativeHandle,
      out: NativeHandle | null,
      transA: boolean,
      transB: boolean,
      alpha: number,
      beta: number,
    ): NativeHandle;
  }
}

export interface MatmulOptions {
  /** Use a^T: a is [K, M] (or [B, K, M]). */
  transA?: boolean;
  /** Use b^T: b is [N, K] (or [B, N, K]). */
  transB?: boolean;
  /** Scales the product (default 1). */
  alpha?: number;
  /** Scales what `out` held before (default 0: `out` is only written). Needs `out` when nonzero. */
  beta?: number;
  /** Write (or accumulate, with beta) the result here: f32 [M, N] or [B, M, N]; must not share memory with a or b. */
  out?: Tensor<'f32'>;
}

function operandDims(name: 'a' | 'b', t: Tensor, trans: boolean): { batch: number | undefined; rows: number; cols: number } {
  const axes = name === 'a' ? (trans ? ['K', 'M'] : ['M', 'K']) : trans ? ['N', 'K'] : ['K', 'N'];
  if (t.ndim !== 2 && t.ndim !== 3) {
    throw new RangeError(`matmul: ${name} has ${t.ndim} dims, expected 2 [${axes.join(', ')}] or 3 [batch, ${axes.join(', ')}]`);
  }
  const [rows, cols] = t.shape.slice(-2) as [number, number];
  return { batch: t.ndim === 3 ? t.shape[0] : undefined, rows, cols };
}

/** The shape of matmul(a, b, options): [M, N], or [B, M, N] when either input is 3-D. */
export function matmulShape(a: Tensor, b: Tensor, options: Pick<MatmulOptions, 'transA' | 'transB'> = {}): number[] {
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  const da = operandDims('a', a, transA);
  const db = operandDims('b', b, transB);
  const [m, k] = transA ? [da.cols, da.rows] : [da.rows, da.cols];
  const [kb, n] = transB ? [db.cols, db.rows] : [db.rows, db.cols];
  if (k !== kb) {
    throw new RangeError(
      `matmul: inner dimensions differ: a ${shapeString(a.shape)}${transA ? ' (transA)' : ''} has K ${k}, ` +
        `b ${shapeString(b.shape)}${transB ? ' (transB)' : ''} has K ${kb}`,
    );
  }
  if (da.batch !== undefined && db.batch !== undefined && da.batch !== db.batch) {
    throw new RangeError(`matmul: batch sizes differ: a ${shapeString(a.shape)} has ${da.batch}, b ${shapeString(b.shape)} has ${db.batch}`);
  }
  const batch = da.batch ?? db.batch;
  return batch === undefined ? [m, n] : [batch, m, n];
}

/**
 * alpha * op(a) op(b) + beta * out, with op(x) = x or x^T per transA/transB.
 * [M, K] x [K, N] -> [M, N]; [B, M, K] x [B, K, N] -> [B, M, N]; a 2-D operand is shared by
 * every batch entry of the other.
 */
export function matmul(a: Tensor<'f32' | 'bf16'>, b: Tensor<'f32' | 'bf16'>, options: MatmulOptions = {}): Tensor<'f32'> {
  expectTensor('matmul', 'a', a);
  expectTensor('matmul', 'b', b);
  expectDType('matmul', 'a', a, 'f32', 'bf16');
  expectDType('matmul', 'b', b, 'f32', 'bf16');
  expectSameDevice('matmul', 'b', b, a.device);
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  if (typeof transA !== 'boolean') throw new TypeError(`matmul: transA must be a boolean, got ${typeof transA}`);
  if (typeof transB !== 'boolean') throw new TypeError(`matmul: transB must be a boolean, got ${typeof transB}`);
  const alpha = expectNumber('matmul', 'alpha', options.alpha ?? 1, Number.isFinite, 'finite');
  const beta = expectNumber('matmul', 'beta', options.beta ?? 0, Number.isFinite, 'finite');
  const shape = matmulShape(a, b, { transA, transB });
  const { out } = options;
  if (out !== undefined) {
    expectTensor('matmul', 'out', out);
    expectSameDevice('matmul', 'out', out, a.device);
    expectDType('matmul', 'out', out, 'f32');
    expectShape('matmul', 'out', out, shape);
  } else if (beta !== 0) {
    throw new RangeError(`matmul: beta is ${beta} but no out tensor was given to accumulate into`);
  }
  const handle = native.matmul(a.handle, b.handle, out?.handle ?? null, transA, transB, alpha, beta);
  return out ?? wrap(handle, shape, 'f32', a.device);
}
