// Attention benchmark on the cpu backend (measured, never asserted):
//   - forward and forward+backward at B=4 H=8 L=256 D=64 (f32), median of several runs, as
//     GFLOP/s and as a ratio against unfused PyTorch CPU (matmul, softmax, matmul and autograd)
//     measured in the same run with the same thread count (bench/peers/attention_torch.py, run
//     by Debian's /usr/bin/python3 when python3-torch is installed);
//   - peak memory of one forward+backward at B=1 H=1 L=4096 D=64, measured in a child process
//     as the growth of its peak RSS, against one L x L f32 score matrix (64 MiB) and PyTorch's.
// Run: node --import tsx bench/kernels_attention.ts [--iters N] [--json out.json] [--no-peer]
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { attentionBackward, attentionForward } from '../lib/ops/attention.js';
import { info } from '../lib/info.js';
import { fromArray, type Tensor } from '../lib/tensor.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const peerScript = path.join(here, 'peers', 'attention_torch.py');
const peerPython = '/usr/bin/python3';

interface Shape {
  batch: number;
  heads: number;
  seq: number;
  dim: number;
}

export interface AttentionBenchResult {
  machine: { threads: number; isa: string };
  shape: Shape;
  flop: { forward: number; forwardBackward: number };
  ours: { forwardMs: number; forwardBackwardMs: number; forwardGflops: number; forwardBackwardGflops: number };
  peer?: { name: string; forwardMs: number; forwardBackwardMs: number; speedupForward: number; speedupForwardBackward: number };
  peerSkipped?: string;
  memory: { shape: Shape; scoreMatrixBytes: number; oursPeakGrowthBytes: number; peerPeakGrowthBytes?: number };
}

function randomTensor(shape: Shape, seed: number): Tensor<'f32'> {
  const n = shape.batch * shape.heads * shape.seq * shape.dim;
  const data = new Float32Array(n);
  let state = seed >>> 0;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = state / 2 ** 31 - 1;
  }
  return fromArray(data, [shape.batch, shape.heads, shape.seq, shape.dim]);
}

function inputs(shape: Shape): Tensor<'f32'>[] {
  return [1, 2, 3, 4].map((seed) => randomTensor(shape, seed));
}

function forwardBackward(q: Tensor<'f32'>, k: Tensor<'f32'>, v: Tensor<'f32'>, dout: Tensor<'f32'>): void {
  const { out, lse } = attentionForward(q, k, v);
  const { dq, dk, dv } = attentionBackward(q, k, v, out, dout, lse);
  for (const t of [out, lse, dq, dk, dv]) t.dispose();
}

function medianMs(fn: () => void, iters: number, warmup: number): number {
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  for (let i = 0; i < iters; i++) {
    const start = performance.now();
    fn();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

function runPeer(args: string[]): Record<string, number> | string {
  if (!existsSync(peerPython)) return `${peerPython} not found`;
  const result = spawnSync(peerPython, [peerScript, ...args], { encoding: 'utf8' });
  if (result.status !== 0) return `peer failed: ${(result.stderr || result.stdout).trim().split('\n').pop()}`;
  return JSON.parse(result.stdout.trim().split('\n').pop()!) as Record<string, number>;
}

function statusBytes(field: string): number {
  const line = readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  if (line === undefined) throw new Error(`${field} not in /proc/self/status`);
  return Number(line.split(/\s+/)[1]) * 1024;
}

/** In the child: peak RSS growth over one forward+backward, inputs already allocated. */
function measureMemoryInChild(shape: Shape): void {
  const [q, k, v, dout] = inputs(shape) as [Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>];
  const small = inputs({ ...shape, seq: 8 }) as [Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>];
  forwardBackward(...small);  // thread pool and code pages in place before the baseline
  writeFileSync('/proc/self/clear_refs', '5');  // peak RSS := current RSS
  const before = statusBytes('VmRSS');
  forwardBackward(q, k, v, dout);
  process.stdout.write(`${JSON.stringify({ peakGrowthBytes: statusBytes('VmHWM') - before })}\n`);
}

function measureMemory(shape: Shape): number {
  const self = fileURLToPath(import.meta.url);
  const result = spawnSync(process.execPath, ['--import', 'tsx', self, '--memory-child', String(shape.seq)], {
    encoding: 'utf8',
    env: process.env,
  });
  if (result.status !== 0) throw new Error(`memory child failed: ${result.stderr}`);
  return (JSON.parse(result.stdout.trim().split('\n').pop()!) as { peakGrowthBytes: number }).peakGrowthBytes;
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

export function run(args: string[]): AttentionBenchResult {
  const flag = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const iters = Number(flag('--iters') ?? 10);
  const { threads, isa } = info();
  const shape: Shape = { batch: 4, heads: 8, seq: 256, dim: 64 };
  const perMatmul = 2 * shape.batch * shape.heads * shape.seq * shape.seq * shape.dim;
  const flop = { forward: 2 * perMatmul, forwardBackward: 7 * perMatmul };

  const [q, k, v, dout] = inputs(shape) as [Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>];
  const forwardMs = medianMs(() => {
    const { out, lse } = attentionForward(q, k, v);
    out.dispose();
    lse.dispose();
  }, iters, 2);
  const forwardBackwardMs = medianMs(() => forwardBackward(q, k, v, dout), iters, 2);
  const gflops = (f: number, ms: number): number => f / (ms * 1e6);
  const result: AttentionBenchResult = {
    machine: { threads, isa },
    shape,
    flop,
    ours: {
      forwardMs,
      forwardBackwardMs,
      forwardGflops: gflops(flop.forward, forwardMs),
      forwardBackwardGflops: gflops(flop.forwardBackward, forwardBackwardMs),
    },
    memory: { shape: { batch: 1, heads: 1, seq: 4096, dim: 64 }, scoreMatrixBytes: 4096 * 4096 * 4, oursPeakGrowthBytes: 0 },
  };

  const shapeArgs = ['--batch', '--heads', '--seq', '--dim'];
  const shapeValues = (s: Shape): string[] => shapeArgs.flatMap((a, i) => [a, String([s.batch, s.heads, s.seq, s.dim][i])]);
  if (args.includes('--no-peer')) {
    result.peerSkipped = '--no-peer';
  } else {
    const peer = runPeer([...shapeValues(shape), '--threads', String(threads), '--iters', String(iters)]);
    if (typeof peer === 'string') {
      result.peerSkipped = peer;
    } else {
      result.peer = {
        name: `torch ${String(peer.version)} (unfused, autograd)`,
        forwardMs: peer.forward_ms!,
        forwardBackwardMs: peer.forward_backward_ms!,
        speedupForward: peer.forward_ms! / forwardMs,
        speedupForwardBackward: peer.forward_backward_ms! / forwardBackwardMs,
      };
      const memoryPeer = runPeer([...shapeValues(result.memory.shape), '--threads', String(threads), '--memory']);
      if (typeof memoryPeer !== 'string') result.memory.peerPeakGrowthBytes = memoryPeer.peak_rss_growth_bytes!;
    }
  }
  result.memory.oursPeakGrowthBytes = measureMemory(result.memory.shape);

  const s = shape;
  console.log(`attention on cpu (${threads} threads, ${isa}), f32, B=${s.batch} H=${s.heads} L=${s.seq} D=${s.dim}, median of ${iters}`);
  const rows: string[][] = [['', 'ms', 'GFLOP/s', ...(result.peer ? ['torch ms', 'speedup'] : [])]];
  rows.push([
    'forward',
    forwardMs.toFixed(2),
    result.ours.forwardGflops.toFixed(1),
    ...(result.peer ? [result.peer.forwardMs.toFixed(2), `${result.peer.speedupForward.toFixed(2)}x`] : []),
  ]);
  rows.push([
    'forward+backward',
    forwardBackwardMs.toFixed(2),
    result.ours.forwardBackwardGflops.toFixed(1),
    ...(result.peer ? [result.peer.forwardBackwardMs.toFixed(2), `${result.peer.speedupForwardBackward.toFixed(2)}x`] : []),
  ]);
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(18) : c.padStart(10))).join(''));
  if (result.peerSkipped) console.log(`peer skipped: ${result.peerSkipped}`);
  const m = result.memory;
  console.log(
    `peak RSS growth, forward+backward at L=${m.shape.seq} D=${m.shape.dim}: ours ${mib(m.oursPeakGrowthBytes)}` +
      (m.peerPeakGrowthBytes !== undefined ? `, torch ${mib(m.peerPeakGrowthBytes)}` : '') +
      ` (one L x L f32 matrix: ${mib(m.scoreMatrixBytes)})`,
  );
  const json = flag('--json');
  if (json) writeFileSync(json, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result));
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const child = args.indexOf('--memory-child');
  if (child >= 0) measureMemoryInChild({ batch: 1, heads: 1, seq: Number(args[child + 1]), dim: 64 });
  else run(args);
}
