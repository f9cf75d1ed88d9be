// float64 reference for layer norm over the last axis of [rows, cols], with optional gamma/beta
// [cols] and adaLN scale/shift [rows / group, cols], and its analytic backward (itself checked
// against finite differences of the forward in the tests).
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

export interface LayerNormReferenceGradients {
  dx: Float64Array;
  dgamma: Float64Array;
  dbeta: Float64Array;
  dscale: Float64Array;
  dshift: Float64Array;
}

export function layerNormBackward(p: LayerNormInputs, dy: ArrayLike<number>): LayerNormReferenceGradients {
  const { x, rows, cols, group } = p;
  const { mean, rstd } = layerNorm(p);
  const groups = rows / group;
  const g: LayerNormReferenceGradients = {
    dx: new Float64Array(rows * cols),
    dgamma: new Float64Array(cols),
    dbeta: new Float64Array(cols),
    dscale: new Float64Array(groups * cols),
    dshift: new Float64Array(groups * cols),
  };
  const xhat = new Float64Array(cols);
  const dxhat = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const b = Math.floor(r / group);
    let sumDxhat = 0;
    let sumDxhatXhat = 0;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      xhat[c] = (x[i]! - mean[r]!) * rstd[r]!;
      const gamma = p.gamma ? p.gamma[c]! : 1;
      const z = xhat[c]! * gamma + (p.beta ? p.beta[c]! : 0);
      const dz = dy[i]! * (p.scale ? 1 + p.scale[b * cols + c]! : 1);
      g.dshift[b * cols + c]! += dy[i]!;
      g.dscale[b * cols + c]! += dy[i]! * z;
      g.dbeta[c]! += dz;
      g.dgamma[c]! += dz * xhat[c]!;
      dxhat[c] = dz * gamma;
      sumDxhat += dxhat[c]!;
      sumDxhatXhat += dxhat[c]! * xhat[c]!;
    }
    for (let c = 0; c < cols; c++) {
      g.dx[r * cols + c] = rstd[r]! * (dxhat[c]! - sumDxhat / cols - (xhat[c]! * sumDxhatXhat) / cols);
    }
  }
  return g;
}
