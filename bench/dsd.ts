// Diffusion Self-Distillation benchmark: the zero-shot rows beside HyperDreamBooth's in the
// personalisation table (measured, never asserted). The same held-out identities, contexts, seeds
// and measures as `npm run bench -- personalize` (lib/train/personalize/measure.ts); each DSD
// adapter draws the person of the one reference image in the new contexts with the prompt
// "a person, <pose>, <background>, <light>" and no training per person. Rows:
//   DSD's prompt on the base  the same prompts with no reference (what the words give)
//   DSD zero-shot          the adapter trained on self-generated pairs, curated (the method)
//   DSD real pairs only    trained on pairs of real views of training-domain people
//   DSD without curation   trained on every self-generated pair
// Time per identity is 0 (nothing is trained); what a person costs is sampling, 3 conditions x 2
// frames per step against the base's 2 x 1, given as the extra seconds to sample its images.
// Bytes per identity: the reference image only (one adapter serves everyone).
// Replaces the DSD rows of the README's personalisation table (between its markers), writes the
// grid (reference, then four contexts by DSD and by HyperDreamBooth) to bench/images/dsd.png.
// Run: npm run bench -- dsd [--identities 8] [--contexts 4] [--n 4] [--dsd F] [--dsd-real F] [--dsd-uncurated F] [--no-readme]
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { loadEvaluator, shippedEvaluator } from '../lib/eval/networks.js';
import { atomicWriteFile } from '../lib/io/atomic.js';
import { saveImageGrid } from '../lib/io/images.js';
import { TextToImage } from '../lib/models/text_to_image.js';
import { packageRoot } from '../lib/native.js';
import { loadDsd, shippedDsd } from '../lib/train/dsd/adapter.js';
import { dsdGenerate } from '../lib/train/dsd/generate.js';
import { dsdPrompt } from '../lib/train/dsd/pairs.js';
import { identityPrompt, identityViews, recontextScenes } from '../lib/train/personalize/identities.js';
import { loadHypernet } from '../lib/train/personalize/lidb.js';
import { measureIdentity, measureImages, type Evaluators } from '../lib/train/personalize/measure.js';
import { autoPrompt, personalize, shippedHypernet } from '../lib/train/personalize/personalize.js';
import { flagValue, machineInfo, median, printTable } from './harness.js';
import { dsdNote, markerEnd, markerStart, tableArgs, withDsdRows, type MeasuredRow, type TableBenchResult } from './personalize_table.js';

export interface DsdRow extends MeasuredRow {
  /** Median extra seconds to sample one identity's images, against the base. */
  extraSampling: number;
  adapterBytes: number;
}

export type DsdBenchResult = TableBenchResult<DsdRow>;

export async function run(args: string[]): Promise<DsdBenchResult> {
  const { count, contexts, n, base } = tableArgs(args);
  const gridIdentities = Number(flagValue(args, '--grid-identities') ?? 3);
  const adapters: [string, string][] = [
    ['DSD zero-shot (self-generated pairs, curated)', path.resolve(flagValue(args, '--dsd') ?? shippedDsd)],
    ['DSD real pairs only', path.resolve(flagValue(args, '--dsd-real') ?? path.join(packageRoot, 'runs', 'dsd', 'real', 'dsd.safetensors'))],
    ['DSD without curation', path.resolve(flagValue(args, '--dsd-uncurated') ?? path.join(packageRoot, 'runs', 'dsd', 'uncurated', 'dsd.safetensors'))],
  ];
  for (const [method, file] of adapters) {
    if (!existsSync(file)) throw new Error(`bench dsd: ${method}: no adapter at ${file}; make it with scripts/train-dsd.sh (or pass its flag)`);
  }
  const command = `npm run bench -- dsd ${args.filter((a) => a !== '--no-readme').join(' ')}`.trim();
  const evaluators: Evaluators = { identity: loadEvaluator(shippedEvaluator('identity'), 'identity'), attributes: loadEvaluator(shippedEvaluator('attributes'), 'attributes') };
  const model = TextToImage.load(base);
  const size = model.imageSize;
  const scenes = recontextScenes(contexts);
  const prompts = scenes.map(dsdPrompt);
  const per = 3 * size * size;
  const references = Array.from({ length: count }, (_, index) => identityViews('heldOut', index, 1, size)[0]!.pixels);

  const rows: DsdRow[] = [];
  const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
  // The base with DSD's prompts and no reference: what the prompt alone gives (the floor DSD
  // must rise above), and the sampling time DSD's extra cost is measured against.
  const baseSeconds: number[] = [];
  {
    const acc = { identity: [] as number[], adherence: [] as number[], diversity: [] as number[] };
    references.forEach((reference, index) => {
      const started = performance.now();
      const images = model.generate({ prompts, n, steps: 25, cfg: 5, seed: 1000 + index });
      baseSeconds.push((performance.now() - started) / 1000);
      const m = measureImages(evaluators, reference, prompts, n, images);
      images.dispose();
      acc.identity.push(m.identity);
      acc.adherence.push(m.adherenceMean);
      acc.diversity.push(m.diversity);
      console.log(`identity ${index} DSD's prompt on the base: identity ${m.identity.toFixed(3)}, adherence ${m.adherenceMean.toFixed(3)}, diversity ${m.diversity.toFixed(3)}, sampling ${baseSeconds[index]!.toFixed(1)} s`);
    });
    rows.push({ method: "DSD's prompt on the base, no reference", identity: mean(acc.identity), adherence: mean(acc.adherence), diversity: mean(acc.diversity), extraSampling: 0, adapterBytes: 0 });
  }

  const gridRows = new Map<number, Float32Array[]>();
  try {
    for (const [method, file] of adapters) {
      const dsd = loadDsd(file, model);
      const acc = { identity: [] as number[], adherence: [] as number[], diversity: [] as number[], extra: [] as number[] };
      try {
        for (let index = 0; index < count; index++) {
          const started = performance.now();
          const images = dsdGenerate(model, dsd, dsd.meta, { prompts, references: references[index]!, n, steps: 25, seed: 1000 + index });
          const seconds = (performance.now() - started) / 1000;
          const m = measureImages(evaluators, references[index]!, prompts, n, images);
          if (method === adapters[0]![0] && index < gridIdentities) {
            const values = images.toArray();
            gridRows.set(index, [references[index]!, ...Array.from({ length: Math.min(4, contexts) }, (_, c) => values.slice(c * n * per, (c * n + 1) * per))]);
          }
          images.dispose();
          acc.identity.push(m.identity);
          acc.adherence.push(m.adherenceMean);
          acc.diversity.push(m.diversity);
          acc.extra.push(seconds - baseSeconds[index]!);
          console.log(`identity ${index} ${method}: identity ${m.identity.toFixed(3)}, adherence ${m.adherenceMean.toFixed(3)}, diversity ${m.diversity.toFixed(3)}, sampling ${seconds.toFixed(1)} s (base ${baseSeconds[index]!.toFixed(1)} s)`);
        }
      } finally {
        dsd.detach();
      }
      rows.push({ method, identity: mean(acc.identity), adherence: mean(acc.adherence), diversity: mean(acc.diversity), extraSampling: median(acc.extra), adapterBytes: statSync(file).size });
    }

    // HyperDreamBooth beside DSD in the grid: the same references and contexts.
    const hypernet = loadHypernet(shippedHypernet);
    try {
      for (let index = 0; index < Math.min(gridIdentities, count); index++) {
        const file = path.join(packageRoot, 'runs', 'bench-dsd', `id-${index}.safetensors`);
        const prompt = autoPrompt(evaluators.attributes, references[index]!, size);
        await personalize({ base: model, reference: references[index]!, hypernet, prompt, seed: index, out: file });
        const m = measureIdentity(model, evaluators, { reference: references[index]!, prompts: scenes.map(identityPrompt), n, seed: 1000 + index, lora: file });
        const values = m.images.toArray();
        m.images.dispose();
        gridRows.get(index)!.push(...Array.from({ length: Math.min(4, contexts) }, (_, c) => values.slice(c * n * per, (c * n + 1) * per)));
      }
    } finally {
      hypernet.hypernet.dispose();
    }
  } finally {
    model.dispose();
    evaluators.identity.dispose();
    evaluators.attributes.dispose();
  }

  const fmtBytes = (b: number): string => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${(b / 1024).toFixed(0)} KiB`);
  const tableRows = rows.map((r) =>
    r.adapterBytes === 0
      ? `| ${r.method} | ${r.identity.toFixed(3)} | ${(100 * r.adherence).toFixed(1)}% | ${r.diversity.toFixed(3)} | - | - |`
      : `| ${r.method} | ${r.identity.toFixed(3)} | ${(100 * r.adherence).toFixed(1)}% | ${r.diversity.toFixed(3)} | 0 (+${r.extraSampling.toFixed(1)} sampling) | 0 (one ${fmtBytes(r.adapterBytes)} adapter) |`,
  );
  printTable(['method', 'identity', 'adherence', 'diversity', 'extra sampling s', 'adapter'], rows.map((r) => [r.method, r.identity.toFixed(3), `${(100 * r.adherence).toFixed(1)}%`, r.diversity.toFixed(3), r.extraSampling.toFixed(1), fmtBytes(r.adapterBytes)]));
  const machine = machineInfo();

  const shown = Math.min(4, contexts);
  const blank = Array<string>(shown - 1).fill('');
  const labels = ['reference', 'DSD', ...blank, 'HyperDreamBooth', ...blank];
  const grid = [...gridRows.values()].flat();
  const gridFile = path.join(packageRoot, 'bench', 'images', 'dsd.png');
  await saveImageGrid(gridFile, grid, { labels: [...gridRows.keys()].flatMap(() => labels), cols: 1 + 2 * shown, upscale: 3, fontSize: 10 });
  console.log(`wrote ${gridFile}`);

  if (!args.includes('--no-readme')) {
    const readme = path.join(packageRoot, 'README.md');
    const text = readFileSync(readme, 'utf8');
    const start = text.indexOf(markerStart);
    const end = text.indexOf(markerEnd);
    if (start < 0 || end < start) throw new Error(`bench dsd: README.md has no ${markerStart} ... ${markerEnd} section (run npm run bench -- personalize first)`);
    const note = `${dsdNote}${count} held-out identities x ${contexts} contexts x ${n} seeds, ${machine.cpu}, ${machine.threads} threads; made by \`${command}\`.`;
    atomicWriteFile(readme, text.slice(0, start) + withDsdRows(text.slice(start, end), tableRows, note) + text.slice(end));
    console.log('wrote the DSD rows into README.md');
  }
  return { machine, command, identities: count, contexts, n, rows };
}
