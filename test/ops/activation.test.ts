import { describe, expect, it } from 'vitest';
import { fromArray } from '../../lib/tensor.js';
import { gelu, geluBackward, silu, siluBackward } from '../../lib/ops/activation.js';
import * as ref from '../reference/activation.js';
import {
  acceleratorBackends,
  backends,
  checkMemoryGuards,
  expectClose,
  numericGradient,
  randomArray,
  rng,
  toF64,
} from '../helpers.js';

checkMemoryGuards();

const sizes = [1, 17, 127, 4099, 70_001];
const kinds = [
  { name: 'gelu', forward: gelu, backward: geluBackward, refForward: ref.gelu, refBackward: ref.geluBackward },
  { name: 'silu', forward: silu, backward: siluBackward, refForward: ref.silu, refBackward: ref.siluBackward },
] as const;

/** Values spread over the interesting range, plus the tails where exp saturates. */
function inputs(n: number, random: () => number): Float32Array {
  const x = randomArray(n, random, 6);
  const tails = [-100, -30, -10, -1e-4, 0, 1e-4, 10, 30, 100];
  for (let i = 0; i < Math.min(n, tails.length); i++) x[i] = tails[i]!;
  return x;
}

describe('op activation', () => {
  for (const kind of kinds) {
    for (const device of backends()) {
      it(`${kind.name} matches the float64 reference on ${device}`, () => {
        const random = rng();
        for (const n of device === 'cpu' ? sizes : sizes.slice(0, 4)) {
          const x = inputs(n, random);
          const y = kind.forward(fromArray(x, [n], { device }));
          expectClose(y.toArray(), kind.refForward(x), { rtol: 1e-5, atol: 1e-6 }, `${device} ${kind.name} n=${n}`);
        }
        const shaped = kind.forward(fromArray(inputs(6, random), [2, 3], { device }));
        expect(shaped.shape).toEqual([2, 3]);
      });
    }

    for (const device of acceleratorBackends()) {
      it(`${kind.name}: ${device} agrees with cpu`, () => {
        const x = inputs(4099, rng());
        const onCpu = kind.forward(fromArray(x)).toArray();
        const onDevice = kind.forward(fromArray(x, [4099], { device })).toArray();
        expectClose(onDevice, onCpu, { rtol: 1e-5, atol: 1e-6 }, `${device} vs cpu`);
      });
    }
  }

  it('names the argument in errors', () => {
    expect(() => gelu(fromArray([1], [1], { dtype: 'i32' }) as never)).toThrow(/gelu: x has dtype i32, expected f32/);
    expect(() => silu(null as never)).toThrow(/silu: x must be a Tensor, got null/);
  });
});

describe('op activation_backward', () => {
  for (const kind of kinds) {
    it(`${kind.name}: the float64 reference backward matches finite differences`, () => {
      const random = rng();
      const x = toF64(inputs(64, random));
      const dy = randomArray(64, random);
      const numeric = numericGradient(() => kind.refForward(x), x, dy);
      expectClose(kind.refBackward(x, dy), numeric, { rtol: 1e-6, atol: 1e-8 }, `${kind.name} reference`);
    });

    for (const device of backends()) {
      it(`${kind.name} matches finite differences and the reference on ${device}`, () => {
        const random = rng();
        const x = inputs(64, random);
        const dy = randomArray(64, random);
        const x64 = toF64(x);
        const numeric = numericGradient(() => kind.refForward(x64), x64, dy);
        const dx = kind.backward(fromArray(x, [64], { device }), fromArray(dy, [64], { device })).toArray();
        expectClose(dx, numeric, { rtol: 1e-4, atol: 1e-6 }, `${device} ${kind.name} vs finite differences`);
        for (const n of device === 'cpu' ? sizes : sizes.slice(0, 4)) {
          const xn = inputs(n, random);
          const dyn = randomArray(n, random);
          const dxn = kind.backward(fromArray(xn, [n], { device }), fromArray(dyn, [n], { device })).toArray();
          expectClose(dxn, kind.refBackward(xn, dyn), { rtol: 1e-5, atol: 1e-6 }, `${device} ${kind.name} n=${n}`);
        }
      });
    }

    for (const device of acceleratorBackends()) {
      it(`${kind.name}: ${device} agrees with cpu`, () => {
        const random = rng();
        const x = inputs(4099, random);
        const dy = randomArray(4099, random);
        const onCpu = kind.backward(fromArray(x), fromArray(dy)).toArray();
        const onDevice = kind.backward(fromArray(x, [4099], { device }), fromArray(dy, [4099], { device })).toArray();
        expectClose(onDevice, onCpu, { rtol: 1e-5, atol: 1e-6 }, `${device} vs cpu`);
      });
    }
  }

  it('names the argument in errors', () => {
    expect(() => geluBackward(fromArray([1, 2]), fromArray([1]))).toThrow(/geluBackward: dy has shape \[1\], expected \[2\]/);
    expect(() => siluBackward(fromArray([1]), fromArray([1], [1], { dtype: 'i32' }) as never)).toThrow(/siluBackward: dy has dtype i32/);
  });
});
