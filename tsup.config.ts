import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'lib/index.ts', cli: 'lib/cli/main.ts', 'figure-worker': 'lib/data/figure_worker.ts', 'folder-worker': 'lib/data/folder_worker.ts' },
  format: ['esm', 'cjs'],
  dts: { entry: { index: 'lib/index.ts' } },
  shims: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  external: ['sharp', 'onnxruntime-node'],
});
