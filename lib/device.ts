// Device discovery and choice: 'auto' | 'cpu' | 'cuda' | 'cuda-emu', also from REALTUNE_DEVICE.
import { native } from './native.js';

export type DeviceType = 'cpu' | 'cuda' | 'cuda-emu';
export type DeviceRequest = DeviceType | 'auto';

export interface DeviceInfo {
  type: DeviceType;
  available: boolean;
  name?: string;
  reason?: string;
}

const codes: Record<DeviceType, number> = { cpu: 0, cuda: 1, 'cuda-emu': 2 };
const byCode: DeviceType[] = ['cpu', 'cuda', 'cuda-emu'];

/** Every backend compiled into the loaded addon, with whether it can run here and why not. */
export function devices(): DeviceInfo[] {
  return native.devices().map(({ type, available, name, reason }) => ({
    type,
    available,
    ...(name ? { name } : {}),
    ...(reason ? { reason } : {}),
  }));
}

export function deviceCode(device: DeviceType): number {
  return codes[device];
}

export function deviceFromCode(code: number): DeviceType {
  return byCode[code]!;
}

function isDeviceRequest(value: string): value is DeviceRequest {
  return value === 'auto' || value in codes;
}

let warnedFallback = false;

/**
 * Resolves a device request to a backend that can run here. 'auto' picks cuda when available,
 * else cpu. Asking for an unavailable device falls back to cpu with one warning, or throws
 * when `strict` (or REALTUNE_STRICT_DEVICE=1).
 */
export function resolveDevice(request: DeviceRequest, options: { strict?: boolean } = {}): DeviceType {
  if (!isDeviceRequest(request)) {
    throw new TypeError(`device: expected 'auto', 'cpu', 'cuda' or 'cuda-emu', got ${JSON.stringify(request)}`);
  }
  const strict = options.strict ?? process.env.REALTUNE_STRICT_DEVICE === '1';
  const found = devices();
  if (request === 'auto') return found.find((d) => d.type === 'cuda' && d.available) ? 'cuda' : 'cpu';
  const info = found.find((d) => d.type === request);
  if (info?.available) return request;
  const why = info ? (info.reason ?? 'unavailable') : 'not built into this binary';
  if (strict) throw new Error(`device: ${request} was asked for but cannot be used here: ${why}`);
  if (!warnedFallback) {
    warnedFallback = true;
    process.emitWarning(`realtune: device ${request} is unavailable (${why}); falling back to cpu`, { code: 'REALTUNE_DEVICE_FALLBACK' });
  }
  return 'cpu';
}

let defaultDevice: DeviceType | undefined;

/** The device new tensors go to when none is named: REALTUNE_DEVICE, else 'auto'. */
export function getDefaultDevice(): DeviceType {
  if (defaultDevice === undefined) {
    const env = process.env.REALTUNE_DEVICE ?? 'auto';
    defaultDevice = resolveDevice(env as DeviceRequest);
  }
  return defaultDevice;
}

export function setDefaultDevice(request: DeviceRequest, options: { strict?: boolean } = {}): DeviceType {
  defaultDevice = resolveDevice(request, options);
  return defaultDevice;
}
