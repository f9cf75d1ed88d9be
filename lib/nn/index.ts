// Neural-network modules: Module and layers, LoRA and LiDB adapters, the text encoder and the DiT.
export { Module, ModuleList, type StateDict, type LoadStateDictOptions, type LoadStateDictResult } from './module.js';
export {
  Linear,
  LinearAdapter,
  LayerNorm,
  Dropout,
  Embedding,
  MLP,
  Attention,
  TransformerBlock,
  timestepEmbedding,
  type AdapterFactors,
  type LinearOptions,
  type LayerNormOptions,
  type AttentionForwardOptions,
} from './layers.js';
export {
  LoraAdapter,
  attachLora,
  findLinears,
  adapters,
  setAdaptersEnabled,
  withAdaptersDisabled,
  adapterDelta,
  mergeAdapters,
  unmergeAdapters,
  bakeAdapters,
  detachAdapters,
  adapterStateDict,
  loadAdapterStateDict,
  type AttachLoraOptions,
} from './lora.js';
export { LidbAdapter, attachLidb, type AttachLidbOptions } from './lidb.js';
export { TextEncoder, type TextEncoderConfig, type TextEncoding } from './text_encoder.js';
export {
  DiT,
  DiTBlock,
  FinalLayer,
  TimestepEmbedder,
  ditConfig,
  sincosPositions2d,
  resizeGrid,
  type DiTConfig,
  type DiTPreset,
  type DiTForwardOptions,
  type TextCondition,
  type BlockDropout,
} from './dit.js';
export * as init from './init.js';
