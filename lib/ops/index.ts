// Every tensor op: forward kernels and, where differentiable, their backward kernels. The
// autograd versions (recording the tape) are in lib/autograd/functions.ts.
export * from './activation.js';
export * from './attention.js';
export * from './cast.js';
export * from './channel_stat_loss.js';
export * from './clamp.js';
export * from './dpo_loss.js';
export * from './elementwise.js';
export * from './embedding.js';
export * from './layernorm.js';
export * from './lidb.js';
export * from './lora_linear.js';
export * from './matmul.js';
export * from './optim.js';
export * from './permute.js';
export * from './random.js';
export * from './reduce.js';
export * from './sign.js';
export * from './softmax.js';
