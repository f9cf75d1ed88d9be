import { describe, expect, it } from 'vitest';
import { fromArray, type Tensor } from '../../lib/tensor.js';
import { layerNorm, layerNormBackward } from '../../lib/ops/layernorm.js';
import * as ref from '../reference/layernorm.js';
import {
  acceleratorBackends,
  backends,
  checkMemoryGuards,
  expectClose,
  numericGradient,
  randomArray,
  rng,
  toF64,
} from '../helpers.js';
import type { DeviceType } from '../../lib/device.js';

checkMemoryGuards();

type Param = 'gamma' | 'beta' | 'scale' | 'shift';

interface Case {
  /** x's shape; with scale/shift the first axis is the batch. */
  shape: number[];
  params: Param[];
}

// Rows 1, 17, 127 and cols 1, 17, 127, 1000, 4099; modulated cases have group = rows per sample > 1.
const cases: Case[] = [
  { shape: [1, 1], params: [] },
  { shape: [17, 17], params: ['gamma', 'beta'] },
  { shape: [127, 127], params: ['gamma'] },
  { shape: [3, 1000], params: ['beta'] },
  { shape: [2, 4099], params: [] },
  { shape: [17, 1], params: ['gamma', 'beta'] },
  { shape: [2, 3, 17], params: ['scale', 'shift'] },
  { shape: [4, 5, 33], params: ['gamma', 'scale', 'shift'] },
  { shape: [3, 1, 127], params: ['shift'] },
  { shape: [1, 17, 40], params: ['scale'] },
  { shape: [3, 5, 19], params: ['gamma', 'beta', 'scale', 'shift'] },
  { shape: [2, 4, 9], params: ['beta', 'scale'] },
];
const emuCases = cases.filter((c) => c.shape.reduce((a, b) => a * b, 1) <= 20_000);

interface Inputs {
  data: ref.LayerNormInputs;
  rowShape: number[];
  batch: number;
}

function makeInputs(c: Case, random: () => number): Inputs {
  const cols = c.shape[c.shape.length - 1]!;
  const rows = c.shape.reduce((a, b) => a * b, 1) / cols;
  const modulated = c.params.includes('scale') || c.params.includes('shift');
  const batch = modulated ? c.shape[0]! : 1;
  const x = randomArray(rows * cols, random, 2);
  for (let i = 0; i < x.length; i++) x[i]! += 3; // an offset the mean must remove
  const data: ref.LayerNormInputs = { x, rows, cols, group: modulated ? rows / batch : rows, eps: 1e-5 };
  if (c.params.includes('gamma')) data.gamma = randomArray(cols, random);
  if (c.params.includes('beta')) data.beta = randomArray(cols, random);
  if (c.params.includes('scale')) data.scale = randomArray(batch * cols, random, 0.5);
  if (c.params.includes('shift')) data.shift = randomArray(batch * cols, random);
  return { data, rowShape: c.shape.slice(0, -1), batch };
}

function onDevice(c: Case, inputs: Inputs, device: DeviceType): Record<Param, Tensor<'f32'> | undefined> & { x: Tensor<'f32'> } {
  const { data, batch } = inputs;
  const put = (a: ArrayLike<number> | undefined, shape: number[]): Tensor<'f32'> | undefined =>
    a === undefined ? undefined : fromArray(Float32Array.from(a), shape, { device });
  return {
    x: fromArray(Float32Array.from(data.x), c.shape, { device }),
    gamma: put(data.gamma, [data.cols]),
    beta: put(data.beta, [data.cols]),
    scale: put(data.scale, [batch, data.cols]),
    shift: put(data.shift, [batch, data.cols]),
  };
}

function describeCase(c: Case): string {
  return `[${c.shape.join(', ')}] ${c.params.join('+') || 'plain'}`;
}

describe('op layernorm', () => {
  for (const device of backends()) {
    it(`matches the float64 reference on ${device}`, () => {
      const random = rng();
      for (const c of device === 'cpu' ? cases : emuCases) {
        const inputs = makeInputs(c, random);
        const t = onDevice(c, inputs, device);
        const { y, mean, rstd } = layerNorm(t.x, { ...t, eps: inputs.data.eps });
        const expected = ref.layerNorm(inputs.data);
        expect(y.shape).toEqual(c.shape);
        expect(mean.shape).toEqual(inputs.rowShape);
        expectClose(y.toArray(), expected.y, { rtol: 1e-4, atol: 2e-5 }, `${device} y ${describeCase(c)}`);
        expectClose(mean.toArray(), expected.mean, { rtol: 1e-5, atol: 1e-6 }, `${device} mean ${describeCase(c)}`);
        expectClose(rstd.toArray(), expected.rstd, { rtol: 1e-4, atol: 1e-6 }, `${device} rstd ${describeCase(c)}`);
      }
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const random = rng();
      for (const c of [cases[2]!, cases[7]!, { shape: [2, 9, 1000], params: ['scale', 'shift'] } as Case]) {
        const inputs = makeInputs(c, random);
        const a = onDevice(c, inputs, 'cpu');
        const b = onDevice(c, inputs, device);
        const onCpu = layerNorm(a.x, a).y.toArray();
        expectClose(layerNorm(b.x, b).y.toArray(), onCpu, { rtol: 1e-5, atol: 1e-5 }, `${device} vs cpu ${describeCase(c)}`);
      }
    });
  }

  it('names the argument in errors', () => {
    const x = fromArray(randomArray(12, rng()), [2, 2, 3]);
    expect(() => layerNorm(x, { gamma: fromArray([1, 2]) })).toThrow(/layerNorm: gamma has shape \[2\], expected \[3\]/);
    expect(() => layerNorm(x, { scale: fromArray(new Float32Array(9), [3, 3]) })).toThrow(/layerNorm: scale has shape \[3, 3\], expected \[2, 3\]/);
    expect(() => layerNorm(fromArray([1, 2, 3]), { shift: fromArray([1, 2, 3], [1, 3]) })).toThrow(/layerNorm: shift needs x with a batch axis/);
    expect(() => layerNorm(x, { eps: -1 })).toThrow(/layerNorm: eps must be >= 0, got -1/);
    expect(() => layerNorm(fromArray([], [2, 0]))).toThrow(/layerNorm: x has shape \[2, 0\], expected \[\.\.\., C\] with C > 0/);
  });
});

describe('op layernorm_backward', () => {
  const gradientCases: Case[] = [
    { shape: [1, 1], params: ['gamma', 'beta'] },
    { shape: [3, 17], params: ['gamma', 'beta'] },
    { shape: [2, 3, 7], params: ['scale', 'shift'] },
    { shape: [2, 2, 6], params: ['gamma', 'scale', 'shift'] },
    { shape: [2, 3, 5], params: ['gamma', 'beta', 'scale', 'shift'] },
    { shape: [2, 2, 4], params: ['beta', 'scale'] },
  ];

  it('the float64 reference backward matches finite differences of the forward', () => {
    const random = rng();
    for (const c of gradientCases) {
      const { data } = makeInputs(c, random);
      const dy = randomArray(data.rows * data.cols, random);
      const analytic = ref.layerNormBackward(data, dy);
      const wrt = (name: 'x' | Param): void => {
        const values = toF64(data[name]!);
        const numeric = numericGradient(() => ref.layerNorm({ ...data, [name]: values }).y, values, dy);
        const key = `d${name}` as keyof ref.LayerNormReferenceGradients;
        expectClose(analytic[key], numeric, { rtol: 1e-5, atol: 1e-7 }, `reference ${key} ${describeCase(c)}`);
      };
      wrt('x');
      for (const p of c.params) wrt(p);
    }
  });

  for (const device of backends()) {
    it(`matches finite differences of the float64 forward on ${device}`, () => {
      const random = rng();
      for (const c of gradientCases) {
        const inputs = makeInputs(c, random);
        const { data } = inputs;
        const dy = randomArray(data.rows * data.cols, random);
        const t = onDevice(c, inputs, device);
        const { mean, rstd } = layerNorm(t.x, { ...t, eps: data.eps });
        const grads = layerNormBackward(t.x, fromArray(dy, c.shape, { device }), { ...t, mean, rstd });
        const check = (name: 'x' | Param, actual: Tensor<'f32'> | null): void => {
          expect(actual, `d${name} computed`).not.toBeNull();
          const values = toF64(data[name]!);
          const numeric = numericGradient(() => ref.layerNorm({ ...data, [name]: values }).y, values, dy);
          expectClose(actual!.toArray(), numeric, { rtol: 1e-4, atol: 2e-5 }, `${device} d${name} ${describeCase(c)}`);
        };
        check('x', grads.dx);
        for (const p of c.params) check(p, grads[`d${p}`]);
        for (const p of (['gamma', 'beta', 'scale', 'shift'] as const).filter((q) => !c.params.includes(q))) {
          expect(grads[`d${p}`], `d${p} for an absent input`).toBeNull();
        }
      }
    });

    it(`matches the float64 reference backward on ${device}`, () => {
      const random = rng();
      for (const c of device === 'cpu' ? cases : emuCases) {
        const inputs = makeInputs(c, random);
        const { data } = inputs;
        const dy = randomArray(data.rows * data.cols, random);
        const t = onDevice(c, inputs, device);
        const { mean, rstd } = layerNorm(t.x, { ...t, eps: data.eps });
        const grads = layerNormBackward(t.x, fromArray(dy, c.shape, { device }), { ...t, mean, rstd });
        const expected = ref.layerNormBackward(data, dy);
        const tol = { rtol: 2e-4, atol: 5e-5 * Math.sqrt(data.rows) };
        expectClose(grads.dx.toArray(), expected.dx, tol, `${device} dx ${describeCase(c)}`);
        for (const p of c.params) {
          expectClose(grads[`d${p}`]!.toArray(), expected[`d${p}`], tol, `${device} d${p} ${describeCase(c)}`);
        }
      }
    });

    it(`writes zero parameter gradients for zero rows on ${device}`, () => {
      const x = fromArray([], [0, 5], { device });
      const gamma = fromArray([1, 2, 3, 4, 5], [5], { device });
      const { y, mean, rstd } = layerNorm(x, { gamma });
      expect(y.shape).toEqual([0, 5]);
      const grads = layerNormBackward(x, x, { gamma, mean, rstd, needBeta: true });
      expect(Array.from(grads.dgamma!.toArray())).toEqual([0, 0, 0, 0, 0]);
      expect(Array.from(grads.dbeta!.toArray())).toEqual([0, 0, 0, 0, 0]);
    });

    it(`computes only the requested parameter gradients on ${device}`, () => {
      const c: Case = { shape: [2, 4, 9], params: ['gamma', 'scale', 'shift'] };
      const random = rng();
      const inputs = makeInputs(c, random);
      const t = onDevice(c, inputs, device);
      const { mean, rstd } = layerNorm(t.x, { ...t, eps: inputs.data.eps });
      const dy = randomArray(72, random);
      const grads = layerNormBackward(t.x, fromArray(dy, c.shape, { device }), {
        ...t,
        mean,
        rstd,
        needGamma: false,
        needScale: false,
        needBeta: true,
      });
      expect(grads.dgamma).toBeNull();
      expect(grads.dscale).toBeNull();
      const expected = ref.layerNormBackward(inputs.data, dy);
      expectClose(grads.dbeta!.toArray(), expected.dbeta, { rtol: 1e-4, atol: 1e-5 }, `${device} dbeta`);
      expectClose(grads.dshift!.toArray(), expected.dshift, { rtol: 1e-4, atol: 1e-5 }, `${device} dshift`);
      expectClose(grads.dx.toArray(), expected.dx, { rtol: 1e-4, atol: 1e-5 }, `${device} dx`);
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const random = rng();
      for (const c of [cases[1]!, { shape: [2, 9, 1000], params: ['gamma', 'scale', 'shift'] } as Case]) {
        const inputs = makeInputs(c, random);
        const dy = randomArray(inputs.data.rows * inputs.data.cols, random);
        const run = (d: DeviceType): Record<string, Float32Array> => {
          const t = onDevice(c, inputs, d);
          const { mean, rstd } = layerNorm(t.x, t);
          const g = layerNormBackward(t.x, fromArray(dy, c.shape, { device: d }), { ...t, mean, rstd });
          const out: Record<string, Float32Array> = { dx: g.dx.toArray() };
          for (const p of c.params) out[p] = g[`d${p}`]!.toArray();
          return out;
        };
        const onCpu = run('cpu');
        const onAccelerator = run(device);
        for (const [name, values] of Object.entries(onCpu)) {
          expectClose(onAccelerator[name]!, values, { rtol: 1e-4, atol: 1e-4 }, `${device} vs cpu d${name} ${describeCase(c)}`);
        }
      }
    });
  }

  it('names the argument in errors', () => {
    const x = fromArray(randomArray(12, rng()), [2, 2, 3]);
    const gamma = fromArray([1, 2, 3]);
    const { mean, rstd } = layerNorm(x, { gamma });
    expect(() => layerNormBackward(x, fromArray(new Float32Array(6), [2, 3]), { mean, rstd })).toThrow(
      /layerNormBackward: dy has shape \[2, 3\], expected \[2, 2, 3\]/,
    );
    expect(() => layerNormBackward(x, x, { mean: rstd.reshape([4]), rstd })).toThrow(/layerNormBackward: mean has shape \[4\], expected \[2, 2\]/);
    expect(() => layerNormBackward(x, x, { mean, rstd, needGamma: true })).toThrow(/layerNormBackward: needGamma is set but gamma was not given/);
    expect(() => layerNormBackward(x, x, { mean, rstd, needShift: true })).toThrow(/layerNormBackward: needShift is set but neither shift nor scale/);
    expect(() => layerNormBackward(x, x, { mean, rstd, gamma: fromArray([1]) })).toThrow(/layerNormBackward: gamma has shape \[1\], expected \[3\]/);
  });
});
