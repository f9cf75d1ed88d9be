// Files: safetensors, checkpoints, images (through sharp) and atomic writes.
export * from './atomic.js';
export * from './checkpoint.js';
export * from './images.js';
export * from './safetensors.js';
