// Starts one of lib/data's worker threads: the script compiled next to the bundle
// (dist/<name>-worker.js), or, running from the TypeScript sources (tests, tsx), the source
// lib/data/<name>_worker.ts loaded through tsx's API (a worker does not inherit the parent's
// module hooks).
import { Worker } from 'node:worker_threads';

export function startDataWorker(name: 'figure' | 'folder', workerData: unknown): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL(`./${name}-worker.js`, import.meta.url), { workerData });
  const source = new URL(`./${name}_worker.ts`, import.meta.url).href;
  const loader = `import('tsx/esm/api').then(({ tsImport }) => tsImport(${JSON.stringify(source)}, ${JSON.stringify(import.meta.url)}))`;
  return new Worker(loader, { eval: true, workerData });
}
