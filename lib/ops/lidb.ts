// Lightweight DreamBooth (LiDB, HyperDreamBooth section 3.1; SPEC section 3): a rank-1 LoRA whose
// factors are split again through frozen random bases,
//
//     dW = A_aux A_train B_train B_aux      A_aux [n, a], A_train [a, 1], B_train [1, b], B_aux [b, m]
//
// so that only a + b numbers per layer are trained. In loraLinear's terms, down = A_aux A_train
// ([n, 1], n input features) and up = B_train B_aux ([1, m], m output features).
import type { DeviceRequest } from '../device.js';
import { fromArray, zeros, type Tensor } from '../tensor.js';
import { matmul } from './matmul.js';
import { expectDType, expectInteger, expectSameDevice, expectShape, expectTensor } from './validate.js';

/** The paper's sizes: a = 100, b = 50. */
export const lidbDefaults = { a: 100, b: 50 } as const;

const mask64 = (x: bigint): bigint => BigInt.asUintN(64, x);

/** The splitmix64 finaliser: a bijective scramble of 64 bits. */
function scramble(x: bigint): bigint {
  let z = mask64(x);
  z = mask64((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
  z = mask64((z ^ (z >> 27n)) * 0x94d049bb133111ebn);
  return z ^ (z >> 31n);
}

/** A seeded stream of float64 standard normals (splitmix64 uniforms, Box-Muller). */
function normals(seed: number, count: number): Float64Array {
  // Scrambling the seed first keeps the streams of nearby seeds (seed, seed + 1) unrelated.
  let state = scramble(BigInt(seed) ^ 0x5851f42d4c957f2dn);
  const uniform = (): number => {
    state = mask64(state + 0x9e3779b97f4a7c15n);
    return (Number(scramble(state) >> 11n) + 0.5) / 2 ** 53; // in (0, 1)
  };
  const out = new Float64Array(count);
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const theta = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(theta);
    if (i + 1 < count) out[i + 1] = r * Math.sin(theta);
  }
  return out;
}

export interface LidbAuxOptions {
  device?: DeviceRequest;
}

/**
 * A frozen LiDB basis [rows, cols], regenerated exactly from `seed`: seeded normals made
 * orthonormal along the shorter side by modified Gram-Schmidt (run twice, in float64), so its
 * min(rows, cols) vectors are orthogonal with constant magnitude 1. A_aux = lidbAux(seed, n, a)
 * has orthonormal columns (A_aux^T A_aux = I); B_aux = lidbAux(seed, b, m) orthonormal rows.
 */
export function lidbAux(seed: number, rows: number, cols: number, options: LidbAuxOptions = {}): Tensor<'f32'> {
  expectInteger('lidbAux', 'seed', seed);
  expectInteger('lidbAux', 'rows', rows, 1);
  expectInteger('lidbAux', 'cols', cols, 1);
  const count = Math.min(rows, cols);
  const length = Math.max(rows, cols);
  const vectors = normals(seed, count * length); // vector v at [v * length, (v + 1) * length)
  for (let v = 0; v < count; v++) {
    const base = v * length;
    for (let pass = 0; pass < 2; pass++) {
      for (let u = 0; u < v; u++) {
        let dot = 0;
        for (let i = 0; i < length; i++) dot += vectors[base + i]! * vectors[u * length + i]!;
        for (let i = 0; i < length; i++) vectors[base + i]! -= dot * vectors[u * length + i]!;
      }
    }
    let norm = 0;
    for (let i = 0; i < length; i++) norm += vectors[base + i]! ** 2;
    norm = Math.sqrt(norm);
    for (let i = 0; i < length; i++) vectors[base + i]! /= norm;
  }
  const out = new Float32Array(rows * cols);
  for (let v = 0; v < count; v++)
    for (let i = 0; i < length; i++) {
      // rows <= cols: vector v is row v; otherwise it is column v.
      out[rows <= cols ? v * cols + i : i * cols + v] = vectors[v * length + i]!;
    }
  return fromArray(out, [rows, cols], options.device === undefined ? {} : { device: options.device });
}

export interface LidbWeights {
  /** [n, a], frozen */
  aAux: Tensor<'f32'>;
  /** [a, 1], trained */
  aTrain: Tensor<'f32'>;
  /** [1, b], trained */
  bTrain: Tensor<'f32'>;
  /** [b, m], frozen */
  bAux: Tensor<'f32'>;
}

export interface LidbInitOptions {
  a?: number;
  b?: number;
  device?: DeviceRequest;
}

/**
 * A fresh LiDB layer for a linear map of n inputs and m outputs: bases from `seed` (A_aux from
 * seed, B_aux from seed + 1), A_train Xavier-normal (std sqrt(2 / (a + 1)), its own stream
 * seed + 2), B_train zeros, so the layer starts as the identity update dW = 0.
 */
export function lidbInit(seed: number, n: number, m: number, options: LidbInitOptions = {}): LidbWeights {
  const a = expectInteger('lidbInit', 'a', options.a ?? lidbDefaults.a, 1);
  const b = expectInteger('lidbInit', 'b', options.b ?? lidbDefaults.b, 1);
  expectInteger('lidbInit', 'seed', seed);
  const placement = options.device === undefined ? {} : { device: options.device };
  const std = Math.sqrt(2 / (a + 1));
  const aTrain = Float32Array.from(normals(seed + 2, a), (v) => v * std);
  return {
    aAux: lidbAux(seed, n, a, placement),
    aTrain: fromArray(aTrain, [a, 1], placement),
    bTrain: zeros([1, b], placement),
    bAux: lidbAux(seed + 1, b, m, placement),
  };
}

function checkWeights(op: string, w: LidbWeights): { n: number; a: number; b: number; m: number } {
  if (typeof w !== 'object' || w === null) throw new TypeError(`${op}: weights must be { aAux, aTrain, bTrain, bAux }, got ${String(w)}`);
  for (const name of ['aAux', 'aTrain', 'bTrain', 'bAux'] as const) {
    expectTensor(op, name, w[name]);
    expectDType(op, name, w[name], 'f32');
    expectSameDevice(op, name, w[name], w.aAux.device);
    if (w[name].ndim !== 2) throw new RangeError(`${op}: ${name} has ${w[name].ndim} dims, expected 2`);
  }
  const [n, a] = w.aAux.shape as [number, number];
  const [b, m] = w.bAux.shape as [number, number];
  expectShape(op, 'aTrain', w.aTrain, [a, 1]);
  expectShape(op, 'bTrain', w.bTrain, [1, b]);
  return { n, a, b, m };
}

/** down = A_aux A_train [n, 1] and up = B_train B_aux [1, m]: the rank-1 LoRA factors for loraLinear. */
export function lidbFactors(weights: LidbWeights): { down: Tensor<'f32'>; up: Tensor<'f32'> } {
  checkWeights('lidbFactors', weights);
  return { down: matmul(weights.aAux, weights.aTrain), up: matmul(weights.bTrain, weights.bAux) };
}

/**
 * The backward of lidbFactors: dA_train = A_aux^T d(down) [a, 1] and dB_train = d(up) B_aux^T
 * [1, b]. The bases are frozen, so they get no gradient.
 */
export function lidbFactorsBackward(
  weights: Pick<LidbWeights, 'aAux' | 'bAux'> & Partial<LidbWeights>,
  grads: { dDown: Tensor<'f32'>; dUp: Tensor<'f32'> },
): { dATrain: Tensor<'f32'>; dBTrain: Tensor<'f32'> } {
  const op = 'lidbFactorsBackward';
  expectTensor(op, 'aAux', weights.aAux);
  expectTensor(op, 'bAux', weights.bAux);
  const [n] = weights.aAux.shape as [number, number];
  const [, m] = weights.bAux.shape as [number, number];
  expectTensor(op, 'dDown', grads.dDown);
  expectDType(op, 'dDown', grads.dDown, 'f32');
  expectShape(op, 'dDown', grads.dDown, [n, 1]);
  expectTensor(op, 'dUp', grads.dUp);
  expectDType(op, 'dUp', grads.dUp, 'f32');
  expectShape(op, 'dUp', grads.dUp, [1, m]);
  return {
    dATrain: matmul(weights.aAux, grads.dDown, { transA: true }),
    dBTrain: matmul(grads.dUp, weights.bAux, { transB: true }),
  };
}
