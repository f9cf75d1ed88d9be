// A progress line for long CLI jobs: step/total, metrics (loss first), steps/s and ETA. On a
// terminal it redraws one line; in logs (CI, pipes) it prints a plain line every `every` steps.
// Under mpirun only rank 0 shows it.
import { isRankZero } from '../train/loop/dist.js';
export interface ProgressOptions {
  total: number;
  label?: string;
  /** Plain-line interval when not on a terminal; default about 20 lines per run. */
  every?: number;
  stream?: NodeJS.WriteStream;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(rest).padStart(2, '0')}s` : `${rest}s`;
}

function formatValue(v: number): string {
  return Math.abs(v) >= 1000 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toFixed(4);
}

export class ProgressBar {
  readonly total: number;
  readonly label: string;
  #done = 0;
  #start = performance.now();
  #every: number;
  #stream: NodeJS.WriteStream;
  #tty: boolean;

  constructor(options: ProgressOptions) {
    if (!Number.isInteger(options.total) || options.total < 0) throw new RangeError(`ProgressBar: total must be an integer >= 0, got ${options.total}`);
    this.total = options.total;
    this.label = options.label ?? '';
    this.#stream = options.stream ?? process.stderr;
    this.#tty = Boolean(this.#stream.isTTY);
    this.#every = options.every ?? Math.max(1, Math.round(this.total / 20));
  }

  /** Marks `steps` more steps done (default 1) and shows the metrics. */
  tick(metrics: Record<string, number> = {}, steps = 1): void {
    this.#done = Math.min(this.total, this.#done + steps);
    if (this.#tty || this.#done % this.#every === 0 || this.#done === this.total) this.#render(metrics);
  }

  /** The current line as text (also what is printed). */
  line(metrics: Record<string, number> = {}): string {
    const elapsed = (performance.now() - this.#start) / 1000;
    const rate = this.#done / Math.max(elapsed, 1e-9);
    const eta = (this.total - this.#done) / rate;
    const width = 24;
    const filled = this.total === 0 ? width : Math.round((width * this.#done) / this.total);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    const values = Object.entries(metrics).map(([k, v]) => `${k} ${formatValue(v)}`);
    const step = `${String(this.#done).padStart(String(this.total).length)}/${this.total}`;
    return [this.label, bar, step, ...values, `${rate.toFixed(2)} steps/s`, `ETA ${formatDuration(eta)}`].filter(Boolean).join('  ');
  }

  /** Ends the progress line (on a terminal, moves to the next line). */
  finish(): void {
    if (this.#tty && isRankZero()) this.#stream.write('\n');
  }

  #render(metrics: Record<string, number>): void {
    if (!isRankZero()) return;
    const text = this.line(metrics);
    if (this.#tty) this.#stream.write(`\r${text}\x1b[K`);
    else this.#stream.write(`${text}\n`);
  }
}

/**
 * One progress bar per phase of a multi-phase job (the curriculum's pools, reconstructions,
 * stages, reports): `update(phase, done, total, metrics)` starts a new bar when the phase changes.
 */
export class PhaseProgress {
  #bar: ProgressBar | null = null;
  #phase = '';
  #done = 0;

  constructor(
    readonly quiet: boolean,
    readonly prefix = '',
  ) {}

  update(phase: string, done: number, total: number, metrics: Record<string, number> = {}): void {
    if (this.quiet) return;
    if (phase !== this.#phase) {
      this.#bar?.finish();
      this.#phase = phase;
      this.#done = 0;
      this.#bar = new ProgressBar({ total, label: `${this.prefix}${phase}` });
    }
    this.#bar!.tick(metrics, done - this.#done);
    this.#done = done;
  }

  finish(): void {
    this.#bar?.finish();
    this.#bar = null;
    this.#phase = '';
  }
}
