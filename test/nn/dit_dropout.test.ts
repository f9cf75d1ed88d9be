// Dropout inside the DiT: training mode differs from eval and is reproducible from the
// generator's seed, eval (and p = 0) is exactly the deterministic network, every block masks its
// four sites, gradients through the masks match finite differences, and a bad p is rejected.
import { describe, expect, it } from 'vitest';
import * as F from '../../lib/autograd/functions.js';
import { backward } from '../../lib/autograd/backward.js';
import { noGrad } from '../../lib/autograd/variable.js';
import { DiT, type DiTConfig } from '../../lib/nn/dit.js';
import { Generator } from '../../lib/ops/random.js';
import { tidy } from '../../lib/scope.js';
import { fromArray, type Tensor } from '../../lib/tensor.js';
import { moduleGradcheck } from '../autograd/gradcheck.js';
import { checkMemoryGuards, randomArray, rng, testSeed } from '../helpers.js';
import { tinyDiTConfig, randomizeParameters } from './tiny.js';

checkMemoryGuards();

const tinyDiT = tinyDiTConfig();

/** A randomised DiT and a fixed batch of two samples; `predict` runs it without gradients. */
function setup(config: Partial<DiTConfig>, random: () => number): { model: DiT; predict: () => Float32Array; forward: () => ReturnType<DiT['forward']>; dispose: () => void } {
  const model = new DiT({ ...tinyDiT, ...config });
  randomizeParameters(model, random);
  const x = fromArray(randomArray(2 * 3 * 8 * 8, random), [2, 3, 8, 8]);
  const ids = fromArray([1, 2, 3, 0, 5, 4, 0, 0], [2, 4], { dtype: 'i32' }) as Tensor<'i32'>;
  const forward = (): ReturnType<DiT['forward']> => model.forward(x, [3, 700], model.encodeText(ids, [3, 2]));
  const predict = (): Float32Array => noGrad(() => tidy(() => forward().value.toArray()));
  const dispose = (): void => {
    model.dispose();
    x.dispose();
    ids.dispose();
  };
  return { model, predict, forward, dispose };
}

function maxAbsDifference(a: Float32Array, b: Float32Array): number {
  return a.reduce((worst, v, i) => Math.max(worst, Math.abs(v - b[i]!)), 0);
}

describe('DiT dropout', () => {
  it('in training mode differs from eval and is reproducible for a fixed generator seed', () => {
    const { model, predict, dispose } = setup({ dropout: 0.3 }, rng());
    model.dropoutGenerator = new Generator(testSeed);
    const first = predict();
    model.dropoutGenerator = new Generator(testSeed);
    expect(predict(), 'same seed, same masks').toEqual(first);
    expect(predict(), 'the stream moves on: new masks').not.toEqual(first);
    model.dropoutGenerator = new Generator(testSeed + 1);
    expect(predict(), 'another seed').not.toEqual(first);
    model.eval();
    const evaluated = predict();
    expect(maxAbsDifference(first, evaluated), 'train vs eval').toBeGreaterThan(1e-3);
    expect(first.every(Number.isFinite)).toBe(true);
    dispose();
  });

  it('masks follow the config seed when no generator is installed', () => {
    const seed = testSeed % 1000;
    const a = setup({ dropout: 0.3, seed }, rng(seed));
    const b = setup({ dropout: 0.3, seed }, rng(seed));
    expect(b.predict()).toEqual(a.predict());
    a.model.eval();
    expect(maxAbsDifference(b.predict(), a.predict())).toBeGreaterThan(1e-3);
    a.dispose();
    b.dispose();
  });

  it('eval mode equals p = 0 exactly and draws no random numbers', () => {
    const { model, predict, dispose } = setup({ dropout: 0.5 }, rng());
    const generator = new Generator(testSeed);
    model.dropoutGenerator = generator;
    model.eval();
    const evaluated = predict();
    expect(generator.offset, 'eval draws nothing').toBe(0);
    model.train();
    model.dropout = 0;
    expect(model.config.dropout).toBe(0);
    expect(predict(), 'training mode at p = 0').toEqual(evaluated);
    expect(generator.offset, 'p = 0 draws nothing').toBe(0);
    dispose();
  });

  it('masks the attention, cross-attention, MLP hidden and MLP output activations of every block', () => {
    const { model, predict, dispose } = setup({ dropout: 0.2 }, rng());
    const generator = new Generator(testSeed);
    model.dropoutGenerator = generator;
    predict();
    const { depth, width, mlpRatio } = tinyDiT;
    const tokens = 2 * 4; // batch 2, 2x2 patches
    const perBlock = tokens * (3 * width + width * mlpRatio);
    expect(generator.offset, 'uniform draws: one per masked element').toBe(depth * perBlock);
    dispose();
  });

  it('gradients flow through the masks: finite differences with the masks held fixed, and the same masks give the same gradients', () => {
    const random = rng();
    const { model, forward, dispose } = setup({ dropout: 0.25 }, random);
    const parameters = [...model.namedParameters()];
    const withMasks = (seed: number) => () => {
      model.dropoutGenerator = new Generator(seed);
      return forward();
    };
    moduleGradcheck('DiT with dropout', parameters, withMasks(testSeed), random, {
      perTensor: 3,
      zeroGradient: /\.k\.bias$/,
      floor: 5e-3,
      h: 3e-2,
    });
    const gradients = (seed: number): Float32Array[] => {
      model.zeroGrad();
      tidy(() => backward(F.sum(withMasks(seed)())));
      return parameters.map(([, p]) => p.grad!.toArray());
    };
    const first = gradients(testSeed);
    expect(gradients(testSeed)).toEqual(first);
    const fc1 = parameters.findIndex(([name]) => name === 'blocks.0.mlp.fc1.weight');
    expect(gradients(testSeed + 1)[fc1], 'other masks, other gradients').not.toEqual(first[fc1]);
    dispose();
  });

  it('defaults to 0 and rejects a p outside [0, 1) with a message that names it', () => {
    const model = new DiT(tinyDiT);
    expect(model.dropout).toBe(0);
    expect(model.config.dropout).toBe(0);
    for (const [p, shown] of [
      [1, '1'],
      [-0.1, '-0.1'],
      [Number.NaN, 'NaN'],
      ['0.1', '"0.1"'],
    ] as const) {
      const message = new RegExp(`DiT: dropout must be a number in \\[0, 1\\), got ${shown.replace(/[.]/g, '\\.')}$`);
      expect(() => new DiT({ ...tinyDiT, dropout: p as number }), String(p)).toThrow(message);
      expect(() => {
        model.dropout = p as number;
      }, String(p)).toThrow(message);
    }
    expect(model.dropout, 'a rejected p leaves the model as it was').toBe(0);
    expect(() => {
      model.dropoutGenerator = 7 as unknown as Generator;
    }).toThrow(/DiT: dropoutGenerator must be a Generator, got number/);
    model.dispose();
  });
});
