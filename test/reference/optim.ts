// float64 references for the optimizer ops.
export interface AdamWState {
  param: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** One AdamW step at 1-based `step`, in place on the state. */
export function adamwStep(state: AdamWState, grad: ArrayLike<number>, h: AdamWHyper, step: number): void {
  const c1 = 1 - h.beta1 ** step;
  const c2 = 1 - h.beta2 ** step;
  for (let i = 0; i < grad.length; i++) {
    const g = grad[i]!;
    const m = h.beta1 * state.m[i]! + (1 - h.beta1) * g;
    const v = h.beta2 * state.v[i]! + (1 - h.beta2) * g * g;
    state.m[i] = m;
    state.v[i] = v;
    const p = state.param[i]!;
    state.param[i] = p - h.lr * (m / c1 / (Math.sqrt(v / c2) + h.eps) + h.weightDecay * p);
  }
}

export function sumSquares(...arrays: ArrayLike<number>[]): number {
  let s = 0;
  for (const a of arrays) for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return s;
}

/** The factor clip_by_norm scales by. */
export function clipFactor(totalSq: number, maxNorm: number): number {
  return Math.min(1, maxNorm / (Math.sqrt(totalSq) + 1e-6));
}
