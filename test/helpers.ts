// Shared test machinery: backends to run on, seeded inputs, comparisons with useful failure
// messages, finite-difference gradients in float64, and memory-guard checks.
import { afterAll, expect } from 'vitest';
import { devices, type DeviceType } from '../lib/device.js';
import { seededRandom } from '../lib/host_random.js';
import { native } from '../lib/native.js';

/** Backends that can run here: cpu, cuda-emu, and cuda when a GPU is present. */
export function backends(): DeviceType[] {
  return devices()
    .filter((d) => d.available)
    .map((d) => d.type);
}

/** Every non-cpu backend, compared against cpu. */
export function acceleratorBackends(): DeviceType[] {
  return backends().filter((d) => d !== 'cpu');
}

/** Fresh seed per run unless REALTUNE_TEST_SEED pins it; printed so a failure can be replayed. */
export const testSeed = Number(process.env.REALTUNE_TEST_SEED ?? (Date.now() % 1_000_000));
// The cuda-emu backend draws its thread orders and WMMA lane mappings from REALTUNE_EMU_SEED (read
// at each launch): the test seed, unless pinned apart, so one seed replays inputs and schedules.
process.env.REALTUNE_EMU_SEED ??= String(testSeed);
console.log(
  `[realtune tests] seed ${testSeed} (replay with REALTUNE_TEST_SEED=${testSeed}; cuda-emu schedules from REALTUNE_EMU_SEED=${process.env.REALTUNE_EMU_SEED})`,
);

/** A seeded stream of test inputs in [0, 1). */
export function rng(seed: number = testSeed): () => number {
  return seededRandom(seed);
}

/** n values uniform in [-scale, scale). */
export function randomArray(n: number, random: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (random() * 2 - 1) * scale;
  return out;
}

export function toF64(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a);
}

export interface Tolerance {
  rtol?: number;
  atol?: number;
}

/**
 * Element-wise |a - e| <= atol + rtol |e|, NaN anywhere failing (outputs start poisoned with
 * NaN, so an element a kernel never wrote fails here) unless NaN is expected there. An infinite
 * expected value must be matched exactly, the same infinity with the same sign (the bound
 * atol + rtol |e| is infinite there and would accept anything). Reports the worst element.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance = {}, label = ''): void {
  const rtol = tol.rtol ?? 1e-5;
  const atol = tol.atol ?? 1e-6;
  expect(actual.length, `${label}: length`).toBe(expected.length);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (outOfTolerance(a, e, rtol, atol)) {
      const err = Math.abs(a - e);
      const excess = Number.isFinite(err) ? err / (atol + rtol * Math.abs(e)) : Infinity;
      if (worst < 0 || excess > worstExcess) {
        worst = i;
        worstExcess = excess;
      }
    }
  }
  if (worst >= 0) {
    expect.fail(
      `${label}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} ` +
        `(rtol ${rtol}, atol ${atol}; ${countBad(actual, expected, rtol, atol)} of ${expected.length} elements out of tolerance)`,
    );
  }
}

function outOfTolerance(a: number, e: number, rtol: number, atol: number): boolean {
  if (Number.isNaN(e)) return !Number.isNaN(a);
  if (!Number.isFinite(e)) return a !== e;
  return !(Math.abs(a - e) <= atol + rtol * Math.abs(e));
}

function countBad(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number): number {
  let bad = 0;
  for (let i = 0; i < expected.length; i++) if (outOfTolerance(actual[i]!, expected[i]!, rtol, atol)) bad++;
  return bad;
}

/** Exact equality, element by element (bit-identical results across backends). */
export function expectIdentical(actual: ArrayLike<number>, expected: ArrayLike<number>, label = ''): void {
  expect(actual.length, `${label}: length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) expect.fail(`${label}: element ${i} is ${actual[i]}, expected exactly ${expected[i]}`);
  }
}

/**
 * The gradient of sum(f(x) * dy) with respect to x, by central differences in float64.
 * `f` maps the (mutated in place) input to an output array; `dy` weights the outputs.
 */
export function numericGradient(
  f: () => ArrayLike<number>,
  x: Float64Array,
  dy: ArrayLike<number>,
  h = 1e-6,
): Float64Array {
  const grad = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const saved = x[i]!;
    x[i] = saved + h;
    const plus = Float64Array.from(f());
    x[i] = saved - h;
    const minus = f();
    x[i] = saved;
    // Differences per output before the dot product: outputs that x[i] does not move cancel
    // exactly, instead of leaving the roundoff of their whole sum over 2h in every element.
    let s = 0;
    for (let j = 0; j < plus.length; j++) s += (plus[j]! - minus[j]!) * dy[j]!;
    grad[i] = s / (2 * h);
  }
  return grad;
}

/** Fails the file if any cpu allocation's guard zone was overwritten (out-of-bounds write). */
export function checkMemoryGuards(): void {
  afterAll(() => {
    if (typeof global.gc === 'function') global.gc();
    const { memoryChecking, memoryCheckFailures } = native.info();
    expect(memoryChecking, 'REALTUNE_CHECK_MEMORY=1 is set for tests').toBe(true);
    expect(memoryCheckFailures, 'cpu allocations whose guard zones were overwritten').toBe(0);
  });
}
