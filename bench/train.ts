// Training-step benchmark (measured, never asserted): samples per second of one full training
// step of the `tiny` text-to-image DiT at batch 8 on the cpu backend (text encoder + DiT
// forward, epsilon-MSE, backward through the tape, AdamW over every parameter), against the
// same model written in PyTorch (bench/peers/train_torch.py, Debian's /usr/bin/python3 with
// python3-torch) run in the same session with the same thread count. Both parameter counts are
// printed: they must be equal for the ratio to mean anything.
// Run: npm run bench -- train [--batch 8] [--iters 5] [--json out.json] [--no-peer]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as F from '../lib/autograd/functions.js';
import { backward } from '../lib/autograd/backward.js';
import { info } from '../lib/info.js';
import { DiT, ditConfig } from '../lib/nn/dit.js';
import { Generator, randn } from '../lib/ops/random.js';
import { AdamW } from '../lib/optim/adamw.js';
import { tidy } from '../lib/scope.js';
import { fromArray } from '../lib/tensor.js';
import { flagValue, intFlag, machineInfo, median, printTable, writeJson, type MachineInfo } from './harness.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const peerScript = path.join(here, 'peers', 'train_torch.py');
const peerPython = '/usr/bin/python3';

export interface TrainBenchResult {
  machine: MachineInfo;
  preset: 'tiny';
  batch: number;
  ours: { parameters: number; stepSeconds: number; samplesPerSecond: number };
  peer?: { name: string; parameters: number; stepSeconds: number; samplesPerSecond: number };
  /** ours samples/s divided by the peer's (above 1: faster than PyTorch). */
  ratio?: number;
  peerSkipped?: string;
}

/** Median seconds of one forward + backward + AdamW step of the tiny preset. */
function measureOurs(batch: number, iters: number, warmup: number): { parameters: number; stepSeconds: number } {
  const config = ditConfig('tiny', { seed: 0 });
  const model = new DiT(config);
  const optimizer = new AdamW(model.namedParameters(), { lr: 1e-4, weightDecay: 0.01 });
  const generator = new Generator(1);
  const { imageSize, channels, contextLength } = config;
  const vocab = config.text!.vocabSize;
  const x0 = randn([batch, channels, imageSize, imageSize], { generator });
  const noise = randn([batch, channels, imageSize, imageSize], { generator });
  const timesteps = Array.from({ length: batch }, (_, i) => (i * 997 + 13) % 1000);
  const ids = fromArray(
    Array.from({ length: batch * contextLength }, (_, i) => (i * 7919) % vocab),
    [batch, contextLength],
    { dtype: 'i32' },
  );
  const lengths = fromArray(
    Array.from({ length: batch }, (_, i) => 4 + ((i * 5) % (contextLength - 3))),
    [batch],
    { dtype: 'i32' },
  );
  const step = (): void =>
    tidy(() => {
      const text = model.encodeText(ids, lengths);
      const loss = F.mse(model.forward(x0, timesteps, text), noise);
      backward(loss);
      optimizer.step();
      optimizer.zeroGrad();
    });
  for (let i = 0; i < warmup; i++) step();
  const times: number[] = [];
  for (let i = 0; i < iters; i++) {
    const start = performance.now();
    step();
    times.push((performance.now() - start) / 1000);
  }
  const parameters = model.parameterCount();
  for (const t of [x0, noise, ids, lengths]) t.dispose();
  optimizer.dispose();
  model.dispose();
  return { parameters, stepSeconds: median(times) };
}

function runPeer(args: string[]): Record<string, number | string> | string {
  if (!existsSync(peerPython)) return `${peerPython} not found`;
  const result = spawnSync(peerPython, [peerScript, ...args], { encoding: 'utf8' });
  if (result.status !== 0) return `peer failed: ${(result.stderr || result.stdout).trim().split('\n').pop()}`;
  return JSON.parse(result.stdout.trim().split('\n').pop()!) as Record<string, number | string>;
}

export async function run(args: string[]): Promise<TrainBenchResult> {
  const batch = intFlag('bench train', args, '--batch', 8);
  const iters = intFlag('bench train', args, '--iters', 5);
  const warmup = 2;
  const { threads, isa } = info();
  const ours = measureOurs(batch, iters, warmup);
  const result: TrainBenchResult = {
    machine: machineInfo(),
    preset: 'tiny',
    batch,
    ours: { ...ours, samplesPerSecond: batch / ours.stepSeconds },
  };
  if (args.includes('--no-peer')) {
    result.peerSkipped = '--no-peer';
  } else {
    const peer = runPeer(['--threads', String(threads), '--batch', String(batch), '--iters', String(iters), '--warmup', String(warmup)]);
    if (typeof peer === 'string') {
      result.peerSkipped = peer;
    } else {
      result.peer = {
        name: `torch ${String(peer.version)} (eager, autograd, torch.optim.AdamW)`,
        parameters: Number(peer.parameters),
        stepSeconds: Number(peer.step_seconds),
        samplesPerSecond: Number(peer.samples_per_second),
      };
      result.ratio = result.ours.samplesPerSecond / result.peer.samplesPerSecond;
    }
  }

  console.log(`training step of the tiny DiT (32x32, text encoder included), batch ${batch}, cpu ${threads} threads (${isa}), median of ${iters}`);
  printTable(
    ['', 'parameters', 'step s', 'samples/s'],
    [
      ['realtune', result.ours.parameters, result.ours.stepSeconds.toFixed(3), result.ours.samplesPerSecond.toFixed(2)],
      ...(result.peer ? [[result.peer.name, result.peer.parameters, result.peer.stepSeconds.toFixed(3), result.peer.samplesPerSecond.toFixed(2)]] : []),
    ],
  );
  if (result.ratio !== undefined) console.log(`realtune / torch samples per second: ${result.ratio.toFixed(2)}x`);
  if (result.peer && result.peer.parameters !== result.ours.parameters) {
    console.log(`warning: parameter counts differ (${result.ours.parameters} vs ${result.peer.parameters}); the models are not the same`);
  }
  if (result.peerSkipped) console.log(`peer skipped: ${result.peerSkipped}`);
  return result;
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  const args = process.argv.slice(2);
  const result = await run(args);
  const jsonFile = flagValue(args, '--json');
  if (jsonFile !== undefined) writeJson(jsonFile, result);
}
