// Image files through sharp: decoding into the library's image layout (RGB, CHW, Float32 in
// [-1, 1]) and writing PNGs and labelled sample grids. Writes are atomic: a temporary file in the
// same directory, then a rename, so a reader never sees half a PNG.
import sharp from 'sharp';
import { Tensor } from '../tensor.js';
import { atomicWriteFile } from './atomic.js';
import { checkSize, decodeImageBytes, type LoadImageOptions } from './image_decode.js';

export type { CropMode, LoadImageOptions } from './image_decode.js';

/** A host image in the library's layout: CHW, values in [-1, 1]. */
export interface ImageData {
  data: Float32Array;
  channels: 3;
  height: number;
  width: number;
}

/**
 * Decodes an image file (or encoded bytes): EXIF orientation applied, alpha flattened onto white,
 * shorter side resized to `size` (Lanczos), then a `size` x `size` crop; bytes b become b / 127.5 - 1.
 */
export async function loadImage(source: string | Buffer, options: LoadImageOptions): Promise<Float32Array> {
  const bytes = await decodeImageBytes(source, options, 'loadImage');
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i]! / 127.5 - 1;
  return out;
}

function toByte(v: number): number {
  const b = Math.round((v + 1) * 127.5);
  return b < 0 ? 0 : b > 255 ? 255 : b;
}

/** Interleaved RGB bytes of a CHW [-1, 1] image, upscaled by nearest neighbour. */
function toRgbBytes(image: ImageData, upscale: number): Buffer {
  const { data, height, width } = image;
  const W = width * upscale;
  const H = height * upscale;
  const out = Buffer.alloc(W * H * 3);
  const plane = height * width;
  for (let y = 0; y < H; y++) {
    const sy = Math.floor(y / upscale);
    for (let x = 0; x < W; x++) {
      const s = sy * width + Math.floor(x / upscale);
      const o = (y * W + x) * 3;
      out[o] = toByte(data[s]!);
      out[o + 1] = toByte(data[plane + s]!);
      out[o + 2] = toByte(data[2 * plane + s]!);
    }
  }
  return out;
}

export interface ImageShape {
  height?: number;
  width?: number;
}

/** Accepts a [3,H,W] tensor or a CHW Float32Array (square unless height/width say otherwise). */
export function asImageData(image: Tensor | Float32Array, op: string, shape: ImageShape = {}): ImageData {
  if (image instanceof Tensor) {
    if (image.ndim !== 3 || image.shape[0] !== 3) throw new RangeError(`${op}: image has shape [${image.shape.join(', ')}], expected [3, height, width]`);
    if (image.dtype === 'i32') throw new TypeError(`${op}: image has dtype i32, expected f32 or bf16`);
    return { data: image.toArray() as Float32Array, channels: 3, height: image.shape[1]!, width: image.shape[2]! };
  }
  if (!(image instanceof Float32Array)) throw new TypeError(`${op}: image must be a Tensor [3, H, W] or a Float32Array (CHW)`);
  const pixels = image.length / 3;
  let { height, width } = shape;
  if (height === undefined && width === undefined) {
    height = width = Math.round(Math.sqrt(pixels));
  } else if (height === undefined) {
    height = pixels / width!;
  } else if (width === undefined) {
    width = pixels / height;
  }
  if (!Number.isInteger(pixels) || !Number.isInteger(height) || !Number.isInteger(width) || height! * width! * 3 !== image.length) {
    throw new RangeError(`${op}: a Float32Array of ${image.length} values is not a 3 x ${height} x ${width} image (give height/width for non-square images)`);
  }
  return { data: image, channels: 3, height: height!, width: width! };
}

export interface ImageToPngOptions extends ImageShape {
  /** Nearest-neighbour upscale factor (default 1). */
  upscale?: number;
}

/** Writes one CHW [-1, 1] image as a PNG (atomically). */
export async function imageToPng(image: Tensor | Float32Array, file: string, options: ImageToPngOptions = {}): Promise<void> {
  const img = asImageData(image, 'imageToPng', options);
  const upscale = checkSize('imageToPng', 'upscale', options.upscale ?? 1);
  const png = await sharp(toRgbBytes(img, upscale), { raw: { width: img.width * upscale, height: img.height * upscale, channels: 3 } })
    .png()
    .toBuffer();
  atomicWriteFile(file, png);
}

export interface ImageGridOptions {
  /** Cells per row (default: ceil(sqrt(N))). */
  cols?: number;
  /** One label per image, written under its cell (wrapped to the cell width). */
  labels?: readonly string[];
  /** Nearest-neighbour upscale factor per cell (default: enough to make cells about 256 px wide). */
  upscale?: number;
  /** Label font size in pixels (default 12). */
  fontSize?: number;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** Greedy word wrap to at most `perLine` characters (a long word is cut). */
export function wrapLabel(text: string, perLine: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w.length > 0)) {
    let w = word;
    while (w.length > perLine) {
      if (line) lines.push(line);
      lines.push(w.slice(0, perLine));
      w = w.slice(perLine);
      line = '';
    }
    if (!line) line = w;
    else if (line.length + 1 + w.length <= perLine) line += ` ${w}`;
    else {
      lines.push(line);
      line = w;
    }
  }
  if (line) lines.push(line);
  return lines;
}

function gridImages(images: Tensor | readonly Float32Array[]): ImageData[] {
  if (images instanceof Tensor) {
    if (images.ndim !== 4 || images.shape[1] !== 3) throw new RangeError(`saveImageGrid: images has shape [${images.shape.join(', ')}], expected [N, 3, height, width]`);
    if (images.dtype === 'i32') throw new TypeError('saveImageGrid: images has dtype i32, expected f32 or bf16');
    const [n, , h, w] = images.shape as [number, number, number, number];
    const all = images.toArray() as Float32Array;
    const per = 3 * h * w;
    return Array.from({ length: n }, (_, i) => ({ data: all.subarray(i * per, (i + 1) * per), channels: 3 as const, height: h, width: w }));
  }
  if (!Array.isArray(images)) throw new TypeError('saveImageGrid: images must be a Tensor [N, 3, H, W] or an array of CHW Float32Arrays');
  return images.map((image, i) => asImageData(image, `saveImageGrid: image ${i}`));
}

/** Writes images as one PNG grid, each cell with its label underneath (atomically). */
export async function saveImageGrid(file: string, images: Tensor | readonly Float32Array[], options: ImageGridOptions = {}): Promise<void> {
  const cells = gridImages(images);
  if (cells.length === 0) throw new RangeError('saveImageGrid: no images');
  const first = cells[0]!;
  for (const [i, c] of cells.entries()) {
    if (c.height !== first.height || c.width !== first.width) throw new RangeError(`saveImageGrid: image ${i} is ${c.height}x${c.width}, image 0 is ${first.height}x${first.width}`);
  }
  const { labels } = options;
  if (labels !== undefined && labels.length !== cells.length) throw new RangeError(`saveImageGrid: ${labels.length} labels for ${cells.length} images`);
  const cols = checkSize('saveImageGrid', 'cols', options.cols ?? Math.ceil(Math.sqrt(cells.length)));
  const upscale = checkSize('saveImageGrid', 'upscale', options.upscale ?? Math.max(1, Math.round(256 / first.width)));
  const fontSize = options.fontSize ?? 12;
  const rows = Math.ceil(cells.length / cols);
  const gap = 4;
  const cellW = first.width * upscale;
  const cellH = first.height * upscale;
  // DejaVu Sans averages about 0.55 em per character.
  const perLine = Math.max(8, Math.floor((cellW - 4) / (fontSize * 0.55)));
  const wrapped = (labels ?? []).map((label) => wrapLabel(label, perLine));
  const lineHeight = Math.ceil(fontSize * 1.25);
  const labelH = labels === undefined ? 0 : Math.max(1, ...wrapped.map((l) => l.length)) * lineHeight + 6;
  const width = cols * cellW + (cols + 1) * gap;
  const height = rows * (cellH + labelH) + (rows + 1) * gap;
  const composites: sharp.OverlayOptions[] = cells.map((img, i) => ({
    input: toRgbBytes(img, upscale),
    raw: { width: cellW, height: cellH, channels: 3 },
    left: gap + (i % cols) * (cellW + gap),
    top: gap + Math.floor(i / cols) * (cellH + labelH + gap),
  }));
  if (labels !== undefined) {
    const text: string[] = [];
    wrapped.forEach((lines, i) => {
      const x = gap + (i % cols) * (cellW + gap) + 2;
      const y = gap + Math.floor(i / cols) * (cellH + labelH + gap) + cellH + 3 + fontSize;
      lines.forEach((line, k) => text.push(`<text x="${x}" y="${y + k * lineHeight}">${escapeXml(line)}</text>`));
    });
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><g font-family="DejaVu Sans, Arial, sans-serif" font-size="${fontSize}" fill="#111">${text.join('')}</g></svg>`;
    composites.push({ input: Buffer.from(svg), left: 0, top: 0 });
  }
  const png = await sharp({ create: { width, height, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite(composites)
    .png()
    .toBuffer();
  atomicWriteFile(file, png);
}

/**
 * Resamples a CHW image to `toH` x `toW`: area averaging when shrinking (exact box filter for
 * integer factors), bilinear when enlarging.
 */
export function resizeImage(data: Float32Array, fromH: number, fromW: number, toH: number, toW: number): Float32Array {
  if (data.length !== 3 * fromH * fromW) throw new RangeError(`resizeImage: ${data.length} values is not a 3 x ${fromH} x ${fromW} image`);
  if (fromH === toH && fromW === toW) return data.slice();
  const out = new Float32Array(3 * toH * toW);
  const axis = (from: number, to: number) => {
    // Per output index, the source indices and weights along one axis.
    const taps: { index: number[]; weight: number[] }[] = [];
    for (let o = 0; o < to; o++) {
      const index: number[] = [];
      const weight: number[] = [];
      if (to < from) {
        const lo = (o * from) / to;
        const hi = ((o + 1) * from) / to;
        for (let s = Math.floor(lo); s < Math.ceil(hi); s++) {
          const w = Math.min(hi, s + 1) - Math.max(lo, s);
          if (w > 1e-9) {
            index.push(s);
            weight.push(w / (hi - lo));
          }
        }
      } else {
        const x = Math.max(0, Math.min(from - 1, ((o + 0.5) * from) / to - 0.5));
        const s = Math.floor(x);
        const f = x - s;
        index.push(s, Math.min(from - 1, s + 1));
        weight.push(1 - f, f);
      }
      taps.push({ index, weight });
    }
    return taps;
  };
  const rows = axis(fromH, toH);
  const cols = axis(fromW, toW);
  for (let c = 0; c < 3; c++) {
    const src = c * fromH * fromW;
    const dst = c * toH * toW;
    for (let y = 0; y < toH; y++) {
      const ry = rows[y]!;
      for (let x = 0; x < toW; x++) {
        const cx = cols[x]!;
        let sum = 0;
        for (let a = 0; a < ry.index.length; a++) {
          const rowBase = src + ry.index[a]! * fromW;
          let rowSum = 0;
          for (let b = 0; b < cx.index.length; b++) rowSum += data[rowBase + cx.index[b]!]! * cx.weight[b]!;
          sum += rowSum * ry.weight[a]!;
        }
        out[dst + y * toW + x] = sum;
      }
    }
  }
  return out;
}
