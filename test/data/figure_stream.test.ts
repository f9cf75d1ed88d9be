// FigureStream: fresh figures rendered ahead in worker threads. The bytes equal the in-thread
// rendering (so a run does not depend on its worker count), captions match the attributes,
// ranges are served in any order, and closing fails what is still pending.
import { describe, expect, it } from 'vitest';
import { FigureStream, renderFigures } from '../../lib/data/figure_stream.js';
import { captionFor, dequantizeImage, figureAttributesAt, quantizeImage, renderFigure } from '../../lib/data/figures.js';
import { trainingSource } from '../../lib/train/data.js';
import { testSeed } from '../helpers.js';

describe('FigureStream', () => {
  it('two workers, one worker and none give the same images: the quantised render of figure k of the seed', async () => {
    const size = 16;
    const per = 3 * size * size;
    const takes: Float32Array[][] = [];
    for (const workers of [2, 1, 0]) {
      const stream = new FigureStream({ size, seed: testSeed, workers });
      stream.prefetch(10, 5);
      const later = await stream.take(10, 5);
      const first = await stream.take(0, 10);
      const examples = [...first, ...later];
      examples.forEach((e, k) => expect(e.caption).toBe(captionFor(figureAttributesAt(testSeed, k))));
      takes.push(examples.map((e) => e.image));
      await stream.close();
    }
    expect(takes[1]).toEqual(takes[0]);
    expect(takes[2]).toEqual(takes[0]);
    const reference = renderFigure(figureAttributesAt(testSeed, 13), size);
    const image = takes[0]![13]!;
    expect(image.length).toBe(per);
    // Bytes: within half a step of 2/255 of the float render.
    let worst = 0;
    for (let i = 0; i < per; i++) worst = Math.max(worst, Math.abs(image[i]! - reference[i]!));
    expect(worst).toBeLessThanOrEqual(1 / 255 + 1e-6);
    expect(dequantizeImage(quantizeImage(reference))).toEqual(image);
    expect(renderFigures({ size, seed: testSeed }, [13])).toEqual(quantizeImage(reference));
  });

  it('a fixed set of N figures: each epoch draws every figure once, in a new order', async () => {
    const stream = new FigureStream({ size: 8, seed: 3, count: 10, workers: 1 });
    const firstEpoch = Array.from({ length: 10 }, (_, k) => stream.figureAt(k));
    const secondEpoch = Array.from({ length: 10 }, (_, k) => stream.figureAt(10 + k));
    expect([...firstEpoch].sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
    expect([...secondEpoch].sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
    expect(secondEpoch).not.toEqual(firstEpoch);
    const examples = await stream.take(10, 10);
    examples.forEach((e, k) => expect(e.caption).toBe(captionFor(figureAttributesAt(3, secondEpoch[k]!))));
    expect(examples[4]!.image).toEqual(dequantizeImage(quantizeImage(renderFigure(figureAttributesAt(3, secondEpoch[4]!), 8))));
    await stream.close();
    expect(() => new FigureStream({ size: 8, seed: 0, count: 0 })).toThrow(/count must be an integer >= 1, got 0/);
  });

  it('train data: a figure set too large to keep (100000 at 32x32: 1.2 GB as float32) is streamed, a small one is kept', async () => {
    const large = await trainingSource({ kind: 'figures', count: 100_000, seed: 1 }, 32);
    expect(large).toBeInstanceOf(FigureStream);
    const stream = large as FigureStream;
    const batch = await stream.take(0, 4);
    expect(batch.map((e) => e.caption)).toEqual([0, 1, 2, 3].map((k) => captionFor(figureAttributesAt(1, stream.figureAt(k)))));
    await stream.close();
    const small = await trainingSource({ kind: 'figures', count: 16, seed: 1 }, 16);
    expect(Array.isArray(small)).toBe(true);
  });

  it('identities repeat people; bad options and mismatched takes are refused; close fails pending takes', async () => {
    const stream = new FigureStream({ size: 16, seed: 1, identities: 3, workers: 1 });
    const a = figureAttributesAt(1, 0, 3);
    const b = figureAttributesAt(1, 3, 3);
    expect(a.shirtPattern).toBe(b.shirtPattern);
    expect(a.accessoryColor).toEqual(b.accessoryColor);
    expect(stream.caption(3)).toBe(captionFor(b));
    stream.prefetch(0, 4);
    await expect(stream.take(0, 5)).rejects.toThrow(/requested as 4, now as 5/);
    stream.prefetch(100, 4);
    const pending = expect(stream.take(100, 4)).rejects.toThrow(/closed/);
    await stream.close();
    await pending;
    expect(() => stream.prefetch(0, 1)).toThrow(/closed/);
    expect(() => new FigureStream({ size: 4, seed: 0 })).toThrow(/size must be an integer >= 8, got 4/);
    expect(() => new FigureStream({ size: 16, seed: 0, workers: -1 })).toThrow(/workers must be an integer in \[0, 64\], got -1/);
  });
});
