// Binding of random: fills an f32 tensor with Philox numbers for (seed, offset + i).
#include "args.h"

namespace rt::napi {

// Seeds and offsets come from JS numbers: integers in [0, 2^53].
static uint64_t counter_arg(const Napi::CallbackInfo& info, size_t index, const char* arg) {
  const int64_t v = int_arg(info, index, "random", arg);
  RT_EXPECT(v >= 0, std::string("random: ") + arg + " must be a non-negative integer, got " + std::to_string(v));
  return static_cast<uint64_t>(v);
}

// random(out, kind, seed, offset, a, b): kind 0 uniform a + (b - a) u, 1 normal a + b z; in place.
RT_BINDING(random) {
  NativeTensor& out = tensor_arg(info, 0, "random", "out");
  expect_dtype(out, DType::f32, "random", "out");
  const int64_t kind = int_arg(info, 1, "random", "kind");
  RT_EXPECT(kind == 0 || kind == 1, "random: kind must be 0 (uniform) or 1 (normal), got " + std::to_string(kind));
  RandomParams p{static_cast<float*>(out.data("random", "out")), out.numel(), counter_arg(info, 2, "seed"),
                 counter_arg(info, 3, "offset"), static_cast<RandomKind>(kind),
                 static_cast<float>(number_arg(info, 4, "random", "a")), static_cast<float>(number_arg(info, 5, "random", "b"))};
  if (p.n > 0) run_op(out.device(), &OpTable::random, "random", p);
  return info.Env().Undefined();
}

}  // namespace rt::napi
