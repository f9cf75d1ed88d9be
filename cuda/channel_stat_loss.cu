// Channel-statistics loss (SPEC section 2, L_stat) on a, b viewed as [rows = batch * channels, n],
// as a two-level reduction:
//   channel_partials_kernel: grid (chunks, rows); each block reads one chunk of one row of a and
//     of b once and sums x - x0 and (x - x0)^2 (x0 the row's first element: a shift that keeps the
//     variance from cancelling), into scratch [rows, chunks, 4].
//   channel_finish_kernel: one block; per row the partials in double (fixed order), the means and
//     population stds, the squared differences, and their mean over rows: the scalar loss.
// Backward: one elementwise pass, grid (chunks, rows): da = c0[row] + c1[row] (a - mean_a[row]).
// Bytes: forward 8 per element (a and b), backward 8 (a in, da out); ~6 FLOP per element.
// Memory-bound: 16 x 4 x 128 x 128 latents (1M elements per input, 8 MB) in ~3 us on an H100 at
// ~3.0 TB/s, plus two launches; a 3 x 512 x 512 pixel batch of 16 (12.6M, 100 MB) ~35 us.
#include <cstdint>

#include "launch.h"
#include "scratch.cuh"
#include "chunked_reduce.cuh"
#include "warp.cuh"

namespace RT_BACKEND_NS {
namespace {

__global__ void __launch_bounds__(kChunkThreads)
    channel_partials_kernel(dptr<const float> a, dptr<const float> b, dptr<float> partials, int64_t rows, int64_t n,
                            int64_t chunk) {
  __shared__ float scratch[32];
  const int64_t c = blockIdx.x, chunks = gridDim.x;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t base = row * n;
    const float shift_a = a[base], shift_b = b[base];
    const int64_t end = std::min(n, (c + 1) * chunk);
    float a1 = 0, a2 = 0, b1 = 0, b2 = 0;
    for (int64_t i = c * chunk + threadIdx.x; i < end; i += kChunkThreads) {
      const float da = a[base + i] - shift_a, db = b[base + i] - shift_b;
      a1 += da;
      a2 += da * da;
      b1 += db;
      b2 += db * db;
    }
    a1 = block_sum(a1, scratch);
    a2 = block_sum(a2, scratch);
    b1 = block_sum(b1, scratch);
    b2 = block_sum(b2, scratch);
    if (threadIdx.x == 0) {
      const int64_t at = (row * chunks + c) * 4;
      partials[at + 0] = a1;
      partials[at + 1] = a2;
      partials[at + 2] = b1;
      partials[at + 3] = b2;
    }
  }
}

__global__ void __launch_bounds__(kChunkThreads)
    channel_finish_kernel(dptr<const float> a, dptr<const float> b, dptr<const float> partials, dptr<float> loss,
                          dptr<float> mean_a, dptr<float> mean_b, dptr<float> std_a, dptr<float> std_b, int64_t rows,
                          int64_t chunks, int64_t n, bool match_std) {
  __shared__ double scratch[kChunkThreads];
  double total = 0;
  for (int64_t row = threadIdx.x; row < rows; row += kChunkThreads) {
    double s[4] = {0, 0, 0, 0};
    for (int64_t c = 0; c < chunks; ++c)
      for (int q = 0; q < 4; ++q) s[q] += partials[(row * chunks + c) * 4 + q];
    const double da = s[0] / double(n), db = s[2] / double(n);
    const double ma = double(a[row * n]) + da, mb = double(b[row * n]) + db;
    mean_a[row] = float(ma);
    mean_b[row] = float(mb);
    total += (ma - mb) * (ma - mb);
    if (match_std) {
      const double sa = sqrt(fmax(0.0, s[1] / double(n) - da * da));
      const double sb = sqrt(fmax(0.0, s[3] / double(n) - db * db));
      std_a[row] = float(sa);
      std_b[row] = float(sb);
      total += (sa - sb) * (sa - sb);
    }
  }
  total = block_sum_double(total, scratch);
  if (threadIdx.x == 0) loss[0] = float(total / double(rows));
}

static void channel_stat_loss(const rt::ChannelStatLossParams& p) {
  const int64_t rows = p.batch * p.channels;
  const ChunkPlan plan = plan_chunks(rows, p.n);
  float* partials = scratch_floats(size_t(rows * plan.chunks * 4), "channel_stat_loss scratch");
  RT_LAUNCH(channel_partials_kernel, plan.grid(rows), kChunkThreads, 0, p.a, p.b, partials, rows, p.n, plan.chunk);
  RT_LAUNCH(channel_finish_kernel, 1, kChunkThreads, 0, p.a, p.b, partials, p.loss, p.mean_a, p.mean_b, p.std_a, p.std_b,
            rows, plan.chunks, p.n, p.match_std);
}

// da = unit * ((mean_a - mean_b) + [match_std] (std_a - std_b) / std_a * (a - mean_a)), unit = 2 dloss / (rows n);
// the std term is 0 where std_a is 0 (std is not differentiable there).
__global__ void __launch_bounds__(kChunkThreads)
    channel_backward_kernel(dptr<const float> a, dptr<const float> mean_a, dptr<const float> mean_b,
                            dptr<const float> std_a, dptr<const float> std_b, dptr<float> da, int64_t rows, int64_t n,
                            int64_t chunk, bool match_std, float unit) {
  const int64_t c = blockIdx.x;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const float ma = mean_a[row];
    const float constant = unit * (ma - mean_b[row]);
    float slope = 0;
    if (match_std) {
      const float sa = std_a[row];
      if (sa > 0) slope = unit * (sa - std_b[row]) / sa;
    }
    const int64_t base = row * n, end = std::min(n, (c + 1) * chunk);
    for (int64_t i = c * chunk + threadIdx.x; i < end; i += kChunkThreads) da[base + i] = constant + slope * (a[base + i] - ma);
  }
}

static void channel_stat_loss_backward(const rt::ChannelStatLossBackwardParams& p) {
  const int64_t rows = p.batch * p.channels;
  const ChunkPlan plan = plan_chunks(rows, p.n);
  const float unit = float(2.0 * double(p.dloss) / (double(rows) * double(p.n)));
  RT_LAUNCH(channel_backward_kernel, plan.grid(rows), kChunkThreads, 0, p.a, p.mean_a, p.mean_b, p.std_a, p.std_b, p.da,
            rows, p.n, plan.chunk, p.match_std, unit);
}

RT_REGISTER_OP(RT_BACKEND_ID, channel_stat_loss, channel_stat_loss);
RT_REGISTER_OP(RT_BACKEND_ID, channel_stat_loss_backward, channel_stat_loss_backward);

}  // namespace
}  // namespace RT_BACKEND_NS
