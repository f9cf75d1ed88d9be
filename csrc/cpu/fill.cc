#include <cstring>

#include "../ops.h"
#include "bf16.h"
#include "parallel.h"

namespace rt::cpu {

static void fill(const FillParams& p) {
  if (p.dtype == DType::bf16) {
    uint16_t v = f32_to_bf16(p.value);
    auto* out = static_cast<uint16_t*>(p.out);
    parallel_for(p.n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out[i] = v;
    });
  } else if (p.dtype == DType::i32) {
    int32_t v = static_cast<int32_t>(p.value);
    auto* out = static_cast<int32_t*>(p.out);
    parallel_for(p.n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out[i] = v;
    });
  } else {
    float v = p.value;
    auto* out = static_cast<float*>(p.out);
    parallel_for(p.n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out[i] = v;
    });
  }
}

RT_REGISTER_OP(BackendId::cpu, fill, fill);

}  // namespace rt::cpu
