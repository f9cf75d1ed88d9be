// The curriculum run (SPEC section 2): image pools of the base ranked by the scorer, SDRecon
// reconstructions of real images, then the chain of stages easy -> normal -> hard, each trained
// from the previous one's model. Everything goes under one output directory and every phase
// resumes where it stopped (pools and reconstructions unit by unit, stages from their
// checkpoints, finished stages are kept):
//
//   out/run.json                      the run's settings (a resume with other ones is refused)
//   out/pools/, out/recon/            ImageStores (images + index.jsonl with prompt, seed, score)
//   out/stages/<chain>/               one per stage of a chain, e.g. easy, easy+normal,
//                                     easy+normal+hard: checkpoint/, stage.safetensors,
//                                     lora.safetensors (the chain over the base), samples.png,
//                                     report.json
//   out/table.md, out/table.json      with `table`: the result table over every row
//
// With `table`, the ablations of HG-DPO's Table 2 are trained too (hard without easy, hard
// without normal, one stage on all pairs, naive DPO toward real images, easy without L_stat).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { figuresDataset } from '../../data/figures.js';
import { folderDataset } from '../../data/dataset.js';
import { baseImagesFor, evaluateModel, heldOutPrompts, type EvaluationReport } from '../../eval/report.js';
import { atomicWriteFile, writeJsonAtomic } from '../../io/atomic.js';
import { checkOutputDirectory } from '../../io/output_paths.js';
import { TextToImage } from '../../models/text_to_image.js';
import { readAdapterFile, weightsHash } from '../../nn/adapter_file.js';
import { dpoDefaults } from '../dpo.js';
import { concat as concatVariables } from '../../autograd/functions.js';
import { noGrad } from '../../autograd/variable.js';
import { tidy } from '../../scope.js';
import type { Tensor } from '../../tensor.js';
import { writeLabelledGrid } from '../data.js';
import { checkSameRun, isRankZero, shardOf, worldCommunicator } from '../loop/dist.js';
import { generatePools, generateReconstructions, type RealImage } from './generate.js';
import { buildStagePairs, describePairs, loadPairs, naivePairs, type PairRef, type StagePairs } from './pairs.js';
import { captionPoolScorer, onnxPoolScorer, type PoolScorer } from './scorer.js';
import { runStage, textLoraTimesteps, type StageName, type StageSettings } from './stage.js';
import type { ImageStore } from './store.js';
import type { DpoStepReport } from '../dpo.js';

export type RealSource = { kind: 'figures'; count: number; seed: number } | { kind: 'folder'; dir: string };

/** The inference rules of SPEC section 2 (options of sample / generate / eval too). */
export interface InferenceRules {
  /** LoRA scale on every group (HG-DPO: 0.5). */
  loraScale: number;
  /** The text-encoder LoRA's window of sampling timesteps, or 'all'. */
  textTimesteps: [number, number] | 'all';
  /** Where the hard stage's LoRA applies. */
  hardBlocks: 'last-half' | 'all';
}

export interface CurriculumOptions {
  /** The base checkpoint directory. */
  base: string;
  out: string;
  /** The real images (SDRecon's input; their captions are the prompts of the normal and hard stages). */
  real: RealSource;
  /** More prompts for the easy stage's pools (the real images' captions are always included). */
  prompts?: readonly string[];
  /** Samples per prompt (default 20). */
  poolSize?: number;
  /** DDIM steps and guidance of pools and reconstructions (default 25 and 5). */
  samplingSteps?: number;
  cfg?: number;
  /** SDRecon levels (default 10). */
  levels?: number;
  /** The scorer: 'builtin', a scorer .safetensors, an .onnx file, or a PoolScorer (default builtin). */
  scorer?: string | PoolScorer;
  /** Per-stage settings over the defaults (curriculumDefaults). */
  stages?: Partial<Record<'easy' | 'normal' | 'hard', Partial<StageSettings>>>;
  /** Also train the ablations and write the result table. */
  table?: boolean;
  /** Stop after the data (pools, reconstructions, pair counts): prepare a run's data without training. */
  dataOnly?: boolean;
  /** Held-out prompts of each stage's report (0: no reports); DDIM steps and guidance of the reports. */
  evalPrompts?: number;
  evalSteps?: number;
  inference?: Partial<InferenceRules>;
  seed?: number;
  log?: (line: string) => void;
  /** Progress of the phase running: name, done, total. */
  onProgress?: (phase: string, done: number, total: number, metrics?: Record<string, number>) => void;
}

/** The defaults of the curriculum, in one place (CLI flags read them from here). */
export const curriculumDefaults = {
  poolSize: 20,
  samplingSteps: 20,
  cfg: 5,
  levels: 10,
  evalPrompts: 128,
  evalSteps: 20,
  inference: { loraScale: 0.5, textTimesteps: textLoraTimesteps, hardBlocks: 'last-half' } as InferenceRules,
  // lr and beta from measurements on the shipped base (README, "Choosing beta and the learning
  // rate"): at lr 1e-4, 300 steps leave the model where it was; at 1e-3, beta 25000 moved
  // adherence and the scorer up where 2500 and 250 moved them down, but the later stages learn
  // the DiT's patch grid as texture; the whole table at 3e-4 has the paper's shape.
  stages: {
    easy: { steps: 300, batch: dpoDefaults.batch, lr: 3e-4, beta: 25000, rank: 8, textRank: 8, statWeight: 1e4, seed: 0, ckptEvery: 100 },
    normal: { steps: 300, batch: dpoDefaults.batch, lr: 3e-4, beta: 25000, rank: 8, textRank: 0, statWeight: 0, seed: 1, ckptEvery: 100 },
    hard: { steps: 300, batch: dpoDefaults.batch, lr: 3e-4, beta: 25000, rank: 8, textRank: 0, statWeight: 0, seed: 2, ckptEvery: 100 },
  } satisfies Record<'easy' | 'normal' | 'hard', StageSettings>,
};

/** One row of the result table: a chain of stages and how it is applied. */
export interface TableRow {
  name: string;
  /** The stage directory whose lora.safetensors the row applies (undefined: the base alone). */
  chain?: string;
  /** Leave the text-encoder group out. */
  withoutText?: boolean;
}

export interface CurriculumResult {
  pools: string;
  recon: string;
  /** lora.safetensors of the full chain. */
  final: string;
  /** Reports by row name (with evalPrompts > 0). */
  reports: Record<string, EvaluationReport>;
  /** Pair counts per stage and the skips. */
  pairs: { easy: number; normal: number; hard: number; skipped: Record<string, number> };
  /** Seconds per phase. */
  seconds: Record<string, number>;
}

function checkStageSettings(name: string, s: StageSettings): void {
  const int = (field: keyof StageSettings, min: number): void => {
    const v = s[field];
    if (!Number.isInteger(v) || v < min) throw new RangeError(`curriculum: stages.${name}.${field} must be an integer >= ${min}, got ${v}`);
  };
  int('steps', 1);
  int('batch', 1);
  int('rank', 1);
  int('textRank', 0);
  int('seed', 0);
  int('ckptEvery', 0);
  if (!(s.lr > 0 && Number.isFinite(s.lr))) throw new RangeError(`curriculum: stages.${name}.lr must be finite and > 0, got ${s.lr}`);
  if (!(s.beta > 0 && Number.isFinite(s.beta))) throw new RangeError(`curriculum: stages.${name}.beta must be finite and > 0, got ${s.beta}`);
  if (!(s.statWeight >= 0 && Number.isFinite(s.statWeight))) throw new RangeError(`curriculum: stages.${name}.statWeight must be finite and >= 0, got ${s.statWeight}`);
}

/** The settings of every stage: defaults, then the caller's, checked. */
export function resolveStageSettings(given: CurriculumOptions['stages'] = {}): Record<'easy' | 'normal' | 'hard', StageSettings> {
  const out = {} as Record<'easy' | 'normal' | 'hard', StageSettings>;
  for (const name of ['easy', 'normal', 'hard'] as const) {
    const unknown = Object.keys(given[name] ?? {}).filter((k) => !(k in curriculumDefaults.stages[name]));
    if (unknown.length > 0) throw new RangeError(`curriculum: stages.${name} has unknown option(s) ${unknown.join(', ')} (known: ${Object.keys(curriculumDefaults.stages[name]).join(', ')})`);
    out[name] = { ...curriculumDefaults.stages[name], ...(given[name] ?? {}) };
    checkStageSettings(name, out[name]);
  }
  return out;
}

/** Loads the real images and their captions at `size`; unreadable files are skipped with a message. */
export async function loadRealImages(source: RealSource, size: number, log: (line: string) => void): Promise<RealImage[]> {
  if (source.kind === 'figures') {
    if (!Number.isInteger(source.count) || source.count < 1) throw new RangeError(`curriculum: real figures count must be an integer >= 1, got ${source.count}`);
    const set = figuresDataset(source.count, { size, seed: source.seed });
    return Array.from({ length: set.size }, (_, i) => {
      const e = set.get(i);
      return { prompt: e.caption, image: e.image };
    });
  }
  const dataset = await folderDataset(source.dir, { size });
  const reals: RealImage[] = [];
  let unreadable = 0;
  for (let i = 0; i < dataset.size; i++) {
    try {
      await dataset.load([i]);
      const e = dataset.get(i);
      reals.push({ prompt: e.caption, image: e.image });
    } catch (err) {
      unreadable++;
      log(`curriculum: skipped example ${i} of ${source.dir}: ${(err as Error).message}`);
    }
  }
  if (unreadable > 0) log(`curriculum: skipped ${unreadable} unreadable image(s) of ${source.dir}`);
  if (reals.length === 0) throw new Error(`curriculum: ${source.dir} has no readable image`);
  return reals;
}

/** Prompts from a text file: one per line; empty lines are skipped (counted in the log). */
export function readPromptFile(file: string, log: (line: string) => void = () => {}): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`curriculum: cannot read the prompt file ${file}: ${(err as Error).message}`);
  }
  const lines = text.split(/\r?\n/);
  const prompts = lines.map((l) => l.trim()).filter((l) => l !== '');
  const empty = lines.length - prompts.length - (text.endsWith('\n') ? 1 : 0);
  if (empty > 0) log(`curriculum: skipped ${empty} empty line(s) of ${file}`);
  if (prompts.length === 0) throw new Error(`curriculum: the prompt file ${file} has no prompt (every line is empty)`);
  return prompts;
}

async function resolveScorer(scorer: CurriculumOptions['scorer']): Promise<{ scorer: PoolScorer; owned: boolean }> {
  if (scorer !== undefined && typeof scorer !== 'string') return { scorer, owned: false };
  if (scorer === undefined || scorer === 'builtin') return { scorer: captionPoolScorer(), owned: true };
  if (!existsSync(scorer)) throw new Error(`curriculum: scorer ${scorer}: no such file (give 'builtin', a scorer .safetensors or an .onnx file)`);
  if (scorer.endsWith('.onnx')) return { scorer: await onnxPoolScorer(scorer), owned: true };
  return { scorer: captionPoolScorer(scorer), owned: true };
}

/** Checks run.json against this run's settings, or (after `beforeWrite`'s checks) writes it. */
function checkRunFile(out: string, settings: Record<string, unknown>, beforeWrite: () => void): void {
  const file = path.join(out, 'run.json');
  if (existsSync(file)) {
    let saved: Record<string, unknown>;
    try {
      saved = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`curriculum: cannot read ${file}: ${(err as Error).message}`);
    }
    const keys = new Set([...Object.keys(saved), ...Object.keys(settings)]);
    const differences = [...keys].filter((k) => JSON.stringify(saved[k]) !== JSON.stringify(settings[k]));
    if (differences.length > 0) {
      throw new Error(
        `curriculum: ${out} holds a run with other settings: ${differences.map((k) => `${k} ${JSON.stringify(settings[k])} (the run has ${JSON.stringify(saved[k])})`).join(', ')}; resume with its settings or give another --out`,
      );
    }
    return;
  }
  beforeWrite();
  if (isRankZero()) writeJsonAtomic(file, settings);
}

interface ChainSpec {
  /** Directory name under stages/. */
  dir: string;
  stage: StageName;
  /** The chain this one continues (directory name), if any. */
  after?: string;
  pairs: (p: StagePairs) => PairRef[];
  settings: StageSettings;
}

/** The stage chains to train: the curriculum, and with `table` the ablations. */
function chainSpecs(settings: Record<'easy' | 'normal' | 'hard', StageSettings>, table: boolean, naive: PairRef[]): ChainSpec[] {
  const all = (p: StagePairs): PairRef[] => [...p.easy, ...p.normal, ...p.hard];
  const chains: ChainSpec[] = [
    { dir: 'easy', stage: 'easy', pairs: (p) => p.easy, settings: settings.easy },
    { dir: 'easy+normal', stage: 'normal', after: 'easy', pairs: (p) => p.normal, settings: settings.normal },
    { dir: 'easy+normal+hard', stage: 'hard', after: 'easy+normal', pairs: (p) => p.hard, settings: settings.hard },
  ];
  if (!table) return chains;
  return [
    ...chains,
    { dir: 'normal', stage: 'normal', pairs: (p) => p.normal, settings: settings.normal },
    { dir: 'normal+hard', stage: 'hard', after: 'normal', pairs: (p) => p.hard, settings: settings.hard },
    { dir: 'easy+hard', stage: 'hard', after: 'easy', pairs: (p) => p.hard, settings: settings.hard },
    {
      dir: 'all',
      stage: 'all',
      pairs: all,
      settings: { ...settings.normal, steps: settings.easy.steps + settings.normal.steps + settings.hard.steps, textRank: 0, statWeight: 0 },
    },
    { dir: 'naive', stage: 'naive', pairs: () => naive, settings: { ...settings.normal, steps: settings.easy.steps, textRank: 0, statWeight: 0 } },
    { dir: 'easy-without-stat', stage: 'easy', pairs: (p) => p.easy, settings: { ...settings.easy, statWeight: 0 } },
  ];
}

/** The rows of the result table (paper Table 2 on our data). */
export function tableRows(table: boolean): TableRow[] {
  const rows: TableRow[] = [
    { name: 'base' },
    { name: '+easy', chain: 'easy', withoutText: true },
    { name: '+easy+normal', chain: 'easy+normal', withoutText: true },
    { name: 'full (easy+normal+hard)', chain: 'easy+normal+hard', withoutText: true },
    { name: 'full + text-encoder LoRA', chain: 'easy+normal+hard' },
  ];
  if (!table) return rows;
  return [
    ...rows,
    { name: 'hard without easy', chain: 'normal+hard' },
    { name: 'hard without normal', chain: 'easy+hard', withoutText: true },
    { name: 'one stage on all pairs', chain: 'all' },
    { name: 'naive DPO (real vs base samples)', chain: 'naive' },
    { name: 'easy without L_stat', chain: 'easy-without-stat', withoutText: true },
  ];
}

/** Runs (or resumes) the curriculum; see the file's header. */
export async function runCurriculum(options: CurriculumOptions): Promise<CurriculumResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const out = path.resolve(options.out);
  checkOutputDirectory(out, 'curriculum: out');
  const settings = resolveStageSettings(options.stages);
  const poolSize = options.poolSize ?? curriculumDefaults.poolSize;
  if (!Number.isInteger(poolSize) || poolSize < 2) throw new RangeError(`curriculum: poolSize must be an integer >= 2 (a pool needs a best and a worst sample), got ${poolSize}`);
  const samplingSteps = options.samplingSteps ?? curriculumDefaults.samplingSteps;
  const cfg = options.cfg ?? curriculumDefaults.cfg;
  const levels = options.levels ?? curriculumDefaults.levels;
  if (!Number.isInteger(levels) || levels < 7) throw new RangeError(`curriculum: levels must be an integer >= 7 (the normal stage reads t4..t7), got ${levels}`);
  const evalPrompts = options.evalPrompts ?? curriculumDefaults.evalPrompts;
  if (!Number.isInteger(evalPrompts) || (evalPrompts !== 0 && evalPrompts < 2)) throw new RangeError(`curriculum: evalPrompts must be 0 (no reports) or an integer >= 2, got ${evalPrompts}`);
  const evalSteps = options.evalSteps ?? curriculumDefaults.evalSteps;
  const inference: InferenceRules = { ...curriculumDefaults.inference, ...(options.inference ?? {}) };
  if (!(inference.loraScale > 0 && Number.isFinite(inference.loraScale))) throw new RangeError(`curriculum: inference.loraScale must be finite and > 0, got ${inference.loraScale}`);
  const seed = options.seed ?? 0;
  // Under mpirun: every rank refuses, before any work, ranks started differently and a stage batch the world size does not divide.
  const comm = worldCommunicator();
  checkSameRun('curriculum', comm, JSON.parse(JSON.stringify(options)) as Record<string, unknown>);
  for (const [stage, s] of Object.entries(settings)) shardOf('curriculum', `the ${stage} stage's batch`, s.batch, comm);
  // Wall time per phase, kept across resumed calls in out/timings.json.
  const timingsFile = path.join(out, 'timings.json');
  const seconds: Record<string, number> = existsSync(timingsFile) ? (JSON.parse(readFileSync(timingsFile, 'utf8')) as Record<string, number>) : {};
  const timed = async <T>(phase: string, fn: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await fn();
    } finally {
      seconds[phase] = (seconds[phase] ?? 0) + (performance.now() - started) / 1000;
      if (isRankZero()) writeJsonAtomic(timingsFile, seconds);
    }
  };

  const base = TextToImage.load(options.base);
  let baseDisposed = false;
  let scorer: { scorer: PoolScorer; owned: boolean } | undefined;
  try {
    const reals = await loadRealImages(options.real, base.imageSize, log);
    const prompts = [...new Set([...reals.map((r) => r.prompt), ...(options.prompts ?? [])])];
    scorer = await resolveScorer(options.scorer);
    checkRunFile(out, {
      base: weightsHash(base.dit),
      real: options.real.kind === 'figures' ? options.real : { kind: 'folder', dir: path.resolve(options.real.dir) },
      prompts: prompts.length,
      poolSize,
      samplingSteps,
      cfg,
      levels,
      seed,
      scorer: scorer.scorer.name,
    }, () => {
      if (scorer!.scorer.imageSize !== undefined && scorer!.scorer.imageSize !== base.imageSize) {
        throw new RangeError(`curriculum: the scorer ${scorer!.scorer.name} reads ${scorer!.scorer.imageSize}x${scorer!.scorer.imageSize} images but ${options.base} makes ${base.imageSize}x${base.imageSize}; give a scorer for that size (--scorer FILE)`);
      }
    });
    log(`curriculum: ${reals.length} real images, ${prompts.length} prompts, pools of ${poolSize}, scorer ${scorer.scorer.name}`);

    const pools: ImageStore = await timed('pools', () =>
      generatePools(base, prompts, path.join(out, 'pools'), scorer!.scorer, {
        poolSize,
        steps: samplingSteps,
        cfg,
        seed,
        log,
        onProgress: (d, t) => options.onProgress?.('pools', d, t),
      }),
    );
    const recon: ImageStore = await timed('reconstructions', () =>
      generateReconstructions(base, reals, path.join(out, 'recon'), scorer!.scorer, {
        levels,
        steps: samplingSteps,
        cfg,
        seed: seed + 1,
        log,
        onProgress: (d, t) => options.onProgress?.('reconstructions', d, t),
      }),
    );
    const pairs = buildStagePairs(pools, recon, reals, levels);
    for (const [why, n] of Object.entries(pairs.skipped)) log(`curriculum: skipped ${n} x ${why}`);
    log(`curriculum: pairs easy ${pairs.easy.length}, normal ${pairs.normal.length} (K = ${pairs.kept.length} of ${reals.length} real images), hard ${pairs.hard.length}`);
    const naive = options.table ? naivePairs(pools, reals) : [];
    if (options.dataOnly) {
      return { pools: pools.dir, recon: recon.dir, final: path.join(out, 'stages', 'easy+normal+hard', 'lora.safetensors'), reports: {}, pairs: { easy: pairs.easy.length, normal: pairs.normal.length, hard: pairs.hard.length, skipped: pairs.skipped }, seconds };
    }
    const size = base.imageSize;
    base.dispose();
    baseDisposed = true;

    const chains = chainSpecs(settings, options.table ?? false, naive);
    for (const chain of chains) {
      const refs = chain.pairs(pairs);
      if (refs.length === 0) throw new Error(`curriculum: stage ${chain.dir} has no pairs (${Object.entries(pairs.skipped).map(([w, n]) => `${n} x ${w}`).join('; ') || 'no prompts'})`);
      const dir = path.join(out, 'stages', chain.dir);
      if (existsSync(path.join(dir, 'lora.safetensors'))) {
        log(`curriculum: stage ${chain.dir} is done`);
        if (!existsSync(path.join(dir, 'samples.png')) && isRankZero()) await writeStageGrid(options.base, path.join(dir, 'lora.safetensors'), path.join(dir, 'samples.png'), { steps: samplingSteps, cfg, inference });
        continue;
      }
      const examples = await loadPairs(refs, { pools, recon }, reals, size);
      const lora = await timed(`stage ${chain.dir}`, () =>
        runStage({
          name: chain.stage,
          dir,
          base: options.base,
          previous: chain.after === undefined ? undefined : path.join(out, 'stages', chain.after, 'lora.safetensors'),
          pairs: examples,
          dataIdentity: describePairs(chain.dir, refs),
          settings: chain.settings,
          onStart: (s) => log(`curriculum: stage ${chain.dir}: ${refs.length} pairs, ${chain.settings.steps} steps${s > 0 ? ` (resumed at step ${s})` : ''}`),
          onStep: (r: DpoStepReport) => options.onProgress?.(`stage ${chain.dir}`, r.step, r.total, { loss: r.loss, acc: r.accuracy }),
        }),
      );
      if (isRankZero()) await writeStageGrid(options.base, lora, path.join(dir, 'samples.png'), { steps: samplingSteps, cfg, inference });
    }

    const reports: Record<string, EvaluationReport> = {};
    if (evalPrompts > 0) {
      const model = TextToImage.load(options.base);
      let baseImages: Tensor<'f32'> | undefined;
      try {
        for (const row of tableRows(options.table ?? false)) {
          const reportFile = path.join(out, 'reports', `${row.name.replace(/[^A-Za-z0-9+]+/g, '-').replace(/^-|-$/g, '')}.json`);
          if (existsSync(reportFile)) {
            reports[row.name] = (JSON.parse(readFileSync(reportFile, 'utf8')) as { report: EvaluationReport }).report;
            continue;
          }
          const lora = row.chain === undefined ? undefined : path.join(out, 'stages', row.chain, 'lora.safetensors');
          if (lora !== undefined && baseImages === undefined) baseImages = await timed('eval base images', async () => baseImagesFor(model, { prompts: evalPrompts, steps: evalSteps, cfg }));
          const report = await timed(`eval ${row.name}`, () =>
            evaluateModel(model, {
              ...(lora !== undefined && baseImages !== undefined ? { baseImages } : {}),
              prompts: evalPrompts,
              steps: evalSteps,
              cfg,
              ...(lora === undefined ? {} : { lora, ...inferenceSelection(lora, inference, row.withoutText) }),
              onProgress: (d, t) => options.onProgress?.(`eval ${row.name}`, d, t),
            }),
          );
          if (isRankZero()) writeJsonAtomic(reportFile, { row: row.name, lora: lora ?? null, inference, report });
          reports[row.name] = report;
          log(`curriculum: ${row.name}: FD ${report.fd.toFixed(2)}, adherence ${(100 * report.adherenceMean).toFixed(1)}%, scorer ${report.scorer.toFixed(2)}${report.hueToBase === undefined ? '' : `, hue to base ${report.hueToBase.toFixed(2)}`}`);
        }
      } finally {
        baseImages?.dispose();
        model.dispose();
      }
      const table = formatTable(tableRows(options.table ?? false), reports, seconds);
      if (isRankZero()) {
        atomicWriteFile(path.join(out, 'table.md'), table);
        writeJsonAtomic(path.join(out, 'table.json'), { inference, rows: reports, seconds });
      }
      log(table);
    }
    return {
      pools: pools.dir,
      recon: recon.dir,
      final: path.join(out, 'stages', 'easy+normal+hard', 'lora.safetensors'),
      reports,
      pairs: { easy: pairs.easy.length, normal: pairs.normal.length, hard: pairs.hard.length, skipped: pairs.skipped },
      seconds,
    };
  } finally {
    if (!baseDisposed) base.dispose();
    if (scorer?.owned) scorer.scorer.dispose?.();
  }
}

/** The selection of a chain file's groups under the inference rules (groups the file lacks are left out). */
export function inferenceSelection(lora: string, inference: InferenceRules, withoutText = false): { loraScale: number; loraGroups: Record<string, { enabled?: boolean; timesteps?: [number, number] | 'all'; blocks?: 'all' | 'last-half' }> } {
  const file = readAdapterFile(lora);
  const has = (group: string): boolean => file.group(group) !== undefined;
  try {
    return {
      loraScale: inference.loraScale,
      loraGroups: {
        ...(has('text') ? { text: withoutText ? { enabled: false } : { timesteps: inference.textTimesteps } } : {}),
        ...(has('hard') ? { hard: { blocks: inference.hardBlocks } } : {}),
      },
    };
  } finally {
    file.dispose();
  }
}

/** A stage's grid: six held-out prompts from the base (top row) and with the chain's adapters under the inference rules (bottom row). */
async function writeStageGrid(base: string, lora: string, file: string, options: { steps: number; cfg: number; inference: InferenceRules }): Promise<void> {
  const prompts = heldOutPrompts(6);
  const model = TextToImage.load(base);
  try {
    const settings = { prompts, steps: options.steps, cfg: options.cfg, seed: 0 };
    const before = model.generate(settings);
    const after = model.generate({ ...settings, lora, ...inferenceSelection(lora, options.inference) });
    const images = tidy(() => noGrad(() => concatVariables([before, after], 0).value));
    await writeLabelledGrid(file, images, [...prompts.map((p) => `base: ${p}`), ...prompts.map((p) => `stage: ${p}`)], prompts.length);
    for (const t of [before, after, images]) t.dispose();
  } finally {
    model.dispose();
  }
}

/** The result table as markdown: one row per chain, the measures as columns. */
export function formatTable(rows: readonly TableRow[], reports: Record<string, EvaluationReport>, seconds: Record<string, number>): string {
  const lines = [
    '| row | FD to real | adherence | scorer | hue to base | sharpness | train s |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const r = reports[row.name];
    if (r === undefined) continue;
    const train = row.chain === undefined ? '' : chainSeconds(row.chain, seconds);
    lines.push(`| ${row.name} | ${r.fd.toFixed(2)} | ${(100 * r.adherenceMean).toFixed(1)}% | ${r.scorer.toFixed(2)} | ${r.hueToBase === undefined ? '-' : r.hueToBase.toFixed(2)} | ${r.sharpness.toFixed(3)} | ${train} |`);
  }
  const first = reports[rows[0]!.name];
  if (first !== undefined) lines.push('', `real images: FD floor ${first.fdRealFloor.toFixed(2)}, scorer ${first.scorerReal.toFixed(2)}, sharpness ${first.sharpnessReal.toFixed(3)}; ${first.prompts} held-out prompts`);
  return `${lines.join('\n')}\n`;
}

function chainSeconds(chain: string, seconds: Record<string, number>): string {
  const parts = chain.split('+');
  let total = 0;
  let known = true;
  for (let i = 1; i <= parts.length; i++) {
    const s = seconds[`stage ${parts.slice(0, i).join('+')}`];
    if (s === undefined) known = false;
    else total += s;
  }
  return known ? total.toFixed(0) : '(earlier run)';
}
