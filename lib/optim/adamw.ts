// The AdamW optimiser over autograd leaves: moments kept per parameter on its device, one fused
// native step per parameter, state that checkpoints can save and restore exactly.
import type { Variable } from '../autograd/variable.js';
import { adamwStep, clipGradNorm, globalNorm } from '../ops/optim.js';
import { axpy, scale } from '../ops/elementwise.js';
import { sign } from '../ops/sign.js';
import { zeros, type Tensor } from '../tensor.js';
import { keep } from '../scope.js';

export interface AdamWConfig {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (AdamW); 0 turns it off. */
  weightDecay?: number;
  /** L1 penalty lambda: adds lambda * sign(w) to each gradient before the step. */
  l1?: number;
}

export interface NamedParameter {
  name: string;
  variable: Variable;
}

export class AdamW {
  readonly params: readonly NamedParameter[];
  config: Required<AdamWConfig>;
  /** Updates taken so far (the next one's bias corrections use stepCount + 1). */
  stepCount = 0;
  #m = new Map<string, Tensor<'f32'>>();
  #v = new Map<string, Tensor<'f32'>>();

  /** `params`: named trainable leaves, e.g. model.namedParameters() filtered to requiresGrad. */
  constructor(params: Iterable<NamedParameter> | Iterable<[string, Variable]>, config: AdamWConfig) {
    this.params = [...params].map((p) => (Array.isArray(p) ? { name: p[0], variable: p[1] } : p));
    const names = new Set<string>();
    for (const { name } of this.params) {
      if (names.has(name)) throw new Error(`AdamW: parameter name ${JSON.stringify(name)} appears twice`);
      names.add(name);
    }
    this.config = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, l1: 0, ...config };
  }

  get lr(): number {
    return this.config.lr;
  }

  set lr(lr: number) {
    if (!Number.isFinite(lr) || lr < 0) throw new RangeError(`AdamW: lr must be finite and >= 0, got ${lr}`);
    this.config.lr = lr;
  }

  /** Scales every gradient by `factor` (gradient accumulation divides by the micro-batch count). */
  scaleGrads(factor: number): void {
    for (const { variable } of this.params) if (variable.grad) scale(variable.grad, factor, { out: variable.grad });
  }

  /** The global norm of the gradients (0 when there are none). */
  gradNorm(): number {
    return globalNorm(this.params.map((p) => p.variable.grad).filter((g): g is Tensor<'f32'> => g !== null));
  }

  /** Clips the global gradient norm to `maxNorm`; returns the norm before clipping. */
  clipGradNorm(maxNorm: number): number {
    const grads = this.params.map((p) => p.variable.grad).filter((g): g is Tensor<'f32'> => g !== null);
    return grads.length === 0 ? 0 : clipGradNorm(grads, maxNorm);
  }

  /** One AdamW update of every parameter that has a gradient. */
  step(): void {
    this.stepCount += 1;
    const { lr, beta1, beta2, eps, weightDecay, l1 } = this.config;
    for (const { name, variable } of this.params) {
      const grad = variable.grad;
      if (grad === null) continue;
      if (l1 > 0) addL1Gradient(variable.value, grad, l1);
      adamwStep(variable.value, grad, this.#moment(this.#m, name, variable), this.#moment(this.#v, name, variable), {
        lr,
        beta1,
        beta2,
        eps,
        weightDecay,
        step: this.stepCount,
      });
    }
  }

  zeroGrad(): void {
    for (const { variable } of this.params) variable.zeroGrad();
  }

  /** Moments as tensors named `<param>.m` / `<param>.v`, plus the step, for checkpoints. */
  stateDict(): { tensors: Record<string, Tensor<'f32'>>; step: number } {
    const tensors: Record<string, Tensor<'f32'>> = {};
    for (const [name, t] of this.#m) tensors[`${name}.m`] = t;
    for (const [name, t] of this.#v) tensors[`${name}.v`] = t;
    return { tensors, step: this.stepCount };
  }

  loadStateDict(state: { tensors: Record<string, Tensor<'f32'>>; step: number }): void {
    const known = new Map(this.params.map((p) => [p.name, p.variable]));
    for (const [key, t] of Object.entries(state.tensors)) {
      const match = /^(.*)\.(m|v)$/.exec(key);
      const variable = match ? known.get(match[1]!) : undefined;
      if (!match || !variable) throw new Error(`AdamW.loadStateDict: ${JSON.stringify(key)} names no parameter of this optimiser`);
      if (t.shape.join() !== variable.shape.join()) {
        throw new RangeError(`AdamW.loadStateDict: ${key} has shape [${t.shape.join(', ')}], expected [${variable.shape.join(', ')}]`);
      }
      const moments = match[2] === 'm' ? this.#m : this.#v;
      moments.get(match[1]!)?.dispose();
      moments.set(match[1]!, keep(t.to(variable.device)));
    }
    this.stepCount = state.step;
  }

  dispose(): void {
    for (const t of [...this.#m.values(), ...this.#v.values()]) t.dispose();
    this.#m.clear();
    this.#v.clear();
  }

  #moment(store: Map<string, Tensor<'f32'>>, name: string, variable: Variable): Tensor<'f32'> {
    let t = store.get(name);
    if (t === undefined) {
      t = keep(zeros(variable.shape, { device: variable.device }));
      store.set(name, t);
    }
    return t;
  }
}

/** grad += lambda * sign(w): the subgradient of lambda * |w|_1. */
function addL1Gradient(weight: Tensor<'f32'>, grad: Tensor<'f32'>, lambda: number): void {
  const s = sign(weight);
  axpy(lambda, s, grad);
  s.dispose();
}
