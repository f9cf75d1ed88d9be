// Layer norm over the last axis with optional affine (gamma, beta) and adaLN modulation
// (scale, shift shared by `group` consecutive rows), forward and backward, on f32.
//
// Forward: rows spread over the pool; per row a sum, a centred sum of squares (two passes:
// the row stays in L1/L2 and this avoids the cancellation of E[x^2] - E[x]^2) and one write
// pass per optional term, each a vectorisable loop.
//
// Backward: with xhat = (x - mean) rstd, a = gamma (or 1), m = 1 + scale[g] (or 1),
// dz = dy m and dxhat = dz a,
//   dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat))        per row
//   dgamma = sum_rows dz xhat,  dbeta = sum_rows dz                  over all rows
//   dscale[g] = sum_{rows of g} dy (xhat a + beta),  dshift[g] = sum_{rows of g} dy
// The parameter gradients are reductions over rows. Rows are cut into at most ~64 segments
// that never straddle a modulation group; each segment accumulates its own partial sums
// while it computes dx, then the partials are added in segment order. The cut depends only
// on the shape, so results are deterministic whatever the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops.h"
#include "parallel.h"
#include "vec_math.h"

namespace rt::cpu {
namespace {

constexpr int kLanes = 16;
constexpr int64_t kElementsPerChunk = 1 << 14;
constexpr int64_t kTargetSegments = 64;

float sum_of(const float* __restrict__ x, int64_t n) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += x[i + l];
  float sum = 0.f;
  for (; i < n; ++i) sum += x[i];
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum;
}

float centred_squares(const float* __restrict__ x, int64_t n, float mean) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += (x[i + l] - mean) * (x[i + l] - mean);
  float sum = 0.f;
  for (; i < n; ++i) sum += (x[i] - mean) * (x[i] - mean);
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum;
}

void layernorm_rows(const LayerNormParams& p, int64_t begin, int64_t end) {
  const int64_t cols = p.cols;
  for (int64_t r = begin; r < end; ++r) {
    const float* __restrict__ x = p.x + r * cols;
    float* __restrict__ y = p.y + r * cols;
    const float mean = sum_of(x, cols) / float(cols);
    const float rstd = 1.f / std::sqrt(centred_squares(x, cols, mean) / float(cols) + p.eps);
    p.mean[r] = mean;
    p.rstd[r] = rstd;
    for (int64_t c = 0; c < cols; ++c) y[c] = (x[c] - mean) * rstd;
    if (p.gamma) {
      const float* __restrict__ gamma = p.gamma;
      for (int64_t c = 0; c < cols; ++c) y[c] *= gamma[c];
    }
    if (p.beta) {
      const float* __restrict__ beta = p.beta;
      for (int64_t c = 0; c < cols; ++c) y[c] += beta[c];
    }
    if (p.scale) {
      const float* __restrict__ scale = p.scale + (r / p.group) * cols;
      for (int64_t c = 0; c < cols; ++c) y[c] *= 1.f + scale[c];
    }
    if (p.shift) {
      const float* __restrict__ shift = p.shift + (r / p.group) * cols;
      for (int64_t c = 0; c < cols; ++c) y[c] += shift[c];
    }
  }
}

void layernorm(const LayerNormParams& p) {
  parallel_for(p.rows, std::max<int64_t>(1, kElementsPerChunk / p.cols),
               [&](int64_t begin, int64_t end) { layernorm_rows(p, begin, end); });
}

// How the rows are cut for the backward's reductions: `span` rows per group (all rows when no
// per-group gradient is wanted), each group in `per_group` segments of up to `length` rows.
struct Segments {
  int64_t span, length, per_group, count;

  Segments(int64_t rows, int64_t span_rows)
      : span(span_rows),
        length(std::max<int64_t>(1, (rows + kTargetSegments - 1) / kTargetSegments)),
        per_group((span_rows + length - 1) / length),
        count(rows / span_rows * per_group) {}

  int64_t begin(int64_t s) const { return (s / per_group) * span + (s % per_group) * length; }
  int64_t end(int64_t s) const { return std::min(begin(s) + length, (s / per_group + 1) * span); }
};

// Per-segment partial sums, [segments, cols] each; empty when that gradient is not wanted.
struct Partials {
  std::vector<float> gamma, beta, scale, shift;
};

void backward_segment(const LayerNormBackwardParams& p, const Segments& seg, int64_t s, Partials& part,
                      std::vector<float>& xhat_buf, std::vector<float>& dxhat_buf) {
  const int64_t cols = p.cols;
  const float inv_cols = 1.f / float(cols);
  float* __restrict__ xhat = xhat_buf.data();
  float* __restrict__ dxhat = dxhat_buf.data();
  float* __restrict__ pg = part.gamma.empty() ? nullptr : part.gamma.data() + s * cols;
  float* __restrict__ pb = part.beta.empty() ? nullptr : part.beta.data() + s * cols;
  float* __restrict__ ps = part.scale.empty() ? nullptr : part.scale.data() + s * cols;
  float* __restrict__ psh = part.shift.empty() ? nullptr : part.shift.data() + s * cols;
  const float* __restrict__ gamma = p.gamma;
  const float* __restrict__ beta = p.beta;

  for (int64_t r = seg.begin(s); r < seg.end(s); ++r) {
    const float* __restrict__ x = p.x + r * cols;
    const float* __restrict__ dy = p.dy + r * cols;
    float* __restrict__ dx = p.dx + r * cols;
    const float mean = p.mean[r], rstd = p.rstd[r];
    for (int64_t c = 0; c < cols; ++c) xhat[c] = (x[c] - mean) * rstd;

    if (psh)
      for (int64_t c = 0; c < cols; ++c) psh[c] += dy[c];
    if (ps) {
      // The modulation scales the affine output z = xhat gamma + beta.
      for (int64_t c = 0; c < cols; ++c)
        ps[c] += dy[c] * ((gamma ? xhat[c] * gamma[c] : xhat[c]) + (beta ? beta[c] : 0.f));
    }

    // dxhat holds dz = dy (1 + scale) first, then dz gamma.
    if (p.scale) {
      const float* __restrict__ scale = p.scale + (r / p.group) * cols;
      for (int64_t c = 0; c < cols; ++c) dxhat[c] = dy[c] * (1.f + scale[c]);
    } else {
      for (int64_t c = 0; c < cols; ++c) dxhat[c] = dy[c];
    }
    if (pb)
      for (int64_t c = 0; c < cols; ++c) pb[c] += dxhat[c];
    if (pg)
      for (int64_t c = 0; c < cols; ++c) pg[c] += dxhat[c] * xhat[c];
    if (gamma)
      for (int64_t c = 0; c < cols; ++c) dxhat[c] *= gamma[c];

    const float mean_dxhat = sum_of(dxhat, cols) * inv_cols;
    const float mean_dxhat_xhat = dot16(dxhat, xhat, cols) * inv_cols;
    for (int64_t c = 0; c < cols; ++c) dx[c] = rstd * (dxhat[c] - mean_dxhat - xhat[c] * mean_dxhat_xhat);
  }
}

// out[g, c] = sum over the `per_group` consecutive segments of group g of partial[s, c].
void combine(const std::vector<float>& partial, float* out, int64_t groups, int64_t per_group, int64_t cols,
             int64_t c0, int64_t c1) {
  for (int64_t g = 0; g < groups; ++g) {
    float* __restrict__ o = out + g * cols;
    for (int64_t c = c0; c < c1; ++c) o[c] = 0.f;
    for (int64_t k = 0; k < per_group; ++k) {
      const float* __restrict__ src = partial.data() + (g * per_group + k) * cols;
      for (int64_t c = c0; c < c1; ++c) o[c] += src[c];
    }
  }
}

void layernorm_backward(const LayerNormBackwardParams& p) {
  const int64_t cols = p.cols;
  if (p.rows == 0) {
    for (float* grad : {p.dgamma, p.dbeta})
      if (grad) std::fill(grad, grad + cols, 0.f);
    return;
  }
  const bool per_group = p.dscale || p.dshift;
  const Segments seg(p.rows, per_group ? p.group : p.rows);
  const size_t partial_size = size_t(seg.count * cols);
  Partials part;
  if (p.dgamma) part.gamma.assign(partial_size, 0.f);
  if (p.dbeta) part.beta.assign(partial_size, 0.f);
  if (p.dscale) part.scale.assign(partial_size, 0.f);
  if (p.dshift) part.shift.assign(partial_size, 0.f);

  parallel_for(seg.count, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> xhat(cols), dxhat(cols);
    for (int64_t s = begin; s < end; ++s) backward_segment(p, seg, s, part, xhat, dxhat);
  });

  if (!p.dgamma && !p.dbeta && !p.dscale && !p.dshift) return;
  const int64_t groups = p.rows / seg.span;
  parallel_for(cols, std::max<int64_t>(1, kElementsPerChunk / seg.count), [&](int64_t c0, int64_t c1) {
    if (p.dgamma) combine(part.gamma, p.dgamma, 1, seg.count, cols, c0, c1);
    if (p.dbeta) combine(part.beta, p.dbeta, 1, seg.count, cols, c0, c1);
    if (p.dscale) combine(part.scale, p.dscale, groups, seg.per_group, cols, c0, c1);
    if (p.dshift) combine(part.shift, p.dshift, groups, seg.per_group, cols, c0, c1);
  });
}

}  // namespace

RT_REGISTER_OP(BackendId::cpu, layernorm, layernorm);
RT_REGISTER_OP(BackendId::cpu, layernorm_backward, layernorm_backward);

}  // namespace rt::cpu
