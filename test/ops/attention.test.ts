import { describe, expect, it } from 'vitest';
import { fromArray, type Tensor } from '../../lib/tensor.js';
import type { DeviceType } from '../../lib/device.js';
import { native } from '../../lib/native.js';
import { devNative } from '../../lib/native_dev.js';
import { attention, attentionBackward, attentionForward, type AttentionDType } from '../../lib/ops/attention.js';
import * as ref from '../reference/attention.js';
import {
  acceleratorBackends,
  checkMemoryGuards,
  expectClose,
  numericGradient,
  randomArray,
  rng,
  toF64,
  type Tolerance,
} from '../helpers.js';

declare module '../../lib/native_dev.js' {
  interface DevModule {
    /** cuda-emu launches started so far, by kernel name (the kernel expression RT_LAUNCH was given). */
    emuLaunchCounts(): Record<string, number>;
  }
}

checkMemoryGuards();

interface Case {
  batch: number;
  heads: number;
  lq: number;
  lk: number;
  dim: number;
  causal?: boolean;
  kvLengths?: number[];
  scale?: number;
}

interface Inputs {
  problem: ref.AttentionProblem;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  dout: Float32Array;
}

function describeCase(c: Case): string {
  const mask = [c.causal ? 'causal' : '', c.kvLengths ? `kvLengths [${c.kvLengths.join(',')}]` : ''].filter(Boolean).join(' ');
  return `B${c.batch} H${c.heads} Lq${c.lq} Lk${c.lk} D${c.dim}${mask ? ` ${mask}` : ''}`;
}

/** Random inputs; bf16 cases get inputs already rounded to bf16 so the reference sees what the op sees. */
function makeInputs(c: Case, random: () => number, dtype: AttentionDType): Inputs {
  const round = (a: Float32Array): Float32Array => (dtype === 'bf16' ? ref.roundToBf16(a) : a);
  const qSize = c.batch * c.heads * c.lq * c.dim;
  const kSize = c.batch * c.heads * c.lk * c.dim;
  return {
    problem: {
      batch: c.batch,
      heads: c.heads,
      lq: c.lq,
      lk: c.lk,
      dim: c.dim,
      scale: c.scale ?? 1 / Math.sqrt(c.dim),
      causal: c.causal ?? false,
      ...(c.kvLengths ? { kvLengths: c.kvLengths } : {}),
    },
    // q spans [-3, 3) so that softmax rows are far from uniform.
    q: round(randomArray(qSize, random, 3)),
    k: round(randomArray(kSize, random)),
    v: round(randomArray(kSize, random)),
    dout: round(randomArray(qSize, random)),
  };
}

interface OnDevice {
  q: Tensor<AttentionDType>;
  k: Tensor<AttentionDType>;
  v: Tensor<AttentionDType>;
  dout: Tensor<AttentionDType>;
  options: { scale: number; causal: boolean; kvLengths?: Tensor<'i32'> };
}

function upload(x: Inputs, dtype: AttentionDType, device: DeviceType): OnDevice {
  const { batch, heads, lq, lk, dim } = x.problem;
  const put = (a: Float32Array, seq: number): Tensor<AttentionDType> => fromArray(a, [batch, heads, seq, dim], { dtype, device });
  return {
    q: put(x.q, lq),
    k: put(x.k, lk),
    v: put(x.v, lk),
    dout: put(x.dout, lq),
    options: {
      scale: x.problem.scale,
      causal: x.problem.causal,
      ...(x.problem.kvLengths ? { kvLengths: fromArray(x.problem.kvLengths, [batch], { dtype: 'i32', device }) } : {}),
    },
  };
}

interface Results {
  out: Float32Array;
  lse: Float32Array;
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
}

function run(x: Inputs, dtype: AttentionDType, device: DeviceType): Results {
  const t = upload(x, dtype, device);
  const { out, lse } = attentionForward(t.q, t.k, t.v, t.options);
  const { dq, dk, dv } = attentionBackward(t.q, t.k, t.v, out, t.dout, lse, t.options);
  return { out: out.toArray(), lse: lse.toArray(), dq: dq.toArray(), dk: dk.toArray(), dv: dv.toArray() };
}

/** lse is -inf for rows that see no key: compare those exactly, the rest with `tol`. */
function expectLse(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance, label: string): void {
  for (let i = 0; i < expected.length; i++) {
    if (expected[i] === -Infinity) expect(actual[i], `${label}: lse[${i}] of a row that sees no key`).toBe(-Infinity);
  }
  const finite = (a: ArrayLike<number>): number[] => Array.from(a, (v, i) => (expected[i] === -Infinity ? 0 : v));
  expectClose(finite(actual), finite(expected), tol, label);
}

const f32Tolerance: Tolerance = { rtol: 2e-4, atol: 2e-5 };
const f32GradTolerance: Tolerance = { rtol: 1e-3, atol: 2e-4 };
// bf16 outputs carry 8 significant bits: half an ulp is 2^-9 relative.
const bf16Tolerance: Tolerance = { rtol: 8e-3, atol: 8e-3 };
const bf16GradTolerance: Tolerance = { rtol: 2e-2, atol: 2e-2 };

function expectMatchesReference(x: Inputs, got: Results, dtype: AttentionDType, label: string): void {
  const want = ref.attention(x.q, x.k, x.v, x.problem);
  const grads = ref.attentionBackward(x.q, x.k, x.v, x.dout, x.problem);
  const tol = dtype === 'f32' ? f32Tolerance : bf16Tolerance;
  const gradTol = dtype === 'f32' ? f32GradTolerance : bf16GradTolerance;
  expectClose(got.out, want.out, tol, `${label} out`);
  expectLse(got.lse, want.lse, f32Tolerance, `${label} lse`);
  expectClose(got.dq, grads.dq, gradTol, `${label} dq`);
  expectClose(got.dk, grads.dk, gradTol, `${label} dk`);
  expectClose(got.dv, grads.dv, gradTol, `${label} dv`);
}

// cpu: odd sizes, Lq != Lk both ways, every fast-path D and generic ones up to 256, masks.
const cpuCases: Case[] = [
  { batch: 1, heads: 1, lq: 1, lk: 1, dim: 1 },
  { batch: 2, heads: 3, lq: 17, lk: 33, dim: 17 },
  { batch: 2, heads: 2, lq: 17, lk: 33, dim: 32, causal: true },
  { batch: 1, heads: 2, lq: 33, lk: 17, dim: 32, causal: true },
  { batch: 2, heads: 1, lq: 70, lk: 129, dim: 64, kvLengths: [0, 100] },
  { batch: 3, heads: 1, lq: 65, lk: 65, dim: 64, causal: true, kvLengths: [65, 1, 40] },
  { batch: 1, heads: 2, lq: 40, lk: 71, dim: 80 },
  { batch: 1, heads: 1, lq: 31, lk: 130, dim: 128, causal: true },
  { batch: 1, heads: 1, lq: 9, lk: 12, dim: 256, scale: 0.2 },
];

// cuda-emu runs every CUDA thread as a fiber: small shapes. For bf16, D = 16, 32, ..., 128 take
// the WMMA path (forward and backward); 17 and 200 the SIMT one (as f32 always does). The WMMA
// backward's tiles: dK/dV blocks of 64 keys (32 for D > 64) walking query tiles of 32 rows, dQ
// blocks of 64 rows walking key tiles of 32. Lq 77 / Lk 150 spans several of each, with causal
// blocks that start past query tile 0 and warps that skip tiles; D 96 has whole warps of rows
// that see no key; D 80 has every edge on a tile boundary; D 112 spans several tiles unmasked.
const acceleratorCases: Case[] = [
  { batch: 1, heads: 1, lq: 1, lk: 1, dim: 16 },
  { batch: 2, heads: 2, lq: 17, lk: 33, dim: 32, causal: true },
  { batch: 1, heads: 2, lq: 33, lk: 17, dim: 64, causal: true },
  { batch: 2, heads: 1, lq: 40, lk: 64, dim: 64, kvLengths: [0, 37] },
  { batch: 1, heads: 2, lq: 77, lk: 150, dim: 64, causal: true },
  { batch: 1, heads: 1, lq: 19, lk: 23, dim: 17 },
  { batch: 2, heads: 1, lq: 21, lk: 50, dim: 48, causal: true, kvLengths: [50, 30] },
  { batch: 2, heads: 1, lq: 70, lk: 45, dim: 96, causal: true, kvLengths: [45, 20] },
  { batch: 1, heads: 1, lq: 64, lk: 96, dim: 80, causal: true },
  { batch: 2, heads: 1, lq: 130, lk: 97, dim: 112, kvLengths: [97, 58] },
  { batch: 1, heads: 1, lq: 20, lk: 40, dim: 128, causal: true },
  { batch: 1, heads: 1, lq: 9, lk: 20, dim: 200 },
];

describe('op attention', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    it(`matches the float64 reference on cpu (${dtype}): out, lse and gradients`, () => {
      const random = rng();
      for (const c of cpuCases) {
        const x = makeInputs(c, random, dtype);
        expectMatchesReference(x, run(x, dtype, 'cpu'), dtype, `cpu ${dtype} ${describeCase(c)}`);
      }
    });
  }

  it('gives zero output, lse -inf and zero gradients where no key is visible, never NaN', () => {
    // D 8 runs the SIMT kernels everywhere, D 16 the WMMA ones for bf16 on the accelerators.
    for (const dim of [8, 16]) {
      const c: Case = { batch: 2, heads: 2, lq: 5, lk: 6, dim, kvLengths: [0, 6] };
      for (const device of ['cpu', ...acceleratorBackends()] as const) {
        for (const dtype of ['f32', 'bf16'] as const) {
          const x = makeInputs(c, rng(), dtype);
          const got = run(x, dtype, device);
          const label = `${device} ${dtype} D${dim}`;
          const half = got.out.length / 2;
          expect(Array.from(got.out.subarray(0, half)).every((v) => v === 0), `${label} out of batch 0`).toBe(true);
          expect(Array.from(got.lse.subarray(0, got.lse.length / 2)).every((v) => v === -Infinity)).toBe(true);
          for (const g of [got.dq, got.dk, got.dv]) {
            expect(Array.from(g.subarray(0, g.length / 2)).every((v) => v === 0), `${label} gradients of batch 0`).toBe(true);
          }
          expectMatchesReference(x, got, dtype, `${label} kvLengths [0, 6]`);
        }
      }
    }
  });

  it('defaults the scale to 1/sqrt(dim) and attention() returns the output alone', () => {
    const c: Case = { batch: 1, heads: 2, lq: 6, lk: 9, dim: 16 };
    const x = makeInputs(c, rng(), 'f32');
    const t = upload(x, 'f32', 'cpu');
    const out = attention(t.q, t.k, t.v);
    expect(out.shape).toEqual([1, 2, 6, 16]);
    expectClose(out.toArray(), ref.attention(x.q, x.k, x.v, x.problem).out, f32Tolerance, 'default scale');
  });

  for (const device of acceleratorBackends()) {
    for (const dtype of ['f32', 'bf16'] as const) {
      it(`${device} agrees with the reference and with cpu (${dtype})`, () => {
        const random = rng();
        for (const c of acceleratorCases) {
          const x = makeInputs(c, random, dtype);
          const label = `${device} ${dtype} ${describeCase(c)}`;
          const got = run(x, dtype, device);
          expectMatchesReference(x, got, dtype, label);
          const onCpu = run(x, dtype, 'cpu');
          const tol = dtype === 'f32' ? f32Tolerance : bf16Tolerance;
          const gradTol = dtype === 'f32' ? f32GradTolerance : bf16GradTolerance;
          expectClose(got.out, onCpu.out, tol, `${label} out vs cpu`);
          expectLse(got.lse, onCpu.lse, f32Tolerance, `${label} lse vs cpu`);
          expectClose(got.dq, onCpu.dq, gradTol, `${label} dq vs cpu`);
          expectClose(got.dk, onCpu.dk, gradTol, `${label} dk vs cpu`);
          expectClose(got.dv, onCpu.dv, gradTol, `${label} dv vs cpu`);
        }
      });
    }
  }

  it('rejects bad arguments with messages that name them', () => {
    const put = (shape: number[], dtype: 'f32' | 'bf16' | 'i32' = 'f32'): Tensor =>
      fromArray(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, { dtype });
    const q = put([2, 1, 4, 8]) as Tensor<'f32'>;
    const k = put([2, 1, 9, 8]) as Tensor<'f32'>;
    const v = put([2, 1, 9, 8]) as Tensor<'f32'>;
    expect(() => attention(q, put([2, 9, 8]) as Tensor<'f32'>, v)).toThrow('attention: k has 3 dims, expected 4 [batch, heads, seq, dim]');
    expect(() => attention(q, k, put([2, 1, 7, 8]) as Tensor<'f32'>)).toThrow('attention: v has seq 7, expected 9 like k');
    expect(() => attention(q, put([2, 2, 9, 8]) as Tensor<'f32'>, v)).toThrow('attention: k has heads 2, expected 1 like q');
    expect(() => attention(q, put([2, 1, 9, 4]) as Tensor<'f32'>, v)).toThrow('attention: k has dim 4, expected 8 like q');
    expect(() => attention(q, put([2, 1, 9, 8], 'bf16') as Tensor<'f32'>, v)).toThrow('attention: k has dtype bf16, expected f32 like q');
    expect(() => attention(put([2, 1, 4, 8], 'i32') as Tensor<'f32'>, k, v)).toThrow('attention: q has dtype i32, expected f32 or bf16');
    const wide = [1, 1, 2, 257];
    expect(() => attention(put(wide) as Tensor<'f32'>, put(wide) as Tensor<'f32'>, put(wide) as Tensor<'f32'>)).toThrow(
      'attention: q has head dim 257, expected 1..256',
    );
    expect(() => attention(q, k, v, { kvLengths: fromArray([1, 2], [2]) as never })).toThrow('attention: kvLengths has dtype f32, expected i32');
    expect(() => attention(q, k, v, { kvLengths: fromArray([1, 2, 3], [3], { dtype: 'i32' }) })).toThrow(
      'attention: kvLengths has shape [3], expected [2]',
    );
    expect(() => attention(q, k, v, { kvLengths: fromArray([3, 10], [2], { dtype: 'i32' }) })).toThrow(
      'attention: kvLengths[1] is 10, expected 0..9 (the key count)',
    );
    expect(() => attention(q, k, v, { kvLengths: fromArray([-1, 1], [2], { dtype: 'i32' }) })).toThrow('attention: kvLengths[0] is -1');
    expect(() => attention(q, k, v, { scale: Number.POSITIVE_INFINITY })).toThrow('attention: scale must be finite');
    expect(() => attention(q, k, v, { causal: 1 as never })).toThrow('attention: causal must be a boolean');
  });
});

describe('op attention_backward', () => {
  it('native gradients match central finite differences of the float64 reference', () => {
    const random = rng();
    const cases: Case[] = [
      { batch: 1, heads: 2, lq: 5, lk: 7, dim: 3, causal: true },
      { batch: 2, heads: 1, lq: 6, lk: 4, dim: 5, kvLengths: [3, 4] },
      { batch: 1, heads: 1, lq: 4, lk: 9, dim: 64, causal: true },
    ];
    for (const c of cases) {
      const x = makeInputs(c, random, 'f32');
      const got = run(x, 'f32', 'cpu');
      const q = toF64(x.q);
      const k = toF64(x.k);
      const v = toF64(x.v);
      const forward = (): Float64Array => ref.attention(q, k, v, x.problem).out;
      const label = `finite differences ${describeCase(c)}`;
      expectClose(got.dq, numericGradient(forward, q, x.dout), f32GradTolerance, `${label} dq`);
      expectClose(got.dk, numericGradient(forward, k, x.dout), f32GradTolerance, `${label} dk`);
      expectClose(got.dv, numericGradient(forward, v, x.dout), f32GradTolerance, `${label} dv`);
    }
  });

  it('splits the key tiles of few heads over the cpu threads (dQ summed over the groups)', () => {
    // One head of 5 key tiles: 1, 2 and 3 threads give 2, 4 and 5 groups of key tiles.
    const c: Case = { batch: 1, heads: 1, lq: 70, lk: 300, dim: 32, causal: true };
    const masked: Case = { ...c, causal: false, kvLengths: [100] };  // groups past key 100 only zero dK, dV
    const before = native.info().threads;
    try {
      for (const threads of [1, 2, 3]) {
        native.setNumThreads(threads);
        for (const dtype of ['f32', 'bf16'] as const) {
          for (const k of [c, masked]) {
            const x = makeInputs(k, rng(), dtype);
            expectMatchesReference(x, run(x, dtype, 'cpu'), dtype, `${threads} threads ${dtype} ${describeCase(k)}`);
          }
        }
      }
    } finally {
      native.setNumThreads(before);
    }
  });

  it.runIf(acceleratorBackends().includes('cuda-emu'))('cuda-emu runs bf16 D 64 on the WMMA kernels and f32 on the SIMT ones', () => {
    const kernels = ['attention_bwd_delta', 'attention_bwd_dq_wmma', 'attention_bwd_dkdv_wmma', 'attention_bwd_dq', 'attention_bwd_dkdv'];
    const c: Case = { batch: 1, heads: 2, lq: 20, lk: 24, dim: 64, causal: true };
    const launchesOfBackward = (dtype: AttentionDType): Record<string, number> => {
      const t = upload(makeInputs(c, rng(), dtype), dtype, 'cuda-emu');
      const { out, lse } = attentionForward(t.q, t.k, t.v, t.options);
      const before = devNative().emuLaunchCounts();
      attentionBackward(t.q, t.k, t.v, out, t.dout, lse, t.options);
      const after = devNative().emuLaunchCounts();
      return Object.fromEntries(kernels.map((name) => [name, (after[name] ?? 0) - (before[name] ?? 0)]));
    };
    expect(launchesOfBackward('bf16')).toEqual({
      attention_bwd_delta: 1,
      attention_bwd_dq_wmma: 1,
      attention_bwd_dkdv_wmma: 1,
      attention_bwd_dq: 0,
      attention_bwd_dkdv: 0,
    });
    expect(launchesOfBackward('f32')).toEqual({
      attention_bwd_delta: 0,
      attention_bwd_dq_wmma: 0,
      attention_bwd_dkdv_wmma: 0,
      attention_bwd_dq: 1,
      attention_bwd_dkdv: 1,
    });
  });

  it.runIf(acceleratorBackends().includes('cuda-emu'))('bf16 views at an odd element offset take the SIMT kernels and agree with cpu', () => {
    const c: Case = { batch: 1, heads: 2, lq: 9, lk: 12, dim: 32, causal: true };
    const x = makeInputs(c, rng(), 'bf16');
    // Each tensor is the tail of a buffer one element longer: 2 bytes past a 16-byte boundary.
    const misaligned = (a: Float32Array, seq: number): Tensor<'bf16'> =>
      fromArray(Float32Array.from([0, ...a]), [a.length + 1], { dtype: 'bf16', device: 'cuda-emu' })
        .slice(1)
        .reshape([c.batch, c.heads, seq, c.dim]);
    const [q, k, v, dout] = [misaligned(x.q, c.lq), misaligned(x.k, c.lk), misaligned(x.v, c.lk), misaligned(x.dout, c.lq)];
    const options = { scale: x.problem.scale, causal: true };
    const before = devNative().emuLaunchCounts();
    const { out, lse } = attentionForward(q, k, v, options);
    const { dq, dk, dv } = attentionBackward(q, k, v, out, dout, lse, options);
    const after = devNative().emuLaunchCounts();
    const launched = (name: string): number => (after[name] ?? 0) - (before[name] ?? 0);
    expect([launched('attention_fwd_wmma'), launched('attention_bwd_dq_wmma'), launched('attention_bwd_dq')]).toEqual([0, 0, 1]);
    const got = { out: out.toArray(), lse: lse.toArray(), dq: dq.toArray(), dk: dk.toArray(), dv: dv.toArray() };
    expectMatchesReference(x, got, 'bf16', 'misaligned bf16 views');
  });

  it('rejects bad arguments with messages that name them', () => {
    const shape = [1, 2, 3, 4];
    const t = fromArray(new Float32Array(24), shape);
    const lse = fromArray(new Float32Array(6), [1, 2, 3]);
    expect(() => attentionBackward(t, t, t, t, fromArray(new Float32Array(24), [1, 2, 4, 3]), lse)).toThrow(
      'attentionBackward: dout has shape [1, 2, 4, 3], expected [1, 2, 3, 4]',
    );
    expect(() => attentionBackward(t, t, t, t, t, fromArray(new Float32Array(6), [2, 3]))).toThrow(
      'attentionBackward: lse has shape [2, 3], expected [1, 2, 3]',
    );
    expect(() => attentionBackward(t, t, t, fromArray(new Float32Array(24), shape, { dtype: 'bf16' }) as never, t, lse)).toThrow(
      'attentionBackward: out has dtype bf16, expected f32 like q',
    );
  });
});
