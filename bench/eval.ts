// Evaluation benchmark (measured, never asserted): what the curriculum's image pools and every
// evaluation will cost on this machine.
//   sampler     images/s of the shipped base (DDIM, guidance), guidance batched (prompts and
//               negatives in one forward pass, what TextToImage.generate does) against two
//               forward passes per step (diffusion.guidedPredictor), at several batch sizes
//   evaluators  images/s through the attribute classifier's features, the identity embedder and
//               the caption scorer
// Run: npm run bench -- eval [--steps 10] [--json out.json]
import path from 'node:path';
import { noGrad } from '../lib/autograd/variable.js';
import { guidedPredictor, sample } from '../lib/diffusion/sampler.js';
import { loadEvaluator } from '../lib/eval/networks.js';
import { validationFigures } from '../lib/eval/train.js';
import { packageRoot } from '../lib/native.js';
import { tidy } from '../lib/scope.js';
import type { Tensor } from '../lib/tensor.js';
import { TextToImage } from '../lib/models/text_to_image.js';
import { flagValue, machineInfo, pairedRatio, printTable, time, type MachineInfo } from './harness.js';

export interface EvalBenchResult {
  machine: MachineInfo;
  steps: number;
  sampler: { batch: number; batchedImagesPerSecond: number; twoPassImagesPerSecond: number; speedup: number }[];
  evaluators: { name: string; images: number; imagesPerSecond: number }[];
}

const prompt = 'a person with tan skin and short black hair wearing a red shirt and blue trousers, walking, in front of a green park, lit from the left';

export async function run(args: string[]): Promise<EvalBenchResult> {
  const steps = Number(flagValue(args, '--steps') ?? 10);
  const model = TextToImage.load(path.join(packageRoot, 'models', 'base-tiny'));
  const sampler: EvalBenchResult['sampler'] = [];
  for (const batch of [8, 32]) {
    const batched = () => model.generate({ prompts: prompt, n: batch, steps, seed: 1 }).dispose();
    const twoPass = () =>
      noGrad(() => {
        const encode = (p: string) => tidy(() => {
          const e = model.encodePrompts(Array<string>(batch).fill(p));
          return { tokens: e.tokens.value, pooled: e.pooled.value, lengths: e.lengths };
        });
        const cond = encode(prompt);
        const negative = encode('');
        const predict = (xt: Tensor<'f32'>, t: number, text: typeof cond) => model.predictEps(xt, t, text).value;
        sample(guidedPredictor(predict, cond, negative, 5), [batch, 3, model.imageSize, model.imageSize], model.schedule, { steps, seed: 1 }).dispose();
        for (const e of [cond, negative]) for (const t of Object.values(e)) t.dispose();
      });
    const seconds = time(batched, { warmup: 1, runs: 3 }).median;
    const ratio = pairedRatio(batched, twoPass, 2);
    sampler.push({ batch, batchedImagesPerSecond: batch / seconds, twoPassImagesPerSecond: batch / (seconds * ratio), speedup: ratio });
  }
  model.dispose();
  printTable(
    ['batch', `images/s (${steps} DDIM steps, batched guidance)`, 'images/s (two passes)', 'speed-up'],
    sampler.map((s) => [s.batch, s.batchedImagesPerSecond.toFixed(1), s.twoPassImagesPerSecond.toFixed(1), `${s.speedup.toFixed(2)}x`]),
  );

  const count = 512;
  const { images, captions } = validationFigures(count);
  const evaluators: EvalBenchResult['evaluators'] = [];
  const classifier = loadEvaluator(path.join(packageRoot, 'models', 'eval', 'attributes.safetensors'), 'attributes');
  const embedder = loadEvaluator(path.join(packageRoot, 'models', 'eval', 'identity.safetensors'), 'identity');
  const scorer = loadEvaluator(path.join(packageRoot, 'models', 'eval', 'scorer.safetensors'), 'scorer');
  for (const [name, fn] of [
    ['attribute classifier (features)', () => classifier.features(images)],
    ['attribute classifier (all heads)', () => classifier.predict(images)],
    ['identity embedder', () => embedder.embed(images)],
    ['caption scorer (image + prompt)', () => scorer.score(captions, images)],
  ] as const) {
    const seconds = time(() => void fn(), { warmup: 1, runs: 3 }).median;
    evaluators.push({ name, images: count, imagesPerSecond: count / seconds });
  }
  for (const e of [classifier, embedder, scorer]) e.dispose();
  images.dispose();
  printTable(['evaluator', 'images/s'], evaluators.map((e) => [e.name, e.imagesPerSecond.toFixed(0)]));
  return { machine: machineInfo(), steps, sampler, evaluators };
}
