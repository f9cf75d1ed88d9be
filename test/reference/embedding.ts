// float64 references for the embedding gather and its scatter-add backward.
export function embedding(table: ArrayLike<number>, dim: number, ids: ArrayLike<number>): Float64Array {
  const out = new Float64Array(ids.length * dim);
  for (let i = 0; i < ids.length; i++) for (let d = 0; d < dim; d++) out[i * dim + d] = table[ids[i]! * dim + d]!;
  return out;
}

export function embeddingBackward(ids: ArrayLike<number>, dy: ArrayLike<number>, vocab: number, dim: number): Float64Array {
  const dtable = new Float64Array(vocab * dim);
  for (let i = 0; i < ids.length; i++) for (let d = 0; d < dim; d++) dtable[ids[i]! * dim + d]! += dy[i * dim + d]!;
  return dtable;
}
