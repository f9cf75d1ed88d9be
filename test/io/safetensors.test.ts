import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeSafetensors, encodeSafetensors, loadSafetensors, saveSafetensors } from '../../lib/io/safetensors.js';
import { fromArray } from '../../lib/tensor.js';
import { checkMemoryGuards, expectIdentical } from '../helpers.js';

checkMemoryGuards();

const root = path.join(__dirname, '..', '..');
const scratch = mkdtempSync(path.join(tmpdir(), 'realtune-st-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const fixture = path.join(root, 'test', 'fixtures', 'torch.safetensors');
const script = path.join(root, 'scripts', 'fixtures', 'safetensors_torch.py');
const torchValues = JSON.parse(readFileSync(`${fixture}.json`, 'utf8')) as Record<string, { dtype: string; shape: number[]; values: number[] } | Record<string, string>>;
// The round trip through PyTorch runs wherever `python3 -c 'import torch'` works (python3 from
// PATH, or $REALTUNE_PYTHON); elsewhere it is skipped with the reason, unless
// REALTUNE_REQUIRE_TORCH=1 makes a missing torch a failure.
const python = process.env.REALTUNE_PYTHON ?? 'python3';
const torchProbe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
const torchMissing =
  torchProbe.status === 0
    ? null
    : `${python} cannot import torch (${torchProbe.error?.message ?? torchProbe.stderr.trim().split('\n').at(-1) ?? `exit ${torchProbe.status}`}); apt-get install python3-torch or pip install torch`;

describe('safetensors', () => {
  it('reads a file written by PyTorch: f32, bf16, f16, i32, i64, f64, empty, metadata', () => {
    const { tensors, metadata } = loadSafetensors(fixture);
    expect(metadata).toEqual(torchValues.__metadata__);
    for (const [name, expected] of Object.entries(torchValues)) {
      if (name === '__metadata__') continue;
      const e = expected as { dtype: string; shape: number[]; values: number[] };
      const t = tensors[name]!;
      expect(t.shape, name).toEqual(e.shape);
      expect(t.dtype, name).toBe({ F32: 'f32', BF16: 'bf16', F16: 'f32', F64: 'f32', I32: 'i32', I64: 'i32' }[e.dtype]);
      const want = e.dtype === 'F64' ? Float32Array.from(e.values) : e.dtype.startsWith('I') ? Int32Array.from(e.values) : Float32Array.from(e.values);
      expectIdentical(t.toArray(), want, name);
    }
  });

  it('round-trips its own files bit for bit, in name order, with metadata', () => {
    const { tensors, metadata } = loadSafetensors(fixture);
    const bytes = encodeSafetensors(tensors, { metadata });
    expect((8 + Number(new DataView(bytes.buffer).getBigUint64(0, true))) % 8).toBe(0);
    const again = decodeSafetensors(bytes);
    expect(again.metadata).toEqual(metadata);
    for (const [name, t] of Object.entries(tensors)) {
      expect(again.tensors[name]!.dtype).toBe(t.dtype);
      expectIdentical(again.tensors[name]!.toArray(), t.toArray(), name);
    }
    expect(Buffer.from(encodeSafetensors(again.tensors, { metadata })).equals(Buffer.from(bytes))).toBe(true);
  });

  it('stores f32 as F16 or BF16 on request, rounding to nearest even', () => {
    const values = [1, -2.5, 65504, 1e-7, 0.1, 70000, -0];
    const t = fromArray(values);
    const f16 = decodeSafetensors(encodeSafetensors({ t }, { floatFormat: 'F16' })).tensors.t!.toArray();
    expectIdentical(f16, new Float32Array([1, -2.5, 65504, 1.1920928955078125e-7, 0.0999755859375, Infinity, -0]));
    const bf16 = decodeSafetensors(encodeSafetensors({ t }, { floatFormat: 'BF16' })).tensors.t!;
    expect(bf16.dtype).toBe('bf16');
    expect(bf16.toArray()[4]).toBe(0.10009765625);
  });

  it('writes files PyTorch reads back with the same values', (context) => {
    if (torchMissing !== null) {
      expect(process.env.REALTUNE_REQUIRE_TORCH, `REALTUNE_REQUIRE_TORCH=1 but ${torchMissing}`).not.toBe('1');
      console.log(`safetensors: PyTorch round trip skipped: ${torchMissing}`);
      context.skip(torchMissing);
    }
    const file = path.join(scratch, 'ours.safetensors');
    saveSafetensors(file, {
      a: fromArray([1.5, -2, 3.25, 1e-3], [2, 2]),
      b: fromArray([0.1, 7], [2], { dtype: 'bf16' }),
      c: fromArray([5, -6, 7], [3], { dtype: 'i32' }),
    }, { metadata: { note: 'from realtune' } });
    const read = JSON.parse(execFileSync(python, [script, 'read', file], { encoding: 'utf8' })) as Record<string, { shape: number[]; values: number[] }>;
    expect(read.__metadata__).toEqual({ note: 'from realtune' });
    expect(read.a).toMatchObject({ dtype: 'F32', shape: [2, 2] });
    expectIdentical(Float32Array.from(read.a!.values), new Float32Array([1.5, -2, 3.25, 1e-3]), 'a');
    expectIdentical(Float32Array.from(read.b!.values), new Float32Array([0.10009765625, 7]), 'b');
    expectIdentical(Int32Array.from(read.c!.values), new Int32Array([5, -6, 7]), 'c');
  });

  it('rejects corrupt and truncated files with errors naming the file and the problem', () => {
    const good = readFileSync(fixture);
    const bad = (name: string, bytes: Uint8Array): string => {
      const file = path.join(scratch, name);
      writeFileSync(file, bytes);
      return file;
    };
    expect(() => loadSafetensors(bad('short', good.subarray(0, 5)))).toThrow(/short: file is 5 bytes, too short/);
    expect(() => loadSafetensors(bad('trunc', good.subarray(0, good.length - 10)))).toThrow(/trunc: tensor .* lies outside the \d+ data bytes \(truncated file\?\)/);
    const hugeHeader = Buffer.from(good);
    hugeHeader.writeBigUInt64LE(1n << 40n, 0);
    expect(() => loadSafetensors(bad('huge', hugeHeader))).toThrow(/huge: header length 1099511627776 runs past the end of the file/);
    const garbled = Buffer.from(good);
    garbled[9] = 0x7b;
    garbled[10] = 0x7b;
    expect(() => loadSafetensors(bad('json', garbled))).toThrow(/json: header is not valid JSON/);
    const header = (obj: unknown, data = 0): Buffer => {
      const text = Buffer.from(JSON.stringify(obj));
      const out = Buffer.alloc(8 + text.length + data);
      out.writeBigUInt64LE(BigInt(text.length), 0);
      text.copy(out, 8);
      return out;
    };
    expect(() => decodeSafetensors(header({ x: { dtype: 'Q8', shape: [1], data_offsets: [0, 1] } }, 1))).toThrow(/unsupported dtype "Q8"/);
    expect(() => decodeSafetensors(header({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8))).toThrow(/has 8 bytes, shape \[3\] of F32 needs 12/);
    expect(() =>
      decodeSafetensors(header({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, y: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8)),
    ).toThrow(/overlap/);
    const wide = header({ x: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, 8);
    wide.writeBigInt64LE(1n << 40n, wide.length - 8);
    expect(() => decodeSafetensors(wide)).toThrow(/element 0 \(1099511627776\) does not fit in i32/);
    const double = header({ x: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } }, 16);
    double.writeDoubleLE(-1e300, double.length - 8);
    expect(() => decodeSafetensors(double)).toThrow(/element 1 \(-1e\+300\) does not fit in f32/);
    double.writeDoubleLE(-Infinity, double.length - 8);
    expectIdentical(decodeSafetensors(double).tensors.x!.toArray(), new Float32Array([0, -Infinity]), 'F64 infinities stay infinite');
    expect(() => loadSafetensors(path.join(scratch, 'missing'))).toThrow(/cannot read .*missing/);
  });
});
