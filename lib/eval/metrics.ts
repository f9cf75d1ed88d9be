// The network-free measures of SPEC section 6 (Fréchet distance over given features, hue
// distance, sharpness, channel-mean drift) and the degradations that validate evaluators (a
// measure that cannot tell a blurred, noisy or colour-shifted set from the original is broken).
// Images are CHW in [-1, 1]: a Tensor [N, 3, H, W], or CHW Float32Arrays / Tensors [3, H, W].
// Everything is accumulated in float64 on the host.
import { HostRandom } from '../host_random.js';
import { asImageData, type ImageData, type ImageShape } from '../io/images.js';
import { shapeString, Tensor } from '../tensor.js';

/** A set of images: a batch tensor [N, 3, H, W] or a list of single images. */
export type ImageSet = Tensor | readonly (Float32Array | Tensor)[];

/** One feature vector per sample, row-major: `data[i * dim + j]` is feature j of sample i. */
export interface FeatureMatrix {
  data: Float32Array | Float64Array;
  count: number;
  dim: number;
}

function imagesOf(set: ImageSet, op: string, name: string, shape: ImageShape): ImageData[] {
  let images: ImageData[];
  if (set instanceof Tensor) {
    if (set.ndim !== 4 || set.shape[1] !== 3) throw new RangeError(`${op}: ${name} has shape ${shapeString(set.shape)}, expected [N, 3, height, width]`);
    if (set.dtype === 'i32') throw new TypeError(`${op}: ${name} has dtype i32, expected f32 or bf16`);
    const [n, , h, w] = set.shape as [number, number, number, number];
    const all = set.toArray() as Float32Array;
    const per = 3 * h * w;
    images = Array.from({ length: n }, (_, i) => ({ data: all.subarray(i * per, (i + 1) * per), channels: 3 as const, height: h, width: w }));
  } else if (Array.isArray(set)) {
    images = set.map((image, i) => asImageData(image, `${op}: ${name}[${i}]`, shape));
  } else {
    throw new TypeError(`${op}: ${name} must be a Tensor [N, 3, H, W] or an array of CHW images, got ${describeValue(set)}`);
  }
  if (images.length === 0) throw new RangeError(`${op}: ${name} is empty, expected at least one image`);
  return images;
}

function describeValue(value: unknown): string {
  if (value === null || typeof value !== 'object') return String(value);
  return value.constructor?.name ?? 'an object';
}

// ---------------------------------------------------------------------------------------------
// Symmetric eigendecomposition and the Fréchet distance

export interface SymmetricEigen {
  /** Eigenvalues in ascending order. */
  values: Float64Array;
  /** Row-major n x n; column j (`vectors[i * n + j]` over i) is the unit eigenvector of values[j]. */
  vectors: Float64Array;
}

const maxJacobiSweeps = 100;

/**
 * Eigendecomposition of a symmetric n x n matrix (row-major) by cyclic Jacobi rotations in
 * float64: slow (about 4 n^3 flops per sweep, a handful of sweeps) but accurate to a few ulps of
 * the matrix norm for every eigenvalue, which is what a matrix square root of a nearly singular
 * covariance needs. The input is not modified.
 */
export function symmetricEigen(matrix: ArrayLike<number>, n: number): SymmetricEigen {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`symmetricEigen: n must be an integer >= 1, got ${n}`);
  if (matrix.length !== n * n) throw new RangeError(`symmetricEigen: matrix has ${matrix.length} values, expected n * n = ${n * n}`);
  const a = Float64Array.from(matrix);
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!)) throw new RangeError(`symmetricEigen: matrix element (${Math.floor(i / n)}, ${i % n}) is ${a[i]}, expected a finite number`);
    scale = Math.max(scale, Math.abs(a[i]!));
  }
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const aij = a[i * n + j]!;
      const aji = a[j * n + i]!;
      if (Math.abs(aij - aji) > 1e-9 * scale) throw new RangeError(`symmetricEigen: matrix is not symmetric: (${i}, ${j}) is ${aij}, (${j}, ${i}) is ${aji}`);
      a[i * n + j] = a[j * n + i] = (aij + aji) / 2;
    }
  }
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;

  let frobenius2 = 0;
  for (let i = 0; i < a.length; i++) frobenius2 += a[i]! * a[i]!;
  const offDiagonal2 = (): number => {
    let sum = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) sum += 2 * a[p * n + q]! * a[p * n + q]!;
    return sum;
  };
  let sweeps = 0;
  // Rotations preserve the Frobenius norm, so the off-diagonal mass is measured against it.
  while (offDiagonal2() > 1e-30 * frobenius2) {
    if (++sweeps > maxJacobiSweeps) throw new Error(`symmetricEigen: no convergence after ${maxJacobiSweeps} sweeps (n = ${n})`);
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        // The rotation angle that zeroes a[p][q], with the smaller root of t^2 + 2 theta t - 1 = 0
        // for stability (Numerical Recipes, section 11.1).
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        a[p * n + q] = a[q * n + p] = 0;
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }

  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[i * n + i]! - a[j * n + j]!);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((from, to) => {
    values[to] = a[from * n + from]!;
    for (let k = 0; k < n; k++) vectors[k * n + to] = v[k * n + from]!;
  });
  return { values, vectors };
}

/**
 * The square root of a symmetric positive semi-definite matrix. Eigenvalues that round-off made
 * slightly negative (a covariance of fewer samples than dimensions is singular) count as 0.
 */
function symmetricSqrt(matrix: Float64Array, n: number): Float64Array {
  const { values, vectors } = symmetricEigen(matrix, n);
  const roots = values.map((value) => Math.sqrt(Math.max(value, 0)));
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let sum = 0;
      for (let k = 0; k < n; k++) sum += vectors[i * n + k]! * roots[k]! * vectors[j * n + k]!;
      out[i * n + j] = out[j * n + i] = sum;
    }
  }
  return out;
}

interface FeatureStatistics {
  mean: Float64Array;
  /** Unbiased (divides by count - 1), row-major dim x dim. */
  covariance: Float64Array;
}

function featureStatistics({ data, count, dim }: FeatureMatrix): FeatureStatistics {
  const mean = new Float64Array(dim);
  for (let i = 0; i < count; i++) for (let j = 0; j < dim; j++) mean[j]! += data[i * dim + j]!;
  for (let j = 0; j < dim; j++) mean[j]! /= count;
  const covariance = new Float64Array(dim * dim);
  const centred = new Float64Array(dim);
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < dim; j++) centred[j] = data[i * dim + j]! - mean[j]!;
    for (let j = 0; j < dim; j++) {
      const cj = centred[j]!;
      for (let k = j; k < dim; k++) covariance[j * dim + k]! += cj * centred[k]!;
    }
  }
  for (let j = 0; j < dim; j++) {
    for (let k = j; k < dim; k++) covariance[j * dim + k] = covariance[k * dim + j] = covariance[j * dim + k]! / (count - 1);
  }
  return { mean, covariance };
}

function checkFeatures(features: FeatureMatrix, name: string, op = 'frechetDistance'): void {
  if (typeof features !== 'object' || features === null || !(features.data instanceof Float32Array || features.data instanceof Float64Array)) {
    throw new TypeError(`${op}: ${name} must be { data: Float32Array | Float64Array, count, dim }, got ${describeValue(features)}`);
  }
  const { data, count, dim } = features;
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`${op}: ${name}.dim must be an integer >= 1, got ${dim}`);
  if (!Number.isInteger(count) || count < 2) throw new RangeError(`${op}: ${name}.count must be an integer >= 2 (a covariance needs two samples), got ${count}`);
  if (data.length !== count * dim) throw new RangeError(`${op}: ${name}.data has ${data.length} values, expected count x dim = ${count} x ${dim} = ${count * dim}`);
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) throw new RangeError(`${op}: ${name}.data[${i}] (sample ${Math.floor(i / dim)}, feature ${i % dim}) is ${data[i]}, expected a finite number`);
  }
}

/**
 * Fréchet distance between the Gaussians fitted to two feature sets:
 * |mA - mB|^2 + tr(CA + CB - 2 (CA^1/2 CB CA^1/2)^1/2), covariances unbiased, in float64.
 * The estimate is biased by the sample count, so only sets of equal size are compared.
 */
export function frechetDistance(featuresA: FeatureMatrix, featuresB: FeatureMatrix): number {
  checkFeatures(featuresA, 'featuresA');
  checkFeatures(featuresB, 'featuresB');
  if (featuresA.dim !== featuresB.dim) throw new RangeError(`frechetDistance: featuresA has dim ${featuresA.dim}, featuresB has dim ${featuresB.dim}; expected the same feature space`);
  if (featuresA.count !== featuresB.count) {
    throw new RangeError(
      `frechetDistance: featuresA has ${featuresA.count} samples, featuresB has ${featuresB.count}; expected equal counts (the estimate is biased by the count, so sets of different sizes are not comparable)`,
    );
  }
  const n = featuresA.dim;
  const a = featureStatistics(featuresA);
  const b = featureStatistics(featuresB);
  let meanTerm = 0;
  let traceTerm = 0;
  for (let j = 0; j < n; j++) {
    meanTerm += (a.mean[j]! - b.mean[j]!) ** 2;
    traceTerm += a.covariance[j * n + j]! + b.covariance[j * n + j]!;
  }
  // tr((CA CB)^1/2) = tr((CA^1/2 CB CA^1/2)^1/2): the second is symmetric, so its eigenvalues are
  // real and a symmetric solver applies.
  const rootA = symmetricSqrt(a.covariance, n);
  const product = multiply(multiply(rootA, b.covariance, n), rootA, n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) product[i * n + j] = product[j * n + i] = (product[i * n + j]! + product[j * n + i]!) / 2;
  }
  let crossTrace = 0;
  for (const value of symmetricEigen(product, n).values) crossTrace += Math.sqrt(Math.max(value, 0));
  // Identical sets give a round-off residue of either sign; a distance is never negative.
  return Math.max(meanTerm + traceTerm - 2 * crossTrace, 0);
}

export interface FrechetExtrapolation {
  /** The intercept of the fit at 1/count = 0: FD with the sample-size bias removed (may be slightly negative for equal distributions). */
  fdInfinity: number;
  /** The fit's slope in 1/count: the bias is slope / count. */
  slope: number;
  /** The measured points: subset size and the mean FD of the subsets of that size. */
  points: { count: number; fd: number }[];
}

export interface FrechetExtrapolationOptions {
  /** Subset sizes measured (default 8), evenly spaced in 1/count from minCount to the full count. */
  sizes?: number;
  /**
   * Smallest subset (default a quarter of the sets, and more samples than dimensions: below that
   * the covariances are singular and FD no longer falls as 1/count).
   */
  minCount?: number;
  /** Random subset pairs averaged per size below the full count (default 4). */
  repeats?: number;
  /** Seed of the subset draws (default 0). */
  seed?: number;
}

function rowsOf({ data, dim }: FeatureMatrix, rows: readonly number[]): FeatureMatrix {
  const out = new Float64Array(rows.length * dim);
  rows.forEach((row, i) => {
    for (let j = 0; j < dim; j++) out[i * dim + j] = data[row * dim + j]!;
  });
  return { data: out, count: rows.length, dim };
}

/** `count` distinct indices of [0, n), in random order (a partial Fisher-Yates shuffle). */
function randomRows(n: number, count: number, random: HostRandom): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < count; i++) {
    const j = i + random.int(n - i);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order.slice(0, count);
}

/**
 * Fréchet distance with its sample-size bias extrapolated away (Chong and Forsyth's FID-infinity):
 * the expected FD of sets of N samples is FD_inf + k / N, so FD is measured on random subsets of
 * several sizes and a least-squares line in 1/N is read at 1/N = 0. Unlike frechetDistance, its
 * value does not depend on the set size, so sets of different sizes (and models measured on a
 * few hundred images) compare on the distance itself, not on distance plus bias.
 */
export function frechetDistanceInfinity(featuresA: FeatureMatrix, featuresB: FeatureMatrix, options: FrechetExtrapolationOptions = {}): FrechetExtrapolation {
  const op = 'frechetDistanceInfinity';
  checkFeatures(featuresA, 'featuresA', op);
  checkFeatures(featuresB, 'featuresB', op);
  if (featuresA.count !== featuresB.count) throw new RangeError(`${op}: featuresA has ${featuresA.count} samples, featuresB has ${featuresB.count}; expected equal counts`);
  const count = featuresA.count;
  const sizes = options.sizes ?? 8;
  const minCount = options.minCount ?? Math.max(2, Math.floor(count / 4), featuresA.dim + 1);
  const repeats = options.repeats ?? 4;
  if (!Number.isInteger(sizes) || sizes < 2) throw new RangeError(`${op}: sizes must be an integer >= 2 (a line needs two points), got ${sizes}`);
  if (options.minCount === undefined && minCount >= count) {
    throw new RangeError(`${op}: the sets have ${count} samples of ${featuresA.dim} features; expected more than ${minCount} (subsets need more samples than features), or pass minCount`);
  }
  if (!Number.isInteger(minCount) || minCount < 2 || minCount >= count) throw new RangeError(`${op}: minCount must be an integer in [2, ${count - 1}] (below the sets' ${count} samples), got ${minCount}`);
  if (!Number.isInteger(repeats) || repeats < 1) throw new RangeError(`${op}: repeats must be an integer >= 1, got ${repeats}`);
  const random = new HostRandom(options.seed ?? 0);
  const counts = new Set<number>();
  for (let s = 0; s < sizes; s++) {
    const inverse = 1 / minCount + ((1 / count - 1 / minCount) * s) / (sizes - 1);
    counts.add(Math.round(1 / inverse));
  }
  const points = [...counts].map((n) => {
    if (n === count) return { count: n, fd: frechetDistance(featuresA, featuresB) };
    let sum = 0;
    for (let r = 0; r < repeats; r++) {
      sum += frechetDistance(rowsOf(featuresA, randomRows(count, n, random)), rowsOf(featuresB, randomRows(count, n, random)));
    }
    return { count: n, fd: sum / repeats };
  });
  const xs = points.map((p) => 1 / p.count);
  const mx = xs.reduce((s, x) => s + x, 0) / xs.length;
  const my = points.reduce((s, p) => s + p.fd, 0) / points.length;
  let sxy = 0;
  let sxx = 0;
  points.forEach((p, i) => {
    sxy += (xs[i]! - mx) * (p.fd - my);
    sxx += (xs[i]! - mx) ** 2;
  });
  const slope = sxy / sxx;
  return { fdInfinity: my - slope * mx, slope, points };
}

function multiply(x: Float64Array, y: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const xik = x[i * n + k]!;
      if (xik === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j]! += xik * y[k * n + j]!;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Hue

/** Hue as a unit vector's angle, weighted: the sums of weight * cos and weight * sin. */
interface HueVector {
  x: number;
  y: number;
}

function angleDegrees({ x, y }: HueVector): number {
  const degrees = (Math.atan2(y, x) * 180) / Math.PI;
  return degrees < 0 ? degrees + 360 : degrees;
}

/**
 * The circular mean of an image's HSV hue in degrees [0, 360), each pixel weighted by its HSV
 * saturation, so grey pixels do not vote; undefined when no pixel is coloured or the colours
 * cancel out (as much red as cyan).
 */
export function meanHue(image: Float32Array | Tensor, shape: ImageShape = {}): number | undefined {
  const { data, height, width } = asImageData(image, 'meanHue', shape);
  const plane = height * width;
  const sum: HueVector = { x: 0, y: 0 };
  let weight = 0;
  for (let i = 0; i < plane; i++) {
    const r = (data[i]! + 1) / 2;
    const g = (data[plane + i]! + 1) / 2;
    const b = (data[2 * plane + i]! + 1) / 2;
    const max = Math.max(r, g, b);
    const range = max - Math.min(r, g, b);
    if (!(range > 0)) continue;
    const saturation = range / max;
    let sector: number;
    if (max === r) sector = (g - b) / range;
    else if (max === g) sector = 2 + (b - r) / range;
    else sector = 4 + (r - g) / range;
    const radians = (sector * Math.PI) / 3;
    sum.x += saturation * Math.cos(radians);
    sum.y += saturation * Math.sin(radians);
    weight += saturation;
  }
  if (!(Math.hypot(sum.x, sum.y) > 1e-9 * weight)) return undefined;
  return angleDegrees(sum);
}

/**
 * The circular mean of the images' mean hues in degrees [0, 360), each image with one vote
 * (images with no hue do not vote). Throws when no image has a hue or the hues cancel out.
 */
export function setMeanHue(set: ImageSet, shape: ImageShape = {}): number {
  return setHue(set, 'setMeanHue', 'set', shape);
}

function setHue(set: ImageSet, op: string, name: string, shape: ImageShape): number {
  const images = imagesOf(set, op, name, shape);
  const sum: HueVector = { x: 0, y: 0 };
  let voters = 0;
  for (const image of images) {
    const hue = meanHue(image.data, image);
    if (hue === undefined) continue;
    sum.x += Math.cos((hue * Math.PI) / 180);
    sum.y += Math.sin((hue * Math.PI) / 180);
    voters++;
  }
  if (voters === 0) throw new RangeError(`${op}: ${name} has no hue: all ${images.length} images are grey`);
  if (!(Math.hypot(sum.x, sum.y) > 1e-9 * voters)) throw new RangeError(`${op}: ${name} has no mean hue: the hues of its ${voters} coloured images cancel out`);
  return angleDegrees(sum);
}

/**
 * HG-DPO's colour-shift measure: the angle in degrees [0, 180] between the mean hues of two sets
 * (see setMeanHue).
 */
export function hueDistance(setA: ImageSet, setB: ImageSet, shape: ImageShape = {}): number {
  const difference = Math.abs(setHue(setA, 'hueDistance', 'setA', shape) - setHue(setB, 'hueDistance', 'setB', shape));
  return difference > 180 ? 360 - difference : difference;
}

// ---------------------------------------------------------------------------------------------
// Sharpness and channel means

/**
 * The standard deviation of the 3x3 Laplacian [0 1 0; 1 -4 1; 0 1 0] of the luminance
 * 0.299 R + 0.587 G + 0.114 B (pixels mapped to [0, 1]), over the valid region (no padding, so
 * borders add no edges of their own). Needs at least 3 x 3 pixels.
 */
export function sharpness(image: Float32Array | Tensor, shape: ImageShape = {}): number {
  return imageSharpness(asImageData(image, 'sharpness', shape), 'sharpness');
}

function imageSharpness({ data, height, width }: ImageData, op: string): number {
  if (height < 3 || width < 3) throw new RangeError(`${op}: image is ${height}x${width}, expected at least 3x3 for a 3x3 Laplacian`);
  const plane = height * width;
  const luminance = new Float64Array(plane);
  for (let i = 0; i < plane; i++) luminance[i] = (0.299 * (data[i]! + 1) + 0.587 * (data[plane + i]! + 1) + 0.114 * (data[2 * plane + i]! + 1)) / 2;
  let sum = 0;
  let sumSquares = 0;
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1; x < width - 1; x++) {
      const i = y * width + x;
      const laplacian = luminance[i - width]! + luminance[i + width]! + luminance[i - 1]! + luminance[i + 1]! - 4 * luminance[i]!;
      sum += laplacian;
      sumSquares += laplacian * laplacian;
    }
  }
  const count = (height - 2) * (width - 2);
  const mean = sum / count;
  return Math.sqrt(Math.max(sumSquares / count - mean * mean, 0));
}

/** The mean of sharpness() over a set. */
export function meanSharpness(set: ImageSet, shape: ImageShape = {}): number {
  const images = imagesOf(set, 'meanSharpness', 'set', shape);
  let sum = 0;
  for (const [i, image] of images.entries()) sum += imageSharpness(image, `meanSharpness: set[${i}]`);
  return sum / images.length;
}

export interface ChannelMeanDrift {
  /** Per channel (R, G, B): mean of set A minus mean of set B, in the images' [-1, 1] units. */
  drift: [number, number, number];
  /** The L2 norm of `drift`. */
  norm: number;
}

function channelMeans(set: ImageSet, op: string, name: string, shape: ImageShape): [number, number, number] {
  const images = imagesOf(set, op, name, shape);
  const means: [number, number, number] = [0, 0, 0];
  for (const { data, height, width } of images) {
    const plane = height * width;
    for (let c = 0; c < 3; c++) {
      let sum = 0;
      for (let i = c * plane; i < (c + 1) * plane; i++) sum += data[i]!;
      means[c]! += sum / plane / images.length;
    }
  }
  return means;
}

/**
 * How far set A's colour balance is from set B's (what HG-DPO's statistics term corrects): per
 * channel, the mean over A's images of each image's channel mean, minus the same over B.
 */
export function channelMeanDrift(setA: ImageSet, setB: ImageSet, shape: ImageShape = {}): ChannelMeanDrift {
  const a = channelMeans(setA, 'channelMeanDrift', 'setA', shape);
  const b = channelMeans(setB, 'channelMeanDrift', 'setB', shape);
  const drift: [number, number, number] = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
  return { drift, norm: Math.hypot(...drift) };
}

// ---------------------------------------------------------------------------------------------
// Degradations (each returns a new array and is deterministic)

function checkStrength(op: string, name: string, value: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new RangeError(`${op}: ${name} must be a finite number >= 0, got ${String(value)}`);
}

function checkImageArray(op: string, image: unknown): asserts image is Float32Array {
  if (!(image instanceof Float32Array)) throw new TypeError(`${op}: image must be a CHW Float32Array, got ${describeValue(image)}`);
}

/**
 * A Gaussian blur with standard deviation `sigma` pixels (separable, 3 sigma each side, edges
 * clamped) of a c x h x w image; sigma 0 returns a copy.
 */
export function blurImage(image: Float32Array, c: number, h: number, w: number, sigma: number): Float32Array {
  checkImageArray('blurImage', image);
  for (const [name, value] of [['c', c], ['h', h], ['w', w]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`blurImage: ${name} must be an integer >= 1, got ${value}`);
  }
  if (image.length !== c * h * w) throw new RangeError(`blurImage: image has ${image.length} values, expected c x h x w = ${c} x ${h} x ${w} = ${c * h * w}`);
  checkStrength('blurImage', 'sigma', sigma);
  if (sigma === 0) return image.slice();
  const radius = Math.ceil(3 * sigma);
  const taps = Array.from({ length: 2 * radius + 1 }, (_, k) => Math.exp(-((k - radius) ** 2) / (2 * sigma * sigma)));
  const total = taps.reduce((s, t) => s + t, 0);
  const weights = taps.map((t) => t / total);
  const pass = (src: Float32Array, horizontal: boolean): Float32Array => {
    const out = new Float32Array(src.length);
    for (let p = 0; p < c; p++) {
      const base = p * h * w;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          let sum = 0;
          for (let k = -radius; k <= radius; k++) {
            const sx = horizontal ? Math.min(w - 1, Math.max(0, x + k)) : x;
            const sy = horizontal ? y : Math.min(h - 1, Math.max(0, y + k));
            sum += weights[k + radius]! * src[base + sy * w + sx]!;
          }
          out[base + y * w + x] = sum;
        }
      }
    }
    return out;
  };
  return pass(pass(image, true), false);
}

/**
 * Adds Gaussian noise of standard deviation `sigma` (in the image's [-1, 1] units) drawn from
 * `seed`, clamping to [-1, 1] so the result is still an image.
 */
export function addNoise(image: Float32Array, sigma: number, seed: number): Float32Array {
  checkImageArray('addNoise', image);
  checkStrength('addNoise', 'sigma', sigma);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`addNoise: seed must be a 32-bit unsigned integer, got ${seed}`);
  const random = new HostRandom(seed);
  const out = new Float32Array(image.length);
  for (let i = 0; i < image.length; i++) {
    // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
    const noise = Math.sqrt(-2 * Math.log(1 - random.next())) * Math.cos(2 * Math.PI * random.next());
    out[i] = Math.min(1, Math.max(-1, image[i]! + sigma * noise));
  }
  return out;
}

/**
 * Rotates every pixel's colour by `degrees` about the grey axis of RGB space (a hue rotation:
 * greys stay, 120 degrees turns red into green), clamping to [-1, 1]. A 3-channel CHW image.
 */
export function shiftColor(image: Float32Array, degrees: number): Float32Array {
  checkImageArray('shiftColor', image);
  if (image.length % 3 !== 0) throw new RangeError(`shiftColor: image has ${image.length} values, expected 3 x height x width`);
  if (typeof degrees !== 'number' || !Number.isFinite(degrees)) throw new RangeError(`shiftColor: degrees must be a finite number, got ${String(degrees)}`);
  // Rodrigues' rotation about the unit axis (1, 1, 1) / sqrt(3). The axis passes through 0 and
  // through mid grey, so the rotation is the same in [-1, 1] as in [0, 1] units.
  const angle = (degrees * Math.PI) / 180;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const same = cos + (1 - cos) / 3;
  const next = (1 - cos) / 3 + sin / Math.sqrt(3);
  const previous = (1 - cos) / 3 - sin / Math.sqrt(3);
  const plane = image.length / 3;
  const out = new Float32Array(image.length);
  for (let i = 0; i < plane; i++) {
    const r = image[i]!;
    const g = image[plane + i]!;
    const b = image[2 * plane + i]!;
    out[i] = Math.min(1, Math.max(-1, same * r + previous * g + next * b));
    out[plane + i] = Math.min(1, Math.max(-1, next * r + same * g + previous * b));
    out[2 * plane + i] = Math.min(1, Math.max(-1, previous * r + next * g + same * b));
  }
  return out;
}
