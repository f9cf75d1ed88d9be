// A small CLIP-style text encoder: token embedding + learned positions, pre-LN transformer
// blocks (padding masked through kvLengths), final LayerNorm. Takes token ids (lib/text's
// tokenizer makes them) and returns every token's features plus a pooled vector read at the EOS
// position (the last real token), which conditions adaLN.
//
// CLIP's blocks are causal; here that is an option (`causal`, true when a saved config does not
// say) because a causal word cannot see what follows it: in "a red shirt and blue trousers" the
// token "red" does not know it names the shirt, and a 2-block encoder leaves that binding to the
// denoiser's cross-attention. New models read the caption both ways.
import * as F from '../autograd/functions.js';
import type { Variable } from '../autograd/variable.js';
import { defaultGenerator, type Generator } from '../ops/random.js';
import { fromArray, shapeString, type Tensor } from '../tensor.js';
import { normal } from './init.js';
import { Embedding, LayerNorm, TransformerBlock } from './layers.js';
import { Module, ModuleList } from './module.js';

export interface TextEncoderConfig {
  vocabSize: number;
  /** Fixed token context (ids are padded to it). */
  contextLength: number;
  width: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  /** Each token attends only to earlier ones (CLIP); default true, the behaviour of configs saved before the option. */
  causal?: boolean;
}

export interface TextEncoding {
  /** [B, contextLength, width] */
  tokens: Variable;
  /** [B, width]: the final features at position lengths[b] - 1 (EOS). */
  pooled: Variable;
  /** i32 [B]: real tokens per prompt (keys past it are masked by cross-attention). */
  lengths: Tensor<'i32'>;
}

export class TextEncoder extends Module {
  readonly config: TextEncoderConfig;
  readonly token: Embedding;
  readonly position: Variable;
  readonly blocks: ModuleList<TransformerBlock>;
  readonly norm: LayerNorm;

  constructor(config: TextEncoderConfig, options: { generator?: Generator } = {}) {
    super();
    this.config = { ...config };
    const generator = options.generator ?? defaultGenerator();
    const { vocabSize, contextLength, width, depth, heads, mlpRatio } = config;
    this.token = this.addModule('token', new Embedding(vocabSize, width, { std: 0.02, generator }));
    this.position = this.addParameter('position', normal([contextLength, width], 0.01, generator));
    this.blocks = this.addModule('blocks', new ModuleList(Array.from({ length: depth }, () => new TransformerBlock(width, heads, mlpRatio, { generator, causal: config.causal ?? true }))));
    this.norm = this.addModule('norm', new LayerNorm(width));
  }

  /** ids i32 [B, contextLength]; lengths i32 [B] (1..contextLength) or numbers. */
  forward(ids: Tensor<'i32'>, lengths: Tensor<'i32'> | readonly number[]): TextEncoding {
    const { contextLength, width } = this.config;
    if (ids.dtype !== 'i32' || ids.ndim !== 2 || ids.shape[1] !== contextLength) {
      throw new RangeError(`TextEncoder: ids must be i32 [batch, ${contextLength}], got ${ids.dtype} ${shapeString(ids.shape)}`);
    }
    const batch = ids.shape[0]!;
    const lengthTensor = Array.isArray(lengths) ? fromArray(lengths as number[], [batch], { dtype: 'i32', device: ids.device }) : (lengths as Tensor<'i32'>);
    if (lengthTensor.ndim !== 1 || lengthTensor.shape[0] !== batch) {
      throw new RangeError(`TextEncoder: lengths has shape ${shapeString(lengthTensor.shape)}, expected [${batch}]`);
    }
    const lengthValues = lengthTensor.toArray();
    lengthValues.forEach((n, b) => {
      if (!(n >= 1 && n <= contextLength)) throw new RangeError(`TextEncoder: lengths[${b}] is ${n}, expected 1..${contextLength}`);
    });
    const positions = F.expand(F.reshape(this.position, [1, contextLength, width]), [batch, contextLength, width]);
    let x = F.add(this.token.forward(ids), positions);
    for (const block of this.blocks) x = block.forward(x, lengthTensor);
    const tokens = this.norm.forward(x);
    const eos = fromArray(
      Array.from(lengthValues, (n, b) => b * contextLength + n - 1),
      [batch],
      { dtype: 'i32', device: ids.device },
    );
    const pooled = F.embedding(F.reshape(tokens, [batch * contextLength, width]), eos);
    eos.dispose();
    return { tokens, pooled, lengths: lengthTensor };
  }
}
