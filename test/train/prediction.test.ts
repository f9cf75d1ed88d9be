// What the denoiser predicts: eps or v. The v target and the eps derived from a v model against a
// float64 computation, gradients through the conversion, the kind saved and loaded (an old
// state.json without it reads as eps), a stream of fresh figures feeding trainBase with exact
// resume, and the text encoder reading captions both ways when asked.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as F from '../../lib/autograd/functions.js';
import { backward } from '../../lib/autograd/backward.js';
import { noGrad } from '../../lib/autograd/variable.js';
import { Generator, randn } from '../../lib/ops/random.js';
import { axpy } from '../../lib/ops/elementwise.js';
import { tidy } from '../../lib/scope.js';
import { fromArray } from '../../lib/tensor.js';
import { trainBase, type BaseTrainOptions } from '../../lib/train/base.js';
import { loadTrainingData, trainTokenizer, trainingSource } from '../../lib/train/data.js';
import { TextToImage, type PredictionKind } from '../../lib/models/text_to_image.js';
import { TextEncoder } from '../../lib/nn/text_encoder.js';
import { checkMemoryGuards, testSeed } from '../helpers.js';

checkMemoryGuards();

const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-prediction-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const generator = new Generator(testSeed);

const microDiT = { imageSize: 16, patchSize: 4, width: 32, depth: 1, heads: 2, mlpRatio: 2, textWidth: 16, text: { vocabSize: 0, depth: 1, heads: 2, mlpRatio: 2, causal: false } };

async function microModel(prediction: PredictionKind, perturbSeed = testSeed): Promise<TextToImage> {
  const perturbation = new Generator(perturbSeed);
  const captions = (await loadTrainingData({ kind: 'figures', count: 64, seed: 3 }, null)).map((e) => e.caption);
  const model = TextToImage.create(trainTokenizer(captions, 300), { preset: 'tiny', dit: microDiT, schedule: 'cosine', prediction, seed: 1 });
  // A fresh DiT predicts exactly 0 (adaLN-Zero): perturb every weight so predictions differ.
  for (const p of model.dit.parameters()) tidy(() => void axpy(1, randn(p.shape, { generator: perturbation, std: 0.05 }), p.value));
  return model;
}

describe('prediction kinds', () => {
  it('v: the target is sqrt(abar) eps - sqrt(1 - abar) x0 and predictEps is sqrt(abar) v + sqrt(1 - abar) x_t (float64)', async () => {
    const model = await microModel('v');
    const shape = [3, 3, 16, 16];
    const timesteps = [0, 500, 999];
    const x0 = randn(shape, { generator });
    const noise = randn(shape, { generator });
    const xt = randn(shape, { generator });
    const per = 3 * 16 * 16;
    const target = model.target(x0, noise, timesteps).toArray();
    const prompts = ['a person', '', 'a bald person'];
    const v = noGrad(() => tidy(() => model.predict(xt, timesteps, model.encodePrompts(prompts)).value.toArray()));
    const eps = noGrad(() => tidy(() => model.predictEps(xt, timesteps, model.encodePrompts(prompts)).value.toArray()));
    const [x0a, na, xa] = [x0.toArray(), noise.toArray(), xt.toArray()];
    let worstTarget = 0;
    let worstEps = 0;
    timesteps.forEach((t, b) => {
      const abar = model.schedule.alphasCumprod[t]!;
      for (let i = b * per; i < (b + 1) * per; i++) {
        worstTarget = Math.max(worstTarget, Math.abs(target[i]! - (Math.sqrt(abar) * na[i]! - Math.sqrt(1 - abar) * x0a[i]!)));
        worstEps = Math.max(worstEps, Math.abs(eps[i]! - (Math.sqrt(abar) * v[i]! + Math.sqrt(1 - abar) * xa[i]!)));
      }
    });
    expect(worstTarget).toBeLessThan(1e-5);
    expect(worstEps).toBeLessThan(1e-5);
    // At t = T - 1 the eps of a v model is (almost) x_t, whatever v is: the image lives in v.
    expect(Math.abs(eps[2 * per + 7]! - xa[2 * per + 7]!)).toBeLessThan(1e-3);
    for (const t of [x0, noise, xt]) t.dispose();
    model.dispose();
  });

  it('epsilon: the target is the noise and predictEps is the network output', async () => {
    const model = await microModel('epsilon');
    const x0 = randn([2, 3, 16, 16], { generator });
    const noise = randn([2, 3, 16, 16], { generator });
    expect(model.target(x0, noise, [3, 700]).toArray()).toEqual(noise.toArray());
    const a = noGrad(() => tidy(() => model.predict(x0, [3, 700], model.encodePrompts(['a', 'b'])).value.toArray()));
    const b = noGrad(() => tidy(() => model.predictEps(x0, [3, 700], model.encodePrompts(['a', 'b'])).value.toArray()));
    expect(b).toEqual(a);
    x0.dispose();
    noise.dispose();
    model.dispose();
  });

  it('gradients reach the weights through the v -> eps conversion (DPO and statistics matching read eps)', async () => {
    const model = await microModel('v');
    const xt = randn([2, 3, 16, 16], { generator });
    const loss = F.mean(F.mul(model.predictEps(xt, [100, 900], model.encodePrompts(['a', 'b'])), model.predictEps(xt, [100, 900], model.encodePrompts(['a', 'b']))));
    backward(loss);
    const grads = [...model.dit.parameters()].map((p) => p.grad?.toArray().reduce((s, g) => s + Math.abs(g), 0) ?? 0);
    expect(grads.filter((g) => g > 0).length).toBeGreaterThan(grads.length / 2);
    loss.dispose();
    xt.dispose();
    model.dispose();
  });

  it('the kind is saved and loaded; a state.json without it reads as epsilon; a bad kind is refused', async () => {
    const model = await microModel('v');
    const dir = path.join(scratch, 'v-model');
    model.save(dir);
    const loaded = TextToImage.load(dir);
    expect(loaded.prediction).toBe('v');
    expect(loaded.dit.text!.config.causal).toBe(false);
    loaded.dispose();
    const state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8'));
    delete state.prediction;
    delete state.dit.text.causal;
    writeFileSync(path.join(dir, 'state.json'), JSON.stringify(state));
    const old = TextToImage.load(dir);
    expect(old.prediction).toBe('epsilon');
    expect(old.dit.text!.config.causal ?? true).toBe(true);
    old.dispose();
    expect(() => new TextToImage(model.tokenizer, model.dit, model.schedule, 'custom', 'x0' as PredictionKind)).toThrow(/prediction must be 'epsilon' or 'v', got "x0"/);
    model.dispose();
  });

  it('trainBase draws from a stream of fresh figures and resumes exactly', async () => {
    const spec = { kind: 'fresh-figures' as const, seed: 5, workers: 1 };
    const options: BaseTrainOptions = { steps: 6, batch: 4, lr: 2e-3, seed: 2, out: path.join(scratch, 'stream-run'), ckptEvery: 3 };
    const whole = await microModel('v');
    const full = await trainBase(whole, (size) => trainingSource(spec, size), options);
    whole.dispose();
    const first = await microModel('v');
    await trainBase(first, (size) => trainingSource(spec, size), { ...options, out: path.join(scratch, 'stream-split'), stopAt: 3 });
    first.dispose();
    const resumed = TextToImage.load(path.join(scratch, 'stream-split', 'checkpoint'));
    const rest = await trainBase(resumed, (size) => trainingSource(spec, size), { ...options, out: path.join(scratch, 'stream-split'), resume: path.join(scratch, 'stream-split', 'checkpoint') });
    resumed.dispose();
    expect(rest.losses).toEqual(full.losses.slice(3));
    expect(full.losses.every(Number.isFinite)).toBe(true);
  });
});

describe('TextEncoder', () => {
  it('causal: false lets the first token read the words after it; causal (the default) does not', () => {
    for (const causal of [true, false]) {
      const encoder = new TextEncoder({ vocabSize: 10, contextLength: 4, width: 8, depth: 1, heads: 2, mlpRatio: 2, causal }, { generator: new Generator(testSeed) });
      const first = (ids: number[]) =>
        noGrad(() =>
          tidy(() => {
            const e = encoder.forward(fromArray(ids, [1, 4], { dtype: 'i32' }), [4]);
            return e.tokens.value.toArray().slice(0, 8);
          }),
        );
      const a = first([1, 2, 3, 4]);
      const b = first([1, 7, 8, 9]);
      const differ = a.some((x, i) => Math.abs(x - b[i]!) > 1e-6);
      expect(differ).toBe(!causal);
      encoder.dispose();
    }
  });
});
