// `realtune demo` (`npm run demo`): the main job on the embedded default data, right after
// install: a short base-training run continuing from the shipped tiny checkpoint on procedural
// figures, then a labelled sample grid of prompts that differ in their colour words, written to
// ./realtune-demo/.
import { mkdirSync } from 'node:fs';
import { isCheckpoint } from '../io/checkpoint.js';
import path from 'node:path';
import { packageRoot } from '../native.js';
import { TextToImage } from '../models/text_to_image.js';
import { writeLabelledGrid, type DataSpec } from '../train/data.js';
import { checkOutputFile } from '../io/output_paths.js';
import { checkBatchFits, checkFiguresFit, checkSamplesFit, checkSamplingSteps } from './checks.js';
import { flagHelp, parseFlags, type FlagSpecs } from './flags.js';
import { ProgressBar } from './progress.js';
import { checkTrainingOutputs, dataIdentity, runTraining } from './train-base.js';

export const shippedCheckpoint = path.join(packageRoot, 'models', 'base-tiny');

/** Captions in the figures' own words, differing in shirt and background colour. */
export const demoPrompts = [
  'a person with light skin and short black hair wearing a red shirt and blue trousers, standing, on a plain blue background, lit from the front',
  'a person with light skin and short black hair wearing a blue shirt and blue trousers, standing, on a plain yellow background, lit from the front',
  'a person with tan skin and long brown hair wearing a green shirt and black trousers, waving, on a plain pink background, lit from the left',
  'a person with dark skin and short black hair wearing a yellow shirt and grey trousers, walking, in front of a green park, lit from above',
];

export const demoFlags: FlagSpecs = {
  steps: { kind: 'int', min: 1, default: 40, help: 'training steps' },
  batch: { kind: 'int', min: 1, default: 8, help: 'images per step' },
  figures: { kind: 'int', min: 1, default: 256, help: 'procedural figures to train on' },
  'sample-steps': { kind: 'int', min: 1, default: 30, help: "DDIM steps of the sample grid (at most the model's noise-schedule steps)" },
  n: { kind: 'int', min: 1, default: 4, help: 'images per prompt in the grid' },
  out: { kind: 'string', default: 'realtune-demo', help: 'output directory: checkpoint/, model/ and samples.png go there' },
  ckpt: { kind: 'string', help: 'checkpoint to continue from (the shipped models/base-tiny when not given)' },
  quiet: { kind: 'boolean', help: 'no progress bars' },
  help: { kind: 'boolean', help: 'this text' },
};

export async function run(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, demoFlags);
  if (flags.help) {
    console.log(flagHelp('usage: realtune demo [options]', demoFlags));
    return;
  }
  const out = path.resolve(String(flags.out));
  const ckpt = path.resolve(String(flags.ckpt ?? shippedCheckpoint));
  if (!isCheckpoint(ckpt)) {
    throw new Error(
      ckpt === shippedCheckpoint
        ? `the shipped checkpoint ${ckpt} is missing (reinstall realtune, or train one with scripts/train-shipped.sh)`
        : `--ckpt ${ckpt}: no checkpoint there (needs model.safetensors and state.json)`,
    );
  }
  const modelOut = path.join(out, 'model');
  const grid = path.join(out, 'samples.png');
  checkTrainingOutputs(out, modelOut, { out: 'out', modelOut: 'out' });
  checkOutputFile(grid, '--out');
  const quiet = Boolean(flags.quiet);
  const steps = Number(flags.steps);
  const n = Number(flags.n);
  const batch = Number(flags.batch);
  const sampleSteps = Number(flags['sample-steps']);

  const model = TextToImage.load(ckpt);
  try {
    const spec: DataSpec = { kind: 'figures', count: Number(flags.figures), seed: 1 };
    checkFiguresFit('figures', spec.count, model.imageSize);
    checkBatchFits('batch', batch, model, model.imageSize);
    checkSamplingSteps('sample-steps', sampleSteps, model);
    checkSamplesFit(`--n ${n} x ${demoPrompts.length} prompts`, n * demoPrompts.length, model);
    mkdirSync(out, { recursive: true });
    console.log(`demo: continuing ${path.relative(process.cwd(), ckpt) || ckpt} (${(model.dit.parameterCount() / 1e6).toFixed(2)}M parameters) on procedural figures for ${steps} steps`);
    await runTraining(
      model,
      spec,
      {
        steps,
        batch,
        lr: 1e-4,
        clipNorm: 1,
        condDropout: 0.1,
        seed: 1,
        out,
        ckptEvery: 0,
        sampleEvery: 0,
        dataIdentity: dataIdentity(spec),
      },
      quiet,
      'demo train',
    );

    const bar = quiet ? null : new ProgressBar({ total: sampleSteps, label: 'demo sample' });
    const images = model.generate({ prompts: demoPrompts, n, steps: sampleSteps, cfg: 5, seed: 0, onStep: () => bar?.tick() });
    bar?.finish();
    await writeLabelledGrid(grid, images, demoPrompts.flatMap((p) => Array<string>(n).fill(p)), n);
    images.dispose();
    model.save(modelOut);
  } finally {
    model.dispose();
  }
  console.log(`demo: model in ${modelOut}, resumable checkpoint in ${path.join(out, 'checkpoint')}`);
  console.log(`demo: sample grid written to ${grid}`);
}
