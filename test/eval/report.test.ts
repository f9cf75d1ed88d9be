// The report of a checkpoint on held-out prompts, on the shipped base with the shipped
// evaluators (a handful of prompts and DDIM steps: the numbers are not the point, the wiring is):
// every measure present and finite, a LoRA adds the hue distance to the base (and its
// inference options reach every batch), a user's ONNX
// networks add their FD and score, and what cannot be measured is refused with a clear error.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { attachLora, adapterStateDict, detachAdapters } from '../../lib/nn/lora.js';
import { evaluateModel, formatReport, heldOutSet } from '../../lib/eval/report.js';
import { ATTRIBUTE_NAMES } from '../../lib/eval/attributes.js';
import { defaultImageEncoderConfig, AttributeClassifier } from '../../lib/eval/networks.js';
import { saveSafetensors } from '../../lib/io/safetensors.js';
import { packageRoot } from '../../lib/native.js';
import { Generator, randn } from '../../lib/ops/random.js';
import { TextToImage } from '../../lib/models/text_to_image.js';
import { checkMemoryGuards, testSeed } from '../helpers.js';

checkMemoryGuards();
const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-report-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const shippedBase = path.join(packageRoot, 'models', 'base-tiny');
const onnxFixture = (name: string) => path.join(packageRoot, 'test', 'fixtures', 'eval', name);

describe('evaluateModel', () => {
  it('measures the shipped base on held-out prompts: FD with its floor, adherence per attribute, scorer, hue, sharpness, ONNX features and score', async () => {
    const model = TextToImage.load(shippedBase);
    const report = await evaluateModel(model, { prompts: 8, steps: 4, seed: testSeed % 1000, onnxFeatures: onnxFixture('features.onnx'), onnxScorer: onnxFixture('scorer.onnx') });
    console.log(formatReport(report));
    for (const key of ['fd', 'fdRealFloor', 'adherenceMean', 'scorer', 'scorerReal', 'hueToReal', 'sharpness', 'sharpnessReal', 'channelDriftToReal', 'onnxFd', 'onnxFdRealFloor', 'onnxScore', 'onnxScoreReal'] as const) {
      expect(Number.isFinite(report[key]), key).toBe(true);
    }
    expect(report.hueToBase).toBeUndefined();
    expect(report.fdInfinity, 'FD-infinity is not fitted through 8 images').toBeUndefined();
    // Every attribute the held-out captions name is measured (hair colour: unless all 8 are bald).
    for (const name of ATTRIBUTE_NAMES.filter((n) => n !== 'hairColor')) expect(report.adherence[name], name).toBeGreaterThanOrEqual(0);
    expect(report.imagesPerSecond).toBeGreaterThan(0);
    model.dispose();
  });

  it('from 192 prompts on (twice the features): FD-infinity, whose floor is the floor without its sample-size bias', async () => {
    const model = TextToImage.load(shippedBase);
    const report = await evaluateModel(model, { prompts: 192, steps: 2, seed: testSeed % 1000 });
    expect(Number.isFinite(report.fdInfinity)).toBe(true);
    expect(Math.abs(report.fdInfinityRealFloor!), `floor ${report.fdRealFloor}, extrapolated ${report.fdInfinityRealFloor}`).toBeLessThan(0.3 * report.fdRealFloor);
    expect(formatReport(report)).toMatch(/FD-infinity to real \(floor\) +-?\d+\.\d\d \(-?\d+\.\d\d\)/);
    model.dispose();
  });

  it('with a LoRA: the images change and the hue distance to the base is reported', async () => {
    const model = TextToImage.load(shippedBase);
    const generator = new Generator(testSeed);
    const adapters = attachLora(model.dit, { pattern: /attn\.(q|k|v|out)$/, rank: 2, generator });
    for (const a of adapters.values()) {
      const noise = randn(a.up.shape, { generator, std: 0.3 });
      a.up.value.copy_(noise);
      noise.dispose();
    }
    const lora = path.join(scratch, 'lora.safetensors');
    saveSafetensors(lora, adapterStateDict(model.dit));
    detachAdapters(model.dit);
    const report = await evaluateModel(model, { prompts: 4, steps: 3, lora });
    expect(report.hueToBase).toBeGreaterThan(0);
    // The inference options reach every batch: at loraScale 0 the images are the base's own.
    const off = await evaluateModel(model, { prompts: 4, steps: 3, batch: 2, lora: [lora, lora], loraScale: 0 });
    expect(off.hueToBase).toBe(0);
    await expect(evaluateModel(model, { prompts: 2, steps: 1, lora, loraGroups: { text: { timesteps: [900, 1000] } } })).rejects.toThrow(/loraGroups names group "text", which none of the adapter files holds \(they hold: lora\)/);
    await expect(evaluateModel(model, { prompts: 2, loraScale: 0.5 })).rejects.toThrow(/loraScale, loraGroups and allowOtherBase apply to adapter files: pass them with lora/);
    model.dispose();
  });

  it('refuses too few prompts, a classifier of another image size, and a missing evaluator file, naming them', async () => {
    const model = TextToImage.load(shippedBase);
    await expect(evaluateModel(model, { prompts: 1 })).rejects.toThrow(/prompts must be an integer >= 2 .*got 1/);
    const small = new AttributeClassifier({ ...defaultImageEncoderConfig(16), depth: 1 });
    await expect(evaluateModel(model, { prompts: 2, classifier: small })).rejects.toThrow(/makes 32x32 images but the classifier reads 16x16/);
    small.dispose();
    await expect(evaluateModel(model, { prompts: 2, scorer: path.join(scratch, 'absent.safetensors') })).rejects.toThrow(/absent\.safetensors does not exist/);
    await expect(evaluateModel(model, { prompts: 2, steps: 2, onnxFeatures: onnxFixture('vectors.onnx') })).rejects.toThrow(/vectors\.onnx/);
    model.dispose();
  });

  it('the held-out prompts are the captions of figures no training run draws', () => {
    const { prompts, images } = heldOutSet(3, 32);
    expect(prompts).toHaveLength(3);
    expect(images.shape).toEqual([3, 3, 32, 32]);
    images.dispose();
  });
});
