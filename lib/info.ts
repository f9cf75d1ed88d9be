// What the loaded addon is and what it found: `npx realtune info --json` prints this.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { devices, type DeviceInfo } from './device.js';
import { native, nativePath, packageRoot } from './native.js';

export const version: string = (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;

export interface RealtuneInfo {
  version: string;
  devices: DeviceInfo[];
  /** Threads the cpu backend uses (REALTUNE_NUM_THREADS overrides the core count). */
  threads: number;
  /** The instruction set the cpu kernels dispatch to: 'avx512', 'avx2' or 'scalar'. */
  isa: string;
  addon: string;
}

export function info(): RealtuneInfo {
  const { threads, isa } = native.info();
  return { version, devices: devices(), threads, isa, addon: nativePath };
}

export function setNumThreads(threads: number): void {
  native.setNumThreads(threads);
}
