// Pre-optimisation (HyperDreamBooth, SPEC section 3): LiDB weights for each of M training
// identities, fitted with the diffusion loss on a few views of the person ("a photo of [V]
// person, <scene>"), stored as a data set of weights the hypernetwork learns to predict.
//
// Layout of the output directory (resumable at identity granularity: each identity is written
// atomically when it is done, and a run started again skips the done ones):
//   preopt.json              settings, the base's weightsHash, the LiDB shape and the layer names
//   identities/000042.safetensors   identity 42's LiDB weights (an adapter file, group `identity`)
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { noGrad } from '../../autograd/variable.js';
import { writeJsonAtomic } from '../../io/atomic.js';
import { adapterTensors, describeAdapters, readAdapterFile, saveAdapterFile, weightsHash } from '../../nn/adapter_file.js';
import { TextToImage } from '../../models/text_to_image.js';
import type { Tensor } from '../../tensor.js';
import { settingsWithDefaults } from '../loop/state.js';
import { fitIdentity } from './fit.js';
import { identityViews } from './identities.js';
import { attachIdentityLidb, defaultLidbShape, lidbParameters, personalizedLayerNames, personalizedLayers, type LidbShape } from './lidb.js';

export const preoptFormat = 'realtune-preopt';

export interface PreoptSettings {
  /** Training identities 0..identities-1. */
  identities: number;
  /** Views rendered per identity (the first is its reference image). */
  views: number;
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  lidb: LidbShape;
}

export const preoptDefaults: Omit<PreoptSettings, 'lidb'> = { identities: 64, views: 4, steps: 120, batch: 4, lr: 1e-2, seed: 0 };

export interface PreoptOptions extends Partial<Omit<PreoptSettings, 'lidb'>> {
  /** Base checkpoint directory. */
  base: string;
  out: string;
  lidb?: LidbShape;
  /** Stop after this many identities were fitted in this call (tests of resuming). */
  stopAfter?: number;
  log?: (line: string) => void;
  onIdentity?: (done: number, total: number, loss: number) => void;
}

export interface PreoptRecord {
  format: string;
  base: string;
  settings: PreoptSettings;
  layers: string[];
}

export function identityFile(dir: string, index: number): string {
  return path.join(dir, 'identities', `${String(index).padStart(6, '0')}.safetensors`);
}

function checkSettings(op: string, s: PreoptSettings): void {
  const int = (name: string, v: number, min: number): void => {
    if (!Number.isInteger(v) || v < min) throw new RangeError(`${op}: ${name} must be an integer >= ${min}, got ${v}`);
  };
  int('identities', s.identities, 1);
  int('views', s.views, 1);
  int('steps', s.steps, 1);
  int('batch', s.batch, 1);
  int('seed', s.seed, 0);
  if (!(s.lr > 0 && Number.isFinite(s.lr))) throw new RangeError(`${op}: lr must be finite and > 0, got ${s.lr}`);
}

/** Reads preopt.json of a pre-optimisation directory. */
export function readPreoptRecord(dir: string): PreoptRecord {
  const file = path.join(dir, 'preopt.json');
  if (!existsSync(file)) throw new Error(`preopt: ${dir} holds no preopt.json (make one with \`realtune personalize preopt --out ${dir}\`)`);
  let record: PreoptRecord;
  try {
    record = JSON.parse(readFileSync(file, 'utf8')) as PreoptRecord;
  } catch (err) {
    throw new Error(`preopt: ${file} is not valid JSON (${(err as Error).message})`);
  }
  if (record.format !== preoptFormat) throw new Error(`preopt: ${file} has format ${JSON.stringify(record.format)}, expected "${preoptFormat}"`);
  return record;
}

/** Fits LiDB weights for every training identity not yet done; returns how many are done. */
export async function preoptimize(options: PreoptOptions): Promise<{ dir: string; done: number; fitted: number; seconds: number }> {
  const op = 'preopt';
  const settings: PreoptSettings = { ...settingsWithDefaults(preoptDefaults, options), lidb: options.lidb ?? defaultLidbShape };
  checkSettings(op, settings);
  const started = performance.now();
  const model = TextToImage.load(options.base);
  try {
    const base = weightsHash(model.dit);
    const layers = personalizedLayerNames(model.dit);
    const record: PreoptRecord = { format: preoptFormat, base, settings, layers };
    const recordFile = path.join(options.out, 'preopt.json');
    if (existsSync(recordFile)) {
      const found = readPreoptRecord(options.out);
      // The identity count may grow (more identities later); everything else must match.
      const same = (r: PreoptRecord): string => JSON.stringify({ ...r, settings: { ...r.settings, identities: 0 } });
      if (same(found) !== same(record)) {
        throw new Error(`${op}: ${options.out} was made with other settings or another base (${JSON.stringify(found.settings)}, base ${found.base.slice(0, 12)}); use another --out`);
      }
    }
    mkdirSync(path.join(options.out, 'identities'), { recursive: true });
    writeJsonAtomic(recordFile, record);
    const adapters = attachIdentityLidb(model.dit, settings.lidb);
    const initial = adapters.map((a) => [a.aTrain.value.clone(), a.bTrain.value.clone()] as const);
    const parameters = lidbParameters(adapters, layers);
    let done = 0;
    let fitted = 0;
    try {
      for (let index = 0; index < settings.identities; index++) {
        const file = identityFile(options.out, index);
        if (existsSync(file)) {
          done++;
          continue;
        }
        if (options.stopAfter !== undefined && fitted >= options.stopAfter) break;
        noGrad(() =>
          adapters.forEach((a, i) => {
            a.aTrain.value.copy_(initial[i]![0]);
            a.bTrain.value.copy_(initial[i]![1]);
          }),
        );
        const views = identityViews('train', index, settings.views, model.imageSize);
        const losses = await fitIdentity(op, model, parameters, { images: views.map((v) => v.pixels), prompts: views.map((v) => v.prompt) }, {
          steps: settings.steps,
          batch: settings.batch,
          lr: settings.lr,
          seed: settings.seed + index,
        });
        const tail = losses.slice(-Math.min(20, losses.length));
        const loss = tail.reduce((s, v) => s + v, 0) / tail.length;
        const group = describeAdapters(model.dit, { name: 'identity', pattern: personalizedLayers, lidbSeed: settings.lidb.seed });
        saveAdapterFile(file, adapterTensors(model.dit, personalizedLayers, 'identity') as Record<string, Tensor>, {
          base,
          groups: [group],
          extra: { domain: 'train', index: String(index), loss: loss.toFixed(5), prompt: views[0]!.prompt },
        });
        done++;
        fitted++;
        options.onIdentity?.(done, settings.identities, loss);
      }
    } finally {
      for (const pair of initial) for (const t of pair) t.dispose();
    }
    return { dir: options.out, done, fitted, seconds: (performance.now() - started) / 1000 };
  } finally {
    model.dispose();
  }
}

/**
 * The pre-optimised weights of identities 0..count-1 as hypernetwork targets: per identity a
 * Float32Array [layers * (a + b)], per layer A_train then B_train, in the record's layer order.
 */
export function readPreoptWeights(dir: string, count?: number): { record: PreoptRecord; weights: Float32Array[] } {
  const record = readPreoptRecord(dir);
  const { a, b } = record.settings.lidb;
  const n = count ?? record.settings.identities;
  const weights: Float32Array[] = [];
  for (let index = 0; index < n; index++) {
    const file = identityFile(dir, index);
    if (!existsSync(file)) throw new Error(`preopt: ${file} is missing: identity ${index} is not pre-optimised yet (run \`realtune personalize preopt --out ${dir}\` again to finish)`);
    const adapter = readAdapterFile(file);
    try {
      if (adapter.base !== record.base) throw new Error(`preopt: ${file} was fitted on base ${String(adapter.base).slice(0, 12)}, the run's base is ${record.base.slice(0, 12)}`);
      const theta = new Float32Array(record.layers.length * (a + b));
      record.layers.forEach((layer, i) => {
        const parts = adapter.factors.get('identity')?.get(layer);
        if (parts === undefined) throw new Error(`preopt: ${file} has no weights for layer ${layer}`);
        theta.set(parts.aTrain!.toArray(), i * (a + b));
        theta.set(parts.bTrain!.toArray(), i * (a + b) + a);
      });
      weights.push(theta);
    } finally {
      adapter.dispose();
    }
  }
  return { record, weights };
}
