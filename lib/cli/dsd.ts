// `realtune dsd`: Diffusion Self-Distillation from the command line (SPEC section 4; lib/train/dsd/):
//   realtune dsd pairs --out DIR        self-generated pairs of one person, curated (resumable)
//   realtune dsd train --pairs DIR --out DIR   the DSD adapter (resumable)
// then `realtune sample --dsd DIR/dsd.safetensors --ref me.png --prompt "a person, running, ..."`.
import path from 'node:path';
import { isCheckpoint } from '../io/checkpoint.js';
import { TextToImage } from '../models/text_to_image.js';
import { identityCurator, loadSelfPairs, makeSelfPairs, onnxCurator, realPairs, selfPairDefaults, type DsdPair, type PairCurator } from '../train/dsd/pairs.js';
import { dsdTrainDefaults, trainDsd } from '../train/dsd/train.js';
import { shippedCheckpoint } from './demo.js';
import { FlagError, flagHelp, parseFlags, type FlagSpecs } from './flags.js';
import { PhaseProgress } from './progress.js';

const common: FlagSpecs = {
  ckpt: { kind: 'string', help: 'the base checkpoint (the shipped models/base-tiny when not given)' },
  quiet: { kind: 'boolean', help: 'no progress bars' },
  help: { kind: 'boolean', help: 'this text' },
};

const p = selfPairDefaults;
export const dsdPairsFlags: FlagSpecs = {
  out: { kind: 'string', default: 'runs/dsd/pairs', help: 'output directory (pool/, pairs.jsonl, pairs.json); give it again to resume' },
  identities: { kind: 'int', min: 1, default: p.identities, help: 'people described in words' },
  views: { kind: 'int', min: 2, default: p.views, help: 'images per person, one context each' },
  steps: { kind: 'int', min: 1, default: p.steps, help: 'sampling steps' },
  cfg: { kind: 'number', min: 0, default: p.cfg, help: 'guidance scale' },
  seed: { kind: 'int', min: 0, default: p.seed, help: 'seed' },
  threshold: { kind: 'number', min: -1, max: 1, default: p.threshold, help: "keep a pair when the curator's cosine is at least this" },
  'no-curation': { kind: 'boolean', help: 'keep every pair (the ablation)' },
  pool: { kind: 'string', help: "the image store (default OUT/pool); another pairs directory's pool curates its images again without drawing them" },
  curator: { kind: 'string', default: 'identity', help: 'identity (the shipped identity embedder), an identity-embedder .safetensors, or an .onnx feature extractor' },
  ...common,
};

const t = dsdTrainDefaults;
export const dsdTrainFlags: FlagSpecs = {
  pairs: { kind: 'string', help: 'a pairs directory from `realtune dsd pairs` (omit with --real-pairs for real pairs only)' },
  'real-pairs': { kind: 'int', min: 0, default: 0, help: 'add two views each of this many real training-domain people (both orders)' },
  out: { kind: 'string', default: 'runs/dsd/adapter', help: 'output directory (dsd.safetensors, checkpoint/); give it again to resume' },
  steps: { kind: 'int', min: 1, default: t.steps, help: 'optimiser steps' },
  batch: { kind: 'int', min: 1, default: t.batch, help: 'pairs per step' },
  lr: { kind: 'number', min: 1e-12, default: t.lr, help: 'learning rate' },
  rank: { kind: 'int', min: 1, default: t.rank, help: "LoRA rank on the denoiser's attention and MLP layers" },
  'identity-weight': { kind: 'number', min: 0, default: t.identityWeight, help: "weight of the condition frame's identity mapping" },
  'drop-text': { kind: 'number', min: 0, max: 1, default: t.dropText, help: 'rate of dropped prompts (text guidance)' },
  'drop-image': { kind: 'number', min: 0, max: 1, default: t.dropImage, help: 'rate of dropped references (image guidance)' },
  describe: { kind: 'number', min: 0, max: 1, default: t.describe, help: 'share of prompts that also describe the person in words' },
  'cfg-text': { kind: 'number', min: 0, default: t.cfgText, help: 'text guidance written into the adapter as the sampling default' },
  'cfg-image': { kind: 'number', min: 0, default: t.cfgImage, help: 'image guidance written into the adapter as the sampling default' },
  'ckpt-every': { kind: 'int', min: 0, default: 100, help: 'checkpoint every k steps' },
  seed: { kind: 'int', min: 0, default: t.seed, help: 'seed' },
  ...common,
};

const usage = 'usage: realtune dsd pairs [--ckpt DIR] [options] --out DIR\n       realtune dsd train [--ckpt DIR] --pairs DIR [--real-pairs N] [options] --out DIR';

function loadBase(flags: Record<string, unknown>): TextToImage {
  const base = path.resolve(String(flags.ckpt ?? shippedCheckpoint));
  if (!isCheckpoint(base)) throw new FlagError(`--ckpt ${base}: no checkpoint there (needs model.safetensors and state.json)`);
  return TextToImage.load(base);
}

async function curatorOf(name: string): Promise<PairCurator> {
  if (name === 'identity') return identityCurator();
  if (name.endsWith('.onnx')) return onnxCurator(path.resolve(name));
  if (name.endsWith('.safetensors')) return identityCurator(path.resolve(name));
  throw new FlagError(`--curator ${JSON.stringify(name)}: expected identity, an identity-embedder .safetensors file or an .onnx feature extractor`);
}

export async function run(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === 'pairs') return runPairs(rest);
  if (sub === 'train') return runTrain(rest);
  if (sub === '--help' || sub === undefined) {
    console.log(`${usage}\n\nrealtune dsd pairs --help and realtune dsd train --help list the options`);
    return;
  }
  throw new FlagError(`unknown subcommand ${JSON.stringify(sub)} (expected pairs or train)\n${usage}`);
}

async function runPairs(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, dsdPairsFlags);
  if (flags.help) {
    console.log(flagHelp(usage, dsdPairsFlags));
    return;
  }
  const curator = await curatorOf(String(flags.curator));
  const model = loadBase(flags);
  const progress = new PhaseProgress(Boolean(flags.quiet));
  try {
    const result = await makeSelfPairs(model, path.resolve(String(flags.out)), curator, {
      identities: Number(flags.identities),
      views: Number(flags.views),
      steps: Number(flags.steps),
      cfg: Number(flags.cfg),
      seed: Number(flags.seed),
      threshold: flags['no-curation'] ? null : Number(flags.threshold),
      ...(flags.pool !== undefined ? { pool: path.resolve(String(flags.pool)) } : {}),
      log: (line) => console.log(line),
      onProgress: (done, total) => progress.update('images', done, total),
    });
    progress.finish();
    console.log(`dsd pairs: ${result.kept} pairs in ${result.dir}; next: realtune dsd train --pairs ${path.relative(process.cwd(), result.dir) || result.dir}`);
  } finally {
    curator.dispose?.();
    model.dispose();
  }
}

async function runTrain(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, dsdTrainFlags);
  if (flags.help) {
    console.log(flagHelp(usage, dsdTrainFlags));
    return;
  }
  const real = Number(flags['real-pairs']);
  if (flags.pairs === undefined && real === 0) throw new FlagError(`--pairs DIR or --real-pairs N is required: the pairs to train on\n${usage}`);
  const model = loadBase(flags);
  const progress = new PhaseProgress(Boolean(flags.quiet));
  try {
    const pairs: DsdPair[] = [
      ...(flags.pairs !== undefined ? await loadSelfPairs(path.resolve(String(flags.pairs)), model.imageSize, model.weightsHash()) : []),
      ...realPairs(real, model.imageSize),
    ];
    const steps = Number(flags.steps);
    const result = await trainDsd({
      model,
      pairs,
      out: path.resolve(String(flags.out)),
      steps,
      batch: Number(flags.batch),
      lr: Number(flags.lr),
      rank: Number(flags.rank),
      identityWeight: Number(flags['identity-weight']),
      dropText: Number(flags['drop-text']),
      dropImage: Number(flags['drop-image']),
      describe: Number(flags.describe),
      cfgText: Number(flags['cfg-text']),
      cfgImage: Number(flags['cfg-image']),
      ckptEvery: Number(flags['ckpt-every']),
      seed: Number(flags.seed),
      provenance: { command: `realtune dsd train ${argv.join(' ')}`.trim() },
      onStep: (r) => progress.update('steps', r.step, r.total, { loss: r.loss }),
    });
    progress.finish();
    console.log(`dsd train: ${result.file} (${result.dsd.size} numbers, ${pairs.length} pairs); next: realtune sample --dsd ${path.relative(process.cwd(), result.file!)} --ref IMAGE --prompt "a person, running, in front of a green park, lit from the left"`);
    result.dsd.detach();
  } finally {
    model.dispose();
  }
}
