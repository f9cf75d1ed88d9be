import { describe, expect, it } from 'vitest';
import type { DeviceType } from '../../lib/device.js';
import { fromArray, zeros } from '../../lib/tensor.js';
import { adamwStep, clipGradNorm, globalNorm, sumSquares } from '../../lib/ops/optim.js';
import * as ref from '../reference/optim.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectClose, expectIdentical, randomArray, rng, toF64 } from '../helpers.js';

checkMemoryGuards();

const hyper = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 };

function runAdamW(device: DeviceType, n: number, steps: number, seed: number) {
  const random = rng(seed);
  const p0 = randomArray(n, random);
  const param = fromArray(p0, [n], { device });
  const m = zeros([n], { device });
  const v = zeros([n], { device });
  const state = { param: toF64(p0), m: new Float64Array(n), v: new Float64Array(n) };
  for (let step = 1; step <= steps; step++) {
    const g = randomArray(n, random, step % 2 === 0 ? 0.01 : 3);
    adamwStep(param, fromArray(g, [n], { device }), m, v, { ...hyper, step });
    ref.adamwStep(state, g, hyper, step);
  }
  return { param: param.toArray(), m: m.toArray(), v: v.toArray(), state };
}

describe('op adamw', () => {
  for (const device of backends()) {
    it(`five steps match the float64 reference on ${device}`, () => {
      for (const n of [1, 17, 4099, 70_001]) {
        const r = runAdamW(device, n, 5, n);
        expectClose(r.m, r.state.m, { rtol: 1e-5, atol: 1e-7 }, `m n=${n}`);
        expectClose(r.v, r.state.v, { rtol: 1e-5, atol: 1e-9 }, `v n=${n}`);
        expectClose(r.param, r.state.param, { rtol: 1e-5, atol: 1e-6 }, `param n=${n}`);
      }
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const onCpu = runAdamW('cpu', 4099, 3, 11);
      const onDevice = runAdamW(device, 4099, 3, 11);
      expectClose(onDevice.param, onCpu.param, { rtol: 1e-6, atol: 1e-7 }, `${device} vs cpu`);
    });
  }

  it('uses the documented defaults', () => {
    const param = fromArray([1, -2]);
    const grad = fromArray([0.5, 0.25]);
    const m = zeros([2]);
    const v = zeros([2]);
    adamwStep(param, grad, m, v, { lr: 0.1, step: 1 });
    const state = { param: toF64([1, -2]), m: new Float64Array(2), v: new Float64Array(2) };
    ref.adamwStep(state, [0.5, 0.25], { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }, 1);
    expectClose(param.toArray(), state.param, { rtol: 1e-6 }, 'defaults');
  });

  it('names the argument in errors', () => {
    const p = fromArray([1, 2]);
    const z = () => zeros([2]);
    expect(() => adamwStep(p, fromArray([1]), z(), z(), { lr: 1, step: 1 })).toThrow(/adamwStep: grad has shape \[1\], expected \[2\]/);
    expect(() => adamwStep(p, z(), z(), z(), { lr: 1, step: 0 })).toThrow(/adamwStep: step must be an integer >= 1, got 0/);
    expect(() => adamwStep(p, z(), z(), z(), { lr: 1, step: 1, beta2: 1 })).toThrow(/adamwStep: beta2 must be in \[0, 1\), got 1/);
    expect(() => adamwStep(p, z(), z(), fromArray([1, 2], [2], { dtype: 'bf16' }) as never, { lr: 1, step: 1 })).toThrow(
      /adamwStep: v has dtype bf16, expected f32/,
    );
  });
});

describe('op sum_squares', () => {
  for (const device of backends()) {
    it(`matches the float64 reference, overwriting and accumulating, on ${device}`, () => {
      const random = rng();
      for (const n of [0, 1, 17, 127, 4099, 70_001]) {
        const x = randomArray(n, random);
        const out = fromArray([123], [1], { device });
        sumSquares(fromArray(x, [n], { device }), { out });
        expectClose(out.toArray(), [ref.sumSquares(x)], { rtol: 1e-6 }, `n=${n}`);
        sumSquares(fromArray(x, [n], { device }), { out, accumulate: true });
        expectClose(out.toArray(), [2 * ref.sumSquares(x)], { rtol: 1e-6 }, `accumulated n=${n}`);
      }
    });

    it(`globalNorm spans several tensors on ${device}`, () => {
      const random = rng();
      const arrays = [randomArray(17, random), randomArray(4099, random, 3), randomArray(1, random)];
      const norm = globalNorm(arrays.map((a) => fromArray(a, [a.length], { device })));
      expect(norm).toBeCloseTo(Math.sqrt(ref.sumSquares(...arrays)), 4);
      expect(globalNorm([])).toBe(0);
    });
  }

  for (const device of acceleratorBackends()) {
    // 300_001 elements fill the 1024-block grid, whose partials once met in one float atomic.
    it(`gives bit-identical squared norms on two runs on ${device}`, () => {
      const random = rng();
      const tensors = [300_001, 70_001, 17].map((n) => fromArray(randomArray(n, random), [n], { device }));
      const run = () => {
        const out = sumSquares(tensors[0]!);
        for (const t of tensors.slice(1)) sumSquares(t, { out, accumulate: true });
        return out.toArray();
      };
      expectIdentical(run(), run(), `${device} accumulated sum of squares, second run vs first`);
      expect(globalNorm(tensors)).toBe(globalNorm(tensors));
    });
  }

  it('names the argument in errors', () => {
    expect(() => sumSquares(fromArray([1]), { out: zeros([2]) })).toThrow(/sumSquares: out has 2 elements, expected 1/);
    const other = acceleratorBackends()[0];
    if (other) expect(() => globalNorm([fromArray([1]), fromArray([1], [1], { device: other })])).toThrow(new RegExp(`globalNorm: tensors\\[1\\] is on ${other}, expected cpu`));
  });
});

describe('op clip_by_norm', () => {
  for (const device of backends()) {
    for (const maxNorm of [0.5, 1e6]) {
      it(`clipGradNorm with max ${maxNorm} (${maxNorm < 1 ? 'clips' : 'leaves alone'}) on ${device}`, () => {
        const random = rng();
        const arrays = [randomArray(70_001, random), randomArray(17, random)];
        const tensors = arrays.map((a) => fromArray(a, [a.length], { device }));
        const totalSq = ref.sumSquares(...arrays);
        const norm = clipGradNorm(tensors, maxNorm);
        expect(norm).toBeCloseTo(Math.sqrt(totalSq), 2);
        const factor = ref.clipFactor(totalSq, maxNorm);
        if (factor === 1) {
          tensors.forEach((t, i) => expectClose(t.toArray(), arrays[i]!, { rtol: 0, atol: 0 }, `unchanged ${i}`));
        } else {
          tensors.forEach((t, i) => expectClose(t.toArray(), Array.from(arrays[i]!, (v) => v * factor), { rtol: 1e-5, atol: 1e-9 }, `clipped ${i}`));
          expect(globalNorm(tensors)).toBeCloseTo(maxNorm, 4);
        }
      });
    }
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu given the same squared norm`, () => {
      const x = randomArray(4099, rng());
      const onCpu = fromArray(x);
      clipGradNorm([onCpu], 0.1);
      const onDevice = fromArray(x, [x.length], { device });
      clipGradNorm([onDevice], 0.1);
      expectClose(onDevice.toArray(), onCpu.toArray(), { rtol: 1e-6, atol: 0 }, `${device} vs cpu`);
    });

    it(`clips to bit-identical values on two runs on ${device}`, () => {
      const values = randomArray(300_001, rng());
      const run = () => {
        const t = fromArray(values, [values.length], { device });
        const norm = clipGradNorm([t], 0.5);
        return { norm, clipped: t.toArray() };
      };
      const first = run();
      const second = run();
      expect(second.norm).toBe(first.norm);
      expectIdentical(second.clipped, first.clipped, `${device} clipped, second run vs first`);
    });
  }

  it('names the argument in errors', () => {
    expect(() => clipGradNorm([fromArray([1])], -1)).toThrow(/clipGradNorm: maxNorm must be finite and >= 0, got -1/);
    expect(() => clipGradNorm([fromArray([1], [1], { dtype: 'i32' }) as never], 1)).toThrow(/clipGradNorm: tensors\[0\] has dtype i32, expected f32/);
  });
});
