// Gradient checking for autograd functions and modules: the backward pass against central
// finite differences of the f32 forward, evaluated in float64 on a random projection of the
// output. With well-scaled inputs (|x| ~ 1), h = 1e-2 keeps the f32 rounding of f (~1e-7 |f|)
// well below the difference quotient, and the truncation error (h^2 f''') near 1e-4; both fit
// a relative-norm tolerance of 1e-2 while a wrong gradient (a missing term, a transposed
// factor, a wrong scale) is off by O(1).
import { expect } from 'vitest';
import * as F from '../../lib/autograd/functions.js';
import { backward } from '../../lib/autograd/backward.js';
import { noGrad, Variable } from '../../lib/autograd/variable.js';
import { tidy } from '../../lib/scope.js';
import { fromArray, type Shape } from '../../lib/tensor.js';
import { randomArray } from '../helpers.js';

export interface GradInput {
  shape: Shape;
  /** Default: uniform in [-1, 1). */
  data?: Float32Array;
  /** Default true. */
  requiresGrad?: boolean;
}

export interface GradcheckOptions {
  h?: number;
  /** Relative-norm tolerance ||analytic - numeric|| / max(||numeric||, floor). */
  tol?: number;
  floor?: number;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 1e-6): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = actual[i]! - expected[i]!;
    num += d * d;
    den += expected[i]! * expected[i]!;
  }
  if (Number.isNaN(num)) return Infinity;
  return Math.sqrt(num) / Math.max(Math.sqrt(den), floor);
}

/** Checks d(sum(f(inputs) * w))/d(input) for every input that requires a gradient. */
export function gradcheck(
  label: string,
  f: (inputs: Variable[]) => Variable,
  specs: readonly GradInput[],
  random: () => number,
  options: GradcheckOptions = {},
): void {
  const h = options.h ?? 1e-2;
  const tol = options.tol ?? 1e-2;
  const data = specs.map((s) => s.data ?? randomArray(s.shape.reduce((n, d) => n * d, 1), random));

  const analytic = tidy(() => {
    const leaves = specs.map((s, i) => new Variable(fromArray(data[i]!, s.shape), { requiresGrad: s.requiresGrad ?? true }));
    const y = f(leaves);
    const weights = randomArray(y.size, random);
    const loss = F.sum(F.mul(y, fromArray(weights, y.shape)));
    backward(loss);
    const grads = leaves.map((l) => (l.grad ? Float64Array.from(l.grad.toArray()) : null));
    for (const l of leaves) l.dispose();
    return { grads, weights };
  });

  const evaluate = (): number =>
    tidy(() =>
      noGrad(() => {
        const leaves = specs.map((s, i) => new Variable(fromArray(data[i]!, s.shape)));
        const value = dot(f(leaves).value.toArray(), analytic.weights);
        for (const l of leaves) l.dispose();
        return value;
      }),
    );

  specs.forEach((s, i) => {
    if (s.requiresGrad === false) {
      expect(analytic.grads[i], `${label}: input ${i} needs no gradient`).toBeNull();
      return;
    }
    const x = data[i]!;
    const numeric = new Float64Array(x.length);
    for (let j = 0; j < x.length; j++) {
      const saved = x[j]!;
      x[j] = saved + h;
      const plus = evaluate();
      x[j] = saved - h;
      const minus = evaluate();
      x[j] = saved;
      numeric[j] = (plus - minus) / (2 * h);
    }
    const got = analytic.grads[i];
    expect(got, `${label}: input ${i} has a gradient`).not.toBeNull();
    const err = relativeError(got!, numeric, options.floor ?? 1e-6);
    expect(err, `${label}: input ${i} relative gradient error (analytic ${Array.from(got!.slice(0, 4)).map((v) => v.toFixed(5))} vs numeric ${Array.from(numeric.slice(0, 4)).map((v) => v.toFixed(5))})`).toBeLessThan(tol);
  });
}
