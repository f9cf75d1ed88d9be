// The text-to-image pipeline end to end: checkpoint round trip, a short run lowers the loss
// without growing memory, resume is exact (the loss curve of 3 + resume + 3 steps equals 6
// uninterrupted steps, with cosine LR, EMA, accumulation, augmentation and text dropout on),
// stage-wise resolution, and the shipped checkpoint follows the colour words of its prompt.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { noGrad } from '../../lib/autograd/variable.js';
import { native, packageRoot } from '../../lib/native.js';
import { tidy } from '../../lib/scope.js';
import { fromArray } from '../../lib/tensor.js';
import { axpy } from '../../lib/ops/elementwise.js';
import { Generator, randn } from '../../lib/ops/random.js';
import { trainBase, type BaseTrainOptions, type DataSource, type Example } from '../../lib/train/base.js';
import { loadTrainingData, trainTokenizer } from '../../lib/train/data.js';
import { TextToImage, type GenerateOptions } from '../../lib/train/model.js';
import { adapterStateDict, attachLora, detachAdapters } from '../../lib/nn/lora.js';
import { saveSafetensors } from '../../lib/io/safetensors.js';
import { checkMemoryGuards, testSeed } from '../helpers.js';

checkMemoryGuards();

const generator = new Generator(testSeed);
const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-pipeline-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A DiT small enough to train for a few dozen steps in seconds at 16x16. */
const microDiT = { imageSize: 16, patchSize: 4, width: 48, depth: 2, heads: 2, mlpRatio: 2, textWidth: 32, text: { vocabSize: 0, depth: 1, heads: 2, mlpRatio: 2 } };

const figures: DataSource = (size) => loadTrainingData({ kind: 'figures', count: 64, seed: 3 }, size);

async function microModel(seed = 0): Promise<TextToImage> {
  const captions = (await loadTrainingData({ kind: 'figures', count: 64, seed: 3 }, null)).map((e: Example) => e.caption);
  return TextToImage.create(trainTokenizer(captions, 300), { preset: 'tiny', dit: microDiT, seed });
}

function rssMB(): number {
  return process.memoryUsage().rss / 2 ** 20;
}

/** A full garbage collection, so RSS reflects what is alive rather than what awaits collection. */
v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc') as () => void;

describe('TextToImage', () => {
  it('save/load round trip reproduces weights, tokenizer and predictions (f32 exactly, bf16 closely)', async () => {
    const model = await microModel(5);
    // A fresh DiT predicts exactly 0 (adaLN-Zero): perturb every weight so predictions differ.
    for (const p of model.dit.parameters()) {
      const noise = randn(p.shape, { generator, std: 0.05 });
      axpy(1, noise, p.value);
      noise.dispose();
    }
    const dir = path.join(scratch, 'roundtrip');
    model.save(dir);
    const loaded = TextToImage.load(dir);
    expect(loaded.config).toEqual(model.config);
    expect(loaded.tokenizer.encodeBatch(['a person'], 32)).toEqual(model.tokenizer.encodeBatch(['a person'], 32));
    const predict = (m: TextToImage): Float32Array =>
      noGrad(() =>
        tidy(() => {
          const x = fromArray(Array.from({ length: 2 * 3 * 16 * 16 }, (_, i) => Math.sin(i)), [2, 3, 16, 16]);
          return m.predictEps(x, [10, 900], m.encodePrompts(['a person in a red shirt', ''])).value.toArray();
        }),
      );
    const before = predict(model);
    expect(before.some((v) => Math.abs(v) > 1e-3)).toBe(true);
    expect(predict(loaded)).toEqual(before);
    const bf16Dir = path.join(scratch, 'roundtrip-bf16');
    model.save(bf16Dir, { dtype: 'bf16' });
    const small = TextToImage.load(bf16Dir);
    for (const [name, t] of Object.entries(model.dit.stateDict())) {
      const a = t.toArray();
      const b = small.dit.stateDict()[name]!.toArray();
      for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(Math.abs(a[i]!) * 2 ** -8 + 1e-30);
    }
    for (const m of [model, loaded, small]) m.dispose();
  });

  it('generate is deterministic by seed; negative prompt, cfg and a LoRA file change the images; the LoRA is removed after', async () => {
    const model = await microModel(6);
    for (const p of model.dit.parameters()) {
      const noise = randn(p.shape, { generator, std: 0.05 });
      axpy(1, noise, p.value);
      noise.dispose();
    }
    const run = (options: Partial<GenerateOptions> = {}): Float32Array =>
      tidy(() => model.generate({ prompts: ['a person wearing a red shirt', 'a person wearing a blue shirt'], n: 2, steps: 3, seed: 9, ...options }).toArray());
    const base = run();
    expect(base).toHaveLength(4 * 3 * 16 * 16);
    expect(base.every((v) => v >= -1 && v <= 1)).toBe(true);
    expect(run()).toEqual(base);
    expect(run({ seed: 10 })).not.toEqual(base);
    expect(run({ negative: 'a person wearing a green shirt' })).not.toEqual(base);
    expect(run({ cfg: 1 })).not.toEqual(base);

    const adapters = attachLora(model.dit, { pattern: /attn\.(q|k|v|out)$/, rank: 2, generator });
    for (const a of adapters.values()) {
      const noise = randn(a.up.shape, { generator, std: 0.5 });
      a.up.value.copy_(noise);
      noise.dispose();
    }
    const loraFile = path.join(scratch, 'lora.safetensors');
    saveSafetensors(loraFile, adapterStateDict(model.dit));
    detachAdapters(model.dit);
    const withLora = run({ lora: loraFile, loraScale: 0.5 });
    expect(withLora).not.toEqual(base);
    expect(run(), 'the LoRA is detached after generate').toEqual(base);
    expect(() => run({ lora: path.join(scratch, 'missing.safetensors') })).toThrow(/lora: file .*missing\.safetensors does not exist/);
    model.dispose();
  });

  it('load names what is wrong with a directory that is not a checkpoint', () => {
    expect(() => TextToImage.load(path.join(scratch, 'nothing-here'))).toThrow(/not a checkpoint directory \(no model\.safetensors and state\.json\)/);
  });
});

describe('trainBase', () => {
  it('a short run lowers the loss and keeps the process memory flat', async () => {
    const model = await microModel(1);
    // RSS after a collection at step 11 and at step 48 (collected one step earlier, so the
    // finalisers of the collected tensor wrappers have run in between). Allocator noise is a few
    // tens of MB; a leak of the size a step allocates (about 5 MB here) would add ~180 MB.
    const rss = new Map<number, number>();
    const liveBytes = new Map<number, number>();
    const { losses } = await trainBase(model, figures, {
      steps: 48,
      batch: 8,
      lr: 2e-3,
      warmup: 4,
      clipNorm: 1,
      seed: 7,
      onStep: ({ step }) => {
        if (step === 10 || step === 47) collectGarbage();
        if (step === 11 || step === 48) {
          rss.set(step, rssMB());
          liveBytes.set(step, native.info().liveBytes);
        }
      },
    });
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(losses.slice(0, 6));
    const last = mean(losses.slice(-6));
    console.log(`loss ${first.toFixed(4)} -> ${last.toFixed(4)}; rss ${rss.get(11)!.toFixed(0)} MB at step 11, ${rss.get(48)!.toFixed(0)} MB at step 48`);
    expect(last).toBeLessThan(first * 0.8);
    expect(liveBytes.get(48), 'native tensor bytes alive at step 48 vs step 11').toBe(liveBytes.get(11));
    expect(rss.get(48)! - rss.get(11)!, 'RSS growth from step 11 to 48, MB').toBeLessThan(48);
    model.dispose();
  });

  it('resume continues exactly: 3 steps + resume + 3 steps has the loss curve of 6 steps', async () => {
    const options = (out: string): BaseTrainOptions => ({
      steps: 6,
      batch: 4,
      accumulate: 2,
      lr: 1e-3,
      lrSchedule: 'cosine',
      warmup: 2,
      weightDecay: 0.01,
      l1: 1e-6,
      clipNorm: 0.5,
      ema: 0.9,
      dropout: 0.1,
      augment: { flip: 0.5, cropScale: 0.9, maxRotation: 5 },
      seed: 11,
      out,
      ckptEvery: 3,
    });
    const straight = await microModel(2);
    const full = await trainBase(straight, figures, options(path.join(scratch, 'straight')));
    const interrupted = await microModel(2);
    const firstHalf = await trainBase(interrupted, figures, { ...options(path.join(scratch, 'resumed')), stopAt: 3 });
    expect(firstHalf.step).toBe(3);
    interrupted.dispose();
    const resumedModel = TextToImage.load(path.join(scratch, 'resumed', 'checkpoint'));
    const secondHalf = await trainBase(resumedModel, figures, { ...options(path.join(scratch, 'resumed')), resume: path.join(scratch, 'resumed', 'checkpoint') });
    expect([...firstHalf.losses, ...secondHalf.losses]).toEqual(full.losses);
    const a = straight.dit.stateDict();
    const b = resumedModel.dit.stateDict();
    for (const name of Object.keys(a)) expect(b[name]!.toArray(), name).toEqual(a[name]!.toArray());
    straight.dispose();
    resumedModel.dispose();
  });

  it('stage-wise resolution: 16x16 then 32x32 from the same weights, positions interpolated, resumable across the switch', async () => {
    const model = await microModel(4);
    const stages = [
      { resolution: 16, steps: 2 },
      { resolution: 32, steps: 2 },
    ];
    const out = path.join(scratch, 'stages');
    const first = await trainBase(model, figures, { steps: 4, stages, batch: 2, lr: 1e-3, seed: 3, out, stopAt: 3, ckptEvery: 1 });
    expect(first.losses).toHaveLength(3);
    expect(model.imageSize).toBe(32);
    expect(model.dit.stateDict().pos!.shape).toEqual([64, 48]);
    const resumed = TextToImage.load(path.join(out, 'checkpoint'));
    expect(resumed.imageSize).toBe(32);
    const second = await trainBase(resumed, figures, { steps: 4, stages, batch: 2, lr: 1e-3, seed: 3, out, resume: path.join(out, 'checkpoint') });
    expect(second.losses).toHaveLength(1);
    expect(Number.isFinite(second.losses[0])).toBe(true);
    const images = resumed.generate({ prompts: ['a person'], steps: 2, seed: 1 });
    expect(images.shape).toEqual([1, 3, 32, 32]);
    images.dispose();
    model.dispose();
    resumed.dispose();
  });

  it('rejects bad options with messages that name them', async () => {
    const model = await microModel(0);
    await expect(trainBase(model, figures, { steps: 0, batch: 1, lr: 1e-3 })).rejects.toThrow(/steps must be an integer >= 1, got 0/);
    await expect(trainBase(model, figures, { steps: 2, batch: 1, lr: 1e-3, condDropout: 1.5 })).rejects.toThrow(/condDropout must be in \[0, 1\), got 1.5/);
    await expect(trainBase(model, figures, { steps: 2, batch: 1, lr: 1e-3, stages: [{ resolution: 18, steps: 2 }] })).rejects.toThrow(/resolution 18 must be a positive multiple of the patch size 4/);
    await expect(trainBase(model, figures, { steps: 3, batch: 1, lr: 1e-3, stages: [{ resolution: 16, steps: 2 }] })).rejects.toThrow(/stages add up to 2 steps but steps is 3/);
    model.dispose();
  });
});

describe('the shipped checkpoint', () => {
  const shipped = path.join(packageRoot, 'models', 'base-tiny');

  it('is under 20 MB and loads', () => {
    expect(existsSync(path.join(shipped, 'model.safetensors'))).toBe(true);
  });

  it('follows the colour word of the prompt (mean red minus blue, fixed seed)', () => {
    const model = TextToImage.load(shipped);
    const n = 4;
    const redMinusBlue = (prompt: string): number =>
      tidy(() => {
        const images = model.generate({ prompts: [prompt], n, steps: 20, cfg: 5, seed: 123 });
        const data = images.toArray();
        const plane = model.imageSize * model.imageSize;
        let sum = 0;
        for (let b = 0; b < n; b++) {
          for (let i = 0; i < plane; i++) sum += data[(b * 3 + 0) * plane + i]! - data[(b * 3 + 2) * plane + i]!;
        }
        return sum / (n * plane);
      });
    const red = redMinusBlue('a person in a red shirt on a red background');
    const blue = redMinusBlue('a person in a blue shirt on a blue background');
    console.log(`mean (R - B): red prompt ${red.toFixed(3)}, blue prompt ${blue.toFixed(3)}`);
    expect(red - blue).toBeGreaterThan(0.2);
    model.dispose();
  });
});
