import { describe, expect, it } from 'vitest';
import { fromArray } from '../../lib/tensor.js';
import { softmax, softmaxBackward } from '../../lib/ops/softmax.js';
import * as ref from '../reference/softmax.js';
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

checkMemoryGuards();

// [rows, cols]; cols 1000 and 4099 are not multiples of any vector width or warp tiling.
const shapes: [number, number][] = [[1, 1], [17, 1], [1, 17], [17, 127], [127, 33], [5, 1000], [3, 4099]];
const forwardTolerance = { rtol: 2e-5, atol: 1e-7 };

describe('op softmax', () => {
  for (const device of backends()) {
    it(`matches the float64 reference on ${device}`, () => {
      const random = rng();
      for (const [rows, cols] of shapes) {
        const x = randomArray(rows * cols, random, 8);
        const y = softmax(fromArray(x, [rows, cols], { device }));
        expect(y.shape).toEqual([rows, cols]);
        expectClose(y.toArray(), ref.softmax(x, rows, cols), forwardTolerance, `${device} softmax ${rows}x${cols}`);
      }
    });

    it(`works over the last axis of any rank on ${device}`, () => {
      const x = randomArray(2 * 3 * 17, rng(), 4);
      const y = softmax(fromArray(x, [2, 3, 17], { device }));
      expect(y.shape).toEqual([2, 3, 17]);
      expectClose(y.toArray(), ref.softmax(x, 6, 17), forwardTolerance, `${device} rank 3`);
      const scalar = softmax(fromArray([5], [], { device }));
      expect(Array.from(scalar.toArray())).toEqual([1]);
    });

    it(`is stable with large logits and -inf on ${device}`, () => {
      const cols = 37;
      const x = new Float32Array(4 * cols);
      const random = rng();
      for (let c = 0; c < cols; c++) {
        x[c] = 1000 - c; // large positive: exp would overflow without subtracting the max
        x[cols + c] = -1000 - c * random(); // large negative: exp would underflow to 0 everywhere
        x[2 * cols + c] = c % 3 === 0 ? -Infinity : random(); // masked entries
        x[3 * cols + c] = c === 5 ? 0 : -Infinity; // one live entry
      }
      const y = softmax(fromArray(x, [4, cols], { device })).toArray();
      expectClose(y, ref.softmax(x, 4, cols), forwardTolerance, `${device} extreme logits`);
      for (let c = 0; c < cols; c += 3) expect(y[2 * cols + c], '-inf gives exactly 0').toBe(0);
      expect(y[3 * cols + 5]).toBe(1);
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const random = rng();
      for (const [rows, cols] of [[17, 127], [3, 1000], [2, 4099]] as const) {
        const x = randomArray(rows * cols, random, 5);
        const onCpu = softmax(fromArray(x, [rows, cols])).toArray();
        const onDevice = softmax(fromArray(x, [rows, cols], { device })).toArray();
        expectClose(onDevice, onCpu, forwardTolerance, `${device} vs cpu ${rows}x${cols}`);
      }
    });
  }

  it('names the argument in errors', () => {
    expect(() => softmax(fromArray([1, 2], [2], { dtype: 'i32' }) as never)).toThrow(/softmax: x has dtype i32, expected f32/);
    expect(() => softmax([1, 2] as never)).toThrow(/softmax: x must be a Tensor, got an array/);
  });
});

describe('op softmax_backward', () => {
  it('the float64 reference backward matches finite differences of the forward', () => {
    const random = rng();
    for (const [rows, cols] of [[1, 1], [3, 17], [2, 40]] as const) {
      const x = toF64(randomArray(rows * cols, random, 3));
      const dy = randomArray(rows * cols, random);
      const numeric = numericGradient(() => ref.softmax(x, rows, cols), x, dy);
      expectClose(ref.softmaxBackward(ref.softmax(x, rows, cols), dy, rows, cols), numeric, { rtol: 1e-6, atol: 1e-8 }, 'reference');
    }
  });

  for (const device of backends()) {
    it(`matches finite differences and the reference on ${device}`, () => {
      const random = rng();
      for (const [rows, cols] of [[1, 1], [3, 17], [2, 40]] as const) {
        const x = randomArray(rows * cols, random, 3);
        const dy = randomArray(rows * cols, random);
        const x64 = toF64(x);
        const numeric = numericGradient(() => ref.softmax(x64, rows, cols), x64, dy);
        const y = softmax(fromArray(x, [rows, cols], { device }));
        const dx = softmaxBackward(y, fromArray(dy, [rows, cols], { device })).toArray();
        expectClose(dx, numeric, { rtol: 1e-4, atol: 1e-6 }, `${device} vs finite differences ${rows}x${cols}`);
      }
      for (const [rows, cols] of shapes) {
        const y = ref.softmax(randomArray(rows * cols, random, 4), rows, cols);
        const dy = randomArray(rows * cols, random);
        const yf = Float32Array.from(y);
        const dx = softmaxBackward(fromArray(yf, [rows, cols], { device }), fromArray(dy, [rows, cols], { device }));
        expectClose(dx.toArray(), ref.softmaxBackward(yf, dy, rows, cols), { rtol: 1e-4, atol: 1e-7 }, `${device} ${rows}x${cols}`);
      }
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const random = rng();
      const [rows, cols] = [17, 1000];
      const y = Float32Array.from(ref.softmax(randomArray(rows * cols, random, 4), rows, cols));
      const dy = randomArray(rows * cols, random);
      const onCpu = softmaxBackward(fromArray(y, [rows, cols]), fromArray(dy, [rows, cols])).toArray();
      const onDevice = softmaxBackward(fromArray(y, [rows, cols], { device }), fromArray(dy, [rows, cols], { device })).toArray();
      expectClose(onDevice, onCpu, { rtol: 1e-4, atol: 1e-7 }, `${device} vs cpu`);
    });
  }

  it('names the argument in errors', () => {
    const y = fromArray([0.5, 0.5]);
    expect(() => softmaxBackward(y, fromArray([1, 2, 3]))).toThrow(/softmaxBackward: dy has shape \[3\], expected \[2\]/);
    expect(() => softmaxBackward(y, fromArray([1, 2], [2], { dtype: 'i32' }) as never)).toThrow(/softmaxBackward: dy has dtype i32/);
  });
});
