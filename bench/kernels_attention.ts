// Attention benchmark on the cpu backend (measured, never asserted):
//   - forward and forward+backward at B=4 H=8 L=256 D=64 (f32), median of several runs, as
//     GFLOP/s and as a ratio against unfused PyTorch CPU (matmul, softmax, matmul and autograd)
//     measured in the same run with the same thread count (bench/peers/attention_torch.py, run
//     by Debian's /usr/bin/python3 when python3-torch is installed);
//   - peak memory of one forward+backward at B=1 H=1 L=4096 D=64, measured in a child process
//     as the growth of its peak RSS, against one L x L f32 score matrix (64 MiB) and PyTorch's.
// Run: npm run bench -- kernels_attention [--runs N] [--json FILE] [--no-peer]
//   or node --import tsx bench/kernels_attention.ts [...]
// `cases()` returns the forward and forward+backward timings as OpCase entries for bench/ops.ts
// (without the peer, which runs in another process).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { attentionBackward, attentionForward } from '../lib/ops/attention.js';
import { fromArray, type Tensor } from '../lib/tensor.js';
import * as h from './harness.js';
import type { OpCase } from './ops.js';

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
  machine: h.MachineInfo;
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

const benchShape: Shape = { batch: 4, heads: 8, seq: 256, dim: 64 };
const perMatmul = 2 * benchShape.batch * benchShape.heads * benchShape.seq * benchShape.seq * benchShape.dim;
// Forward: Q K^T and P V. Backward: S recomputed, dV, dP, dQ, dK.
const flop = { forward: 2 * perMatmul, forwardBackward: 7 * perMatmul };

function forwardOnly(q: Tensor<'f32'>, k: Tensor<'f32'>, v: Tensor<'f32'>): void {
  const { out, lse } = attentionForward(q, k, v);
  out.dispose();
  lse.dispose();
}

/** Forward and forward+backward at B=4 H=8 L=256 D=64 as cases for bench/ops.ts. */
export function cases(): OpCase[] {
  const s = benchShape;
  const shape = `q, k, v [${s.batch}, ${s.heads}, ${s.seq}, ${s.dim}] f32`;
  const setup = (withBackward: boolean) => async () => {
    const [q, k, v, dout] = inputs(s) as [Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>];
    return {
      call: withBackward ? () => forwardBackward(q, k, v, dout) : () => forwardOnly(q, k, v),
      dispose: () => [q, k, v, dout].forEach((t) => t.dispose()),
    };
  };
  return [
    { name: 'attention forward', op: 'attention', shape, flops: flop.forward, setup: setup(false) },
    { name: 'attention forward+backward', op: 'attention_backward', shape, flops: flop.forwardBackward, setup: setup(true) },
  ];
}

export function run(args: string[]): AttentionBenchResult {
  const runs = Number(h.flagValue(args, '--runs') ?? 7);
  const machine = h.machineInfo();
  const threads = machine.threads;
  const shape = benchShape;

  const [q, k, v, dout] = inputs(shape) as [Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>];
  const forwardMs = h.time(() => forwardOnly(q, k, v), { runs }).median * 1e3;
  const forwardBackwardMs = h.time(() => forwardBackward(q, k, v, dout), { runs }).median * 1e3;
  for (const t of [q, k, v, dout]) t.dispose();
  const gflops = (f: number, ms: number): number => f / (ms * 1e6);
  const result: AttentionBenchResult = {
    machine,
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
    const peer = runPeer([...shapeValues(shape), '--threads', String(threads), '--iters', String(runs)]);
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
  console.log(
    `attention on cpu (${threads} threads, ${machine.isa}, load average ${machine.loadAverage.join(' ')}), f32, ` +
      `B=${s.batch} H=${s.heads} L=${s.seq} D=${s.dim}, median of ${runs}`,
  );
  const peer = result.peer;
  h.printTable(
    ['', 'ms', 'GFLOP/s', 'torch ms', 'ours/torch speed'],
    [
      ['forward', h.fmt(forwardMs), h.fmt(result.ours.forwardGflops), h.fmt(peer?.forwardMs), h.fmt(peer?.speedupForward)],
      ['forward+backward', h.fmt(forwardBackwardMs), h.fmt(result.ours.forwardBackwardGflops), h.fmt(peer?.forwardBackwardMs), h.fmt(peer?.speedupForwardBackward)],
    ],
  );
  if (result.peerSkipped) console.log(`peer skipped: ${result.peerSkipped}`);
  const m = result.memory;
  console.log(
    `peak RSS growth, forward+backward at L=${m.shape.seq} D=${m.shape.dim}: ours ${mib(m.oursPeakGrowthBytes)}` +
      (m.peerPeakGrowthBytes !== undefined ? `, torch ${mib(m.peerPeakGrowthBytes)}` : '') +
      ` (one L x L f32 matrix: ${mib(m.scoreMatrixBytes)})`,
  );
  const json = h.flagValue(args, '--json');
  if (json !== undefined && import.meta.url === pathToFileURL(process.argv[1] ?? '').href) h.writeJson(json, result);
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const child = args.indexOf('--memory-child');
  if (child >= 0) measureMemoryInChild({ batch: 1, heads: 1, seq: Number(args[child + 1]), dim: 64 });
  else run(args);
}
