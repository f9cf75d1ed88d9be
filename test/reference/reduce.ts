// float64 references for reduce (sum/mean over axes) and broadcast (expand).

function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d]!;
  }
  return s;
}

/** Sum (or mean) of x of `shape` over `axes` (non-negative); the result keeps reduced axes as 1. */
export function reduce(x: ArrayLike<number>, shape: readonly number[], axes: readonly number[], mean: boolean): Float64Array {
  const outShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const outStrides = strides(outShape);
  const out = new Float64Array(outShape.reduce((a, b) => a * b, 1));
  const inStrides = strides(shape);
  for (let k = 0; k < x.length; k++) {
    let offset = 0;
    for (let d = 0; d < shape.length; d++) {
      const index = Math.floor(k / inStrides[d]!) % shape[d]!;
      if (!axes.includes(d)) offset += index * outStrides[d]!;
    }
    out[offset]! += x[k]!;
  }
  if (mean) {
    const count = axes.reduce((a, d) => a * shape[d]!, 1);
    for (let i = 0; i < out.length; i++) out[i]! /= count;
  }
  return out;
}

/** x of `xShape` (same rank as `shape`, dims 1 or equal) repeated to `shape`, times alpha. */
export function expand(x: ArrayLike<number>, xShape: readonly number[], shape: readonly number[], alpha = 1): Float64Array {
  const outStrides = strides(shape);
  const inStrides = strides(xShape);
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    let offset = 0;
    for (let d = 0; d < shape.length; d++) {
      const index = Math.floor(k / outStrides[d]!) % shape[d]!;
      if (xShape[d] !== 1) offset += index * inStrides[d]!;
    }
    out[k] = alpha * x[offset]!;
  }
  return out;
}
