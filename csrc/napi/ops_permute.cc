// Binding of permute: a materialised copy of x with its axes reordered.
#include "args.h"

namespace rt::napi {

// permute(x, perm) -> y with y.shape[d] = x.shape[perm[d]]; perm is a permutation of 0..ndim-1.
RT_BINDING(permute) {
  NativeTensor& x = tensor_arg(info, 0, "permute", "x");
  const std::vector<int64_t> perm = shape_arg(info, 1, "permute", "perm");
  const size_t ndim = x.shape().size();
  RT_EXPECT(ndim <= size_t(kMaxDims),
         "permute: x has " + std::to_string(ndim) + " dims, at most " + std::to_string(kMaxDims) + " are supported");
  RT_EXPECT(perm.size() == ndim, "permute: perm has " + std::to_string(perm.size()) + " entries, expected " +
                                  std::to_string(ndim) + " for x " + x.describe());
  PermuteParams p{};
  bool seen[kMaxDims] = {};
  std::vector<int64_t> out_shape(ndim);
  for (size_t d = 0; d < ndim; ++d) {
    RT_EXPECT(perm[d] < int64_t(ndim) && !seen[perm[d]],
           "permute: perm " + shape_string(perm) + " is not a permutation of 0.." + std::to_string(ndim - 1));
    seen[perm[d]] = true;
    p.perm[d] = static_cast<int32_t>(perm[d]);
    p.in_shape[d] = x.shape()[d];
    out_shape[d] = x.shape()[size_t(perm[d])];
  }
  NativeTensor* out;
  Napi::Object result = NativeTensor::create(info.Env(), x.device(), x.dtype(), out_shape, &out);
  if (out->numel() == 0) return result;
  p.x = x.data("permute", "x");
  p.out = out->data("permute", "out");
  p.dtype = x.dtype();
  p.ndim = static_cast<int32_t>(ndim);
  run_op(x.device(), &OpTable::permute, "permute", p);
  return result;
}

}  // namespace rt::napi
