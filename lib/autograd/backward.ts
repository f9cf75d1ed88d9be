// Reverse-mode sweep over the tape: topological order from the root, gradients summed where a
// Variable feeds several ops, leaf gradients accumulated in place, and the graph released.
import { add } from '../ops/elementwise.js';
import { full, type Tensor } from '../tensor.js';
import type { Variable } from './variable.js';

export interface BackwardOptions {
  /** d(output) to start from; default ones (the root must then have one element). */
  grad?: Tensor<'f32'>;
  /** Keep the graph for another backward call (nothing is released). */
  retainGraph?: boolean;
}

/** The Variables of the graph under `root` that need gradients, each after everything it feeds. */
function topologicalOrder(root: Variable): Variable[] {
  const order: Variable[] = [];
  const visited = new Set<Variable>();
  const stack: { v: Variable; next: number }[] = [{ v: root, next: 0 }];
  visited.add(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const parents = top.v.node?.parents ?? [];
    if (top.next < parents.length) {
      const p = parents[top.next++]!;
      if (p.requiresGrad && !visited.has(p)) {
        visited.add(p);
        stack.push({ v: p, next: 0 });
      }
    } else {
      order.push(top.v);
      stack.pop();
    }
  }
  return order.reverse();
}

function freedError(op: string): Error {
  return new Error(
    `backward: the graph through ${op} was already released by an earlier backward(); ` +
      'pass { retainGraph: true } to the earlier call to backpropagate through it again',
  );
}

/** Accumulates d(root)/d(leaf) into every leaf that requires a gradient. */
export function backward(root: Variable, options: BackwardOptions = {}): void {
  if (!root.requiresGrad) throw new Error('backward: the root does not require a gradient (no parameter or input with requiresGrad reached it)');
  const seedGiven = options.grad;
  if (seedGiven !== undefined) {
    if (seedGiven.shape.length !== root.shape.length || seedGiven.shape.some((d, i) => d !== root.shape[i])) {
      throw new RangeError(`backward: grad has shape [${seedGiven.shape.join(', ')}], expected [${root.shape.join(', ')}] like the root`);
    }
  } else if (root.size !== 1) {
    throw new RangeError(`backward: the root has ${root.size} elements; pass { grad } for a non-scalar root`);
  }
  const order = topologicalOrder(root);
  for (const v of order) if (v.node?.freed) throw freedError(v.node.op);

  // Engine-made gradient tensors are reference counted: one tensor may be the gradient of
  // several parents (add passes its gradient through) and is disposed after its last use.
  const refs = new Map<Tensor<'f32'>, number>();
  const acquire = (t: Tensor<'f32'>): void => {
    refs.set(t, (refs.get(t) ?? 0) + 1);
  };
  const release = (t: Tensor<'f32'>): void => {
    const n = (refs.get(t) ?? 0) - 1;
    if (n > 0) {
      refs.set(t, n);
      return;
    }
    refs.delete(t);
    if (t !== seedGiven) t.dispose();
  };

  const pending = new Map<Variable, Tensor<'f32'>>();
  const seed = seedGiven ?? full(root.shape, 1, { device: root.device });
  acquire(seed);
  pending.set(root, seed);
  try {
    for (const v of order) {
      const g = pending.get(v);
      if (g === undefined) continue;
      pending.delete(v);
      const node = v.node;
      if (node === null) {
        v.accumulateGrad(g);
        release(g);
        continue;
      }
      if (node.backward === null) throw freedError(node.op);
      const needs = node.parents.map((p) => p.requiresGrad);
      const grads = node.backward(g, needs);
      const returned = new Set<Tensor<'f32'>>();
      for (const t of grads) if (t) returned.add(t);
      for (const t of returned) acquire(t);
      node.parents.forEach((p, i) => {
        const gp = grads[i];
        if (!gp || !needs[i]) return;
        if (gp.shape.length !== p.shape.length || gp.shape.some((d, j) => d !== p.shape[j])) {
          throw new Error(`backward: ${node.op} returned a gradient of shape [${gp.shape.join(', ')}] for an input of shape [${p.shape.join(', ')}]`);
        }
        const existing = pending.get(p);
        if (existing === undefined) {
          acquire(gp);
          pending.set(p, gp);
        } else {
          const sum = add(existing, gp);
          acquire(sum);
          pending.set(p, sum);
          release(existing);
        }
      });
      for (const t of returned) release(t);
      release(g);
    }
  } finally {
    for (const t of pending.values()) release(t);
    if (!options.retainGraph) releaseGraph(root);
  }
}

/** Frees every node under `root` (differentiable or constant); leaves are left alone. */
function releaseGraph(root: Variable): void {
  const stack: Variable[] = [root];
  const seen = new Set<Variable>([root]);
  while (stack.length > 0) {
    const v = stack.pop()!;
    const node = v.node;
    if (node === null || node.freed) continue;
    node.freed = true;
    node.backward = null;
    for (const t of node.owned) t.dispose();
    node.owned = [];
    if (v !== root && !v.retained) v.value.dispose();
    for (const p of node.parents) {
      if (!seen.has(p)) {
        seen.add(p);
        stack.push(p);
      }
    }
  }
}

/**
 * Releases the graph under `root` without a backward pass: a forward whose result is not
 * trained on, or one computed with grad enabled through frozen layers only.
 */
export function release(root: Variable): void {
  releaseGraph(root);
}
