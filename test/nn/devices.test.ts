// The DiT (with a LoRA) on every accelerator backend against cpu: prediction and gradients.
import { describe, expect, it } from 'vitest';
import * as F from '../../lib/autograd/functions.js';
import { backward } from '../../lib/autograd/backward.js';
import { DiT } from '../../lib/nn/dit.js';
import { attachLora } from '../../lib/nn/lora.js';
import type { Module } from '../../lib/nn/module.js';
import { fromArray, type Tensor } from '../../lib/tensor.js';
import { relativeError } from '../autograd/gradcheck.js';
import { acceleratorBackends, checkMemoryGuards, randomArray, rng } from '../helpers.js';
import { tinyDiTConfig } from './tiny.js';

checkMemoryGuards();

const config = tinyDiTConfig({ width: 16, depth: 1, vocabSize: 10 });

function build(random: () => number): DiT {
  const model = new DiT(config);
  attachLora(model, { pattern: /(attn|cross)\.(q|v)$/, rank: 2 });
  for (const [, p] of model.namedParameters()) p.value.copy_(fromArray(randomArray(p.size, random, 0.4), p.shape));
  return model;
}

function step(model: Module & DiT, x: Tensor<'f32'>, eps: Tensor<'f32'>, ids: Tensor<'i32'>, lengths: Tensor<'i32'>): Float32Array {
  const prediction = model.forward(x, [3, 800], model.encodeText(ids, lengths)).retain();
  backward(F.mse(prediction, eps));
  return prediction.value.toArray();
}

describe('DiT on accelerator backends', () => {
  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu (forward and every gradient)`, () => {
      const random = rng();
      const reference = build(random);
      const onDevice = new DiT(config);
      attachLora(onDevice, { pattern: /(attn|cross)\.(q|v)$/, rank: 2 });
      onDevice.loadStateDict(reference.stateDict());
      onDevice.to(device);
      const x = fromArray(randomArray(2 * 3 * 64, random), [2, 3, 8, 8]);
      const eps = fromArray(randomArray(2 * 3 * 64, random), [2, 3, 8, 8]);
      const ids = fromArray([1, 2, 3, 0, 4, 5, 6, 7], [2, 4], { dtype: 'i32' });
      const lengths = fromArray([3, 4], [2], { dtype: 'i32' });
      const expected = step(reference, x, eps, ids, lengths);
      expect(onDevice.parameters().every((p) => p.device === device)).toBe(true);
      const got = step(onDevice, x.to(device), eps.to(device), ids.to(device), lengths.to(device));
      expect(relativeError(got, expected), 'prediction').toBeLessThan(1e-5);
      const cpuGrads = new Map([...reference.namedParameters()].map(([n, p]) => [n, p.grad!.toArray()]));
      for (const [name, p] of onDevice.namedParameters()) {
        if (/\.k\.bias$/.test(name)) continue;
        expect(p.grad!.device, name).toBe(device);
        expect(relativeError(p.grad!.toArray(), cpuGrads.get(name)!, 1e-8), name).toBeLessThan(1e-4);
      }
    });
  }
});
