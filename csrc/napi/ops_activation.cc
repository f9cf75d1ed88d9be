// Bindings of the elementwise activations (GELU tanh approximation, SiLU) and their backward.
#include "args.h"

namespace rt::napi {

static Activation activation_arg(const Napi::CallbackInfo& info, size_t index, const char* op) {
  const int64_t kind = int_arg(info, index, op, "kind");
  RT_EXPECT(kind == int64_t(Activation::gelu_tanh) || kind == int64_t(Activation::silu),
         std::string(op) + ": kind must be 0 (gelu_tanh) or 1 (silu), got " + std::to_string(kind));
  return static_cast<Activation>(kind);
}

// activation(x, kind) -> y
RT_BINDING(activation) {
  const char* op = "activation";
  NativeTensor& x = tensor_arg(info, 0, op, "x");
  expect_dtype(x, DType::f32, op, "x");
  const Activation kind = activation_arg(info, 1, op);
  NativeTensor* y;
  Napi::Object result = NativeTensor::create(info.Env(), x.device(), DType::f32, x.shape(), &y);
  if (x.numel() == 0) return result;
  ActivationParams p{static_cast<const float*>(x.data(op, "x")), static_cast<float*>(y->data(op, "y")), x.numel(),
                     kind};
  run_op(x.device(), &OpTable::activation, op, p);
  return result;
}

// activationBackward(x, dy, kind) -> dx
RT_BINDING(activationBackward) {
  const char* op = "activationBackward";
  NativeTensor& x = tensor_arg(info, 0, op, "x");
  NativeTensor& dy = tensor_arg(info, 1, op, "dy");
  expect_dtype(x, DType::f32, op, "x");
  expect_f32_shaped(dy, x, x.shape(), op, "dy");
  const Activation kind = activation_arg(info, 2, op);
  NativeTensor* dx;
  Napi::Object result = NativeTensor::create(info.Env(), x.device(), DType::f32, x.shape(), &dx);
  if (x.numel() == 0) return result;
  ActivationBackwardParams p{static_cast<const float*>(x.data(op, "x")), static_cast<const float*>(dy.data(op, "dy")),
                             static_cast<float*>(dx->data(op, "dx")), x.numel(), kind};
  run_op(x.device(), &OpTable::activation_backward, "activation_backward", p);
  return result;
}

}  // namespace rt::napi
