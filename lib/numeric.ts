// Checks that numbers are finite where NaN or infinity means something went wrong: weights that
// are saved or loaded, and the loss and gradient norm of every training step.
import type { Tensor } from './tensor.js';

/** How many elements of `t` are NaN or infinite (i32 tensors have none). */
export function nonFiniteCount(t: Tensor): number {
  if (t.dtype === 'i32') return 0;
  let count = 0;
  for (const v of t.toArray()) if (!Number.isFinite(v)) count++;
  return count;
}

/**
 * The first tensor of `tensors` holding NaN or infinite values, described for an error
 * ("blocks.0.attn.q.weight holds 3 non-finite values (NaN or infinite) of 64"), or undefined.
 */
export function firstNonFinite(tensors: Record<string, Tensor> | Iterable<[string, Tensor]>): string | undefined {
  const entries = Symbol.iterator in tensors ? tensors : Object.entries(tensors);
  for (const [name, t] of entries as Iterable<[string, Tensor]>) {
    const bad = nonFiniteCount(t);
    if (bad > 0) return `${name} holds ${bad} non-finite value${bad === 1 ? '' : 's'} (NaN or infinite) of ${t.size}`;
  }
  return undefined;
}

/**
 * The error that stops a training run at `step` (1-based) whose loss or gradient norm is not
 * finite, or undefined when both are. The update of that step has not been applied, so the
 * weights are still those of the step before; `kept` says what the run leaves behind.
 */
export function nonFiniteStepError(op: string, step: number, values: { loss: number; gradNorm: number }, kept: string): Error | undefined {
  const bad = !Number.isFinite(values.loss) ? `the loss is ${values.loss}` : !Number.isFinite(values.gradNorm) ? `the gradient norm is ${values.gradNorm} (the loss was ${values.loss})` : undefined;
  if (bad === undefined) return undefined;
  return new Error(`${op}: step ${step}: ${bad}; the run stopped before updating the weights with it (${kept}). A lower learning rate, or gradient clipping, usually prevents this`);
}

/** The arrays one after another in one Float32Array (images of a batch, say). */
export function concatFloat32(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** The dot product of row i of a and row j of b, both row-major with `dim` columns (embeddings, features). */
export function rowDot(a: Float32Array, i: number, b: Float32Array, j: number, dim: number): number {
  let s = 0;
  for (let k = 0; k < dim; k++) s += a[i * dim + k]! * b[j * dim + k]!;
  return s;
}

/** The Euclidean norm of each of `count` rows (1 for a zero row, so that cosines stay finite). */
export function rowNorms(data: Float32Array, count: number, dim: number): number[] {
  return Array.from({ length: count }, (_, i) => Math.sqrt(rowDot(data, i, data, i, dim)) || 1);
}
