// Binding of cast: a copy of x converted to another dtype.
#include "args.h"

namespace rt::napi {

// cast(x, dtype) -> x converted (f32 <-> bf16 round to nearest even, i32 <-> f32, bf16 <-> i32).
RT_BINDING(cast) {
  NativeTensor& x = tensor_arg(info, 0, "cast", "x");
  const DType to = dtype_arg(info, 1, "cast");
  NativeTensor* out;
  Napi::Object result = NativeTensor::create(info.Env(), x.device(), to, x.shape(), &out);
  if (x.numel() == 0) return result;
  CastParams p{x.data("cast", "x"), out->data("cast", "out"), x.numel(), x.dtype(), to};
  run_op(x.device(), &OpTable::cast, "cast", p);
  return result;
}

}  // namespace rt::napi
