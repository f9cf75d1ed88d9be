// Parameter initialisers (PyTorch's conventions), drawing from a Generator so a model built
// after manualSeed(s) (or with a seeded generator) is reproducible on every backend.
import { defaultGenerator, rand, randn, type Generator } from '../ops/random.js';
import { zeros, type Shape, type Tensor } from '../tensor.js';

export function uniform(shape: Shape, bound: number, generator: Generator = defaultGenerator()): Tensor<'f32'> {
  return rand(shape, { low: -bound, high: bound, generator });
}

export function normal(shape: Shape, std: number, generator: Generator = defaultGenerator()): Tensor<'f32'> {
  return randn(shape, { std, generator });
}

/** Fans of a weight [out, in, ...receptive]. */
function fans(shape: Shape): { fanIn: number; fanOut: number } {
  const receptive = shape.slice(2).reduce((n, d) => n * d, 1);
  return { fanIn: (shape[1] ?? 1) * receptive, fanOut: (shape[0] ?? 1) * receptive };
}

export function xavierUniform(shape: Shape, generator?: Generator, gain = 1): Tensor<'f32'> {
  const { fanIn, fanOut } = fans(shape);
  return uniform(shape, gain * Math.sqrt(6 / (fanIn + fanOut)), generator);
}

export function xavierNormal(shape: Shape, generator?: Generator, gain = 1): Tensor<'f32'> {
  const { fanIn, fanOut } = fans(shape);
  return normal(shape, gain * Math.sqrt(2 / (fanIn + fanOut)), generator);
}

/** nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)). */
export function linearDefault(shape: Shape, fanIn: number, generator?: Generator): Tensor<'f32'> {
  return uniform(shape, 1 / Math.sqrt(fanIn), generator);
}

export { zeros };
