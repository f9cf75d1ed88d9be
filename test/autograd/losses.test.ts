// The Diffusion-DPO and channel-statistics losses on the tape: gradients against finite
// differences (the f32 forward at a small beta, the float64 reference at the default 2500), the
// loss values and metrics against the float64 references, constants refused when they would take a gradient, and no tensor
// left behind once the backward has run.
import { describe, expect, it } from 'vitest';
import * as F from '../../lib/autograd/index.js';
import { backward, release } from '../../lib/autograd/backward.js';
import { noGrad, Variable } from '../../lib/autograd/variable.js';
import { native } from '../../lib/native.js';
import { tidy } from '../../lib/scope.js';
import { fromArray, type Tensor } from '../../lib/tensor.js';
import * as statRef from '../reference/channel_stat_loss.js';
import * as ref from '../reference/dpo_loss.js';
import { checkMemoryGuards, expectClose, numericGradient, randomArray, rng, toF64 } from '../helpers.js';
import { gradcheck } from './gradcheck.js';

checkMemoryGuards();

const constant = { requiresGrad: false };

describe('F.dpoLoss', () => {
  it('gives predW and predL the gradients of finite differences (beta 2, f32 forward)', () => {
    const random = rng();
    const shape = [3, 2, 5];
    for (const pick of [0, 1]) {
      gradcheck(
        `dpoLoss d${pick === 0 ? 'predW' : 'predL'}`,
        ([pw, pl, rw, rl, nw, nl]) => {
          const terms = F.dpoLoss(pw!, pl!, rw!, rl!, nw!, nl!, { beta: 2 });
          return terms.loss;
        },
        [{ shape }, { shape }, { shape, ...constant }, { shape, ...constant }, { shape, ...constant }, { shape, ...constant }],
        random,
      );
    }
  });

  it('matches the float64 reference (loss, accuracy, mse terms) and its finite differences at beta 2500', () => {
    const random = rng();
    const pairs = 2;
    const n = pairs * 6;
    // Predictions near the noise and near each other: |inside| stays in the tens.
    const noiseW = randomArray(n, random);
    const noiseL = randomArray(n, random);
    const near = (base: Float32Array, spread: number): Float32Array => base.map((v) => v + spread * (random() * 2 - 1));
    const [predW, predL, refW, refL] = [near(noiseW, 0.05), near(noiseL, 0.05), near(noiseW, 0.05), near(noiseL, 0.05)];
    const shape = [pairs, 2, 3];
    const leaves = [predW, predL].map((d) => new Variable(fromArray(d, shape), { requiresGrad: true }));
    const tensors = [refW, refL, noiseW, noiseL].map((d) => fromArray(d, shape));
    const terms = F.dpoLoss(leaves[0]!, leaves[1]!, tensors[0]!, tensors[1]!, tensors[2]!, tensors[3]!);
    const want = ref.dpoLoss(predW, predL, refW, refL, noiseW, noiseL, pairs, 2500);
    expectClose(terms.loss.value.toArray(), [want.loss], { rtol: 1e-4, atol: 1e-5 }, 'loss');
    expectClose(terms.accuracy.toArray(), [want.accuracy], { rtol: 0, atol: 1e-7 }, 'accuracy');
    for (const key of ['mseW', 'mseL', 'refMseW', 'refMseL'] as const) expectClose(terms[key].toArray(), want[key], { rtol: 1e-5, atol: 1e-9 }, key);
    backward(terms.loss);
    const [w, l, rw, rl, nw, nl] = [predW, predL, refW, refL, noiseW, noiseL].map(toF64) as Float64Array[];
    const loss = (): Float64Array => Float64Array.of(ref.dpoLoss(w!, l!, rw!, rl!, nw!, nl!, pairs, 2500).loss);
    expectClose(leaves[0]!.grad!.toArray(), numericGradient(loss, w!, [1]), { rtol: 2e-3, atol: 1e-4 }, 'dpredW');
    expectClose(leaves[1]!.grad!.toArray(), numericGradient(loss, l!, [1]), { rtol: 2e-3, atol: 1e-4 }, 'dpredL');
    for (const t of [...leaves, ...tensors, terms.loss, terms.accuracy, terms.mseW, terms.mseL, terms.refMseW, terms.refMseL]) t.dispose();
  });

  it('is log 2 when the policy is the reference, and refuses a reference or noise that takes a gradient', () => {
    const random = rng();
    const x = fromArray(randomArray(8, random), [2, 4]);
    const noise = fromArray(randomArray(8, random), [2, 4]);
    tidy(() => {
      const policy = new Variable(x, { requiresGrad: true });
      const { loss, accuracy } = F.dpoLoss(policy, policy, x, x, noise, noise);
      expectClose(loss.value.toArray(), [Math.log(2)], { rtol: 1e-6, atol: 1e-7 }, 'loss at step 0');
      expect(Array.from(accuracy.toArray())).toEqual([0.5]);
      const trained = new Variable(x, { requiresGrad: true });
      expect(() => F.dpoLoss(policy, policy, trained, x, noise, noise)).toThrow(
        'dpoLoss: refW requires grad, but the reference model is frozen: compute it under noGrad() or pass its value',
      );
      expect(() => F.dpoLoss(policy, policy, x, x, noise, trained)).toThrow(/dpoLoss: noiseL requires grad, but the noise is data/);
    });
    x.dispose();
    noise.dispose();
  });

  it('keeps what its backward needs past the scope that recorded it, and leaves nothing behind', () => {
    const shape = [1, 2, 3];
    const random = rng();
    const data = (): Float32Array => randomArray(6, random);
    const before = native.info().liveStorages;
    const [rw, rl, nw, nl] = [data(), data(), data(), data()].map((d) => fromArray(d, shape)) as [Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>];
    const [pw, pl] = [new Variable(fromArray(data(), shape), { requiresGrad: true }), new Variable(fromArray(data(), shape), { requiresGrad: true })];
    // What the backward reads belongs to the graph: freed by the backward, not by the caller.
    const { loss: dpo, ...metrics } = F.dpoLoss(pw, pl, rw, rl, nw, nl, { beta: 3 });
    for (const m of Object.values(metrics)) m.dispose();
    const stat = F.channelStatLoss(pw, rw, { matchStd: true });
    const total = F.add(dpo, stat);
    backward(total);
    tidy(() => {
      noGrad(() => F.dpoLoss(pw, pl, rw, rl, nw, nl));
      release(F.channelStatLoss(pw, rw));  // recorded, never differentiated
    });
    for (const x of [total, dpo, stat, pw, pl, rw, rl, nw, nl]) x.dispose();
    expect(native.info().liveStorages).toBe(before);
  });
});

describe('F.channelStatLoss', () => {
  it('gives `a` the gradient of finite differences, with and without matchStd', () => {
    const random = rng();
    for (const matchStd of [false, true]) {
      gradcheck(`channelStatLoss matchStd ${matchStd}`, ([a, b]) => F.channelStatLoss(a!, b!, { matchStd }), [{ shape: [2, 3, 7] }, { shape: [2, 3, 7], ...constant }], random);
      gradcheck(`channelStatLoss 4-D matchStd ${matchStd}`, ([a, b]) => F.channelStatLoss(a!, b!, { matchStd }), [{ shape: [2, 2, 3, 3] }, { shape: [2, 2, 3, 3], ...constant }], random);
    }
  });

  it('matches the float64 reference, with and without matchStd, and refuses a base sample that takes a gradient', () => {
    const random = rng();
    const [dataA, dataB] = [randomArray(24, random), randomArray(24, random)];
    const a = fromArray(dataA, [2, 3, 4]);
    const b = fromArray(dataB, [2, 3, 4]);
    tidy(() => {
      for (const matchStd of [false, true]) {
        const want = statRef.channelStatLoss(dataA, dataB, 2 * 3, matchStd);
        expectClose(F.channelStatLoss(a, b, { matchStd }).value.toArray(), [want.loss], { rtol: 1e-5, atol: 1e-7 }, `matchStd ${matchStd}`);
      }
      expect(() => F.channelStatLoss(a, new Variable(b, { requiresGrad: true }))).toThrow(
        /channelStatLoss: b requires grad, but it comes from the frozen base model/,
      );
    });
    a.dispose();
    b.dispose();
  });
});
