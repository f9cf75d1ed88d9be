// Softmax over the last axis and its backward, on f32 rows. Rows are spread over the pool; each
// row is a few passes over memory that stays in L1/L2. Reductions use kLanes independent
// accumulators (the compiler will not reorder a float sum by itself) and exp is a branch-free
// polynomial, so every inner loop vectorises; the row loops are compiled once per instruction
// set and picked with isa().
//
// No trapping math here (set before any header, so every inlined function agrees): with it GCC
// will not if-convert the float compares of the row max and of exp, which leaves those loops
// scalar. The kernels never rely on floating-point exceptions.
#pragma GCC optimize("no-trapping-math")

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "../ops.h"
#include "isa.h"
#include "parallel.h"
#include "vec_math.h"

namespace rt::cpu {
namespace {

constexpr int kLanes = 16;
constexpr int64_t kElementsPerChunk = 1 << 14;

[[gnu::always_inline]] inline float row_max(const float* __restrict__ x, int64_t n) {
  float lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] = std::max(lanes[l], x[i + l]);
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
    const float inner = dot16(y, dy, p.cols);
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
