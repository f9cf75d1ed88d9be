// Files: safetensors, checkpoints, images (through sharp), atomic writes and checks of output paths.
export * from './atomic.js';
export * from './checkpoint.js';
export * from './images.js';
export * from './output_paths.js';
export * from './safetensors.js';
