// A byte-level BPE tokenizer learned from the training captions, with no external files: it is
// saved as JSON beside the model. Text is split into words (a leading space stays with its
// word, as in GPT-2), each word into UTF-8 bytes, and learned merges join frequent pairs. Any
// text encodes: unknown words fall back to their bytes.
//
// Ids: 0 = PAD, 1 = BOS, 2 = EOS, 3..258 = bytes 0..255, 259.. = merges in learned order.
import { readFileSync } from 'node:fs';
import { writeJsonAtomic } from '../io/atomic.js';

export const PAD = 0;
export const BOS = 1;
export const EOS = 2;
const byteBase = 3;
const firstMerge = byteBase + 256;

export interface EncodedText {
  /** [BOS, tokens..., EOS, PAD...], exactly contextLength ids. */
  ids: Int32Array;
  /** Ids before the padding (BOS and EOS included): the attention mask's key length. */
  length: number;
}

export interface EncodedBatch {
  /** [batch * contextLength] row-major. */
  ids: Int32Array;
  lengths: Int32Array;
}

export interface TokenizerJSON {
  kind: 'byte-bpe';
  version: 1;
  merges: [number, number][];
}

const wordPattern = /\s*\S+|\s+/gu;

function words(text: string): string[] {
  return text.match(wordPattern) ?? [];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

function bytesOf(word: string): number[] {
  return Array.from(encoder.encode(word), (b) => b + byteBase);
}

const pairKey = (a: number, b: number): number => a * 1_000_003 + b;

export class Tokenizer {
  readonly merges: readonly [number, number][];
  /** pair key -> [rank, merged id] */
  #ranks = new Map<number, [number, number]>();
  /** id -> the bytes it stands for */
  #pieces: Uint8Array[] = [];
  #cache = new Map<string, number[]>();

  constructor(merges: readonly [number, number][] = []) {
    this.merges = merges;
    for (let b = 0; b < 256; b++) this.#pieces[byteBase + b] = Uint8Array.of(b);
    merges.forEach(([a, b], rank) => {
      const id = firstMerge + rank;
      if (!(a < id && b < id && a >= byteBase && b >= byteBase)) {
        throw new RangeError(`Tokenizer: merge ${rank} joins ids ${a} and ${b}, expected learned ids below ${id}`);
      }
      this.#ranks.set(pairKey(a, b), [rank, id]);
      const left = this.#pieces[a]!;
      const right = this.#pieces[b]!;
      const piece = new Uint8Array(left.length + right.length);
      piece.set(left);
      piece.set(right, left.length);
      this.#pieces[id] = piece;
    });
  }

  get vocabSize(): number {
    return firstMerge + this.merges.length;
  }

  /**
   * Learns merges from `texts` until the vocabulary reaches `vocabSize` or no pair occurs twice.
   * Deterministic: the most frequent pair wins, ties go to the smaller (left, right) ids.
   */
  static train(texts: Iterable<string>, options: { vocabSize?: number } = {}): Tokenizer {
    const vocabSize = options.vocabSize ?? 1024;
    if (!Number.isInteger(vocabSize) || vocabSize < firstMerge) {
      throw new RangeError(`Tokenizer.train: vocabSize must be an integer >= ${firstMerge}, got ${vocabSize}`);
    }
    const counts = new Map<string, number>();
    for (const text of texts) for (const w of words(text)) counts.set(w, (counts.get(w) ?? 0) + 1);
    const corpus = [...counts.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([w, n]) => ({ ids: bytesOf(w), n }));
    const merges: [number, number][] = [];
    while (firstMerge + merges.length < vocabSize) {
      const pairs = new Map<number, { a: number; b: number; n: number }>();
      for (const { ids, n } of corpus) {
        for (let i = 0; i + 1 < ids.length; i++) {
          const key = pairKey(ids[i]!, ids[i + 1]!);
          const entry = pairs.get(key);
          if (entry) entry.n += n;
          else pairs.set(key, { a: ids[i]!, b: ids[i + 1]!, n });
        }
      }
      let best: { a: number; b: number; n: number } | undefined;
      for (const p of pairs.values()) {
        if (!best || p.n > best.n || (p.n === best.n && (p.a < best.a || (p.a === best.a && p.b < best.b)))) best = p;
      }
      if (!best || best.n < 2) break;
      const id = firstMerge + merges.length;
      merges.push([best.a, best.b]);
      for (const word of corpus) word.ids = mergePair(word.ids, best.a, best.b, id);
    }
    return new Tokenizer(merges);
  }

  /** The token ids of `text`, without BOS/EOS or padding. */
  tokenize(text: string): number[] {
    const out: number[] = [];
    for (const w of words(text)) {
      let ids = this.#cache.get(w);
      if (ids === undefined) {
        ids = this.#applyMerges(bytesOf(w));
        if (this.#cache.size < 50_000) this.#cache.set(w, ids);
      }
      out.push(...ids);
    }
    return out;
  }

  /** [BOS, tokens, EOS] padded with PAD to `contextLength`; tokens are truncated to fit. */
  encode(text: string, options: { contextLength?: number } = {}): EncodedText {
    const contextLength = options.contextLength ?? 32;
    if (!Number.isInteger(contextLength) || contextLength < 2) {
      throw new RangeError(`Tokenizer.encode: contextLength must be an integer >= 2, got ${contextLength}`);
    }
    if (typeof text !== 'string') throw new TypeError(`Tokenizer.encode: text must be a string, got ${typeof text}`);
    const tokens = this.tokenize(text).slice(0, contextLength - 2);
    const ids = new Int32Array(contextLength);
    ids[0] = BOS;
    ids.set(tokens, 1);
    ids[tokens.length + 1] = EOS;
    return { ids, length: tokens.length + 2 };
  }

  encodeBatch(texts: readonly string[], contextLength = 32): EncodedBatch {
    const ids = new Int32Array(texts.length * contextLength);
    const lengths = new Int32Array(texts.length);
    texts.forEach((text, i) => {
      const e = this.encode(text, { contextLength });
      ids.set(e.ids, i * contextLength);
      lengths[i] = e.length;
    });
    return { ids, lengths };
  }

  /** The text of `ids`, skipping special tokens. */
  decode(ids: ArrayLike<number>): string {
    const parts: Uint8Array[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id < byteBase) continue;
      const piece = this.#pieces[id];
      if (piece === undefined) throw new RangeError(`Tokenizer.decode: id ${id} at position ${i} is outside the vocabulary (${this.vocabSize})`);
      parts.push(piece);
    }
    return decoder.decode(Buffer.concat(parts));
  }

  toJSON(): TokenizerJSON {
    return { kind: 'byte-bpe', version: 1, merges: this.merges.map(([a, b]) => [a, b]) };
  }

  static fromJSON(json: unknown): Tokenizer {
    const j = json as Partial<TokenizerJSON> | null;
    if (j === null || typeof j !== 'object' || j.kind !== 'byte-bpe' || j.version !== 1 || !Array.isArray(j.merges)) {
      throw new TypeError('Tokenizer.fromJSON: expected { kind: "byte-bpe", version: 1, merges: [[a, b], ...] }');
    }
    for (const m of j.merges) {
      if (!Array.isArray(m) || m.length !== 2 || !m.every(Number.isInteger)) throw new TypeError(`Tokenizer.fromJSON: invalid merge ${JSON.stringify(m)}`);
    }
    return new Tokenizer(j.merges);
  }

  /** Writes the tokenizer as JSON (atomically: the file is whole or absent). */
  save(file: string): void {
    writeJsonAtomic(file, this.toJSON());
  }

  static load(file: string): Tokenizer {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(`Tokenizer.load: cannot read ${file}: ${(err as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new Error(`Tokenizer.load: ${file} is not valid JSON (${(err as Error).message})`);
    }
    return Tokenizer.fromJSON(json);
  }

  #applyMerges(ids: number[]): number[] {
    let current = ids;
    for (;;) {
      let bestRank = Infinity;
      let bestPair: [number, number, number] | undefined;
      for (let i = 0; i + 1 < current.length; i++) {
        const found = this.#ranks.get(pairKey(current[i]!, current[i + 1]!));
        if (found && found[0] < bestRank) {
          bestRank = found[0];
          bestPair = [current[i]!, current[i + 1]!, found[1]];
        }
      }
      if (!bestPair) return current;
      current = mergePair(current, bestPair[0], bestPair[1], bestPair[2]);
    }
  }
}

function mergePair(ids: number[], a: number, b: number, id: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < ids.length; i++) {
    if (i + 1 < ids.length && ids[i] === a && ids[i + 1] === b) {
      out.push(id);
      i++;
    } else {
      out.push(ids[i]!);
    }
  }
  return out;
}
