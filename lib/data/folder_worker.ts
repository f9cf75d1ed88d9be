// A decode thread of FolderStream: decodes and resizes the image files it is sent and transfers
// their bytes back, with the files that failed. It loads sharp only (no tensor addon).
import { parentPort, workerData } from 'node:worker_threads';
import { decodeImageFiles } from '../io/image_decode.js';

const { size } = workerData as { size: number };

parentPort!.on('message', (request: { id: number; files: string[] }) => {
  decodeImageFiles(request.files, size).then(
    (decoded) => parentPort!.postMessage({ id: request.id, decoded }, [decoded.bytes.buffer as ArrayBuffer]),
    (err: unknown) => parentPort!.postMessage({ id: request.id, error: err instanceof Error ? err.message : String(err) }),
  );
});
