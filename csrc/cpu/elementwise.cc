// Elementwise ops on f32: memory-bound loops the compiler vectorises; parallel above 64K elements.
// Outputs may alias inputs (in-place updates), so no pointer is declared __restrict__: the
// compiler versions each loop on an overlap check instead.
#include <algorithm>

#include "../ops.h"
#include "parallel.h"

namespace rt::cpu {

constexpr int64_t kElementwiseGrain = 1 << 16;

// One loop per operator, so each inner loop is a plain vectorisable stream.
template <class Fn>
static void binary_loop(const BinaryParams& p, Fn fn) {
  parallel_for(p.n, kElementwiseGrain, [&](int64_t begin, int64_t end) {
    const float* a = p.a;
    const float* b = p.b;
    float* out = p.out;
    for (int64_t i = begin; i < end; ++i) out[i] = fn(a[i], b[i]);
  });
}

static void binary(const BinaryParams& p) {
  switch (p.op) {
    case BinaryOp::add: binary_loop(p, [](float a, float b) { return a + b; }); break;
    case BinaryOp::sub: binary_loop(p, [](float a, float b) { return a - b; }); break;
    case BinaryOp::mul: binary_loop(p, [](float a, float b) { return a * b; }); break;
  }
}

static void scale(const ScaleParams& p) {
  parallel_for(p.n, kElementwiseGrain, [&](int64_t begin, int64_t end) {
    const float* x = p.x;
    float* out = p.out;
    for (int64_t i = begin; i < end; ++i) out[i] = p.alpha * x[i];
  });
}

static void axpy(const AxpyParams& p) {
  const float alpha = p.alpha, beta = p.beta;
  parallel_for(p.n, kElementwiseGrain, [&](int64_t begin, int64_t end) {
    const float* x = p.x;
    float* y = p.y;
    // beta == 0 overwrites y, so whatever y held (even NaN) does not leak into the result.
    if (beta == 0.f) {
      for (int64_t i = begin; i < end; ++i) y[i] = alpha * x[i];
    } else if (beta == 1.f) {
      for (int64_t i = begin; i < end; ++i) y[i] += alpha * x[i];
    } else {
      for (int64_t i = begin; i < end; ++i) y[i] = alpha * x[i] + beta * y[i];
    }
  });
}

static void bias_add(const BiasAddParams& p) {
  const int64_t channels = p.channels, inner = p.inner;
  if (inner == 1) {
    // Bias along the last axis: every row is x[o, :] + bias.
    parallel_for(p.outer, std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(1, channels)),
                 [&](int64_t begin, int64_t end) {
                   const float* bias = p.bias;
                   for (int64_t o = begin; o < end; ++o) {
                     const float* x = p.x + o * channels;
                     float* out = p.out + o * channels;
                     for (int64_t c = 0; c < channels; ++c) out[c] = x[c] + bias[c];
                   }
                 });
    return;
  }
  // Rows of `inner` contiguous elements share one bias value.
  parallel_for(p.outer * channels, std::max<int64_t>(1, kElementwiseGrain / inner), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const float b = p.bias[row % channels];
      const float* x = p.x + row * inner;
      float* out = p.out + row * inner;
      for (int64_t i = 0; i < inner; ++i) out[i] = x[i] + b;
    }
  });
}

RT_REGISTER_OP(BackendId::cpu, binary, binary);
RT_REGISTER_OP(BackendId::cpu, scale, scale);
RT_REGISTER_OP(BackendId::cpu, axpy, axpy);
RT_REGISTER_OP(BackendId::cpu, bias_add, bias_add);

}  // namespace rt::cpu
