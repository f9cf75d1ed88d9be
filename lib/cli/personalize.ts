// `realtune personalize`: HyperDreamBooth from the command line (SPEC section 3;
// lib/train/personalize/):
//   realtune personalize --ref IMAGE --out id.safetensors       an identity from one image
//   realtune personalize preopt --out DIR                        LiDB weights per training identity
//   realtune personalize train-hypernet --preopt DIR --out DIR   the hypernetwork
// then `realtune sample --lora id.safetensors --prompt "a photo of [V] person running, ..."`.
import path from 'node:path';
import { shippedEvaluator } from '../eval/networks.js';
import { isCheckpoint } from '../io/checkpoint.js';
import { checkOutputFile } from '../io/output_paths.js';
import { hypernetTrainDefaults, trainHypernet } from '../train/personalize/hypernet_train.js';
import { lidbFromZeroLr, personalize, personalizeDefaults, shippedHypernet } from '../train/personalize/personalize.js';
import { preoptDefaults, preoptimize } from '../train/personalize/preopt.js';
import { shippedCheckpoint } from './demo.js';
import { FlagError, flagHelp, parseFlags, type FlagSpecs } from './flags.js';
import { PhaseProgress } from './progress.js';

const ckptFlag: FlagSpecs = { ckpt: { kind: 'string', help: 'the base checkpoint (the shipped models/base-tiny when not given)' } };
const common: FlagSpecs = { quiet: { kind: 'boolean', help: 'no progress bars' }, help: { kind: 'boolean', help: 'this text' } };

export const personalizeFlags: FlagSpecs = {
  ...ckptFlag,
  ref: { kind: 'string', help: 'the reference image (PNG, JPEG, WebP...; resized to the model, alpha flattened, grey repeated)' },
  out: { kind: 'string', help: 'the identity file to write (.safetensors)' },
  hypernet: { kind: 'string', help: 'the hypernetwork (default: the shipped models/hypernet-tiny/hypernet.safetensors)' },
  method: { kind: 'string', choices: ['hyperdreambooth', 'lidb'], default: 'hyperdreambooth', help: 'hyperdreambooth: predict, then the rank-relaxed finetune; lidb: LiDB trained from zero' },
  steps: { kind: 'int', min: 0, default: personalizeDefaults.steps, help: 'finetune steps (0: the prediction alone)' },
  rank: { kind: 'int', min: 1, default: personalizeDefaults.rank, help: 'rank of the relaxation LoRA' },
  lr: { kind: 'number', min: 1e-12, help: `finetune learning rate (default ${personalizeDefaults.lr}; ${lidbFromZeroLr} for --method lidb)` },
  prompt: { kind: 'string', default: 'auto', help: "the reference's prompt: auto (its scene read by the attribute classifier), plain (\"a photo of [V] person\") or the text" },
  seed: { kind: 'int', min: 0, default: personalizeDefaults.seed, help: 'seed of the finetune' },
  ...common,
};

export const preoptFlags: FlagSpecs = {
  ...ckptFlag,
  out: { kind: 'string', default: 'runs/preopt', help: 'output directory (preopt.json, identities/); give it again to resume' },
  identities: { kind: 'int', min: 1, default: preoptDefaults.identities, help: 'training identities M' },
  views: { kind: 'int', min: 1, default: preoptDefaults.views, help: 'images per identity' },
  steps: { kind: 'int', min: 1, default: preoptDefaults.steps, help: 'LiDB steps per identity' },
  batch: { kind: 'int', min: 1, default: preoptDefaults.batch, help: 'images per step' },
  lr: { kind: 'number', min: 1e-12, default: preoptDefaults.lr, help: 'learning rate' },
  seed: { kind: 'int', min: 0, default: preoptDefaults.seed, help: 'seed (identity i uses seed + i)' },
  ...common,
};

const h = hypernetTrainDefaults;
export const hypernetFlags: FlagSpecs = {
  ...ckptFlag,
  preopt: { kind: 'string', default: 'runs/preopt', help: 'the pre-optimisation directory' },
  out: { kind: 'string', default: 'runs/hypernet', help: 'output directory (checkpoint/, hypernet.safetensors); give it again to resume' },
  steps: { kind: 'int', min: 1, default: h.steps, help: 'optimiser steps' },
  'identities-per-step': { kind: 'int', min: 1, default: h.identitiesPerStep, help: 'identities per step (one micro-batch each)' },
  batch: { kind: 'int', min: 1, default: h.batch, help: 'views per identity in the diffusion term' },
  lr: { kind: 'number', min: 1e-12, default: h.lr, help: 'peak learning rate (cosine schedule)' },
  alpha: { kind: 'number', min: 0, default: h.alpha, help: 'weight of the diffusion term' },
  beta: { kind: 'number', min: 0, default: h.beta, help: 'weight of ||theta_hat - theta_preopt||^2' },
  refinements: { kind: 'int', min: 1, default: h.refinements, help: 'refinement passes s of the decoder' },
  'fresh-share': { kind: 'number', min: 0, max: 1, default: h.freshShare, help: 'share of micro-batches on identities never pre-optimised (diffusion term only)' },
  'encoder-init': { kind: 'string', default: 'attributes', help: "the image encoder's start: attributes (the shipped attribute classifier's encoder), none (random), or an evaluator file" },
  'ckpt-every': { kind: 'int', min: 0, default: 100, help: 'checkpoint every k steps' },
  seed: { kind: 'int', min: 0, default: h.seed, help: 'seed' },
  ...common,
};

const usage = 'usage: realtune personalize [--ckpt DIR] --ref IMAGE --out id.safetensors [options]\n       realtune personalize preopt [options] --out DIR\n       realtune personalize train-hypernet --preopt DIR [options] --out DIR';

function baseOf(flags: Record<string, unknown>): string {
  const base = path.resolve(String(flags.ckpt ?? shippedCheckpoint));
  if (!isCheckpoint(base)) throw new FlagError(`--ckpt ${base}: no checkpoint there (needs model.safetensors and state.json)`);
  return base;
}

export async function run(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub === 'preopt') return runPreopt(rest);
  if (sub === 'train-hypernet') return runHypernet(rest);
  if (sub !== undefined && !sub.startsWith('-')) throw new FlagError(`unknown subcommand ${JSON.stringify(sub)} (expected preopt, train-hypernet, or options)\n${usage}`);
  const flags = parseFlags(argv, personalizeFlags);
  if (flags.help) {
    console.log(flagHelp(usage, personalizeFlags));
    return;
  }
  if (flags.ref === undefined) throw new FlagError(`--ref IMAGE is required\n${usage}`);
  if (flags.out === undefined) throw new FlagError(`--out FILE is required (the identity file)\n${usage}`);
  checkOutputFile(path.resolve(String(flags.out)), '--out');
  const result = await personalize({
    base: baseOf(flags),
    reference: path.resolve(String(flags.ref)),
    out: path.resolve(String(flags.out)),
    method: flags.method as 'hyperdreambooth' | 'lidb',
    hypernet: flags.hypernet === undefined ? shippedHypernet : path.resolve(String(flags.hypernet)),
    steps: Number(flags.steps),
    rank: Number(flags.rank),
    ...(flags.lr !== undefined ? { lr: Number(flags.lr) } : {}),
    seed: Number(flags.seed),
    prompt: String(flags.prompt),
    log: (line) => console.log(line),
  });
  const numbers = Object.entries(result.numbers).map(([g, n]) => `${g} ${n}`).join(', ');
  console.log(`personalize: ${result.file} in ${result.seconds.total.toFixed(1)} s (${numbers} numbers, ${(result.bytes / 1024).toFixed(0)} KiB); prompt "${result.prompt}"`);
  const shown = path.relative(process.cwd(), result.file!);
  console.log(`  realtune sample --lora ${shown.startsWith('..') ? result.file : shown} --prompt "a photo of [V] person, running, in front of a green park, lit from the left" --out grid.png`);
}

async function runPreopt(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, preoptFlags);
  if (flags.help) {
    console.log(flagHelp(usage, preoptFlags));
    return;
  }
  const progress = new PhaseProgress(Boolean(flags.quiet));
  const result = await preoptimize({
    base: baseOf(flags),
    out: path.resolve(String(flags.out)),
    identities: Number(flags.identities),
    views: Number(flags.views),
    steps: Number(flags.steps),
    batch: Number(flags.batch),
    lr: Number(flags.lr),
    seed: Number(flags.seed),
    onIdentity: (done, total, loss) => progress.update('identities', done, total, { loss }),
  });
  progress.finish();
  console.log(`preopt: ${result.done} identities in ${result.dir} (${result.fitted} fitted now, ${result.seconds.toFixed(0)} s); next: realtune personalize train-hypernet --preopt ${path.relative(process.cwd(), result.dir) || result.dir}`);
}

async function runHypernet(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, hypernetFlags);
  if (flags.help) {
    console.log(flagHelp(usage, hypernetFlags));
    return;
  }
  const progress = new PhaseProgress(Boolean(flags.quiet));
  const result = await trainHypernet({
    base: baseOf(flags),
    preopt: path.resolve(String(flags.preopt)),
    out: path.resolve(String(flags.out)),
    steps: Number(flags.steps),
    identitiesPerStep: Number(flags['identities-per-step']),
    batch: Number(flags.batch),
    lr: Number(flags.lr),
    alpha: Number(flags.alpha),
    beta: Number(flags.beta),
    refinements: Number(flags.refinements),
    freshShare: Number(flags['fresh-share']),
    seed: Number(flags.seed),
    ckptEvery: Number(flags['ckpt-every']),
    encoderInit: flags['encoder-init'] === 'attributes' ? shippedEvaluator('attributes') : flags['encoder-init'] === 'none' ? 'none' : path.resolve(String(flags['encoder-init'])),
    provenance: { command: `realtune personalize train-hypernet ${argv.join(' ')}`.trim() },
    onStep: (r) => progress.update('hypernet', r.step, r.total, { loss: r.loss, ...r.metrics }),
  });
  progress.finish();
  console.log(`train-hypernet: ${result.file} after ${result.step} steps; use it with realtune personalize --hypernet ${path.relative(process.cwd(), result.file) || result.file} --ref IMAGE --out id.safetensors`);
}
