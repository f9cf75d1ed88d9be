#include "args.h"

namespace rt::napi {

// clamp(x, lo, hi, out?) -> min(max(x, lo), hi)
RT_BINDING(clamp) {
  NativeTensor& x = tensor_arg(info, 0, "clamp", "x");
  expect_dtype(x, DType::f32, "clamp", "x");
  float lo = static_cast<float>(number_arg(info, 1, "clamp", "lo"));
  float hi = static_cast<float>(number_arg(info, 2, "clamp", "hi"));
  RT_EXPECT(lo <= hi, "clamp: lo (" + std::to_string(lo) + ") must not exceed hi (" + std::to_string(hi) + ")");
  NativeTensor* out = optional_tensor_arg(info, 3, "clamp", "out");
  Napi::Value result = info[3];
  if (out != nullptr) {
    expect_same_device(x, *out, "clamp", "out");
    expect_dtype(*out, DType::f32, "clamp", "out");
    expect_numel(*out, x.numel(), "clamp", "out");
  } else {
    result = NativeTensor::create(info.Env(), x.device(), DType::f32, x.shape(), &out);
  }
  ClampParams p{static_cast<const float*>(x.data("clamp", "x")), static_cast<float*>(out->data("clamp", "out")), x.numel(), lo, hi};
  run_op(x.device(), &OpTable::clamp, "clamp", p);
  return result;
}

}  // namespace rt::napi
