// A training step must not grow memory: every tensor created is recorded (strongly, so the
// garbage collector cannot hide a leak) and the live ones are counted after each step.
import { describe, expect, it, vi } from 'vitest';
import type { Tensor } from '../../lib/tensor.js';

const created: Tensor[] = vi.hoisted(() => []);
vi.mock('../../lib/scope.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../lib/scope.js')>();
  return {
    ...original,
    track: (t: Tensor) => {
      created.push(t);
      original.track(t);
    },
  };
});

const F = await import('../../lib/autograd/functions.js');
const { backward } = await import('../../lib/autograd/backward.js');
const { Variable } = await import('../../lib/autograd/variable.js');
const { scale } = await import('../../lib/ops/elementwise.js');
const { fromArray } = await import('../../lib/tensor.js');
const { checkMemoryGuards, rng } = await import('../helpers.js');

checkMemoryGuards();

function live(): number {
  return created.filter((t) => !t.disposed).length;
}

describe('autograd memory', () => {
  it('keeps the live tensor count flat over 20 steps', () => {
    const random = rng();
    const w = new Variable(fromArray(Float32Array.from({ length: 16 * 8 }, () => random() - 0.5), [16, 8]), { requiresGrad: true });
    const b = new Variable(fromArray(new Float32Array(16), [16]), { requiresGrad: true });
    const gamma = new Variable(fromArray(new Float32Array(16).fill(1), [16]), { requiresGrad: true });
    const x = fromArray(Float32Array.from({ length: 2 * 4 * 8 }, () => random()), [2, 4, 8]);
    const kvLengths = fromArray([3, 4], [2], { dtype: 'i32' });
    const step = (): void => {
      const h = F.biasAdd(F.matmul(x, w, { transB: true }), b);
      const n = F.gelu(F.layerNorm(h, { gamma }));
      const [q, k] = F.split(F.reshape(n, [2, 4, 2, 8]), [1, 1], 2);
      const heads = (t: typeof q) => F.permute(F.reshape(t!, [2, 4, 1, 8]), [0, 2, 1, 3]);
      const o = F.attention(heads(q), heads(k), heads(k), { kvLengths });
      const loss = F.mse(F.softmax(o), F.dropout(heads(q), 0.1, { seed: 1 }));
      backward(loss);
      loss.value.dispose();
      for (const p of [w, b, gamma]) scale(p.grad!, 0.5, { out: p.grad! });
    };
    step();
    const after1 = live();
    for (let i = 0; i < 20; i++) step();
    expect(live()).toBe(after1);
    expect(created.length).toBeGreaterThan(21 * 20);
  });
});
