#!/usr/bin/env node
// Writes the tiny ONNX models that test lib/eval/onnx.ts, encoding the ONNX protobuf by hand
// (the product is Python-free, and the models are small enough to spell out):
//
//   features.onnx  images float [N, 3, 32, 32] -> AveragePool 4x4 stride 4 -> Flatten
//                  -> MatMul weight [192, 16] -> Add bias [16] -> Tanh -> features [N, 16]
//   features-batch1.onnx  the same with a fixed batch: images [1, 3, 32, 32] -> features [1, 16]
//   scorer.onnx    the same as features.onnx, then ReduceMean over the 16 features (keepdims) -> score [N, 1]
//   vectors.onnx   vectors float [N, 12] -> MatMul weight [12, 4] -> features [N, 4] (not an
//                  image model: the adapter must refuse it)
//
// weight[k][j] = 0.15 sin(0.37 k + 1.3 j + 0.5) and bias[j] = 0.1 cos(j), rounded to float32;
// test/eval/onnx.test.ts recomputes the network in float64 from the same formulas.
//
//   node scripts/make-onnx-fixture.mjs [output directory, default test/fixtures/eval]
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// Protobuf wire format: a field is a varint key (field number << 3 | wire type) and a value.
const VARINT = 0;
const LENGTH_DELIMITED = 2;

function varint(value) {
  const bytes = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

const key = (field, wireType) => varint(field * 8 + wireType);
const intField = (field, value) => Buffer.concat([key(field, VARINT), varint(value)]);
const bytesField = (field, bytes) => Buffer.concat([key(field, LENGTH_DELIMITED), varint(bytes.length), bytes]);
const stringField = (field, text) => bytesField(field, Buffer.from(text, 'utf8'));
const messageField = (field, parts) => bytesField(field, Buffer.concat(parts));

// Field numbers and enums from onnx/onnx.proto.
const FLOAT = 1; // TensorProto.DataType
const ATTRIBUTE_INT = 2;
const ATTRIBUTE_INTS = 7;
const IR_VERSION = 8;
const OPSET = 17; // ReduceMean still takes its axes as an attribute here (an input from 18)

/** AttributeProto: name 1, type 20, i 3, ints 8. */
function attribute(name, value) {
  if (Array.isArray(value)) return [stringField(1, name), intField(20, ATTRIBUTE_INTS), ...value.map((v) => intField(8, v))];
  return [stringField(1, name), intField(20, ATTRIBUTE_INT), intField(3, value)];
}

/** NodeProto: input 1, output 2, name 3, op_type 4, attribute 5. */
function node(opType, inputs, output, attributes = {}) {
  return messageField(1, [
    ...inputs.map((name) => stringField(1, name)),
    stringField(2, output),
    stringField(3, output),
    stringField(4, opType),
    ...Object.entries(attributes).map(([name, value]) => messageField(5, attribute(name, value))),
  ]);
}

/** TensorProto as a graph initializer (GraphProto field 5): dims 1, data_type 2, name 8, raw_data 9. */
function initializer(name, dims, values) {
  const data = Float32Array.from(values);
  return messageField(5, [...dims.map((d) => intField(1, d)), intField(2, FLOAT), stringField(8, name), bytesField(9, Buffer.from(data.buffer))]);
}

/**
 * ValueInfoProto (name 1, type 2) of a float tensor: TypeProto.tensor_type 1 {elem_type 1, shape 2
 * {dim 1 {dim_value 1 | dim_param 2}}}. A string dimension is symbolic (any size).
 */
function valueInfo(field, name, shape) {
  const dims = shape.map((d) => messageField(1, [typeof d === 'string' ? stringField(2, d) : intField(1, d)]));
  return messageField(field, [stringField(1, name), messageField(2, [messageField(1, [intField(1, FLOAT), messageField(2, dims)])])]);
}

/** ModelProto: ir_version 1, producer_name 2, graph 7, opset_import 8 {domain 1, version 2}. */
function model({ name, nodes, initializers, input, output }) {
  const graph = messageField(7, [...nodes, stringField(2, name), ...initializers, valueInfo(11, ...input), valueInfo(12, ...output)]);
  return Buffer.concat([intField(1, IR_VERSION), stringField(2, 'realtune make-onnx-fixture'), graph, messageField(8, [stringField(1, ''), intField(2, OPSET)])]);
}

const weight = (inputs, outputs) => Array.from({ length: inputs * outputs }, (_, i) => 0.15 * Math.sin(0.37 * Math.floor(i / outputs) + 1.3 * (i % outputs) + 0.5));
const bias = (outputs) => Array.from({ length: outputs }, (_, j) => 0.1 * Math.cos(j));

const featureDim = 16;
const pooledSize = 3 * 8 * 8;

function imageFeatureNodes() {
  return [
    node('AveragePool', ['images'], 'pooled', { kernel_shape: [4, 4], strides: [4, 4] }),
    node('Flatten', ['pooled'], 'flat', { axis: 1 }),
    node('MatMul', ['flat', 'weight'], 'projected'),
    node('Add', ['projected', 'bias'], 'shifted'),
    node('Tanh', ['shifted'], 'features'),
  ];
}

const imageInitializers = () => [initializer('weight', [pooledSize, featureDim], weight(pooledSize, featureDim)), initializer('bias', [featureDim], bias(featureDim))];

const fixtures = {
  'features.onnx': model({
    name: 'features',
    nodes: imageFeatureNodes(),
    initializers: imageInitializers(),
    input: ['images', ['N', 3, 32, 32]],
    output: ['features', ['N', featureDim]],
  }),
  'features-batch1.onnx': model({
    name: 'features_batch1',
    nodes: imageFeatureNodes(),
    initializers: imageInitializers(),
    input: ['images', [1, 3, 32, 32]],
    output: ['features', [1, featureDim]],
  }),
  'scorer.onnx': model({
    name: 'scorer',
    nodes: [...imageFeatureNodes(), node('ReduceMean', ['features'], 'score', { axes: [1], keepdims: 1 })],
    initializers: imageInitializers(),
    input: ['images', ['N', 3, 32, 32]],
    output: ['score', ['N', 1]],
  }),
  'vectors.onnx': model({
    name: 'vectors',
    nodes: [node('MatMul', ['vectors', 'weight'], 'features')],
    initializers: [initializer('weight', [12, 4], weight(12, 4))],
    input: ['vectors', ['N', 12]],
    output: ['features', ['N', 4]],
  }),
};

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const outputDir = path.resolve(process.argv[2] ?? path.join(root, 'test/fixtures/eval'));
mkdirSync(outputDir, { recursive: true });
for (const [file, bytes] of Object.entries(fixtures)) {
  writeFileSync(path.join(outputDir, file), bytes);
  console.log(`${path.join(outputDir, file)}: ${bytes.length} bytes`);
}
