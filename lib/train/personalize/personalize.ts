// A personal identity from one image (HyperDreamBooth, SPEC section 3):
//   1. the hypernetwork predicts LiDB weights theta_hat from the reference image;
//   2. theta_hat is merged into the base weights, a zero-initialised LoRA of rank r is added to the
//      same layers, and the plain diffusion loss is minimised for 40 steps on the reference image
//      alone (light augmentation: small crops and rotations, never a flip, which would move the
//      light), the rank-relaxed fast finetune;
//   3. the identity file holds group `identity` (the predicted LiDB weights, kind lidb) and group
//      `relax` (the rank-r LoRA), over the base's weightsHash: `sample --lora id.safetensors`.
// method 'lidb' trains LiDB weights from their initialisation instead (no hypernetwork; LiDB
// from zero), the row the paper compares the hypernetwork's initialisation against.
//
// The prompt of the reference: given, or 'auto' (default): "a photo of [V] person, <pose>,
// <background>, <light>" with the scene read by the attribute classifier, so the token binds to
// the person and not to the reference's scene; 'plain' uses "a photo of [V] person".
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { noGrad } from '../../autograd/variable.js';
import { ATTRIBUTE_HEADS } from '../../eval/attributes.js';
import { loadEvaluator, shippedEvaluator, type AttributeClassifier } from '../../eval/networks.js';
import { adapterTensors, describeAdapters, saveAdapterFile, weightsHash, type AdapterGroup } from '../../nn/adapter_file.js';
import { attachLora, bakeAdapters, detachAdapters, findLinears } from '../../nn/lora.js';
import { checkOutputFile } from '../../io/output_paths.js';
import { packageRoot } from '../../native.js';
import { TextToImage } from '../../models/text_to_image.js';
import { tidy } from '../../scope.js';
import { fromArray, type Tensor } from '../../tensor.js';
import { settingsWithDefaults } from '../loop/state.js';
import { fitIdentity } from './fit.js';
import { identityPrompt, identitySubject, readReference, type ReferenceSource, type Scene } from './identities.js';
import { attachIdentityLidb, checkHypernetFits, defaultLidbShape, lidbParameters, loadHypernet, personalizedLayerNames, personalizedLayers, type HypernetFile } from './lidb.js';

/** The hypernetwork shipped for models/base-tiny. */
export const shippedHypernet = path.join(packageRoot, 'models', 'hypernet-tiny', 'hypernet.safetensors');

export interface PersonalizeSettings {
  /** Finetune steps after the prediction (0: the hypernetwork's prediction alone). */
  steps: number;
  /** Rank of the relaxation LoRA. */
  rank: number;
  lr: number;
  batch: number;
  seed: number;
}

export const personalizeDefaults: PersonalizeSettings = { steps: 40, rank: 4, lr: 2e-3, batch: 4, seed: 0 };
/** The learning rate of LiDB from zero (its few numbers move slowly; tuned on validation identities). */
export const lidbFromZeroLr = 1e-2;

export interface PersonalizeOptions extends Partial<PersonalizeSettings> {
  /** The base: a checkpoint directory, or a loaded model (left as it was found). */
  base: string | TextToImage;
  /** The one image: a file, encoded bytes, or CHW pixels in [-1, 1] at the model's size. */
  reference: ReferenceSource;
  /** Where the identity file goes (default: nothing written; the result holds the tensors). */
  out?: string;
  /** 'hyperdreambooth' (default): predict, then finetune with a rank-r LoRA; 'lidb': LiDB from zero. */
  method?: 'hyperdreambooth' | 'lidb';
  /** A hypernetwork file or one already loaded (default: the shipped one). */
  hypernet?: string | HypernetFile;
  /** The reference's prompt: a string, 'auto' (default) or 'plain' (see above). */
  prompt?: string;
  /** Reads the reference's scene for prompt 'auto' (default: the shipped classifier). */
  classifier?: AttributeClassifier;
  log?: (line: string) => void;
}

export interface PersonalizeResult {
  file?: string;
  prompt: string;
  /** What was done to the reference file (resize, alpha, grey). */
  conversions: string[];
  losses: number[];
  seconds: { predict: number; finetune: number; total: number };
  /** Trained or predicted numbers per group, and the file's bytes of tensor data. */
  numbers: Record<string, number>;
  bytes: number;
}

/** The scene of `image` read by the attribute classifier, as a personalisation prompt. */
export function autoPrompt(classifier: AttributeClassifier, image: Float32Array, size: number): string {
  const t = fromArray(image, [1, 3, size, size]);
  try {
    const predicted = classifier.predict(t);
    const value = (name: string): string => {
      const k = ATTRIBUTE_HEADS.findIndex((h) => h.name === name);
      return ATTRIBUTE_HEADS[k]!.classes[predicted[k]![0]!]!;
    };
    return identityPrompt({ pose: value('pose'), background: value('background'), backgroundColor: value('backgroundColor'), lightDir: value('light') } as Scene);
  } finally {
    t.dispose();
  }
}

/** Makes an identity from one image; writes the identity file when options.out is given. */
export async function personalize(options: PersonalizeOptions): Promise<PersonalizeResult> {
  const op = 'personalize';
  const s = settingsWithDefaults(personalizeDefaults, options);
  const method = options.method ?? 'hyperdreambooth';
  if (method === 'lidb' && options.lr === undefined) s.lr = lidbFromZeroLr;
  if (method !== 'hyperdreambooth' && method !== 'lidb') throw new RangeError(`${op}: method must be 'hyperdreambooth' or 'lidb', got ${JSON.stringify(method)}`);
  if (!Number.isInteger(s.steps) || s.steps < 0) throw new RangeError(`${op}: steps must be an integer >= 0, got ${s.steps}`);
  if (method === 'lidb' && s.steps < 1) throw new RangeError(`${op}: LiDB from zero needs steps >= 1, got ${s.steps}`);
  if (!Number.isInteger(s.rank) || s.rank < 1) throw new RangeError(`${op}: rank must be an integer >= 1, got ${s.rank}`);
  if (options.out !== undefined) checkOutputFile(path.resolve(options.out), `${op}: out`);
  const started = performance.now();
  const owned = typeof options.base === 'string';
  const model = typeof options.base === 'string' ? TextToImage.load(options.base) : options.base;
  const ownedHypernet = method === 'hyperdreambooth' && (options.hypernet === undefined || typeof options.hypernet === 'string');
  let hypernet: HypernetFile | undefined;
  // Merging theta_hat changes the personalised layers' weights only: a model passed in gets them back.
  const saved = owned ? undefined : findLinears(model.dit, personalizedLayers).map(([, linear]) => [linear, linear.weight.value.clone()] as const);
  try {
    const base = weightsHash(model.dit);
    const size = model.imageSize;
    const { pixels, conversions } = await readReference(options.reference, size, 'personalize');
    for (const c of conversions) options.log?.(`${op}: reference image ${c}`);
    let prompt = options.prompt ?? 'auto';
    if (prompt === 'plain') prompt = identitySubject;
    else if (prompt === 'auto') {
      const classifier = options.classifier ?? loadEvaluator(shippedEvaluator('attributes'), 'attributes');
      try {
        prompt = autoPrompt(classifier, pixels, size);
      } finally {
        if (options.classifier === undefined) classifier.dispose();
      }
    }
    let lidbShape = defaultLidbShape;
    if (method === 'hyperdreambooth') {
      hypernet = typeof options.hypernet === 'object' ? options.hypernet : loadHypernet(options.hypernet ?? shippedHypernet);
      checkHypernetFits(hypernet, model.dit, base, op);
      lidbShape = hypernet.meta.lidb;
    }
    const adapters = attachIdentityLidb(model.dit, lidbShape);
    const groups: AdapterGroup[] = [];
    const tensors: Record<string, Tensor> = {};
    const numbers: Record<string, number> = {};
    /** Copies the attached adapters into the file's tensors as group `name`. */
    const keepGroup = (name: string, lidbSeed?: number): void => {
      groups.push(describeAdapters(model.dit, { name, pattern: personalizedLayers, ...(lidbSeed !== undefined ? { lidbSeed } : {}) }));
      for (const [key, t] of Object.entries(adapterTensors(model.dit, personalizedLayers, name))) {
        tensors[key] = t.clone();
        numbers[name] = (numbers[name] ?? 0) + t.size;
      }
    };
    let losses: number[] = [];
    let predictSeconds = 0;
    const examples = { images: [pixels], prompts: [prompt] };
    const fit = { steps: s.steps, batch: s.batch, lr: s.lr, seed: s.seed, augment: { cropScale: 0.92, maxRotation: 4 } };
    if (method === 'hyperdreambooth') {
      const predictStart = performance.now();
      tidy(() =>
        noGrad(() => {
          const theta = hypernet!.hypernet.forward(fromArray(pixels, [1, 3, size, size]));
          hypernet!.hypernet.split(theta).forEach((w, i) => {
            adapters[i]!.aTrain.value.copy_(w.aTrain.value);
            adapters[i]!.bTrain.value.copy_(w.bTrain.value);
          });
        }),
      );
      predictSeconds = (performance.now() - predictStart) / 1000;
      keepGroup('identity', lidbShape.seed);
      if (s.steps > 0) {
        // Merge theta_hat, then relax it with a zero-initialised rank-r LoRA on the same layers.
        bakeAdapters(model.dit, personalizedLayers);
        const lora = attachLora(model.dit, { pattern: personalizedLayers, rank: s.rank });
        const parameters = [...lora.entries()].flatMap(([layer, a]) => [[`${layer}.down`, a.down], [`${layer}.up`, a.up]] as [string, typeof a.down][]);
        losses = await fitIdentity(op, model, parameters, examples, fit);
        keepGroup('relax');
      }
    } else {
      losses = await fitIdentity(op, model, lidbParameters(adapters, personalizedLayerNames(model.dit)), examples, fit);
      keepGroup('identity', lidbShape.seed);
    }
    detachAdapters(model.dit, personalizedLayers);
    const bytes = Object.values(tensors).reduce((n, t) => n + 4 * t.size, 0);
    if (options.out !== undefined) {
      mkdirSync(path.dirname(path.resolve(options.out)), { recursive: true });
      saveAdapterFile(path.resolve(options.out), tensors, {
        base,
        groups,
        extra: { method, prompt, steps: String(s.steps), rank: String(s.rank), ...(hypernet ? { hypernet: path.basename(hypernet.file) } : {}) },
      });
    }
    for (const t of Object.values(tensors)) t.dispose();
    const total = (performance.now() - started) / 1000;
    return { ...(options.out !== undefined ? { file: path.resolve(options.out) } : {}), prompt, conversions, losses, seconds: { predict: predictSeconds, finetune: total - predictSeconds, total }, numbers, bytes };
  } finally {
    if (ownedHypernet) hypernet?.hypernet.dispose();
    if (owned) model.dispose();
    else {
      // A model passed in leaves as it came: no adapters, its own weights (the merge is undone).
      detachAdapters(model.dit, personalizedLayers);
      noGrad(() => {
        for (const [linear, original] of saved!) linear.weight.value.copy_(original);
      });
      for (const [, original] of saved!) original.dispose();
    }
  }
}
