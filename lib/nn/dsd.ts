// Diffusion Self-Distillation's "parallel processing" (SPEC section 4; Cai et al. 2024): the
// text-to-image DiT becomes a text+image-to-image model by denoising two frames jointly.
//
// A pair is laid out as two consecutive samples of the batch, [condition frame, target frame],
// and self-attention runs over both frames' tokens together (DiT's `frames: 2`, one fused
// attention over the concatenated sequence). Both frames get the same noisy target x_t, timestep
// and text; what differs is added to their token embeddings:
//   condition frame  frame[0] + condition(patchify(reference))   (the clean reference image)
//   target frame     frame[1]
// `condition` (a Linear per patch, no bias) and `frame` start at zero, so at step 0 the two
// frames carry identical tokens, joint attention over two copies of a sequence equals attention
// over one, and the model is exactly the base model. Training (lib/train/dsd/) teaches the
// condition frame to reproduce the reference (the identity mapping) and the target frame the
// new context, with a LoRA on the denoiser; the target frame can only learn the person from the
// condition frame's tokens. A reference of zeros is "no image" (the image-unconditional branch
// of guidance), since the projection has no bias.
import * as F from '../autograd/functions.js';
import type { Input, Variable } from '../autograd/variable.js';
import { shapeString, zeros } from '../tensor.js';
import type { DiT } from './dit.js';
import { Linear } from './layers.js';
import { Module } from './module.js';

export class DsdConditioner extends Module {
  /** Patch pixels of the reference -> token width, zero at the start. */
  readonly condition: Linear;
  /** One embedding per frame [2, width], zero at the start. */
  readonly frame: Variable;

  constructor(
    readonly patchFeatures: number,
    readonly width: number,
  ) {
    super();
    this.condition = this.addModule('condition', new Linear(patchFeatures, width, { bias: false, init: 'zeros' }));
    this.frame = this.addParameter('frame', zeros([2, width]));
  }

  /** A conditioner shaped for `dit`'s patches and width. */
  static for(dit: DiT): DsdConditioner {
    const { patchSize, channels, width } = dit.config;
    return new DsdConditioner(channels * patchSize * patchSize, width);
  }

  /** Checks that this conditioner was made for `dit`'s patches and width. */
  checkFits(dit: DiT, where: string): void {
    const { patchSize, channels, width } = dit.config;
    if (this.patchFeatures !== channels * patchSize * patchSize || this.width !== width) {
      throw new RangeError(
        `${where}: the DSD conditioner maps ${this.patchFeatures} patch values to width ${this.width}, but the model has patches of ${channels * patchSize * patchSize} values and width ${width}`,
      );
    }
  }

  /**
   * The token additions [2B, N, width] of B pairs for dit.forward's `tokens`, pair-major
   * (condition frame, target frame): references [B, C, H, W] in [-1, 1], zeros for "no image".
   */
  tokens(dit: DiT, references: Input): Variable {
    this.checkFits(dit, 'DsdConditioner.tokens');
    const condition = this.condition.forward(dit.patchify(references));
    const [b, n, w] = condition.shape as [number, number, number];
    const [first, second] = F.split(this.frame, [1, 1], 0) as [Variable, Variable];
    const frameTokens = (f: Variable): Variable => F.expand(F.reshape(f, [1, 1, w]), [b, n, w]);
    const conditionFrame = F.add(condition, frameTokens(first));
    return F.reshape(F.concat([F.reshape(conditionFrame, [b, 1, n, w]), F.reshape(frameTokens(second), [b, 1, n, w])], 1), [2 * b, n, w]);
  }
}

/** [B, ...] -> [2B, ...] with every sample twice in a row (the two frames of each pair). */
export function twoFrames(x: Input): Variable {
  const [b, ...rest] = x.shape;
  return F.reshape(F.concat([F.reshape(x, [b!, 1, ...rest]), F.reshape(x, [b!, 1, ...rest])], 1), [2 * b!, ...rest]);
}

/** The two frames of a pair-major [2B, ...] output: [condition frames, target frames], each [B, ...]. */
export function splitFrames(out: Variable): [Variable, Variable] {
  const [b2, ...rest] = out.shape;
  if (b2! % 2 !== 0) throw new RangeError(`splitFrames: expected an even batch of pair-major frames, got ${shapeString(out.shape)}`);
  const b = b2! / 2;
  const [first, second] = F.split(F.reshape(out, [b, 2, ...rest]), [1, 1], 1) as [Variable, Variable];
  return [F.reshape(first, [b, ...rest]), F.reshape(second, [b, ...rest])];
}
