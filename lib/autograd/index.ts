// Autograd: Variables, the tape, backward, and differentiable functions.
export { Variable, noGrad, enableGrad, isGradEnabled, record, asVariable, type Input, type Node, type BackwardFn, type VariableOptions } from './variable.js';
export { backward, release, type BackwardOptions } from './backward.js';
export * from './functions.js';
export { loraLinear } from './lora_linear.js';
export { dpoLoss, channelStatLoss, crossEntropy, type DpoLossTerms, type CrossEntropyOptions } from './losses.js';
