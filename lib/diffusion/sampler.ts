// Forward noising, the epsilon objective's target, and the DDPM / DDIM samplers with
// classifier-free guidance (negative prompts) and SDEdit-style partial denoising.
import { tidy } from '../scope.js';
import { clamp } from '../ops/clamp.js';
import { axpy, mul, scale } from '../ops/elementwise.js';
import { Generator, randn } from '../ops/random.js';
import { expand } from '../ops/reduce.js';
import { fromArray, type Shape, type Tensor } from '../tensor.js';
import type { NoiseSchedule } from './schedule.js';

/** Predicts the noise in x_t at timestep t (every sample of the batch shares t while sampling). */
export type EpsPredictor = (xt: Tensor<'f32'>, t: number) => Tensor<'f32'>;

/**
 * x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, with one timestep per sample (leading axis).
 */
export function qSample(x0: Tensor<'f32'>, timesteps: readonly number[], noise: Tensor<'f32'>, schedule: NoiseSchedule): Tensor<'f32'> {
  const batch = x0.shape[0] ?? 0;
  if (timesteps.length !== batch) throw new RangeError(`qSample: timesteps has ${timesteps.length} entries, expected one per sample (${batch})`);
  if (noise.shape.join() !== x0.shape.join()) throw new RangeError(`qSample: noise has shape [${noise.shape.join(', ')}], expected [${x0.shape.join(', ')}] like x0`);
  return tidy(() => {
    const signal = timesteps.map((t) => schedule.signalNoise(t).signal);
    const noiseLevel = timesteps.map((t) => schedule.signalNoise(t).noise);
    const perSample = (values: number[]) => expand(fromArray(values, [batch, ...x0.shape.slice(1).map(() => 1)], { device: x0.device }), x0.shape);
    const xt = mul(x0, perSample(signal));
    axpy(1, mul(noise, perSample(noiseLevel)), xt);
    return xt;
  });
}

/** eps_neg + cfg * (eps_cond - eps_neg): classifier-free guidance with a negative (or empty) prompt. */
export function guidedPredictor<C>(
  predict: (xt: Tensor<'f32'>, t: number, cond: C) => Tensor<'f32'>,
  cond: C,
  negative: C,
  cfg: number,
): EpsPredictor {
  if (!(cfg >= 0)) throw new RangeError(`guidedPredictor: cfg must be >= 0, got ${cfg}`);
  return (xt, t) =>
    tidy(() => {
      const positive = predict(xt, t, cond);
      if (cfg === 1) return positive;
      const negativeEps = predict(xt, t, negative);
      // negativeEps + cfg * (positive - negativeEps) = cfg * positive + (1 - cfg) * negativeEps
      return axpy(cfg, positive, negativeEps, { beta: 1 - cfg });
    });
}

export type SamplerKind = 'ddpm' | 'ddim';

export interface SampleOptions {
  sampler?: SamplerKind;
  /** Denoising steps (DDPM defaults to every timestep below the start; DDIM to 50). */
  steps?: number;
  /** DDIM stochasticity: 0 deterministic, 1 ancestral (DDPM's posterior variance). */
  eta?: number;
  /** Start from this timestep instead of T - 1 (SDEdit). */
  startStep?: number;
  /** Clip the predicted x0 to [-1, 1] (pixel-space models). Default true. */
  clipDenoised?: boolean;
  /** Seeds the noise drawn at each step (a fresh Generator(seed)); or pass a generator. */
  seed?: number;
  generator?: Generator;
  onStep?: (index: number, t: number, xt: Tensor<'f32'>) => void;
}

/**
 * Runs the reverse process from x_start (noise at T - 1, or a noised image for SDEdit) down to
 * x_0. Each step is the generalised DDIM update (Song et al. 2021):
 *   x0' = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
 *   x_s = sqrt(abar_s) x0' + sqrt(1 - abar_s - sigma^2) eps + sigma z,
 *   sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)
 * With eta = 1 over consecutive timesteps this is DDPM's ancestral sampler exactly.
 */
export function denoise(predict: EpsPredictor, xStart: Tensor<'f32'>, schedule: NoiseSchedule, options: SampleOptions = {}): Tensor<'f32'> {
  const kind = options.sampler ?? 'ddim';
  if (kind !== 'ddpm' && kind !== 'ddim') throw new TypeError(`sample: sampler must be 'ddpm' or 'ddim', got ${JSON.stringify(kind)}`);
  const start = options.startStep ?? schedule.steps - 1;
  const steps = options.steps ?? (kind === 'ddpm' ? start + 1 : 50);
  const eta = options.eta ?? (kind === 'ddpm' ? 1 : 0);
  if (!(eta >= 0)) throw new RangeError(`sample: eta must be >= 0, got ${eta}`);
  const clip = options.clipDenoised ?? true;
  const timesteps = schedule.samplingTimesteps(steps, start);
  const generator = options.generator ?? new Generator(options.seed ?? 0);
  let x = xStart.clone();
  timesteps.forEach((t, index) => {
    const next = tidy(() => {
      const s = timesteps[index + 1] ?? -1;
      const abarT = schedule.alphasCumprod[t]!;
      const abarS = s >= 0 ? schedule.alphasCumprod[s]! : 1;
      const eps = predict(x, t);
      const x0 = scale(x, 1 / Math.sqrt(abarT));
      axpy(-Math.sqrt(1 - abarT) / Math.sqrt(abarT), eps, x0);
      if (clip) clamp(x0, -1, 1, { out: x0 });
      const sigma = s >= 0 ? eta * Math.sqrt((1 - abarS) / (1 - abarT)) * Math.sqrt(1 - abarT / abarS) : 0;
      // With a clipped x0 the eps implied by it keeps the update consistent.
      const epsUsed = clip ? impliedEps(x, x0, abarT) : eps;
      const out = scale(x0, Math.sqrt(abarS));
      axpy(Math.sqrt(Math.max(0, 1 - abarS - sigma * sigma)), epsUsed, out);
      if (sigma > 0) {
        axpy(sigma, randn(x.shape, { device: x.device, generator }), out);
      }
      return out;
    });
    x.dispose();
    x = next;
    options.onStep?.(index, t, x);
  });
  return x;
}

/** eps implied by x_t and a (clipped) x0 estimate: (x_t - sqrt(abar) x0) / sqrt(1 - abar). */
function impliedEps(xt: Tensor<'f32'>, x0: Tensor<'f32'>, abar: number): Tensor<'f32'> {
  const eps = scale(xt, 1 / Math.sqrt(1 - abar));
  return axpy(-Math.sqrt(abar) / Math.sqrt(1 - abar), x0, eps);
}

/** Samples from pure noise of `shape`, seeded. */
export function sample(predict: EpsPredictor, shape: Shape, schedule: NoiseSchedule, options: SampleOptions & { device?: Tensor['device'] } = {}): Tensor<'f32'> {
  const generator = options.generator ?? new Generator(options.seed ?? 0);
  const noise = randn(shape, { device: options.device, generator });
  const result = denoise(predict, noise, schedule, { ...options, generator });
  noise.dispose();
  return result;
}

/**
 * SDEdit: noise a clean image to timestep `t` with seeded noise, then denoise it back to t = 0.
 * HG-DPO's SDRecon uses this with the base model and the image's own prompt.
 */
export function sdedit(predict: EpsPredictor, x0: Tensor<'f32'>, t: number, schedule: NoiseSchedule, options: Omit<SampleOptions, 'startStep'> = {}): Tensor<'f32'> {
  schedule.checkTimestep(t, 'sdedit');
  const generator = options.generator ?? new Generator(options.seed ?? 0);
  const noisy = tidy(() => qSample(x0, new Array<number>(x0.shape[0] ?? 0).fill(t), randn(x0.shape, { device: x0.device, generator }), schedule));
  // By default DDIM spends its 50 steps per full trajectory pro rata on the part being redone.
  const steps = options.steps ?? (options.sampler === 'ddpm' ? t + 1 : Math.max(1, Math.round((50 * (t + 1)) / schedule.steps)));
  const result = denoise(predict, noisy, schedule, { ...options, startStep: t, steps, generator });
  noisy.dispose();
  return result;
}
