// Applying adapter files: generate's per-call files and applyLoraFile leave attached adapters
// (and the DiT's mode and weights) as they were, and the inference rules of SPEC section 2
// (scales, timestep windows, the last half of the blocks, stacking) hold as exact identities
// between images.
import { describe, expect, it } from 'vitest';
import { noGrad } from '../../lib/autograd/variable.js';
import { NoiseSchedule } from '../../lib/diffusion/schedule.js';
import { saveSafetensors } from '../../lib/io/safetensors.js';
import { TextToImage, applyLoraFile } from '../../lib/models/text_to_image.js';
import { adapterTensors, describeAdapters, LoraWeightPatch, readAdapterFile, resolveLoraUpdates, saveAdapterFile } from '../../lib/nn/adapter_file.js';
import { attachLidb } from '../../lib/nn/lidb.js';
import { adapterStateDict, adapters, attachLora, detachAdapters } from '../../lib/nn/lora.js';
import { scale } from '../../lib/ops/elementwise.js';
import { Generator } from '../../lib/ops/random.js';
import { tidy } from '../../lib/scope.js';
import { fromArray, type Tensor } from '../../lib/tensor.js';
import { checkMemoryGuards, expectClose, expectIdentical } from '../helpers.js';
import {
  denoiserAttention,
  depth,
  expectWeights,
  fresh,
  group,
  images,
  linearNames,
  makeModel,
  randomFactors,
  snapshotWeights,
  textAttention,
  tokenizer,
  train,
  writeFile,
} from './adapter_files.js';

checkMemoryGuards();

describe('applying adapter files leaves attached adapters and the mode as they were', () => {
  it('generate with a LoRA file keeps a trained adapter attached, with the same values, and the weights exact', () => {
    const model = makeModel(6);
    const trained = attachLora(model.dit, { pattern: /^blocks\.\d+\.attn\.(q|v)$/, rank: 2, generator: new Generator(6) });
    train(trained, 7);
    const withTrained = images(model);
    const weights = snapshotWeights(model);
    const file = writeFile(model, [{ group: group('easy', denoiserAttention, 2), factors: randomFactors(model, denoiserAttention, 'easy', 2, 8) }]);
    const legacy = fresh('legacy');
    const other = makeModel(60);
    train(attachLora(other.dit, { pattern: /cross\.(q|v)$/, rank: 2, generator: new Generator(9) }), 10);
    saveSafetensors(legacy, adapterStateDict(other.dit));
    other.dispose();
    for (const lora of [file, legacy, [file, legacy]]) {
      const out = images(model, { lora });
      expect(out, `the file changes the images (${String(lora)})`).not.toEqual(withTrained);
      const now = adapters(model.dit);
      expect([...now.keys()]).toEqual([...trained.keys()]);
      for (const [name, a] of trained) expect(now.get(name), `${name}: the same adapter`).toBe(a);
      expectWeights(model, weights, `after generate with ${String(lora)}`);
    }
    expectIdentical(images(model), withTrained, 'without the file: exactly as before');
    model.dispose();
  });

  it('a failing applyLoraFile (a layer that has an adapter, a layer the model lacks) leaves the earlier adapters as they were', () => {
    const model = makeModel(7);
    const trained = attachLora(model.dit, { pattern: /^blocks\.1\.attn\.q$/, rank: 2, generator: new Generator(11) });
    train(trained, 12);
    const weights = snapshotWeights(model);
    const clash = writeFile(model, [{ group: group('easy', /^blocks\.[01]\.attn\.q$/, 2), factors: randomFactors(model, /^blocks\.[01]\.attn\.q$/, 'easy', 2, 13) }]);
    expect(() => applyLoraFile(model, clash)).toThrow(/applyLoraFile: layer blocks\.1\.attn\.q already has an adapter \(lora\)/);
    expectWeights(model, weights, 'after the clash');
    expect([...adapters(model.dit).keys()]).toEqual(['blocks.1.attn.q']);
    expect(adapters(model.dit).get('blocks.1.attn.q')).toBe(trained.get('blocks.1.attn.q'));

    const bigger = makeModel(70);
    const bigFactors = randomFactors(bigger, /^blocks\.0\.attn\.q$/, 'easy', 2, 14);
    bigFactors['easy/blocks.9.attn.q.lora.down'] = bigFactors['easy/blocks.0.attn.q.lora.down']!.clone();
    bigFactors['easy/blocks.9.attn.q.lora.up'] = bigFactors['easy/blocks.0.attn.q.lora.up']!.clone();
    const missing = writeFile(model, [{ group: group('easy', /^blocks\.\d\.attn\.q$/, 2), factors: bigFactors }]);
    bigger.dispose();
    expect(() => applyLoraFile(model, missing)).toThrow(/applyLoraFile: adapter file .*: group easy names layer blocks\.9\.attn\.q, which this model does not have/);
    expectWeights(model, weights, 'after the missing layer');
    expect([...adapters(model.dit).keys()]).toEqual(['blocks.1.attn.q']);

    // Two files covering one layer: nothing of the first is left attached.
    const first = writeFile(model, [{ group: group('easy', /^blocks\.2\.attn\.q$/, 2), factors: randomFactors(model, /^blocks\.2\.attn\.q$/, 'easy', 2, 15) }]);
    expect(() => applyLoraFile(model, [first, first])).toThrow(/layer blocks\.2\.attn\.q is in group easy of .* and in group easy of .*; a layer holds one attached adapter/);
    expect([...adapters(model.dit).keys()]).toEqual(['blocks.1.attn.q']);
    model.dispose();
  });

  it('generate restores train/eval mode, the weights and the adapters when it throws', () => {
    const model = makeModel(8);
    const trained = attachLora(model.dit, { pattern: /^blocks\.0\.cross\.v$/, rank: 1, generator: new Generator(16) });
    train(trained, 17);
    const weights = snapshotWeights(model);
    const bad = fresh('missing-layer');
    saveSafetensors(bad, { 'blocks.7.attn.q.lora.down': fromArray(new Float32Array(16), [16, 1]), 'blocks.7.attn.q.lora.up': fromArray(new Float32Array(16), [1, 16]) });
    for (const training of [true, false]) {
      model.dit.train(training);
      expect(() => images(model, { lora: bad })).toThrow(/generate: adapter file .*: group lora names layer blocks\.7\.attn\.q, which this model does not have/);
      expect(model.dit.training, `mode ${training ? 'train' : 'eval'} restored`).toBe(training);
    }
    // A failure in the middle of sampling (here the progress callback), with a file applied.
    const file = writeFile(model, [{ group: group('easy', denoiserAttention, 2), factors: randomFactors(model, denoiserAttention, 'easy', 2, 18) }]);
    model.dit.train();
    expect(() =>
      images(model, {
        lora: file,
        onStep: (i) => {
          if (i === 1) throw new Error('stop here');
        },
      }),
    ).toThrow(/stop here/);
    expect(model.dit.training).toBe(true);
    expectWeights(model, weights, 'after a throw mid-sampling');
    expect(adapters(model.dit).get('blocks.0.cross.v')).toBe(trained.get('blocks.0.cross.v'));
    model.dispose();
  });
});

describe('inference rules: scales, timestep windows, the last half of the blocks, stacking', () => {
  it('a text group windowed to [900, 1000] equals the group at every step when every sampling timestep is inside, and no text LoRA when none is', () => {
    const model = makeModel(9);
    const textFactors = () => randomFactors(model, textAttention, 'text', 2, 19);
    const windowed = writeFile(model, [{ group: group('text', textAttention, 2, { timesteps: [900, 1000] }), factors: textFactors() }]);
    const everyStep = writeFile(model, [{ group: group('text', textAttention, 2), factors: textFactors() }]);
    const none = images(model, { steps: 1 });
    // steps 1: the only timestep is 999, inside the window.
    const inside = images(model, { steps: 1, lora: windowed });
    expect(inside).not.toEqual(none);
    expectIdentical(inside, images(model, { steps: 1, lora: everyStep }), 'all timesteps inside the window');
    // The same DiT under a 800-step schedule samples t <= 799: none inside.
    const short = new TextToImage(model.tokenizer, model.dit, NoiseSchedule.create('linear', 800));
    expectIdentical(images(short, { lora: windowed }), images(short), 'no timestep inside the window');
    expect(images(short, { lora: everyStep })).not.toEqual(images(short));
    // steps 3 (999, 500, 0): the first step only, so neither of the two.
    const mixed = images(model, { lora: windowed });
    expect(mixed).not.toEqual(images(model));
    expect(mixed).not.toEqual(images(model, { lora: everyStep }));
    // An override moves the window: [0, 600] holds 500 and 0, not 999.
    expect(images(model, { lora: windowed, loraGroups: { text: { timesteps: [0, 600] } } })).not.toEqual(mixed);
    expectIdentical(images(model, { lora: windowed, loraGroups: { text: { timesteps: 'all' } } }), images(model, { lora: everyStep }), "timesteps 'all'");
    expectIdentical(images(model, { lora: windowed, loraGroups: { text: { timesteps: [0, 10] } } }), images(model, { steps: 3, lora: windowed, loraGroups: { text: { timesteps: [0, 0] } } }), 'windows holding the same timesteps');
    model.dispose();
  });

  it('a denoiser group with a window applies per step, exactly: all inside equals every step, none inside equals no file', () => {
    const model = makeModel(10);
    const factors = () => randomFactors(model, denoiserAttention, 'normal', 2, 20);
    const windowed = writeFile(model, [{ group: group('normal', denoiserAttention, 2, { timesteps: [0, 600] }), factors: factors() }]);
    const everyStep = writeFile(model, [{ group: group('normal', denoiserAttention, 2), factors: factors() }]);
    const plain = images(model);
    const full = images(model, { lora: everyStep });
    expect(full).not.toEqual(plain);
    expectIdentical(images(model, { lora: windowed, loraGroups: { normal: { timesteps: [0, 999] } } }), full, 'window over every timestep');
    expectIdentical(images(model, { lora: windowed, loraGroups: { normal: { timesteps: [700, 900] } } }), plain, 'window over none');
    const mixed = images(model, { lora: windowed });
    expect(mixed).not.toEqual(plain);
    expect(mixed).not.toEqual(full);
    model.dispose();
  });

  it("blocks 'last-half' applies only to blocks >= depth / 2: equal to a file holding only those layers", () => {
    const model = makeModel(11);
    const all = () => randomFactors(model, denoiserAttention, 'hard', 2, 21);
    const lastHalf = writeFile(model, [{ group: group('hard', denoiserAttention, 2, { blocks: 'last-half' }), factors: all() }]);
    const allBlocks = writeFile(model, [{ group: group('hard', denoiserAttention, 2), factors: all() }]);
    const onlyLate = all();
    for (const key of Object.keys(onlyLate)) {
      if (/^hard\/blocks\.[01]\./.test(key)) {
        onlyLate[key]!.dispose();
        delete onlyLate[key];
      }
    }
    expect(Object.keys(onlyLate).every((k) => /^hard\/blocks\.[23]\./.test(k)) && Object.keys(onlyLate).length > 0).toBe(true);
    const late = writeFile(model, [{ group: group('hard', denoiserAttention, 2), factors: onlyLate }]);
    const expected = images(model, { lora: late });
    expectIdentical(images(model, { lora: lastHalf }), expected, 'last-half');
    expectIdentical(images(model, { lora: allBlocks, loraGroups: { hard: { blocks: 'last-half' } } }), expected, 'last-half by override');
    expectIdentical(images(model, { lora: lastHalf, loraGroups: { hard: { blocks: 'all' } } }), images(model, { lora: allBlocks }), "'all' by override");
    expect(expected).not.toEqual(images(model, { lora: allBlocks }));
    model.dispose();
  });

  it('two files stack exactly like one file holding both; loraScale 0.5 equals halved up factors; scale 0 and enabled false equal no file', () => {
    const model = makeModel(12);
    const easy = () => randomFactors(model, denoiserAttention, 'easy', 2, 22);
    const hard = () => randomFactors(model, /^blocks\.[23]\.(attn|cross)\.(q|k|v|out)$/, 'hard', 3, 23);
    const text = () => randomFactors(model, textAttention, 'text', 4, 24);
    const easyGroup = group('easy', denoiserAttention, 2, { scale: 0.75 });
    const hardGroup = group('hard', /^blocks\.[23]\./, 3);
    const textGroup = group('text', textAttention, 4, { timesteps: [900, 1000] });
    const a = writeFile(model, [{ group: easyGroup, factors: easy() }]);
    const b = writeFile(model, [
      { group: hardGroup, factors: hard() },
      { group: textGroup, factors: text() },
    ]);
    const both = writeFile(model, [
      { group: easyGroup, factors: easy() },
      { group: hardGroup, factors: hard() },
      { group: textGroup, factors: text() },
    ]);
    const stacked = images(model, { lora: [a, b] });
    expect(stacked).not.toEqual(images(model, { lora: a }));
    expectIdentical(stacked, images(model, { lora: both }), 'two files = one file with both');

    const halvedUp = (factors: Record<string, Tensor<'f32'>>): Record<string, Tensor<'f32'>> => {
      for (const [key, t] of Object.entries(factors)) {
        if (!key.endsWith('.up')) continue;
        factors[key] = scale(t, 0.5);
        t.dispose();
      }
      return factors;
    };
    const halved = writeFile(model, [
      { group: easyGroup, factors: halvedUp(easy()) },
      { group: hardGroup, factors: halvedUp(hard()) },
      { group: textGroup, factors: halvedUp(text()) },
    ]);
    expectIdentical(images(model, { lora: both, loraScale: 0.5 }), images(model, { lora: halved }), 'loraScale 0.5 = halved up');
    expectIdentical(images(model, { lora: [a, b], loraScale: 0.5 }), images(model, { lora: halved }), 'loraScale applies to every file');
    // A group's scale override replaces its saved scale (then loraScale multiplies it).
    expectIdentical(images(model, { lora: a, loraGroups: { easy: { scale: 0.375 } } }), images(model, { lora: halved, loraGroups: { hard: { enabled: false }, text: { enabled: false } } }), 'scale override = halved');
    expectIdentical(images(model, { lora: both, loraGroups: { easy: { enabled: false }, hard: { enabled: false }, text: { enabled: false } } }), images(model), 'every group left out');
    expectIdentical(images(model, { lora: both, loraScale: 0 }), images(model), 'loraScale 0');
    model.dispose();
  });

  it('checks the base, the kind and the options: another base is refused unless allowed, LiDB groups apply what the attached layers compute, unknown group names and bad overrides are errors', () => {
    const model = makeModel(13);
    const other = makeModel(130);
    const file = writeFile(model, [{ group: group('easy', denoiserAttention, 2), factors: randomFactors(model, denoiserAttention, 'easy', 2, 25) }], other.weightsHash());
    const expected = `generate: adapter file ${file} was trained on base ${other.weightsHash().slice(0, 12)}, this model is ${model.weightsHash().slice(0, 12)}; pass allowOtherBase to apply it anyway`;
    expect(() => images(model, { lora: file })).toThrow(expected);
    expect(() => applyLoraFile(model, file)).toThrow(/applyLoraFile: adapter file .* was trained on base [0-9a-f]{12}, this model is [0-9a-f]{12}; pass allowOtherBase/);
    expect(images(model, { lora: file, allowOtherBase: true })).not.toEqual(images(model));
    other.dispose();

    // A LiDB group applies the update its layers compute, the frozen bases regenerated from the seed.
    const lidbModel = makeModel(13);
    const [lidb] = [...attachLidb(lidbModel.dit, { pattern: /^blocks\.0\.attn\.q$/, seed: 3, a: 4, b: 4 }).values()];
    noGrad(() => lidb!.bTrain.value.copy_(fromArray([0.8, -0.5, 0.3, 0.9], [1, 4])));
    const lidbFile = fresh('lidb');
    saveAdapterFile(lidbFile, adapterTensors(lidbModel.dit, undefined, 'identity'), {
      base: model.weightsHash(),
      groups: [{ ...describeAdapters(lidbModel.dit, { name: 'identity', pattern: /^blocks\.0\.attn\.q$/, lidbSeed: 3 }) }],
    });
    const lidbRead = readAdapterFile(lidbFile);
    expect(lidbRead.groups[0]).toMatchObject({ kind: 'lidb', rank: 1, lidbSeed: 3 });
    expect(Object.keys(lidbRead.tensors).sort()).toEqual(['identity/blocks.0.attn.q.lidb.aTrain', 'identity/blocks.0.attn.q.lidb.bTrain']);
    lidbRead.dispose();
    const withLidb = images(model, { lora: lidbFile });
    const plain = images(model);
    // The update moves the images far more than the tolerance below (merged weight vs separate factors round differently).
    expect(Math.max(...withLidb.map((v, i) => Math.abs(v - plain[i]!)))).toBeGreaterThan(1e-2);
    expectClose(withLidb, images(lidbModel), { rtol: 1e-3, atol: 1e-4 }, 'LiDB file vs attached LiDB');
    lidbModel.dispose();
    expectIdentical(images(model, { lora: lidbFile, loraGroups: { identity: { enabled: false } } }), images(model), 'the LiDB group left out');

    const good = writeFile(model, [{ group: group('easy', denoiserAttention, 2), factors: randomFactors(model, denoiserAttention, 'easy', 2, 26) }]);
    expect(() => images(model, { lora: good, loraGroups: { text: { timesteps: [900, 1000] } } })).toThrow(/generate: loraGroups names group "text", which none of the adapter files holds \(they hold: easy\)/);
    expect(() => images(model, { lora: good, loraGroups: { easy: { timesteps: [10, 5] } } })).toThrow(/loraGroups\.easy\.timesteps must be 'all' or \[lo, hi\]/);
    expect(() => images(model, { lora: good, loraGroups: { easy: { blocks: 'first' as never } } })).toThrow(/loraGroups\.easy\.blocks must be 'all' or 'last-half'/);
    expect(() => images(model, { lora: good, loraScale: Number.NaN })).toThrow(/loraScale must be a finite number, got NaN/);
    expect(() => images(model, { loraScale: 0.5 })).toThrow(/generate: loraScale, loraGroups and allowOtherBase apply to adapter files: pass them with lora/);
    const small = makeModel(15);
    const narrow = TextToImage.create(tokenizer, { dit: { imageSize: 8, patchSize: 4, width: 8, depth: 2, heads: 2, mlpRatio: 2, textWidth: 8, contextLength: 8, text: { vocabSize: 0, depth: 1, heads: 2, mlpRatio: 2 } }, seed: 1 });
    const misfit = writeFile(narrow, [{ group: group('easy', /^blocks\.0\.attn\.q$/, 2), factors: randomFactors(narrow, /^blocks\.0\.attn\.q$/, 'easy', 2, 27) }]);
    expect(() => images(small, { lora: misfit, allowOtherBase: true })).toThrow(/easy\/blocks\.0\.attn\.q has down \[8, 2\] and up \[2, 8\], which do not fit the layer \(16 -> 16: expected \[16, r\] and \[r, 16\]\)/);
    for (const m of [model, small, narrow]) m.dispose();
  });

  it('applyLoraFile attaches the groups for good (predicting what the merged update predicts), refuses windows unless overridden, and returns what it attached', () => {
    const model = makeModel(16);
    const file = writeFile(model, [
      { group: group('easy', denoiserAttention, 2, { scale: 0.5 }), factors: randomFactors(model, denoiserAttention, 'easy', 2, 28) },
      { group: group('text', textAttention, 2, { timesteps: [900, 1000] }), factors: randomFactors(model, textAttention, 'text', 2, 29) },
    ]);
    const selection = { loraGroups: { text: { timesteps: 'all' } }, loraScale: 0.5 } as const;
    const x = fromArray(Array.from({ length: 2 * 3 * 8 * 8 }, (_, i) => Math.sin(i)), [2, 3, 8, 8]);
    const predict = (): Float32Array => noGrad(() => tidy(() => model.predictEps(x, [999, 400], model.encodePrompts(['a person in a red shirt', ''])).value.toArray()));
    const plain = predict();
    const opened = readAdapterFile(file);
    const patch = new LoraWeightPatch(resolveLoraUpdates(model.dit, [opened], { ...selection, depth }, 'test'));
    patch.activate(() => true);
    const merged = predict();
    patch.dispose();
    opened.dispose();
    expectIdentical(predict(), plain, 'the patch restores the weights');
    expect(merged).not.toEqual(plain);
    expect(() => applyLoraFile(model, file)).toThrow(/applyLoraFile: adapter file .*: group text applies only for t in \[900, 1000\], but an attached adapter applies at every step/);
    expect(adapters(model.dit).size).toBe(0);
    const attached = applyLoraFile(model, file, selection);
    expect([...attached.keys()].sort()).toEqual([...linearNames(model, denoiserAttention), ...linearNames(model, textAttention)].sort());
    expect(attached.get('blocks.0.attn.q')!.scale).toBe(0.25);
    expect(attached.get('text.blocks.0.attn.q')!.scale).toBe(0.5);
    expectClose(predict(), merged, { rtol: 1e-4, atol: 1e-5 }, 'attached adapters = the update merged into the weights (f32 rounding apart)');
    x.dispose();
    detachAdapters(model.dit);
    model.dispose();
  });
});
