// Learning-rate schedules: functions from the 0-based step to the learning rate.
export type LrSchedule = (step: number) => number;

function checkPositive(name: string, v: number): void {
  if (!Number.isFinite(v) || v < 0) throw new RangeError(`lr schedule: ${name} must be finite and >= 0, got ${v}`);
}

/** Linear warm-up from 0 to `lr` over `warmup` steps, then constant. */
export function constantWithWarmup(lr: number, warmup = 0): LrSchedule {
  checkPositive('lr', lr);
  checkPositive('warmup', warmup);
  return (step) => (warmup > 0 && step < warmup ? (lr * (step + 1)) / warmup : lr);
}

/** Warm-up, then cosine decay from `lr` to `minLr` at `total` steps (held at minLr after). */
export function cosineWithWarmup(lr: number, total: number, warmup = 0, minLr = 0): LrSchedule {
  checkPositive('lr', lr);
  checkPositive('total', total);
  checkPositive('warmup', warmup);
  checkPositive('minLr', minLr);
  return (step) => {
    if (warmup > 0 && step < warmup) return (lr * (step + 1)) / warmup;
    const progress = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
    return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * progress));
  };
}

export type LrScheduleKind = 'constant' | 'cosine';

export function lrSchedule(kind: LrScheduleKind, lr: number, total: number, warmup = 0): LrSchedule {
  if (kind === 'constant') return constantWithWarmup(lr, warmup);
  if (kind === 'cosine') return cosineWithWarmup(lr, total, warmup, lr * 0.1);
  throw new TypeError(`lr schedule: expected 'constant' or 'cosine', got ${JSON.stringify(kind)}`);
}
