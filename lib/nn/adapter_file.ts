// Adapter files: LoRA (and LiDB) factors in safetensors with metadata that says what they are
// and which base weights they were trained on, checked when they are read and applied.
//
// Layout: tensors `<group>/<layer>.lora.down` [in, r] and `<group>/<layer>.lora.up` [r, out]
// (LiDB: `<group>/<layer>.lidb.aTrain` [a, 1] and `.bTrain` [1, b]); several groups may cover
// the same layers (a curriculum's easy+normal LoRA, its hard-stage LoRA, a text-encoder LoRA).
// `__metadata__` holds `format`, `version` and, under `realtune.adapters`, the JSON
// { base, groups, extra }: `base` is weightsHash() of the model the adapters were trained on.
//
// Files written before the metadata (plain `<layer>.lora.down/up`, what adapterStateDict gave)
// read as one group { name: 'lora', kind: 'lora', scale: 1, rank from the shapes } with no base
// hash, so no base check. Converting one is one line:
//   saveAdapterFile(out, old.tensors, { base: model.weightsHash(), groups: old.groups })
//
// Applying a file to a model (resolveLoraUpdates, then LoraWeightPatch for one generate call, or
// attached adapters for good) follows the inference rules of SPEC section 2: a scale per group
// times loraScale, a timestep window per group, and a restriction to the last half of the DiT's
// blocks.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { noGrad } from '../autograd/variable.js';
import { JsonFields, type JsonObject } from '../io/json_fields.js';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js';
import { firstNonFinite } from '../numeric.js';
import { axpy } from '../ops/elementwise.js';
import { lidbAux } from '../ops/lidb.js';
import { matmul } from '../ops/matmul.js';
import { shapeString, type Tensor } from '../tensor.js';
import { Linear, LinearAdapter } from './layers.js';
import { findLinears, LoraAdapter } from './lora.js';
import type { Module } from './module.js';

export const adapterFileFormat = 'realtune-adapters';
export const adapterFileVersion = 1;
/** The `__metadata__` key holding the JSON { base, groups, extra }. */
export const adapterMetadataKey = 'realtune.adapters';

export type AdapterKind = 'lora' | 'lidb';
export type BlockSelection = 'all' | 'last-half';

/** One set of adapters in a file, with how it is applied. */
export interface AdapterGroup {
  /** Names the group in tensor keys (`<name>/<layer>.lora.down`) and in overrides; no '/'. */
  name: string;
  kind: AdapterKind;
  rank: number;
  /** Multiplies the low-rank update (what the adapters were trained with). */
  scale: number;
  /** Regular-expression source over dotted layer names; every layer of the group matches it. */
  pattern: string;
  /** Apply only at sampling steps t with lo <= t <= hi (absent: every step). */
  timesteps?: [number, number];
  /** 'last-half': only layers of DiT blocks with index >= depth / 2 (absent: 'all'). */
  blocks?: BlockSelection;
  /** LiDB: the seed its frozen bases are regenerated from. */
  lidbSeed?: number;
}

export interface AdapterFileMeta {
  /** weightsHash() of the model the adapters were trained on. */
  base: string;
  groups: AdapterGroup[];
  /** Free-form notes (the stage, the run, the options): strings only. */
  extra?: Record<string, string>;
}

export interface ReadAdapterFileOptions {
  /** Accept NaN or infinite factors (default: that is an error naming the tensor). */
  allowNonFinite?: boolean;
}

const hashText = /^[0-9a-f]{64}$/;
const groupNameText = /^[^/]+$/;
const keyText = /^([^/]+)\/(.+)\.(lora|lidb)\.([A-Za-z]+)$/;
const legacyKeyText = /^(.+)\.lora\.(down|up)$/;
const partsOf: Record<AdapterKind, readonly string[]> = { lora: ['down', 'up'], lidb: ['aTrain', 'bTrain'] };

function adapterModuleNames(model: Module): string[] {
  return [...model.namedModules()].filter(([, m]) => m instanceof LinearAdapter).map(([name]) => name);
}

/**
 * sha256 (hex) of the base weights: every parameter and persistent buffer outside adapters, by
 * sorted name, each hashed as name, shape and little-endian f32 values (i32 buffers as i32). A
 * model loaded from a bf16-written checkpoint hashes like an f32 one holding the same values.
 * A merged adapter has changed its base weight, so it is an error here.
 */
export function weightsHash(model: Module): string {
  const adapterNames = adapterModuleNames(model);
  for (const [name, m] of model.namedModules()) {
    if (m instanceof LinearAdapter && m.merged) {
      throw new Error(`weightsHash: the adapter ${name} is merged into its layer's weight, so the base weights are not what the model holds; unmerge it (unmergeAdapters) or bake it in for good (bakeAdapters) first`);
    }
  }
  const inAdapter = (name: string): boolean => adapterNames.some((a) => name.startsWith(`${a}.`));
  const entries = Object.entries(model.stateDict())
    .filter(([name]) => !inAdapter(name))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const hash = createHash('sha256');
  for (const [name, t] of entries) {
    const values = t.toArray();
    hash.update(`${name}\u0000${t.dtype === 'i32' ? 'i32' : 'f32'}\u0000${shapeString(t.shape)}\u0000${values.byteLength}\u0000`);
    hash.update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
  return hash.digest('hex');
}

/**
 * The attached adapters' own tensors (live, not copies) whose layer names match `pattern`:
 * `<layer>.lora.down` / `.up` (LiDB: `.lidb.aTrain` / `.bTrain`), or `<group>/<layer>...` when a
 * group name is given (the layout saveAdapterFile writes).
 */
export function adapterTensors(model: Module, pattern?: RegExp | string, group?: string): Record<string, Tensor> {
  if (group !== undefined && !groupNameText.test(group)) throw new RangeError(`adapterTensors: group must be a non-empty name without '/', got ${JSON.stringify(group)}`);
  const re = pattern === undefined ? null : typeof pattern === 'string' ? new RegExp(pattern) : pattern;
  const out: Record<string, Tensor> = {};
  for (const [name, m] of model.namedModules()) {
    if (!(m instanceof Linear) || m.adapter === null || (re !== null && !re.test(name))) continue;
    for (const [key, t] of Object.entries(m.adapter.stateDict())) out[`${group === undefined ? '' : `${group}/`}${name}.${m.adapter.kind}.${key}`] = t;
  }
  return out;
}

export interface DescribeAdaptersOptions {
  name: string;
  pattern: RegExp | string;
  timesteps?: [number, number];
  blocks?: BlockSelection;
  lidbSeed?: number;
}

/** The AdapterGroup of the attached adapters matching `pattern` (all of one kind, rank and scale). */
export function describeAdapters(model: Module, options: DescribeAdaptersOptions): AdapterGroup {
  const re = typeof options.pattern === 'string' ? new RegExp(options.pattern) : options.pattern;
  const found = [...model.namedModules()].flatMap(([name, m]) => (m instanceof Linear && m.adapter !== null && re.test(name) ? [[name, m.adapter] as const] : []));
  if (found.length === 0) throw new RangeError(`describeAdapters: no attached adapter matches ${String(options.pattern)}`);
  const [firstName, first] = found[0]!;
  const rankOf = (a: LinearAdapter): number => (a instanceof LoraAdapter ? a.rank : 1);
  for (const [name, a] of found) {
    if (a.kind !== first.kind || a.scale !== first.scale || rankOf(a) !== rankOf(first)) {
      throw new RangeError(`describeAdapters: ${name} (${a.kind}, rank ${rankOf(a)}, scale ${a.scale}) differs from ${firstName} (${first.kind}, rank ${rankOf(first)}, scale ${first.scale}); one group holds adapters of one kind, rank and scale`);
    }
  }
  return {
    name: options.name,
    kind: first.kind,
    rank: rankOf(first),
    scale: first.scale,
    pattern: re.source,
    ...(options.timesteps !== undefined ? { timesteps: options.timesteps } : {}),
    ...(options.blocks !== undefined ? { blocks: options.blocks } : {}),
    ...(options.lidbSeed !== undefined ? { lidbSeed: options.lidbSeed } : {}),
  };
}

interface ParsedContents {
  base: string | undefined;
  groups: AdapterGroup[];
  extra: Record<string, string>;
  /** group -> layer -> part ('down', 'up' / 'aTrain', 'bTrain') -> tensor. */
  factors: Map<string, Map<string, Record<string, Tensor>>>;
}

function parseGroup(fields: JsonFields, raw: unknown, at: string): AdapterGroup {
  const g = fields.object(raw, at);
  const name = fields.string(g.name, `${at}.name`);
  if (!groupNameText.test(name)) fields.fail(`${at}.name`, "a non-empty name without '/'", name);
  const kind = fields.oneOf(g.kind, `${at}.kind`, ['lora', 'lidb'] as const);
  const rank = fields.integer(g.rank, `${at}.rank`, 1);
  const scale = fields.number(g.scale, `${at}.scale`);
  const pattern = fields.string(g.pattern, `${at}.pattern`);
  try {
    new RegExp(pattern);
  } catch (err) {
    fields.fail(`${at}.pattern`, `a regular expression (${(err as Error).message})`, pattern);
  }
  const group: AdapterGroup = { name, kind, rank, scale, pattern };
  if (g.timesteps !== undefined) group.timesteps = parseWindow(fields, g.timesteps, `${at}.timesteps`);
  if (g.blocks !== undefined) group.blocks = fields.oneOf(g.blocks, `${at}.blocks`, ['all', 'last-half'] as const);
  if (g.lidbSeed !== undefined) group.lidbSeed = fields.integer(g.lidbSeed, `${at}.lidbSeed`, 0);
  if (kind === 'lidb') {
    if (group.lidbSeed === undefined) fields.fail(`${at}.lidbSeed`, 'an integer >= 0 (a LiDB group regenerates its frozen bases from it)', undefined);
    if (rank !== 1) fields.fail(`${at}.rank`, '1 (LiDB adapters are rank 1)', rank);
  }
  const known = new Set(['name', 'kind', 'rank', 'scale', 'pattern', 'timesteps', 'blocks', 'lidbSeed']);
  const unknown = Object.keys(g).find((k) => !known.has(k));
  if (unknown !== undefined) fields.fail(`${at}.${unknown}`, `absent (a group has ${[...known].join(', ')})`, g[unknown]);
  return group;
}

function parseWindow(fields: JsonFields, raw: unknown, at: string): [number, number] {
  const window = fields.array(raw, at);
  if (window.length !== 2) fields.fail(at, 'two timesteps [lo, hi]', raw);
  const lo = fields.integer(window[0], `${at}[0]`, 0);
  const hi = fields.integer(window[1], `${at}[1]`, 0);
  if (lo > hi) fields.fail(at, 'a window [lo, hi] with lo <= hi', raw);
  return [lo, hi];
}

/** Checks a file's metadata and tensors against each other; `where` starts every error. */
function parseContents(where: string, metadata: Record<string, string>, tensors: Record<string, Tensor>, allowNonFinite: boolean): ParsedContents {
  const fields = new JsonFields(where);
  if (!allowNonFinite) {
    const bad = firstNonFinite(tensors);
    if (bad !== undefined) throw new Error(`${where}: ${bad}; pass allowNonFinite to use it anyway`);
  }
  if (metadata[adapterMetadataKey] === undefined) return parseLegacy(where, tensors);

  fields.oneOf(metadata.format, '__metadata__.format', [adapterFileFormat]);
  if (metadata.version !== String(adapterFileVersion)) fields.fail('__metadata__.version', `"${adapterFileVersion}" (the version this realtune reads)`, metadata.version);
  let json: unknown;
  try {
    json = JSON.parse(metadata[adapterMetadataKey]);
  } catch (err) {
    throw new Error(`${where}: __metadata__.${adapterMetadataKey} is not valid JSON (${(err as Error).message})`);
  }
  const meta = fields.object(json, adapterMetadataKey);
  const base = fields.string(meta.base, `${adapterMetadataKey}.base`);
  if (!hashText.test(base)) fields.fail(`${adapterMetadataKey}.base`, 'a sha256 in hex (64 characters, what weightsHash gives)', base);
  const extra: Record<string, string> = {};
  if (meta.extra !== undefined) {
    for (const [k, v] of Object.entries(fields.object(meta.extra, `${adapterMetadataKey}.extra`))) extra[k] = fields.string(v, `${adapterMetadataKey}.extra.${k}`);
  }
  const rawGroups = fields.array(meta.groups, `${adapterMetadataKey}.groups`);
  if (rawGroups.length === 0) fields.fail(`${adapterMetadataKey}.groups`, 'at least one group', rawGroups);
  const groups = rawGroups.map((g, i) => parseGroup(fields, g, `${adapterMetadataKey}.groups[${i}]`));
  const byName = new Map<string, AdapterGroup>();
  for (const g of groups) {
    if (byName.has(g.name)) fields.fail(`${adapterMetadataKey}.groups`, 'groups with different names', `two groups named ${g.name}`);
    byName.set(g.name, g);
  }

  const factors = new Map<string, Map<string, Record<string, Tensor>>>(groups.map((g) => [g.name, new Map()]));
  for (const [key, t] of Object.entries(tensors)) {
    const match = keyText.exec(key);
    if (match === null) throw new Error(`${where}: tensor ${key} is not named <group>/<layer>.lora.down|up (or .lidb.aTrain|bTrain)`);
    const [, groupName, layer, kind, part] = match as unknown as [string, string, string, AdapterKind, string];
    const group = byName.get(groupName);
    if (group === undefined) throw new Error(`${where}: tensor ${key} belongs to group ${groupName}, which the metadata does not declare (groups: ${groups.map((g) => g.name).join(', ')})`);
    if (kind !== group.kind) throw new Error(`${where}: tensor ${key} is a ${kind} factor, but group ${groupName} is of kind ${group.kind}`);
    if (!partsOf[kind].includes(part)) throw new Error(`${where}: tensor ${key}: a ${kind} factor is ${partsOf[kind].join(' or ')}, got ${part}`);
    const layers = factors.get(groupName)!;
    const entry = layers.get(layer) ?? {};
    entry[part] = t;
    layers.set(layer, entry);
  }
  for (const group of groups) checkGroupTensors(where, group, factors.get(group.name)!);
  return { base, groups, extra, factors };
}

function checkGroupTensors(where: string, group: AdapterGroup, layers: Map<string, Record<string, Tensor>>): void {
  if (layers.size === 0) throw new Error(`${where}: group ${group.name} holds no tensors`);
  const re = new RegExp(group.pattern);
  for (const [layer, parts] of layers) {
    if (!re.test(layer)) throw new Error(`${where}: group ${group.name} holds layer ${layer}, which its pattern /${group.pattern}/ does not match`);
    const key = (part: string): string => `${group.name}/${layer}.${group.kind}.${part}`;
    for (const part of partsOf[group.kind]) {
      const t = parts[part];
      if (t === undefined) throw new Error(`${where}: ${key(part)} is missing (group ${group.name} has ${key(partsOf[group.kind].find((p) => p !== part)!)})`);
      if (t.dtype === 'i32' || t.shape.length !== 2) throw new Error(`${where}: ${key(part)} is ${t.describe()}, expected a 2-D float tensor`);
    }
    if (group.kind === 'lora') {
      const [down, up] = [parts.down!, parts.up!];
      if (down.shape[1] !== group.rank) throw new Error(`${where}: ${key('down')} has shape ${shapeString(down.shape)}, expected [in, ${group.rank}] (group ${group.name} has rank ${group.rank})`);
      if (up.shape[0] !== group.rank) throw new Error(`${where}: ${key('up')} has shape ${shapeString(up.shape)}, expected [${group.rank}, out] (group ${group.name} has rank ${group.rank})`);
    } else {
      if (parts.aTrain!.shape[1] !== 1) throw new Error(`${where}: ${key('aTrain')} has shape ${shapeString(parts.aTrain!.shape)}, expected [a, 1]`);
      if (parts.bTrain!.shape[0] !== 1) throw new Error(`${where}: ${key('bTrain')} has shape ${shapeString(parts.bTrain!.shape)}, expected [1, b]`);
    }
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A file of plain `<layer>.lora.down/up` tensors: one group named 'lora' at scale 1, no base. */
function parseLegacy(where: string, tensors: Record<string, Tensor>): ParsedContents {
  const layers = new Map<string, Record<string, Tensor>>();
  for (const [key, t] of Object.entries(tensors)) {
    const match = legacyKeyText.exec(key);
    if (match === null) {
      throw new Error(`${where}: tensor ${key} is not a LoRA factor: a file without realtune adapter metadata holds <layer>.lora.down and <layer>.lora.up only`);
    }
    const entry = layers.get(match[1]!) ?? {};
    entry[match[2]!] = t;
    layers.set(match[1]!, entry);
  }
  if (layers.size === 0) throw new Error(`${where}: holds no LoRA factors`);
  const ranks = new Set<number>();
  for (const [layer, parts] of layers) {
    const down = parts.down;
    if (down === undefined) throw new Error(`${where}: ${layer}.lora.down is missing (the file has ${layer}.lora.up)`);
    ranks.add(down.shape[1]!);
  }
  if (ranks.size > 1) throw new Error(`${where}: its LoRA factors have ranks ${[...ranks].join(' and ')}; a file without metadata is read as one group of one rank`);
  const group: AdapterGroup = { name: 'lora', kind: 'lora', rank: [...ranks][0]!, scale: 1, pattern: `^(?:${[...layers.keys()].map(escapeRegExp).join('|')})$` };
  checkGroupTensors(where, group, layers);
  return { base: undefined, groups: [group], extra: {}, factors: new Map([[group.name, layers]]) };
}

/** An adapter file in memory; its tensors are owned (dispose() frees them). */
export class AdapterFile {
  constructor(
    /** Where it was read from (names it in errors). */
    readonly file: string,
    /** weightsHash() of the model it was trained on; undefined for a file written without metadata. */
    readonly base: string | undefined,
    readonly groups: readonly AdapterGroup[],
    readonly extra: Readonly<Record<string, string>>,
    /** Every tensor by its key in saveAdapterFile's layout (`<group>/<layer>.lora.down`). */
    readonly tensors: Readonly<Record<string, Tensor<'f32'>>>,
    readonly factors: ReadonlyMap<string, ReadonlyMap<string, Readonly<Record<string, Tensor<'f32'>>>>>,
  ) {}

  /** Written without metadata (by adapterStateDict before adapter files had it). */
  get legacy(): boolean {
    return this.base === undefined;
  }

  group(name: string): AdapterGroup | undefined {
    return this.groups.find((g) => g.name === name);
  }

  /**
   * The LoRA factors of a LiDB layer: down = A_aux A_train [in, 1], up = B_train B_aux [1, out],
   * with the frozen bases regenerated from the group's seed for the layer's index among the
   * model's layers matching the group's pattern (the order attachLidb numbers them in). Computed
   * once per layer and freed with the file.
   */
  lidbFactors(group: AdapterGroup, layer: string, index: number, linear: Linear): { down: Tensor<'f32'>; up: Tensor<'f32'> } {
    const key = `${group.name}/${layer}`;
    let found = this.#lidb.get(key);
    if (found === undefined) {
      const parts = this.factors.get(group.name)!.get(layer)!;
      const [aTrain, bTrain] = [parts.aTrain!, parts.bTrain!];
      const seed = group.lidbSeed! + 3 * index;
      found = noGrad(() => {
        const aAux = lidbAux(seed, linear.inFeatures, aTrain.shape[0]!);
        const bAux = lidbAux(seed + 1, bTrain.shape[1]!, linear.outFeatures);
        try {
          return { down: matmul(aAux, aTrain), up: matmul(bTrain, bAux) };
        } finally {
          aAux.dispose();
          bAux.dispose();
        }
      });
      this.#lidb.set(key, found);
    }
    return found;
  }

  readonly #lidb = new Map<string, { down: Tensor<'f32'>; up: Tensor<'f32'> }>();

  dispose(): void {
    for (const t of Object.values(this.tensors)) t.dispose();
    for (const f of this.#lidb.values()) {
      f.down.dispose();
      f.up.dispose();
    }
    this.#lidb.clear();
  }
}

/** Reads and checks an adapter file (see the layout above); errors name the file, the field, expected and actual. */
export function readAdapterFile(file: string, options: ReadAdapterFileOptions = {}): AdapterFile {
  const where = `adapter file ${file}`;
  if (!existsSync(file)) throw new Error(`lora: file ${file} does not exist`);
  const { tensors, metadata } = loadSafetensors(file, { dtype: 'f32' });
  try {
    const parsed = parseContents(where, metadata, tensors, options.allowNonFinite ?? false);
    const keyed: Record<string, Tensor<'f32'>> = {};
    for (const group of parsed.groups) {
      for (const [layer, parts] of parsed.factors.get(group.name)!) {
        for (const [part, t] of Object.entries(parts)) keyed[`${group.name}/${layer}.${group.kind}.${part}`] = t as Tensor<'f32'>;
      }
    }
    return new AdapterFile(file, parsed.base, parsed.groups, parsed.extra, keyed, parsed.factors as AdapterFile['factors']);
  } catch (err) {
    for (const t of Object.values(tensors)) t.dispose();
    throw err;
  }
}

/** An adapter file: its path, or one already read with readAdapterFile (left open for its owner). */
export type LoraSource = string | AdapterFile;

/** One source or several, as a list. */
export function loraSources(lora: LoraSource | readonly LoraSource[] | undefined): LoraSource[] {
  if (lora === undefined) return [];
  return typeof lora === 'string' || lora instanceof AdapterFile ? [lora] : [...lora];
}

export interface OpenedAdapterFiles {
  files: AdapterFile[];
  /** Those read here from paths: the opener disposes them (AdapterFiles passed in stay open). */
  owned: AdapterFile[];
}

/** Reads the sources that are paths; on an error, what was read is freed. */
export function openAdapterFiles(sources: readonly LoraSource[], options: ReadAdapterFileOptions = {}): OpenedAdapterFiles {
  const opened: OpenedAdapterFiles = { files: [], owned: [] };
  try {
    for (const source of sources) {
      if (typeof source !== 'string') {
        opened.files.push(source);
        continue;
      }
      const file = readAdapterFile(source, options);
      opened.files.push(file);
      opened.owned.push(file);
    }
    return opened;
  } catch (err) {
    for (const f of opened.owned) f.dispose();
    throw err;
  }
}

export interface SaveAdapterFileOptions {
  /** Write NaN or infinite factors (default: that is an error, and nothing is written). */
  allowNonFinite?: boolean;
}

/**
 * Writes `tensors` (keys `<group>/<layer>.lora.down` / `.up`, see adapterTensors) and `meta`
 * atomically, after the same checks readAdapterFile makes, so what is written can be read back.
 */
export function saveAdapterFile(file: string, tensors: Record<string, Tensor>, meta: AdapterFileMeta, options: SaveAdapterFileOptions = {}): void {
  const json: JsonObject = { base: meta.base, groups: meta.groups, ...(meta.extra !== undefined ? { extra: meta.extra } : {}) };
  const metadata = { format: adapterFileFormat, version: String(adapterFileVersion), [adapterMetadataKey]: JSON.stringify(json) };
  parseContents(`saveAdapterFile: ${file}`, metadata, tensors, options.allowNonFinite ?? false);
  saveSafetensors(file, tensors, { metadata });
}

/** How one group is applied, overriding what its file says. */
export interface LoraGroupOverride {
  /** Replaces the group's saved scale (loraScale still multiplies it). */
  scale?: number;
  /** A window [lo, hi] of sampling timesteps, or 'all' (every step). */
  timesteps?: readonly [number, number] | 'all';
  blocks?: BlockSelection;
  /** false leaves the group out. */
  enabled?: boolean;
}

/** Which groups of adapter files apply to a model, and how (SPEC section 2, "Inference"). */
export interface LoraSelection {
  /** Multiplies every group's scale (default 1). */
  loraScale?: number;
  /** Per-group overrides by group name (every name must be a group of one of the files). */
  loraGroups?: Readonly<Record<string, LoraGroupOverride>>;
  /** Apply files trained on other base weights than the model's (default: that is an error). */
  allowOtherBase?: boolean;
}

/** One layer's low-rank update from one group of one file. */
export interface LoraUpdate {
  file: string;
  group: string;
  layer: string;
  linear: Linear;
  down: Tensor<'f32'>;
  up: Tensor<'f32'>;
  scale: number;
  /** Applies only for sampling timesteps in [lo, hi]; undefined: at every step. */
  timesteps: readonly [number, number] | undefined;
}

/** Checks loraScale and loraGroups (names, fields) of a LoraSelection; `where` starts the errors. */
export function checkLoraSelection(where: string, selection: LoraSelection, groupNames?: readonly string[]): void {
  const { loraScale, loraGroups } = selection;
  if (loraScale !== undefined && !(typeof loraScale === 'number' && Number.isFinite(loraScale))) throw new RangeError(`${where}: loraScale must be a finite number, got ${String(loraScale)}`);
  for (const [name, o] of Object.entries(loraGroups ?? {})) {
    const at = `${where}: loraGroups.${name}`;
    if (typeof o !== 'object' || o === null) throw new TypeError(`${at} must be an object { scale?, timesteps?, blocks?, enabled? }, got ${String(o)}`);
    const unknown = Object.keys(o).find((k) => !['scale', 'timesteps', 'blocks', 'enabled'].includes(k));
    if (unknown !== undefined) throw new RangeError(`${at}.${unknown} is not an override (scale, timesteps, blocks, enabled)`);
    if (o.scale !== undefined && !(typeof o.scale === 'number' && Number.isFinite(o.scale))) throw new RangeError(`${at}.scale must be a finite number, got ${String(o.scale)}`);
    if (o.timesteps !== undefined && o.timesteps !== 'all') {
      const w = o.timesteps as unknown;
      const ok = Array.isArray(w) && w.length === 2 && w.every((v) => Number.isInteger(v) && v >= 0) && w[0] <= w[1];
      if (!ok) throw new RangeError(`${at}.timesteps must be 'all' or [lo, hi] with integers 0 <= lo <= hi, got ${JSON.stringify(w)}`);
    }
    if (o.blocks !== undefined && o.blocks !== 'all' && o.blocks !== 'last-half') throw new RangeError(`${at}.blocks must be 'all' or 'last-half', got ${JSON.stringify(o.blocks)}`);
    if (o.enabled !== undefined && typeof o.enabled !== 'boolean') throw new TypeError(`${at}.enabled must be true or false, got ${JSON.stringify(o.enabled)}`);
    if (groupNames !== undefined && !groupNames.includes(name)) {
      throw new RangeError(`${where}: loraGroups names group ${JSON.stringify(name)}, which none of the adapter files holds (they hold: ${[...new Set(groupNames)].join(', ')})`);
    }
  }
}

const blockIndexText = /^blocks\.(\d+)\./;

/**
 * The updates `files` make to `model` under `selection`, in file order, then group order, then
 * layer order. Checks each file's base hash against the model's, the groups' kinds, that every
 * layer exists and that the factors fit it. `depth`: the DiT's block count ('last-half' keeps
 * layers `blocks.<i>.` with i >= depth / 2 and drops every other layer of the group).
 */
export function resolveLoraUpdates(model: Module, files: readonly AdapterFile[], selection: LoraSelection & { depth?: number }, where: string): LoraUpdate[] {
  checkLoraSelection(
    where,
    selection,
    files.flatMap((f) => f.groups.map((g) => g.name)),
  );
  const loraScale = selection.loraScale ?? 1;
  let modelHash: string | undefined;
  const linears = new Map([...model.namedModules()].filter((e): e is [string, Linear] => e[1] instanceof Linear));
  const updates: LoraUpdate[] = [];
  for (const file of files) {
    if (file.base !== undefined && !selection.allowOtherBase) {
      modelHash ??= weightsHash(model);
      if (file.base !== modelHash) {
        throw new Error(`${where}: adapter file ${file.file} was trained on base ${file.base.slice(0, 12)}, this model is ${modelHash.slice(0, 12)}; pass allowOtherBase to apply it anyway`);
      }
    }
    for (const group of file.groups) {
      const override = selection.loraGroups?.[group.name] ?? {};
      if (override.enabled === false) continue;
      // LiDB layers are numbered in module order among the model's layers matching the pattern.
      const lidbIndex = group.kind === 'lidb' ? new Map(findLinears(model, group.pattern).map(([name], i) => [name, i])) : undefined;
      const blocks = override.blocks ?? group.blocks ?? 'all';
      if (blocks === 'last-half' && selection.depth === undefined) throw new Error(`${where}: group ${group.name} applies to the last half of the blocks, but the model has no block depth`);
      const timesteps = override.timesteps === 'all' ? undefined : (override.timesteps ?? group.timesteps);
      const scale = (override.scale ?? group.scale) * loraScale;
      for (const [layer, parts] of file.factors.get(group.name)!) {
        const linear = linears.get(layer);
        if (linear === undefined) throw new Error(`${where}: adapter file ${file.file}: group ${group.name} names layer ${layer}, which this model does not have`);
        const { down, up } = lidbIndex === undefined ? { down: parts.down!, up: parts.up! } : file.lidbFactors(group, layer, lidbIndex.get(layer)!, linear);
        if (down.shape[0] !== linear.inFeatures || up.shape[1] !== linear.outFeatures) {
          throw new Error(
            `${where}: adapter file ${file.file}: ${group.name}/${layer} has down ${shapeString(down.shape)} and up ${shapeString(up.shape)}, which do not fit the layer (${linear.inFeatures} -> ${linear.outFeatures}: expected [${linear.inFeatures}, r] and [r, ${linear.outFeatures}])`,
          );
        }
        if (blocks === 'last-half') {
          const block = blockIndexText.exec(layer);
          if (block === null || Number(block[1]) < selection.depth! / 2) continue;
        }
        updates.push({ file: file.file, group: group.name, layer, linear, down, up, scale, timesteps: timesteps === undefined ? undefined : [timesteps[0], timesteps[1]] });
      }
    }
  }
  return updates;
}

/** Whether an update applies at sampling timestep t. */
export function appliesAt(update: LoraUpdate, t: number): boolean {
  return update.timesteps === undefined || (t >= update.timesteps[0] && t <= update.timesteps[1]);
}

interface PatchedLayer {
  linear: Linear;
  original: Tensor<'f32'>;
  /** Indices into the patch's updates, in order, with their scale (down up)^T. */
  deltas: { index: number; delta: Tensor<'f32'> }[];
  /** Which of them are in the weight now ('' none). */
  active: string;
}

/**
 * Low-rank updates added into base weights for a while, then taken out exactly: exact copies of
 * the affected weights are kept, and each change of which updates are active restores the copy
 * and adds scale (down up)^T of the active ones in a fixed order. Adapters attached to the same
 * layers are left alone (they add their own update on top). dispose() restores every weight.
 */
export class LoraWeightPatch {
  readonly #layers: PatchedLayer[] = [];

  constructor(readonly updates: readonly LoraUpdate[]) {
    const byLinear = new Map<Linear, PatchedLayer>();
    try {
      noGrad(() =>
        updates.forEach((u, index) => {
          const weight = u.linear.weight.value;
          let layer = byLinear.get(u.linear);
          if (layer === undefined) {
            layer = { linear: u.linear, original: weight.clone(), deltas: [], active: '' };
            byLinear.set(u.linear, layer);
            this.#layers.push(layer);
          }
          const [down, up] = [u.down, u.up].map((t) => (t.device === weight.device ? t : t.to(weight.device)));
          layer.deltas.push({ index, delta: matmul(up!, down!, { transA: true, transB: true, alpha: u.scale }) });
          if (down !== u.down) down!.dispose();
          if (up !== u.up) up!.dispose();
        }),
      );
    } catch (err) {
      this.dispose();
      throw err;
    }
  }

  /** Puts exactly the updates for which `active` holds into their weights, in the layers whose updates `only` accepts. */
  activate(active: (update: LoraUpdate) => boolean, only: (update: LoraUpdate) => boolean = () => true): void {
    for (const layer of this.#layers) {
      const chosen = layer.deltas.filter((d) => only(this.updates[d.index]!));
      if (chosen.length === 0) continue;
      const on = layer.deltas.filter((d) => only(this.updates[d.index]!) && active(this.updates[d.index]!));
      const key = on.map((d) => d.index).join(',');
      if (key === layer.active) continue;
      const weight = layer.linear.weight.value;
      weight.copy_(layer.original);
      for (const d of on) axpy(1, d.delta, weight);
      layer.active = key;
    }
  }

  /** Restores every weight to its copy and frees the copies. */
  dispose(): void {
    for (const layer of this.#layers) {
      if (layer.active !== '') layer.linear.weight.value.copy_(layer.original);
      layer.original.dispose();
      for (const d of layer.deltas) d.delta.dispose();
    }
    this.#layers.length = 0;
  }
}
