// The text-to-image bundle: tokenizer + DiT (its text encoder built in as `dit.text`) + noise
// schedule + config, saved as a lib/io checkpoint directory (written atomically):
//   state.json         format, preset, DiT config (current image size), schedule; training
//                      state (step, RNG states, losses) when written by the trainer
//   tokenizer.json     the BPE tokenizer the text encoder was trained with
//   model.safetensors  every parameter and persistent buffer (f32, or bf16 to ship small)
//   optimizer.safetensors, ema.safetensors   training checkpoints only
// Sampling is classifier-free guidance with a negative prompt (the empty prompt by default)
// over DDIM or DDPM, deterministic by seed; a LoRA file can be applied for one generate call.
//
// The network predicts either the noise eps ('epsilon', DDPM) or the velocity
// v = sqrt(abar) eps - sqrt(1 - abar) x0 ('v', Salimans & Ho 2022). With eps, the clean-image
// estimate at high noise is (x_t - sqrt(1 - abar) eps) / sqrt(abar): near t = T every error in
// eps is multiplied by 1 / sqrt(abar), so the loss barely cares what the model thinks the image
// is while the image's colours and layout are being decided. With v it predicts about -x0 there.
// Everything downstream (samplers, DPO, statistics matching) reads eps, which predictEps
// derives from v exactly: eps = sqrt(abar) v + sqrt(1 - abar) x_t.
import { existsSync } from 'node:fs';
import path from 'node:path';
import * as F from '../autograd/functions.js';
import { noGrad, Variable, type Input } from '../autograd/variable.js';
import { NoiseSchedule, type BetaScheduleKind } from '../diffusion/schedule.js';
import { sample, type SamplerKind } from '../diffusion/sampler.js';
import { DiT, ditConfig, type DiTConfig, type DiTPreset, type TextCondition } from '../nn/dit.js';
import { weightsHash } from '../nn/adapter_file.js';
import { attachLora, detachAdapters, loadAdapterStateDict, findLinears } from '../nn/lora.js';
import type { TextEncoding } from '../nn/text_encoder.js';
import { cast } from '../ops/cast.js';
import { axpy, mul } from '../ops/elementwise.js';
import { expand } from '../ops/reduce.js';
import { tidy } from '../scope.js';
import { fromArray, type Tensor } from '../tensor.js';
import { Tokenizer } from '../text/tokenizer.js';
import { loadSafetensors } from '../io/safetensors.js';
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

export interface GenerateOptions {
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
  /** A LoRA adapter file (safetensors written by adapterStateDict) applied for this call. */
  lora?: string;
  loraScale?: number;
  /** Called after each denoising step (progress bars). */
  onStep?: (index: number, total: number) => void;
  /** Apply a LoRA file even if it holds NaN or infinite values (default: that is an error). */
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
  predict(xt: Input, t: number | readonly number[], text: TextCondition): Variable {
    return this.dit.forward(xt, t, text);
  }

  /** eps_theta(x_t, t, c), whatever the network predicts. */
  predictEps(xt: Input, t: number | readonly number[], text: TextCondition): Variable {
    const out = this.dit.forward(xt, t, text);
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
    const loraFile = options.lora;
    const wasTraining = this.dit.training;
    this.dit.eval();
    if (loraFile !== undefined) applyLoraFile(this.dit, loraFile, options.loraScale ?? 1, { allowNonFinite: options.allowNonFinite ?? false });
    try {
      return noGrad(() => {
        const batchPrompts = prompts.flatMap((p) => Array<string>(n).fill(p));
        const batch = batchPrompts.length;
        // Guidance in one forward pass: the prompts and the negatives as one batch of 2B.
        const text = this.#encodeConstant(cfg === 1 ? batchPrompts : [...batchPrompts, ...Array<string>(batch).fill(options.negative ?? '')]);
        try {
          const size = this.imageSize;
          const total = this.schedule.samplingTimesteps(steps).length;
          return sample((xt, t) => this.#guidedEps(xt, t, text, cfg), [batch, this.channels, size, size], this.schedule, {
            sampler: options.sampler ?? 'ddim',
            steps,
            seed: options.seed ?? 0,
            ...(options.onStep ? { onStep: (index: number) => options.onStep!(index, total) } : {}),
          });
        } finally {
          disposeEncoding(text);
        }
      });
    } finally {
      if (loraFile !== undefined) detachAdapters(this.dit);
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
 * Attaches LoRA adapters for the layers a saved adapter file names (`<layer>.lora.down` [in, r],
 * `<layer>.lora.up` [r, out]) and loads them with `scale`.
 */
export function applyLoraFile(dit: DiT, file: string, scale: number, options: LoadOptions = {}): void {
  if (!existsSync(file)) throw new Error(`lora: file ${file} does not exist`);
  const { tensors } = loadSafetensors(file, { dtype: 'f32' });
  try {
    const nonFinite = options.allowNonFinite ? undefined : firstNonFinite(tensors);
    if (nonFinite !== undefined) throw new Error(`lora: ${file}: ${nonFinite}; pass allowNonFinite to apply it anyway`);
    const layers = new Map<string, number>();
    for (const [key, t] of Object.entries(tensors)) {
      const match = /^(.*)\.lora\.(down|up)$/.exec(key);
      if (match === null) throw new Error(`lora: ${file} holds ${key}, which is not a LoRA factor (<layer>.lora.down / .up)`);
      if (match[2] === 'down') layers.set(match[1]!, t.shape[1]!);
    }
    if (layers.size === 0) throw new Error(`lora: ${file} holds no LoRA factors`);
    for (const [layer, rank] of layers) {
      const escaped = layer.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      if (findLinears(dit, new RegExp(`^${escaped}$`)).length !== 1) throw new Error(`lora: ${file} names layer ${layer}, which this model does not have`);
      attachLora(dit, { pattern: new RegExp(`^${escaped}$`), rank, scale });
    }
    loadAdapterStateDict(dit, tensors);
  } catch (err) {
    detachAdapters(dit);
    throw err;
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}

/** Mean loss helper shared by training and tests: epsilon-MSE of a prediction. */
export function epsilonLoss(prediction: Variable, noise: Input): Variable {
  return F.mse(prediction, noise);
}
