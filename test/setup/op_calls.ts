// Runs in every test file's process: after the file, writes the addon's op call counts (the
// process's totals so far, by pid) and the backends available here to $REALTUNE_OP_CALLS_DIR,
// which test/coverage.test.ts reads once the whole suite has run.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll } from 'vitest';

export interface OpCallsRecord {
  available: string[];
  calls: Record<string, Record<string, number>>;
}

const dir = process.env.REALTUNE_OP_CALLS_DIR;
if (dir) {
  afterAll(async () => {
    // Imported here, not above, so the addon loads after the test file's own imports.
    const { native } = await import('../../lib/native.js');
    const record: OpCallsRecord = {
      available: native.devices().filter((d) => d.available).map((d) => d.type),
      calls: native.opCalls(),
    };
    writeFileSync(path.join(dir, `${process.pid}.json`), JSON.stringify(record));
  });
}
