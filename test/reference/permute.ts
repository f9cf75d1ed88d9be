// float64 reference for permute: out[j] gathers x at the permuted index.
export function permute(x: ArrayLike<number>, shape: readonly number[], perm: readonly number[]): Float64Array {
  const ndim = shape.length;
  const inStrides = new Array<number>(ndim);
  let acc = 1;
  for (let d = ndim - 1; d >= 0; d--) {
    inStrides[d] = acc;
    acc *= shape[d]!;
  }
  const outShape = perm.map((p) => shape[p]!);
  const out = new Float64Array(x.length);
  for (let k = 0; k < x.length; k++) {
    let rest = k;
    let offset = 0;
    for (let d = ndim - 1; d >= 0; d--) {
      offset += (rest % outShape[d]!) * inStrides[perm[d]!]!;
      rest = Math.floor(rest / outShape[d]!);
    }
    out[k] = x[offset]!;
  }
  return out;
}

export function inversePermutation(perm: readonly number[]): number[] {
  const inverse = new Array<number>(perm.length);
  perm.forEach((p, d) => (inverse[p] = d));
  return inverse;
}
