// safetensors: an 8-byte little-endian header length, a JSON header mapping each tensor name to
// { dtype, shape, data_offsets: [begin, end] } (offsets into the data that follows) plus an
// optional "__metadata__" string map, then the raw little-endian data. Compatible with files
// written by Python's safetensors and PyTorch. Corrupt or truncated input gives an Error that
// names the file and the problem.
import { readFileSync } from 'node:fs';
import type { DeviceRequest } from '../device.js';
import { fromArray, numel, shapeString, type DType, type Tensor } from '../tensor.js';
import { atomicWriteFile } from './atomic.js';

/** The file dtypes read; F16, F64 and I64 are converted on load (to f32 and i32). */
export type FileDType = 'F32' | 'BF16' | 'F16' | 'I32' | 'F64' | 'I64';

const elementBytes: Record<FileDType, number> = { F32: 4, BF16: 2, F16: 2, I32: 4, F64: 8, I64: 8 };
const maxHeaderBytes = 100 << 20;
const maxFloat32 = 3.4028234663852886e38;

export interface SafetensorsContents {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

export interface EncodeOptions {
  metadata?: Record<string, string>;
  /** Store f32 tensors as this file dtype (F32 by default; BF16 or F16 halve the size). */
  floatFormat?: 'F32' | 'BF16' | 'F16';
}

export interface DecodeOptions {
  device?: DeviceRequest;
  /** Convert every floating tensor to this dtype (default: f32 for F32/F16/F64, bf16 for BF16). */
  dtype?: 'f32' | 'bf16';
  /** Names the source in error messages. */
  source?: string;
}

function float32ToBf16Bits(f: Float32Array): Uint16Array {
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) {
    const x = u[i]!;
    out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

function bf16BitsToFloat32(bits: Uint16Array): Float32Array {
  const u = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i]! << 16;
  return new Float32Array(u.buffer);
}

function float32ToF16Bits(f: Float32Array): Uint16Array {
  const out = new Uint16Array(f.length);
  const view = new DataView(new ArrayBuffer(4));
  for (let i = 0; i < f.length; i++) {
    view.setFloat32(0, f[i]!);
    const x = view.getUint32(0);
    const sign = (x >>> 16) & 0x8000;
    const exponent = (x >>> 23) & 0xff;
    let mantissa = x & 0x7fffff;
    if (exponent === 0xff) {
      out[i] = sign | 0x7c00 | (mantissa ? 0x200 : 0);
      continue;
    }
    let e = exponent - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mantissa |= 0x800000;
      const shift = 14 - e;
      let half = mantissa >>> shift;
      const rest = mantissa & ((1 << shift) - 1);
      const halfway = 1 << (shift - 1);
      if (rest > halfway || (rest === halfway && (half & 1))) half += 1;
      out[i] = sign | half;
      continue;
    }
    let half = (e << 10) | (mantissa >>> 13);
    const rest = mantissa & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half += 1;
    e = half >>> 10;
    out[i] = sign | (e >= 0x1f ? 0x7c00 : half);
  }
  return out;
}

function f16BitsToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    out[i] = e === 0 ? sign * m * 2 ** -24 : e === 0x1f ? (m ? Number.NaN : sign * Infinity) : sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}

function fileDTypeFor(t: Tensor, floatFormat: EncodeOptions['floatFormat']): FileDType {
  if (t.dtype === 'i32') return 'I32';
  if (t.dtype === 'bf16') return 'BF16';
  return floatFormat ?? 'F32';
}

function tensorBytes(t: Tensor, fileDType: FileDType): Uint8Array {
  const values = t.toArray();
  let typed: ArrayBufferView;
  if (fileDType === 'BF16') typed = float32ToBf16Bits(values as Float32Array);
  else if (fileDType === 'F16') typed = float32ToF16Bits(values as Float32Array);
  else typed = values;
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** The safetensors bytes of `tensors` (in name order) and `metadata`. */
export function encodeSafetensors(tensors: Record<string, Tensor>, options: EncodeOptions = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (options.metadata && Object.keys(options.metadata).length > 0) {
    for (const [k, v] of Object.entries(options.metadata)) {
      if (typeof v !== 'string') throw new TypeError(`encodeSafetensors: metadata ${JSON.stringify(k)} must be a string, got ${typeof v}`);
    }
    header.__metadata__ = options.metadata;
  }
  const names = Object.keys(tensors).sort();
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') throw new RangeError('encodeSafetensors: "__metadata__" cannot name a tensor');
    const t = tensors[name]!;
    const fileDType = fileDTypeFor(t, options.floatFormat);
    const bytes = tensorBytes(t, fileDType);
    header[name] = { dtype: fileDType, shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

interface Entry {
  name: string;
  dtype: FileDType;
  shape: number[];
  begin: number;
  end: number;
}

function parseHeader(bytes: Uint8Array, source: string): { entries: Entry[]; metadata: Record<string, string>; dataStart: number } {
  const fail = (problem: string): never => {
    throw new Error(`safetensors: ${source}: ${problem}`);
  };
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, too short for the 8-byte header length`);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
  if (headerLength > BigInt(Math.min(maxHeaderBytes, bytes.length - 8))) {
    fail(`header length ${headerLength} runs past the end of the file (${bytes.length} bytes)`);
  }
  const dataStart = 8 + Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, Number(headerLength)).toString('utf8'));
  } catch (err) {
    fail(`header is not valid JSON (${(err as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('header is not a JSON object');
  const dataLength = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object') fail('__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__ ${JSON.stringify(k)} is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (info === null || typeof info !== 'object') fail(`tensor ${JSON.stringify(name)} has no description`);
    const dtype = info.dtype as FileDType;
    if (typeof dtype !== 'string' || !(dtype in elementBytes)) fail(`tensor ${JSON.stringify(name)} has unsupported dtype ${JSON.stringify(info.dtype)} (expected one of ${Object.keys(elementBytes).join(', ')})`);
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor ${JSON.stringify(name)} has an invalid shape ${JSON.stringify(shape)}`);
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`tensor ${JSON.stringify(name)} has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLength) fail(`tensor ${JSON.stringify(name)} data [${begin}, ${end}) lies outside the ${dataLength} data bytes (truncated file?)`);
    const expected = numel(shape as number[]) * elementBytes[dtype];
    if (end - begin !== expected) fail(`tensor ${JSON.stringify(name)} has ${end - begin} bytes, shape ${shapeString(shape as number[])} of ${dtype} needs ${expected}`);
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.begin < sorted[i - 1]!.end) fail(`tensors ${JSON.stringify(sorted[i - 1]!.name)} and ${JSON.stringify(sorted[i]!.name)} overlap`);
  }
  return { entries, metadata, dataStart };
}

function decodeEntry(bytes: Uint8Array, entry: Entry, dataStart: number, source: string): { values: Float32Array | Int32Array; dtype: DType } {
  const start = bytes.byteOffset + dataStart + entry.begin;
  const count = numel(entry.shape);
  // Copy out first: the data of a tensor need not be aligned for a typed view.
  const raw = bytes.buffer.slice(start, start + (entry.end - entry.begin));
  switch (entry.dtype) {
    case 'F32':
      return { values: new Float32Array(raw), dtype: 'f32' };
    case 'BF16':
      return { values: bf16BitsToFloat32(new Uint16Array(raw)), dtype: 'bf16' };
    case 'F16':
      return { values: f16BitsToFloat32(new Uint16Array(raw)), dtype: 'f32' };
    case 'F64': {
      const wide = new Float64Array(raw);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) {
        const v = wide[i]!;
        if (Math.abs(v) > maxFloat32 && Number.isFinite(v)) throw new Error(`safetensors: ${source}: tensor ${JSON.stringify(entry.name)} element ${i} (${v}) does not fit in f32`);
        out[i] = v;
      }
      return { values: out, dtype: 'f32' };
    }
    case 'I32':
      return { values: new Int32Array(raw), dtype: 'i32' };
    case 'I64': {
      const wide = new BigInt64Array(raw);
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const v = wide[i]!;
        if (v < -2147483648n || v > 2147483647n) throw new Error(`safetensors: ${source}: tensor ${JSON.stringify(entry.name)} element ${i} (${v}) does not fit in i32`);
        out[i] = Number(v);
      }
      return { values: out, dtype: 'i32' };
    }
  }
}

/** Tensors and metadata from safetensors bytes. */
export function decodeSafetensors(bytes: Uint8Array, options: DecodeOptions = {}): SafetensorsContents {
  const source = options.source ?? '<buffer>';
  const { entries, metadata, dataStart } = parseHeader(bytes, source);
  const tensors: Record<string, Tensor> = {};
  for (const entry of entries) {
    const { values, dtype } = decodeEntry(bytes, entry, dataStart, source);
    const target: DType = dtype === 'i32' ? 'i32' : (options.dtype ?? dtype);
    tensors[entry.name] = fromArray(values, entry.shape, { dtype: target, ...(options.device ? { device: options.device } : {}) });
  }
  return { tensors, metadata };
}

/** Writes `tensors` to `file` atomically (temporary file, fsync, rename). */
export function saveSafetensors(file: string, tensors: Record<string, Tensor>, options: EncodeOptions = {}): void {
  atomicWriteFile(file, encodeSafetensors(tensors, options));
}

export function loadSafetensors(file: string, options: DecodeOptions = {}): SafetensorsContents {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new Error(`safetensors: cannot read ${file}: ${(err as Error).message}`);
  }
  return decodeSafetensors(bytes, { ...options, source: options.source ?? file });
}
