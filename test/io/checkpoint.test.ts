import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { atomicWriteFile, onDirectorySwapStep, writeDirectoryAtomic, type SwapStep } from '../../lib/io/atomic.js';
import { checkCheckpointTarget, isCheckpoint, loadCheckpoint, readCheckpointState, saveCheckpoint } from '../../lib/io/checkpoint.js';
import { fromArray } from '../../lib/tensor.js';
import { checkMemoryGuards, expectIdentical } from '../helpers.js';

checkMemoryGuards();

const scratchRoot = mkdtempSync(path.join(tmpdir(), 'realtune-ckpt-'));
afterAll(() => rmSync(scratchRoot, { recursive: true, force: true }));
/** A fresh directory of its own for each use, all under one removed when the file is done. */
const scratch = () => mkdtempSync(path.join(scratchRoot, 'case-'));

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
    saveCheckpoint(dir, { model: { a: fromArray([2]) }, state: { step: 2 } }, { knownFiles: ['old.txt'] });
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

  it('a save replaces only a checkpoint (or an empty directory): a file, a link or a folder holding anything else stays, and the error says what is there', () => {
    const parent = scratch();
    const save = (dir: string) => saveCheckpoint(dir, { model: { a: fromArray([1]) }, state: { step: 1 }, files: { 'tokenizer.json': '{}' } });
    const snapshot = () => readdirSync(parent, { recursive: true }).map(String).sort();

    const folder = path.join(parent, 'h');
    mkdirSync(path.join(folder, 'p'), { recursive: true });
    writeFileSync(path.join(folder, 'notes.txt'), 'precious');
    const file = path.join(parent, 'file');
    writeFileSync(file, 'a regular file');
    const link = path.join(parent, 'link');
    symlinkSync(folder, link);
    const mixed = path.join(parent, 'mixed');
    save(mixed);
    writeFileSync(path.join(mixed, 'notes.txt'), 'mine');
    const before = snapshot();
    expect(() => save(folder)).toThrow(/refusing to replace .*\/h: it holds (notes.txt, p\/|p\/, notes.txt), which no checkpoint save writes/);
    expect(() => save(file)).toThrow(/refusing to replace .*\/file: .*is a file, not a/);
    expect(() => save(link)).toThrow(/refusing to replace .*\/link: .*symbolic link/);
    expect(() => save(mixed)).toThrow(/refusing to replace .*\/mixed: it holds notes.txt, which no checkpoint save writes/);
    expect(() => checkCheckpointTarget(folder, '--model-out')).toThrow(/--model-out .*\/h: it holds .*notes.txt/);
    expect(snapshot()).toEqual(before);
    expect(readFileSync(path.join(folder, 'notes.txt'), 'utf8')).toBe('precious');

    const empty = path.join(parent, 'empty');
    mkdirSync(empty);
    save(empty);
    save(empty);
    expect(readCheckpointState(empty).state).toEqual({ step: 1 });
  });

  describe('a save interrupted after each of its steps (what a kill there leaves): every reader finds the last complete version, and the next save cleans up', () => {
    const steps: [SwapStep, number][] = [
      ['written', 1],
      ['moved-aside', 1],
      ['moved-in', 2],
      ['removed-previous', 2],
    ];
    for (const [step, expected] of steps) {
      it(`after ${step}: step ${expected} is read`, () => {
        const parent = scratch();
        const dir = path.join(parent, 'latest');
        saveCheckpoint(dir, { model: { a: fromArray([1]) }, state: { step: 1 } });
        onDirectorySwapStep((reached) => {
          if (reached === step) throw new Error('killed');
        });
        try {
          expect(() => saveCheckpoint(dir, { model: { a: fromArray([2]) }, state: { step: 2 } })).toThrow(new RegExp(`interrupted after step ${step}`));
        } finally {
          onDirectorySwapStep(undefined);
        }
        expect(isCheckpoint(dir)).toBe(true);
        expect(readCheckpointState(dir).state).toEqual({ step: expected });
        const loaded = loadCheckpoint(dir);
        expect(loaded.state).toEqual({ step: expected });
        expectIdentical(loaded.model.a!.toArray(), new Float32Array([expected]));
        saveCheckpoint(dir, { model: { a: fromArray([3]) }, state: { step: 3 } });
        expect(readdirSync(parent)).toEqual(['latest']);
        expect(loadCheckpoint(dir).state).toEqual({ step: 3 });
      });
    }
  });
});
