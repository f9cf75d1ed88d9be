// Shared benchmark machinery: timing (median of several runs after warm-up), the machine's
// measured peaks (clock, FMA FLOP/s, copy bandwidth), table printing and JSON output.
// Suites (bench/ops.ts, ...) export `run(args)` and return a JSON-able result; bench/run.ts
// dispatches to them and writes --json.
import { renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { native, type NativeHandle } from '../lib/native.js';
import { devNative } from '../lib/native_dev.js';

declare module '../lib/native_dev.js' {
  interface DevModule {
    benchCopyBandwidth(bytes: number, reps: number): { memcpy: number; loop: number };
    benchClockGHz(): number;
    benchFmaPeak(): { flops: number; isa: string };
    openblasInfo(): { loaded: boolean; path?: string; corename?: string; config?: string; error?: string };
    openblasSetThreads(threads: number): void;
    openblasSgemm(
      a: NativeHandle,
      b: NativeHandle,
      c: NativeHandle,
      transA: boolean,
      transB: boolean,
      m: number,
      n: number,
      k: number,
      alpha: number,
      beta: number,
    ): void;
  }
}

/** What a suite module exports; the result is written by `--json FILE`. */
export interface BenchSuite {
  run(args: string[]): Promise<unknown> | unknown;
}

export interface Timing {
  /** Median seconds per call. */
  median: number;
  /** Fastest run, seconds per call. */
  min: number;
  runs: number;
  /** Calls per timed run (tiny ops are batched so a run is long enough to time). */
  callsPerRun: number;
}

export interface TimeOptions {
  warmup?: number;
  runs?: number;
  /** Batch calls so that one run lasts at least this long. */
  minRunSeconds?: number;
}

function now(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Times `fn`: warm-up calls, then `runs` timed runs of enough calls each; median per call. */
export function time(fn: () => void, options: TimeOptions = {}): Timing {
  const warmup = options.warmup ?? 2;
  const runs = options.runs ?? 7;
  const minRunSeconds = options.minRunSeconds ?? 0.02;
  let single = Infinity;
  for (let i = 0; i < Math.max(1, warmup); i++) {
    const t0 = now();
    fn();
    single = Math.min(single, now() - t0);
  }
  const callsPerRun = Math.max(1, Math.ceil(minRunSeconds / Math.max(single, 1e-9)));
  const perCall: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = now();
    for (let i = 0; i < callsPerRun; i++) fn();
    perCall.push((now() - t0) / callsPerRun);
  }
  return { median: median(perCall), min: Math.min(...perCall), runs, callsPerRun };
}

/**
 * The cost of `b` relative to `a`: one call of each in turn, `pairs` times after a warm-up, and
 * the median of the per-pair ratios b / a, so that drift in the machine's speed (other tenants)
 * hits both sides of every ratio alike.
 */
export function pairedRatio(a: () => void, b: () => void, pairs = 15): number {
  a();
  b();
  const ratios: number[] = [];
  for (let i = 0; i < pairs; i++) {
    const t0 = now();
    a();
    const t1 = now();
    b();
    ratios.push((now() - t1) / (t1 - t0));
  }
  return median(ratios);
}

/** Blocks the thread for `ms` milliseconds without spinning. */
export function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Runs `fn` with the cpu pool at `threads`, restoring the previous count after. */
export function withThreads<T>(threads: number, fn: () => T): T {
  const before = native.info().threads;
  native.setNumThreads(threads);
  try {
    return fn();
  } finally {
    native.setNumThreads(before);
  }
}

export interface Peaks {
  /** Core clock from a dependent integer-add chain, GHz (one thread). */
  clockGHz: number;
  isa: string;
  /** Measured fp32 FMA FLOP/s by thread count. */
  flops: Record<number, number>;
  /** Copy bandwidth in bytes/s (read + write counted) by thread count: memcpy and a plain copy loop. */
  copy: Record<number, { memcpy: number; loop: number }>;
  copyBufferBytes: number;
}

/** Measures the machine's peaks for each thread count, in this run. */
export function measurePeaks(threadCounts: readonly number[], copyBufferBytes = 256 << 20): Peaks {
  const peaks: Peaks = { clockGHz: devNative().benchClockGHz(), isa: native.info().isa, flops: {}, copy: {}, copyBufferBytes };
  for (const threads of threadCounts) {
    withThreads(threads, () => {
      peaks.flops[threads] = devNative().benchFmaPeak().flops;
      peaks.copy[threads] = devNative().benchCopyBandwidth(copyBufferBytes, 5);
    });
  }
  return peaks;
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGB: number;
  node: string;
  isa: string;
  threads: number;
  platform: string;
  date: string;
  loadAverage: number[];
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  const { isa, threads } = native.info();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    isa,
    threads,
    platform: `${os.platform()} ${os.release()}`,
    date: new Date().toISOString(),
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

export type Cell = string | number | undefined;

/** Prints rows as an aligned text table; numbers right-aligned, missing cells as '-'. */
export function printTable(headers: readonly string[], rows: readonly Cell[][]): void {
  const text = rows.map((r) => headers.map((_, i) => (r[i] === undefined ? '-' : String(r[i]))));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]!.length)));
  const numeric = headers.map((_, i) => rows.every((r) => r[i] === undefined || typeof r[i] === 'number' || /^[\d.,x%-]+$/.test(String(r[i]))));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  console.log(line(headers));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of text) console.log(line(r));
}

/** Rounds for display: 3 significant digits, no exponent for the ranges printed here. */
export function fmt(value: number | undefined, digits = 3): string | undefined {
  if (value === undefined || !Number.isFinite(value)) return undefined;
  if (value === 0) return '0';
  const magnitude = Math.floor(Math.log10(Math.abs(value)));
  const decimals = Math.max(0, digits - 1 - magnitude);
  return value.toFixed(decimals);
}

export function fmtPercent(fraction: number | undefined): string | undefined {
  return fraction === undefined || !Number.isFinite(fraction) ? undefined : `${(fraction * 100).toFixed(0)}%`;
}

/** Writes JSON atomically: a temp file beside the target, then rename. */
export function writeJson(file: string, value: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, file);
}

/** The value after `--name` in args, if present. */
export function flagValue(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** The integer >= 1 after `--name` in args, or `fallback`; `suite` names the suite in the error. */
export function intFlag(suite: string, args: readonly string[], name: string, fallback: number): number {
  const raw = flagValue(args, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${suite}: ${name} must be an integer >= 1, got ${JSON.stringify(raw)}`);
  return value;
}
