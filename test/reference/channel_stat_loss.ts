// float64 reference of the channel-statistics loss on [rows = B*C, N] data.
export interface ChannelStatReference {
  loss: number;
  meanA: Float64Array;
  meanB: Float64Array;
  stdA: Float64Array;
  stdB: Float64Array;
}

function stats(x: ArrayLike<number>, row: number, n: number): [number, number] {
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[row * n + i]!;
  mean /= n;
  let variance = 0;
  for (let i = 0; i < n; i++) variance += (x[row * n + i]! - mean) ** 2;
  return [mean, Math.sqrt(variance / n)];
}

export function channelStatLoss(a: ArrayLike<number>, b: ArrayLike<number>, rows: number, matchStd: boolean): ChannelStatReference {
  const n = a.length / rows;
  const out: ChannelStatReference = {
    loss: 0,
    meanA: new Float64Array(rows),
    meanB: new Float64Array(rows),
    stdA: new Float64Array(rows),
    stdB: new Float64Array(rows),
  };
  for (let r = 0; r < rows; r++) {
    const [ma, sa] = stats(a, r, n);
    const [mb, sb] = stats(b, r, n);
    out.meanA[r] = ma;
    out.meanB[r] = mb;
    out.stdA[r] = sa;
    out.stdB[r] = sb;
    out.loss += ((ma - mb) ** 2 + (matchStd ? (sa - sb) ** 2 : 0)) / rows;
  }
  return out;
}
