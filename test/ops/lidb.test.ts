import { describe, expect, it } from 'vitest';
import { lidbAux, lidbDefaults, lidbFactors, lidbFactorsBackward, lidbInit } from '../../lib/ops/lidb.js';
import { fromArray } from '../../lib/tensor.js';
import { checkMemoryGuards, expectClose, expectIdentical, numericGradient, randomArray, rng, toF64 } from '../helpers.js';

checkMemoryGuards();

/** a [r, k] times b [k, c] in float64. */
function product(a: ArrayLike<number>, b: ArrayLike<number>, r: number, k: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++)
    for (let j = 0; j < c; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += a[i * k + t]! * b[t * c + j]!;
      out[i * c + j] = s;
    }
  return out;
}

/** The Gram matrix of the vectors along the shorter side: should be the identity. */
function gram(x: Float32Array, rows: number, cols: number): Float64Array {
  const count = Math.min(rows, cols);
  const at = (v: number, i: number) => (rows <= cols ? x[v * cols + i]! : x[i * cols + v]!);
  const out = new Float64Array(count * count);
  for (let u = 0; u < count; u++)
    for (let v = 0; v < count; v++) {
      let s = 0;
      for (let i = 0; i < Math.max(rows, cols); i++) s += at(u, i) * at(v, i);
      out[u * count + v] = s;
    }
  return out;
}

const identity = (n: number) => Float64Array.from({ length: n * n }, (_, i) => (Math.floor(i / n) === i % n ? 1 : 0));

describe('lidb', () => {
  it('makes bases with orthogonal vectors of constant magnitude, on either side', () => {
    for (const [rows, cols] of [
      [64, 10],
      [7, 33],
      [5, 5],
    ] as const) {
      const x = lidbAux(42, rows, cols).toArray();
      const n = Math.min(rows, cols);
      expectClose(gram(x, rows, cols), identity(n), { rtol: 0, atol: 1e-5 }, `gram [${rows}, ${cols}]`);
    }
  });

  it('regenerates the bases exactly from the seed', () => {
    expectIdentical(lidbAux(7, 40, 12).toArray(), lidbAux(7, 40, 12).toArray(), 'same seed');
    const other = lidbAux(8, 40, 12).toArray();
    const first = lidbAux(7, 40, 12).toArray();
    expect(other.some((v, i) => v !== first[i])).toBe(true);
    const a = lidbInit(3, 20, 30, { a: 6, b: 4 });
    const b = lidbInit(3, 20, 30, { a: 6, b: 4 });
    for (const key of ['aAux', 'aTrain', 'bTrain', 'bAux'] as const) expectIdentical(a[key].toArray(), b[key].toArray(), key);
  });

  it('uses the paper defaults a = 100, b = 50, A_train Xavier-normal and B_train zero', () => {
    expect(lidbDefaults).toEqual({ a: 100, b: 50 });
    const w = lidbInit(1, 320, 768);
    expect(w.aAux.shape).toEqual([320, 100]);
    expect(w.aTrain.shape).toEqual([100, 1]);
    expect(w.bTrain.shape).toEqual([1, 50]);
    expect(w.bAux.shape).toEqual([50, 768]);
    expect(w.bTrain.toArray().every((v) => v === 0)).toBe(true);
    const aTrain = w.aTrain.toArray();
    const variance = aTrain.reduce((s, v) => s + v * v, 0) / aTrain.length;
    expect(variance).toBeGreaterThan((2 / 101) * 0.5);
    expect(variance).toBeLessThan((2 / 101) * 1.6);
    // B_train = 0: the layer starts as no update.
    expect(lidbFactors(w).up.toArray().every((v) => v === 0)).toBe(true);
  });

  it('computes down = A_aux A_train and up = B_train B_aux', () => {
    const random = rng();
    const [n, a, b, m] = [23, 6, 4, 17];
    const w = lidbInit(5, n, m, { a, b });
    w.bTrain = fromArray(randomArray(b, random), [1, b]);
    const { down, up } = lidbFactors(w);
    expectClose(down.toArray(), product(w.aAux.toArray(), w.aTrain.toArray(), n, a, 1), { rtol: 1e-5, atol: 1e-6 }, 'down');
    expectClose(up.toArray(), product(w.bTrain.toArray(), w.bAux.toArray(), 1, b, m), { rtol: 1e-5, atol: 1e-6 }, 'up');
  });

  it('sends gradients to A_train and B_train only, matching finite differences through down and up', () => {
    const random = rng();
    const [n, a, b, m] = [19, 5, 3, 11];
    const w = lidbInit(9, n, m, { a, b });
    const aAux = toF64(w.aAux.toArray());
    const bAux = toF64(w.bAux.toArray());
    const aTrain = toF64(randomArray(a, random));
    const bTrain = toF64(randomArray(b, random));
    const dDown = randomArray(n, random);
    const dUp = randomArray(m, random);
    // L = <down, dDown> + <up, dUp>, down and up from the float64 factors.
    const outputs = () => [...product(aAux, aTrain, n, a, 1), ...product(bTrain, bAux, 1, b, m)];
    const weightsOut = [...dDown, ...dUp];
    const wantA = numericGradient(outputs, aTrain, weightsOut);
    const wantB = numericGradient(outputs, bTrain, weightsOut);
    const grads = lidbFactorsBackward(w, { dDown: fromArray(dDown, [n, 1]), dUp: fromArray(dUp, [1, m]) });
    expect(Object.keys(grads).sort()).toEqual(['dATrain', 'dBTrain']);
    expect(grads.dATrain.shape).toEqual([a, 1]);
    expect(grads.dBTrain.shape).toEqual([1, b]);
    expectClose(grads.dATrain.toArray(), wantA, { rtol: 1e-4, atol: 1e-6 }, 'dATrain');
    expectClose(grads.dBTrain.toArray(), wantB, { rtol: 1e-4, atol: 1e-6 }, 'dBTrain');
  });

  it('names the argument in errors', () => {
    expect(() => lidbAux(1.5, 4, 4)).toThrow(/lidbAux: seed must be an integer/);
    expect(() => lidbAux(1, 0, 4)).toThrow(/lidbAux: rows must be an integer >= 1/);
    const w = lidbInit(2, 8, 9, { a: 3, b: 2 });
    expect(() => lidbFactors({ ...w, aTrain: fromArray([1, 2], [2, 1]) })).toThrow(/lidbFactors: aTrain has shape \[2, 1\], expected \[3, 1\]/);
    expect(() => lidbFactorsBackward(w, { dDown: fromArray(new Float32Array(9), [9, 1]), dUp: fromArray(new Float32Array(9), [1, 9]) })).toThrow(
      /lidbFactorsBackward: dDown has shape \[9, 1\], expected \[8, 1\]/,
    );
  });
});
