// FolderStream: a folder of captioned images streamed with flat memory. A folder of 100000
// images is listed once and streamed for many batches while the process's memory stays flat
// (decoded up front at 32x32 as float32 it would take 100000 * 3 * 32 * 32 * 4 bytes = 1.23 GB);
// example k is a pure function of (seed, k) whatever the worker count and take order; each epoch
// draws every file once; a corrupt file is skipped with a message naming it; the values are
// folderDataset's (and jsonlDataset's); and trainBase trains from the stream.
import { linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { folderDataset, jsonlDataset } from '../../lib/data/dataset.js';
import { FolderStream } from '../../lib/data/folder_stream.js';
import { trainBase, type Example } from '../../lib/train/base.js';
import { loadTrainingData, trainingSource, trainTokenizer } from '../../lib/train/data.js';
import { TextToImage } from '../../lib/models/text_to_image.js';
import { checkMemoryGuards, rng, testSeed } from '../helpers.js';

checkMemoryGuards();

const scratch = mkdtempSync(path.join(tmpdir(), 'realtune-folder-stream-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc') as () => void;
const MB = 2 ** 20;

/** A PNG of seeded noise: every image different, so equal bytes mean the same file. */
async function noisePng(file: string, random: () => number, width: number, height: number, channels: 1 | 3 | 4 = 3): Promise<void> {
  const pixels = Buffer.alloc(width * height * channels);
  for (let i = 0; i < pixels.length; i++) pixels[i] = Math.floor(random() * 256);
  await sharp(pixels, { raw: { width, height, channels } }).png().toFile(file);
}

const name = (i: number) => String(i).padStart(6, '0');

/** A small folder of varied images (sizes, grey, alpha) with captions. */
async function smallFolder(dir: string, count: number, seed: number): Promise<void> {
  mkdirSync(dir);
  const random = rng(seed);
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const channels = i % 7 === 3 ? 1 : i % 7 === 5 ? 4 : 3;
      await noisePng(path.join(dir, `${name(i)}.png`), random, 12 + (i % 5) * 3, 10 + (i % 3) * 4, channels);
      writeFileSync(path.join(dir, `${name(i)}.txt`), ` picture ${i} of ${count}\n`);
    }),
  );
}

const sameExamples = (a: readonly Example[], b: readonly Example[]) => {
  expect(a.map((e) => e.caption)).toEqual(b.map((e) => e.caption));
  a.forEach((e, k) => expect(e.image).toEqual(b[k]!.image));
};

describe('FolderStream over 100000 images', () => {
  const total = 100_000;
  /** Distinct images; the 100000 names are hard links to them (a link costs a small fraction of writing a file, and the stream cannot tell). */
  const distinct = 1009;
  const big = path.join(scratch, 'big');

  beforeAll(async () => {
    const started = performance.now();
    const sources = path.join(scratch, 'big-sources');
    mkdirSync(sources);
    mkdirSync(big);
    const random = rng(testSeed);
    await Promise.all(
      Array.from({ length: distinct }, async (_, j) => {
        await noisePng(path.join(sources, `${j}.png`), random, 8, 8);
        writeFileSync(path.join(sources, `${j}.txt`), `picture ${j}`);
      }),
    );
    for (let i = 0; i < total; i++) {
      linkSync(path.join(sources, `${i % distinct}.png`), path.join(big, `${name(i)}.png`));
      linkSync(path.join(sources, `${i % distinct}.txt`), path.join(big, `${name(i)}.txt`));
    }
    console.log(`folder_stream: wrote ${total} images and captions (${distinct} distinct) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  });

  it('lists the folder once and streams many batches at 32x32 with flat memory', async () => {
    const size = 32;
    const batch = 64;
    const eagerBytes = total * 3 * size * size * 4;
    collectGarbage();
    const before = process.memoryUsage();
    const listed = performance.now();
    const stream = await FolderStream.open({ folder: big }, { size, seed: testSeed, workers: 1 });
    const listSeconds = (performance.now() - listed) / 1000;
    expect(stream.count).toBe(total);
    collectGarbage();
    const afterOpen = process.memoryUsage();

    // Batches from four epochs, one ahead as a trainer asks for them; a few first to warm up (threads, sharp, JIT).
    const starts = Array.from({ length: 72 }, (_, b) => (b % 4) * total + Math.floor(b / 4) * batch);
    const warmup = 8;
    let baseline = 0;
    let peak = 0;
    let seen = 0;
    const streamed = performance.now();
    for (let b = 0; b < starts.length; b++) {
      const examples = await stream.take(starts[b]!, batch);
      if (b + 1 < starts.length) stream.prefetch(starts[b + 1]!, batch);
      expect(examples.length).toBe(batch);
      expect(examples[0]!.image.length).toBe(3 * size * size);
      seen += examples.length;
      if (b === warmup - 1) {
        collectGarbage();
        baseline = process.memoryUsage().rss;
      }
      if (b >= warmup) peak = Math.max(peak, process.memoryUsage().rss);
    }
    const streamSeconds = (performance.now() - streamed) / 1000;
    collectGarbage();
    const end = process.memoryUsage();
    await stream.close();

    const growth = peak - baseline;
    console.log(
      `folder_stream: listed ${total} files in ${listSeconds.toFixed(1)} s (heap +${((afterOpen.heapUsed - before.heapUsed) / MB).toFixed(1)} MB, ` +
        `rss +${((afterOpen.rss - before.rss) / MB).toFixed(1)} MB); streamed ${seen} examples in ${streamSeconds.toFixed(1)} s; ` +
        `rss after warm-up ${(baseline / MB).toFixed(0)} MB, peak ${(peak / MB).toFixed(0)} MB (growth ${(growth / MB).toFixed(1)} MB), ` +
        `heap ${(end.heapUsed / MB).toFixed(0)} MB, external ${(end.external / MB).toFixed(1)} MB; eager decode would hold ${(eagerBytes / MB).toFixed(0)} MB`,
    );
    // The stream holds the listing (paths and captions, about 270 bytes a file: 27 MB for 100000)
    // and at most two batches in flight (2 * 64 * 3 * 32 * 32 bytes and a float32 copy of the
    // batch taken: under 2 MB). Bounds: the listing under 64 MB of heap; RSS (worker heap, sharp's
    // cache and allocator noise included) growing by under 64 MB while streaming, 1/18 of the
    // eager 1172 MB; external memory under 1/20 of it.
    expect(afterOpen.heapUsed - before.heapUsed).toBeLessThan(64 * MB);
    expect(growth).toBeLessThan(64 * MB);
    expect(end.external).toBeLessThan(eagerBytes / 20);
    expect(stream.skipped).toBe(0);
  });

  it('draws every one of the 100000 files once per epoch, in a new order each epoch', async () => {
    const stream = await FolderStream.open({ folder: big }, { size: 8, seed: testSeed, workers: 0 });
    for (const epoch of [0, 3]) {
      const drawn = new Uint8Array(total);
      for (let k = 0; k < total; k++) drawn[stream.fileAt(epoch * total + k)]!++;
      expect(drawn.every((n) => n === 1)).toBe(true);
    }
    const firstDraws = (epoch: number) => Array.from({ length: 50 }, (_, k) => stream.fileAt(epoch * total + k));
    expect(firstDraws(1)).not.toEqual(firstDraws(0));
    // Stream position 2 * total + 7 is the file the order names, whichever ranges were taken before.
    const [example] = await stream.take(2 * total + 7, 1);
    expect(example!.caption).toBe(`picture ${stream.fileAt(2 * total + 7) % distinct}`);
    await stream.close();
  });
});

describe('FolderStream', () => {
  it('example k is a pure function of (seed, k): two workers, one and none, any take order, give the same bytes', async () => {
    const dir = path.join(scratch, 'pure');
    await smallFolder(dir, 30, testSeed + 1);
    const takes: Example[][] = [];
    for (const workers of [2, 1, 0]) {
      const stream = await FolderStream.open({ folder: dir }, { size: 16, seed: testSeed, workers });
      stream.prefetch(45, 15);
      const later = await stream.take(45, 15);
      const first = await stream.take(0, 45);
      takes.push([...first, ...later]);
      await stream.close();
    }
    sameExamples(takes[1]!, takes[0]!);
    sameExamples(takes[2]!, takes[0]!);
    const other = await FolderStream.open({ folder: dir }, { size: 16, seed: testSeed + 1, workers: 0 });
    expect((await other.take(0, 30)).map((e) => e.caption)).not.toEqual(takes[0]!.slice(0, 30).map((e) => e.caption));
    await other.close();
  });

  it('gives the values folderDataset and jsonlDataset give for the same files, each epoch a permutation of them', async () => {
    const dir = path.join(scratch, 'values');
    await smallFolder(dir, 20, testSeed + 2);
    const dataset = await folderDataset(dir, { size: 16 });
    await dataset.load();
    const stream = await FolderStream.open({ folder: dir }, { size: 16, seed: testSeed, workers: 1 });
    for (const epoch of [0, 1, 2]) {
      const files = Array.from({ length: 20 }, (_, k) => stream.fileAt(epoch * 20 + k));
      expect([...files].sort((a, b) => a - b)).toEqual([...Array(20).keys()]);
      const examples = await stream.take(epoch * 20, 20);
      examples.forEach((e, k) => {
        expect(e.caption).toBe(dataset.caption(files[k]!));
        expect(e.image).toEqual(dataset.get(files[k]!).image);
      });
    }
    await stream.close();

    const manifest = path.join(scratch, 'values.jsonl');
    writeFileSync(manifest, Array.from({ length: 20 }, (_, i) => JSON.stringify({ image: `values/${name(19 - i)}.png`, caption: `listed ${i}` })).join('\n'));
    const fromManifest = await jsonlDataset(manifest, { size: 16 });
    await fromManifest.load();
    const source = await trainingSource({ kind: 'manifest', file: manifest }, 16, testSeed);
    expect(source).toBeInstanceOf(FolderStream);
    const manifestStream = source as FolderStream;
    const examples = await manifestStream.take(0, 20);
    examples.forEach((e, k) => {
      const entry = manifestStream.fileAt(k);
      expect(e.caption).toBe(`listed ${entry}`);
      expect(e.image).toEqual(fromManifest.get(entry).image);
      expect(e.image).toEqual(dataset.get(19 - entry).image);
    });
    await manifestStream.close();
  });

  it('skips a corrupt or truncated file with a message naming it, in place of its draws the next readable file; a folder with none readable is a clear error', async () => {
    const dir = path.join(scratch, 'corrupt');
    await smallFolder(dir, 12, testSeed + 3);
    const good = await folderDataset(dir, { size: 16 });
    await good.load([4, 5, 9, 10]);
    writeFileSync(path.join(dir, `${name(4)}.png`), 'not an image at all');
    const png = await sharp(Buffer.alloc(40 * 40 * 3, 90), { raw: { width: 40, height: 40, channels: 3 } }).png().toBuffer();
    writeFileSync(path.join(dir, `${name(9)}.png`), png.subarray(0, png.length >> 1));
    const messages: string[] = [];
    for (const workers of [1, 0]) {
      messages.length = 0;
      const stream = await FolderStream.open({ folder: dir }, { size: 16, seed: testSeed, workers, log: (m) => messages.push(m) });
      const epochs = [...(await stream.take(12, 12)), ...(await stream.take(0, 12))];
      expect(stream.skipped).toBe(2);
      expect(messages.length).toBe(2);
      for (const bad of [4, 9]) expect(messages.some((m) => m.includes(path.join(dir, `${name(bad)}.png`)))).toBe(true);
      expect(messages.some((m) => /\(2 unreadable of 12 in folder .*corrupt so far/.test(m))).toBe(true);
      const files = [...Array.from({ length: 12 }, (_, k) => stream.fileAt(12 + k)), ...Array.from({ length: 12 }, (_, k) => stream.fileAt(k))];
      files.forEach((file, k) => {
        const shown = file === 4 || file === 9 ? file + 1 : file;
        expect(epochs[k]!.caption).toBe(good.caption(shown));
        if (shown === 5 || shown === 10) expect(epochs[k]!.image).toEqual(good.get(shown).image);
      });
      await stream.close();
    }

    const broken = path.join(scratch, 'broken');
    mkdirSync(broken);
    for (let i = 0; i < 20; i++) {
      writeFileSync(path.join(broken, `${name(i)}.jpg`), `garbage ${i}`);
      writeFileSync(path.join(broken, `${name(i)}.txt`), `caption ${i}`);
    }
    messages.length = 0;
    await expect(FolderStream.open({ folder: broken }, { size: 16, seed: 0, log: (m) => messages.push(m) })).rejects.toThrow(
      /FolderStream: no readable image in folder .*broken: all 20 files failed to decode \(.*000000\.jpg: /,
    );
    expect(messages.length).toBe(20);
    await expect(FolderStream.open({ folder: path.join(scratch, 'nowhere') }, { size: 16, seed: 0 })).rejects.toThrow(/FolderStream: cannot read directory .*nowhere/);
    await expect(FolderStream.open({ folder: dir }, { size: 0, seed: 0 })).rejects.toThrow(/FolderStream: size must be an integer >= 1, got 0/);
  });

  it('holds at most `ahead` ranges, refuses a range asked for at another count, and fails pending takes on close', async () => {
    const dir = path.join(scratch, 'bounded');
    await smallFolder(dir, 10, testSeed + 4);
    const stream = await FolderStream.open({ folder: dir }, { size: 8, seed: 1, workers: 1, ahead: 2 });
    const reference = await stream.take(0, 30);
    for (const start of [0, 10, 20]) stream.prefetch(start, 10);
    // 0 was dropped to make room for 20: taking it decodes it again (dropping 10), to the same bytes.
    sameExamples(await stream.take(0, 10), reference.slice(0, 10));
    await expect(stream.take(20, 5)).rejects.toThrow(/examples from 20 were requested as 10, now as 5/);
    stream.prefetch(100, 4);
    const pending = expect(stream.take(100, 4)).rejects.toThrow(/closed/);
    await stream.close();
    await pending;
    expect(() => stream.prefetch(0, 1)).toThrow(/closed/);
  });

  it('trainBase trains a tiny model from a folder stream, and resumes on it exactly', async () => {
    const dir = path.join(scratch, 'train');
    await smallFolder(dir, 24, testSeed + 5);
    const spec = { kind: 'folder' as const, dir };
    const captions = (await loadTrainingData(spec, null)).map((e) => e.caption);
    const dit = { imageSize: 16, patchSize: 4, width: 32, depth: 1, heads: 2, mlpRatio: 2, textWidth: 32, text: { vocabSize: 0, depth: 1, heads: 2, mlpRatio: 2 } };
    const create = () => TextToImage.create(trainTokenizer(captions, 280), { preset: 'tiny', dit, seed: 1 });
    const options = { steps: 3, batch: 4, lr: 2e-3, seed: 2, ckptEvery: 2 };
    const opened: FolderStream[] = [];
    const source = async (size: number) => {
      const stream = (await trainingSource(spec, size, 7)) as FolderStream;
      opened.push(stream);
      return stream;
    };
    const whole = create();
    const full = await trainBase(whole, source, { ...options, out: path.join(scratch, 'train-whole') });
    whole.dispose();
    expect(full.losses.length).toBe(3);
    expect(full.losses.every(Number.isFinite)).toBe(true);
    // The trainer closed the stream it drew from.
    await expect(opened[0]!.take(0, 1)).rejects.toThrow(/closed/);

    const split = path.join(scratch, 'train-split');
    const first = create();
    await trainBase(first, source, { ...options, out: split, stopAt: 2 });
    first.dispose();
    const resumed = TextToImage.load(path.join(split, 'checkpoint'));
    const rest = await trainBase(resumed, source, { ...options, out: split, resume: path.join(split, 'checkpoint') });
    resumed.dispose();
    expect(rest.losses).toEqual(full.losses.slice(2));
  });
});
