// Diffusion-DPO for the text-to-image model. The objective: log 2 at step 0 (a fresh LoRA is the
// identity, and the reference is the model with its adapters off), its gradient reaches only the
// adapters, a few AdamW steps on pairs that prefer one colour raise the implicit accuracy and
// lower the loss, nothing is left behind, and bad pairs are refused with their reason. The
// statistics term against a float64 reverse step. trainDpo end to end, and the preference pairs
// (figures and JSONL manifests).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backward } from '../../lib/autograd/backward.js';
import { noGrad } from '../../lib/autograd/variable.js';
import { qSample } from '../../lib/diffusion/sampler.js';
import { HostRandom } from '../../lib/host_random.js';
import { imageToPng } from '../../lib/io/images.js';
import { native } from '../../lib/native.js';
import { adapters, attachLora, withAdaptersDisabled } from '../../lib/nn/lora.js';
import { axpy } from '../../lib/ops/elementwise.js';
import { Generator, randn } from '../../lib/ops/random.js';
import { AdamW } from '../../lib/optim/adamw.js';
import { tidy } from '../../lib/scope.js';
import { fromArray, full, type Tensor } from '../../lib/tensor.js';
import { trainTokenizer } from '../../lib/train/data.js';
import { dpoObjective, statMatchObjective, trainDpo, type PreferencePairs } from '../../lib/train/dpo.js';
import { figurePreferences, manifestPreferences } from '../../lib/train/preferences.js';
import { TextToImage } from '../../lib/models/text_to_image.js';
import { checkMemoryGuards, expectClose, testSeed } from '../helpers.js';

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

describe('statMatchObjective', () => {
  /** Adapters whose up-projections are random, so the trained model differs from the base. */
  function adapted(): TextToImage {
    const model = tinyModel();
    model.dit.freeze();
    const generator = new Generator(testSeed + 2);
    for (const a of attachLora(model.dit, { pattern: /(attn|cross)\.(q|k|v|out)$/, rank: 2, generator }).values()) {
      const up = randn(a.up.shape, { generator, std: 2 });
      a.up.value.copy_(up);
      up.dispose();
    }
    return model;
  }

  it('matches the channel means of one reverse step computed in float64 with the DDIM form of the same step', () => {
    const model = adapted();
    const made = pairs(3);
    const batch = { prompts: made.prompts, images: made.winners };
    const t = 700;
    const got = tidy(() => statMatchObjective(model, batch, { noiseGenerator: new Generator(7), timestep: t }).loss.value.toArray()[0]!);
    // The same draws: eps for the forward noise, then z for the reverse step.
    const generator = new Generator(7);
    const eps = randn(batch.images.shape, { generator });
    const z = randn(batch.images.shape, { generator });
    const timesteps = [t, t, t];
    const lt = qSample(batch.images, timesteps, eps, model.schedule);
    const predict = (): Float32Array =>
      noGrad(() => {
        model.dit.eval();
        return tidy(() => model.predictEps(lt, timesteps, model.encodePrompts(batch.prompts)).value.toArray());
      });
    const epsTheta = predict();
    const epsBase = withAdaptersDisabled(model.dit, predict);
    const abarT = model.schedule.alphasCumprod[t]!;
    const abarS = model.schedule.alphasCumprod[t - 1]!;
    const sigma = Math.sqrt((1 - abarS) / (1 - abarT)) * Math.sqrt(1 - abarT / abarS);
    const [x, noise] = [lt.toArray(), z.toArray()];
    const step = (e: Float32Array): Float64Array =>
      Float64Array.from(x, (xt, i) => {
        const x0 = (xt - Math.sqrt(1 - abarT) * e[i]!) / Math.sqrt(abarT);
        return Math.sqrt(abarS) * x0 + Math.sqrt(1 - abarS - sigma * sigma) * e[i]! + sigma * noise[i]!;
      });
    const [prevTheta, prevBase] = [step(epsTheta), step(epsBase)];
    let want = 0;
    for (let row = 0; row < 9; row++) {
      let diff = 0;
      for (let i = 0; i < 64; i++) diff += (prevTheta[row * 64 + i]! - prevBase[row * 64 + i]!) / 64;
      want += (diff * diff) / 9;
    }
    expect(want, 'the adapters move the channel means').toBeGreaterThan(1e-8);
    expectClose([got], [want], { rtol: 1e-3, atol: 1e-9 }, 'statistics loss');
    for (const tensor of [eps, z, lt]) tensor.dispose();
    dispose(made);
    model.dispose();
  });

  it('is 0 with the adapters at zero, its gradient reaches the adapters only, and it leaves nothing behind', () => {
    const model = tinyModel();
    model.dit.freeze();
    const adapters = attachLora(model.dit, { pattern: /(attn|cross)\.(q|k|v|out)$/, rank: 2, generator: new Generator(1) });
    const made = pairs(2);
    const batch = { prompts: made.prompts, images: made.winners };
    const before = native.info().liveStorages;
    const atZero = tidy(() => {
      const { loss, timestep } = statMatchObjective(model, batch, { noiseGenerator: new Generator(3), hostRandom: new HostRandom(4) });
      expect(timestep).toBeGreaterThanOrEqual(0);
      backward(loss);
      return loss.value.toArray()[0]!;
    });
    // The same predictions through two spellings of the step (tape ops against in-place ones).
    expect(atZero).toBeLessThan(1e-12);
    for (const a of adapters.values()) {
      expect(a.up.grad, 'every adapter gets a gradient').not.toBeNull();
      a.zeroGrad();
    }
    for (const [name, p] of model.dit.namedParameters()) if (!name.includes('.lora.')) expect(p.grad, `${name} is frozen`).toBeNull();
    expect(native.info().liveStorages).toBe(before);
    expect(() => statMatchObjective(model, batch, { noiseGenerator: new Generator(1), timestep: 1000 })).toThrow(
      'statMatchObjective: timestep must be an integer in [0, 1000), got 1000',
    );
    expect(() => statMatchObjective(model, { ...batch, prompts: ['one'] }, { noiseGenerator: new Generator(1), timestep: 5 })).toThrow(
      'statMatchObjective: images has shape [2, 3, 8, 8], expected [1, 3, 8, 8] (one image per prompt)',
    );
    dispose(made);
    model.dispose();
  });
});

describe('trainDpo', () => {
  it('trains LoRA adapters on the pairs (denoiser and text encoder): the preference is learned, the base stays', async () => {
    const model = tinyModel();
    const colourPairs = pairs(4);
    const examples = colourPairs.prompts.map((prompt, i) => ({
      prompt,
      winner: colourPairs.winners.slice(i, i + 1).toArray(),
      loser: colourPairs.losers.slice(i, i + 1).toArray(),
    }));
    const base = new Map([...model.dit.namedParameters()].map(([name, p]) => [name, p.value.toArray()]));
    const reports: number[] = [];
    const { losses, accuracies } = await trainDpo(model, examples, {
      steps: 25,
      batch: 4,
      lr: 2e-3,
      beta: 500,
      rank: 4,
      textRank: 2,
      statWeight: 100,
      seed: 3,
      onStep: (r) => reports.push(r.step),
    });
    expect(reports).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    expect(losses[0], 'log 2 at the first step').toBeCloseTo(Math.log(2), 5);
    expect(accuracies).toHaveLength(25);
    const evaluation = tidy(() => {
      const terms = dpoObjective(model, colourPairs, { noiseGenerator: new Generator(99), timesteps: [50, 250, 450, 650], beta: 500 });
      return { loss: terms.loss.value.toArray()[0]!, accuracy: terms.accuracy.toArray()[0]! };
    });
    expect(evaluation.loss, `loss after training ${evaluation.loss}`).toBeLessThan(Math.log(2) - 0.2);
    expect(evaluation.accuracy).toBeGreaterThan(0.7);
    const attached = [...adapters(model.dit).keys()];
    expect(attached.filter((n) => n.startsWith('blocks.'))).toHaveLength(2 * 8);
    expect(attached.filter((n) => n.startsWith('text.'))).toHaveLength(4);
    for (const [name, p] of model.dit.namedParameters()) if (base.has(name)) expect(p.value.toArray(), `${name} is frozen`).toEqual(base.get(name));
    expect(model.dit.training).toBe(false);
    dispose(colourPairs);
    model.dispose();
  });

  it('refuses options and pairs it cannot use', async () => {
    const model = tinyModel();
    const figurePairs = figurePreferences(2, 8, 1);
    await expect(trainDpo(model, figurePairs, { steps: 0 })).rejects.toThrow('trainDpo: steps must be an integer >= 1, got 0');
    await expect(trainDpo(model, [], { steps: 1 })).rejects.toThrow('trainDpo: expected at least one preference pair');
    await expect(trainDpo(model, figurePreferences(1, 16, 1), { steps: 1 })).rejects.toThrow(
      'trainDpo: pair 0 has images of 768 and 768 values, expected 192 (3 x 8 x 8)',
    );
    model.dispose();
  });
});

describe('preference pairs', () => {
  it('figures: the winner is drawn as captioned, the loser differs in the shirt only', () => {
    const [first, second] = figurePreferences(2, 16, 4);
    expect(figurePreferences(2, 16, 4)).toEqual([first, second]);
    for (const p of [first!, second!]) {
      expect(p.prompt).toMatch(/wearing an? \w+ shirt/);
      expect(p.winner).toHaveLength(3 * 16 * 16);
      // Only some pixels change (the shirt), not the background or the rest of the figure.
      let changed = 0;
      for (let i = 0; i < p.winner.length; i++) if (p.winner[i] !== p.loser[i]) changed++;
      expect(changed).toBeGreaterThan(0);
      expect(changed).toBeLessThan(p.winner.length / 3);
    }
    expect(() => figurePreferences(0, 16, 4)).toThrow('figurePreferences: count must be an integer >= 1, got 0');
  });

  it('manifest: JSONL lines of prompt, winner and loser files (relative paths), with errors that name the line', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'realtune-preferences-'));
    try {
      const [pair] = figurePreferences(1, 16, 2);
      await imageToPng(pair!.winner, path.join(dir, 'w.png'), { width: 16, height: 16 });
      await imageToPng(pair!.loser, path.join(dir, 'l.png'), { width: 16, height: 16 });
      const file = path.join(dir, 'pairs.jsonl');
      writeFileSync(file, `${JSON.stringify({ prompt: pair!.prompt, winner: 'w.png', loser: 'l.png' })}\n\n`);
      const [loaded] = await manifestPreferences(file, 16);
      expect(loaded!.prompt).toBe(pair!.prompt);
      // PNG keeps 8 bits per channel: within half a step of 2/255.
      expect(Math.max(...Array.from(loaded!.winner, (v, i) => Math.abs(v - pair!.winner[i]!)))).toBeLessThan(1 / 255 + 1e-6);
      expect(loaded!.loser).not.toEqual(loaded!.winner);
      writeFileSync(file, `${JSON.stringify({ prompt: 'x', winner: 'w.png', loser: 'missing.png' })}\n`);
      await expect(manifestPreferences(file, 16)).rejects.toThrow(`manifestPreferences: ${file}:1: loser ${path.join(dir, 'missing.png')}`);
      writeFileSync(file, `${JSON.stringify({ prompt: 'x', winner: 'w.png', loser: 'l.png' })}\n{"prompt": 3}\n`);
      await expect(manifestPreferences(file, 16)).rejects.toThrow(`manifestPreferences: ${file}:2: "prompt" must be a string`);
      writeFileSync(file, '');
      await expect(manifestPreferences(file, 16)).rejects.toThrow(`manifestPreferences: ${file} has no pairs`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
