// The evaluator networks: cross-entropy against float64 and finite differences, the caption
// parser against the generator's own labels, the evaluator file format and its errors, and the
// shipped evaluators validated afresh on held-out figures and people (the numbers the README
// quotes): attribute accuracy, FD's floor and its growth with blur, noise and colour shift,
// identity verification ROC-AUC (also against same-caption twins), scorer retrieval and ranking.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as F from '../../lib/autograd/index.js';
import { backward } from '../../lib/autograd/backward.js';
import { Variable } from '../../lib/autograd/variable.js';
import { captionFor, figureAttributesAt } from '../../lib/data/figures.js';
import { ATTRIBUTE_HEADS, attributeLabels, attributesFromPrompt } from '../../lib/eval/attributes.js';
import { addNoise, blurImage, frechetDistance, shiftColor } from '../../lib/eval/metrics.js';
import { AttributeClassifier, CaptionScorer, IdentityEmbedder, defaultImageEncoderConfig, loadEvaluator, saveEvaluator, shippedEvaluator } from '../../lib/eval/networks.js';
import { rocAuc, validateAttributeClassifier, validateCaptionScorer, validateIdentityEmbedder, validationFigures } from '../../lib/eval/train.js';
import { fromArray, zeros } from '../../lib/tensor.js';
import { Tokenizer } from '../../lib/text/tokenizer.js';
import { checkMemoryGuards, numericGradient, randomArray, rng, testSeed } from '../helpers.js';

checkMemoryGuards();
const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-evaluators-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const shipped = shippedEvaluator;

describe('crossEntropy', () => {
  it('equals mean(logsumexp - z[y]) in float64 over labelled rows; the gradient matches finite differences', () => {
    const random = rng(testSeed);
    const rows = 6;
    const classes = 5;
    const z = randomArray(rows * classes, random, 3);
    const labels = [0, 4, -1, 2, 2, 1];
    const reference = (values: ArrayLike<number>): number => {
      let total = 0;
      let count = 0;
      for (let b = 0; b < rows; b++) {
        if (labels[b]! < 0) continue;
        const row = Array.from({ length: classes }, (_, c) => values[b * classes + c]!);
        const max = Math.max(...row);
        total += max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0)) - row[labels[b]!]!;
        count++;
      }
      return total / count;
    };
    const x = new Variable(fromArray(z, [rows, classes]), { requiresGrad: true });
    const loss = F.crossEntropy(x, labels);
    expect(Math.abs(loss.value.toArray()[0]! - reference(z))).toBeLessThan(1e-5);
    backward(loss);
    const x64 = Float64Array.from(z);
    const numeric = numericGradient(() => [reference(x64)], x64, [1]);
    const analytic = x.grad!.toArray();
    numeric.forEach((g, i) => expect(Math.abs(analytic[i]! - g)).toBeLessThan(1e-4));
    // The ignored row takes no gradient.
    for (let c = 0; c < classes; c++) expect(analytic[2 * classes + c]).toBe(0);
    x.value.dispose();
    x.grad!.dispose();
  });

  it('refuses labels out of range, a label count that does not match and logits that are not 2-D', () => {
    const logits = zeros([2, 3]);
    expect(() => F.crossEntropy(logits, [0, 3])).toThrow(/labels\[1\] is 3, expected an integer in \[0, 3\) or -1/);
    expect(() => F.crossEntropy(logits, [0])).toThrow(/1 labels for 2 rows/);
    expect(() => F.crossEntropy(zeros([6]), [0])).toThrow(/logits has shape \[6\], expected \[batch, classes\]/);
    logits.dispose();
  });
});

describe('attributes', () => {
  it('a caption parses back to exactly the labels of its figure (the bald have no hair colour)', () => {
    for (let i = 0; i < 300; i++) {
      const a = figureAttributesAt(testSeed, i);
      const labels = attributeLabels(a);
      const parsed = attributesFromPrompt(captionFor(a));
      ATTRIBUTE_HEADS.forEach((h, k) => expect(parsed[h.name] ?? -1, `${h.name} of "${captionFor(a)}"`).toBe(labels[k]));
    }
    expect(attributesFromPrompt('a photo of a dog')).toEqual({});
  });

  it('rocAuc: the probability a positive outranks a negative, ties half', () => {
    expect(rocAuc([3, 4], [1, 2])).toBe(1);
    expect(rocAuc([1], [2])).toBe(0);
    expect(rocAuc([1, 3], [2, 2])).toBe(0.5);
    expect(rocAuc([2], [2])).toBe(0.5);
    expect(() => rocAuc([], [1])).toThrow(/at least one positive and one negative/);
  });
});

describe('evaluator files', () => {
  it('round trip: each kind saves and loads to the same outputs; the kind is checked', () => {
    const config = { ...defaultImageEncoderConfig(16), depth: 1, width: 16, heads: 2 };
    const images = fromArray(randomArray(2 * 3 * 16 * 16, rng(testSeed + 1)), [2, 3, 16, 16]);
    const classifier = new AttributeClassifier(config, { seed: 3 });
    saveEvaluator(path.join(scratch, 'a.safetensors'), classifier);
    const back = loadEvaluator(path.join(scratch, 'a.safetensors'), 'attributes');
    expect(back.features(images).data).toEqual(classifier.features(images).data);
    const embedder = new IdentityEmbedder({ ...config, embedding: 8 }, { seed: 4 });
    saveEvaluator(path.join(scratch, 'i.safetensors'), embedder);
    expect(loadEvaluator(path.join(scratch, 'i.safetensors'), 'identity').embed(images).data).toEqual(embedder.embed(images).data);
    const tokenizer = Tokenizer.train(['a person in a red shirt', 'a bald person'], { vocabSize: 280 });
    const scorer = new CaptionScorer({ image: config, text: { contextLength: 8, width: 16, depth: 1, heads: 2, mlpRatio: 2 }, embedding: 8 }, tokenizer, { seed: 5 });
    saveEvaluator(path.join(scratch, 's.safetensors'), scorer);
    expect(loadEvaluator(path.join(scratch, 's.safetensors'), 'scorer').score('a bald person', images)).toEqual(scorer.score('a bald person', images));
    expect(() => loadEvaluator(path.join(scratch, 'a.safetensors'), 'identity')).toThrow(/is a "attributes" evaluator, expected "identity"/);
    for (const e of [classifier, back, embedder, scorer]) e.dispose();
    images.dispose();
  });

  it('bad input: a missing or corrupt file, images of the wrong size, prompts that do not match the images', () => {
    expect(() => loadEvaluator(path.join(scratch, 'none.safetensors'))).toThrow(/none\.safetensors does not exist/);
    writeFileSync(path.join(scratch, 'corrupt.safetensors'), 'not a safetensors file');
    expect(() => loadEvaluator(path.join(scratch, 'corrupt.safetensors'))).toThrow(/corrupt\.safetensors/);
    const classifier = new AttributeClassifier({ ...defaultImageEncoderConfig(16), depth: 1, width: 16, heads: 2 });
    const wrong = zeros([2, 3, 32, 32]);
    expect(() => classifier.predict(wrong)).toThrow(/images have shape \[2, 3, 32, 32\], expected \[N, 3, 16, 16\]/);
    const empty = zeros([0, 3, 16, 16]);
    expect(() => classifier.features(empty)).toThrow(/no images/);
    classifier.dispose();
    wrong.dispose();
    empty.dispose();
  });
});

describe('the shipped evaluators, validated on held-out figures and people', () => {
  let classifier: AttributeClassifier;
  let embedder: IdentityEmbedder;
  let scorer: CaptionScorer;
  beforeAll(() => {
    classifier = loadEvaluator(shipped('attributes'), 'attributes');
    embedder = loadEvaluator(shipped('identity'), 'identity');
    scorer = loadEvaluator(shipped('scorer'), 'scorer');
  });
  afterAll(() => {
    for (const e of [classifier, embedder, scorer]) e?.dispose();
  });

  it('are a few MB at most and carry the command that made them', () => {
    for (const kind of ['attributes', 'identity', 'scorer'] as const) {
      const e = loadEvaluator(shipped(kind));
      expect(e.parameterCount() * 4).toBeLessThan(4 * 2 ** 20);
      e.dispose();
    }
  });

  it('attribute classifier: per-attribute accuracy on 400 held-out figures', () => {
    const accuracy = validateAttributeClassifier(classifier, 400);
    console.log('held-out attribute accuracy', accuracy);
    // Measured on 1000 held-out figures when it was trained: 0.91 skin, 0.67 hair style (a
    // ponytail or a bald head is a pixel or two at 32x32), 0.93-1.0 the rest; bounds leave room
    // for the 400-figure sample.
    const floor: Record<string, number> = { skin: 0.86, hairStyle: 0.6 };
    for (const [name, value] of Object.entries(accuracy)) expect(value, name).toBeGreaterThanOrEqual(floor[name] ?? 0.9);
  });

  it('FD: two disjoint real sets are close; FD to real grows monotonically with blur, noise and colour shift', () => {
    const n = 300;
    const a = validationFigures(n, 32, 0);
    const b = validationFigures(n, 32, n);
    const reference = classifier.features(a.images);
    const floor = frechetDistance(classifier.features(b.images), reference);
    const degrade = (fn: (image: Float32Array, i: number) => Float32Array) => {
      const per = 3 * 32 * 32;
      const source = b.images.toArray();
      const out = new Float32Array(source.length);
      for (let i = 0; i < n; i++) out.set(fn(source.subarray(i * per, (i + 1) * per), i), i * per);
      const t = fromArray(out, [n, 3, 32, 32]);
      const fd = frechetDistance(classifier.features(t), reference);
      t.dispose();
      return fd;
    };
    const curves = {
      blur: [0.5, 1, 2].map((s) => degrade((im) => blurImage(im, 3, 32, 32, s))),
      noise: [0.05, 0.15, 0.4].map((s) => degrade((im, i) => addNoise(im, s, i + 1))),
      colour: [20, 60, 120].map((d) => degrade((im) => shiftColor(im, d))),
    };
    console.log('FD floor', floor, 'FD under degradation', curves);
    for (const [name, curve] of Object.entries(curves)) {
      expect(curve[0]!, `${name} weakest above the floor`).toBeGreaterThan(floor);
      for (let k = 1; k < curve.length; k++) expect(curve[k]!, `${name} step ${k}`).toBeGreaterThan(curve[k - 1]!);
      expect(curve[2]!, `${name} strongest`).toBeGreaterThan(3 * floor);
    }
    a.images.dispose();
    b.images.dispose();
  });

  it('identity embedder: verification ROC-AUC >= 0.95 on people never seen, and above chance against same-caption twins', () => {
    const result = validateIdentityEmbedder(embedder, 60, 3);
    console.log('identity verification on held-out people', result);
    // Measured on 100 people x 4 views when it was trained: 0.992, and 0.80 against twins.
    expect(result.auc).toBeGreaterThanOrEqual(0.95);
    expect(result.twinAuc).toBeGreaterThanOrEqual(0.7);
  });

  it('scorer: retrieves the caption\'s figure among 32 far above chance, and ranks real figures above degraded copies', () => {
    const result = validateCaptionScorer(scorer, 256);
    console.log('scorer on held-out figures', result);
    expect(result.retrievalTop1).toBeGreaterThan(0.3);
    expect(result.realAboveDegraded).toBeGreaterThanOrEqual(0.9);
  });
});
