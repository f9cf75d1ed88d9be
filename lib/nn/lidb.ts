// Lightweight DreamBooth adapters (HyperDreamBooth; SPEC section 3): a rank-1 LoRA whose
// factors are down = A_aux A_train [in, 1] and up = B_train B_aux [1, out]. A_aux and B_aux are
// frozen bases regenerated from a stored seed (never saved); only A_train [a, 1] and
// B_train [1, b] are trained or predicted by a hypernetwork.
import * as F from '../autograd/functions.js';
import type { Input, Variable } from '../autograd/variable.js';
import { lidbDefaults, lidbInit } from '../ops/lidb.js';
import type { Tensor } from '../tensor.js';
import { LinearAdapter, type AdapterFactors, type Linear } from './layers.js';
import type { Module } from './module.js';
import { findLinears } from './lora.js';

export class LidbAdapter extends LinearAdapter {
  readonly kind = 'lidb';
  readonly aTrain: Variable;
  readonly bTrain: Variable;
  #external: { aTrain: Input; bTrain: Input } | null = null;

  constructor(
    inFeatures: number,
    outFeatures: number,
    readonly seed: number,
    readonly a: number = lidbDefaults.a,
    readonly b: number = lidbDefaults.b,
    scale = 1,
  ) {
    super(scale);
    const w = lidbInit(seed, inFeatures, outFeatures, { a, b });
    this.addBuffer('aAux', w.aAux, { persistent: false });
    this.addBuffer('bAux', w.bAux, { persistent: false });
    this.aTrain = this.addParameter('aTrain', w.aTrain);
    this.bTrain = this.addParameter('bTrain', w.bTrain);
  }

  get aAux(): Tensor<'f32'> {
    return this.buffer('aAux') as Tensor<'f32'>;
  }

  get bAux(): Tensor<'f32'> {
    return this.buffer('bAux') as Tensor<'f32'>;
  }

  /**
   * Uses these A_train [a, 1] and B_train [1, b] instead of the adapter's own parameters (a
   * hypernetwork's predictions, with gradients flowing back to it); null restores the parameters.
   */
  useWeights(weights: { aTrain: Input; bTrain: Input } | null): void {
    if (weights !== null) {
      const shapeOk = (t: Input, shape: number[]): boolean => t.shape.length === 2 && t.shape[0] === shape[0] && t.shape[1] === shape[1];
      if (!shapeOk(weights.aTrain, [this.a, 1])) throw new RangeError(`LiDB: aTrain has shape [${weights.aTrain.shape.join(', ')}], expected [${this.a}, 1]`);
      if (!shapeOk(weights.bTrain, [1, this.b])) throw new RangeError(`LiDB: bTrain has shape [${weights.bTrain.shape.join(', ')}], expected [1, ${this.b}]`);
    }
    this.#external = weights;
  }

  factors(): AdapterFactors {
    const aTrain = this.#external?.aTrain ?? this.aTrain;
    const bTrain = this.#external?.bTrain ?? this.bTrain;
    return { down: F.matmul(this.aAux, aTrain), up: F.matmul(bTrain, this.bAux), temporary: true };
  }
}

export interface AttachLidbOptions {
  pattern: RegExp | string;
  /** Inner sizes of the split factors (paper: 100 and 50). */
  a?: number;
  b?: number;
  /** Layer i (in module order) uses seeds seed + 3i .. seed + 3i + 2 for its bases and A_train. */
  seed: number;
  scale?: number;
}

/** Attaches a LiDB adapter to every matching Linear; returns them by layer name, in module order. */
export function attachLidb(model: Module, options: AttachLidbOptions): Map<string, LidbAdapter> {
  const layers: [string, Linear][] = findLinears(model, options.pattern);
  if (layers.length === 0) throw new RangeError(`attachLidb: no Linear layer matches ${String(options.pattern)}`);
  const attached = new Map<string, LidbAdapter>();
  layers.forEach(([name, linear], i) => {
    const adapter = new LidbAdapter(linear.inFeatures, linear.outFeatures, options.seed + 3 * i, options.a, options.b, options.scale ?? 1);
    linear.attachAdapter(adapter);
    attached.set(name, adapter);
  });
  return attached;
}
