// The Diffusion-DPO objective of the text-to-image model: log 2 at step 0 (a fresh LoRA is the
// identity, and the reference is the model with its adapters off), its gradient reaches only the
// adapters, a few AdamW steps on pairs that prefer one colour raise the implicit accuracy and
// lower the loss, nothing is left behind, and bad pairs are refused with their reason.
import { describe, expect, it } from 'vitest';
import { backward } from '../../lib/autograd/backward.js';
import { HostRandom } from '../../lib/host_random.js';
import { native } from '../../lib/native.js';
import { attachLora } from '../../lib/nn/lora.js';
import { axpy } from '../../lib/ops/elementwise.js';
import { Generator, randn } from '../../lib/ops/random.js';
import { AdamW } from '../../lib/optim/adamw.js';
import { tidy } from '../../lib/scope.js';
import { fromArray, full, type Tensor } from '../../lib/tensor.js';
import { trainTokenizer } from '../../lib/train/data.js';
import { dpoObjective, type PreferencePairs } from '../../lib/train/dpo.js';
import { TextToImage } from '../../lib/train/model.js';
import { checkMemoryGuards, testSeed } from '../helpers.js';

checkMemoryGuards();

const prompts = ['a person in a red shirt', 'a person in a blue shirt', 'a person standing', 'a person waving'];

function tinyModel(): TextToImage {
  const tokenizer = trainTokenizer(prompts, 280);
  const dit = { imageSize: 8, patchSize: 4, width: 32, depth: 2, heads: 2, mlpRatio: 2, textWidth: 16, text: { vocabSize: 0, depth: 1, heads: 2, mlpRatio: 2 } };
  const model = TextToImage.create(tokenizer, { preset: 'tiny', dit, seed: testSeed });
  // A fresh DiT predicts exactly 0 (adaLN-Zero gates), which no adapter could change: perturb
  // every weight, as training would have.
  const generator = new Generator(testSeed + 1);
  for (const p of model.dit.parameters()) {
    const noise = randn(p.shape, { generator, std: 0.05 });
    axpy(1, noise, p.value);
    noise.dispose();
  }
  model.dit.train();
  return model;
}

/** Winners of one flat colour, losers of another: [pairs, 3, 8, 8] in [-1, 1]. */
function pairs(count: number): PreferencePairs {
  const colour = (rgb: number[]): Tensor<'f32'> =>
    fromArray(Float32Array.from({ length: count * 3 * 64 }, (_, i) => rgb[Math.floor(i / 64) % 3]!), [count, 3, 8, 8]);
  return { prompts: prompts.slice(0, count), winners: colour([0.8, -0.6, -0.6]), losers: colour([-0.6, -0.6, 0.8]) };
}

function dispose(p: PreferencePairs): void {
  p.winners.dispose();
  p.losers.dispose();
}

describe('dpoObjective', () => {
  it('is log 2 at step 0 and its gradient reaches the adapters only', () => {
    const model = tinyModel();
    model.dit.freeze();
    const adapters = attachLora(model.dit, { pattern: /(attn|cross)\.(q|k|v|out)$/, rank: 2, generator: new Generator(1) });
    const batch = pairs(4);
    const before = native.info().liveStorages;
    const metrics = tidy(() => {
      const terms = dpoObjective(model, batch, { noiseGenerator: new Generator(2), hostRandom: new HostRandom(3) });
      expect(terms.timesteps).toHaveLength(4);
      backward(terms.loss);
      return { loss: terms.loss.value.toArray()[0]!, accuracy: terms.accuracy.toArray()[0]! };
    });
    // The LoRA up-projections start at zero: the policy is the reference up to the rounding of
    // two kernels (fused LoRA linear against matmul + bias), a few 1e-7 on each mse.
    expect(Math.abs(metrics.loss - Math.log(2)), `loss ${metrics.loss}`).toBeLessThan(0.02);
    for (const a of adapters.values()) {
      expect(a.up.grad, 'every adapter gets a gradient').not.toBeNull();
      a.zeroGrad();
    }
    const base = [...model.dit.namedParameters()].filter(([name]) => !name.includes('.lora.'));
    expect(base.length).toBeGreaterThan(0);
    for (const [name, p] of base) expect(p.grad, `${name} is frozen`).toBeNull();
    expect(native.info().liveStorages, 'the graph, its noise and the reference are freed').toBe(before);
    dispose(batch);
    model.dispose();
  });

  it('learns a preference: implicit accuracy rises and the loss falls within 25 AdamW steps', () => {
    const model = tinyModel();
    model.dit.freeze();
    attachLora(model.dit, { pattern: /(attn|cross)\.(q|k|v|out)$|mlp\.fc(1|2)$/, rank: 4, generator: new Generator(1) });
    const optimizer = new AdamW([...model.dit.namedParameters()].filter(([, p]) => p.requiresGrad), { lr: 2e-3, weightDecay: 0 });
    const batch = pairs(4);
    const noiseGenerator = new Generator(5);
    const hostRandom = new HostRandom(6);
    // Evaluation on fixed timesteps and noise, so the curve is not the sampling noise.
    const evaluate = (): { loss: number; accuracy: number } =>
      tidy(() => {
        const terms = dpoObjective(model, batch, { noiseGenerator: new Generator(99), timesteps: [50, 250, 450, 650], beta: 500 });
        return { loss: terms.loss.value.toArray()[0]!, accuracy: terms.accuracy.toArray()[0]! };
      });
    const start = evaluate();
    for (let step = 0; step < 25; step++) {
      tidy(() => backward(dpoObjective(model, batch, { noiseGenerator, hostRandom, beta: 500 }).loss));
      optimizer.step();
      optimizer.zeroGrad();
    }
    const end = evaluate();
    expect(end.loss, `loss ${start.loss} -> ${end.loss}`).toBeLessThan(start.loss - 0.1);
    expect(end.accuracy, `implicit accuracy ${start.accuracy} -> ${end.accuracy}`).toBeGreaterThan(0.7);
    optimizer.dispose();
    dispose(batch);
    model.dispose();
  });

  it('refuses pairs it cannot use, naming what is wrong', () => {
    const model = tinyModel();
    const batch = pairs(2);
    const options = { noiseGenerator: new Generator(1), hostRandom: new HostRandom(1) };
    expect(() => dpoObjective(model, batch, options)).toThrow(
      'dpoObjective: the model has no enabled adapter to train (the reference is the model with its adapters disabled)',
    );
    attachLora(model.dit, { pattern: /attn\.q$/, rank: 1 });
    const wrong = full([2, 3, 4, 4], 0);
    expect(() => dpoObjective(model, { ...batch, losers: wrong }, options)).toThrow(
      'dpoObjective: losers has shape [2, 3, 4, 4], expected [2, 3, 8, 8] (one image per prompt)',
    );
    expect(() => dpoObjective(model, { ...batch, prompts: [] }, options)).toThrow('dpoObjective: expected at least one pair, got no prompts');
    expect(() => dpoObjective(model, batch, { noiseGenerator: new Generator(1), timesteps: [3, 1000] })).toThrow(
      'dpoObjective: timesteps must be 2 integers in [0, 1000), got [3, 1000]',
    );
    expect(() => dpoObjective(model, batch, { noiseGenerator: new Generator(1) })).toThrow(/give hostRandom .* or timesteps/);
    wrong.dispose();
    dispose(batch);
    model.dispose();
  });
});
