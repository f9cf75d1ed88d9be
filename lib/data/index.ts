// Training data: the dataset interface, batching, file-backed datasets and the procedural figures.
export * from './dataset.js';
export * from './figures.js';
