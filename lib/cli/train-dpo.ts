// `realtune train-dpo`: Diffusion-DPO of LoRA adapters from the command line. Starts from a
// checkpoint (the shipped base model by default), trains adapters on preference pairs (a JSONL
// manifest, or procedural figures whose losers wear another shirt colour), and writes the
// adapters (usable with `realtune sample --lora`) and a grid of samples without and with them.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { concat } from '../autograd/functions.js';
import { noGrad } from '../autograd/variable.js';
import { isCheckpoint } from '../io/checkpoint.js';
import { checkOutputDirectory, checkOutputFile } from '../io/output_paths.js';
import { adapterTensors, describeAdapters, saveAdapterFile, type AdapterGroup } from '../nn/adapter_file.js';
import { withAdaptersDisabled } from '../nn/lora.js';
import { tidy } from '../scope.js';
import { checkDpoOptions, denoiserAttention, dpoDefaults, textEncoderAttention, trainDpo, type DpoTrainOptions } from '../train/dpo.js';
import { TextToImage } from '../models/text_to_image.js';
import { writeLabelledGrid } from '../train/data.js';
import { describePreferences, loadPreferences, type PreferenceSpec } from '../train/preferences.js';
import { demoPrompts, shippedCheckpoint } from './demo.js';
import { checkBatchFits, checkFiguresFit, checkSamplesFit, checkSamplingSteps } from './checks.js';
import { FlagError, flagHelp, parseFlags, type FlagSpecs } from './flags.js';
import { ProgressBar } from './progress.js';
import { isRankZero } from '../train/loop/dist.js';

export const trainDpoFlags: FlagSpecs = {
  from: { kind: 'string', help: 'checkpoint to start from (the shipped models/base-tiny when not given)' },
  pairs: { kind: 'string', help: 'a JSONL manifest of preference pairs ({"prompt": text, "winner": path, "loser": path} per line)' },
  figures: { kind: 'int', min: 1, help: 'N procedural figure pairs: winners as captioned, losers in another shirt colour (256 when --pairs is not given)' },
  'figures-seed': { kind: 'int', min: 0, default: 0, help: 'seed of the figure pairs' },
  steps: { kind: 'int', min: 1, default: 200, help: 'optimiser steps' },
  batch: { kind: 'int', min: 1, default: dpoDefaults.batch, help: 'pairs per step' },
  lr: { kind: 'number', min: 1e-12, default: dpoDefaults.lr, help: 'AdamW learning rate of the adapters (1e-3 makes the tiny model collapse at beta 2500)' },
  beta: { kind: 'number', min: 1e-12, max: 3.4028234663852886e38, default: dpoDefaults.beta, help: 'DPO coefficient on the mse difference, diffusers form (the kernels compute in f32)' },
  rank: { kind: 'int', min: 1, default: dpoDefaults.rank, help: "LoRA rank on the denoiser's attention projections (at most their width)" },
  'text-rank': { kind: 'int', min: 0, default: dpoDefaults.textRank, help: "LoRA rank on the text encoder's attention projections (0: none; at most their width)" },
  'stat-weight': { kind: 'number', min: 0, default: dpoDefaults.statWeight, help: 'weight of the statistics-matching term on the winners (HG-DPO easy stage: 10000)' },
  'clip-norm': { kind: 'number', min: 0, default: dpoDefaults.clipNorm, help: "clip the adapters' gradient norm (0: off)" },
  seed: { kind: 'int', min: 0, default: dpoDefaults.seed, help: 'seed of pair order, timesteps, noise and adapter initialisation' },
  'lr-schedule': { kind: 'string', choices: ['constant', 'cosine'], default: 'constant', help: 'learning-rate schedule' },
  warmup: { kind: 'int', min: 0, default: 0, help: 'linear warm-up steps of the learning rate' },
  ema: { kind: 'number', min: 0, max: 0.999999, default: 0, help: "EMA decay of the adapters (0: none); the written adapters are the averaged ones" },
  'ckpt-every': { kind: 'int', min: 0, default: 0, help: 'write out/checkpoint every k steps (and at the end) so the run can resume' },
  'sample-every': { kind: 'int', min: 0, default: 0, help: 'write a grid (reference row, DPO row) of the sample prompts to out/samples every k steps (0: off)' },
  resume: { kind: 'boolean', help: 'continue the run in out/checkpoint (same settings, more steps)' },
  out: { kind: 'string', default: 'runs/dpo', help: 'output directory: lora.safetensors, samples.png and checkpoint/' },
  'sample-prompts': { kind: 'string', help: 'prompts of the before/after grid, separated by | (the demo prompts when not given)' },
  'sample-steps': { kind: 'int', min: 0, default: 25, help: "DDIM steps of the grid (0: no grid; at most the model's noise-schedule steps)" },
  quiet: { kind: 'boolean', help: 'no progress bar' },
  help: { kind: 'boolean', help: 'this text' },
};

const usage = 'usage: realtune train-dpo [--from CKPT] [--pairs FILE.jsonl | --figures N] [options]';

export async function run(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, trainDpoFlags);
  if (flags.help) {
    console.log(flagHelp(usage, trainDpoFlags));
    return;
  }
  if (flags.pairs !== undefined && flags.figures !== undefined) throw new FlagError('give one of --pairs and --figures (got both)');
  const spec: PreferenceSpec =
    flags.pairs !== undefined
      ? { kind: 'manifest', file: path.resolve(String(flags.pairs)) }
      : { kind: 'figures', count: Number(flags.figures ?? 256), seed: Number(flags['figures-seed']) };
  const from = path.resolve(String(flags.from ?? shippedCheckpoint));
  if (!isCheckpoint(from)) throw new Error(`--from ${from}: no checkpoint there (needs model.safetensors and state.json)`);
  const out = path.resolve(String(flags.out));
  const loraFile = path.join(out, 'lora.safetensors');
  const grid = path.join(out, 'samples.png');
  const sampleSteps = Number(flags['sample-steps']);
  checkOutputDirectory(out, '--out');
  checkOutputFile(loraFile, '--out');
  if (sampleSteps > 0) checkOutputFile(grid, '--out');
  const steps = Number(flags.steps);
  const quiet = Boolean(flags.quiet);
  const prompts = flags['sample-prompts'] === undefined ? demoPrompts : String(flags['sample-prompts']).split('|').map((p) => p.trim());

  const model = TextToImage.load(from);
  const baseHash = model.weightsHash();
  try {
    const options: DpoTrainOptions = {
      steps,
      batch: Number(flags.batch),
      lr: Number(flags.lr),
      beta: Number(flags.beta),
      rank: Number(flags.rank),
      textRank: Number(flags['text-rank']),
      statWeight: Number(flags['stat-weight']),
      clipNorm: Number(flags['clip-norm']),
      seed: Number(flags.seed),
      lrSchedule: flags['lr-schedule'] === 'cosine' ? 'cosine' : 'constant',
      warmup: Number(flags.warmup),
      ema: Number(flags.ema),
      out,
      ckptEvery: Number(flags['ckpt-every']),
      sampleEvery: Number(flags['sample-every']),
      samplePrompts: prompts,
      sampleSteps: Math.max(1, sampleSteps),
      writeGrid: (file, images, labels) => writeLabelledGrid(file, images, labels, prompts.length),
      dataIdentity: describePreferences(spec),
      ...(flags.resume ? { resume: path.join(out, 'checkpoint') } : {}),
    };
    checkDpoOptions(model, options);
    if (spec.kind === 'figures') checkFiguresFit('figures', spec.count, model.imageSize, 'pair', 2);
    checkBatchFits('batch', options.batch!, model, model.imageSize, 2);
    if (sampleSteps > 0) {
      checkSamplingSteps('sample-steps', sampleSteps, model);
      checkSamplesFit(`${prompts.length} sample prompt(s)`, prompts.length, model);
    }
    const pairs = await loadPreferences(spec, model.imageSize);
    console.log(`train-dpo: ${path.relative(process.cwd(), from) || from} on ${pairs.length} pairs (${describePreferences(spec)}), ${steps} steps`);
    let bar: ProgressBar | null = null;
    const { losses, accuracies } = await trainDpo(model, pairs, {
      ...options,
      onStart: (start) => {
        if (!quiet) bar = new ProgressBar({ total: steps - start, label: start > 0 ? `train-dpo (from step ${start})` : 'train-dpo' });
      },
      onStep: (r) => (bar as ProgressBar | null)?.tick({ loss: r.loss, acc: r.accuracy }),
    });
    (bar as ProgressBar | null)?.finish();
    if (!isRankZero()) return;
    const last = Math.min(50, losses.length);
    const mean = (xs: number[]): number => xs.slice(-last).reduce((a, b) => a + b, 0) / last;
    console.log(`train-dpo: mean of the last ${last} steps: loss ${mean(losses).toFixed(4)} (log 2 = 0.6931 at the start), implicit accuracy ${mean(accuracies).toFixed(3)}`);

    mkdirSync(out, { recursive: true });
    // One file over the starting checkpoint: the denoiser group, and the text encoder's when trained.
    const groups: AdapterGroup[] = [describeAdapters(model.dit, { name: 'dpo', pattern: denoiserAttention })];
    const tensors = adapterTensors(model.dit, denoiserAttention, 'dpo');
    if (options.textRank! > 0) {
      groups.push(describeAdapters(model.dit, { name: 'text', pattern: textEncoderAttention }));
      Object.assign(tensors, adapterTensors(model.dit, textEncoderAttention, 'text'));
    }
    saveAdapterFile(loraFile, tensors, { base: baseHash, groups, extra: { command: 'train-dpo', pairs: describePreferences(spec), steps: String(steps) } });
    console.log(`train-dpo: adapters written to ${loraFile} (realtune sample --ckpt ${from} --lora ${loraFile})`);

    if (sampleSteps > 0) {
      const generate = (): ReturnType<TextToImage['generate']> => model.generate({ prompts, n: 1, steps: sampleSteps, cfg: 5, seed: 0 });
      const before = withAdaptersDisabled(model.dit, generate);
      const after = generate();
      const images = tidy(() => noGrad(() => concat([before, after], 0).value));
      await writeLabelledGrid(grid, images, [...prompts.map((p) => `base: ${p}`), ...prompts.map((p) => `DPO: ${p}`)], prompts.length);
      for (const t of [before, after, images]) t.dispose();
      console.log(`train-dpo: samples without (top row) and with the adapters (bottom row) in ${grid}`);
    } else {
      console.log('train-dpo: no sample grid (--sample-steps 0)');
    }
  } finally {
    model.dispose();
  }
}
