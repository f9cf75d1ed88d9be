// `realtune demo` (`npm run demo`): the main job on the embedded default data, right after
// install: a small HG-DPO curriculum (a few real figures, small pools, short stages) from the
// shipped tiny checkpoint, then a before/after grid (the base, then the full curriculum with its
// inference rules, on held-out prompts) and the result table, in ./realtune-demo/. It finishes in
// a few minutes on 2 cores; run it again to resume, or `realtune curriculum` for the full size.
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import { isCheckpoint } from '../io/checkpoint.js';
import { checkOutputDirectory, checkOutputFile } from '../io/output_paths.js';
import { packageRoot } from '../native.js';
import { TextToImage } from '../models/text_to_image.js';
import { heldOutPrompts } from '../eval/report.js';
import { writeLabelledGrid } from '../train/data.js';
import { curriculumDefaults, inferenceSelection, runCurriculum } from '../train/curriculum/run.js';
import { concat } from '../autograd/functions.js';
import { noGrad } from '../autograd/variable.js';
import { tidy } from '../scope.js';
import { checkSamplesFit, checkSamplingSteps } from './checks.js';
import { FlagError, flagHelp, parseFlags, type FlagSpecs } from './flags.js';
import { PhaseProgress } from './progress.js';

export const shippedCheckpoint = path.join(packageRoot, 'models', 'base-tiny');

/** Captions in the figures' own words, differing in shirt and background colour. */
export const demoPrompts = [
  'a person with light skin and short black hair wearing a red shirt and blue trousers, standing, on a plain blue background, lit from the front',
  'a person with light skin and short black hair wearing a blue shirt and blue trousers, standing, on a plain yellow background, lit from the front',
  'a person with tan skin and long brown hair wearing a green shirt and black trousers, waving, on a plain pink background, lit from the left',
  'a person with dark skin and short black hair wearing a yellow shirt and grey trousers, walking, in front of a green park, lit from above',
];

export const demoFlags: FlagSpecs = {
  'real-figures': { kind: 'int', min: 1, default: 24, help: 'procedural figures as the real images (their captions are the prompts)' },
  'pool-size': { kind: 'int', min: 2, default: 8, help: 'samples per prompt in a pool' },
  'sampling-steps': { kind: 'int', min: 1, default: 15, help: "DDIM steps of pools, reconstructions and the grid (at most the model's noise-schedule steps)" },
  'stage-steps': { kind: 'int', min: 1, default: 60, help: 'DPO steps of each stage' },
  'eval-prompts': { kind: 'int', min: 0, default: 48, help: 'held-out prompts of each row of the table (0: no table)' },
  n: { kind: 'int', min: 1, default: 6, help: 'held-out prompts in the before/after grid' },
  out: { kind: 'string', default: 'realtune-demo', help: 'output directory: curriculum/, before-after.png and table.md go there' },
  ckpt: { kind: 'string', help: 'the base checkpoint (the shipped models/base-tiny when not given)' },
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
    throw new FlagError(
      ckpt === shippedCheckpoint
        ? `the shipped checkpoint ${ckpt} is missing (reinstall realtune, or train one with scripts/train-shipped.sh)`
        : `--ckpt ${ckpt}: no checkpoint there (needs model.safetensors and state.json)`,
    );
  }
  checkOutputDirectory(out, '--out');
  const grid = path.join(out, 'before-after.png');
  const tableFile = path.join(out, 'table.md');
  checkOutputFile(grid, '--out');
  checkOutputFile(tableFile, '--out');
  const quiet = Boolean(flags.quiet);
  const steps = Number(flags['sampling-steps']);
  const n = Number(flags.n);
  const evalPrompts = Number(flags['eval-prompts']);
  if (evalPrompts === 1) throw new FlagError('--eval-prompts must be 0 (no table) or at least 2 (FD compares two sets), got 1');
  const probe = TextToImage.load(ckpt);
  try {
    checkSamplingSteps('sampling-steps', steps, probe);
    checkSamplesFit(`--n ${n} x 2 rows`, 2 * n, probe);
  } finally {
    probe.dispose();
  }

  const stageSteps = Number(flags['stage-steps']);
  const stage = { steps: stageSteps, ckptEvery: Math.max(1, Math.floor(stageSteps / 2)) };
  console.log(`demo: a small HG-DPO curriculum from ${path.relative(process.cwd(), ckpt) || ckpt}: ${flags['real-figures']} real figures, pools of ${flags['pool-size']}, ${stageSteps} steps per stage`);
  const progress = new PhaseProgress(quiet, 'demo ');
  const result = await runCurriculum({
    base: ckpt,
    out: path.join(out, 'curriculum'),
    real: { kind: 'figures', count: Number(flags['real-figures']), seed: 7 },
    poolSize: Number(flags['pool-size']),
    samplingSteps: steps,
    stages: { easy: stage, normal: stage, hard: stage },
    evalPrompts,
    evalSteps: steps,
    log: (line) => console.log(line),
    onProgress: (name, done, total, metrics) => progress.update(name, done, total, metrics),
  });
  progress.finish();

  // Before/after on held-out prompts: the base, then the full curriculum with its inference rules.
  const prompts = heldOutPrompts(n);
  const model = TextToImage.load(ckpt);
  try {
    const rules = curriculumDefaults.inference;
    const before = model.generate({ prompts, steps, cfg: 5, seed: 0 });
    const after = model.generate({
      prompts,
      steps,
      cfg: 5,
      seed: 0,
      lora: result.final,
      ...inferenceSelection(result.final, rules),
    });
    const images = tidy(() => noGrad(() => concat([before, after], 0).value));
    await writeLabelledGrid(grid, images, [...prompts.map((p) => `base: ${p}`), ...prompts.map((p) => `curriculum: ${p}`)], n);
    for (const t of [before, after, images]) t.dispose();
  } finally {
    model.dispose();
  }
  console.log(`demo: before (top row) and after the curriculum (bottom row) in ${grid}`);
  if (evalPrompts > 0) {
    copyFileSync(path.join(out, 'curriculum', 'table.md'), tableFile);
    console.log(`demo: the table (${evalPrompts} held-out prompts per row) in ${tableFile}`);
  }
  const seconds = Object.entries(result.seconds).map(([k, v]) => `${k} ${v.toFixed(0)} s`).join(', ');
  console.log(`demo: ${seconds}`);
  console.log(`demo: the adapters: realtune sample --ckpt ${ckpt} --lora ${result.final} --lora-scale ${curriculumDefaults.inference.loraScale} --prompt "..."`);
}
