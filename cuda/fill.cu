// fill: out[i] = value for f32, bf16 and i32 tensors. A grid-stride loop; purely store-bound
// (4 or 2 bytes per element), so an H100 fills at copy bandwidth, ~3 TB/s.
#include "launch.h"

namespace RT_BACKEND_NS {

template <class T>
__global__ void fill_kernel(dptr<T> out, int64_t n, T value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = value;
}

static void fill(const rt::FillParams& p) {
  if (p.n == 0) return;
  const int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>(rt::ceil_div(p.n, threads), 4096));
  switch (p.dtype) {
    case rt::DType::f32:
      RT_LAUNCH(fill_kernel<float>, blocks, threads, 0, static_cast<float*>(p.out), p.n, p.value);
      break;
    case rt::DType::bf16:
      RT_LAUNCH(fill_kernel<__nv_bfloat16>, blocks, threads, 0,
                static_cast<__nv_bfloat16*>(p.out), p.n, __float2bfloat16(p.value));
      break;
    case rt::DType::i32:
      RT_LAUNCH(fill_kernel<int32_t>, blocks, threads, 0, static_cast<int32_t*>(p.out), p.n,
                static_cast<int32_t>(p.value));
      break;
  }
}

RT_REGISTER_OP(RT_BACKEND_ID, fill, fill);

}  // namespace RT_BACKEND_NS
