// npm run bench -- [suite] [--json FILE] [suite options]
//   suites: ops (ops, GEMM vs OpenBLAS, machine peaks), kernels (attention, losses, LoRA linear),
//   train (a tiny-DiT training step vs PyTorch), eval (sampler and evaluators, images/s); no
//   suite runs them all in order; curriculum (HG-DPO's phases: pools and reconstructions in
//   images/s, each stage in steps/s, reports in images/s); personalize (HyperDreamBooth against
//   DreamBooth and LiDB on held-out identities: the README's table and grid); dsd (Diffusion
//   Self-Distillation's zero-shot rows in that table, and its grid beside HyperDreamBooth); dist
//   (2 MPI ranks x 1 thread against 1 process x 2 threads, allreduce time and bytes, the
//   multi-GPU projection).
// Each suite is a module exporting run(args) (see BenchSuite in bench/harness.ts); register a new
// one with one line below. --json writes the suite's result (or { suite: result } for all).
import { flagValue, writeJson, type BenchSuite } from './harness.js';

const suites: Record<string, () => Promise<BenchSuite>> = {
  ops: () => import('./ops.js'),
  kernels: () => import('./kernels.js'),
  train: () => import('./train.js'),
  eval: () => import('./eval.js'),
  curriculum: () => import('./curriculum.js'),
  personalize: () => import('./personalize.js'),
  dsd: () => import('./dsd.js'),
  dist: () => import('./dist.js'),
};

async function main(argv: string[]): Promise<void> {
  const first = argv[0];
  const chosen = first !== undefined && !first.startsWith('--') ? [first] : Object.keys(suites);
  const args = first !== undefined && !first.startsWith('--') ? argv.slice(1) : argv;
  const unknown = chosen.filter((name) => suites[name] === undefined);
  if (unknown.length > 0) {
    console.error(`bench: unknown suite ${unknown.join(', ')}; available: ${Object.keys(suites).join(', ')}`);
    process.exit(2);
  }
  const results: Record<string, unknown> = {};
  for (const name of chosen) {
    console.log(`\n=== bench ${name} ===`);
    const suite = await suites[name]!();
    results[name] = await suite.run(args);
  }
  const jsonFile = flagValue(args, '--json');
  if (jsonFile !== undefined) {
    writeJson(jsonFile, chosen.length === 1 ? results[chosen[0]!] : results);
    console.log(`\nwrote ${jsonFile}`);
  }
}

await main(process.argv.slice(2));
