import { describe, expect, it } from 'vitest';
import type { DeviceType } from '../../lib/device.js';
import { loraLinear, loraLinearBackward, loraLinearForward } from '../../lib/ops/lora_linear.js';
import { sum } from '../../lib/ops/reduce.js';
import { native } from '../../lib/native.js';
import { fromArray, full } from '../../lib/tensor.js';
import * as ref from '../reference/lora_linear.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectClose, numericGradient, randomArray, rng, toF64 } from '../helpers.js';

checkMemoryGuards();

interface Case extends ref.LoraShape {
  x: Float32Array;
  w: Float32Array;
  bias: Float32Array | null;
  down: Float32Array;
  up: Float32Array;
  dy: Float32Array;
}

function makeCase(random: () => number, m: number, n: number, k: number, rank: number, withBias = true): Case {
  return {
    m,
    n,
    k,
    rank,
    x: randomArray(m * k, random),
    w: randomArray(n * k, random),
    bias: withBias ? randomArray(n, random) : null,
    down: randomArray(k * rank, random),
    up: randomArray(rank * n, random),
    dy: randomArray(m * n, random),
  };
}

function tensors(c: Case, device: DeviceType) {
  return {
    x: fromArray(c.x, [c.m, c.k], { device }),
    w: fromArray(c.w, [c.n, c.k], { device }),
    bias: c.bias ? fromArray(c.bias, [c.n], { device }) : null,
    down: fromArray(c.down, [c.k, c.rank], { device }),
    up: fromArray(c.up, [c.rank, c.n], { device }),
    dy: fromArray(c.dy, [c.m, c.n], { device }),
  };
}

function forward(c: Case, device: DeviceType, scale: number) {
  const t = tensors(c, device);
  const { y, h } = loraLinearForward(t.x, t.w, t.bias, t.down, t.up, { scale });
  return { y: y.toArray(), h: h.toArray() };
}

function backward(c: Case, device: DeviceType, scale: number) {
  const t = tensors(c, device);
  const { h } = loraLinearForward(t.x, t.w, t.bias, t.down, t.up, { scale });
  const g = loraLinearBackward(t.x, t.w, t.down, t.up, h, t.dy, { scale, needDw: true, needDbias: true });
  return { dx: g.dx.toArray(), dw: g.dw!.toArray(), dbias: g.dbias!.toArray(), ddown: g.ddown.toArray(), dup: g.dup.toArray() };
}

// [M, N, K]: ones, odd sizes off every tile, and K past one 256-deep k block.
const shapes: [number, number, number][] = [
  [1, 1, 1],
  [17, 127, 33],
  [127, 33, 17],
  [33, 17, 127],
  [50, 70, 300],
];
const ranks = [1, 2, 4, 8];
// A float32 GEMM against float64: error grows like sqrt(K) eps |x||w|.
const tol = (k: number) => ({ rtol: 1e-4, atol: 2e-6 * Math.sqrt(k) * 4 });

describe('op lora_linear', () => {
  for (const device of backends()) {
    it(`matches the float64 reference on ${device}`, () => {
      const random = rng();
      for (const [m, n, k] of device === 'cpu' ? shapes : shapes.slice(0, 2)) {
        for (const rank of ranks) {
          const c = makeCase(random, m, n, k, rank, rank !== 2);
          const want = ref.loraLinear(c.x, c.w, c.bias, c.down, c.up, c, 0.75);
          const got = forward(c, device, 0.75);
          const label = `${device} M=${m} N=${n} K=${k} rank ${rank}`;
          expectClose(got.y, want.y, tol(k), `${label} y`);
          expectClose(got.h, want.h, tol(k), `${label} h`);
        }
      }
    });
  }

  it('is the plain linear layer at rank 0, and loraLinear returns y', () => {
    const c = makeCase(rng(), 13, 40, 19, 0);
    const want = ref.loraLinear(c.x, c.w, c.bias, c.down, c.up, c, 1);
    for (const device of backends()) {
      expectClose(forward(c, device, 1).y, want.y, tol(19), `${device} rank 0`);
      const t = tensors(c, device);
      expectClose(loraLinear(t.x, t.w, t.bias, t.down, t.up).toArray(), want.y, tol(19), `${device} loraLinear`);
    }
  });

  function colSums(values: ArrayLike<number>, rows: number, cols: number): Float64Array {
    const out = new Float64Array(cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c]! += values[r * cols + c]!;
    return out;
  }

  it('flattens leading axes of x', () => {
    const c = makeCase(rng(), 6, 5, 4, 2);
    const want = ref.loraLinear(c.x, c.w, c.bias, c.down, c.up, c, 2);
    const t = tensors(c, 'cpu');
    const { y, h } = loraLinearForward(t.x.reshape([2, 3, 4]), t.w, t.bias, t.down, t.up, { scale: 2 });
    expect(y.shape).toEqual([2, 3, 5]);
    expect(h.shape).toEqual([2, 3, 2]);
    expectClose(y.toArray(), want.y, tol(4), 'y');
    // The native handles carry the same shapes: a reduce over the leading axes works.
    expectClose(sum(y, [0, 1]).toArray(), colSums(want.y, 6, 5), tol(4), 'sum over leading axes');
    expect(sum(h, [0, 1]).shape).toEqual([2]);
  });

  it('frees every storage it made once its results are disposed', () => {
    const c = makeCase(rng(), 6, 5, 4, 2);
    const t = tensors(c, 'cpu');
    const x3 = t.x.reshape([2, 3, 4]);
    const before = native.info().liveStorages;
    const { y, h } = loraLinearForward(x3, t.w, t.bias, t.down, t.up);
    expect(native.info().liveStorages - before, 'y and h').toBe(2);
    const grads = loraLinearBackward(x3, t.w, t.down, t.up, h, y, { needDw: true });
    for (const g of [y, h, grads.dx, grads.ddown, grads.dup, grads.dw!, grads.dbias!]) g.dispose();
    expect(native.info().liveStorages).toBe(before);
  });

  for (const device of acceleratorBackends()) {
    it(`fails by name when the output has more column tiles than gridDim.y allows (65535) on ${device}`, () => {
      const n = 65535 * 64 + 1;
      const x = full([1, 1], 1, { device });
      const w = full([n, 1], 1, { device });
      const down = full([1, 1], 1, { device });
      const up = full([1, n], 1, { device });
      expect(() => loraLinear(x, w, null, down, up)).toThrow(
        new RegExp(String.raw`lora_linear: a product with ${n} columns needs 65536 column tiles of 64, more than the 65535 of one launch \(gridDim\.y\)`),
      );
      for (const t of [x, w, down, up]) t.dispose();
    });

    it(`${device} agrees with cpu`, () => {
      const random = rng();
      for (const [m, n, k, rank] of [
        [1, 1, 1, 1],
        [17, 33, 20, 1],
        [65, 70, 40, 4],
        [9, 130, 7, 8],
        [20, 16, 33, 80],
      ] as const) {
        const c = makeCase(random, m, n, k, rank);
        const cpu = forward(c, 'cpu', 0.5);
        const acc = forward(c, device, 0.5);
        expectClose(acc.y, cpu.y, tol(k), `${device} y M=${m} N=${n} K=${k} r=${rank}`);
        expectClose(acc.h, cpu.h, tol(k), `${device} h M=${m} N=${n} K=${k} r=${rank}`);
      }
    });
  }

  it('names the argument in errors', () => {
    const c = makeCase(rng(), 3, 4, 5, 2);
    const t = tensors(c, 'cpu');
    expect(() => loraLinear(t.x, t.w, t.bias, t.down, fromArray(new Float32Array(8), [4, 2]))).toThrow(/loraLinear: up has shape \[4, 2\], expected \[2, 4\]/);
    expect(() => loraLinear(t.x, t.w, fromArray([1, 2, 3]), t.down, t.up)).toThrow(/loraLinear: bias has shape \[3\], expected \[4\]/);
    expect(() => loraLinear(t.x, fromArray(new Float32Array(12), [4, 3]), t.bias, t.down, t.up)).toThrow(/loraLinear: x has shape \[3, 5\], expected last axis K = 3/);
    expect(() => loraLinear(t.x, t.w, t.bias, fromArray(new Float32Array(5), [5]), t.up)).toThrow(/loraLinear: down has 1 dims, expected 2 \[K, rank\]/);
    expect(() => loraLinear(t.x, t.w, t.bias, t.down, t.up, { scale: Number.NaN })).toThrow(/loraLinear: scale must be a number/);
    expect(() => loraLinear(t.x, 3 as never, t.bias, t.down, t.up)).toThrow(/loraLinear: w must be a Tensor, got number/);
  });
});

describe('op lora_linear_backward', () => {
  it('matches central finite differences of the float64 forward', () => {
    const random = rng();
    for (const [m, n, k, rank] of [
      [1, 1, 1, 1],
      [5, 7, 6, 1],
      [4, 3, 9, 3],
    ] as const) {
      const c = makeCase(random, m, n, k, rank);
      const scale = 0.8;
      const f64 = { x: toF64(c.x), w: toF64(c.w), bias: toF64(c.bias!), down: toF64(c.down), up: toF64(c.up) };
      const y = () => ref.loraLinear(f64.x, f64.w, f64.bias, f64.down, f64.up, c, scale).y;
      const want = {
        dx: numericGradient(y, f64.x, c.dy),
        dw: numericGradient(y, f64.w, c.dy),
        dbias: numericGradient(y, f64.bias, c.dy),
        ddown: numericGradient(y, f64.down, c.dy),
        dup: numericGradient(y, f64.up, c.dy),
      };
      const closed = ref.loraLinearBackward(c.x, c.w, c.down, c.up, c.dy, c, scale);
      for (const key of ['dx', 'dw', 'dbias', 'ddown', 'dup'] as const) expectClose(closed[key], want[key], { rtol: 1e-6, atol: 1e-7 }, `reference ${key}`);
      for (const device of backends()) {
        const got = backward(c, device, scale);
        for (const key of ['dx', 'dw', 'dbias', 'ddown', 'dup'] as const) {
          expectClose(got[key], want[key], { rtol: 1e-4, atol: 1e-5 }, `${device} ${key} M=${m} N=${n} K=${k} r=${rank}`);
        }
      }
    }
  });

  it('matches the closed-form float64 gradients on odd shapes', () => {
    const random = rng();
    for (const [m, n, k] of shapes) {
      for (const rank of ranks) {
        const c = makeCase(random, m, n, k, rank);
        const want = ref.loraLinearBackward(c.x, c.w, c.down, c.up, c.dy, c, 1.5);
        const got = backward(c, 'cpu', 1.5);
        const label = `M=${m} N=${n} K=${k} rank ${rank}`;
        expectClose(got.dx, want.dx, tol(n * rank), `${label} dx`);
        expectClose(got.dw, want.dw, tol(m), `${label} dw`);
        expectClose(got.dbias, want.dbias, tol(m), `${label} dbias`);
        expectClose(got.ddown, want.ddown, tol(m * n), `${label} ddown`);
        expectClose(got.dup, want.dup, tol(m * k), `${label} dup`);
      }
    }
  });

  it('leaves out dw and dbias unless asked', () => {
    const c = makeCase(rng(), 3, 4, 5, 1);
    const t = tensors(c, 'cpu');
    const { h } = loraLinearForward(t.x, t.w, t.bias, t.down, t.up);
    const g = loraLinearBackward(t.x, t.w, t.down, t.up, h, t.dy, { needDbias: false });
    expect(g.dw).toBeUndefined();
    expect(g.dbias).toBeUndefined();
    expectClose(g.dx.toArray(), ref.loraLinearBackward(c.x, c.w, c.down, c.up, c.dy, c, 1).dx, tol(4), 'dx');
  });

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const random = rng();
      for (const [m, n, k, rank] of [
        [1, 1, 1, 1],
        [17, 33, 20, 1],
        [40, 70, 33, 4],
        [20, 16, 9, 20],
      ] as const) {
        const c = makeCase(random, m, n, k, rank);
        const cpu = backward(c, 'cpu', 0.5);
        const acc = backward(c, device, 0.5);
        for (const key of ['dx', 'dw', 'dbias', 'ddown', 'dup'] as const) expectClose(acc[key], cpu[key], tol(m * n), `${device} ${key} M=${m} N=${n} K=${k} r=${rank}`);
      }
    });
  }

  it('names the argument in errors', () => {
    const c = makeCase(rng(), 3, 4, 5, 2);
    const t = tensors(c, 'cpu');
    const { h } = loraLinearForward(t.x, t.w, t.bias, t.down, t.up);
    expect(() => loraLinearBackward(t.x, t.w, t.down, t.up, h, fromArray(new Float32Array(12), [4, 3]))).toThrow(/loraLinearBackward: dy has shape \[4, 3\], expected \[3, 4\]/);
    expect(() => loraLinearBackward(t.x, t.w, t.down, t.up, t.x, t.dy)).toThrow(/loraLinearBackward: h has shape \[3, 5\], expected \[3, 2\]/);
    expect(() => loraLinearBackward(t.x, t.w, t.down, t.up, h, t.dy, { needDw: 'yes' as never })).toThrow(/loraLinearBackward: needDw must be a boolean/);
  });
});
