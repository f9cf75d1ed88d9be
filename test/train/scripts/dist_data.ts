// The curriculum's data made by however many ranks run this (test/train/dist.test.ts runs it as
// one process and under `mpirun -np 2`): pools and SDRecon reconstructions of a few figures with
// one prompt or image per unit (so the units split over the ranks), and the evaluation's images
// of a few held-out prompts in batches of 2, written to OUT/eval.bin by rank 0.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { baseImagesFor } from '../../../lib/eval/report.js';
import { TextToImage } from '../../../lib/models/text_to_image.js';
import { packageRoot } from '../../../lib/native.js';
import { generatePools, generateReconstructions } from '../../../lib/train/curriculum/generate.js';
import { loadRealImages } from '../../../lib/train/curriculum/run.js';
import { captionPoolScorer } from '../../../lib/train/curriculum/scorer.js';
import { isRankZero } from '../../../lib/train/loop/dist.js';

const out = process.argv[2]!;
const model = TextToImage.load(path.join(packageRoot, 'models', 'base-tiny'));
const scorer = captionPoolScorer();
const reals = (await loadRealImages({ kind: 'figures', count: 3, seed: 5 }, model.imageSize, () => {})).slice(0, 3);
const prompts = reals.map((r) => r.prompt);
await generatePools(model, prompts, path.join(out, 'pools'), scorer, { poolSize: 2, promptsPerBatch: 1, steps: 2, cfg: 3, seed: 1 });
await generateReconstructions(model, reals, path.join(out, 'recon'), scorer, { levels: 7, imagesPerBatch: 1, steps: 3, cfg: 3, seed: 2 });
const images = baseImagesFor(model, { prompts: 5, steps: 2, cfg: 3, batch: 2 });
const data = images.toArray();
if (isRankZero()) writeFileSync(path.join(out, 'eval.bin'), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
images.dispose();
scorer.dispose?.();
model.dispose();
