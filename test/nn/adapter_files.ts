// Small text-to-image models and adapter files for the adapter-file tests.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect } from 'vitest';
import { TextToImage, type GenerateOptions } from '../../lib/models/text_to_image.js';
import { saveAdapterFile, type AdapterGroup } from '../../lib/nn/adapter_file.js';
import { Linear } from '../../lib/nn/layers.js';
import type { LoraAdapter } from '../../lib/nn/lora.js';
import { axpy } from '../../lib/ops/elementwise.js';
import { Generator, randn } from '../../lib/ops/random.js';
import { tidy } from '../../lib/scope.js';
import type { Tensor } from '../../lib/tensor.js';
import { Tokenizer } from '../../lib/text/tokenizer.js';
import { expectIdentical, testSeed } from '../helpers.js';

/** A scratch folder removed after the file's tests; fresh(name) is a new file path in it. */
export const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-adapter-file-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let fileCount = 0;
export const fresh = (name: string): string => path.join(scratch, `${fileCount++}-${name}.safetensors`);

export const tokenizer = Tokenizer.train(['a person in a red shirt', 'a person in a blue shirt with short hair'], { vocabSize: 264 });
export const depth = 4;

/** A 4-block DiT on 8x8 images with a 2-block text encoder, every weight random (a fresh DiT predicts 0). */
export function makeModel(seed: number): TextToImage {
  const model = TextToImage.create(tokenizer, {
    dit: { imageSize: 8, patchSize: 4, width: 16, depth, heads: 2, mlpRatio: 2, textWidth: 16, contextLength: 8, text: { vocabSize: 0, depth: 2, heads: 2, mlpRatio: 2 } },
    seed,
  });
  const generator = new Generator(seed + testSeed);
  for (const p of model.dit.parameters()) {
    const noise = randn(p.shape, { generator, std: 0.2 });
    axpy(1, noise, p.value);
    noise.dispose();
  }
  return model;
}

export const denoiserAttention = /^blocks\.\d+\.(attn|cross)\.(q|k|v|out)$/;
export const textAttention = /^text\.blocks\.\d+\.attn\.(q|k|v|out)$/;

export function linearNames(model: TextToImage, pattern: RegExp): string[] {
  return [...model.dit.namedModules()].filter(([name, m]) => m instanceof Linear && pattern.test(name)).map(([name]) => name);
}

/** Random LoRA factors for the layers matching `pattern`, keyed `<group>/<layer>.lora.down|up`. */
export function randomFactors(model: TextToImage, pattern: RegExp, group: string, rank: number, seed: number): Record<string, Tensor<'f32'>> {
  const generator = new Generator(seed);
  const out: Record<string, Tensor<'f32'>> = {};
  for (const [name, m] of model.dit.namedModules()) {
    if (!(m instanceof Linear) || !pattern.test(name)) continue;
    out[`${group}/${name}.lora.down`] = randn([m.inFeatures, rank], { generator, std: 0.5 });
    out[`${group}/${name}.lora.up`] = randn([rank, m.outFeatures], { generator, std: 0.5 });
  }
  return out;
}

export function group(name: string, pattern: RegExp, rank: number, extra: Partial<AdapterGroup> = {}): AdapterGroup {
  return { name, kind: 'lora', rank, scale: 1, pattern: pattern.source, ...extra };
}

/** Writes a file of `groups` (factors given per group) for `model`, and frees the factors. */
export function writeFile(model: TextToImage, parts: { group: AdapterGroup; factors: Record<string, Tensor<'f32'>> }[], base = model.weightsHash()): string {
  const file = fresh(parts.map((p) => p.group.name).join('+'));
  const tensors = Object.assign({}, ...parts.map((p) => p.factors)) as Record<string, Tensor>;
  saveAdapterFile(file, tensors, { base, groups: parts.map((p) => p.group) });
  for (const t of Object.values(tensors)) t.dispose();
  return file;
}

export function images(model: TextToImage, options: Partial<GenerateOptions> = {}): Float32Array {
  return tidy(() => model.generate({ prompts: ['a person in a red shirt', 'a person with short hair'], n: 1, steps: 3, seed: 5, cfg: 3, ...options }).toArray());
}

export function snapshotWeights(model: TextToImage): Map<string, Float32Array> {
  return new Map(Object.entries(model.dit.stateDict()).map(([name, t]) => [name, t.toArray() as Float32Array]));
}

export function expectWeights(model: TextToImage, before: Map<string, Float32Array>, label: string): void {
  const now = model.dit.stateDict();
  expect(Object.keys(now).sort(), label).toEqual([...before.keys()].sort());
  for (const [name, values] of before) expectIdentical(now[name]!.toArray(), values, `${label}: ${name}`);
}

/** Gives the attached adapters nonzero up factors (a trained adapter). */
export function train(attached: Map<string, LoraAdapter>, seed: number): void {
  const generator = new Generator(seed);
  for (const a of attached.values()) {
    const noise = randn(a.up.shape, { generator, std: 0.5 });
    a.up.value.copy_(noise);
    noise.dispose();
  }
}
