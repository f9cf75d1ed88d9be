// Bindings of the Diffusion-DPO loss and its backward.
#include <cmath>

#include "args.h"

namespace rt::napi {

static const float* input(const NativeTensor& t) { return static_cast<const float*>(t.data("dpoLoss", "input")); }
static float* output(const NativeTensor* t) { return static_cast<float*>(t->data("dpoLoss", "output")); }

// Each of `names` must be an f32 tensor on first's device with first's element count.
static void expect_like(const NativeTensor& first, const NativeTensor& t, const char* op, const char* name) {
  expect_f32_like(t, first, op, name);
}

static int64_t pairs_arg(const Napi::CallbackInfo& info, size_t index, const NativeTensor& first, const char* op) {
  int64_t pairs = int_arg(info, index, op, "pairs");
  RT_EXPECT(pairs >= 1 && first.numel() % pairs == 0 && first.numel() / pairs >= 1,
         std::string(op) + ": pairs must be >= 1 and divide the " + std::to_string(first.numel()) +
             " elements of predW into non-empty pairs, got " + std::to_string(pairs));
  return pairs;
}

static float beta_arg(const Napi::CallbackInfo& info, size_t index, const char* op) {
  double beta = number_arg(info, index, op, "beta");
  RT_EXPECT(std::isfinite(beta), std::string(op) + ": beta must be finite, got " + std::to_string(beta));
  return static_cast<float>(beta);
}

// dpoLoss(predW, predL, refW, refL, noiseW, noiseL, pairs, beta)
//   -> [loss, accuracy, inside, mseW, mseL, refMseW, refMseL]
RT_BINDING(dpoLoss) {
  const char* op = "dpoLoss";
  const char* names[6] = {"predW", "predL", "refW", "refL", "noiseW", "noiseL"};
  NativeTensor* in[6];
  for (int i = 0; i < 6; ++i) in[i] = &tensor_arg(info, size_t(i), op, names[i]);
  for (int i = 0; i < 6; ++i) expect_like(*in[0], *in[i], op, names[i]);
  const int64_t pairs = pairs_arg(info, 6, *in[0], op);
  const float beta = beta_arg(info, 7, op);
  const BackendId device = in[0]->device();
  Napi::Env env = info.Env();
  NativeTensor* out[7];
  Napi::Array result = Napi::Array::New(env, 7);
  for (uint32_t i = 0; i < 7; ++i) {
    std::vector<int64_t> shape = i < 2 ? std::vector<int64_t>{1} : std::vector<int64_t>{pairs};
    result.Set(i, NativeTensor::create(env, device, DType::f32, shape, &out[i]));
  }
  DpoLossParams p{input(*in[0]), input(*in[1]), input(*in[2]), input(*in[3]), input(*in[4]), input(*in[5]),
                  output(out[0]), output(out[1]), output(out[2]), output(out[3]), output(out[4]),
                  output(out[5]), output(out[6]), pairs, in[0]->numel() / pairs, beta};
  run_op(device, &OpTable::dpo_loss, op, p);
  return result;
}

// dpoLossBackward(predW, predL, noiseW, noiseL, inside, beta, dloss) -> [dPredW, dPredL]
RT_BINDING(dpoLossBackward) {
  const char* op = "dpoLossBackward";
  const char* names[4] = {"predW", "predL", "noiseW", "noiseL"};
  NativeTensor* in[4];
  for (int i = 0; i < 4; ++i) in[i] = &tensor_arg(info, size_t(i), op, names[i]);
  for (int i = 0; i < 4; ++i) expect_like(*in[0], *in[i], op, names[i]);
  NativeTensor& inside = tensor_arg(info, 4, op, "inside");
  expect_dtype(inside, DType::f32, op, "inside");
  expect_same_device(*in[0], inside, op, "inside");
  const int64_t pairs = inside.numel();
  RT_EXPECT(pairs >= 1 && in[0]->numel() % pairs == 0 && in[0]->numel() / pairs >= 1,
         std::string(op) + ": inside has " + std::to_string(pairs) + " elements, expected one per pair of predW (" +
             in[0]->describe() + ")");
  const float beta = beta_arg(info, 5, op);
  const float dloss = static_cast<float>(number_arg(info, 6, op, "dloss"));
  Napi::Env env = info.Env();
  NativeTensor *dw, *dl;
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, NativeTensor::create(env, in[0]->device(), DType::f32, in[0]->shape(), &dw));
  result.Set(1u, NativeTensor::create(env, in[0]->device(), DType::f32, in[0]->shape(), &dl));
  DpoLossBackwardParams p{input(*in[0]), input(*in[1]), input(*in[2]), input(*in[3]), input(inside),
                          output(dw), output(dl), pairs, in[0]->numel() / pairs, beta, dloss};
  run_op(in[0]->device(), &OpTable::dpo_loss_backward, op, p);
  return result;
}

}  // namespace rt::napi
