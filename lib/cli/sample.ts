// `realtune sample`: images from a checkpoint with classifier-free guidance, as a labelled grid.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { TextToImage } from '../train/model.js';
import { writeLabelledGrid } from '../train/data.js';
import { FlagError, flagHelp, parseFlags, type FlagSpecs } from './flags.js';
import { ProgressBar } from './progress.js';

export const sampleFlags: FlagSpecs = {
  ckpt: { kind: 'string', help: 'checkpoint directory (e.g. models/base-tiny or runs/base/model)' },
  prompt: { kind: 'string', help: 'the prompt; several prompts separated by | make one grid row each' },
  negative: { kind: 'string', help: 'negative prompt: the unconditional branch of guidance (default empty)' },
  cfg: { kind: 'number', min: 0, help: 'classifier-free guidance scale (default 5)' },
  steps: { kind: 'int', min: 1, help: 'denoising steps (default 50)' },
  sampler: { kind: 'string', choices: ['ddim', 'ddpm'], help: 'sampler (default ddim)' },
  n: { kind: 'int', min: 1, help: 'images per prompt (default 8)' },
  seed: { kind: 'int', min: 0, help: 'noise seed (default 0)' },
  lora: { kind: 'string', help: 'a LoRA adapter file (.safetensors) to apply' },
  'lora-scale': { kind: 'number', min: 0, help: 'scale of the LoRA update (default 1)' },
  out: { kind: 'string', help: 'output PNG (default samples.png)' },
  quiet: { kind: 'boolean', help: 'no progress bar' },
  help: { kind: 'boolean', help: 'this text' },
};

const usage = 'usage: realtune sample --ckpt DIR --prompt "..." [--negative "..."] [--cfg 5] [--steps 50] [--sampler ddim|ddpm] [--n 8] [--seed S] [--lora F --lora-scale 0.5] --out grid.png';

export async function run(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, sampleFlags);
  if (flags.help) {
    console.log(flagHelp(usage, sampleFlags));
    return;
  }
  if (flags.ckpt === undefined) throw new FlagError('--ckpt is required: a checkpoint directory (e.g. models/base-tiny)');
  if (flags.prompt === undefined) throw new FlagError('--prompt is required: the text to draw');
  if (flags['lora-scale'] !== undefined && flags.lora === undefined) throw new FlagError('--lora-scale needs --lora FILE');
  const ckpt = path.resolve(String(flags.ckpt));
  if (!existsSync(ckpt)) throw new FlagError(`--ckpt ${String(flags.ckpt)}: no such directory`);
  const out = path.resolve(String(flags.out ?? 'samples.png'));
  const prompts = String(flags.prompt).split('|').map((p) => p.trim());
  const n = Number(flags.n ?? 8);
  const steps = Number(flags.steps ?? 50);
  const model = TextToImage.load(ckpt);
  const bar = flags.quiet ? null : new ProgressBar({ total: steps, label: 'sample' });
  const images = model.generate({
    prompts,
    n,
    steps,
    cfg: Number(flags.cfg ?? 5),
    sampler: (flags.sampler as 'ddim' | 'ddpm' | undefined) ?? 'ddim',
    seed: Number(flags.seed ?? 0),
    ...(flags.negative !== undefined ? { negative: String(flags.negative) } : {}),
    ...(flags.lora !== undefined ? { lora: path.resolve(String(flags.lora)), loraScale: Number(flags['lora-scale'] ?? 1) } : {}),
    onStep: () => bar?.tick(),
  });
  bar?.finish();
  await writeLabelledGrid(out, images, prompts.flatMap((p) => Array<string>(n).fill(p)), n);
  images.dispose();
  model.dispose();
  console.log(`sample: ${prompts.length * n} images written to ${out}`);
}
