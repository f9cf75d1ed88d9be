// A DSD adapter: what turns the base text-to-image model into Diffusion Self-Distillation's
// text+image-to-image model. A LoRA on the denoiser's attention and MLP layers plus the two-frame
// conditioner (lib/nn/dsd.ts), attached to a base model and saved as one safetensors file:
//   tensors   dsd.condition.weight, dsd.frame, and the LoRA factors by layer (adapterStateDict)
//   metadata  format "realtune-dsd", the base's weights hash, the LoRA pattern, rank and scale,
//             the guidance defaults and free-form provenance
// A file made for another base is refused (it would add its update to weights it never saw).
import { existsSync } from 'node:fs';
import type { Variable } from '../../autograd/variable.js';
import { atomicWriteFile } from '../../io/atomic.js';
import { parseJsonMetadata } from '../../io/json_fields.js';
import { encodeSafetensors, loadSafetensors } from '../../io/safetensors.js';
import type { TextToImage } from '../../models/text_to_image.js';
import { weightsHash } from '../../nn/adapter_file.js';
import { DsdConditioner } from '../../nn/dsd.js';
import { attachLora, detachAdapters, loadAdapterStateDict, type LoraAdapter } from '../../nn/lora.js';
import { Generator } from '../../ops/random.js';
import type { Tensor } from '../../tensor.js';
import { packageRoot } from '../../native.js';
import path from 'node:path';

export const dsdFormat = 'realtune-dsd';
const dsdVersion = 1;
const conditionerPrefix = 'dsd.';

/** The denoiser layers the DSD LoRA adapts: self- and cross-attention projections and the MLP. */
export const dsdLoraPattern = '^blocks\\.\\d+\\.((attn|cross)\\.(q|k|v|out)|mlp\\.(fc1|fc2))$';

/** The shipped DSD adapter for the shipped base (models/base-tiny). */
export const shippedDsd = path.join(packageRoot, 'models', 'dsd-tiny', 'dsd.safetensors');

export interface DsdShape {
  rank: number;
  /** Multiplies the LoRA update. */
  scale: number;
  pattern: string;
}

export interface DsdMeta extends DsdShape {
  /** weightsHash() of the base model the adapter was trained on. */
  base: string;
  /** Guidance the adapter was tuned with (sampling defaults). */
  cfgText: number;
  cfgImage: number;
  /** Free-form provenance: the command, the pairs, the training settings. */
  extra?: Record<string, string>;
}

/** A DSD adapter attached to a base model (its LoRA lives in model.dit's layers). */
export class DsdAdapter {
  #attached = true;

  constructor(
    readonly model: TextToImage,
    readonly conditioner: DsdConditioner,
    /** This adapter's LoRA by layer (other adapters on the model are not its own). */
    readonly lora: ReadonlyMap<string, LoraAdapter>,
    readonly shape: DsdShape,
  ) {}

  /** The trained parameters by name: the conditioner's (dsd.*) and the LoRA factors, named as adapterStateDict names them. */
  parameters(): [string, Variable][] {
    return [
      ...[...this.conditioner.namedParameters()].map(([n, p]): [string, Variable] => [`${conditionerPrefix}${n}`, p]),
      ...[...this.lora].flatMap(([layer, adapter]) => [...adapter.namedParameters(`${layer}.${adapter.kind}`)]),
    ];
  }

  /** Number of trained values. */
  get size(): number {
    return this.parameters().reduce((n, [, p]) => n + p.size, 0);
  }

  /** Writes the adapter file atomically. */
  save(file: string, meta: Omit<DsdMeta, keyof DsdShape | 'base'> & { base?: string }): void {
    const tensors: Record<string, Tensor> = Object.fromEntries(this.parameters().map(([n, p]) => [n, p.value]));
    const full: DsdMeta = { ...this.shape, base: meta.base ?? this.model.weightsHash(), cfgText: meta.cfgText, cfgImage: meta.cfgImage, ...(meta.extra ? { extra: meta.extra } : {}) };
    atomicWriteFile(file, encodeSafetensors(tensors, { metadata: { format: dsdFormat, version: String(dsdVersion), meta: JSON.stringify(full) } }));
  }

  /** Removes the LoRA from the model and frees the conditioner: the model is the base again. */
  detach(): void {
    if (!this.#attached) return;
    this.#attached = false;
    detachAdapters(this.model.dit, new RegExp(this.shape.pattern));
    this.conditioner.dispose();
  }
}

/** Attaches a fresh DSD adapter (zero update: the model is still exactly the base). */
export function attachDsd(model: TextToImage, shape: Partial<DsdShape> & { seed?: number } = {}): DsdAdapter {
  const full: DsdShape = { rank: shape.rank ?? 16, scale: shape.scale ?? 1, pattern: shape.pattern ?? dsdLoraPattern };
  if (!Number.isInteger(full.rank) || full.rank < 1) throw new RangeError(`dsd: rank must be an integer >= 1, got ${full.rank}`);
  const lora = attachLora(model.dit, { pattern: new RegExp(full.pattern), rank: full.rank, scale: full.scale, generator: new Generator(shape.seed ?? 0) });
  return new DsdAdapter(model, DsdConditioner.for(model.dit), lora, full);
}

export interface LoadDsdOptions {
  /** Apply a file trained on other base weights (default: that is an error). */
  allowOtherBase?: boolean;
}

/** Reads a DSD adapter file's metadata and tensors, checked (errors name the file and the field). */
function readDsdFile(file: string): { meta: DsdMeta; tensors: Record<string, Tensor> } {
  if (!existsSync(file)) throw new Error(`dsd: adapter file ${file} does not exist (the shipped one is models/dsd-tiny/dsd.safetensors)`);
  const { tensors, metadata } = loadSafetensors(file, { dtype: 'f32' });
  try {
    if (metadata.format !== dsdFormat) throw new Error(`dsd: ${file} has metadata format ${JSON.stringify(metadata.format)}, expected "${dsdFormat}" (a DSD adapter written by \`realtune dsd train\`)`);
    const meta = parseJsonMetadata(`dsd: ${file}`, 'meta', metadata.meta) as DsdMeta;
    if (typeof meta !== 'object' || meta === null || typeof meta.base !== 'string' || typeof meta.pattern !== 'string') {
      throw new Error(`dsd: ${file}: metadata field meta must be { base, rank, scale, pattern, cfgText, cfgImage }, got ${metadata.meta}`);
    }
    if (!Number.isInteger(meta.rank) || meta.rank < 1) throw new Error(`dsd: ${file}: meta.rank must be an integer >= 1, got ${JSON.stringify(meta.rank)}`);
    for (const key of ['scale', 'cfgText', 'cfgImage'] as const) {
      if (typeof meta[key] !== 'number' || !Number.isFinite(meta[key])) throw new Error(`dsd: ${file}: meta.${key} must be a finite number, got ${JSON.stringify(meta[key])}`);
    }
    return { meta, tensors };
  } catch (err) {
    for (const t of Object.values(tensors)) t.dispose();
    throw err;
  }
}

/** Attaches the DSD adapter of `file` to `model`; `detach()` makes it the base again. */
export function loadDsd(file: string, model: TextToImage, options: LoadDsdOptions = {}): DsdAdapter & { meta: DsdMeta } {
  const { meta, tensors } = readDsdFile(file);
  try {
    const base = model.weightsHash();
    if (meta.base !== base && !options.allowOtherBase) {
      throw new Error(`dsd: ${file} was trained for base ${meta.base.slice(0, 12)}, this model is ${base.slice(0, 12)}; train one for this base with \`realtune dsd train\` (or pass allowOtherBase / --allow-other-base)`);
    }
    const adapter = attachDsd(model, meta);
    try {
      const conditioner: Record<string, Tensor> = {};
      const lora: Record<string, Tensor> = {};
      for (const [name, t] of Object.entries(tensors)) {
        if (name.startsWith(conditionerPrefix)) conditioner[name.slice(conditionerPrefix.length)] = t;
        else lora[name] = t;
      }
      try {
        adapter.conditioner.loadStateDict(conditioner);
        loadAdapterStateDict(model.dit, lora);
      } catch (err) {
        throw new Error(`dsd: ${file} does not fit this model: ${(err as Error).message}`);
      }
    } catch (err) {
      adapter.detach();
      throw err;
    }
    return Object.assign(adapter, { meta });
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}
