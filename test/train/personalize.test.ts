// HyperDreamBooth on a micro model: LiDB identity files apply exactly what the attached layers
// compute; the hypernetwork starts near zero and learns through the LiDB layers; pre-optimisation
// and the hypernetwork's training resume to the numbers of an uninterrupted run; personalize
// writes an identity file that `generate` applies, leaves a model passed in unchanged, and gives
// one clear error (or a listed conversion) for each bad input of the issue.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { crc32, deflateSync } from 'node:zlib';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as F from '../../lib/autograd/functions.js';
import { backward } from '../../lib/autograd/backward.js';
import { noGrad } from '../../lib/autograd/variable.js';
import { imageToPng } from '../../lib/io/images.js';
import { TextToImage } from '../../lib/models/text_to_image.js';
import { adapterTensors, describeAdapters, readAdapterFile, resolveLoraUpdates, saveAdapterFile, weightsHash } from '../../lib/nn/adapter_file.js';
import { defaultHyperNetworkConfig, HyperNetwork } from '../../lib/nn/hypernet.js';
import { adapterDelta, detachAdapters } from '../../lib/nn/lora.js';
import { loadEvaluator, shippedEvaluator } from '../../lib/eval/networks.js';
import { fromArray } from '../../lib/tensor.js';
import { loadTrainingData, trainTokenizer } from '../../lib/train/data.js';
import { trainHypernet } from '../../lib/train/personalize/hypernet_train.js';
import { identityPrompt, identityViews, loadReferenceImage, recontextScenes } from '../../lib/train/personalize/identities.js';
import { attachIdentityLidb, loadHypernet, personalizedLayerNames, personalizedLayers } from '../../lib/train/personalize/lidb.js';
import { personalize } from '../../lib/train/personalize/personalize.js';
import { identityFile, preoptimize, readPreoptWeights } from '../../lib/train/personalize/preopt.js';
import { checkMemoryGuards, expectClose, testSeed } from '../helpers.js';

checkMemoryGuards();

const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-personalize-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const microDiT = { imageSize: 32, patchSize: 8, width: 32, depth: 2, heads: 2, mlpRatio: 2, textWidth: 32, text: { vocabSize: 0, depth: 1, heads: 2, mlpRatio: 2 } };
const lidb = { seed: 5, a: 12, b: 6 };
let baseDir = '';
let otherBaseDir = '';

beforeAll(async () => {
  const captions = (await loadTrainingData({ kind: 'figures', count: 64, seed: 3 }, null)).map((e) => e.caption);
  const tokenizer = trainTokenizer([...captions, identityPrompt(recontextScenes(1)[0]!)], 300);
  const { trainBase } = await import('../../lib/train/base.js');
  for (const [dir, seed] of [
    [(baseDir = path.join(scratch, 'base')), 1],
    [(otherBaseDir = path.join(scratch, 'other-base')), 2],
  ] as const) {
    const model = TextToImage.create(tokenizer, { preset: 'tiny', dit: microDiT, seed });
    await trainBase(model, (size) => loadTrainingData({ kind: 'figures', count: 32, seed: 3 }, size), { steps: 3, batch: 4, lr: 1e-3, seed });
    model.save(dir);
    model.dispose();
  }
});

describe('LiDB identity files', () => {
  it('cover every attention projection of the denoiser and the text encoder', () => {
    const model = TextToImage.load(baseDir);
    const names = personalizedLayerNames(model.dit);
    // 2 blocks x (self + cross) x 4 projections + 1 text block x 4.
    expect(names.length).toBe(2 * 2 * 4 + 4);
    expect(names).toContain('blocks.1.cross.v');
    expect(names).toContain('text.blocks.0.attn.out');
    expect(names.some((n) => /mlp|adaLN/.test(n))).toBe(false);
    model.dispose();
  });

  it('apply exactly the update the attached LiDB layers compute (bases regenerated from the seed)', () => {
    const model = TextToImage.load(baseDir);
    const adapters = attachIdentityLidb(model.dit, lidb);
    const random = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(1.7 * i + k + testSeed));
    noGrad(() =>
      adapters.forEach((a, k) => {
        a.aTrain.value.copy_(fromArray(random(lidb.a, k), [lidb.a, 1]));
        a.bTrain.value.copy_(fromArray(random(lidb.b, 100 + k), [1, lidb.b]));
      }),
    );
    const file = path.join(scratch, 'lidb-exact.safetensors');
    const base = weightsHash(model.dit);
    saveAdapterFile(file, adapterTensors(model.dit, personalizedLayers, 'identity'), { base, groups: [describeAdapters(model.dit, { name: 'identity', pattern: personalizedLayers, lidbSeed: lidb.seed })] });
    const expected = new Map(personalizedLayerNames(model.dit).map((name, i) => [name, adapterDelta(adapters[i]!)]));
    detachAdapters(model.dit);
    const read = readAdapterFile(file);
    const updates = resolveLoraUpdates(model.dit, [read], {}, 'test');
    expect(updates.length).toBe(expected.size);
    for (const u of updates) {
      const delta = noGrad(() => F.matmul(u.up, u.down, { transA: true, transB: true }).value);
      expectClose(delta.toArray(), expected.get(u.layer)!.toArray(), { rtol: 1e-5, atol: 1e-7 }, u.layer);
      delta.dispose();
    }
    for (const t of expected.values()) t.dispose();
    read.dispose();
    model.dispose();
  });
});

describe('HyperNetwork', () => {
  it('predicts [B, layers, a + b] starting near zero, and learns through the image encoder', () => {
    const net = new HyperNetwork({ ...defaultHyperNetworkConfig(5, 32, lidb.a, lidb.b), encoder: { imageSize: 32, patchSize: 8, channels: 3, width: 16, depth: 1, heads: 2, mlpRatio: 2 }, width: 16, heads: 2, depth: 1 }, { seed: 1 });
    const images = fromArray(Float32Array.from({ length: 2 * 3 * 32 * 32 }, (_, i) => Math.cos(i * 0.37)), [2, 3, 32, 32]);
    const theta = net.forward(images);
    expect(theta.shape).toEqual([2, 5, lidb.a + lidb.b]);
    const values = theta.value.toArray();
    // s = 4 passes of a head with std 1e-3 weights: the start is small but not zero.
    const maxAbs = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(maxAbs).toBeGreaterThan(0);
    expect(maxAbs).toBeLessThan(0.05);
    // The two images give different weights (the prediction depends on the image).
    const first = values.slice(0, values.length / 2);
    const second = values.slice(values.length / 2);
    expect(first.some((v, i) => Math.abs(v - second[i]!) > 1e-7)).toBe(true);
    backward(F.sum(F.mul(theta, theta)));
    const patchGrad = net.encoder.patch.weight.grad!.toArray();
    expect(patchGrad.some((v) => v !== 0)).toBe(true);
    // Refinement passes change the prediction.
    const once = net.forward(images, 1).value.toArray();
    expect(once.some((v, i) => Math.abs(v - values[i]!) > 1e-7)).toBe(true);
    const again = noGrad(() => net.forward(images).value);
    const split = net.split(again.slice(0, 1));
    expect(split.length).toBe(5);
    expect(split[0]!.aTrain.shape).toEqual([lidb.a, 1]);
    expect(split[0]!.bTrain.shape).toEqual([1, lidb.b]);
    expect(split[4]!.bTrain.value.toArray()).toEqual(Float32Array.from(values.slice(4 * (lidb.a + lidb.b) + lidb.a, 5 * (lidb.a + lidb.b))));
    again.dispose();
    net.dispose();
    images.dispose();
  });
});

describe('pre-optimisation and the hypernetwork', () => {
  const preoptOptions = (out: string) => ({ base: baseDir, out, identities: 3, views: 2, steps: 3, batch: 2, lr: 1e-2, seed: testSeed % 1000, lidb });

  it('fits one LiDB per identity, resumes identity by identity to the same weights, and refuses other settings', async () => {
    const straight = path.join(scratch, 'preopt-straight');
    const resumed = path.join(scratch, 'preopt-resumed');
    expect((await preoptimize(preoptOptions(straight))).done).toBe(3);
    expect((await preoptimize({ ...preoptOptions(resumed), stopAfter: 1 })).done).toBe(1);
    expect(existsSync(identityFile(resumed, 1))).toBe(false);
    const again = await preoptimize(preoptOptions(resumed));
    expect(again).toMatchObject({ done: 3, fitted: 2 });
    const a = readPreoptWeights(straight);
    const b = readPreoptWeights(resumed);
    expect(a.weights.length).toBe(3);
    a.weights.forEach((w, i) => expect(b.weights[i]).toEqual(w));
    // Identities differ from each other and from the initialisation (B_train starts at zero).
    expect(a.weights[0]!.some((v, i) => v !== a.weights[1]![i])).toBe(true);
    expect(a.weights[0]!.slice(lidb.a, lidb.a + lidb.b).some((v) => v !== 0)).toBe(true);
    await expect(preoptimize({ ...preoptOptions(resumed), lr: 2e-2 })).rejects.toThrow(/was made with other settings or another base/);
    await expect(preoptimize({ ...preoptOptions(resumed), base: otherBaseDir })).rejects.toThrow(/was made with other settings or another base/);
  }, 120_000);

  it('trains the hypernetwork resumably and writes a file personalize reads', async () => {
    const preopt = path.join(scratch, 'preopt-straight');
    const config = { encoder: { imageSize: 32, patchSize: 8, channels: 3, width: 16, depth: 1, heads: 2, mlpRatio: 2 }, width: 16, heads: 2, depth: 1 };
    const common = { base: baseDir, preopt, steps: 4, identitiesPerStep: 2, batch: 2, lr: 1e-3, seed: 3, config, ckptEvery: 1, encoderInit: 'none', freshShare: 0.5 };
    const straight = await trainHypernet({ ...common, out: path.join(scratch, 'hyper-straight') });
    expect(straight.losses.length).toBe(4);
    await trainHypernet({ ...common, out: path.join(scratch, 'hyper-resumed'), stopAt: 2 });
    const rest = await trainHypernet({ ...common, out: path.join(scratch, 'hyper-resumed') });
    expect(rest.losses).toEqual(straight.losses.slice(2));
    const read = loadHypernet(straight.file);
    expect(read.meta.layers.length).toBe(20);
    expect(read.meta.lidb).toEqual(lidb);
    read.hypernet.dispose();
    // The image encoder starts from the shipped attribute classifier's (with its shape).
    const started = await trainHypernet({ ...common, encoderInit: undefined, steps: 1, lr: 1e-12, out: path.join(scratch, 'hyper-init') });
    const init = loadHypernet(started.file);
    const classifier = loadEvaluator(shippedEvaluator('attributes'), 'attributes');
    expect(init.hypernet.config.encoder).toEqual(classifier.config);
    const ours = init.hypernet.encoder.stateDict();
    for (const [key, t] of Object.entries(classifier.encoder.stateDict())) expectClose(ours[key]!.toArray(), t.toArray(), { rtol: 1e-6, atol: 1e-8 }, key);
    classifier.dispose();
    init.hypernet.dispose();
  }, 120_000);
});

describe('personalize', () => {
  const hypernet = (): string => path.join(scratch, 'hyper-straight', 'hypernet.safetensors');
  let refFile = '';
  beforeAll(async () => {
    refFile = path.join(scratch, 'ref.png');
    await imageToPng(identityViews('heldOut', 0, 1, 32)[0]!.pixels, refFile);
  });

  it('predicts, finetunes a rank-r LoRA and writes an identity file that generate applies', async () => {
    const out = path.join(scratch, 'ids', 'id.safetensors');
    const result = await personalize({ base: baseDir, reference: refFile, hypernet: hypernet(), out, steps: 3, rank: 2, batch: 2, prompt: 'plain' });
    expect(result.prompt).toBe('a photo of [V] person');
    expect(result.losses.length).toBe(3);
    expect(result.numbers).toEqual({ identity: 20 * (lidb.a + lidb.b), relax: expect.any(Number) });
    const file = readAdapterFile(out);
    expect(file.groups.map((g) => [g.name, g.kind, g.rank])).toEqual([
      ['identity', 'lidb', 1],
      ['relax', 'lora', 2],
    ]);
    // The relaxation moved away from its zero start.
    const up = Object.entries(file.tensors).find(([k]) => k.startsWith('relax/') && k.endsWith('.up'))![1];
    expect(up.toArray().some((v) => v !== 0)).toBe(true);
    file.dispose();
    const model = TextToImage.load(baseDir);
    const prompt = 'a photo of [V] person, running, on a plain white background, lit from the left';
    const plain = model.generate({ prompts: prompt, steps: 3, seed: 1 });
    const personal = model.generate({ prompts: prompt, steps: 3, seed: 1, lora: out });
    expect(personal.toArray().some((v, i) => v !== plain.toArray()[i])).toBe(true);
    plain.dispose();
    personal.dispose();
    // Another base refuses the identity file.
    const other = TextToImage.load(otherBaseDir);
    expect(() => other.generate({ prompts: prompt, steps: 2, lora: out })).toThrow(/was trained on base .* this model is/);
    other.dispose();
    model.dispose();
  }, 120_000);

  it('leaves a model passed in as it was; the hypernetwork alone and LiDB from zero write their one group', async () => {
    const model = TextToImage.load(baseDir);
    const before = weightsHash(model.dit);
    const pixels = identityViews('heldOut', 1, 1, 32)[0]!.pixels;
    const only = await personalize({ base: model, reference: pixels, hypernet: hypernet(), steps: 0, out: path.join(scratch, 'only.safetensors'), prompt: 'plain' });
    expect(only.numbers).toEqual({ identity: 20 * (lidb.a + lidb.b) });
    const fromZero = await personalize({ base: model, reference: pixels, method: 'lidb', steps: 2, batch: 2, out: path.join(scratch, 'zero.safetensors'), prompt: 'plain' });
    expect(fromZero.losses.length).toBe(2);
    await personalize({ base: model, reference: pixels, hypernet: hypernet(), steps: 2, batch: 2, prompt: 'plain' });
    expect(weightsHash(model.dit)).toBe(before);
    expect([...model.dit.namedModules()].some(([, m]) => 'adapter' in m && (m as { adapter: unknown }).adapter !== null)).toBe(false);
    model.dispose();
  }, 120_000);

  it('reads a reference with alpha or in grey by a listed conversion, and refuses what is not an image, tiny or from another base', async () => {
    const rgba = path.join(scratch, 'rgba.png');
    await sharp({ create: { width: 40, height: 64, channels: 4, background: { r: 200, g: 30, b: 30, alpha: 0.5 } } }).png().toFile(rgba);
    const withAlpha = await loadReferenceImage(rgba, 32);
    expect(withAlpha.conversions.join('; ')).toMatch(/resized from 40x64 to 32x32 \(centre square\); alpha flattened onto white/);
    expect(withAlpha.pixels.length).toBe(3 * 32 * 32);
    const grey = path.join(scratch, 'grey.png');
    await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 90, g: 90, b: 90 } } }).toColourspace('b-w').png().toFile(grey);
    const g = await loadReferenceImage(grey, 32);
    expect(g.conversions.join('; ')).toMatch(/grey repeated into RGB/);
    expect(g.pixels[0]).toBeCloseTo(g.pixels[32 * 32]!, 6);
    const notImage = path.join(scratch, 'not-an-image.png');
    writeFileSync(notImage, 'hello');
    await expect(personalize({ base: baseDir, reference: notImage, hypernet: hypernet() })).rejects.toThrow(/reference image .*not-an-image\.png is not an image/);
    const tiny = path.join(scratch, 'tiny.png');
    await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 1, g: 2, b: 3 } } }).png().toFile(tiny);
    await expect(personalize({ base: baseDir, reference: tiny, hypernet: hypernet() })).rejects.toThrow(/is 8x8; expected at least 16 pixels on each side/);
    // A PNG header that claims 10000x10000 (the pixels are never decoded).
    const chunk = (type: string, data: Buffer): Buffer => {
      const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      const out = Buffer.alloc(8 + data.length + 4);
      out.writeUInt32BE(data.length, 0);
      body.copy(out, 4);
      out.writeUInt32BE(crc32(body), 8 + data.length);
      return out;
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(10_000, 0);
    ihdr.writeUInt32BE(10_000, 4);
    ihdr.set([8, 2, 0, 0, 0], 8);
    const huge = path.join(scratch, 'huge.png');
    writeFileSync(huge, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(64))), chunk('IEND', Buffer.alloc(0))]));
    await expect(personalize({ base: baseDir, reference: huge, hypernet: hypernet() })).rejects.toThrow(/is 10000x10000 \(100 megapixels\); expected at most 50 megapixels/);
    await expect(personalize({ base: otherBaseDir, reference: refFile, hypernet: hypernet() })).rejects.toThrow(/hypernetwork .* was trained for base .* this model is/);
    await expect(personalize({ base: baseDir, reference: new Float32Array(5), hypernet: hypernet() })).rejects.toThrow(/reference pixels hold 5 values, expected 3072/);
    await expect(personalize({ base: baseDir, reference: refFile, hypernet: path.join(scratch, 'absent.safetensors') })).rejects.toThrow(/hypernetwork .*absent\.safetensors does not exist/);
    expect(readFileSync(refFile).length).toBeGreaterThan(0);
  }, 120_000);
});

describe('realtune personalize (command line)', () => {
  const root = path.join(__dirname, '..', '..');
  const cli = (args: string[]): string => execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli/run.ts'), ...args], { cwd: root, encoding: 'utf8', env: process.env });

  it('runs preopt, train-hypernet, personalize and sample --lora on the identity', async () => {
    const preopt = path.join(scratch, 'cli-preopt');
    const hyper = path.join(scratch, 'cli-hyper');
    expect(cli(['personalize', 'preopt', '--ckpt', baseDir, '--identities', '2', '--views', '2', '--steps', '2', '--batch', '2', '--out', preopt, '--quiet'])).toMatch(/preopt: 2 identities in/);
    expect(cli(['personalize', 'train-hypernet', '--ckpt', baseDir, '--preopt', preopt, '--steps', '2', '--identities-per-step', '1', '--batch', '1', '--out', hyper, '--quiet'])).toMatch(/train-hypernet: .*hypernet\.safetensors after 2 steps/);
    const ref = path.join(scratch, 'cli-ref.png');
    await imageToPng(identityViews('heldOut', 2, 1, 32)[0]!.pixels, ref);
    const id = path.join(scratch, 'cli-id.safetensors');
    const log = cli(['personalize', '--ckpt', baseDir, '--ref', ref, '--hypernet', path.join(hyper, 'hypernet.safetensors'), '--steps', '2', '--out', id, '--quiet']);
    expect(log).toMatch(/personalize: .*cli-id\.safetensors in [0-9.]+ s \(identity 3000, relax \d+ numbers/);
    expect(log).toMatch(/prompt "a photo of \[V\] person, /);
    const grid = path.join(scratch, 'cli-grid.png');
    cli(['sample', '--ckpt', baseDir, '--lora', id, '--prompt', 'a photo of [V] person, running, on a plain white background, lit from the left', '--steps', '2', '--n', '1', '--out', grid]);
    expect(readFileSync(grid).subarray(1, 4).toString()).toBe('PNG');
    const missing = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli/run.ts'), 'personalize', '--ckpt', baseDir, '--out', id], { cwd: root, encoding: 'utf8' });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/--ref IMAGE is required/);
  }, 180_000);
});
