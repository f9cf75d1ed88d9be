// Training steps of the DiT must not grow memory: every tensor created is recorded (strongly,
// so the garbage collector cannot hide a leak) and the live ones counted after each step.
import { describe, expect, it, vi } from 'vitest';
import type { Tensor } from '../../lib/tensor.js';
import { tinyDiTConfig } from './tiny.js';

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
const { noGrad } = await import('../../lib/autograd/variable.js');
const { DiT } = await import('../../lib/nn/dit.js');
const { attachLora, withAdaptersDisabled } = await import('../../lib/nn/lora.js');
const { attachLidb } = await import('../../lib/nn/lidb.js');
const { AdamW } = await import('../../lib/optim/adamw.js');
const { randn } = await import('../../lib/ops/random.js');
const { fromArray } = await import('../../lib/tensor.js');
const { tidy } = await import('../../lib/scope.js');
const { checkMemoryGuards } = await import('../helpers.js');

checkMemoryGuards();

const live = (): number => created.filter((t) => !t.disposed).length;

const config = tinyDiTConfig({ width: 16, vocabSize: 10 });

describe('nn memory', () => {
  it('DiT + LoRA/LiDB training steps keep the live tensor count flat', () => {
    const model = new DiT(config);
    model.freeze();
    attachLora(model, { pattern: /^blocks\.\d+\.(attn|cross)\.(q|k|v|out)$/, rank: 2 });
    attachLidb(model, { pattern: /^text\.blocks\.\d+\.attn\.(q|v)$/, a: 4, b: 3, seed: 1 });
    const optimizer = new AdamW(
      [...model.namedParameters()].filter(([, p]) => p.requiresGrad),
      { lr: 1e-3 },
    );
    const x = randn([2, 3, 8, 8], { seed: 1 });
    const eps = randn([2, 3, 8, 8], { seed: 2 });
    const ids = fromArray([1, 2, 3, 0, 4, 5, 6, 7], [2, 4], { dtype: 'i32' });
    const lengths = fromArray([3, 4], [2], { dtype: 'i32' });
    const step = (): void => {
      model.zeroGrad();
      // The frozen reference (adapters off) under noGrad and tidy, as a DPO step would run it.
      tidy(() => noGrad(() => withAdaptersDisabled(model, () => model.forward(x, [10, 900], model.encodeText(ids, lengths)).value.toArray())));
      const loss = F.mse(model.forward(x, [10, 900], model.encodeText(ids, lengths)), eps);
      backward(loss);
      loss.value.dispose();
      optimizer.step();
    };
    step();
    step();
    const after = live();
    for (let i = 0; i < 10; i++) step();
    expect(live()).toBe(after);
  });
});
