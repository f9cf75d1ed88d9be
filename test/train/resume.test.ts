// Resuming a training run from what an interrupted or a failed run left: a save killed after
// each of its steps resumes from the last complete checkpoint and repeats the uninterrupted
// run's losses; a run whose loss turns non-finite stops at that step with an error naming it,
// keeping its last checkpoint (finite weights).
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onDirectorySwapStep, type SwapStep } from '../../lib/io/atomic.js';
import { firstNonFinite } from '../../lib/numeric.js';
import { trainBase, type BaseTrainOptions, type DataSource } from '../../lib/train/base.js';
import { loadTrainingData, trainTokenizer } from '../../lib/train/data.js';
import { TextToImage } from '../../lib/models/text_to_image.js';
import { checkMemoryGuards } from '../helpers.js';

checkMemoryGuards();

const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-resume-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const data = { kind: 'figures', count: 8, seed: 2 } as const;
const figures: DataSource = (size) => loadTrainingData(data, size);

/** A text-to-image model small enough for a step in milliseconds: 16x16 images, 16 patches. */
async function nanoModel(): Promise<TextToImage> {
  const captions = (await loadTrainingData(data, null)).map((e) => e.caption);
  return TextToImage.create(trainTokenizer(captions, 280), {
    dit: { imageSize: 16, patchSize: 4, width: 16, depth: 1, heads: 2, mlpRatio: 2, textWidth: 16, contextLength: 8, text: { vocabSize: 0, depth: 1, heads: 2, mlpRatio: 2 } },
    seed: 1,
  });
}

const options = (out: string): BaseTrainOptions => ({ steps: 3, batch: 2, lr: 1e-3, seed: 4, out, ckptEvery: 1, dataIdentity: 'figures 8 seed 2' });

describe('resume after a save interrupted at each of its steps', () => {
  const steps: [SwapStep, number][] = [
    ['written', 1],
    ['moved-aside', 1],
    ['moved-in', 2],
    ['removed-previous', 2],
  ];
  // The run uninterrupted: every resumed run must give these losses, step for step.
  let straight: number[] = [];
  beforeAll(async () => {
    const model = await nanoModel();
    straight = (await trainBase(model, figures, options(path.join(scratch, 'straight')))).losses;
    model.dispose();
    expect(straight).toHaveLength(3);
  });

  for (const [swapStep, resumedFrom] of steps) {
    it(`killed after ${swapStep} in the save of step 2: load and resume find step ${resumedFrom}`, async () => {
      const out = path.join(scratch, `killed-${swapStep}`);
      const checkpoint = path.join(out, 'checkpoint');
      const model = await nanoModel();
      let saves = 0;
      onDirectorySwapStep((reached) => {
        if (reached === 'written') saves++;
        if (saves === 2 && reached === swapStep) throw new Error('killed');
      });
      try {
        await expect(trainBase(model, figures, options(out))).rejects.toThrow(new RegExp(`interrupted after step ${swapStep}`));
      } finally {
        onDirectorySwapStep(undefined);
        model.dispose();
      }
      const resumed = TextToImage.load(checkpoint);
      let start = -1;
      const result = await trainBase(resumed, figures, { ...options(out), resume: checkpoint, onStart: (s) => (start = s) });
      expect(start).toBe(resumedFrom);
      expect(result.step).toBe(3);
      expect(result.losses, 'the steps after the resume').toEqual(straight.slice(resumedFrom));
      const { trainer } = JSON.parse(readFileSync(path.join(checkpoint, 'state.json'), 'utf8')) as { trainer: { step: number; losses: number[] } };
      expect(trainer.step).toBe(3);
      expect(trainer.losses, 'every step, before and after the resume').toEqual(straight);
      expect(readdirSync(out), 'the interrupted save left nothing behind after the next one').toEqual(['checkpoint']);
      resumed.dispose();
    });
  }
});

describe('non-finite training', () => {
  it('a learning rate of 1e30 stops at the first non-finite loss, naming the step; the last checkpoint keeps finite weights', async () => {
    const out = path.join(scratch, 'diverged');
    const model = await nanoModel();
    await expect(trainBase(model, figures, { ...options(out), lr: 1e30, steps: 5 })).rejects.toThrow(/train: step \d: the (loss|gradient norm) is (NaN|Infinity|-Infinity).*the last checkpoint, .*checkpoint, holds the last good weights/);
    model.dispose();
    const saved = TextToImage.load(path.join(out, 'checkpoint'));
    expect(firstNonFinite(saved.dit.stateDict())).toBeUndefined();
    saved.dispose();
  });
});

describe('a resume repeats the run', () => {
  it("takes the model's dropout when --dropout is not given, and refuses another dropout, batch or data", async () => {
    const out = path.join(scratch, 'settings');
    const checkpoint = path.join(out, 'checkpoint');
    const model = await nanoModel();
    await trainBase(model, figures, { ...options(out), dropout: 0.1, stopAt: 1 });
    model.dispose();
    const resume = { ...options(out), resume: checkpoint };
    for (const [change, message] of [
      [{ dropout: 0.2 }, /this resume asks for dropout 0\.2 \(the run has 0\.1\)/],
      [{ batch: 3 }, /this resume asks for batch 3 \(the run has 2\)/],
      [{ dataIdentity: 'other data' }, /this resume asks for data "other data" \(the run has "figures 8 seed 2"\)/],
      [{ steps: 1 }, /it is at step 1 already, so steps 1 leaves nothing to train/],
    ] as const) {
      const resumed = TextToImage.load(checkpoint);
      await expect(trainBase(resumed, figures, { ...resume, ...change }), JSON.stringify(change)).rejects.toThrow(message);
      resumed.dispose();
    }
    const resumed = TextToImage.load(checkpoint);
    expect((await trainBase(resumed, figures, resume)).step).toBe(3);
    resumed.dispose();
  });
});

