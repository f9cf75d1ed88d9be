// Bindings of the LoRA-fused linear layer and its backward. Shapes come from the tensors:
// x [M, K], w [N, K], bias [N] or null, down [K, r], up [r, N], h [M, r], dy [M, N].
#include "args.h"

namespace rt::napi {

static const float* in(const NativeTensor* t) {
  return t ? static_cast<const float*>(t->data("loraLinear", "input")) : nullptr;
}
static float* out(const NativeTensor* t) { return t ? static_cast<float*>(t->data("loraLinear", "output")) : nullptr; }

struct LoraShape {
  int64_t m, n, k, rank;
};

// Reads M, K from x, N from w and r from down, then checks w, down and up against them.
static LoraShape lora_shape(const NativeTensor& x, const NativeTensor& w, const NativeTensor& down,
                            const NativeTensor& up, const char* op) {
  expect_dtype(x, DType::f32, op, "x");
  RT_EXPECT(x.shape().size() == 2, std::string(op) + ": x must be 2-D [M, K], got " + x.describe());
  RT_EXPECT(w.shape().size() == 2, std::string(op) + ": w must be 2-D [N, K], got " + w.describe());
  RT_EXPECT(down.shape().size() == 2, std::string(op) + ": down must be 2-D [K, rank], got " + down.describe());
  LoraShape s{x.shape()[0], w.shape()[0], x.shape()[1], down.shape()[1]};
  expect_f32_shaped(w, x, {s.n, s.k}, op, "w");
  expect_f32_shaped(down, x, {s.k, s.rank}, op, "down");
  expect_f32_shaped(up, x, {s.rank, s.n}, op, "up");
  return s;
}

// loraLinear(x, w, bias|null, down, up, scale) -> [y, h]
RT_BINDING(loraLinear) {
  const char* op = "loraLinear";
  NativeTensor& x = tensor_arg(info, 0, op, "x");
  NativeTensor& w = tensor_arg(info, 1, op, "w");
  NativeTensor* bias = optional_tensor_arg(info, 2, op, "bias");
  NativeTensor& down = tensor_arg(info, 3, op, "down");
  NativeTensor& up = tensor_arg(info, 4, op, "up");
  const float scale = static_cast<float>(number_arg(info, 5, op, "scale"));
  const LoraShape s = lora_shape(x, w, down, up, op);
  if (bias) {
    expect_f32_shaped(*bias, x, {s.n}, op, "bias");
  }
  Napi::Env env = info.Env();
  NativeTensor *y, *h;
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, NativeTensor::create(env, x.device(), DType::f32, {s.m, s.n}, &y));
  result.Set(1u, NativeTensor::create(env, x.device(), DType::f32, {s.m, s.rank}, &h));
  LoraLinearParams p{in(&x), in(&w), in(bias), in(&down), in(&up), out(y), out(h), s.m, s.n, s.k, s.rank, scale};
  run_op(x.device(), &OpTable::lora_linear, op, p);
  return result;
}

// loraLinearBackward(x, w, down, up, h, dy, scale, needDw, needDbias) -> [dx, dw|null, dbias|null, ddown, dup]
RT_BINDING(loraLinearBackward) {
  const char* op = "loraLinearBackward";
  NativeTensor& x = tensor_arg(info, 0, op, "x");
  NativeTensor& w = tensor_arg(info, 1, op, "w");
  NativeTensor& down = tensor_arg(info, 2, op, "down");
  NativeTensor& up = tensor_arg(info, 3, op, "up");
  NativeTensor& h = tensor_arg(info, 4, op, "h");
  NativeTensor& dy = tensor_arg(info, 5, op, "dy");
  const float scale = static_cast<float>(number_arg(info, 6, op, "scale"));
  const bool need_dw = bool_arg(info, 7, op, "needDw");
  const bool need_dbias = bool_arg(info, 8, op, "needDbias");
  const LoraShape s = lora_shape(x, w, down, up, op);
  expect_f32_shaped(h, x, {s.m, s.rank}, op, "h");
  expect_f32_shaped(dy, x, {s.m, s.n}, op, "dy");
  Napi::Env env = info.Env();
  NativeTensor *dx, *dw = nullptr, *dbias = nullptr, *ddown, *dup;
  Napi::Array result = Napi::Array::New(env, 5);
  result.Set(0u, NativeTensor::create(env, x.device(), DType::f32, {s.m, s.k}, &dx));
  result.Set(1u, need_dw ? NativeTensor::create(env, x.device(), DType::f32, {s.n, s.k}, &dw) : env.Null());
  result.Set(2u, need_dbias ? NativeTensor::create(env, x.device(), DType::f32, {s.n}, &dbias) : env.Null());
  result.Set(3u, NativeTensor::create(env, x.device(), DType::f32, {s.k, s.rank}, &ddown));
  result.Set(4u, NativeTensor::create(env, x.device(), DType::f32, {s.rank, s.n}, &dup));
  LoraLinearBackwardParams p{in(&x),  in(&w),     in(&down),  in(&up),   in(&h), in(&dy), out(dx), out(dw),
                             out(dbias), out(ddown), out(dup), s.m, s.n, s.k, s.rank, scale};
  run_op(x.device(), &OpTable::lora_linear_backward, op, p);
  return result;
}

}  // namespace rt::napi
