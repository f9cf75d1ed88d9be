// One process of `npm run bench -- dist` (bench/dist.ts starts it as one process or under
// mpirun): base training of the `tiny` preset on procedural figures, every step timed; then the
// gradients' allreduce alone (one flat buffer of every trained parameter, as the engine sends
// it each step) for the tiny and the small preset, timed. Rank 0 prints one JSON line.
import { TextToImage } from '../lib/models/text_to_image.js';
import { zeros } from '../lib/tensor.js';
import { trainBase } from '../lib/train/base.js';
import { loadTrainingData, trainTokenizer } from '../lib/train/data.js';
import { worldCommunicator } from '../lib/train/loop/dist.js';
import { info } from '../lib/info.js';
import { median } from './harness.js';

const [steps, warmup, batch, allreduces] = process.argv.slice(2).map(Number) as [number, number, number, number];
const comm = worldCommunicator();
const data = { kind: 'figures', count: 256, seed: 0 } as const;
const tokenizer = trainTokenizer((await loadTrainingData(data, null)).map((e) => e.caption), 1024);

const model = TextToImage.create(tokenizer, { preset: 'tiny', seed: 1 });
const stepSeconds: number[] = [];
await trainBase(model, (size) => loadTrainingData(data, size), { steps: warmup + steps, batch, lr: 1e-4, seed: 1, onStep: (r) => stepSeconds.push(r.seconds) });

/** Median seconds of summing `values` floats across the ranks, as one buffer. */
function allreduceSeconds(values: number): number {
  const buffer = zeros([values]);
  const times: number[] = [];
  try {
    for (let i = 0; i < allreduces; i++) {
      comm.barrier('bench: before an allreduce');
      const started = performance.now();
      comm.allreduceTensors([buffer], 'mean', 'bench: the gradients');
      times.push((performance.now() - started) / 1000);
    }
  } finally {
    buffer.dispose();
  }
  return median(times);
}

const tinyParameters = model.dit.parameterCount({ trainableOnly: true });
model.dispose();
const small = TextToImage.create(tokenizer, { preset: 'small', seed: 1 });
const smallParameters = small.dit.parameterCount({ trainableOnly: true });
small.dispose();
const result = {
  ranks: comm.size,
  threads: info().threads,
  batch,
  stepSeconds: median(stepSeconds.slice(warmup)),
  tiny: { parameters: tinyParameters, allreduceSeconds: comm.size > 1 ? allreduceSeconds(tinyParameters) : 0 },
  small: { parameters: smallParameters, allreduceSeconds: comm.size > 1 ? allreduceSeconds(smallParameters) : 0 },
};
if (comm.rank === 0) console.log(`DIST-BENCH ${JSON.stringify(result)}`);
