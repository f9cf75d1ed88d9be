#!/usr/bin/env node
// The cuda-emu build's view of a kernel source: node instrument.mjs <in.cu|.cuh|.cc> <out>
// writes a copy the host compiler can check, line for line (a #line directive keeps file names and
// line numbers in errors and in the emulator's messages), with two rewrites no macro can make:
//   __shared__ [__align__(N)] T name[dims];   ->  RT_EMU_SHARED(N, T, name, [dims]);
//       the variable becomes a reference into the block's checked shared memory (cuda_emu.h)
//   __launch_bounds__(args) name(params) {    ->  name(params) { RT_EMU_LAUNCH_BOUNDS(args);
//       every thread checks the launch's block size against the bound when it starts
// A declaration of another form fails the build here, so nothing goes unchecked silently.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: node instrument.mjs <source> <output>');
  process.exit(2);
}
const source = readFileSync(input, 'utf8');

// Comments are blanked (same length, newlines kept) for matching, so a rewrite never fires inside
// one; the rewrites are applied to the original text at the matched offsets.
const code = source.replace(/\/\/[^\n]*|\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' '));

const rewrites = [];
const sharedDecl = /__shared__[ \t]+(?:__align__\((\d+)\)[ \t]+)?([A-Za-z_][\w:<> ]*?)[ \t]+([A-Za-z_]\w*)((?:[ \t]*\[[^\]\n;]+\])*)[ \t]*;/g;
for (const m of code.matchAll(sharedDecl)) {
  const [whole, align, type, name, dims] = m;
  rewrites.push({ at: m.index, length: whole.length, text: `RT_EMU_SHARED(${align ?? 0}, ${type.trim()}, ${name}, ${dims.trim()});` });
}
// The bound's arguments hold no parentheses; the declarator and parameters no brace or semicolon.
const bounds = /__launch_bounds__\(([^()]*)\)([^{};]*)\{/g;
for (const m of code.matchAll(bounds)) {
  const [whole, args, declarator] = m;
  rewrites.push({ at: m.index, length: whole.length, text: `${declarator}{ RT_EMU_LAUNCH_BOUNDS(${args});` });
}

rewrites.sort((a, b) => a.at - b.at);
let out = '';
let from = 0;
let checked = '';
for (const r of rewrites) {
  out += source.slice(from, r.at) + r.text;
  checked += code.slice(from, r.at) + ' '.repeat(r.text.length);
  from = r.at + r.length;
}
out += source.slice(from);
checked += code.slice(from);

for (const token of ['__shared__', '__launch_bounds__']) {
  const at = checked.search(new RegExp(`\\b${token}\\b`));
  if (at < 0) continue;
  const line = checked.slice(0, at).split('\n').length;
  console.error(`${input}:${line}: cuda-emu: cannot rewrite this ${token} for the emulator's checks (see cuda/emu/instrument.mjs for the forms it knows)`);
  process.exit(1);
}

writeFileSync(output, `#line 1 "${path.resolve(input)}"\n${out}`);
