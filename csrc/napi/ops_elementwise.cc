// Bindings of the elementwise ops. Each allocates its output on the input's device unless an
// `out` tensor is given (which may alias an input: in-place update).
#include "args.h"

namespace rt::napi {

// The output: `out` when given (checked against `like`), else a new tensor shaped like `like`.
static Napi::Value output_like(const Napi::CallbackInfo& info, size_t index, const NativeTensor& like,
                               const char* op, NativeTensor** out) {
  if (NativeTensor* given = optional_tensor_arg(info, index, op, "out")) {
    expect_same_device(like, *given, op, "out");
    expect_dtype(*given, like.dtype(), op, "out");
    expect_numel(*given, like.numel(), op, "out");
    *out = given;
    return info[index];
  }
  return NativeTensor::create(info.Env(), like.device(), like.dtype(), like.shape(), out);
}

// scale(x, alpha, out?) -> alpha * x
RT_BINDING(scale) {
  NativeTensor& x = tensor_arg(info, 0, "scale", "x");
  expect_dtype(x, DType::f32, "scale", "x");
  float alpha = static_cast<float>(number_arg(info, 1, "scale", "alpha"));
  NativeTensor* out;
  Napi::Value result = output_like(info, 2, x, "scale", &out);
  ScaleParams p{static_cast<const float*>(x.data("scale", "x")), static_cast<float*>(out->data("scale", "out")),
                x.numel(), alpha};
  run_op(x.device(), &OpTable::scale, "scale", p);
  return result;
}

}  // namespace rt::napi
