// cast: f32 <-> bf16 (round to nearest, ties to even; NaN stays NaN), i32 <-> f32 and, through
// f32, bf16 <-> i32. Float to integer truncates toward zero, saturates, and maps NaN to 0, so
// every backend gives the same answer where C++ would leave it undefined.
#include <cstring>

#include "../ops.h"
#include "bf16.h"
#include "parallel.h"

namespace rt::cpu {

constexpr int64_t kGrain = 1 << 16;

static int32_t f32_to_i32(float f) {
  if (f != f) return 0;
  if (f >= 2147483648.f) return INT32_MAX;
  if (f < -2147483648.f) return INT32_MIN;
  return static_cast<int32_t>(f);
}

template <class From, class To, class Convert>
static void convert_loop(const CastParams& p, Convert convert) {
  const From* x = static_cast<const From*>(p.x);
  To* out = static_cast<To*>(p.out);
  parallel_for(p.n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = convert(x[i]);
  });
}

static void cast(const CastParams& p) {
  if (p.from == p.to) {
    const size_t bytes = dtype_size(p.from);
    parallel_for(p.n, kGrain, [&](int64_t begin, int64_t end) {
      std::memcpy(static_cast<char*>(p.out) + begin * bytes, static_cast<const char*>(p.x) + begin * bytes,
                  size_t(end - begin) * bytes);
    });
    return;
  }
  switch (p.from) {
    case DType::f32:
      if (p.to == DType::bf16)
        convert_loop<float, uint16_t>(p, [](float v) { return f32_to_bf16(v); });
      else
        convert_loop<float, int32_t>(p, [](float v) { return f32_to_i32(v); });
      break;
    case DType::bf16:
      if (p.to == DType::f32)
        convert_loop<uint16_t, float>(p, [](uint16_t v) { return bf16_to_f32(v); });
      else
        convert_loop<uint16_t, int32_t>(p, [](uint16_t v) { return f32_to_i32(bf16_to_f32(v)); });
      break;
    case DType::i32:
      if (p.to == DType::f32)
        convert_loop<int32_t, float>(p, [](int32_t v) { return static_cast<float>(v); });
      else
        convert_loop<int32_t, uint16_t>(p, [](int32_t v) { return f32_to_bf16(static_cast<float>(v)); });
      break;
  }
}

RT_REGISTER_OP(BackendId::cpu, cast, cast);

}  // namespace rt::cpu
