// The dataset interface the training loops consume, and batching onto a device.
import { fromArray, type Tensor } from '../tensor.js';
import type { DeviceRequest } from '../device.js';

/** One training example: an RGB image, CHW, values in [-1, 1], and its caption. */
export interface Example {
  image: Float32Array;
  caption: string;
}

/**
 * A finite, indexable set of examples at one square image size.
 *
 * `get(i)` is synchronous. Datasets backed by files decode images with sharp, which is
 * asynchronous, so they decode lazily in `load(indices)` (and cache what they decoded);
 * `get(i)` on an index not loaded yet throws. `batchOf` calls `load` for you. In-memory
 * datasets (procedural figures) resolve `load` at once.
 */
export interface Dataset {
  /** Number of examples. */
  readonly size: number;
  /** Side of every image in pixels (images are 3 x imageSize x imageSize). */
  readonly imageSize: number;
  /** The caption of example i, without decoding its image. */
  caption(i: number): string;
  get(i: number): Example;
  /** Makes `get` ready for these indices (default: all). */
  load(indices?: readonly number[]): Promise<void>;
}
