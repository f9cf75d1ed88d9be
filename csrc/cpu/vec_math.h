// Branch-free scalar math that GCC auto-vectorises (shared by the softmax, layernorm,
// activation and attention kernels): a float select, a Cephes-style exp, and a dot product
// over 16 independent accumulators (the compiler will not reorder a float sum by itself).
#pragma once

#include <bit>
#include <cstdint>

namespace rt::cpu {

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


[[gnu::always_inline]] inline float dot16(const float* __restrict__ a, const float* __restrict__ b, int64_t n) {
  constexpr int lanes_count = 16;
  float lanes[lanes_count] = {};
  int64_t i = 0;
  for (; i + lanes_count <= n; i += lanes_count)
    for (int l = 0; l < lanes_count; ++l) lanes[l] += a[i + l] * b[i + l];
  float sum = 0.f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (int l = 0; l < lanes_count; ++l) sum += lanes[l];
  return sum;
}

}  // namespace rt::cpu
