// The figures as a Dataset (rendered on demand, cached when they fit), and the byte form the
// render-ahead stream passes between threads.
import type { Dataset, Example } from '../dataset.js';
import type { FigureAttributes } from './attributes.js';
import { captionFor } from './captions.js';
import { renderFigure } from './render.js';
import { figureAttributesAt } from './sampling.js';

export interface FiguresDatasetOptions {
  /** Image side in pixels (default 32). */
  size?: number;
  seed?: number;
  /**
   * Number of distinct people; example i shows identity i % identities with its own pose,
   * background and light. Default: every example is a new person.
   */
  identities?: number;
  /** Keep rendered images in memory (default: when all of them fit in 256 MB). */
  cache?: boolean;
}

export interface FiguresDataset extends Dataset {
  attributes(i: number): FigureAttributes;
}

/** A rendered image ([-1, 1] floats) as bytes: round((v + 1) * 127.5). */
export function quantizeImage(image: Float32Array, out = new Uint8Array(image.length)): Uint8Array {
  for (let i = 0; i < image.length; i++) out[i] = Math.round((Math.min(1, Math.max(-1, image[i]!)) + 1) * 127.5);
  return out;
}

/** Bytes back to [-1, 1] floats. */
export function dequantizeImage(bytes: Uint8Array, out = new Float32Array(bytes.length)): Float32Array {
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i]! / 127.5 - 1;
  return out;
}

/** `n` procedural figures; synchronous (`get` renders, `load` has nothing to do). */
export function figuresDataset(n: number, options: FiguresDatasetOptions = {}): FiguresDataset {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`figuresDataset: n must be an integer >= 1, got ${n}`);
  const size = options.size ?? 32;
  if (!Number.isInteger(size) || size < 8) throw new RangeError(`figuresDataset: size must be an integer >= 8, got ${size}`);
  const seed = options.seed ?? 0;
  const identities = options.identities;
  if (identities !== undefined && (!Number.isInteger(identities) || identities < 1)) {
    throw new RangeError(`figuresDataset: identities must be an integer >= 1, got ${identities}`);
  }
  const cacheAll = options.cache ?? n * 3 * size * size * 4 <= 256 * 1024 * 1024;
  const cache = new Map<number, Float32Array>();
  const attributes = (i: number): FigureAttributes => {
    if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`figuresDataset: index ${i} out of range [0, ${n})`);
    return figureAttributesAt(seed, i, identities);
  };
  return {
    size: n,
    imageSize: size,
    attributes,
    caption: (i) => captionFor(attributes(i)),
    get(i): Example {
      const attrs = attributes(i);
      let image = cache.get(i);
      if (image === undefined) {
        image = renderFigure(attrs, size);
        if (cacheAll) cache.set(i, image);
      }
      return { image, caption: captionFor(attrs) };
    },
    load: async () => {},
  };
}
