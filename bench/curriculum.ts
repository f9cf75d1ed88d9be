// Curriculum benchmark (measured, never asserted): what each phase of HG-DPO's curriculum costs
// on this machine. It runs a small curriculum in a temporary directory (or reads the timings of
// an existing run with --from DIR) and reports
//   pools            images/s (the base sampling whole pools, prompts batched together)
//   reconstructions  images/s (SDRecon: 10 levels per real image, DDIM steps pro rata)
//   each stage       DPO steps/s (policy forward+backward and the reference forward of a batch)
//   each report      images/s of the evaluation (generation + evaluators)
// Run: npm run bench -- curriculum [--from runs/curriculum-table] [--json out.json]
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../lib/native.js';
import { runCurriculum } from '../lib/train/curriculum/run.js';
import { flagValue, machineInfo, printTable, type MachineInfo } from './harness.js';

export interface CurriculumBenchResult {
  machine: MachineInfo;
  run: string;
  phases: { phase: string; seconds: number; work: string; rate: number; unit: string }[];
}

interface RunFacts {
  realImages: number;
  prompts: number;
  poolSize: number;
  levels: number;
  stageSteps: Record<string, number>;
  evalPrompts: number;
}

function phases(seconds: Record<string, number>, facts: RunFacts): CurriculumBenchResult['phases'] {
  const rows: CurriculumBenchResult['phases'] = [];
  for (const [phase, s] of Object.entries(seconds)) {
    if (phase === 'pools') rows.push({ phase, seconds: s, work: `${facts.prompts} x ${facts.poolSize} images`, rate: (facts.prompts * facts.poolSize) / s, unit: 'images/s' });
    else if (phase === 'reconstructions') rows.push({ phase, seconds: s, work: `${facts.realImages} x ${facts.levels} images`, rate: (facts.realImages * facts.levels) / s, unit: 'images/s' });
    else if (phase.startsWith('stage ')) {
      const steps = facts.stageSteps[phase.slice(6)] ?? Number.NaN;
      rows.push({ phase, seconds: s, work: `${steps} steps`, rate: steps / s, unit: 'steps/s' });
    } else if (phase.startsWith('eval ')) rows.push({ phase, seconds: s, work: `${facts.evalPrompts} images`, rate: facts.evalPrompts / s, unit: 'images/s' });
  }
  return rows;
}

/** The facts of a finished run directory (run.json, the stage checkpoints, a report). */
function readFacts(dir: string): RunFacts {
  const run = JSON.parse(readFileSync(path.join(dir, 'run.json'), 'utf8')) as { prompts: number; poolSize: number; levels: number; real: { count?: number } };
  const recon = readFileSync(path.join(dir, 'recon', 'index.jsonl'), 'utf8').trim().split('\n').length;
  const stageSteps: Record<string, number> = {};
  const stages = path.join(dir, 'stages');
  for (const name of existsSync(stages) ? readdirSync(stages) : []) {
    const state = path.join(stages, name, 'checkpoint', 'state.json');
    if (existsSync(state)) stageSteps[name] = (JSON.parse(readFileSync(state, 'utf8')) as { trainer: { step: number } }).trainer.step;
  }
  const reports = path.join(dir, 'reports');
  const first = existsSync(reports) ? readdirSync(reports)[0] : undefined;
  const evalPrompts = first === undefined ? 0 : (JSON.parse(readFileSync(path.join(reports, first), 'utf8')) as { report: { prompts: number } }).report.prompts;
  return { realImages: recon / run.levels, prompts: run.prompts, poolSize: run.poolSize, levels: run.levels, stageSteps, evalPrompts };
}

export async function run(args: string[]): Promise<CurriculumBenchResult> {
  const from = flagValue(args, '--from');
  let dir: string;
  let scratch: string | undefined;
  if (from !== undefined) {
    dir = path.resolve(from);
  } else {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'realtune-bench-curriculum-'));
    dir = path.join(scratch, 'run');
    const stage = { steps: 40, ckptEvery: 0 };
    await runCurriculum({
      base: path.join(packageRoot, 'models', 'base-tiny'),
      out: dir,
      real: { kind: 'figures', count: 32, seed: 7 },
      poolSize: 12,
      samplingSteps: 20,
      stages: { easy: stage, normal: stage, hard: stage },
      evalPrompts: 64,
      evalSteps: 20,
      log: () => {},
    });
  }
  try {
    const seconds = JSON.parse(readFileSync(path.join(dir, 'timings.json'), 'utf8')) as Record<string, number>;
    const rows = phases(seconds, readFacts(dir));
    printTable(
      ['phase', 'work', 'seconds', 'rate'],
      rows.map((r) => [r.phase, r.work, r.seconds.toFixed(1), `${r.rate.toFixed(2)} ${r.unit}`]),
    );
    return { machine: machineInfo(), run: from ?? 'a small run (32 real figures, pools of 12, 20 DDIM steps, 40 steps per stage, 64 held-out prompts per report)', phases: rows };
  } finally {
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
  }
}
