import { describe, expect, it } from 'vitest';
import { fromArray, type DType } from '../../lib/tensor.js';
import { permute, transpose } from '../../lib/ops/permute.js';
import * as ref from '../reference/permute.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectClose, expectIdentical, numericGradient, randomArray, rng, toF64 } from '../helpers.js';

checkMemoryGuards();

const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
// Transposes, copies of contiguous runs, size-1 axes, odd sizes and ones with > 64K elements.
const cases: Array<{ shape: number[]; perm: number[] }> = [
  { shape: [1], perm: [0] },
  { shape: [17, 127], perm: [1, 0] },
  { shape: [2, 3, 5, 7], perm: [0, 2, 1, 3] },
  { shape: [2, 3, 5, 7], perm: [3, 1, 0, 2] },
  { shape: [4, 1, 17, 3], perm: [2, 1, 3, 0] },
  { shape: [2, 2, 2, 2, 2, 2, 2, 3], perm: [7, 6, 5, 4, 3, 2, 1, 0] },
  { shape: [257, 259], perm: [1, 0] },
  { shape: [3, 4099], perm: [1, 0] },
  // Batched transposes with whole 32x32 tiles and ragged edges (the register-transpose path).
  { shape: [3, 70, 66], perm: [0, 2, 1] },
  { shape: [2, 64, 3, 96], perm: [0, 2, 3, 1] },
];

/** Values exactly representable in every dtype: small integers. */
function integers(n: number, random: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => Math.floor(random() * 200) - 100);
}

describe('op permute', () => {
  for (const device of backends()) {
    it(`matches the reference for f32, bf16 and i32 on ${device}`, () => {
      const random = rng();
      for (const { shape, perm } of cases) {
        for (const dtype of ['f32', 'bf16', 'i32'] as DType[]) {
          const x = dtype === 'f32' ? randomArray(size(shape), random) : integers(size(shape), random);
          const y = permute(fromArray(x, shape, { dtype, device }), perm);
          expect(y.shape).toEqual(perm.map((p) => shape[p]));
          expect(y.dtype).toBe(dtype);
          expectIdentical(y.toArray(), ref.permute(x, shape, perm), `${dtype} ${shape} by ${perm}`);
        }
      }
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu exactly`, () => {
      const random = rng();
      for (const { shape, perm } of cases.slice(0, 6)) {
        const x = randomArray(size(shape), random);
        const onCpu = permute(fromArray(x, shape), perm).toArray();
        expectIdentical(permute(fromArray(x, shape, { device }), perm).toArray(), onCpu, `${device} ${shape}`);
      }
    });
  }

  it('transpose swaps two axes, negative axes allowed', () => {
    const x = randomArray(2 * 3 * 4, rng());
    const y = transpose(fromArray(x, [2, 3, 4]), 0, -1);
    expect(y.shape).toEqual([4, 3, 2]);
    expectIdentical(y.toArray(), ref.permute(x, [2, 3, 4], [2, 1, 0]), 'transpose');
  });

  it('the backward (permute by the inverse) matches finite differences', () => {
    const random = rng();
    const shape = [2, 3, 4];
    const perm = [2, 0, 1];
    const x = toF64(randomArray(24, random));
    const dy = randomArray(24, random);
    const dx = permute(fromArray(dy, perm.map((p) => shape[p]!)), ref.inversePermutation(perm)).toArray();
    expectClose(dx, numericGradient(() => ref.permute(x, shape, perm), x, dy), { rtol: 1e-5, atol: 1e-6 }, 'dx');
  });

  it('names the argument in errors', () => {
    const x = fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(() => permute(x, [0])).toThrow(/permute: perm \[0\] has 1 entries, expected 2/);
    expect(() => permute(x, [1, 1])).toThrow(/permute: perm \[1, 1\] is not a permutation of 0..1/);
    expect(() => permute(x, [0, 2])).toThrow(/permute: axis 2 is out of range for 2 dims/);
    expect(() => transpose(x, 0, 5)).toThrow(/transpose: dim1 5 is out of range for 2 dims/);
    expect(() => permute(fromArray(new Float32Array(512), Array<number>(9).fill(2)), [0, 1, 2, 3, 4, 5, 6, 7, 8])).toThrow(
      /permute: x has 9 dims, at most 8 are supported/,
    );
  });
});
