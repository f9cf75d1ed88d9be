// random: uniform and normal floats from Philox-4x32-10, element i from counter (offset + i)
// under key `seed` (csrc/philox.h, shared with the cpu backend, so the numbers are the same).
// One thread per element in a grid-stride loop. Compute-bound: 10 Philox rounds plus, for
// normals, a double-precision log, sqrt and cos per element (~100-200 fp64 ops); an H100's
// ~60 TFLOP/s fp64 gives ~0.3 ms per 64M normals, uniforms run near store bandwidth (~0.1 ms).
#include <cstdint>

#include "launch.h"
#include "../csrc/philox.h"

namespace RT_BACKEND_NS {

__global__ void __launch_bounds__(256)
    random_kernel(dptr<float> out, int64_t n, uint64_t seed, uint64_t offset, bool normal, float a, float b) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = normal ? rt::philox::normal(seed, offset + uint64_t(i), a, b) : rt::philox::uniform(seed, offset + uint64_t(i), a, b);
}

static void random(const rt::RandomParams& p) {
  if (p.n == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>(rt::ceil_div(p.n, 256), 8192));
  RT_LAUNCH(random_kernel, blocks, 256, 0, p.out, p.n, p.seed, p.offset, p.kind == rt::RandomKind::normal, p.a, p.b);
}

RT_REGISTER_OP(RT_BACKEND_ID, random, random);

}  // namespace RT_BACKEND_NS
