// random: uniform and normal floats from the shared Philox generator (csrc/philox.h). Each
// element is computed from its own counter, so threads split the work freely.
#include "../ops.h"
#include "../philox.h"
#include "parallel.h"

namespace rt::cpu {

// Box-Muller costs a log, a sqrt and a cos per element: smaller chunks than streaming ops.
constexpr int64_t kGrain = 1 << 13;

static void random(const RandomParams& p) {
  parallel_for(p.n, kGrain, [&](int64_t begin, int64_t end) {
    float* out = p.out;
    if (p.kind == RandomKind::uniform) {
      for (int64_t i = begin; i < end; ++i) out[i] = philox::uniform(p.seed, p.offset + uint64_t(i), p.a, p.b);
    } else {
      for (int64_t i = begin; i < end; ++i) out[i] = philox::normal(p.seed, p.offset + uint64_t(i), p.a, p.b);
    }
  });
}

RT_REGISTER_OP(BackendId::cpu, random, random);

}  // namespace rt::cpu
