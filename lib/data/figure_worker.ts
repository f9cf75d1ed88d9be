// A render thread of FigureStream: renders the ranges it is sent and transfers their bytes back.
import { parentPort, workerData } from 'node:worker_threads';
import { renderFigureRange } from './figure_stream.js';

const options = workerData as { size: number; seed: number; identities?: number };

parentPort!.on('message', (request: { id: number; start: number; count: number }) => {
  try {
    const bytes = renderFigureRange(options, request.start, request.count);
    parentPort!.postMessage({ id: request.id, bytes }, [bytes.buffer as ArrayBuffer]);
  } catch (err) {
    parentPort!.postMessage({ id: request.id, error: err instanceof Error ? err.message : String(err) });
  }
});
