// Modules: named parameters (leaf Variables) and buffers, nested with dotted names
// (`blocks.3.attn.q.weight`), state dicts checked by name, shape and dtype.
import type { DeviceRequest } from '../device.js';
import { resolveDevice } from '../device.js';
import { Variable } from '../autograd/variable.js';
import { keep } from '../scope.js';
import { shapeString, type Tensor } from '../tensor.js';

export type StateDict = Record<string, Tensor>;

export interface LoadStateDictOptions {
  /** Every parameter and persistent buffer must be present and nothing else (default true). */
  strict?: boolean;
}

export interface LoadStateDictResult {
  missing: string[];
  unexpected: string[];
}

interface Buffer {
  tensor: Tensor;
  /** Saved in the state dict (false for values regenerated from a seed or the config). */
  persistent: boolean;
}

export class Module {
  #parameters = new Map<string, Variable>();
  #buffers = new Map<string, Buffer>();
  #children = new Map<string, Module>();
  training = true;

  /** Registers a trainable parameter (a leaf that requires a gradient); the tensor is owned. */
  protected addParameter(name: string, value: Tensor<'f32'>): Variable {
    this.#checkName(name);
    const v = new Variable(keep(value), { requiresGrad: true, name });
    this.#parameters.set(name, v);
    return v;
  }

  /** Registers a non-trainable tensor (moved by to(), saved when persistent). */
  protected addBuffer<T extends Tensor>(name: string, tensor: T, options: { persistent?: boolean } = {}): T {
    this.#checkName(name);
    this.#buffers.set(name, { tensor: keep(tensor), persistent: options.persistent ?? true });
    return tensor;
  }

  protected addModule<M extends Module>(name: string, module: M): M {
    this.#checkName(name);
    this.#children.set(name, module);
    return module;
  }

  /** Replaces a buffer's tensor (the old one is disposed). */
  protected setBuffer(name: string, tensor: Tensor): void {
    const buffer = this.#buffers.get(name);
    if (buffer === undefined) throw new RangeError(`${this.constructor.name}: no buffer named ${name}`);
    if (buffer.tensor !== tensor) buffer.tensor.dispose();
    buffer.tensor = keep(tensor);
  }

  protected buffer(name: string): Tensor {
    const buffer = this.#buffers.get(name);
    if (buffer === undefined) throw new RangeError(`${this.constructor.name}: no buffer named ${name}`);
    return buffer.tensor;
  }

  /** Removes a child module (detaching an adapter); returns it. */
  protected removeModule(name: string): Module | undefined {
    const child = this.#children.get(name);
    this.#children.delete(name);
    return child;
  }

  #checkName(name: string): void {
    if (name === '' || name.includes('.')) throw new RangeError(`${this.constructor.name}: invalid member name ${JSON.stringify(name)} (non-empty, no dots)`);
    if (this.#parameters.has(name) || this.#buffers.has(name) || this.#children.has(name)) {
      throw new RangeError(`${this.constructor.name}: ${name} is already registered`);
    }
  }

  *namedChildren(): Generator<[string, Module]> {
    yield* this.#children.entries();
  }

  /** This module and every descendant, with dotted names ('' for this one). */
  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [name, child] of this.#children) yield* child.namedModules(prefix === '' ? name : `${prefix}.${name}`);
  }

  *namedParameters(prefix = ''): Generator<[string, Variable]> {
    for (const [name, p] of this.#parameters) yield [prefix === '' ? name : `${prefix}.${name}`, p];
    for (const [name, child] of this.#children) yield* child.namedParameters(prefix === '' ? name : `${prefix}.${name}`);
  }

  *namedBuffers(prefix = '', onlyPersistent = false): Generator<[string, Tensor]> {
    for (const [name, b] of this.#buffers) {
      if (!onlyPersistent || b.persistent) yield [prefix === '' ? name : `${prefix}.${name}`, b.tensor];
    }
    for (const [name, child] of this.#children) yield* child.namedBuffers(prefix === '' ? name : `${prefix}.${name}`, onlyPersistent);
  }

  /** Every parameter (frozen ones too). */
  parameters(): Variable[] {
    return [...this.namedParameters()].map(([, p]) => p);
  }

  /** The parameters an optimizer should update. */
  trainableParameters(): Variable[] {
    return this.parameters().filter((p) => p.requiresGrad);
  }

  parameterCount(options: { trainableOnly?: boolean } = {}): number {
    return this.parameters()
      .filter((p) => !options.trainableOnly || p.requiresGrad)
      .reduce((n, p) => n + p.size, 0);
  }

  /** The live tensors of every parameter and persistent buffer by dotted name (not copies). */
  stateDict(): StateDict {
    const dict: StateDict = {};
    for (const [name, p] of this.namedParameters()) dict[name] = p.value;
    for (const [name, t] of this.namedBuffers('', true)) dict[name] = t;
    return dict;
  }

  /**
   * Copies tensors into the parameters and persistent buffers of the same names. Shapes and
   * dtypes must match; with strict (the default), missing and unexpected keys are errors.
   */
  loadStateDict(dict: StateDict | Map<string, Tensor>, options: LoadStateDictOptions = {}): LoadStateDictResult {
    const strict = options.strict ?? true;
    const entries = dict instanceof Map ? dict : new Map(Object.entries(dict));
    const targets = new Map<string, Tensor>();
    for (const [name, p] of this.namedParameters()) targets.set(name, p.value);
    for (const [name, t] of this.namedBuffers('', true)) targets.set(name, t);
    const missing = [...targets.keys()].filter((k) => !entries.has(k));
    const unexpected = [...entries.keys()].filter((k) => !targets.has(k));
    if (strict && missing.length > 0) throw new RangeError(`loadStateDict: missing key ${missing[0]}${missing.length > 1 ? ` (and ${missing.length - 1} more: ${missing.slice(1, 6).join(', ')})` : ''}`);
    if (strict && unexpected.length > 0) {
      throw new RangeError(`loadStateDict: unexpected key ${unexpected[0]}${unexpected.length > 1 ? ` (and ${unexpected.length - 1} more)` : ''}`);
    }
    for (const [name, target] of targets) {
      const src = entries.get(name);
      if (src === undefined) continue;
      if (src.dtype !== target.dtype) throw new TypeError(`loadStateDict: ${name} has dtype ${src.dtype}, expected ${target.dtype}`);
      if (src.shape.length !== target.shape.length || src.shape.some((d, i) => d !== target.shape[i])) {
        throw new RangeError(`loadStateDict: ${name} has shape ${shapeString(src.shape)}, expected ${shapeString(target.shape)}`);
      }
    }
    for (const [name, target] of targets) {
      const src = entries.get(name);
      if (src === undefined) continue;
      if (src.device === target.device) {
        target.copy_(src as never);
      } else {
        const moved = src.to(target.device);
        target.copy_(moved as never);
        moved.dispose();
      }
    }
    return { missing, unexpected };
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Stops gradients to every parameter (adapters attached later are trainable). */
  freeze(): this {
    for (const p of this.parameters()) p.requiresGrad = false;
    return this;
  }

  unfreeze(): this {
    for (const p of this.parameters()) p.requiresGrad = true;
    return this;
  }

  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }

  /** Moves every parameter and buffer to `device` (in place: the same Variables, new tensors). */
  to(device: DeviceRequest): this {
    const target = resolveDevice(device);
    for (const [, m] of this.namedModules()) m.#moveOwn(target);
    return this;
  }

  #moveOwn(device: Tensor['device']): void {
    for (const p of this.#parameters.values()) {
      if (p.device === device) continue;
      p.value = keep(p.value.to(device));
      if (p.grad !== null) {
        const moved = keep(p.grad.to(device));
        p.grad.dispose();
        p.grad = moved;
      }
    }
    for (const b of this.#buffers.values()) {
      if (b.tensor.device === device) continue;
      const moved = keep(b.tensor.to(device));
      b.tensor.dispose();
      b.tensor = moved;
    }
  }

  /** Disposes every parameter, gradient and buffer. */
  dispose(): void {
    for (const [, m] of this.namedModules()) {
      for (const p of m.#parameters.values()) p.dispose();
      for (const b of m.#buffers.values()) b.tensor.dispose();
    }
  }
}

/** Children named 0, 1, 2, ... (`blocks.3.attn`). */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[] = [];

  constructor(items: Iterable<M> = []) {
    super();
    for (const m of items) this.push(m);
  }

  push(m: M): void {
    this.addModule(String(this.items.length), m);
    this.items.push(m);
  }

  get length(): number {
    return this.items.length;
  }

  at(i: number): M {
    const m = this.items[i];
    if (m === undefined) throw new RangeError(`ModuleList: index ${i} out of range (length ${this.items.length})`);
    return m;
  }

  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}
