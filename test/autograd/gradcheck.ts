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

/**
 * Checks the gradients a module's forward gives its parameters (and the listed inputs): the
 * loss is sum(forward() * w); up to `perTensor` elements of each tensor are perturbed.
 */
export function moduleGradcheck(
  label: string,
  parameters: readonly [string, Variable][],
  forward: () => Variable,
  random: () => number,
  options: GradcheckOptions & { perTensor?: number; zeroGradient?: RegExp } = {},
): void {
  // Module outputs pass through several f32 layers: the difference quotient is noisier than a
  // single op's, so the defaults are looser (a wrong gradient is still off by O(1)).
  const h = options.h ?? 2e-2;
  const tol = options.tol ?? 3e-2;
  const perTensor = options.perTensor ?? Infinity;
  for (const [, p] of parameters) p.zeroGrad();
  const weights = tidy(() => {
    const y = forward();
    const w = randomArray(y.size, random);
    backward(F.sum(F.mul(y, fromArray(w, y.shape))));
    return w;
  });
  const evaluate = (): number => tidy(() => noGrad(() => dot(forward().value.toArray(), weights)));
  for (const [name, p] of parameters) {
    expect(p.grad, `${label}: ${name} has a gradient`).not.toBeNull();
    const analyticAll = p.grad!.toArray();
    if (options.zeroGradient?.test(name)) {
      // Zero in exact arithmetic (e.g. an attention key bias: softmax ignores a shared shift).
      expect(Math.hypot(...analyticAll), `${label}: ${name} gradient is zero`).toBeLessThan(1e-5);
      continue;
    }
    const data = p.value.toArray();
    const picks = [...Array(data.length).keys()];
    while (picks.length > perTensor) picks.splice(Math.floor(random() * picks.length), 1);
    const numeric = new Float64Array(picks.length);
    const analytic = new Float64Array(picks.length);
    picks.forEach((j, k) => {
      const saved = data[j]!;
      data[j] = saved + h;
      p.value.copy_(fromArray(data, p.shape));
      const plus = evaluate();
      data[j] = saved - h;
      p.value.copy_(fromArray(data, p.shape));
      const minus = evaluate();
      data[j] = saved;
      p.value.copy_(fromArray(data, p.shape));
      numeric[k] = (plus - minus) / (2 * h);
      analytic[k] = analyticAll[j]!;
    });
    const err = relativeError(analytic, numeric, options.floor ?? 1e-3);
    expect(err, `${label}: ${name} relative gradient error (analytic ${Array.from(analytic.slice(0, 3)).map((v) => v.toFixed(5))} vs numeric ${Array.from(numeric.slice(0, 3)).map((v) => v.toFixed(5))})`).toBeLessThan(tol);
  }
}
