// float64 reference for matmul: C[b] = alpha op(A[b]) op(B[b]) + beta C[b], row-major, with
// batch strides (0 broadcasts an operand).
export interface MatmulRefArgs {
  batch: number;
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
  strideA?: number;
  strideB?: number;
}

export function matmul(a: ArrayLike<number>, b: ArrayLike<number>, c: ArrayLike<number> | null, args: MatmulRefArgs): Float64Array {
  const { batch, m, n, k } = args;
  const alpha = args.alpha ?? 1;
  const beta = args.beta ?? 0;
  const strideA = args.strideA ?? m * k;
  const strideB = args.strideB ?? k * n;
  const out = new Float64Array(batch * m * n);
  for (let bi = 0; bi < batch; bi++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = a[bi * strideA + (args.transA ? p * m + i : i * k + p)]!;
          const bv = b[bi * strideB + (args.transB ? j * k + p : p * n + j)]!;
          s += av * bv;
        }
        const idx = bi * m * n + i * n + j;
        out[idx] = alpha * s + (beta === 0 ? 0 : beta * c![idx]!);
      }
    }
  }
  return out;
}

/** Rounds to bf16 (nearest, ties to even), as the cast to a bf16 tensor does. */
export function roundBf16(x: ArrayLike<number>): Float64Array {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  return Float64Array.from(x, (v) => {
    f[0] = v;
    const bits = u[0]!;
    u[0] = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16;
    return f[0];
  });
}

/** x^T of a row-major [rows, cols] matrix. */
export function transpose(x: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = x[i * cols + j]!;
  return out;
}
