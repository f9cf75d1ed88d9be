// LoRA adapters attached to Linear layers by name pattern: y = x W^T + b + scale (x down) up,
// down [in, r] (kaiming-uniform like peft's lora_A), up [r, out] (zeros: the model starts
// unchanged). Enable/disable (the DPO reference), merge into the base weight and back, and
// save/load the adapters alone.
import { noGrad, type Variable } from '../autograd/variable.js';
import { axpy } from '../ops/elementwise.js';
import { matmul } from '../ops/matmul.js';
import { defaultGenerator, type Generator } from '../ops/random.js';
import type { Tensor } from '../tensor.js';
import { linearDefault, zeros } from './init.js';
import { Linear, LinearAdapter, type AdapterFactors } from './layers.js';
import type { Module, StateDict } from './module.js';

export class LoraAdapter extends LinearAdapter {
  readonly kind = 'lora';
  readonly down: Variable;
  readonly up: Variable;

  constructor(
    inFeatures: number,
    outFeatures: number,
    readonly rank: number,
    scale: number,
    generator: Generator = defaultGenerator(),
  ) {
    super(scale);
    if (!Number.isInteger(rank) || rank < 1) throw new RangeError(`LoRA: rank must be an integer >= 1, got ${rank}`);
    this.down = this.addParameter('down', linearDefault([inFeatures, rank], inFeatures, generator));
    this.up = this.addParameter('up', zeros([rank, outFeatures]));
  }

  factors(): AdapterFactors {
    return { down: this.down, up: this.up, temporary: false };
  }
}

/** The Linear layers whose dotted module names match `pattern`. */
export function findLinears(model: Module, pattern: RegExp | string): [string, Linear][] {
  const re = typeof pattern === 'string' ? new RegExp(pattern) : pattern;
  return [...model.namedModules()].filter((entry): entry is [string, Linear] => entry[1] instanceof Linear && re.test(entry[0]));
}

export interface AttachLoraOptions {
  /** Matched against each Linear's dotted name, e.g. /attn\.(q|k|v|out)$/. */
  pattern: RegExp | string;
  rank: number;
  /** Multiplies the low-rank update (alpha / rank in peft's terms); default 1. */
  scale?: number;
  generator?: Generator;
}

/**
 * The largest useful LoRA rank for the layers matching `pattern`: min(in, out) of the smallest,
 * since an update down [in, r] x up [r, out] has rank at most that. Undefined when none matches.
 */
export function maxLoraRank(model: Module, pattern: RegExp | string): { rank: number; layer: string } | undefined {
  let best: { rank: number; layer: string } | undefined;
  for (const [name, linear] of findLinears(model, pattern)) {
    const rank = Math.min(linear.inFeatures, linear.outFeatures);
    if (best === undefined || rank < best.rank) best = { rank, layer: `${name} (${linear.inFeatures} -> ${linear.outFeatures})` };
  }
  return best;
}

/** Attaches a LoRA adapter to every matching Linear; returns them by layer name. */
export function attachLora(model: Module, options: AttachLoraOptions): Map<string, LoraAdapter> {
  const layers = findLinears(model, options.pattern);
  if (layers.length === 0) throw new RangeError(`attachLora: no Linear layer matches ${String(options.pattern)}`);
  const limit = maxLoraRank(model, options.pattern)!;
  if (options.rank > limit.rank) {
    throw new RangeError(`attachLora: rank ${options.rank} is more than ${limit.rank}, the most a LoRA update of ${limit.layer} can have (min of its input and output features)`);
  }
  const attached = new Map<string, LoraAdapter>();
  for (const [name, linear] of layers) {
    const adapter = new LoraAdapter(linear.inFeatures, linear.outFeatures, options.rank, options.scale ?? 1, options.generator);
    linear.attachAdapter(adapter);
    attached.set(name, adapter);
  }
  return attached;
}

/** Every adapter in the model by layer name (LoRA and LiDB). */
export function adapters(model: Module): Map<string, LinearAdapter> {
  const found = new Map<string, LinearAdapter>();
  for (const [name, m] of model.namedModules()) if (m instanceof Linear && m.adapter !== null) found.set(name, m.adapter);
  return found;
}

function selected(model: Module, pattern?: RegExp | string): [string, Linear, LinearAdapter][] {
  const re = pattern === undefined ? null : typeof pattern === 'string' ? new RegExp(pattern) : pattern;
  return [...model.namedModules()].flatMap(([name, m]) =>
    m instanceof Linear && m.adapter !== null && (re === null || re.test(name)) ? [[name, m, m.adapter] as [string, Linear, LinearAdapter]] : [],
  );
}

/** Turns adapters on or off (all, or those whose layer name matches). */
export function setAdaptersEnabled(model: Module, enabled: boolean, pattern?: RegExp | string): void {
  for (const [, , adapter] of selected(model, pattern)) adapter.enabled = enabled;
}

/** Runs fn with every adapter disabled (the frozen reference of DPO), then restores them. */
export function withAdaptersDisabled<T>(model: Module, fn: () => T): T {
  const all = selected(model);
  const previous = all.map(([, , a]) => a.enabled);
  for (const [, , a] of all) a.enabled = false;
  try {
    return fn();
  } finally {
    all.forEach(([, , a], i) => {
      a.enabled = previous[i]!;
    });
  }
}

/** scale * (down up)^T, the [out, in] update an adapter adds to its Linear's weight. */
export function adapterDelta(adapter: LinearAdapter): Tensor<'f32'> {
  return noGrad(() => {
    const { down, up, temporary } = adapter.factors();
    const delta = matmul(up.value, down.value, { transA: true, transB: true, alpha: adapter.scale });
    if (temporary) {
      down.value.dispose();
      up.value.dispose();
    }
    return delta;
  });
}

function fold(linear: Linear, adapter: LinearAdapter, sign: 1 | -1): void {
  const delta = adapterDelta(adapter);
  axpy(sign, delta, linear.weight.value);
  delta.dispose();
}

/** Folds enabled adapters into their base weights (inference without the extra matmuls). */
export function mergeAdapters(model: Module, pattern?: RegExp | string): void {
  for (const [, linear, adapter] of selected(model, pattern)) {
    if (adapter.merged || !adapter.enabled) continue;
    fold(linear, adapter, 1);
    adapter.merged = true;
  }
}

/** Takes merged adapters back out of the base weights. */
export function unmergeAdapters(model: Module, pattern?: RegExp | string): void {
  for (const [, linear, adapter] of selected(model, pattern)) {
    if (!adapter.merged) continue;
    fold(linear, adapter, -1);
    adapter.merged = false;
  }
}

/** Merges every adapter for good and removes it (the next stage starts from this model). */
export function bakeAdapters(model: Module, pattern?: RegExp | string): void {
  for (const [, linear, adapter] of selected(model, pattern)) {
    if (!adapter.merged && adapter.enabled) fold(linear, adapter, 1);
    linear.dropMergedAdapter();
    adapter.dispose();
  }
}

/** Removes adapters without merging them. */
export function detachAdapters(model: Module, pattern?: RegExp | string): void {
  for (const [, linear] of selected(model, pattern)) {
    const adapter = linear.adapter!;
    if (adapter.merged) unmergeAdapters(model, pattern);
    linear.detachAdapter()?.dispose();
  }
}

/** The adapters' own parameters and persistent buffers, by full dotted name (`blocks.0.attn.q.lora.down`). */
export function adapterStateDict(model: Module): StateDict {
  const dict: StateDict = {};
  for (const [name, , adapter] of selected(model)) {
    for (const [key, t] of Object.entries(adapter.stateDict())) dict[`${name}.${adapter.kind}.${key}`] = t;
  }
  return dict;
}

/** Loads adapter weights saved by adapterStateDict into the attached adapters (strict by default). */
export function loadAdapterStateDict(model: Module, dict: StateDict, options: { strict?: boolean } = {}): void {
  const strict = options.strict ?? true;
  const targets = new Map<string, { linear: Linear; adapter: LinearAdapter; key: string }>();
  for (const [name, linear, adapter] of selected(model)) {
    for (const key of Object.keys(adapter.stateDict())) targets.set(`${name}.${adapter.kind}.${key}`, { linear, adapter, key });
  }
  if (strict) {
    const missing = [...targets.keys()].find((k) => dict[k] === undefined);
    if (missing !== undefined) throw new RangeError(`loadAdapterStateDict: missing key ${missing}`);
    const unexpected = Object.keys(dict).find((k) => !targets.has(k));
    if (unexpected !== undefined) throw new RangeError(`loadAdapterStateDict: unexpected key ${unexpected} (no adapter attached there)`);
  }
  const byAdapter = new Map<LinearAdapter, { linear: Linear; own: StateDict }>();
  for (const [full, { linear, adapter, key }] of targets) {
    const t = dict[full];
    if (t === undefined) continue;
    const target = adapter.stateDict()[key]!;
    if (t.dtype !== target.dtype) throw new TypeError(`loadAdapterStateDict: ${full} has dtype ${t.dtype}, expected ${target.dtype}`);
    if (t.shape.length !== target.shape.length || t.shape.some((d, i) => d !== target.shape[i])) {
      throw new RangeError(`loadAdapterStateDict: ${full} has shape [${t.shape.join(', ')}], expected [${target.shape.join(', ')}]`);
    }
    const entry = byAdapter.get(adapter) ?? { linear, own: {} };
    entry.own[key] = t;
    byAdapter.set(adapter, entry);
  }
  for (const [adapter, { linear, own }] of byAdapter) {
    const wasMerged = adapter.merged;
    if (wasMerged) fold(linear, adapter, -1);
    adapter.loadStateDict(own, { strict: false });
    if (wasMerged) fold(linear, adapter, 1);
  }
}
