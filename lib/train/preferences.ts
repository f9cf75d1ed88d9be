// Preference pairs for Diffusion-DPO: a prompt, the image preferred for it and one that is not.
// Two sources: a JSONL manifest of image files, and pairs made from the embedded procedural
// figures, where the winner is drawn as captioned and the loser is the same picture with one
// attribute changed (the shirt colour), so a DPO run teaches the model to follow that word.
import path from 'node:path';
import { captionFor, mixSeed, renderFigure, sampleFigureAttributes, SHIRT_COLORS, type ShirtColor } from '../data/figures.js';
import { loadImage } from '../io/images.js';
import { readJsonl } from '../io/jsonl.js';

export interface PreferenceExample {
  prompt: string;
  /** CHW images in [-1, 1] at the size they were loaded for. */
  winner: Float32Array;
  loser: Float32Array;
}

export type PreferenceSpec =
  | { kind: 'figures'; count: number; seed: number }
  | { kind: 'manifest'; file: string };

export function describePreferences(spec: PreferenceSpec): string {
  return spec.kind === 'figures' ? `${spec.count} procedural figure pairs (seed ${spec.seed}, losers in another shirt colour)` : `manifest ${spec.file}`;
}

const shirtColors = Object.keys(SHIRT_COLORS) as ShirtColor[];

/** `count` figures as captioned (winners) against the same figures in another shirt colour. */
export function figurePreferences(count: number, size: number, seed: number): PreferenceExample[] {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`figurePreferences: count must be an integer >= 1, got ${count}`);
  return Array.from({ length: count }, (_, i) => {
    const attrs = sampleFigureAttributes(mixSeed(seed, i));
    const others = shirtColors.filter((c) => c !== attrs.shirtColor);
    const wrong = others[mixSeed(seed, 0x5eed, i) % others.length]!;
    return { prompt: captionFor(attrs), winner: renderFigure(attrs, size), loser: renderFigure({ ...attrs, shirtColor: wrong }, size) };
  });
}

/**
 * Pairs from a JSONL manifest, one {"prompt": text, "winner": path, "loser": path} per line
 * (paths relative to the manifest), decoded at `size` x `size`.
 */
export async function manifestPreferences(file: string, size: number): Promise<PreferenceExample[]> {
  const op = 'manifestPreferences';
  const base = path.dirname(file);
  const pairs: PreferenceExample[] = [];
  for (const { where, record } of await readJsonl(file, op, '{"prompt": ..., "winner": ..., "loser": ...}')) {
    const { prompt, winner, loser } = record;
    if (typeof prompt !== 'string') throw new Error(`${op}: ${where}: "prompt" must be a string`);
    const images: Float32Array[] = [];
    for (const [name, value] of [['winner', winner], ['loser', loser]] as const) {
      if (typeof value !== 'string' || value === '') throw new Error(`${op}: ${where}: "${name}" must be a non-empty string path`);
      const resolved = path.resolve(base, value);
      try {
        images.push(await loadImage(resolved, { size }));
      } catch (error) {
        throw new Error(`${op}: ${where}: ${name} ${resolved}: ${(error as Error).message}`);
      }
    }
    pairs.push({ prompt, winner: images[0]!, loser: images[1]! });
  }
  if (pairs.length === 0) throw new Error(`${op}: ${file} has no pairs`);
  return pairs;
}

export async function loadPreferences(spec: PreferenceSpec, size: number): Promise<PreferenceExample[]> {
  return spec.kind === 'figures' ? figurePreferences(spec.count, size, spec.seed) : manifestPreferences(spec.file, size);
}
