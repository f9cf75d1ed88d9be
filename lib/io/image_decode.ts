// Decoding image files with sharp into RGB bytes, CHW: EXIF orientation applied, alpha flattened
// onto white, shorter side resized (Lanczos), a square cropped. It imports nothing but sharp, so
// decode threads (FolderStream's workers) can load it without the native tensor addon;
// lib/io/images.ts maps the same bytes to [-1, 1].
import sharp from 'sharp';

export type CropMode = 'center' | 'random';

export interface LoadImageOptions {
  /** Output side in pixels: the shorter side is resized to it, then a square is cropped. */
  size: number;
  /** Which square to keep from the longer side (default 'center'). */
  crop?: CropMode;
  /** Seed of the random crop (default 0). */
  seed?: number;
}

export function describeSource(source: string | Buffer): string {
  return typeof source === 'string' ? source : `<buffer of ${source.length} bytes>`;
}

export function checkSize(op: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw new RangeError(`${op}: ${name} must be an integer >= 1, got ${String(value)}`);
  return value;
}

/** Offset of a random crop: mulberry32's first draw from `seed`. */
function randomOffset(range: number, seed: number): number {
  if (range <= 0) return 0;
  let t = (seed + 0x6d2b79f5) >>> 0;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  return Math.floor(u * (range + 1));
}

/**
 * Decodes an image file (or encoded bytes) to `size` x `size` RGB bytes, CHW, written into `out`
 * (3 * size * size bytes) when given. Errors name `op` and the source.
 */
export async function decodeImageBytes(source: string | Buffer, options: LoadImageOptions, op = 'decodeImageBytes', out?: Uint8Array): Promise<Uint8Array> {
  const size = checkSize(op, 'size', options.size);
  const crop = options.crop ?? 'center';
  if (crop !== 'center' && crop !== 'random') throw new RangeError(`${op}: crop must be 'center' or 'random', got ${String(crop)}`);
  const plane = size * size;
  if (out !== undefined && out.length !== 3 * plane) throw new RangeError(`${op}: out holds ${out.length} bytes, expected ${3 * plane}`);
  let raw: { data: Buffer; info: sharp.OutputInfo };
  try {
    raw = await sharp(source)
      .rotate()
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .toColourspace('srgb')
      .resize({ width: size, height: size, fit: 'outside', kernel: 'lanczos3' })
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw new Error(`${op}: cannot decode ${describeSource(source)}: ${(error as Error).message}`, { cause: error });
  }
  const { width, height, channels } = raw.info;
  const seed = options.seed ?? 0;
  const x0 = crop === 'center' ? Math.floor((width - size) / 2) : randomOffset(width - size, seed);
  const y0 = crop === 'center' ? Math.floor((height - size) / 2) : randomOffset(height - size, seed ^ 0x9e3779b9);
  const bytes = out ?? new Uint8Array(3 * plane);
  const data = raw.data;
  // Grey images decode with one channel: repeat it.
  const g = channels >= 3 ? 1 : 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = ((y0 + y) * width + x0 + x) * channels;
      const o = y * size + x;
      bytes[o] = data[i]!;
      bytes[plane + o] = data[i + g]!;
      bytes[2 * plane + o] = data[i + 2 * g]!;
    }
  }
  return bytes;
}

export interface DecodedFiles {
  /** The images one after another, 3 * size * size bytes each (CHW); a failed file's bytes are zero. */
  bytes: Uint8Array;
  /** The files that could not be decoded, by their position in the list, with sharp's reason. */
  failed: { slot: number; reason: string }[];
}

/** Decodes files (center crop), `concurrency` at a time; a file that fails is reported, not thrown. */
export async function decodeImageFiles(files: readonly string[], size: number, concurrency = 4): Promise<DecodedFiles> {
  const per = 3 * size * size;
  const bytes = new Uint8Array(files.length * per);
  const failed: DecodedFiles['failed'] = [];
  let next = 0;
  const decodeNext = async (): Promise<void> => {
    for (let slot = next++; slot < files.length; slot = next++) {
      try {
        await decodeImageBytes(files[slot]!, { size }, 'decode', bytes.subarray(slot * per, (slot + 1) * per));
      } catch (error) {
        const { cause, message } = error as Error;
        failed.push({ slot, reason: cause instanceof Error ? cause.message : message });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, files.length)) }, decodeNext));
  failed.sort((a, b) => a.slot - b.slot);
  return { bytes, failed };
}
