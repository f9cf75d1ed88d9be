// How much a checkpoint's prediction depends on each kind of word in its prompt: for held-out
// figures noised to t, the rms change of the model's clean-image estimate x0_hat (and of its eps,
// the number an eps-model's loss sees) when one word of the caption is swapped (shirt colour,
// skin, trousers, background colour, pose). A model that ignores a word at the timesteps where
// the image's colours and layout are decided cannot follow it, whatever its sampler does.
//
//   node --import tsx scripts/word-sensitivity.ts CKPT [CKPT ...]
import { noGrad } from '../lib/autograd/variable.js';
import { qSample } from '../lib/diffusion/sampler.js';
import { captionFor, figureAttributesAt, renderFigure, SHIRT_COLORS, SKIN_TONES, TROUSER_COLORS, POSES, type FigureAttributes } from '../lib/data/figures.js';
import { VALIDATION_SEED } from '../lib/eval/train.js';
import { Generator, randn } from '../lib/ops/random.js';
import { tidy } from '../lib/scope.js';
import { fromArray } from '../lib/tensor.js';
import { TextToImage } from '../lib/models/text_to_image.js';

const swaps: Record<string, (a: FigureAttributes) => FigureAttributes> = {
  shirt: (a) => ({ ...a, shirtColor: other(Object.keys(SHIRT_COLORS), a.shirtColor) as FigureAttributes['shirtColor'] }),
  skin: (a) => ({ ...a, skinTone: other(Object.keys(SKIN_TONES), a.skinTone) as FigureAttributes['skinTone'] }),
  trousers: (a) => ({ ...a, trouserColor: other(Object.keys(TROUSER_COLORS), a.trouserColor) as FigureAttributes['trouserColor'] }),
  background: (a) => ({ ...a, backgroundColor: a.backgroundColor === 'green' ? 'olive' : a.background === 'park' ? 'green' : a.backgroundColor === 'grey' ? 'pink' : 'grey' }),
  pose: (a) => ({ ...a, pose: other(POSES, a.pose) as FigureAttributes['pose'] }),
};

function other<T>(values: readonly T[], current: T): T {
  return values[(values.indexOf(current) + 3) % values.length]!;
}

function rms(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s / a.length);
}

const count = 32;
const timesteps = [300, 500, 700, 850, 950];
for (const dir of process.argv.slice(2)) {
  const model = TextToImage.load(dir);
  const attributes = Array.from({ length: count }, (_, i) => figureAttributesAt(VALIDATION_SEED, i));
  const size = model.imageSize;
  const per = 3 * size * size;
  const pixels = new Float32Array(count * per);
  attributes.forEach((a, i) => pixels.set(renderFigure(a, size), i * per));
  console.log(`\n${dir} (predicts ${model.prediction}): rms change of x0_hat / eps when one word is swapped`);
  console.log(['t', ...Object.keys(swaps)].map((h) => h.padStart(16)).join(''));
  for (const t of timesteps) {
    const cells = Object.values(swaps).map((swap) =>
      noGrad(() =>
        tidy(() => {
          const x0 = fromArray(pixels, [count, 3, size, size]);
          const noise = randn(x0.shape, { generator: new Generator(t) });
          const xt = qSample(x0, Array<number>(count).fill(t), noise, model.schedule);
          const estimate = (prompts: string[]) => {
            const eps = model.predictEps(xt, t, model.encodePrompts(prompts)).value.toArray();
            const { signal, noise: level } = model.schedule.signalNoise(t);
            const xtArray = xt.toArray();
            return { eps, x0: eps.map((e, i) => (xtArray[i]! - level * e) / signal) };
          };
          const a = estimate(attributes.map(captionFor));
          const b = estimate(attributes.map((x) => captionFor(swap(x))));
          return `${rms(a.x0, b.x0).toFixed(3)} / ${rms(a.eps, b.eps).toFixed(4)}`;
        }),
      ),
    );
    console.log([String(t), ...cells].map((c) => c.padStart(16)).join(''));
  }
  model.dispose();
}
