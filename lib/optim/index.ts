export { AdamW, type AdamWConfig, type NamedParameter } from './adamw.js';
export { EMA } from './ema.js';
export { constantWithWarmup, cosineWithWarmup, lrSchedule, type LrSchedule, type LrScheduleKind } from './schedule.js';
