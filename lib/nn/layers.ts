// Basic layers: Linear (with an optional low-rank adapter slot), LayerNorm, Dropout, Embedding,
// MLP, multi-head Attention, and the sinusoidal timestep embedding.
import * as F from '../autograd/functions.js';
import { loraLinear } from '../autograd/lora_linear.js';
import type { Input, Variable } from '../autograd/variable.js';
import { defaultGenerator, Generator } from '../ops/random.js';
import { fromArray, ones, shapeString, zeros, type Tensor } from '../tensor.js';
import { linearDefault, normal, xavierUniform } from './init.js';
import { Module } from './module.js';

/**
 * A low-rank update y += scale * (x down) up of a Linear's output, down [in, r], up [r, out]
 * (LoRA, or LiDB whose factors are products of frozen and trainable parts).
 */
export abstract class LinearAdapter extends Module {
  abstract readonly kind: 'lora' | 'lidb';
  /** When false the Linear computes its base output only (the reference model in DPO). */
  enabled = true;
  /** True while the update is folded into the base weight (the adapter is then skipped). */
  merged = false;
  constructor(public scale: number) {
    super();
  }
  /**
   * The current factors as Variables (differentiable towards what they are made from).
   * `temporary`: they were computed for this call (not parameters) and are the caller's to free.
   */
  abstract factors(): AdapterFactors;
}

export interface AdapterFactors {
  down: Variable;
  up: Variable;
  temporary: boolean;
}

export interface LinearOptions {
  bias?: boolean;
  generator?: Generator;
  /** 'default': PyTorch's nn.Linear; 'xavier': Xavier-uniform weight, zero bias; 'zeros': all zero (adaLN-Zero). */
  init?: 'default' | 'xavier' | 'zeros';
}

/** y = x w^T + b, w [out, in] (PyTorch's layout). */
export class Linear extends Module {
  readonly weight: Variable;
  readonly bias: Variable | null;
  #adapter: LinearAdapter | null = null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: LinearOptions = {},
  ) {
    super();
    const generator = options.generator ?? defaultGenerator();
    const init = options.init ?? 'default';
    const shape = [outFeatures, inFeatures];
    const weight = init === 'default' ? linearDefault(shape, inFeatures, generator) : init === 'xavier' ? xavierUniform(shape, generator) : zeros(shape);
    this.weight = this.addParameter('weight', weight);
    this.bias =
      options.bias === false
        ? null
        : this.addParameter('bias', init === 'default' ? linearDefault([outFeatures], inFeatures, generator) : zeros([outFeatures]));
  }

  get adapter(): LinearAdapter | null {
    return this.#adapter;
  }

  attachAdapter(adapter: LinearAdapter): void {
    if (this.#adapter !== null) throw new Error(`Linear: an adapter (${this.#adapter.kind}) is already attached; detach it first`);
    this.addModule(adapter.kind, adapter);
    this.#adapter = adapter;
  }

  detachAdapter(): LinearAdapter | null {
    const adapter = this.#adapter;
    if (adapter === null) return null;
    if (adapter.merged) throw new Error('Linear: unmerge the adapter before detaching it (or keep it merged and drop it with dropMergedAdapter)');
    this.removeModule(adapter.kind);
    this.#adapter = null;
    return adapter;
  }

  /** Forgets a merged adapter: its update stays in the weight. */
  dropMergedAdapter(): LinearAdapter | null {
    const adapter = this.#adapter;
    if (adapter === null) return null;
    this.removeModule(adapter.kind);
    this.#adapter = null;
    return adapter;
  }

  /** x [..., in] -> [..., out]. */
  forward(x: Input): Variable {
    const shape = x.shape;
    if (shape[shape.length - 1] !== this.inFeatures) {
      throw new RangeError(`Linear: input has shape ${shapeString(shape)}, expected last dim ${this.inFeatures}`);
    }
    const rows = shape.length === 2 ? x : F.reshape(x, [-1, this.inFeatures]);
    const adapter = this.#adapter;
    let y: Variable;
    if (adapter !== null && adapter.enabled && !adapter.merged) {
      const { down, up, temporary } = adapter.factors();
      y = loraLinear(rows, this.weight, this.bias, down, up, { scale: adapter.scale });
      if (temporary) {
        // Factors outside the graph are freed with it (or now, when nothing was recorded).
        for (const f of [down, up]) {
          if (!f.isLeaf) continue;
          if (y.node !== null) y.node.owned.push(f.value);
          else f.value.dispose();
        }
      }
    } else {
      y = F.matmul(rows, this.weight, { transB: true });
      if (this.bias !== null) y = F.biasAdd(y, this.bias);
    }
    return shape.length === 2 ? y : F.reshape(y, [...shape.slice(0, -1), this.outFeatures]);
  }
}

export interface LayerNormOptions {
  /** Learned gamma and beta (default true); DiT's modulated norms have none. */
  affine?: boolean;
  eps?: number;
}

export class LayerNorm extends Module {
  readonly weight: Variable | null;
  readonly bias: Variable | null;
  readonly eps: number;

  constructor(
    readonly features: number,
    options: LayerNormOptions = {},
  ) {
    super();
    this.eps = options.eps ?? 1e-5;
    const affine = options.affine ?? true;
    this.weight = affine ? this.addParameter('weight', ones([features])) : null;
    this.bias = affine ? this.addParameter('bias', zeros([features])) : null;
  }

  /** Normalises the last axis; `scale`/`shift` [batch, features] modulate each sample's tokens (adaLN). */
  forward(x: Input, modulation: { scale?: Input; shift?: Input } = {}): Variable {
    return F.layerNorm(x, {
      ...(this.weight ? { gamma: this.weight } : {}),
      ...(this.bias ? { beta: this.bias } : {}),
      ...(modulation.scale ? { scale: modulation.scale } : {}),
      ...(modulation.shift ? { shift: modulation.shift } : {}),
      eps: this.eps,
    });
  }
}

export class Dropout extends Module {
  readonly generator: Generator;
  constructor(
    readonly p: number,
    options: { seed?: number } = {},
  ) {
    super();
    if (!(p >= 0 && p < 1)) throw new RangeError(`Dropout: p must be in [0, 1), got ${p}`);
    // Its own stream when seeded; otherwise the global one (reproducible after manualSeed).
    this.generator = options.seed === undefined ? defaultGenerator() : new Generator(options.seed);
  }

  forward(x: Input): Variable {
    return F.dropout(x, this.p, { generator: this.generator, training: this.training });
  }
}

export class Embedding extends Module {
  readonly weight: Variable;
  constructor(
    readonly vocab: number,
    readonly dim: number,
    options: { std?: number; generator?: Generator } = {},
  ) {
    super();
    this.weight = this.addParameter('weight', normal([vocab, dim], options.std ?? 1, options.generator));
  }

  /** ids i32 [...] -> [..., dim]. */
  forward(ids: Tensor<'i32'>): Variable {
    return F.embedding(this.weight, ids);
  }
}

/** fc1 -> GELU (tanh) -> fc2. */
export class MLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(width: number, hidden: number, options: { generator?: Generator; outFeatures?: number; init?: LinearOptions['init'] } = {}) {
    super();
    const linear = { ...(options.generator ? { generator: options.generator } : {}), ...(options.init ? { init: options.init } : {}) };
    this.fc1 = this.addModule('fc1', new Linear(width, hidden, linear));
    this.fc2 = this.addModule('fc2', new Linear(hidden, options.outFeatures ?? width, linear));
  }

  forward(x: Input): Variable {
    return this.fc2.forward(F.gelu(this.fc1.forward(x)));
  }
}

export interface AttentionForwardOptions {
  /** Tokens to attend to ([B, Lk, contextWidth]); default x itself (self-attention). */
  context?: Input;
  /** i32 [B]: keys j >= kvLengths[b] are masked (padding of text tokens). */
  kvLengths?: Tensor<'i32'>;
  causal?: boolean;
}

/** Multi-head attention with projections q, k, v, out (self, cross, or joint over token sets). */
export class Attention extends Module {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly out: Linear;
  readonly headDim: number;

  constructor(
    readonly width: number,
    readonly heads: number,
    options: { contextWidth?: number; generator?: Generator; init?: LinearOptions['init'] } = {},
  ) {
    super();
    if (width % heads !== 0) throw new RangeError(`Attention: width ${width} is not divisible by heads ${heads}`);
    this.headDim = width / heads;
    const contextWidth = options.contextWidth ?? width;
    const generator = { ...(options.generator ? { generator: options.generator } : {}), ...(options.init ? { init: options.init } : {}) };
    this.q = this.addModule('q', new Linear(width, width, generator));
    this.k = this.addModule('k', new Linear(contextWidth, width, generator));
    this.v = this.addModule('v', new Linear(contextWidth, width, generator));
    this.out = this.addModule('out', new Linear(width, width, generator));
  }

  #heads(x: Variable): Variable {
    const [b, l] = x.shape as [number, number, number];
    return F.permute(F.reshape(x, [b, l, this.heads, this.headDim]), [0, 2, 1, 3]);
  }

  /** x [B, L, width] -> [B, L, width]. */
  forward(x: Input, options: AttentionForwardOptions = {}): Variable {
    if (x.shape.length !== 3 || x.shape[2] !== this.width) {
      throw new RangeError(`Attention: x has shape ${shapeString(x.shape)}, expected [batch, tokens, ${this.width}]`);
    }
    const context = options.context ?? x;
    const [b, l] = x.shape as [number, number, number];
    const q = this.#heads(this.q.forward(x));
    const k = this.#heads(this.k.forward(context));
    const v = this.#heads(this.v.forward(context));
    const o = F.attention(q, k, v, {
      ...(options.causal ? { causal: true } : {}),
      ...(options.kvLengths ? { kvLengths: options.kvLengths } : {}),
    });
    const merged = F.reshape(F.permute(o, [0, 2, 1, 3]), [b, l, this.width]);
    return this.out.forward(merged);
  }

  /** Self-attention over the concatenation of token sets [B, Li, width]; returns each set's output. */
  joint(sets: readonly Input[]): Variable[] {
    const joined = F.concat(sets, 1);
    return F.split(
      this.forward(joined),
      sets.map((s) => s.shape[1]!),
      1,
    );
  }
}

/**
 * A pre-LN transformer block: x + attn(LN(x)), then + MLP(LN(.)). The text encoder's (causal or
 * not, padding masked by kvLengths) and the image encoder's (every patch sees every patch).
 */
export class TransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly norm2: LayerNorm;
  readonly mlp: MLP;
  readonly causal: boolean;

  constructor(width: number, heads: number, mlpRatio: number, options: { generator?: Generator; causal?: boolean } = {}) {
    super();
    const init = options.generator ? { generator: options.generator } : {};
    this.causal = options.causal ?? false;
    this.norm1 = this.addModule('norm1', new LayerNorm(width));
    this.attn = this.addModule('attn', new Attention(width, heads, init));
    this.norm2 = this.addModule('norm2', new LayerNorm(width));
    this.mlp = this.addModule('mlp', new MLP(width, Math.round(width * mlpRatio), init));
  }

  /** x [B, L, width]; kvLengths i32 [B] masks keys past each sample's length. */
  forward(x: Input, kvLengths?: Tensor<'i32'>): Variable {
    const h = F.add(x, this.attn.forward(this.norm1.forward(x), { causal: this.causal, ...(kvLengths ? { kvLengths } : {}) }));
    return F.add(h, this.mlp.forward(this.norm2.forward(h)));
  }
}

/**
 * Sinusoidal embedding of diffusion timesteps (DiT / GLIDE): [cos(t f_i), sin(t f_i)] with
 * f_i = maxPeriod^(-i / half), i < half. Returns a constant f32 [B, dim] tensor.
 */
export function timestepEmbedding(t: ArrayLike<number>, dim: number, options: { maxPeriod?: number; device?: Tensor['device'] } = {}): Tensor<'f32'> {
  const maxPeriod = options.maxPeriod ?? 10000;
  const half = Math.floor(dim / 2);
  const out = new Float32Array(t.length * dim);
  for (let b = 0; b < t.length; b++) {
    for (let i = 0; i < half; i++) {
      const freq = Math.exp((-Math.log(maxPeriod) * i) / half);
      const arg = t[b]! * freq;
      out[b * dim + i] = Math.cos(arg);
      out[b * dim + half + i] = Math.sin(arg);
    }
  }
  return fromArray(out, [t.length, dim], options.device === undefined ? {} : { device: options.device });
}
