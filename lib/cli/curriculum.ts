// `realtune curriculum`: HG-DPO's three-stage curriculum from the command line (SPEC section 2;
// lib/train/curriculum/run.ts): pools of the base ranked by the scorer, SDRecon reconstructions
// of real images, the easy, normal and hard stages, a grid and an evaluation report per row,
// all under --out and resumable (run the same command again). With --table, the ablations of the
// paper's Table 2 are trained as well and the table is written to --out/table.md.
import path from 'node:path';
import { existsSync } from 'node:fs';
import { isCheckpoint } from '../io/checkpoint.js';
import { curriculumDefaults, readPromptFile, runCurriculum, type CurriculumOptions, type RealSource } from '../train/curriculum/run.js';
import { shippedCheckpoint } from './demo.js';
import { FlagError, flagHelp, parseFlags, type FlagSpecs } from './flags.js';
import { PhaseProgress } from './progress.js';

const d = curriculumDefaults;
const stageFlags = (name: 'easy' | 'normal' | 'hard'): FlagSpecs => ({
  [`${name}-steps`]: { kind: 'int', min: 1, default: d.stages[name].steps, help: `optimiser steps of the ${name} stage` },
});

export const curriculumFlags: FlagSpecs = {
  ckpt: { kind: 'string', help: 'the base checkpoint (the shipped models/base-tiny when not given)' },
  out: { kind: 'string', default: 'runs/curriculum', help: 'output directory (pools/, recon/, stages/, reports/, table.md); give it again to resume' },
  'real-figures': { kind: 'int', min: 1, help: 'N procedural figures as the real images (256 when --real-dir is not given)' },
  'real-seed': { kind: 'int', min: 0, default: 7, help: 'seed of the real figures (the held-out evaluation figures use another stream)' },
  'real-dir': { kind: 'string', help: 'a folder of real images with .txt captions instead of figures' },
  prompts: { kind: 'string', help: 'a text file of extra prompts for the easy stage, one per line (the real captions are always used)' },
  'pool-size': { kind: 'int', min: 2, default: d.poolSize, help: 'samples per prompt in a pool' },
  'sampling-steps': { kind: 'int', min: 1, default: d.samplingSteps, help: 'DDIM steps of pools and reconstructions' },
  cfg: { kind: 'number', min: 1, default: d.cfg, help: 'guidance scale of pools, reconstructions and reports' },
  levels: { kind: 'int', min: 7, default: d.levels, help: 'SDRecon levels t_k = 100k' },
  scorer: { kind: 'string', default: 'builtin', help: "the pool scorer: builtin, a scorer .safetensors, or an .onnx file" },
  ...stageFlags('easy'),
  ...stageFlags('normal'),
  ...stageFlags('hard'),
  batch: { kind: 'int', min: 1, default: d.stages.easy.batch, help: 'pairs per step (every stage)' },
  lr: { kind: 'number', min: 1e-12, default: d.stages.easy.lr, help: 'learning rate of the adapters (every stage)' },
  beta: { kind: 'number', min: 1e-12, max: 3.4028234663852886e38, default: d.stages.easy.beta, help: 'DPO beta (every stage)' },
  rank: { kind: 'int', min: 1, default: d.stages.easy.rank, help: "LoRA rank on the denoiser's attention (every stage)" },
  'text-rank': { kind: 'int', min: 0, default: d.stages.easy.textRank, help: 'text-encoder LoRA rank, easy stage only (0: none)' },
  'stat-weight': { kind: 'number', min: 0, default: d.stages.easy.statWeight, help: 'lambda_stat of the statistics term, easy stage only' },
  'eval-prompts': { kind: 'int', min: 0, default: d.evalPrompts, help: 'held-out prompts per report (0: no reports)' },
  'eval-steps': { kind: 'int', min: 1, default: d.evalSteps, help: 'DDIM steps of the reports' },
  'lora-scale': { kind: 'number', min: 1e-6, default: d.inference.loraScale, help: 'inference: LoRA scale of every group' },
  'text-lora-steps': { kind: 'string', default: `${d.inference.textTimesteps === 'all' ? 'all' : d.inference.textTimesteps.join('-')}`, help: 'inference: timesteps LO-HI where the text-encoder LoRA applies, or all' },
  'hard-lora-blocks': { kind: 'string', choices: ['last-half', 'all'], default: d.inference.hardBlocks, help: "inference: DiT blocks the hard stage's LoRA applies to" },
  table: { kind: 'boolean', help: "also train the ablations and write the paper's Table 2 on our data to --out/table.md" },
  'data-only': { kind: 'boolean', help: 'stop after the pools and reconstructions (prepare the data; run again without it to train)' },
  seed: { kind: 'int', min: 0, default: 0, help: 'seed of pools and reconstructions' },
  quiet: { kind: 'boolean', help: 'no progress bars' },
  help: { kind: 'boolean', help: 'this text' },
};

const usage = 'usage: realtune curriculum [--ckpt DIR] [--real-figures N | --real-dir DIR] [--prompts FILE] [--table] [options] --out DIR';

export function parseWindow(flag: string, raw: string): [number, number] | 'all' {
  if (raw === 'all') return 'all';
  const m = /^(\d+)-(\d+)$/.exec(raw);
  if (m === null) throw new FlagError(`--${flag} expects LO-HI (e.g. 900-999) or all, got ${JSON.stringify(raw)}`);
  const lo = Number(m[1]);
  const hi = Number(m[2]);
  if (lo > hi) throw new FlagError(`--${flag}: LO must be <= HI, got ${raw}`);
  return [lo, hi];
}

export async function run(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, curriculumFlags);
  if (flags.help) {
    console.log(flagHelp(usage, curriculumFlags));
    return;
  }
  if (flags['real-dir'] !== undefined && flags['real-figures'] !== undefined) throw new FlagError('give one of --real-dir and --real-figures (got both)');
  const base = path.resolve(String(flags.ckpt ?? shippedCheckpoint));
  if (!isCheckpoint(base)) throw new FlagError(`--ckpt ${base}: no checkpoint there (needs model.safetensors and state.json)`);
  let real: RealSource;
  if (flags['real-dir'] !== undefined) {
    const dir = path.resolve(String(flags['real-dir']));
    if (!existsSync(dir)) throw new FlagError(`--real-dir ${dir}: no such directory`);
    real = { kind: 'folder', dir };
  } else {
    real = { kind: 'figures', count: Number(flags['real-figures'] ?? 256), seed: Number(flags['real-seed']) };
  }
  const log = (line: string): void => console.log(line);
  const prompts = flags.prompts === undefined ? undefined : readPromptFile(path.resolve(String(flags.prompts)), log);
  const shared = { batch: Number(flags.batch), lr: Number(flags.lr), beta: Number(flags.beta), rank: Number(flags.rank) };
  const options: CurriculumOptions = {
    base,
    out: path.resolve(String(flags.out)),
    real,
    ...(prompts ? { prompts } : {}),
    poolSize: Number(flags['pool-size']),
    samplingSteps: Number(flags['sampling-steps']),
    cfg: Number(flags.cfg),
    levels: Number(flags.levels),
    scorer: String(flags.scorer) === 'builtin' ? 'builtin' : path.resolve(String(flags.scorer)),
    stages: {
      easy: { ...shared, steps: Number(flags['easy-steps']), textRank: Number(flags['text-rank']), statWeight: Number(flags['stat-weight']) },
      normal: { ...shared, steps: Number(flags['normal-steps']) },
      hard: { ...shared, steps: Number(flags['hard-steps']) },
    },
    table: Boolean(flags.table),
    dataOnly: Boolean(flags['data-only']),
    evalPrompts: Number(flags['eval-prompts']),
    evalSteps: Number(flags['eval-steps']),
    inference: {
      loraScale: Number(flags['lora-scale']),
      textTimesteps: parseWindow('text-lora-steps', String(flags['text-lora-steps'])),
      hardBlocks: flags['hard-lora-blocks'] === 'all' ? 'all' : 'last-half',
    },
    seed: Number(flags.seed),
    log,
  };
  const quiet = Boolean(flags.quiet);
  const progress = new PhaseProgress(quiet);
  const result = await runCurriculum({ ...options, onProgress: (name, done, total, metrics) => progress.update(name, done, total, metrics) });
  progress.finish();
  const seconds = Object.entries(result.seconds).map(([k, v]) => `${k} ${v.toFixed(0)} s`).join(', ');
  if (options.dataOnly) {
    console.log(`curriculum: data ready (${seconds}): ${result.pools}, ${result.recon}; run the command again without --data-only to train`);
    return;
  }
  console.log(`curriculum: done (${seconds}); the full model: realtune sample --ckpt ${base} --lora ${result.final} --lora-scale ${options.inference!.loraScale} --prompt "..."`);
}
