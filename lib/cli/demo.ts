// `realtune demo` (`npm run demo`): the main job on the embedded default data, right after
// install: a short base-training run continuing from the shipped tiny checkpoint on procedural
// figures, then a labelled sample grid of prompts that differ in their colour words, written to
// ./realtune-demo/.
import { mkdirSync } from 'node:fs';
import { isCheckpoint } from '../io/checkpoint.js';
import path from 'node:path';
import { packageRoot } from '../native.js';
import { TextToImage } from '../train/model.js';
import { writeLabelledGrid, type DataSpec } from '../train/data.js';
import { flagHelp, parseFlags, type FlagSpecs } from './flags.js';
import { ProgressBar } from './progress.js';
import { runTraining } from './train-base.js';

export const shippedCheckpoint = path.join(packageRoot, 'models', 'base-tiny');

/** Captions in the figures' own words, differing in shirt and background colour. */
export const demoPrompts = [
  'a person with light skin and short black hair wearing a red shirt and blue trousers, standing, on a plain blue background, lit from the front',
  'a person with light skin and short black hair wearing a blue shirt and blue trousers, standing, on a plain yellow background, lit from the front',
  'a person with tan skin and long brown hair wearing a green shirt and black trousers, waving, on a plain pink background, lit from the left',
  'a person with dark skin and short black hair wearing a yellow shirt and grey trousers, walking, in front of a green park, lit from above',
];

const demoFlags: FlagSpecs = {
  steps: { kind: 'int', min: 1, help: 'training steps (default 40)' },
  batch: { kind: 'int', min: 1, help: 'images per step (default 8)' },
  figures: { kind: 'int', min: 1, help: 'procedural figures to train on (default 256)' },
  'sample-steps': { kind: 'int', min: 1, help: 'DDIM steps of the sample grid (default 30)' },
  n: { kind: 'int', min: 1, help: 'images per prompt in the grid (default 4)' },
  out: { kind: 'string', help: 'output directory (default ./realtune-demo)' },
  ckpt: { kind: 'string', help: 'checkpoint to continue from (default the shipped models/base-tiny)' },
  quiet: { kind: 'boolean', help: 'no progress bars' },
  help: { kind: 'boolean', help: 'this text' },
};

export async function run(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, demoFlags);
  if (flags.help) {
    console.log(flagHelp('usage: realtune demo [options]', demoFlags));
    return;
  }
  const out = path.resolve(String(flags.out ?? 'realtune-demo'));
  const ckpt = path.resolve(String(flags.ckpt ?? shippedCheckpoint));
  if (!isCheckpoint(ckpt)) {
    throw new Error(
      ckpt === shippedCheckpoint
        ? `the shipped checkpoint ${ckpt} is missing (reinstall realtune, or train one with scripts/train-shipped.sh)`
        : `--ckpt ${ckpt}: no checkpoint there (needs model.safetensors and state.json)`,
    );
  }
  mkdirSync(out, { recursive: true });
  const quiet = Boolean(flags.quiet);
  const steps = Number(flags.steps ?? 40);
  const n = Number(flags.n ?? 4);

  const model = TextToImage.load(ckpt);
  console.log(`demo: continuing ${path.relative(process.cwd(), ckpt) || ckpt} (${(model.dit.parameterCount() / 1e6).toFixed(2)}M parameters) on procedural figures for ${steps} steps`);
  const spec: DataSpec = { kind: 'figures', count: Number(flags.figures ?? 256), seed: 1 };
  await runTraining(
    model,
    spec,
    {
      steps,
      batch: Number(flags.batch ?? 8),
      lr: 1e-4,
      clipNorm: 1,
      condDropout: 0.1,
      seed: 1,
      out,
      ckptEvery: 0,
      sampleEvery: 0,
    },
    quiet,
    'demo train',
  );

  const sampleSteps = Number(flags['sample-steps'] ?? 30);
  const bar = quiet ? null : new ProgressBar({ total: sampleSteps, label: 'demo sample' });
  const images = model.generate({ prompts: demoPrompts, n, steps: sampleSteps, cfg: 5, seed: 0, onStep: () => bar?.tick() });
  bar?.finish();
  const grid = path.join(out, 'samples.png');
  await writeLabelledGrid(grid, images, demoPrompts.flatMap((p) => Array<string>(n).fill(p)), n);
  images.dispose();
  model.save(path.join(out, 'model'));
  model.dispose();
  console.log(`demo: model in ${path.join(out, 'model')}, resumable checkpoint in ${path.join(out, 'checkpoint')}`);
  console.log(`demo: sample grid written to ${grid}`);
}
