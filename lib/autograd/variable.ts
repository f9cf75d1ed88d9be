// The autograd tape in micrograd's shape: a Variable holds a Tensor value and, when an op made
// it from inputs that need gradients, the Node that knows how to send its gradient back.
//
// Ownership: a Variable owns its value. While recording (not under noGrad) every op result is a
// node of the graph, including results that need no gradient (a frozen layer's output feeding a
// LoRA): their values, and the tensors a node saved for its backward, are disposed when the graph
// is released (by backward() without retainGraph, or by release()), except the root and
// Variables marked with retain(). So a value reused across training steps is computed under
// noGrad() (a leaf, owned by the caller: tidy() or dispose() frees it) or retained. Leaves
// (parameters, inputs, noGrad results) are never disposed by the graph.
import type { DeviceType } from '../device.js';
import { axpy } from '../ops/elementwise.js';
import { keep } from '../scope.js';
import { Tensor, type Shape } from '../tensor.js';

/** Returns the gradient of each parent (null where not needed) from the gradient of the output. */
export type BackwardFn = (grad: Tensor<'f32'>, needs: readonly boolean[]) => (Tensor<'f32'> | null)[];

export interface Node {
  readonly op: string;
  readonly parents: readonly Variable[];
  backward: BackwardFn | null;
  /** Tensors kept only for the backward (not any Variable's value); disposed on release. */
  owned: Tensor[];
  freed: boolean;
  /** No input needed a gradient: the node is only tracked so that release() frees its value. */
  readonly constant: boolean;
}

let gradEnabled = true;

/** Whether ops currently record the tape. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording: results need no gradient and keep no graph. */
export function noGrad<T>(fn: () => T): T {
  const previous = gradEnabled;
  gradEnabled = false;
  try {
    const result = fn();
    if (result instanceof Promise) throw new TypeError('noGrad: fn must be synchronous (it returned a Promise)');
    return result;
  } finally {
    gradEnabled = previous;
  }
}

/** Runs fn with recording on (inside a noGrad, for example). */
export function enableGrad<T>(fn: () => T): T {
  const previous = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = previous;
  }
}

export interface VariableOptions {
  requiresGrad?: boolean;
  name?: string;
}

export class Variable {
  #value: Tensor<'f32'>;
  requiresGrad: boolean;
  /** Accumulated over backward calls until zeroGrad(); only on leaves. */
  grad: Tensor<'f32'> | null = null;
  readonly node: Node | null;
  name: string | undefined;
  #retained = false;

  /** A leaf holding `value` (not copied: the Variable now owns it). */
  constructor(value: Tensor<'f32'>, options: VariableOptions = {}, node: Node | null = null) {
    if (value.dtype !== 'f32') throw new TypeError(`Variable: value has dtype ${value.dtype}, expected f32`);
    this.#value = value;
    this.requiresGrad = node !== null ? !node.constant : (options.requiresGrad ?? false);
    this.node = node;
    this.name = options.name;
  }

  get value(): Tensor<'f32'> {
    return this.#value;
  }

  /** Replaces a leaf's value (loading weights, merging adapters); the old one is disposed. */
  set value(next: Tensor<'f32'>) {
    if (this.node !== null) throw new TypeError(`Variable: only a leaf's value can be replaced (this one was made by ${this.node.op})`);
    if (next.dtype !== 'f32') throw new TypeError(`Variable: value has dtype ${next.dtype}, expected f32`);
    if (next !== this.#value) this.#value.dispose();
    // A leaf outlives the tidy scope that happened to create its new value.
    this.#value = keep(next);
  }

  get shape(): Shape {
    return this.#value.shape;
  }

  get ndim(): number {
    return this.#value.ndim;
  }

  get size(): number {
    return this.#value.size;
  }

  get device(): DeviceType {
    return this.#value.device;
  }

  get isLeaf(): boolean {
    return this.node === null;
  }

  get retained(): boolean {
    return this.#retained;
  }

  /** Keeps this value alive when the graph is released (to read it after backward). */
  retain(): this {
    this.#retained = true;
    return this;
  }

  /** A leaf sharing this value, outside the graph; marks this Variable retained. */
  detach(): Variable {
    this.#retained = true;
    return new Variable(this.#value);
  }

  zeroGrad(): void {
    this.grad?.dispose();
    this.grad = null;
  }

  /** Adds `g` to the accumulated gradient (g itself is not kept). */
  accumulateGrad(g: Tensor<'f32'>): void {
    if (this.grad === null || this.grad.disposed) this.grad = keep(g.clone());
    else axpy(1, g, this.grad);
  }

  /** Disposes the value and the gradient. */
  dispose(): void {
    this.#value.dispose();
    this.zeroGrad();
  }

  toString(): string {
    return `Variable(${this.#value.describe()}${this.requiresGrad ? ', requiresGrad' : ''}${this.node ? `, from ${this.node.op}` : ''})`;
  }
}

export type Input = Variable | Tensor<'f32'>;

/**
 * A Variable for input `name` of `op`: Tensors become constant leaves (not owned: never
 * disposed). Anything else (an array, a number, a disposed or non-f32 tensor) is an error
 * naming the op and the input.
 */
export function asVariable(x: Input, op = 'asVariable', name = 'x'): Variable {
  if (x instanceof Variable) return x;
  if (!(x instanceof Tensor)) {
    const got: unknown = x;
    const what = got === null ? 'null' : Array.isArray(got) ? 'an array (make a Tensor of it with fromArray)' : typeof got === 'object' ? `an object (${(got as object).constructor?.name ?? 'no class'})` : `a ${typeof got}`;
    throw new TypeError(`${op}: ${name} must be a Variable or a Tensor, got ${what}`);
  }
  if (x.disposed) throw new TypeError(`${op}: ${name} was disposed`);
  if (x.dtype !== 'f32') throw new TypeError(`${op}: ${name} has dtype ${x.dtype}, expected f32`);
  return new Variable(x);
}

/**
 * Makes the Variable for an op's result. When recording it carries a Node (with the backward
 * when some parent needs a gradient); under noGrad it is a leaf. Backward-only state that will
 * not be used is disposed at once.
 */
export function record(op: string, value: Tensor<'f32'>, parents: readonly Variable[], backward: BackwardFn, owned: Tensor[] = []): Variable {
  const differentiable = parents.some((p) => p.requiresGrad);
  if (!gradEnabled || !differentiable) for (const t of owned) t.dispose();
  if (!gradEnabled) return new Variable(value);
  return new Variable(value, {}, {
    op,
    parents,
    backward: differentiable ? backward : null,
    owned: differentiable ? owned : [],
    freed: false,
    constant: !differentiable,
  });
}
