// An exponential moving average of weights: shadow = decay * shadow + (1 - decay) * weight,
// updated after each optimiser step; swapped in for evaluation and sampling.
import type { Variable } from '../autograd/variable.js';
import { axpy } from '../ops/elementwise.js';
import { keep } from '../scope.js';
import type { Tensor } from '../tensor.js';

export class EMA {
  readonly decay: number;
  #shadow = new Map<string, Tensor<'f32'>>();
  #params: Map<string, Variable>;

  constructor(params: Iterable<[string, Variable]>, decay = 0.999) {
    if (!(decay >= 0 && decay < 1)) throw new RangeError(`EMA: decay must be in [0, 1), got ${decay}`);
    this.decay = decay;
    this.#params = new Map(params);
    for (const [name, v] of this.#params) this.#shadow.set(name, keep(v.value.clone()));
  }

  update(): void {
    for (const [name, v] of this.#params) axpy(1 - this.decay, v.value, this.#shadow.get(name)!, { beta: this.decay });
  }

  /** The averaged weights by parameter name (owned by the EMA). */
  get shadow(): ReadonlyMap<string, Tensor<'f32'>> {
    return this.#shadow;
  }

  /** Runs fn with the averaged weights in place of the live ones, then restores them. */
  withAveraged<T>(fn: () => T): T {
    const live = new Map<string, Tensor<'f32'>>();
    for (const [name, v] of this.#params) live.set(name, keep(v.value.clone()));
    for (const [name, v] of this.#params) v.value.copy_(this.#shadow.get(name)!);
    try {
      return fn();
    } finally {
      for (const [name, v] of this.#params) {
        v.value.copy_(live.get(name)!);
        live.get(name)!.dispose();
      }
    }
  }

  dispose(): void {
    for (const t of this.#shadow.values()) t.dispose();
    this.#shadow.clear();
  }
}
