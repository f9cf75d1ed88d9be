#include "args.h"

namespace rt::napi {

// clamp(x, lo, hi, out?) -> min(max(x, lo), hi)
RT_BINDING(clamp) {
  NativeTensor& x = tensor_arg(info, 0, "clamp", "x");
  expect_dtype(x, DType::f32, "clamp", "x");
  float lo = static_cast<float>(number_arg(info, 1, "clamp", "lo"));
  float hi = static_cast<float>(number_arg(info, 2, "clamp", "hi"));
  RT_EXPECT(lo <= hi, "clamp: lo (" + std::to_string(lo) + ") must not exceed hi (" + std::to_string(hi) + ")");
  NativeTensor* out;
  Napi::Value result = output_like(info, 3, x, "clamp", &out);
  ClampParams p{static_cast<const float*>(x.data("clamp", "x")), static_cast<float*>(out->data("clamp", "out")), x.numel(), lo, hi};
  run_op(x.device(), &OpTable::clamp, "clamp", p);
  return result;
}

}  // namespace rt::napi
