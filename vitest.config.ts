import { tmpdir } from 'node:os';
import path from 'node:path';
import { defineConfig } from 'vitest/config';

const buildDir = process.env.REALTUNE_BUILD_DIR ?? 'build-test';
// Every test process writes its op call counts here (test/setup/op_calls.ts); test/coverage.test.ts
// reads them after the rest of the suite. One directory per vitest run: the config is evaluated
// in the main process, whose pid names the run.
const opCallsDir = path.join(tmpdir(), `realtune-op-calls-${process.pid}`);

export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 300_000,
    hookTimeout: 300_000,
    setupFiles: ['test/setup/op_calls.ts'],
    env: {
      // The test build carries cpu + cuda-emu (+ cuda when nvcc is present): see scripts/build-native.mjs.
      REALTUNE_ADDON: process.env.REALTUNE_ADDON ?? `${buildDir}/Release/realtune.node`,
      REALTUNE_CHECK_MEMORY: '1',
      REALTUNE_DEVICE: 'cpu',
      REALTUNE_OP_CALLS_DIR: opCallsDir,
    },
    // Two groups, one after the other: the suite, then the coverage check over what it ran.
    projects: [
      {
        extends: true,
        test: {
          name: 'suite',
          include: ['test/**/*.test.ts'],
          exclude: ['test/coverage.test.ts'],
          globalSetup: ['test/setup/op_calls_dir.ts'],
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'coverage',
          include: ['test/coverage.test.ts'],
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
