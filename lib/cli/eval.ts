// `realtune eval`: measures a checkpoint (and optionally a LoRA on it) on held-out prompts with
// the evaluators, prints one table, writes the report as JSON and a grid of the first images.
import { existsSync } from 'node:fs';
import { isCheckpoint } from '../io/checkpoint.js';
import { packageRoot } from '../native.js';
import { checkOutputFile } from '../io/output_paths.js';
import path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.js';
import { evaluateModel, formatReport, heldOutPrompts } from '../eval/report.js';
import { TextToImage } from '../models/text_to_image.js';
import { writeLabelledGrid } from '../train/data.js';
import { FlagError, flagHelp, parseFlags, type FlagSpecs } from './flags.js';
import { loraFlags, openLoraFiles, parseLoraFlags } from './lora_flags.js';
import { ProgressBar } from './progress.js';
import { isRankZero } from '../train/loop/dist.js';

export const evalFlags: FlagSpecs = {
  ckpt: { kind: 'string', help: 'checkpoint directory (the shipped models/base-tiny when not given)' },
  ...loraFlags,
  prompts: { kind: 'int', min: 2, max: 20000, default: 256, help: 'held-out prompts, one image each; from 192 on the report adds FD-infinity (FD without its sample-size bias)' },
  seed: { kind: 'int', min: 0, default: 0, help: 'noise seed' },
  steps: { kind: 'int', min: 1, max: 1000, default: 50, help: 'DDIM steps' },
  cfg: { kind: 'number', min: 0, default: 5, help: 'guidance scale' },
  classifier: { kind: 'string', help: 'attribute classifier file (the shipped models/eval/attributes.safetensors when not given)' },
  scorer: { kind: 'string', help: 'caption scorer file (the shipped models/eval/scorer.safetensors when not given)' },
  'onnx-features': { kind: 'string', help: 'your own feature network as ONNX (images [N,3,H,W] -> [N,d]): adds FD in its features (needs onnxruntime-node)' },
  'onnx-scorer': { kind: 'string', help: 'your own scorer as ONNX (images -> one score each): adds its mean score (needs onnxruntime-node)' },
  out: { kind: 'string', default: 'eval-report.json', help: 'report JSON (the grid goes beside it as .png)' },
  quiet: { kind: 'boolean', help: 'no progress bar' },
  help: { kind: 'boolean', help: 'this text' },
};

const usage = 'usage: realtune eval [--ckpt DIR] [--lora F[,F2] --lora-scale S --text-lora-steps LO-HI --hard-lora-blocks last-half] [--prompts 256] [--seed S] [--onnx-features F] [--onnx-scorer F] [--out report.json]';

export async function run(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, evalFlags);
  if (flags.help) {
    console.log(flagHelp(usage, evalFlags));
    return;
  }
  const lora = parseLoraFlags(flags);
  const ckpt = flags.ckpt === undefined ? path.join(packageRoot, 'models', 'base-tiny') : path.resolve(String(flags.ckpt));
  if (!isCheckpoint(ckpt)) throw new FlagError(`--ckpt ${ckpt}: no checkpoint there (needs model.safetensors and state.json)`);
  for (const name of ['classifier', 'scorer', 'onnx-features', 'onnx-scorer']) {
    if (flags[name] !== undefined && !existsSync(path.resolve(String(flags[name])))) throw new FlagError(`--${name} ${String(flags[name])}: no such file`);
  }
  const out = path.resolve(String(flags.out));
  if (!out.endsWith('.json')) throw new FlagError(`--out must name a .json file (the grid goes beside it as .png), got ${String(flags.out)}`);
  checkOutputFile(out, '--out');
  const adapterFiles = openLoraFiles(flags, lora);
  const withLora = adapterFiles.length > 0 ? { lora: adapterFiles, ...lora.selection } : {};
  let model: TextToImage | undefined;
  try {
    model = TextToImage.load(ckpt);
    const prompts = Number(flags.prompts);
    const bar = flags.quiet ? null : new ProgressBar({ total: prompts, label: 'eval' });
    let done = 0;
    const report = await evaluateModel(model, {
      prompts,
      seed: Number(flags.seed),
      steps: Number(flags.steps),
      cfg: Number(flags.cfg),
      ...withLora,
      ...(flags.classifier !== undefined ? { classifier: path.resolve(String(flags.classifier)) } : {}),
      ...(flags.scorer !== undefined ? { scorer: path.resolve(String(flags.scorer)) } : {}),
      ...(flags['onnx-features'] !== undefined ? { onnxFeatures: path.resolve(String(flags['onnx-features'])) } : {}),
      ...(flags['onnx-scorer'] !== undefined ? { onnxScorer: path.resolve(String(flags['onnx-scorer'])) } : {}),
      onProgress: (d) => {
        bar?.tick({}, d - done);
        done = d;
      },
    });
    bar?.finish();
    if (!isRankZero()) return;
    console.log(formatReport(report));
    writeJsonAtomic(out, { checkpoint: ckpt, ...(adapterFiles.length > 0 ? { lora: lora.files, ...lora.selection } : {}), ...report });
    const grid = out.replace(/\.json$/, '') + '.png';
    const shown = Math.min(16, prompts);
    const labels = heldOutPrompts(shown);
    const images = model.generate({ prompts: labels, steps: Number(flags.steps), cfg: Number(flags.cfg), seed: Number(flags.seed), ...withLora });
    await writeLabelledGrid(grid, images, labels.map((_, i) => `prompt ${i}`), 8);
    images.dispose();
    console.log(`eval: report ${out}, grid ${grid}`);
  } finally {
    model?.dispose();
    for (const f of adapterFiles) f.dispose();
  }
}
