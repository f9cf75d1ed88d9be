// The Diffusion-DPO and channel-statistics losses as differentiable functions (lib/ops/dpo_loss.ts
// and lib/ops/channel_stat_loss.ts underneath). Both train a policy against something frozen: the
// reference predictions and the noise of DPO, the base model's sample of the statistics loss.
// Those inputs are read as constants; one that would take a gradient is refused, since the
// kernels give none for it.
import { channelStatLoss as channelStatLossOp, channelStatLossBackward, type ChannelStatLossOptions } from '../ops/channel_stat_loss.js';
import { dpoLoss as dpoLossOp, dpoLossBackward, type DpoLossOptions } from '../ops/dpo_loss.js';
import { fromArray, shapeString, type Tensor } from '../tensor.js';
import { asVariable, record, type Input, type Variable } from './variable.js';

/** The value of an input that must not take a gradient. */
function constant(op: string, name: string, x: Input, why: string): Tensor<'f32'> {
  const v = asVariable(x, op, name);
  if (v.requiresGrad) throw new TypeError(`${op}: ${name} requires grad, but ${why}: compute it under noGrad() or pass its value`);
  return v.value;
}

/** The upstream gradient of a scalar loss, as a host number (the backward kernels take it so). */
function scalar(g: Tensor<'f32'>): number {
  return g.toArray()[0]!;
}

export interface DpoLossTerms {
  /** -mean over pairs of logsigmoid(inside), [1]; differentiable in predW and predL. */
  loss: Variable;
  /** Implicit accuracy, mean over pairs of (inside > 0) with ties as 0.5, [1]. */
  accuracy: Tensor<'f32'>;
  /** Per-pair mse of the policy and of the reference, [pairs]. */
  mseW: Tensor<'f32'>;
  mseL: Tensor<'f32'>;
  refMseW: Tensor<'f32'>;
  refMseL: Tensor<'f32'>;
}

/**
 * Diffusion-DPO (SPEC section 1, diffusers form, beta 2500 by default): the leading axis indexes
 * pairs whose winner and loser share one timestep and one noise. The gradient reaches predW and
 * predL; refW, refL (the frozen reference's predictions) and the noise are constants. The
 * metric tensors are the caller's to dispose (or let a tidy() scope do it).
 */
export function dpoLoss(
  predW: Input,
  predL: Input,
  refW: Input,
  refL: Input,
  noiseW: Input,
  noiseL: Input,
  options: DpoLossOptions = {},
): DpoLossTerms {
  const op = 'dpoLoss';
  const reference = 'the reference model is frozen';
  const vw = asVariable(predW, op, 'predW');
  const vl = asVariable(predL, op, 'predL');
  const [rw, rl] = [constant(op, 'refW', refW, reference), constant(op, 'refL', refL, reference)];
  const [nw, nl] = [constant(op, 'noiseW', noiseW, 'the noise is data'), constant(op, 'noiseL', noiseL, 'the noise is data')];
  const result = dpoLossOp(vw.value, vl.value, rw, rl, nw, nl, options);
  const { loss, inside, ...metrics } = result;
  const variable = record(
    op,
    loss,
    [vw, vl],
    (g) => {
      const grads = dpoLossBackward(vw.value, vl.value, nw, nl, inside, { ...options, dloss: scalar(g) });
      return [grads.dPredW, grads.dPredL];
    },
    [inside],
  );
  return { loss: variable, ...metrics };
}

/**
 * The statistics-matching loss of HG-DPO's easy stage: a and b [B, C, N] or [B, C, H, W];
 * mean over B and C of (mean_N(a) - mean_N(b))^2, plus the squared difference of the standard
 * deviations with matchStd. The gradient reaches `a`; `b` (the frozen base model's) is a constant.
 */
export function channelStatLoss(a: Input, b: Input, options: ChannelStatLossOptions = {}): Variable {
  const op = 'channelStatLoss';
  const va = asVariable(a, op, 'a');
  const base = constant(op, 'b', b, 'it comes from the frozen base model');
  const matchStd = options.matchStd ?? false;
  const { loss, ...saved } = channelStatLossOp(va.value, base, { matchStd });
  return record(
    op,
    loss,
    [va],
    (g) => [channelStatLossBackward(va.value, saved, { matchStd, dloss: scalar(g) }).da],
    Object.values(saved).filter((t): t is Tensor<'f32'> => t !== undefined),
  );
}

export interface CrossEntropyOptions {
  /** Labels equal to this take no part (an attribute a sample does not have). Default -1. */
  ignoreIndex?: number;
}

/**
 * Softmax cross-entropy of logits [B, C] against integer labels, averaged over the labelled
 * rows: mean_b (logsumexp(z_b) - z_b[y_b]); the gradient is (softmax(z_b) - onehot(y_b)) / count.
 * For the evaluators' classification heads and contrastive losses, whose logits are a few
 * thousand numbers: it is computed on the host in float64 (one read of the logits, one write of
 * the gradient). Rows whose label is ignoreIndex contribute nothing; with none labelled the loss
 * is 0.
 */
export function crossEntropy(logits: Input, labels: readonly number[], options: CrossEntropyOptions = {}): Variable {
  const v = asVariable(logits);
  if (v.ndim !== 2) throw new RangeError(`crossEntropy: logits has shape ${shapeString(v.shape)}, expected [batch, classes]`);
  const [rows, classes] = v.shape as [number, number];
  if (labels.length !== rows) throw new RangeError(`crossEntropy: ${labels.length} labels for ${rows} rows of logits`);
  const ignore = options.ignoreIndex ?? -1;
  labels.forEach((y, b) => {
    if (y !== ignore && !(Number.isInteger(y) && y >= 0 && y < classes)) throw new RangeError(`crossEntropy: labels[${b}] is ${y}, expected an integer in [0, ${classes}) or ${ignore}`);
  });
  const z = v.value.toArray();
  const probabilities = new Float64Array(rows * classes);
  let total = 0;
  let count = 0;
  for (let b = 0; b < rows; b++) {
    if (labels[b] === ignore) continue;
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, z[b * classes + c]!);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(z[b * classes + c]! - max);
    for (let c = 0; c < classes; c++) probabilities[b * classes + c] = Math.exp(z[b * classes + c]! - max) / sum;
    total += max + Math.log(sum) - z[b * classes + labels[b]!]!;
    count++;
  }
  const value = fromArray([count > 0 ? total / count : 0], [1], { device: v.device });
  return record('crossEntropy', value, [v], (grad) => {
    const g = grad.toArray()[0]! / Math.max(count, 1);
    const dz = new Float32Array(rows * classes);
    for (let b = 0; b < rows; b++) {
      if (labels[b] === ignore) continue;
      for (let c = 0; c < classes; c++) dz[b * classes + c] = g * (probabilities[b * classes + c]! - (c === labels[b] ? 1 : 0));
    }
    return [fromArray(dz, [rows, classes], { device: v.device })];
  });
}
