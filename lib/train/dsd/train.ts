// Training a DSD adapter (SPEC section 4) through the one training engine: a fresh adapter
// (lib/train/dsd/adapter.ts: LoRA + two-frame conditioner, zero update) is attached to the base
// and trained on pairs with the DSD objective (objective.ts). Each drawn pair's prompt is the
// context only ("a person, running, ...") or, at rate `describe`, the words for the person too;
// the prompt is dropped at rate dropText and the reference at rate dropImage, independently, so
// that sampling can guide by text and by image. Checkpoints under out/checkpoint resume step for
// step (giving the same out again resumes); the adapter file is written to out/dsd.safetensors.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { TextToImage } from '../../models/text_to_image.js';
import { runTraining, type StepReport } from '../loop/engine.js';
import { parameterCheckpoints } from '../loop/param_checkpoint.js';
import { settingsWithDefaults } from '../loop/state.js';
import { attachDsd, type DsdAdapter } from './adapter.js';
import { dsdLossStep } from './objective.js';
import type { DsdPair } from './pairs.js';

export interface DsdTrainSettings {
  steps: number;
  /** Pairs per step. */
  batch: number;
  lr: number;
  /** LoRA rank on the denoiser's attention and MLP layers. */
  rank: number;
  /** Weight of the condition frame's identity-mapping term. */
  identityWeight: number;
  dropText: number;
  dropImage: number;
  /** Share of prompts that describe the person in words besides the context. */
  describe: number;
  seed: number;
  /** Guidance defaults written into the adapter file. */
  cfgText: number;
  cfgImage: number;
}

export const dsdTrainDefaults: DsdTrainSettings = {
  steps: 1000,
  batch: 16,
  lr: 3e-3,
  rank: 16,
  identityWeight: 1,
  dropText: 0.1,
  dropImage: 0.1,
  describe: 0.25,
  seed: 0,
  cfgText: 5,
  cfgImage: 8,
};

export interface TrainDsdOptions extends Partial<DsdTrainSettings> {
  /** The base; the adapter is attached to it (and stays attached, trained, on return). */
  model: TextToImage;
  pairs: readonly DsdPair[];
  /** Output directory: out/dsd.safetensors and out/checkpoint. */
  out?: string;
  ckptEvery?: number;
  resume?: string;
  /** Stop after this step (an interrupted run; for tests). */
  stopAt?: number;
  /** Provenance written into the adapter file. */
  provenance?: Record<string, string>;
  onStep?: (report: StepReport) => void;
}

export interface TrainDsdResult {
  dsd: DsdAdapter;
  losses: number[];
  file?: string;
  step: number;
}

/** A hash of the pairs' images and prompts (saved with the run: a resume on other pairs is refused). */
export function hashPairs(pairs: readonly DsdPair[]): string {
  const h = createHash('sha256');
  for (const p of pairs) {
    h.update(p.prompt).update('\0').update(p.described).update('\0');
    h.update(new Uint8Array(p.reference.buffer, p.reference.byteOffset, p.reference.byteLength));
    h.update(new Uint8Array(p.target.buffer, p.target.byteOffset, p.target.byteLength));
  }
  return h.digest('hex').slice(0, 16);
}

export async function trainDsd(options: TrainDsdOptions): Promise<TrainDsdResult> {
  const op = 'dsd train';
  const s = settingsWithDefaults(dsdTrainDefaults, options);
  const { model, pairs } = options;
  if (pairs.length === 0) throw new RangeError(`${op}: expected at least one pair, got none`);
  const per = model.channels * model.imageSize * model.imageSize;
  pairs.forEach((p, i) => {
    if (p.reference.length !== per || p.target.length !== per) {
      throw new RangeError(`${op}: pair ${i} has images of ${p.reference.length} and ${p.target.length} values, expected ${per} (${model.channels}x${model.imageSize}x${model.imageSize})`);
    }
  });
  for (const name of ['dropText', 'dropImage', 'describe'] as const) {
    if (!(s[name] >= 0 && s[name] <= 1)) throw new RangeError(`${op}: ${name} must be a rate in [0, 1], got ${s[name]}`);
  }
  if (!Number.isInteger(s.batch) || s.batch < 1) throw new RangeError(`${op}: batch must be an integer >= 1, got ${s.batch}`);
  if (!(s.identityWeight >= 0 && Number.isFinite(s.identityWeight))) throw new RangeError(`${op}: identityWeight must be finite and >= 0, got ${s.identityWeight}`);
  const base = model.weightsHash();
  // Given the same out again, the run goes on from its checkpoint.
  const ownCheckpoint = options.out === undefined ? undefined : path.join(options.out, 'checkpoint');
  const resume = options.resume ?? (ownCheckpoint !== undefined && existsSync(path.join(ownCheckpoint, 'state.json')) ? ownCheckpoint : undefined);
  // Only the adapter trains: the base's weights get no gradients (and cost no weight-gradient GEMMs).
  const trainable = model.dit.parameters().map((p) => [p, p.requiresGrad] as const);
  model.dit.freeze();
  const restoreTrainable = (): void => {
    for (const [p, flag] of trainable) p.requiresGrad = flag;
  };
  const dsd = attachDsd(model, { rank: s.rank, seed: s.seed });
  const parameters = (): ReturnType<DsdAdapter['parameters']> => dsd.parameters();
  try {
    const result = await runTraining({
      op,
      optim: { steps: s.steps, lr: s.lr, seed: s.seed },
      run: {
        ...(options.out !== undefined ? { out: options.out } : {}),
        ...(options.ckptEvery !== undefined ? { ckptEvery: options.ckptEvery } : {}),
        ...(resume !== undefined ? { resume } : {}),
        ...(options.stopAt !== undefined ? { stopAt: options.stopAt } : {}),
        ...(options.onStep ? { onStep: options.onStep } : {}),
      },
      settings: {
        base,
        pairs: pairs.length,
        pairsHash: hashPairs(pairs),
        batch: s.batch,
        rank: s.rank,
        identityWeight: s.identityWeight,
        dropText: s.dropText,
        dropImage: s.dropImage,
        describe: s.describe,
      },
      parameters,
      micro: ({ streams }) => {
        const references = new Float32Array(s.batch * per);
        const targets = new Float32Array(s.batch * per);
        const prompts: string[] = [];
        const withReference: boolean[] = [];
        const timesteps: number[] = [];
        for (let i = 0; i < s.batch; i++) {
          const pair = pairs[streams.host.int(pairs.length)]!;
          const described = streams.host.next() < s.describe;
          const keepText = streams.host.next() >= s.dropText;
          const keepImage = streams.host.next() >= s.dropImage;
          if (keepImage) references.set(pair.reference, i * per);
          targets.set(pair.target, i * per);
          prompts.push(keepText ? (described ? pair.described : pair.prompt) : '');
          withReference.push(keepImage);
          timesteps.push(streams.host.int(model.schedule.steps));
        }
        const terms = dsdLossStep(model, dsd, { references, targets, prompts, withReference, timesteps }, streams.noise, s.identityWeight);
        return { loss: terms.loss, metrics: { target: terms.target, condition: terms.condition } };
      },
      ...parameterCheckpoints(op, 'realtune-dsd-train', parameters),
      train: () => model.dit.train(),
      finish: () => model.dit.eval(),
    });
    let file: string | undefined;
    if (options.out !== undefined && result.step === s.steps) {
      file = path.join(options.out, 'dsd.safetensors');
      dsd.save(file, {
        base,
        cfgText: s.cfgText,
        cfgImage: s.cfgImage,
        extra: { ...(options.provenance ?? {}), steps: String(s.steps), pairs: String(pairs.length), batch: String(s.batch), lr: String(s.lr) },
      });
    }
    return { dsd, losses: result.losses, step: result.step, ...(file !== undefined ? { file } : {}) };
  } catch (err) {
    dsd.detach();
    throw err;
  } finally {
    restoreTrainable();
  }
}
