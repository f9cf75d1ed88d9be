// float64 references for the elementwise ops.
export function scale(x: ArrayLike<number>, alpha: number): Float64Array {
  return Float64Array.from(x, (v) => alpha * v);
}

export type BinaryName = 'add' | 'sub' | 'mul';

export function binary(op: BinaryName, a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  const f = op === 'add' ? (x: number, y: number) => x + y : op === 'sub' ? (x: number, y: number) => x - y : (x: number, y: number) => x * y;
  return Float64Array.from(a, (v, i) => f(v, b[i]!));
}

export function axpy(alpha: number, x: ArrayLike<number>, y: ArrayLike<number>, beta: number): Float64Array {
  return Float64Array.from(x, (v, i) => alpha * v + (beta === 0 ? 0 : beta * y[i]!));
}

/** x + bias along `axis` of `shape` (axis already non-negative). */
export function biasAdd(x: ArrayLike<number>, shape: readonly number[], bias: ArrayLike<number>, axis: number): Float64Array {
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channels = shape[axis]!;
  return Float64Array.from(x, (v, i) => v + bias[Math.floor(i / inner) % channels]!);
}
