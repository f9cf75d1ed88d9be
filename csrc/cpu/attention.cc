// Fused attention on the cpu, flash-attention style: the Lq x Lk score matrix is never stored.
//
// Forward: a task is one (batch, head, tile of 128 queries: each K tile is transposed once per
// task, so the larger the query tile the less that costs). It walks the keys in tiles of 64,
// computes the tile's scores S = scale * Q K^T for all its rows at once, folds them into a
// running (max, sum) per row (online softmax), rescales the rows' output accumulators and adds
// P V. The row's log-sum-exp is saved for the backward.
// Backward: a task is one (batch, head) and a group of its key tiles, so its dK and dV rows are
// private to it (no races); a group is the whole head unless there are fewer heads than twice
// the threads, and then each group's dQ goes to a buffer of its own, summed at the end. For
// each key tile and block of 32 query rows it recomputes S and dP = dO V^T, then
// P = exp(S - lse) and dS = P * (dP - delta) * scale (delta_i = dO_i . O_i, precomputed), and
// adds dS K into dQ, P^T dO into dV and dS^T Q into dK.
//
// Every product above is one small GEMM, C (+)= alpha A B with B row-major, done by one
// register-blocked micro-kernel (block_product): 4 rows of C by 64 columns (AVX-512; 16 on
// AVX2, 8 on SSE) stay in vector registers across the shared dimension, each step loading one
// row of B and broadcasting 4 elements of A. K and V are kept both as rows and transposed so
// every B is row-major; A may be strided either way (P^T and dS^T are read from P and dS).
// Rows are padded with zeros to a multiple of 16 floats (any D up to 256 runs the same code;
// D a multiple of 16 wastes nothing). The kernels are compiled for AVX-512, AVX2 and baseline
// x86-64 (GCC vector types of 16, 8 and 4 floats) and picked with isa(). exp is a polynomial
// that vectorises (libm's expf does not without -ffast-math). bf16 inputs are widened to f32
// as they are loaded; all arithmetic is f32.
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

constexpr int64_t kQueryTile = 128;
constexpr int64_t kKeyTile = 64;
constexpr int64_t kRowBlock = 32;  // backward: rows whose P and dS are held for the dK/dV update
constexpr int64_t kPad = 16;       // head rows are padded to a multiple of this many floats
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

#define RT_ATTN_INLINE [[gnu::always_inline]] inline

RT_ATTN_INLINE float to_f32(float x) { return x; }
RT_ATTN_INLINE float to_f32(uint16_t x) { return bf16_to_f32(x); }
RT_ATTN_INLINE void store(float* dst, float v) { *dst = v; }
RT_ATTN_INLINE void store(uint16_t* dst, float v) { *dst = f32_to_bf16(v); }

int64_t padded(int64_t dim) { return (dim + kPad - 1) / kPad * kPad; }

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

// ---------------------------------------------------------------------------------------------
// The micro-kernel

// W floats in one vector register: 16 under AVX-512, 8 under AVX2, 4 under SSE. The same source
// compiles to each inside the target-specific functions at the end of the file.
// (The attribute must sit on a typedef in a class template: GCC drops it from alias templates.)
template <int W>
struct VecOf {
  typedef float type __attribute__((vector_size(W * sizeof(float))));
  static_assert(sizeof(type) == W * sizeof(float));
};
template <int W>
using Vec = typename VecOf<W>::type;

template <int W>
RT_ATTN_INLINE Vec<W> load_vec(const float* src) {
  Vec<W> v;
  __builtin_memcpy(&v, src, sizeof v);
  return v;
}

template <int W>
RT_ATTN_INLINE void store_vec(float* dst, Vec<W> v) {
  __builtin_memcpy(dst, &v, sizeof v);
}

// The A operand of a product: element (i, p) at data[i * row_stride + p * k_stride].
struct StridedA {
  const float* data;
  int64_t row_stride, k_stride;
};

// Rows [0, MR) x columns [0, NV * W) of C (+)= alpha * sum_{p < kc} A(i, p) B[p][...]: the tile
// stays in MR x NV vector registers, each step loads NV vectors of B and broadcasts MR of A.
template <int W, int NV, int MR>
RT_ATTN_INLINE void micro_tile(int64_t kc, StridedA a, const float* b, int64_t ldb, float* c, int64_t ldc, float alpha,
                               bool accumulate) {
  Vec<W> acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[i][v] = Vec<W>{};
  for (int64_t p = 0; p < kc; ++p) {
    Vec<W> row[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) row[v] = load_vec<W>(b + p * ldb + v * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const float ai = a.data[i * a.row_stride + p * a.k_stride];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[i][v] += ai * row[v];
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      float* dst = c + i * ldc + v * W;
      const Vec<W> scaled = alpha * acc[i][v];
      store_vec<W>(dst, accumulate ? load_vec<W>(dst) + scaled : scaled);
    }
}

// Vector width and vectors per micro-tile row for each instruction set: 4 x NV accumulators,
// NV loads of B and one broadcast fit the register file (32 zmm, 16 ymm, 16 xmm).
template <int W>
struct Blocking {
  static constexpr int kWidth = W;
  static constexpr int kVectors = W == 16 ? 4 : 2;
  static constexpr int kRows = 4;
};

// Columns [0, NV * W) of `rows` <= kRows rows: one micro-tile, or row by row at the bottom edge.
template <int W, int NV>
RT_ATTN_INLINE void column_block(int64_t rows, int64_t kc, StridedA a, const float* b, int64_t ldb, float* c,
                                 int64_t ldc, float alpha, bool accumulate) {
  constexpr int kRows = Blocking<W>::kRows;
  if (rows == kRows) {
    micro_tile<W, NV, kRows>(kc, a, b, ldb, c, ldc, alpha, accumulate);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const StridedA a_row{a.data + r * a.row_stride, a.row_stride, a.k_stride};
    micro_tile<W, NV, 1>(kc, a_row, b, ldb, c + r * ldc, ldc, alpha, accumulate);
  }
}

// C[m x n] (+)= alpha * A[m x kc] B[kc x n], B and C row-major, n a multiple of kPad.
template <int W>
RT_ATTN_INLINE void block_product(int64_t m, int64_t n, int64_t kc, StridedA a, const float* b, int64_t ldb, float* c,
                                  int64_t ldc, float alpha, bool accumulate) {
  using B = Blocking<W>;
  constexpr int64_t wide = B::kWidth * B::kVectors;
  for (int64_t i0 = 0; i0 < m; i0 += B::kRows) {
    const int64_t rows = std::min<int64_t>(B::kRows, m - i0);
    const StridedA a_rows{a.data + i0 * a.row_stride, a.row_stride, a.k_stride};
    float* c_rows = c + i0 * ldc;
    int64_t j = 0;
    for (; j + wide <= n; j += wide)
      column_block<W, B::kVectors>(rows, kc, a_rows, b + j, ldb, c_rows + j, ldc, alpha, accumulate);
    for (; j < n; j += W) column_block<W, 1>(rows, kc, a_rows, b + j, ldb, c_rows + j, ldc, alpha, accumulate);
  }
}

// ---------------------------------------------------------------------------------------------
// Tiles and rows

// Copies `rows` rows of D elements into `dst` rows of Dp floats, widening to f32 and zeroing
// the padding.
template <class T>
RT_ATTN_INLINE void load_rows(const T* src, int64_t rows, int64_t D, int64_t Dp, float* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t d = 0; d < D; ++d) dst[r * Dp + d] = to_f32(src[r * D + d]);
    for (int64_t d = D; d < Dp; ++d) dst[r * Dp + d] = 0.f;
  }
}

// The transpose of a key tile: cols[d][j] = rows[j][d] for j < count (the other columns keep
// finite stale values, which callers mask).
RT_ATTN_INLINE void transpose_tile(const float* rows, int64_t count, int64_t Dp, float* cols) {
  for (int64_t j = 0; j < count; ++j)
    for (int64_t d = 0; d < Dp; ++d) cols[d * kKeyTile + j] = rows[j * Dp + d];
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

// ---------------------------------------------------------------------------------------------
// Forward

template <int W, class T>
RT_ATTN_INLINE void forward_tasks(const AttentionParams& p, int64_t begin, int64_t end) {
  const int64_t D = p.dim, Dp = padded(D);
  const int64_t q_tiles = (p.lq + kQueryTile - 1) / kQueryTile;
  // Scratch: Q tile, output accumulators, K tile (rows and transposed), V tile, scores.
  std::vector<float> scratch(size_t(kQueryTile * Dp * 2 + kKeyTile * Dp * 3 + kQueryTile * kKeyTile), 0.f);
  float* q_tile = scratch.data();
  float* o_acc = q_tile + kQueryTile * Dp;
  float* k_rows = o_acc + kQueryTile * Dp;
  float* k_cols = k_rows + kKeyTile * Dp;
  float* v_rows = k_cols + kKeyTile * Dp;
  float* scores = v_rows + kKeyTile * Dp;  // [kQueryTile][kKeyTile]: S, then P
  float row_max[kQueryTile], row_sum[kQueryTile];
  int64_t limit[kQueryTile];

  for (int64_t task = begin; task < end; ++task) {
    const int64_t bh = task / q_tiles;
    const int64_t q0 = (task % q_tiles) * kQueryTile;
    const int64_t rows = std::min(kQueryTile, p.lq - q0);
    const Masking mask(p.kv_lengths, bh / p.heads, p.lq, p.lk, p.causal);
    const T* k = static_cast<const T*>(p.k) + bh * p.lk * D;
    const T* v = static_cast<const T*>(p.v) + bh * p.lk * D;

    load_rows(static_cast<const T*>(p.q) + (bh * p.lq + q0) * D, rows, D, Dp, q_tile);
    std::fill(o_acc, o_acc + rows * Dp, 0.f);
    int64_t max_limit = 0;
    for (int64_t r = 0; r < rows; ++r) {
      limit[r] = mask.limit(q0 + r);
      max_limit = std::max(max_limit, limit[r]);
      row_max[r] = kNegInf;
      row_sum[r] = 0.f;
    }

    for (int64_t k0 = 0; k0 < max_limit; k0 += kKeyTile) {
      const int64_t cols = std::min(kKeyTile, max_limit - k0);
      load_rows(k + k0 * D, cols, D, Dp, k_rows);
      transpose_tile(k_rows, cols, Dp, k_cols);
      load_rows(v + k0 * D, cols, D, Dp, v_rows);
      block_product<W>(rows, kKeyTile, Dp, {q_tile, Dp, 1}, k_cols, kKeyTile, scores, kKeyTile, p.scale, false);
      for (int64_t r = 0; r < rows; ++r) {
        float* row = scores + r * kKeyTile;
        const int64_t valid = limit[r] - k0;
        if (valid <= 0) {  // this row sees none of the tile
          std::fill(row, row + kKeyTile, 0.f);
          continue;
        }
        for (int64_t j = 0; j < kKeyTile; ++j) row[j] = select(j < valid, row[j], kNegInf);
        const float new_max = std::max(row_max[r], tile_max(row));
        const float correction = exp_approx(row_max[r] - new_max);
        for (int64_t j = 0; j < kKeyTile; ++j) row[j] = exp_approx(row[j] - new_max);
        row_sum[r] = row_sum[r] * correction + tile_sum(row);
        row_max[r] = new_max;
        float* o_row = o_acc + r * Dp;
        for (int64_t d = 0; d < Dp; ++d) o_row[d] *= correction;
      }
      block_product<W>(rows, Dp, cols, {scores, kKeyTile, 1}, v_rows, Dp, o_acc, Dp, 1.f, true);
    }

    T* out = static_cast<T*>(p.out) + (bh * p.lq + q0) * D;
    float* lse = p.lse + bh * p.lq + q0;
    for (int64_t r = 0; r < rows; ++r) {
      const bool any = row_sum[r] > 0.f;
      const float inv = any ? 1.f / row_sum[r] : 0.f;
      for (int64_t d = 0; d < D; ++d) store(out + r * D + d, o_acc[r * Dp + d] * inv);
      lse[r] = any ? row_max[r] + std::log(row_sum[r]) : kNegInf;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward

// How the backward's work is split. A task is one head and one group of its key tiles: its dK
// and dV rows are its own. With enough heads (B x H >= 2 x threads, as in training) a group is
// the whole head and dQ is written directly; otherwise the key tiles are split into groups whose
// dQ contributions go to separate buffers, summed once every task is done.
struct BackwardJob {
  const AttentionBackwardParams& p;
  DType dtype;
  int64_t groups, tiles_per_group;
  float* partial_dq;  // [groups][batch * heads][lq][dim] when groups > 1
};

template <int W, class T>
RT_ATTN_INLINE void backward_tasks(const BackwardJob& job, int64_t begin, int64_t end) {
  const AttentionBackwardParams& p = job.p;
  const int64_t D = p.dim, Dp = padded(D);
  const int64_t lq = p.lq, lk = p.lk;
  // Scratch: Q, dO and the dQ accumulator for the whole head, delta; the K tile (rows and
  // transposed), V transposed, dK and dV tile accumulators; S then P, dP, and dS for a block
  // of rows.
  std::vector<float> scratch(size_t(lq * Dp * 3 + lq + kKeyTile * Dp * 5 + kRowBlock * kKeyTile * 3), 0.f);
  std::vector<int64_t> limit(static_cast<size_t>(lq));
  float* q_all = scratch.data();
  float* do_all = q_all + lq * Dp;
  float* dq_acc = do_all + lq * Dp;
  float* delta = dq_acc + lq * Dp;
  float* k_rows = delta + lq;
  float* k_cols = k_rows + kKeyTile * Dp;
  float* v_cols = k_cols + kKeyTile * Dp;
  float* dk_acc = v_cols + kKeyTile * Dp;
  float* dv_acc = dk_acc + kKeyTile * Dp;
  float* probs = dv_acc + kKeyTile * Dp;  // [kRowBlock][kKeyTile]
  float* dprobs = probs + kRowBlock * kKeyTile;
  float* dscores = dprobs + kRowBlock * kKeyTile;
  float* v_rows = dk_acc;  // V rows are only needed while v_cols is built, before dK is cleared

  for (int64_t task = begin; task < end; ++task) {
    const int64_t bh = task / job.groups, group = task % job.groups;
    const int64_t keys_begin = std::min(lk, group * job.tiles_per_group * kKeyTile);
    const int64_t keys_end = std::min(lk, keys_begin + job.tiles_per_group * kKeyTile);
    const Masking mask(p.kv_lengths, bh / p.heads, lq, lk, p.causal);
    const T* k = static_cast<const T*>(p.k) + bh * lk * D;
    const T* v = static_cast<const T*>(p.v) + bh * lk * D;
    const T* out = static_cast<const T*>(p.out) + bh * lq * D;
    const T* dout = static_cast<const T*>(p.dout) + bh * lq * D;
    const float* lse = p.lse + bh * lq;

    load_rows(static_cast<const T*>(p.q) + bh * lq * D, lq, D, Dp, q_all);
    load_rows(dout, lq, D, Dp, do_all);
    std::fill(dq_acc, dq_acc + lq * Dp, 0.f);
    int64_t max_limit = 0;
    for (int64_t i = 0; i < lq; ++i) {
      limit[i] = mask.limit(i);
      max_limit = std::max(max_limit, limit[i]);
      float dot = 0.f;
      for (int64_t d = 0; d < D; ++d) dot += do_all[i * Dp + d] * to_f32(out[i * D + d]);
      delta[i] = dot;
    }

    T* dk = static_cast<T*>(p.dk) + bh * lk * D;
    T* dv = static_cast<T*>(p.dv) + bh * lk * D;
    const int64_t keys_seen = std::min(keys_end, max_limit);
    for (int64_t k0 = keys_begin; k0 < keys_seen; k0 += kKeyTile) {
      const int64_t cols = std::min(kKeyTile, keys_seen - k0);
      load_rows(k + k0 * D, cols, D, Dp, k_rows);
      transpose_tile(k_rows, cols, Dp, k_cols);
      load_rows(v + k0 * D, cols, D, Dp, v_rows);
      transpose_tile(v_rows, cols, Dp, v_cols);
      std::fill(dk_acc, dk_acc + kKeyTile * Dp, 0.f);
      std::fill(dv_acc, dv_acc + kKeyTile * Dp, 0.f);
      // limit is non-decreasing in the row: rows before first_row see none of this tile.
      const int64_t first_row = std::upper_bound(limit.begin(), limit.end(), k0) - limit.begin();
      for (int64_t i0 = first_row; i0 < lq; i0 += kRowBlock) {
        const int64_t rows = std::min(kRowBlock, lq - i0);
        const float* q_block = q_all + i0 * Dp;
        const float* do_block = do_all + i0 * Dp;
        block_product<W>(rows, kKeyTile, Dp, {q_block, Dp, 1}, k_cols, kKeyTile, probs, kKeyTile, p.scale, false);
        block_product<W>(rows, kKeyTile, Dp, {do_block, Dp, 1}, v_cols, kKeyTile, dprobs, kKeyTile, 1.f, false);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t valid = std::min(kKeyTile, limit[i0 + r] - k0);
          float* prob_row = probs + r * kKeyTile;
          float* dscore_row = dscores + r * kKeyTile;
          const float* dprob_row = dprobs + r * kKeyTile;
          const float row_lse = lse[i0 + r], row_delta = delta[i0 + r];
          for (int64_t j = 0; j < kKeyTile; ++j) {
            const float prob = exp_approx(select(j < valid, prob_row[j], kNegInf) - row_lse);
            prob_row[j] = prob;
            dscore_row[j] = select(j < valid, prob * (dprob_row[j] - row_delta) * p.scale, 0.f);
          }
        }
        // dQ += dS K; dV += P^T dO and dK += dS^T Q (A read transposed from P and dS).
        block_product<W>(rows, Dp, cols, {dscores, kKeyTile, 1}, k_rows, Dp, dq_acc + i0 * Dp, Dp, 1.f, true);
        block_product<W>(cols, Dp, rows, {probs, 1, kKeyTile}, do_block, Dp, dv_acc, Dp, 1.f, true);
        block_product<W>(cols, Dp, rows, {dscores, 1, kKeyTile}, q_block, Dp, dk_acc, Dp, 1.f, true);
      }
      for (int64_t j = 0; j < cols; ++j)
        for (int64_t d = 0; d < D; ++d) {
          store(dk + (k0 + j) * D + d, dk_acc[j * Dp + d]);
          store(dv + (k0 + j) * D + d, dv_acc[j * Dp + d]);
        }
    }
    // Keys no query sees get zero gradients.
    for (int64_t j = std::max(keys_begin, keys_seen) * D; j < keys_end * D; ++j) {
      store(dk + j, 0.f);
      store(dv + j, 0.f);
    }
    if (job.groups == 1) {
      T* dq = static_cast<T*>(p.dq) + bh * lq * D;
      for (int64_t i = 0; i < lq; ++i)
        for (int64_t d = 0; d < D; ++d) store(dq + i * D + d, dq_acc[i * Dp + d]);
    } else {
      float* partial = job.partial_dq + (group * p.batch * p.heads + bh) * lq * D;
      for (int64_t i = 0; i < lq; ++i)
        for (int64_t d = 0; d < D; ++d) partial[i * D + d] = dq_acc[i * Dp + d];
    }
  }
}

// dq = the sum of the groups' partial dQ.
template <class T>
void sum_partial_dq(const BackwardJob& job) {
  const int64_t n = job.p.batch * job.p.heads * job.p.lq * job.p.dim;
  T* dq = static_cast<T*>(job.p.dq);
  parallel_for(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float sum = 0.f;
      for (int64_t g = 0; g < job.groups; ++g) sum += job.partial_dq[g * n + i];
      store(dq + i, sum);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Dispatch

// One entry point per parameter type, so the dispatch below serves forward and backward.
template <int W, class T>
RT_ATTN_INLINE void run_tasks(const AttentionParams& p, int64_t begin, int64_t end) {
  forward_tasks<W, T>(p, begin, end);
}
template <int W, class T>
RT_ATTN_INLINE void run_tasks(const BackwardJob& job, int64_t begin, int64_t end) {
  backward_tasks<W, T>(job, begin, end);
}

template <class P, class T>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,prefer-vector-width=512"))) void run_avx512(
    const P& p, int64_t begin, int64_t end) {
  run_tasks<16, T>(p, begin, end);
}
template <class P, class T>
__attribute__((target("avx2,fma"))) void run_avx2(const P& p, int64_t begin, int64_t end) {
  run_tasks<8, T>(p, begin, end);
}
template <class P, class T>
void run_baseline(const P& p, int64_t begin, int64_t end) {
  run_tasks<4, T>(p, begin, end);
}

template <class P, class T>
auto for_isa() {
  switch (isa()) {
    case Isa::avx512: return run_avx512<P, T>;
    case Isa::avx2: return run_avx2<P, T>;
    case Isa::scalar: break;
  }
  return run_baseline<P, T>;
}

template <class P>
void run_parallel(const P& p, int64_t tasks) {
  if (tasks == 0) return;
  const auto fn = p.dtype == DType::bf16 ? for_isa<P, uint16_t>() : for_isa<P, float>();
  parallel_for(tasks, 1, [&](int64_t begin, int64_t end) { fn(p, begin, end); });
}

void attention(const AttentionParams& p) {
  run_parallel(p, p.batch * p.heads * ((p.lq + kQueryTile - 1) / kQueryTile));
}

void attention_backward(const AttentionBackwardParams& p) {
  const int64_t heads = p.batch * p.heads;
  const int64_t key_tiles = (p.lk + kKeyTile - 1) / kKeyTile;
  const int64_t wanted = (2 * num_threads() + heads - 1) / std::max<int64_t>(1, heads);
  const int64_t groups = std::clamp<int64_t>(wanted, 1, std::max<int64_t>(1, key_tiles));
  std::vector<float> partial_dq(groups > 1 ? size_t(groups * heads * p.lq * p.dim) : 0);
  const BackwardJob job{p, p.dtype, groups, (key_tiles + groups - 1) / groups, partial_dq.data()};
  run_parallel(job, heads * groups);
  if (groups == 1 || heads == 0) return;
  if (p.dtype == DType::bf16) sum_partial_dq<uint16_t>(job);
  else sum_partial_dq<float>(job);
}

}  // namespace

RT_REGISTER_OP(BackendId::cpu, attention, attention);
RT_REGISTER_OP(BackendId::cpu, attention_backward, attention_backward);

}  // namespace rt::cpu
