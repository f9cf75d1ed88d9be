import { describe, expect, it } from 'vitest';
import * as F from '../../lib/autograd/functions.js';
import { backward, release } from '../../lib/autograd/backward.js';
import { isGradEnabled, noGrad, record, Variable } from '../../lib/autograd/variable.js';
import { scale } from '../../lib/ops/elementwise.js';
import { fromArray, full } from '../../lib/tensor.js';
import { checkMemoryGuards, expectClose, rng } from '../helpers.js';
import { gradcheck } from './gradcheck.js';

checkMemoryGuards();

function leaf(data: number[], shape = [data.length]): Variable {
  return new Variable(fromArray(data, shape), { requiresGrad: true });
}

describe('autograd engine', () => {
  it('differentiates a small expression (micrograd style)', () => {
    const a = leaf([2, -3]);
    const b = leaf([0.5, 4]);
    // loss = sum(a * b + a * a) -> da = b + 2a, db = a
    const loss = F.sum(F.add(F.mul(a, b), F.mul(a, a)));
    expect(loss.value.item()).toBeCloseTo(2 * 0.5 - 3 * 4 + 4 + 9, 5);
    backward(loss);
    expectClose(a.grad!.toArray(), [0.5 + 4, 4 - 6], {}, 'da');
    expectClose(b.grad!.toArray(), [2, -3], {}, 'db');
  });

  it('accumulates gradients across backward calls until zeroGrad', () => {
    const w = leaf([1, 2, 3]);
    for (let i = 0; i < 3; i++) backward(F.sum(F.scale(w, 2)));
    expectClose(w.grad!.toArray(), [6, 6, 6], {}, 'three accumulations');
    w.zeroGrad();
    expect(w.grad).toBeNull();
    backward(F.sum(w));
    expectClose(w.grad!.toArray(), [1, 1, 1], {}, 'after zeroGrad');
  });

  it('sums the gradients of a variable used by several ops (diamond)', () => {
    const x = leaf([1.5, -2]);
    const y = F.scale(x, 3);
    const loss = F.sum(F.add(F.mul(y, y), y));
    backward(loss);
    // d/dx (9x^2 + 3x) = 18x + 3
    expectClose(x.grad!.toArray(), [30, -33], {}, 'diamond');
  });

  it('refuses a second backward through a released graph, unless retainGraph', () => {
    const x = leaf([1, 2]);
    const loss = F.sum(F.mul(x, x));
    backward(loss, { retainGraph: true });
    backward(loss);
    expectClose(x.grad!.toArray(), [4, 8], {}, 'twice with retainGraph');
    expect(() => backward(loss)).toThrow(/already released by an earlier backward\(\).*retainGraph/);
  });

  it('releases intermediate values after backward, keeps the root and retained ones', () => {
    const x = leaf([1, 2, 3]);
    const hidden = F.scale(x, 2);
    const kept = F.mul(hidden, hidden).retain();
    const loss = F.sum(kept);
    backward(loss);
    expect(hidden.value.disposed).toBe(true);
    expect(kept.value.disposed).toBe(false);
    expect(loss.value.disposed).toBe(false);
    expect(x.value.disposed).toBe(false);
    const unused = F.sum(F.scale(x, 3));
    const inner = unused.node!.parents[0]!;
    release(unused);
    expect(inner.value.disposed).toBe(true);
    expect(() => backward(unused)).toThrow(/already released/);
  });

  it('frees results that need no gradient with the graph, but not noGrad results', () => {
    const frozen = new Variable(fromArray([1, 2]));
    const w = leaf([3, 4]);
    const constant = F.scale(frozen, 2);
    expect(constant.requiresGrad).toBe(false);
    expect(constant.isLeaf).toBe(false);
    const cached = noGrad(() => F.scale(frozen, 3));
    backward(F.sum(F.mul(F.add(constant, cached), w)));
    expectClose(w.grad!.toArray(), [5, 10], {}, 'dw');
    expect(constant.value.disposed).toBe(true);
    expect(cached.value.disposed).toBe(false);
    expect(frozen.value.disposed).toBe(false);
    const forwardOnly = F.sum(F.scale(frozen, 5));
    const inner = forwardOnly.node!.parents[0]!;
    release(forwardOnly);
    expect(inner.value.disposed).toBe(true);
    expect(forwardOnly.value.item()).toBe(15);
  });

  it('records nothing under noGrad', () => {
    const x = leaf([1, 2]);
    const y = noGrad(() => {
      expect(isGradEnabled()).toBe(false);
      return F.mul(x, x);
    });
    expect(isGradEnabled()).toBe(true);
    expect(y.requiresGrad).toBe(false);
    expect(y.isLeaf).toBe(true);
    expect(() => backward(F.sum(y))).toThrow(/does not require a gradient/);
  });

  it('needs an explicit gradient for a non-scalar root, of the root shape', () => {
    const x = leaf([1, 2, 3]);
    const y = F.scale(x, 2);
    expect(() => backward(y, { retainGraph: true })).toThrow(/root has 3 elements; pass \{ grad \}/);
    expect(() => backward(y, { grad: fromArray([1, 2]), retainGraph: true })).toThrow(/grad has shape \[2\], expected \[3\]/);
    const seed = fromArray([1, 0, -1]);
    backward(y, { grad: seed });
    expect(seed.disposed).toBe(false);
    expectClose(x.grad!.toArray(), [2, 0, -2], {}, 'vector-Jacobian product');
  });

  it('gradcheck catches a wrong backward', () => {
    const wrongSquare = (x: Variable): Variable =>
      record('wrongSquare', F.mul(x, x).value, [x], (g) => [scale(g, 1)]);
    expect(() => gradcheck('wrong', ([x]) => wrongSquare(x!), [{ shape: [4], data: Float32Array.from([1, 2, 3, 4]) }], rng())).toThrow(/relative gradient error/);
  });

  it('leaf values can be replaced, not those of computed variables', () => {
    const x = leaf([1]);
    const old = x.value;
    x.value = full([1], 5);
    expect(old.disposed).toBe(true);
    const y = F.scale(x, 2);
    expect(() => {
      y.value = full([1], 1);
    }).toThrow(/only a leaf's value can be replaced/);
  });
});
