// Diffusion Self-Distillation on a micro model: the two-frame model starts as exactly the base
// (model and sampler); the reference reaches the target frame only through joint attention; the
// objective's condition term is the identity mapping it claims; pairs are curated by the
// curator's cosine, resume, and refuse other bases; training resumes to the numbers of a straight
// run and its adapter file samples what the trained adapter does; the CLI runs pairs, train and
// `sample --dsd`; and every bad input of the issue gets one clear error or a listed conversion.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noGrad } from '../../lib/autograd/variable.js';
import { TextToImage } from '../../lib/models/text_to_image.js';
import { splitFrames, twoFrames } from '../../lib/nn/dsd.js';
import { fromArray } from '../../lib/tensor.js';
import { Generator, randn } from '../../lib/ops/random.js';
import { loadTrainingData, trainTokenizer } from '../../lib/train/data.js';
import { attachDsd, loadDsd } from '../../lib/train/dsd/adapter.js';
import { dsdGenerate, dsdSample } from '../../lib/train/dsd/generate.js';
import { dsdLoss } from '../../lib/train/dsd/objective.js';
import { dsdPrompt, functionCurator, loadSelfPairs, makeSelfPairs, realPairs } from '../../lib/train/dsd/pairs.js';
import { trainDsd } from '../../lib/train/dsd/train.js';
import { identityViews, recontextScenes } from '../../lib/train/personalize/identities.js';
import { scenePhrase } from '../../lib/data/figures.js';
import { checkMemoryGuards, expectClose, testSeed } from '../helpers.js';

checkMemoryGuards();

const root = path.join(__dirname, '..', '..');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-dsd-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const microDiT = { imageSize: 32, patchSize: 8, width: 32, depth: 2, heads: 2, mlpRatio: 2, textWidth: 32, text: { vocabSize: 0, depth: 1, heads: 2, mlpRatio: 2 } };
let baseDir = '';
let otherBaseDir = '';
const scenes = recontextScenes(2, 77);
const prompts = scenes.map(dsdPrompt);

beforeAll(async () => {
  const captions = (await loadTrainingData({ kind: 'figures', count: 64, seed: 3 }, null)).map((e) => e.caption);
  const tokenizer = trainTokenizer([...captions, ...prompts], 300);
  const { trainBase } = await import('../../lib/train/base.js');
  for (const [dir, seed] of [
    [(baseDir = path.join(scratch, 'base')), 1],
    [(otherBaseDir = path.join(scratch, 'other-base')), 2],
  ] as const) {
    const model = TextToImage.create(tokenizer, { preset: 'tiny', dit: microDiT, seed, prediction: 'v' });
    await trainBase(model, (size) => loadTrainingData({ kind: 'figures', count: 32, seed: 3 }, size), { steps: 3, batch: 4, lr: 1e-3, seed });
    // A few steps leave adaLN-Zero's gates near zero, so every block would be close to the
    // identity; set them (and the output layer) as a trained model's would be.
    noGrad(() => {
      for (const [name, p] of model.dit.namedParameters()) if (/adaLN|^final\.linear/.test(name)) p.value.copy_(fromArray(random(p.size, seed + p.size).map((v) => 4 * v), p.shape));
    });
    model.save(dir);
    model.dispose();
  }
});

const reference = (i: number): Float32Array => identityViews('heldOut', 50 + i, 1, 32)[0]!.pixels;
const random = (n: number, k: number): Float32Array => Float32Array.from({ length: n }, (_, i) => 0.05 * Math.sin(1.3 * i + k + testSeed));

/** Sets every DSD parameter (conditioner and LoRA factors) to small non-zero values. */
function perturb(dsd: ReturnType<typeof attachDsd>): void {
  noGrad(() => dsd.parameters().forEach(([, p], k) => p.value.copy_(fromArray(random(p.size, k), p.shape))));
}

describe('the two-frame model', () => {
  it('is exactly the base at step 0: both frames predict what the base does, and sampling is the base with cfg = cfgText', () => {
    const model = TextToImage.load(baseDir);
    const x = fromArray(random(2 * 3 * 32 * 32, 1).map((v) => 20 * v), [2, 3, 32, 32]);
    const baseOut = noGrad(() => model.predict(x, [100, 700], model.encodePrompts(prompts)).value.toArray());
    const base = model.generate({ prompts, n: 2, steps: 4, cfg: 3, seed: 5 }).toArray();
    const dsd = attachDsd(model, { rank: 2 });
    const refs = fromArray(new Float32Array([...reference(0), ...reference(1)]), [2, 3, 32, 32]);
    const [first, second] = noGrad(() => {
      const out = model.predict(twoFrames(x), [100, 100, 700, 700], model.encodePrompts(prompts.flatMap((p) => [p, p])), { frames: 2, tokens: dsd.conditioner.tokens(model.dit, refs, x, [true, true]) });
      return splitFrames(out).map((v) => v.value.toArray());
    });
    expectClose(second!, baseOut, { atol: 2e-6, rtol: 1e-5 });
    expectClose(first!, baseOut, { atol: 2e-6, rtol: 1e-5 });
    const zeroShot = dsdGenerate(model, dsd, { cfgText: 3, cfgImage: 2 }, { prompts, references: reference(0), n: 2, steps: 4, seed: 5 }).toArray();
    expectClose(zeroShot, base, { atol: 1e-5, rtol: 1e-5 });
    dsd.detach();
    expect(model.dit.parameters().length).toBe(TextToImage.load(baseDir).dit.parameters().length);
    model.dispose();
  });

  it('passes the reference to the target frame through joint attention only; a pair without a reference gets the frame embeddings only', () => {
    const model = TextToImage.load(baseDir);
    const dsd = attachDsd(model, { rank: 2 });
    perturb(dsd);
    const x = fromArray(random(3 * 32 * 32, 3).map((v) => 20 * v), [1, 3, 32, 32]);
    const text = () => model.encodePrompts([prompts[0]!, prompts[0]!]);
    const target = (ref: Float32Array, frames: number): Float32Array =>
      noGrad(() => {
        const tokens = dsd.conditioner.tokens(model.dit, fromArray(ref, [1, 3, 32, 32]), x, [true]);
        const out = model.predict(twoFrames(x), [300, 300], text(), { frames, tokens });
        return splitFrames(out)[1].value.toArray();
      });
    const a = target(reference(0), 2);
    const b = target(reference(1), 2);
    expect(Math.max(...a.map((v, i) => Math.abs(v - b[i]!)))).toBeGreaterThan(1e-4);
    // Frames processed apart: the target frame cannot see the reference.
    expectClose(target(reference(0), 1), target(reference(1), 1), { atol: 0, rtol: 0 });
    // No image: the condition adds nothing, only the frame embeddings.
    const none = noGrad(() => dsd.conditioner.tokens(model.dit, fromArray(new Float32Array(3 * 32 * 32), [1, 3, 32, 32]), x, [false]).value.toArray());
    const frame = dsd.conditioner.frame.value.toArray();
    const width = 32;
    for (let f = 0; f < 2; f++) for (let k = 0; k < 16 * width; k++) expect(none[f * 16 * width + k]).toBe(frame[f * width + (k % width)]);
    dsd.detach();
    model.dispose();
  });
});

describe('the DSD objective', () => {
  it("is the target frame's v loss plus the condition frame's clean-image error to the reference, counted only where the reference was kept", () => {
    const model = TextToImage.load(baseDir);
    const dsd = attachDsd(model, { rank: 2 });
    perturb(dsd);
    const refs = [reference(0), reference(1)];
    const targets = [reference(2), reference(3)];
    const batch = { references: new Float32Array([...refs[0]!, ...new Float32Array(refs[1]!.length)]), targets: new Float32Array([...targets[0]!, ...targets[1]!]), prompts, withReference: [true, false], timesteps: [250, 800] };
    const terms = noGrad(() => dsdLoss(model, dsd, batch, new Generator(9), 0.5));
    // The same numbers from the model's outputs, in float64.
    const eps = randn([2, 3, 32, 32], { generator: new Generator(9) }).toArray();
    const per = 3 * 32 * 32;
    const levels = batch.timesteps.map((t) => model.schedule.signalNoise(t));
    const xt = new Float32Array(2 * per);
    for (let i = 0; i < 2; i++) for (let k = 0; k < per; k++) xt[i * per + k] = levels[i]!.signal * batch.targets[i * per + k]! + levels[i]!.noise * eps[i * per + k]!;
    const [condOut, targetOut] = noGrad(() => {
      const out = model.predict(twoFrames(fromArray(xt, [2, 3, 32, 32])), [250, 250, 800, 800], model.encodePrompts(prompts.flatMap((p) => [p, p])), {
        frames: 2,
        tokens: dsd.conditioner.tokens(model.dit, fromArray(batch.references, [2, 3, 32, 32]), fromArray(xt, [2, 3, 32, 32]), batch.withReference),
      });
      return splitFrames(out).map((v) => v.value.toArray());
    });
    let targetLoss = 0;
    let conditionLoss = 0;
    for (let i = 0; i < 2; i++) {
      const { signal: s, noise: n } = levels[i]!;
      for (let k = 0; k < per; k++) {
        const j = i * per + k;
        const v = s * eps[j]! - n * batch.targets[j]!;
        targetLoss += (targetOut![j]! - v) ** 2 / (2 * per);
        // x0_hat = s x_t - n v_hat; only pair 0 kept its reference.
        if (i === 0) conditionLoss += (s * xt[j]! - n * condOut![j]! - refs[0]![k]!) ** 2 / per;
      }
    }
    expect(terms.target.value.item()).toBeCloseTo(targetLoss, 5);
    expect(terms.condition.value.item()).toBeCloseTo(conditionLoss, 5);
    expect(terms.loss.value.item()).toBeCloseTo(targetLoss + 0.5 * conditionLoss, 5);
    dsd.detach();
    model.dispose();
  });
});

describe('pairs', () => {
  it('keeps the ordered pairs whose curator cosine reaches the threshold, resumes without drawing again, and refuses another base', async () => {
    const model = TextToImage.load(baseDir);
    const dir = path.join(scratch, 'pairs');
    // A curator that sees person p's view v as the unit vector at angle (v mod 2) * 60 degrees:
    // views 0 and 2 (and 1 and 3) agree (cosine 1), views of different parity have cosine 0.5.
    let calls = 0;
    const curator = functionCurator('parity', (images) => {
      calls++;
      const count = images.shape[0]!;
      const data = new Float32Array(2 * count);
      for (let v = 0; v < count; v++) {
        const angle = ((v % 2) * Math.PI) / 3;
        data[2 * v] = Math.cos(angle);
        data[2 * v + 1] = Math.sin(angle);
      }
      return { data, count, dim: 2 };
    });
    const options = { identities: 2, views: 4, steps: 2, cfg: 3, seed: 4, threshold: 0.9 };
    const made = await makeSelfPairs(model, dir, curator, options);
    // Per person: (0,2), (2,0), (1,3), (3,1).
    expect(made.candidates).toBe(2 * 4 * 3);
    expect(made.kept).toBe(2 * 4);
    expect(made.pairs.every((p) => p.similarity! > 0.99)).toBe(true);
    expect(made.pairs[0]!.prompt.startsWith('a person, ')).toBe(true);
    const index = readFileSync(path.join(dir, 'pool', 'index.jsonl'), 'utf8');
    const again = await makeSelfPairs(model, dir, curator, { ...options, threshold: 0.4 });
    expect(readFileSync(path.join(dir, 'pool', 'index.jsonl'), 'utf8')).toBe(index);
    expect(again.kept).toBe(again.candidates);
    expect(calls).toBe(4);
    const loaded = await loadSelfPairs(dir, 32, model.weightsHash());
    expect(loaded.length).toBe(again.kept);
    expect(loaded[0]!.reference.length).toBe(3 * 32 * 32);
    // Another pairs directory curating the same images: nothing drawn again.
    const uncuratedDir = path.join(scratch, 'pairs-uncurated');
    const uncurated = await makeSelfPairs(model, uncuratedDir, curator, { ...options, threshold: null, pool: path.join(dir, 'pool') });
    expect(uncurated.kept).toBe(24);
    expect(existsSync(path.join(uncuratedDir, 'pool'))).toBe(false);
    expect(readFileSync(path.join(dir, 'pool', 'index.jsonl'), 'utf8')).toBe(index);
    expect((await loadSelfPairs(uncuratedDir, 32)).length).toBe(24);
    // A curator that rejects every pair: the count in the error.
    const apart = functionCurator('apart', (images) => {
      const count = images.shape[0]!;
      const data = new Float32Array(count * count);
      for (let v = 0; v < count; v++) data[v * count + v] = 1;
      return { data, count, dim: count };
    });
    await expect(makeSelfPairs(model, dir, apart, { ...options, threshold: 0.5 })).rejects.toThrow(/curator fn:apart kept 0 of 24 pairs at threshold 0\.5 \(the most similar pair scored 0\.000\)/);
    model.dispose();
    const other = TextToImage.load(otherBaseDir);
    await expect(makeSelfPairs(other, dir, curator, options)).rejects.toThrow(/made by another base model/);
    await expect(loadSelfPairs(dir, 32, other.weightsHash())).rejects.toThrow(/pairs in .* were made by another base model/);
    other.dispose();
  });

  it('real pairs: two views of one training-domain person, both orders, prompted with the target context', () => {
    const pairs = realPairs(3, 32);
    expect(pairs.length).toBe(6);
    const [a, b] = identityViews('train', 1, 2, 32);
    expect(pairs[2]!.reference).toEqual(a!.pixels);
    expect(pairs[2]!.target).toEqual(b!.pixels);
    expect(pairs[2]!.prompt).toBe(`a person, ${scenePhrase(b!.attributes)}`);
    expect(pairs[3]!.reference).toEqual(b!.pixels);
  });
});

describe('training', () => {
  it('resumes to the numbers of a straight run, and its adapter file samples what the trained adapter does', async () => {
    const pairs = realPairs(4, 32);
    const options = { pairs, steps: 6, batch: 2, lr: 1e-2, rank: 2, seed: 3, ckptEvery: 3 };
    const straightModel = TextToImage.load(baseDir);
    const straight = await trainDsd({ ...options, model: straightModel, out: path.join(scratch, 'dsd-straight') });
    expect(straight.losses.length).toBe(6);
    const resumedModel = TextToImage.load(baseDir);
    const first = await trainDsd({ ...options, model: resumedModel, out: path.join(scratch, 'dsd-resumed'), stopAt: 3 });
    first.dsd.detach();
    const rest = await trainDsd({ ...options, model: resumedModel, out: path.join(scratch, 'dsd-resumed') });
    expect([...first.losses, ...rest.losses]).toEqual(straight.losses);
    const trained = Object.fromEntries(straight.dsd.parameters().map(([n, p]) => [n, p.value.toArray()]));
    for (const [n, p] of rest.dsd.parameters()) expect(p.value.toArray(), n).toEqual(trained[n]);
    expect(trained['dsd.condition.weight']!.some((v) => v !== 0)).toBe(true);

    const sampleOptions = { prompts, references: reference(0), n: 1, steps: 3, seed: 2 };
    const inMemory = dsdGenerate(straightModel, straight.dsd, { cfgText: 4, cfgImage: 1.5 }, sampleOptions).toArray();
    straight.dsd.detach();
    rest.dsd.detach();
    // Only the adapter trained: the base's weights and their trainable flags are as they were.
    const baseHash = TextToImage.load(baseDir).weightsHash();
    expect(straightModel.weightsHash()).toBe(baseHash);
    expect(straightModel.dit.parameters().every((p) => p.requiresGrad)).toBe(true);
    const fresh = TextToImage.load(baseDir);
    const loaded = loadDsd(straight.file!, fresh);
    expect(loaded.meta.rank).toBe(2);
    expectClose(dsdGenerate(fresh, loaded, { cfgText: 4, cfgImage: 1.5 }, sampleOptions).toArray(), inMemory, { atol: 0, rtol: 0 });
    loaded.detach();
    // The SDK's one call: the same images, the model left as it was.
    const viaSdk = await dsdSample(fresh, { adapter: straight.file!, reference: reference(0), prompts, n: 1, steps: 3, seed: 2, cfgText: 4, cfgImage: 1.5 });
    expectClose(viaSdk.toArray(), inMemory, { atol: 0, rtol: 0 });
    // Detached: the base again.
    expect(fresh.weightsHash()).toBe(TextToImage.load(baseDir).weightsHash());
    for (const m of [straightModel, resumedModel, fresh]) m.dispose();
  });
});

describe('bad input', () => {
  it('an adapter for another base, a file that is not a DSD adapter, references of the wrong size, pairs without images', async () => {
    const model = TextToImage.load(baseDir);
    const file = path.join(scratch, 'dsd-straight', 'dsd.safetensors');
    const other = TextToImage.load(otherBaseDir);
    expect(() => loadDsd(file, other)).toThrow(/was trained for base [0-9a-f]{12}, this model is [0-9a-f]{12}; train one for this base with `realtune dsd train`/);
    loadDsd(file, other, { allowOtherBase: true }).detach();
    other.dispose();
    expect(() => loadDsd(path.join(scratch, 'missing.safetensors'), model)).toThrow(/does not exist/);
    const { saveSafetensors } = await import('../../lib/io/safetensors.js');
    const notDsd = path.join(scratch, 'not-dsd.safetensors');
    saveSafetensors(notDsd, { x: fromArray([1], [1]) }, { metadata: { format: 'something-else' } });
    expect(() => loadDsd(notDsd, model)).toThrow(/metadata format "something-else", expected "realtune-dsd"/);
    const dsd = attachDsd(model, { rank: 2 });
    expect(() => dsdGenerate(model, dsd, { cfgText: 3, cfgImage: 1 }, { prompts, references: new Float32Array(3 * 16 * 16) })).toThrow(/reference 0 has 768 values, expected 3072 \(3x32x32/);
    expect(() => dsdGenerate(model, dsd, { cfgText: 3, cfgImage: -1 }, { prompts, references: reference(0) })).toThrow(/cfgImage must be a finite number >= 0, got -1/);
    expect(() => dsdGenerate(model, dsd, { cfgText: 3, cfgImage: 1 }, { prompts, references: [reference(0), reference(1), reference(2)] })).toThrow(/one reference or one per prompt \(2\), got 3/);
    // A DSD adapter on layers that already carry one.
    expect(() => attachDsd(model)).toThrow(/already attached/);
    dsd.detach();
    await expect(trainDsd({ model, pairs: [] })).rejects.toThrow(/expected at least one pair/);
    await expect(trainDsd({ model, pairs: realPairs(1, 32), dropImage: 2 })).rejects.toThrow(/dropImage must be a rate in \[0, 1\], got 2/);
    await expect(loadSelfPairs(path.join(scratch, 'nowhere'), 32)).rejects.toThrow(/holds no pairs.json; make the pairs first/);
    model.dispose();
  });
});

describe('the CLI', () => {
  const cli = (args: string[]): string => execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli/run.ts'), ...args], { cwd: root, encoding: 'utf8', env: process.env });

  it('dsd pairs, dsd train and sample --dsd --ref (a grey 48x48 reference is converted, and says so)', async () => {
    const pairsDir = path.join(scratch, 'cli-pairs');
    const out = cli(['dsd', 'pairs', '--ckpt', baseDir, '--out', pairsDir, '--identities', '2', '--views', '3', '--steps', '2', '--threshold', '-1', '--quiet']);
    expect(out).toMatch(/dsd pairs: 12 pairs in/);
    const adapterDir = path.join(scratch, 'cli-adapter');
    const trained = cli(['dsd', 'train', '--ckpt', baseDir, '--pairs', pairsDir, '--real-pairs', '2', '--out', adapterDir, '--steps', '2', '--batch', '2', '--rank', '2', '--quiet']);
    expect(trained).toMatch(/dsd train: .*dsd\.safetensors \(\d+ numbers, 16 pairs\)/);
    const grey = path.join(scratch, 'grey.png');
    await sharp({ create: { width: 48, height: 48, channels: 3, background: { r: 90, g: 90, b: 90 } } }).toColourspace('b-w').png().toFile(grey);
    const grid = path.join(scratch, 'dsd-grid.png');
    const sampled = cli(['sample', '--ckpt', baseDir, '--dsd', path.join(adapterDir, 'dsd.safetensors'), '--ref', grey, '--prompt', prompts[0]!, '--n', '2', '--steps', '2', '--cfg-image', '1.5', '--out', grid, '--quiet']);
    expect(sampled).toMatch(/resized from 48x48 to 32x32/);
    expect(sampled).toMatch(/grey repeated into RGB/);
    expect(sampled).toMatch(/2 images written/);
    expect(existsSync(grid)).toBe(true);

    const run = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli/run.ts'), ...args], { cwd: root, encoding: 'utf8' });
    const noRef = run(['sample', '--ckpt', baseDir, '--dsd', path.join(adapterDir, 'dsd.safetensors'), '--prompt', 'x']);
    expect(noRef.status).toBe(1);
    expect(noRef.stderr).toMatch(/--dsd needs --ref IMAGE/);
    const refWithoutDsd = run(['sample', '--ckpt', baseDir, '--ref', grey, '--prompt', 'x']);
    expect(refWithoutDsd.stderr).toMatch(/--ref applies to --dsd/);
    const notImage = path.join(scratch, 'not-an-image.png');
    writeFileSync(notImage, 'hello');
    const bad = run(['sample', '--ckpt', baseDir, '--dsd', path.join(adapterDir, 'dsd.safetensors'), '--ref', notImage, '--prompt', 'x', '--out', path.join(scratch, 'x.png')]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/reference image .* is not an image sharp can read/);
    const otherBase = run(['sample', '--ckpt', otherBaseDir, '--dsd', path.join(adapterDir, 'dsd.safetensors'), '--ref', grey, '--prompt', 'x', '--out', path.join(scratch, 'x.png')]);
    expect(otherBase.stderr).toMatch(/was trained for base/);
    const noPairs = run(['dsd', 'train', '--ckpt', baseDir, '--out', path.join(scratch, 'x')]);
    expect(noPairs.stderr).toMatch(/--pairs DIR or --real-pairs N is required/);
  });
});

