import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { batchOf, folderDataset, jsonlDataset, shuffledIndices } from '../../lib/data/dataset.js';
import { figuresDataset } from '../../lib/data/figures.js';
import { resizeImage } from '../../lib/io/images.js';
import { checkMemoryGuards, expectClose, testSeed } from '../helpers.js';

checkMemoryGuards();

const scratch = mkdtempSync(path.join(tmpdir(), 'realtune-data-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A solid-colour PNG, so a decoded image says which file it came from. */
async function solidPng(file: string, rgb: readonly [number, number, number], width = 12, height = 10): Promise<void> {
  const bytes = Buffer.alloc(width * height * 3);
  for (let i = 0; i < width * height; i++) bytes.set(rgb, i * 3);
  await sharp(bytes, { raw: { width, height, channels: 3 } }).png().toFile(file);
}

const toUnit = (v: number) => v / 127.5 - 1;

describe('shuffledIndices', () => {
  it('is a permutation, fixed by the seed, different across seeds', () => {
    const a = shuffledIndices(50, testSeed);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
    expect(shuffledIndices(50, testSeed)).toEqual(a);
    expect(shuffledIndices(50, testSeed + 1)).not.toEqual(a);
    expect(a).not.toEqual([...Array(50).keys()]);
    expect(shuffledIndices(0, 1)).toEqual([]);
    expect(() => shuffledIndices(-1, 1)).toThrow(/n must be an integer >= 0, got -1/);
  });
});

describe('batchOf', () => {
  it('stacks examples into [N, 3, H, W] on the device, in the order of the indices', async () => {
    const data = figuresDataset(5, { size: 16, seed: testSeed });
    const { images, captions } = await batchOf(data, [3, 0, 3], { device: 'cpu' });
    expect(images.shape).toEqual([3, 3, 16, 16]);
    expect(images.device).toBe('cpu');
    const host = images.toArray();
    images.dispose();
    [3, 0, 3].forEach((index, k) => {
      expect(captions[k]).toBe(data.get(index).caption);
      expectClose(host.subarray(k * 768, (k + 1) * 768), data.get(index).image, { atol: 0 });
    });
  });

  it('resamples to a requested size and names bad indices', async () => {
    const data = figuresDataset(2, { size: 16, seed: testSeed });
    const { images } = await batchOf(data, [1], { size: 8 });
    expect(images.shape).toEqual([1, 3, 8, 8]);
    expectClose(images.toArray(), resizeImage(data.get(1).image, 16, 16, 8, 8), { atol: 1e-6 });
    images.dispose();
    await expect(batchOf(data, [0, 2])).rejects.toThrow(/batchOf: index 2 out of range \[0, 2\)/);
    await expect(batchOf(data, [])).rejects.toThrow(/indices is empty/);
  });
});

describe('folderDataset', () => {
  it('pairs images with same-name captions, decodes lazily on load and caches', async () => {
    const dir = path.join(scratch, 'folder');
    mkdirSync(dir);
    await solidPng(path.join(dir, 'b.png'), [0, 255, 0]);
    await solidPng(path.join(dir, 'a.png'), [255, 0, 0]);
    await sharp(Buffer.alloc(8 * 8 * 3, 255), { raw: { width: 8, height: 8, channels: 3 } }).webp({ lossless: true }).toFile(path.join(dir, 'c.webp'));
    writeFileSync(path.join(dir, 'a.txt'), 'a red square\n');
    writeFileSync(path.join(dir, 'b.txt'), 'a green square');
    writeFileSync(path.join(dir, 'c.txt'), 'white');
    writeFileSync(path.join(dir, 'notes.md'), 'not data');
    const data = await folderDataset(dir, { size: 4 });
    expect(data.size).toBe(3);
    expect(data.imageSize).toBe(4);
    expect([0, 1, 2].map((i) => data.caption(i))).toEqual(['a red square', 'a green square', 'white']);
    expect(() => data.get(0)).toThrow(/folderDataset: image 0 \(.*a\.png\) is not loaded yet: await dataset\.load\(\[0\]\) first/);
    await data.load([1]);
    expectClose(data.get(1).image, Float32Array.from({ length: 48 }, (_, k) => (k >= 16 && k < 32 ? toUnit(255) : toUnit(0))), { atol: 1e-6 });
    expect(() => data.get(0)).toThrow(/not loaded yet/);
    expect(data.get(1).image).toBe(data.get(1).image);
    const { images, captions } = await batchOf(data, [2, 0]);
    expect(captions).toEqual(['white', 'a red square']);
    const host = images.toArray();
    images.dispose();
    expectClose(host.subarray(0, 48), new Float32Array(48).fill(1), { atol: 1e-6 });
    expect(host[48]).toBeCloseTo(1, 6);
    expect(host[48 + 16]).toBeCloseTo(-1, 6);
  });

  it('a missing caption names the image; an empty or missing folder is named', async () => {
    const dir = path.join(scratch, 'uncaptioned');
    mkdirSync(dir);
    await solidPng(path.join(dir, 'one.png'), [1, 2, 3]);
    await solidPng(path.join(dir, 'two.jpg'), [1, 2, 3]);
    writeFileSync(path.join(dir, 'one.txt'), 'one');
    await expect(folderDataset(dir, { size: 4 })).rejects.toThrow(/image .*two\.jpg has no caption file .*two\.txt/);
    const empty = path.join(scratch, 'empty');
    mkdirSync(empty);
    await expect(folderDataset(empty, { size: 4 })).rejects.toThrow(/no images .* in .*empty/);
    await expect(folderDataset(path.join(scratch, 'nowhere'), { size: 4 })).rejects.toThrow(/cannot read directory .*nowhere/);
  });

  it('random crops are fixed per example by the seed', async () => {
    const dir = path.join(scratch, 'crops');
    mkdirSync(dir);
    const width = 16;
    const bytes = Buffer.alloc(width * 4 * 3);
    for (let i = 0; i < width * 4; i++) bytes.set([(i % width) * 16, 0, 0], i * 3);
    await sharp(bytes, { raw: { width, height: 4, channels: 3 } }).png().toFile(path.join(dir, 'ramp.png'));
    writeFileSync(path.join(dir, 'ramp.txt'), 'ramp');
    const firstPixel = async (seed: number) => {
      const d = await folderDataset(dir, { size: 4, crop: 'random', seed });
      await d.load();
      return d.get(0).image[0]!;
    };
    const seen = new Set<number>();
    for (let seed = 0; seed < 12; seed++) seen.add(await firstPixel(seed));
    expect(seen.size).toBeGreaterThan(2);
    expect(await firstPixel(3)).toBe(await firstPixel(3));
  });
});

describe('jsonlDataset', () => {
  it('reads image paths relative to the manifest, skipping blank lines', async () => {
    const dir = path.join(scratch, 'manifest');
    mkdirSync(path.join(dir, 'img'), { recursive: true });
    await solidPng(path.join(dir, 'img', 'blue.png'), [0, 0, 255]);
    await solidPng(path.join(dir, 'img', 'grey.png'), [127, 127, 127]);
    const file = path.join(dir, 'data.jsonl');
    writeFileSync(file, '{"image": "img/blue.png", "caption": "blue"}\n\n{"image": "img/grey.png", "caption": "grey", "extra": 1}\n');
    const data = await jsonlDataset(file, { size: 2 });
    expect(data.size).toBe(2);
    expect(data.caption(1)).toBe('grey');
    const { images } = await batchOf(data, [0, 1]);
    const host = images.toArray();
    images.dispose();
    expectClose(host.subarray(8, 12), new Float32Array(4).fill(1), { atol: 1e-6 });
    expectClose(host.subarray(12), new Float32Array(12).fill(toUnit(127)), { atol: 1e-6 });
  });

  it('errors name the file and the line', async () => {
    const dir = path.join(scratch, 'bad-manifests');
    mkdirSync(dir);
    await solidPng(path.join(dir, 'ok.png'), [0, 0, 0]);
    const write = (name: string, text: string) => {
      const file = path.join(dir, name);
      writeFileSync(file, text);
      return file;
    };
    const ok = '{"image": "ok.png", "caption": "fine"}\n';
    await expect(jsonlDataset(write('json.jsonl', `${ok}{"image": "ok.png",\n`), { size: 2 })).rejects.toThrow(/json\.jsonl:2: not valid JSON/);
    await expect(jsonlDataset(write('array.jsonl', `${ok}${ok}[1, 2]\n`), { size: 2 })).rejects.toThrow(/array\.jsonl:3: expected an object/);
    await expect(jsonlDataset(write('image.jsonl', '{"caption": "x"}\n'), { size: 2 })).rejects.toThrow(/image\.jsonl:1: "image" must be a non-empty string path/);
    await expect(jsonlDataset(write('caption.jsonl', `\n${ok}{"image": "ok.png", "caption": 3}\n`), { size: 2 })).rejects.toThrow(/caption\.jsonl:3: "caption" must be a string/);
    await expect(jsonlDataset(write('missing.jsonl', `${ok}{"image": "gone.png", "caption": "x"}\n`), { size: 2 })).rejects.toThrow(/missing\.jsonl:2: image .*gone\.png does not exist/);
    await expect(jsonlDataset(write('empty.jsonl', '\n\n'), { size: 2 })).rejects.toThrow(/empty\.jsonl has no entries/);
    await expect(jsonlDataset(path.join(dir, 'absent.jsonl'), { size: 2 })).rejects.toThrow(/cannot read .*absent\.jsonl/);
  });
});
