// Loss and LoRA kernels on the cpu backend (measured, never asserted):
//   - dpoLoss and channelStatLoss forward and backward, GB/s against the copy-loop bandwidth
//     measured right before and after each case (both count every byte read and written once;
//     target >= 70%);
//   - loraLinear rank 1 (bias, LoRA update in the GEMM epilogue) against the plain linear layer
//     as nn.Linear runs it (the matmul op, x w^T, then biasAdd; target <= 1.10), and against
//     loraLinear at rank 0 (the same call with the update left out).
// Run: npm run bench -- kernels_losses [--json FILE] [--quick]
//   or node --import tsx bench/kernels_losses.ts [--quick]
// `cases` exports the same measurements as OpCase entries for bench/ops.ts's registry.
import { pathToFileURL } from 'node:url';
import { native } from '../lib/native.js';
import { devNative } from '../lib/native_dev.js';
import { channelStatLoss, channelStatLossBackward } from '../lib/ops/channel_stat_loss.js';
import { dpoLoss, dpoLossBackward } from '../lib/ops/dpo_loss.js';
import { biasAdd } from '../lib/ops/elementwise.js';
import { loraLinear } from '../lib/ops/lora_linear.js';
import { matmul } from '../lib/ops/matmul.js';
import { tidy } from '../lib/scope.js';
import { fromArray, type Tensor } from '../lib/tensor.js';
import * as h from './harness.js';
import type { OpCase, Prepared } from './ops.js';

function random(shape: readonly number[], seed: number): Tensor<'f32'> {
  const n = shape.reduce((p, d) => p * d, 1);
  const data = new Float32Array(n);
  let state = seed >>> 0;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = state / 2 ** 31 - 1;
  }
  return fromArray(data, shape);
}

interface Measured {
  name: string;
  shape: string;
  ms: number;
  bytes?: number;
  flops?: number;
}

interface Setup {
  name: string;
  shape: string;
  bytes?: number;
  flops?: number;
  make(): Prepared | null;
}

function hasMatmul(): boolean {
  return native.opTable().matmul !== undefined && typeof (native as unknown as Record<string, unknown>).matmul === 'function';
}

function setups(quick: boolean): Setup[] {
  const pairs = quick ? 2 : 8;
  const perPair = 3 * 512 * 512;
  const dpoShape = [pairs, 3, 512, 512];
  const n = pairs * perPair;
  const [batch, channels, hw] = quick ? [2, 3, 512 * 512] : [8, 3, 512 * 512];
  const csShape = [batch, channels, hw];
  const csN = batch * channels * hw;
  const [m, k, outFeatures] = quick ? [1024, 768, 768] : [4096, 768, 768];
  const loraFlops = 2 * m * k * outFeatures;
  const lora = (rank: number): Setup => ({
    name: rank === 0 ? 'loraLinear rank 0 (no update)' : `loraLinear rank ${rank}`,
    shape: `x [${m}, ${k}], w [${outFeatures}, ${k}]`,
    flops: loraFlops + (rank > 0 ? 2 * m * rank * (k + outFeatures) : 0),
    make() {
      const x = random([m, k], 1);
      const w = random([outFeatures, k], 2);
      const bias = random([outFeatures], 3);
      const down = random([k, rank], 4);
      const up = random([rank, outFeatures], 5);
      return { call: () => void loraLinear(x, w, bias, down, up, { scale: 0.5 }).dispose(), dispose: () => [x, w, bias, down, up].forEach((t) => t.dispose()) };
    },
  });
  return [
    {
      name: 'dpoLoss',
      shape: `6 x [${dpoShape}]`,
      bytes: 6 * 4 * n,
      make() {
        const t = [1, 2, 3, 4, 5, 6].map((s) => random(dpoShape, s));
        const [pw, pl, rw, rl, nw, nl] = t as [Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>];
        return { call: () => tidy(() => void dpoLoss(pw, pl, rw, rl, nw, nl)), dispose: () => t.forEach((x) => x.dispose()) };
      },
    },
    {
      name: 'dpoLossBackward',
      shape: `4 x [${dpoShape}] -> 2`,
      bytes: 6 * 4 * n,
      make() {
        const t = [1, 2, 3, 4].map((s) => random(dpoShape, s));
        const [pw, pl, nw, nl] = t as [Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>, Tensor<'f32'>];
        const inside = fromArray(new Float32Array(pairs).fill(0.3), [pairs]);
        return {
          call: () => tidy(() => void dpoLossBackward(pw, pl, nw, nl, inside)),
          dispose: () => [...t, inside].forEach((x) => x.dispose()),
        };
      },
    },
    {
      name: 'channelStatLoss matchStd',
      shape: `2 x [${csShape}]`,
      bytes: 2 * 4 * csN,
      make() {
        const a = random(csShape, 7);
        const b = random(csShape, 8);
        return { call: () => tidy(() => void channelStatLoss(a, b, { matchStd: true })), dispose: () => [a, b].forEach((x) => x.dispose()) };
      },
    },
    {
      name: 'channelStatLossBackward matchStd',
      shape: `[${csShape}] -> 1`,
      bytes: 2 * 4 * csN,
      make() {
        const a = random(csShape, 7);
        const b = random(csShape, 8);
        const saved = channelStatLoss(a, b, { matchStd: true });
        return {
          call: () => tidy(() => void channelStatLossBackward(a, saved)),
          dispose: () => [a, b, saved.loss, saved.meanA, saved.meanB, saved.stdA!, saved.stdB!].forEach((x) => x.dispose()),
        };
      },
    },
    lora(0),
    lora(1),
    lora(8),
    {
      name: 'linear (matmul op x w^T, then biasAdd)',
      shape: `x [${m}, ${k}], w [${outFeatures}, ${k}]`,
      flops: loraFlops,
      make() {
        if (!hasMatmul()) return null;
        const x = random([m, k], 1);
        const w = random([outFeatures, k], 2);
        const bias = random([outFeatures], 3);
        return {
          call: () => {
            const y = matmul(x, w, { transB: true });
            biasAdd(y, bias, { out: y });
            y.dispose();
          },
          dispose: () => [x, w, bias].forEach((t) => t.dispose()),
        };
      },
    },
  ];
}

/** The measurements as OpCase entries for bench/ops.ts's registry. */
export const cases: OpCase[] = setups(false).map((s) => ({
  name: s.name,
  op: s.name.startsWith('dpoLossBackward')
    ? 'dpo_loss_backward'
    : s.name.startsWith('dpoLoss')
      ? 'dpo_loss'
      : s.name.startsWith('channelStatLossBackward')
        ? 'channel_stat_loss_backward'
        : s.name.startsWith('channelStatLoss')
          ? 'channel_stat_loss'
          : s.name.startsWith('linear')
            ? 'matmul'
            : 'lora_linear',
  shape: s.shape,
  ...(s.bytes === undefined ? {} : { bytes: s.bytes }),
  ...(s.flops === undefined ? {} : { flops: s.flops }),
  setup: async () => s.make(),
}));

export interface LossesBenchResult {
  machine: h.MachineInfo;
  copyBytesPerSecond: number;
  rows: (Measured & { gbPerSecond?: number; copyGbPerSecond?: number; ofCopy?: number; gflops?: number })[];
  loraRank1OverRank0: number;
  loraRank1OverLinear?: number;
}

export async function run(args: string[]): Promise<LossesBenchResult> {
  const quick = args.includes('--quick');
  const machine = h.machineInfo();
  const threads = machine.threads;
  const peaks = h.measurePeaks([threads]);
  const copy = peaks.copy[threads]!.loop;
  const copyLoop = (): number => devNative().benchCopyBandwidth(peaks.copyBufferBytes, 3).loop;
  const rows: LossesBenchResult['rows'] = [];
  for (const s of setups(quick)) {
    const prepared = s.make();
    if (prepared === null) continue;
    // This VM's memory bandwidth drifts by up to 1.5x within minutes (other tenants), so a
    // memory-bound case is compared with copy loops run right before and right after it.
    const copyBefore = s.bytes === undefined ? 0 : copyLoop();
    const timing = h.time(prepared.call, { warmup: 2, runs: quick ? 3 : 7, minRunSeconds: 0.05 });
    prepared.dispose();
    const row: LossesBenchResult['rows'][number] = { name: s.name, shape: s.shape, ms: timing.median * 1e3 };
    if (s.bytes !== undefined) {
      const copyHere = (copyBefore + copyLoop()) / 2;
      row.bytes = s.bytes;
      row.gbPerSecond = s.bytes / timing.median / 1e9;
      row.copyGbPerSecond = copyHere / 1e9;
      row.ofCopy = s.bytes / timing.median / copyHere;
    }
    if (s.flops !== undefined) {
      row.flops = s.flops;
      row.gflops = s.flops / timing.median / 1e9;
    }
    rows.push(row);
  }
  console.log(
    `${machine.cpu}, ${threads} threads, ${machine.isa}; copy-loop bandwidth (read + write) ${h.fmt(copy / 1e9)} GB/s at the start, ` +
      'and around each memory-bound case (copy GB/s)',
  );
  h.printTable(
    ['case', 'shape', 'ms', 'GB/s', 'copy GB/s', 'of copy', 'GFLOP/s'],
    rows.map((r) => [r.name, r.shape, h.fmt(r.ms), h.fmt(r.gbPerSecond), h.fmt(r.copyGbPerSecond), h.fmtPercent(r.ofCopy), h.fmt(r.gflops)]),
  );
  const ms = (prefix: string) => rows.find((r) => r.name.startsWith(prefix))?.ms;
  // The ratios alternate the two calls (see pairedRatio): rows timed minutes apart drift apart.
  const made = (prefix: string) => setups(quick).find((s) => s.name.startsWith(prefix))!.make();
  const ratioTo = (basePrefix: string): number | undefined => {
    const base = made(basePrefix);
    if (base === null) return undefined;
    const rank1 = made('loraLinear rank 1')!;
    const ratio = h.pairedRatio(base.call, rank1.call);
    base.dispose();
    rank1.dispose();
    return ratio;
  };
  const result: LossesBenchResult = { machine, copyBytesPerSecond: copy, rows, loraRank1OverRank0: ratioTo('loraLinear rank 0')! };
  const overLinear = ratioTo('linear');
  if (overLinear !== undefined) {
    result.loraRank1OverLinear = overLinear;
    console.log(`loraLinear rank 1 / linear (matmul + biasAdd), calls alternated: ${h.fmt(overLinear)} (target <= 1.10)`);
  }
  console.log(`loraLinear rank 1 / rank 0, calls alternated: ${h.fmt(result.loraRank1OverRank0)}`);
  const jsonFile = h.flagValue(args, '--json');
  if (jsonFile !== undefined && import.meta.url === pathToFileURL(process.argv[1] ?? '').href) h.writeJson(jsonFile, result);
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run(process.argv.slice(2));
