// The training commands from source (`node --import tsx lib/cli/run.ts ...`) with tiny step
// counts: train-base, resume, sample from what it wrote, train-dpo, and argument errors.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseFlags } from '../../lib/cli/flags.js';
import { trainBaseFlags, trainOptionsFromFlags } from '../../lib/cli/train-base.js';
import { imageToPng } from '../../lib/io/images.js';
import { loadSafetensors } from '../../lib/io/safetensors.js';
import { checkMemoryGuards, expectIdentical } from '../helpers.js';

checkMemoryGuards();

const root = path.join(__dirname, '..', '..');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function cli(args: string[]): string {
  return execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli/run.ts'), ...args], { cwd: root, encoding: 'utf8', env: process.env });
}

/** Runs a command expected to fail; returns its exit code and stderr. */
function cliFails(args: string[]): { status: number | null; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'lib/cli/run.ts'), ...args], { cwd: root, encoding: 'utf8', env: process.env });
  return { status: result.status, stderr: result.stderr };
}

describe('cli train-base / sample', () => {
  const out = path.join(scratch, 'run');

  it('train-base trains on figures, writes a checkpoint, a model and a sample grid', () => {
    const log = cli(['train-base', '--figures', '12', '--preset', 'tiny', '--steps', '2', '--batch', '2', '--lr', '1e-3', '--out', out, '--sample-every', '2', '--sample-steps', '2', '--sample-prompts', 'a person', '--quiet']);
    expect(log).toMatch(/train-base: model written to/);
    for (const f of ['state.json', 'tokenizer.json', 'model.safetensors', 'optimizer.safetensors']) expect(existsSync(path.join(out, 'checkpoint', f)), f).toBe(true);
    expect(readFileSync(path.join(out, 'samples', 'step-000002.png')).subarray(1, 4).toString()).toBe('PNG');
    const { trainer } = JSON.parse(readFileSync(path.join(out, 'checkpoint', 'state.json'), 'utf8')) as { trainer: { step: number; losses: number[] } };
    expect(trainer.step).toBe(2);
    expect(trainer.losses).toHaveLength(2);
    expect(trainer.losses.every((l) => Number.isFinite(l) && l > 0), `losses ${trainer.losses}`).toBe(true);
    // What it prints is what it trained: the mean of the losses state.json holds.
    expect(log).toContain(`step 2/2, mean loss of the last 2 steps ${((trainer.losses[0]! + trainer.losses[1]!) / 2).toFixed(4)}`);
    // The model it writes holds the checkpoint's weights.
    const model = loadSafetensors(path.join(out, 'model', 'model.safetensors')).tensors;
    const checkpoint = loadSafetensors(path.join(out, 'checkpoint', 'model.safetensors')).tensors;
    expect(Object.keys(model).sort()).toEqual(Object.keys(checkpoint).sort());
    for (const [name, t] of Object.entries(checkpoint)) expectIdentical(model[name]!.toArray(), t.toArray(), name);
  });

  it('--resume continues from the checkpoint to the new step count, loss for loss and weight for weight a straight run', () => {
    const losses = (dir: string): number[] => {
      const { trainer } = JSON.parse(readFileSync(path.join(dir, 'checkpoint', 'state.json'), 'utf8')) as { trainer: { step: number; losses: number[] } };
      expect(trainer.losses, dir).toHaveLength(trainer.step);
      return trainer.losses;
    };
    const first = losses(out);
    // Two steps past the resume: the second one's loss depends on the restored optimizer moments.
    const log = cli(['train-base', '--figures', '12', '--steps', '4', '--batch', '2', '--lr', '1e-3', '--out', out, '--resume', '--sample-steps', '2', '--sample-prompts', 'a person', '--quiet']);
    expect(log).toMatch(/resuming from .*checkpoint/);
    const resumed = losses(out);
    expect(resumed).toHaveLength(4);
    expect(resumed.slice(0, 2), 'the steps before the resume are kept').toEqual(first);
    // The same run without the interruption: every step's loss and the final weights identical.
    const straightOut = path.join(scratch, 'straight');
    cli(['train-base', '--figures', '12', '--preset', 'tiny', '--steps', '4', '--batch', '2', '--lr', '1e-3', '--out', straightOut, '--sample-every', '2', '--sample-steps', '2', '--sample-prompts', 'a person', '--quiet']);
    expect(resumed, 'losses of the resumed run vs a straight run').toEqual(losses(straightOut));
    const weights = (dir: string) => readFileSync(path.join(dir, 'checkpoint', 'model.safetensors'));
    expect(weights(out).equals(weights(straightOut)), 'final weights of the resumed run vs a straight run').toBe(true);
  });

  it('sample writes a grid from the trained model', () => {
    const grid = path.join(scratch, 'grid.png');
    const log = cli(['sample', '--ckpt', path.join(out, 'model'), '--prompt', 'a person in a red shirt', '--negative', 'blurry', '--steps', '2', '--n', '2', '--seed', '3', '--out', grid, '--quiet']);
    expect(log).toMatch(/2 images written to/);
    expect(readFileSync(grid).subarray(1, 4).toString()).toBe('PNG');
  });

  it('demo runs a small curriculum from the shipped model and writes the before/after grid and the table, ending with how to use the adapters', () => {
    const demoOut = path.join(scratch, 'demo');
    const log = cli(['demo', '--real-figures', '2', '--pool-size', '2', '--sampling-steps', '2', '--stage-steps', '1', '--eval-prompts', '2', '--n', '1', '--out', demoOut, '--quiet']);
    expect(log).toMatch(/demo: before \(top row\) and after the curriculum \(bottom row\) in .*before-after\.png/);
    expect(readFileSync(path.join(demoOut, 'before-after.png')).subarray(1, 4).toString()).toBe('PNG');
    expect(readFileSync(path.join(demoOut, 'table.md'), 'utf8')).toMatch(/\| full \+ text-encoder LoRA \| \d/);
    expect(log.trim().split('\n').at(-1)).toMatch(/^demo: the adapters: realtune sample --ckpt .* --lora .*easy\+normal\+hard\/lora\.safetensors --lora-scale 0\.5/);
  });

  it('train-base reads a folder of captioned images and a JSONL manifest', async () => {
    const dir = path.join(scratch, 'images');
    mkdirSync(dir, { recursive: true });
    const lines: string[] = [];
    for (let i = 0; i < 3; i++) {
      const image = new Float32Array(3 * 40 * 40).map((_, k) => Math.sin(k * (i + 1) * 0.01));
      await imageToPng(image, path.join(dir, `img${i}.png`), { height: 40, width: 40 });
      writeFileSync(path.join(dir, `img${i}.txt`), `picture number ${i}`);
      lines.push(JSON.stringify({ image: `images/img${i}.png`, caption: `picture number ${i}` }));
    }
    writeFileSync(path.join(scratch, 'manifest.jsonl'), `${lines.join('\n')}\n`);
    // Each run trained one step on that data: state.json names it and holds the printed loss.
    const trained = (log: string, runOut: string, source: string): void => {
      const { trainer } = JSON.parse(readFileSync(path.join(runOut, 'checkpoint', 'state.json'), 'utf8')) as { trainer: { step: number; losses: number[]; run?: unknown } };
      expect(trainer.step).toBe(1);
      expect(Number.isFinite(trainer.losses[0]), `loss ${trainer.losses[0]}`).toBe(true);
      expect(log).toContain(`step 1/1, mean loss of the last 1 steps ${trainer.losses[0]!.toFixed(4)}`);
      expect(JSON.stringify(trainer.run), 'the run records its data').toContain(source);
    };
    const folderOut = path.join(scratch, 'folder-run');
    trained(cli(['train-base', '--data', dir, '--steps', '1', '--batch', '2', '--out', folderOut, '--quiet']), folderOut, dir);
    const manifestOut = path.join(scratch, 'manifest-run');
    trained(cli(['train-base', '--manifest', path.join(scratch, 'manifest.jsonl'), '--steps', '1', '--batch', '2', '--out', manifestOut, '--quiet']), manifestOut, path.join(scratch, 'manifest.jsonl'));
  });

  it('--dropout sets the DiT dropout of the run; without it the model keeps its own', () => {
    expect(trainOptionsFromFlags(parseFlags(['--figures', '4', '--dropout', '0.2'], trainBaseFlags), out).dropout).toBe(0.2);
    expect(trainOptionsFromFlags(parseFlags(['--figures', '4'], trainBaseFlags), out)).not.toHaveProperty('dropout');
    expect(trainBaseFlags.dropout!.help).toMatch(/DiT blocks/);
  });

  it('train-dpo trains adapters from a checkpoint on figure pairs; sample applies them', () => {
    const dpoOut = path.join(scratch, 'dpo');
    const log = cli(['train-dpo', '--from', path.join(out, 'model'), '--figures', '6', '--steps', '2', '--batch', '2', '--rank', '2', '--text-rank', '1', '--stat-weight', '10', '--sample-steps', '2', '--sample-prompts', 'a person in a red shirt|a person', '--out', dpoOut, '--quiet']);
    expect(log).toMatch(/train-dpo: .* on 6 pairs \(6 procedural figure pairs \(seed 0, losers in another shirt colour\)\), 2 steps/);
    expect(log).toMatch(/mean of the last 2 steps: loss \d\.\d{4} \(log 2 = 0\.6931 at the start\), implicit accuracy/);
    const lora = path.join(dpoOut, 'lora.safetensors');
    expect(readFileSync(path.join(dpoOut, 'samples.png')).subarray(1, 4).toString()).toBe('PNG');
    const header = JSON.parse(readFileSync(lora).subarray(8, 8 + Number(readFileSync(lora).readBigUInt64LE(0))).toString('utf8')) as Record<string, unknown>;
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    expect(names.some((k) => /^dpo\/blocks\.0\.attn\.q\.lora\.(down|up)$/.test(k))).toBe(true);
    expect(names.some((k) => /^text\/text\.blocks\.0\.attn\.q\.lora\.(down|up)$/.test(k))).toBe(true);
    const grid = path.join(dpoOut, 'with-lora.png');
    expect(cli(['sample', '--ckpt', path.join(out, 'model'), '--prompt', 'a person', '--steps', '2', '--n', '1', '--lora', lora, '--lora-scale', '0.5', '--out', grid, '--quiet'])).toMatch(/1 images? written to/);
  });

  it('argument errors name the flag and the expectation', () => {
    const cases: [string[], RegExp][] = [
      [['train-base', '--steps', '2'], /give the training data: --data DIR, --manifest FILE.jsonl, --figures N or --fresh/],
      [['train-base', '--figures', '4', '--steps', 'many'], /--steps expects an integer, got "many"/],
      [['train-base', '--figures', '4', '--batch', '0'], /--batch must be >= 1, got 0/],
      [['train-base', '--figures', '4', '--dropout', '1'], /--dropout must be < 1, got 1/],
      [['train-base', '--figures', '4', '--preset', 'huge'], /--preset must be one of tiny, small, got "huge"/],
      [['train-base', '--figures', '4', '--stages', '32-100'], /--stages expects RESOLUTION:STEPS pairs/],
      [['train-base', '--figures', '4', '--frobnicate'], /unknown flag --frobnicate/],
      [['train-base', '--figures', '4', '--data', scratch], /give one of --data, --manifest, --figures, --fresh \(got --data and --figures\)/],
      [['train-base', '--data', path.join(scratch, 'nowhere'), '--steps', '1'], /folderDataset: cannot read directory .*nowhere/],
      [['train-dpo', '--figures', '2', '--pairs', 'p.jsonl'], /give one of --pairs and --figures \(got both\)/],
      [['train-dpo', '--from', path.join(scratch, 'missing'), '--figures', '2'], /--from .*missing: no checkpoint there/],
      [['train-dpo', '--from', path.join(out, 'model'), '--pairs', path.join(scratch, 'missing.jsonl')], /manifestPreferences: cannot read .*missing\.jsonl/],
      [['train-dpo', '--figures', '2', '--beta', '0'], /--beta must be >= 1e-12, got 0/],
      [['sample', '--prompt', 'x'], /--ckpt is required/],
      [['sample', '--ckpt', path.join(scratch, 'missing'), '--prompt', 'x'], /--ckpt .*missing: no such directory/],
      [['sample', '--ckpt', path.join(out, 'model'), '--prompt', 'x', '--cfg', '-1'], /--cfg must be >= 0, got -1/],
      [['sample', '--ckpt', path.join(out, 'model'), '--prompt', 'x', '--sampler', 'euler'], /--sampler must be one of ddim, ddpm, got "euler"/],
    ];
    for (const [args, message] of cases) {
      const { status, stderr } = cliFails(args);
      expect(status, args.join(' ')).toBe(1);
      expect(stderr, args.join(' ')).toMatch(message);
    }
  });
});
