// Small DiTs and weights for the nn tests.
import type { Module } from '../../lib/nn/module.js';
import type { DiTConfig } from '../../lib/nn/dit.js';
import { fromArray } from '../../lib/tensor.js';
import { randomArray } from '../helpers.js';

export interface TinyDiTOptions {
  /** Also the timestep embedding width (default 8). */
  width?: number;
  depth?: number;
  textDepth?: number;
  vocabSize?: number;
}

/** A DiT small enough for exhaustive checks: 8 x 8 images in 4 x 4 patches (4 tokens), 2 heads. */
export function tinyDiTConfig(options: TinyDiTOptions = {}): DiTConfig {
  const width = options.width ?? 8;
  return {
    imageSize: 8,
    patchSize: 4,
    channels: 3,
    width,
    depth: options.depth ?? 2,
    heads: 2,
    mlpRatio: 2,
    textWidth: 8,
    contextLength: 4,
    timestepDim: width,
    text: { vocabSize: options.vocabSize ?? 6, depth: options.textDepth ?? 1, heads: 2, mlpRatio: 2 },
  };
}

/** Random weights everywhere: a fresh DiT predicts exactly 0 (adaLN-Zero), which hides most bugs. */
export function randomizeParameters(module: Module, random: () => number, scale = 0.5): void {
  for (const [, p] of module.namedParameters()) p.value.copy_(fromArray(randomArray(p.size, random, scale), p.shape));
}
