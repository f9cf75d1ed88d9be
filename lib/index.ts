// realtune: the public API.
export { devices, resolveDevice, getDefaultDevice, setDefaultDevice, type DeviceType, type DeviceRequest, type DeviceInfo } from './device.js';
export { Tensor, empty, zeros, ones, full, fromArray, numel, type DType, type Shape, type CreateOptions } from './tensor.js';
export { tidy, keep } from './scope.js';
export { info, setNumThreads, version } from './info.js';
export * from './ops/index.js';
export { Variable, backward, release, noGrad, enableGrad, isGradEnabled, type BackwardOptions } from './autograd/index.js';
/** Differentiable functions (recording the autograd tape), named like the raw ops. */
export * as F from './autograd/index.js';
export * as nn from './nn/index.js';
export * as diffusion from './diffusion/index.js';
export * as optim from './optim/index.js';
export * as io from './io/index.js';
export * as data from './data/index.js';
export * as text from './text/index.js';
/** Measuring images: evaluators, Fréchet distance, adherence, scorer, identity, hue, sharpness, ONNX. */
export * as evaluate from './eval/index.js';
export { TextToImage, applyLoraFile, type ApplyLoraOptions, type GenerateOptions, type CreateTextToImageOptions, type TextToImageConfig, type PredictionKind, type LoadOptions, type SaveOptions } from './models/text_to_image.js';
export {
  readAdapterFile,
  saveAdapterFile,
  weightsHash,
  adapterTensors,
  describeAdapters,
  AdapterFile,
  type AdapterGroup,
  type AdapterFileMeta,
  type LoraGroupOverride,
  type LoraSelection,
  type LoraSource,
} from './nn/adapter_file.js';
export { trainBase, resolveStages, type BaseTrainOptions, type StepReport, type Stage, type Example as TrainExample } from './train/base.js';
export { dpoObjective, statMatchObjective, trainDpo, checkDpoOptions, dpoDefaults, defaultBeta, denoiserAttention, textEncoderAttention, type DpoStepReport, type PreferencePairs, type DpoObjectiveOptions, type DpoObjective, type StatMatchBatch, type StatMatchOptions, type DpoTrainOptions } from './train/dpo.js';
export { loadPreferences, figurePreferences, manifestPreferences, type PreferenceExample, type PreferenceSpec } from './train/preferences.js';
/** HG-DPO's easy/normal/hard curriculum: runCurriculum and its pieces (pools, SDRecon, pairs, scorers, stages). */
export * as curriculum from './train/curriculum/index.js';
/** HyperDreamBooth: LiDB, pre-optimisation, the hypernetwork, the rank-relaxed fast finetune, measures. */
export * as personalize from './train/personalize/index.js';
/** Diffusion Self-Distillation: self-generated pairs, the two-frame adapter, zero-shot sampling. */
export * as dsd from './train/dsd/index.js';
/** The one training engine under every trainer (run loop, random streams, resumable state, data-parallel ranks). */
export * as engine from './train/loop/index.js';
