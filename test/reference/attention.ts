// float64 reference for attention: the naive softmax(scale q k^T + mask) v with the whole score
// matrix, and its analytic gradients. Layouts as in the op: q [B, H, Lq, D], k, v [B, H, Lk, D].
export interface AttentionProblem {
  batch: number;
  heads: number;
  lq: number;
  lk: number;
  dim: number;
  scale: number;
  causal: boolean;
  kvLengths?: ArrayLike<number>;
}

function visible(p: AttentionProblem, b: number, i: number, j: number): boolean {
  if (p.kvLengths !== undefined && j >= p.kvLengths[b]!) return false;
  return !p.causal || j <= i + (p.lk - p.lq);
}

/** Row-wise probabilities of one (batch, head): [Lq, Lk], zero rows where no key is visible; and lse. */
function probabilities(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  p: AttentionProblem,
  b: number,
  bh: number,
): { probs: Float64Array; lse: Float64Array } {
  const { lq, lk, dim } = p;
  const probs = new Float64Array(lq * lk);
  const lse = new Float64Array(lq);
  for (let i = 0; i < lq; i++) {
    let max = -Infinity;
    const scores = new Float64Array(lk);
    for (let j = 0; j < lk; j++) {
      if (!visible(p, b, i, j)) {
        scores[j] = -Infinity;
        continue;
      }
      let s = 0;
      for (let d = 0; d < dim; d++) s += q[(bh * lq + i) * dim + d]! * k[(bh * lk + j) * dim + d]!;
      scores[j] = s * p.scale;
      max = Math.max(max, scores[j]!);
    }
    if (max === -Infinity) {
      lse[i] = -Infinity;
      continue;
    }
    let sum = 0;
    for (let j = 0; j < lk; j++) sum += Math.exp(scores[j]! - max);
    lse[i] = max + Math.log(sum);
    for (let j = 0; j < lk; j++) probs[i * lk + j] = Math.exp(scores[j]! - lse[i]!);
  }
  return { probs, lse };
}

export function attention(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  p: AttentionProblem,
): { out: Float64Array; lse: Float64Array } {
  const { batch, heads, lq, lk, dim } = p;
  const out = new Float64Array(batch * heads * lq * dim);
  const lse = new Float64Array(batch * heads * lq);
  for (let bh = 0; bh < batch * heads; bh++) {
    const b = Math.floor(bh / heads);
    const { probs, lse: rowLse } = probabilities(q, k, p, b, bh);
    lse.set(rowLse, bh * lq);
    for (let i = 0; i < lq; i++)
      for (let j = 0; j < lk; j++) {
        const w = probs[i * lk + j]!;
        if (w === 0) continue;
        for (let d = 0; d < dim; d++) out[(bh * lq + i) * dim + d]! += w * v[(bh * lk + j) * dim + d]!;
      }
  }
  return { out, lse };
}

/** dq, dk, dv of sum(attention(q, k, v) * dout). */
export function attentionBackward(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dout: ArrayLike<number>,
  p: AttentionProblem,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { batch, heads, lq, lk, dim } = p;
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  for (let bh = 0; bh < batch * heads; bh++) {
    const b = Math.floor(bh / heads);
    const { probs } = probabilities(q, k, p, b, bh);
    for (let i = 0; i < lq; i++) {
      const qi = (bh * lq + i) * dim;
      // dP_ij = dout_i . v_j ; dS_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij')
      const dp = new Float64Array(lk);
      let rowDot = 0;
      for (let j = 0; j < lk; j++) {
        const w = probs[i * lk + j]!;
        if (w === 0) continue;
        let s = 0;
        for (let d = 0; d < dim; d++) s += dout[qi + d]! * v[(bh * lk + j) * dim + d]!;
        dp[j] = s;
        rowDot += w * s;
      }
      for (let j = 0; j < lk; j++) {
        const w = probs[i * lk + j]!;
        if (w === 0) continue;
        const kj = (bh * lk + j) * dim;
        const ds = w * (dp[j]! - rowDot) * p.scale;
        for (let d = 0; d < dim; d++) {
          dv[kj + d]! += w * dout[qi + d]!;
          dq[qi + d]! += ds * k[kj + d]!;
          dk[kj + d]! += ds * q[qi + d]!;
        }
      }
    }
  }
  return { dq, dk, dv };
}

/** Values rounded to the nearest bf16 (ties to even), as the op sees bf16 inputs. */
export function roundToBf16(x: ArrayLike<number>): Float32Array {
  const f = Float32Array.from(x);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < u.length; i++) {
    const bits = u[i]!;
    u[i] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16;
  }
  return f;
}
