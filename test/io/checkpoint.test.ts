import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { atomicWriteFile, writeDirectoryAtomic } from '../../lib/io/atomic.js';
import { isCheckpoint, loadCheckpoint, saveCheckpoint } from '../../lib/io/checkpoint.js';
import { fromArray } from '../../lib/tensor.js';
import { checkMemoryGuards, expectIdentical } from '../helpers.js';

checkMemoryGuards();

const scratch = () => mkdtempSync(path.join(tmpdir(), 'realtune-ckpt-'));

describe('checkpoints', () => {
  it('round-trip model, optimiser, state and extra files', () => {
    const dir = path.join(scratch(), 'step-10');
    saveCheckpoint(dir, {
      model: { 'blocks.0.w': fromArray([1, 2, 3, 4], [2, 2]), ids: fromArray([7], [1], { dtype: 'i32' }) },
      optimizer: { 'blocks.0.w.m': fromArray([0.5, 0, 0, 0], [2, 2]) },
      state: { step: 10, rng: { seed: 3, offset: 99 } },
      files: { 'tokenizer.json': '{"merges":[]}' },
    });
    expect(isCheckpoint(dir)).toBe(true);
    const back = loadCheckpoint(dir);
    expectIdentical(back.model['blocks.0.w']!.toArray(), new Float32Array([1, 2, 3, 4]));
    expect(back.model.ids!.dtype).toBe('i32');
    expectIdentical(back.optimizer['blocks.0.w.m']!.toArray(), new Float32Array([0.5, 0, 0, 0]));
    expect(back.state).toEqual({ step: 10, rng: { seed: 3, offset: 99 } });
    expect(Buffer.from(back.files['tokenizer.json']!).toString()).toBe('{"merges":[]}');
  });

  it('replaces an existing checkpoint whole and leaves no temporary files', () => {
    const parent = scratch();
    const dir = path.join(parent, 'latest');
    saveCheckpoint(dir, { model: { a: fromArray([1]) }, state: { step: 1 }, files: { 'old.txt': 'x' } });
    saveCheckpoint(dir, { model: { a: fromArray([2]) }, state: { step: 2 } });
    expect(readdirSync(parent)).toEqual(['latest']);
    expect(existsSync(path.join(dir, 'old.txt'))).toBe(false);
    expect(loadCheckpoint(dir).state.step).toBe(2);
  });

  it('a failed write keeps the previous version and cleans up', () => {
    const parent = scratch();
    const file = path.join(parent, 'f.json');
    atomicWriteFile(file, 'first');
    expect(() => writeDirectoryAtomic(path.join(parent, 'd'), { '../escape': 'x' })).toThrow(/invalid file name "..\/escape"/);
    expect(() => saveCheckpoint(path.join(parent, 'c'), { model: {}, state: {}, files: { 'state.json': '{}' } })).toThrow(/would overwrite/);
    expect(readFileSync(file, 'utf8')).toBe('first');
    expect(readdirSync(parent).sort()).toEqual(['f.json']);
  });

  it('a save that crashed mid-swap: the previous version is read, and the next save cleans up', () => {
    const parent = scratch();
    const dir = path.join(parent, 'latest');
    saveCheckpoint(dir, { model: { a: fromArray([1]) }, state: { step: 1 } });
    // What a process killed between its two renames leaves: the previous version moved aside,
    // the new one (maybe partial) under its temporary name, and nothing at `dir`.
    const deadPid = spawnSync(process.execPath, ['-e', '0']).pid!;
    renameSync(dir, `${dir}.old-${deadPid}-abc123`);
    mkdirSync(`${dir}.tmp-${deadPid}-def456`);
    writeFileSync(path.join(`${dir}.tmp-${deadPid}-def456`, 'model.safetensors'), 'partial');
    expect(isCheckpoint(dir)).toBe(true);
    expect(loadCheckpoint(dir).state).toEqual({ step: 1 });
    saveCheckpoint(dir, { model: { a: fromArray([2]) }, state: { step: 2 } });
    expect(readdirSync(parent)).toEqual(['latest']);
    expect(loadCheckpoint(dir).state).toEqual({ step: 2 });
  });

  it('names the problem when a directory is not a checkpoint or its state is corrupt', () => {
    const dir = scratch();
    expect(() => loadCheckpoint(dir)).toThrow(/is not a checkpoint \(needs model.safetensors and state.json\)/);
    saveCheckpoint(dir, { model: { a: fromArray([1]) }, state: {} });
    writeFileSync(path.join(dir, 'state.json'), '{oops');
    expect(() => loadCheckpoint(dir)).toThrow(/state.json is not valid JSON/);
  });
});
