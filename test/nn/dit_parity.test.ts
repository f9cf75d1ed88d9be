// Our DiT against PyTorch (scripts/fixtures/make_dit_parity.py): same weights and inputs, the
// prediction, the epsilon-MSE loss and every parameter gradient to 1e-4 relative (fp32).
import { describe, expect, it } from 'vitest';
import * as F from '../../lib/autograd/functions.js';
import { backward } from '../../lib/autograd/backward.js';
import { DiT } from '../../lib/nn/dit.js';
import { loadSafetensors } from '../../lib/io/safetensors.js';
import type { Tensor } from '../../lib/tensor.js';
import { relativeError } from '../autograd/gradcheck.js';
import { checkMemoryGuards } from '../helpers.js';

checkMemoryGuards();

describe('DiT parity with PyTorch', () => {
  it('matches the prediction, the loss and every parameter gradient', () => {
    const loaded = loadSafetensors('test/fixtures/dit_parity.safetensors');
    const tensors = new Map(Object.entries(loaded.tensors));
    const metadata = loaded.metadata;
    const c = JSON.parse(metadata.config!) as Record<string, number>;
    const model = new DiT({
      imageSize: c.image_size!,
      patchSize: c.patch_size!,
      channels: c.channels!,
      width: c.width!,
      depth: c.depth!,
      heads: c.heads!,
      mlpRatio: c.mlp_ratio!,
      textWidth: c.text_width!,
      contextLength: c.context_length!,
      timestepDim: c.timestep_dim!,
      text: { vocabSize: c.vocab_size!, depth: c.text_depth!, heads: c.text_heads!, mlpRatio: c.text_mlp_ratio! },
    });
    const get = (name: string): Tensor => {
      const t = tensors.get(name);
      if (t === undefined) throw new Error(`fixture has no ${name}`);
      return t;
    };
    const weights = new Map<string, Tensor>();
    for (const [name, t] of tensors) if (name.startsWith('param.')) weights.set(name.slice('param.'.length), t);
    model.loadStateDict(weights);

    const x = get('input.x') as Tensor<'f32'>;
    const t = Array.from(get('input.t').toArray());
    const text = model.encodeText(get('input.ids') as Tensor<'i32'>, get('input.lengths') as Tensor<'i32'>);
    const prediction = model.forward(x, t, text).retain();
    const loss = F.mse(prediction, get('input.noise') as Tensor<'f32'>);
    backward(loss);

    const predictionError = relativeError(prediction.value.toArray(), get('output.prediction').toArray());
    expect(predictionError, 'prediction').toBeLessThan(1e-4);
    expect(Math.abs(loss.value.item() / get('output.loss').item() - 1), 'loss').toBeLessThan(1e-5);

    const names = [...model.namedParameters()].map(([n]) => n);
    expect(names.sort()).toEqual([...weights.keys()].sort());
    const errors: string[] = [];
    let worst = 0;
    for (const [name, p] of model.namedParameters()) {
      const expected = get(`grad.${name}`).toArray();
      expect(p.grad, `${name} has a gradient`).not.toBeNull();
      const got = p.grad!.toArray();
      if (/\.k\.bias$/.test(name)) {
        // Softmax ignores a shift shared by every key, so a key bias gets exactly zero gradient;
        // both sides hold only rounding noise (~1e-9), where a relative error means nothing.
        const scale = Math.hypot(...get(`grad.${name.replace(/bias$/, 'weight')}`).toArray());
        expect(Math.hypot(...got), `${name} (zero in exact arithmetic)`).toBeLessThan(1e-5 * scale);
        expect(Math.hypot(...expected), `${name} in PyTorch`).toBeLessThan(1e-5 * scale);
        continue;
      }
      const err = relativeError(got, expected, 1e-8);
      worst = Math.max(worst, err);
      if (!(err <= 1e-4)) errors.push(`${name}: ${err.toExponential(2)}`);
    }
    console.log(`DiT parity: prediction rel err ${predictionError.toExponential(2)}, worst gradient rel err ${worst.toExponential(2)} over ${names.length} tensors`);
    expect(errors, 'parameter gradients beyond 1e-4 relative error').toEqual([]);
  });
});
