// One stage of the curriculum: start from the base with the earlier stages of its chain merged
// into the weights (that starting model is the stage's reference), train LoRA adapters with
// Diffusion-DPO on the stage's pairs through trainDpo (the one engine: resumable from
// <dir>/checkpoint), and write two adapter files:
//   stage.safetensors  this stage's adapters alone, on the weights it started from
//   lora.safetensors   the whole chain so far as groups over the base model (easy, text, normal,
//                      hard), which is what `sample --lora`, `generate({ lora })` and the
//                      evaluation read, with the inference rules stored as the groups' defaults:
//                      the text-encoder group only for t in 900..1000, the hard group only on the
//                      last half of the DiT blocks.
// A stage is finished when lora.safetensors exists; its grid and report are made after.
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { noGrad } from '../../autograd/variable.js';
import { adapterTensors, describeAdapters, readAdapterFile, resolveLoraUpdates, saveAdapterFile, weightsHash, type AdapterGroup } from '../../nn/adapter_file.js';
import { detachAdapters } from '../../nn/lora.js';
import { axpy } from '../../ops/elementwise.js';
import { matmul } from '../../ops/matmul.js';
import { TextToImage } from '../../models/text_to_image.js';
import type { Tensor } from '../../tensor.js';
import { denoiserAttention, textEncoderAttention, trainDpo, type DpoStepReport } from '../dpo.js';
import { onRankZero, worldCommunicator } from '../loop/dist.js';
import type { PreferenceExample } from '../preferences.js';

export type StageName = 'easy' | 'normal' | 'hard' | 'all' | 'naive';

export interface StageSettings {
  steps: number;
  batch: number;
  lr: number;
  beta: number;
  rank: number;
  /** Text-encoder LoRA rank (HG-DPO trains it in the easy stage only; 0: none). */
  textRank: number;
  /** lambda_stat of the statistics term (HG-DPO: 1e4 in the easy stage only; 0: off). */
  statWeight: number;
  seed: number;
  /** Checkpoint every k steps (0: only at the end). */
  ckptEvery: number;
}

/** The sampling-time window of the text-encoder LoRA (SPEC: t in 900..1000). */
export const textLoraTimesteps: [number, number] = [900, 999];

/**
 * The base checkpoint with the denoiser groups of `previous` (a chain's lora.safetensors) merged
 * into its weights at scale 1: the starting model and reference of the next stage.
 */
export function loadStartModel(base: string, previous: string | undefined): TextToImage {
  const model = TextToImage.load(base);
  try {
    mergeChain(model, previous);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

/** Merges the denoiser groups of `previous` (a chain's lora.safetensors) into `model`'s weights at scale 1. */
function mergeChain(model: TextToImage, previous: string | undefined): void {
  if (previous === undefined) return;
  const file = readAdapterFile(previous);
  try {
    const text = file.groups.filter((g) => g.name === 'text').map((g) => g.name);
    const updates = resolveLoraUpdates(model.dit, [file], { loraGroups: Object.fromEntries(text.map((name) => [name, { enabled: false }])) }, `curriculum: ${previous}`);
    noGrad(() => {
      for (const u of updates) {
        const delta = matmul(u.up, u.down, { transA: true, transB: true, alpha: u.scale });
        axpy(1, delta, u.linear.weight.value);
        delta.dispose();
      }
    });
  } finally {
    file.dispose();
  }
}

export interface StageRun {
  name: StageName;
  /** The stage's directory (checkpoint/, stage.safetensors, lora.safetensors). */
  dir: string;
  base: string;
  /** lora.safetensors of the chain before this stage (undefined: the stage starts from the base). */
  previous: string | undefined;
  pairs: readonly PreferenceExample[];
  /** Names the pairs (checked on resume). */
  dataIdentity: string;
  settings: StageSettings;
  onStep?: (report: DpoStepReport) => void;
  onStart?: (step: number) => void;
}

/** Trains one stage (resuming its checkpoint when there is one) and writes its adapter files. Returns lora.safetensors. */
export async function runStage(stage: StageRun): Promise<string> {
  const chainFile = path.join(stage.dir, 'lora.safetensors');
  if (existsSync(chainFile)) return chainFile;
  mkdirSync(stage.dir, { recursive: true });
  // One load: the base's hash (what the chain file applies to), then the earlier stages merged in.
  const model = TextToImage.load(stage.base);
  try {
    const baseHash = weightsHash(model.dit);
    mergeChain(model, stage.previous);
    const startHash = weightsHash(model.dit);
    const checkpoint = path.join(stage.dir, 'checkpoint');
    const s = stage.settings;
    await trainDpo(model, stage.pairs, {
      steps: s.steps,
      batch: s.batch,
      lr: s.lr,
      beta: s.beta,
      rank: s.rank,
      textRank: s.textRank,
      statWeight: s.statWeight,
      seed: s.seed,
      out: stage.dir,
      ckptEvery: s.ckptEvery,
      dataIdentity: stage.dataIdentity,
      ...(existsSync(path.join(checkpoint, 'state.json')) ? { resume: checkpoint } : {}),
      ...(stage.onStep ? { onStep: stage.onStep } : {}),
      ...(stage.onStart ? { onStart: stage.onStart } : {}),
    });
    // Rank 0 writes the adapter files; the other ranks of a data-parallel job wait for them.
    await onRankZero(worldCommunicator(), `curriculum: the adapter files of stage ${stage.name}`, () => {
      // This stage's groups: its denoiser LoRA, and (easy) the text-encoder LoRA.
      const groups: AdapterGroup[] = [describeAdapters(model.dit, { name: stage.name, pattern: denoiserAttention, ...(stage.name === 'hard' ? { blocks: 'last-half' as const } : {}) })];
      const tensors: Record<string, Tensor> = { ...adapterTensors(model.dit, denoiserAttention, stage.name) };
      if (s.textRank > 0) {
        groups.push(describeAdapters(model.dit, { name: 'text', pattern: textEncoderAttention, timesteps: textLoraTimesteps }));
        Object.assign(tensors, adapterTensors(model.dit, textEncoderAttention, 'text'));
      }
      const extra = { stage: stage.name, settings: JSON.stringify(s), pairs: stage.dataIdentity };
      saveAdapterFile(path.join(stage.dir, 'stage.safetensors'), tensors, { base: startHash, groups, extra: { ...extra, startsFrom: stage.previous ?? 'base' } });
      // The chain so far over the base: the previous chain's groups, then this stage's.
      const chainGroups: AdapterGroup[] = [];
      const chainTensors: Record<string, Tensor> = {};
      if (stage.previous !== undefined) {
        const previous = readAdapterFile(stage.previous);
        try {
          for (const g of previous.groups) {
            if (groups.some((mine) => mine.name === g.name)) throw new Error(`curriculum: ${stage.previous} already has a group ${g.name}`);
            chainGroups.push({ ...g });
          }
          for (const [key, t] of Object.entries(previous.tensors)) chainTensors[key] = t.clone();
        } finally {
          previous.dispose();
        }
      }
      chainGroups.push(...groups);
      Object.assign(chainTensors, tensors);
      try {
        saveAdapterFile(chainFile, chainTensors, { base: baseHash, groups: chainGroups, extra: { chain: chainGroups.map((g) => g.name).join('+'), stage: stage.name } });
      } finally {
        for (const [key, t] of Object.entries(chainTensors)) if (tensors[key] !== t) t.dispose();
      }
    });
    detachAdapters(model.dit);
    return chainFile;
  } finally {
    model.dispose();
  }
}
