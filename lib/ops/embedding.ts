// Embedding lookup (gather rows of a [vocab, dim] table by i32 ids) and its scatter-add backward.
import type { NativeHandle } from '../native.js';
import { native } from '../native.js';
import { shapeString, wrap, type Shape, type Tensor } from '../tensor.js';
import { expectDType, expectInteger, expectRank, expectSameDevice, expectTensor } from './validate.js';

declare module '../native.js' {
  interface NativeModule {
    embedding(table: NativeHandle, ids: NativeHandle): NativeHandle;
    embeddingBackward(ids: NativeHandle, dy: NativeHandle, vocab: number): NativeHandle;
  }
}

/** The index of flat position `flat` in `shape`, as "[i, j, ...]". */
function position(flat: number, shape: Shape): string {
  const index: number[] = new Array<number>(shape.length).fill(0);
  for (let d = shape.length - 1, rest = flat; d >= 0; d--) {
    const size = shape[d]!;
    index[d] = rest % size;
    rest = Math.floor(rest / size);
  }
  return `[${index.join(', ')}]`;
}

function expectIdsInRange(op: string, ids: Tensor<'i32'>, vocab: number): void {
  const values = ids.toArray();
  for (let i = 0; i < values.length; i++) {
    const id = values[i]!;
    if (id < 0 || id >= vocab) {
      throw new RangeError(`${op}: ids${position(i, ids.shape)} is ${id}, expected 0 <= id < ${vocab} (vocab)`);
    }
  }
}

/** table[ids]: out has shape [...ids.shape, dim] for a [vocab, dim] table. */
export function embedding(table: Tensor<'f32'>, ids: Tensor<'i32'>): Tensor<'f32'> {
  const op = 'embedding';
  expectTensor(op, 'table', table);
  expectTensor(op, 'ids', ids);
  expectDType(op, 'table', table, 'f32');
  expectDType(op, 'ids', ids, 'i32');
  expectRank(op, 'table', table, ['vocab', 'dim']);
  expectSameDevice(op, 'ids', ids, table.device);
  const [vocab, dim] = table.shape as [number, number];
  expectIdsInRange(op, ids, vocab);
  return wrap(native.embedding(table.handle, ids.handle), [...ids.shape, dim], 'f32', table.device);
}

/** The gradient of embedding for the table: a fresh [vocab, dim] tensor, dy rows summed per id. */
export function embeddingBackward(ids: Tensor<'i32'>, dy: Tensor<'f32'>, vocab: number): Tensor<'f32'> {
  const op = 'embeddingBackward';
  expectTensor(op, 'ids', ids);
  expectTensor(op, 'dy', dy);
  expectDType(op, 'ids', ids, 'i32');
  expectDType(op, 'dy', dy, 'f32');
  expectSameDevice(op, 'dy', dy, ids.device);
  expectInteger(op, 'vocab', vocab, 0);
  if (dy.ndim !== ids.ndim + 1 || ids.shape.some((d, i) => dy.shape[i] !== d)) {
    throw new RangeError(
      `${op}: dy has shape ${shapeString(dy.shape)}, expected [${[...ids.shape, 'dim'].join(', ')}] (the ids' shape, then dim)`,
    );
  }
  expectIdsInRange(op, ids, vocab);
  const dim = dy.shape[dy.ndim - 1]!;
  return wrap(native.embeddingBackward(ids.handle, dy.handle, vocab), [vocab, dim], 'f32', ids.device);
}
