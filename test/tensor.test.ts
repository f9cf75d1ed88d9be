import { describe, expect, it } from 'vitest';
import { devices, resolveDevice } from '../lib/device.js';
import { native } from '../lib/native.js';
import { keep, tidy } from '../lib/scope.js';
import { empty, fromArray, full, ones, Tensor, zeros } from '../lib/tensor.js';
import { backends, checkMemoryGuards, expectIdentical } from './helpers.js';

checkMemoryGuards();

describe('op fill', () => {
  for (const device of backends()) {
    it(`zeros, ones and full on ${device} for every dtype`, () => {
      expectIdentical(zeros([2, 3], { device }).toArray(), new Float32Array(6), 'zeros');
      expectIdentical(ones([5], { device, dtype: 'bf16' }).toArray(), new Float32Array(5).fill(1), 'ones bf16');
      expectIdentical(full([3], -7, { device, dtype: 'i32' }).toArray(), new Int32Array([-7, -7, -7]), 'full i32');
      // 0.1 is not representable in bf16: ties-to-even rounding gives 0.10009765625.
      expectIdentical(full([2], 0.1, { device, dtype: 'bf16' }).toArray(), new Float32Array([0.10009765625, 0.10009765625]), 'full bf16');
      const big = full([70_001], 2.5, { device });
      expect(big.toArray().every((v) => v === 2.5)).toBe(true);
    });
  }
});

describe('tensors', () => {
  it('round-trips data through fromArray/toArray for each dtype', () => {
    expectIdentical(fromArray([1.5, -2, 3e-8], [3]).toArray(), new Float32Array([1.5, -2, 3e-8]));
    expectIdentical(fromArray([1, -2, 2147483647], [3], { dtype: 'i32' }).toArray(), new Int32Array([1, -2, 2147483647]));
    // bf16 keeps 8 significant bits: 1 + 2^-8 rounds to 1 (tie to even), 1 + 3*2^-8 to 1 + 2^-6.
    expectIdentical(fromArray([1.00390625, 1.01171875], [2], { dtype: 'bf16' }).toArray(), new Float32Array([1, 1.015625]));
  });

  it('reshapes as a view sharing memory, with -1 inferred', () => {
    const t = fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    const v = t.reshape([3, -1]);
    expect(v.shape).toEqual([3, 2]);
    v.copy_(fromArray([6, 5, 4, 3, 2, 1], [3, 2]));
    expectIdentical(t.toArray(), new Float32Array([6, 5, 4, 3, 2, 1]));
    expect(() => t.reshape([4, -1])).toThrow(/reshape: cannot infer -1 in \[4, -1\] for 6 elements/);
    expect(() => t.view([7])).toThrow(/reshape: shape \[7\] has 7 elements, expected 6/);
  });

  it('slices and selects rows of the leading axis as views', () => {
    const t = fromArray([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [3, 2, 2]);
    expectIdentical(t.slice(1, 3).toArray(), new Float32Array([4, 5, 6, 7, 8, 9, 10, 11]));
    expect(t.slice(1).shape).toEqual([2, 2, 2]);
    const row = t.select(2);
    expect(row.shape).toEqual([2, 2]);
    row.copy_(fromArray([-1, -2, -3, -4], [2, 2]));
    expectIdentical(t.toArray().slice(8), new Float32Array([-1, -2, -3, -4]));
    expect(() => t.slice(2, 4)).toThrow(/slice: range \[2, 4\) is outside the leading axis of f32 \[3, 2, 2\] on cpu/);
    expect(() => native.viewRange(t.handle, 10, [3])).toThrow(/viewRange: elements \[10, 13\) are outside/);
  });

  it('copies between devices', () => {
    for (const device of backends()) {
      const t = fromArray([1, 2, 3], [3], { device: 'cpu' });
      const moved = t.to(device);
      expect(moved.device).toBe(device);
      expectIdentical(moved.toArray(), new Float32Array([1, 2, 3]));
      expectIdentical(moved.to('cpu').toArray(), new Float32Array([1, 2, 3]));
    }
  });

  it('throws a clear error on use after dispose; dispose is idempotent; views keep memory alive', () => {
    const t = fromArray([1, 2, 3, 4]);
    const v = t.reshape([2, 2]);
    t.dispose();
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.toArray()).toThrow(/tensor f32 \[4\] on cpu was disposed/);
    expectIdentical(v.toArray(), new Float32Array([1, 2, 3, 4]));
  });

  it('rejects bad shapes, data and dtypes with errors that name the argument', () => {
    expect(() => zeros([2, -1])).toThrow(RangeError);
    expect(() => zeros([2.5])).toThrow(/zeros|empty: shape dimensions must be integers >= 0/);
    expect(() => fromArray([1, 2, 3], [2, 2])).toThrow(/fromArray: data has 3 elements, shape \[2, 2\] needs 4/);
    expect(() => fromArray([1.5], [1], { dtype: 'i32' })).toThrow(/i32 data must be 32-bit integers, element 0 is 1.5/);
    expect(() => zeros([2], { dtype: 'f64' as never })).toThrow(/dtype: expected 'f32', 'bf16' or 'i32', got "f64"/);
    expect(() => native.toArray({} as never)).toThrow(/toArray: tensor must be a tensor handle/);
    expect(() => native.empty([1 << 30, 1 << 30], 0, 0)).toThrow(/too large/);
  });

  it('an uninitialised tensor is poisoned with NaN under tests', () => {
    expect(Number.isNaN(empty([4]).toArray()[0])).toBe(true);
  });
});

describe('tidy', () => {
  it('disposes what it created except what it returns, nested', () => {
    const outer = zeros([1]);
    let inner!: Tensor;
    let kept!: Tensor;
    const result = tidy(() => {
      inner = zeros([2]);
      kept = keep(zeros([3]));
      const nested = tidy(() => [ones([4]), zeros([5])]);
      return { nested: nested[0]! };
    });
    expect(inner.disposed).toBe(true);
    expect(kept.disposed).toBe(false);
    expect(result.nested.disposed).toBe(false);
    expect(outer.disposed).toBe(false);
  });

  it('disposes everything when fn throws', () => {
    let made!: Tensor;
    expect(() =>
      tidy(() => {
        made = zeros([2]);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(made.disposed).toBe(true);
  });

  it('counts live tensor memory exactly', () => {
    const before = native.info();
    const a = zeros([1000]);
    const b = a.reshape([10, 100]);
    expect(native.info().liveStorages - before.liveStorages).toBe(1);
    expect(native.info().liveBytes - before.liveBytes).toBe(4000);
    a.dispose();
    expect(native.info().liveStorages - before.liveStorages).toBe(1);
    b.dispose();
    expect(native.info().liveStorages).toBe(before.liveStorages);
    tidy(() => {
      zeros([7]);
    });
    expect(native.info().liveBytes).toBe(before.liveBytes);
  });

  it('a loop of tidy scopes does not grow native memory', () => {
    const rss = () => process.memoryUsage().rss;
    const step = () => {
      zeros([1 << 18]);
      ones([1 << 16]);
    };
    for (let i = 0; i < 20; i++) tidy(step);
    const before = rss();
    for (let i = 0; i < 200; i++) tidy(step);
    expect(rss() - before).toBeLessThan(64 << 20);
  });
});

describe('devices', () => {
  it('lists every backend built in with availability and a reason when unavailable', () => {
    const found = devices();
    expect(found.map((d) => d.type)).toContain('cpu');
    expect(found.map((d) => d.type)).toContain('cuda-emu');
    for (const d of found) {
      expect(typeof d.available).toBe('boolean');
      if (!d.available) expect(d.reason).toMatch(/\w/);
    }
    const cuda = found.find((d) => d.type === 'cuda');
    if (cuda && !cuda.available) expect(cuda.reason).toMatch(/CUDA|driver|device/i);
  });

  it("falls back to cpu with a warning, or throws in strict mode, when cuda is unavailable", () => {
    const cuda = devices().find((d) => d.type === 'cuda');
    if (cuda?.available) {
      expect(resolveDevice('cuda')).toBe('cuda');
      return;
    }
    expect(() => resolveDevice('cuda', { strict: true })).toThrow(/device: cuda was asked for but cannot be used here/);
    expect(resolveDevice('cuda')).toBe('cpu');
    expect(resolveDevice('auto')).toBe('cpu');
    expect(() => resolveDevice('tpu' as never)).toThrow(/expected 'auto', 'cpu', 'cuda' or 'cuda-emu', got "tpu"/);
  });
});
