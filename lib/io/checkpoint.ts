// Training checkpoints: one directory holding model.safetensors, optimizer.safetensors (when
// there is an optimiser), state.json (step, RNG state, config, anything JSON) and any extra
// files (a tokenizer, say). Written as a whole with writeDirectoryAtomic: an interrupted save
// leaves the previous checkpoint intact.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { DeviceRequest } from '../device.js';
import type { Tensor } from '../tensor.js';
import { lastCompleteDirectory, writeDirectoryAtomic } from './atomic.js';
import { encodeSafetensors, loadSafetensors, type EncodeOptions } from './safetensors.js';

export interface Checkpoint {
  model: Record<string, Tensor>;
  optimizer?: Record<string, Tensor>;
  state: Record<string, unknown>;
  /** Other files stored beside them, by name (e.g. tokenizer.json). */
  files?: Record<string, string | Uint8Array>;
}

const reserved = new Set(['model.safetensors', 'optimizer.safetensors', 'state.json']);

export function saveCheckpoint(dir: string, checkpoint: Checkpoint, options: Pick<EncodeOptions, 'floatFormat'> = {}): void {
  const files: Record<string, string | Uint8Array> = {};
  for (const [name, data] of Object.entries(checkpoint.files ?? {})) {
    if (reserved.has(name)) throw new Error(`saveCheckpoint: extra file ${name} would overwrite the checkpoint's own`);
    files[name] = data;
  }
  files['model.safetensors'] = encodeSafetensors(checkpoint.model, options);
  if (checkpoint.optimizer) files['optimizer.safetensors'] = encodeSafetensors(checkpoint.optimizer);
  files['state.json'] = `${JSON.stringify(checkpoint.state, null, 2)}\n`;
  writeDirectoryAtomic(dir, files);
}

function holdsCheckpoint(dir: string): boolean {
  return existsSync(path.join(dir, 'model.safetensors')) && existsSync(path.join(dir, 'state.json'));
}

/** Whether loadCheckpoint(dir) finds a checkpoint (possibly the previous version of an interrupted save). */
export function isCheckpoint(dir: string): boolean {
  const complete = lastCompleteDirectory(dir);
  return complete !== undefined && holdsCheckpoint(complete);
}

/**
 * Reads a checkpoint directory; extra files come back as bytes. When `dir` is missing because a
 * save crashed while swapping versions, the previous version left beside it is read instead.
 */
export function loadCheckpoint(requested: string, options: { device?: DeviceRequest } = {}): Required<Checkpoint> {
  const dir = lastCompleteDirectory(requested) ?? requested;
  if (dir !== requested) process.emitWarning(`loadCheckpoint: ${requested} is missing (a save was interrupted); reading the previous version ${dir}`, { code: 'REALTUNE_CHECKPOINT_RECOVERED' });
  if (!holdsCheckpoint(dir)) throw new Error(`loadCheckpoint: ${dir} is not a checkpoint (needs model.safetensors and state.json)`);
  const model = loadSafetensors(path.join(dir, 'model.safetensors'), options).tensors;
  const optimizerFile = path.join(dir, 'optimizer.safetensors');
  const optimizer = existsSync(optimizerFile) ? loadSafetensors(optimizerFile, options).tensors : {};
  let state: Record<string, unknown>;
  try {
    state = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`loadCheckpoint: ${path.join(dir, 'state.json')} is not valid JSON (${(err as Error).message})`);
  }
  const files: Record<string, Uint8Array> = {};
  for (const name of readdirSync(dir)) if (!reserved.has(name)) files[name] = readFileSync(path.join(dir, name));
  return { model, optimizer, state, files };
}
