// Noise schedules (T = 1000 by default). Timesteps are 0-based: t = 0 is the least noisy step,
// t = T - 1 the most; SPEC's t in 1..T maps to index t - 1.
export type BetaScheduleKind = 'linear' | 'cosine';

export class NoiseSchedule {
  readonly kind: BetaScheduleKind;
  readonly steps: number;
  readonly betas: Float64Array;
  readonly alphas: Float64Array;
  /** abar_t: the cumulative product of alphas up to and including t. */
  readonly alphasCumprod: Float64Array;

  private constructor(kind: BetaScheduleKind, betas: Float64Array) {
    this.kind = kind;
    this.steps = betas.length;
    this.betas = betas;
    this.alphas = betas.map((b) => 1 - b);
    this.alphasCumprod = new Float64Array(betas.length);
    let product = 1;
    for (let t = 0; t < betas.length; t++) {
      product *= this.alphas[t]!;
      this.alphasCumprod[t] = product;
    }
  }

  /** DDPM's linear betas from betaStart to betaEnd (Ho et al. 2020). */
  static linear(steps = 1000, betaStart = 1e-4, betaEnd = 0.02): NoiseSchedule {
    checkSteps(steps);
    const betas = new Float64Array(steps);
    for (let t = 0; t < steps; t++) betas[t] = steps === 1 ? betaStart : betaStart + ((betaEnd - betaStart) * t) / (steps - 1);
    return new NoiseSchedule('linear', betas);
  }

  /** The cosine schedule of Nichol & Dhariwal 2021, betas clipped at 0.999. */
  static cosine(steps = 1000, offset = 0.008): NoiseSchedule {
    checkSteps(steps);
    const f = (t: number) => Math.cos(((t / steps + offset) / (1 + offset)) * (Math.PI / 2)) ** 2;
    const betas = new Float64Array(steps);
    for (let t = 0; t < steps; t++) betas[t] = Math.min(1 - f(t + 1) / f(t), 0.999);
    return new NoiseSchedule('cosine', betas);
  }

  static create(kind: BetaScheduleKind, steps = 1000): NoiseSchedule {
    if (kind === 'linear') return NoiseSchedule.linear(steps);
    if (kind === 'cosine') return NoiseSchedule.cosine(steps);
    throw new TypeError(`NoiseSchedule: kind must be 'linear' or 'cosine', got ${JSON.stringify(kind)}`);
  }

  checkTimestep(t: number, op: string): void {
    if (!Number.isInteger(t) || t < 0 || t >= this.steps) {
      throw new RangeError(`${op}: timestep must be an integer in [0, ${this.steps}), got ${t}`);
    }
  }

  /** sqrt(abar_t) and sqrt(1 - abar_t): the coefficients of x0 and eps in x_t. */
  signalNoise(t: number): { signal: number; noise: number } {
    this.checkTimestep(t, 'signalNoise');
    const abar = this.alphasCumprod[t]!;
    return { signal: Math.sqrt(abar), noise: Math.sqrt(1 - abar) };
  }

  /** Evenly spaced timesteps from T-1 down to 0 (or from `start` down), `count` of them. */
  samplingTimesteps(count: number, start = this.steps - 1): number[] {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`samplingTimesteps: count must be an integer >= 1, got ${count}`);
    this.checkTimestep(start, 'samplingTimesteps');
    const n = Math.min(count, start + 1);
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(Math.round(start - (start * i) / Math.max(1, n - 1)));
    return [...new Set(out)];
  }
}

function checkSteps(steps: number): void {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`NoiseSchedule: steps must be an integer >= 1, got ${steps}`);
}
