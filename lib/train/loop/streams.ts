// The random streams of a training run, saved with every checkpoint so that a resumed run draws
// exactly the numbers the uninterrupted run would have drawn:
//   host     data order, timesteps, condition dropout, augmentation (one 32-bit state)
//   noise    the Philox stream of the diffusion noise
//   dropout  another Philox stream for the DiT's dropout masks, so that switching dropout on or
//            off leaves the noise of every step as it was
import { HostRandom } from '../../host_random.js';
import { Generator, type GeneratorState } from '../../ops/random.js';

export interface StreamsState {
  host: number;
  noise: GeneratorState;
  dropout: GeneratorState;
}

export class RandomStreams {
  readonly host: HostRandom;
  readonly noise: Generator;
  readonly dropout: Generator;

  constructor(seed: number) {
    this.host = new HostRandom(seed);
    this.noise = new Generator(seed + 1);
    this.dropout = new Generator(seed + 2);
  }

  state(): StreamsState {
    return { host: this.host.state, noise: this.noise.state(), dropout: this.dropout.state() };
  }

  restore(state: StreamsState): void {
    this.host.state = state.host;
    this.noise.setState(state.noise);
    this.dropout.setState(state.dropout);
  }
}
