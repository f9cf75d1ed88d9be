// Global setup of the suite project: a fresh, empty directory for this run's op call counts
// (test/setup/op_calls.ts), removed when vitest closes, after the coverage project has read it.
import { mkdirSync, rmSync } from 'node:fs';
import type { TestProject } from 'vitest/node';

export default function setup(project: TestProject): () => void {
  const dir = project.config.env.REALTUNE_OP_CALLS_DIR;
  if (!dir) throw new Error('vitest.config.ts sets test.env.REALTUNE_OP_CALLS_DIR');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return () => rmSync(dir, { recursive: true, force: true });
}
