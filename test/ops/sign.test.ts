import { describe, expect, it } from 'vitest';
import { sign } from '../../lib/ops/sign.js';
import { fromArray } from '../../lib/tensor.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectIdentical, randomArray, rng } from '../helpers.js';

checkMemoryGuards();

describe('op sign', () => {
  for (const device of backends()) {
    it(`gives -1, 0, 1 on ${device}`, () => {
      expectIdentical(sign(fromArray([-2, -0, 0, 3e-30, Number.NaN, -Infinity], [6], { device })).toArray(), new Float32Array([-1, 0, 0, 1, 0, -1]));
      const x = randomArray(70_001, rng());
      expectIdentical(sign(fromArray(x, [x.length], { device })).toArray(), Float32Array.from(x, (v) => Math.sign(v)), `n=${x.length}`);
    });
  }
  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu on odd sizes`, () => {
      const random = rng();
      for (const n of [1, 17, 127]) {
        const x = randomArray(n, random);
        expectIdentical(sign(fromArray(x, [n], { device })).toArray(), sign(fromArray(x)).toArray(), `n=${n}`);
      }
    });
  }
  it('rejects non-f32 input', () => {
    expect(() => sign(fromArray([1], [1], { dtype: 'i32' }) as never)).toThrow(/sign: x has dtype i32, expected f32/);
  });
});
