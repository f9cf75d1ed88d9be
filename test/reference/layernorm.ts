// float64 reference for layer norm over the last axis of [rows, cols], with optional gamma/beta
// [cols] and adaLN scale/shift [rows / group, cols]. Gradients come from finite differences of
// this forward in the tests, so there is no hand-written reference backward to get wrong.
export interface LayerNormInputs {
  x: ArrayLike<number>;
  rows: number;
  cols: number;
  group: number;
  eps: number;
  gamma?: ArrayLike<number>;
  beta?: ArrayLike<number>;
  scale?: ArrayLike<number>;
  shift?: ArrayLike<number>;
}

export function layerNorm(p: LayerNormInputs): { y: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const { x, rows, cols } = p;
  const y = new Float64Array(rows * cols);
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += x[r * cols + c]!;
    const m = sum / cols;
    let sq = 0;
    for (let c = 0; c < cols; c++) sq += (x[r * cols + c]! - m) ** 2;
    const s = 1 / Math.sqrt(sq / cols + p.eps);
    mean[r] = m;
    rstd[r] = s;
    const g = Math.floor(r / p.group);
    for (let c = 0; c < cols; c++) {
      let v = (x[r * cols + c]! - m) * s;
      if (p.gamma) v *= p.gamma[c]!;
      if (p.beta) v += p.beta[c]!;
      if (p.scale) v *= 1 + p.scale[g * cols + c]!;
      if (p.shift) v += p.shift[g * cols + c]!;
      y[r * cols + c] = v;
    }
  }
  return { y, mean, rstd };
}
