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

namespace rt::cpu {
namespace {

constexpr int64_t kGrain = 1 << 16;
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

// a where cond, else b, without a branch: the vectoriser does not if-convert float selects
// under the default -ftrapping-math, but it does vectorise these integer masks.
[[gnu::always_inline]] inline float select(bool cond, float a, float b) {
  const int32_t mask = -int32_t(cond);
  return std::bit_cast<float>((std::bit_cast<int32_t>(a) & mask) | (std::bit_cast<int32_t>(b) & ~mask));
}

// exp(x) with < 1e-7 relative error for x in [-87.3, 88.3]; exactly 0 below (so exp(-inf) = 0),
// NaN stays NaN. Cephes' expf: x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-6
// polynomial, 2^n built in the exponent bits. Adding 1.5 * 2^23 rounds to the nearest integer
// without a rounding instruction, which keeps plain SSE2 code vectorisable.
[[gnu::always_inline]] inline float exp_approx(float x) {
  const float clamped = select(x > 88.3f, 88.3f, select(x < -87.3f, -87.3f, x));
  const float shifter = 12582912.0f;
  const float t = clamped * 1.44269504f + shifter;
  const float n = t - shifter;
  const int32_t n_int = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(shifter);
  float r = clamped - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float poly = 1.9875691500e-4f;
  poly = poly * r + 1.3981999507e-3f;
  poly = poly * r + 8.3334519073e-3f;
  poly = poly * r + 4.1665795894e-2f;
  poly = poly * r + 1.6666665459e-1f;
  poly = poly * r + 5.0000001201e-1f;
  const float e = poly * (r * r) + r + 1.0f;
  return select(x < -87.3f, 0.f, e * std::bit_cast<float>((n_int + 127) << 23));
}

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
