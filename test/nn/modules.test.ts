import { describe, expect, it } from 'vitest';
import * as F from '../../lib/autograd/functions.js';
import { backward } from '../../lib/autograd/backward.js';
import { noGrad, Variable } from '../../lib/autograd/variable.js';
import { DiT, ditConfig, resizeGrid, sincosPositions2d } from '../../lib/nn/dit.js';
import { Attention, Dropout, Embedding, LayerNorm, Linear, MLP, timestepEmbedding } from '../../lib/nn/layers.js';
import { Module, ModuleList } from '../../lib/nn/module.js';
import { TextEncoder } from '../../lib/nn/text_encoder.js';
import { manualSeed, randn } from '../../lib/ops/random.js';
import { fromArray, zeros, type Tensor } from '../../lib/tensor.js';
import { moduleGradcheck } from '../autograd/gradcheck.js';
import { backends, checkMemoryGuards, expectClose, randomArray, rng } from '../helpers.js';
import { tinyDiTConfig, randomizeParameters } from './tiny.js';

checkMemoryGuards();

function input(shape: number[], random: () => number): Tensor<'f32'> {
  return fromArray(randomArray(shape.reduce((n, d) => n * d, 1), random), shape);
}

const tinyDiT = tinyDiTConfig({ depth: 1 });

describe('Module', () => {
  class Pair extends Module {
    readonly a = this.addModule('a', new Linear(2, 3));
    readonly list = this.addModule('list', new ModuleList([new LayerNorm(3), new Linear(3, 1, { bias: false })]));
    readonly scalar = this.addParameter('scalar', zeros([1]));
  }

  it('names parameters recursively with dots', () => {
    const m = new Pair();
    expect([...m.namedParameters()].map(([n, p]) => `${n}:${p.shape.join('x')}`)).toEqual([
      'scalar:1',
      'a.weight:3x2',
      'a.bias:3',
      'list.0.weight:3',
      'list.0.bias:3',
      'list.1.weight:1x3',
    ]);
    expect(m.parameters()).toHaveLength(6);
    expect(m.parameterCount()).toBe(1 + 6 + 3 + 3 + 3 + 3);
  });

  it('round-trips a state dict and names the key in every error', () => {
    const random = rng();
    const a = new Pair();
    const b = new Pair();
    randomizeParameters(a, random);
    b.loadStateDict(a.stateDict());
    for (const [name, p] of b.namedParameters()) expectClose(p.value.toArray(), a.stateDict()[name]!.toArray(), { rtol: 0, atol: 0 }, name);
    const dict = { ...a.stateDict() };
    delete dict['list.0.bias'];
    expect(() => b.loadStateDict(dict)).toThrow(/loadStateDict: missing key list\.0\.bias/);
    expect(b.loadStateDict(dict, { strict: false }).missing).toEqual(['list.0.bias']);
    expect(() => b.loadStateDict({ ...a.stateDict(), extra: zeros([1]) })).toThrow(/loadStateDict: unexpected key extra/);
    expect(() => b.loadStateDict({ ...a.stateDict(), 'a.weight': zeros([2, 3]) })).toThrow(/loadStateDict: a\.weight has shape \[2, 3\], expected \[3, 2\]/);
    expect(() => b.loadStateDict({ ...a.stateDict(), scalar: zeros([1], { dtype: 'i32' }) })).toThrow(/loadStateDict: scalar has dtype i32, expected f32/);
  });

  it('train/eval, freeze/unfreeze and to(device) reach every submodule', () => {
    const m = new Pair();
    m.eval();
    expect([...m.namedModules()].every(([, c]) => !c.training)).toBe(true);
    m.train();
    expect(m.list.at(0).training).toBe(true);
    m.freeze();
    expect(m.trainableParameters()).toHaveLength(0);
    m.unfreeze();
    expect(m.trainableParameters()).toHaveLength(6);
    for (const device of backends()) {
      const before = m.a.weight.value.toArray();
      m.to(device);
      expect(m.parameters().every((p) => p.device === device)).toBe(true);
      expectClose(m.a.weight.value.toArray(), before, { rtol: 0, atol: 0 }, `to(${device})`);
    }
    m.to('cpu');
  });
});

describe('layers: gradients vs finite differences', () => {
  const random = rng();

  it('Linear, LayerNorm, Embedding, MLP', () => {
    const linear = new Linear(3, 4);
    const x = new Variable(input([2, 5, 3], random), { requiresGrad: true });
    moduleGradcheck('Linear', [...linear.namedParameters(), ['x', x]], () => linear.forward(x), random);
    const norm = new LayerNorm(5);
    randomizeParameters(norm, random);
    const xn = input([3, 5], random);
    moduleGradcheck('LayerNorm', [...norm.namedParameters()], () => norm.forward(xn), random);
    const shift = new Variable(input([2, 5], random), { requiresGrad: true });
    const scale = new Variable(input([2, 5], random), { requiresGrad: true });
    const plain = new LayerNorm(5, { affine: false });
    const xm = input([2, 3, 5], random);
    moduleGradcheck('adaLN', [['shift', shift], ['scale', scale]], () => plain.forward(xm, { shift, scale }), random);
    const emb = new Embedding(5, 3);
    const ids = fromArray([4, 0, 4, 2], [2, 2], { dtype: 'i32' });
    moduleGradcheck('Embedding', [...emb.namedParameters()], () => emb.forward(ids), random);
    const mlp = new MLP(4, 6);
    const xm2 = input([3, 4], random);
    moduleGradcheck('MLP', [...mlp.namedParameters()], () => mlp.forward(xm2), random, { perTensor: 8 });
  });

  it('Attention: self, causal with kvLengths, cross, joint', () => {
    const attn = new Attention(4, 2, { contextWidth: 6 });
    const selfAttn = new Attention(4, 2);
    const x = input([2, 3, 4], random);
    const context = input([2, 5, 6], random);
    const kvLengths = fromArray([2, 5], [2], { dtype: 'i32' });
    const zeroGradient = /(^|\.)k\.bias$/;
    moduleGradcheck('self-attention', [...selfAttn.namedParameters()], () => selfAttn.forward(x), random, { perTensor: 6, zeroGradient });
    moduleGradcheck('causal', [...selfAttn.namedParameters()], () => selfAttn.forward(x, { causal: true, kvLengths: fromArray([3, 2], [2], { dtype: 'i32' }) }), random, {
      perTensor: 6,
      zeroGradient,
    });
    moduleGradcheck('cross-attention', [...attn.namedParameters()], () => attn.forward(x, { context, kvLengths }), random, { perTensor: 6, zeroGradient });
    const other = new Variable(input([2, 2, 4], random), { requiresGrad: true });
    moduleGradcheck(
      'joint',
      [...selfAttn.namedParameters(), ['other', other]],
      () => {
        const [a, b] = selfAttn.joint([x, other]);
        return F.concat([F.scale(a!, 2), b!], 1);
      },
      random,
      { perTensor: 6, zeroGradient },
    );
    const [a, b] = noGrad(() => selfAttn.joint([x, other]));
    const whole = noGrad(() => selfAttn.forward(F.concat([x, other], 1)));
    expectClose(F.concat([a!, b!], 1).value.toArray(), whole.value.toArray(), { rtol: 1e-6, atol: 1e-7 }, 'joint = attention over the concatenation');
  });

  it('TextEncoder: causal, padding ignored, pooled at EOS', () => {
    const encoder = new TextEncoder({ vocabSize: 6, contextLength: 4, width: 8, depth: 1, heads: 2, mlpRatio: 2 });
    randomizeParameters(encoder, random);
    const ids = fromArray([1, 2, 3, 0, 5, 4, 0, 0], [2, 4], { dtype: 'i32' });
    moduleGradcheck('TextEncoder', [...encoder.namedParameters()], () => {
      const { tokens, pooled } = encoder.forward(ids, [3, 2]);
      return F.concat([F.reshape(tokens, [2, 32]), F.scale(pooled, 3)], 1);
    }, random, { perTensor: 5, zeroGradient: /\.k\.bias$/ });
    const out = noGrad(() => encoder.forward(ids, [3, 2]));
    const changed = noGrad(() => encoder.forward(fromArray([1, 2, 3, 4, 5, 4, 3, 1], [2, 4], { dtype: 'i32' }), [3, 2]));
    const flat = (v: Variable): Float32Array => v.value.toArray();
    // Real tokens see neither padding nor later tokens: their features are unchanged.
    expectClose(flat(changed.tokens).slice(0, 24), flat(out.tokens).slice(0, 24), { rtol: 1e-6, atol: 1e-6 }, 'sample 0 real tokens');
    expectClose(flat(changed.tokens).slice(32, 48), flat(out.tokens).slice(32, 48), { rtol: 1e-6, atol: 1e-6 }, 'sample 1 real tokens');
    expectClose(flat(out.pooled).slice(0, 8), flat(out.tokens).slice(16, 24), { rtol: 0, atol: 0 }, 'pooled = token at length - 1');
    expectClose(flat(out.pooled).slice(8, 16), flat(out.tokens).slice(40, 48), { rtol: 0, atol: 0 }, 'pooled sample 1');
    expect(() => encoder.forward(ids, [0, 2])).toThrow(/lengths\[0\] is 0, expected 1\.\.4/);
    expect(() => encoder.forward(fromArray([1, 2], [1, 2], { dtype: 'i32' }), [1])).toThrow(/ids must be i32 \[batch, 4\]/);
  });

  it('DiT: every parameter', () => {
    const model = new DiT(tinyDiT);
    randomizeParameters(model, random, 0.4);
    const x = input([2, 3, 8, 8], random);
    const ids = fromArray([1, 2, 3, 0, 5, 4, 0, 0], [2, 4], { dtype: 'i32' });
    moduleGradcheck('DiT', [...model.namedParameters()], () => model.forward(x, [3, 700], model.encodeText(ids, [3, 2])), random, {
      perTensor: 3,
      zeroGradient: /\.k\.bias$/,
      // Deep in the network some gradients are ~1e-4, near the f32 noise of the difference
      // quotient: compare those absolutely (the PyTorch parity test checks them exactly).
      floor: 5e-3,
      h: 3e-2,
    });
  });

  it('Dropout follows train/eval; timestep embedding matches the formula', () => {
    const drop = new Dropout(0.5, { seed: 3 });
    const x = fromArray(new Float32Array(64).fill(1), [64]);
    expect(drop.forward(x).value.toArray().some((v) => v === 0)).toBe(true);
    drop.eval();
    expectClose(drop.forward(x).value.toArray(), x.toArray(), { rtol: 0, atol: 0 }, 'eval dropout');
    const e = timestepEmbedding([0, 10], 4).toArray();
    expectClose(e, [1, 1, 0, 0, Math.cos(10), Math.cos(10 * 0.01), Math.sin(10), Math.sin(10 * 0.01)], { rtol: 1e-6, atol: 1e-7 }, 'timestep embedding');
  });
});

describe('DiT', () => {
  it('has LoRA-friendly names, the tiny preset size, and adaLN-Zero init (output 0)', () => {
    manualSeed(5);
    const model = new DiT(ditConfig('tiny'));
    const names = new Set([...model.namedModules()].map(([n]) => n));
    for (const n of ['blocks.3.attn.q', 'blocks.3.cross.k', 'blocks.3.mlp.fc1', 'blocks.5.adaLN', 'text.blocks.1.attn.q', 'final.linear', 'patch']) {
      expect(names.has(n), n).toBe(true);
    }
    expect(ditConfig('small', { vocabSize: 300 }).text?.vocabSize).toBe(300);
    expect(ditConfig('small').imageSize).toBe(64);
    const count = model.parameterCount();
    expect(count).toBeGreaterThan(2e6);
    expect(count).toBeLessThan(8e6);
    const out = noGrad(() => model.forward(randn([1, 3, 32, 32]), [10], model.encodeText(zeros([1, 32], { dtype: 'i32' }), [1])));
    expect(out.shape).toEqual([1, 3, 32, 32]);
    expect(out.value.toArray().every((v) => v === 0)).toBe(true);
  });

  it('patchify and unpatchify are inverse permutations', () => {
    const model = new DiT({ ...tinyDiT, width: 48 });
    const random = rng();
    const x = input([2, 3, 8, 8], random);
    const tokens = model.patchify(x);
    expect(tokens.shape).toEqual([2, 4, 48]);
    // token 1 (row 0, column 1), channel 2, pixel (1, 3) of the patch = x[0, 2, 1, 4 + 3]
    expect(tokens.value.toArray()[1 * 48 + 2 * 16 + 1 * 4 + 3]).toBe(x.toArray()[2 * 64 + 1 * 8 + 7]);
    // unpatchify reads (p, q, c) within a patch: reorder the patchify output to that layout.
    const pqc = F.reshape(F.permute(F.reshape(tokens, [2, 4, 3, 4, 4]), [0, 1, 3, 4, 2]), [2, 4, 48]);
    expectClose(model.unpatchify(pqc, 2, 2).value.toArray(), x.toArray(), { rtol: 0, atol: 0 }, 'round trip');
  });

  it('interpolates positions to another resolution', () => {
    const grid = sincosPositions2d(2, 2, 4);
    expectClose(resizeGrid(grid, 2, 2, 4, 2, 2), grid, { rtol: 0, atol: 1e-7 }, 'same size is the identity');
    expectClose(resizeGrid(new Float32Array(2 * 2 * 3).fill(0.5), 2, 2, 3, 5, 3), new Float32Array(45).fill(0.5), { rtol: 0, atol: 1e-7 }, 'constant');
    // 1-D ramp 0, 1 resampled to 4: half-pixel centres give 0, 0.25, 0.75, 1.
    expectClose(resizeGrid([0, 1], 1, 2, 1, 1, 4), [0, 0.25, 0.75, 1], { rtol: 0, atol: 1e-7 }, 'ramp');
    const model = new DiT(tinyDiT);
    model.interpolatePositions(16);
    expect(model.gridSize).toEqual([4, 4]);
    expect(model.config.imageSize).toBe(16);
    const ids = zeros([1, 4], { dtype: 'i32' });
    const out = noGrad(() => model.forward(randn([1, 3, 16, 16]), [1], model.encodeText(ids, [1])));
    expect(out.shape).toEqual([1, 3, 16, 16]);
    expect(() => noGrad(() => model.forward(randn([1, 3, 8, 8]), [1], model.encodeText(ids, [1])))).toThrow(/call interpolatePositions first/);
  });

  it('processes frames jointly: tokens of a group attend to each other', () => {
    const random = rng();
    const model = new DiT(tinyDiT);
    randomizeParameters(model, random);
    const ids = zeros([4, 4], { dtype: 'i32' });
    const x = input([4, 3, 8, 8], random);
    const run = (images: Tensor<'f32'>, frames: number): Float32Array =>
      noGrad(() => model.forward(images, [5, 5, 600, 600], model.encodeText(ids, [1, 2, 3, 4]), { frames }).value.toArray());
    const data = x.toArray();
    data[0] = data[0]! + 1; // a pixel of sample 0 (frame 0 of the first pair)
    const changed = fromArray(data, x.shape);
    const per = 3 * 64;
    const diff = (a: Float32Array, b: Float32Array, sample: number): number =>
      Math.max(...a.slice(sample * per, (sample + 1) * per).map((v, i) => Math.abs(v - b[sample * per + i]!)));
    const [alone, aloneChanged] = [run(x, 1), run(changed, 1)];
    expect(diff(alone, aloneChanged, 1)).toBe(0);
    const [joint, jointChanged] = [run(x, 2), run(changed, 2)];
    expect(diff(joint, jointChanged, 1)).toBeGreaterThan(1e-4);
    expect(diff(joint, jointChanged, 2)).toBe(0);
    expect(diff(joint, alone, 0)).toBeGreaterThan(1e-4);
    expect(() => run(x, 3)).toThrow(/frames must be a positive integer dividing the batch 4/);
  });

  it('a few AdamW steps of the tiny preset lower the epsilon loss on a fixed batch', async () => {
    const { AdamW } = await import('../../lib/optim/adamw.js');
    manualSeed(11);
    const model = new DiT(ditConfig('tiny', { depth: 2 }));
    const optimizer = new AdamW([...model.namedParameters()], { lr: 1e-3, weightDecay: 0 });
    const batch = 4;
    const x = randn([batch, 3, 32, 32], { seed: 1 });
    const eps = randn([batch, 3, 32, 32], { seed: 2 });
    const ids = fromArray(Int32Array.from({ length: batch * 32 }, (_, i) => (i * 7) % 100), [batch, 32], { dtype: 'i32' });
    const losses: number[] = [];
    for (let step = 0; step < 8; step++) {
      model.zeroGrad();
      const loss = F.mse(model.forward(x, [100, 300, 600, 900], model.encodeText(ids, [5, 9, 32, 1])), eps);
      backward(loss);
      losses.push(loss.value.item());
      loss.value.dispose();
      optimizer.step();
    }
    console.log(`tiny DiT epsilon loss: ${losses.map((l) => l.toFixed(4)).join(' ')}`);
    expect(losses[losses.length - 1]!).toBeLessThan(losses[0]! * 0.95);
  });
});
