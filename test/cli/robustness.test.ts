// What the commands do with bad flags and bad files, as one table: each case is a command line
// (and the files it finds) -> the exit code and a fragment of what it prints, and nothing outside
// the run's own directories changed. Every command joins the table (a test checks that), so a
// new command or flag comes with its cases. Cases run in their own sandbox folder as the working
// directory, on a nano model (16x16 images) so that each takes about a second.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curriculumFlags } from '../../lib/cli/curriculum.js';
import { demoFlags } from '../../lib/cli/demo.js';
import { evalFlags } from '../../lib/cli/eval.js';
import { trainEvaluatorFlags } from '../../lib/cli/train-evaluator.js';
import { flagRange, parseFlags, type FlagSpecs } from '../../lib/cli/flags.js';
import { sampleFlags } from '../../lib/cli/sample.js';
import { trainBaseFlags } from '../../lib/cli/train-base.js';
import { trainDpoFlags } from '../../lib/cli/train-dpo.js';
import { firstNonFinite } from '../../lib/numeric.js';
import { loadTrainingData, trainTokenizer } from '../../lib/train/data.js';
import { TextToImage } from '../../lib/models/text_to_image.js';
import { fromArray, type Tensor } from '../../lib/tensor.js';
import { saveSafetensors } from '../../lib/io/safetensors.js';
import { adapterFileFormat, adapterMetadataKey, saveAdapterFile } from '../../lib/nn/adapter_file.js';
import { axpy } from '../../lib/ops/elementwise.js';
import { Generator, randn } from '../../lib/ops/random.js';
import { checkMemoryGuards, testSeed } from '../helpers.js';

checkMemoryGuards();

const root = path.join(__dirname, '..', '..');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-robustness-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const fixtures = path.join(scratch, 'fixtures');

// The sandboxes are the working directories: tsx and the addon are named by absolute paths.
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const env = { ...process.env, ...(process.env.REALTUNE_ADDON ? { REALTUNE_ADDON: path.resolve(root, process.env.REALTUNE_ADDON) } : {}) };

function cli(args: readonly string[], cwd: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', tsx, path.join(root, 'lib/cli/run.ts'), ...args], { cwd, encoding: 'utf8', env });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Every entry under `dir` with what it is: a file's hash, a link's target, or 'dir'. */
function snapshot(dir: string): Map<string, string> {
  const entries = new Map<string, string>();
  if (!existsSync(dir)) return entries;
  for (const relative of readdirSync(dir, { recursive: true }).map(String)) {
    const full = path.join(dir, relative);
    const stats = lstatSync(full);
    entries.set(relative, stats.isSymbolicLink() ? `link ${readlinkSync(full)}` : stats.isDirectory() ? 'dir' : createHash('sha1').update(readFileSync(full)).digest('hex'));
  }
  return entries;
}

/** Paths added, removed or changed between two snapshots, except those inside `owned`. */
function changesOutside(before: Map<string, string>, after: Map<string, string>, owned: readonly string[]): string[] {
  const inOwned = (p: string): boolean => owned.some((o) => p === o || p.startsWith(`${o}${path.sep}`));
  const keys = new Set([...before.keys(), ...after.keys()]);
  return [...keys].filter((k) => before.get(k) !== after.get(k) && !inOwned(k)).sort();
}

/** A process id that no process has any more (what a killed save leaves in its temporary names). */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '0']).pid!;
}

/** What a save killed between its two renames leaves of checkpoint `dir`: the previous version moved aside, the new one half written. */
function killMidSwap(dir: string): void {
  const pid = deadPid();
  renameSync(dir, `${dir}.old-${pid}-abc123`);
  mkdirSync(`${dir}.tmp-${pid}-def456`);
  writeFileSync(path.join(`${dir}.tmp-${pid}-def456`, 'model.safetensors'), 'half written');
}

function editJson(file: string, edit: (json: Record<string, unknown>) => void): void {
  const json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(json);
  writeFileSync(file, JSON.stringify(json));
}

interface Case {
  /** The issue item the case belongs to. */
  item: number;
  name: string;
  /** Files the command finds, made in the sandbox (`at` resolves sandbox-relative paths). */
  setup?: (at: (p: string) => string) => void;
  args: (at: (p: string) => string) => string[];
  status: number;
  /** In stderr when the command fails, in stdout when it succeeds. */
  message: RegExp;
  /** Sandbox-relative paths that are the run's own: it may create or change what is inside. */
  owns?: string[];
  /** More about what the run left. */
  check?: (at: (p: string) => string) => void;
}

/** A copy of a fixture checkpoint in the sandbox. */
const copy = (fixture: string, to: string) => (at: (p: string) => string) => cpSync(path.join(fixtures, fixture), at(to), { recursive: true });
const model = () => path.join(fixtures, 'model');
/** An adapter file made for the fixture model (see beforeAll). */
const lora = (name: string) => path.join(fixtures, `${name}.safetensors`);
const quick = ['--figures', '8', '--batch', '2', '--quiet'];
const resumeFlags = (at: (p: string) => string) => ['train-base', '--figures', '8', '--batch', '2', '--steps', '3', '--out', at('run'), '--resume', '--quiet'];
/** `args` with the flags of `changes` set to new values (replaced where given, appended where not). */
function withFlags(args: readonly string[], changes: Record<string, string>): string[] {
  const out = [...args];
  for (const [flag, value] of Object.entries(changes)) {
    const at = out.indexOf(flag);
    if (at >= 0) out[at + 1] = value;
    else out.push(flag, value);
  }
  return out;
}
const dpo = (at: (p: string) => string, changes: Record<string, string> = {}) =>
  withFlags(['train-dpo', '--from', model(), '--figures', '2', '--steps', '1', '--batch', '1', '--rank', '1', '--sample-steps', '0', '--out', at('dpo'), '--quiet'], changes);

const cases: Case[] = [
  // 1. A save replaces only what it wrote itself.
  {
    item: 1,
    name: 'train-base --out h/p --model-out h: h holds the checkpoint, refused before training',
    setup: (at) => {
      mkdirSync(at('h'));
      writeFileSync(at('h/notes.txt'), 'precious');
    },
    args: (at) => ['train-base', '--init', model(), ...quick, '--steps', '1', '--out', at('h/p'), '--model-out', at('h')],
    status: 1,
    message: /--model-out .*\/h holds the run's checkpoint directory .*\/h\/p\/checkpoint: saving the model there would replace it/,
  },
  {
    item: 1,
    name: 'train-base --model-out a folder holding other files',
    setup: (at) => {
      mkdirSync(at('h/p'), { recursive: true });
      writeFileSync(at('h/notes.txt'), 'precious');
    },
    args: (at) => ['train-base', '--init', model(), ...quick, '--steps', '1', '--out', at('o'), '--model-out', at('h')],
    status: 1,
    message: /--model-out .*\/h: it holds (notes\.txt, p\/|p\/, notes\.txt), which no checkpoint save writes/,
  },
  {
    item: 1,
    name: 'train-base --model-out a regular file',
    setup: (at) => writeFileSync(at('f'), 'a file'),
    args: (at) => ['train-base', '--init', model(), ...quick, '--steps', '1', '--out', at('o'), '--model-out', at('f')],
    status: 1,
    message: /--model-out .*\/f: .*is a file, not a checkpoint directory/,
  },
  {
    item: 1,
    name: 'train-base --model-out equal to --out',
    args: (at) => ['train-base', '--init', model(), ...quick, '--steps', '1', '--out', at('o'), '--model-out', at('o')],
    status: 1,
    message: /--model-out .*\/o holds the run's checkpoint directory/,
  },
  {
    item: 1,
    name: 'train-base --out whose checkpoint/ is a folder of the user',
    setup: (at) => {
      mkdirSync(at('o/checkpoint'), { recursive: true });
      writeFileSync(at('o/checkpoint/notes.txt'), 'precious');
    },
    args: (at) => ['train-base', '--init', model(), ...quick, '--steps', '1', '--out', at('o')],
    status: 1,
    message: /--out .*\/o\/checkpoint: it holds notes\.txt, which no checkpoint save writes/,
  },
  {
    item: 1,
    name: 'train-base --model-out an earlier model: replaced',
    setup: copy('model', 'm'),
    args: (at) => ['train-base', '--init', model(), ...quick, '--steps', '1', '--out', at('o'), '--model-out', at('m')],
    status: 0,
    message: /train-base: model written to .*\/m;/,
    owns: ['o', 'm'],
  },
  {
    item: 1,
    name: 'demo --out whose curriculum/ holds a run with other settings',
    setup: (at) => {
      mkdirSync(at('d/curriculum'), { recursive: true });
      writeFileSync(at('d/curriculum/run.json'), JSON.stringify({ base: 'another model' }));
    },
    args: (at) => ['demo', '--ckpt', model(), '--stage-steps', '1', '--real-figures', '2', '--pool-size', '2', '--sampling-steps', '1', '--n', '1', '--out', at('d'), '--quiet'],
    status: 1,
    message: /curriculum: .*\/d\/curriculum holds a run with other settings: base .* \(the run has "another model"\)/,
  },
  {
    item: 1,
    name: 'curriculum with a scorer that reads another image size',
    args: (at) => ['curriculum', '--ckpt', model(), '--real-figures', '2', '--out', at('c'), '--quiet'],
    status: 1,
    message: /the scorer builtin reads 32x32 images but .* makes 16x16; give a scorer for that size/,
  },
  {
    item: 1,
    name: 'curriculum --prompts with only empty lines',
    setup: (at) => writeFileSync(at('prompts.txt'), '\n  \n'),
    args: (at) => ['curriculum', '--ckpt', model(), '--prompts', at('prompts.txt'), '--out', at('c'), '--quiet'],
    status: 1,
    message: /the prompt file .*prompts\.txt has no prompt \(every line is empty\)/,
  },

  // 2. A save killed between its renames: every reader recovers the previous version.
  {
    item: 2,
    name: 'sample --ckpt of a checkpoint whose save was killed mid-swap',
    setup: (at) => {
      copy('model', 'c')(at);
      killMidSwap(at('c'));
    },
    args: (at) => ['sample', '--ckpt', at('c'), '--prompt', 'a person', '--steps', '2', '--n', '1', '--out', at('grid.png'), '--quiet'],
    status: 0,
    message: /sample: 1 images written to/,
    owns: ['grid.png'],
  },
  {
    item: 2,
    name: 'train-base --resume from a checkpoint whose save was killed mid-swap',
    setup: (at) => {
      copy('run', 'run')(at);
      killMidSwap(at('run/checkpoint'));
    },
    args: resumeFlags,
    status: 0,
    message: /resuming from .*\/run\/checkpoint[\s\S]*step 3\/3/,
    owns: ['run'],
    check: (at) => {
      expect(readdirSync(at('run')).sort()).toEqual(['checkpoint', 'model']);
      // The recovered run goes on as if never interrupted: the straight 3-step run's losses and weights.
      const trainer = (dir: string) => (JSON.parse(readFileSync(path.join(dir, 'checkpoint', 'state.json'), 'utf8')) as { trainer: { step: number; losses: number[] } }).trainer;
      expect(trainer(at('run')).step).toBe(3);
      expect(trainer(at('run')).losses, 'losses vs a straight run').toEqual(trainer(path.join(fixtures, 'straight')).losses);
      const weights = (dir: string) => readFileSync(path.join(dir, 'checkpoint', 'model.safetensors'));
      expect(weights(at('run')).equals(weights(path.join(fixtures, 'straight'))), 'weights vs a straight run').toBe(true);
    },
  },
  {
    item: 2,
    name: 'train-dpo --from a checkpoint whose save was killed mid-swap',
    setup: (at) => {
      copy('model', 'c')(at);
      killMidSwap(at('c'));
    },
    args: (at) => dpo(at, { '--from': at('c') }),
    status: 0,
    message: /train-dpo: adapters written to/,
    owns: ['dpo'],
  },

  // 3. A resume that would silently be another run.
  {
    item: 3,
    name: 'train-base --resume without optimizer.safetensors',
    setup: (at) => {
      copy('run', 'run')(at);
      rmSync(at('run/checkpoint/optimizer.safetensors'));
    },
    args: resumeFlags,
    status: 1,
    message: /optimizer\.safetensors is missing, so Adam's moments after 2 steps are lost; resume with --reset-optimizer/,
  },
  {
    item: 3,
    name: 'train-base --resume --reset-optimizer says what it resets',
    setup: (at) => {
      copy('run', 'run')(at);
      rmSync(at('run/checkpoint/optimizer.safetensors'));
    },
    args: (at) => [...resumeFlags(at), '--reset-optimizer'],
    status: 0,
    message: /resuming from .*with Adam's moments reset to zero/,
    owns: ['run'],
  },
  {
    item: 3,
    name: 'train-base --resume with a trainer.step that is not a number',
    setup: (at) => {
      copy('run', 'run')(at);
      editJson(at('run/checkpoint/state.json'), (s) => ((s.trainer as Record<string, unknown>).step = 'ten'));
    },
    args: resumeFlags,
    status: 1,
    message: /run\/checkpoint\/state\.json: trainer\.step must be an integer >= 1, got "ten"/,
  },
  {
    item: 3,
    name: 'train-base --resume with --steps below the checkpoint step',
    setup: copy('run', 'run'),
    args: (at) => ['train-base', '--figures', '8', '--batch', '2', '--steps', '1', '--out', at('run'), '--resume', '--quiet'],
    status: 1,
    message: /it is at step 2 already, so steps 1 leaves nothing to train/,
  },
  {
    item: 3,
    name: 'train-base --resume with another --batch',
    setup: copy('run', 'run'),
    args: (at) => ['train-base', '--figures', '8', '--batch', '4', '--steps', '3', '--out', at('run'), '--resume', '--quiet'],
    status: 1,
    message: /this resume asks for batch 4 \(the run has 2\); resume with the run's settings/,
  },
  {
    item: 3,
    name: 'train-base --resume on other data (--figures-seed)',
    setup: copy('run', 'run'),
    args: (at) => [...resumeFlags(at), '--figures-seed', '5'],
    status: 1,
    message: /data "8 procedural figures \(seed 5\)" \(the run has "8 procedural figures \(seed 0\)"\)/,
  },

  // 4. Every output path checked before any work.
  {
    item: 4,
    name: 'train-base --out a file, checkpoints only at the end',
    setup: (at) => writeFileSync(at('f'), 'a file'),
    args: (at) => ['train-base', '--init', model(), ...quick, '--steps', '1', '--ckpt-every', '0', '--out', at('f')],
    status: 1,
    message: /--out .*\/f is a file, not a directory/,
  },
  {
    item: 4,
    name: 'train-base --out below a file',
    setup: (at) => writeFileSync(at('f'), 'a file'),
    args: (at) => ['train-base', '--init', model(), ...quick, '--steps', '1', '--out', at('f/run')],
    status: 1,
    message: /--out .*\/f\/run cannot be made: .*\/f is a file, not a directory/,
  },
  {
    item: 4,
    name: 'train-base --out where nothing can be created',
    args: () => ['train-base', '--init', model(), ...quick, '--steps', '1', '--out', '/proc/realtune-robustness-test'],
    status: 1,
    message: /--out \/proc\/realtune-robustness-test is not writable: nothing can be created in \/proc/,
  },
  {
    item: 4,
    name: 'train-dpo --out a file',
    setup: (at) => writeFileSync(at('f'), 'a file'),
    args: (at) => dpo(at, { '--out': at('f') }),
    status: 1,
    message: /--out .*\/f is a file, not a directory/,
  },
  {
    item: 4,
    name: 'sample --out a directory',
    setup: (at) => mkdirSync(at('grid.png')),
    args: (at) => ['sample', '--ckpt', model(), '--prompt', 'a person', '--steps', '2', '--n', '1', '--out', at('grid.png'), '--quiet'],
    status: 1,
    message: /--out .*\/grid\.png is a directory, expected a file path/,
  },
  {
    item: 4,
    name: 'demo --out a file',
    setup: (at) => writeFileSync(at('f'), 'a file'),
    args: (at) => ['demo', '--ckpt', model(), '--stage-steps', '1', '--out', at('f'), '--quiet'],
    status: 1,
    message: /--out .*\/f is a file, not a directory/,
  },

  // 5. Sizes bounded by the shapes and the machine's memory.
  {
    item: 5,
    name: 'sample --n 1000000000',
    args: (at) => ['sample', '--ckpt', model(), '--prompt', 'a person', '--steps', '2', '--n', '1000000000', '--out', at('grid.png'), '--quiet'],
    status: 1,
    message: /--n 1000000000 x 1 prompt\(s\) needs about .* of memory \(.* per image\), more than this machine's .*: at most about \d+ images fit/,
  },
  {
    item: 5,
    name: 'train-base --figures 100000000',
    args: (at) => ['train-base', '--figures', '100000000', '--steps', '1', '--out', at('o'), '--quiet'],
    status: 1,
    message: /--figures 100000000 \(32x32\) needs about .* of memory \(.* per figure\), more than this machine's .*: at most about \d+ figures fit/,
  },
  {
    item: 5,
    name: 'train-base --batch 100000000',
    args: (at) => ['train-base', '--init', model(), '--figures', '8', '--batch', '100000000', '--steps', '1', '--out', at('o'), '--quiet'],
    status: 1,
    message: /--batch 100000000 \(16x16\) needs about .* of memory/,
  },
  {
    item: 5,
    name: 'train-dpo --rank 100000',
    args: (at) => dpo(at, { '--rank': '100000' }),
    status: 1,
    message: /trainDpo: rank 100000 is more than 16, the most a LoRA update of blocks\.0\.(attn|cross)\.\w+ \(16 -> 16\) can have/,
  },
  {
    item: 5,
    name: 'train-dpo --figures 100000000',
    args: (at) => ['train-dpo', '--from', model(), '--figures', '100000000', '--steps', '1', '--out', at('dpo'), '--quiet'],
    status: 1,
    message: /--figures 100000000 \(16x16\) needs about .* of memory \(.* per pair\)/,
  },
  {
    item: 5,
    name: 'demo --n 1000000000',
    args: (at) => ['demo', '--ckpt', model(), '--stage-steps', '1', '--n', '1000000000', '--out', at('d'), '--quiet'],
    status: 1,
    message: /--n 1000000000 x 2 rows needs about .* of memory/,
  },

  // 6. Non-finite numbers.
  {
    item: 6,
    name: 'train-base --lr 1e30 stops at the first non-finite step and keeps the last checkpoint',
    args: (at) => ['train-base', '--init', model(), ...quick, '--steps', '4', '--ckpt-every', '1', '--lr', '1e30', '--out', at('o')],
    status: 1,
    message: /train: step \d: the (loss|gradient norm) is (NaN|Infinity|-Infinity).*the last checkpoint, .*\/o\/checkpoint, holds the last good weights/,
    owns: ['o'],
    check: (at) => {
      expect(existsSync(at('o/model')), 'no final model').toBe(false);
      const saved = TextToImage.load(at('o/checkpoint'));
      expect(firstNonFinite(saved.dit.stateDict())).toBeUndefined();
      saved.dispose();
    },
  },
  {
    item: 6,
    name: 'train-dpo --beta 1e300',
    args: (at) => dpo(at, { '--beta': '1e300' }),
    status: 1,
    message: /--beta must be <= 3\.4028234663852886e\+38, got 1e300/,
  },
  {
    item: 6,
    name: 'train-dpo --lr 1e30 stops at the first non-finite step, writing no adapters',
    args: (at) => dpo(at, { '--steps': '4', '--lr': '1e30', '--clip-norm': '0' }),
    status: 1,
    message: /trainDpo: step \d: the (loss|gradient norm) is .*no checkpoint had been written/,
  },
  {
    item: 6,
    name: 'sample --ckpt with NaN weights',
    args: (at) => ['sample', '--ckpt', path.join(fixtures, 'nan-model'), '--prompt', 'a person', '--steps', '2', '--n', '1', '--out', at('grid.png'), '--quiet'],
    status: 1,
    message: /nan-model\/model\.safetensors: blocks\.0\.attn\.q\.weight holds 1 non-finite value \(NaN or infinite\) of 256; pass allowNonFinite/,
  },
  {
    item: 6,
    name: 'sample --ckpt with NaN weights --allow-non-finite',
    args: (at) => ['sample', '--ckpt', path.join(fixtures, 'nan-model'), '--prompt', 'a person', '--steps', '2', '--n', '1', '--out', at('grid.png'), '--allow-non-finite', '--quiet'],
    status: 0,
    message: /1 images written to/,
    owns: ['grid.png'],
  },

  // 7. Files checked against their schema, naming the file and the field.
  {
    item: 7,
    name: 'sample --ckpt whose state.json has no dit',
    setup: (at) => {
      copy('model', 'c')(at);
      editJson(at('c/state.json'), (s) => delete s.dit);
    },
    args: (at) => ['sample', '--ckpt', at('c'), '--prompt', 'a person', '--steps', '2', '--n', '1', '--out', at('grid.png'), '--quiet'],
    status: 1,
    message: /c\/state\.json: dit must be an object, got nothing \(the field is missing\)/,
  },
  {
    item: 7,
    name: 'sample --ckpt whose tokenizer.json is cut short',
    setup: (at) => {
      copy('model', 'c')(at);
      const text = readFileSync(at('c/tokenizer.json'), 'utf8');
      writeFileSync(at('c/tokenizer.json'), text.slice(0, text.length / 2));
    },
    args: (at) => ['sample', '--ckpt', at('c'), '--prompt', 'a person', '--steps', '2', '--n', '1', '--out', at('grid.png'), '--quiet'],
    status: 1,
    message: /c\/tokenizer\.json is not valid JSON \(.*\): the file is cut short or not a tokenizer/,
  },
  {
    item: 7,
    name: 'sample --ckpt whose dit.imageSize is 1000000',
    setup: (at) => {
      copy('model', 'c')(at);
      editJson(at('c/state.json'), (s) => ((s.dit as Record<string, unknown>).imageSize = 1e6));
    },
    args: (at) => ['sample', '--ckpt', at('c'), '--prompt', 'a person', '--steps', '2', '--n', '1', '--out', at('grid.png'), '--quiet'],
    status: 1,
    message: /c\/state\.json: dit describes a model this machine cannot hold \(imageSize 1000000, patchSize 4, width 16\): the position table, \(imageSize \/ patchSize\)\^2 x width alone would be/,
  },
  {
    item: 7,
    name: 'sample --ckpt whose model.safetensors lacks a tensor the DiT has',
    setup: (at) => {
      copy('model', 'c')(at);
      const file = at('c/model.safetensors');
      const bytes = readFileSync(file);
      const length = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) as Record<string, unknown>;
      delete header['final.adaLN.bias'];
      const shorter = Buffer.from(JSON.stringify(header));
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(shorter.length));
      writeFileSync(file, Buffer.concat([prefix, shorter, bytes.subarray(8 + length)]));
    },
    args: (at) => ['sample', '--ckpt', at('c'), '--prompt', 'a person', '--steps', '2', '--n', '1', '--out', at('grid.png'), '--quiet'],
    status: 1,
    message: /c\/model\.safetensors does not fit the DiT that state\.json describes: loadStateDict: missing key final\.adaLN\.bias/,
  },
  {
    item: 7,
    name: 'train-base --resume whose optimizer.safetensors holds something else',
    setup: (at) => {
      copy('run', 'run')(at);
      cpSync(at('run/checkpoint/model.safetensors'), at('run/checkpoint/optimizer.safetensors'));
    },
    args: resumeFlags,
    status: 1,
    message: /run\/checkpoint\/optimizer\.safetensors: it has no \S+\.m, \S+\.v, \S+\.m \(and \d+ more\); resume with --reset-optimizer/,
  },
  {
    item: 7,
    name: 'train-dpo --from a checkpoint of another format',
    setup: (at) => {
      copy('model', 'c')(at);
      editJson(at('c/state.json'), (s) => (s.format = 'something-else'));
    },
    args: (at) => dpo(at, { '--from': at('c') }),
    status: 1,
    message: /c\/state\.json: format must be "realtune-text-to-image", got "something-else"/,
  },
  {
    item: 7,
    name: 'train-base --resume whose trainer.noise is missing',
    setup: (at) => {
      copy('run', 'run')(at);
      editJson(at('run/checkpoint/state.json'), (s) => delete (s.trainer as Record<string, unknown>).noise);
    },
    args: resumeFlags,
    status: 1,
    message: /run\/checkpoint\/state\.json: trainer\.noise must be an object, got nothing \(the field is missing\)/,
  },

  // 8. Flags: the help and the parser agree; numbers are read strictly.
  {
    item: 8,
    name: 'train-dpo --sample-steps 0 skips the grid, as its help says',
    args: dpo,
    status: 0,
    message: /no sample grid \(--sample-steps 0\)/,
    owns: ['dpo'],
    check: (at) => {
      expect(readdirSync(at('dpo')), 'the adapters and the resumable checkpoint, no grid').toEqual(['checkpoint', 'lora.safetensors']);
    },
  },
  {
    item: 8,
    name: 'train-base --steps 0x10',
    args: (at) => ['train-base', '--init', model(), ...quick, '--steps', '0x10', '--out', at('o')],
    status: 1,
    message: /--steps expects an integer, got "0x10" \(decimal digits only\)/,
  },
  {
    item: 8,
    name: 'train-base --lr " 1e-3"',
    args: (at) => ['train-base', '--init', model(), ...quick, '--steps', '1', '--lr', ' 1e-3', '--out', at('o')],
    status: 1,
    message: /--lr expects a number, got " 1e-3"/,
  },
  {
    item: 8,
    name: 'sample --steps 5000',
    args: (at) => ['sample', '--ckpt', model(), '--prompt', 'a person', '--steps', '5000', '--n', '1', '--out', at('grid.png'), '--quiet'],
    status: 1,
    message: /--steps 5000 is more than the model's 1000 noise-schedule steps/,
  },
  {
    item: 8,
    name: 'demo --sampling-steps 3.5',
    args: (at) => ['demo', '--ckpt', model(), '--sampling-steps', '3.5', '--out', at('d')],
    status: 1,
    message: /--sampling-steps expects an integer, got "3\.5"/,
  },
  {
    item: 8,
    name: 'curriculum --text-lora-steps 999-900',
    args: (at) => ['curriculum', '--ckpt', model(), '--text-lora-steps', '999-900', '--out', at('c')],
    status: 1,
    message: /--text-lora-steps: LO must be <= HI, got 999-900/,
  },
  {
    item: 8,
    name: 'curriculum --real-dir and --real-figures',
    args: (at) => ['curriculum', '--ckpt', model(), '--real-dir', at('x'), '--real-figures', '3', '--out', at('c')],
    status: 1,
    message: /give one of --real-dir and --real-figures \(got both\)/,
  },

  // The measuring commands and the fresh-figures data join the table.
  {
    item: 4,
    name: 'eval --out under a regular file',
    setup: (at) => writeFileSync(at('f'), 'a file'),
    args: (at) => ['eval', '--ckpt', model(), '--prompts', '2', '--out', at('f/report.json'), '--quiet'],
    status: 1,
    message: /--out .*\/f\/report\.json/,
  },
  {
    item: 4,
    name: 'train-evaluator --out a directory',
    setup: (at) => mkdirSync(at('d')),
    args: (at) => ['train-evaluator', '--kind', 'attributes', '--steps', '1', '--out', at('d'), '--quiet'],
    status: 1,
    message: /--out .*\/d/,
  },
  {
    item: 4,
    name: 'personalize --out under a regular file: refused before reading anything',
    setup: (at) => writeFileSync(at('f'), 'a file'),
    args: (at) => ['personalize', '--ckpt', model(), '--ref', at('missing.png'), '--out', at('f/id.safetensors'), '--quiet'],
    status: 1,
    message: /realtune personalize: --out .*\/f\/id\.safetensors: its folder .*\/f is a file, not a directory/,
  },
  {
    item: 7,
    name: 'personalize --ref a file that is not an image',
    setup: (at) => writeFileSync(at('ref.png'), 'not a png'),
    args: (at) => ['personalize', '--ckpt', model(), '--ref', at('ref.png'), '--out', at('id.safetensors'), '--quiet'],
    status: 1,
    message: /personalize: reference image .*\/ref\.png is not an image sharp can read/,
  },
  {
    item: 7,
    name: 'dsd train --pairs a folder that holds no pairs',
    setup: (at) => mkdirSync(at('nopairs')),
    args: (at) => ['dsd', 'train', '--ckpt', model(), '--pairs', at('nopairs'), '--out', at('adapter'), '--quiet'],
    status: 1,
    message: /realtune dsd: dsd: .*\/nopairs holds no pairs\.json; make the pairs first with `realtune dsd pairs --out/,
  },
  {
    item: 7,
    name: 'dsd pairs --curator a file that is neither an embedder nor ONNX',
    args: (at) => ['dsd', 'pairs', '--ckpt', model(), '--curator', at('curator.txt'), '--out', at('pairs'), '--quiet'],
    status: 1,
    message: /--curator ".*curator\.txt": expected identity, an identity-embedder \.safetensors file or an \.onnx feature extractor/,
  },
  {
    item: 7,
    name: 'eval --ckpt a folder that is not a checkpoint',
    setup: (at) => mkdirSync(at('empty')),
    args: (at) => ['eval', '--ckpt', at('empty'), '--out', at('r.json'), '--quiet'],
    status: 1,
    message: /--ckpt .*\/empty: no checkpoint there/,
  },
  {
    item: 7,
    name: 'eval --classifier a missing file',
    args: (at) => ['eval', '--ckpt', model(), '--classifier', at('none.safetensors'), '--out', at('r.json'), '--quiet'],
    status: 1,
    message: /--classifier .*none\.safetensors: no such file/,
  },
  {
    item: 7,
    name: 'eval --classifier a corrupt file',
    setup: (at) => writeFileSync(at('bad.safetensors'), 'not safetensors'),
    args: (at) => ['eval', '--ckpt', model(), '--prompts', '2', '--steps', '1', '--classifier', at('bad.safetensors'), '--out', at('r.json'), '--quiet'],
    status: 1,
    message: /bad\.safetensors/,
  },
  {
    item: 7,
    name: 'eval of a 16x16 model with the 32x32 classifier',
    args: (at) => ['eval', '--ckpt', model(), '--prompts', '2', '--steps', '1', '--out', at('r.json'), '--quiet'],
    status: 1,
    message: /the model makes 16x16 images but the classifier reads 32x32/,
  },
  {
    item: 8,
    name: 'eval --prompts 1',
    args: (at) => ['eval', '--ckpt', model(), '--prompts', '1', '--out', at('r.json')],
    status: 1,
    message: /--prompts must be >= 2, got 1/,
  },
  {
    item: 8,
    name: 'train-evaluator without --kind',
    args: () => ['train-evaluator', '--steps', '1'],
    status: 1,
    message: /--kind is required: attributes, identity or scorer/,
  },
  {
    item: 8,
    name: 'train-evaluator --batch 6',
    args: () => ['train-evaluator', '--kind', 'identity', '--batch', '6'],
    status: 1,
    message: /--batch must be a multiple of 4, got 6/,
  },
  {
    item: 8,
    name: 'train-base --fresh with --figures',
    args: (at) => ['train-base', '--fresh', '--figures', '8', '--out', at('o')],
    status: 1,
    message: /give one of --data, --manifest, --figures, --fresh \(got --figures and --fresh\)/,
  },
  {
    item: 8,
    name: 'train-base --render-workers without --fresh',
    args: (at) => ['train-base', '--figures', '8', '--render-workers', '2', '--out', at('o')],
    status: 1,
    message: /--render-workers applies to --fresh figures only/,
  },
  {
    item: 3,
    name: 'train-base --prediction v on an epsilon checkpoint',
    args: (at) => ['train-base', '--init', model(), ...quick, '--steps', '1', '--prediction', 'v', '--out', at('o')],
    status: 1,
    message: /--prediction v does not match the checkpoint's prediction epsilon/,
  },
  // Adapter files (--lora) and the inference-rule flags of sample and eval.
  {
    item: 8,
    name: 'sample --lora-scale without --lora',
    args: (at) => ['sample', '--ckpt', model(), '--prompt', 'a person', '--lora-scale', '0.5', '--out', at('grid.png')],
    status: 1,
    message: /--lora-scale needs --lora FILE/,
  },
  {
    item: 8,
    name: 'eval --text-lora-steps without --lora',
    args: (at) => ['eval', '--ckpt', model(), '--text-lora-steps', 'all', '--out', at('r.json')],
    status: 1,
    message: /--text-lora-steps needs --lora FILE/,
  },
  {
    item: 8,
    name: 'sample --text-lora-steps 1000-900',
    args: (at) => ['sample', '--ckpt', model(), '--prompt', 'a person', '--lora', lora('stages'), '--text-lora-steps', '1000-900', '--out', at('grid.png')],
    status: 1,
    message: /--text-lora-steps expects LO-HI, two timesteps with LO <= HI \(e\.g\. 900-1000\), or all; got "1000-900"/,
  },
  {
    item: 8,
    name: 'sample --text-lora-steps 900',
    args: (at) => ['sample', '--ckpt', model(), '--prompt', 'a person', '--lora', lora('stages'), '--text-lora-steps', '900', '--out', at('grid.png')],
    status: 1,
    message: /--text-lora-steps expects LO-HI, .*; got "900"/,
  },
  {
    item: 8,
    name: 'eval --hard-lora-blocks first-half',
    args: (at) => ['eval', '--ckpt', model(), '--lora', lora('stages'), '--hard-lora-blocks', 'first-half', '--out', at('r.json')],
    status: 1,
    message: /--hard-lora-blocks must be one of last-half, all, got "first-half"/,
  },
  {
    item: 8,
    name: 'sample --lora with an empty name in its list',
    args: (at) => ['sample', '--ckpt', model(), '--prompt', 'a person', '--lora', `${lora('stages')},,${lora('legacy')}`, '--out', at('grid.png')],
    status: 1,
    message: /--lora: an empty file name in ".*stages\.safetensors,,.*legacy\.safetensors" \(files are separated by commas\)/,
  },
  {
    item: 7,
    name: 'eval --lora a missing file',
    args: (at) => ['eval', '--ckpt', model(), '--lora', at('none.safetensors'), '--out', at('r.json')],
    status: 1,
    message: /--lora .*none\.safetensors: no such file/,
  },
  {
    item: 7,
    name: 'sample --lora a file whose metadata has a group of rank 0',
    setup: (at) => {
      const down = fromArray(new Float32Array(32), [16, 2]);
      const up = fromArray(new Float32Array(32), [2, 16]);
      const groups = [{ name: 'easy', kind: 'lora', rank: 0, scale: 1, pattern: '^blocks\\.0\\.attn\\.q$' }];
      saveSafetensors(at('bad.safetensors'), { 'easy/blocks.0.attn.q.lora.down': down, 'easy/blocks.0.attn.q.lora.up': up }, { metadata: { format: adapterFileFormat, version: '1', [adapterMetadataKey]: JSON.stringify({ base: 'ab'.repeat(32), groups }) } });
      down.dispose();
      up.dispose();
    },
    args: (at) => ['sample', '--ckpt', model(), '--prompt', 'a person', '--steps', '2', '--n', '1', '--lora', at('bad.safetensors'), '--out', at('grid.png'), '--quiet'],
    status: 1,
    message: /adapter file .*bad\.safetensors: realtune\.adapters\.groups\[0\]\.rank must be an integer >= 1, got 0/,
  },
  {
    item: 7,
    name: 'eval --lora a file that is not an adapter file',
    args: (at) => ['eval', '--ckpt', model(), '--lora', path.join(fixtures, 'model', 'model.safetensors'), '--out', at('r.json')],
    status: 1,
    message: /adapter file .*model\.safetensors: tensor \S+ is not a LoRA factor: a file without realtune adapter metadata holds <layer>\.lora\.down and <layer>\.lora\.up only/,
  },
  {
    item: 7,
    name: 'sample --lora a file trained on another base',
    args: (at) => ['sample', '--ckpt', model(), '--prompt', 'a person', '--steps', '2', '--n', '1', '--lora', lora('other-base'), '--out', at('grid.png'), '--quiet'],
    status: 1,
    message: /adapter file .*other-base\.safetensors was trained on base abababababab, this model is [0-9a-f]{12}; pass allowOtherBase to apply it anyway/,
  },
  {
    item: 7,
    name: 'sample --lora a file trained on another base --allow-other-base',
    args: (at) => ['sample', '--ckpt', model(), '--prompt', 'a person', '--steps', '2', '--n', '1', '--lora', lora('other-base'), '--allow-other-base', '--out', at('grid.png'), '--quiet'],
    status: 0,
    message: /sample: 1 images written to/,
    owns: ['grid.png'],
  },
  {
    item: 7,
    name: 'sample --text-lora-steps with files that have no group named text',
    args: (at) => ['sample', '--ckpt', model(), '--prompt', 'a person', '--lora', lora('legacy'), '--text-lora-steps', '900-1000', '--out', at('grid.png')],
    status: 1,
    message: /--text-lora-steps: none of the --lora files has a group named text \(they have: lora\)/,
  },
  {
    item: 6,
    name: 'sample --lora a file holding NaN',
    args: (at) => ['sample', '--ckpt', model(), '--prompt', 'a person', '--steps', '2', '--n', '1', '--lora', lora('nan'), '--out', at('grid.png'), '--quiet'],
    status: 1,
    message: /adapter file .*nan\.safetensors: easy\/blocks\.0\.attn\.q\.lora\.up holds 1 non-finite value \(NaN or infinite\) of 32; pass allowNonFinite/,
  },
  {
    item: 7,
    name: 'sample with two stacked files (the flag repeated and a list) and the HG-DPO rules',
    args: (at) => [
      'sample', '--ckpt', model(), '--prompt', 'a person', '--steps', '3', '--n', '1',
      '--lora', lora('stages'), '--lora', lora('legacy'), '--lora-scale', '0.5', '--text-lora-steps', '900-1000', '--hard-lora-blocks', 'last-half',
      '--out', at('grid.png'), '--quiet',
    ],
    status: 0,
    message: /sample: 1 images written to/,
    owns: ['grid.png'],
  },
];

beforeAll(async () => {
  mkdirSync(fixtures);
  const data = { kind: 'figures', count: 8, seed: 0 } as const;
  const captions = (await loadTrainingData(data, null)).map((e) => e.caption);
  const nano = TextToImage.create(trainTokenizer(captions, 280), {
    dit: { imageSize: 16, patchSize: 4, width: 16, depth: 1, heads: 2, mlpRatio: 2, textWidth: 16, contextLength: 8, text: { vocabSize: 0, depth: 1, heads: 2, mlpRatio: 2 } },
    seed: 1,
  });
  // A fresh DiT predicts exactly 0 (adaLN-Zero), which no gradient reaches an adapter through.
  const generator = new Generator(testSeed);
  for (const p of nano.dit.parameters()) {
    const noise = randn(p.shape, { generator, std: 0.05 });
    axpy(1, noise, p.value);
    noise.dispose();
  }
  nano.save(path.join(fixtures, 'model'));
  // Adapter files for it: curriculum groups with its base hash, one naming another base, one
  // without metadata (as adapterStateDict wrote them), one holding NaN.
  const factors = (group: string, layers: string[], poison = false): Record<string, Tensor> =>
    Object.fromEntries(
      layers.flatMap((layer) => {
        const down = randn([16, 2], { generator, std: 0.3 });
        const up = randn([2, 16], { generator, std: 0.3 });
        if (poison) {
          const values = up.toArray();
          values[5] = Number.NaN;
          const poisoned = fromArray(values, [2, 16]);
          up.copy_(poisoned as never);
          poisoned.dispose();
        }
        return [
          [`${group}${layer}.lora.down`, down],
          [`${group}${layer}.lora.up`, up],
        ];
      }),
    );
  const stageGroups = [
    { name: 'easy', kind: 'lora', rank: 2, scale: 1, pattern: '^blocks\\.\\d+\\.attn\\.(q|v)$' },
    { name: 'hard', kind: 'lora', rank: 2, scale: 1, pattern: '^blocks\\.\\d+\\.cross\\.q$', blocks: 'last-half' },
    { name: 'text', kind: 'lora', rank: 2, scale: 1, pattern: '^text\\.', timesteps: [900, 1000] },
  ] as const;
  const stageTensors = () => ({ ...factors('easy/', ['blocks.0.attn.q', 'blocks.0.attn.v']), ...factors('hard/', ['blocks.0.cross.q']), ...factors('text/', ['text.blocks.0.attn.q']) });
  const writeAdapters = (name: string, tensors: Record<string, Tensor>, write: (file: string, t: Record<string, Tensor>) => void) => {
    write(lora(name), tensors);
    for (const t of Object.values(tensors)) t.dispose();
  };
  writeAdapters('stages', stageTensors(), (file, t) => saveAdapterFile(file, t, { base: nano.weightsHash(), groups: stageGroups.map((g) => ({ ...g })) as never }));
  writeAdapters('other-base', stageTensors(), (file, t) => saveAdapterFile(file, t, { base: 'ab'.repeat(32), groups: stageGroups.map((g) => ({ ...g })) as never }));
  writeAdapters('legacy', factors('', ['blocks.0.cross.v']), (file, t) => saveSafetensors(file, t));
  writeAdapters('nan', factors('easy/', ['blocks.0.attn.q'], true), (file, t) =>
    saveAdapterFile(file, t, { base: nano.weightsHash(), groups: [{ name: 'easy', kind: 'lora', rank: 2, scale: 1, pattern: '^blocks\\.0\\.attn\\.q$' }] }, { allowNonFinite: true }),
  );
  const weight = nano.dit.stateDict()['blocks.0.attn.q.weight']!;
  const poisoned = weight.toArray();
  poisoned[3] = Number.NaN;
  weight.copy_(fromArray(poisoned, weight.shape));
  nano.save(path.join(fixtures, 'nan-model'), { allowNonFinite: true });
  nano.dispose();
  const run = cli(['train-base', '--init', path.join(fixtures, 'model'), ...quick, '--steps', '2', '--ckpt-every', '1', '--out', path.join(fixtures, 'run')], scratch);
  expect(run.status, run.stderr).toBe(0);
  // The same run through to step 3 uninterrupted: what a resume of `run` must reproduce.
  const straight = cli(['train-base', '--init', path.join(fixtures, 'model'), ...quick, '--steps', '3', '--ckpt-every', '1', '--out', path.join(fixtures, 'straight')], scratch);
  expect(straight.status, straight.stderr).toBe(0);
});

describe('cli robustness: flag or file -> exit code and message, nothing outside the run changed', () => {
  let fixturesBefore: Map<string, string>;
  beforeAll(() => {
    fixturesBefore = snapshot(fixtures);
  });
  afterAll(() => {
    expect(changesOutside(fixturesBefore, snapshot(fixtures), []), 'the shared fixtures').toEqual([]);
  });

  cases.forEach((c, index) => {
    it(`item ${c.item}: ${c.name}`, () => {
      const sandbox = path.join(scratch, `case-${index}`);
      mkdirSync(sandbox);
      const at = (p: string): string => path.join(sandbox, p);
      c.setup?.(at);
      const before = snapshot(sandbox);
      const args = c.args(at);
      const { status, stdout, stderr } = cli(args, sandbox);
      const shown = `realtune ${args.join(' ')}\nstdout: ${stdout}\nstderr: ${stderr}`;
      expect(status, shown).toBe(c.status);
      expect(c.status === 0 ? stdout : stderr, shown).toMatch(c.message);
      expect(changesOutside(before, snapshot(sandbox), c.owns ?? []), `changed outside the run's own ${JSON.stringify(c.owns ?? [])}`).toEqual([]);
      c.check?.(at);
    });
  });

  it('every command has cases, and every item of the issue', () => {
    const usage = cli(['--help'], scratch).stdout;
    const commands = [...usage.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]!).filter((name) => name !== 'info');
    expect(commands.length).toBeGreaterThan(0);
    for (const command of commands) expect(cases.some((c) => c.args((p) => p)[0] === command), `a case for ${command}`).toBe(true);
    expect([...new Set(cases.map((c) => c.item))].sort()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

describe('flag specs: the help and the parser come from one spec', () => {
  const specs: Record<string, FlagSpecs> = { 'train-base': trainBaseFlags, 'train-dpo': trainDpoFlags, sample: sampleFlags, demo: demoFlags, eval: evalFlags, 'train-evaluator': trainEvaluatorFlags, curriculum: curriculumFlags };
  for (const [command, spec] of Object.entries(specs)) {
    it(`${command}: every range and default the help shows is the parser's, and every value the help names is accepted`, () => {
      const help = cli([command, '--help'], scratch).stdout;
      for (const [name, flag] of Object.entries(spec)) {
        const line = help.split('\n').find((l) => l.startsWith(`  --${name} `));
        expect(line, `--${name} in the help`).toBeDefined();
        const range = flagRange(flag);
        if (range !== undefined) expect(line, `--${name}`).toContain(range);
        expect(flag.help, `--${name}: defaults come from the spec, not the text`).not.toMatch(/\(default /);
        if (flag.default !== undefined) {
          expect(line, `--${name}`).toContain(`default ${flag.default}`);
          expect(parseFlags([`--${name}`, String(flag.default)], spec)[name], `--${name} ${flag.default}`).toBe(flag.default);
          expect(parseFlags([], spec)[name], `--${name} when not given`).toBe(flag.default);
        }
        // "0: off", "0 skips it", "HG-DPO ...: 10000": values the help names must parse.
        for (const match of flag.help.matchAll(/(?:^|[(;:,]\s*)(\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?=\s*(?::|\)|$|\s+skips))/g)) {
          expect(() => parseFlags([`--${name}`, match[1]!], spec), `--${name} ${match[1]} (named in its help)`).not.toThrow();
        }
      }
    });
  }

  it('a repeatable flag collects its values (--lora A --lora B is --lora A,B); any other flag given twice is an error', () => {
    expect(parseFlags(['--lora', 'a.safetensors', '--lora=b.safetensors,c.safetensors'], sampleFlags).lora).toBe('a.safetensors,b.safetensors,c.safetensors');
    expect(() => parseFlags(['--steps', '2', '--steps', '3'], sampleFlags)).toThrow(/--steps was given twice/);
    expect(() => parseFlags(['--lora-scale', '0.5', '--lora-scale', '1'], sampleFlags)).toThrow(/--lora-scale was given twice/);
    expect(cli(['sample', '--help'], scratch).stdout).toMatch(/--lora VALUE +adapter file .* \[repeatable, or comma-separated\]/);
  });

  it('numbers are read strictly', () => {
    for (const raw of ['0x10', ' 5', '5 ', '1_000', '1e3', '+', '', '0b1', 'Infinity', '9007199254740993']) {
      expect(() => parseFlags(['--steps', raw], trainBaseFlags), JSON.stringify(raw)).toThrow(/--steps expects an integer/);
    }
    for (const raw of ['0x1', '1e', '.', 'NaN', '1,5', '1e999']) expect(() => parseFlags(['--lr', raw], trainBaseFlags), JSON.stringify(raw)).toThrow(/--lr expects a number/);
    expect(parseFlags(['--lr', '3e-4', '--steps', '+12'], trainBaseFlags)).toMatchObject({ lr: 3e-4, steps: 12 });
    expect(parseFlags(['--lr=.5'], trainBaseFlags).lr).toBe(0.5);
  });
});
