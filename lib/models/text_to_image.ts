// The text-to-image bundle: tokenizer + DiT (its text encoder built in as `dit.text`) + noise
// schedule + config, saved as a lib/io checkpoint directory (written atomically):
//   state.json         format, preset, DiT config (current image size), schedule; training
//                      state (step, RNG states, losses) when written by the trainer
//   tokenizer.json     the BPE tokenizer the text encoder was trained with
//   model.safetensors  every parameter and persistent buffer (f32, or bf16 to ship small)
//   optimizer.safetensors, ema.safetensors   training checkpoints only
// Sampling is classifier-free guidance with a negative prompt (the empty prompt by default)
// over DDIM or DDPM, deterministic by seed. Adapter files (lib/nn/adapter_file.ts) apply for one
// generate call (added into the base weights and restored exactly after, with the inference
// rules of SPEC section 2: scales, timestep windows, the last half of the blocks) or for good
// (applyLoraFile attaches adapters); neither touches adapters attached before.
//
// The network predicts either the noise eps ('epsilon', DDPM) or the velocity
// v = sqrt(abar) eps - sqrt(1 - abar) x0 ('v', Salimans & Ho 2022). With eps, the clean-image
// estimate at high noise is (x_t - sqrt(1 - abar) eps) / sqrt(abar): near t = T every error in
// eps is multiplied by 1 / sqrt(abar), so the loss barely cares what the model thinks the image
// is while the image's colours and layout are being decided. With v it predicts about -x0 there.
// Everything downstream (samplers, DPO, statistics matching) reads eps, which predictEps
// derives from v exactly: eps = sqrt(abar) v + sqrt(1 - abar) x_t.
import path from 'node:path';
import * as F from '../autograd/functions.js';
import { noGrad, Variable, type Input } from '../autograd/variable.js';
import { NoiseSchedule, type BetaScheduleKind } from '../diffusion/schedule.js';
import { sample, sdedit, type SamplerKind } from '../diffusion/sampler.js';
import { DiT, ditConfig, type DiTConfig, type DiTForwardOptions, type DiTPreset, type TextCondition } from '../nn/dit.js';
import {
  appliesAt,
  loraSources,
  LoraWeightPatch,
  openAdapterFiles,
  resolveLoraUpdates,
  weightsHash,
  type LoraSelection,
  type LoraSource,
  type LoraUpdate,
  type OpenedAdapterFiles,
} from '../nn/adapter_file.js';
import type { Linear } from '../nn/layers.js';
import { LoraAdapter } from '../nn/lora.js';
import { Generator } from '../ops/random.js';
import type { TextEncoding } from '../nn/text_encoder.js';
import { cast } from '../ops/cast.js';
import { axpy, mul } from '../ops/elementwise.js';
import { expand } from '../ops/reduce.js';
import { keep, tidy } from '../scope.js';
import { fromArray, type Tensor } from '../tensor.js';
import { Tokenizer } from '../text/tokenizer.js';
import { checkCheckpointTarget, isCheckpoint, loadCheckpoint, saveCheckpoint } from '../io/checkpoint.js';
import { firstNonFinite } from '../numeric.js';
import { checkCountFits, samplingBytesPerImage } from './limits.js';
import { parseTextToImageConfig, parseTokenizer } from './schema.js';

export const checkpointFormat = 'realtune-text-to-image';
const checkpointVersion = 1;
/** The files a checkpoint of this model holds besides model, optimizer and state: a save replaces only a directory of these. */
const checkpointFiles = ['tokenizer.json', 'ema.safetensors'];

/** What the denoiser outputs: the noise, or the velocity sqrt(abar) eps - sqrt(1 - abar) x0. */
export type PredictionKind = 'epsilon' | 'v';
export const predictionKinds: readonly PredictionKind[] = ['epsilon', 'v'];

export interface TextToImageConfig {
  format: typeof checkpointFormat;
  version: number;
  preset: DiTPreset | 'custom';
  dit: DiTConfig;
  schedule: { kind: BetaScheduleKind; steps: number };
  /** Absent in checkpoints written before the option: 'epsilon'. */
  prediction?: PredictionKind;
}

export interface CreateTextToImageOptions {
  preset?: DiTPreset;
  /** Overrides of the preset's DiT config (vocabSize always comes from the tokenizer). */
  dit?: Partial<DiTConfig>;
  schedule?: BetaScheduleKind;
  /** What the network predicts (default 'epsilon'). */
  prediction?: PredictionKind;
  /** Seeds the parameter initialisation. */
  seed?: number;
}

export interface GenerateOptions extends LoraSelection {
  /** One prompt, or one per group of `n` images. */
  prompts: string | readonly string[];
  /** The unconditional branch of guidance (default the empty prompt). */
  negative?: string;
  cfg?: number;
  steps?: number;
  sampler?: SamplerKind;
  seed?: number;
  /** Images per prompt (default 1): the result has prompts.length * n images, prompt-major. */
  n?: number;
  /**
   * Adapter files applied for this call only (several stack, in order), on top of any adapters
   * attached to the model. loraScale multiplies every group's scale; loraGroups overrides a
   * group's scale, timestep window, blocks or leaves it out; allowOtherBase applies files
   * trained on other base weights.
   */
  lora?: LoraSource | readonly LoraSource[];
  /**
   * SDEdit (HG-DPO's SDRecon): start from these images noised to `timestep` and denoise them back
   * to t = 0 in `steps` steps, instead of sampling from pure noise. One image per prompt and sample.
   */
  from?: { images: Tensor<'f32'>; timestep: number };
  /** Called after each denoising step (progress bars). */
  onStep?: (index: number, total: number) => void;
  /** Apply an adapter file even if it holds NaN or infinite values (default: that is an error). */
  allowNonFinite?: boolean;
}

export interface ApplyLoraOptions extends LoraSelection {
  /** Apply an adapter file even if it holds NaN or infinite values (default: that is an error). */
  allowNonFinite?: boolean;
}

export interface SaveOptions {
  /** Weight dtype on disk: f32 (exact, for resuming) or bf16 (half the size, for shipping). */
  dtype?: 'f32' | 'bf16';
  /** Training checkpoints: optimiser tensors, trainer state and extra files, in the same atomic write. */
  optimizer?: Record<string, Tensor>;
  trainer?: Record<string, unknown>;
  extraFiles?: Record<string, Uint8Array | string>;
  /** Write weights that are NaN or infinite (default: that is an error, and nothing is written). */
  allowNonFinite?: boolean;
}

export interface LoadOptions {
  /** Load weights that are NaN or infinite (default: that is an error naming the tensor). */
  allowNonFinite?: boolean;
}

export class TextToImage {
  constructor(
    readonly tokenizer: Tokenizer,
    readonly dit: DiT,
    readonly schedule: NoiseSchedule,
    readonly preset: DiTPreset | 'custom' = 'custom',
    readonly prediction: PredictionKind = 'epsilon',
  ) {
    if (!predictionKinds.includes(prediction)) throw new RangeError(`TextToImage: prediction must be 'epsilon' or 'v', got ${JSON.stringify(prediction)}`);
    if (dit.text === null) throw new Error('TextToImage: the DiT must carry its text encoder (config.text)');
    if (dit.text.config.vocabSize < tokenizer.vocabSize) {
      throw new RangeError(`TextToImage: the text encoder has ${dit.text.config.vocabSize} token embeddings but the tokenizer has ${tokenizer.vocabSize} tokens`);
    }
  }

  /** A freshly initialised model for `tokenizer`. */
  static create(tokenizer: Tokenizer, options: CreateTextToImageOptions = {}): TextToImage {
    const preset = options.preset ?? 'tiny';
    const base = ditConfig(preset, options.dit ?? {});
    const config: DiTConfig = {
      ...base,
      ...(options.seed === undefined ? {} : { seed: options.seed }),
      text: { ...base.text!, vocabSize: tokenizer.vocabSize },
    };
    return new TextToImage(tokenizer, new DiT(config), NoiseSchedule.create(options.schedule ?? 'linear'), options.dit ? 'custom' : preset, options.prediction ?? 'epsilon');
  }

  get config(): TextToImageConfig {
    const { seed: _seed, ...dit } = this.dit.config;
    return {
      format: checkpointFormat,
      version: checkpointVersion,
      preset: this.preset,
      dit: dit as DiTConfig,
      schedule: { kind: this.schedule.kind, steps: this.schedule.steps },
      prediction: this.prediction,
    };
  }

  get imageSize(): number {
    return this.dit.config.imageSize;
  }

  get channels(): number {
    return this.dit.config.channels;
  }

  /** sha256 of the base weights (adapters excluded), computed now: what adapter files name as their base. */
  weightsHash(): string {
    return weightsHash(this.dit);
  }

  /** Token ids i32 [B, contextLength] and lengths i32 [B] for prompts. */
  tokenize(prompts: readonly string[]): { ids: Tensor<'i32'>; lengths: Tensor<'i32'> } {
    const contextLength = this.dit.config.contextLength;
    const { ids, lengths } = this.tokenizer.encodeBatch(prompts, contextLength);
    return {
      ids: fromArray(ids, [prompts.length, contextLength], { dtype: 'i32' }),
      lengths: fromArray(lengths, [prompts.length], { dtype: 'i32' }),
    };
  }

  /** Text features of prompts (recorded on the tape when gradients are on). */
  encodePrompts(prompts: readonly string[]): TextEncoding {
    if (prompts.length === 0) throw new RangeError('encodePrompts: expected at least one prompt');
    const { ids, lengths } = this.tokenize(prompts);
    const encoding = this.dit.encodeText(ids, lengths);
    ids.dispose();
    return encoding;
  }

  /** The network's output for x_t [B, C, H, W] (eps or v, see `prediction`), one timestep per sample or one for all. */
  predict(xt: Input, t: number | readonly number[], text: TextCondition, options: DiTForwardOptions = {}): Variable {
    return this.dit.forward(xt, t, text, options);
  }

  /** eps_theta(x_t, t, c), whatever the network predicts. */
  predictEps(xt: Input, t: number | readonly number[], text: TextCondition, options: DiTForwardOptions = {}): Variable {
    const out = this.dit.forward(xt, t, text, options);
    if (this.prediction === 'epsilon') return out;
    const value = xt instanceof Variable ? xt.value : xt;
    // eps = sqrt(abar) v + sqrt(1 - abar) x_t; x_t is a constant of the graph here. The
    // coefficients belong to the graph (the product's backward reads them) and are freed with it.
    const { signal, noise } = this.#perSample(t, value);
    const noiseTerm = mul(value, noise);
    noise.dispose();
    const eps = F.add(F.mul(out, signal), noiseTerm);
    if (eps.node !== null) eps.node.owned.push(signal, noiseTerm);
    else {
      signal.dispose();
      noiseTerm.dispose();
    }
    return eps;
  }

  /** What `predict` is trained toward for x0 noised with `noise` at `timesteps`: eps itself, or v. */
  target(x0: Tensor<'f32'>, noise: Tensor<'f32'>, timesteps: readonly number[]): Tensor<'f32'> {
    if (this.prediction === 'epsilon') return noise.clone();
    return tidy(() => {
      const { signal, noise: noiseLevel } = this.#perSample(timesteps, x0);
      // v = sqrt(abar) eps - sqrt(1 - abar) x0
      return axpy(-1, mul(x0, noiseLevel), mul(noise, signal));
    });
  }

  /** sqrt(abar_t) and sqrt(1 - abar_t) broadcast to like's shape, per sample. */
  #perSample(t: number | readonly number[], like: Tensor<'f32'>): { signal: Tensor<'f32'>; noise: Tensor<'f32'> } {
    const batch = like.shape[0]!;
    const ts = typeof t === 'number' ? Array<number>(batch).fill(t) : t;
    if (ts.length !== batch) throw new RangeError(`predict: ${ts.length} timesteps for a batch of ${batch}`);
    const column = (values: number[]) =>
      tidy(() => expand(fromArray(values, [batch, ...like.shape.slice(1).map(() => 1)], { device: like.device }), like.shape));
    const levels = ts.map((step) => this.schedule.signalNoise(step));
    return { signal: column(levels.map((l) => l.signal)), noise: column(levels.map((l) => l.noise)) };
  }

  /** Images [N, 3, H, W] in [-1, 1]: prompts.length * n of them, prompt-major. */
  generate(options: GenerateOptions): Tensor<'f32'> {
    const prompts = typeof options.prompts === 'string' ? [options.prompts] : [...options.prompts];
    if (prompts.length === 0) throw new RangeError('generate: expected at least one prompt');
    const n = options.n ?? 1;
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`generate: n must be an integer >= 1, got ${n}`);
    const cfg = options.cfg ?? 5;
    const steps = options.steps ?? 50;
    if (!Number.isInteger(steps) || steps < 1 || steps > this.schedule.steps) {
      throw new RangeError(`generate: steps must be an integer in [1, ${this.schedule.steps}] (the noise schedule's steps), got ${steps}`);
    }
    checkCountFits(`generate: ${prompts.length} prompt(s) x ${n} images`, prompts.length * n, samplingBytesPerImage(this.dit.config, this.imageSize), 'image');
    if (options.from !== undefined) {
      const { images, timestep } = options.from;
      const expected = [prompts.length * n, this.channels, this.imageSize, this.imageSize];
      if (images.dtype !== 'f32' || images.shape.length !== 4 || images.shape.some((d, i) => d !== expected[i])) {
        throw new RangeError(`generate: from.images must be f32 [${expected.join(', ')}] (one image per prompt and sample), got ${images.dtype} [${images.shape.join(', ')}]`);
      }
      if (!Number.isInteger(timestep) || timestep < 0 || timestep >= this.schedule.steps) {
        throw new RangeError(`generate: from.timestep must be an integer in [0, ${this.schedule.steps}), got ${timestep}`);
      }
    }
    const sources = loraSources(options.lora);
    if (sources.length === 0 && (options.loraScale !== undefined || options.loraGroups !== undefined || options.allowOtherBase !== undefined)) {
      throw new RangeError('generate: loraScale, loraGroups and allowOtherBase apply to adapter files: pass them with lora');
    }
    const wasTraining = this.dit.training;
    let files: OpenedAdapterFiles = { files: [], owned: [] };
    let patch: LoraWeightPatch | undefined;
    const encodings = new Map<string, ConstantText>();
    try {
      this.dit.eval();
      files = openAdapterFiles(sources, { allowNonFinite: options.allowNonFinite ?? false });
      const updates = resolveLoraUpdates(this.dit, files.files, { ...options, depth: this.dit.config.depth }, 'generate');
      patch = new LoraWeightPatch(updates);
      const applied = patch;
      const isText = (u: LoraUpdate): boolean => u.layer.startsWith('text.');
      const timesteps = this.schedule.samplingTimesteps(steps);
      return noGrad(() => {
        const batchPrompts = prompts.flatMap((p) => Array<string>(n).fill(p));
        const batch = batchPrompts.length;
        // Guidance in one forward pass: the prompts and the negatives as one batch of 2B.
        const textPrompts = cfg === 1 ? batchPrompts : [...batchPrompts, ...Array<string>(batch).fill(options.negative ?? '')];
        // Text-encoder updates with a timestep window: one encoding per set of them that a step
        // uses (with and without), computed once (before sampling) and chosen per step.
        const encodingAt = (t: number): ConstantText => {
          const key = updates.flatMap((u, i) => (isText(u) && appliesAt(u, t) ? [i] : [])).join(',');
          let text = encodings.get(key);
          if (text === undefined) {
            applied.activate((u) => appliesAt(u, t), isText);
            text = this.#encodeConstant(textPrompts);
            for (const tensor of [text.tokens, text.pooled, text.lengths]) keep(tensor);
            encodings.set(key, text);
          }
          return text;
        };
        for (const t of timesteps) encodingAt(t);
        const size = this.imageSize;
        const total = timesteps.length;
        const predict = (xt: Tensor<'f32'>, t: number): Tensor<'f32'> => {
          applied.activate((u) => appliesAt(u, t), (u) => !isText(u));
          return this.#guidedEps(xt, t, encodingAt(t), cfg);
        };
        const samplerOptions = {
          sampler: options.sampler ?? 'ddim',
          steps,
          seed: options.seed ?? 0,
          ...(options.onStep ? { onStep: (index: number) => options.onStep!(index, total) } : {}),
        } as const;
        if (options.from !== undefined) return sdedit(predict, options.from.images, options.from.timestep, this.schedule, samplerOptions);
        return sample(predict, [batch, this.channels, size, size], this.schedule, samplerOptions);
      });
    } finally {
      for (const text of encodings.values()) disposeEncoding(text);
      patch?.dispose();
      for (const f of files.owned) f.dispose();
      this.dit.train(wasTraining);
    }
  }

  /**
   * eps_neg + cfg (eps_cond - eps_neg) for x_t [B, ...], with `text` holding the B prompts and
   * then the B negatives (or only the prompts when cfg is 1).
   */
  #guidedEps(xt: Tensor<'f32'>, t: number, text: ConstantText, cfg: number): Tensor<'f32'> {
    return tidy(() => {
      const batch = xt.shape[0]!;
      if (cfg === 1) return this.predictEps(xt, t, text).value;
      const both = this.predictEps(F.concat([xt, xt], 0).value, t, text).value;
      const negative = both.slice(batch, 2 * batch).clone();
      return axpy(cfg, both.slice(0, batch), negative, { beta: 1 - cfg });
    });
  }

  /** Text features as plain tensors outside any graph (sampling reads them at every step). */
  #encodeConstant(prompts: readonly string[]): ConstantText {
    return tidy(() => {
      const e = this.encodePrompts(prompts);
      return { tokens: e.tokens.value, pooled: e.pooled.value, lengths: e.lengths };
    });
  }

  /**
   * Writes the checkpoint directory atomically (a temporary directory renamed into place). What
   * is at `dir` is replaced only when it is a checkpoint of this model (or empty).
   */
  save(dir: string, options: SaveOptions = {}): void {
    const weights = this.dit.stateDict();
    const nonFinite = options.allowNonFinite ? undefined : firstNonFinite(weights);
    if (nonFinite !== undefined) throw new Error(`TextToImage.save: ${nonFinite}; refusing to write it to ${dir} (pass allowNonFinite to write it anyway)`);
    saveCheckpoint(
      dir,
      {
        model: weights,
        ...(options.optimizer ? { optimizer: options.optimizer } : {}),
        state: { ...this.config, ...(options.trainer ? { trainer: options.trainer } : {}) },
        files: { 'tokenizer.json': JSON.stringify(this.tokenizer.toJSON()), ...(options.extraFiles ?? {}) },
      },
      { floatFormat: (options.dtype ?? 'f32') === 'bf16' ? 'BF16' : 'F32', knownFiles: checkpointFiles },
    );
  }

  /**
   * Fails, before any work whose result goes there, when save(dir) would fail: something other
   * than a checkpoint of this model (or an empty directory) is at `dir`, or it cannot be written.
   * `what` names the path in the error (a flag, say).
   */
  static checkSaveTarget(dir: string, what: string): void {
    checkCheckpointTarget(dir, what, checkpointFiles);
  }

  /**
   * Reads a checkpoint directory written by save() (bf16 weights are widened to f32). The DiT
   * comes back in eval mode (no dropout): a trainer switches it to training mode itself.
   */
  static load(dir: string, options: LoadOptions = {}): TextToImage {
    if (!isCheckpoint(dir)) throw new Error(`TextToImage.load: ${dir} is not a checkpoint directory (no model.safetensors and state.json)`);
    const { model: tensors, optimizer, state, files, dir: found } = loadCheckpoint(dir);
    try {
      const config = parseTextToImageConfig(state, `TextToImage.load: ${path.join(found, 'state.json')}`, { format: checkpointFormat, version: checkpointVersion });
      const tokenizerBytes = files['tokenizer.json'];
      if (tokenizerBytes === undefined) throw new Error(`TextToImage.load: ${found} has no tokenizer.json`);
      const tokenizer = parseTokenizer(tokenizerBytes, `TextToImage.load: ${path.join(found, 'tokenizer.json')}`);
      const nonFinite = options.allowNonFinite ? undefined : firstNonFinite(tensors);
      if (nonFinite !== undefined) throw new Error(`TextToImage.load: ${path.join(found, 'model.safetensors')}: ${nonFinite}; pass allowNonFinite to load it anyway`);
      const dit = new DiT(config.dit);
      try {
        tidy(() => {
          const asF32: Record<string, Tensor> = {};
          for (const [name, t] of Object.entries(tensors)) asF32[name] = t.dtype === 'bf16' ? cast(t, 'f32') : t;
          dit.loadStateDict(asF32);
        });
      } catch (err) {
        dit.dispose();
        throw new Error(`TextToImage.load: ${path.join(found, 'model.safetensors')} does not fit the DiT that state.json describes: ${(err as Error).message}`);
      }
      dit.eval();
      return new TextToImage(tokenizer, dit, NoiseSchedule.create(config.schedule.kind, config.schedule.steps), config.preset, config.prediction ?? 'epsilon');
    } finally {
      for (const t of [...Object.values(tensors), ...Object.values(optimizer)]) t.dispose();
    }
  }

  dispose(): void {
    this.dit.dispose();
  }
}

interface ConstantText {
  tokens: Tensor<'f32'>;
  pooled: Tensor<'f32'>;
  lengths: Tensor<'i32'>;
}

function disposeEncoding(e: ConstantText): void {
  e.tokens.dispose();
  e.pooled.dispose();
  e.lengths.dispose();
}

/**
 * Attaches the LoRA groups of adapter files to the model for good (until detached): one
 * LoraAdapter per layer, holding the file's factors at the group's scale (times loraScale,
 * after loraGroups' overrides), checked like generate's lora (base hash, kinds, layers, shapes).
 * An attached adapter applies at every step, so a group with a timestep window is refused
 * (override it with loraGroups { name: { timesteps: 'all' } } or pass the file to generate), and
 * so is a layer that already has an adapter or that two groups cover. Returns the attached
 * adapters by layer name; on any failure it attaches nothing (earlier adapters stay as they were).
 */
export function applyLoraFile(target: TextToImage | DiT, lora: LoraSource | readonly LoraSource[], options: ApplyLoraOptions = {}): Map<string, LoraAdapter> {
  const dit = target instanceof TextToImage ? target.dit : target;
  const sources = loraSources(lora);
  if (sources.length === 0) throw new RangeError('applyLoraFile: expected at least one adapter file');
  const files = openAdapterFiles(sources, { allowNonFinite: options.allowNonFinite ?? false });
  const attached = new Map<string, LoraAdapter>();
  const attachedTo: Linear[] = [];
  try {
    const updates = resolveLoraUpdates(dit, files.files, { ...options, depth: dit.config.depth }, 'applyLoraFile');
    const covered = new Map<string, LoraUpdate>();
    for (const u of updates) {
      if (u.timesteps !== undefined) {
        throw new Error(
          `applyLoraFile: adapter file ${u.file}: group ${u.group} applies only for t in [${u.timesteps.join(', ')}], but an attached adapter applies at every step; pass the file to generate's lora instead, or override the window with loraGroups { ${u.group}: { timesteps: 'all' } }`,
        );
      }
      if (u.linear.adapter !== null) {
        throw new Error(`applyLoraFile: layer ${u.layer} already has an adapter (${u.linear.adapter.kind}), so ${u.file} (group ${u.group}) cannot attach one there; detach it first, or pass the file to generate's lora, which adds its update on top`);
      }
      const earlier = covered.get(u.layer);
      if (earlier !== undefined) {
        throw new Error(`applyLoraFile: layer ${u.layer} is in group ${earlier.group} of ${earlier.file} and in group ${u.group} of ${u.file}; a layer holds one attached adapter (leave one group out with loraGroups { name: { enabled: false } }, or pass the files to generate's lora)`);
      }
      covered.set(u.layer, u);
    }
    // The factors are overwritten from the file: a fixed generator keeps the global stream untouched.
    const generator = new Generator(0);
    for (const u of updates) {
      const adapter = new LoraAdapter(u.linear.inFeatures, u.linear.outFeatures, u.down.shape[1]!, u.scale, generator);
      const device = u.linear.weight.device;
      if (adapter.down.device !== device) adapter.to(device);
      for (const [param, value] of [
        [adapter.down, u.down],
        [adapter.up, u.up],
      ] as const) {
        const moved = value.device === device ? value : value.to(device);
        param.value.copy_(moved);
        if (moved !== value) moved.dispose();
      }
      adapter.train(u.linear.training);
      u.linear.attachAdapter(adapter);
      attachedTo.push(u.linear);
      attached.set(u.layer, adapter);
    }
    return attached;
  } catch (err) {
    for (const linear of attachedTo) linear.detachAdapter()?.dispose();
    throw err;
  } finally {
    for (const f of files.owned) f.dispose();
  }
}

/** Mean loss helper shared by training and tests: epsilon-MSE of a prediction. */
export function epsilonLoss(prediction: Variable, noise: Input): Variable {
  return F.mse(prediction, noise);
}
