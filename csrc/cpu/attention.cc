// Fused attention on the cpu, flash-attention style: the Lq x Lk score matrix is never stored.
//
// Forward: a task is one (batch, head, tile of 32 queries). It walks the keys in tiles of 64,
// computes the tile's scores S = scale * Q K^T, and folds them into a running (max, sum, output)
// per row (online softmax); the row's log-sum-exp is saved for the backward.
// Backward: a task is one (batch, head), so dK and dV of that head are private to it (no races).
// For each key tile and block of 32 query rows it recomputes P = exp(S - lse) and
// dS = P * (dO V^T - delta) * scale row by row (delta_i = dO_i . O_i, precomputed), adds
// dS K into dQ, then adds P^T dO into dV and dS^T Q into dK key by key over the block's rows.
//
// Every inner loop runs over a contiguous axis (K and V are also kept transposed in the tile);
// row max and sum use 16 independent lanes, so the compiler vectorises everything without
// reassociation. D = 32, 64, 128 are compile-time sizes whose accumulators stay in registers;
// any other D (up to 256) takes the same code with a run-time size. Each kernel is compiled for
// AVX-512, AVX2 and baseline x86-64 and picked with isa(). exp is a polynomial that vectorises
// (libm's expf does not without -ffast-math). bf16 inputs are widened to f32 as they are
// loaded; all arithmetic is f32.
//
// No trapping math in this file (set before any header, so every inlined function agrees): with
// it GCC will not if-convert the float compares in exp, max and the masks for AVX2 and SSE,
// which leaves those loops scalar. The kernels never rely on floating-point exceptions.
#pragma GCC optimize("no-trapping-math")

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../ops.h"
#include "bf16.h"
#include "isa.h"
#include "parallel.h"
#include "vec_math.h"

namespace rt::cpu {
namespace {

constexpr int64_t kQueryTile = 32;
constexpr int64_t kKeyTile = 64;
constexpr int64_t kRowBlock = 32;  // backward: rows whose P and dS are held for the dK/dV update
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

#define RT_ATTN_INLINE [[gnu::always_inline]] inline

RT_ATTN_INLINE float to_f32(float x) { return x; }
RT_ATTN_INLINE float to_f32(uint16_t x) { return bf16_to_f32(x); }
RT_ATTN_INLINE void store(float* dst, float v) { *dst = v; }
RT_ATTN_INLINE void store(uint16_t* dst, float v) { *dst = f32_to_bf16(v); }

// Keys row i may attend to are [0, limit(i)): the kv length and the causal diagonal (aligned
// to the end, so with Lq < Lk the last query sees every key).
struct Masking {
  int64_t keys;         // kv length of this batch entry, clamped to [0, lk]
  int64_t diag_offset;  // lk - lq
  bool causal;

  Masking(const int32_t* kv_lengths, int64_t batch_index, int64_t lq, int64_t lk, bool causal_mask)
      : keys(kv_lengths ? std::clamp<int64_t>(kv_lengths[batch_index], 0, lk) : lk),
        diag_offset(lk - lq),
        causal(causal_mask) {}

  int64_t limit(int64_t row) const {
    const int64_t causal_limit = causal ? row + diag_offset + 1 : keys;
    return std::max<int64_t>(0, std::min(keys, causal_limit));
  }
};

// Copies keys [k0, k0 + rows) of one head into `rows_out` [kKeyTile][D] and, when wanted,
// transposed into `cols_out` [D][kKeyTile], widening to f32.
template <int kD, class T>
RT_ATTN_INLINE void load_key_tile(const T* src, int64_t rows, int D, float* rows_out, float* cols_out) {
  for (int64_t j = 0; j < rows; ++j) {
    const T* row = src + j * D;
    float* dst = rows_out + j * D;
    for (int d = 0; d < (kD > 0 ? kD : D); ++d) dst[d] = to_f32(row[d]);
  }
  if (cols_out == nullptr) return;
  for (int64_t j = 0; j < rows; ++j)
    for (int d = 0; d < (kD > 0 ? kD : D); ++d) cols_out[d * kKeyTile + j] = rows_out[j * D + d];
}

// scores[j] = scale * sum_d q[d] kt[d][j] over the whole tile (columns past the loaded keys hold
// finite stale values; callers mask them).
template <int kD>
RT_ATTN_INLINE void tile_scores(const float* q, const float* kt, int D, float scale, float* scores) {
  float acc[kKeyTile] = {};
  for (int d = 0; d < (kD > 0 ? kD : D); ++d) {
    const float qd = q[d];
    const float* kd = kt + d * kKeyTile;
    for (int64_t j = 0; j < kKeyTile; ++j) acc[j] += qd * kd[j];
  }
  for (int64_t j = 0; j < kKeyTile; ++j) scores[j] = acc[j] * scale;
}

// tile_scores for N query rows at once (rows q + n * D): each loaded column of kt feeds N
// accumulators, so the backward, load-bound one row at a time, does N FMAs per load.
template <int kD, int N>
RT_ATTN_INLINE void tile_scores_rows(const float* q, const float* kt, int D, float scale, float* scores) {
  float acc[N][kKeyTile] = {};
  const int dims = kD > 0 ? kD : D;
  for (int d = 0; d < dims; ++d) {
    const float* kd = kt + d * kKeyTile;
    for (int n = 0; n < N; ++n) {
      const float qd = q[n * dims + d];
      for (int64_t j = 0; j < kKeyTile; ++j) acc[n][j] += qd * kd[j];
    }
  }
  for (int n = 0; n < N; ++n)
    for (int64_t j = 0; j < kKeyTile; ++j) scores[n * kKeyTile + j] = acc[n][j] * scale;
}

// dst[k * D + d] += sum_n weights[n * n_stride + k * k_stride] * rows[n * D + d] for k < N:
// N weighted sums of the same `count` rows, so every loaded row feeds N accumulators (the
// backward is load-bound one sum at a time). dQ uses it over a block's query rows (k_stride =
// kKeyTile), dK and dV over consecutive keys (n_stride = kKeyTile).
template <int kD, int N>
RT_ATTN_INLINE void accumulate_rows(const float* weights, int64_t n_stride, int64_t k_stride, const float* rows,
                                    int64_t count, int D, float* dst) {
  if constexpr (kD > 0) {
    float acc[N][kD];
    for (int k = 0; k < N; ++k)
      for (int d = 0; d < kD; ++d) acc[k][d] = dst[k * kD + d];
    for (int64_t n = 0; n < count; ++n) {
      const float* row = rows + n * kD;
      for (int k = 0; k < N; ++k) {
        const float w = weights[n * n_stride + k * k_stride];
        for (int d = 0; d < kD; ++d) acc[k][d] += w * row[d];
      }
    }
    for (int k = 0; k < N; ++k)
      for (int d = 0; d < kD; ++d) dst[k * kD + d] = acc[k][d];
  } else {
    for (int64_t n = 0; n < count; ++n) {
      const float* row = rows + n * D;
      for (int k = 0; k < N; ++k) {
        const float w = weights[n * n_stride + k * k_stride];
        for (int d = 0; d < D; ++d) dst[k * D + d] += w * row[d];
      }
    }
  }
}

// dst[d] = keep * dst[d] + sum_n weights[n * weight_stride] * rows[n * D + d]. With a
// compile-time D the sum stays in registers across n (one load and store of dst per call).
template <int kD>
RT_ATTN_INLINE void weighted_row_sum(const float* weights, int64_t weight_stride, const float* rows, int64_t count,
                                     int D, float keep, float* dst) {
  if constexpr (kD > 0) {
    float acc[kD];
    for (int d = 0; d < kD; ++d) acc[d] = dst[d] * keep;
    for (int64_t n = 0; n < count; ++n) {
      const float w = weights[n * weight_stride];
      const float* row = rows + n * kD;
      for (int d = 0; d < kD; ++d) acc[d] += w * row[d];
    }
    for (int d = 0; d < kD; ++d) dst[d] = acc[d];
  } else {
    for (int d = 0; d < D; ++d) dst[d] *= keep;
    for (int64_t n = 0; n < count; ++n) {
      const float w = weights[n * weight_stride];
      const float* row = rows + n * D;
      for (int d = 0; d < D; ++d) dst[d] += w * row[d];
    }
  }
}

// Max and sum over a tile row, in 16 independent lanes so they vectorise without reassociation.
constexpr int kLanes = 16;

RT_ATTN_INLINE float tile_max(const float* x) {
  float lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = x[l];
  for (int64_t j = kLanes; j < kKeyTile; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] = std::max(lanes[l], x[j + l]);
  float m = lanes[0];
  for (int l = 1; l < kLanes; ++l) m = std::max(m, lanes[l]);
  return m;
}

RT_ATTN_INLINE float tile_sum(const float* x) {
  float lanes[kLanes] = {};
  for (int64_t j = 0; j < kKeyTile; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += x[j + l];
  float s = 0.f;
  for (int l = 0; l < kLanes; ++l) s += lanes[l];
  return s;
}

template <int kD, class T>
RT_ATTN_INLINE void forward_tasks(const AttentionParams& p, int64_t begin, int64_t end) {
  const int D = kD > 0 ? kD : static_cast<int>(p.dim);
  const int64_t q_tiles = (p.lq + kQueryTile - 1) / kQueryTile;
  // Scratch: Q tile, output accumulators, K tile (rows and transposed), V tile, one score row.
  std::vector<float> scratch(size_t(kQueryTile * D * 2 + kKeyTile * D * 3 + kKeyTile), 0.f);
  float* q_tile = scratch.data();
  float* o_acc = q_tile + kQueryTile * D;
  float* k_rows = o_acc + kQueryTile * D;
  float* k_cols = k_rows + kKeyTile * D;
  float* v_rows = k_cols + kKeyTile * D;
  float* scores = v_rows + kKeyTile * D;
  float row_max[kQueryTile], row_sum[kQueryTile];
  int64_t limit[kQueryTile];

  for (int64_t task = begin; task < end; ++task) {
    const int64_t bh = task / q_tiles;
    const int64_t q0 = (task % q_tiles) * kQueryTile;
    const int64_t rows = std::min(kQueryTile, p.lq - q0);
    const Masking mask(p.kv_lengths, bh / p.heads, p.lq, p.lk, p.causal);
    const T* q = static_cast<const T*>(p.q) + (bh * p.lq + q0) * D;
    const T* k = static_cast<const T*>(p.k) + bh * p.lk * D;
    const T* v = static_cast<const T*>(p.v) + bh * p.lk * D;

    int64_t max_limit = 0;
    for (int64_t r = 0; r < rows; ++r) {
      limit[r] = mask.limit(q0 + r);
      max_limit = std::max(max_limit, limit[r]);
      row_max[r] = kNegInf;
      row_sum[r] = 0.f;
      for (int d = 0; d < D; ++d) {
        q_tile[r * D + d] = to_f32(q[r * D + d]);
        o_acc[r * D + d] = 0.f;
      }
    }

    for (int64_t k0 = 0; k0 < max_limit; k0 += kKeyTile) {
      const int64_t cols = std::min(kKeyTile, max_limit - k0);
      load_key_tile<kD>(k + k0 * D, cols, D, k_rows, k_cols);
      load_key_tile<kD>(v + k0 * D, cols, D, v_rows, static_cast<float*>(nullptr));
      for (int64_t r = 0; r < rows; ++r) {
        if (limit[r] <= k0) continue;
        const int64_t valid = std::min(kKeyTile, limit[r] - k0);
        tile_scores<kD>(q_tile + r * D, k_cols, D, p.scale, scores);
        for (int64_t j = 0; j < kKeyTile; ++j) scores[j] = j < valid ? scores[j] : kNegInf;
        const float new_max = std::max(row_max[r], tile_max(scores));
        const float correction = exp_approx(row_max[r] - new_max);
        for (int64_t j = 0; j < kKeyTile; ++j) scores[j] = exp_approx(scores[j] - new_max);
        row_sum[r] = row_sum[r] * correction + tile_sum(scores);
        row_max[r] = new_max;
        weighted_row_sum<kD>(scores, 1, v_rows, valid, D, correction, o_acc + r * D);
      }
    }

    T* out = static_cast<T*>(p.out) + (bh * p.lq + q0) * D;
    float* lse = p.lse + bh * p.lq + q0;
    for (int64_t r = 0; r < rows; ++r) {
      const bool any = row_sum[r] > 0.f;
      const float inv = any ? 1.f / row_sum[r] : 0.f;
      for (int d = 0; d < D; ++d) store(out + r * D + d, o_acc[r * D + d] * inv);
      lse[r] = any ? row_max[r] + std::log(row_sum[r]) : kNegInf;
    }
  }
}

template <int kD, class T>
RT_ATTN_INLINE void backward_tasks(const AttentionBackwardParams& p, int64_t begin, int64_t end) {
  const int D = kD > 0 ? kD : static_cast<int>(p.dim);
  const int64_t lq = p.lq, lk = p.lk;
  // Scratch: Q, dO and the dQ accumulator for the whole head, delta; the K and V tiles (rows
  // and transposed), dK and dV tile accumulators; P, dS and dP for a block of rows.
  std::vector<float> scratch(size_t(lq * D * 3 + lq + kKeyTile * D * 6 + kRowBlock * kKeyTile * 3), 0.f);
  std::vector<int64_t> limit(static_cast<size_t>(lq));
  float* q_all = scratch.data();
  float* do_all = q_all + lq * D;
  float* dq_acc = do_all + lq * D;
  float* delta = dq_acc + lq * D;
  float* k_rows = delta + lq;
  float* k_cols = k_rows + kKeyTile * D;
  float* v_rows = k_cols + kKeyTile * D;
  float* v_cols = v_rows + kKeyTile * D;
  float* dk_acc = v_cols + kKeyTile * D;
  float* dv_acc = dk_acc + kKeyTile * D;
  float* probs = dv_acc + kKeyTile * D;  // [kRowBlock][kKeyTile]
  float* dscores = probs + kRowBlock * kKeyTile;
  float* dprobs = dscores + kRowBlock * kKeyTile;  // [kRowBlock][kKeyTile]

  for (int64_t bh = begin; bh < end; ++bh) {
    const Masking mask(p.kv_lengths, bh / p.heads, lq, lk, p.causal);
    const T* q = static_cast<const T*>(p.q) + bh * lq * D;
    const T* k = static_cast<const T*>(p.k) + bh * lk * D;
    const T* v = static_cast<const T*>(p.v) + bh * lk * D;
    const T* out = static_cast<const T*>(p.out) + bh * lq * D;
    const T* dout = static_cast<const T*>(p.dout) + bh * lq * D;
    const float* lse = p.lse + bh * lq;

    int64_t max_limit = 0;
    for (int64_t i = 0; i < lq; ++i) {
      limit[i] = mask.limit(i);
      max_limit = std::max(max_limit, limit[i]);
      float dot = 0.f;
      for (int d = 0; d < D; ++d) {
        q_all[i * D + d] = to_f32(q[i * D + d]);
        const float g = to_f32(dout[i * D + d]);
        do_all[i * D + d] = g;
        dq_acc[i * D + d] = 0.f;
        dot += g * to_f32(out[i * D + d]);
      }
      delta[i] = dot;
    }

    T* dk = static_cast<T*>(p.dk) + bh * lk * D;
    T* dv = static_cast<T*>(p.dv) + bh * lk * D;
    for (int64_t k0 = 0; k0 < max_limit; k0 += kKeyTile) {
      const int64_t cols = std::min(kKeyTile, max_limit - k0);
      load_key_tile<kD>(k + k0 * D, cols, D, k_rows, k_cols);
      load_key_tile<kD>(v + k0 * D, cols, D, v_rows, v_cols);
      std::fill(dk_acc, dk_acc + kKeyTile * D, 0.f);
      std::fill(dv_acc, dv_acc + kKeyTile * D, 0.f);
      // limit is non-decreasing in the row: rows before first_row see none of this tile.
      const int64_t first_row = std::upper_bound(limit.begin(), limit.end(), k0) - limit.begin();
      for (int64_t i0 = first_row; i0 < lq; i0 += kRowBlock) {
        const int64_t rows = std::min(kRowBlock, lq - i0);
        // S = scale Q K^T and dP = dO V^T for the block's rows, four rows per pass over the tile.
        int64_t r = 0;
        for (; r + 4 <= rows; r += 4) {
          tile_scores_rows<kD, 4>(q_all + (i0 + r) * D, k_cols, D, p.scale, probs + r * kKeyTile);
          tile_scores_rows<kD, 4>(do_all + (i0 + r) * D, v_cols, D, 1.f, dprobs + r * kKeyTile);
        }
        for (; r < rows; ++r) {
          tile_scores_rows<kD, 1>(q_all + (i0 + r) * D, k_cols, D, p.scale, probs + r * kKeyTile);
          tile_scores_rows<kD, 1>(do_all + (i0 + r) * D, v_cols, D, 1.f, dprobs + r * kKeyTile);
        }
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = i0 + r;
          const int64_t valid = std::min(kKeyTile, limit[i] - k0);
          float* prob_row = probs + r * kKeyTile;
          float* dscore_row = dscores + r * kKeyTile;
          const float* dprob_row = dprobs + r * kKeyTile;
          const float row_lse = lse[i], row_delta = delta[i];
          for (int64_t j = 0; j < kKeyTile; ++j) {
            const float prob = exp_approx((j < valid ? prob_row[j] : kNegInf) - row_lse);
            prob_row[j] = prob;
            dscore_row[j] = prob * (dprob_row[j] - row_delta) * p.scale;
          }
        }
        // dQ_i += sum_j dS_ij K_j, four rows per pass over the key tile. Keys past a row's limit
        // have dS = 0 (P = 0 there), so each group runs to its last row's limit, the largest.
        for (int64_t r = 0; r < rows;) {
          const int64_t group = rows - r >= 4 ? 4 : 1;
          const int64_t count = std::min(kKeyTile, limit[i0 + r + group - 1] - k0);
          if (group == 4)
            accumulate_rows<kD, 4>(dscores + r * kKeyTile, 1, kKeyTile, k_rows, count, D, dq_acc + (i0 + r) * D);
          else
            accumulate_rows<kD, 1>(dscores + r * kKeyTile, 1, kKeyTile, k_rows, count, D, dq_acc + (i0 + r) * D);
          r += group;
        }
        // dV_j += sum_i P_ij dO_i and dK_j += sum_i dS_ij Q_i over the block's rows, four keys
        // per pass over the rows.
        int64_t j = 0;
        for (; j + 4 <= cols; j += 4) {
          accumulate_rows<kD, 4>(probs + j, kKeyTile, 1, do_all + i0 * D, rows, D, dv_acc + j * D);
          accumulate_rows<kD, 4>(dscores + j, kKeyTile, 1, q_all + i0 * D, rows, D, dk_acc + j * D);
        }
        for (; j < cols; ++j) {
          accumulate_rows<kD, 1>(probs + j, kKeyTile, 1, do_all + i0 * D, rows, D, dv_acc + j * D);
          accumulate_rows<kD, 1>(dscores + j, kKeyTile, 1, q_all + i0 * D, rows, D, dk_acc + j * D);
        }
      }
      for (int64_t j = 0; j < cols; ++j)
        for (int d = 0; d < D; ++d) {
          store(dk + (k0 + j) * D + d, dk_acc[j * D + d]);
          store(dv + (k0 + j) * D + d, dv_acc[j * D + d]);
        }
    }
    // Keys no query sees get zero gradients.
    for (int64_t j = max_limit * D; j < lk * D; ++j) {
      store(dk + j, 0.f);
      store(dv + j, 0.f);
    }
    T* dq = static_cast<T*>(p.dq) + bh * lq * D;
    for (int64_t i = 0; i < lq * D; ++i) store(dq + i, dq_acc[i]);
  }
}

#define RT_ATTN_AVX512 "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,prefer-vector-width=512"

template <int kD, class T>
__attribute__((target(RT_ATTN_AVX512))) void forward_avx512(const AttentionParams& p, int64_t b, int64_t e) {
  forward_tasks<kD, T>(p, b, e);
}
template <int kD, class T>
__attribute__((target("avx2,fma"))) void forward_avx2(const AttentionParams& p, int64_t b, int64_t e) {
  forward_tasks<kD, T>(p, b, e);
}
template <int kD, class T>
void forward_baseline(const AttentionParams& p, int64_t b, int64_t e) {
  forward_tasks<kD, T>(p, b, e);
}
template <int kD, class T>
__attribute__((target(RT_ATTN_AVX512))) void backward_avx512(const AttentionBackwardParams& p, int64_t b, int64_t e) {
  backward_tasks<kD, T>(p, b, e);
}
template <int kD, class T>
__attribute__((target("avx2,fma"))) void backward_avx2(const AttentionBackwardParams& p, int64_t b, int64_t e) {
  backward_tasks<kD, T>(p, b, e);
}
template <int kD, class T>
void backward_baseline(const AttentionBackwardParams& p, int64_t b, int64_t e) {
  backward_tasks<kD, T>(p, b, e);
}

template <class P>
using RangeFn = void (*)(const P&, int64_t, int64_t);

template <int kD, class T>
RangeFn<AttentionParams> forward_for_isa() {
  switch (isa()) {
    case Isa::avx512: return forward_avx512<kD, T>;
    case Isa::avx2: return forward_avx2<kD, T>;
    case Isa::scalar: break;
  }
  return forward_baseline<kD, T>;
}

template <int kD, class T>
RangeFn<AttentionBackwardParams> backward_for_isa() {
  switch (isa()) {
    case Isa::avx512: return backward_avx512<kD, T>;
    case Isa::avx2: return backward_avx2<kD, T>;
    case Isa::scalar: break;
  }
  return backward_baseline<kD, T>;
}

template <class T>
RangeFn<AttentionParams> forward_for_dim(int64_t dim) {
  switch (dim) {
    case 32: return forward_for_isa<32, T>();
    case 64: return forward_for_isa<64, T>();
    case 128: return forward_for_isa<128, T>();
    default: return forward_for_isa<0, T>();
  }
}

template <class T>
RangeFn<AttentionBackwardParams> backward_for_dim(int64_t dim) {
  switch (dim) {
    case 32: return backward_for_isa<32, T>();
    case 64: return backward_for_isa<64, T>();
    case 128: return backward_for_isa<128, T>();
    default: return backward_for_isa<0, T>();
  }
}

void attention(const AttentionParams& p) {
  const int64_t q_tiles = (p.lq + kQueryTile - 1) / kQueryTile;
  const int64_t tasks = p.batch * p.heads * q_tiles;
  if (tasks == 0) return;
  const auto fn = p.dtype == DType::bf16 ? forward_for_dim<uint16_t>(p.dim) : forward_for_dim<float>(p.dim);
  parallel_for(tasks, 1, [&](int64_t begin, int64_t end) { fn(p, begin, end); });
}

void attention_backward(const AttentionBackwardParams& p) {
  const int64_t tasks = p.batch * p.heads;
  if (tasks == 0) return;
  const auto fn = p.dtype == DType::bf16 ? backward_for_dim<uint16_t>(p.dim) : backward_for_dim<float>(p.dim);
  parallel_for(tasks, 1, [&](int64_t begin, int64_t end) { fn(p, begin, end); });
}

}  // namespace

RT_REGISTER_OP(BackendId::cpu, attention, attention);
RT_REGISTER_OP(BackendId::cpu, attention_backward, attention_backward);

}  // namespace rt::cpu
