import { describe, expect, it } from 'vitest';
import type { DeviceType } from '../../lib/device.js';
import { dpoLoss, dpoLossBackward } from '../../lib/ops/dpo_loss.js';
import { fromArray } from '../../lib/tensor.js';
import * as ref from '../reference/dpo_loss.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectClose, numericGradient, randomArray, rng, toF64 } from '../helpers.js';

checkMemoryGuards();

interface Inputs {
  shape: number[];
  arrays: Float32Array[]; // predW, predL, refW, refL, noiseW, noiseL
}

function inputs(random: () => number, shape: number[]): Inputs {
  const n = shape.reduce((p, d) => p * d, 1);
  const noiseW = randomArray(n, random);
  const noiseL = randomArray(n, random);
  // Predictions near the noise, as a trained denoiser's are.
  const near = (noise: Float32Array): Float32Array => noise.map((v) => v + (random() * 2 - 1) * 0.5);
  return { shape, arrays: [near(noiseW), near(noiseL), near(noiseW), near(noiseL), noiseW, noiseL] };
}

function run(device: DeviceType, { shape, arrays }: Inputs, beta: number) {
  const [pw, pl, rw, rl, nw, nl] = arrays.map((a) => fromArray(a, shape, { device }));
  return dpoLoss(pw!, pl!, rw!, rl!, nw!, nl!, { beta });
}

function reference({ shape, arrays }: Inputs, beta: number): ref.DpoReference {
  const [pw, pl, rw, rl, nw, nl] = arrays;
  return ref.dpoLoss(pw!, pl!, rw!, rl!, nw!, nl!, shape[0]!, beta);
}

const shapes = [
  [1, 17],
  [3, 127],
  [3, 4099],
  [1, 4099],
  [3, 1, 5, 7],
  [2, 40_000],
];

describe('op dpo_loss', () => {
  for (const device of backends()) {
    it(`matches the float64 reference on ${device}`, () => {
      const random = rng();
      for (const shape of device === 'cpu' ? shapes : shapes.slice(0, 3)) {
        const x = inputs(random, shape);
        for (const beta of [1, 2500]) {
          const got = run(device, x, beta);
          const want = reference(x, beta);
          const label = `${device} [${shape.join(', ')}] beta ${beta}`;
          for (const key of ['mseW', 'mseL', 'refMseW', 'refMseL'] as const) expectClose(got[key].toArray(), want[key], { rtol: 1e-5, atol: 1e-6 }, `${label} ${key}`);
          // inside amplifies the float32 rounding of the mse by beta.
          expectClose(got.inside.toArray(), want.inside, { rtol: 1e-4, atol: beta * 2e-6 }, `${label} inside`);
          expectClose(got.loss.toArray(), [want.loss], { rtol: 1e-4, atol: beta * 2e-6 }, `${label} loss`);
          expect(got.accuracy.item(), `${label} accuracy`).toBeCloseTo(want.accuracy, 6);
        }
      }
    });
  }

  it('is log 2 with accuracy 0.5 at step 0, when policy and reference agree', () => {
    const x = inputs(rng(), [4, 999]);
    x.arrays[2] = x.arrays[0]!;
    x.arrays[3] = x.arrays[1]!;
    for (const device of backends()) {
      const got = run(device, x, 2500);
      expect(got.loss.item(), device).toBeCloseTo(Math.log(2), 6);
      expect(got.accuracy.item(), device).toBe(0.5);
      expect(got.inside.toArray().every((v) => v === 0), `${device} inside all 0`).toBe(true);
    }
  });

  it('averages logsigmoid per pair, counts ties as 0.5 and stays finite at large beta', () => {
    // Pair 0: policy better on the winner (inside > 0); pair 1: worse (inside < 0); pair 2: a tie.
    const perPair = 64;
    const random = rng();
    const noiseW = randomArray(3 * perPair, random);
    const noiseL = randomArray(3 * perPair, random);
    const shifted = (noise: Float32Array, by: number[]) => noise.map((v, i) => v + by[Math.floor(i / perPair)]!);
    const x: Inputs = {
      shape: [3, perPair],
      arrays: [shifted(noiseW, [0.1, 0.5, 0.2]), shifted(noiseL, [0.3, 0.1, 0.2]), shifted(noiseW, [0.2, 0.2, 0.2]), shifted(noiseL, [0.2, 0.2, 0.2]), noiseW, noiseL],
    };
    for (const device of backends()) {
      for (const beta of [2500, 1e5]) {
        const got = run(device, x, beta);
        const want = reference(x, beta);
        const inside = got.inside.toArray();
        expect(inside[0]!, device).toBeGreaterThan(100);
        expect(inside[1]!, device).toBeLessThan(-100);
        expect(Math.abs(inside[2]!), device).toBeLessThan(beta * 1e-6);
        expect(Number.isFinite(got.loss.item()), `${device} loss finite at beta ${beta}`).toBe(true);
        expectClose(got.loss.toArray(), [want.loss], { rtol: 1e-3 }, `${device} loss at beta ${beta}`);
        // -logsigmoid(-big) ~ big: not mean-then-logsigmoid (which would give ~0 for opposite signs).
        expect(got.loss.item()).toBeGreaterThan(-inside[1]! / 3 - 1);
      }
      // Pair 1 an exact tie (policy == reference there); pair 0 a win (policy winner exact).
      const tie = inputs(rng(), [2, 33]);
      tie.arrays[2] = Float32Array.from(tie.arrays[0]!);
      tie.arrays[3] = Float32Array.from(tie.arrays[1]!);
      for (let i = 0; i < 33; i++) tie.arrays[0]![i] = tie.arrays[4]![i]!;
      const got = run(device, tie, 2500);
      const tieInside = got.inside.toArray();
      expect(tieInside[0]!, device).toBeGreaterThan(0);
      expect(tieInside[1] === 0, `${device} tie inside ${tieInside[1]}`).toBe(true);
      expect(got.accuracy.item(), device).toBe(0.75);
    }
  });

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const random = rng();
      for (const shape of [[1, 17], [3, 127], [2, 5000]]) {
        const x = inputs(random, shape);
        const cpu = run('cpu', x, 2500);
        const acc = run(device, x, 2500);
        for (const key of ['loss', 'accuracy', 'inside', 'mseW', 'mseL', 'refMseW', 'refMseL'] as const) {
          expectClose(acc[key].toArray(), cpu[key].toArray(), { rtol: 1e-5, atol: key === 'inside' || key === 'loss' ? 5e-3 : 1e-6 }, `${device} ${key} [${shape}]`);
        }
      }
    });
  }

  it('names the argument in errors', () => {
    const t = fromArray(new Float32Array(6), [2, 3]);
    const other = fromArray(new Float32Array(4), [2, 2]);
    expect(() => dpoLoss(t, t, t, other, t, t)).toThrow(/dpoLoss: refL has shape \[2, 2\], expected \[2, 3\]/);
    expect(() => dpoLoss(t, t, t, t, t, null as never)).toThrow(/dpoLoss: noiseL must be a Tensor, got null/);
    expect(() => dpoLoss(t, t, t, t, t, t, { beta: Number.NaN })).toThrow(/dpoLoss: beta must be a number/);
    expect(() => dpoLoss(t, t, t, t, t, t, { beta: Infinity })).toThrow(/dpoLoss: beta must be finite/);
    for (const beta of [-5, 0, 1e300]) {
      expect(() => dpoLoss(t, t, t, t, t, t, { beta }), `beta ${beta}`).toThrow(new RegExp(`dpoLoss: beta must be finite, > 0 and at most 3\\.4\\d*e\\+38 .*, got ${String(beta).replace('+', '\\+')}$`));
      expect(() => dpoLossBackward(t, t, t, t, fromArray([0, 0]), { beta }), `backward beta ${beta}`).toThrow(/dpoLossBackward: beta must be finite, > 0/);
    }
    const flat = fromArray(new Float32Array(6), [6]);
    expect(() => dpoLoss(flat, flat, flat, flat, flat, flat)).toThrow(/dpoLoss: predW has 1 dims, expected at least 2 \[pairs, \.\.\.\]/);
    expect(() => dpoLoss(t, t, t, t, t, fromArray([1, 2, 3, 4, 5, 6], [2, 3], { dtype: 'i32' }) as never)).toThrow(/dpoLoss: noiseL has dtype i32, expected f32/);
  });
});

describe('op dpo_loss_backward', () => {
  const grads = (device: DeviceType, x: Inputs, beta: number, dloss: number) => {
    const f = run(device, x, beta);
    const [pw, pl, , , nw, nl] = x.arrays.map((a) => fromArray(a, x.shape, { device }));
    const g = dpoLossBackward(pw!, pl!, nw!, nl!, f.inside, { beta, dloss });
    return { dw: g.dPredW.toArray(), dl: g.dPredL.toArray() };
  };

  it('matches central finite differences of the float64 forward', () => {
    const beta = 20;
    const dloss = 0.7;
    const random = rng();
    for (const shape of [[1, 17], [3, 11]]) {
      const x = inputs(random, shape);
      const f64 = x.arrays.map(toF64);
      const loss = () => {
        const [pw, pl, rw, rl, nw, nl] = f64;
        return [ref.dpoLoss(pw!, pl!, rw!, rl!, nw!, nl!, shape[0]!, beta).loss];
      };
      const wantW = numericGradient(loss, f64[0]!, [dloss]);
      const wantL = numericGradient(loss, f64[1]!, [dloss]);
      for (const device of backends()) {
        const got = grads(device, x, beta, dloss);
        expectClose(got.dw, wantW, { rtol: 1e-3, atol: 1e-6 }, `${device} dPredW [${shape}]`);
        expectClose(got.dl, wantL, { rtol: 1e-3, atol: 1e-6 }, `${device} dPredL [${shape}]`);
      }
    }
  });

  it('stays finite at large beta (saturated sigmoid) and matches finite differences of the float64 forward and the analytic limit', () => {
    // Pair 0: the policy better than the reference on the winner (inside >> 0, sigmoid(-inside)
    // -> 0, no gradient); pairs 1 and 2: worse (inside << 0, sigmoid(-inside) -> 1, so
    // dPredW = dloss 2 beta (predW - noiseW) / (pairs perPair) and dPredL its opposite for the loser).
    const perPair = 127;
    const pairs = 3;
    const random = rng();
    const noiseW = randomArray(pairs * perPair, random);
    const noiseL = randomArray(pairs * perPair, random);
    const shifted = (noise: Float32Array, by: number[]) => noise.map((v, i) => v + by[Math.floor(i / perPair)]! + 0.02 * (random() * 2 - 1));
    const x: Inputs = {
      shape: [pairs, perPair],
      arrays: [shifted(noiseW, [0.1, 0.5, 0.3]), shifted(noiseL, [0.3, 0.1, 0.2]), shifted(noiseW, [0.2, 0.2, 0.2]), shifted(noiseL, [0.2, 0.2, 0.3]), noiseW, noiseL],
    };
    const dloss = 0.7;
    const f64 = x.arrays.map(toF64);
    const [pw, pl, rw, rl, nw, nl] = f64;
    for (const beta of [1e6, 1e8]) {
      const want = ref.dpoLoss(pw!, pl!, rw!, rl!, nw!, nl!, pairs, beta);
      expect(want.inside[0]!, `beta ${beta}: pair 0 saturated at +`).toBeGreaterThan(1e4);
      expect(Math.max(want.inside[1]!, want.inside[2]!), `beta ${beta}: pairs 1, 2 saturated at -`).toBeLessThan(-1e4);
      const limit = (pred: Float64Array, noise: Float64Array, sign: number): Float64Array =>
        pred.map((v, i) => (want.inside[Math.floor(i / perPair)]! < 0 ? (sign * dloss * 2 * beta * (v - noise[i]!)) / (pairs * perPair) : 0));
      const limitW = limit(pw!, nw!, 1);
      const limitL = limit(pl!, nl!, -1);
      const loss = () => [ref.dpoLoss(pw!, pl!, rw!, rl!, nw!, nl!, pairs, beta).loss];
      const numericW = numericGradient(loss, pw!, [dloss]);
      const numericL = numericGradient(loss, pl!, [dloss]);
      // Gradients are O(beta / (pairs perPair)); finite differences of a loss of size O(beta)
      // carry ~1e-16 beta / h of rounding.
      const atol = beta * 1e-9;
      expectClose(numericW, limitW, { rtol: 1e-6, atol }, `beta ${beta}: the limit vs finite differences, W`);
      expectClose(numericL, limitL, { rtol: 1e-6, atol }, `beta ${beta}: the limit vs finite differences, L`);
      for (const device of backends()) {
        const got = grads(device, x, beta, dloss);
        const label = `${device} beta ${beta}`;
        expect(got.dw.every(Number.isFinite) && got.dl.every(Number.isFinite), `${label} finite`).toBe(true);
        expectClose(got.dw, numericW, { rtol: 1e-4, atol }, `${label} dPredW vs finite differences`);
        expectClose(got.dl, numericL, { rtol: 1e-4, atol }, `${label} dPredL vs finite differences`);
        expectClose(got.dw, limitW, { rtol: 1e-5, atol: 1e-6 }, `${label} dPredW vs the saturated limit`);
        expectClose(got.dl, limitL, { rtol: 1e-5, atol: 1e-6 }, `${label} dPredL vs the saturated limit`);
      }
    }
  });

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const x = inputs(rng(), [3, 1000]);
      const cpu = grads('cpu', x, 2500, 1.5);
      const acc = grads(device, x, 2500, 1.5);
      expectClose(acc.dw, cpu.dw, { rtol: 1e-4, atol: 1e-9 }, `${device} dPredW`);
      expectClose(acc.dl, cpu.dl, { rtol: 1e-4, atol: 1e-9 }, `${device} dPredL`);
    });
  }

  it('names the argument in errors', () => {
    const t = fromArray(new Float32Array(6), [2, 3]);
    expect(() => dpoLossBackward(t, t, t, t, fromArray([0, 0, 0]))).toThrow(/dpoLossBackward: inside has shape \[3\], expected \[2\]/);
    expect(() => dpoLossBackward(t, t, t, t, fromArray([0, 0]), { dloss: Number.NaN })).toThrow(/dpoLossBackward: dloss must be a number/);
  });
});
