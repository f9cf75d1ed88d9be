// Reference Philox-4x32-10 and the uniform/normal maps of csrc/philox.h, in BigInt and float64.
const M0 = 0xd2511f53n;
const M1 = 0xcd9e8d57n;
const W0 = 0x9e3779b9n;
const W1 = 0xbb67ae85n;
const MASK = 0xffffffffn;

/** The four output words for a 128-bit counter and 64-bit key given as 32-bit words. */
export function philox4x32_10(counter: readonly [number, number, number, number], key: readonly [number, number]): number[] {
  let [c0, c1, c2, c3] = counter.map(BigInt) as [bigint, bigint, bigint, bigint];
  let [k0, k1] = key.map(BigInt) as [bigint, bigint];
  for (let round = 0; round < 10; round++) {
    const p0 = M0 * c0;
    const p1 = M1 * c2;
    const n0 = (p1 >> 32n) ^ c1 ^ k0;
    const n2 = (p0 >> 32n) ^ c3 ^ k1;
    c1 = p1 & MASK;
    c3 = p0 & MASK;
    c0 = n0;
    c2 = n2;
    k0 = (k0 + W0) & MASK;
    k1 = (k1 + W1) & MASK;
  }
  return [c0, c1, c2, c3].map(Number);
}

function words(seed: number, index: number): number[] {
  const s = BigInt(seed);
  const i = BigInt(index);
  return philox4x32_10([Number(i & MASK), Number(i >> 32n), 0, 0], [Number(s & MASK), Number(s >> 32n)]);
}

export function uniform(seed: number, index: number, low: number, high: number): number {
  const [w0] = words(seed, index);
  const u = (w0! >>> 8) * 2 ** -24;
  return Math.fround((high - low) * u + low);
}

export function normal(seed: number, index: number, mean: number, std: number): number {
  const [w0, w1, w2, w3] = words(seed, index).map(BigInt) as [bigint, bigint, bigint, bigint];
  const bits1 = ((w0 << 32n) | w1) >> 11n;
  const bits2 = ((w2 << 32n) | w3) >> 11n;
  const u1 = Number(bits1 + 1n) * 2 ** -53;
  const u2 = Number(bits2) * 2 ** -53;
  const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(6.283185307179586 * u2);
  return Math.fround(std * z + mean);
}
