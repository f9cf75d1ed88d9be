// GELU (tanh approximation) and SiLU on f32, forward and backward. Elementwise and parallel
// above 64K elements; tanh and the sigmoid go through a branch-free polynomial exp so the loops
// vectorise, compiled once per instruction set and picked with isa().
//   gelu(x) = x/2 (1 + tanh(u)) = x sigmoid(2u),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   silu(x) = x sigmoid(x) = x / (1 + e^{-x})
#include <bit>
#include <cstdint>

#include "../ops.h"
#include "isa.h"
#include "parallel.h"
#include "vec_math.h"

namespace rt::cpu {
namespace {

constexpr int64_t kGrain = 1 << 16;
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

[[gnu::always_inline]] inline float gelu(float x) {
  return x / (1.f + exp_approx(-2.f * kGeluScale * (x + kGeluCubic * x * x * x)));
}

// d gelu / dx = (1 + tanh u) / 2 + x/2 sech^2(u) du/dx, with (1 + tanh u) / 2 = e^{2u} / (e^{2u} + 1)
// and sech^2(u) = 4 e^{2u} / (e^{2u} + 1)^2 (no cancellation where tanh u is near +-1).
[[gnu::always_inline]] inline float gelu_grad(float x) {
  const float x2 = x * x;
  const float e = exp_approx(2.f * kGeluScale * (x + kGeluCubic * x2 * x));
  const float inv = 1.f / (e + 1.f);
  const float sigmoid = e * inv;  // (1 + tanh u) / 2; e * inv first: 4 e alone can overflow
  return sigmoid + 2.f * x * sigmoid * inv * kGeluScale * (1.f + 3.f * kGeluCubic * x2);
}

[[gnu::always_inline]] inline float silu(float x) { return x / (1.f + exp_approx(-x)); }

// d silu / dx = s (1 + x (1 - s)), s = sigmoid(x).
[[gnu::always_inline]] inline float silu_grad(float x) {
  const float s = 1.f / (1.f + exp_approx(-x));
  return s * (1.f + x * (1.f - s));
}

[[gnu::always_inline]] inline void activation_range(const ActivationParams& p, int64_t begin, int64_t end) {
  const float* __restrict__ x = p.x;
  float* __restrict__ out = p.out;
  if (p.kind == Activation::gelu_tanh) {
    for (int64_t i = begin; i < end; ++i) out[i] = gelu(x[i]);
  } else {
    for (int64_t i = begin; i < end; ++i) out[i] = silu(x[i]);
  }
}

[[gnu::always_inline]] inline void activation_backward_range(const ActivationBackwardParams& p, int64_t begin,
                                                            int64_t end) {
  const float* __restrict__ x = p.x;
  const float* __restrict__ dy = p.dy;
  float* __restrict__ dx = p.dx;
  if (p.kind == Activation::gelu_tanh) {
    for (int64_t i = begin; i < end; ++i) dx[i] = dy[i] * gelu_grad(x[i]);
  } else {
    for (int64_t i = begin; i < end; ++i) dx[i] = dy[i] * silu_grad(x[i]);
  }
}

void activation_scalar(const ActivationParams& p, int64_t b, int64_t e) { activation_range(p, b, e); }
[[gnu::target("avx2,fma")]] void activation_avx2(const ActivationParams& p, int64_t b, int64_t e) {
  activation_range(p, b, e);
}
[[gnu::target("avx512f,avx512bw,avx512dq,avx512vl")]] void activation_avx512(const ActivationParams& p, int64_t b,
                                                                           int64_t e) {
  activation_range(p, b, e);
}

void activation_backward_scalar(const ActivationBackwardParams& p, int64_t b, int64_t e) {
  activation_backward_range(p, b, e);
}
[[gnu::target("avx2,fma")]] void activation_backward_avx2(const ActivationBackwardParams& p, int64_t b,
                                                          int64_t e) {
  activation_backward_range(p, b, e);
}
[[gnu::target("avx512f,avx512bw,avx512dq,avx512vl")]] void activation_backward_avx512(
    const ActivationBackwardParams& p, int64_t b, int64_t e) {
  activation_backward_range(p, b, e);
}

template <class P>
using RangeFn = void (*)(const P&, int64_t, int64_t);

template <class P>
RangeFn<P> pick(RangeFn<P> scalar, RangeFn<P> avx2, RangeFn<P> avx512) {
  switch (isa()) {
    case Isa::avx512: return avx512;
    case Isa::avx2: return avx2;
    case Isa::scalar: break;
  }
  return scalar;
}

void activation(const ActivationParams& p) {
  const auto range = pick<ActivationParams>(activation_scalar, activation_avx2, activation_avx512);
  parallel_for(p.n, kGrain, [&](int64_t b, int64_t e) { range(p, b, e); });
}

void activation_backward(const ActivationBackwardParams& p) {
  const auto range =
      pick<ActivationBackwardParams>(activation_backward_scalar, activation_backward_avx2, activation_backward_avx512);
  parallel_for(p.n, kGrain, [&](int64_t b, int64_t e) { range(p, b, e); });
}

}  // namespace

RT_REGISTER_OP(BackendId::cpu, activation, activation);
RT_REGISTER_OP(BackendId::cpu, activation_backward, activation_backward);

}  // namespace rt::cpu
