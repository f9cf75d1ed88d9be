// `realtune train-evaluator`: trains one of the evaluators on fresh procedural figures, validates
// it on held-out figures or people, and writes it (weights, config, validation numbers and the
// command) as one safetensors file.
import path from 'node:path';
import { saveEvaluator, type Evaluator, type EvaluatorKind } from '../eval/networks.js';
import {
  trainAttributeClassifier,
  trainCaptionScorer,
  trainIdentityEmbedder,
  validateAttributeClassifier,
  validateCaptionScorer,
  validateIdentityEmbedder,
} from '../eval/train.js';
import { checkOutputFile } from '../io/output_paths.js';
import { FlagError, flagHelp, parseFlags, type FlagSpecs } from './flags.js';
import { ProgressBar } from './progress.js';
import { requireOneProcess } from '../train/loop/dist.js';

export const trainEvaluatorFlags: FlagSpecs = {
  kind: { kind: 'string', choices: ['attributes', 'identity', 'scorer'], help: 'which evaluator: the attribute classifier (and FD features), the identity embedder or the caption scorer' },
  steps: { kind: 'int', min: 1, max: 1_000_000, default: 1500, help: 'optimiser steps' },
  batch: { kind: 'int', min: 4, max: 4096, default: 64, help: 'images per step, a multiple of 4' },
  lr: { kind: 'number', min: 1e-12, max: 1, default: 1e-3, help: 'peak learning rate, cosine schedule' },
  seed: { kind: 'int', min: 0, default: 0, help: 'seed of initialisation and data' },
  out: { kind: 'string', help: 'output file (models/eval/KIND.safetensors when not given)' },
  quiet: { kind: 'boolean', help: 'no progress bar' },
  help: { kind: 'boolean', help: 'this text' },
};

const usage = 'usage: realtune train-evaluator --kind attributes|identity|scorer [--steps 1500] [--batch 64] [--seed 0] [--out FILE]';

export async function run(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, trainEvaluatorFlags);
  if (flags.help) {
    console.log(flagHelp(usage, trainEvaluatorFlags));
    return;
  }
  requireOneProcess('train-evaluator');
  if (flags.kind === undefined) throw new FlagError('--kind is required: attributes, identity or scorer');
  const kind = flags.kind as EvaluatorKind;
  const batch = Number(flags.batch);
  if (batch % 4 !== 0) throw new FlagError(`--batch must be a multiple of 4, got ${batch}`);
  const options = { steps: Number(flags.steps), batch, lr: Number(flags.lr), seed: Number(flags.seed) };
  const out = path.resolve(String(flags.out ?? path.join('models', 'eval', `${kind}.safetensors`)));
  checkOutputFile(out, '--out');
  const bar = flags.quiet ? null : new ProgressBar({ total: options.steps, label: `train-evaluator ${kind}` });
  const onStep = (_step: number, loss: number) => bar?.tick({ loss });
  let evaluator: Evaluator;
  let validation: unknown;
  if (kind === 'attributes') {
    const model = await trainAttributeClassifier({ ...options, onStep });
    validation = { heldOutAccuracy: validateAttributeClassifier(model) };
    evaluator = model;
  } else if (kind === 'identity') {
    const model = await trainIdentityEmbedder({ ...options, onStep });
    validation = { heldOutVerification: validateIdentityEmbedder(model) };
    evaluator = model;
  } else {
    const model = await trainCaptionScorer({ ...options, onStep });
    validation = { heldOut: validateCaptionScorer(model) };
    evaluator = model;
  }
  bar?.finish();
  saveEvaluator(out, evaluator, { validation: JSON.stringify(validation), command: `realtune train-evaluator ${argv.join(' ')}` });
  console.log(`train-evaluator: ${kind}, ${evaluator.parameterCount()} parameters, written to ${out}`);
  console.log(JSON.stringify(validation, null, 2));
  evaluator.dispose();
}
