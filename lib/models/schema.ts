// The schema of a text-to-image checkpoint's files, checked when one is read: state.json's
// format, version, preset, DiT config and schedule, and tokenizer.json. A hand-edited, truncated
// or foreign file fails with the file and the field named, before anything is built from it.
import { Tokenizer } from '../text/tokenizer.js';
import { JsonFields, type JsonObject } from '../io/json_fields.js';
import type { DiTConfig } from '../nn/dit.js';
import { ditSizeProblem, maxHostFloats } from './limits.js';
import type { TextToImageConfig } from './text_to_image.js';

function parseDiTConfig(fields: JsonFields, value: unknown): DiTConfig {
  const dit = fields.object(value, 'dit');
  const positive = (key: string): number => fields.integer(dit[key], `dit.${key}`, 1);
  for (const key of ['imageSize', 'patchSize', 'channels', 'width', 'depth', 'heads', 'textWidth', 'contextLength']) positive(key);
  fields.number(dit.mlpRatio, 'dit.mlpRatio', { above: 0 });
  const { imageSize, patchSize, width, heads, textWidth } = dit as unknown as DiTConfig;
  if (imageSize % patchSize !== 0) fields.fail('dit.imageSize', `a multiple of dit.patchSize ${patchSize}`, imageSize);
  if (width % heads !== 0) fields.fail('dit.width', `divisible by dit.heads ${heads}`, width);
  if (width % 4 !== 0) fields.fail('dit.width', 'a multiple of 4 (the 2-D sin-cos positions)', width);
  if (dit.positions !== undefined) fields.oneOf(dit.positions, 'dit.positions', ['learned', 'sinusoidal']);
  if (dit.timestepDim !== undefined) fields.integer(dit.timestepDim, 'dit.timestepDim', 2);
  if (dit.dropout !== undefined) fields.number(dit.dropout, 'dit.dropout', { min: 0, below: 1 });
  if (dit.text === undefined) fields.fail('dit.text', "an object (the text encoder's config: vocabSize, depth, heads, mlpRatio)", undefined);
  const text = fields.object(dit.text, 'dit.text');
  for (const key of ['vocabSize', 'depth', 'heads']) fields.integer(text[key], `dit.text.${key}`, 1);
  fields.number(text.mlpRatio, 'dit.text.mlpRatio', { above: 0 });
  if (textWidth % (text.heads as number) !== 0) fields.fail('dit.textWidth', `divisible by dit.text.heads ${text.heads as number}`, textWidth);
  const config = dit as unknown as DiTConfig;
  const tooLarge = ditSizeProblem(config);
  if (tooLarge !== undefined) throw new RangeError(`${fields.where}: dit describes a model this machine cannot hold (imageSize ${imageSize}, patchSize ${patchSize}, width ${width}): ${tooLarge}`);
  return config;
}

/**
 * state.json of a text-to-image checkpoint, checked field by field. Fields it does not know are
 * kept (a trainer's state, later additions); those it knows must be what the model needs.
 */
export function parseTextToImageConfig(state: JsonObject, where: string, expected: { format: string; version: number }): TextToImageConfig {
  const fields = new JsonFields(where);
  if (state.format !== expected.format) fields.fail('format', JSON.stringify(expected.format), state.format);
  fields.integer(state.version, 'version', 1, expected.version);
  fields.oneOf(state.preset, 'preset', ['tiny', 'small', 'custom']);
  parseDiTConfig(fields, state.dit);
  const schedule = fields.object(state.schedule, 'schedule');
  fields.oneOf(schedule.kind, 'schedule.kind', ['linear', 'cosine']);
  fields.integer(schedule.steps, 'schedule.steps', 1, maxHostFloats);
  return state as unknown as TextToImageConfig;
}

/** The tokenizer of tokenizer.json's bytes; `where` names the file in errors. */
export function parseTokenizer(bytes: Uint8Array | string, where: string): Tokenizer {
  let json: unknown;
  try {
    json = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new Error(`${where} is not valid JSON (${(err as Error).message}): the file is cut short or not a tokenizer`);
  }
  try {
    return Tokenizer.fromJSON(json);
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  }
}
