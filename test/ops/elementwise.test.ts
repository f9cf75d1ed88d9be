import { describe, expect, it } from 'vitest';
import { fromArray } from '../../lib/tensor.js';
import { add, axpy, biasAdd, mul, scale, sub } from '../../lib/ops/elementwise.js';
import { sum } from '../../lib/ops/reduce.js';
import * as ref from '../reference/elementwise.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectClose, numericGradient, randomArray, rng, toF64 } from '../helpers.js';

checkMemoryGuards();
const sizes = [1, 17, 127, 4099, 70_001];
const ops = { add, sub, mul } as const;

describe('op binary', () => {
  for (const device of backends()) {
    it(`add, sub and mul match the float64 reference on ${device}`, () => {
      const random = rng();
      for (const n of sizes) {
        const a = randomArray(n, random);
        const b = randomArray(n, random);
        for (const name of ['add', 'sub', 'mul'] as const) {
          const y = ops[name](fromArray(a, [n], { device }), fromArray(b, [n], { device }));
          expectClose(y.toArray(), ref.binary(name, a, b), { rtol: 1e-6, atol: 1e-7 }, `${name} n=${n}`);
        }
      }
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu exactly, in place and at unaligned offsets`, () => {
      const random = rng();
      const a = randomArray(1031, random);
      const b = randomArray(1031, random);
      for (const name of ['add', 'sub', 'mul'] as const) {
        const onCpu = ops[name](fromArray(a, [1031]), fromArray(b, [1031])).toArray();
        const ta = fromArray(a, [1031], { device });
        expect(ops[name](ta, fromArray(b, [1031], { device }), { out: ta })).toBe(ta);
        expectClose(ta.toArray(), onCpu, { rtol: 0, atol: 0 }, `${name} ${device} vs cpu`);
      }
    });
  }

  it('mul backward (dy * b, dy * a) matches finite differences', () => {
    const random = rng();
    const n = 17;
    const a = toF64(randomArray(n, random));
    const b = toF64(randomArray(n, random));
    const dy = randomArray(n, random);
    const da = mul(fromArray(dy), fromArray(b)).toArray();
    const db = mul(fromArray(dy), fromArray(a)).toArray();
    expectClose(da, numericGradient(() => ref.binary('mul', a, b), a, dy), { rtol: 1e-5, atol: 1e-6 }, 'da');
    expectClose(db, numericGradient(() => ref.binary('mul', a, b), b, dy), { rtol: 1e-5, atol: 1e-6 }, 'db');
  });

  it('names the argument in errors', () => {
    expect(() => add(fromArray([1, 2]), fromArray([1, 2, 3]))).toThrow(/add: b has shape \[3\], expected \[2\]/);
    expect(() => mul(fromArray([1, 2]), [1, 2] as never)).toThrow(/mul: b must be a Tensor, got an array/);
    expect(() => sub(fromArray([1, 2], [2], { dtype: 'i32' }) as never, fromArray([1, 2]))).toThrow(/sub: a has dtype i32, expected f32/);
    expect(() => add(fromArray([1, 2]), fromArray([1, 2]), { out: fromArray([1, 2, 3]) })).toThrow(/add: out has shape \[3\], expected \[2\]/);
    const other = acceleratorBackends()[0];
    if (other) expect(() => add(fromArray([1, 2]), fromArray([1, 2], [2], { device: other }))).toThrow(new RegExp(`add: b is on ${other}, expected cpu`));
  });
});

describe('op scale', () => {
  for (const device of backends()) {
    it(`matches the float64 reference on ${device}`, () => {
      const random = rng();
      for (const n of sizes) {
        const x = randomArray(n, random);
        const y = scale(fromArray(x, [n], { device }), -1.75);
        expectClose(y.toArray(), ref.scale(x, -1.75), { rtol: 1e-6 }, `scale n=${n}`);
      }
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu, in place`, () => {
      const x = randomArray(1000, rng());
      const onCpu = scale(fromArray(x), 3).toArray();
      const t = fromArray(x, [1000], { device });
      expect(scale(t, 3, { out: t })).toBe(t);
      expectClose(t.toArray(), onCpu, { rtol: 0, atol: 0 }, `${device} vs cpu`);
    });
  }

  it('names the argument in errors', () => {
    expect(() => scale(fromArray([1, 2]), Number.NaN)).toThrow(/scale: alpha must be a number/);
    expect(() => scale(fromArray([1, 2], [2], { dtype: 'i32' }) as never, 2)).toThrow(/scale: x has dtype i32, expected f32/);
    expect(() => scale(fromArray([1, 2]), 2, { out: fromArray([1, 2, 3]) })).toThrow(/scale: out has shape \[3\], expected \[2\]/);
  });
});

describe('op axpy', () => {
  for (const device of backends()) {
    it(`y = alpha x + beta y in place on ${device}`, () => {
      const random = rng();
      for (const n of sizes) {
        const x = randomArray(n, random);
        const y = randomArray(n, random);
        for (const beta of [1, 0.5, -2]) {
          const ty = fromArray(y, [n], { device });
          expect(axpy(-0.75, fromArray(x, [n], { device }), ty, { beta })).toBe(ty);
          expectClose(ty.toArray(), ref.axpy(-0.75, x, y, beta), { rtol: 1e-6, atol: 1e-6 }, `axpy n=${n} beta=${beta}`);
        }
        const fresh = fromArray(y, [n], { device });
        axpy(2, fromArray(x, [n], { device }), fresh);
        expectClose(fresh.toArray(), ref.axpy(2, x, y, 1), { rtol: 1e-6, atol: 1e-6 }, `axpy default beta n=${n}`);
      }
    });

    it(`beta = 0 ignores NaN already in y on ${device}`, () => {
      const x = randomArray(37, rng());
      const y = fromArray(new Float32Array(37).fill(Number.NaN), [37], { device });
      axpy(3, fromArray(x, [37], { device }), y, { beta: 0 });
      expectClose(y.toArray(), ref.scale(x, 3), { rtol: 1e-6 }, 'axpy beta 0');
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const random = rng();
      const x = randomArray(4099, random);
      const y = randomArray(4099, random);
      const onCpu = axpy(1.5, fromArray(x), fromArray(y), { beta: 0.25 }).toArray();
      const onDevice = axpy(1.5, fromArray(x, [4099], { device }), fromArray(y, [4099], { device }), { beta: 0.25 }).toArray();
      expectClose(onDevice, onCpu, { rtol: 1e-6, atol: 1e-7 }, `${device} vs cpu`);
    });
  }

  it('names the argument in errors', () => {
    expect(() => axpy(Number.NaN, fromArray([1]), fromArray([1]))).toThrow(/axpy: alpha must be a number/);
    expect(() => axpy(1, fromArray([1, 2]), fromArray([1]))).toThrow(/axpy: y has shape \[1\], expected \[2\]/);
    expect(() => axpy(1, fromArray([1]), fromArray([1]), { beta: 'x' as never })).toThrow(/axpy: beta must be a number/);
  });
});

describe('op bias_add', () => {
  const cases: Array<{ shape: number[]; axis: number }> = [
    { shape: [17], axis: -1 },
    { shape: [127, 33], axis: -1 },
    { shape: [3, 5, 8], axis: 1 },
    { shape: [2, 7, 3, 5], axis: 1 },
    { shape: [5, 4099], axis: 0 },
    { shape: [3, 70_001], axis: 1 },
  ];
  for (const device of backends()) {
    it(`matches the float64 reference on ${device}`, () => {
      const random = rng();
      for (const { shape, axis } of cases) {
        const n = shape.reduce((a, b) => a * b, 1);
        const resolved = axis < 0 ? axis + shape.length : axis;
        const x = randomArray(n, random);
        const bias = randomArray(shape[resolved]!, random);
        const y = biasAdd(fromArray(x, shape, { device }), fromArray(bias, [bias.length], { device }), { axis });
        expect(y.shape).toEqual(shape);
        expectClose(y.toArray(), ref.biasAdd(x, shape, bias, resolved), { rtol: 1e-6, atol: 1e-7 }, `biasAdd ${shape} axis ${axis}`);
      }
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu exactly`, () => {
      const random = rng();
      for (const { shape, axis } of cases.slice(0, 5)) {
        const n = shape.reduce((a, b) => a * b, 1);
        const x = randomArray(n, random);
        const bias = randomArray(shape.at(axis)!, random);
        const onCpu = biasAdd(fromArray(x, shape), fromArray(bias), { axis }).toArray();
        const onDevice = biasAdd(fromArray(x, shape, { device }), fromArray(bias, [bias.length], { device }), { axis }).toArray();
        expectClose(onDevice, onCpu, { rtol: 0, atol: 0 }, `${device} vs cpu ${shape}`);
      }
    });
  }

  it('backward (dx = dy, dbias = dy summed over the other axes) matches finite differences', () => {
    const random = rng();
    const shape = [3, 4, 5];
    const x = toF64(randomArray(60, random));
    const bias = toF64(randomArray(4, random));
    const dy = randomArray(60, random);
    const f = () => ref.biasAdd(x, shape, bias, 1);
    const dbias = sum(fromArray(dy, shape), [0, 2]).toArray();
    expectClose(dbias, numericGradient(f, bias, dy), { rtol: 1e-5, atol: 1e-6 }, 'dbias');
    expectClose(dy, numericGradient(f, x, dy), { rtol: 1e-5, atol: 1e-6 }, 'dx');
  });

  it('names the argument in errors', () => {
    expect(() => biasAdd(fromArray([1, 2, 3, 4], [2, 2]), fromArray([1, 2, 3]))).toThrow(/biasAdd: bias has shape \[3\], expected \[2\]/);
    expect(() => biasAdd(fromArray([1, 2], [1, 2]), fromArray([1]), { axis: 2 })).toThrow(/biasAdd: axis 2 is out of range for 2 dims/);
    expect(() => biasAdd(fromArray([1, 2]), fromArray([1, 2], [2], { dtype: 'i32' }) as never)).toThrow(/biasAdd: bias has dtype i32, expected f32/);
  });
});
