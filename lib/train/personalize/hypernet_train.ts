// Training the hypernetwork (SPEC section 3) on the pre-optimised identities, through the one
// training engine (resumable from <out>/checkpoint). Each micro-batch is one identity: a random
// view of the person is the reference image, the network predicts theta_hat from it, the LiDB
// layers of the frozen base take theta_hat, and the loss is
//
//     alpha * || D_theta_hat(x_t, c) - target ||^2  +  beta * || theta_hat - theta_preopt ||^2
//
// (both means), with x the identity's views and c their "[V]" prompts; gradients flow through the
// LiDB factors into the hypernetwork only. The result is <out>/hypernet.safetensors.
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import * as F from '../../autograd/functions.js';
import { backward } from '../../autograd/backward.js';
import { HyperNetwork, defaultHyperNetworkConfig, type HyperNetworkConfig } from '../../nn/hypernet.js';
import { weightsHash } from '../../nn/adapter_file.js';
import { ImageEncoder } from '../../nn/vit.js';
import { loadEvaluator, shippedEvaluator } from '../../eval/networks.js';
import { TextToImage } from '../../models/text_to_image.js';
import { tidy } from '../../scope.js';
import { fromArray } from '../../tensor.js';
import { inShard, isRankZero, shardedGenerator } from '../loop/dist.js';
import { runTraining, type StepReport } from '../loop/engine.js';
import { parameterCheckpoints } from '../loop/param_checkpoint.js';
import { settingsWithDefaults } from '../loop/state.js';
import { diffusionLoss } from '../objectives/diffusion.js';
import { identityViews, type IdentityView } from './identities.js';
import { attachIdentityLidb, personalizedLayerNames, saveHypernet } from './lidb.js';
import { readPreoptWeights } from './preopt.js';

export interface HypernetTrainSettings {
  steps: number;
  /** Identities per optimiser step (one micro-batch each). */
  identitiesPerStep: number;
  /** Views of the identity in each diffusion batch. */
  batch: number;
  lr: number;
  /** Weight of the diffusion term. */
  alpha: number;
  /** Weight of the weight-space term. */
  beta: number;
  refinements: number;
  /**
   * Share of micro-batches on a training-domain identity that was never pre-optimised (drawn
   * from indices 10000 and up): the diffusion term needs no target weights, so the network sees
   * many more people than the pre-optimised set (0: the paper's loss on the set only).
   */
  freshShare: number;
  seed: number;
}

export const hypernetTrainDefaults: HypernetTrainSettings = { steps: 600, identitiesPerStep: 4, batch: 2, lr: 1e-3, alpha: 1, beta: 1, refinements: 4, freshShare: 0.5, seed: 0 };

/** First index of the identities the fresh share draws from (past any pre-optimised set). */
const freshStart = 10_000;

export interface HypernetTrainOptions extends Partial<HypernetTrainSettings> {
  base: string;
  /** A pre-optimisation directory (preoptimize's out). */
  preopt: string;
  /** Output directory: checkpoint/ while training, hypernet.safetensors at the end. */
  out: string;
  /** Overrides of the network's shape (default defaultHyperNetworkConfig). */
  config?: Partial<Omit<HyperNetworkConfig, 'layers' | 'a' | 'b'>>;
  ckptEvery?: number;
  stopAt?: number;
  onStep?: (report: StepReport) => void;
  /**
   * Initialises the hypernetwork's image encoder from a pretrained one: an evaluator file
   * (its `encoder`), default the shipped attribute classifier (trained on the figures' named
   * attributes, not on identities); 'none' starts from random weights. The encoder's shape is
   * then the evaluator's.
   */
  encoderInit?: string;
  /** Extra provenance stored in the file (e.g. the command). */
  provenance?: Record<string, string>;
}

export async function trainHypernet(options: HypernetTrainOptions): Promise<{ file: string; losses: number[]; step: number }> {
  const op = 'train-hypernet';
  const s = settingsWithDefaults(hypernetTrainDefaults, options);
  for (const key of ['identitiesPerStep', 'batch', 'refinements'] as const) {
    if (!Number.isInteger(s[key]) || s[key] < 1) throw new RangeError(`${op}: ${key} must be an integer >= 1, got ${s[key]}`);
  }
  if (!(s.freshShare >= 0 && s.freshShare <= 1)) throw new RangeError(`${op}: freshShare must be in [0, 1], got ${s.freshShare}`);
  for (const key of ['alpha', 'beta'] as const) if (!(s[key] >= 0 && Number.isFinite(s[key]))) throw new RangeError(`${op}: ${key} must be finite and >= 0, got ${s[key]}`);
  const { record, weights } = readPreoptWeights(options.preopt);
  const model = TextToImage.load(options.base);
  let hypernet: HyperNetwork | undefined;
  try {
    const base = weightsHash(model.dit);
    if (base !== record.base) throw new Error(`${op}: ${options.preopt} was pre-optimised on base ${record.base.slice(0, 12)}, ${options.base} is ${base.slice(0, 12)}`);
    const layers = personalizedLayerNames(model.dit);
    if (layers.join(',') !== record.layers.join(',')) throw new Error(`${op}: ${options.preopt} has weights for other layers than ${options.base} has`);
    const { a, b } = record.settings.lidb;
    const encoderInit = options.encoderInit ?? shippedEvaluator('attributes');
    const encoderName = encoderInit === 'none' ? 'none' : path.basename(encoderInit);
    const pretrained = encoderInit === 'none' ? undefined : loadEvaluator(encoderInit);
    let config: HyperNetworkConfig;
    try {
      config = { ...defaultHyperNetworkConfig(layers.length, model.imageSize, a, b), ...options.config, refinements: s.refinements };
      if (pretrained !== undefined) {
        if (!('encoder' in pretrained) || !(pretrained.encoder instanceof ImageEncoder)) throw new Error(`${op}: ${encoderInit} has no image encoder`);
        config = { ...config, encoder: { ...pretrained.encoder.config } };
      }
      hypernet = new HyperNetwork(config, { seed: s.seed });
      if (pretrained !== undefined) hypernet.encoder.loadStateDict((pretrained.encoder as ImageEncoder).stateDict());
    } finally {
      pretrained?.dispose();
    }
    const net = hypernet;
    for (const p of model.dit.parameters()) p.requiresGrad = false;
    const adapters = attachIdentityLidb(model.dit, record.settings.lidb);
    for (const adapter of adapters) for (const p of adapter.parameters()) p.requiresGrad = false;
    const views = new Map<number, IdentityView[]>();
    const viewsOf = (index: number): IdentityView[] => {
      let found = views.get(index);
      if (found === undefined) {
        found = identityViews('train', index, record.settings.views, model.imageSize);
        if (index < weights.length) views.set(index, found);
      }
      return found;
    };
    const size = model.imageSize;
    const perImage = model.channels * size * size;
    mkdirSync(options.out, { recursive: true });
    const checkpoint = path.join(options.out, 'checkpoint');
    const parameters = (): [string, ReturnType<HyperNetwork['parameters']>[number]][] => [...net.namedParameters()];
    const result = await runTraining({
      op,
      optim: { steps: s.steps, lr: s.lr, seed: s.seed, accumulate: s.identitiesPerStep, clipNorm: 1, lrSchedule: 'cosine', warmup: Math.min(50, Math.floor(s.steps / 10)) },
      run: {
        out: options.out,
        ckptEvery: options.ckptEvery ?? 100,
        ...(existsSync(path.join(checkpoint, 'state.json')) ? { resume: checkpoint } : {}),
        ...(options.stopAt !== undefined ? { stopAt: options.stopAt } : {}),
        ...(options.onStep ? { onStep: options.onStep } : {}),
      },
      settings: { ...s, preopt: path.resolve(options.preopt), identities: weights.length, config: JSON.parse(JSON.stringify(config)), encoderInit: encoderName },
      shardedBatch: { option: 'batch', size: s.batch },
      parameters,
      micro: ({ streams, accumulate, shard }) => {
        const fresh = s.freshShare > 0 && streams.host.next() < s.freshShare;
        const index = fresh ? freshStart + streams.host.int(1_000_000) : streams.host.int(weights.length);
        const identity = viewsOf(index);
        const reference = identity[streams.host.int(identity.length)]!;
        const pixels = new Float32Array(shard.count * perImage);
        const captions: string[] = [];
        const timesteps: number[] = [];
        // Every rank draws the views and timesteps of the whole batch and computes its shard of them.
        for (let i = 0; i < s.batch; i++) {
          const view = identity[streams.host.int(identity.length)]!;
          const timestep = streams.host.int(model.schedule.steps);
          if (!inShard(i, shard)) continue;
          pixels.set(view.pixels, (i - shard.start) * perImage);
          captions.push(view.prompt);
          timesteps.push(timestep);
        }
        try {
          return tidy(() => {
            const theta = net.forward(fromArray(reference.pixels, [1, model.channels, size, size]));
            net.split(theta).forEach((w, i) => adapters[i]!.useWeights(w));
            const diffusion = diffusionLoss(model, { pixels, captions, timesteps, resolution: size }, shardedGenerator(streams.noise, shard));
            const weightLoss = fresh ? null : F.mse(theta, fromArray(weights[index]!, [1, layers.length, a + b]));
            const total = weightLoss === null ? F.scale(diffusion, s.alpha) : F.add(F.scale(diffusion, s.alpha), F.scale(weightLoss, s.beta));
            const loss = F.scale(total, 1 / accumulate);
            const value = loss.value.item();
            // A fresh identity has no weight term: it counts 0 in the step's mean, and every step has the metric (a checkpoint's metrics are as long as its losses).
            const metrics: Record<string, number> = { diffusion: diffusion.value.item(), weights: weightLoss === null ? 0 : weightLoss.value.item() };
            backward(loss);
            return { loss: value, metrics };
          });
        } finally {
          for (const adapter of adapters) adapter.useWeights(null);
        }
      },
      ...parameterCheckpoints(op, 'realtune-hypernet-run', parameters),
      train: () => net.train(),
      finish: () => net.eval(),
    });
    const file = path.join(options.out, 'hypernet.safetensors');
    if (isRankZero()) saveHypernet(file, net, { base, lidb: record.settings.lidb, layers, extra: { preopt: path.basename(path.resolve(options.preopt)), encoderInit: encoderName, identities: String(weights.length), steps: String(result.step), settings: JSON.stringify(s), ...options.provenance } });
    return { file, losses: result.losses, step: result.step };
  } finally {
    hypernet?.dispose();
    model.dispose();
  }
}
