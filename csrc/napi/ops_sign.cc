#include "args.h"

namespace rt::napi {

// sign(x) -> -1, 0 or 1 elementwise
RT_BINDING(sign) {
  NativeTensor& x = tensor_arg(info, 0, "sign", "x");
  expect_dtype(x, DType::f32, "sign", "x");
  NativeTensor* out;
  Napi::Object result = NativeTensor::create(info.Env(), x.device(), DType::f32, x.shape(), &out);
  SignParams p{static_cast<const float*>(x.data("sign", "x")), static_cast<float*>(out->data("sign", "out")), x.numel()};
  run_op(x.device(), &OpTable::sign, "sign", p);
  return result;
}

}  // namespace rt::napi
