#!/usr/bin/env node
// Lays out the binaries `npm pack` ships, from a build that linked them (scripts/build-native.mjs
// --package or --test: <build>/package/{cpu,cuda}/realtune.node), in prebuilds/:
//   prebuilds/<platform>-<arch>/realtune.napi.glibc.node        the cpu addon
//   prebuilds/<platform>-<arch>/cuda/realtune.napi.glibc.node   cpu + cuda, when nvcc built it
// The names carry node-gyp-build's tags, so the install script (`node-gyp-build`) finds the cpu
// addon and compiles nothing; lib/native.ts (prebuiltPaths) reads the same layout.
//   node scripts/prebuilds.mjs [build dir, default build-package]
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const fileName = 'realtune.napi.glibc.node';

/** Copies and strips the package binaries of `buildDir` into prebuilds/; returns the files written. */
export function writePrebuilds(buildDir, prebuildsDir = path.join(root, 'prebuilds')) {
  const cpu = path.join(buildDir, 'package', 'cpu', 'realtune.node');
  const cuda = path.join(buildDir, 'package', 'cuda', 'realtune.node');
  if (!existsSync(cpu)) {
    throw new Error(`realtune: ${cpu} is not built; run \`node scripts/build-native.mjs --package\` (or --test) first`);
  }
  const platformDir = path.join(prebuildsDir, `${process.platform}-${process.arch}`);
  rmSync(platformDir, { recursive: true, force: true });
  const written = [path.join(platformDir, fileName)];
  if (existsSync(cuda)) written.push(path.join(platformDir, 'cuda', fileName));
  for (const [from, to] of [[cpu, written[0]], [cuda, written[1]]]) {
    if (!to) continue;
    mkdirSync(path.dirname(to), { recursive: true });
    copyFileSync(from, to);
    strip(to);
  }
  return written;
}

// Symbols are most of an unstripped addon's size; strip is binutils', present wherever gcc is.
function strip(file) {
  const result = spawnSync('strip', ['--strip-unneeded', file], { encoding: 'utf8' });
  if (result.error || result.status !== 0) console.log(`realtune: ${file} left unstripped (${result.error?.message ?? result.stderr.trim()})`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const buildDir = path.resolve(root, process.argv[2] ?? 'build-package');
  for (const file of writePrebuilds(buildDir)) console.log(`realtune: wrote ${path.relative(root, file)}`);
}
