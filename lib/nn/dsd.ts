// Diffusion Self-Distillation's "parallel processing" (SPEC section 4; Cai et al. 2024): the
// text-to-image DiT becomes a text+image-to-image model by denoising two frames jointly.
//
// A pair is laid out as two consecutive samples of the batch, [condition frame, target frame],
// and self-attention runs over both frames' tokens together (DiT's `frames: 2`, one fused
// attention over the concatenated sequence). Both frames get the same noisy target x_t, timestep
// and text; what differs is added to their token embeddings:
//   condition frame  frame[0] + condition(patchify(reference)) + gate * (embed(reference) - embed(x_t))
//   target frame     frame[1]
// where embed is the base's own patch embedding (without its bias): the gate moves the condition
// frame's input from x_t toward the clean reference (at gate 1 it is the reference). The
// condition projection (a Linear per patch, no bias), the per-channel gate and the frame
// embeddings start at zero, so at step 0 the two
// frames carry identical tokens, joint attention over two copies of a sequence equals attention
// over one, and the model is exactly the base model. Training (lib/train/dsd/) teaches the
// condition frame to reproduce the reference (the identity mapping) and the target frame the
// new context, with a LoRA on the denoiser; the target frame can only learn the person from the
// condition frame's tokens. A pair without a reference ("no image", the image-unconditional
// branch of guidance) gets the frame embeddings only.
import * as F from '../autograd/functions.js';
import type { Input, Variable } from '../autograd/variable.js';
import { fromArray, shapeString, zeros } from '../tensor.js';
import type { DiT } from './dit.js';
import { Linear } from './layers.js';
import { Module } from './module.js';

export class DsdConditioner extends Module {
  /** Patch pixels of the reference -> token width, zero at the start. */
  readonly condition: Linear;
  /** Per-channel gate [width] on the reference's patches as the base embeds them, zero at the start. */
  readonly gate: Variable;
  /** One embedding per frame [2, width], zero at the start. */
  readonly frame: Variable;

  constructor(
    readonly patchFeatures: number,
    readonly width: number,
  ) {
    super();
    this.condition = this.addModule('condition', new Linear(patchFeatures, width, { bias: false, init: 'zeros' }));
    this.gate = this.addParameter('gate', zeros([width]));
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
   * (condition frame, target frame): references [B, C, H, W] in [-1, 1], the noisy target x_t
   * both frames are fed [B, C, H, W], and per pair whether it has a reference (false: "no
   * image", the image-unconditional branch; its reference must be zeros).
   */
  tokens(dit: DiT, references: Input, noisy: Input, present: readonly boolean[]): Variable {
    this.checkFits(dit, 'DsdConditioner.tokens');
    if (present.length !== references.shape[0] || noisy.shape.join() !== references.shape.join()) {
      throw new RangeError(`DsdConditioner.tokens: references ${shapeString(references.shape)}, noisy ${shapeString(noisy.shape)} and ${present.length} presence flags do not describe one batch`);
    }
    const patches = dit.patchify(references);
    const learned = this.condition.forward(patches);
    const [b, n, w] = learned.shape as [number, number, number];
    // In the base's own token space (its patch embedding without the bias), the condition frame
    // moves from the noisy target toward the clean reference by the per-channel gate:
    // patch((1 - g) x_t + g reference), so that at g = 1 it is the reference image itself.
    const embed = (x: Input): Variable => F.sub(dit.patch.forward(dit.patchify(x)), F.expand(F.reshape(dit.patch.bias!, [1, 1, w]), [b, n, w]));
    const mask = F.expand(F.reshape(fromArray(present.map((p) => (p ? 1 : 0)), [b]), [b, 1, 1]), [b, n, w]);
    const toward = F.mul(F.sub(embed(references), embed(noisy)), mask);
    const condition = F.add(learned, F.mul(toward, F.expand(F.reshape(this.gate, [1, 1, w]), [b, n, w])));
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
