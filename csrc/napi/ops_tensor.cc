// Binding of the fill op (zeros, ones, full).
#include "args.h"

namespace rt::napi {

// fill(out, value): in place.
RT_BINDING(fill) {
  NativeTensor& out = tensor_arg(info, 0, "fill", "out");
  float value = static_cast<float>(number_arg(info, 1, "fill", "value"));
  FillParams p{out.data("fill", "out"), out.numel(), out.dtype(), value};
  run_op(out.device(), &OpTable::fill, "fill", p);
  return info.Env().Undefined();
}

}  // namespace rt::napi
