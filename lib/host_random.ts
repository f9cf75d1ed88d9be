// Host-side random streams (mulberry32) for choices made in JS: data order, timesteps,
// condition dropout, augmentation, the figures generator, test inputs. The whole state is one
// 32-bit integer, so a checkpoint can save it and a resumed run draws exactly the numbers the
// uninterrupted run would have drawn. Tensor noise comes from the native Philox generator.
export class HostRandom {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** mulberry32: uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  get state(): number {
    return this.#state;
  }

  set state(value: number) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new RangeError(`HostRandom: state must be a 32-bit unsigned integer, got ${value}`);
    this.#state = value;
  }
}

/** A stream as a plain function returning numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  const random = new HostRandom(seed);
  return () => random.next();
}
