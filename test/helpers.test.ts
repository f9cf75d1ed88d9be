// The test machinery itself: a comparison that accepts anything, or a finite-difference
// gradient that agrees with a wrong one, would let every test that uses it pass.
import { describe, expect, it } from 'vitest';
import { expectClose, expectIdentical, numericGradient, randomArray, rng, testSeed, toF64 } from './helpers.js';

describe('expectClose', () => {
  it('accepts values within atol + rtol |expected| and rejects one just outside', () => {
    expectClose([1.00001, -2, 0], [1, -2.00002, 5e-7], { rtol: 1e-5, atol: 1e-6 }, 'inside');
    expect(() => expectClose([1, 1.0001], [1, 1], { rtol: 1e-5, atol: 1e-6 }, 'outside')).toThrow(/outside: element 1 is 1\.0001, expected 1 .*1 of 2 elements out of tolerance/);
    expect(() => expectClose([0, 2e-6], [0, 0], { rtol: 0, atol: 1e-6 }, 'atol')).toThrow(/atol: element 1/);
  });

  it('reports the worst element and the number out of tolerance', () => {
    expect(() => expectClose([1.1, 5, 3.2], [1, 2, 3], { rtol: 0, atol: 0.01 }, 'worst')).toThrow(/worst: element 1 is 5, expected 2 .*3 of 3 elements out of tolerance/);
  });

  it('rejects NaN unless NaN is expected there', () => {
    expect(() => expectClose([Number.NaN], [1], {}, 'nan')).toThrow(/nan: element 0 is NaN, expected 1/);
    expect(() => expectClose([1], [Number.NaN], {}, 'want nan')).toThrow(/want nan: element 0 is 1, expected NaN/);
    expectClose([Number.NaN, 1], [Number.NaN, 1], {}, 'both NaN');
  });

  it('matches an infinite expected value only with the same infinity', () => {
    expectClose([Infinity, -Infinity, 2], [Infinity, -Infinity, 2], { rtol: 1e-3 }, 'same infinities');
    for (const [actual, expected] of [
      [1e30, Infinity],
      [0, Infinity],
      [-Infinity, Infinity],
      [Infinity, -Infinity],
      [-3.4e38, -Infinity],
      [Number.NaN, Infinity],
      [Infinity, 3.4e38],
    ] as const) {
      expect(() => expectClose([actual], [expected], { rtol: 1e-3, atol: 1 }, 'inf'), `${actual} vs ${expected}`).toThrow(/inf: element 0 is/);
    }
  });

  it('rejects a length mismatch', () => {
    expect(() => expectClose([1, 2], [1, 2, 3], {}, 'short')).toThrow(/short: length/);
  });
});

describe('expectIdentical', () => {
  it('compares with Object.is: -0 is not 0, NaN is NaN', () => {
    expectIdentical([Number.NaN, -0, Infinity], [Number.NaN, -0, Infinity], 'same');
    expect(() => expectIdentical([0], [-0], 'zero')).toThrow(/zero: element 0 is 0, expected exactly 0/);
    expect(() => expectIdentical([1 + 2 ** -52], [1], 'ulp')).toThrow(/ulp: element 0/);
    expect(() => expectIdentical([1], [1, 2], 'length')).toThrow(/length: length/);
  });
});

describe('rng and randomArray', () => {
  it('one seed is one stream; other seeds and later draws differ', () => {
    const a = randomArray(64, rng(testSeed));
    expectIdentical(randomArray(64, rng(testSeed)), a, 'same seed');
    const shared = rng(testSeed);
    const first = randomArray(64, shared);
    const second = randomArray(64, shared);
    expectIdentical(first, a, 'first draw of the stream');
    expect(second.some((v, i) => v !== first[i]), 'a shared stream moves on').toBe(true);
    const other = randomArray(64, rng(testSeed + 1));
    expect(other.some((v, i) => v !== a[i]), 'another seed').toBe(true);
  });

  it('draws uniformly in [-scale, scale)', () => {
    const x = randomArray(10_000, rng(), 3);
    expect(x.every((v) => v >= -3 && v < 3)).toBe(true);
    const mean = x.reduce((s, v) => s + v, 0) / x.length;
    expect(Math.abs(mean)).toBeLessThan(0.1);
    expect(Math.min(...x)).toBeLessThan(-2.9);
    expect(Math.max(...x)).toBeGreaterThan(2.9);
  });
});

describe('numericGradient', () => {
  // f(x)_i = sin(x_i) x_{i+1} (cyclic): df/dx couples neighbours, so a gradient that drops the
  // cross term or swaps the neighbours is wrong.
  const f = (x: Float64Array): Float64Array => Float64Array.from(x, (v, i) => Math.sin(v) * x[(i + 1) % x.length]!);
  const analytic = (x: Float64Array, dy: ArrayLike<number>, { crossTerm = true, shift = 1 } = {}): Float64Array => {
    const n = x.length;
    return Float64Array.from(x, (v, i) => {
      const own = Math.cos(v) * x[(i + 1) % n]! * dy[i]!;
      const prev = (i - shift + n) % n;
      return own + (crossTerm ? Math.sin(x[prev]!) * dy[prev]! : 0);
    });
  };

  it('matches the analytic gradient of sum(f(x) * dy)', () => {
    const random = rng();
    const x = toF64(randomArray(9, random));
    const dy = randomArray(9, random);
    const saved = Float64Array.from(x);
    const numeric = numericGradient(() => f(x), x, dy);
    expectIdentical(x, saved, 'x is restored after each perturbation');
    expectClose(numeric, analytic(x, dy), { rtol: 1e-7, atol: 1e-8 }, 'gradient');
  });

  it('rejects a wrong gradient: a missing term, a wrong neighbour, a wrong scale, a wrong sign', () => {
    const random = rng();
    const x = toF64(randomArray(9, random));
    const dy = randomArray(9, random);
    const numeric = numericGradient(() => f(x), x, dy);
    const right = analytic(x, dy);
    const wrong: Record<string, Float64Array> = {
      'missing cross term': analytic(x, dy, { crossTerm: false }),
      'wrong neighbour': analytic(x, dy, { shift: -1 }),
      'scaled by 1.01': right.map((v) => v * 1.01),
      'one element negated': right.map((v, i) => (i === 4 ? -v : v)),
    };
    for (const [name, gradient] of Object.entries(wrong)) {
      expect(() => expectClose(gradient, numeric, { rtol: 1e-5, atol: 1e-6 }, name), name).toThrow(new RegExp(`${name}: element \\d+`));
    }
  });
});
