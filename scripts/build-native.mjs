#!/usr/bin/env node
// Builds the native addon with cmake-js: realtune.node, and beside it realtune_dev.node (the
// functions only test/ and bench/ use: machine peaks, OpenBLAS, the cuda-emu self-tests).
//   --cuda   cpu + cuda into build-cuda/ (fails with a clear message when nvcc is missing);
//            prints the ptxas register / shared-memory / spill report per kernel.
//   --emu    cpu + cuda-emu into build-emu/.
//   --test   what `npm test` needs, into build-test/: cpu + cuda-emu, plus the real cuda
//            backend when nvcc is present (so an nvcc compile error fails the tests).
//   --cpu    cpu only, into build-cpu/ (what binding.gyp builds, through cmake).
//   --package  the binaries `npm pack` ships, into build-package/: cpu only, and cpu + cuda when
//            nvcc is present; then lays them out in prebuilds/ (scripts/prebuilds.mjs).
//   --dir D  build into D instead (lets several checkouts or workers build side by side).
// --test and --package also link <dir>/package/{cpu,cuda}/realtune.node from the same objects.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const mode = args.includes('--cuda')
  ? 'cuda'
  : args.includes('--emu')
    ? 'emu'
    : args.includes('--cpu')
      ? 'cpu'
      : args.includes('--package')
        ? 'package'
        : 'test';
const dirFlag = args.indexOf('--dir');
const outDir = dirFlag >= 0 ? args[dirFlag + 1] : process.env.REALTUNE_BUILD_DIR ?? `build-${mode}`;

export function findNvcc() {
  const candidates = [process.env.CUDACXX, '/usr/local/cuda/bin/nvcc'];
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) candidates.push(path.join(dir, 'nvcc'));
  return candidates.find((c) => c && existsSync(c));
}

const nvcc = findNvcc();
if (mode === 'cuda' && !nvcc) {
  console.error(
    'realtune build:cuda: nvcc was not found (looked at $CUDACXX, /usr/local/cuda/bin and PATH).\n' +
      'Install the CUDA toolkit 12 or newer, or set CUDACXX=/path/to/nvcc. The cpu backend needs none of this: `npm install` builds it.',
  );
  process.exit(1);
}
if (process.env.REALTUNE_SKIP_NVCC === '1' && mode === 'test') console.log('realtune: REALTUNE_SKIP_NVCC=1, building without the cuda backend');
if (mode === 'package' && !nvcc) console.log('realtune: nvcc was not found, packing the cpu addon only (no prebuilt cuda addon)');
const withCuda = mode === 'cuda' || ((mode === 'test' || mode === 'package') && nvcc && process.env.REALTUNE_SKIP_NVCC !== '1');
const withPackage = mode === 'test' || mode === 'package';
const defines = [
  `--CDREALTUNE_CUDA=${withCuda ? 'ON' : 'OFF'}`,
  `--CDREALTUNE_REQUIRE_CUDA=${mode === 'cuda' ? 'ON' : 'OFF'}`,
  `--CDREALTUNE_EMU=${mode === 'emu' || mode === 'test' ? 'ON' : 'OFF'}`,
  `--CDREALTUNE_PACKAGE=${withPackage ? 'ON' : 'OFF'}`,
];
if (nvcc && withCuda) defines.push(`--CDCMAKE_CUDA_COMPILER=${nvcc}`);

const cmakeJs = path.join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
// ptxas reports only when it compiles: drop the kernel objects so the report covers every kernel.
if (mode === 'cuda') rmSync(path.join(root, outDir, 'CMakeFiles', 'realtune_cuda.dir', 'cuda'), { recursive: true, force: true });

// configure is cheap when nothing changed and keeps the build incremental; build compiles.
let output = '';
let result;
for (const step of ['configure', 'build']) {
  result = spawnSync(process.execPath, [cmakeJs, step, '--out', outDir, '--parallel', '2', ...defines], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  output += `${result.stdout ?? ''}${result.stderr ?? ''}`;
  if (result.status !== 0) break;
}
if (result.status !== 0) {
  process.stdout.write(output);
  console.error(`realtune: native build (${mode}) failed`);
  process.exit(result.status ?? 1);
}
if (withCuda) printPtxasReport(output);
const withEmu = mode === 'emu' || mode === 'test';
console.log(`realtune: built ${path.join(outDir, 'Release', 'realtune.node')} (cpu${withCuda ? ' + cuda' : ''}${withEmu ? ' + cuda-emu' : ''})`);
console.log(`realtune: built ${path.join(outDir, 'Release', 'realtune_dev.node')} (bench helpers${withEmu ? ' + cuda-emu self-tests' : ''})`);
if (withPackage) console.log(`realtune: built ${path.join(outDir, 'package')}/{cpu${withCuda ? ',cuda' : ''}}/realtune.node (what npm pack ships)`);
if (mode === 'package') {
  const { writePrebuilds } = await import('./prebuilds.mjs');
  for (const file of writePrebuilds(path.join(root, outDir))) console.log(`realtune: wrote ${path.relative(root, file)}`);
}

// ptxas -v prints, per kernel and architecture, "Compiling entry function 'X' for 'sm_90'" and then
// "Used N registers, ... bytes smem" and "N bytes spill stores, N bytes spill loads".
function printPtxasReport(text) {
  const rows = [];
  let current = null;
  for (const line of text.split('\n')) {
    const entry = line.match(/Compiling entry function '([^']+)' for '(sm_\d+)'/);
    if (entry) {
      current = { kernel: demangle(entry[1]), arch: entry[2], registers: '?', smem: '0', spills: '0/0' };
      rows.push(current);
      continue;
    }
    if (!current) continue;
    const spill = line.match(/(\d+) bytes spill stores, (\d+) bytes spill loads/);
    if (spill) current.spills = `${spill[1]}/${spill[2]}`;
    const used = line.match(/Used (\d+) registers(?:.*?(\d+) bytes smem)?/);
    if (used) {
      current.registers = used[1];
      if (used[2]) current.smem = used[2];
    }
  }
  if (rows.length === 0) return;
  console.log('\nptxas report (registers, static shared memory bytes, spill stores/loads bytes):');
  for (const r of rows) console.log(`  ${r.arch}  regs ${r.registers.padStart(3)}  smem ${r.smem.padStart(6)}  spills ${r.spills.padEnd(7)}  ${r.kernel}`);
  const spilling = rows.filter((r) => r.spills !== '0/0');
  console.log(spilling.length ? `  ${spilling.length} kernel(s) spill registers` : '  no spills');
}

function demangle(name) {
  const r = spawnSync('c++filt', [name], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : name;
}
