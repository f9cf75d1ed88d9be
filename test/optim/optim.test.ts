import { describe, expect, it } from 'vitest';
import { Variable } from '../../lib/autograd/variable.js';
import { AdamW } from '../../lib/optim/adamw.js';
import { EMA } from '../../lib/optim/ema.js';
import { constantWithWarmup, cosineWithWarmup, lrSchedule } from '../../lib/optim/schedule.js';
import { fromArray } from '../../lib/tensor.js';
import { checkMemoryGuards, expectClose, randomArray, rng } from '../helpers.js';

checkMemoryGuards();

/** float64 AdamW with decoupled decay and an optional L1 subgradient. */
function referenceAdamW(w: Float64Array, grads: Float64Array[], lr: number, wd: number, l1: number): Float64Array {
  const m = new Float64Array(w.length);
  const v = new Float64Array(w.length);
  const p = Float64Array.from(w);
  grads.forEach((g0, index) => {
    const t = index + 1;
    for (let i = 0; i < p.length; i++) {
      const g = g0[i]! + l1 * Math.sign(p[i]!);
      m[i] = 0.9 * m[i]! + 0.1 * g;
      v[i] = 0.999 * v[i]! + 0.001 * g * g;
      const mhat = m[i]! / (1 - 0.9 ** t);
      const vhat = v[i]! / (1 - 0.999 ** t);
      p[i] = p[i]! - lr * (mhat / (Math.sqrt(vhat) + 1e-8) + wd * p[i]!);
    }
  });
  return p;
}

describe('AdamW', () => {
  it('matches a float64 AdamW (decoupled decay, L1) over several steps', () => {
    const random = rng();
    const w0 = randomArray(37, random);
    const grads = Array.from({ length: 5 }, () => Float64Array.from(randomArray(37, random)));
    const param = new Variable(fromArray(w0), { requiresGrad: true });
    const opt = new AdamW([['w', param]], { lr: 0.01, weightDecay: 0.1, l1: 0.05 });
    for (const g of grads) {
      param.zeroGrad();
      param.grad = fromArray(Float32Array.from(g));
      opt.step();
    }
    expectClose(param.value.toArray(), referenceAdamW(Float64Array.from(w0), grads, 0.01, 0.1, 0.05), { rtol: 1e-4, atol: 1e-6 }, 'adamw');
    expect(opt.stepCount).toBe(5);
  });

  it('saves and restores its state so training continues identically', () => {
    const random = rng();
    const w0 = randomArray(8, random);
    const g = randomArray(8, random);
    const run = (resumeAt: number | null): Float32Array => {
      let param = new Variable(fromArray(w0), { requiresGrad: true });
      let opt = new AdamW([['w', param]], { lr: 0.1 });
      for (let step = 0; step < 4; step++) {
        if (step === resumeAt) {
          const state = opt.stateDict();
          const saved = { tensors: Object.fromEntries(Object.entries(state.tensors).map(([k, t]) => [k, t.clone()])), step: state.step };
          param = new Variable(param.value.clone(), { requiresGrad: true });
          opt = new AdamW([['w', param]], { lr: 0.1 });
          opt.loadStateDict(saved);
        }
        param.grad = fromArray(g);
        opt.step();
      }
      return param.value.toArray();
    };
    expect(Array.from(run(2))).toEqual(Array.from(run(null)));
  });

  it('scales and clips gradients, and skips parameters without a gradient', () => {
    const a = new Variable(fromArray([1, 1]), { requiresGrad: true });
    const b = new Variable(fromArray([5]), { requiresGrad: true });
    const opt = new AdamW([['a', a], ['b', b]], { lr: 0.1 });
    a.grad = fromArray([3, 4]);
    opt.scaleGrads(0.5);
    expectClose(a.grad.toArray(), [1.5, 2], {}, 'scaled');
    expect(opt.clipGradNorm(1)).toBeCloseTo(2.5, 5);
    expectClose(a.grad.toArray(), [0.6, 0.8], { rtol: 1e-5 }, 'clipped');
    opt.step();
    expect(b.value.toArray()[0]).toBe(5);
    expect(() => new AdamW([['a', a], ['a', b]], { lr: 1 })).toThrow(/"a" appears twice/);
    expect(() => opt.loadStateDict({ tensors: { 'zz.m': fromArray([1]) }, step: 1 })).toThrow(/"zz.m" names no parameter/);
  });
});

describe('learning-rate schedules', () => {
  it('warm up linearly, then hold or decay by cosine', () => {
    const c = constantWithWarmup(1e-3, 10);
    expect(c(0)).toBeCloseTo(1e-4, 12);
    expect(c(9)).toBeCloseTo(1e-3, 12);
    expect(c(500)).toBe(1e-3);
    const cos = cosineWithWarmup(1, 110, 10, 0.1);
    expect(cos(10)).toBeCloseTo(1, 12);
    expect(cos(60)).toBeCloseTo(0.55, 12);
    expect(cos(110)).toBeCloseTo(0.1, 12);
    expect(cos(1000)).toBeCloseTo(0.1, 12);
    expect(() => lrSchedule('step' as never, 1, 1)).toThrow(/expected 'constant' or 'cosine'/);
  });
});

describe('EMA', () => {
  it('tracks decay * shadow + (1 - decay) * weight and swaps the average in temporarily', () => {
    const w = new Variable(fromArray([0, 10]), { requiresGrad: true });
    const ema = new EMA([['w', w]], 0.5);
    w.value.copy_(fromArray([2, 20]));
    ema.update();
    expectClose(ema.shadow.get('w')!.toArray(), [1, 15], {}, 'shadow');
    const seen = ema.withAveraged(() => Array.from(w.value.toArray()));
    expect(seen).toEqual([1, 15]);
    expect(Array.from(w.value.toArray())).toEqual([2, 20]);
    expect(() => new EMA([], 1)).toThrow(/decay must be in \[0, 1\)/);
  });
});
