import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BOS, EOS, PAD, Tokenizer } from '../../lib/text/tokenizer.js';
import { rng } from '../helpers.js';

const captions = [
  'a person with brown skin and short black hair wearing a red shirt and blue trousers, walking',
  'a person with light skin and long blond hair wearing a green shirt and black trousers, standing',
  'a person with dark skin and short black hair wearing a red shirt and a blue skirt, waving',
  'a person with brown skin and a ponytail wearing a yellow shirt and grey trousers, running',
];

describe('byte-level BPE tokenizer', () => {
  it('learns merges that shorten the training text, deterministically', () => {
    const tok = Tokenizer.train(captions, { vocabSize: 400 });
    const again = Tokenizer.train(captions, { vocabSize: 400 });
    expect(again.merges).toEqual(tok.merges);
    expect(tok.vocabSize).toBeGreaterThan(259);
    expect(tok.vocabSize).toBeLessThanOrEqual(400);
    const bytes = Buffer.byteLength(captions[0]!);
    expect(tok.tokenize(captions[0]!).length).toBeLessThan(bytes / 2);
    expect(tok.tokenize(' shirt').length).toBe(1);
  });

  it('round-trips arbitrary UTF-8, including text never seen in training', () => {
    const tok = Tokenizer.train(captions, { vocabSize: 350 });
    const random = rng();
    const samples = ['', '  leading and trailing  ', 'ünïcödé 人像 🙂 mixed\ttabs\nnewlines', 'a red shirt'];
    for (let i = 0; i < 20; i++) {
      let s = '';
      for (let j = 0; j < 30; j++) s += String.fromCodePoint(Math.floor(random() * 0x2fff) + 32);
      samples.push(s);
    }
    for (const s of samples) expect(tok.decode(tok.tokenize(s))).toBe(s);
  });

  it('encodes to a fixed context with BOS, EOS, padding and the true length; truncates long text', () => {
    const tok = Tokenizer.train(captions, { vocabSize: 300 });
    const { ids, length } = tok.encode('a red shirt', { contextLength: 32 });
    expect(ids.length).toBe(32);
    expect(ids[0]).toBe(BOS);
    expect(ids[length - 1]).toBe(EOS);
    expect(Array.from(ids.slice(length)).every((v) => v === PAD)).toBe(true);
    expect(tok.decode(ids)).toBe('a red shirt');
    const long = tok.encode(captions.join(' '), { contextLength: 8 });
    expect(long.length).toBe(8);
    expect(long.ids[7]).toBe(EOS);
    const batch = tok.encodeBatch(['a', 'a red shirt'], 16);
    expect(batch.ids.length).toBe(32);
    expect(Array.from(batch.lengths)).toEqual([tok.encode('a', { contextLength: 16 }).length, tok.encode('a red shirt', { contextLength: 16 }).length]);
  });

  it('saves to JSON and loads back identically; rejects bad JSON and bad ids', () => {
    const tok = Tokenizer.train(captions, { vocabSize: 320 });
    const back = Tokenizer.fromJSON(JSON.parse(JSON.stringify(tok)));
    expect(back.tokenize(captions[2]!)).toEqual(tok.tokenize(captions[2]!));
    expect(() => Tokenizer.fromJSON({ kind: 'wordpiece' })).toThrow(/expected \{ kind: "byte-bpe"/);
    expect(() => Tokenizer.fromJSON({ kind: 'byte-bpe', version: 1, merges: [[5000, 3]] })).toThrow(/merge 0 joins ids 5000 and 3/);
    expect(() => tok.decode([99999])).toThrow(/id 99999 at position 0 is outside the vocabulary/);
    expect(() => tok.encode('x', { contextLength: 1 })).toThrow(/contextLength must be an integer >= 2/);
    expect(() => Tokenizer.train([], { vocabSize: 10 })).toThrow(/vocabSize must be an integer >= 259/);
  });

  it('saves to a file beside the model and loads it back', () => {
    const tok = Tokenizer.train(captions, { vocabSize: 330 });
    const dir = mkdtempSync(path.join(tmpdir(), 'realtune-tok-'));
    try {
      const file = path.join(dir, 'tokenizer.json');
      tok.save(file);
      expect(readdirSync(dir)).toEqual(['tokenizer.json']);
      expect(Tokenizer.load(file).merges).toEqual(tok.merges);
      writeFileSync(file, '{"kind": "byte-bpe", ');
      expect(() => Tokenizer.load(file)).toThrow(/tokenizer.json is not valid JSON/);
      expect(() => Tokenizer.load(path.join(dir, 'absent.json'))).toThrow(/cannot read .*absent.json/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
