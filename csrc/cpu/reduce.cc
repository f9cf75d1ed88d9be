// reduce (sum/mean over the middle axis of [outer, reduce, inner]) and broadcast (its backward).
//
// Sums accumulate in double: row sums (inner == 1) in eight independent lanes the compiler
// vectorises, column sums (inner > 1) by adding whole rows into a vector of double accumulators
// one tile of columns at a time, so both layouts stream memory in order. When there are too few
// (outer, column tile) tasks to occupy every thread, the reduced axis is split as well and the
// partial sums are combined at the end.
#include <algorithm>
#include <vector>

#include "../ops.h"
#include "parallel.h"

namespace rt::cpu {

constexpr int64_t kGrain = 1 << 16;
constexpr int64_t kColumnTile = 1024;

static double sum_contiguous(const float* x, int64_t n) {
  double lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) lanes[k] += x[i + k];
  double total = 0;
  for (; i < n; ++i) total += x[i];
  for (double lane : lanes) total += lane;
  return total;
}

// acc[i] += sum over rows [r0, r1) of x[r * stride + i], for i in [0, width).
// Groups of eight rows are first added pairwise in float (error a few ulps of the group), which
// takes most of the work off the double accumulators.
static void add_rows(const float* x, int64_t stride, int64_t r0, int64_t r1, int64_t width, double* acc) {
  int64_t r = r0;
  for (; r + 8 <= r1; r += 8) {
    const float* __restrict__ row = x + r * stride;
    for (int64_t i = 0; i < width; ++i) {
      const float* v = row + i;
      const float group = ((v[0] + v[stride]) + (v[2 * stride] + v[3 * stride])) +
                          ((v[4 * stride] + v[5 * stride]) + (v[6 * stride] + v[7 * stride]));
      acc[i] += group;
    }
  }
  for (; r < r1; ++r) {
    const float* __restrict__ row = x + r * stride;
    for (int64_t i = 0; i < width; ++i) acc[i] += row[i];
  }
}

static void reduce(const ReduceParams& p) {
  const int64_t outer = p.outer, rows = p.reduce, inner = p.inner;
  if (outer == 0 || inner == 0) return;
  // An empty reduction gives 0 for a sum and 0 * inf = NaN for a mean, as in NumPy and PyTorch.
  const double scale = p.mean ? 1.0 / static_cast<double>(rows) : 1.0;
  const int64_t tiles = (inner + kColumnTile - 1) / kColumnTile;
  const int64_t tasks = outer * tiles;

  // Sums rows [r0, r1) of task t into acc (zeroed here); returns the task's column count.
  auto partial_sum = [&](int64_t t, int64_t r0, int64_t r1, double* acc) -> int64_t {
    const int64_t o = t / tiles, i0 = (t % tiles) * kColumnTile;
    const int64_t width = std::min(kColumnTile, inner - i0);
    std::fill(acc, acc + width, 0.0);
    const float* x = p.x + o * rows * inner + i0;
    if (inner == 1)
      acc[0] = sum_contiguous(x + r0, r1 - r0);
    else
      add_rows(x, inner, r0, r1, width, acc);
    return width;
  };
  auto out_at = [&](int64_t t) { return p.out + (t / tiles) * inner + (t % tiles) * kColumnTile; };

  const int64_t threads = num_threads();
  const int64_t total = outer * rows * inner;
  const int64_t splits =
      tasks >= 2 * threads ? 1 : std::max<int64_t>(1, std::min({rows, (2 * threads + tasks - 1) / tasks, total / kGrain}));

  if (splits == 1) {
    const int64_t work_per_task = std::max<int64_t>(1, rows * std::min(inner, kColumnTile));
    parallel_for(tasks, std::max<int64_t>(1, kGrain / work_per_task), [&](int64_t begin, int64_t end) {
      double acc[kColumnTile];
      for (int64_t t = begin; t < end; ++t) {
        const int64_t width = partial_sum(t, 0, rows, acc);
        float* out = out_at(t);
        for (int64_t i = 0; i < width; ++i) out[i] = static_cast<float>(acc[i] * scale);
      }
    });
    return;
  }

  std::vector<double> partials(static_cast<size_t>(splits * tasks * kColumnTile));
  parallel_tasks(splits * tasks, [&](int64_t unit) {
    const int64_t s = unit / tasks, t = unit % tasks;
    partial_sum(t, rows * s / splits, rows * (s + 1) / splits, partials.data() + unit * kColumnTile);
  });
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t width = std::min(kColumnTile, inner - (t % tiles) * kColumnTile);
    float* out = out_at(t);
    for (int64_t i = 0; i < width; ++i) {
      double sum = 0;
      for (int64_t s = 0; s < splits; ++s) sum += partials[(s * tasks + t) * kColumnTile + i];
      out[i] = static_cast<float>(sum * scale);
    }
  }
}

static void broadcast(const BroadcastParams& p) {
  const int64_t rows = p.outer * p.reduce, inner = p.inner, reduce = p.reduce;
  if (inner == 0) return;
  const float alpha = p.alpha;
  parallel_for(rows, std::max<int64_t>(1, kGrain / inner), [&](int64_t begin, int64_t end) {
    int64_t o = begin / reduce, r = begin % reduce;
    for (int64_t row = begin; row < end; ++row) {
      const float* __restrict__ x = p.x + o * inner;
      float* __restrict__ out = p.out + row * inner;
      for (int64_t i = 0; i < inner; ++i) out[i] = alpha * x[i];
      if (++r == reduce) {
        r = 0;
        ++o;
      }
    }
  });
}

RT_REGISTER_OP(BackendId::cpu, reduce, reduce);
RT_REGISTER_OP(BackendId::cpu, broadcast, broadcast);

}  // namespace rt::cpu
