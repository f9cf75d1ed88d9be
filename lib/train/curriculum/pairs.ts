// The preference pairs of each HG-DPO stage (SPEC section 2), built from the stores:
//   easy    per prompt: winner = the best-scored sample of its pool, loser = the worst
//   normal  per real image: winner = the best-scored reconstruction among t4..t7, loser = the
//           easy winner of its prompt; kept only where the winner scores at least the loser
//           (the kept images form the set K)
//   hard    per image in K: winner = the t1 reconstruction, loser = the normal winner
// and those of two ablations of the result table:
//   all     the three stages' pairs as one set (one stage on everything)
//   naive   winner = the real image itself, loser = a base sample of its prompt (the first of
//           its pool, unranked): DPO straight toward real images
// Pairs name their images (store records) so a stage's data set can be described and hashed
// without loading them; `loadPairs` decodes them.
import type { PreferenceExample } from '../preferences.js';
import type { ImageStore, StoreRecord } from './store.js';
import type { RealImage } from './generate.js';

export interface PairRef {
  prompt: string;
  /** A store record, or the index of a real image. */
  winner: StoreRecord | { real: number };
  loser: StoreRecord | { real: number };
}

export interface StagePairs {
  easy: PairRef[];
  normal: PairRef[];
  hard: PairRef[];
  /** Indices of the real images in K (normal pairs kept). */
  kept: number[];
  /** Why prompts or images produced no pair, counted. */
  skipped: Record<string, number>;
}

const best = (records: readonly StoreRecord[]): StoreRecord | undefined =>
  records.reduce<StoreRecord | undefined>((b, r) => (r.score !== null && (b === undefined || r.score > b.score!) ? r : b), undefined);
const worst = (records: readonly StoreRecord[]): StoreRecord | undefined =>
  records.reduce<StoreRecord | undefined>((w, r) => (r.score !== null && (w === undefined || r.score < w.score!) ? r : w), undefined);

function groupBy<K>(records: readonly StoreRecord[], key: (r: StoreRecord) => K): Map<K, StoreRecord[]> {
  const groups = new Map<K, StoreRecord[]>();
  for (const r of records) {
    const list = groups.get(key(r));
    if (list === undefined) groups.set(key(r), [r]);
    else list.push(r);
  }
  return groups;
}

/** Every stage's pairs from the pools and the reconstructions of `reals`. */
export function buildStagePairs(pools: ImageStore, recon: ImageStore, reals: readonly RealImage[], levels = 10): StagePairs {
  const skipped: Record<string, number> = {};
  const skip = (why: string): void => {
    skipped[why] = (skipped[why] ?? 0) + 1;
  };
  // Easy: one pair per prompt.
  const easyWinner = new Map<string, StoreRecord>();
  const easy: PairRef[] = [];
  for (const [prompt, pool] of groupBy(pools.records, (r) => r.prompt)) {
    const w = best(pool);
    const l = worst(pool);
    if (w === undefined || l === undefined || w === l) {
      skip('easy: pool with fewer than two scored samples');
      continue;
    }
    if (w.score === l.score) {
      skip('easy: every sample of the pool scored the same');
      continue;
    }
    easy.push({ prompt, winner: w, loser: l });
    easyWinner.set(prompt, w);
  }
  // Normal: winner among t4..t7 (for T = 10; the same share of the levels otherwise).
  const from = Math.max(1, Math.round((4 * levels) / 10));
  const to = Math.max(from, Math.round((7 * levels) / 10));
  const byImage = groupBy(recon.records, (r) => r.item);
  const normal: PairRef[] = [];
  const normalWinner = new Map<number, StoreRecord>();
  const kept: number[] = [];
  reals.forEach((real, i) => {
    const levelsOf = byImage.get(i) ?? [];
    const loser = easyWinner.get(real.prompt);
    const winner = best(levelsOf.filter((r) => r.sample >= from && r.sample <= to));
    if (loser === undefined) return skip('normal: no easy winner for the prompt');
    if (winner === undefined) return skip(`normal: no scored reconstruction among t${from}..t${to}`);
    if (winner.score! < loser.score!) return skip('normal: reconstruction scored below the easy winner (not in K)');
    normal.push({ prompt: real.prompt, winner, loser });
    normalWinner.set(i, winner);
    kept.push(i);
  });
  // Hard: t1 against the normal winner, over K.
  const hard: PairRef[] = [];
  for (const i of kept) {
    const t1 = (byImage.get(i) ?? []).find((r) => r.sample === 1);
    if (t1 === undefined) {
      skip('hard: no t1 reconstruction');
      continue;
    }
    hard.push({ prompt: reals[i]!.prompt, winner: t1, loser: normalWinner.get(i)! });
  }
  return { easy, normal, hard, kept, skipped };
}

/** The naive ablation: each real image against the first (unranked) base sample of its prompt. */
export function naivePairs(pools: ImageStore, reals: readonly RealImage[]): PairRef[] {
  const first = new Map<string, StoreRecord>();
  for (const r of pools.records) if (r.sample === 0 && !first.has(r.prompt)) first.set(r.prompt, r);
  return reals.flatMap((real, i) => {
    const loser = first.get(real.prompt);
    return loser === undefined ? [] : [{ prompt: real.prompt, winner: { real: i }, loser }];
  });
}

/** Decodes the images of `pairs` at `size`. */
export async function loadPairs(pairs: readonly PairRef[], stores: { pools: ImageStore; recon: ImageStore }, reals: readonly RealImage[], size: number): Promise<PreferenceExample[]> {
  const cache = new Map<string, Float32Array>();
  const image = async (ref: PairRef['winner']): Promise<Float32Array> => {
    if ('real' in ref) return reals[ref.real]!.image;
    const hit = cache.get(ref.file);
    if (hit !== undefined) return hit;
    const store = ref.t !== undefined ? stores.recon : stores.pools;
    const decoded = await store.image(ref, size);
    cache.set(ref.file, decoded);
    return decoded;
  };
  const out: PreferenceExample[] = [];
  for (const p of pairs) out.push({ prompt: p.prompt, winner: await image(p.winner), loser: await image(p.loser) });
  return out;
}

/** A short stable name of a pair set (for checkpoints: a resume on other pairs is refused). */
export function describePairs(name: string, pairs: readonly PairRef[]): string {
  const ids = pairs.map((p) => `${p.prompt}|${'real' in p.winner ? `real${p.winner.real}` : p.winner.file}|${'real' in p.loser ? `real${p.loser.real}` : p.loser.file}`);
  let h = 0x811c9dc5;
  for (const s of ids) for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return `${name}: ${pairs.length} pairs (${h.toString(16).padStart(8, '0')})`;
}
