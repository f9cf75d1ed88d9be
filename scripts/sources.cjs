// Prints the C++ sources of the cpu addon for binding.gyp (gyp has no globbing).
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const dirs = ['csrc', 'csrc/cpu', 'csrc/napi'];
const files = dirs.flatMap((d) =>
  fs.readdirSync(path.join(root, d)).filter((f) => f.endsWith('.cc')).sort().map((f) => `${d}/${f}`),
);
process.stdout.write(files.join(' '));
