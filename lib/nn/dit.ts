// A text-conditioned DiT denoiser in pixel space (Peebles & Xie 2023, with PixArt-style
// cross-attention to text tokens): patchify -> + 2-D positions -> adaLN-Zero blocks
// (self-attention, cross-attention, MLP) -> final adaLN + Linear -> unpatchify. Predicts the
// noise epsilon of x_t.
//
// Conditioning c = MLP(sinusoidal(t)) + textPool(pooled text); each block's adaLN Linear maps
// SiLU(c) to shift/scale/gate for attention and MLP (zero-initialised: every block starts as the
// identity). Dropout (off by default) hits each block's attention outputs and MLP activations
// while training, as in DiT/ViT; the fused attention kernel has no dropout of the attention
// probabilities. Parameter names (`blocks.3.attn.q`, `blocks.3.cross.k`, `blocks.3.mlp.fc1`,
// `text.blocks.1.attn.q`) are what LoRA patterns match.
import * as F from '../autograd/functions.js';
import { noGrad, type Input, type Variable } from '../autograd/variable.js';
import { defaultGenerator, Generator } from '../ops/random.js';
import { fromArray, shapeString, type Tensor } from '../tensor.js';
import { normal } from './init.js';
import { Attention, LayerNorm, Linear, MLP, timestepEmbedding } from './layers.js';
import { Module, ModuleList } from './module.js';
import { TextEncoder, type TextEncoderConfig, type TextEncoding } from './text_encoder.js';

export interface DiTConfig {
  imageSize: number;
  patchSize: number;
  channels: number;
  width: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  /** Width of the text features the denoiser reads (the text encoder's width). */
  textWidth: number;
  /** Text tokens per prompt. */
  contextLength: number;
  /** The text encoder built inside the model as `text`; omit to feed text features from outside. */
  text?: Omit<TextEncoderConfig, 'width' | 'contextLength'>;
  /** 'learned' (initialised with 2-D sin-cos) or fixed 'sinusoidal'. */
  positions?: 'learned' | 'sinusoidal';
  /** Frequencies of the timestep embedding (DiT: 256). */
  timestepDim?: number;
  /** Parameter initialisation stream; default the global generator. */
  seed?: number;
  /**
   * Dropout probability in [0, 1) in every block while training: the self- and cross-attention
   * outputs, the MLP hidden activations and the MLP output (timm's proj_drop and Mlp drop, which
   * DiT builds on). The identity in eval mode. Default 0.
   */
  dropout?: number;
}

export type DiTPreset = 'tiny' | 'small';

const presets: Record<DiTPreset, DiTConfig> = {
  tiny: {
    imageSize: 32,
    patchSize: 4,
    channels: 3,
    width: 192,
    depth: 6,
    heads: 3,
    mlpRatio: 4,
    textWidth: 128,
    contextLength: 32,
    text: { vocabSize: 4096, depth: 2, heads: 2, mlpRatio: 4, causal: false },
  },
  small: {
    imageSize: 64,
    patchSize: 4,
    channels: 3,
    width: 384,
    depth: 12,
    heads: 6,
    mlpRatio: 4,
    textWidth: 256,
    contextLength: 32,
    text: { vocabSize: 8192, depth: 4, heads: 4, mlpRatio: 4, causal: false },
  },
};

/** A preset's config, with overrides; `vocabSize` sets the text encoder's vocabulary (the tokenizer's). */
export function ditConfig(preset: DiTPreset, overrides: Partial<DiTConfig> & { vocabSize?: number } = {}): DiTConfig {
  const base = presets[preset];
  if (base === undefined) throw new RangeError(`ditConfig: unknown preset ${JSON.stringify(preset)}, expected 'tiny' or 'small'`);
  const { vocabSize, ...rest } = overrides;
  const text = rest.text ?? (base.text === undefined ? undefined : { ...base.text });
  if (vocabSize !== undefined && text !== undefined) text.vocabSize = vocabSize;
  return { ...base, ...rest, ...(text === undefined ? {} : { text }) };
}

/** DiT's fixed 2-D sin-cos table [gh * gw, width]: first half from the column, second from the row. */
export function sincosPositions2d(gridH: number, gridW: number, width: number): Float32Array {
  if (width % 4 !== 0) throw new RangeError(`sincosPositions2d: width ${width} must be a multiple of 4`);
  const quarter = width / 4;
  const out = new Float32Array(gridH * gridW * width);
  for (let i = 0; i < gridH; i++) {
    for (let j = 0; j < gridW; j++) {
      const row = (i * gridW + j) * width;
      for (let k = 0; k < quarter; k++) {
        const omega = 1 / 10000 ** (k / quarter);
        out[row + k] = Math.sin(j * omega);
        out[row + quarter + k] = Math.cos(j * omega);
        out[row + 2 * quarter + k] = Math.sin(i * omega);
        out[row + 3 * quarter + k] = Math.cos(i * omega);
      }
    }
  }
  return out;
}

/** Bilinear resampling of a [h, w, c] grid to [newH, newW, c] (half-pixel centres, edges clamped). */
export function resizeGrid(data: ArrayLike<number>, h: number, w: number, c: number, newH: number, newW: number): Float32Array {
  const out = new Float32Array(newH * newW * c);
  const source = (o: number, n: number, size: number): [number, number, number] => {
    const x = Math.min(Math.max(((o + 0.5) * n) / size - 0.5, 0), n - 1);
    const x0 = Math.floor(x);
    const x1 = Math.min(x0 + 1, n - 1);
    return [x0, x1, x - x0];
  };
  for (let i = 0; i < newH; i++) {
    const [i0, i1, fi] = source(i, h, newH);
    for (let j = 0; j < newW; j++) {
      const [j0, j1, fj] = source(j, w, newW);
      for (let k = 0; k < c; k++) {
        const at = (r: number, s: number): number => data[(r * w + s) * c + k]!;
        const top = at(i0, j0) * (1 - fj) + at(i0, j1) * fj;
        const bottom = at(i1, j0) * (1 - fj) + at(i1, j1) * fj;
        out[(i * newW + j) * c + k] = top * (1 - fi) + bottom * fi;
      }
    }
  }
  return out;
}

/** The dropout p of a DiT, checked: a number in [0, 1). */
function checkDropout(p: unknown): number {
  if (typeof p !== 'number' || !(p >= 0 && p < 1)) throw new RangeError(`DiT: dropout must be a number in [0, 1), got ${typeof p === 'number' ? p : JSON.stringify(p)}`);
  return p;
}

/**
 * The dropout every block of a DiT applies: one rate, and one stream for all masks so that a
 * training checkpoint saves a single generator state. The DiT owns it and hands it to its blocks.
 */
export interface BlockDropout {
  p: number;
  generator: Generator;
}

/** Per-sample shift/scale/gate vectors [B, width] from the conditioning. */
function chunks(mod: Variable, count: number): Variable[] {
  const width = mod.shape[1]! / count;
  return F.split(mod, Array<number>(count).fill(width), 1);
}

/** gate [B, W] * x [B, L, W], the gate broadcast over tokens. */
function gated(gate: Variable, x: Variable): Variable {
  const [b, l, w] = x.shape as [number, number, number];
  return F.mul(F.expand(F.reshape(gate, [b, 1, w]), [b, l, w]), x);
}

export class DiTBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly norm2: LayerNorm;
  readonly cross: Attention;
  readonly norm3: LayerNorm;
  readonly mlp: MLP;
  readonly adaLN: Linear;

  /** `generator` initialises the weights; `dropoutSettings` is shared with the other blocks of the DiT (default off). */
  constructor(
    width: number,
    heads: number,
    mlpRatio: number,
    generator: Generator,
    readonly dropoutSettings: BlockDropout = { p: 0, generator },
  ) {
    super();
    const xavier = { generator, init: 'xavier' as const };
    this.norm1 = this.addModule('norm1', new LayerNorm(width, { affine: false, eps: 1e-6 }));
    this.attn = this.addModule('attn', new Attention(width, heads, xavier));
    this.norm2 = this.addModule('norm2', new LayerNorm(width, { eps: 1e-6 }));
    this.cross = this.addModule('cross', new Attention(width, heads, xavier));
    this.norm3 = this.addModule('norm3', new LayerNorm(width, { affine: false, eps: 1e-6 }));
    this.mlp = this.addModule('mlp', new MLP(width, Math.round(width * mlpRatio), xavier));
    this.adaLN = this.addModule('adaLN', new Linear(width, 6 * width, { init: 'zeros' }));
  }

  /**
   * x [B, N, W]; cond SiLU(c) [B, W]; context [B, Lc, W] with its kvLengths. With frames > 1,
   * each run of `frames` consecutive samples attends jointly in self-attention.
   */
  forward(x: Variable, cond: Variable, context: Variable, contextLengths: Tensor<'i32'>, frames = 1): Variable {
    const [shift1, scale1, gate1, shift2, scale2, gate2] = chunks(this.adaLN.forward(cond), 6) as [Variable, Variable, Variable, Variable, Variable, Variable];
    const [b, n, w] = x.shape as [number, number, number];
    const modulated = this.norm1.forward(x, { scale: scale1, shift: shift1 });
    const attended =
      frames === 1 ? this.attn.forward(modulated) : F.reshape(this.attn.forward(F.reshape(modulated, [b / frames, frames * n, w])), [b, n, w]);
    let h = F.add(x, gated(gate1, this.#drop(attended)));
    h = F.add(h, this.#drop(this.cross.forward(this.norm2.forward(h), { context, kvLengths: contextLengths })));
    // The MLP's fc1 -> GELU -> fc2 spelled out, so that dropout can reach its hidden activations.
    const hidden = this.#drop(F.gelu(this.mlp.fc1.forward(this.norm3.forward(h, { scale: scale2, shift: shift2 }))));
    return F.add(h, gated(gate2, this.#drop(this.mlp.fc2.forward(hidden))));
  }

  /** Dropout while training; when it is off nothing is recorded on the tape and no random number drawn. */
  #drop(x: Variable): Variable {
    const { p, generator } = this.dropoutSettings;
    return this.training && p > 0 ? F.dropout(x, p, { generator }) : x;
  }
}

/** Sinusoidal frequencies of t -> Linear -> SiLU -> Linear (DiT's TimestepEmbedder). */
export class TimestepEmbedder extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(
    readonly frequencies: number,
    width: number,
    generator: Generator,
  ) {
    super();
    this.fc1 = this.addModule('fc1', new Linear(frequencies, width, { init: 'zeros' }));
    this.fc2 = this.addModule('fc2', new Linear(width, width, { init: 'zeros' }));
    this.fc1.weight.value = normal([width, frequencies], 0.02, generator);
    this.fc2.weight.value = normal([width, width], 0.02, generator);
  }

  forward(t: readonly number[], device: Tensor['device']): Variable {
    const freq = timestepEmbedding(t, this.frequencies, { device });
    const out = this.fc2.forward(F.silu(this.fc1.forward(freq)));
    if (out.isLeaf) freq.dispose();
    else out.node!.owned.push(freq);
    return out;
  }
}

export class FinalLayer extends Module {
  readonly norm: LayerNorm;
  readonly adaLN: Linear;
  readonly linear: Linear;

  constructor(width: number, outFeatures: number) {
    super();
    this.norm = this.addModule('norm', new LayerNorm(width, { affine: false, eps: 1e-6 }));
    this.adaLN = this.addModule('adaLN', new Linear(width, 2 * width, { init: 'zeros' }));
    this.linear = this.addModule('linear', new Linear(width, outFeatures, { init: 'zeros' }));
  }

  forward(x: Variable, cond: Variable): Variable {
    const [shift, scale] = chunks(this.adaLN.forward(cond), 2) as [Variable, Variable];
    return this.linear.forward(this.norm.forward(x, { scale, shift }));
  }
}

/** Text features as the denoiser reads them: tokens [B, Lc, textWidth], pooled [B, textWidth], lengths i32 [B]. */
export type TextCondition = Pick<TextEncoding, 'tokens' | 'pooled' | 'lengths'> | { tokens: Input; pooled: Input; lengths: Tensor<'i32'> };

export interface DiTForwardOptions {
  /**
   * Joint processing of frames (Diffusion Self-Distillation's parallel processing): the batch
   * holds groups of `frames` consecutive samples (e.g. condition, target) whose tokens attend to
   * each other in self-attention. Each frame keeps its own timestep and text. Default 1.
   */
  frames?: number;
  /**
   * Added to the token embeddings (after patches and positions) [B, N, width]: how extra
   * conditioning enters per token (Diffusion Self-Distillation's frame embedding and condition
   * projection, lib/nn/dsd.ts).
   */
  tokens?: Input;
}

export class DiT extends Module {
  readonly config: Required<Omit<DiTConfig, 'text' | 'seed'>> & Pick<DiTConfig, 'text' | 'seed'>;
  readonly patch: Linear;
  readonly time: TimestepEmbedder;
  readonly textPool: Linear;
  readonly textProj: Linear;
  readonly blocks: ModuleList<DiTBlock>;
  readonly final: FinalLayer;
  readonly text: TextEncoder | null;
  #pos: Variable | null = null;
  #grid: [number, number];
  readonly #dropout: BlockDropout;

  constructor(config: DiTConfig) {
    super();
    const { imageSize, patchSize, channels, width, depth, heads, mlpRatio, textWidth, contextLength } = config;
    if (imageSize % patchSize !== 0) throw new RangeError(`DiT: imageSize ${imageSize} is not a multiple of patchSize ${patchSize}`);
    if (width % heads !== 0) throw new RangeError(`DiT: width ${width} is not divisible by heads ${heads}`);
    const dropout = checkDropout(config.dropout ?? 0);
    this.config = { positions: 'learned', timestepDim: 256, ...config, dropout };
    const generator = config.seed === undefined ? defaultGenerator() : new Generator(config.seed);
    // Masks continue the initialisation stream: reproducible from the seed (or after manualSeed),
    // and past every counter the weights used.
    this.#dropout = { p: dropout, generator };
    const grid = imageSize / patchSize;
    this.#grid = [grid, grid];
    this.patch = this.addModule('patch', new Linear(channels * patchSize * patchSize, width, { generator, init: 'xavier' }));
    const table = fromArray(sincosPositions2d(grid, grid, width), [grid * grid, width]);
    if (this.config.positions === 'learned') this.#pos = this.addParameter('pos', table);
    else this.addBuffer('pos', table, { persistent: false });
    this.time = this.addModule('time', new TimestepEmbedder(this.config.timestepDim, width, generator));
    this.textPool = this.addModule('textPool', new Linear(textWidth, width, { generator, init: 'xavier' }));
    this.textProj = this.addModule('textProj', new Linear(textWidth, width, { generator, init: 'xavier' }));
    this.blocks = this.addModule('blocks', new ModuleList(Array.from({ length: depth }, () => new DiTBlock(width, heads, mlpRatio, generator, this.#dropout))));
    this.final = this.addModule('final', new FinalLayer(width, patchSize * patchSize * channels));
    this.text = config.text === undefined ? null : this.addModule('text', new TextEncoder({ ...config.text, width: textWidth, contextLength }, { generator }));
  }

  /** Dropout probability of every block while training (config.dropout). */
  get dropout(): number {
    return this.#dropout.p;
  }

  set dropout(p: number) {
    this.#dropout.p = checkDropout(p);
    this.config.dropout = p;
  }

  /**
   * The stream every dropout mask is drawn from. A trainer installs its own so that the masks
   * follow the run's seed and resume from its checkpoint.
   */
  get dropoutGenerator(): Generator {
    return this.#dropout.generator;
  }

  set dropoutGenerator(generator: Generator) {
    if (!(generator instanceof Generator)) throw new TypeError(`DiT: dropoutGenerator must be a Generator, got ${typeof generator}`);
    this.#dropout.generator = generator;
  }

  /** Patches per column and per row that the position table is laid out for. */
  get gridSize(): [number, number] {
    return [...this.#grid];
  }

  #positionTable(): Tensor<'f32'> {
    return this.#pos !== null ? this.#pos.value : (this.buffer('pos') as Tensor<'f32'>);
  }

  /** Runs the built-in text encoder: ids i32 [B, contextLength], lengths per prompt. */
  encodeText(ids: Tensor<'i32'>, lengths: Tensor<'i32'> | readonly number[]): TextEncoding {
    if (this.text === null) throw new Error('DiT: this model has no text encoder (config.text was not given); pass text features to forward');
    return this.text.forward(ids, lengths);
  }

  /** [B, C, H, W] -> [B, N, C p p] (patch-major, then channel, row, column within the patch). */
  patchify(x: Input): Variable {
    const { patchSize: p, channels: c } = this.config;
    if (x.shape.length !== 4 || x.shape[1] !== c || x.shape[2]! % p !== 0 || x.shape[3]! % p !== 0) {
      throw new RangeError(`DiT: x has shape ${shapeString(x.shape)}, expected [batch, ${c}, H, W] with H and W multiples of ${p}`);
    }
    const [b, , h, w] = x.shape as [number, number, number, number];
    const grid = F.reshape(x, [b, c, h / p, p, w / p, p]);
    return F.reshape(F.permute(grid, [0, 2, 4, 1, 3, 5]), [b, (h / p) * (w / p), c * p * p]);
  }

  /** [B, N, p p C] -> [B, C, H, W] (DiT's unpatchify: p, q, c within each patch). */
  unpatchify(tokens: Variable, gridH: number, gridW: number): Variable {
    const { patchSize: p, channels: c } = this.config;
    const b = tokens.shape[0]!;
    const grid = F.reshape(tokens, [b, gridH, gridW, p, p, c]);
    return F.reshape(F.permute(grid, [0, 5, 1, 3, 2, 4]), [b, c, gridH * p, gridW * p]);
  }

  /** The conditioning vector c [B, W] before SiLU. */
  conditioning(t: number | readonly number[], pooled: Input, batch: number, device: Tensor['device']): Variable {
    const steps = typeof t === 'number' ? Array<number>(batch).fill(t) : t;
    if (steps.length !== batch) throw new RangeError(`DiT: ${steps.length} timesteps for a batch of ${batch}`);
    return F.add(this.time.forward(steps, device), this.textPool.forward(pooled));
  }

  /**
   * Predicts epsilon for x_t [B, C, H, W] at timesteps t (one per sample, or one for all) given
   * text features (from encodeText, or from outside with the same shapes).
   */
  forward(x: Input, t: number | readonly number[], text: TextCondition, options: DiTForwardOptions = {}): Variable {
    const { width, patchSize } = this.config;
    const [b, , h, w] = x.shape as [number, number, number, number];
    const frames = options.frames ?? 1;
    if (!Number.isInteger(frames) || frames < 1 || b % frames !== 0) {
      throw new RangeError(`DiT: frames must be a positive integer dividing the batch ${b}, got ${frames}`);
    }
    const gridH = h / patchSize;
    const gridW = w / patchSize;
    const [gh, gw] = this.gridSize;
    if (gridH !== gh || gridW !== gw) {
      throw new RangeError(`DiT: x is ${h}x${w} (${gridH}x${gridW} patches) but the positions are for ${gh}x${gw} patches; call interpolatePositions first`);
    }
    const n = gridH * gridW;
    const positions = this.#pos ?? this.#positionTable();
    let tokens = F.add(this.patch.forward(this.patchify(x)), F.expand(F.reshape(positions, [1, n, width]), [b, n, width]));
    if (options.tokens !== undefined) {
      const extra = options.tokens;
      if (extra.shape.length !== 3 || extra.shape[0] !== b || extra.shape[1] !== n || extra.shape[2] !== width) {
        throw new RangeError(`DiT: options.tokens has shape ${shapeString(extra.shape)}, expected [${b}, ${n}, ${width}] (batch, tokens, width)`);
      }
      tokens = F.add(tokens, extra);
    }
    const cond = F.silu(this.conditioning(t, text.pooled, b, x.device));
    const context = this.textProj.forward(text.tokens);
    for (const block of this.blocks) tokens = block.forward(tokens, cond, context, text.lengths, frames);
    return this.unpatchify(this.final.forward(tokens, cond), gridH, gridW);
  }

  /**
   * Resamples the position table to another image size (stage-wise resolution training): the
   * learned table bilinearly, the fixed one regenerated. Updates config.imageSize.
   */
  interpolatePositions(newHeight: number, newWidth: number = newHeight): void {
    const { patchSize, width } = this.config;
    if (newHeight % patchSize !== 0 || newWidth % patchSize !== 0) {
      throw new RangeError(`interpolatePositions: ${newHeight}x${newWidth} is not a multiple of patchSize ${patchSize}`);
    }
    const [gh, gw] = this.gridSize;
    const nh = newHeight / patchSize;
    const nw = newWidth / patchSize;
    noGrad(() => {
      const device = this.#positionTable().device;
      if (this.#pos !== null) {
        const resized = resizeGrid(this.#pos.value.toArray(), gh, gw, width, nh, nw);
        this.#pos.value = fromArray(resized, [nh * nw, width], { device });
        this.#pos.zeroGrad();
      } else {
        this.setBuffer('pos', fromArray(sincosPositions2d(nh, nw, width), [nh * nw, width], { device }));
      }
    });
    this.#grid = [nh, nw];
    if (newHeight === newWidth) this.config.imageSize = newHeight;
  }
}
