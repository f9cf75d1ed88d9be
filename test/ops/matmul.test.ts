import { afterEach, describe, expect, it } from 'vitest';
import type { DeviceType } from '../../lib/device.js';
import { native } from '../../lib/native.js';
import { fromArray, full, type Tensor } from '../../lib/tensor.js';
import { matmul } from '../../lib/ops/matmul.js';
import * as ref from '../reference/matmul.js';
import {
  acceleratorBackends,
  backends,
  checkMemoryGuards,
  expectClose,
  expectIdentical,
  numericGradient,
  randomArray,
  rng,
  type Tolerance,
} from '../helpers.js';

checkMemoryGuards();

const defaultThreads = native.info().threads;
afterEach(() => native.setNumThreads(defaultThreads));

/** fp32 accumulation over k terms of size <= 1: error grows like sqrt(k) ulps of the sum. */
function tolerance(k: number): Tolerance {
  return { rtol: 1e-4, atol: 2e-6 * Math.max(8, k) };
}

interface Case {
  m: number;
  n: number;
  k: number;
  batch?: number;
}

function nanArray(n: number): Float32Array {
  return new Float32Array(n).fill(Number.NaN);
}

function operandShape(batch: number | undefined, rows: number, cols: number): number[] {
  return batch === undefined ? [rows, cols] : [batch, rows, cols];
}

/** Runs one product on `device` against the float64 reference. */
function checkProduct(
  device: DeviceType,
  random: () => number,
  { m, n, k, batch }: Case,
  opts: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number; bf16?: boolean; broadcast?: 'a' | 'b' } = {},
): void {
  const { transA = false, transB = false, alpha = 1, beta = 0, bf16 = false, broadcast } = opts;
  const batchA = broadcast === 'a' ? undefined : batch;
  const batchB = broadcast === 'b' ? undefined : batch;
  const aShape = transA ? operandShape(batchA, k, m) : operandShape(batchA, m, k);
  const bShape = transB ? operandShape(batchB, n, k) : operandShape(batchB, k, n);
  const aData = randomArray(aShape.reduce((x, y) => x * y, 1), random);
  const bData = randomArray(bShape.reduce((x, y) => x * y, 1), random);
  const dtype = bf16 ? 'bf16' : 'f32';
  const a = fromArray(aData, aShape, { device, dtype });
  const b = fromArray(bData, bShape, { device, dtype });
  const outShape = operandShape(batch, m, n);
  const cData = randomArray(outShape.reduce((x, y) => x * y, 1), random);
  // beta == 0 must not read out: fill it with NaN so a read would show.
  const out = fromArray(beta === 0 ? nanArray(cData.length) : cData, outShape, { device });
  const result = matmul(a, b, { transA, transB, alpha, beta, out });
  expect(result).toBe(out);
  const expected = ref.matmul(bf16 ? ref.roundBf16(aData) : aData, bf16 ? ref.roundBf16(bData) : bData, cData, {
    batch: batch ?? 1,
    m,
    n,
    k,
    transA,
    transB,
    alpha,
    beta,
    strideA: batchA === undefined ? 0 : m * k,
    strideB: batchB === undefined ? 0 : k * n,
  });
  const label = `${device} ${batch ?? '-'}x${m}x${n}x${k} transA=${transA} transB=${transB} alpha=${alpha} beta=${beta} ${dtype}${broadcast ? ` broadcast ${broadcast}` : ''}`;
  expectClose(result.toArray(), expected, tolerance(k), label);
}

// Odd sizes, sizes that straddle the cpu micro-tiles (14x32, 6x16) and the cuda block tiles (64x64).
const shapes: Case[] = [
  { m: 1, n: 1, k: 1 },
  { m: 17, n: 127, k: 33 },
  { m: 15, n: 33, k: 7 },
  { m: 65, n: 66, k: 67 },
  { m: 3, n: 129, k: 2 },
];
// Large enough for several k blocks (KC = 256), row blocks (MC = 336) and threads on the cpu.
const largeShapes: Case[] = [
  { m: 350, n: 100, k: 530 },
  { m: 29, n: 700, k: 300 },
];

describe('op matmul', () => {
  for (const device of backends()) {
    it(`matches the float64 reference on ${device}: shapes, transposes, alpha and beta`, () => {
      const random = rng();
      for (const shape of shapes) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            checkProduct(device, random, shape, { transA, transB });
            checkProduct(device, random, shape, { transA, transB, alpha: -0.75, beta: 0.5 });
          }
        }
      }
    });

    it(`takes bf16 inputs on ${device} (exact on bf16-rounded values, f32 accumulation)`, () => {
      const random = rng();
      for (const shape of [shapes[1]!, shapes[3]!]) {
        checkProduct(device, random, shape, { bf16: true });
        checkProduct(device, random, shape, { bf16: true, transA: true, transB: true, alpha: 2, beta: -1 });
      }
    });

    it(`mixes bf16 and f32 operands on ${device}`, () => {
      const random = rng();
      const aData = randomArray(17 * 9, random);
      const bData = randomArray(9 * 20, random);
      const c = matmul(fromArray(aData, [17, 9], { device, dtype: 'bf16' }), fromArray(bData, [9, 20], { device }));
      const expected = ref.matmul(ref.roundBf16(aData), bData, null, { batch: 1, m: 17, n: 20, k: 9 });
      expectClose(c.toArray(), expected, tolerance(9), `${device} bf16 x f32`);
    });

    it(`batches and broadcasts a 2-D operand over the batch on ${device}`, () => {
      const random = rng();
      const shape = { batch: 3, m: 9, n: 35, k: 17 };
      checkProduct(device, random, shape);
      checkProduct(device, random, shape, { broadcast: 'a', transA: true });
      checkProduct(device, random, shape, { broadcast: 'b', transB: true, alpha: 0.5, beta: 2 });
    });

    it(`returns beta * out when k is 0 or alpha is 0 on ${device}`, () => {
      const c = fromArray([1, 2, 3, 4], [2, 2], { device });
      matmul(full([2, 0], 1, { device }), full([0, 2], 1, { device }), { out: c, beta: 3 });
      expectIdentical(c.toArray(), [3, 6, 9, 12], `${device} k = 0`);
      const nan = fromArray(nanArray(4), [2, 2], { device });
      matmul(full([2, 3], 1, { device }), full([3, 2], 1, { device }), { out: nan, alpha: 0 });
      expectIdentical(nan.toArray(), [0, 0, 0, 0], `${device} alpha = 0, beta = 0 over NaN`);
    });
  }

  it('matches the reference on large cpu shapes (several k, row and column blocks)', () => {
    const random = rng();
    for (const shape of largeShapes) {
      checkProduct('cpu', random, shape, { beta: 0.25 });
      checkProduct('cpu', random, shape, { transA: true, transB: true });
    }
    checkProduct('cpu', random, { batch: 9, m: 40, n: 37, k: 300 }, { transB: true, broadcast: 'a' });
  });

  it('gives bit-identical cpu results on 1 and 2 threads', () => {
    const random = rng();
    const a = fromArray(randomArray(2 * 300 * 260, random), [2, 300, 260]);
    const b = fromArray(randomArray(260 * 190, random), [260, 190]);
    native.setNumThreads(1);
    const one = matmul(a, b).toArray();
    native.setNumThreads(2);
    const two = matmul(a, b).toArray();
    expectIdentical(two, one, '2 threads vs 1');
  });

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const random = rng();
      const cases: [Case, boolean][] = [
        [{ m: 70, n: 45, k: 90 }, false],
        [{ m: 130, n: 200, k: 20 }, false],
        [{ batch: 2, m: 33, n: 80, k: 40 }, true],
      ];
      for (const [{ batch, m, n, k }, bf16] of cases) {
        const dtype = bf16 ? 'bf16' : 'f32';
        const aData = randomArray((batch ?? 1) * m * k, random);
        const bData = randomArray((batch ?? 1) * k * n, random);
        const run = (d: DeviceType): Float32Array =>
          matmul(fromArray(aData, operandShape(batch, m, k), { device: d, dtype }), fromArray(bData, operandShape(batch, k, n), { device: d, dtype })).toArray();
        expectClose(run(device), run('cpu'), tolerance(k), `${device} vs cpu ${dtype}`);
      }
    });
  }

  for (const device of backends()) {
    it(`backward by the product rule matches finite differences on ${device}`, () => {
      const random = rng();
      const [m, n, k] = [5, 7, 6];
      const aData = Float64Array.from(randomArray(m * k, random));
      const bData = Float64Array.from(randomArray(k * n, random));
      const dcData = randomArray(m * n, random);
      const forward = (): Float64Array => ref.matmul(aData, bData, null, { batch: 1, m, n, k });
      const numericA = numericGradient(forward, aData, dcData);
      const numericB = numericGradient(forward, bData, dcData);
      const a = fromArray(Float32Array.from(aData), [m, k], { device });
      const b = fromArray(Float32Array.from(bData), [k, n], { device });
      const dc = fromArray(dcData, [m, n], { device });
      const da: Tensor<'f32'> = matmul(dc, b, { transB: true }); // dC B^T
      const db: Tensor<'f32'> = matmul(a, dc, { transA: true }); // A^T dC
      expectClose(da.toArray(), numericA, { rtol: 1e-4, atol: 1e-5 }, `${device} dA`);
      expectClose(db.toArray(), numericB, { rtol: 1e-4, atol: 1e-5 }, `${device} dB`);
    });
  }

  it('names the argument and the mismatching dims in errors', () => {
    const a = full([2, 3], 1);
    const b = full([3, 4], 1);
    expect(() => matmul(a, full([4, 4], 1))).toThrow(/matmul: inner dimensions differ: a \[2, 3\] has K 3, b \[4, 4\] has K 4/);
    expect(() => matmul(a, b, { transA: true })).toThrow(/matmul: inner dimensions differ: a \[2, 3\] \(transA\) has K 2, b \[3, 4\] has K 3/);
    expect(() => matmul(full([2, 2, 3], 1), full([3, 3, 4], 1))).toThrow(/matmul: batch sizes differ: a \[2, 2, 3\] has 2, b \[3, 3, 4\] has 3/);
    expect(() => matmul(full([3], 1), b)).toThrow(/matmul: a has 1 dims, expected 2 \[M, K\] or 3 \[batch, M, K\]/);
    expect(() => matmul(a, full([1, 1, 3, 4], 1))).toThrow(/matmul: b has 4 dims, expected 2 \[K, N\] or 3 \[batch, K, N\]/);
    expect(() => matmul(fromArray([1, 2, 3, 4, 5, 6], [2, 3], { dtype: 'i32' }) as never, b)).toThrow(/matmul: a has dtype i32, expected f32 or bf16/);
    expect(() => matmul(a, b, { out: full([2, 5], 0) })).toThrow(/matmul: out has shape \[2, 5\], expected \[2, 4\]/);
    expect(() => matmul(a, b, { out: full([2, 4], 0, { dtype: 'bf16' }) as never })).toThrow(/matmul: out has dtype bf16, expected f32/);
    expect(() => matmul(a, b, { beta: 1 })).toThrow(/matmul: beta is 1 but no out tensor was given/);
    expect(() => matmul(a, b, { alpha: Number.NaN })).toThrow(/matmul: alpha must be a number/);
    expect(() => matmul(a, null as never)).toThrow(/matmul: b must be a Tensor, got null/);
  });

  it('rejects what TS would have caught in the native binding too', () => {
    const a = full([2, 3], 1);
    expect(() => native.matmul(a.handle, full([4, 4], 1).handle, null, false, false, 1, 0)).toThrow(/matmul: inner dimensions differ/);
    expect(() => native.matmul(a.handle, full([3, 2], 1).handle, a.handle, false, false, 1, 0)).toThrow(/matmul: out must have shape \[2, 2\]/);
    const square = full([3, 3], 1);
    expect(() => native.matmul(square.handle, square.handle, square.handle, false, false, 1, 0)).toThrow(/matmul: out must not share memory with a or b/);
    expect(() => native.matmul(a.handle, full([3, 2], 1).handle, null, false, false, 1, 2)).toThrow(/matmul: beta is 2/);
    // An empty batch is a batch of 0, not a broadcast operand.
    expect(() => native.matmul(full([0, 2, 3], 1).handle, full([5, 3, 4], 1).handle, null, false, false, 1, 0)).toThrow(
      /matmul: batch sizes differ: a \[0, 2, 3\] has 0, b \[5, 3, 4\] has 5/,
    );
  });
});

describe('op matmul at the hardware grid limits', () => {
  for (const device of acceleratorBackends()) {
    it(`fails by name when op(a) has more row tiles than gridDim.y allows (65535) on ${device}`, () => {
      // Row tiles of 128 (the f32 kernel) and of 64 (the bf16 WMMA kernel): one row past 65535 of them.
      for (const [dtype, tile] of [['f32', 128], ['bf16', 64]] as const) {
        const rows = 65535 * tile + 1;
        const a = full([rows, 1], 1, { device, dtype });
        const b = full([1, 1], 1, { device, dtype });
        expect(() => matmul(a, b)).toThrow(
          new RegExp(String.raw`matmul: ${rows} rows of op\(a\) need 65536 row tiles of ${tile}, more than the 65535 of one launch \(gridDim\.y\)`),
        );
        a.dispose();
        b.dispose();
      }
    });
  }
});
