// HyperDreamBooth's hypernetwork (SPEC section 3): from one reference image to the LiDB weights of
// every personalised layer. A ViT (lib/nn/vit.ts) encodes the image into patch tokens f; a
// transformer decoder holds one token per LiDB layer and refines the weights iteratively,
//
//     theta_0 = 0,   theta_k = theta_{k-1} + delta(f, theta_{k-1}),   k = 1..s   (s: refinements)
//
// where each pass embeds the current weights into the layer tokens (plus a learned embedding that
// tells the layers apart), runs self-attention over the layer tokens and cross-attention to f, and
// a linear head maps each token to the change of that layer's A_train [a] and B_train [b]. The
// head starts small (std 1e-3), so theta starts near 0: the model starts unchanged.
import * as F from '../autograd/functions.js';
import type { Input, Variable } from '../autograd/variable.js';
import { Generator } from '../ops/random.js';
import { shapeString, zeros as zerosTensor } from '../tensor.js';
import { normal } from './init.js';
import { Attention, LayerNorm, Linear, MLP } from './layers.js';
import { Module, ModuleList } from './module.js';
import { checkImageEncoderConfig, ImageEncoder, type ImageEncoderConfig } from './vit.js';

export interface HyperNetworkConfig {
  encoder: ImageEncoderConfig;
  /** Decoder token width, blocks, heads and MLP ratio. */
  width: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  /** LiDB layers predicted (one token each), and their inner sizes a and b. */
  layers: number;
  a: number;
  b: number;
  /** Refinement passes s (default 4). */
  refinements: number;
}

export function defaultHyperNetworkConfig(layers: number, imageSize = 32, a = 100, b = 50): HyperNetworkConfig {
  return {
    encoder: { imageSize, patchSize: 4, channels: 3, width: 96, depth: 3, heads: 4, mlpRatio: 2 },
    width: 128,
    depth: 2,
    heads: 4,
    mlpRatio: 2,
    layers,
    a,
    b,
    refinements: 4,
  };
}

export function checkHyperNetworkConfig(config: HyperNetworkConfig, what = 'HyperNetwork'): void {
  if (typeof config !== 'object' || config === null) throw new TypeError(`${what}: config must be an object, got ${String(config)}`);
  checkImageEncoderConfig(config.encoder, `${what}: encoder`);
  for (const key of ['width', 'depth', 'heads', 'layers', 'a', 'b', 'refinements'] as const) {
    const v = config[key];
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${what}: config.${key} must be an integer >= 1, got ${JSON.stringify(v)}`);
  }
  if (!(config.mlpRatio > 0)) throw new RangeError(`${what}: config.mlpRatio must be > 0, got ${JSON.stringify(config.mlpRatio)}`);
  if (config.width % config.heads !== 0) throw new RangeError(`${what}: width ${config.width} is not divisible by heads ${config.heads}`);
}

/** Self-attention over the layer tokens, cross-attention to the image tokens, MLP (pre-LN, residual). */
class DecoderBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly norm2: LayerNorm;
  readonly cross: Attention;
  readonly norm3: LayerNorm;
  readonly mlp: MLP;

  constructor(width: number, heads: number, mlpRatio: number, contextWidth: number, generator: Generator) {
    super();
    this.norm1 = this.addModule('norm1', new LayerNorm(width));
    this.attn = this.addModule('attn', new Attention(width, heads, { generator }));
    this.norm2 = this.addModule('norm2', new LayerNorm(width));
    this.cross = this.addModule('cross', new Attention(width, heads, { generator, contextWidth }));
    this.norm3 = this.addModule('norm3', new LayerNorm(width));
    this.mlp = this.addModule('mlp', new MLP(width, Math.round(width * mlpRatio), { generator }));
  }

  forward(x: Input, context: Input): Variable {
    let h = F.add(x, this.attn.forward(this.norm1.forward(x)));
    h = F.add(h, this.cross.forward(this.norm2.forward(h), { context }));
    return F.add(h, this.mlp.forward(this.norm3.forward(h)));
  }
}

export class HyperNetwork extends Module {
  readonly config: HyperNetworkConfig;
  readonly encoder: ImageEncoder;
  readonly layerEmbedding: Variable;
  readonly weightsIn: Linear;
  readonly blocks: ModuleList<DecoderBlock>;
  readonly norm: LayerNorm;
  readonly head: Linear;

  constructor(config: HyperNetworkConfig, options: { seed?: number } = {}) {
    super();
    checkHyperNetworkConfig(config);
    this.config = { ...config, encoder: { ...config.encoder } };
    const generator = new Generator(options.seed ?? 0);
    const { width, depth, heads, mlpRatio, layers, a, b } = config;
    this.encoder = this.addModule('encoder', new ImageEncoder(config.encoder, { generator }));
    this.layerEmbedding = this.addParameter('layerEmbedding', normal([layers, width], 0.02, generator));
    this.weightsIn = this.addModule('weightsIn', new Linear(a + b, width, { generator }));
    this.blocks = this.addModule('blocks', new ModuleList(Array.from({ length: depth }, () => new DecoderBlock(width, heads, mlpRatio, config.encoder.width, generator))));
    this.norm = this.addModule('norm', new LayerNorm(width));
    this.head = this.addModule('head', new Linear(width, a + b, { init: 'zeros' }));
    this.head.weight.value.copy_(normal([a + b, width], 1e-3, generator));
  }

  /** The trainable numbers of one identity: layers x (a + b). */
  get weightsPerIdentity(): number {
    return this.config.layers * (this.config.a + this.config.b);
  }

  /**
   * images [B, C, H, W] in [-1, 1] -> theta [B, layers, a + b]: per layer, A_train (the first a
   * numbers) and B_train (the last b). `refinements` overrides the configured s.
   */
  forward(images: Input, refinements = this.config.refinements): Variable {
    const { imageSize: s, channels: c } = this.config.encoder;
    if (images.shape.length !== 4 || images.shape[1] !== c || images.shape[2] !== s || images.shape[3] !== s) {
      throw new RangeError(`HyperNetwork: images have shape ${shapeString(images.shape)}, expected [batch, ${c}, ${s}, ${s}]`);
    }
    if (!Number.isInteger(refinements) || refinements < 1) throw new RangeError(`HyperNetwork: refinements must be an integer >= 1, got ${refinements}`);
    const batch = images.shape[0]!;
    const { layers, width, a, b } = this.config;
    const features = this.encoder.forward(images).tokens;
    const position = F.expand(F.reshape(this.layerEmbedding, [1, layers, width]), [batch, layers, width]);
    let theta: Input = zerosTensor([batch, layers, a + b]);
    for (let k = 0; k < refinements; k++) {
      let h = F.add(position, this.weightsIn.forward(theta));
      for (const block of this.blocks) h = block.forward(h, features);
      theta = F.add(theta, this.head.forward(this.norm.forward(h)));
    }
    return theta as Variable;
  }

  /** Splits theta [1, layers, a + b] (one identity) into each layer's A_train [a, 1] and B_train [1, b]. */
  split(theta: Input): { aTrain: Variable; bTrain: Variable }[] {
    const { layers, a, b } = this.config;
    if (theta.shape.length !== 3 || theta.shape[0] !== 1 || theta.shape[1] !== layers || theta.shape[2] !== a + b) {
      throw new RangeError(`HyperNetwork.split: theta has shape ${shapeString(theta.shape)}, expected [1, ${layers}, ${a + b}]`);
    }
    return F.split(F.reshape(theta, [layers, a + b]), Array<number>(layers).fill(1), 0).map((row) => {
      const [aPart, bPart] = F.split(row, [a, b], 1);
      return { aTrain: F.reshape(aPart!, [a, 1]), bTrain: F.reshape(bPart!, [1, b]) };
    });
  }
}
