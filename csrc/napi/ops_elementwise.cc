// Bindings of the elementwise ops. Each allocates its output on the input's device unless an
// `out` tensor is given (which may alias an input: in-place update).
#include "args.h"

namespace rt::napi {

static const float* f32_in(NativeTensor& t, const char* op, const char* arg) {
  return static_cast<const float*>(t.data(op, arg));
}

// binary(a, b, op, out?) -> a (op) b, op 0 add, 1 sub, 2 mul; a and b have the same element count.
RT_BINDING(binary) {
  NativeTensor& a = tensor_arg(info, 0, "binary", "a");
  NativeTensor& b = tensor_arg(info, 1, "binary", "b");
  expect_dtype(a, DType::f32, "binary", "a");
  expect_f32_like(b, a, "binary", "b");
  const int64_t op = int_arg(info, 2, "binary", "op");
  RT_EXPECT(op >= 0 && op <= 2, "binary: op must be 0 (add), 1 (sub) or 2 (mul), got " + std::to_string(op));
  NativeTensor* out;
  Napi::Value result = output_like(info, 3, a, "binary", &out);
  BinaryParams p{f32_in(a, "binary", "a"), f32_in(b, "binary", "b"), static_cast<float*>(out->data("binary", "out")),
                 a.numel(), static_cast<BinaryOp>(op)};
  run_op(a.device(), &OpTable::binary, "binary", p);
  return result;
}

// scale(x, alpha, out?) -> alpha * x
RT_BINDING(scale) {
  NativeTensor& x = tensor_arg(info, 0, "scale", "x");
  expect_dtype(x, DType::f32, "scale", "x");
  float alpha = static_cast<float>(number_arg(info, 1, "scale", "alpha"));
  NativeTensor* out;
  Napi::Value result = output_like(info, 2, x, "scale", &out);
  ScaleParams p{f32_in(x, "scale", "x"), static_cast<float*>(out->data("scale", "out")), x.numel(), alpha};
  run_op(x.device(), &OpTable::scale, "scale", p);
  return result;
}

// axpy(alpha, x, y, beta): y = alpha * x + beta * y in place.
RT_BINDING(axpy) {
  const float alpha = static_cast<float>(number_arg(info, 0, "axpy", "alpha"));
  NativeTensor& x = tensor_arg(info, 1, "axpy", "x");
  NativeTensor& y = tensor_arg(info, 2, "axpy", "y");
  const float beta = static_cast<float>(number_arg(info, 3, "axpy", "beta"));
  expect_dtype(x, DType::f32, "axpy", "x");
  expect_f32_like(y, x, "axpy", "y");
  AxpyParams p{f32_in(x, "axpy", "x"), static_cast<float*>(y.data("axpy", "y")), x.numel(), alpha, beta};
  run_op(x.device(), &OpTable::axpy, "axpy", p);
  return info.Env().Undefined();
}

// biasAdd(x, bias, axis, out?) -> x + bias broadcast along every axis but `axis` (0 <= axis < ndim).
RT_BINDING(biasAdd) {
  NativeTensor& x = tensor_arg(info, 0, "biasAdd", "x");
  NativeTensor& bias = tensor_arg(info, 1, "biasAdd", "bias");
  expect_dtype(x, DType::f32, "biasAdd", "x");
  expect_dtype(bias, DType::f32, "biasAdd", "bias");
  expect_same_device(x, bias, "biasAdd", "bias");
  const int64_t ndim = static_cast<int64_t>(x.shape().size());
  const int64_t axis = int_arg(info, 2, "biasAdd", "axis");
  RT_EXPECT(axis >= 0 && axis < ndim,
         "biasAdd: axis must be in [0, " + std::to_string(ndim) + ") for x " + x.describe() + ", got " + std::to_string(axis));
  const int64_t channels = x.shape()[size_t(axis)];
  expect_numel(bias, channels, "biasAdd", "bias");
  // Only a non-empty x bounds the products (a zero dimension can hide arbitrarily large others).
  int64_t outer = 1, inner = 1;
  if (x.numel() > 0) {
    for (int64_t d = 0; d < axis; ++d) outer *= x.shape()[size_t(d)];
    for (int64_t d = axis + 1; d < ndim; ++d) inner *= x.shape()[size_t(d)];
  }
  NativeTensor* out;
  Napi::Value result = output_like(info, 3, x, "biasAdd", &out);
  BiasAddParams p{f32_in(x, "biasAdd", "x"), f32_in(bias, "biasAdd", "bias"),
                  static_cast<float*>(out->data("biasAdd", "out")), outer, channels, inner};
  if (x.numel() > 0) run_op(x.device(), &OpTable::bias_add, "bias_add", p);
  return result;
}

}  // namespace rt::napi
