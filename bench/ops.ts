// The ops benchmark (cpu backend): each case's median time, GFLOP/s or GB/s and its fraction of
// the machine's peak measured in the same run (FMA FLOP/s for GEMM, copy-loop bandwidth for
// memory-bound ops); OpenBLAS cblas_sgemm as the GEMM peer at the same thread count; the 2-thread
// GEMM speedup; and the per-call overhead of a tiny op.
//   npm run bench -- ops [--json FILE] [--quick] [--filter TEXT]
// Cases live in the `opCases` registry below; a case whose op is missing from the native op table
// (or whose TS function is missing) is listed as skipped. Add one with addOpCase().
import { native } from '../lib/native.js';
import { devNative, type DevModule } from '../lib/native_dev.js';
import { tidy } from '../lib/scope.js';
import { empty, fromArray, type Tensor } from '../lib/tensor.js';
import { matmul } from '../lib/ops/matmul.js';
import { scale } from '../lib/ops/elementwise.js';
import * as h from './harness.js';

export interface Prepared {
  /** The timed call; tensors it allocates and does not keep are freed per call by the runner. */
  call(): void;
  /** The same computation by a peer library, timed right after ours with the same threads. */
  peer?: { name: string; call(): void };
  dispose(): void;
}

export interface OpCase {
  /** Row label, e.g. 'matmul f32'. */
  name: string;
  /** The native op-table entry the case needs (see csrc/ops.h); skipped when not built. */
  op: string;
  shape: string;
  /** cpu threads for this case; default: the pool's count. */
  threads?: number;
  /** FLOP per call: reported as GFLOP/s and as a fraction of the measured FMA peak. */
  flops?: number;
  /** Minimum bytes moved per call: reported as GB/s and as a fraction of copy bandwidth. */
  bytes?: number;
  /** Builds the inputs; null when the TS function is not there (the case is skipped). */
  setup(): Promise<Prepared | null>;
}

export const opCases: OpCase[] = [];

export function addOpCase(c: OpCase): void {
  opCases.push(c);
}

/** A lib/ops function by module and name, or null when either is missing. */
export async function libFunction<F>(module: string, name: string): Promise<F | null> {
  try {
    const mod = (await import(`../lib/ops/${module}.js`)) as Record<string, unknown>;
    const fn = mod[name];
    return typeof fn === 'function' ? (fn as F) : null;
  } catch {
    return null;
  }
}

/** A tensor of uniform values in [-1, 1) from a small LCG (fast for 16M elements). */
export function randomTensor(shape: readonly number[], dtype: 'f32' | 'bf16' = 'f32', seed = 1): Tensor<'f32' | 'bf16'> {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let state = seed >>> 0;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = state / 2 ** 31 - 1;
  }
  return fromArray(data, shape, { dtype });
}

function disposeAll(...tensors: Tensor[]): void {
  for (const t of tensors) t.dispose();
}

// Loaded in run() after the machine's peaks are measured: OpenBLAS starts its worker threads as it
// loads and they spin for a while, which made a 2-thread FMA peak measured then come out as one.
let openblas: ReturnType<DevModule['openblasInfo']> = { loaded: false };

interface GemmShape {
  batch?: number;
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
  dtype?: 'f32' | 'bf16';
  threads?: number;
  note?: string;
}

function gemmCase(s: GemmShape): OpCase {
  const { batch, m, n, k, transA = false, transB = false, dtype = 'f32' } = s;
  const b = batch ?? 1;
  const dims = `${batch !== undefined ? `${batch}x` : ''}${m}x${n}x${k}`;
  const trans = `${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`;
  return {
    name: `matmul ${dtype}${s.note ? ` (${s.note})` : ''}`,
    op: 'matmul',
    shape: `${dims} ${trans}`,
    threads: s.threads,
    flops: 2 * b * m * n * k,
    bytes: b * (m * k + k * n + m * n) * 4,
    async setup() {
      const shapeOf = (rows: number, cols: number): number[] => (batch !== undefined ? [batch, rows, cols] : [rows, cols]);
      const a = randomTensor(transA ? shapeOf(k, m) : shapeOf(m, k), dtype, 1);
      const bt = randomTensor(transB ? shapeOf(n, k) : shapeOf(k, n), dtype, 2);
      const out = empty(shapeOf(m, n)) as Tensor<'f32'>;
      const prepared: Prepared = {
        call: () => void matmul(a, bt, { transA, transB, out }),
        dispose: () => disposeAll(a, bt, out),
      };
      if (dtype === 'f32' && openblas.loaded) {
        // One matrix per call, as a loop of cblas_sgemm calls for a batch.
        const slices = Array.from({ length: b }, (_, z) => ({
          a: randomTensor([m * k], 'f32', 3 + z),
          b: randomTensor([k * n], 'f32', 1000 + z),
          c: empty([m * n]),
        }));
        const dev = devNative();
        prepared.peer = {
          name: 'OpenBLAS',
          call: () => {
            for (const t of slices) dev.openblasSgemm(t.a.handle, t.b.handle, t.c.handle, transA, transB, m, n, k, 1, 0);
          },
        };
        prepared.dispose = () => {
          disposeAll(a, bt, out);
          for (const t of slices) disposeAll(t.a, t.b, t.c);
        };
      }
      return prepared;
    },
  };
}

/** A memory-bound case over `n` f32 elements moving `bytesPerElement` bytes each. */
function streamCase(
  name: string,
  op: string,
  shape: readonly number[],
  bytesPerElement: number,
  build: (x: Tensor<'f32'>) => Promise<((x: Tensor<'f32'>) => void) | null>,
): OpCase {
  const n = shape.reduce((a, b) => a * b, 1);
  return {
    name,
    op,
    shape: shape.join('x'),
    bytes: n * bytesPerElement,
    async setup() {
      const x = randomTensor(shape) as Tensor<'f32'>;
      const fn = await build(x);
      if (fn === null) {
        x.dispose();
        return null;
      }
      return { call: () => fn(x), dispose: () => x.dispose() };
    },
  };
}

type Unary = (x: Tensor<'f32'>) => Tensor;
type Binary = (a: Tensor<'f32'>, b: Tensor<'f32'>) => Tensor;

const M16 = 16 << 20;

// GEMM: the 1024^3 pair (1 and all threads) is what the speedup and OpenBLAS ratios use.
addOpCase(gemmCase({ m: 1024, n: 1024, k: 1024, threads: 1 }));
addOpCase(gemmCase({ m: 1024, n: 1024, k: 1024 }));
addOpCase(gemmCase({ m: 256, n: 1536, k: 384, transB: true, note: 'linear up, x W^T' }));
addOpCase(gemmCase({ m: 256, n: 384, k: 1536, transB: true, note: 'linear down, x W^T' }));
addOpCase(gemmCase({ m: 384, n: 1536, k: 256, transA: true, note: 'weight grad, dY^T X' }));
addOpCase(gemmCase({ batch: 32, m: 64, n: 64, k: 64, note: 'batched heads' }));
addOpCase(gemmCase({ m: 1024, n: 1024, k: 1024, dtype: 'bf16' }));

// Memory-bound ops: 16 M elements (64 MB per f32 tensor).
addOpCase(streamCase('scale', 'scale', [M16], 8, async () => (x) => void scale(x, 1.5, { out: x })));
addOpCase({
  name: 'add',
  op: 'binary',
  shape: String(M16),
  bytes: M16 * 12,
  async setup() {
    const add = await libFunction<(a: Tensor<'f32'>, b: Tensor<'f32'>, o: { out?: Tensor<'f32'> }) => Tensor>('elementwise', 'add');
    if (add === null) return null;
    const a = randomTensor([M16], 'f32', 1) as Tensor<'f32'>;
    const b = randomTensor([M16], 'f32', 2) as Tensor<'f32'>;
    return { call: () => void add(a, b, { out: a }), dispose: () => disposeAll(a, b) };
  },
});
for (const [name, fn] of [
  ['gelu', 'gelu'],
  ['silu', 'silu'],
] as const) {
  addOpCase(
    streamCase(name, 'activation', [M16], 8, async () => {
      const f = await libFunction<Unary>('activation', fn);
      return f && ((t) => void f(t));
    }),
  );
}
addOpCase(
  streamCase('softmax', 'softmax', [16384, 1024], 8, async () => {
    const f = await libFunction<Unary>('softmax', 'softmax');
    return f && ((t) => void f(t));
  }),
);
addOpCase(
  streamCase('layernorm', 'layernorm', [16384, 1024], 8, async () => {
    const f = await libFunction<(x: Tensor<'f32'>) => unknown>('layernorm', 'layerNorm');
    return f && ((t) => void f(t));
  }),
);
addOpCase(
  streamCase('sum (all axes)', 'reduce', [M16], 4, async () => {
    const f = await libFunction<Unary>('reduce', 'sum');
    return f && ((t) => void f(t));
  }),
);
addOpCase(
  streamCase('cast f32->bf16', 'cast', [M16], 6, async () => {
    const f = await libFunction<(x: Tensor, dtype: 'bf16') => Tensor>('cast', 'cast');
    return f && ((t) => void f(t, 'bf16'));
  }),
);
addOpCase(
  streamCase('transpose (1, 2)', 'permute', [64, 512, 512], 8, async () => {
    const f = await libFunction<(x: Tensor, d0: number, d1: number) => Tensor>('permute', 'transpose');
    return f && ((t) => void f(t, 1, 2));
  }),
);
addOpCase({
  name: 'adamw step',
  op: 'adamw',
  shape: String(4 << 20),
  bytes: (4 << 20) * 28,
  async setup() {
    type Step = (p: Tensor<'f32'>, g: Tensor<'f32'>, m: Tensor<'f32'>, v: Tensor<'f32'>, o: { lr: number; step: number }) => void;
    const step = await libFunction<Step>('optim', 'adamwStep');
    if (step === null) return null;
    const [p, g, m, v] = [1, 2, 3, 4].map((seed) => randomTensor([4 << 20], 'f32', seed) as Tensor<'f32'>) as [
      Tensor<'f32'>,
      Tensor<'f32'>,
      Tensor<'f32'>,
      Tensor<'f32'>,
    ];
    native.scale(v.handle, 0, v.handle);
    return { call: () => step(p, g, m, v, { lr: 1e-4, step: 1 }), dispose: () => disposeAll(p, g, m, v) };
  },
});

export interface CaseResult {
  name: string;
  op: string;
  shape: string;
  threads: number;
  medianMs: number;
  gflops?: number;
  gbps?: number;
  /** Of the FMA peak (flops cases) or of copy-loop bandwidth (memory-bound cases), same threads. */
  fractionOfPeak?: number;
  peer?: { name: string; medianMs: number; gflops?: number; speedRatio: number };
}

export interface OpsResult {
  command: string;
  machine: h.MachineInfo;
  peaks: h.Peaks;
  openblas: ReturnType<DevModule['openblasInfo']>;
  cases: CaseResult[];
  skipped: { name: string; reason: string }[];
  summary: Record<string, number | string | undefined>;
}

function measureCallOverhead(runs: number): { tsMicros: number; nativeMicros: number } {
  const x = fromArray(new Float32Array(16));
  const calls = 100_000;
  const ts = h.time(
    () => {
      for (let i = 0; i < calls; i++) scale(x, 1, { out: x });
    },
    { warmup: 1, runs, minRunSeconds: 0 },
  );
  const handle = x.handle;
  const raw = h.time(
    () => {
      for (let i = 0; i < calls; i++) native.scale(handle, 1, handle);
    },
    { warmup: 1, runs, minRunSeconds: 0 },
  );
  x.dispose();
  return { tsMicros: (ts.median / calls) * 1e6, nativeMicros: (raw.median / calls) * 1e6 };
}

export async function run(args: string[]): Promise<OpsResult> {
  const quick = args.includes('--quick');
  const filter = h.flagValue(args, '--filter');
  const runs = quick ? 3 : 7;
  const threads = native.info().threads;
  const table = native.opTable();
  const machine = h.machineInfo();
  console.log(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGB} GB, isa ${machine.isa}, node ${machine.node}`);
  console.log(`load average at start: ${machine.loadAverage.join(' ')} (other work on these cores skews every number)`);

  const threadCounts = [...new Set([1, threads])];
  const peaks = h.measurePeaks(threadCounts);
  console.log(`clock ${h.fmt(peaks.clockGHz)} GHz (dependent integer-add chain, one thread)`);
  for (const t of threadCounts) {
    const copy = peaks.copy[t]!;
    console.log(
      `${t} thread(s): FMA peak ${h.fmt(peaks.flops[t]! / 1e9)} GFLOP/s (${h.fmt(peaks.flops[t]! / t / 1e9 / peaks.clockGHz)} FLOP/cycle/core), ` +
        `copy ${h.fmt(copy.loop / 1e9)} GB/s (loop), ${h.fmt(copy.memcpy / 1e9)} GB/s (memcpy), ${peaks.copyBufferBytes >> 20} MB buffers`,
    );
  }
  openblas = devNative().openblasInfo();
  if (openblas.loaded) devNative().openblasSetThreads(1);
  if (openblas.loaded) console.log(`OpenBLAS: ${openblas.path}, core ${openblas.corename ?? '?'} (${openblas.config ?? ''})`);
  else console.log(`OpenBLAS not found, GEMM peer ratios skipped (${openblas.error ?? ''})`);

  const cases: CaseResult[] = [];
  const skipped: { name: string; reason: string }[] = [];
  for (const c of opCases) {
    const label = `${c.name} ${c.shape}`;
    if (filter !== undefined && !label.includes(filter)) continue;
    if (table[c.op] === undefined || !table[c.op]!.includes('cpu')) {
      skipped.push({ name: label, reason: `op ${c.op} is not in this build's cpu op table` });
      continue;
    }
    const prepared = await c.setup();
    if (prepared === null) {
      skipped.push({ name: label, reason: 'its TS function is missing' });
      continue;
    }
    const caseThreads = c.threads ?? threads;
    const timing = h.withThreads(caseThreads, () => h.time(() => tidy(() => prepared.call()), { runs }));
    const result: CaseResult = { name: c.name, op: c.op, shape: c.shape, threads: caseThreads, medianMs: timing.median * 1e3 };
    if (c.flops !== undefined) {
      result.gflops = c.flops / timing.median / 1e9;
      result.fractionOfPeak = c.flops / timing.median / peaks.flops[caseThreads]!;
    }
    if (c.bytes !== undefined) {
      result.gbps = c.bytes / timing.median / 1e9;
      if (c.flops === undefined) result.fractionOfPeak = c.bytes / timing.median / peaks.copy[caseThreads]!.loop;
    }
    if (prepared.peer) {
      devNative().openblasSetThreads(caseThreads);
      const peer = h.time(prepared.peer.call, { runs });
      devNative().openblasSetThreads(1);
      // OpenBLAS's idle workers keep spinning for a while after a call (about 2^28 cycles, its
      // THREAD_TIMEOUT) whatever the thread count is set to; a 2-thread case of ours started
      // then shares a core with one and runs at half speed. Wait until they sleep.
      h.sleepMs(400);
      result.peer = {
        name: prepared.peer.name,
        medianMs: peer.median * 1e3,
        gflops: c.flops !== undefined ? c.flops / peer.median / 1e9 : undefined,
        speedRatio: peer.median / timing.median,
      };
    }
    prepared.dispose();
    cases.push(result);
  }

  h.printTable(
    ['op', 'shape', 'thr', 'median ms', 'GFLOP/s', 'GB/s', 'of peak', 'peer', 'peer GFLOP/s', 'ours/peer speed'],
    cases.map((r) => [
      r.name,
      r.shape,
      r.threads,
      h.fmt(r.medianMs),
      h.fmt(r.gflops),
      h.fmt(r.gbps),
      h.fmtPercent(r.fractionOfPeak),
      r.peer?.name,
      h.fmt(r.peer?.gflops),
      h.fmt(r.peer?.speedRatio),
    ]),
  );
  for (const s of skipped) console.log(`skipped: ${s.name}: ${s.reason}`);

  const overhead = measureCallOverhead(quick ? 3 : 5);
  const gemm1024 = (t: number): CaseResult | undefined =>
    cases.find((r) => r.op === 'matmul' && r.name === 'matmul f32' && r.shape === '1024x1024x1024 NN' && r.threads === t);
  const one = gemm1024(1);
  const all = threads > 1 ? gemm1024(threads) : undefined;
  const summary: OpsResult['summary'] = {
    'matmul 1024^3 f32, 1 thread, ours/OpenBLAS speed (target >= 0.85)': one?.peer?.speedRatio,
    [`matmul 1024^3 f32, ${threads} threads, ours/OpenBLAS speed`]: all?.peer?.speedRatio,
    [`matmul 1024^3 f32, ${threads}-thread speedup over 1 (target >= 1.7 at 2)`]: one && all ? one.medianMs / all.medianMs : undefined,
    'scale call overhead via TS, us/call (target <= 2)': overhead.tsMicros,
    'scale call overhead via the raw binding, us/call': overhead.nativeMicros,
  };
  console.log('');
  for (const [k, v] of Object.entries(summary)) console.log(`${k}: ${typeof v === 'number' ? h.fmt(v) : (v ?? 'n/a')}`);
  return {
    command: `npm run bench -- ops ${args.join(' ')}`.trim(),
    machine,
    peaks,
    openblas,
    cases,
    skipped,
    summary,
  };
}
