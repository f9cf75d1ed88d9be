// LoRA-fused linear layer: y = x w^T + bias + scale (x down) up, in one GEMM pass over x.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { shapeString, wrap, wrapReshaped, type Tensor } from '../tensor.js';
import { expectDType, expectNumber, expectSameDevice, expectShape, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    loraLinear(x: NativeHandle, w: NativeHandle, bias: NativeHandle | null, down: NativeHandle, up: NativeHandle, scale: number): NativeHandle[];
    loraLinearBackward(
      x: NativeHandle,
      w: NativeHandle,
      down: NativeHandle,
      up: NativeHandle,
      h: NativeHandle,
      dy: NativeHandle,
      scale: number,
      needDw: boolean,
      needDbias: boolean,
    ): (NativeHandle | null)[];
  }
}

export interface LoraLinearOptions {
  /** The LoRA multiplier (alpha / rank in PEFT terms); 1 by default. */
  scale?: number;
}

function f32(op: string, name: string, t: unknown, device?: string): asserts t is Tensor<'f32'> {
  expectTensor(op, name, t);
  expectDType(op, name, t, 'f32');
  if (device !== undefined) expectSameDevice(op, name, t, device as Tensor['device']);
}

function matrixDims(op: string, name: string, t: Tensor, dims: [string, string]): [number, number] {
  if (t.ndim !== 2) throw new RangeError(`${op}: ${name} has ${t.ndim} dims, expected 2 [${dims.join(', ')}]`);
  return [t.shape[0]!, t.shape[1]!];
}

interface Checked {
  lead: number[];
  m: number;
  n: number;
  k: number;
  rank: number;
}

/** x is [..., K] (leading axes flattened into M), w [N, K], down [K, r], up [r, N]. */
function checkLora(op: string, x: Tensor, w: Tensor, down: Tensor, up: Tensor): Checked {
  f32(op, 'x', x);
  f32(op, 'w', w, x.device);
  f32(op, 'down', down, x.device);
  f32(op, 'up', up, x.device);
  if (x.ndim < 2) throw new RangeError(`${op}: x has ${x.ndim} dims, expected at least 2 [..., M, K]`);
  const [n, k] = matrixDims(op, 'w', w, ['N', 'K']);
  const lead = x.shape.slice(0, -1);
  if (x.shape[x.ndim - 1] !== k) {
    throw new RangeError(`${op}: x has shape ${shapeString(x.shape)}, expected last axis K = ${k} (w is ${shapeString(w.shape)})`);
  }
  const [downK, rank] = matrixDims(op, 'down', down, ['K', 'rank']);
  if (downK !== k) throw new RangeError(`${op}: down has shape ${shapeString(down.shape)}, expected [${k}, rank]`);
  expectShape(op, 'up', up, [rank, n]);
  return { lead, m: lead.reduce((p, d) => p * d, 1), n, k, rank };
}

/** Runs `fn` on 2-D views of the given tensors, disposing the views afterwards. */
function withMatrices<T>(views: [Tensor, number, number][], fn: (handles: NativeHandle[]) => T): T {
  const made = views.map(([t, rows, cols]) => (t.ndim === 2 ? t : t.reshape([rows, cols])));
  try {
    return fn(made.map((t) => t.handle));
  } finally {
    made.forEach((t, i) => {
      if (t !== views[i]![0]) t.dispose();
    });
  }
}

export interface LoraLinearForward {
  /** [..., N] */
  y: Tensor<'f32'>;
  /** x down, [..., r]: saved for the backward. */
  h: Tensor<'f32'>;
}

/**
 * y = x w^T + bias + scale (x down) up, with h = x down returned for the backward.
 * x [..., K], w [N, K], bias [N] or null, down [K, r], up [r, N]. The down-projection is computed in
 * the same pass over x as the base GEMM and the rank-r update is added in the GEMM's epilogue.
 * A rank of 0 (down [K, 0], up [0, N]) is the plain linear layer.
 */
export function loraLinearForward(
  x: Tensor<'f32'>,
  w: Tensor<'f32'>,
  bias: Tensor<'f32'> | null,
  down: Tensor<'f32'>,
  up: Tensor<'f32'>,
  options: LoraLinearOptions = {},
): LoraLinearForward {
  const op = 'loraLinear';
  const { lead, m, n, k, rank } = checkLora(op, x, w, down, up);
  if (bias !== null && bias !== undefined) {
    f32(op, 'bias', bias, x.device);
    expectShape(op, 'bias', bias, [n]);
  }
  const scale = expectNumber(op, 'scale', options.scale ?? 1, Number.isFinite, 'finite');
  const [y, h] = withMatrices([[x, m, k]], ([xh]) => native.loraLinear(xh!, w.handle, bias?.handle ?? null, down.handle, up.handle, scale));
  // The kernel works on [M, K] matrices; give the results x's leading axes natively too.
  const yShape = [...lead, n];
  const hShape = [...lead, rank];
  return { y: wrapReshaped(y!, yShape, 'f32', x.device), h: wrapReshaped(h!, hShape, 'f32', x.device) };
}

/** y = x w^T + bias + scale (x down) up (see loraLinearForward). */
export function loraLinear(
  x: Tensor<'f32'>,
  w: Tensor<'f32'>,
  bias: Tensor<'f32'> | null,
  down: Tensor<'f32'>,
  up: Tensor<'f32'>,
  options: LoraLinearOptions = {},
): Tensor<'f32'> {
  const { y, h } = loraLinearForward(x, w, bias, down, up, options);
  h.dispose();
  return y;
}

export interface LoraLinearBackwardOptions extends LoraLinearOptions {
  /** Compute dw (the base weight is usually frozen); false by default. */
  needDw?: boolean;
  /** Compute dbias; true by default. */
  needDbias?: boolean;
}

export interface LoraLinearGradients {
  /** dy w + scale (dy up^T) down^T, shaped like x. */
  dx: Tensor<'f32'>;
  /** dy^T x [N, K], with needDw. */
  dw?: Tensor<'f32'>;
  /** column sums of dy [N], with needDbias. */
  dbias?: Tensor<'f32'>;
  /** scale x^T (dy up^T) [K, r]. */
  ddown: Tensor<'f32'>;
  /** scale h^T dy [r, N]. */
  dup: Tensor<'f32'>;
}

/** Gradients of loraLinear given dy [..., N] and the forward's h [..., r] (pass the same scale). */
export function loraLinearBackward(
  x: Tensor<'f32'>,
  w: Tensor<'f32'>,
  down: Tensor<'f32'>,
  up: Tensor<'f32'>,
  h: Tensor<'f32'>,
  dy: Tensor<'f32'>,
  options: LoraLinearBackwardOptions = {},
): LoraLinearGradients {
  const op = 'loraLinearBackward';
  const { lead, m, n, k, rank } = checkLora(op, x, w, down, up);
  f32(op, 'h', h, x.device);
  expectShape(op, 'h', h, [...lead, rank]);
  f32(op, 'dy', dy, x.device);
  expectShape(op, 'dy', dy, [...lead, n]);
  const scale = expectNumber(op, 'scale', options.scale ?? 1, Number.isFinite, 'finite');
  const needDw = options.needDw ?? false;
  const needDbias = options.needDbias ?? true;
  if (typeof needDw !== 'boolean') throw new TypeError(`${op}: needDw must be a boolean, got ${typeof needDw}`);
  if (typeof needDbias !== 'boolean') throw new TypeError(`${op}: needDbias must be a boolean, got ${typeof needDbias}`);
  const handles = withMatrices(
    [
      [x, m, k],
      [h, m, rank],
      [dy, m, n],
    ],
    ([xh, hh, dyh]) => native.loraLinearBackward(xh!, w.handle, down.handle, up.handle, hh!, dyh!, scale, needDw, needDbias),
  );
  const device = x.device;
  const result: LoraLinearGradients = {
    dx: wrapReshaped(handles[0]!, x.shape, 'f32', device),
    ddown: wrap(handles[3]!, [k, rank], 'f32', device),
    dup: wrap(handles[4]!, [rank, n], 'f32', device),
  };
  if (needDw) result.dw = wrap(handles[1]!, [n, k], 'f32', device);
  if (needDbias) result.dbias = wrap(handles[2]!, [n], 'f32', device);
  return result;
}
