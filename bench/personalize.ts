// Personalisation benchmark (HyperDreamBooth's comparison, on our data; measured, never asserted).
// For identities the hypernetwork never saw (the held-out seed domain), one reference image each,
// every method makes the person; the person is then generated in new contexts (pose, background,
// light) and measured (lib/train/personalize/measure.ts): identity similarity to the reference
// (identity embedder), prompt adherence on the context words, diversity across seeds, seconds per
// identity on this machine and bytes per identity. Rows:
//   real views             other real images of the person in those contexts (the ceiling)
//   no personalisation     the base with the words that describe the person (all that words can say)
//   DreamBooth             every weight finetuned, --dreambooth-steps steps
//   LiDB from zero         40 steps, and DreamBooth's step count
//   hypernetwork only      the prediction, no finetune
//   HyperDreamBooth        the prediction + 40 steps of the rank-4 relaxation (the method)
//   HyperDreamBooth r=1    the same with a rank-1 relaxation
// Writes the table between markers in README.md (with the command), the grid to
// bench/images/personalize.png and the numbers to --json.
// Run: npm run bench -- personalize [--identities 8] [--contexts 4] [--n 4] [--hypernet FILE] [--no-readme]
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { identityCaption, mixSeed, scenePhrase } from '../lib/data/figures.js';
import { concatFloat32 } from '../lib/numeric.js';
import { loadEvaluator, shippedEvaluator } from '../lib/eval/networks.js';
import { atomicWriteFile } from '../lib/io/atomic.js';
import { saveImageGrid } from '../lib/io/images.js';
import { packageRoot } from '../lib/native.js';
import { TextToImage } from '../lib/models/text_to_image.js';
import { dreamBooth } from '../lib/train/personalize/dreambooth.js';
import { identityInScene, identityPrompt, identitySeeds, identityViews, personalIdentity, recontextScenes } from '../lib/train/personalize/identities.js';
import { loadHypernet } from '../lib/train/personalize/lidb.js';
import { measureIdentity, measureImages, type Evaluators, type IdentityMeasure } from '../lib/train/personalize/measure.js';
import { autoPrompt, personalize, shippedHypernet, type PersonalizeOptions } from '../lib/train/personalize/personalize.js';
import { fromArray } from '../lib/tensor.js';
import { flagValue, machineInfo, median, printTable } from './harness.js';
import { dsdNote, markerEnd, markerStart, tableArgs, withDsdRows, type MeasuredRow, type TableBenchResult } from './personalize_table.js';

interface Row extends MeasuredRow {
  seconds: number;
  bytes: number;
}

export type PersonalizeBenchResult = TableBenchResult<Row>;

export async function run(args: string[]): Promise<PersonalizeBenchResult> {
  const { count, contexts, n, base } = tableArgs(args);
  const dreamSteps = Number(flagValue(args, '--dreambooth-steps') ?? 400);
  const hypernetFile = path.resolve(flagValue(args, '--hypernet') ?? shippedHypernet);
  const gridIdentities = Number(flagValue(args, '--grid-identities') ?? 3);
  const command = `npm run bench -- personalize ${args.filter((a) => a !== '--no-readme').join(' ')}`.trim();
  const evaluators: Evaluators = { identity: loadEvaluator(shippedEvaluator('identity'), 'identity'), attributes: loadEvaluator(shippedEvaluator('attributes'), 'attributes') };
  const hypernet = loadHypernet(hypernetFile);
  const model = TextToImage.load(base);
  const size = model.imageSize;
  const scenes = recontextScenes(contexts);
  const prompts = scenes.map(identityPrompt);
  const methods = ['real views', 'no personalisation', `DreamBooth (${dreamSteps} steps)`, 'LiDB from zero (40 steps)', `LiDB from zero (${dreamSteps} steps)`, 'hypernetwork only', 'HyperDreamBooth (r=4, 40 steps)', 'HyperDreamBooth (r=1, 40 steps)'];
  const acc = new Map(methods.map((m) => [m, { identity: [] as number[], adherence: [] as number[], diversity: [] as number[], seconds: [] as number[], bytes: 0 }]));
  const grid: Float32Array[] = [];
  const labels: string[] = [];
  const gridMethods = ['no personalisation', `DreamBooth (${dreamSteps} steps)`, 'HyperDreamBooth (r=4, 40 steps)'];
  const tmp = path.join(packageRoot, 'runs', 'bench-personalize');
  try {
    for (let index = 0; index < count; index++) {
      const identity = personalIdentity('heldOut', index);
      const reference = identityViews('heldOut', index, 1, size)[0]!;
      const record = (method: string, m: IdentityMeasure, seconds: number, bytes: number): void => {
        const a = acc.get(method)!;
        a.identity.push(m.identity);
        a.adherence.push(m.adherenceMean);
        a.diversity.push(m.diversity);
        a.seconds.push(seconds);
        a.bytes = bytes;
        if (index < gridIdentities && gridMethods.includes(method)) {
          if (method === gridMethods[0]) {
            grid.push(reference.pixels);
            labels.push(`reference ${index}`);
          }
          const values = m.images.toArray();
          const per = 3 * size * size;
          for (let c = 0; c < Math.min(4, contexts); c++) {
            grid.push(values.slice(c * n * per, (c * n + 1) * per));
            labels.push(c === 0 ? method : '');
          }
        }
        m.images.dispose();
        console.log(`identity ${index} ${method}: identity ${m.identity.toFixed(3)}, adherence ${m.adherenceMean.toFixed(3)}, diversity ${m.diversity.toFixed(3)}, ${seconds.toFixed(1)} s`);
      };
      const measure = { reference: reference.pixels, prompts, n, seed: 1000 + index };

      // The ceiling: real images of the person in the contexts (n views of each with its own details).
      {
        const views = scenes.flatMap((scene, c) => Array.from({ length: n }, (_, s) => identityInScene(identity, scene, mixSeed(identitySeeds.heldOut, 0xc0, index, c, s), size).pixels));
        const images = fromArray(concatFloat32(views), [views.length, 3, size, size]);
        record('real views', measureImages(evaluators, reference.pixels, prompts, n, images), 0, 0);
      }
      const prompt = autoPrompt(evaluators.attributes, reference.pixels, size);
      // No personalisation: the words for the person.
      {
        const named = scenes.map((s) => `${identityCaption(identity)}, ${scenePhrase(s)}`);
        const m = measureIdentity(model, evaluators, { ...measure, prompts: named });
        record('no personalisation', m, 0, 0);
      }
      // DreamBooth: every weight, on a copy of the base.
      {
        const copy = TextToImage.load(base);
        const started = performance.now();
        const result = await dreamBooth(copy, { reference: reference.pixels, prompt, steps: dreamSteps, seed: index });
        const seconds = (performance.now() - started) / 1000;
        record(`DreamBooth (${dreamSteps} steps)`, measureIdentity(copy, evaluators, measure), seconds, 4 * result.numbers);
        copy.dispose();
      }
      const variants: [string, Partial<PersonalizeOptions>][] = [
        ['LiDB from zero (40 steps)', { method: 'lidb', steps: 40 }],
        [`LiDB from zero (${dreamSteps} steps)`, { method: 'lidb', steps: dreamSteps }],
        ['hypernetwork only', { steps: 0 }],
        ['HyperDreamBooth (r=4, 40 steps)', { steps: 40, rank: 4 }],
        ['HyperDreamBooth (r=1, 40 steps)', { steps: 40, rank: 1 }],
      ];
      for (const [name, options] of variants) {
        const file = path.join(tmp, `id-${index}.safetensors`);
        const result = await personalize({ base: model, reference: reference.pixels, hypernet, prompt, seed: index, ...options, out: file });
        record(name, measureIdentity(model, evaluators, { ...measure, lora: file }), result.seconds.total, result.bytes);
      }
    }
  } finally {
    model.dispose();
    hypernet.hypernet.dispose();
  }
  const rows: Row[] = methods.map((method) => {
    const a = acc.get(method)!;
    const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
    return { method, identity: mean(a.identity), adherence: mean(a.adherence), diversity: mean(a.diversity), seconds: median(a.seconds), bytes: a.bytes };
  });
  evaluators.identity.dispose();
  evaluators.attributes.dispose();
  const fmtBytes = (b: number): string => (b === 0 ? '-' : b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${(b / 1024).toFixed(0)} KiB`);
  const table = [
    '| method | identity similarity | adherence (pose, background, light) | diversity | s / identity | bytes / identity |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.method} | ${r.identity.toFixed(3)} | ${(100 * r.adherence).toFixed(1)}% | ${r.diversity.toFixed(3)} | ${r.seconds === 0 ? '-' : r.seconds.toFixed(1)} | ${fmtBytes(r.bytes)} |`),
  ].join('\n');
  printTable(['method', 'identity', 'adherence', 'diversity', 's/identity', 'bytes'], rows.map((r) => [r.method, r.identity.toFixed(3), `${(100 * r.adherence).toFixed(1)}%`, r.diversity.toFixed(3), r.seconds.toFixed(1), fmtBytes(r.bytes)]));
  const machine = machineInfo();
  const gridFile = path.join(packageRoot, 'bench', 'images', 'personalize.png');
  await saveImageGrid(gridFile, grid, { labels, cols: 1 + 4 * gridMethods.length, upscale: 3, fontSize: 10 });
  console.log(`wrote ${gridFile}`);
  if (!args.includes('--no-readme')) {
    const readme = path.join(packageRoot, 'README.md');
    const text = readFileSync(readme, 'utf8');
    const start = text.indexOf(markerStart);
    const end = text.indexOf(markerEnd);
    if (start < 0 || end < start) throw new Error(`bench personalize: README.md has no ${markerStart} ... ${markerEnd} section`);
    // The DSD rows (npm run bench -- dsd) stay, below this table's rows.
    const old = text.slice(start, end).split('\n');
    const dsdRows = old.filter((l) => l.startsWith('| DSD'));
    const dsdNoteLine = old.find((l) => l.startsWith(dsdNote));
    let body = `${markerStart}\n${count} held-out identities x ${contexts} new contexts x ${n} seeds, ${machine.cpu}, ${machine.threads} threads; made by \`${command}\`.\n\n${table}\n`;
    if (dsdRows.length > 0 && dsdNoteLine !== undefined) body = withDsdRows(body, dsdRows, dsdNoteLine);
    atomicWriteFile(readme, text.slice(0, start) + body + markerEnd + text.slice(end + markerEnd.length));
    console.log('wrote the table into README.md');
  }
  return { machine, command, identities: count, contexts, n, rows };
}
