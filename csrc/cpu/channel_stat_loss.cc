// Channel-statistics loss (SPEC section 2, L_stat): per (batch, channel) row of a and b, the mean
// (and population std) over N, then the mean over rows of the squared differences.
// One pass per input: each (row, chunk) task sums x - x0 and (x - x0)^2 with the row's first
// element x0 as shift (so the variance does not cancel catastrophically), partials are combined
// in double in a fixed order. The backward broadcasts two per-row coefficients in one pass.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops.h"
#include "hsum.h"
#include "isa.h"
#include "parallel.h"

namespace rt::cpu {
namespace {

constexpr int64_t kChunk = 1 << 15;

// Shifted sums of one chunk of a and of b.
struct RowSums {
  double a1 = 0, a2 = 0, b1 = 0, b2 = 0;
};

void tail_sums(const float* a, const float* b, float shift_a, float shift_b, int64_t begin, int64_t end,
               bool squares, RowSums& out) {
  for (int64_t i = begin; i < end; ++i) {
    double da = double(a[i]) - shift_a, db = double(b[i]) - shift_b;
    out.a1 += da;
    out.b1 += db;
    if (squares) {
      out.a2 += da * da;
      out.b2 += db * db;
    }
  }
}

__attribute__((target("avx512f"))) RowSums sums_avx512(const float* a, const float* b, float shift_a, float shift_b,
                                                       int64_t begin, int64_t end, bool squares) {
  const __m512 ka = _mm512_set1_ps(shift_a), kb = _mm512_set1_ps(shift_b);
  __m512 a1 = _mm512_setzero_ps(), a2 = a1, b1 = a1, b2 = a1;
  int64_t i = begin;
  for (; i + 16 <= end; i += 16) {
    __m512 da = _mm512_sub_ps(_mm512_loadu_ps(a + i), ka), db = _mm512_sub_ps(_mm512_loadu_ps(b + i), kb);
    a1 = _mm512_add_ps(a1, da);
    b1 = _mm512_add_ps(b1, db);
    a2 = _mm512_fmadd_ps(da, da, a2);
    b2 = _mm512_fmadd_ps(db, db, b2);
  }
  RowSums out{hsum512(a1), hsum512(a2), hsum512(b1), hsum512(b2)};
  tail_sums(a, b, shift_a, shift_b, i, end, squares, out);
  return out;
}

__attribute__((target("avx2,fma"))) RowSums sums_avx2(const float* a, const float* b, float shift_a, float shift_b,
                                                      int64_t begin, int64_t end, bool squares) {
  const __m256 ka = _mm256_set1_ps(shift_a), kb = _mm256_set1_ps(shift_b);
  __m256 a1 = _mm256_setzero_ps(), a2 = a1, b1 = a1, b2 = a1;
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    __m256 da = _mm256_sub_ps(_mm256_loadu_ps(a + i), ka), db = _mm256_sub_ps(_mm256_loadu_ps(b + i), kb);
    a1 = _mm256_add_ps(a1, da);
    b1 = _mm256_add_ps(b1, db);
    a2 = _mm256_fmadd_ps(da, da, a2);
    b2 = _mm256_fmadd_ps(db, db, b2);
  }
  RowSums out{hsum256(a1), hsum256(a2), hsum256(b1), hsum256(b2)};
  tail_sums(a, b, shift_a, shift_b, i, end, squares, out);
  return out;
}

RowSums sums_scalar(const float* a, const float* b, float shift_a, float shift_b, int64_t begin, int64_t end,
                    bool squares) {
  RowSums out;
  tail_sums(a, b, shift_a, shift_b, begin, end, squares, out);
  return out;
}

void channel_stat_loss(const ChannelStatLossParams& p) {
  const int64_t rows = p.batch * p.channels;
  const int64_t chunks = std::max<int64_t>(1, (p.n + kChunk - 1) / kChunk);
  const int64_t chunk = (p.n + chunks - 1) / chunks;
  auto sums = isa() == Isa::avx512 ? sums_avx512 : isa() == Isa::avx2 ? sums_avx2 : sums_scalar;
  std::vector<RowSums> partial(size_t(rows * chunks));
  parallel_tasks(rows * chunks, [&](int64_t task) {
    int64_t row = task / chunks, c = task % chunks;
    const float* a = p.a + row * p.n;
    const float* b = p.b + row * p.n;
    partial[size_t(task)] = sums(a, b, a[0], b[0], c * chunk, std::min(p.n, (c + 1) * chunk), p.match_std);
  });
  const double n = double(p.n);
  double loss = 0;
  for (int64_t row = 0; row < rows; ++row) {
    RowSums t;
    for (int64_t c = 0; c < chunks; ++c) {
      const RowSums& e = partial[size_t(row * chunks + c)];
      t.a1 += e.a1;
      t.a2 += e.a2;
      t.b1 += e.b1;
      t.b2 += e.b2;
    }
    double da = t.a1 / n, db = t.b1 / n;
    double mean_a = p.a[row * p.n] + da, mean_b = p.b[row * p.n] + db;
    p.mean_a[row] = float(mean_a);
    p.mean_b[row] = float(mean_b);
    double diff = mean_a - mean_b;
    loss += diff * diff;
    if (p.match_std) {
      double std_a = std::sqrt(std::max(0.0, t.a2 / n - da * da));
      double std_b = std::sqrt(std::max(0.0, t.b2 / n - db * db));
      p.std_a[row] = float(std_a);
      p.std_b[row] = float(std_b);
      loss += (std_a - std_b) * (std_a - std_b);
    }
  }
  p.loss[0] = float(loss / double(rows));
}

// da[r, i] = dloss / rows * (2 (mean_a - mean_b) / N + 2 (std_a - std_b) (a_i - mean_a) / (N std_a)),
// the std term only with match_std and taken as 0 where std_a is 0 (std is not differentiable there).
void channel_stat_loss_backward(const ChannelStatLossBackwardParams& p) {
  const int64_t rows = p.batch * p.channels;
  const double unit = double(p.dloss) / double(rows) * 2.0 / double(p.n);
  parallel_tasks(rows, [&](int64_t row) {
    const float mean_a = p.mean_a[row];
    const float constant = float(unit * (double(mean_a) - p.mean_b[row]));
    float slope = 0;
    if (p.match_std && p.std_a[row] > 0) slope = float(unit * (double(p.std_a[row]) - p.std_b[row]) / p.std_a[row]);
    const float* __restrict__ a = p.a + row * p.n;
    float* __restrict__ da = p.da + row * p.n;
    for (int64_t i = 0; i < p.n; ++i) da[i] = constant + slope * (a[i] - mean_a);
  });
}

}  // namespace

RT_REGISTER_OP(BackendId::cpu, channel_stat_loss, channel_stat_loss);
RT_REGISTER_OP(BackendId::cpu, channel_stat_loss_backward, channel_stat_loss_backward);

}  // namespace rt::cpu
