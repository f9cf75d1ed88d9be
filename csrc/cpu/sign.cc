#include "../ops.h"
#include "parallel.h"

namespace rt::cpu {

static void sign(const SignParams& p) {
  parallel_for(p.n, 1 << 16, [&](int64_t begin, int64_t end) {
    const float* x = p.x;
    float* out = p.out;
    for (int64_t i = begin; i < end; ++i) out[i] = float((x[i] > 0.f) - (x[i] < 0.f));
  });
}

RT_REGISTER_OP(BackendId::cpu, sign, sign);

}  // namespace rt::cpu
