import { describe, expect, it } from 'vitest';
import * as F from '../../lib/autograd/functions.js';
import { backward } from '../../lib/autograd/backward.js';
import { noGrad, Variable } from '../../lib/autograd/variable.js';
import { fromArray } from '../../lib/tensor.js';
import { checkMemoryGuards, expectClose, rng } from '../helpers.js';
import { gradcheck } from './gradcheck.js';

checkMemoryGuards();

describe('autograd functions: gradients vs finite differences', () => {
  const random = rng();

  it('add, sub, mul, scale', () => {
    gradcheck('add', ([a, b]) => F.add(a!, b!), [{ shape: [3, 4] }, { shape: [3, 4] }], random);
    gradcheck('sub', ([a, b]) => F.sub(a!, b!), [{ shape: [3, 4] }, { shape: [3, 4] }], random);
    gradcheck('mul', ([a, b]) => F.mul(a!, b!), [{ shape: [5] }, { shape: [5] }], random);
    gradcheck('mul self', ([a]) => F.mul(a!, a!), [{ shape: [2, 3] }], random);
    gradcheck('scale', ([a]) => F.scale(a!, -2.5), [{ shape: [7] }], random);
    gradcheck('constant input', ([a, b]) => F.mul(a!, b!), [{ shape: [4] }, { shape: [4], requiresGrad: false }], random);
  });

  it('biasAdd along each axis', () => {
    gradcheck('biasAdd last', ([x, b]) => F.biasAdd(x!, b!), [{ shape: [2, 3, 4] }, { shape: [4] }], random);
    gradcheck('biasAdd axis 1', ([x, b]) => F.biasAdd(x!, b!, { axis: 1 }), [{ shape: [2, 3, 4] }, { shape: [3] }], random);
    gradcheck('biasAdd axis 0', ([x, b]) => F.biasAdd(x!, b!, { axis: 0 }), [{ shape: [2, 3] }, { shape: [2] }], random);
    gradcheck('biasAdd 1-D', ([x, b]) => F.biasAdd(x!, b!), [{ shape: [5] }, { shape: [5] }], random);
  });

  it('sum, mean, expand', () => {
    gradcheck('sum all', ([x]) => F.sum(x!), [{ shape: [2, 3] }], random);
    gradcheck('sum axes', ([x]) => F.sum(x!, [0, 2]), [{ shape: [2, 3, 4] }], random);
    gradcheck('sum keepDims', ([x]) => F.sum(x!, 1, { keepDims: true }), [{ shape: [2, 3, 4] }], random);
    gradcheck('mean', ([x]) => F.mean(x!, [-1]), [{ shape: [3, 5] }], random);
    gradcheck('mean all', ([x]) => F.mean(x!), [{ shape: [3, 5] }], random);
    gradcheck('expand', ([x]) => F.expand(x!, [3, 2, 4]), [{ shape: [3, 1, 4] }], random);
    gradcheck('expand two axes', ([x]) => F.expand(x!, [2, 3, 4]), [{ shape: [1, 3, 1] }], random);
  });

  it('reshape, permute, transpose', () => {
    gradcheck('reshape', ([x]) => F.mul(F.reshape(x!, [6, 2]), F.reshape(x!, [6, 2])), [{ shape: [3, 4] }], random);
    gradcheck('permute', ([x]) => F.permute(x!, [2, 0, 1]), [{ shape: [2, 3, 4] }], random);
    gradcheck('transpose', ([x]) => F.transpose(x!, 0, 2), [{ shape: [2, 3, 4] }], random);
  });

  it('concat and split along each axis', () => {
    for (const axis of [0, 1, 2]) {
      const other = [2, 3, 4].map((d, i) => (i === axis ? 1 : d));
      gradcheck(`concat axis ${axis}`, ([a, b]) => F.concat([a!, b!], axis), [{ shape: [2, 3, 4] }, { shape: other }], random);
      gradcheck(`split axis ${axis}`, ([x]) => {
        const [p, q] = F.split(x!, [1, [2, 3, 4][axis]! - 1], axis);
        return F.concat([F.scale(q!, 2), F.scale(p!, -3)], axis);
      }, [{ shape: [2, 3, 4] }], random);
    }
    const parts = F.split(fromArray([1, 2, 3, 4, 5, 6], [2, 3]), [2, 1], 1);
    expect(Array.from(parts[0]!.value.toArray())).toEqual([1, 2, 4, 5]);
    expect(Array.from(parts[1]!.value.toArray())).toEqual([3, 6]);
    expect(Array.from(F.concat([parts[1]!, parts[0]!], 1).value.toArray())).toEqual([3, 1, 2, 6, 4, 5]);
    expect(() => F.split(fromArray([1, 2, 3]), [1, 1], 0)).toThrow(/split: sizes \[1, 1\] must be positive and add up to 3/);
    expect(() => F.concat([fromArray([1, 2], [1, 2]), fromArray([1, 2, 3], [1, 3])], 0)).toThrow(/concat: input 1 has shape \[1, 3\]/);
  });

  it('matmul: every transpose, batched, and a shared 2-D operand', () => {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const a = transA ? [4, 3] : [3, 4];
        const b = transB ? [5, 4] : [4, 5];
        gradcheck(`matmul ${transA} ${transB}`, ([x, y]) => F.matmul(x!, y!, { transA, transB }), [{ shape: a }, { shape: b }], random);
        gradcheck(`bmm ${transA} ${transB}`, ([x, y]) => F.matmul(x!, y!, { transA, transB }), [{ shape: [2, ...a] }, { shape: [2, ...b] }], random);
        gradcheck(`matmul 3-D x 2-D ${transA} ${transB}`, ([x, y]) => F.matmul(x!, y!, { transA, transB }), [{ shape: [2, ...a] }, { shape: b }], random);
        gradcheck(`matmul 2-D x 3-D ${transA} ${transB}`, ([x, y]) => F.matmul(x!, y!, { transA, transB }), [{ shape: a }, { shape: [2, ...b] }], random);
      }
    }
  });

  it('softmax, gelu, silu', () => {
    gradcheck('softmax', ([x]) => F.softmax(x!), [{ shape: [3, 5] }], random);
    gradcheck('gelu', ([x]) => F.gelu(x!), [{ shape: [11] }], random);
    gradcheck('silu', ([x]) => F.silu(x!), [{ shape: [11] }], random);
  });

  it('layerNorm: plain, affine, adaLN modulation', () => {
    gradcheck('layerNorm plain', ([x]) => F.layerNorm(x!), [{ shape: [3, 6] }], random);
    gradcheck('layerNorm affine', ([x, g, b]) => F.layerNorm(x!, { gamma: g!, beta: b! }), [{ shape: [2, 3, 6] }, { shape: [6] }, { shape: [6] }], random);
    gradcheck(
      'layerNorm adaLN',
      ([x, s, t]) => F.layerNorm(x!, { scale: s!, shift: t! }),
      [{ shape: [2, 3, 6] }, { shape: [2, 6] }, { shape: [2, 6] }],
      random,
    );
    gradcheck(
      'layerNorm gamma + adaLN',
      ([x, g, s]) => F.layerNorm(x!, { gamma: g!, scale: s! }),
      [{ shape: [2, 3, 5] }, { shape: [5] }, { shape: [2, 5] }],
      random,
    );
  });

  it('embedding (ids repeated)', () => {
    const ids = fromArray([2, 0, 2, 3, 1, 2], [2, 3], { dtype: 'i32' });
    gradcheck('embedding', ([t]) => F.embedding(t!, ids), [{ shape: [4, 5] }], random);
    const y = F.embedding(fromArray([1, 2, 3, 4], [2, 2]), fromArray([1, 0, 1], [3], { dtype: 'i32' }));
    expect(y.shape).toEqual([3, 2]);
    expect(Array.from(y.value.toArray())).toEqual([3, 4, 1, 2, 3, 4]);
  });

  it('attention: plain, causal, kvLengths, cross', () => {
    const shape = [2, 2, 3, 4];
    gradcheck('attention', ([q, k, v]) => F.attention(q!, k!, v!), [{ shape }, { shape }, { shape }], random);
    gradcheck('attention causal', ([q, k, v]) => F.attention(q!, k!, v!, { causal: true }), [{ shape }, { shape }, { shape }], random);
    const kvLengths = fromArray([2, 5], [2], { dtype: 'i32' });
    const kv = [2, 2, 5, 4];
    gradcheck(
      'cross attention with kvLengths',
      ([q, k, v]) => F.attention(q!, k!, v!, { kvLengths, scale: 0.7 }),
      [{ shape }, { shape: kv }, { shape: kv }],
      random,
    );
  });

  it('dropout: gradient is the mask, same seed same mask, identity in eval', () => {
    const x = new Variable(fromArray(new Float32Array(400).fill(1), [400]), { requiresGrad: true });
    const y = F.dropout(x, 0.25, { seed: 7 }).retain();
    backward(F.sum(y));
    const out = y.value.toArray();
    const grad = x.grad!.toArray();
    const kept = out.filter((v) => v !== 0).length;
    expect(kept).toBeGreaterThan(250);
    expect(kept).toBeLessThan(350);
    for (let i = 0; i < out.length; i++) expect(out[i] === 0 || Math.abs(out[i]! - 1 / 0.75) < 1e-6).toBe(true);
    expectClose(grad, out, { rtol: 0, atol: 0 }, 'dropout gradient equals the scaled mask');
    const again = noGrad(() => F.dropout(x, 0.25, { seed: 7 })).value.toArray();
    expectClose(again, out, { rtol: 0, atol: 0 }, 'same seed, same mask');
    expectClose(F.dropout(x, 0.25, { training: false }).value.toArray(), x.value.toArray(), { rtol: 0, atol: 0 }, 'eval');
    gradcheck('dropout', ([v]) => F.dropout(v!, 0.5, { seed: 3 }), [{ shape: [10] }], random);
  });

  it('mse: mean and per sample', () => {
    gradcheck('mse', ([p, t]) => F.mse(p!, t!), [{ shape: [2, 3, 2] }, { shape: [2, 3, 2] }], random);
    gradcheck('mse per sample', ([p, t]) => F.mse(p!, t!, { reduction: 'perSample' }), [{ shape: [2, 3, 2] }, { shape: [2, 3, 2] }], random);
    const m = F.mse(fromArray([1, 2, 3, 4], [2, 2]), fromArray([0, 0, 0, 0], [2, 2]), { reduction: 'perSample' });
    expectClose(m.value.toArray(), [2.5, 12.5], {}, 'mse values');
  });

  it('an input that is not a Variable or an f32 Tensor is an error naming the function and the argument', () => {
    expect(() => F.add([1, 2] as never, [3, 4] as never)).toThrow(/^add: a must be a Variable or a Tensor, got an array \(make a Tensor of it with fromArray\)$/);
    expect(() => F.matmul(fromArray([1, 2], [1, 2]), 3 as never)).toThrow(/^matmul: b must be a Variable or a Tensor, got a number$/);
    expect(() => F.concat([fromArray([1]), null as never], 0)).toThrow(/^concat: inputs\[1\] must be a Variable or a Tensor, got null$/);
    expect(() => F.layerNorm(fromArray([1, 2], [1, 2]), { gamma: {} as never })).toThrow(/^layerNorm: gamma must be a Variable or a Tensor, got an object \(Object\)$/);
    expect(() => F.scale(fromArray([1, 2], [2], { dtype: 'i32' }) as never, 2)).toThrow(/^scale: x has dtype i32, expected f32$/);
    const gone = fromArray([1, 2]);
    gone.dispose();
    expect(() => F.gelu(gone)).toThrow(/^gelu: x was disposed$/);
  });
});

