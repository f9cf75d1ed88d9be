import { defineConfig } from 'vitest/config';

const buildDir = process.env.REALTUNE_BUILD_DIR ?? 'build-test';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 300_000,
    hookTimeout: 300_000,
    env: {
      // The test build carries cpu + cuda-emu (+ cuda when nvcc is present): see scripts/build-native.mjs.
      REALTUNE_ADDON: process.env.REALTUNE_ADDON ?? `${buildDir}/Release/realtune.node`,
      REALTUNE_CHECK_MEMORY: '1',
      REALTUNE_DEVICE: 'cpu',
    },
  },
});
