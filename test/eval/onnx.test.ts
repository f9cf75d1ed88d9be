// The ONNX adapter on the hand-encoded fixtures of scripts/make-onnx-fixture.mjs: outputs against
// a float64 evaluation of the same network in TS, shape checks, bad files, and the features fed to
// frechetDistance. onnxruntime-node is a devDependency: if it cannot be loaded, these tests fail.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { addNoise, blurImage, frechetDistance } from '../../lib/eval/metrics.js';
import { OnnxModel, onnxFeatureExtractor, onnxScorer } from '../../lib/eval/onnx.js';
import { fromArray } from '../../lib/tensor.js';
import { checkMemoryGuards, expectClose, randomArray, rng, testSeed } from '../helpers.js';

checkMemoryGuards();

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const fixtures = path.join(root, 'test/fixtures/eval');
const featuresModel = path.join(fixtures, 'features.onnx');
const batchOneModel = path.join(fixtures, 'features-batch1.onnx');
const scorerModel = path.join(fixtures, 'scorer.onnx');
const vectorsModel = path.join(fixtures, 'vectors.onnx');

const scratch = mkdtempSync(path.join(tmpdir(), 'realtune-onnx-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const size = 32;
const perImage = 3 * size * size;
const featureDim = 16;
const pooledSize = 3 * 8 * 8;

/** The fixture network in float64 from the formulas in make-onnx-fixture.mjs (weights rounded to float32 as stored). */
function referenceFeatures(images: Float32Array, count: number, pixel: (value: number, channel: number) => number = (v) => v): Float64Array {
  const weight = (k: number, j: number) => Math.fround(0.15 * Math.sin(0.37 * k + 1.3 * j + 0.5));
  const bias = (j: number) => Math.fround(0.1 * Math.cos(j));
  const out = new Float64Array(count * featureDim);
  const pooled = new Float64Array(pooledSize);
  for (let n = 0; n < count; n++) {
    // AveragePool 4x4 stride 4, then Flatten: index (c * 8 + y) * 8 + x.
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 8; y++) {
        for (let x = 0; x < 8; x++) {
          let sum = 0;
          for (let dy = 0; dy < 4; dy++) for (let dx = 0; dx < 4; dx++) sum += pixel(images[n * perImage + c * size * size + (4 * y + dy) * size + 4 * x + dx]!, c);
          pooled[(c * 8 + y) * 8 + x] = sum / 16;
        }
      }
    }
    for (let j = 0; j < featureDim; j++) {
      let sum = bias(j);
      for (let k = 0; k < pooledSize; k++) sum += pooled[k]! * weight(k, j);
      out[n * featureDim + j] = Math.tanh(sum);
    }
  }
  return out;
}

function randomImages(count: number, random: () => number): Float32Array {
  return randomArray(count * perImage, random);
}

describe('OnnxModel', () => {
  it('loads a model through onnxruntime-node and reports its declared shapes and names', async () => {
    const model = await OnnxModel.load(featuresModel);
    expect(model.inputName).toBe('images');
    expect(model.outputName).toBe('features');
    expect(model.inputShape).toEqual(['N', 3, 32, 32]);
    expect(model.outputShape).toEqual(['N', featureDim]);
    await model.dispose();
  });

  it(`run equals a float64 evaluation of the same network, from a Tensor or a Float32Array (seed ${testSeed})`, async () => {
    const random = rng(testSeed + 20);
    const count = 5;
    const images = randomImages(count, random);
    const expected = referenceFeatures(images, count);
    const model = await OnnxModel.load(featuresModel);
    const batch = fromArray(images, [count, 3, size, size]);
    const fromTensor = await model.run(batch);
    batch.dispose();
    expect(fromTensor.count).toBe(count);
    expect(fromTensor.dim).toBe(featureDim);
    expectClose(fromTensor.data, expected, { rtol: 1e-5, atol: 1e-6 }, 'from a Tensor');
    expectClose((await model.run(images)).data, expected, { rtol: 1e-5, atol: 1e-6 }, 'from a Float32Array, shape from the model');
    expectClose((await model.run(images, [count, 3, size, size])).data, expected, { rtol: 1e-5, atol: 1e-6 }, 'from a Float32Array with its shape');
    await model.dispose();
  });

  it(`batchSize splits the run without changing the result; normalize maps pixels to [0, 1] then (x - mean) / std (seed ${testSeed})`, async () => {
    const random = rng(testSeed + 21);
    const count = 5;
    const images = randomImages(count, random);
    const batched = await OnnxModel.load(featuresModel, { batchSize: 2 });
    expectClose((await batched.run(images)).data, referenceFeatures(images, count), { rtol: 1e-5, atol: 1e-6 }, 'batchSize 2');
    const mean = [0.48, 0.46, 0.41] as const;
    const std = [0.27, 0.26, 0.28] as const;
    const normalized = await OnnxModel.load(featuresModel, { normalize: { mean, std }, batchSize: 3 });
    const expected = referenceFeatures(images, count, (v, c) => ((v + 1) / 2 - mean[c]!) / std[c]!);
    expectClose((await normalized.run(images)).data, expected, { rtol: 1e-5, atol: 1e-6 }, 'normalized');
    await Promise.all([batched.dispose(), normalized.dispose()]);
  });

  it(`a model with a fixed batch of 1 runs image by image; a batchSize that contradicts it is refused (seed ${testSeed})`, async () => {
    const random = rng(testSeed + 24);
    const count = 3;
    const images = randomImages(count, random);
    const model = await OnnxModel.load(batchOneModel);
    expect(model.inputShape).toEqual([1, 3, 32, 32]);
    const batch = fromArray(images, [count, 3, size, size]);
    expectClose((await model.run(batch)).data, referenceFeatures(images, count), { rtol: 1e-5, atol: 1e-6 }, 'three runs of one');
    batch.dispose();
    await model.dispose();
    await expect(OnnxModel.load(batchOneModel, { batchSize: 2 })).rejects.toThrow(`onnx: ${batchOneModel}: input 'images' has a fixed batch of 1, got batchSize 2`);
  });

  it('images of the wrong shape: one error naming the file, the declared and the actual shape', async () => {
    const model = await OnnxModel.load(featuresModel);
    const large = fromArray(new Float32Array(2 * 3 * 64 * 64), [2, 3, 64, 64]);
    await expect(model.run(large)).rejects.toThrow(`onnx: ${featuresModel}: input 'images' is declared [N, 3, 32, 32], got images of shape [2, 3, 64, 64]`);
    large.dispose();
    await expect(model.run(new Float32Array(perImage + 5))).rejects.toThrow(`onnx: ${featuresModel}: a Float32Array of ${perImage + 5} values is not a batch of shape [?, 3, 32, 32]`);
    await expect(model.run(new Float32Array(perImage), [1, 32, 32, 3])).rejects.toThrow(
      `onnx: ${featuresModel}: input 'images' is declared [N, 3, 32, 32], got images of shape [1, 32, 32, 3]`,
    );
    await expect(model.run(new Float32Array(0), [0, 3, 32, 32])).rejects.toThrow('got images of shape [0, 3, 32, 32]');
    await model.dispose();
  });

  it('a model whose input is not an image batch is refused at load, naming the file and its shape', async () => {
    await expect(OnnxModel.load(vectorsModel)).rejects.toThrow(`onnx: ${vectorsModel}: input 'vectors' has shape [N, 12], expected an image batch [N, 3, H, W]`);
  });

  it('missing and corrupt files: errors naming the file', async () => {
    const missing = path.join(scratch, 'missing.onnx');
    await expect(OnnxModel.load(missing)).rejects.toThrow(`onnx: cannot read ${missing}: ENOENT`);
    const garbage = path.join(scratch, 'garbage.onnx');
    writeFileSync(garbage, 'this is not a protobuf');
    await expect(OnnxModel.load(garbage)).rejects.toThrow(`onnx: ${garbage} is not a model onnxruntime can load:`);
    const truncated = path.join(scratch, 'truncated.onnx');
    writeFileSync(truncated, readFileSync(featuresModel).subarray(0, 4000));
    await expect(OnnxModel.load(truncated)).rejects.toThrow(`onnx: ${truncated} is not a model onnxruntime can load:`);
  });

  it('unknown input/output names and bad options are refused, listing what there is', async () => {
    await expect(OnnxModel.load(featuresModel, { inputName: 'pixels' })).rejects.toThrow(`onnx: ${featuresModel} has no input 'pixels'; its inputs are 'images'`);
    await expect(OnnxModel.load(featuresModel, { outputName: 'logits' })).rejects.toThrow(`onnx: ${featuresModel} has no output 'logits'; its outputs are 'features'`);
    await expect(OnnxModel.load(featuresModel, { batchSize: 0 })).rejects.toThrow('onnx: batchSize must be an integer >= 1, got 0');
    await expect(OnnxModel.load(featuresModel, { normalize: { mean: [0.5, 0.5] as never, std: [1, 1, 1] } })).rejects.toThrow('onnx: normalize.mean must be 3 finite numbers (R, G, B), got [0.5,0.5]');
    await expect(OnnxModel.load(featuresModel, { normalize: { mean: [0.5, 0.5, 0.5], std: [1, 0, 1] } })).rejects.toThrow('onnx: normalize.std must be positive, got [1,0,1]');
  });
});

describe('onnxFeatureExtractor and onnxScorer', () => {
  it(`the extractor's features feed frechetDistance: 0 against themselves, the float64 reference's value against degraded images (seed ${testSeed})`, async () => {
    const random = rng(testSeed + 22);
    const count = 24;
    const images = randomImages(count, random);
    const degraded = new Float32Array(images.length);
    for (let n = 0; n < count; n++) {
      const one = images.subarray(n * perImage, (n + 1) * perImage);
      degraded.set(addNoise(blurImage(one, 3, size, size, 1), 0.3, testSeed % 1000 + n), n * perImage);
    }
    const extract = await onnxFeatureExtractor(featuresModel);
    const a = await extract(images);
    const b = await extract(fromArray(degraded, [count, 3, size, size]));
    // Zero up to round-off: an eigenvalue near 0 carries an error of about 1e-16 x the covariance's
    // scale, and its square root (about 1e-8 x the scale's root) does not cancel.
    let variance = 0;
    for (let j = 0; j < a.dim; j++) {
      let mean = 0;
      for (let i = 0; i < a.count; i++) mean += a.data[i * a.dim + j]! / a.count;
      for (let i = 0; i < a.count; i++) variance += (a.data[i * a.dim + j]! - mean) ** 2 / (a.count - 1);
    }
    expect(frechetDistance(a, a), `total variance ${variance}`).toBeLessThan(a.dim * Math.sqrt(1e-15 * variance));
    const expected = frechetDistance(
      { data: referenceFeatures(images, count), count, dim: featureDim },
      { data: referenceFeatures(degraded, count), count, dim: featureDim },
    );
    expect(expected).toBeGreaterThan(1e-3);
    expect(frechetDistance(a, b)).toBeCloseTo(expected, 5);
  });

  it(`the scorer gives one score per image (the mean of the features here); a feature model is not a scorer (seed ${testSeed})`, async () => {
    const random = rng(testSeed + 23);
    const count = 4;
    const images = randomImages(count, random);
    const features = referenceFeatures(images, count);
    const expected = Array.from({ length: count }, (_, n) => features.subarray(n * featureDim, (n + 1) * featureDim).reduce((s, v) => s + v, 0) / featureDim);
    const score = await onnxScorer(scorerModel);
    const scores = await score(images);
    expect(scores).toBeInstanceOf(Float32Array);
    expectClose(scores, expected, { rtol: 1e-5, atol: 1e-6 }, 'scores');
    await expect(onnxScorer(featuresModel)).rejects.toThrow(`onnx: ${featuresModel}: output 'features' has shape [N, 16], expected one score per image ([N] or [N, 1])`);
  });
});

describe('the fixtures and the runtime', () => {
  it('the committed fixtures are what scripts/make-onnx-fixture.mjs writes', () => {
    const fresh = path.join(scratch, 'fixtures');
    execFileSync(process.execPath, [path.join(root, 'scripts/make-onnx-fixture.mjs'), fresh]);
    for (const file of ['features.onnx', 'features-batch1.onnx', 'scorer.onnx', 'vectors.onnx']) {
      expect(readFileSync(path.join(fresh, file)).equals(readFileSync(path.join(fixtures, file))), file).toBe(true);
    }
  });

  it('without onnxruntime-node, loading a model says how to install it', () => {
    // A child process whose module resolution fails for onnxruntime-node exactly as Node's does
    // when the package is absent (the real one stays installed for the other tests).
    const hook = path.join(scratch, 'hide-onnxruntime.mjs');
    writeFileSync(
      hook,
      `export async function resolve(specifier, context, next) {
        if (specifier !== 'onnxruntime-node') return next(specifier, context);
        const error = new Error("Cannot find package 'onnxruntime-node' imported from " + context.parentURL);
        error.code = 'ERR_MODULE_NOT_FOUND';
        throw error;
      }`,
    );
    const register = `import { register } from 'node:module'; register(${JSON.stringify(pathToFileURL(hook).href)});`;
    const script = `
      const { OnnxModel } = await import(${JSON.stringify(pathToFileURL(path.join(root, 'lib/eval/onnx.ts')).href)});
      try { await OnnxModel.load(${JSON.stringify(featuresModel)}); console.log('loaded'); } catch (error) { console.log(error.message); }`;
    const output = execFileSync(process.execPath, ['--import', 'tsx', '--import', `data:text/javascript,${encodeURIComponent(register)}`, '--input-type=module', '-e', script], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(output).toContain('onnx: onnxruntime-node is not installed (an optional peer dependency of realtune, needed only for ONNX models); install it with `npm install onnxruntime-node`');
  });
});
