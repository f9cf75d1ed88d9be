// A render thread of FigureStream: renders the figures it is sent and transfers their bytes back.
import { parentPort, workerData } from 'node:worker_threads';
import { renderFigures } from './figure_stream.js';

const spec = workerData as { size: number; seed: number; identities?: number };

parentPort!.on('message', (request: { id: number; indices: number[] }) => {
  try {
    const bytes = renderFigures(spec, request.indices);
    parentPort!.postMessage({ id: request.id, bytes }, [bytes.buffer as ArrayBuffer]);
  } catch (err) {
    parentPort!.postMessage({ id: request.id, error: err instanceof Error ? err.message : String(err) });
  }
});
