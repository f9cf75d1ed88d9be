import { describe, expect, it } from 'vitest';
import type { DeviceType } from '../../lib/device.js';
import { channelStatLoss, channelStatLossBackward } from '../../lib/ops/channel_stat_loss.js';
import { fromArray } from '../../lib/tensor.js';
import * as ref from '../reference/channel_stat_loss.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectClose, numericGradient, randomArray, rng, toF64 } from '../helpers.js';

checkMemoryGuards();

const shapes = [
  [1, 1, 1],
  [2, 3, 17],
  [1, 5, 127],
  [3, 1, 4099],
  [2, 3, 5, 7],
  [1, 2, 70_001],
];

const rowsOf = (shape: number[]) => shape[0]! * shape[1]!;
const numelOf = (shape: number[]) => shape.reduce((p, d) => p * d, 1);

/** Channel data with per-row offsets and spreads, so means and stds differ between rows. */
function channels(random: () => number, shape: number[], offset = 0): Float32Array {
  const rows = rowsOf(shape);
  const n = numelOf(shape) / rows;
  const out = randomArray(rows * n, random);
  for (let r = 0; r < rows; r++) {
    const shift = offset + random() - 0.5;
    const spread = 0.5 + random();
    for (let i = 0; i < n; i++) out[r * n + i] = shift + spread * out[r * n + i]!;
  }
  return out;
}

function run(device: DeviceType, a: Float32Array, b: Float32Array, shape: number[], matchStd: boolean) {
  return channelStatLoss(fromArray(a, shape, { device }), fromArray(b, shape, { device }), { matchStd });
}

describe('op channel_stat_loss', () => {
  for (const device of backends()) {
    it(`matches the float64 reference on ${device}`, () => {
      const random = rng();
      for (const shape of device === 'cpu' ? shapes : shapes.slice(0, 4)) {
        const a = channels(random, shape);
        const b = channels(random, shape);
        for (const matchStd of [false, true]) {
          const got = run(device, a, b, shape, matchStd);
          const want = ref.channelStatLoss(a, b, rowsOf(shape), matchStd);
          const label = `${device} [${shape}] matchStd ${matchStd}`;
          expect(got.meanA.shape).toEqual(shape.slice(0, 2));
          expectClose(got.loss.toArray(), [want.loss], { rtol: 1e-5, atol: 1e-7 }, `${label} loss`);
          expectClose(got.meanA.toArray(), want.meanA, { rtol: 1e-5, atol: 1e-6 }, `${label} meanA`);
          expectClose(got.meanB.toArray(), want.meanB, { rtol: 1e-5, atol: 1e-6 }, `${label} meanB`);
          expect(got.stdA === undefined).toBe(!matchStd);
          if (matchStd) {
            expectClose(got.stdA!.toArray(), want.stdA, { rtol: 1e-5, atol: 1e-6 }, `${label} stdA`);
            expectClose(got.stdB!.toArray(), want.stdB, { rtol: 1e-5, atol: 1e-6 }, `${label} stdB`);
          }
        }
      }
    });
  }

  it('keeps the std accurate for data far from zero (no catastrophic cancellation)', () => {
    const shape = [2, 3, 5000];
    const random = rng();
    const a = channels(random, shape, 1000);
    const b = channels(random, shape, 1000);
    const want = ref.channelStatLoss(a, b, rowsOf(shape), true);
    for (const device of backends()) {
      const got = run(device, a, b, shape, true);
      expectClose(got.stdA!.toArray(), want.stdA, { rtol: 1e-4 }, `${device} stdA`);
    }
  });

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const random = rng();
      for (const shape of [[1, 1, 1], [2, 3, 127], [1, 2, 5000]]) {
        const a = channels(random, shape);
        const b = channels(random, shape);
        const cpu = run('cpu', a, b, shape, true);
        const acc = run(device, a, b, shape, true);
        for (const key of ['loss', 'meanA', 'meanB', 'stdA', 'stdB'] as const) {
          expectClose(acc[key]!.toArray(), cpu[key]!.toArray(), { rtol: 1e-5, atol: 1e-6 }, `${device} ${key} [${shape}]`);
        }
      }
    });
  }

  it('names the argument in errors', () => {
    const a = fromArray(new Float32Array(6), [1, 2, 3]);
    expect(() => channelStatLoss(a, fromArray(new Float32Array(6), [2, 1, 3]))).toThrow(/channelStatLoss: b has shape \[2, 1, 3\], expected \[1, 2, 3\]/);
    expect(() => channelStatLoss(fromArray(new Float32Array(6), [6]), a)).toThrow(/channelStatLoss: a has 1 dims, expected 3 \[batch, channels, n\] or 4/);
    expect(() => channelStatLoss(a, undefined as never)).toThrow(/channelStatLoss: b must be a Tensor, got undefined/);
    expect(() => channelStatLoss(a, a, { matchStd: 1 as never })).toThrow(/channelStatLoss: matchStd must be a boolean/);
  });
});

describe('op channel_stat_loss_backward', () => {
  const grad = (device: DeviceType, a: Float32Array, b: Float32Array, shape: number[], matchStd: boolean, dloss: number) => {
    const at = fromArray(a, shape, { device });
    const saved = channelStatLoss(at, fromArray(b, shape, { device }), { matchStd });
    return channelStatLossBackward(at, saved, { dloss }).da.toArray();
  };

  it('matches central finite differences of the float64 forward', () => {
    const random = rng();
    for (const shape of [[1, 1, 5], [2, 3, 7]]) {
      const a = channels(random, shape);
      const b = channels(random, shape);
      for (const matchStd of [false, true]) {
        const a64 = toF64(a);
        const want = numericGradient(() => [ref.channelStatLoss(a64, b, rowsOf(shape), matchStd).loss], a64, [0.6]);
        for (const device of backends()) {
          expectClose(grad(device, a, b, shape, matchStd, 0.6), want, { rtol: 1e-3, atol: 1e-6 }, `${device} [${shape}] matchStd ${matchStd}`);
        }
      }
    }
  });

  it('gives a zero std gradient for a constant row (std not differentiable there)', () => {
    const shape = [1, 1, 4];
    for (const device of backends()) {
      const da = grad(device, new Float32Array([2, 2, 2, 2]), new Float32Array([0, 1, 2, 3]), shape, true, 1);
      expectClose(da, [0.25, 0.25, 0.25, 0.25], { rtol: 1e-6 }, device); // only the mean term: 2 (2 - 1.5) / 4
    }
  });

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const shape = [2, 3, 1001];
      const random = rng();
      const a = channels(random, shape);
      const b = channels(random, shape);
      for (const matchStd of [false, true]) {
        expectClose(grad(device, a, b, shape, matchStd, 2), grad('cpu', a, b, shape, matchStd, 2), { rtol: 1e-4, atol: 1e-9 }, `${device} matchStd ${matchStd}`);
      }
    });
  }

  it('names the argument in errors', () => {
    const a = fromArray(new Float32Array(6), [1, 2, 3]);
    const saved = channelStatLoss(a, a);
    expect(() => channelStatLossBackward(a, saved, { matchStd: true })).toThrow(/channelStatLossBackward: saved.stdA is missing/);
    expect(() => channelStatLossBackward(fromArray(new Float32Array(6), [2, 1, 3]), saved)).toThrow(
      /channelStatLossBackward: saved.meanA has shape \[1, 2\], expected \[2, 1\]/,
    );
  });
});
