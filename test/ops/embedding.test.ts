import { describe, expect, it } from 'vitest';
import { fromArray } from '../../lib/tensor.js';
import { embedding, embeddingBackward } from '../../lib/ops/embedding.js';
import { native } from '../../lib/native.js';
import * as ref from '../reference/embedding.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectClose, expectIdentical, randomArray, rng } from '../helpers.js';

checkMemoryGuards();

/** n ids in [0, vocab), with many repeats when n > vocab. */
function randomIds(n: number, vocab: number, random: () => number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(random() * vocab));
}

// [vocab, dim, ids shape]
const cases: [number, number, number[]][] = [
  [1, 1, [1]],
  [17, 1, [5]],
  [10, 17, [3, 7]],
  [127, 33, [2, 4, 9]],
  [5, 1000, [17]],
  [3, 4099, [4]],
];

describe('op embedding', () => {
  for (const device of backends()) {
    it(`gathers rows like the reference on ${device}`, () => {
      const random = rng();
      for (const [vocab, dim, shape] of cases) {
        const n = shape.reduce((a, b) => a * b, 1);
        const table = randomArray(vocab * dim, random);
        const ids = randomIds(n, vocab, random);
        const out = embedding(fromArray(table, [vocab, dim], { device }), fromArray(ids, shape, { dtype: 'i32', device }));
        expect(out.shape).toEqual([...shape, dim]);
        expectClose(out.toArray(), ref.embedding(table, dim, ids), { rtol: 0, atol: 0 }, `${device} ${vocab}x${dim}`);
      }
    });

    it(`rejects out-of-range ids with a RangeError naming the id and its position on ${device}`, () => {
      const table = fromArray(randomArray(20, rng()), [10, 2], { device });
      expect(() => embedding(table, fromArray([0, 3, 4, 9, 10, 1], [2, 3], { dtype: 'i32', device }))).toThrow(
        /embedding: ids\[1, 1\] is 10, expected 0 <= id < 10/,
      );
      expect(() => embedding(table, fromArray([2, -1], [2], { dtype: 'i32', device }))).toThrow(RangeError);
      // The binding checks too, so a call that skips the TS layer cannot read outside the table.
      const bad = fromArray([1, 2, 12], [3], { dtype: 'i32', device });
      expect(() => native.embedding(table.handle, bad.handle)).toThrow(/embedding: ids\[2\] \(flat index\) is 12, expected 0 <= id < 10/);
      expect(() => native.embeddingBackward(bad.handle, fromArray(new Float32Array(6), [3, 2], { device }).handle, 10)).toThrow(
        RangeError,
      );
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const random = rng();
      const table = randomArray(50 * 130, random);
      const ids = randomIds(77, 50, random);
      const onCpu = embedding(fromArray(table, [50, 130]), fromArray(ids, [77], { dtype: 'i32' })).toArray();
      const onDevice = embedding(fromArray(table, [50, 130], { device }), fromArray(ids, [77], { dtype: 'i32', device })).toArray();
      expectClose(onDevice, onCpu, { rtol: 0, atol: 0 }, `${device} vs cpu`);
    });
  }

  it('names the argument in errors', () => {
    const table = fromArray([1, 2, 3, 4], [2, 2]);
    expect(() => embedding(table, fromArray([0, 1]) as never)).toThrow(/embedding: ids has dtype f32, expected i32/);
    expect(() => embedding(fromArray([1, 2]), fromArray([0], [1], { dtype: 'i32' }))).toThrow(/embedding: table has 1 dims, expected 2 \[vocab, dim\]/);
  });
});

describe('op embedding_backward', () => {
  for (const device of backends()) {
    it(`scatter-adds repeated ids like the reference on ${device}`, () => {
      const random = rng();
      for (const [vocab, dim, shape] of cases) {
        const n = shape.reduce((a, b) => a * b, 1);
        const ids = randomIds(n, vocab, random);
        const dy = randomArray(n * dim, random);
        const dtable = embeddingBackward(fromArray(ids, shape, { dtype: 'i32', device }), fromArray(dy, [...shape, dim], { device }), vocab);
        expect(dtable.shape).toEqual([vocab, dim]);
        expectClose(dtable.toArray(), ref.embeddingBackward(ids, dy, vocab, dim), { rtol: 1e-6, atol: 1e-6 }, `${device} ${vocab}x${dim}`);
      }
      // Every id the same: the whole of dy lands on one row; untouched rows stay exactly 0.
      const ids = new Int32Array(300).fill(2);
      const dy = randomArray(300 * 3, random);
      const dtable = embeddingBackward(fromArray(ids, [300], { dtype: 'i32', device }), fromArray(dy, [300, 3], { device }), 4).toArray();
      expectClose(dtable, ref.embeddingBackward(ids, dy, 4, 3), { rtol: 1e-5, atol: 1e-5 }, `${device} one id`);
      expect(Array.from(dtable.subarray(0, 6))).toEqual([0, 0, 0, 0, 0, 0]);
    });

    it(`is the gradient of the gather (finite differences are exact for a linear op) on ${device}`, () => {
      const random = rng();
      const [vocab, dim] = [6, 5];
      const ids = Int32Array.from([1, 4, 1, 1, 0]);
      const dy = randomArray(ids.length * dim, random);
      const table = Float64Array.from(randomArray(vocab * dim, random));
      const numeric = new Float64Array(vocab * dim);
      for (let i = 0; i < numeric.length; i++) {
        const saved = table[i]!;
        const dot = (): number => ref.embedding(table, dim, ids).reduce((s, v, j) => s + v * dy[j]!, 0);
        table[i] = saved + 0.5;
        const plus = dot();
        table[i] = saved - 0.5;
        const minus = dot();
        table[i] = saved;
        numeric[i] = plus - minus;
      }
      const dtable = embeddingBackward(fromArray(ids, [5], { dtype: 'i32', device }), fromArray(dy, [5, dim], { device }), vocab);
      expectClose(dtable.toArray(), numeric, { rtol: 1e-6, atol: 1e-6 }, `${device} vs finite differences`);
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const random = rng();
      const ids = randomIds(200, 7, random);
      const dy = randomArray(200 * 65, random);
      const onCpu = embeddingBackward(fromArray(ids, [200], { dtype: 'i32' }), fromArray(dy, [200, 65]), 7).toArray();
      const onDevice = embeddingBackward(fromArray(ids, [200], { dtype: 'i32', device }), fromArray(dy, [200, 65], { device }), 7).toArray();
      expectClose(onDevice, onCpu, { rtol: 1e-5, atol: 1e-5 }, `${device} vs cpu`);
    });

    // 3000 ids over 37 rows (about 80 tokens per row) and two 256-column tiles: many blocks add
    // into each row. Every backend adds a row's tokens in token order, so the runs agree with
    // each other and with cpu exactly.
    it(`gives bit-identical gradients on two runs, equal to cpu's, on ${device}`, () => {
      const random = rng();
      const [vocab, dim, n] = [37, 300, 3000];
      const ids = fromArray(randomIds(n, vocab, random), [n], { dtype: 'i32', device });
      const dyValues = randomArray(n * dim, random);
      const dy = fromArray(dyValues, [n, dim], { device });
      const first = embeddingBackward(ids, dy, vocab).toArray();
      const second = embeddingBackward(ids, dy, vocab).toArray();
      expectIdentical(second, first, `${device} second run vs first`);
      const onCpu = embeddingBackward(fromArray(ids.toArray(), [n], { dtype: 'i32' }), fromArray(dyValues, [n, dim]), vocab).toArray();
      expectIdentical(first, onCpu, `${device} vs cpu`);
    });
  }

  it('names the argument in errors', () => {
    const ids = fromArray([0, 1, 2], [3], { dtype: 'i32' });
    expect(() => embeddingBackward(ids, fromArray(new Float32Array(8), [4, 2]), 3)).toThrow(
      /embeddingBackward: dy has shape \[4, 2\], expected \[3, dim\]/,
    );
    expect(() => embeddingBackward(ids, fromArray(new Float32Array(6), [3, 2]), 2)).toThrow(/embeddingBackward: ids\[2\] is 2, expected 0 <= id < 2/);
    expect(() => embeddingBackward(ids, fromArray(new Float32Array(6), [3, 2]), 1.5)).toThrow(/embeddingBackward: vocab must be an integer >= 0/);
  });
});
