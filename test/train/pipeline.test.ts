// The text-to-image pipeline end to end: checkpoint round trip, a short run lowers the loss
// without growing memory, resume is exact (the loss curve of 3 + resume + 3 steps equals 6
// uninterrupted steps, with cosine LR, EMA, accumulation, augmentation and DiT dropout on),
// dropout reaches the DiT and only while training, stage-wise resolution, and the shipped
// checkpoint loads in eval mode and follows the colour words of its prompt.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
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
import { TextToImage, type GenerateOptions } from '../../lib/models/text_to_image.js';
import { adapterStateDict, attachLora, detachAdapters } from '../../lib/nn/lora.js';
import type { DiTConfig } from '../../lib/nn/dit.js';
import { saveSafetensors } from '../../lib/io/safetensors.js';
import { checkMemoryGuards, testSeed } from '../helpers.js';

checkMemoryGuards();

const generator = new Generator(testSeed);
const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-pipeline-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A DiT small enough to train for a few dozen steps in seconds at 16x16. */
const microDiT = { imageSize: 16, patchSize: 4, width: 48, depth: 2, heads: 2, mlpRatio: 2, textWidth: 32, text: { vocabSize: 0, depth: 1, heads: 2, mlpRatio: 2 } };

const figures: DataSource = (size) => loadTrainingData({ kind: 'figures', count: 64, seed: 3 }, size);

async function microModel(seed = 0, dit: Partial<DiTConfig> = {}): Promise<TextToImage> {
  const captions = (await loadTrainingData({ kind: 'figures', count: 64, seed: 3 }, null)).map((e: Example) => e.caption);
  return TextToImage.create(trainTokenizer(captions, 300), { preset: 'tiny', dit: { ...microDiT, ...dit }, seed });
}

/** A fresh DiT predicts exactly 0 (adaLN-Zero): perturb every weight so predictions differ. */
function perturb(model: TextToImage): void {
  for (const p of model.dit.parameters()) {
    const noise = randn(p.shape, { generator, std: 0.05 });
    axpy(1, noise, p.value);
    noise.dispose();
  }
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
    perturb(model);
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
    perturb(model);
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

  it('generate runs the DiT in eval mode: with dropout its images equal those without, and the mode is restored', async () => {
    const model = await microModel(9);
    perturb(model);
    const x = fromArray(Array.from({ length: 2 * 3 * 16 * 16 }, (_, i) => Math.cos(i)), [2, 3, 16, 16]);
    const predict = (): Float32Array => noGrad(() => tidy(() => model.predictEps(x, [10, 900], model.encodePrompts(['a person', ''])).value.toArray()));
    const run = (): Float32Array => tidy(() => model.generate({ prompts: ['a person wearing a red shirt'], n: 2, steps: 3, seed: 4 }).toArray());
    model.dit.train();
    const deterministic = predict();
    const plain = run();
    model.dit.dropout = 0.5;
    expect(predict(), 'dropout 0.5 changes a training-mode prediction').not.toEqual(deterministic);
    expect(run()).toEqual(plain);
    expect(model.dit.training, 'generate restores training mode').toBe(true);
    model.dit.eval();
    expect(run()).toEqual(plain);
    expect(model.dit.training, 'and eval mode').toBe(false);
    x.dispose();
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
    const saved = JSON.parse(readFileSync(path.join(scratch, 'resumed', 'checkpoint', 'state.json'), 'utf8')) as { dit: { dropout: number }; trainer: { dropout: { offset: number } } };
    expect(saved.dit.dropout).toBe(0.1);
    expect(saved.trainer.dropout.offset, 'the DiT drew dropout masks and their stream was saved').toBeGreaterThan(0);
    const secondHalf = await trainBase(resumedModel, figures, { ...options(path.join(scratch, 'resumed')), resume: path.join(scratch, 'resumed', 'checkpoint') });
    expect([...firstHalf.losses, ...secondHalf.losses]).toEqual(full.losses);
    const a = straight.dit.stateDict();
    const b = resumedModel.dit.stateDict();
    for (const name of Object.keys(a)) expect(b[name]!.toArray(), name).toEqual(a[name]!.toArray());
    straight.dispose();
    resumedModel.dispose();
  });

  it('dropout acts inside the DiT from its own stream: the same noise, other losses after the first; the model keeps its p', async () => {
    interface Run {
      losses: number[];
      model: TextToImage;
      streams: { noise: { offset: number }; dropout: { offset: number } };
    }
    const run = async (name: string, dropout: number | undefined, dit: Partial<DiTConfig> = {}): Promise<Run> => {
      const model = await microModel(8, dit);
      const out = path.join(scratch, `dropout-${name}`);
      const { losses } = await trainBase(model, figures, { steps: 3, batch: 2, lr: 2e-3, seed: 5, out, ...(dropout === undefined ? {} : { dropout }) });
      const { trainer } = JSON.parse(readFileSync(path.join(out, 'checkpoint', 'state.json'), 'utf8')) as { trainer: Run['streams'] };
      return { losses, model, streams: trainer };
    };
    const plain = await run('plain', undefined);
    const dropped = await run('dropped', 0.3);
    console.log(`losses without dropout ${plain.losses.map((l) => l.toFixed(5)).join(' ')}; with 0.3 ${dropped.losses.map((l) => l.toFixed(5)).join(' ')}`);
    expect(dropped.losses.every(Number.isFinite)).toBe(true);
    expect(dropped.streams.noise, 'dropout leaves the noise stream alone').toEqual(plain.streams.noise);
    expect(plain.streams.dropout.offset).toBe(0);
    expect(dropped.streams.dropout.offset).toBeGreaterThan(0);
    expect(dropped.losses[0], 'a fresh DiT predicts 0 whatever the masks').toBe(plain.losses[0]);
    expect(dropped.losses.slice(1)).not.toEqual(plain.losses.slice(1));
    expect(plain.model.dit.dropout).toBe(0);
    expect(dropped.model.dit.dropout).toBe(0.3);
    expect(dropped.model.config.dit.dropout, 'saved with the model').toBe(0.3);
    expect(dropped.model.dit.training, 'eval mode after training').toBe(false);
    const configured = await run('configured', undefined, { dropout: 0.2 });
    expect(configured.model.dit.dropout, 'no dropout option: the model keeps its own').toBe(0.2);
    expect(configured.losses.slice(1)).not.toEqual(plain.losses.slice(1));
    for (const r of [plain, dropped, configured]) r.model.dispose();
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
    await expect(trainBase(model, figures, { steps: 2, batch: 1, lr: 1e-3, dropout: 1 })).rejects.toThrow(/train: dropout must be in \[0, 1\), got 1/);
    expect(model.dit.dropout, 'a rejected run leaves the model alone').toBe(0);
    await expect(trainBase(model, figures, { steps: 2, batch: 1, lr: 1e-3, stages: [{ resolution: 18, steps: 2 }] })).rejects.toThrow(/resolution 18 must be a positive multiple of the patch size 4/);
    await expect(trainBase(model, figures, { steps: 3, batch: 1, lr: 1e-3, stages: [{ resolution: 16, steps: 2 }] })).rejects.toThrow(/stages add up to 2 steps but steps is 3/);
    model.dispose();
  });
});

/**
 * Measured on the shipped model (seed 123, 20 DDIM steps, cfg 5): yellow vs blue background
 * differ by about 1.9 in mean R - B over the image, red vs blue shirt by about 0.2 over the
 * torso box. A model that ignored the colour words would differ by about 0 (or in the other
 * direction); the margins leave room for cpu ISA-dependent rounding.
 */
const BACKGROUND_MARGIN = 0.8;
const SHIRT_MARGIN = 0.08;

describe('the shipped checkpoint', () => {
  const shipped = path.join(packageRoot, 'models', 'base-tiny');
  const prompt = (shirt: string, background: string): string =>
    `a person with light skin and short black hair wearing a ${shirt} shirt and black trousers, standing, on a plain ${background} background, lit from the front`;

  /** Mean of R - B over every image (or over the centre box where the torso is), fixed seed. */
  function redMinusBlue(model: TextToImage, text: string, region: 'image' | 'torso'): number {
    const n = 4;
    return tidy(() => {
      const data = model.generate({ prompts: [text], n, steps: 20, cfg: 5, seed: 123 }).toArray();
      const size = model.imageSize;
      const plane = size * size;
      const [x0, x1, y0, y1] = region === 'image' ? [0, size, 0, size] : [Math.round(size * 0.375), Math.round(size * 0.625), Math.round(size * 0.3), Math.round(size * 0.55)];
      let sum = 0;
      let count = 0;
      for (let b = 0; b < n; b++) {
        for (let y = y0; y < y1; y++) {
          for (let x = x0; x < x1; x++) {
            sum += data[(b * 3 + 0) * plane + y * size + x]! - data[(b * 3 + 2) * plane + y * size + x]!;
            count += 1;
          }
        }
      }
      return sum / count;
    });
  }

  it('is under 20 MB and loads as the tiny preset in eval mode, without dropout', () => {
    expect(statSync(path.join(shipped, 'model.safetensors')).size).toBeLessThan(20 * 2 ** 20);
    const model = TextToImage.load(shipped);
    expect(model.preset).toBe('tiny');
    expect(model.imageSize).toBe(32);
    expect(model.dit.dropout, 'its config predates dropout: the default').toBe(0);
    expect(model.dit.training, 'loaded for inference').toBe(false);
    model.dispose();
  });

  it('follows the colour words of the prompt: background yellow vs blue, shirt red vs blue (mean R - B)', () => {
    const model = TextToImage.load(shipped);
    const yellow = redMinusBlue(model, prompt('white', 'yellow'), 'image');
    const blue = redMinusBlue(model, prompt('white', 'blue'), 'image');
    const redShirt = redMinusBlue(model, prompt('red', 'grey'), 'torso');
    const blueShirt = redMinusBlue(model, prompt('blue', 'grey'), 'torso');
    console.log(`mean R - B: yellow background ${yellow.toFixed(3)}, blue background ${blue.toFixed(3)}; torso of a red shirt ${redShirt.toFixed(3)}, blue shirt ${blueShirt.toFixed(3)}`);
    expect(yellow - blue).toBeGreaterThan(BACKGROUND_MARGIN);
    expect(redShirt - blueShirt).toBeGreaterThan(SHIRT_MARGIN);
    model.dispose();
  });
});
