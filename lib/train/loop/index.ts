// The one training engine: every trainer (base, DPO stages, personalisation) is a thin use of it.
export { runTraining, checkOptimOptions, optimSettings, type TrainingJob, type OptimOptions, type RunOptions, type StepReport as LoopStepReport, type MicroContext, type MicroResult, type LoopResult, type CheckpointPayload, type RestoredCheckpoint } from './engine.js';
export { RandomStreams, type StreamsState } from './streams.js';
export { readTrainerState, checkSettings, type TrainerState, type JsonSettings } from './state.js';
export { batchDrawer, phaseOrderSeed, type ExampleStream, type DataSource, type BatchDrawer } from './batches.js';
export { worldCommunicator, isRankZero, onRankZero, requireOneProcess, shardOf, sliceOf, inShard, shardedGenerator, ShardedGenerator, checkSameRun, launcherEvidence, type Communicator, type Shard, type ReduceOp } from './dist.js';
