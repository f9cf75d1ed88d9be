// float64 reference of the Diffusion-DPO loss (diffusers form), straight from SPEC section 1.
export interface DpoReference {
  loss: number;
  accuracy: number;
  inside: Float64Array;
  mseW: Float64Array;
  mseL: Float64Array;
  refMseW: Float64Array;
  refMseL: Float64Array;
}

function mse(a: ArrayLike<number>, b: ArrayLike<number>, begin: number, end: number): number {
  let s = 0;
  for (let i = begin; i < end; i++) s += (a[i]! - b[i]!) ** 2;
  return s / (end - begin);
}

export function logSigmoid(x: number): number {
  return Math.min(x, 0) - Math.log1p(Math.exp(-Math.abs(x)));
}

export function dpoLoss(
  predW: ArrayLike<number>,
  predL: ArrayLike<number>,
  refW: ArrayLike<number>,
  refL: ArrayLike<number>,
  noiseW: ArrayLike<number>,
  noiseL: ArrayLike<number>,
  pairs: number,
  beta: number,
): DpoReference {
  const perPair = predW.length / pairs;
  const out: DpoReference = {
    loss: 0,
    accuracy: 0,
    inside: new Float64Array(pairs),
    mseW: new Float64Array(pairs),
    mseL: new Float64Array(pairs),
    refMseW: new Float64Array(pairs),
    refMseL: new Float64Array(pairs),
  };
  for (let p = 0; p < pairs; p++) {
    const [b, e] = [p * perPair, (p + 1) * perPair];
    const mw = mse(predW, noiseW, b, e);
    const ml = mse(predL, noiseL, b, e);
    const rw = mse(refW, noiseW, b, e);
    const rl = mse(refL, noiseL, b, e);
    const inside = -beta * (mw - ml - (rw - rl));
    out.mseW[p] = mw;
    out.mseL[p] = ml;
    out.refMseW[p] = rw;
    out.refMseL[p] = rl;
    out.inside[p] = inside;
    out.loss -= logSigmoid(inside) / pairs;
    out.accuracy += (inside > 0 ? 1 : inside === 0 ? 0.5 : 0) / pairs;
  }
  return out;
}
