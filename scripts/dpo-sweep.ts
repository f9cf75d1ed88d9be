// How beta, the learning rate and the step count move the easy stage's result, measured on a
// curriculum run's data (its pools must be complete: `realtune curriculum ... --data-only`).
// Each configuration trains the easy stage (DPO + L_stat + text-encoder LoRA) from the base and
// is evaluated on held-out prompts with the curriculum's inference rules. Prints a markdown table
// and writes <run>/sweep/sweep.json; finished configurations are kept (the sweep resumes).
//
//   node --import tsx scripts/dpo-sweep.ts runs/curriculum-table [--eval-prompts 256] [--configs beta=250,lr=1e-4,steps=300;...]
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { baseImagesFor, evaluateModel, type EvaluationReport } from '../lib/eval/report.js';
import { writeJsonAtomic } from '../lib/io/atomic.js';
import { packageRoot } from '../lib/native.js';
import { TextToImage } from '../lib/models/text_to_image.js';
import { curriculumDefaults, inferenceSelection, loadRealImages } from '../lib/train/curriculum/run.js';
import { generatePools, generateReconstructions } from '../lib/train/curriculum/generate.js';
import { buildStagePairs, describePairs, loadPairs } from '../lib/train/curriculum/pairs.js';
import { captionPoolScorer } from '../lib/train/curriculum/scorer.js';
import { runStage } from '../lib/train/curriculum/stage.js';

const args = process.argv.slice(2);
const runDir = path.resolve(args[0] ?? 'runs/curriculum-table');
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const evalPrompts = Number(flag('--eval-prompts') ?? 256);
const configs = (flag('--configs') ?? 'beta=2500,lr=1e-4,steps=300;beta=250,lr=1e-3,steps=300;beta=2500,lr=1e-3,steps=300;beta=25000,lr=1e-3,steps=300;beta=2500,lr=1e-3,steps=900')
  .split(';')
  .map((c) => Object.fromEntries(c.split(',').map((kv) => kv.split('=')).map(([k, v]) => [k!, Number(v)])) as { beta: number; lr: number; steps: number });

const run = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')) as { real: { count: number; seed: number }; poolSize: number; samplingSteps: number; cfg: number; levels: number; seed: number };
const base = path.join(packageRoot, 'models', 'base-tiny');
const model = TextToImage.load(base);
const reals = await loadRealImages({ kind: 'figures', count: run.real.count, seed: run.real.seed }, model.imageSize, console.log);
const scorer = captionPoolScorer();
const pools = await generatePools(model, [...new Set(reals.map((r) => r.prompt))], path.join(runDir, 'pools'), scorer, { poolSize: run.poolSize, steps: run.samplingSteps, cfg: run.cfg, seed: run.seed });
const recon = await generateReconstructions(model, reals, path.join(runDir, 'recon'), scorer, { levels: run.levels, steps: run.samplingSteps, cfg: run.cfg, seed: run.seed + 1 });
const refs = buildStagePairs(pools, recon, reals, run.levels).easy;
const pairs = await loadPairs(refs, { pools, recon }, reals, model.imageSize);
console.log(`sweep: ${pairs.length} easy pairs from ${runDir}`);

const rules = curriculumDefaults.inference;
const results: { config: typeof configs[number]; seconds: number; report: EvaluationReport }[] = [];
const baseReportFile = path.join(runDir, 'sweep', `base-${evalPrompts}.json`);
let baseReport: EvaluationReport;
if (existsSync(baseReportFile)) baseReport = JSON.parse(readFileSync(baseReportFile, 'utf8')) as EvaluationReport;
else {
  baseReport = await evaluateModel(model, { prompts: evalPrompts, steps: run.samplingSteps, cfg: run.cfg });
  writeJsonAtomic(baseReportFile, baseReport);
}
const baseImages = baseImagesFor(model, { prompts: evalPrompts, steps: run.samplingSteps, cfg: run.cfg });
for (const config of configs) {
  const name = `beta${config.beta}-lr${config.lr}-steps${config.steps}`;
  const dir = path.join(runDir, 'sweep', name);
  const reportFile = path.join(dir, `report-${evalPrompts}.json`);
  if (existsSync(reportFile) || existsSync(path.join(dir, 'lora.safetensors'))) {
    if (!existsSync(reportFile)) {
      const lora = path.join(dir, 'lora.safetensors');
      const report = await evaluateModel(model, { prompts: evalPrompts, steps: run.samplingSteps, cfg: run.cfg, lora, baseImages, ...inferenceSelection(lora, rules) });
      const seconds = existsSync(path.join(dir, 'seconds.json')) ? (JSON.parse(readFileSync(path.join(dir, 'seconds.json'), 'utf8')) as number) : Number.NaN;
      writeJsonAtomic(reportFile, { config, seconds, report });
    }
    results.push(JSON.parse(readFileSync(reportFile, 'utf8')));
    continue;
  }
  const started = performance.now();
  const lora = await runStage({
    name: 'easy',
    dir,
    base,
    previous: undefined,
    pairs,
    dataIdentity: describePairs('easy', refs),
    settings: { ...curriculumDefaults.stages.easy, beta: config.beta, lr: config.lr, steps: config.steps, ckptEvery: 100 },
  });
  const seconds = (performance.now() - started) / 1000;
  writeJsonAtomic(path.join(dir, 'seconds.json'), seconds);
  const report = await evaluateModel(model, {
    prompts: evalPrompts,
    steps: run.samplingSteps,
    cfg: run.cfg,
    lora,
    baseImages,
    ...inferenceSelection(lora, rules),
  });
  const result = { config, seconds, report };
  writeJsonAtomic(reportFile, result);
  results.push(result);
  console.log(`sweep: ${name}: FD ${report.fd.toFixed(2)}, adherence ${(100 * report.adherenceMean).toFixed(1)}%, scorer ${report.scorer.toFixed(2)}, hue to base ${report.hueToBase?.toFixed(2)}`);
}
baseImages.dispose();
model.dispose();
scorer.dispose?.();

const lines = [
  `Easy stage from models/base-tiny on ${pairs.length} pairs (${runDir}), ${evalPrompts} held-out prompts, ${run.samplingSteps} DDIM steps, LoRA scale ${rules.loraScale}:`,
  '',
  '| beta | lr | steps | FD to real | adherence | scorer | hue to base | train s |',
  '|---|---|---|---|---|---|---|---|',
  `| base | - | - | ${baseReport.fd.toFixed(2)} | ${(100 * baseReport.adherenceMean).toFixed(1)}% | ${baseReport.scorer.toFixed(2)} | - | - |`,
  ...results.map(({ config, seconds, report }) => `| ${config.beta} | ${config.lr} | ${config.steps} | ${report.fd.toFixed(2)} | ${(100 * report.adherenceMean).toFixed(1)}% | ${report.scorer.toFixed(2)} | ${report.hueToBase?.toFixed(2) ?? '-'} | ${seconds.toFixed(0)} |`),
];
writeJsonAtomic(path.join(runDir, 'sweep', 'sweep.json'), { evalPrompts, base: baseReport, results });
console.log(lines.join('\n'));
