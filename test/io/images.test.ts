import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { imageToPng, loadImage, resizeImage, saveImageGrid, wrapLabel } from '../../lib/io/images.js';
import { fromArray } from '../../lib/tensor.js';
import { checkMemoryGuards, expectClose, rng } from '../helpers.js';

checkMemoryGuards();

const scratch = mkdtempSync(path.join(tmpdir(), 'realtune-images-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Interleaved RGB bytes, value = f(x, y, channel). */
function rawImage(width: number, height: number, f: (x: number, y: number, c: number) => number): Buffer {
  const out = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) out[(y * width + x) * 3 + c] = f(x, y, c);
  return out;
}

async function png(width: number, height: number, f: (x: number, y: number, c: number) => number): Promise<Buffer> {
  return sharp(rawImage(width, height, f), { raw: { width, height, channels: 3 } }).png().toBuffer();
}

const pattern = (x: number, y: number, c: number) => (x * 31 + y * 17 + c * 71) % 256;

describe('loadImage', () => {
  it('decodes exactly when no resize is needed, centre crop of the longer side, CHW in [-1, 1]', async () => {
    const image = await loadImage(await png(8, 4, pattern), { size: 4 });
    expect(image.length).toBe(3 * 4 * 4);
    for (let c = 0; c < 3; c++) for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) expect(image[c * 16 + y * 4 + x]).toBeCloseTo(pattern(x + 2, y, c) / 127.5 - 1, 6);
    const tall = await loadImage(await png(4, 10, pattern), { size: 4 });
    for (let y = 0; y < 4; y++) expect(tall[y * 4 + 1]).toBeCloseTo(pattern(1, y + 3, 0) / 127.5 - 1, 6);
  });

  it('random crops are seeded: the same seed the same window, seeds cover several windows', async () => {
    const source = await png(12, 4, pattern);
    const a = await loadImage(source, { size: 4, crop: 'random', seed: 5 });
    expect(await loadImage(source, { size: 4, crop: 'random', seed: 5 })).toEqual(a);
    const offsets = new Set<number>();
    for (let seed = 0; seed < 24; seed++) {
      const img = await loadImage(source, { size: 4, crop: 'random', seed });
      const x0 = [...Array(9).keys()].find((dx) => Math.abs(img[0]! - (pattern(dx, 0, 0) / 127.5 - 1)) < 1e-6);
      expect(x0, `seed ${seed}`).toBeDefined();
      offsets.add(x0!);
    }
    expect(offsets.size).toBeGreaterThan(3);
  });

  it('resizes the shorter side to size (a constant image stays constant; grey decodes to equal channels)', async () => {
    const flat = await loadImage(await png(40, 20, (_x, _y, c) => [200, 100, 50][c]!), { size: 8 });
    expectClose(flat.subarray(0, 64), new Float32Array(64).fill(200 / 127.5 - 1), { atol: 1e-6 });
    expectClose(flat.subarray(128), new Float32Array(64).fill(50 / 127.5 - 1), { atol: 1e-6 });
    const grey = await sharp(Buffer.alloc(16 * 16, 90), { raw: { width: 16, height: 16, channels: 1 } }).png().toBuffer();
    const g = await loadImage(grey, { size: 4 });
    expectClose(g, new Float32Array(48).fill(90 / 127.5 - 1), { atol: 1e-6 });
    const file = path.join(scratch, 'photo.jpg');
    await sharp(rawImage(30, 30, () => 128), { raw: { width: 30, height: 30, channels: 3 } }).jpeg().toFile(file);
    expectClose(await loadImage(file, { size: 6 }), new Float32Array(108).fill(128 / 127.5 - 1), { atol: 0.03 });
  });

  it('names what it could not decode and rejects bad options', async () => {
    await expect(loadImage(path.join(scratch, 'missing.png'), { size: 4 })).rejects.toThrow(/loadImage: cannot decode .*missing\.png/);
    await expect(loadImage(Buffer.from('not an image'), { size: 4 })).rejects.toThrow(/cannot decode <buffer of 12 bytes>/);
    await expect(loadImage(await png(4, 4, pattern), { size: 0 })).rejects.toThrow(/size must be an integer >= 1, got 0/);
    await expect(loadImage(await png(4, 4, pattern), { size: 4, crop: 'middle' as 'center' })).rejects.toThrow(/crop must be 'center' or 'random'/);
  });
});

describe('imageToPng', () => {
  it('round-trips through loadImage (8-bit quantisation), from a Float32Array or a tensor', async () => {
    const random = rng();
    const data = new Float32Array(3 * 5 * 5).map(() => Math.round(random() * 255) / 127.5 - 1);
    const file = path.join(scratch, 'round.png');
    await imageToPng(data, file);
    expectClose(await loadImage(file, { size: 5 }), data, { atol: 1e-6 });
    const tensor = fromArray(data, [3, 5, 5]);
    await imageToPng(tensor, file, { upscale: 3 });
    tensor.dispose();
    const meta = await sharp(file).metadata();
    expect([meta.width, meta.height]).toEqual([15, 15]);
    expect(readdirSync(scratch).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('writes non-square images when told the height, clamps out-of-range values, rejects bad shapes', async () => {
    const data = new Float32Array(3 * 2 * 6).fill(2);
    const file = path.join(scratch, 'wide.png');
    await imageToPng(data, file, { height: 2 });
    const { data: bytes, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([6, 2]);
    expect([...bytes].every((b) => b === 255)).toBe(true);
    await expect(imageToPng(new Float32Array(3 * 2 * 6), file)).rejects.toThrow(/36 values is not a 3 x 3 x 3 image/);
    const wrong = fromArray(new Float32Array(16), [4, 2, 2]);
    await expect(imageToPng(wrong, file)).rejects.toThrow(/image has shape \[4, 2, 2\], expected \[3, height, width\]/);
    wrong.dispose();
  });
});

describe('saveImageGrid', () => {
  const colors = [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [255, 255, 0],
    [0, 0, 0],
  ];
  const images = colors.map(([r, g, b]) => {
    const out = new Float32Array(3 * 8 * 8);
    out.fill(r! / 127.5 - 1, 0, 64);
    out.fill(g! / 127.5 - 1, 64, 128);
    out.fill(b! / 127.5 - 1, 128);
    return out;
  });

  it('lays cells out in rows with gaps, each cell upscaled; labels add dark text under each cell', async () => {
    const plain = path.join(scratch, 'grid.png');
    await saveImageGrid(plain, images, { cols: 3, upscale: 2 });
    const { data, info } = await sharp(plain).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([3 * 16 + 4 * 4, 2 * 16 + 3 * 4]);
    const at = (x: number, y: number) => [...data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3)];
    // Cell k's centre: left = 4 + (k % 3) * 20, top = 4 + floor(k / 3) * 20.
    colors.forEach((c, k) => expect(at(4 + (k % 3) * 20 + 8, 4 + Math.floor(k / 3) * 20 + 8), `cell ${k}`).toEqual(c));
    expect(at(1, 1)).toEqual([255, 255, 255]);

    const labelled = path.join(scratch, 'labelled.png');
    const labels = ['red one', 'green', 'blue', 'a yellow square with a longer label that wraps onto more lines', 'black'];
    const tensor = fromArray(Float32Array.from(images.flatMap((i) => [...i])), [5, 3, 8, 8]);
    await saveImageGrid(labelled, tensor, { cols: 3, upscale: 8, labels });
    tensor.dispose();
    const grid = await sharp(labelled).raw().toBuffer({ resolveWithObject: true });
    const cellW = 64;
    expect(grid.info.width).toBe(3 * cellW + 4 * 4);
    expect(grid.info.height).toBeGreaterThan(2 * cellW + 3 * 4 + 2 * 3 * 12);
    // The label strip under cell 0 holds dark (text) pixels; the strip under the empty sixth slot does not.
    const darkIn = (x0: number, y0: number, w: number, h: number) => {
      let dark = 0;
      for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) if (grid.data[(y * grid.info.width + x) * grid.info.channels]! < 100) dark++;
      return dark;
    };
    expect(darkIn(4, 4 + cellW + 2, cellW, 14)).toBeGreaterThan(20);
    expect(darkIn(4 + 2 * (cellW + 4), 4 + 2 * cellW + 4 + 60, cellW, 14)).toBe(0);
    expect(readdirSync(scratch).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('rejects mismatched labels, sizes and shapes', async () => {
    const file = path.join(scratch, 'bad.png');
    await expect(saveImageGrid(file, images, { labels: ['one'] })).rejects.toThrow(/1 labels for 5 images/);
    await expect(saveImageGrid(file, [images[0]!, new Float32Array(3 * 4 * 4)])).rejects.toThrow(/image 1 is 4x4, image 0 is 8x8/);
    await expect(saveImageGrid(file, [])).rejects.toThrow(/no images/);
    const t = fromArray(new Float32Array(3 * 4 * 4), [3, 4, 4]);
    await expect(saveImageGrid(file, t)).rejects.toThrow(/expected \[N, 3, height, width\]/);
    t.dispose();
    expect(existsSync(file)).toBe(false);
  });

  it('wraps labels on word boundaries, cutting words longer than a line', () => {
    expect(wrapLabel('a person with brown skin', 10)).toEqual(['a person', 'with brown', 'skin']);
    expect(wrapLabel('abcdefghijkl xy', 5)).toEqual(['abcde', 'fghij', 'kl xy']);
    expect(wrapLabel('  ', 5)).toEqual([]);
  });
});

describe('resizeImage', () => {
  it('box-averages integer downsampling exactly, keeps constants when enlarging, copies at equal size', () => {
    const random = rng();
    const src = new Float32Array(3 * 4 * 6).map(() => random() * 2 - 1);
    const half = resizeImage(src, 4, 6, 2, 3);
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 2; y++) {
        for (let x = 0; x < 3; x++) {
          const at = (yy: number, xx: number) => src[c * 24 + yy * 6 + xx]!;
          const mean = (at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) + at(2 * y + 1, 2 * x + 1)) / 4;
          expect(half[c * 6 + y * 3 + x]).toBeCloseTo(mean, 6);
        }
      }
    }
    const third = resizeImage(new Float32Array(3 * 9 * 9).fill(0.25), 9, 9, 4, 4);
    expectClose(third, new Float32Array(48).fill(0.25), { atol: 1e-6 });
    const big = resizeImage(new Float32Array(3 * 2 * 2).fill(-0.5), 2, 2, 5, 7);
    expectClose(big, new Float32Array(3 * 5 * 7).fill(-0.5), { atol: 1e-6 });
    const same = resizeImage(src, 4, 6, 4, 6);
    expect(same).toEqual(src);
    expect(same).not.toBe(src);
    expect(() => resizeImage(src, 4, 4, 2, 2)).toThrow(/72 values is not a 3 x 4 x 4 image/);
  });
});
