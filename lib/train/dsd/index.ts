// Diffusion Self-Distillation (SPEC section 4): self-generated pairs and their curator, the DSD
// adapter (LoRA + two-frame conditioner) and its training, and zero-shot sampling from a reference.
export { DsdAdapter, attachDsd, loadDsd, dsdFormat, dsdLoraPattern, shippedDsd, type DsdShape, type DsdMeta, type LoadDsdOptions } from './adapter.js';
export { dsdLoss, dsdLossStep, type DsdBatch, type DsdLossTerms } from './objective.js';
export { dsdGenerate, dsdSample, type DsdGenerateOptions, type DsdSampleOptions, type DsdGuidance } from './generate.js';
export {
  dsdPrompt,
  describedPrompt,
  identityCurator,
  onnxCurator,
  functionCurator,
  makeSelfPairs,
  loadSelfPairs,
  realPairs,
  selfPairDefaults,
  type PairCurator,
  type SelfPairOptions,
  type SelfPairs,
  type DsdPair,
  type DsdPairRecord,
} from './pairs.js';
export { trainDsd, dsdTrainDefaults, hashPairs, type TrainDsdOptions, type TrainDsdResult, type DsdTrainSettings } from './train.js';
