// References for cast, written on the IEEE bits.
const scratch = new DataView(new ArrayBuffer(4));

export function f32Bits(v: number): number {
  scratch.setFloat32(0, v);
  return scratch.getUint32(0);
}

export function f32FromBits(bits: number): number {
  scratch.setUint32(0, bits >>> 0);
  return scratch.getFloat32(0);
}

/** f32 -> bf16 -> f32: round to nearest, ties to even; NaN stays NaN. */
export function roundToBf16(v: number): number {
  if (Number.isNaN(v)) return Number.NaN;
  const bits = f32Bits(v);
  const upper = bits >>> 16;
  const lower = bits & 0xffff;
  let rounded = upper;
  if (lower > 0x8000 || (lower === 0x8000 && (upper & 1) === 1)) rounded = upper + 1;
  return f32FromBits((rounded << 16) >>> 0);
}

/** float -> i32: truncate toward zero, saturate, NaN -> 0. */
export function toI32(v: number): number {
  if (Number.isNaN(v)) return 0;
  if (v >= 2147483648) return 2147483647;
  if (v < -2147483648) return -2147483648;
  return Math.trunc(v) || 0; // an integer has no -0
}
