// Elementwise ops on f32: memory-bound loops the compiler vectorises; parallel above 64K elements.
#include "../ops.h"
#include "parallel.h"

namespace rt::cpu {

constexpr int64_t kElementwiseGrain = 1 << 16;

static void scale(const ScaleParams& p) {
  parallel_for(p.n, kElementwiseGrain, [&](int64_t begin, int64_t end) {
    const float* __restrict__ x = p.x;
    float* out = p.out;
    for (int64_t i = begin; i < end; ++i) out[i] = p.alpha * x[i];
  });
}

RT_REGISTER_OP(BackendId::cpu, scale, scale);

}  // namespace rt::cpu
