import { describe, expect, it } from 'vitest';
import { fromArray } from '../../lib/tensor.js';
import { cast } from '../../lib/ops/cast.js';
import * as ref from '../reference/cast.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectIdentical, randomArray, rng } from '../helpers.js';

checkMemoryGuards();

// Halfway cases (a tie to even rounds down from an even bf16, up from an odd one), just above
// and below a tie, overflow to infinity, infinities, signed zeros, subnormals and NaN.
const special = [
  ref.f32FromBits(0x3f808000), // 1 + 2^-8: tie, 0x3f80 is even -> 1
  ref.f32FromBits(0x3f818000), // tie, 0x3f81 is odd -> 0x3f82
  ref.f32FromBits(0x3f808001), // just above a tie -> up
  ref.f32FromBits(0x3f807fff), // just below a tie -> down
  ref.f32FromBits(0xbf818000), // negative tie -> away from zero to the even 0xbf82
  ref.f32FromBits(0x7f7fffff), // the largest float rounds to infinity
  Infinity,
  -Infinity,
  0,
  -0,
  ref.f32FromBits(0x00000001),
  Number.NaN,
];

describe('op cast', () => {
  for (const device of backends()) {
    it(`f32 -> bf16 rounds to nearest, ties to even, and keeps NaN on ${device}`, () => {
      const random = rng();
      const x = Float32Array.from([...special, ...randomArray(4099, random, 100)]);
      const y = cast(fromArray(x, [x.length], { device }), 'bf16');
      expect(y.dtype).toBe('bf16');
      expectIdentical(y.toArray(), Array.from(x, ref.roundToBf16), 'f32 -> bf16');
      expectIdentical(cast(y, 'f32').toArray(), Array.from(x, ref.roundToBf16), 'bf16 -> f32 is exact');
    });

    it(`i32 <-> f32 and bf16 -> i32 on ${device}`, () => {
      const ints = Int32Array.from([0, 1, -1, 16_777_217, -16_777_219, 2_147_483_647, -2_147_483_648, 123_456_789]);
      const asF32 = cast(fromArray(ints, [ints.length], { dtype: 'i32', device }), 'f32');
      expectIdentical(asF32.toArray(), Array.from(ints, Math.fround), 'i32 -> f32');
      const floats = Float32Array.from([0.5, -0.5, 1.99, -1.99, 3e9, -3e9, Number.NaN, Infinity, -Infinity, 2_147_483_520, 17.25]);
      const asI32 = cast(fromArray(floats, [floats.length], { device }), 'i32');
      expect(asI32.dtype).toBe('i32');
      expectIdentical(asI32.toArray(), Array.from(floats, ref.toI32), 'f32 -> i32 truncates, saturates, NaN -> 0');
      const viaBf16 = cast(cast(fromArray(floats, [floats.length], { device }), 'bf16'), 'i32');
      expectIdentical(viaBf16.toArray(), Array.from(floats, (v) => ref.toI32(ref.roundToBf16(v))), 'bf16 -> i32');
      const intsToBf16 = cast(fromArray(ints, [ints.length], { dtype: 'i32', device }), 'bf16');
      expectIdentical(intsToBf16.toArray(), Array.from(ints, (v) => ref.roundToBf16(Math.fround(v))), 'i32 -> bf16');
    });

    it(`a cast to the same dtype is a copy on ${device}`, () => {
      const x = fromArray([1, 2, 3], [3], { dtype: 'i32', device });
      const y = cast(x, 'i32');
      expect(y).not.toBe(x);
      expectIdentical(y.toArray(), [1, 2, 3], 'i32 copy');
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu bit for bit on > 64K elements`, () => {
      const x = randomArray(70_001, rng(), 1e6);
      for (const to of ['bf16', 'i32'] as const) {
        const onCpu = cast(fromArray(x), to).toArray();
        expectIdentical(cast(fromArray(x, [x.length], { device }), to).toArray(), onCpu, `${device} f32 -> ${to}`);
      }
    });
  }

  it('names the argument in errors', () => {
    expect(() => cast(fromArray([1]), 'f16' as never)).toThrow(/cast: dtype must be 'f32', 'bf16' or 'i32', got "f16"/);
    expect(() => cast([1] as never, 'f32')).toThrow(/cast: x must be a Tensor, got an array/);
  });
});
