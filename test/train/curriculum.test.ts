// The HG-DPO curriculum end to end on a micro model: pools ranked by the scorer, SDRecon,
// the easy/normal/hard pairs by their rules, the chain of stages and its adapter files with the
// inference rules as group defaults, reports and the table; every phase resumes (pools unit by
// unit, a torn index line, a DPO stage from its checkpoint with the same loss curve); and the
// bad inputs of the issue get one clear error or a logged skip.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TextToImage } from '../../lib/models/text_to_image.js';
import { readAdapterFile, weightsHash } from '../../lib/nn/adapter_file.js';
import { loadTrainingData, trainTokenizer } from '../../lib/train/data.js';
import { trainDpo } from '../../lib/train/dpo.js';
import { figurePreferences } from '../../lib/train/preferences.js';
import { generatePools, generateReconstructions, type RealImage } from '../../lib/train/curriculum/generate.js';
import { buildStagePairs } from '../../lib/train/curriculum/pairs.js';
import { functionPoolScorer, captionPoolScorer } from '../../lib/train/curriculum/scorer.js';
import { loadRealImages, readPromptFile, runCurriculum, type CurriculumOptions } from '../../lib/train/curriculum/run.js';
import { imageToPng } from '../../lib/io/images.js';
import { checkMemoryGuards, testSeed } from '../helpers.js';

checkMemoryGuards();

const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-curriculum-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A 32x32 DiT (what the shipped evaluators read) small enough for seconds per phase. */
const microDiT = { imageSize: 32, patchSize: 8, width: 32, depth: 2, heads: 2, mlpRatio: 2, textWidth: 32, text: { vocabSize: 0, depth: 1, heads: 2, mlpRatio: 2 } };
let baseDir = '';
let otherBaseDir = '';

beforeAll(async () => {
  const captions = (await loadTrainingData({ kind: 'figures', count: 64, seed: 3 }, null)).map((e) => e.caption);
  const tokenizer = trainTokenizer(captions, 300);
  for (const [dir, seed] of [
    [(baseDir = path.join(scratch, 'base')), 1],
    [(otherBaseDir = path.join(scratch, 'other-base')), 2],
  ] as const) {
    const model = TextToImage.create(tokenizer, { preset: 'tiny', dit: microDiT, seed });
    // A fresh DiT predicts exactly 0 (adaLN-Zero); train it for a few steps so samples differ.
    const { trainBase } = await import('../../lib/train/base.js');
    await trainBase(model, (size) => loadTrainingData({ kind: 'figures', count: 32, seed: 3 }, size), { steps: 4, batch: 4, lr: 1e-3, seed });
    model.save(dir);
    model.dispose();
  }
});

const small = (out: string, extra: Partial<CurriculumOptions> = {}): CurriculumOptions => ({
  base: baseDir,
  out,
  real: { kind: 'figures', count: 4, seed: 11 },
  poolSize: 3,
  samplingSteps: 3,
  levels: 10,
  stages: {
    easy: { steps: 2, batch: 2, ckptEvery: 1 },
    normal: { steps: 2, batch: 2, ckptEvery: 1 },
    hard: { steps: 2, batch: 2, ckptEvery: 1 },
  },
  evalPrompts: 4,
  evalSteps: 2,
  log: () => {},
  ...extra,
});

describe('runCurriculum', () => {
  it('makes pools, reconstructions, the three stages, their adapter files and the reports; a second call resumes with nothing left to do', async () => {
    const out = path.join(scratch, 'full');
    const lines: string[] = [];
    const result = await runCurriculum(small(out, { log: (l) => lines.push(l) }));
    const pool = readFileSync(path.join(out, 'pools', 'index.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(pool).toHaveLength(4 * 3);
    expect(pool.every((r) => typeof r.score === 'number' && existsSync(path.join(out, 'pools', r.file)))).toBe(true);
    const recon = readFileSync(path.join(out, 'recon', 'index.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(recon).toHaveLength(4 * 10);
    expect(recon.filter((r) => r.item === 0).map((r) => r.t)).toEqual([99, 199, 299, 399, 499, 599, 699, 799, 899, 999]);
    expect(result.pairs.easy).toBeGreaterThan(0);
    expect(result.pairs.normal + (result.pairs.skipped['normal: reconstruction scored below the easy winner (not in K)'] ?? 0)).toBe(4);

    const final = readAdapterFile(result.final);
    try {
      expect(final.groups.map((g) => g.name)).toEqual(['easy', 'text', 'normal', 'hard']);
      expect(final.group('text')!.timesteps).toEqual([900, 999]);
      expect(final.group('hard')!.blocks).toBe('last-half');
      expect(final.group('easy')!.rank).toBe(8);
    } finally {
      final.dispose();
    }
    const base = TextToImage.load(baseDir);
    const hash = weightsHash(base.dit);
    base.dispose();
    expect(readAdapterFile(result.final).base, 'the chain file applies to the base').toBe(hash);
    expect(Object.keys(result.reports)).toEqual(['base', '+easy', '+easy+normal', 'full (easy+normal+hard)', 'full + text-encoder LoRA']);
    expect(result.reports['+easy']!.hueToBase).toBeGreaterThanOrEqual(0);
    expect(readFileSync(path.join(out, 'table.md'), 'utf8')).toMatch(/\| full \+ text-encoder LoRA \| \d/);

    const again: string[] = [];
    const second = await runCurriculum(small(out, { log: (l) => again.push(l) }));
    expect(again.filter((l) => /stage .* is done/.test(l))).toHaveLength(3);
    expect(second.reports['+easy']).toEqual(result.reports['+easy']);
  });

  it('a pool interrupted mid-way (a scorer failure, then a torn index line) resumes to the images of an uninterrupted run', async () => {
    const model = TextToImage.load(baseDir);
    const prompts = ['a person in a red shirt', 'a person in a blue shirt', 'a person waving', 'a person sitting'];
    const settings = { poolSize: 2, promptsPerBatch: 1, steps: 2, cfg: 5, seed: 3 };
    const byRed = functionPoolScorer('red', (_p, images) => {
      const data = images.toArray();
      const per = data.length / images.shape[0]!;
      return Array.from({ length: images.shape[0]! }, (_, i) => data.subarray(i * per, i * per + per / 3).reduce((a, b) => a + b, 0));
    });
    let calls = 0;
    const failing = functionPoolScorer('red', (p, images) => {
      if (++calls === 3) throw new Error('scorer crashed');
      return byRed.score(p, images);
    });
    const interrupted = path.join(scratch, 'pool-interrupted');
    await expect(generatePools(model, prompts, interrupted, failing, settings)).rejects.toThrow('scorer crashed');
    // A torn last line, as a write cut short would leave.
    writeFileSync(path.join(interrupted, 'index.jsonl'), `${readFileSync(path.join(interrupted, 'index.jsonl'), 'utf8')}{"unit":2,"pro`);
    const logged: string[] = [];
    const resumed = await generatePools(model, prompts, interrupted, byRed, { ...settings, log: (l) => logged.push(l) });
    expect(logged.join('\n')).toMatch(/dropped a torn last line/);
    const whole = await generatePools(model, prompts, path.join(scratch, 'pool-whole'), byRed, settings);
    expect(resumed.records.map((r) => [r.prompt, r.sample, r.score])).toEqual(whole.records.map((r) => [r.prompt, r.sample, r.score]));
    for (let i = 0; i < whole.records.length; i++) {
      expect(await resumed.image(resumed.records[i]!, 32)).toEqual(await whole.image(whole.records[i]!, 32));
    }
    model.dispose();
  });

  it('builds pairs by the stage rules: easy best vs worst, normal t4..t7 vs the easy winner kept when it scores at least as well, hard t1 vs the normal winner', async () => {
    const model = TextToImage.load(baseDir);
    const reals: RealImage[] = (await loadRealImages({ kind: 'figures', count: 3, seed: 5 }, 32, () => {}));
    const scorer = functionPoolScorer('mean', (_p, images) => {
      const data = images.toArray();
      const per = data.length / images.shape[0]!;
      return Array.from({ length: images.shape[0]! }, (_, i) => data.subarray(i * per, (i + 1) * per).reduce((a, b) => a + b, 0) / per);
    });
    const pools = await generatePools(model, reals.map((r) => r.prompt), path.join(scratch, 'rules-pools'), scorer, { poolSize: 4, steps: 2, cfg: 5, seed: 1 });
    const recon = await generateReconstructions(model, reals, path.join(scratch, 'rules-recon'), scorer, { steps: 4, cfg: 5, seed: 2 });
    const pairs = buildStagePairs(pools, recon, reals);
    for (const p of pairs.easy) {
      const pool = pools.records.filter((r) => r.prompt === p.prompt).map((r) => r.score!);
      expect((p.winner as { score: number }).score).toBe(Math.max(...pool));
      expect((p.loser as { score: number }).score).toBe(Math.min(...pool));
    }
    for (const p of pairs.normal) {
      const w = p.winner as { sample: number; score: number; item: number };
      expect(w.sample).toBeGreaterThanOrEqual(4);
      expect(w.sample).toBeLessThanOrEqual(7);
      const candidates = recon.records.filter((r) => r.item === w.item && r.sample >= 4 && r.sample <= 7).map((r) => r.score!);
      expect(w.score).toBe(Math.max(...candidates));
      expect(p.loser).toBe(pairs.easy.find((e) => e.prompt === p.prompt)!.winner);
      expect(w.score).toBeGreaterThanOrEqual((p.loser as { score: number }).score);
    }
    expect(pairs.hard.map((p) => (p.winner as { sample: number }).sample)).toEqual(pairs.kept.map(() => 1));
    expect(pairs.hard.map((p) => p.loser)).toEqual(pairs.normal.map((p) => p.winner));
    model.dispose();
  });
});

describe('a DPO stage resumes exactly', () => {
  it('2 steps + resume + 2 steps has the loss curve of 4 uninterrupted steps (cosine schedule, EMA)', async () => {
    const pairs = figurePreferences(6, 32, 3);
    const run = async (out: string, options: { stopAt?: number; resume?: string }): Promise<number[]> => {
      const model = TextToImage.load(baseDir);
      try {
        return (await trainDpo(model, pairs, { steps: 4, batch: 2, lr: 1e-3, lrSchedule: 'cosine', ema: 0.5, textRank: 2, statWeight: 10, out, ...options })).losses;
      } finally {
        model.dispose();
      }
    };
    const whole = await run(path.join(scratch, 'dpo-whole'), {});
    const out = path.join(scratch, 'dpo-parts');
    const first = await run(out, { stopAt: 2 });
    const second = await run(out, { resume: path.join(out, 'checkpoint') });
    expect([...first, ...second]).toEqual(whole);
  });
});

describe('bad input', () => {
  it('a scorer that returns NaN for everything: one error naming the stage and the skips', async () => {
    const out = path.join(scratch, 'nan');
    await expect(runCurriculum(small(out, { scorer: functionPoolScorer('nan', (_p, images) => new Float32Array(images.shape[0]!).fill(Number.NaN)), evalPrompts: 0 }))).rejects.toThrow(
      /stage easy has no pairs \(4 x easy: pool with fewer than two scored samples/,
    );
  });

  it('a pool directory from another base model is refused with both hashes', async () => {
    const out = path.join(scratch, 'other-base-pools');
    await runCurriculum(small(out, { evalPrompts: 0, stages: { easy: { steps: 1, batch: 1 }, normal: { steps: 1, batch: 1 }, hard: { steps: 1, batch: 1 } } }));
    const model = TextToImage.load(otherBaseDir);
    try {
      await expect(generatePools(model, ['a person'], path.join(out, 'pools'), captionPoolScorer(), { poolSize: 3, steps: 3, cfg: 5, seed: 0 })).rejects.toThrow(/was made by another base model \(weights [0-9a-f]{12}, this one is [0-9a-f]{12}\)/);
    } finally {
      model.dispose();
    }
    await expect(runCurriculum(small(out, { base: otherBaseDir, evalPrompts: 0 }))).rejects.toThrow(/holds a run with other settings: base/);
  });

  it('a prompt file with empty lines is read with a logged skip; an empty one is an error; one prompt is enough', () => {
    const file = path.join(scratch, 'prompts.txt');
    writeFileSync(file, 'a person waving\n\n  \na person sitting\n');
    const lines: string[] = [];
    expect(readPromptFile(file, (l) => lines.push(l))).toEqual(['a person waving', 'a person sitting']);
    expect(lines.join()).toMatch(/skipped 2 empty line/);
    writeFileSync(file, '\n\n');
    expect(() => readPromptFile(file)).toThrow(/has no prompt \(every line is empty\)/);
    writeFileSync(file, 'a person\n');
    expect(readPromptFile(file)).toEqual(['a person']);
  });

  it('a real-image folder with an unreadable file: a logged skip', async () => {
    const dir = path.join(scratch, 'real-folder');
    mkdirSync(dir, { recursive: true });
    const reals = await loadRealImages({ kind: 'figures', count: 2, seed: 1 }, 32, () => {});
    for (const [i, r] of reals.entries()) {
      await imageToPng(r.image, path.join(dir, `img${i}.png`));
      writeFileSync(path.join(dir, `img${i}.txt`), r.prompt);
    }
    writeFileSync(path.join(dir, 'broken.png'), 'not a png');
    writeFileSync(path.join(dir, 'broken.txt'), 'a broken picture');
    const lines: string[] = [];
    const loaded = await loadRealImages({ kind: 'folder', dir }, 32, (l) => lines.push(l));
    expect(loaded).toHaveLength(2);
    expect(lines.join('\n')).toMatch(/skipped 1 unreadable image/);
  });

  it('stage options out of range name the option', async () => {
    await expect(runCurriculum(small(path.join(scratch, 'bad'), { stages: { easy: { steps: 0 } } }))).rejects.toThrow('curriculum: stages.easy.steps must be an integer >= 1, got 0');
    await expect(runCurriculum(small(path.join(scratch, 'bad'), { stages: { hard: { beta: -1 } } }))).rejects.toThrow('curriculum: stages.hard.beta must be finite and > 0, got -1');
    await expect(runCurriculum(small(path.join(scratch, 'bad'), { stages: { normal: { stepz: 3 } as never } }))).rejects.toThrow(/stages.normal has unknown option\(s\) stepz/);
    await expect(runCurriculum(small(path.join(scratch, 'bad'), { poolSize: 1 }))).rejects.toThrow(/poolSize must be an integer >= 2/);
    expect(testSeed).toBeGreaterThanOrEqual(0);
  });
});
