// HG-DPO's curriculum (SPEC section 2): the run, and its pieces for SDK users who compose their own.
export { runCurriculum, resolveStageSettings, loadRealImages, readPromptFile, tableRows, formatTable, curriculumDefaults, type CurriculumOptions, type CurriculumResult, type InferenceRules, type RealSource, type TableRow } from './run.js';
export { generatePools, generateReconstructions, reconTimestep, type PoolOptions, type ReconOptions, type RealImage, type SamplingSettings } from './generate.js';
export { buildStagePairs, naivePairs, loadPairs, describePairs, type PairRef, type StagePairs } from './pairs.js';
export { captionPoolScorer, onnxPoolScorer, functionPoolScorer, scoreImages, type PoolScorer } from './scorer.js';
export { runStage, loadStartModel, textLoraTimesteps, type StageName, type StageRun, type StageSettings } from './stage.js';
export { ImageStore, storeFormat, type StoreRecord, type StoreHeader } from './store.js';
