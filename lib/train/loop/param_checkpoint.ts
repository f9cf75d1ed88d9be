// Checkpoint I/O for a job whose trained weights are a fixed set of named parameters (a
// hypernetwork, a personalisation's adapters): model.safetensors holds them by name, beside the
// engine's optimiser moments and trainer state; state.json carries a format tag so a checkpoint of
// another kind of run is refused on resume.
import path from 'node:path';
import { noGrad, type Variable } from '../../autograd/variable.js';
import { checkCheckpointTarget, loadCheckpoint, saveCheckpoint } from '../../io/checkpoint.js';
import { firstNonFinite } from '../../numeric.js';
import { shapeString, type Tensor } from '../../tensor.js';
import type { TrainingJob } from './engine.js';

const knownFiles = ['ema.safetensors'];

/** checkCheckpointTarget, saveCheckpoint and restoreCheckpoint of a job that trains `parameters`. */
export function parameterCheckpoints(op: string, format: string, parameters: () => [string, Variable][]): Pick<TrainingJob, 'checkCheckpointTarget' | 'saveCheckpoint' | 'restoreCheckpoint'> {
  return {
    checkCheckpointTarget: (dir) => checkCheckpointTarget(dir, `${op}: out`, knownFiles),
    saveCheckpoint: (dir, payload) => {
      const model: Record<string, Tensor> = Object.fromEntries(parameters().map(([name, p]) => [name, p.value]));
      saveCheckpoint(dir, { model, optimizer: payload.optimizer, state: { format, trainer: { ...payload.trainer } }, files: payload.extraFiles }, { knownFiles });
    },
    restoreCheckpoint: (requested) => {
      const { model: weights, optimizer: moments, files, dir, state } = loadCheckpoint(requested);
      const dispose = (): void => {
        for (const t of [...Object.values(weights), ...Object.values(moments)]) t.dispose();
      };
      const file = path.join(dir, 'model.safetensors');
      try {
        if (state.format !== format) throw new Error(`${op}: cannot resume from ${dir}: state.json format is ${JSON.stringify(state.format)}, expected "${format}"`);
        const nonFinite = firstNonFinite(weights);
        if (nonFinite !== undefined) throw new Error(`${op}: cannot resume from ${file}: ${nonFinite}`);
        const params = parameters();
        for (const [name, p] of params) {
          const t = weights[name];
          if (t === undefined) throw new Error(`${op}: cannot resume from ${file}: it has no ${name}`);
          if (shapeString(t.shape) !== shapeString(p.shape)) throw new Error(`${op}: cannot resume from ${file}: ${name} has shape ${shapeString(t.shape)}, expected ${shapeString(p.shape)}`);
        }
        const extra = Object.keys(weights).find((name) => !params.some(([n]) => n === name));
        if (extra !== undefined) throw new Error(`${op}: cannot resume from ${file}: it holds ${extra}, which this run does not train`);
        noGrad(() => {
          for (const [name, p] of params) p.value.copy_(weights[name] as Tensor<'f32'>);
        });
      } catch (err) {
        dispose();
        throw err;
      }
      return { dir, moments, files, dispose };
    },
  };
}
