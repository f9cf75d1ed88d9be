import { describe, expect, it } from 'vitest';
import * as F from '../../lib/autograd/functions.js';
import { backward } from '../../lib/autograd/backward.js';
import { Variable } from '../../lib/autograd/variable.js';
import type { DeviceType } from '../../lib/device.js';
import { tidy } from '../../lib/scope.js';
import { fromArray, type Tensor } from '../../lib/tensor.js';
import { add, axpy, biasAdd, mul, scale, sub } from '../../lib/ops/elementwise.js';
import * as ref from '../reference/elementwise.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectClose, expectIdentical, numericGradient, randomArray, rng, toF64 } from '../helpers.js';

checkMemoryGuards();
const sizes = [1, 17, 127, 4099, 70_001];
const ops = { add, sub, mul } as const;

/**
 * The gradients the tape gives each input of `f` (an autograd function, which runs the op and
 * records its backward) for the loss sum(f(inputs) * dy): what the op's backward computes.
 */
function tapeGradients(
  device: DeviceType,
  f: (inputs: Variable[]) => Variable,
  inputs: readonly { data: ArrayLike<number>; shape: number[] }[],
  dy: ArrayLike<number>,
): Float32Array[] {
  return tidy(() => {
    const leaves = inputs.map(({ data, shape }) => new Variable(fromArray(data, shape, { device }), { requiresGrad: true }));
    const y = f(leaves);
    backward(y, { grad: fromArray(dy, y.shape, { device }) });
    const grads = leaves.map((l, i) => {
      expect(l.grad, `input ${i} has a gradient`).not.toBeNull();
      return l.grad!.toArray();
    });
    for (const l of leaves) l.dispose();
    return grads;
  });
}

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
      const n = 1031;
      const a = randomArray(n, random);
      const b = randomArray(n, random);
      // An operand `offset` elements into a longer buffer (4, 8 or 12 bytes past a 16-byte
      // boundary when offset is 1, 2 or 3), with a sentinel on either side of it.
      const sentinel = 1234.5;
      const placed = (on: DeviceType, data: Float32Array, offset: number) => {
        const buffer = fromArray([...Array<number>(offset).fill(sentinel), ...data, sentinel], [offset + n + 1], { device: on });
        return { buffer, view: buffer.slice(offset, offset + n) };
      };
      const untouched = (buffer: Tensor<'f32'>, offset: number, label: string): void => {
        const all = buffer.toArray();
        expectIdentical([...all.subarray(0, offset), all[offset + n]!], Array<number>(offset + 1).fill(sentinel), `${label}: outside the view`);
      };
      for (const name of ['add', 'sub', 'mul'] as const) {
        const onCpu = ops[name](fromArray(a, [n]), fromArray(b, [n])).toArray();
        for (const on of ['cpu', device] as const) {
          for (const [offsetA, offsetB] of [[0, 0], [1, 3], [3, 1], [2, 0], [0, 1]] as const) {
            const label = `${name} on ${on}, a at offset ${offsetA}, b at offset ${offsetB}`;
            const pa = placed(on, a, offsetA);
            const pb = placed(on, b, offsetB);
            expectClose(ops[name](pa.view, pb.view).toArray(), onCpu, { rtol: 0, atol: 0 }, `${label}: new output`);
            expect(ops[name](pa.view, pb.view, { out: pa.view })).toBe(pa.view);
            expectClose(pa.view.toArray(), onCpu, { rtol: 0, atol: 0 }, `${label}: in place`);
            untouched(pa.buffer, offsetA, label);
            untouched(pb.buffer, offsetB, label);
          }
        }
      }
    });
  }

  for (const device of backends()) {
    it(`the backward of add, sub and mul matches finite differences of the float64 reference on ${device}`, () => {
      const random = rng();
      const n = 17;
      const a = toF64(randomArray(n, random));
      const b = toF64(randomArray(n, random));
      const dy = randomArray(n, random);
      const tape = { add: F.add, sub: F.sub, mul: F.mul } as const;
      for (const name of ['add', 'sub', 'mul'] as const) {
        const [da, db] = tapeGradients(device, ([x, y]) => tape[name](x!, y!), [{ data: a, shape: [n] }, { data: b, shape: [n] }], dy);
        const f = () => ref.binary(name, a, b);
        expectClose(da!, numericGradient(f, a, dy), { rtol: 1e-5, atol: 1e-6 }, `${name} da`);
        expectClose(db!, numericGradient(f, b, dy), { rtol: 1e-5, atol: 1e-6 }, `${name} db`);
      }
    });
  }

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

  for (const device of backends()) {
    it(`backward (dx = dy, dbias = dy summed over the other axes) matches finite differences of the float64 reference on ${device}`, () => {
      const random = rng();
      for (const { shape, axis } of [
        { shape: [3, 4, 5], axis: 1 },
        { shape: [6, 7], axis: -1 },
        { shape: [5, 3], axis: 0 },
      ]) {
        const n = shape.reduce((p, d) => p * d, 1);
        const resolved = axis < 0 ? axis + shape.length : axis;
        const x = toF64(randomArray(n, random));
        const bias = toF64(randomArray(shape[resolved]!, random));
        const dy = randomArray(n, random);
        const [dx, dbias] = tapeGradients(device, ([v, b]) => F.biasAdd(v!, b!, { axis }), [{ data: x, shape }, { data: bias, shape: [bias.length] }], dy);
        const f = () => ref.biasAdd(x, shape, bias, resolved);
        const label = `[${shape}] axis ${axis}`;
        expectClose(dx!, numericGradient(f, x, dy), { rtol: 1e-5, atol: 1e-6 }, `${label} dx`);
        expectClose(dbias!, numericGradient(f, bias, dy), { rtol: 1e-5, atol: 1e-6 }, `${label} dbias`);
      }
    });
  }

  it('names the argument in errors', () => {
    expect(() => biasAdd(fromArray([1, 2, 3, 4], [2, 2]), fromArray([1, 2, 3]))).toThrow(/biasAdd: bias has shape \[3\], expected \[2\]/);
    expect(() => biasAdd(fromArray([1, 2], [1, 2]), fromArray([1]), { axis: 2 })).toThrow(/biasAdd: axis 2 is out of range for 2 dims/);
    expect(() => biasAdd(fromArray([1, 2]), fromArray([1, 2], [2], { dtype: 'i32' }) as never)).toThrow(/biasAdd: bias has dtype i32, expected f32/);
  });
});
