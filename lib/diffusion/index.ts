export { NoiseSchedule, type BetaScheduleKind } from './schedule.js';
export { qSample, denoise, sample, sdedit, guidedPredictor, type EpsPredictor, type SampleOptions, type SamplerKind } from './sampler.js';
