// Layer norm over the last axis of [rows, cols] f32 with optional gamma/beta [cols] and adaLN
// scale/shift [rows / group, cols], forward and backward.
//
// Forward and the dx part of the backward: one warp per row, 4 rows per 128-thread block,
// lanes striding along the row (float4 loads when cols % 4 == 0 and the row pointers are
// 16-byte aligned). Forward: a sum pass (mean), a centred-squares pass (variance, no
// E[x^2] - E[x]^2 cancellation), a write pass; the re-reads hit L1/L2. Backward dx: one pass for
// sum(dxhat) and sum(dxhat xhat), one to write dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)).
//
// Parameter gradients (dgamma, dbeta over all rows; dscale, dshift over each group's rows):
// a column-parallel reduction with no atomics and no scratch memory, so the result is
// deterministic. Block = 32 columns x 16 row lanes; blockIdx.y picks the row span (one group,
// or all rows; grid-stride past 65535 groups); each thread walks its column down every 16th row of the span, then the 16
// partial sums are added in a fixed order through shared memory. When per-group and all-row
// sums are both wanted with more than one group, the kernel runs twice (one span each).
//
// Bytes per element: forward 8 (x read, y written; re-reads cached); backward dx 12; parameter
// gradients 8 more (x and dy read again). FLOPs are ~10-20 per element, negligible. An H100 at
// ~3.0 TB/s: [8192, 1152] (37.7 MB per tensor) forward ~0.025 ms, backward ~0.05 ms when the
// column reduction has enough blocks (cols / 32 x groups >= ~132); with one span and few
// columns it is latency-bound (e.g. 36 blocks for cols 1152: ~0.1 ms predicted).
#include <algorithm>
#include <cstdint>

#include "launch.h"
#include "warp.cuh"

namespace RT_BACKEND_NS {

constexpr int kRowsPerBlock = 4;
constexpr int kThreads = 32 * kRowsPerBlock;
constexpr int kColumnTile = 32;
constexpr int kRowLanes = 16;
constexpr int64_t kMaxGridY = 65535;

template <int W>
__global__ void __launch_bounds__(kThreads)
    layernorm_kernel(dptr<const float> x, dptr<const float> gamma, dptr<const float> beta, dptr<const float> scale,
                     dptr<const float> shift, dptr<float> y, dptr<float> mean_out, dptr<float> rstd_out, int64_t rows,
                     int64_t cols, int64_t group, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;  // the whole warp leaves together
  const dptr<const float> xr = x + row * cols;
  const dptr<float> yr = y + row * cols;
  const int64_t chunks = cols / W;

  float sum = 0.f;
  for (int64_t k = lane; k < chunks; k += 32) {
    float v[W];
    load_chunk<W>(xr, k, v);
    for (int j = 0; j < W; ++j) sum += v[j];
  }
  const float mean = warp_sum(sum) / float(cols);
  float squares = 0.f;
  for (int64_t k = lane; k < chunks; k += 32) {
    float v[W];
    load_chunk<W>(xr, k, v);
    for (int j = 0; j < W; ++j) squares += (v[j] - mean) * (v[j] - mean);
  }
  const float rstd = rsqrtf(warp_sum(squares) / float(cols) + eps);
  if (lane == 0) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }

  const int64_t modulation = (row / group) * cols;
  for (int64_t k = lane; k < chunks; k += 32) {
    float v[W];
    load_chunk<W>(xr, k, v);
    for (int j = 0; j < W; ++j) {
      const int64_t c = k * W + j;
      float out = (v[j] - mean) * rstd;
      if (gamma) out *= gamma[c];
      if (beta) out += beta[c];
      if (scale) out *= 1.f + scale[modulation + c];
      if (shift) out += shift[modulation + c];
      v[j] = out;
    }
    store_chunk<W>(yr, k, v);
  }
}

template <int W>
__global__ void __launch_bounds__(kThreads)
    layernorm_dx_kernel(dptr<const float> x, dptr<const float> dy, dptr<const float> gamma, dptr<const float> scale,
                        dptr<const float> mean, dptr<const float> rstd, dptr<float> dx, int64_t rows, int64_t cols,
                        int64_t group) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;
  const dptr<const float> xr = x + row * cols;
  const dptr<const float> dyr = dy + row * cols;
  const dptr<float> dxr = dx + row * cols;
  const int64_t chunks = cols / W;
  const int64_t modulation = (row / group) * cols;
  const float mu = mean[row], rs = rstd[row];

  // xhat and dxhat = dy (1 + scale) gamma for chunk k, in place of the loaded x and dy.
  auto chunk = [&](int64_t k, float (&xv)[W], float (&dv)[W]) {
    load_chunk<W>(xr, k, xv);
    load_chunk<W>(dyr, k, dv);
    for (int j = 0; j < W; ++j) {
      const int64_t c = k * W + j;
      xv[j] = (xv[j] - mu) * rs;
      if (scale) dv[j] *= 1.f + scale[modulation + c];
      if (gamma) dv[j] *= gamma[c];
    }
  };

  float sum_dxhat = 0.f, sum_dxhat_xhat = 0.f;
  for (int64_t k = lane; k < chunks; k += 32) {
    float xv[W], dv[W];
    chunk(k, xv, dv);
    for (int j = 0; j < W; ++j) {
      sum_dxhat += dv[j];
      sum_dxhat_xhat += dv[j] * xv[j];
    }
  }
  const float mean_dxhat = warp_sum(sum_dxhat) / float(cols);
  const float mean_dxhat_xhat = warp_sum(sum_dxhat_xhat) / float(cols);

  for (int64_t k = lane; k < chunks; k += 32) {
    float xv[W], dv[W];
    chunk(k, xv, dv);
    for (int j = 0; j < W; ++j) dv[j] = rs * (dv[j] - mean_dxhat - xv[j] * mean_dxhat_xhat);
    store_chunk<W>(dxr, k, dv);
  }
}

// Sums over the rows of each span s ([span * s, span * (s + 1)), s = blockIdx.y, blockIdx.y +
// gridDim.y, ...), per column:
//   dgamma += dy m xhat, dbeta += dy m  (m = 1 + scale, or 1)
//   dscale += dy (xhat gamma + beta), dshift += dy
// Outputs that are null are skipped; dgamma/dbeta are indexed by column only (launched with one
// span), dscale/dshift by [span, column].
__global__ void __launch_bounds__(kColumnTile * kRowLanes)
    layernorm_param_grad_kernel(dptr<const float> x, dptr<const float> dy, dptr<const float> gamma,
                                dptr<const float> beta, dptr<const float> scale, dptr<const float> mean, dptr<const float> rstd,
                                dptr<float> dgamma, dptr<float> dbeta, dptr<float> dscale, dptr<float> dshift,
                                int64_t cols, int64_t group, int64_t span, int64_t spans) {
  __shared__ float partial[4][kRowLanes][kColumnTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = int64_t(blockIdx.x) * kColumnTile + tx;
  const float g = gamma && c < cols ? gamma[c] : 1.f;
  const float b = beta && c < cols ? beta[c] : 0.f;
  for (int64_t s = blockIdx.y; s < spans; s += gridDim.y) {
    float acc_gamma = 0.f, acc_beta = 0.f, acc_scale = 0.f, acc_shift = 0.f;
    if (c < cols) {
      for (int64_t r = s * span + ty; r < (s + 1) * span; r += kRowLanes) {
        const float xhat = (x[r * cols + c] - mean[r]) * rstd[r];
        const float d = dy[r * cols + c];
        const float dz = scale ? d * (1.f + scale[(r / group) * cols + c]) : d;
        acc_gamma += dz * xhat;
        acc_beta += dz;
        acc_scale += d * (xhat * g + b);
        acc_shift += d;
      }
    }
    __syncthreads();  // the previous span's totals have been read
    partial[0][ty][tx] = acc_gamma;
    partial[1][ty][tx] = acc_beta;
    partial[2][ty][tx] = acc_scale;
    partial[3][ty][tx] = acc_shift;
    __syncthreads();
    if (ty == 0 && c < cols) {
      float total[4] = {0.f, 0.f, 0.f, 0.f};
      for (int q = 0; q < 4; ++q)
        for (int l = 0; l < kRowLanes; ++l) total[q] += partial[q][l][tx];
      if (dgamma) dgamma[c] = total[0];
      if (dbeta) dbeta[c] = total[1];
      if (dscale) dscale[s * cols + c] = total[2];
      if (dshift) dshift[s * cols + c] = total[3];
    }
  }
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

static void layernorm(const rt::LayerNormParams& p) {
  if (p.rows == 0) return;
  const int blocks = rt::ceil_div(p.rows, kRowsPerBlock);
  if (p.cols % 4 == 0 && aligned16(p.x) && aligned16(p.y))
    RT_LAUNCH(layernorm_kernel<4>, blocks, kThreads, 0, p.x, p.gamma, p.beta, p.scale, p.shift, p.y, p.mean, p.rstd,
              p.rows, p.cols, p.group, p.eps);
  else
    RT_LAUNCH(layernorm_kernel<1>, blocks, kThreads, 0, p.x, p.gamma, p.beta, p.scale, p.shift, p.y, p.mean, p.rstd,
              p.rows, p.cols, p.group, p.eps);
}

static void layernorm_backward(const rt::LayerNormBackwardParams& p) {
  if (p.rows > 0) {
    const int blocks = rt::ceil_div(p.rows, kRowsPerBlock);
    if (p.cols % 4 == 0 && aligned16(p.x) && aligned16(p.dy) && aligned16(p.dx))
      RT_LAUNCH(layernorm_dx_kernel<4>, blocks, kThreads, 0, p.x, p.dy, p.gamma, p.scale, p.mean, p.rstd, p.dx, p.rows,
                p.cols, p.group);
    else
      RT_LAUNCH(layernorm_dx_kernel<1>, blocks, kThreads, 0, p.x, p.dy, p.gamma, p.scale, p.mean, p.rstd, p.dx, p.rows,
                p.cols, p.group);
  }

  const bool all_rows = p.dgamma || p.dbeta, per_group = p.dscale || p.dshift;
  const int64_t groups = p.rows / p.group;
  const dim3 block(kColumnTile, kRowLanes);
  const int column_tiles = rt::ceil_div(p.cols, kColumnTile);
  float* none = nullptr;
  if (per_group && groups == 1) {
    RT_LAUNCH(layernorm_param_grad_kernel, dim3(column_tiles, 1), block, 0, p.x, p.dy, p.gamma, p.beta, p.scale, p.mean,
              p.rstd, p.dgamma, p.dbeta, p.dscale, p.dshift, p.cols, p.group, p.rows, int64_t(1));
    return;
  }
  if (all_rows)
    RT_LAUNCH(layernorm_param_grad_kernel, dim3(column_tiles, 1), block, 0, p.x, p.dy, p.gamma, p.beta, p.scale, p.mean,
              p.rstd, p.dgamma, p.dbeta, none, none, p.cols, p.group, p.rows, int64_t(1));
  if (per_group && groups > 0) {
    const unsigned grid_y = static_cast<unsigned>(std::min<int64_t>(groups, kMaxGridY));
    RT_LAUNCH(layernorm_param_grad_kernel, dim3(column_tiles, grid_y), block, 0, p.x, p.dy, p.gamma, p.beta, p.scale, p.mean,
              p.rstd, none, none, p.dscale, p.dshift, p.cols, p.group, p.group, groups);
  }
}

RT_REGISTER_OP(RT_BACKEND_ID, layernorm, layernorm);
RT_REGISTER_OP(RT_BACKEND_ID, layernorm_backward, layernorm_backward);

}  // namespace RT_BACKEND_NS
