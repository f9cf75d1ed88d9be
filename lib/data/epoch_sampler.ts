// The order in which a trainer draws a fixed set of examples.
import { HostRandom } from '../host_random.js';

/** Example indices in epoch order: a fresh seeded permutation per epoch, a pure function of (seed, epoch). */
export class EpochSampler {
  #epoch = -1;
  #order: number[] = [];
  constructor(
    readonly size: number,
    readonly seed: number,
  ) {}

  /** The index of the k-th example drawn since the start of the stage. */
  at(k: number): number {
    const epoch = Math.floor(k / this.size);
    if (epoch !== this.#epoch) {
      const random = new HostRandom((this.seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0);
      this.#order = Array.from({ length: this.size }, (_, i) => i);
      for (let i = this.size - 1; i > 0; i--) {
        const j = random.int(i + 1);
        [this.#order[i], this.#order[j]] = [this.#order[j]!, this.#order[i]!];
      }
      this.#epoch = epoch;
    }
    return this.#order[k % this.size]!;
  }
}
