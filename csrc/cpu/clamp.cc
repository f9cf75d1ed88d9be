#include <algorithm>

#include "../ops.h"
#include "parallel.h"

namespace rt::cpu {

static void clamp(const ClampParams& p) {
  parallel_for(p.n, 1 << 16, [&](int64_t begin, int64_t end) {
    const float* x = p.x;
    float* out = p.out;
    for (int64_t i = begin; i < end; ++i) out[i] = std::min(std::max(x[i], p.lo), p.hi);
  });
}

RT_REGISTER_OP(BackendId::cpu, clamp, clamp);

}  // namespace rt::cpu
