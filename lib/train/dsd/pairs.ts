// DSD's training data (SPEC section 4): pairs of images of one person in two contexts.
//
// Self-generated pairs: the base model draws `views` images of each of `identities` people, one
// per context, from prompts that describe the person in words ("a person with tan skin and long
// red hair wearing a blue shirt and black trousers, running, in front of a green park, lit from
// the left"). The words fix the named traits; the unnamed ones (proportions, shirt pattern,
// accessory) vary from sample to sample, so a curator keeps only the ordered pairs (condition,
// target) that show the same person: the identity embedder's cosine at or above a threshold by
// default, pluggable (an ONNX embedder, any function) since the paper uses a vision-language
// model. The images are an ImageStore (lib/train/curriculum/store.ts: PNGs + index.jsonl,
// resumable, refused when made by another base or with other settings), dir/pool unless another
// is named; the curated pairs are written to dir/pairs.jsonl, with what made them in pairs.json.
//
// Real pairs (optional): two rendered views of figures of the same person (the `figures` data),
// from the training identities' seed domain, never the held-out one.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { identityCaption, mixSeed, sampleFigureAttributes, scenePhrase } from '../../data/figures.js';
import type { IdentityAttributes } from '../../data/figures.js';
import { loadEvaluator, shippedEvaluator } from '../../eval/networks.js';
import { onnxFeatureExtractor } from '../../eval/onnx.js';
import { atomicWriteFile, writeJsonAtomic } from '../../io/atomic.js';
import { loadImage } from '../../io/images.js';
import type { TextToImage } from '../../models/text_to_image.js';
import { concatFloat32, rowDot, rowNorms } from '../../numeric.js';
import { fromArray, type Tensor } from '../../tensor.js';
import { generatePools } from '../curriculum/generate.js';
import { captionPoolScorer } from '../curriculum/scorer.js';
import { identityViews, personalIdentity, type IdentityView, type Scene } from '../personalize/identities.js';

/** The prompt a DSD pair trains with and a user samples with: the context, the person left to the reference. */
export function dsdPrompt(scene: Scene): string {
  return `a person, ${scenePhrase(scene)}`;
}

/** The words-only prompt of a self-generated image: the person described, then the context. */
export function describedPrompt(identity: IdentityAttributes, scene: Scene): string {
  return `${identityCaption(identity)}, ${scenePhrase(scene)}`;
}

/** A curator's view of images: one embedding per image; pairs are kept by cosine similarity. */
export interface PairCurator {
  /** Names the curator in pairs.json. */
  readonly name: string;
  embed(images: Tensor<'f32'>): Promise<{ data: Float32Array; count: number; dim: number }> | { data: Float32Array; count: number; dim: number };
  dispose?(): void;
}

/** The shipped identity embedder (or another file of that kind) as a curator. */
export function identityCurator(file?: string): PairCurator {
  const embedder = loadEvaluator(file ?? shippedEvaluator('identity'), 'identity');
  return { name: file === undefined ? 'identity' : `identity:${file}`, embed: (images) => embedder.embed(images), dispose: () => embedder.dispose() };
}

/** An ONNX feature extractor (images [N, 3, H, W] in [-1, 1] -> [N, D]) as a curator. */
export async function onnxCurator(file: string): Promise<PairCurator> {
  const extract = await onnxFeatureExtractor(file);
  return {
    name: `onnx:${file}`,
    embed: async (images) => {
      const out = await extract(images);
      return { data: out.data, count: out.count, dim: out.dim };
    },
  };
}

/** A curator from a function (the SDK's way to plug in any identity or VLM judgement). */
export function functionCurator(name: string, embed: PairCurator['embed']): PairCurator {
  if (typeof name !== 'string' || name === '') throw new TypeError('functionCurator: name must be a non-empty string (it names the curator in pairs.json)');
  if (typeof embed !== 'function') throw new TypeError(`functionCurator: embed must be a function, got ${typeof embed}`);
  return { name: `fn:${name}`, embed };
}

export interface SelfPairOptions {
  /** People drawn (default 192). */
  identities: number;
  /** Images per person, one context each (default 6). */
  views: number;
  steps: number;
  cfg: number;
  seed: number;
  /** Keep an ordered pair when the curator's cosine is at least this; null keeps every pair (no curation). */
  threshold: number | null;
  /** The image store (default dir/pool); another pairs directory's pool curates the same images again. */
  pool?: string;
  log?: (line: string) => void;
  onProgress?: (done: number, total: number) => void;
}

export const selfPairDefaults = { identities: 192, views: 6, steps: 20, cfg: 5, seed: 0, threshold: 0.85 } as const;

/** One pair as stored in pairs.jsonl (self-generated) or made in memory (real). */
export interface DsdPairRecord {
  /** The person (self-generated: index in the store; real: index in the training domain). */
  person: number;
  condition: string;
  target: string;
  /** The target's DSD prompt and its described prompt. */
  prompt: string;
  described: string;
  similarity: number | null;
}

export interface DsdPair {
  reference: Float32Array;
  target: Float32Array;
  prompt: string;
  described: string;
}

/** The scene of view `view` of self-generated person `person`. */
function selfScene(seed: number, person: number, view: number): Scene {
  const { pose, background, backgroundColor, lightDir } = sampleFigureAttributes(mixSeed(seed, 0xd5d, person, view));
  return { pose, background, backgroundColor, lightDir };
}

export interface SelfPairs {
  dir: string;
  pairs: DsdPairRecord[];
  /** Ordered pairs looked at and kept. */
  candidates: number;
  kept: number;
}

const pairsSummary = 'pairs.json';
const pairsIndex = 'pairs.jsonl';

/**
 * Generates (or resumes) the self-generated images under dir/pool and writes the curated pairs
 * to dir/pairs.jsonl. Errors when the curator keeps no pair.
 */
export async function makeSelfPairs(model: TextToImage, dir: string, curator: PairCurator, options: SelfPairOptions): Promise<SelfPairs> {
  const op = 'dsd pairs';
  const { identities, views } = options;
  for (const [name, value, min] of [['identities', identities, 1], ['views', views, 2]] as const) {
    if (!Number.isInteger(value) || value < min) throw new RangeError(`${op}: ${name} must be an integer >= ${min}, got ${value}`);
  }
  if (options.threshold !== null && !(options.threshold >= -1 && options.threshold <= 1)) throw new RangeError(`${op}: threshold must be a cosine in [-1, 1] (or null: no curation), got ${options.threshold}`);
  const people = Array.from({ length: identities }, (_, i) => personalIdentity('dsd', i));
  const prompts = people.flatMap((person, i) => Array.from({ length: views }, (_, v) => describedPrompt(person, selfScene(options.seed, i, v))));
  const poolDir = path.resolve(options.pool ?? path.join(dir, 'pool'));
  const scorer = captionPoolScorer();
  let store;
  try {
    store = await generatePools(model, prompts, poolDir, scorer, {
      poolSize: 1,
      promptsPerBatch: 32,
      steps: options.steps,
      cfg: options.cfg,
      seed: options.seed,
      ...(options.log ? { log: options.log } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
  } finally {
    scorer.dispose?.();
  }
  const byItem = new Map(store.records.map((r) => [r.item, r]));
  const size = model.imageSize;
  const pairs: DsdPairRecord[] = [];
  let candidates = 0;
  let best = -Infinity;
  for (let i = 0; i < identities; i++) {
    const records = Array.from({ length: views }, (_, v) => byItem.get(i * views + v)!);
    const images = fromArray(concatFloat32(await Promise.all(records.map((r) => store.image(r, size)))), [views, model.channels, size, size]);
    let emb;
    try {
      emb = await curator.embed(images);
    } finally {
      images.dispose();
    }
    if (emb.count !== views) throw new Error(`${op}: the curator ${curator.name} returned ${emb.count} embeddings for ${views} images`);
    const norms = rowNorms(emb.data, views, emb.dim);
    for (let a = 0; a < views; a++) {
      for (let b = 0; b < views; b++) {
        if (a === b) continue;
        candidates++;
        const similarity = rowDot(emb.data, a, emb.data, b, emb.dim) / (norms[a]! * norms[b]!);
        best = Math.max(best, similarity);
        if (options.threshold !== null && !(similarity >= options.threshold)) continue;
        const scene = selfScene(options.seed, i, b);
        pairs.push({ person: i, condition: records[a]!.file, target: records[b]!.file, prompt: dsdPrompt(scene), described: describedPrompt(people[i]!, scene), similarity });
      }
    }
  }
  if (pairs.length === 0) {
    throw new Error(`${op}: the curator ${curator.name} kept 0 of ${candidates} pairs at threshold ${options.threshold} (the most similar pair scored ${best.toFixed(3)}); lower the threshold or draw more images per person`);
  }
  atomicWriteFile(path.join(dir, pairsIndex), pairs.map((p) => `${JSON.stringify(p)}\n`).join(''));
  writeJsonAtomic(path.join(dir, pairsSummary), {
    format: 'realtune-dsd-pairs',
    base: store.header.base,
    pool: path.relative(dir, poolDir),
    curator: curator.name,
    threshold: options.threshold,
    identities,
    views,
    candidates,
    kept: pairs.length,
  });
  options.log?.(`${op}: kept ${pairs.length} of ${candidates} ordered pairs (${((100 * pairs.length) / candidates).toFixed(1)}%) with ${curator.name} at threshold ${options.threshold}`);
  return { dir, pairs, candidates, kept: pairs.length };
}

/** Reads the curated pairs of a pairs directory (written by makeSelfPairs) with their images. */
export async function loadSelfPairs(dir: string, size: number, expectedBase?: string): Promise<DsdPair[]> {
  const op = 'dsd';
  const summaryFile = path.join(dir, pairsSummary);
  if (!existsSync(summaryFile)) throw new Error(`${op}: ${dir} holds no ${pairsSummary}; make the pairs first with \`realtune dsd pairs --out ${dir}\``);
  let summary: { format?: string; base?: string; pool?: string };
  try {
    summary = JSON.parse(readFileSync(summaryFile, 'utf8')) as typeof summary;
  } catch (err) {
    throw new Error(`${op}: cannot read ${summaryFile}: ${(err as Error).message}`);
  }
  if (summary.format !== 'realtune-dsd-pairs') throw new Error(`${op}: ${summaryFile} has format ${JSON.stringify(summary.format)}, expected "realtune-dsd-pairs"`);
  if (expectedBase !== undefined && summary.base !== expectedBase) {
    throw new Error(`${op}: the pairs in ${dir} were made by another base model (weights ${String(summary.base).slice(0, 12)}, this one is ${expectedBase.slice(0, 12)}); make them again with this base`);
  }
  const poolDir = path.resolve(dir, summary.pool ?? 'pool');
  const lines = readFileSync(path.join(dir, pairsIndex), 'utf8').split('\n').filter((l) => l.trim() !== '');
  const cache = new Map<string, Promise<Float32Array>>();
  const image = (file: string): Promise<Float32Array> => {
    let p = cache.get(file);
    if (p === undefined) {
      p = loadImage(path.join(poolDir, file), { size });
      cache.set(file, p);
    }
    return p;
  };
  return Promise.all(
    lines.map(async (line, n) => {
      let r: DsdPairRecord;
      try {
        r = JSON.parse(line) as DsdPairRecord;
      } catch {
        throw new Error(`${op}: ${path.join(dir, pairsIndex)}:${n + 1}: not valid JSON; make the pairs again`);
      }
      return { reference: await image(r.condition), target: await image(r.target), prompt: r.prompt, described: r.described };
    }),
  );
}

/** Real pairs: two rendered views of each of `count` training-domain people, both orders. */
export function realPairs(count: number, size: number): DsdPair[] {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`dsd: realPairs must be an integer >= 0, got ${count}`);
  const pair = (c: IdentityView, t: IdentityView): DsdPair => ({ reference: c.pixels, target: t.pixels, prompt: dsdPrompt(t.attributes), described: describedPrompt(t.attributes, t.attributes) });
  return Array.from({ length: count }, (_, i) => identityViews('train', i, 2, size)).flatMap(([a, b]) => [pair(a!, b!), pair(b!, a!)]);
}
