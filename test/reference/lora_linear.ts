// float64 reference of the LoRA-fused linear layer and its gradients, by plain loops.
export interface LoraShape {
  m: number;
  n: number;
  k: number;
  rank: number;
}

/** y = x w^T + bias + scale (x down) up and h = x down. */
export function loraLinear(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  down: ArrayLike<number>,
  up: ArrayLike<number>,
  { m, n, k, rank }: LoraShape,
  scale: number,
): { y: Float64Array; h: Float64Array } {
  const h = new Float64Array(m * rank);
  for (let i = 0; i < m; i++)
    for (let r = 0; r < rank; r++) {
      let s = 0;
      for (let kk = 0; kk < k; kk++) s += x[i * k + kk]! * down[kk * rank + r]!;
      h[i * rank + r] = s;
    }
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j]! : 0;
      for (let kk = 0; kk < k; kk++) s += x[i * k + kk]! * w[j * k + kk]!;
      for (let r = 0; r < rank; r++) s += scale * h[i * rank + r]! * up[r * n + j]!;
      y[i * n + j] = s;
    }
  return { y, h };
}

/** The closed-form gradients (checked against finite differences in the tests). */
export function loraLinearBackward(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  down: ArrayLike<number>,
  up: ArrayLike<number>,
  dy: ArrayLike<number>,
  { m, n, k, rank }: LoraShape,
  scale: number,
): { dx: Float64Array; dw: Float64Array; dbias: Float64Array; ddown: Float64Array; dup: Float64Array } {
  const h = loraLinear(x, w, null, down, up, { m, n, k, rank }, scale).h;
  const g = new Float64Array(m * rank);
  for (let i = 0; i < m; i++)
    for (let r = 0; r < rank; r++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += dy[i * n + j]! * up[r * n + j]!;
      g[i * rank + r] = s;
    }
  const dx = new Float64Array(m * k);
  for (let i = 0; i < m; i++)
    for (let kk = 0; kk < k; kk++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += dy[i * n + j]! * w[j * k + kk]!;
      for (let r = 0; r < rank; r++) s += scale * g[i * rank + r]! * down[kk * rank + r]!;
      dx[i * k + kk] = s;
    }
  const dw = new Float64Array(n * k);
  const dbias = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let sum = 0;
    for (let i = 0; i < m; i++) sum += dy[i * n + j]!;
    dbias[j] = sum;
    for (let kk = 0; kk < k; kk++) {
      let s = 0;
      for (let i = 0; i < m; i++) s += dy[i * n + j]! * x[i * k + kk]!;
      dw[j * k + kk] = s;
    }
  }
  const ddown = new Float64Array(k * rank);
  for (let kk = 0; kk < k; kk++)
    for (let r = 0; r < rank; r++) {
      let s = 0;
      for (let i = 0; i < m; i++) s += x[i * k + kk]! * g[i * rank + r]!;
      ddown[kk * rank + r] = scale * s;
    }
  const dup = new Float64Array(rank * n);
  for (let r = 0; r < rank; r++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < m; i++) s += h[i * rank + r]! * dy[i * n + j]!;
      dup[r * n + j] = scale * s;
    }
  return { dx, dw, dbias, ddown, dup };
}
