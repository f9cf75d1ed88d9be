// The LiDB layers of a personalisation and the files that hold them.
//
// LiDB (SPEC section 3) sits on every attention projection (q, k, v, out) of the denoiser (self
// and cross attention) and of the text encoder. Every identity of one base uses the same frozen
// bases (one seed for the run), so an identity is only its A_train and B_train numbers, and a
// hypernetwork predicts exactly those.
//
// Files:
//   identity file   an adapter file (lib/nn/adapter_file.ts) with group `identity` (kind lidb,
//                   with the seed) and, after the rank-relaxed finetune, group `relax` (kind lora,
//                   rank r) over the same layers: `sample --lora id.safetensors` applies both.
//   hypernetwork    safetensors of the network with metadata: its config, the base's weightsHash,
//                   the LiDB seed, a, b and the layer names it predicts in order.
import { existsSync } from 'node:fs';
import type { Variable } from '../../autograd/variable.js';
import { atomicWriteFile } from '../../io/atomic.js';
import { parseJsonMetadata } from '../../io/json_fields.js';
import { encodeSafetensors, loadSafetensors } from '../../io/safetensors.js';
import type { DiT } from '../../nn/dit.js';
import { checkHyperNetworkConfig, HyperNetwork, type HyperNetworkConfig } from '../../nn/hypernet.js';
import { attachLidb, type LidbAdapter } from '../../nn/lidb.js';
import { findLinears } from '../../nn/lora.js';
import { lidbDefaults } from '../../ops/lidb.js';

/** Every attention projection of the denoiser (self and cross) and of the text encoder. */
export const personalizedLayers = /^(?:blocks\.\d+\.(?:attn|cross)|text\.blocks\.\d+\.attn)\.(?:q|k|v|out)$/;

/** The LiDB seed every identity of a run shares (its frozen bases). */
export const defaultLidbSeed = 0x11db;

export interface LidbShape {
  seed: number;
  a: number;
  b: number;
}

export const defaultLidbShape: LidbShape = { seed: defaultLidbSeed, a: lidbDefaults.a, b: lidbDefaults.b };

/** The personalised layers of `dit`, in module order (the order of the hypernetwork's tokens). */
export function personalizedLayerNames(dit: DiT): string[] {
  return findLinears(dit, personalizedLayers).map(([name]) => name);
}

/** Attaches LiDB to every personalised layer; returns the adapters in layer order. */
export function attachIdentityLidb(dit: DiT, shape: LidbShape): LidbAdapter[] {
  return [...attachLidb(dit, { pattern: personalizedLayers, seed: shape.seed, a: shape.a, b: shape.b }).values()];
}

/** The trained parameters of `adapters` (one per layer of `layers`, in order), named `<layer>.aTrain` / `.bTrain`. */
export function lidbParameters(adapters: readonly LidbAdapter[], layers: readonly string[]): [string, Variable][] {
  return adapters.flatMap((a, i) => [
    [`${layers[i]}.aTrain`, a.aTrain],
    [`${layers[i]}.bTrain`, a.bTrain],
  ]);
}

export const hypernetFormat = 'realtune-hypernetwork';

export interface HypernetMeta {
  /** weightsHash() of the base the LiDB weights apply to. */
  base: string;
  lidb: LidbShape;
  /** The personalised layers in token order. */
  layers: string[];
  /** Free-form provenance (the command, the pre-optimisation run). */
  extra?: Record<string, string>;
}

export function saveHypernet(file: string, hypernet: HyperNetwork, meta: HypernetMeta): void {
  const metadata: Record<string, string> = {
    format: hypernetFormat,
    config: JSON.stringify(hypernet.config),
    meta: JSON.stringify(meta),
  };
  atomicWriteFile(file, encodeSafetensors(hypernet.stateDict(), { metadata }));
}

export interface HypernetFile {
  file: string;
  hypernet: HyperNetwork;
  meta: HypernetMeta;
}

/** Reads a hypernetwork written by saveHypernet; errors name the file and the field. */
export function loadHypernet(file: string): HypernetFile {
  if (!existsSync(file)) throw new Error(`hypernetwork ${file} does not exist (the shipped one is models/hypernet-tiny/hypernet.safetensors)`);
  const { tensors, metadata } = loadSafetensors(file, { dtype: 'f32' });
  try {
    if (metadata.format !== hypernetFormat) throw new Error(`hypernetwork ${file}: metadata format is ${JSON.stringify(metadata.format)}, expected ${hypernetFormat}`);
    const config = parseJsonMetadata(`hypernetwork ${file}`, 'config', metadata.config) as HyperNetworkConfig;
    const meta = parseJsonMetadata(`hypernetwork ${file}`, 'meta', metadata.meta) as HypernetMeta;
    if (typeof meta !== 'object' || meta === null || typeof meta.base !== 'string' || !Array.isArray(meta.layers) || typeof meta.lidb !== 'object' || meta.lidb === null) {
      throw new Error(`hypernetwork ${file}: metadata field meta must be { base, lidb, layers }, got ${metadata.meta}`);
    }
    for (const key of ['seed', 'a', 'b'] as const) {
      if (!Number.isInteger(meta.lidb[key]) || meta.lidb[key] < 0) throw new Error(`hypernetwork ${file}: meta.lidb.${key} must be an integer >= 0, got ${JSON.stringify(meta.lidb[key])}`);
    }
    try {
      checkHyperNetworkConfig(config, `hypernetwork ${file}`);
    } catch (err) {
      throw new Error(`hypernetwork ${file}: ${(err as Error).message}`);
    }
    if (config.layers !== meta.layers.length || config.a !== meta.lidb.a || config.b !== meta.lidb.b) {
      throw new Error(`hypernetwork ${file}: config predicts ${config.layers} layers of a=${config.a}, b=${config.b}, but meta names ${meta.layers.length} layers of a=${meta.lidb.a}, b=${meta.lidb.b}`);
    }
    const hypernet = new HyperNetwork(config);
    try {
      hypernet.loadStateDict(tensors);
    } catch (err) {
      hypernet.dispose();
      throw new Error(`hypernetwork ${file}: weights do not fit its config (${(err as Error).message})`);
    }
    hypernet.eval();
    return { file, hypernet, meta };
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}

/** Refuses a hypernetwork made for another base or other layers than `dit` has. */
export function checkHypernetFits(found: HypernetFile, dit: DiT, baseHash: string, op: string): void {
  if (found.meta.base !== baseHash) {
    throw new Error(`${op}: hypernetwork ${found.file} was trained for base ${found.meta.base.slice(0, 12)}, this model is ${baseHash.slice(0, 12)}; train one for this base with \`realtune personalize train-hypernet\``);
  }
  const names = personalizedLayerNames(dit);
  if (names.join(',') !== found.meta.layers.join(',')) {
    throw new Error(`${op}: hypernetwork ${found.file} predicts ${found.meta.layers.length} layers, this model has ${names.length} personalised layers (or other ones)`);
  }
}
