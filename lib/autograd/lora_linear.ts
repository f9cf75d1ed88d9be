// The LoRA-fused linear as a differentiable function (lib/ops/lora_linear.ts underneath).
import * as lora from '../ops/lora_linear.js';
import type { Tensor } from '../tensor.js';
import { reshape } from './functions.js';
import { asVariable, record, type Input, type Variable } from './variable.js';

/** y = x w^T + bias + scale (x down) up, x [..., K], w [N, K], down [K, r], up [r, N]. */
export function loraLinear(x: Input, w: Input, bias: Input | null, down: Input, up: Input, options: { scale: number }): Variable {
  const op = 'loraLinear';
  const vx = asVariable(x, op, 'x');
  if (vx.shape.length !== 2) {
    // The fused op runs on rows; leading axes are folded in and restored around it.
    const k = vx.shape[vx.shape.length - 1]!;
    const y = loraLinear(reshape(vx, [-1, k]), w, bias, down, up, options);
    return reshape(y, [...vx.shape.slice(0, -1), y.shape[1]!]);
  }
  const vw = asVariable(w, op, 'w');
  const vb = bias === null ? null : asVariable(bias, op, 'bias');
  const vd = asVariable(down, op, 'down');
  const vu = asVariable(up, op, 'up');
  const { y, h } = lora.loraLinearForward(vx.value, vw.value, vb?.value ?? null, vd.value, vu.value, { scale: options.scale });
  const parents = vb === null ? [vx, vw, vd, vu] : [vx, vw, vd, vu, vb];
  return record(
    'loraLinear',
    y,
    parents,
    (g, needs) => {
      const grads = lora.loraLinearBackward(vx.value, vw.value, vd.value, vu.value, h, g, {
        scale: options.scale,
        needDw: needs[1] === true,
        needDbias: vb !== null && needs[4] === true,
      });
      const out: (Tensor<'f32'> | null)[] = [grads.dx, grads.dw ?? null, grads.ddown, grads.dup];
      if (vb !== null) out.push(grads.dbias ?? null);
      return out;
    },
    [h],
  );
}
