// The network-free measures against float64 hand computations and closed forms: the Jacobi
// eigensolver, the Fréchet distance, hue, sharpness, channel-mean drift and the degradations.
import { describe, expect, it } from 'vitest';
import {
  addNoise,
  blurImage,
  channelMeanDrift,
  frechetDistance,
  frechetDistanceInfinity,
  hueDistance,
  meanHue,
  meanSharpness,
  setMeanHue,
  sharpness,
  shiftColor,
  symmetricEigen,
  type FeatureMatrix,
} from '../../lib/eval/metrics.js';
import { fromArray } from '../../lib/tensor.js';
import { checkMemoryGuards, expectClose, randomArray, rng, testSeed } from '../helpers.js';

checkMemoryGuards();

// ---------------------------------------------------------------------------------------------
// Test images

type Rgb = [number, number, number];

/** A CHW image in [-1, 1] whose pixel (x, y) has colour f(x, y), given in [0, 1]. */
function image(height: number, width: number, f: (x: number, y: number) => Rgb): Float32Array {
  const plane = height * width;
  const out = new Float32Array(3 * plane);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const rgb = f(x, y);
      for (let c = 0; c < 3; c++) out[c * plane + y * width + x] = rgb[c]! * 2 - 1;
    }
  }
  return out;
}

const solid = (rgb: Rgb, size = 8) => image(size, size, () => rgb);
const red: Rgb = [1, 0, 0];
const green: Rgb = [0, 1, 0];
const blue: Rgb = [0, 0, 1];

function randomImage(height: number, width: number, random: () => number): Float32Array {
  return randomArray(3 * height * width, random);
}

/** Python colorsys.rgb_to_hsv, in degrees, for reference. */
function hsv([r, g, b]: Rgb): { hue: number; saturation: number } {
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  if (max === min) return { hue: 0, saturation: 0 };
  const range = max - min;
  const rc = (max - r) / range;
  const gc = (max - g) / range;
  const bc = (max - b) / range;
  const h = r === max ? bc - gc : g === max ? 2 + rc - bc : 4 + gc - rc;
  return { hue: ((((h / 6) % 1) + 1) % 1) * 360, saturation: range / max };
}

function pixel(data: Float32Array, plane: number, i: number): Rgb {
  return [(data[i]! + 1) / 2, (data[plane + i]! + 1) / 2, (data[2 * plane + i]! + 1) / 2];
}

function angleBetween(a: number, b: number): number {
  const d = Math.abs(a - b) % 360;
  return d > 180 ? 360 - d : d;
}

// ---------------------------------------------------------------------------------------------
// Eigensolver

/** max |V diag(values) V^T - A| and max |V^T V - I|. */
function eigenResiduals(a: Float64Array, n: number, values: Float64Array, vectors: Float64Array): { reconstruction: number; orthonormality: number } {
  let reconstruction = 0;
  let orthonormality = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      let dot = 0;
      for (let k = 0; k < n; k++) {
        sum += vectors[i * n + k]! * values[k]! * vectors[j * n + k]!;
        dot += vectors[k * n + i]! * vectors[k * n + j]!;
      }
      reconstruction = Math.max(reconstruction, Math.abs(sum - a[i * n + j]!));
      orthonormality = Math.max(orthonormality, Math.abs(dot - (i === j ? 1 : 0)));
    }
  }
  return { reconstruction, orthonormality };
}

function randomSymmetric(n: number, random: () => number): Float64Array {
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) a[i * n + j] = a[j * n + i] = random() * 2 - 1;
  return a;
}

/** A random orthogonal matrix (the eigenvectors of a random symmetric one). */
function randomRotation(n: number, random: () => number): Float64Array {
  return symmetricEigen(randomSymmetric(n, random), n).vectors;
}

/** Q diag(values) Q^T. */
function withSpectrum(q: Float64Array, values: number[]): Float64Array {
  const n = values.length;
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) a[i * n + j]! += q[i * n + k]! * values[k]! * q[j * n + k]!;
  return a;
}

describe('symmetricEigen', () => {
  it('[[2, 1], [1, 2]]: eigenvalues 1 and 3 with eigenvectors (1, -1) and (1, 1) / sqrt 2', () => {
    const { values, vectors } = symmetricEigen([2, 1, 1, 2], 2);
    expectClose(values, [1, 3], { atol: 1e-15 }, 'values');
    const s = Math.SQRT1_2;
    expect(Math.abs(vectors[0]! * s - vectors[2]! * s), 'first vector along (1, -1)').toBeCloseTo(1, 14);
    expect(Math.abs(vectors[1]! * s + vectors[3]! * s), 'second vector along (1, 1)').toBeCloseTo(1, 14);
  });

  it('the tridiagonal [1 4 1] matrix: eigenvalues 4 + 2 cos(k pi / (n + 1))', () => {
    const n = 7;
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      a[i * n + i] = 4;
      if (i + 1 < n) a[i * n + i + 1] = a[(i + 1) * n + i] = 1;
    }
    const expected = Array.from({ length: n }, (_, k) => 4 + 2 * Math.cos(((k + 1) * Math.PI) / (n + 1))).sort((x, y) => x - y);
    const { values, vectors } = symmetricEigen(a, n);
    expectClose(values, expected, { atol: 1e-14 }, 'values');
    const residuals = eigenResiduals(a, n, values, vectors);
    expect(residuals.reconstruction).toBeLessThan(1e-13);
    expect(residuals.orthonormality).toBeLessThan(1e-14);
  });

  it('a diagonal matrix: sorted values, a permutation for vectors; the input is not modified', () => {
    const a = Float64Array.from([3, 0, 0, 0, -1, 0, 0, 0, 2]);
    const copy = a.slice();
    const { values, vectors } = symmetricEigen(a, 3);
    expect([...values]).toEqual([-1, 2, 3]);
    expect([...vectors].map(Math.abs)).toEqual([0, 0, 1, 1, 0, 0, 0, 1, 0]);
    expect(a).toEqual(copy);
  });

  it('repeated and zero eigenvalues (a rank-deficient covariance) are found with an orthonormal basis', () => {
    const random = rng(testSeed + 1);
    const spectrum = [0, 0, 1, 1, 2.5, 2.5, 2.5, 1e-12];
    const n = spectrum.length;
    const a = withSpectrum(randomRotation(n, random), spectrum);
    const { values, vectors } = symmetricEigen(a, n);
    expectClose(values, [...spectrum].sort((x, y) => x - y), { atol: 1e-14 }, 'values');
    const residuals = eigenResiduals(a, n, values, vectors);
    expect(residuals.reconstruction).toBeLessThan(1e-13);
    expect(residuals.orthonormality).toBeLessThan(1e-13);
  });

  it(`random symmetric matrices 1x1 .. 40x40 (seed ${testSeed}): A = V diag V^T, V orthonormal, ascending, trace kept`, () => {
    const random = rng();
    for (let n = 1; n <= 40; n++) {
      const a = randomSymmetric(n, random);
      const { values, vectors } = symmetricEigen(a, n);
      const residuals = eigenResiduals(a, n, values, vectors);
      expect(residuals.reconstruction, `n = ${n}: reconstruction`).toBeLessThan(1e-12 * n);
      expect(residuals.orthonormality, `n = ${n}: orthonormality`).toBeLessThan(1e-12 * n);
      for (let k = 1; k < n; k++) expect(values[k]!, `n = ${n}: ascending`).toBeGreaterThanOrEqual(values[k - 1]!);
      let trace = 0;
      for (let i = 0; i < n; i++) trace += a[i * n + i]!;
      expect(values.reduce((s, v) => s + v, 0), `n = ${n}: trace`).toBeCloseTo(trace, 10);
    }
  });

  it('refuses a bad size, a non-symmetric matrix and non-finite values, naming them', () => {
    expect(() => symmetricEigen([1, 2, 3], 2)).toThrow('symmetricEigen: matrix has 3 values, expected n * n = 4');
    expect(() => symmetricEigen([], 0)).toThrow('symmetricEigen: n must be an integer >= 1, got 0');
    expect(() => symmetricEigen([1, 2, 3, 4], 2)).toThrow('symmetricEigen: matrix is not symmetric: (0, 1) is 2, (1, 0) is 3');
    expect(() => symmetricEigen([1, NaN, NaN, 1], 2)).toThrow('symmetricEigen: matrix element (0, 1) is NaN, expected a finite number');
  });
});

// ---------------------------------------------------------------------------------------------
// Fréchet distance

function features(rows: number[][]): FeatureMatrix {
  return { data: Float64Array.from(rows.flat()), count: rows.length, dim: rows[0]!.length };
}

function randomFeatures(count: number, dim: number, random: () => number, shift = 0): FeatureMatrix {
  const data = new Float32Array(count * dim);
  for (let i = 0; i < data.length; i++) data[i] = (random() * 2 - 1) * (1 + (i % dim) / dim) + shift;
  return { data, count, dim };
}

/** Each row times the orthogonal q, plus offset: a rigid motion of the whole set. */
function moved({ data, count, dim }: FeatureMatrix, q: Float64Array, offset: number[]): FeatureMatrix {
  const out = new Float64Array(count * dim);
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < dim; j++) {
      let sum = offset[j]!;
      for (let k = 0; k < dim; k++) sum += data[i * dim + k]! * q[k * dim + j]!;
      out[i * dim + j] = sum;
    }
  }
  return { data: out, count, dim };
}

/**
 * The set {mean +- spread_j e_j}: its sample mean is `mean` and its unbiased covariance is exactly
 * diagonal, 2 spread_j^2 / (2 dim - 1).
 */
function axisSet(mean: number[], spread: number[]): { features: FeatureMatrix; variances: number[] } {
  const dim = mean.length;
  const rows: number[][] = [];
  for (let j = 0; j < dim; j++) {
    for (const sign of [1, -1]) rows.push(mean.map((m, k) => (k === j ? m + sign * spread[j]! : m)));
  }
  return { features: features(rows), variances: spread.map((s) => (2 * s * s) / (2 * dim - 1)) };
}

/** Sample mean and unbiased covariance of 2-D features, in float64. */
function statistics2d({ data, count }: FeatureMatrix): { mean: [number, number]; c: [number, number, number] } {
  let mx = 0;
  let my = 0;
  for (let i = 0; i < count; i++) {
    mx += data[2 * i]! / count;
    my += data[2 * i + 1]! / count;
  }
  let xx = 0;
  let xy = 0;
  let yy = 0;
  for (let i = 0; i < count; i++) {
    const dx = data[2 * i]! - mx;
    const dy = data[2 * i + 1]! - my;
    xx += (dx * dx) / (count - 1);
    xy += (dx * dy) / (count - 1);
    yy += (dy * dy) / (count - 1);
  }
  return { mean: [mx, my], c: [xx, xy, yy] };
}

describe('frechetDistance', () => {
  it(`is 0 for identical sets, also rank-deficient ones (fewer samples than dims) (seed ${testSeed})`, () => {
    const random = rng(testSeed + 2);
    for (const [count, dim] of [[50, 8], [5, 12], [2, 1]] as const) {
      const a = randomFeatures(count, dim, random);
      expect(frechetDistance(a, a), `count ${count}, dim ${dim}`).toBeLessThan(1e-9);
      expect(frechetDistance(a, { ...a, data: Float64Array.from(a.data) }), `count ${count}, dim ${dim}, float64 copy`).toBeLessThan(1e-9);
    }
  });

  it('diagonal covariances: |dm|^2 + sum (sqrt a - sqrt b)^2', () => {
    const a = axisSet([0.5, -1, 2, 0], [1, 2, 0.5, 3]);
    const b = axisSet([1.5, 1, 2, -0.25], [2, 2, 0.1, 1]);
    const meanTerm = 1 + 4 + 0 + 0.0625;
    const covarianceTerm = a.variances.reduce((s, va, j) => s + (Math.sqrt(va) - Math.sqrt(b.variances[j]!)) ** 2, 0);
    expect(frechetDistance(a.features, b.features)).toBeCloseTo(meanTerm + covarianceTerm, 12);
  });

  it('one dimension: (ma - mb)^2 + (sa - sb)^2', () => {
    const a = features([[1], [2], [4], [7]]);
    const b = features([[0], [0], [3], [-1]]);
    const ma = 3.5;
    const mb = 0.5;
    const sa = Math.sqrt((6.25 + 2.25 + 0.25 + 12.25) / 3);
    const sb = Math.sqrt((0.25 + 0.25 + 6.25 + 2.25) / 3);
    expect(frechetDistance(a, b)).toBeCloseTo((ma - mb) ** 2 + (sa - sb) ** 2, 12);
  });

  it(`two dimensions, correlated, non-commuting covariances: the closed form tr sqrt(CA CB) = sqrt(tr(CA CB) + 2 sqrt(det CA det CB)) (seed ${testSeed})`, () => {
    const random = rng(testSeed + 3);
    for (let trial = 0; trial < 5; trial++) {
      const correlated = (mix: number, shift: number): FeatureMatrix => {
        const data = new Float64Array(2 * 40);
        for (let i = 0; i < 40; i++) {
          const u = random() * 2 - 1;
          const v = random() * 2 - 1;
          data[2 * i] = u + shift;
          data[2 * i + 1] = mix * u + (1 - Math.abs(mix)) * v;
        }
        return { data, count: 40, dim: 2 };
      };
      const a = correlated(0.8, 0);
      const b = correlated(-0.5, 0.3 * trial);
      const sa = statistics2d(a);
      const sb = statistics2d(b);
      const [axx, axy, ayy] = sa.c;
      const [bxx, bxy, byy] = sb.c;
      const traceProduct = axx * bxx + 2 * axy * bxy + ayy * byy;
      const detA = axx * ayy - axy * axy;
      const detB = bxx * byy - bxy * bxy;
      const expected =
        (sa.mean[0] - sb.mean[0]) ** 2 + (sa.mean[1] - sb.mean[1]) ** 2 + axx + ayy + bxx + byy - 2 * Math.sqrt(traceProduct + 2 * Math.sqrt(detA * detB));
      expect(frechetDistance(a, b), `trial ${trial}`).toBeCloseTo(expected, 11);
    }
  });

  it(`is symmetric, and unchanged when both sets are rotated and shifted alike (seed ${testSeed})`, () => {
    const random = rng(testSeed + 4);
    const dim = 10;
    const a = randomFeatures(60, dim, random);
    const b = randomFeatures(60, dim, random, 0.2);
    const distance = frechetDistance(a, b);
    expect(distance).toBeGreaterThan(0.1);
    expect(frechetDistance(b, a)).toBeCloseTo(distance, 11);
    const q = randomRotation(dim, random);
    const offset = Array.from({ length: dim }, () => random() * 4 - 2);
    expect(frechetDistance(moved(a, q, offset), moved(b, q, offset))).toBeCloseTo(distance, 9);
  });

  it('grows with the shift of the mean exactly as |dm|^2', () => {
    const random = rng(testSeed + 5);
    const a = randomFeatures(30, 4, random);
    const shifted = (d: number): FeatureMatrix => ({ ...a, data: Float64Array.from(a.data, (v, i) => (i % 4 === 1 ? v + d : v)) });
    for (const d of [0.5, 1, 3]) expect(frechetDistance(a, shifted(d))).toBeCloseTo(d * d, 9);
  });

  it('refuses sets of different sizes or dims, fewer than 2 samples, bad lengths, non-finite values and non-matrices', () => {
    const random = rng(testSeed + 6);
    const a = randomFeatures(10, 3, random);
    expect(() => frechetDistance(a, randomFeatures(11, 3, random))).toThrow(
      'frechetDistance: featuresA has 10 samples, featuresB has 11; expected equal counts (the estimate is biased by the count',
    );
    expect(() => frechetDistance(a, randomFeatures(10, 4, random))).toThrow('frechetDistance: featuresA has dim 3, featuresB has dim 4; expected the same feature space');
    expect(() => frechetDistance(features([[1, 2]]), features([[1, 2]]))).toThrow('frechetDistance: featuresA.count must be an integer >= 2 (a covariance needs two samples), got 1');
    expect(() => frechetDistance(a, { data: new Float32Array(29), count: 10, dim: 3 })).toThrow(
      'frechetDistance: featuresB.data has 29 values, expected count x dim = 10 x 3 = 30',
    );
    expect(() => frechetDistance(a, { ...a, dim: 0 })).toThrow('frechetDistance: featuresB.dim must be an integer >= 1, got 0');
    const poisoned = Float32Array.from(a.data);
    poisoned[7] = NaN;
    expect(() => frechetDistance({ ...a, data: poisoned }, a)).toThrow('frechetDistance: featuresA.data[7] (sample 2, feature 1) is NaN, expected a finite number');
    expect(() => frechetDistance(a, { data: [1, 2, 3], count: 1, dim: 3 } as unknown as FeatureMatrix)).toThrow(
      'frechetDistance: featuresB must be { data: Float32Array | Float64Array, count, dim }, got Object',
    );
  });
});

describe('frechetDistanceInfinity', () => {
  it(`removes the sample-size bias: about 0 for two samples of one distribution, about |dm|^2 for a shifted one, where FD at the set size is biased up (seed ${testSeed})`, () => {
    const random = rng(testSeed + 7);
    const [dim, count, trials] = [24, 256, 4];
    for (const shift of [0, 0.2]) {
      const truth = dim * shift * shift;
      let plain = 0;
      let extrapolated = 0;
      for (let trial = 0; trial < trials; trial++) {
        const a = randomFeatures(count, dim, random);
        const b = randomFeatures(count, dim, random, shift);
        const fd = frechetDistance(a, b);
        const { fdInfinity, slope, points } = frechetDistanceInfinity(a, b);
        plain += fd / trials;
        extrapolated += fdInfinity / trials;
        expect(slope, 'the bias shrinks with the count').toBeGreaterThan(0);
        expect(points.map((p) => p.count)).toEqual([64, 72, 81, 94, 112, 138, 179, 256]);
        expect(points.at(-1), 'the last point is the whole sets').toEqual({ count, fd });
      }
      // Over 40 seeds the worst miss was 0.24 of the bias.
      expect(plain - truth, `shift ${shift}: the bias FD at ${count} carries`).toBeGreaterThan(0.5);
      expect(Math.abs(extrapolated - truth), `shift ${shift}: FD-infinity ${extrapolated} against ${truth}, FD ${plain}`).toBeLessThan(0.35 * (plain - truth));
    }
  });

  it('is the intercept of the least-squares line through its points, and the same for the same seed', () => {
    const random = rng(testSeed + 8);
    const a = randomFeatures(64, 4, random);
    const b = randomFeatures(64, 4, random, 0.5);
    const fit = frechetDistanceInfinity(a, b, { sizes: 5, minCount: 16, seed: 3 });
    expect(fit.points.map((p) => p.count)).toEqual([16, 20, 26, 37, 64]);
    for (const p of fit.points) expect(p.fd, `the line passes near the point at ${p.count}`).toBeCloseTo(fit.fdInfinity + fit.slope / p.count, -1);
    const n = fit.points.length;
    const xs = fit.points.map((p) => 1 / p.count);
    const mx = xs.reduce((s, x) => s + x, 0) / n;
    const my = fit.points.reduce((s, p) => s + p.fd, 0) / n;
    const slope = fit.points.reduce((s, p, i) => s + (xs[i]! - mx) * (p.fd - my), 0) / xs.reduce((s, x) => s + (x - mx) ** 2, 0);
    expect(fit.slope).toBeCloseTo(slope, 9);
    expect(fit.fdInfinity).toBeCloseTo(my - slope * mx, 9);
    expect(frechetDistanceInfinity(a, b, { sizes: 5, minCount: 16, seed: 3 })).toEqual(fit);
  });

  it('refuses sets of different sizes and bad sizes, minCount or repeats, naming the argument', () => {
    const random = rng(testSeed + 9);
    const a = randomFeatures(20, 3, random);
    expect(() => frechetDistanceInfinity(a, randomFeatures(21, 3, random))).toThrow('frechetDistanceInfinity: featuresA has 20 samples, featuresB has 21; expected equal counts');
    expect(() => frechetDistanceInfinity(a, a, { sizes: 1 })).toThrow('frechetDistanceInfinity: sizes must be an integer >= 2 (a line needs two points), got 1');
    expect(() => frechetDistanceInfinity(a, a, { minCount: 20 })).toThrow('frechetDistanceInfinity: minCount must be an integer in [2, 19] (below the sets\' 20 samples), got 20');
    expect(() => frechetDistanceInfinity(a, a, { repeats: 0 })).toThrow('frechetDistanceInfinity: repeats must be an integer >= 1, got 0');
    expect(() => frechetDistanceInfinity(randomFeatures(12, 12, random), randomFeatures(12, 12, random))).toThrow(
      'frechetDistanceInfinity: the sets have 12 samples of 12 features; expected more than 13 (subsets need more samples than features), or pass minCount',
    );
    expect(() => frechetDistanceInfinity({ ...a, count: 7 }, a)).toThrow('frechetDistanceInfinity: featuresA.data has 60 values, expected count x dim = 7 x 3 = 21');
  });
});

// ---------------------------------------------------------------------------------------------
// Hue

describe('meanHue, setMeanHue and hueDistance', () => {
  it('a red set against itself is 0; red against green and blue is 120; red against cyan is 180', () => {
    const reds = [solid(red), solid([0.8, 0.1, 0.1])];
    expect(hueDistance(reds, reds)).toBe(0);
    expect(hueDistance(reds, [solid(green)])).toBeCloseTo(120, 10);
    expect(hueDistance([solid(blue)], reds)).toBeCloseTo(120, 10);
    expect(hueDistance(reds, [solid([0, 1, 1])])).toBeCloseTo(180, 10);
    expect(meanHue(solid(green))).toBeCloseTo(120, 10);
    expect(meanHue(solid([1, 0, 1]))).toBeCloseTo(300, 10);
  });

  it('the distance is the short way round the circle: 350 degrees against 10 is 20', () => {
    const hueOf = (degrees: number): Rgb => {
      // A fully saturated colour of the given hue (HSV with s = v = 1).
      const f = (n: number) => {
        const k = (n + degrees / 60) % 6;
        return 1 - Math.max(0, Math.min(k, 4 - k, 1));
      };
      return [f(5), f(3), f(1)];
    };
    // Float32 pixels hold the colours to about 1e-7, so the hues to about 1e-5 degrees.
    expect(meanHue(solid(hueOf(350)))).toBeCloseTo(350, 4);
    expect(hueDistance([solid(hueOf(350))], [solid(hueOf(10))])).toBeCloseTo(20, 4);
  });

  it('grey pixels do not vote, whatever their level; an all-grey image has no hue', () => {
    const mostlyGrey = image(10, 10, (x, y) => (x === 3 && y < 2 ? green : [x / 10, x / 10, x / 10]));
    expect(meanHue(mostlyGrey)).toBeCloseTo(120, 10);
    expect(hueDistance([mostlyGrey], [solid(green)])).toBeCloseTo(0, 10);
    expect(meanHue(image(6, 6, (x) => [x / 6, x / 6, x / 6]))).toBeUndefined();
    expect(meanHue(solid([0, 0, 0]))).toBeUndefined();
  });

  it('pixels vote by saturation: pure red with half-saturated green, by hand', () => {
    const half = image(4, 4, (x) => (x < 2 ? red : [0.5, 1, 0.5]));
    const radians = Math.atan2(0.5 * Math.sin((2 * Math.PI) / 3), 1 + 0.5 * Math.cos((2 * Math.PI) / 3));
    expect(meanHue(half)).toBeCloseTo((radians * 180) / Math.PI, 10);
  });

  it('images vote once each, whatever their size or saturation; grey images do not vote', () => {
    const faintYellow = solid([0.55, 0.55, 0.5], 3);
    const set = [solid(red, 16), faintYellow, solid([0.4, 0.4, 0.4])];
    expect(setMeanHue(set)).toBeCloseTo(30, 10);
    expect(hueDistance(set, [solid(red)])).toBeCloseTo(30, 10);
  });

  it(`random images: the saturation-weighted circular mean of colorsys hues, by hand in float64 (seed ${testSeed})`, () => {
    const random = rng(testSeed + 7);
    for (let trial = 0; trial < 4; trial++) {
      const size = 5 + trial * 3;
      const data = randomImage(size, size, random);
      let x = 0;
      let y = 0;
      for (let i = 0; i < size * size; i++) {
        const { hue, saturation } = hsv(pixel(data, size * size, i));
        x += saturation * Math.cos((hue * Math.PI) / 180);
        y += saturation * Math.sin((hue * Math.PI) / 180);
      }
      const expected = (((Math.atan2(y, x) * 180) / Math.PI) + 360) % 360;
      expect(angleBetween(meanHue(data)!, expected), `trial ${trial}`).toBeLessThan(1e-9);
    }
  });

  it('a batch tensor [N, 3, H, W], [3, H, W] tensors and arrays give the same hue; non-square arrays take height/width', () => {
    const random = rng(testSeed + 8);
    const images = [randomImage(6, 6, random), randomImage(6, 6, random), solid(blue, 6)];
    const joined = new Float32Array(3 * 108);
    images.forEach((im, i) => joined.set(im, i * 108));
    const batch = fromArray(joined, [3, 3, 6, 6]);
    const singles = images.map((im) => fromArray(im, [3, 6, 6]));
    expect(setMeanHue(batch)).toBeCloseTo(setMeanHue(images), 5);
    expect(setMeanHue(singles)).toBeCloseTo(setMeanHue(images), 5);
    [batch, ...singles].forEach((t) => t.dispose());
    const wide = image(2, 8, (x) => (x < 6 ? green : red));
    expect(meanHue(wide, { height: 2, width: 8 })).toBeCloseTo(meanHue(image(4, 4, (x, y) => (y < 3 ? green : red)))!, 10);
  });

  it('shiftColor by 120 degrees turns red into green, and hueDistance sees the 120', () => {
    const reds = [solid(red), solid([0.9, 0.2, 0.3])];
    expect(hueDistance(reds, reds.map((im) => shiftColor(im, 120)))).toBeCloseTo(120, 4);
    expect(hueDistance(reds, reds.map((im) => shiftColor(im, -40)))).toBeGreaterThan(25);
  });

  it('refuses empty and grey sets and malformed images, naming the set', () => {
    expect(() => hueDistance([], [solid(red)])).toThrow('hueDistance: setA is empty, expected at least one image');
    expect(() => hueDistance([solid(red)], [solid([0.5, 0.5, 0.5])])).toThrow('hueDistance: setB has no hue: all 1 images are grey');
    expect(() => hueDistance([solid(red), solid([0, 1, 1])], [solid(red)])).toThrow('hueDistance: setA has no mean hue: the hues of its 2 coloured images cancel out');
    expect(() => setMeanHue([new Float32Array(10)])).toThrow('setMeanHue: set[0]: a Float32Array of 10 values is not a 3 x');
    const flat = fromArray(new Float32Array(12), [4, 3]);
    expect(() => setMeanHue(flat)).toThrow('setMeanHue: set has shape [4, 3], expected [N, 3, height, width]');
    flat.dispose();
    expect(() => setMeanHue('red' as never)).toThrow('setMeanHue: set must be a Tensor [N, 3, H, W] or an array of CHW images, got red');
  });
});

// ---------------------------------------------------------------------------------------------
// Sharpness

/** std of the 4-neighbour Laplacian of luminance over the valid region, float64, by hand. */
function referenceSharpness(data: Float32Array, height: number, width: number): number {
  const plane = height * width;
  const lum = (x: number, y: number) => {
    const [r, g, b] = pixel(data, plane, y * width + x);
    return 0.299 * r + 0.587 * g + 0.114 * b;
  };
  const values: number[] = [];
  for (let y = 1; y < height - 1; y++) for (let x = 1; x < width - 1; x++) values.push(lum(x - 1, y) + lum(x + 1, y) + lum(x, y - 1) + lum(x, y + 1) - 4 * lum(x, y));
  const mean = values.reduce((s, v) => s + v, 0) / values.length;
  return Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length);
}

describe('sharpness and meanSharpness', () => {
  const checkerboard = image(16, 16, (x, y) => ((x + y) % 2 === 0 ? [1, 1, 1] : [0, 0, 0]));

  it('a flat image is 0, whatever its colour', () => {
    expect(sharpness(solid([0.3, 0.7, 0.1]))).toBe(0);
    expect(sharpness(solid([1, 1, 1], 3))).toBe(0);
  });

  it('a white dot on black, by hand: Laplacian values -4, 1, 1, 1, 1, 0, 0, 0, 0 -> sqrt(20) / 3', () => {
    const dot = image(5, 5, (x, y) => (x === 2 && y === 2 ? [1, 1, 1] : [0, 0, 0]));
    expect(sharpness(dot)).toBeCloseTo(Math.sqrt(20) / 3, 6);
  });

  it('a checkerboard is sharper than its blur, which is sharper than a stronger blur', () => {
    const sharp = sharpness(checkerboard);
    const blurred = sharpness(blurImage(checkerboard, 3, 16, 16, 0.7));
    const blurrier = sharpness(blurImage(checkerboard, 3, 16, 16, 2));
    expect(sharp).toBeGreaterThan(3);
    expect(blurred).toBeLessThan(sharp / 2);
    expect(blurrier).toBeLessThan(blurred / 2);
  });

  it(`random images against a float64 reference; meanSharpness is the mean (seed ${testSeed})`, () => {
    const random = rng(testSeed + 9);
    const set = [randomImage(7, 7, random), randomImage(12, 12, random), randomImage(3, 3, random)];
    const expected = set.map((im) => referenceSharpness(im, Math.sqrt(im.length / 3), Math.sqrt(im.length / 3)));
    set.forEach((im, i) => expect(sharpness(im), `image ${i}`).toBeCloseTo(expected[i]!, 12));
    expect(meanSharpness(set)).toBeCloseTo(expected.reduce((s, v) => s + v, 0) / 3, 12);
    const nonSquare = randomImage(5, 9, random);
    expect(sharpness(nonSquare, { height: 5, width: 9 })).toBeCloseTo(referenceSharpness(nonSquare, 5, 9), 12);
  });

  it('refuses images smaller than 3x3', () => {
    expect(() => sharpness(solid(red, 2))).toThrow('sharpness: image is 2x2, expected at least 3x3 for a 3x3 Laplacian');
    expect(() => meanSharpness([solid(red, 4), solid(red, 2)])).toThrow('meanSharpness: set[1]: image is 2x2, expected at least 3x3');
  });
});

// ---------------------------------------------------------------------------------------------
// Channel-mean drift

describe('channelMeanDrift', () => {
  it('hand values: per channel, the mean of image means of A minus that of B, and its norm', () => {
    // In [-1, 1] units: colour c in [0, 1] is 2c - 1.
    const a = [solid([0.75, 0.5, 0.25]), solid([0.25, 0.5, 0.75], 2)];
    const b = [solid([0.5, 0.5, 0.5])];
    const { drift, norm } = channelMeanDrift(a, b);
    expectClose(drift, [0, 0, 0], { atol: 1e-12 }, 'balanced set');
    expect(norm).toBeCloseTo(0, 12);
    const warm = channelMeanDrift([solid([0.75, 0.5, 0.25]), image(4, 4, (x) => (x < 2 ? [1, 0.5, 0] : [0.5, 0.5, 0.5]))], b);
    // Image means in [-1, 1]: R 0.5 and 0.5, G 0 and 0, B -0.5 and -0.5.
    expectClose(warm.drift, [0.5, 0, -0.5], { atol: 1e-7 }, 'warm drift');
    expect(warm.norm).toBeCloseTo(Math.SQRT1_2, 7);
    expectClose(channelMeanDrift(b, a.slice(0, 1)).drift, [-0.5, 0, 0.5], { atol: 1e-7 }, 'sign: A minus B');
  });

  it('refuses an empty set', () => {
    expect(() => channelMeanDrift([solid(red)], [])).toThrow('channelMeanDrift: setB is empty, expected at least one image');
  });
});

// ---------------------------------------------------------------------------------------------
// Degradations

describe('blurImage, addNoise, shiftColor', () => {
  it('blurImage: an impulse spreads into the normalised Gaussian, the input is untouched, sigma 0 copies', () => {
    const size = 15;
    const impulse = new Float32Array(size * size);
    impulse[7 * size + 7] = 1;
    const sigma = 1.3;
    const blurred = blurImage(impulse, 1, size, size, sigma);
    const radius = Math.ceil(3 * sigma);
    const taps = Array.from({ length: 2 * radius + 1 }, (_, k) => Math.exp(-((k - radius) ** 2) / (2 * sigma * sigma)));
    const total = taps.reduce((s, t) => s + t, 0);
    const expected = new Float64Array(size * size);
    for (let dy = -radius; dy <= radius; dy++) for (let dx = -radius; dx <= radius; dx++) expected[(7 + dy) * size + 7 + dx] = (taps[dy + radius]! * taps[dx + radius]!) / total ** 2;
    expectClose(blurred, expected, { atol: 1e-7 }, 'blurred impulse');
    expect(impulse[7 * size + 7]).toBe(1);
    const copy = blurImage(impulse, 1, size, size, 0);
    expect(copy).toEqual(impulse);
    expect(copy).not.toBe(impulse);
  });

  it('blurImage: a constant image stays constant (edges clamped), channels blur separately', () => {
    const flat = solid([0.2, 0.6, 0.9], 9);
    expectClose(blurImage(flat, 3, 9, 9, 2.5), flat, { atol: 1e-6 }, 'constant');
  });

  it(`addNoise: deterministic per seed, standard deviation sigma, clamped to [-1, 1] (seed ${testSeed})`, () => {
    const grey = new Float32Array(3 * 64 * 64);
    const seed = testSeed % 1000;
    const noisy = addNoise(grey, 0.1, seed);
    expect(addNoise(grey, 0.1, seed)).toEqual(noisy);
    expect(addNoise(grey, 0.1, seed + 1)).not.toEqual(noisy);
    const mean = noisy.reduce((s, v) => s + v, 0) / noisy.length;
    const std = Math.sqrt(noisy.reduce((s, v) => s + (v - mean) ** 2, 0) / noisy.length);
    // 12288 samples: the standard error of the std is about 0.1 / sqrt(2 * 12288), 0.6%.
    expect(Math.abs(mean)).toBeLessThan(0.005);
    expect(std).toBeGreaterThan(0.097);
    expect(std).toBeLessThan(0.103);
    expect(grey.every((v) => v === 0)).toBe(true);
    const loud = addNoise(solid(red), 5, seed);
    expect(loud.every((v) => v >= -1 && v <= 1)).toBe(true);
    expect(sharpness(addNoise(solid(red), 0.2, seed))).toBeGreaterThan(0.1);
  });

  it(`shiftColor: 120 degrees permutes R -> G -> B exactly, greys stay, 360 is the identity (seed ${testSeed})`, () => {
    const random = rng(testSeed + 10);
    const im = randomImage(5, 5, random);
    const plane = 25;
    const turned = shiftColor(im, 120);
    expectClose(turned.subarray(plane, 2 * plane), im.subarray(0, plane), { atol: 1e-6 }, 'G <- R');
    expectClose(turned.subarray(2 * plane), im.subarray(plane, 2 * plane), { atol: 1e-6 }, 'B <- G');
    expectClose(turned.subarray(0, plane), im.subarray(2 * plane), { atol: 1e-6 }, 'R <- B');
    expectClose(shiftColor(im, 360), im, { atol: 1e-6 }, '360');
    const greys = image(4, 4, (x) => [x / 4, x / 4, x / 4]);
    expectClose(shiftColor(greys, 73), greys, { atol: 1e-6 }, 'greys');
    expect(angleBetween(meanHue(shiftColor(solid([0.9, 0.5, 0.5]), 180))!, 180)).toBeLessThan(1e-4);
  });

  it('refuse bad strengths, shapes and seeds, naming the argument', () => {
    const im = solid(red, 4);
    expect(() => blurImage(im, 3, 4, 5, 1)).toThrow('blurImage: image has 48 values, expected c x h x w = 3 x 4 x 5 = 60');
    expect(() => blurImage(im, 3, 4, 4, -1)).toThrow('blurImage: sigma must be a finite number >= 0, got -1');
    expect(() => blurImage(im, 0, 4, 4, 1)).toThrow('blurImage: c must be an integer >= 1, got 0');
    expect(() => blurImage([1, 2, 3] as never, 3, 1, 1, 1)).toThrow('blurImage: image must be a CHW Float32Array, got Array');
    expect(() => addNoise(im, NaN, 1)).toThrow('addNoise: sigma must be a finite number >= 0, got NaN');
    expect(() => addNoise(im, 0.1, 1.5)).toThrow('addNoise: seed must be a 32-bit unsigned integer, got 1.5');
    expect(() => shiftColor(new Float32Array(4), 10)).toThrow('shiftColor: image has 4 values, expected 3 x height x width');
    expect(() => shiftColor(im, Infinity)).toThrow('shiftColor: degrees must be a finite number, got Infinity');
  });
});
