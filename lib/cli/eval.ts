// `realtune eval`: measures a checkpoint (and optionally a LoRA on it) on held-out prompts with
// the evaluators, prints one table, writes the report as JSON and a grid of the first images.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic } from '../io/atomic.js';
import { evaluateModel, formatReport, heldOutSet } from '../eval/report.js';
import { TextToImage } from '../train/model.js';
import { writeLabelledGrid } from '../train/data.js';
import { FlagError, flagHelp, parseFlags, type FlagSpecs } from './flags.js';
import { ProgressBar } from './progress.js';

export const evalFlags: FlagSpecs = {
  ckpt: { kind: 'string', help: 'checkpoint directory (default models/base-tiny)' },
  lora: { kind: 'string', help: 'a LoRA adapter file measured on top of the checkpoint (adds the hue distance to the checkpoint alone)' },
  'lora-scale': { kind: 'number', min: 0, help: 'scale of the LoRA update (default 1)' },
  prompts: { kind: 'int', min: 2, help: 'held-out prompts, one image each (default 256)' },
  seed: { kind: 'int', min: 0, help: 'noise seed (default 0)' },
  steps: { kind: 'int', min: 1, help: 'DDIM steps (default 50)' },
  cfg: { kind: 'number', min: 0, help: 'guidance scale (default 5)' },
  classifier: { kind: 'string', help: 'attribute classifier file (default models/eval/attributes.safetensors)' },
  scorer: { kind: 'string', help: 'caption scorer file (default models/eval/scorer.safetensors)' },
  'onnx-features': { kind: 'string', help: 'your own feature network as ONNX (images [N,3,H,W] -> [N,d]): adds FD in its features (needs onnxruntime-node)' },
  'onnx-scorer': { kind: 'string', help: 'your own scorer as ONNX (images -> one score each): adds its mean score (needs onnxruntime-node)' },
  out: { kind: 'string', help: 'report JSON (default eval-report.json; the grid goes beside it as .png)' },
  quiet: { kind: 'boolean', help: 'no progress bar' },
  help: { kind: 'boolean', help: 'this text' },
};

const usage = 'usage: realtune eval [--ckpt DIR] [--lora F --lora-scale S] [--prompts 256] [--seed S] [--out report.json]';

export async function run(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, evalFlags);
  if (flags.help) {
    console.log(flagHelp(usage, evalFlags));
    return;
  }
  if (flags['lora-scale'] !== undefined && flags.lora === undefined) throw new FlagError('--lora-scale needs --lora FILE');
  const ckpt = path.resolve(String(flags.ckpt ?? 'models/base-tiny'));
  if (!existsSync(ckpt)) throw new FlagError(`--ckpt ${String(flags.ckpt ?? 'models/base-tiny')}: no such directory`);
  const out = path.resolve(String(flags.out ?? 'eval-report.json'));
  const model = TextToImage.load(ckpt);
  try {
    const prompts = Number(flags.prompts ?? 256);
    const bar = flags.quiet ? null : new ProgressBar({ total: prompts, label: 'eval' });
    let done = 0;
    const report = await evaluateModel(model, {
      prompts,
      seed: Number(flags.seed ?? 0),
      steps: Number(flags.steps ?? 50),
      cfg: Number(flags.cfg ?? 5),
      ...(flags.lora !== undefined ? { lora: path.resolve(String(flags.lora)), loraScale: Number(flags['lora-scale'] ?? 1) } : {}),
      ...(flags.classifier !== undefined ? { classifier: String(flags.classifier) } : {}),
      ...(flags.scorer !== undefined ? { scorer: String(flags.scorer) } : {}),
      ...(flags['onnx-features'] !== undefined ? { onnxFeatures: path.resolve(String(flags['onnx-features'])) } : {}),
      ...(flags['onnx-scorer'] !== undefined ? { onnxScorer: path.resolve(String(flags['onnx-scorer'])) } : {}),
      onProgress: (d) => {
        bar?.tick({}, d - done);
        done = d;
      },
    });
    bar?.finish();
    console.log(formatReport(report));
    writeJsonAtomic(out, { checkpoint: ckpt, ...(flags.lora !== undefined ? { lora: path.resolve(String(flags.lora)) } : {}), ...report });
    const grid = out.replace(/\.json$/, '') + '.png';
    const shown = Math.min(16, prompts);
    const heldOut = heldOutSet(shown, model.imageSize);
    heldOut.images.dispose();
    const labels = heldOut.prompts;
    const images = model.generate({ prompts: labels, steps: Number(flags.steps ?? 50), cfg: Number(flags.cfg ?? 5), seed: Number(flags.seed ?? 0), ...(flags.lora !== undefined ? { lora: path.resolve(String(flags.lora)), loraScale: Number(flags['lora-scale'] ?? 1) } : {}) });
    await writeLabelledGrid(grid, images, labels.map((_, i) => `prompt ${i}`), 8);
    images.dispose();
    console.log(`eval: report ${out}, grid ${grid}`);
  } finally {
    model.dispose();
  }
}
