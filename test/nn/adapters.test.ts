import { describe, expect, it } from 'vitest';
import * as F from '../../lib/autograd/functions.js';
import { backward } from '../../lib/autograd/backward.js';
import { loraLinear } from '../../lib/autograd/lora_linear.js';
import { noGrad, Variable } from '../../lib/autograd/variable.js';
import { DiT } from '../../lib/nn/dit.js';
import { Linear } from '../../lib/nn/layers.js';
import { attachLidb, LidbAdapter } from '../../lib/nn/lidb.js';
import {
  adapterStateDict,
  adapters,
  attachLora,
  bakeAdapters,
  detachAdapters,
  loadAdapterStateDict,
  LoraAdapter,
  maxLoraRank,
  mergeAdapters,
  setAdaptersEnabled,
  unmergeAdapters,
  withAdaptersDisabled,
} from '../../lib/nn/lora.js';
import { matmul } from '../../lib/ops/matmul.js';
import { fromArray, zeros, type Tensor } from '../../lib/tensor.js';
import { gradcheck, moduleGradcheck } from '../autograd/gradcheck.js';
import { checkMemoryGuards, expectClose, randomArray, rng } from '../helpers.js';
import { tinyDiTConfig, randomizeParameters } from './tiny.js';

checkMemoryGuards();

const config = tinyDiTConfig({ textDepth: 2 });

function input(shape: number[], random: () => number): Tensor<'f32'> {
  return fromArray(randomArray(shape.reduce((n, d) => n * d, 1), random), shape);
}

function run(model: DiT, x: Tensor<'f32'>): Float32Array {
  return noGrad(() => model.forward(x, [5, 500], model.encodeText(zeros([2, 4], { dtype: 'i32' }), [2, 4])).value.toArray());
}

describe('autograd loraLinear', () => {
  it('gradients vs finite differences (with and without bias)', () => {
    const random = rng();
    gradcheck(
      'loraLinear',
      ([x, w, b, d, u]) => loraLinear(x!, w!, b!, d!, u!, { scale: 0.75 }),
      [{ shape: [2, 3, 5] }, { shape: [4, 5] }, { shape: [4] }, { shape: [5, 2] }, { shape: [2, 4] }],
      random,
    );
    gradcheck(
      'loraLinear frozen base, no bias',
      ([x, w, d, u]) => loraLinear(x!, w!, null, d!, u!, { scale: 2 }),
      [{ shape: [3, 5] }, { shape: [4, 5], requiresGrad: false }, { shape: [5, 3] }, { shape: [3, 4] }],
      random,
    );
  });
});

describe('LoRA adapters', () => {
  it('attach by name pattern; start as the identity; y = base + scale (x down) up', () => {
    const random = rng();
    const model = new DiT(config);
    randomizeParameters(model, random);
    const x = input([2, 3, 8, 8], random);
    const before = run(model, x);
    const attached = attachLora(model, { pattern: /^blocks\.\d+\.(attn|cross)\.(q|k|v|out)$/, rank: 2, scale: 0.5 });
    expect([...attached.keys()]).toEqual([
      'blocks.0.attn.q', 'blocks.0.attn.k', 'blocks.0.attn.v', 'blocks.0.attn.out',
      'blocks.0.cross.q', 'blocks.0.cross.k', 'blocks.0.cross.v', 'blocks.0.cross.out',
      'blocks.1.attn.q', 'blocks.1.attn.k', 'blocks.1.attn.v', 'blocks.1.attn.out',
      'blocks.1.cross.q', 'blocks.1.cross.k', 'blocks.1.cross.v', 'blocks.1.cross.out',
    ]);
    expect([...model.namedParameters()].some(([n]) => n === 'blocks.1.cross.v.lora.down')).toBe(true);
    expectClose(run(model, x), before, { rtol: 0, atol: 0 }, 'up = 0: unchanged');
    expect(() => attachLora(model, { pattern: /nothing/, rank: 1 })).toThrow(/no Linear layer matches/);

    const linear = new Linear(5, 3);
    const [adapter] = attachLora(linear, { pattern: /^$/, rank: 2, scale: 0.5 }).values() as IterableIterator<LoraAdapter>;
    adapter!.up.value.copy_(input([2, 3], random));
    const xs = input([4, 5], random);
    const expected = noGrad(() => {
      const base = F.biasAdd(F.matmul(xs, linear.weight, { transB: true }), linear.bias!);
      const delta = F.scale(F.matmul(F.matmul(xs, adapter!.down), adapter!.up), 0.5);
      return F.add(base, delta).value.toArray();
    });
    expectClose(noGrad(() => linear.forward(xs)).value.toArray(), expected, { rtol: 1e-5, atol: 1e-6 }, 'lora output');
    moduleGradcheck('Linear + LoRA', [...linear.namedParameters()], () => linear.forward(xs), random);
  });

  it('trains only the adapters of a frozen model; disable, merge, unmerge, bake', () => {
    const random = rng();
    const model = new DiT(config);
    randomizeParameters(model, random);
    const x = input([2, 3, 8, 8], random);
    const base = run(model, x);
    model.freeze();
    attachLora(model, { pattern: /attn\.(q|k|v|out)$/, rank: 2 });
    expect(model.trainableParameters().length).toBe((8 + 8) * 2);
    for (const a of adapters(model).values()) (a as LoraAdapter).up.value.copy_(input([2, a.factors().up.shape[1]!], random));
    const adapted = run(model, x);
    expect(Math.max(...adapted.map((v, i) => Math.abs(v - base[i]!)))).toBeGreaterThan(1e-3);

    const loss = F.mean(model.forward(x, [5, 500], model.encodeText(zeros([2, 4], { dtype: 'i32' }), [2, 4])));
    backward(loss);
    for (const [name, p] of model.namedParameters()) expect(p.grad !== null, name).toBe(name.includes('.lora.'));

    expectClose(withAdaptersDisabled(model, () => run(model, x)), base, { rtol: 0, atol: 0 }, 'disabled = base');
    expectClose(run(model, x), adapted, { rtol: 0, atol: 0 }, 're-enabled');
    setAdaptersEnabled(model, false, /^text\./);
    expect([...adapters(model)].filter(([, a]) => !a.enabled).map(([n]) => n)).toHaveLength(8);
    setAdaptersEnabled(model, true);

    const weightBefore = model.blocks.at(0).attn.q.weight.value.toArray();
    mergeAdapters(model);
    expect(Math.max(...model.blocks.at(0).attn.q.weight.value.toArray().map((v, i) => Math.abs(v - weightBefore[i]!)))).toBeGreaterThan(1e-4);
    expectClose(run(model, x), adapted, { rtol: 1e-4, atol: 1e-5 }, 'merged = adapted');
    unmergeAdapters(model);
    expectClose(model.blocks.at(0).attn.q.weight.value.toArray(), weightBefore, { rtol: 1e-5, atol: 1e-6 }, 'unmerged weight');
    expectClose(run(model, x), adapted, { rtol: 1e-4, atol: 1e-5 }, 'unmerged = adapted');
    bakeAdapters(model);
    expect(adapters(model).size).toBe(0);
    expectClose(run(model, x), adapted, { rtol: 1e-4, atol: 1e-5 }, 'baked = adapted');
  });

  it('saves and loads the adapters alone', () => {
    const random = rng();
    const a = new DiT(config);
    const b = new DiT(config);
    b.loadStateDict(a.stateDict());
    randomizeParameters(a, random);
    b.loadStateDict(a.stateDict());
    attachLora(a, { pattern: /cross\.(q|v)$/, rank: 3 });
    attachLora(b, { pattern: /cross\.(q|v)$/, rank: 3 });
    for (const adapter of adapters(a).values()) randomizeParameters(adapter, random);
    const dict = adapterStateDict(a);
    expect(Object.keys(dict).sort()).toEqual(
      ['blocks.0.cross.q', 'blocks.0.cross.v', 'blocks.1.cross.q', 'blocks.1.cross.v'].flatMap((n) => [`${n}.lora.down`, `${n}.lora.up`]).sort(),
    );
    mergeAdapters(b);
    loadAdapterStateDict(b, dict);
    const x = input([2, 3, 8, 8], random);
    expectClose(run(b, x), run(a, x), { rtol: 1e-4, atol: 1e-5 }, 'loaded adapters (into a merged model)');
    expect(() => loadAdapterStateDict(b, { ...dict, 'blocks.0.attn.q.lora.up': dict['blocks.0.cross.q.lora.up']! })).toThrow(/unexpected key blocks\.0\.attn\.q\.lora\.up/);
    const missing = { ...dict };
    delete missing['blocks.1.cross.v.lora.down'];
    expect(() => loadAdapterStateDict(b, missing)).toThrow(/missing key blocks\.1\.cross\.v\.lora\.down/);
    expect(() => loadAdapterStateDict(b, { ...dict, 'blocks.0.cross.q.lora.up': zeros([2, 8]) })).toThrow(/blocks\.0\.cross\.q\.lora\.up has shape \[2, 8\], expected \[3, 8\]/);
    detachAdapters(b);
    expect(adapters(b).size).toBe(0);
  });

  it('refuses a rank above what the layer allows (min of its input and output features), naming the layer', () => {
    const dit = new DiT(config);
    expect(maxLoraRank(dit, /attn\.q$/)).toEqual({ rank: 8, layer: 'blocks.0.attn.q (8 -> 8)' });
    expect(() => attachLora(dit, { pattern: /attn\.q$/, rank: 100000 })).toThrow(/attachLora: rank 100000 is more than 8, the most a LoRA update of blocks\.0\.attn\.q \(8 -> 8\) can have/);
    expect(adapters(dit).size).toBe(0);
    attachLora(dit, { pattern: /attn\.q$/, rank: 8 });
    detachAdapters(dit);
    dit.dispose();
  });
});

describe('LiDB adapters', () => {
  it('split rank-1 factors from a seed: frozen bases, A_train/B_train trainable, B_train zero', () => {
    const random = rng();
    const model = new DiT(config);
    randomizeParameters(model, random);
    const x = input([2, 3, 8, 8], random);
    const base = run(model, x);
    model.freeze();
    const attached = attachLidb(model, { pattern: /attn\.(q|k|v|out)$/, a: 6, b: 4, seed: 42 });
    expect(attached.size).toBe(16);
    expect(model.parameterCount({ trainableOnly: true })).toBe(16 * (6 + 4));
    expect(Object.keys(adapterStateDict(model)).filter((k) => k.startsWith('blocks.0.attn.q.'))).toEqual(['blocks.0.attn.q.lidb.aTrain', 'blocks.0.attn.q.lidb.bTrain']);
    expectClose(run(model, x), base, { rtol: 0, atol: 0 }, 'B_train = 0: unchanged');

    const again = new LidbAdapter(8, 8, 42 + 3, 6, 4);
    const second = attached.get('blocks.0.attn.k')!;
    expectClose(again.aAux.toArray(), second.aAux.toArray(), { rtol: 0, atol: 0 }, 'bases regenerated from the seed');
    expectClose(again.aTrain.value.toArray(), second.aTrain.value.toArray(), { rtol: 0, atol: 0 }, 'A_train init from the seed');
    const gram = matmul(second.aAux, second.aAux, { transA: true }).toArray();
    for (let i = 0; i < 6; i++) for (let j = 0; j < 6; j++) expect(Math.abs(gram[i * 6 + j]! - (i === j ? 1 : 0))).toBeLessThan(1e-5);

    for (const adapter of attached.values()) adapter.bTrain.value.copy_(input([1, 4], random));
    const q = model.blocks.at(1).attn.q;
    const adapter = attached.get('blocks.1.attn.q')!;
    const xs = input([3, 8], random);
    const expected = noGrad(() => {
      const delta = F.matmul(F.matmul(F.matmul(xs, adapter.aAux), F.matmul(adapter.aTrain, adapter.bTrain)), adapter.bAux);
      return F.add(F.biasAdd(F.matmul(xs, q.weight, { transB: true }), q.bias!), delta).value.toArray();
    });
    expectClose(noGrad(() => q.forward(xs)).value.toArray(), expected, { rtol: 1e-5, atol: 1e-6 }, 'x W^T + b + x A_aux A_train B_train B_aux');
    moduleGradcheck('LiDB', [...adapter.namedParameters()], () => q.forward(xs), random);
  });

  it('takes predicted weights from outside, with gradients flowing to them', () => {
    const random = rng();
    const linear = new Linear(5, 4);
    const adapter = attachLidb(linear, { pattern: /^$/, a: 3, b: 2, seed: 7 }).get('')!;
    const aTrain = new Variable(input([3, 1], random), { requiresGrad: true });
    const bTrain = new Variable(input([1, 2], random), { requiresGrad: true });
    adapter.useWeights({ aTrain, bTrain });
    const xs = input([2, 5], random);
    moduleGradcheck('LiDB external', [['aTrain', aTrain], ['bTrain', bTrain]], () => linear.forward(xs), random);
    expect(adapter.aTrain.grad).toBeNull();
    expect(() => adapter.useWeights({ aTrain: bTrain, bTrain })).toThrow(/aTrain has shape \[1, 2\], expected \[3, 1\]/);
    const weight = linear.weight.value.toArray();
    mergeAdapters(linear);
    expect(Math.max(...linear.weight.value.toArray().map((v, i) => Math.abs(v - weight[i]!)))).toBeGreaterThan(1e-4);
    unmergeAdapters(linear);
    adapter.useWeights(null);
    mergeAdapters(linear);
    expectClose(linear.weight.value.toArray(), weight, { rtol: 0, atol: 1e-7 }, 'own B_train is zero: merging changes nothing');
  });
});
