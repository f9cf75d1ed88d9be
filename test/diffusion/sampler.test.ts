import { describe, expect, it } from 'vitest';
import { NoiseSchedule } from '../../lib/diffusion/schedule.js';
import { denoise, guidedPredictor, qSample, sample, sdedit, type EpsPredictor } from '../../lib/diffusion/sampler.js';
import { axpy, scale } from '../../lib/ops/elementwise.js';
import { fromArray, full, type Tensor } from '../../lib/tensor.js';
import { checkMemoryGuards, expectClose, randomArray, rng } from '../helpers.js';

checkMemoryGuards();

/** The exact noise predictor for data that is a single point x0: eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar). */
function oracle(x0: Tensor<'f32'>, schedule: NoiseSchedule): EpsPredictor {
  return (xt, t) => {
    const { signal, noise } = schedule.signalNoise(t);
    const eps = scale(xt, 1 / noise);
    return axpy(-signal / noise, x0, eps);
  };
}

describe('noise schedules', () => {
  it('linear runs from 1e-4 to 0.02 and abar decreases to near 0', () => {
    const s = NoiseSchedule.linear();
    expect(s.betas[0]).toBeCloseTo(1e-4, 12);
    expect(s.betas[999]).toBeCloseTo(0.02, 12);
    expect(s.alphasCumprod[999]!).toBeLessThan(1e-4);
    for (let t = 1; t < 1000; t++) expect(s.alphasCumprod[t]!).toBeLessThan(s.alphasCumprod[t - 1]!);
  });

  it('cosine matches its closed form abar_t = f(t+1)/f(0)', () => {
    const s = NoiseSchedule.cosine();
    const f = (t: number) => Math.cos(((t / 1000 + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    for (const t of [0, 10, 500, 900]) expect(s.alphasCumprod[t]!).toBeCloseTo(f(t + 1) / f(0), 8);
    expect(Math.max(...s.betas)).toBeLessThanOrEqual(0.999);
  });

  it('samplingTimesteps spans start..0 without repeats', () => {
    const s = NoiseSchedule.linear();
    const ts = s.samplingTimesteps(50);
    expect(ts[0]).toBe(999);
    expect(ts.at(-1)).toBe(0);
    expect(new Set(ts).size).toBe(ts.length);
    expect(() => s.samplingTimesteps(0)).toThrow(/count must be an integer >= 1/);
    expect(() => s.signalNoise(1000)).toThrow(/timestep must be an integer in \[0, 1000\), got 1000/);
  });
});

describe('qSample', () => {
  it('mixes x0 and noise per sample with sqrt(abar) and sqrt(1 - abar)', () => {
    const s = NoiseSchedule.linear();
    const random = rng();
    const x0 = randomArray(2 * 12, random);
    const eps = randomArray(2 * 12, random);
    const out = qSample(fromArray(x0, [2, 3, 2, 2]), [0, 700], fromArray(eps, [2, 3, 2, 2]), s).toArray();
    const expected = new Float64Array(24);
    for (let i = 0; i < 24; i++) {
      const { signal, noise } = s.signalNoise(i < 12 ? 0 : 700);
      expected[i] = signal * x0[i]! + noise * eps[i]!;
    }
    expectClose(out, expected, { rtol: 1e-5, atol: 1e-6 }, 'qSample');
    expect(() => qSample(fromArray(x0, [2, 12]), [1], fromArray(eps, [2, 12]), s)).toThrow(/timesteps has 1 entries, expected one per sample \(2\)/);
  });
});

describe('samplers', () => {
  const schedule = NoiseSchedule.linear();
  const target = randomArray(2 * 3 * 4 * 4, rng(), 0.9);

  it('DDIM with the exact predictor recovers the data point', () => {
    const x0 = fromArray(target, [2, 3, 4, 4]);
    const out = sample(oracle(x0, schedule), [2, 3, 4, 4], schedule, { sampler: 'ddim', steps: 20, seed: 3 });
    expectClose(out.toArray(), target, { rtol: 1e-3, atol: 1e-3 }, 'ddim');
  });

  it('DDPM (ancestral, strided) with the exact predictor recovers the data point', () => {
    const x0 = fromArray(target, [2, 3, 4, 4]);
    const out = sample(oracle(x0, schedule), [2, 3, 4, 4], schedule, { sampler: 'ddpm', steps: 100, seed: 4 });
    expectClose(out.toArray(), target, { rtol: 1e-3, atol: 2e-3 }, 'ddpm');
  });

  it('is deterministic by seed, and different seeds differ', () => {
    const wrong: EpsPredictor = (xt) => scale(xt, 0.5);
    const a = sample(wrong, [1, 3, 4, 4], schedule, { sampler: 'ddpm', steps: 10, seed: 5 }).toArray();
    const b = sample(wrong, [1, 3, 4, 4], schedule, { sampler: 'ddpm', steps: 10, seed: 5 }).toArray();
    const c = sample(wrong, [1, 3, 4, 4], schedule, { sampler: 'ddpm', steps: 10, seed: 6 }).toArray();
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
  });

  it('SDEdit from a low noise level returns the image under the exact predictor', () => {
    const x0 = fromArray(target, [2, 3, 4, 4]);
    const out = sdedit(oracle(x0, schedule), x0, 300, schedule, { seed: 9 });
    expectClose(out.toArray(), target, { rtol: 1e-3, atol: 1e-3 }, 'sdedit');
  });

  it('classifier-free guidance combines negative + cfg * (positive - negative)', () => {
    const predict = (_xt: Tensor<'f32'>, _t: number, cond: number) => full([4], cond);
    const guided = guidedPredictor(predict, 3, 1, 5);
    expectClose(guided(full([4], 0), 10).toArray(), new Float64Array(4).fill(1 + 5 * (3 - 1)), {}, 'cfg');
    expect(() => guidedPredictor(predict, 3, 1, -1)).toThrow(/cfg must be >= 0/);
  });

  it('denoise rejects an unknown sampler', () => {
    expect(() => denoise((x) => x, full([1], 0), schedule, { sampler: 'euler' as never })).toThrow(/sampler must be 'ddpm' or 'ddim', got "euler"/);
  });
});
