// The CUDA execution-model emulator (cuda/emu): kernels exercising every supported feature
// against known results, and deliberately broken kernels it must catch and name. The scenarios
// live in cuda/emu/selftest.cc, reached through the dev addon (lib/native_dev.ts); this file feeds
// them inputs and checks what comes back.

import { describe, expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { devNative } from '../../lib/native_dev.js';
import { fromArray, full } from '../../lib/tensor.js';
import { scale } from '../../lib/ops/elementwise.js';
import { checkMemoryGuards, expectClose, expectIdentical, randomArray, rng, testSeed } from '../helpers.js';

declare module '../../lib/native_dev.js' {
  interface DevModule {
    /** Runs a cuda-emu self-test scenario: its outputs, or the launch's error message (thrown when `rethrow`). */
    emuSelfTest(name: string, input?: Float64Array, rethrow?: boolean): Float64Array | string;
  }
}

checkMemoryGuards();
// Several workers, so atomics race across blocks (read at the first launch, after imports).
process.env.REALTUNE_EMU_THREADS ??= '4';

const hasEmu = native.devices().some((d) => d.type === 'cuda-emu' && d.available);

function run(name: string, input?: ArrayLike<number>): Float64Array {
  const out = devNative().emuSelfTest(name, input ? Float64Array.from(input) : undefined);
  if (typeof out === 'string') expect.fail(`${name} failed: ${out}`);
  return out;
}

/**
 * Runs fn with the emulator's scheduling seed set to `seed`, then restores it. The emulator
 * restarts a seed's sequence of launch seeds when the variable changes, so a replay must set a
 * seed other than the one in force (the scenarios below use the test seed with a suffix).
 */
function withEmuSeed<T>(seed: number | string, fn: () => T): T {
  const saved = process.env.REALTUNE_EMU_SEED;
  process.env.REALTUNE_EMU_SEED = String(seed);
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.REALTUNE_EMU_SEED;
    else process.env.REALTUNE_EMU_SEED = saved;
  }
}

const sorted = (v: ArrayLike<number>): number[] => Array.from(v).sort((x, y) => x - y);

function failure(name: string): string {
  const out = devNative().emuSelfTest(name);
  if (typeof out !== 'string') expect.fail(`${name} ran without an error; the emulator missed it`);
  return out;
}

/** float32 inputs as float64, so the references see exactly what the kernels see. */
function f32Inputs(n: number, random: () => number): Float64Array {
  return Float64Array.from(randomArray(n, random));
}

const f32Bits = (x: number): number => new Uint32Array(Float32Array.of(x).buffer)[0]!;
const fromF32Bits = (u: number): number => new Float32Array(Uint32Array.of(u).buffer)[0]!;
const bf16BitsToFloat = (h: number): number => fromF32Bits((h << 16) >>> 0);

/**
 * bf16 bits of x (a float32) rounded to nearest, ties to even, by comparing distances in
 * float64 (independent of the bit trick the emulator uses); NaN -> 0x7fff.
 */
function bf16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7fff;
  const u = f32Bits(x);
  const down = u >>> 16;
  const up = down + 1;
  const lo = bf16BitsToFloat(down);
  // Past the largest finite bf16, IEEE rounding measures against 2^128 (the next power) and
  // overflows to infinity.
  const hi = (up & 0x7fff) === 0x7f80 ? Math.sign(x) * 2 ** 128 : bf16BitsToFloat(up);
  if (!Number.isFinite(x) || lo === x) return down;
  const dLo = Math.abs(x - lo);
  const dHi = Math.abs(hi - x);
  if (dLo < dHi) return down;
  if (dHi < dLo) return up & 0xffff;
  return (down & 1) === 0 ? down : up & 0xffff;
}
const toBf16 = (x: number): number => bf16BitsToFloat(bf16Bits(x));

describe.runIf(hasEmu)('cuda-emu execution model', () => {
  it('reduces through shared memory with __syncthreads and warp.cuh block_sum/block_max', () => {
    const x = f32Inputs(1000, rng());
    const out = run('block_reduce', x);
    const blocks = 4;
    const sums: number[] = [];
    const maxes: number[] = [];
    for (let b = 0; b < blocks; b++) {
      const chunk = x.slice(b * 256, Math.min(1000, (b + 1) * 256));
      sums.push(chunk.reduce((s, v) => s + v, 0));
      maxes.push(Math.max(...chunk));
    }
    expectClose(out.slice(0, blocks), sums, { rtol: 1e-5, atol: 1e-5 }, 'tree sums');
    expectClose(out.slice(blocks, 2 * blocks), sums, { rtol: 1e-5, atol: 1e-5 }, 'block_sum');
    expectIdentical(out.slice(2 * blocks), maxes, 'block_max');
  });

  it('shuffles: __shfl_sync, up, down, xor, widths, half-warp masks, 64-bit values', () => {
    const threads = 64;
    const x = f32Inputs(threads, rng());
    const out = run('shuffles', x);
    const expected: number[] = [];
    const variants: ((t: number, lane: number) => number)[] = [
      (t, lane) => x[t - lane + ((lane * 7 + 3) % 32)]!,
      (t, lane) => (lane >= 3 ? x[t - 3]! : x[t]!),
      (t, lane) => (lane + 5 < 32 ? x[t + 5]! : x[t]!),
      (t) => x[t ^ 9]!,
      (t, lane) => x[t - lane + (lane & ~7) + 2]!,
      (t, lane) => ((lane % 16) + 3 < 16 ? x[t + 3]! : x[t]!),
      (t, lane) => (lane % 4 >= 1 ? x[t - 1]! : x[t]!),
      (t, lane) => (lane < 16 ? x[t ^ 1]! : -1),
    ];
    for (const f of variants) for (let t = 0; t < threads; t++) expected.push(f(t, t % 32));
    expectIdentical(out, expected, 'shuffles');
  });

  it('votes: __ballot_sync, __any_sync, __all_sync, __activemask, __syncthreads_count/and/or', () => {
    const threads = 64;
    const random = rng();
    // warp 0 mixed, warp 1 all positive (so __all_sync is true there)
    const x = Array.from({ length: threads }, (_, t) => (t < 32 ? random() - 0.5 : random() + 0.1));
    x[3] = 1;
    x[4] = -1;
    const p: number[] = x.map((v) => (v > 0 ? 1 : 0));
    const out = run('votes', x);
    const expected: number[] = [];
    const ballot = (from: number, to: number): number => {
      let bits = 0;
      for (let l = from; l < to; l++) if (p[l]) bits |= 1 << (l % 32);
      return bits >>> 0;
    };
    const count = p.reduce((s: number, v) => s + v, 0);
    for (let t = 0; t < threads; t++) {
      const w = t - (t % 32);
      const full = ballot(w, w + 32);
      expected.push(full, full !== 0 ? 1 : 0, full === 0xffffffff ? 1 : 0);
      if (t % 32 < 16) {
        const half = ballot(w, w + 16);
        expected.push(half, half !== 0 ? 1 : 0, half === 0xffff ? 1 : 0);
      } else {
        expected.push(0xffffffff, 7, 7);
      }
      expected.push(count, count === threads ? 1 : 0, count > 0 ? 1 : 0);
    }
    expectIdentical(out, expected, 'votes');
  });

  it('atomics are exact across many blocks on several worker threads', () => {
    const n = 5000;
    const x = f32Inputs(n, rng());
    const out = run('atomics', x);
    const sum = x.reduce((s, v) => s + v, 0);
    expectClose([out[0]!], [sum], { rtol: 1e-4, atol: 1e-3 }, 'atomicAdd float');
    expectIdentical(out.slice(1, 7), [n, n - 1, 0, n, 1, (n * (n - 1)) / 2], 'int add, max, min, CAS loop, exch, u64 add');
    expectClose([out[7]!], [sum], { rtol: 1e-9, atol: 1e-9 }, 'atomicAdd double');
    expectIdentical(out.slice(8), [1250, 1250, 1250, 1250], 'bins');
  });

  it('dynamic shared memory is sized by the launch', () => {
    const x = f32Inputs(96 * 5, rng());
    const out = run('dynamic_shared', x);
    const expected = Array.from(x, (_, i) => x[i - (i % 96) + 95 - (i % 96)]!);
    expectIdentical(out, expected, 'reversed blocks');
  });

  it('bf16 conversions round to nearest, ties to even', () => {
    const specials = [
      0, -0, 1, -1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8), 2 ** -130, -(2 ** -140),
      3.3895e38, 3.4028234e38, Infinity, -Infinity, Number.NaN, 65504, 1e-3, Math.PI,
    ].map(Math.fround);
    const x = [...specials, ...randomArray(200, rng(), 100)];
    const out = run('bf16', x);
    const n = x.length;
    expect(bf16Bits(Math.fround(1 + 2 ** -8)), 'reference: tie rounds down to even').toBe(0x3f80);
    expect(bf16Bits(Math.fround(1 + 3 * 2 ** -8)), 'reference: tie rounds up to even').toBe(0x3f82);
    expect(bf16Bits(Math.fround(3.4028234e38)), 'reference: float max overflows').toBe(0x7f80);
    const rt: number[] = [];
    const pairs: number[] = [];
    for (const v of x) {
      rt.push(toBf16(v));
      pairs.push(toBf16(v), toBf16(-v), toBf16(2 * toBf16(v)));
    }
    expectIdentical(Array.from(out.slice(4 * n), (h) => h), x.map(bf16Bits), 'stored bits');
    for (let i = 0; i < n; i++) {
      expectIdentical(out.slice(4 * i, 4 * i + 4), [rt[i]!, ...pairs.slice(3 * i, 3 * i + 3)], `x=${x[i]}`);
    }
  });

  it('WMMA bf16 16x16x16 mma_sync matches a float64 reference', () => {
    const random = rng();
    const input = [...randomArray(512, random), ...randomArray(256, random)];
    const out = run('wmma', input);
    const a = input.slice(0, 256).map(toBf16);
    const b = input.slice(256, 512).map(toBf16);
    const c = input.slice(512);
    const d: number[] = [];
    for (let i = 0; i < 16; i++)
      for (let j = 0; j < 16; j++) {
        let s = c[i * 16 + j]!;
        for (let k = 0; k < 16; k++) s += a[i * 16 + k]! * b[k * 16 + j]!;
        d.push(s);
      }
    expectClose(out.slice(0, 256), d, { rtol: 1e-5, atol: 1e-5 }, 'D row-major');
    expectClose(out.slice(256), d.map((v) => 2 * v), { rtol: 1e-5, atol: 1e-5 }, '2D via col-major store');
  });

  it('WMMA fragments hold a seeded per-launch share of the tile: code that assumes a mapping fails', () => {
    const random = rng();
    const input = randomArray(512, random);
    const a = input.slice(0, 256).map(toBf16);
    const b = input.slice(256).map(toBf16);
    const d: number[] = [];
    for (let i = 0; i < 16; i++)
      for (let j = 0; j < 16; j++) {
        let s = 0;
        for (let k = 0; k < 16; k++) s += a[i * 16 + k]! * b[k * 16 + j]!;
        d.push(Math.fround(s));
      }
    const seeds = ['a', 'b', 'c'].map((suffix) => `${testSeed}-${suffix}`);
    const outputs = seeds.map((seed) => withEmuSeed(seed, () => run('wmma_assumed_mapping', input)));
    for (const out of outputs) {
      // Each lane holds 8 elements and together they are the whole tile, but not in row-major order.
      expectClose(sorted(out), sorted(d), { rtol: 1e-5, atol: 1e-5 }, 'the lanes hold the tile between them');
      expect(Array.from(out)).not.toEqual(d);
    }
    expect(Array.from(outputs[0]!)).not.toEqual(Array.from(outputs[1]!));
    expectIdentical(withEmuSeed(seeds[0]!, () => run('wmma_assumed_mapping', input)), outputs[0]!, 'a seed replays its mapping');
  });

  it('a __syncwarp orders the lanes of a WMMA store before reads of other lanes elements', () => {
    expectIdentical(run('wmma_round_trip_synced'), new Array(32).fill(8), 'row halves of a tile of ones');
  });

  it('a __syncwarp orders a warp exchange through shared memory', () => {
    const out = run('warp_exchange_synced');
    expectIdentical(out, Array.from({ length: 64 }, (_, t) => t - (t % 32) + 31 - (t % 32)), 'the partner lane');
  });

  it('shared memory starts as NaN in every block, static and dynamic', () => {
    const out = run('uninitialised_shared');
    expect(out.every(Number.isNaN), 'every value read before a write').toBe(true);
  });

  it('places the dynamic region at exactly 32 bytes and static arrays at exactly their alignment', () => {
    expectIdentical(run('shared_placement'), [32, 16, 8], 'dynamic % 64, __align__(16) float[4] % 32, double[2] % 16');
  });

  it('runs the threads of a block in a seeded random order, one-block grids included', () => {
    const input = new Array(256).fill(0);
    const seeds = [`${testSeed}-d`, `${testSeed}-e`];
    const orders = seeds.map((seed) => withEmuSeed(seed, () => run('thread_order', input)));
    for (const order of orders) expect(sorted(order), 'each thread ran once').toEqual(input.map((_, i) => i));
    expect(Array.from(orders[0]!)).not.toEqual(Array.from(orders[1]!));
    expect(Array.from(orders[0]!)).not.toEqual(input.map((_, i) => i));
    expectIdentical(withEmuSeed(seeds[0]!, () => run('thread_order', input)), orders[0]!, 'a seed replays its order');
  });

  it('contracts a * b + c into an FMA, as nvcc does', () => {
    const a = Math.fround(1 + 2 ** -12);
    const out = run('multiply_add', [a, a, -1]);
    // Rounded once: 2^-11 + 2^-24; a separate multiply would round away the 2^-24.
    expect(out[0]).toBe(2 ** -11 + 2 ** -24);
  });

  it('launches within __launch_bounds__, and past 48 KB of shared memory after cudaFuncSetAttribute', () => {
    expectIdentical(run('within_launch_bounds'), new Array(64).fill(1), 'within bounds');
    expectIdentical(run('opted_in_shared'), new Array(32).fill(3), '16 KB static + 100 KB dynamic, opted in');
  });

  it('runs the shared kernels fill and scale like cpu', () => {
    const x = randomArray(4099, rng());
    const onCpu = scale(fromArray(x), 0.75).toArray();
    expectIdentical(scale(fromArray(x, [4099], { device: 'cuda-emu' }), 0.75).toArray(), onCpu, 'scale');
    for (const dtype of ['f32', 'bf16', 'i32'] as const) {
      const shape = [3, 1111];
      expectIdentical(full(shape, 2.5, { device: 'cuda-emu', dtype }).toArray(), full(shape, 2.5, { dtype }).toArray(), `fill ${dtype}`);
    }
  });
});

describe.runIf(hasEmu)('cuda-emu catches broken kernels', () => {
  const site = String.raw`\S*selftest\.cc:\d+`;
  const cases: [string, RegExp][] = [
    [
      'oob_read',
      /^cuda-emu: kernel copy_kernel: block \(3,0,0\), thread \(232,0,0\): out-of-bounds read of a float \(4 bytes\) at byte offset 4000 of a 4000-byte allocation$/,
    ],
    ['oob_write', /^cuda-emu: kernel copy_kernel: block \(3,0,0\), thread \(\d+,0,0\): out-of-bounds access of a float \(4 bytes\) at byte offset \d+ of a 4000-byte allocation$/],
    ['oob_write_by_one', /^cuda-emu: kernel copy_kernel: block \(3,0,0\), thread \(232,0,0\): out-of-bounds access of a float \(4 bytes\) at byte offset 4000 of a 4000-byte allocation$/],
    [
      'sync_in_branch',
      new RegExp(String.raw`^cuda-emu: kernel sync_in_branch_kernel: block \([01],0,0\): deadlock: __syncthreads\(\) at ${site} reached by only 64 of 256 threads: thread \(64,0,0\) exited`),
    ],
    ['sync_two_sites', new RegExp(String.raw`kernel sync_two_sites_kernel: block \(0,0,0\), thread \(\d+,0,0\): threads of the block wait at different __syncthreads\(\) call sites: ${site} \(\d+ threads\) and ${site}$`)],
    [
      'early_return',
      new RegExp(String.raw`^cuda-emu: kernel early_return_kernel: block \(3,0,0\): deadlock: __syncthreads\(\) at ${site} reached by only 232 of 256 threads: thread \(232,0,0\) exited`),
    ],
    [
      'shuffle_missing_lane',
      new RegExp(String.raw`^cuda-emu: kernel shuffle_missing_lane_kernel: block \(0,0,0\): deadlock: warp 0: lane 0 waits in __shfl_down_sync \(mask 0xffffffff\) but lane 31 never arrives: thread \(31,0,0\) waits at __syncthreads\(\) at ${site}$`),
    ],
    ['shuffle_exited_lane', /kernel shuffle_exited_lane_kernel: .*warp [01]: lane 15's __shfl_xor_sync \(mask 0xffffffff\) reads lane 31, which has exited or does not exist/],
    ['shuffle_mask_without_self', /kernel shuffle_mask_without_self_kernel: block \(0,0,0\), thread \((1[6-9]|2\d|3[01]),0,0\): __shfl_sync with mask 0x0000ffff called by lane \1, which is not in the mask$/],
    ['null_pointer', /kernel read_kernel: block \(0,0,0\), thread \(\d+,0,0\): read of a float through a null pointer$/],
    ['host_pointer', /kernel read_kernel: .*: read of a float at 0x[0-9a-f]+, which is not inside any live cudaMalloc allocation$/],
    ['misaligned_vector', /kernel vector_read_kernel: .*: misaligned read of a float4 at byte offset 4 of a 256-byte allocation \(needs 16-byte alignment\)$/],
    ['too_many_threads', /^cuda-emu: kernel read_kernel: invalid launch configuration: block \(2048,1,1\) has 2048 threads/],
    ['too_much_shared', /^cuda-emu: kernel reverse_kernel: invalid launch configuration: 65536 bytes of dynamic shared memory/],
    ['wmma_misaligned', /kernel wmma_misaligned_kernel: .*: wmma::load_matrix_sync: pointer 0x[0-9a-f]+ is not 32-byte aligned$/],
    ['wmma_tile_past_end', /kernel wmma_tile_past_end_kernel: .*: out-of-bounds read of 16 x bf16 \(32 bytes\) at byte offset 480 of a 480-byte allocation$/],
    [
      'wmma_divergent',
      /kernel wmma_divergent_kernel: block \(0,0,0\), thread \(\d+,0,0\): warp 0: wmma::load_matrix_sync is warp-wide, but lane (1[6-9]|2\d|3[01]) exited without making the call$/,
    ],
    ['kernel_throws', /kernel throwing_kernel: block \(0,0,0\), thread \(5,0,0\): the kernel threw a C\+\+ exception: device code is not allowed to throw$/],
    // WMMA as the hardware has it
    ['wmma_missing_syncwarp', new RegExp(String.raw`kernel wmma_shared_round_trip_kernel: .*: shared-memory race on byte \d+ of __shared__ tile \(1024 bytes, ${site}\): this thread (reads what thread \(\d+,0,0\) wrote|writes what thread \(\d+,0,0\) read), with no __syncthreads\(\) between them`)],
    ['wmma_lanes_disagree_pointer', /kernel wmma_lanes_disagree_kernel: .*: warp 0: lane \d+ calls wmma::load_matrix_sync\((0x[0-9a-f]+), ldm 16, row-major\) where lane \d+ called wmma::load_matrix_sync\((?!\1\b)0x[0-9a-f]+, ldm 16, row-major\) \(every lane of a warp makes the same WMMA calls/],
    ['wmma_lanes_disagree_ldm', /kernel wmma_lanes_disagree_kernel: .*: warp 0: lane \d+ calls wmma::load_matrix_sync\(0x[0-9a-f]+, ldm (16|32), row-major\) where lane \d+ called wmma::load_matrix_sync\(0x[0-9a-f]+, ldm (?!\1)(16|32), row-major\)/],
    ['wmma_lanes_disagree_layout', /kernel wmma_lanes_disagree_kernel: .*: warp 0: lane \d+ calls wmma::load_matrix_sync\(0x[0-9a-f]+, ldm 16, (row|col)-major\) where lane \d+ called wmma::load_matrix_sync\(0x[0-9a-f]+, ldm 16, (?!\1)(row|col)-major\)/],
    ['wmma_underaligned_shared', /kernel wmma_underaligned_shared_kernel: .*: wmma::store_matrix_sync: pointer 0x[0-9a-f]+ is not 32-byte aligned$/],
    ['wmma_partial_warp', /kernel wmma_partial_warp_kernel: .*: wmma::(fill_fragment|store_matrix_sync) needs a whole warp, but warp 0 has 16 threads$/],
    // shared memory: bounds, alignment, races
    ['shared_past_end', new RegExp(String.raw`kernel shared_past_end_kernel: block \(0,0,0\), thread \(63,0,0\): out-of-bounds 4-byte write of shared memory at 0 bytes past the end of __shared__ tile \(256 bytes, ${site}\)$`)],
    ['dynamic_shared_past_end', /kernel dynamic_shared_past_end_kernel: block \(0,0,0\), thread \(63,0,0\): out-of-bounds 4-byte read of shared memory at 0 bytes past the end of the dynamic shared memory \(256 bytes\)$/],
    ['shared_misaligned', new RegExp(String.raw`kernel shared_misaligned_kernel: .*: misaligned 16-byte read of shared memory at byte \d+ of __shared__ tile \(272 bytes, ${site}\) \(needs 16-byte alignment\)$`)],
    ['missing_barrier', new RegExp(String.raw`kernel missing_barrier_kernel: .*: shared-memory race on byte \d+ of __shared__ tile \(256 bytes, ${site}\): this thread (reads what thread \(\d+,0,0\) wrote|writes what thread \(\d+,0,0\) read)`)],
    ['warp_exchange_unsynced', /kernel warp_exchange_kernel: .*: shared-memory race on byte \d+ of __shared__ slots .*: this thread (reads what thread \(\d+,0,0\) wrote|writes what thread \(\d+,0,0\) read)/],
    ['warp_exchange_shuffle_only', /kernel warp_exchange_kernel: .*: shared-memory race on byte \d+ of __shared__ slots .*: this thread (reads what thread \(\d+,0,0\) wrote|writes what thread \(\d+,0,0\) read)/],
    ['warp_exchange_across_warps', /kernel warp_exchange_kernel: .*: shared-memory race on byte \d+ of __shared__ slots .*: this thread (reads what thread \(\d+,0,0\) wrote|writes what thread \(\d+,0,0\) read)/],
    // Thread 0's overwrite races the other threads' reads; which of the two runs second (and reports) is the schedule's choice.
    [
      'write_after_read',
      /kernel write_after_read_kernel: block \(0,0,0\), thread \((0,0,0\): shared-memory race on byte 0 of __shared__ value \(4 bytes, .*\): this thread writes what (other threads|thread \(\d+,0,0\)) read|[1-9]\d*,0,0\): shared-memory race on byte 0 of __shared__ value \(4 bytes, .*\): this thread reads what thread \(0,0,0\) wrote)/,
    ],
    // launch realism
    ['over_launch_bounds', /^cuda-emu: kernel bounded_kernel: block \(0,0,0\): the launch has 128 threads per block, more than the kernel's __launch_bounds__\(64\) allows/],
    ['static_plus_dynamic_over_48k', /kernel big_static_shared_kernel<0>: .*: __shared__ big \(16384 bytes, .*\) brings the block to 16384 static \+ 40960 dynamic = 57344 bytes of shared memory, over the 48 KB \(49152 bytes\) a launch gets without cudaFuncSetAttribute/],
    ['grid_too_tall', /^cuda-emu: kernel read_kernel: invalid launch configuration: grid \(1,65536,1\) exceeds \(2\^31-1, 65535, 65535\)$/],
  ];
  for (const [name, pattern] of cases) {
    it(`reports ${name}`, () => {
      // Under several schedules and WMMA mappings: a check must not depend on a lucky order.
      for (const seed of [testSeed, testSeed + 1, testSeed + 2]) expect(withEmuSeed(seed, () => failure(name)), `seed ${seed}`).toMatch(pattern);
    });
  }

  it('a failed launch does not poison later launches', () => {
    for (const [name] of cases) {
      failure(name);
      expectIdentical(run('in_bounds_copy'), new Array(1000).fill(1), `in-bounds copy after ${name}`);
    }
    const x = f32Inputs(1000, rng());
    const out = run('block_reduce', x);
    expectClose([out[0]!], [x.slice(0, 256).reduce((s, v) => s + v, 0)], { rtol: 1e-5, atol: 1e-5 }, 'block_reduce after failures');
  });

  it('a failed launch throws a JS Error carrying the message, and unknown scenarios are rejected', () => {
    expect(() => devNative().emuSelfTest('oob_write_by_one', undefined, true)).toThrow(
      /^realtune: cuda-emu: kernel copy_kernel: block \(3,0,0\), thread \(232,0,0\): out-of-bounds access/,
    );
    expect(() => devNative().emuSelfTest('no_such_scenario')).toThrow(/emuSelfTest: no scenario named 'no_such_scenario'/);
  });
});
