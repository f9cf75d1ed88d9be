// A small vision transformer (ViT, Dosovitskiy et al. 2021) for the evaluators and the
// hypernetwork's image side: patchify -> Linear -> + learned positions (2-D sin-cos at init) ->
// pre-LN transformer blocks -> final LayerNorm -> mean over patches. Returns every patch token
// and the pooled vector (the penultimate features of a classifier, what Fréchet distances read).
import * as F from '../autograd/functions.js';
import type { Input, Variable } from '../autograd/variable.js';
import { defaultGenerator, type Generator } from '../ops/random.js';
import { fromArray, shapeString } from '../tensor.js';
import { sincosPositions2d } from './dit.js';
import { LayerNorm, Linear, TransformerBlock } from './layers.js';
import { Module, ModuleList } from './module.js';

export interface ImageEncoderConfig {
  imageSize: number;
  patchSize: number;
  channels: number;
  width: number;
  depth: number;
  heads: number;
  mlpRatio: number;
}

export interface ImageEncoding {
  /** [B, patches, width] */
  tokens: Variable;
  /** [B, width]: the mean of the tokens. */
  pooled: Variable;
}

export function checkImageEncoderConfig(config: ImageEncoderConfig, what = 'ImageEncoder'): void {
  for (const key of ['imageSize', 'patchSize', 'channels', 'width', 'depth', 'heads', 'mlpRatio'] as const) {
    const v = config[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (key !== 'mlpRatio' && !Number.isInteger(v))) {
      throw new RangeError(`${what}: config.${key} must be a positive ${key === 'mlpRatio' ? 'number' : 'integer'}, got ${JSON.stringify(v)}`);
    }
  }
  if (config.imageSize % config.patchSize !== 0) throw new RangeError(`${what}: imageSize ${config.imageSize} is not a multiple of patchSize ${config.patchSize}`);
  if (config.width % config.heads !== 0 || config.width % 4 !== 0) throw new RangeError(`${what}: width ${config.width} must be a multiple of 4 and of heads ${config.heads}`);
}

export class ImageEncoder extends Module {
  readonly config: ImageEncoderConfig;
  readonly patch: Linear;
  readonly position: Variable;
  readonly blocks: ModuleList<TransformerBlock>;
  readonly norm: LayerNorm;

  constructor(config: ImageEncoderConfig, options: { generator?: Generator } = {}) {
    super();
    checkImageEncoderConfig(config);
    this.config = { ...config };
    const generator = options.generator ?? defaultGenerator();
    const { imageSize, patchSize, channels, width, depth, heads, mlpRatio } = config;
    const grid = imageSize / patchSize;
    this.patch = this.addModule('patch', new Linear(channels * patchSize * patchSize, width, { generator }));
    this.position = this.addParameter('position', fromArray(sincosPositions2d(grid, grid, width), [grid * grid, width]));
    this.blocks = this.addModule('blocks', new ModuleList(Array.from({ length: depth }, () => new TransformerBlock(width, heads, mlpRatio, { generator }))));
    this.norm = this.addModule('norm', new LayerNorm(width));
  }

  /** images [B, C, H, W] at the configured size, values in [-1, 1]. */
  forward(images: Input): ImageEncoding {
    const { imageSize: s, patchSize: p, channels: c, width } = this.config;
    if (images.shape.length !== 4 || images.shape[1] !== c || images.shape[2] !== s || images.shape[3] !== s) {
      throw new RangeError(`ImageEncoder: images have shape ${shapeString(images.shape)}, expected [batch, ${c}, ${s}, ${s}]`);
    }
    const b = images.shape[0]!;
    const g = s / p;
    const patches = F.reshape(F.permute(F.reshape(images, [b, c, g, p, g, p]), [0, 2, 4, 1, 3, 5]), [b, g * g, c * p * p]);
    let x = F.add(this.patch.forward(patches), F.expand(F.reshape(this.position, [1, g * g, width]), [b, g * g, width]));
    for (const block of this.blocks) x = block.forward(x);
    const tokens = this.norm.forward(x);
    return { tokens, pooled: F.mean(tokens, 1) };
  }
}
