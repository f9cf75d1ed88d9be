// Softmax over the last axis and its backward, on f32 rows. Rows are spread over the pool; each
// row is a few passes over memory that stays in L1/L2. Reductions use kLanes independent
// accumulators (the compiler will not reorder a float sum by itself) and exp is a branch-free
// polynomial, so every inner loop vectorises; the row loops are compiled once per instruction
// set and picked with isa().
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "../ops.h"
#include "isa.h"
#include "parallel.h"

namespace rt::cpu {
namespace {

constexpr int kLanes = 16;
constexpr int64_t kElementsPerChunk = 1 << 14;

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

[[gnu::always_inline]] inline float row_max(const float* __restrict__ x, int64_t n) {
  float lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] = select(x[i + l] > lanes[l], x[i + l], lanes[l]);
  float m = -std::numeric_limits<float>::infinity();
  for (; i < n; ++i) m = std::max(m, x[i]);
  for (int l = 0; l < kLanes; ++l) m = std::max(m, lanes[l]);
  return m;
}

// out = exp(x - shift); returns the sum of out.
[[gnu::always_inline]] inline float exp_shifted_sum(const float* __restrict__ x, float* __restrict__ out,
                                                   int64_t n, float shift) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float e = exp_approx(x[i + l] - shift);
      out[i + l] = e;
      lanes[l] += e;
    }
  }
  float sum = 0.f;
  for (; i < n; ++i) {
    out[i] = exp_approx(x[i] - shift);
    sum += out[i];
  }
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum;
}

[[gnu::always_inline]] inline float dot(const float* __restrict__ a, const float* __restrict__ b, int64_t n) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[i + l] * b[i + l];
  float sum = 0.f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum;
}

[[gnu::always_inline]] inline void softmax_rows(const SoftmaxParams& p, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float* x = p.x + r * p.cols;
    float* out = p.out + r * p.cols;
    const float sum = exp_shifted_sum(x, out, p.cols, row_max(x, p.cols));
    const float inv = 1.f / sum;
    for (int64_t c = 0; c < p.cols; ++c) out[c] *= inv;
  }
}

[[gnu::always_inline]] inline void softmax_backward_rows(const SoftmaxBackwardParams& p, int64_t begin,
                                                        int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float* __restrict__ y = p.y + r * p.cols;
    const float* __restrict__ dy = p.dy + r * p.cols;
    float* __restrict__ dx = p.dx + r * p.cols;
    const float inner = dot(y, dy, p.cols);
    for (int64_t c = 0; c < p.cols; ++c) dx[c] = y[c] * (dy[c] - inner);
  }
}

void softmax_rows_scalar(const SoftmaxParams& p, int64_t b, int64_t e) { softmax_rows(p, b, e); }
[[gnu::target("avx2,fma")]] void softmax_rows_avx2(const SoftmaxParams& p, int64_t b, int64_t e) {
  softmax_rows(p, b, e);
}
[[gnu::target("avx512f,avx512bw,avx512dq,avx512vl")]] void softmax_rows_avx512(const SoftmaxParams& p,
                                                                             int64_t b, int64_t e) {
  softmax_rows(p, b, e);
}

void softmax_backward_rows_scalar(const SoftmaxBackwardParams& p, int64_t b, int64_t e) {
  softmax_backward_rows(p, b, e);
}
[[gnu::target("avx2,fma")]] void softmax_backward_rows_avx2(const SoftmaxBackwardParams& p, int64_t b,
                                                            int64_t e) {
  softmax_backward_rows(p, b, e);
}
[[gnu::target("avx512f,avx512bw,avx512dq,avx512vl")]] void softmax_backward_rows_avx512(
    const SoftmaxBackwardParams& p, int64_t b, int64_t e) {
  softmax_backward_rows(p, b, e);
}

template <class P>
using RowsFn = void (*)(const P&, int64_t, int64_t);

template <class P>
RowsFn<P> pick(RowsFn<P> scalar, RowsFn<P> avx2, RowsFn<P> avx512) {
  switch (isa()) {
    case Isa::avx512: return avx512;
    case Isa::avx2: return avx2;
    case Isa::scalar: break;
  }
  return scalar;
}

int64_t rows_per_chunk(int64_t cols) { return std::max<int64_t>(1, kElementsPerChunk / std::max<int64_t>(1, cols)); }

void softmax(const SoftmaxParams& p) {
  const auto rows = pick<SoftmaxParams>(softmax_rows_scalar, softmax_rows_avx2, softmax_rows_avx512);
  parallel_for(p.rows, rows_per_chunk(p.cols), [&](int64_t b, int64_t e) { rows(p, b, e); });
}

void softmax_backward(const SoftmaxBackwardParams& p) {
  const auto rows = pick<SoftmaxBackwardParams>(softmax_backward_rows_scalar, softmax_backward_rows_avx2,
                                                softmax_backward_rows_avx512);
  parallel_for(p.rows, rows_per_chunk(p.cols), [&](int64_t b, int64_t e) { rows(p, b, e); });
}

}  // namespace

RT_REGISTER_OP(BackendId::cpu, softmax, softmax);
RT_REGISTER_OP(BackendId::cpu, softmax_backward, softmax_backward);

}  // namespace rt::cpu
