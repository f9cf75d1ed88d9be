// Training checkpoints: one directory holding model.safetensors, optimizer.safetensors (when
// there is an optimiser), state.json (step, RNG state, config, anything JSON) and any extra
// files (a tokenizer, say). Written as a whole with writeDirectoryAtomic: an interrupted save
// leaves the previous checkpoint intact, and every reader finds it by one rule (locateCheckpoint).
// A save replaces only a checkpoint directory (recognised by its files): never a user's folder.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { DeviceRequest } from '../device.js';
import type { Tensor } from '../tensor.js';
import { lastCompleteDirectory, writeDirectoryAtomic } from './atomic.js';
import { checkOutputDirectory } from './output_paths.js';
import { encodeSafetensors, loadSafetensors, type EncodeOptions } from './safetensors.js';

export interface Checkpoint {
  model: Record<string, Tensor>;
  optimizer?: Record<string, Tensor>;
  state: Record<string, unknown>;
  /** Other files stored beside them, by name (e.g. tokenizer.json). */
  files?: Record<string, string | Uint8Array>;
}

export interface SaveCheckpointOptions extends Pick<EncodeOptions, 'floatFormat'> {
  /**
   * Names besides model.safetensors, optimizer.safetensors and state.json that a checkpoint of
   * this kind may hold. A save replaces only a directory holding nothing else (default: the
   * extra files of this save).
   */
  knownFiles?: readonly string[];
}

const reserved = new Set(['model.safetensors', 'optimizer.safetensors', 'state.json']);

/**
 * Why a checkpoint save must not replace what is at `dir`, or undefined when it may: nothing
 * there, an empty directory, or a checkpoint directory holding only regular files that a
 * checkpoint of this kind has (`knownFiles` besides its own three).
 */
export function checkpointReplaceRefusal(dir: string, knownFiles: readonly string[] = []): string | undefined {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ENOTDIR') return `${dir} is a file, not a checkpoint directory`;
    return `cannot read ${dir}: ${(err as Error).message}`;
  }
  if (entries.length === 0) return undefined;
  const known = new Set([...reserved, ...knownFiles]);
  const foreign = entries.filter((e) => !e.isFile() || !known.has(e.name)).map((e) => (e.isDirectory() ? `${e.name}/` : e.name));
  if (foreign.length > 0) {
    const listed = foreign.slice(0, 4).join(', ') + (foreign.length > 4 ? `, and ${foreign.length - 4} more` : '');
    return `it holds ${listed}, which no checkpoint save writes (a save replaces only a checkpoint directory)`;
  }
  if (!holdsCheckpoint(dir)) return `it is not a checkpoint directory (no model.safetensors and state.json), and a save replaces only one`;
  return undefined;
}

/**
 * Fails, before any work whose result would go there, when a checkpoint cannot be saved at
 * `dir`: something other than a checkpoint is there, or its parent cannot be written. `what`
 * names the path in the error (a flag, say).
 */
export function checkCheckpointTarget(dir: string, what: string, knownFiles: readonly string[] = []): void {
  const refusal = checkpointReplaceRefusal(dir, knownFiles);
  if (refusal !== undefined) throw new Error(`${what} ${dir}: ${refusal}; choose another directory or move it away`);
  checkOutputDirectory(path.dirname(dir), `${what} ${dir}: its parent`);
}

export function saveCheckpoint(dir: string, checkpoint: Checkpoint, options: SaveCheckpointOptions = {}): void {
  const files: Record<string, string | Uint8Array> = {};
  for (const [name, data] of Object.entries(checkpoint.files ?? {})) {
    if (reserved.has(name)) throw new Error(`saveCheckpoint: extra file ${name} would overwrite the checkpoint's own`);
    files[name] = data;
  }
  files['model.safetensors'] = encodeSafetensors(checkpoint.model, options);
  if (checkpoint.optimizer) files['optimizer.safetensors'] = encodeSafetensors(checkpoint.optimizer);
  files['state.json'] = `${JSON.stringify(checkpoint.state, null, 2)}\n`;
  const knownFiles = [...(options.knownFiles ?? []), ...Object.keys(checkpoint.files ?? {})];
  writeDirectoryAtomic(dir, files, { replaceRefusal: (existing) => checkpointReplaceRefusal(existing, knownFiles) });
}

function holdsCheckpoint(dir: string): boolean {
  return existsSync(path.join(dir, 'model.safetensors')) && existsSync(path.join(dir, 'state.json'));
}

/**
 * The one recovery rule every reader of a checkpoint follows: the directory holding the last
 * complete version of the checkpoint at `requested`. That is `requested` itself, or, when a save
 * was killed between moving the previous version aside and moving the new one in, the previous
 * version left beside it. Undefined when there is no checkpoint.
 */
export function locateCheckpoint(requested: string): string | undefined {
  const dir = lastCompleteDirectory(requested);
  return dir !== undefined && holdsCheckpoint(dir) ? dir : undefined;
}

/** Whether loadCheckpoint(dir) finds a checkpoint (possibly the previous version of an interrupted save). */
export function isCheckpoint(dir: string): boolean {
  return locateCheckpoint(dir) !== undefined;
}

/** Recovered versions already reported: a command reads one checkpoint several times (state, then tensors). */
const reportedRecoveries = new Set<string>();

function requireCheckpoint(op: string, requested: string): string {
  const dir = locateCheckpoint(requested);
  if (dir === undefined) throw new Error(`${op}: ${requested} is not a checkpoint (needs model.safetensors and state.json)`);
  if (dir !== requested && !reportedRecoveries.has(dir)) {
    reportedRecoveries.add(dir);
    process.emitWarning(`${requested} is missing (a save was interrupted); reading the previous version ${dir}`, { code: 'REALTUNE_CHECKPOINT_RECOVERED' });
  }
  return dir;
}

function readState(op: string, dir: string): Record<string, unknown> {
  const file = path.join(dir, 'state.json');
  let state: unknown;
  try {
    state = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${op}: ${file} is not valid JSON (${(err as Error).message})`);
  }
  if (typeof state !== 'object' || state === null || Array.isArray(state)) throw new Error(`${op}: ${file} must hold a JSON object, got ${JSON.stringify(state)?.slice(0, 40)}`);
  return state as Record<string, unknown>;
}

/** state.json of the checkpoint at `requested` (found as loadCheckpoint finds it) and the file it came from. */
export function readCheckpointState(requested: string): { state: Record<string, unknown>; file: string } {
  const dir = requireCheckpoint('readCheckpointState', requested);
  return { state: readState('readCheckpointState', dir), file: path.join(dir, 'state.json') };
}

/**
 * Reads a checkpoint directory; extra files come back as bytes. When `dir` is missing because a
 * save crashed while swapping versions, the previous version left beside it is read instead.
 * `dir` in the result is the directory actually read.
 */
export function loadCheckpoint(requested: string, options: { device?: DeviceRequest } = {}): Required<Checkpoint> & { dir: string } {
  const dir = requireCheckpoint('loadCheckpoint', requested);
  const state = readState('loadCheckpoint', dir);
  const model = loadSafetensors(path.join(dir, 'model.safetensors'), options).tensors;
  const optimizerFile = path.join(dir, 'optimizer.safetensors');
  let optimizer: Record<string, Tensor> = {};
  try {
    if (existsSync(optimizerFile)) optimizer = loadSafetensors(optimizerFile, options).tensors;
  } catch (err) {
    for (const t of Object.values(model)) t.dispose();
    throw err;
  }
  const files: Record<string, Uint8Array> = {};
  for (const name of readdirSync(dir)) if (!reserved.has(name)) files[name] = readFileSync(path.join(dir, name));
  return { model, optimizer, state, files, dir };
}
