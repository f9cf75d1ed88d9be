// `realtune sample`: images from a checkpoint with classifier-free guidance, as a labelled grid.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { isCheckpoint } from '../io/checkpoint.js';
import { checkOutputFile } from '../io/output_paths.js';
import { TextToImage } from '../models/text_to_image.js';
import type { Tensor } from '../tensor.js';
import { dsdSample } from '../train/dsd/generate.js';
import { writeLabelledGrid } from '../train/data.js';
import { checkSamplesFit, checkSamplingSteps } from './checks.js';
import { FlagError, flagHelp, parseFlags, type FlagSpecs } from './flags.js';
import { loraFlags, openLoraFiles, parseLoraFlags } from './lora_flags.js';
import { ProgressBar } from './progress.js';

export const sampleFlags: FlagSpecs = {
  ckpt: { kind: 'string', help: 'checkpoint directory (e.g. models/base-tiny or runs/base/model)' },
  prompt: { kind: 'string', help: 'the prompt; several prompts separated by | make one grid row each' },
  negative: { kind: 'string', help: 'negative prompt: the unconditional branch of guidance (empty when not given)' },
  cfg: { kind: 'number', min: 0, default: 5, help: 'classifier-free guidance scale' },
  steps: { kind: 'int', min: 1, default: 50, help: "denoising steps (at most the model's noise-schedule steps)" },
  sampler: { kind: 'string', choices: ['ddim', 'ddpm'], default: 'ddim', help: 'sampler' },
  n: { kind: 'int', min: 1, default: 8, help: 'images per prompt (as many as fit in memory)' },
  seed: { kind: 'int', min: 0, default: 0, help: 'noise seed' },
  ...loraFlags,
  dsd: { kind: 'string', help: 'a DSD adapter (e.g. models/dsd-tiny/dsd.safetensors): the person of --ref in the context of the prompt, no training' },
  ref: { kind: 'string', help: 'with --dsd: the reference image (resized to the model, alpha flattened, grey repeated)' },
  'cfg-image': { kind: 'number', min: 0, help: "with --dsd: image guidance, the adapter's own when not given; --cfg is the text guidance" },
  'allow-non-finite': { kind: 'boolean', help: 'load weights holding NaN or infinite values (to inspect a broken model) instead of refusing them' },
  out: { kind: 'string', default: 'samples.png', help: 'output PNG' },
  quiet: { kind: 'boolean', help: 'no progress bar' },
  help: { kind: 'boolean', help: 'this text' },
};

const usage =
  'usage: realtune sample --ckpt DIR --prompt "..." [--negative "..."] [--cfg 5] [--steps 50] [--sampler ddim|ddpm] [--n 8] [--seed S] [--lora F[,F2] --lora-scale 0.5 --text-lora-steps 900-1000 --hard-lora-blocks last-half] --out grid.png\n' +
  '       realtune sample --ckpt DIR --dsd F --ref IMAGE --prompt "a person, running, ..." [--cfg 5] [--cfg-image 1.5] [--steps 50] [--n 8] --out grid.png';

export async function run(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, sampleFlags);
  if (flags.help) {
    console.log(flagHelp(usage, sampleFlags));
    return;
  }
  if (flags.ckpt === undefined) throw new FlagError('--ckpt is required: a checkpoint directory (e.g. models/base-tiny)');
  if (flags.prompt === undefined) throw new FlagError('--prompt is required: the text to draw');
  // --allow-other-base applies to the DSD adapter when --dsd is given.
  const lora = parseLoraFlags(flags.dsd !== undefined ? { ...flags, 'allow-other-base': undefined } : flags);
  if (flags.dsd !== undefined) {
    if (flags.ref === undefined) throw new FlagError('--dsd needs --ref IMAGE: the person to draw');
    if (lora.files.length > 0) throw new FlagError('--dsd and --lora cannot be combined: a DSD adapter is sampled on the base alone');
    if (flags.sampler !== 'ddim') throw new FlagError('--dsd samples with ddim; leave --sampler out');
  } else {
    for (const name of ['ref', 'cfg-image'] as const) {
      if (flags[name] !== undefined) throw new FlagError(`--${name} applies to --dsd: give --dsd F too`);
    }
  }
  const ckpt = path.resolve(String(flags.ckpt));
  if (!isCheckpoint(ckpt)) throw new FlagError(existsSync(ckpt) ? `--ckpt ${String(flags.ckpt)}: not a checkpoint (needs model.safetensors and state.json)` : `--ckpt ${String(flags.ckpt)}: no such directory`);
  const out = path.resolve(String(flags.out));
  checkOutputFile(out, '--out');
  const prompts = String(flags.prompt).split('|').map((p) => p.trim());
  const n = Number(flags.n);
  const steps = Number(flags.steps);
  const allowNonFinite = Boolean(flags['allow-non-finite']);
  const adapterFiles = openLoraFiles(flags, lora);
  let model: TextToImage | undefined;
  try {
    model = TextToImage.load(ckpt, { allowNonFinite });
    checkSamplingSteps('steps', steps, model);
    checkSamplesFit(`--n ${n} x ${prompts.length} prompt(s)`, n * prompts.length, model);
    const bar = flags.quiet ? null : new ProgressBar({ total: steps, label: 'sample' });
    const images = flags.dsd !== undefined ? await sampleDsd(model, flags, prompts, n, steps, () => bar?.tick()) : model.generate({
      prompts,
      n,
      steps,
      cfg: Number(flags.cfg),
      sampler: flags.sampler as 'ddim' | 'ddpm',
      seed: Number(flags.seed),
      allowNonFinite,
      ...(flags.negative !== undefined ? { negative: String(flags.negative) } : {}),
      ...(adapterFiles.length > 0 ? { lora: adapterFiles, ...lora.selection } : {}),
      onStep: () => bar?.tick(),
    });
    bar?.finish();
    await writeLabelledGrid(out, images, prompts.flatMap((p) => Array<string>(n).fill(p)), n);
    images.dispose();
  } finally {
    model?.dispose();
    for (const f of adapterFiles) f.dispose();
  }
  console.log(`sample: ${prompts.length * n} images written to ${out}`);
}

/** --dsd: the reference's person in the prompts' contexts (lib/train/dsd/generate.ts). */
function sampleDsd(model: TextToImage, flags: Record<string, unknown>, prompts: string[], n: number, steps: number, tick: () => void): Promise<Tensor<'f32'>> {
  return dsdSample(model, {
    adapter: path.resolve(String(flags.dsd)),
    reference: path.resolve(String(flags.ref)),
    allowOtherBase: Boolean(flags['allow-other-base']),
    log: (line) => console.log(`sample: ${line}`),
    prompts,
    n,
    steps,
    cfgText: Number(flags.cfg),
    seed: Number(flags.seed),
    ...(flags['cfg-image'] !== undefined ? { cfgImage: Number(flags['cfg-image']) } : {}),
    ...(flags.negative !== undefined ? { negative: String(flags.negative) } : {}),
    onStep: tick,
  });
}
