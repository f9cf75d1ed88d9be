// float64 references for the activations: GELU (tanh approximation) and SiLU.
const geluScale = Math.sqrt(2 / Math.PI);

export function gelu(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v) => 0.5 * v * (1 + Math.tanh(geluScale * (v + 0.044715 * v * v * v))));
}

export function silu(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v) => v / (1 + Math.exp(-v)));
}

/** Analytic derivatives times dy (checked against finite differences in the tests). */
export function geluBackward(x: ArrayLike<number>, dy: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v, i) => {
    const t = Math.tanh(geluScale * (v + 0.044715 * v * v * v));
    return dy[i]! * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * geluScale * (1 + 3 * 0.044715 * v * v));
  });
}

export function siluBackward(x: ArrayLike<number>, dy: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v, i) => {
    const s = 1 / (1 + Math.exp(-v));
    return dy[i]! * s * (1 + v * (1 - s));
  });
}
