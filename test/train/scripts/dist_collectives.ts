// Every collective of lib/train/loop/dist.ts's Communicator on each rank of an mpirun job
// (test/train/dist.test.ts runs it with 2 ranks); each rank prints one JSON line of what it got.
import { fromArray } from '../../../lib/tensor.js';
import { worldCommunicator } from '../../../lib/train/loop/dist.js';

const comm = worldCommunicator();
const r = comm.rank;
const sum = Float64Array.of(r + 1, 10 * (r + 1));
comm.allreduce(sum, 'sum', 'test: sum');
const mean = Float32Array.of(r + 1);
comm.allreduce(mean, 'mean', 'test: mean');
const max = Float64Array.of(r === 0 ? 5 : -5, r);
comm.allreduce(max, 'max', 'test: max');
const broadcast = Uint8Array.of(r, r, r);
comm.broadcast(broadcast, 1, 'test: broadcast from rank 1');
const gathered = comm.allgather({ rank: r, text: 'x'.repeat(r * 3) }, 'test: allgather');
const bytes = comm.allgatherBytes(new Uint8Array(r + 1).fill(7 + r), 'test: allgatherBytes').map((b) => Array.from(b));
const a = fromArray([r, 2 * r, 3 * r], [3]);
const b = fromArray([r + 1], [1]);
comm.allreduceTensors([a, b], 'sum', 'test: tensors');
const tensorsSum = [...a.toArray(), ...b.toArray()];
const c = fromArray([r, 2 * r + 1], [2]);
comm.allreduceTensors([c], 'mean', 'test: tensors');
const tensorsMean = [...c.toArray()];
for (const t of [a, b, c]) t.dispose();
comm.barrier('test: barrier');
console.log(`COLLECTIVES ${JSON.stringify({ rank: r, size: comm.size, sum: [...sum], mean: [...mean], max: [...max], broadcast: [...broadcast], gathered, bytes, tensorsSum, tensorsMean })}`);
