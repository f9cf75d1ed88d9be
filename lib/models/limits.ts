// Sizes bounded by the shapes and this machine's memory, checked before any work: a count that
// cannot fit (a billion images, a hundred million figures) is an error that says how much it
// would need and how much fits, instead of a V8 out-of-memory crash minutes later.
//
// The estimates are rough upper bounds of what lives at once (activations as the blocks
// allocate them, the host copies of the data); they are meant to tell 10x too large from
// possible, not to predict a run's peak to the megabyte.
import { constants } from 'node:buffer';
import os from 'node:os';
import type { DiTConfig } from '../nn/dit.js';

const bytesPerFloat = 4;

/** The largest host array of floats that can exist (typed arrays and Buffers have a length limit). */
export const maxHostFloats = Math.floor(constants.MAX_LENGTH / bytesPerFloat);

/** What the checks compare against: the machine's physical memory. */
export function machineMemory(): number {
  return os.totalmem();
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

type Shape = Pick<DiTConfig, 'patchSize' | 'channels' | 'width' | 'depth' | 'heads' | 'mlpRatio' | 'contextLength'>;

function perImageTerms(config: Shape, resolution: number): { tokens: number; hidden: number; pixels: number } {
  const grid = resolution / config.patchSize;
  return { tokens: grid * grid, hidden: Math.round(config.width * config.mlpRatio), pixels: config.channels * resolution * resolution };
}

/** Bytes per image of sampling (no graph; guidance doubles the batch): one block's intermediates at a time. */
export function samplingBytesPerImage(config: Shape, resolution: number): number {
  const { tokens, hidden, pixels } = perImageTerms(config, resolution);
  const { width, heads, contextLength } = config;
  const floats = 8 * tokens * width + 2 * tokens * hidden + heads * tokens * (tokens + contextLength) + 8 * pixels;
  return 2 * floats * bytesPerFloat;
}

/** Bytes per image of a training step: every block's activations kept for the backward, and their gradients. */
export function trainingBytesPerImage(config: Shape, resolution: number): number {
  const { tokens, hidden, pixels } = perImageTerms(config, resolution);
  const { width, heads, contextLength, depth } = config;
  const perBlock = 12 * tokens * width + 3 * tokens * hidden + 2 * heads * tokens * (tokens + contextLength);
  return 2 * (depth * perBlock + 10 * pixels) * bytesPerFloat;
}

/** Bytes a training example held in memory takes: its image (3 x side x side floats) and its caption. */
export function exampleBytes(resolution: number): number {
  return 3 * resolution * resolution * bytesPerFloat + 512;
}

/**
 * Fails when `count` items of `bytesEach` bytes do not fit in this machine's memory, naming how
 * much they would need and how many fit. `what` names the count ("--n 1000000000 images").
 */
export function checkCountFits(what: string, count: number, bytesEach: number, unit: string): void {
  const memory = machineMemory();
  const needed = count * bytesEach;
  if (needed <= memory) return;
  const fit = Math.floor(memory / bytesEach);
  throw new RangeError(
    `${what} needs about ${formatBytes(needed)} of memory (${formatBytes(bytesEach)} per ${unit}), more than this machine's ${formatBytes(memory)}: at most about ${fit} ${unit}s fit`,
  );
}

/** The largest parameter groups of a DiT of this config, in floats, by what sets their size. */
function parameterGroups(config: DiTConfig): [string, number][] {
  const { imageSize, patchSize, channels, width, depth, mlpRatio, textWidth, contextLength } = config;
  const tokens = (imageSize / patchSize) ** 2;
  const hidden = Math.round(width * mlpRatio);
  const text = config.text;
  const textHidden = text === undefined ? 0 : Math.round(textWidth * text.mlpRatio);
  return [
    ['the position table, (imageSize / patchSize)^2 x width', tokens * width],
    ['the patch embedding, channels x patchSize^2 x width (twice)', 2 * channels * patchSize * patchSize * width],
    ['the blocks, depth x (14 width^2 + 2 width x width x mlpRatio)', depth * (14 * width * width + 2 * width * hidden)],
    ['the timestep embedding, (timestepDim + width) x width', ((config.timestepDim ?? 256) + width) * width],
    ['the text projections, 2 x textWidth x width', 2 * textWidth * width],
    ['the token embeddings, text.vocabSize x textWidth', text === undefined ? 0 : text.vocabSize * textWidth],
    ['the text positions, contextLength x textWidth', contextLength * textWidth],
    ['the text blocks, text.depth x (4 textWidth^2 + 2 textWidth x textWidth x text.mlpRatio)', text === undefined ? 0 : text.depth * (4 * textWidth * textWidth + 2 * textWidth * textHidden)],
  ];
}

/**
 * Why a DiT of `config` cannot be built on this machine (its weights, held about three times
 * while a checkpoint loads, exceed the memory, or one table exceeds the largest host array),
 * naming the part that is too large; undefined when it fits.
 */
export function ditSizeProblem(config: DiTConfig): string | undefined {
  const groups = parameterGroups(config);
  const total = groups.reduce((n, [, count]) => n + count, 0);
  const [largestName, largest] = groups.reduce((a, b) => (b[1] > a[1] ? b : a));
  const memory = machineMemory();
  if (largest > maxHostFloats) return `${largestName} alone would be ${largest} floats, more than the ${maxHostFloats} one host array can hold`;
  if (3 * total * bytesPerFloat > memory) {
    return `a model of this shape has about ${total} parameters (${formatBytes(total * bytesPerFloat)}; loading holds them about three times), more than this machine's ${formatBytes(memory)} of memory; the largest part is ${largestName}`;
  }
  return undefined;
}
