// The adapter-file flags `sample` and `eval` share: which files, and the inference rules of
// SPEC section 2 (HG-DPO: --lora-scale 0.5 --text-lora-steps 900-1000 --hard-lora-blocks last-half).
// The files are read and checked before the model is loaded, so a bad file fails first.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { readAdapterFile, type AdapterFile, type LoraGroupOverride, type LoraSelection } from '../nn/adapter_file.js';
import { FlagError, type FlagSpecs, type FlagValues } from './flags.js';

export const loraFlags: FlagSpecs = {
  lora: { kind: 'string', repeatable: true, help: 'adapter file (.safetensors) applied on top of the checkpoint; several stack in order' },
  'lora-scale': { kind: 'number', min: 0, help: "multiplies every adapter group's saved scale (1 when not given)" },
  'text-lora-steps': { kind: 'string', help: "sampling timesteps LO-HI (e.g. 900-1000), or all, at which the group named text applies" },
  'hard-lora-blocks': { kind: 'string', choices: ['last-half', 'all'], help: 'DiT blocks the group named hard applies to' },
  'allow-other-base': { kind: 'boolean', help: 'apply adapter files (--lora, or sample --dsd) trained on other base weights than the checkpoint' },
};

/** The group each rule flag overrides. */
const ruleGroups = { 'text-lora-steps': 'text', 'hard-lora-blocks': 'hard' } as const;

export interface LoraFlagValues {
  files: string[];
  selection: LoraSelection;
}

/** The timestep window of --text-lora-steps: 'all' or [lo, hi]. */
export function parseStepWindow(flag: string, raw: string): [number, number] | 'all' {
  if (raw === 'all') return 'all';
  const match = /^(\d+)-(\d+)$/.exec(raw);
  const [lo, hi] = match === null ? [Number.NaN, Number.NaN] : [Number(match[1]), Number(match[2])];
  if (!(Number.isSafeInteger(lo) && Number.isSafeInteger(hi) && lo <= hi)) {
    throw new FlagError(`--${flag} expects LO-HI, two timesteps with LO <= HI (e.g. 900-1000), or all; got ${JSON.stringify(raw)}`);
  }
  return [lo, hi];
}

/** The files of --lora (resolved, each present) and the selection the other flags make; checks flags that need --lora. */
export function parseLoraFlags(flags: FlagValues): LoraFlagValues {
  const files =
    flags.lora === undefined
      ? []
      : String(flags.lora)
          .split(',')
          .map((f) => f.trim());
  if (files.some((f) => f === '')) throw new FlagError(`--lora: an empty file name in ${JSON.stringify(String(flags.lora))} (files are separated by commas)`);
  for (const name of ['lora-scale', ...Object.keys(ruleGroups), 'allow-other-base']) {
    if (flags[name] !== undefined && files.length === 0) throw new FlagError(`--${name} needs --lora FILE`);
  }
  const resolved = files.map((f) => path.resolve(f));
  resolved.forEach((f, i) => {
    if (!existsSync(f)) throw new FlagError(`--lora ${files[i]}: no such file`);
  });
  const loraGroups: Record<string, LoraGroupOverride> = {};
  if (flags['text-lora-steps'] !== undefined) loraGroups[ruleGroups['text-lora-steps']] = { timesteps: parseStepWindow('text-lora-steps', String(flags['text-lora-steps'])) };
  if (flags['hard-lora-blocks'] !== undefined) loraGroups[ruleGroups['hard-lora-blocks']] = { blocks: flags['hard-lora-blocks'] as 'last-half' | 'all' };
  return {
    files: resolved,
    selection: {
      ...(flags['lora-scale'] !== undefined ? { loraScale: Number(flags['lora-scale']) } : {}),
      ...(Object.keys(loraGroups).length > 0 ? { loraGroups } : {}),
      ...(flags['allow-other-base'] ? { allowOtherBase: true } : {}),
    },
  };
}

/**
 * Reads and checks the --lora files (the caller disposes them), and that the groups the rule
 * flags name are in them.
 */
export function openLoraFiles(flags: FlagValues, values: LoraFlagValues): AdapterFile[] {
  const files: AdapterFile[] = [];
  try {
    for (const f of values.files) files.push(readAdapterFile(f, { allowNonFinite: Boolean(flags['allow-non-finite']) }));
    const names = [...new Set(files.flatMap((f) => f.groups.map((g) => g.name)))];
    for (const [flag, group] of Object.entries(ruleGroups)) {
      if (flags[flag] !== undefined && !names.includes(group)) throw new FlagError(`--${flag}: none of the --lora files has a group named ${group} (they have: ${names.join(', ')})`);
    }
    return files;
  } catch (err) {
    for (const f of files) f.dispose();
    throw err;
  }
}
