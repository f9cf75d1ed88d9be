// A grid for the README (bench/images/base-comparison.png): for held-out prompts, the real figure, then each checkpoint's sample
// (same noise seed), one row per prompt.
//   node --import tsx scripts/compare-grid.ts OUT.png PROMPTS CKPT [CKPT ...]
import { heldOutSet } from '../lib/eval/report.js';
import { saveImageGrid } from '../lib/io/images.js';
import { fromArray } from '../lib/tensor.js';
import { TextToImage } from '../lib/models/text_to_image.js';

const [out, countText, ...checkpoints] = process.argv.slice(2);
const count = Number(countText);
const size = 32;
const per = 3 * size * size;
const { prompts, images: real } = heldOutSet(count, size);
const columns = [real.toArray()];
for (const dir of checkpoints) {
  const model = TextToImage.load(dir);
  const images = model.generate({ prompts, steps: 50, cfg: 5, seed: 1 });
  columns.push(images.toArray());
  images.dispose();
  model.dispose();
}
real.dispose();
const data = new Float32Array(count * columns.length * per);
const labels: string[] = [];
for (let i = 0; i < count; i++) {
  columns.forEach((column, c) => {
    data.set(column.subarray(i * per, (i + 1) * per), (i * columns.length + c) * per);
    labels.push(c === 0 ? prompts[i]!.replace(/, lit from .*/, '') : '');
  });
}
await saveImageGrid(out!, fromArray(data, [count * columns.length, 3, size, size]), { cols: columns.length, labels });
console.log(`wrote ${out}: real | ${checkpoints.join(' | ')}`);
