// Fused attention (AttentionParams / AttentionBackwardParams in csrc/ops.h), flash-attention
// style: out = softmax(scale q k^T + mask) v per (batch, head) without storing the Lq x Lk
// scores; the forward saves the row log-sum-exp, the backward recomputes P from it.
//
// Kernels (grid.x = batch * heads, grid.y = query or key tiles):
//   - attention_fwd_wmma_kernel<D> (bf16, D a multiple of 16 up to 128): tensor cores through
//     WMMA 16x16x16, bf16 in, f32 accumulate. 4 warps x 16 query rows; K/V tiles of 32 keys in
//     padded shared memory. Per tile each warp computes S = Q K^T (Q fragments stay in
//     registers), then an online softmax in which lane pairs own one row (two half rows, one
//     shuffle per reduction), writes P as bf16, and computes P V fragment by fragment; the PV
//     fragment goes through a per-warp shared scratch so each lane can rescale its own slice
//     of the output accumulator (kept in registers: 16 x D per warp, D/2 floats per lane).
//   - attention_fwd_simt_kernel<T, kMaxD> (f32, and bf16 where WMMA does not apply; bf16 is
//     widened on load): a warp owns 4 query rows; lane j scores key j of a 32-key tile (16 for
//     D > 128) against the row staged in shared memory, warp shuffles give the tile's max and
//     sum, and lane l accumulates output dims l, l + 32, ... with P broadcast by shuffles.
//   - attention_bwd_delta_kernel<D>, attention_bwd_dkdv_wmma_kernel<D> and
//     attention_bwd_dq_wmma_kernel<D> (bf16, D a multiple of 16 up to 128): FlashAttention-2's
//     backward on WMMA 16x16x16, bf16 operands, f32 accumulate. First delta_i = dO_i . O_i (f32,
//     into the device scratch). dK/dV: a block owns 64 keys (4 warps x 16; for D > 64 2 warps
//     and 32 keys, so shared memory stays under 48 KB) with dK and dV in accumulator fragments,
//     and walks the 32-row query tiles that can see them, staging Q, dO, lse and delta in padded
//     shared memory: S^T = K Q^T, P^T = exp(scale S^T - lse), dV += P^T dO, dP^T = V dO^T,
//     dS^T = P^T (dP^T - delta) scale, dK += dS^T Q. dQ: 4 warps x 16 query rows, Q and dO
//     fragments in registers, walking 32-key tiles: S = Q K^T, P, dP = dO V^T, dS, dQ += dS K.
//     Each 16 x 32 score tile goes through a per-warp f32 scratch for the elementwise work
//     (fragment element layouts are unspecified) and P or dS through a bf16 one as the next A
//     operand. Tiles the causal mask or kv_lengths hide are skipped per block and per warp.
//   - attention_bwd_dq_kernel<T, kMaxD> (f32, and bf16 where WMMA does not apply; likewise the
//     dK/dV kernel below): the forward's structure; per row recomputes p = exp(s - lse),
//     dp = dO . V_j, ds = p (dp - delta) scale, dq += ds K_j, where delta = dO . O is computed
//     when the row is staged.
//   - attention_bwd_dkdv_kernel<T, kMaxD>: one warp per tile of 32 keys (16 for D > 64, 8 for
//     D > 128, so four tiles fit 48 KB of shared memory); it walks the query rows that can see
//     the tile, lane j accumulating dK_j and dV_j in padded shared memory (no atomics, no races).
// Masks: key j is visible to row i when j < kv_lengths[b] and (not causal or j <= i + Lk - Lq);
// tiles past a block's last visible key are skipped; rows that see no key give 0 and lse -inf
// and zero gradients.
//
// Cost (non-causal; causal about half): forward 4 B H Lq Lk D FLOP, backward 10 B H Lq Lk D
// (S recomputed, dV, dP, dQ, dK); the WMMA backward executes 14 (its dQ kernel recomputes S and
// dP: 7 products of 2 Lq Lk D each). Bytes: forward reads q, k, v and writes out (+ lse):
// 4 B H L D elements (bf16 2 B, f32 4 B); the backward reads q, k, v, out, dout, lse and writes
// dq, dk, dv: 8 B H L D elements, plus re-reads, mostly from L2 (the WMMA dK/dV kernel reads Q
// and dO once per 64-key block, its dQ kernel K and V once per 64-row block).
// H100 prediction, B=4 H=8 D=64:
//   L=256:  forward 0.54 GFLOP, 4.2 MB bf16. Ideal ~1.4 us (memory); 128 blocks, one wave, so
//           latency and launch bound: ~6-10 us bf16 WMMA, ~20-40 us f32 SIMT (~25% of the 60
//           TFLOP/s non-tensor peak: dot products read shared memory at one FMA per load).
//           Backward (f32 SIMT) 1.3 GFLOP: the dK/dV kernel is latency bound (one warp per
//           key tile walks the 256 rows one after another, ~2K cycles a row): ~0.2-0.4 ms.
//           bf16 WMMA backward 1.9 GFLOP executed: 128 blocks per kernel (one wave), each walking
//           8 tiles at ~1-2 us a tile (global loads staged synchronously, 2 barriers): ~30-50 us
//           for the three launches.
//   L=4096: forward 137 GFLOP: 0.17 ms at the 790 TFLOP/s bf16 peak; plain WMMA through shared
//           memory without ldmatrix/cp.async pipelining and with the P and PV round trips reaches
//           ~20-30%: ~0.6-0.9 ms. f32 SIMT: 2.3 ms ideal, ~8-10 ms expected. Backward 344 GFLOP
//           on the SIMT kernels: ~25-35 ms (4096 rows per dK/dV block, ~5 waves of blocks).
//           bf16 WMMA backward: 481 GFLOP executed, 0.61 ms at peak; bound by shared memory
//           (per 32-row tile a warp loads ~30 KB of fragments and scratch against 32 MMAs, ~1/3
//           of the MMA rate at 128 B/clock), less barriers and latency: ~20-25%, ~2.5-3.5 ms.
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "launch.h"
#include "scratch.cuh"
#include "warp.cuh"

namespace RT_BACKEND_NS {

namespace {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void store_f32(dptr<float> p, int64_t i, float x) { p[i] = x; }
__device__ __forceinline__ void store_f32(dptr<__nv_bfloat16> p, int64_t i, float x) { p[i] = __float2bfloat16(x); }

// Sizes and masking shared by every kernel.
struct Problem {
  int64_t heads, lq, lk;
  int dim;
  float scale;
  bool causal;
  bool has_lengths;
};

// Row i of batch entry b sees keys [0, limit(i)).
struct KeyLimit {
  int64_t keys, diag_offset;
  bool causal;
  __device__ __forceinline__ int64_t operator()(int64_t row) const {
    const int64_t causal_limit = causal ? row + diag_offset + 1 : keys;
    return max(int64_t(0), min(keys, causal_limit));
  }
};

__device__ __forceinline__ KeyLimit key_limit(const Problem& pr, dptr<const int32_t> kv_lengths, int64_t bh) {
  int64_t keys = pr.lk;
  if (pr.has_lengths) keys = max(int64_t(0), min(pr.lk, int64_t(kv_lengths[bh / pr.heads])));
  return {keys, pr.lk - pr.lq, pr.causal};
}

// Copies keys [k0, k0 + kKeys) of one head into padded f32 shared rows; zero past lk and dim.
template <int kKeys, int kMaxD, int kPitch, class T>
__device__ __forceinline__ void stage_keys(dptr<const T> src, int64_t bh, int64_t k0, const Problem& pr, float* dst) {
  for (int idx = threadIdx.x; idx < kKeys * kMaxD; idx += blockDim.x) {
    const int j = idx / kMaxD, d = idx % kMaxD;
    const int64_t key = k0 + j;
    dst[j * kPitch + d] = (key < pr.lk && d < pr.dim) ? to_f32(src[(bh * pr.lk + key) * pr.dim + d]) : 0.f;
  }
}

__device__ __forceinline__ float dot_row(const float* a, const float* b, int dim) {
  float s = 0.f;
#pragma unroll 8
  for (int d = 0; d < dim; ++d) s += a[d] * b[d];
  return s;
}

// ---------------------------------------------------------------------------------------------
// f32 SIMT forward

template <int kMaxD>
struct FwdSimt {
  static constexpr int kWarps = kMaxD <= 64 ? 4 : 2;
  static constexpr int kRowsPerWarp = 4;
  static constexpr int kRows = kWarps * kRowsPerWarp;
  static constexpr int kKeys = kMaxD <= 128 ? 32 : 16;
  static constexpr int kPitch = kMaxD + 1;  // lane j reads row j: conflict-free
  static constexpr int kPerLane = kMaxD / 32;
  static constexpr size_t kSmem = sizeof(float) * (kRows * kMaxD + 2 * kKeys * kPitch);
};

template <class T, int kMaxD>
__global__ void __launch_bounds__(FwdSimt<kMaxD>::kWarps * 32)
    attention_fwd_simt_kernel(dptr<const T> q, dptr<const T> k, dptr<const T> v, dptr<T> out, dptr<float> lse,
                              dptr<const int32_t> kv_lengths, Problem pr) {
  using C = FwdSimt<kMaxD>;
  RT_DYNAMIC_SHARED(float, smem);
  float* q_s = smem;
  float* k_s = q_s + C::kRows * kMaxD;
  float* v_s = k_s + C::kKeys * C::kPitch;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t bh = blockIdx.x;
  const int64_t row0 = int64_t(blockIdx.y) * C::kRows;
  const KeyLimit limit = key_limit(pr, kv_lengths, bh);

  for (int idx = threadIdx.x; idx < C::kRows * kMaxD; idx += blockDim.x) {
    const int r = idx / kMaxD, d = idx % kMaxD;
    const int64_t row = row0 + r;
    q_s[idx] = (row < pr.lq && d < pr.dim) ? to_f32(q[(bh * pr.lq + row) * pr.dim + d]) : 0.f;
  }

  float acc[C::kRowsPerWarp][C::kPerLane];
  float row_max[C::kRowsPerWarp], row_sum[C::kRowsPerWarp];
  int64_t row_limit[C::kRowsPerWarp];
#pragma unroll
  for (int rr = 0; rr < C::kRowsPerWarp; ++rr) {
    const int64_t row = row0 + warp * C::kRowsPerWarp + rr;
    row_limit[rr] = row < pr.lq ? limit(row) : 0;
    row_max[rr] = -INFINITY;
    row_sum[rr] = 0.f;
#pragma unroll
    for (int t = 0; t < C::kPerLane; ++t) acc[rr][t] = 0.f;
  }
  const int64_t block_keys = limit(min(row0 + C::kRows, pr.lq) - 1);

  for (int64_t k0 = 0; k0 < block_keys; k0 += C::kKeys) {
    __syncthreads();  // Q staged; the previous tile is consumed
    stage_keys<C::kKeys, kMaxD, C::kPitch>(k, bh, k0, pr, k_s);
    stage_keys<C::kKeys, kMaxD, C::kPitch>(v, bh, k0, pr, v_s);
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < C::kRowsPerWarp; ++rr) {
      const int64_t valid = row_limit[rr] - k0;
      if (valid <= 0) continue;  // warp-uniform
      const int r = warp * C::kRowsPerWarp + rr;
      float s = -INFINITY;
      if (lane < C::kKeys && lane < valid) s = dot_row(q_s + r * kMaxD, k_s + lane * C::kPitch, pr.dim) * pr.scale;
      const float new_max = fmaxf(row_max[rr], warp_max(s));
      const float correction = expf(row_max[rr] - new_max);
      const float prob = expf(s - new_max);
      row_sum[rr] = row_sum[rr] * correction + warp_sum(prob);
      row_max[rr] = new_max;
#pragma unroll
      for (int t = 0; t < C::kPerLane; ++t) acc[rr][t] *= correction;
      const int keys_here = static_cast<int>(min(valid, int64_t(C::kKeys)));
      for (int j = 0; j < keys_here; ++j) {
        const float pj = __shfl_sync(kFullMask, prob, j);
#pragma unroll
        for (int t = 0; t < C::kPerLane; ++t) acc[rr][t] += pj * v_s[j * C::kPitch + lane + 32 * t];
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < C::kRowsPerWarp; ++rr) {
    const int64_t row = row0 + warp * C::kRowsPerWarp + rr;
    if (row >= pr.lq) continue;
    const float inv = row_sum[rr] > 0.f ? 1.f / row_sum[rr] : 0.f;
#pragma unroll
    for (int t = 0; t < C::kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < pr.dim) store_f32(out, (bh * pr.lq + row) * pr.dim + d, acc[rr][t] * inv);
    }
    if (lane == 0) lse[bh * pr.lq + row] = row_sum[rr] > 0.f ? row_max[rr] + logf(row_sum[rr]) : -INFINITY;
  }
}

// ---------------------------------------------------------------------------------------------
// bf16 WMMA forward

// Rows of kD bf16 staged in shared memory for WMMA loads, by every WMMA kernel.
template <int kD>
struct Bf16Rows {
  static constexpr int kChunks = kD / 8;  // 16-byte chunks per row
  static constexpr int kPitch = kD + 8;   // rows stay 16-byte aligned (32 at multiples of 16 rows), banks shift
};

template <int kD>
struct FwdWmma {
  static constexpr int kWarps = 4;
  static constexpr int kRows = 16 * kWarps;
  static constexpr int kKeys = 32;
  static constexpr int kFrags = kD / 16;
  static constexpr int kPitch = Bf16Rows<kD>::kPitch;
  static constexpr int kSPitch = kKeys + 4;      // f32 scores / PV scratch
  static constexpr int kPPitch = kKeys + 8;      // bf16 probabilities
  // Q is staged through the K/V region before the first tile (kRows == 2 * kKeys rows).
  static constexpr size_t kKvBytes = 2 * kKeys * kPitch * sizeof(__nv_bfloat16);
  static constexpr size_t kSBytes = kWarps * 16 * kSPitch * sizeof(float);
  static constexpr size_t kPBytes = kWarps * 16 * kPPitch * sizeof(__nv_bfloat16);
  static constexpr size_t kSmem = kKvBytes + kSBytes + kPBytes;
  static_assert(kRows * kPitch * sizeof(__nv_bfloat16) <= kKvBytes, "Q staging fits the K/V region");
};

// Copies `rows` rows of kD bf16 starting at `first` (rows >= limit read as zero) in 16-byte chunks.
template <int kD>
__device__ __forceinline__ void stage_bf16_rows(dptr<const __nv_bfloat16> src, int64_t first, int rows, int64_t limit,
                                                __nv_bfloat16* dst) {
  using C = Bf16Rows<kD>;
  for (int idx = threadIdx.x; idx < rows * C::kChunks; idx += blockDim.x) {
    const int r = idx / C::kChunks, c = idx % C::kChunks;
    uint4 chunk = make_uint4(0, 0, 0, 0);
    if (first + r < limit) chunk = dptr_cast<const uint4>(src + (first + r) * kD)[c];
    *reinterpret_cast<uint4*>(dst + r * C::kPitch + c * 8) = chunk;
  }
}

template <int kD>
__global__ void __launch_bounds__(128)
    attention_fwd_wmma_kernel(dptr<const __nv_bfloat16> q, dptr<const __nv_bfloat16> k, dptr<const __nv_bfloat16> v,
                              dptr<__nv_bfloat16> out, dptr<float> lse, dptr<const int32_t> kv_lengths, Problem pr) {
  using namespace nvcuda;
  using C = FwdWmma<kD>;
  RT_DYNAMIC_SHARED(unsigned char, smem);
  __nv_bfloat16* k_s = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* v_s = k_s + C::kKeys * C::kPitch;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* s_w = reinterpret_cast<float*>(smem + C::kKvBytes) + warp * 16 * C::kSPitch;
  __nv_bfloat16* p_w = reinterpret_cast<__nv_bfloat16*>(smem + C::kKvBytes + C::kSBytes) + warp * 16 * C::kPPitch;
  const int64_t bh = blockIdx.x;
  const int64_t row0 = int64_t(blockIdx.y) * C::kRows;
  const KeyLimit limit = key_limit(pr, kv_lengths, bh);

  stage_bf16_rows<kD>(q + bh * pr.lq * kD, row0, C::kRows, pr.lq, k_s);
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> q_frag[C::kFrags];
#pragma unroll
  for (int f = 0; f < C::kFrags; ++f) wmma::load_matrix_sync(q_frag[f], k_s + warp * 16 * C::kPitch + f * 16, C::kPitch);

  // Lanes 2r and 2r+1 own row r of the warp's 16: columns [16 half, 16 half + 16) of a score
  // tile and [8 half, 8 half + 8) of each 16-wide output fragment.
  const int my_row = lane >> 1, half = lane & 1;
  const int64_t row = row0 + warp * 16 + my_row;
  const int64_t row_limit = row < pr.lq ? limit(row) : 0;
  float o[C::kFrags][8];
#pragma unroll
  for (int f = 0; f < C::kFrags; ++f)
#pragma unroll
    for (int e = 0; e < 8; ++e) o[f][e] = 0.f;
  float row_max = -INFINITY, row_sum = 0.f;
  const int64_t block_keys = limit(min(row0 + C::kRows, pr.lq) - 1);

  for (int64_t k0 = 0; k0 < block_keys; k0 += C::kKeys) {
    __syncthreads();  // Q fragments loaded; the previous tile is consumed
    stage_bf16_rows<kD>(k + bh * pr.lk * kD, k0, C::kKeys, pr.lk, k_s);
    stage_bf16_rows<kD>(v + bh * pr.lk * kD, k0, C::kKeys, pr.lk, v_s);
    __syncthreads();

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
#pragma unroll
    for (int n = 0; n < C::kKeys / 16; ++n) {
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int f = 0; f < C::kFrags; ++f) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> k_frag;
        wmma::load_matrix_sync(k_frag, k_s + n * 16 * C::kPitch + f * 16, C::kPitch);
        wmma::mma_sync(acc, q_frag[f], k_frag, acc);
      }
      wmma::store_matrix_sync(s_w + n * 16, acc, C::kSPitch, wmma::mem_row_major);
    }
    __syncwarp();

    const int64_t valid = row_limit - k0;
    float scores[16];
    float tile_max = -INFINITY;
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      const int col = half * 16 + c;
      scores[c] = col < valid ? s_w[my_row * C::kSPitch + col] * pr.scale : -INFINITY;
      tile_max = fmaxf(tile_max, scores[c]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 1));
    const float new_max = fmaxf(row_max, tile_max);
    const bool seen = new_max != -INFINITY;
    const float correction = seen ? expf(row_max - new_max) : 1.f;
    float sum = 0.f;
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      // The f32 sum keeps lse exact for the backward; P V uses P rounded to bf16.
      const float prob = seen ? expf(scores[c] - new_max) : 0.f;
      p_w[my_row * C::kPPitch + half * 16 + c] = __float2bfloat16(prob);
      sum += prob;
    }
    sum += __shfl_xor_sync(kFullMask, sum, 1);
    row_sum = row_sum * correction + sum;
    row_max = new_max;
    __syncwarp();

#pragma unroll
    for (int f = 0; f < C::kFrags; ++f) {
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < C::kKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> p_frag;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> v_frag;
        wmma::load_matrix_sync(p_frag, p_w + kk * 16, C::kPPitch);
        wmma::load_matrix_sync(v_frag, v_s + kk * 16 * C::kPitch + f * 16, C::kPitch);
        wmma::mma_sync(acc, p_frag, v_frag, acc);
      }
      wmma::store_matrix_sync(s_w, acc, C::kSPitch, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int e = 0; e < 8; ++e) o[f][e] = o[f][e] * correction + s_w[my_row * C::kSPitch + half * 8 + e];
      __syncwarp();
    }
  }

  if (row < pr.lq) {
    const float inv = row_sum > 0.f ? 1.f / row_sum : 0.f;
#pragma unroll
    for (int f = 0; f < C::kFrags; ++f)
#pragma unroll
      for (int e = 0; e < 8; ++e) out[(bh * pr.lq + row) * kD + f * 16 + half * 8 + e] = __float2bfloat16(o[f][e] * inv);
    if (half == 0) lse[bh * pr.lq + row] = row_sum > 0.f ? row_max + logf(row_sum) : -INFINITY;
  }
}

// ---------------------------------------------------------------------------------------------
// f32 SIMT backward: dQ

template <int kMaxD>
struct BwdDq {
  static constexpr int kWarps = kMaxD <= 64 ? 4 : 2;
  static constexpr int kRowsPerWarp = 4;
  static constexpr int kRows = kWarps * kRowsPerWarp;
  static constexpr int kKeys = kMaxD <= 128 ? 32 : 8;
  static constexpr int kPitch = kMaxD + 1;
  static constexpr int kPerLane = kMaxD / 32;
  static constexpr size_t kSmem = sizeof(float) * (2 * kRows * kMaxD + 2 * kKeys * kPitch);
};

template <class T, int kMaxD>
__global__ void __launch_bounds__(BwdDq<kMaxD>::kWarps * 32, 1)
    attention_bwd_dq_kernel(dptr<const T> q, dptr<const T> k, dptr<const T> v, dptr<const T> out, dptr<const T> dout,
                            dptr<const float> lse, dptr<const int32_t> kv_lengths, dptr<T> dq, Problem pr) {
  using C = BwdDq<kMaxD>;
  RT_DYNAMIC_SHARED(float, smem);
  float* q_s = smem;
  float* do_s = q_s + C::kRows * kMaxD;
  float* k_s = do_s + C::kRows * kMaxD;
  float* v_s = k_s + C::kKeys * C::kPitch;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t bh = blockIdx.x;
  const int64_t row0 = int64_t(blockIdx.y) * C::kRows;
  const KeyLimit limit = key_limit(pr, kv_lengths, bh);

  for (int idx = threadIdx.x; idx < C::kRows * kMaxD; idx += blockDim.x) {
    const int r = idx / kMaxD, d = idx % kMaxD;
    const int64_t row = row0 + r;
    const bool inside = row < pr.lq && d < pr.dim;
    q_s[idx] = inside ? to_f32(q[(bh * pr.lq + row) * pr.dim + d]) : 0.f;
    do_s[idx] = inside ? to_f32(dout[(bh * pr.lq + row) * pr.dim + d]) : 0.f;
  }
  __syncthreads();

  float acc[C::kRowsPerWarp][C::kPerLane];
  float row_lse[C::kRowsPerWarp], row_delta[C::kRowsPerWarp];
  int64_t row_limit[C::kRowsPerWarp];
#pragma unroll
  for (int rr = 0; rr < C::kRowsPerWarp; ++rr) {
    const int r = warp * C::kRowsPerWarp + rr;
    const int64_t row = row0 + r;
    const bool inside = row < pr.lq;
    row_limit[rr] = inside ? limit(row) : 0;
    row_lse[rr] = inside ? lse[bh * pr.lq + row] : 0.f;
    float partial = 0.f;
    for (int d = lane; d < pr.dim && inside; d += 32) partial += do_s[r * kMaxD + d] * to_f32(out[(bh * pr.lq + row) * pr.dim + d]);
    row_delta[rr] = warp_sum(partial);
#pragma unroll
    for (int t = 0; t < C::kPerLane; ++t) acc[rr][t] = 0.f;
  }
  const int64_t block_keys = limit(min(row0 + C::kRows, pr.lq) - 1);

  for (int64_t k0 = 0; k0 < block_keys; k0 += C::kKeys) {
    __syncthreads();
    stage_keys<C::kKeys, kMaxD, C::kPitch>(k, bh, k0, pr, k_s);
    stage_keys<C::kKeys, kMaxD, C::kPitch>(v, bh, k0, pr, v_s);
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < C::kRowsPerWarp; ++rr) {
      const int64_t valid = row_limit[rr] - k0;
      if (valid <= 0) continue;  // warp-uniform
      const int r = warp * C::kRowsPerWarp + rr;
      float dscore = 0.f;
      if (lane < C::kKeys && lane < valid) {
        const float prob = expf(dot_row(q_s + r * kMaxD, k_s + lane * C::kPitch, pr.dim) * pr.scale - row_lse[rr]);
        const float dprob = dot_row(do_s + r * kMaxD, v_s + lane * C::kPitch, pr.dim);
        dscore = prob * (dprob - row_delta[rr]) * pr.scale;
      }
      const int keys_here = static_cast<int>(min(valid, int64_t(C::kKeys)));
      for (int j = 0; j < keys_here; ++j) {
        const float ds = __shfl_sync(kFullMask, dscore, j);
#pragma unroll
        for (int t = 0; t < C::kPerLane; ++t) acc[rr][t] += ds * k_s[j * C::kPitch + lane + 32 * t];
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < C::kRowsPerWarp; ++rr) {
    const int64_t row = row0 + warp * C::kRowsPerWarp + rr;
    if (row >= pr.lq) continue;
#pragma unroll
    for (int t = 0; t < C::kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < pr.dim) store_f32(dq, (bh * pr.lq + row) * pr.dim + d, acc[rr][t]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// f32 SIMT backward: dK, dV

template <int kMaxD>
struct BwdDkdv {
  static constexpr int kKeys = kMaxD <= 64 ? 32 : kMaxD <= 128 ? 16 : 8;
  static constexpr int kPitch = kMaxD + 1;
  static constexpr int kPerLane = kMaxD / 32;
  static constexpr size_t kSmem = sizeof(float) * (4 * kKeys * kPitch + 2 * kMaxD);
};

template <class T, int kMaxD>
__global__ void __launch_bounds__(32)
    attention_bwd_dkdv_kernel(dptr<const T> q, dptr<const T> k, dptr<const T> v, dptr<const T> out, dptr<const T> dout,
                              dptr<const float> lse, dptr<const int32_t> kv_lengths, dptr<T> dk, dptr<T> dv, Problem pr) {
  using C = BwdDkdv<kMaxD>;
  RT_DYNAMIC_SHARED(float, smem);
  float* k_s = smem;
  float* v_s = k_s + C::kKeys * C::kPitch;
  float* dk_s = v_s + C::kKeys * C::kPitch;
  float* dv_s = dk_s + C::kKeys * C::kPitch;
  float* q_row = dv_s + C::kKeys * C::kPitch;
  float* do_row = q_row + kMaxD;
  const int lane = threadIdx.x;
  const int64_t bh = blockIdx.x;
  const int64_t k0 = int64_t(blockIdx.y) * C::kKeys;
  const KeyLimit limit = key_limit(pr, kv_lengths, bh);

  stage_keys<C::kKeys, kMaxD, C::kPitch>(k, bh, k0, pr, k_s);
  stage_keys<C::kKeys, kMaxD, C::kPitch>(v, bh, k0, pr, v_s);
  for (int idx = lane; idx < C::kKeys * C::kPitch; idx += 32) {
    dk_s[idx] = 0.f;
    dv_s[idx] = 0.f;
  }
  __syncwarp();

  // Rows before the causal diagonal reaches k0 see none of these keys; nor does any row when
  // the kv length ends before k0.
  const int64_t first_row = k0 >= limit.keys ? pr.lq : (pr.causal ? max(int64_t(0), k0 - limit.diag_offset) : 0);
  for (int64_t i = first_row; i < pr.lq; ++i) {
    const int64_t valid = limit(i) - k0;
    if (valid <= 0) continue;  // warp-uniform
    float partial = 0.f;
#pragma unroll
    for (int t = 0; t < C::kPerLane; ++t) {
      const int d = lane + 32 * t;
      const bool inside = d < pr.dim;
      const float g = inside ? to_f32(dout[(bh * pr.lq + i) * pr.dim + d]) : 0.f;
      q_row[d] = inside ? to_f32(q[(bh * pr.lq + i) * pr.dim + d]) : 0.f;
      do_row[d] = g;
      if (inside) partial += g * to_f32(out[(bh * pr.lq + i) * pr.dim + d]);
    }
    const float delta = warp_sum(partial);  // also orders the row writes before the reads below
    __syncwarp();
    if (lane < C::kKeys && lane < valid) {
      const float prob = expf(dot_row(q_row, k_s + lane * C::kPitch, pr.dim) * pr.scale - lse[bh * pr.lq + i]);
      const float dprob = dot_row(do_row, v_s + lane * C::kPitch, pr.dim);
      const float dscore = prob * (dprob - delta) * pr.scale;
      float* dk_j = dk_s + lane * C::kPitch;
      float* dv_j = dv_s + lane * C::kPitch;
#pragma unroll 4
      for (int d = 0; d < pr.dim; ++d) {
        dv_j[d] += prob * do_row[d];
        dk_j[d] += dscore * q_row[d];
      }
    }
    __syncwarp();  // q_row / do_row are rewritten by the next row
  }

  for (int idx = lane; idx < C::kKeys * pr.dim; idx += 32) {
    const int j = idx / pr.dim, d = idx % pr.dim;
    const int64_t key = k0 + j;
    if (key >= pr.lk) break;
    store_f32(dk, (bh * pr.lk + key) * pr.dim + d, dk_s[j * C::kPitch + d]);
    store_f32(dv, (bh * pr.lk + key) * pr.dim + d, dv_s[j * C::kPitch + d]);
  }
}

// ---------------------------------------------------------------------------------------------
// bf16 WMMA backward: delta, dK/dV, dQ

// Operands: A row-major; B row-major (a tile as staged) or col-major (the staged tile transposed).
using Accumulator = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;
using ARowFrag = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major>;
using BRowFrag = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major>;
using BColFrag = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::col_major>;

// Tiling both WMMA backward kernels share: a warp owns 16 rows of its side (keys for dK/dV,
// query rows for dQ) and meets the other side 32 rows at a time, so each 16 x 32 score tile
// goes through a per-warp f32 scratch (S, then dP) and a bf16 one (P or dS, the next A operand).
template <int kD>
struct BwdWmma {
  static constexpr int kFrags = kD / 16;
  static constexpr int kPitch = Bf16Rows<kD>::kPitch;
  static constexpr int kStep = 32;              // rows of the other side per step
  static constexpr int kSPitch = kStep + 4;     // f32 scratch, also 16 x 16 accumulator stores
  static constexpr int kPPitch = kStep + 8;     // bf16 scratch
  static constexpr size_t kWarpSBytes = 16 * kSPitch * sizeof(float);
  static constexpr size_t kWarpPBytes = 16 * kPPitch * sizeof(__nv_bfloat16);
};

// The 8 bf16 of a 16-byte chunk (element 0 in the low half of x) widened to f32, exactly.
__device__ __forceinline__ void widen_chunk(const uint4& chunk, float (&x)[8]) {
  const unsigned words[4] = {chunk.x, chunk.y, chunk.z, chunk.w};
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    x[2 * w] = __uint_as_float(words[w] << 16);
    x[2 * w + 1] = __uint_as_float(words[w] & 0xffff0000u);
  }
}

constexpr int kDeltaLanesPerRow = 8;
constexpr int kDeltaThreads = 128;

// delta_i = dO_i . O_i (f32) for every query row of every head, read by both kernels below.
// kDeltaLanesPerRow lanes share a row, each summing 16-byte chunks, so a warp reads 4
// consecutive rows (contiguous memory) per pass.
template <int kD>
__global__ void __launch_bounds__(kDeltaThreads)
    attention_bwd_delta_kernel(dptr<const __nv_bfloat16> out, dptr<const __nv_bfloat16> dout, dptr<float> delta,
                               int64_t rows) {
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kDeltaLanesPerRow;
  const int part = threadIdx.x % kDeltaLanesPerRow;
  float sum = 0.f;
  if (row < rows) {
    for (int c = part; c < Bf16Rows<kD>::kChunks; c += kDeltaLanesPerRow) {
      float o[8], g[8];
      widen_chunk(dptr_cast<const uint4>(out + row * kD)[c], o);
      widen_chunk(dptr_cast<const uint4>(dout + row * kD)[c], g);
#pragma unroll
      for (int e = 0; e < 8; ++e) sum += o[e] * g[e];
    }
  }
#pragma unroll
  for (int offset = kDeltaLanesPerRow / 2; offset > 0; offset >>= 1) sum += __shfl_xor_sync(kFullMask, sum, offset);
  if (part == 0 && row < rows) delta[row] = sum;
}

// Writes a warp's 16 x kD accumulator rows as bf16 to dst (row r at dst + r * kD) for r < rows,
// through the warp's f32 scratch: lanes 2r and 2r+1 each write half of row r's 16 columns.
template <int kD>
__device__ __forceinline__ void store_accumulator_rows(const Accumulator (&acc)[kD / 16], float* scratch,
                                                       dptr<__nv_bfloat16> dst, int64_t rows) {
  using C = BwdWmma<kD>;
  const int lane = threadIdx.x & 31, r = lane >> 1, half = lane & 1;
#pragma unroll
  for (int f = 0; f < C::kFrags; ++f) {
    nvcuda::wmma::store_matrix_sync(scratch, acc[f], C::kSPitch, nvcuda::wmma::mem_row_major);
    __syncwarp();
    if (r < rows) {
      const float* src = scratch + r * C::kSPitch + half * 8;
      dptr<__nv_bfloat162> pairs = dptr_cast<__nv_bfloat162>(dst + r * kD + f * 16 + half * 8);
#pragma unroll
      for (int e = 0; e < 4; ++e) pairs[e] = __floats2bfloat162_rn(src[2 * e], src[2 * e + 1]);
    }
    __syncwarp();  // the next fragment overwrites the scratch
  }
}

// The products of a backward step, each for one warp's 16 rows against kStep rows of the other
// side (all bf16 in shared memory with pitch kPitch; f32 scratch with pitch kSPitch).

// s = A B^T (16 x kStep, f32): A is 16 rows of kD at `a`, B kStep rows at `b`. The A fragments
// are loaded as they are used and the loop is unrolled by 2, not fully: the dK/dV kernel keeps
// dK, dV and P live, and hoisting every load of a fully unrolled loop makes D = 112 and 128
// spill on sm_80.
template <int kD>
__device__ __forceinline__ void product_bt_to_scratch(const __nv_bfloat16* a, const __nv_bfloat16* b, float* s) {
  using C = BwdWmma<kD>;
  Accumulator acc;
#pragma unroll
  for (int n = 0; n < C::kStep / 16; ++n) {
    nvcuda::wmma::fill_fragment(acc, 0.f);
#pragma unroll 2
    for (int f = 0; f < C::kFrags; ++f) {
      ARowFrag a_frag;
      BColFrag bt_frag;
      nvcuda::wmma::load_matrix_sync(a_frag, a + f * 16, C::kPitch);
      nvcuda::wmma::load_matrix_sync(bt_frag, b + n * 16 * C::kPitch + f * 16, C::kPitch);
      nvcuda::wmma::mma_sync(acc, a_frag, bt_frag, acc);
    }
    nvcuda::wmma::store_matrix_sync(s + n * 16, acc, C::kSPitch, nvcuda::wmma::mem_row_major);
  }
}

// The same with A already in fragments (the dQ kernel keeps Q and dO in registers).
template <int kD>
__device__ __forceinline__ void product_bt_to_scratch(const ARowFrag (&a)[kD / 16], const __nv_bfloat16* b, float* s) {
  using C = BwdWmma<kD>;
  Accumulator acc;
#pragma unroll
  for (int n = 0; n < C::kStep / 16; ++n) {
    nvcuda::wmma::fill_fragment(acc, 0.f);
#pragma unroll
    for (int f = 0; f < C::kFrags; ++f) {
      BColFrag bt_frag;
      nvcuda::wmma::load_matrix_sync(bt_frag, b + n * 16 * C::kPitch + f * 16, C::kPitch);
      nvcuda::wmma::mma_sync(acc, a[f], bt_frag, acc);
    }
    nvcuda::wmma::store_matrix_sync(s + n * 16, acc, C::kSPitch, nvcuda::wmma::mem_row_major);
  }
}

// acc += P B: P is the warp's 16 x kStep bf16 scratch (pitch kPPitch), B kStep rows of kD at `b`.
template <int kD>
__device__ __forceinline__ void accumulate_scratch_product(Accumulator (&acc)[kD / 16], const __nv_bfloat16* p,
                                                           const __nv_bfloat16* b) {
  using C = BwdWmma<kD>;
  ARowFrag p_frag[C::kStep / 16];
#pragma unroll
  for (int kk = 0; kk < C::kStep / 16; ++kk) nvcuda::wmma::load_matrix_sync(p_frag[kk], p + kk * 16, C::kPPitch);
#pragma unroll
  for (int f = 0; f < C::kFrags; ++f) {
#pragma unroll
    for (int kk = 0; kk < C::kStep / 16; ++kk) {
      BRowFrag b_frag;
      nvcuda::wmma::load_matrix_sync(b_frag, b + kk * 16 * C::kPitch + f * 16, C::kPitch);
      nvcuda::wmma::mma_sync(acc[f], p_frag[kk], b_frag, acc[f]);
    }
  }
}

// dK/dV: a block owns kKeys keys (16 per warp) and walks the query tiles that can see them.
template <int kD>
struct BwdDkdvWmma : BwdWmma<kD> {
  using B = BwdWmma<kD>;
  static constexpr int kWarps = kD <= 64 ? 4 : 2;  // keeps shared memory under 48 KB
  static constexpr int kKeys = 16 * kWarps;
  static constexpr int kRows = B::kStep;
  static constexpr size_t kTileBytes = (2 * kKeys + 2 * kRows) * B::kPitch * sizeof(__nv_bfloat16);  // K V Q dO
  static constexpr size_t kSBytes = kWarps * B::kWarpSBytes;
  static constexpr size_t kPBytes = kWarps * B::kWarpPBytes;
  static constexpr size_t kRowStatBytes = 2 * kRows * sizeof(float);  // lse, delta
  static constexpr size_t kSmem = kTileBytes + kSBytes + kPBytes + kRowStatBytes;
  static_assert(kSmem <= 48 * 1024, "fits the shared memory a launch gets without opt-in");
};

template <int kD>
__global__ void __launch_bounds__(BwdDkdvWmma<kD>::kWarps * 32)
    attention_bwd_dkdv_wmma_kernel(dptr<const __nv_bfloat16> q, dptr<const __nv_bfloat16> k,
                                   dptr<const __nv_bfloat16> v, dptr<const __nv_bfloat16> dout, dptr<const float> lse,
                                   dptr<const float> delta, dptr<const int32_t> kv_lengths, dptr<__nv_bfloat16> dk,
                                   dptr<__nv_bfloat16> dv, Problem pr) {
  using namespace nvcuda;
  using C = BwdDkdvWmma<kD>;
  RT_DYNAMIC_SHARED(unsigned char, smem);
  __nv_bfloat16* k_s = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* v_s = k_s + C::kKeys * C::kPitch;
  __nv_bfloat16* q_s = v_s + C::kKeys * C::kPitch;
  __nv_bfloat16* do_s = q_s + C::kRows * C::kPitch;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* s_w = reinterpret_cast<float*>(smem + C::kTileBytes) + warp * 16 * C::kSPitch;
  __nv_bfloat16* p_w = reinterpret_cast<__nv_bfloat16*>(smem + C::kTileBytes + C::kSBytes) + warp * 16 * C::kPPitch;
  float* lse_s = reinterpret_cast<float*>(smem + C::kTileBytes + C::kSBytes + C::kPBytes);
  float* delta_s = lse_s + C::kRows;
  const int64_t bh = blockIdx.x;
  const int64_t k0 = int64_t(blockIdx.y) * C::kKeys;
  const int64_t warp_k0 = k0 + warp * 16;
  const KeyLimit limit = key_limit(pr, kv_lengths, bh);

  stage_bf16_rows<kD>(k + bh * pr.lk * kD, k0, C::kKeys, pr.lk, k_s);
  stage_bf16_rows<kD>(v + bh * pr.lk * kD, k0, C::kKeys, pr.lk, v_s);
  const __nv_bfloat16* k_w = k_s + warp * 16 * C::kPitch;
  const __nv_bfloat16* v_w = v_s + warp * 16 * C::kPitch;

  Accumulator dk_acc[C::kFrags], dv_acc[C::kFrags];
#pragma unroll
  for (int f = 0; f < C::kFrags; ++f) {
    wmma::fill_fragment(dk_acc[f], 0.f);
    wmma::fill_fragment(dv_acc[f], 0.f);
  }

  // Lanes 2j and 2j+1 own key j of the warp's 16: query columns [16 half, 16 half + 16) of a tile.
  const int my_key = lane >> 1, half = lane & 1;
  const int64_t key = warp_k0 + my_key;
  // Rows before the causal diagonal reaches k0 see none of the block's keys; nor does any row
  // when the kv length ends before k0. Later rows see at least key k0.
  const int64_t first_row = k0 >= limit.keys ? pr.lq : (pr.causal ? max(int64_t(0), k0 - limit.diag_offset) : 0);
  for (int64_t q0 = first_row / C::kRows * C::kRows; q0 < pr.lq; q0 += C::kRows) {
    __syncthreads();  // K/V staged; the previous tile is consumed
    stage_bf16_rows<kD>(q + bh * pr.lq * kD, q0, C::kRows, pr.lq, q_s);
    stage_bf16_rows<kD>(dout + bh * pr.lq * kD, q0, C::kRows, pr.lq, do_s);
    for (int i = threadIdx.x; i < C::kRows; i += blockDim.x) {
      const int64_t row = q0 + i;
      const bool inside = row < pr.lq;
      lse_s[i] = inside ? lse[bh * pr.lq + row] : -INFINITY;  // -inf: the row sees nothing
      delta_s[i] = inside ? delta[bh * pr.lq + row] : 0.f;
    }
    __syncthreads();
    // The tile's last row sees the most keys: when it misses the warp's first key, so do all.
    if (warp_k0 >= limit(min(q0 + C::kRows, pr.lq) - 1)) continue;  // warp-uniform

    // S^T = K Q^T (16 keys x 32 rows), then P^T = exp(scale S^T - lse), 0 where hidden.
    product_bt_to_scratch<kD>(k_w, q_s, s_w);
    __syncwarp();
    float prob[16];
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      const int col = half * 16 + c;
      const float row_lse = lse_s[col];
      const bool visible = row_lse != -INFINITY && key < limit(q0 + col);
      prob[c] = visible ? expf(s_w[my_key * C::kSPitch + col] * pr.scale - row_lse) : 0.f;
      p_w[my_key * C::kPPitch + col] = __float2bfloat16(prob[c]);
    }
    __syncwarp();

    // dV += P^T dO
    accumulate_scratch_product<kD>(dv_acc, p_w, do_s);

    // dP^T = V dO^T, then dS^T = P^T (dP^T - delta) scale into the bf16 scratch (P^T is in f32
    // in prob).
    product_bt_to_scratch<kD>(v_w, do_s, s_w);
    __syncwarp();
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      const int col = half * 16 + c;
      const float dscore = prob[c] * (s_w[my_key * C::kSPitch + col] - delta_s[col]) * pr.scale;
      p_w[my_key * C::kPPitch + col] = __float2bfloat16(dscore);
    }
    __syncwarp();

    // dK += dS^T Q
    accumulate_scratch_product<kD>(dk_acc, p_w, q_s);
  }

  if (warp_k0 < pr.lk) {  // warp-uniform: the last block's last warps may lie wholly past Lk
    const int64_t keys_here = min(int64_t(16), pr.lk - warp_k0);
    store_accumulator_rows<kD>(dk_acc, s_w, dk + (bh * pr.lk + warp_k0) * kD, keys_here);
    store_accumulator_rows<kD>(dv_acc, s_w, dv + (bh * pr.lk + warp_k0) * kD, keys_here);
  }
}

// dQ: a block owns kRows query rows (16 per warp, Q and dO fragments kept in registers) and
// walks the key tiles its rows can see.
template <int kD>
struct BwdDqWmma : BwdWmma<kD> {
  using B = BwdWmma<kD>;
  static constexpr int kWarps = 4;
  static constexpr int kRows = 16 * kWarps;
  static constexpr int kKeys = B::kStep;
  // Q, then dO, are staged through the K/V region before the first tile (kRows == 2 * kKeys rows).
  static constexpr size_t kKvBytes = 2 * kKeys * B::kPitch * sizeof(__nv_bfloat16);
  static constexpr size_t kSBytes = kWarps * B::kWarpSBytes;
  static constexpr size_t kPBytes = kWarps * B::kWarpPBytes;
  static constexpr size_t kSmem = kKvBytes + kSBytes + kPBytes;
  static_assert(kRows * B::kPitch * sizeof(__nv_bfloat16) <= kKvBytes, "Q and dO staging fit the K/V region");
  static_assert(kSmem <= 48 * 1024, "fits the shared memory a launch gets without opt-in");
};

template <int kD>
__global__ void __launch_bounds__(BwdDqWmma<kD>::kWarps * 32)
    attention_bwd_dq_wmma_kernel(dptr<const __nv_bfloat16> q, dptr<const __nv_bfloat16> k,
                                 dptr<const __nv_bfloat16> v, dptr<const __nv_bfloat16> dout, dptr<const float> lse,
                                 dptr<const float> delta, dptr<const int32_t> kv_lengths, dptr<__nv_bfloat16> dq,
                                 Problem pr) {
  using namespace nvcuda;
  using C = BwdDqWmma<kD>;
  RT_DYNAMIC_SHARED(unsigned char, smem);
  __nv_bfloat16* k_s = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* v_s = k_s + C::kKeys * C::kPitch;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* s_w = reinterpret_cast<float*>(smem + C::kKvBytes) + warp * 16 * C::kSPitch;
  __nv_bfloat16* p_w = reinterpret_cast<__nv_bfloat16*>(smem + C::kKvBytes + C::kSBytes) + warp * 16 * C::kPPitch;
  const int64_t bh = blockIdx.x;
  const int64_t row0 = int64_t(blockIdx.y) * C::kRows;
  const int64_t warp_row0 = row0 + warp * 16;
  const KeyLimit limit = key_limit(pr, kv_lengths, bh);

  ARowFrag q_frag[C::kFrags], do_frag[C::kFrags];
  stage_bf16_rows<kD>(q + bh * pr.lq * kD, row0, C::kRows, pr.lq, k_s);
  __syncthreads();
#pragma unroll
  for (int f = 0; f < C::kFrags; ++f) wmma::load_matrix_sync(q_frag[f], k_s + warp * 16 * C::kPitch + f * 16, C::kPitch);
  __syncthreads();
  stage_bf16_rows<kD>(dout + bh * pr.lq * kD, row0, C::kRows, pr.lq, k_s);
  __syncthreads();
#pragma unroll
  for (int f = 0; f < C::kFrags; ++f) wmma::load_matrix_sync(do_frag[f], k_s + warp * 16 * C::kPitch + f * 16, C::kPitch);

  // Lanes 2r and 2r+1 own row r of the warp's 16: key columns [16 half, 16 half + 16) of a tile.
  const int my_row = lane >> 1, half = lane & 1;
  const int64_t row = warp_row0 + my_row;
  const bool inside = row < pr.lq;
  const int64_t row_limit = inside ? limit(row) : 0;
  const float row_lse = inside ? lse[bh * pr.lq + row] : -INFINITY;
  const float row_delta = inside ? delta[bh * pr.lq + row] : 0.f;
  Accumulator dq_acc[C::kFrags];
#pragma unroll
  for (int f = 0; f < C::kFrags; ++f) wmma::fill_fragment(dq_acc[f], 0.f);
  const int64_t block_keys = limit(min(row0 + C::kRows, pr.lq) - 1);
  const int64_t warp_keys = warp_row0 < pr.lq ? limit(min(warp_row0 + 16, pr.lq) - 1) : 0;

  for (int64_t k0 = 0; k0 < block_keys; k0 += C::kKeys) {
    __syncthreads();  // Q and dO fragments loaded; the previous tile is consumed
    stage_bf16_rows<kD>(k + bh * pr.lk * kD, k0, C::kKeys, pr.lk, k_s);
    stage_bf16_rows<kD>(v + bh * pr.lk * kD, k0, C::kKeys, pr.lk, v_s);
    __syncthreads();
    if (k0 >= warp_keys) continue;  // warp-uniform: none of the warp's rows sees this tile

    // S = Q K^T (16 rows x 32 keys), then P = exp(scale S - lse), 0 where hidden.
    product_bt_to_scratch<kD>(q_frag, k_s, s_w);
    __syncwarp();
    const int64_t valid = row_limit - k0;
    const bool seen = row_lse != -INFINITY;
    float prob[16];
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      const int col = half * 16 + c;
      prob[c] = seen && col < valid ? expf(s_w[my_row * C::kSPitch + col] * pr.scale - row_lse) : 0.f;
    }
    __syncwarp();

    // dP = dO V^T, then dS = P (dP - delta) scale into the bf16 scratch.
    product_bt_to_scratch<kD>(do_frag, v_s, s_w);
    __syncwarp();
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      const int col = half * 16 + c;
      const float dscore = prob[c] * (s_w[my_row * C::kSPitch + col] - row_delta) * pr.scale;
      p_w[my_row * C::kPPitch + col] = __float2bfloat16(dscore);
    }
    __syncwarp();

    // dQ += dS K
    accumulate_scratch_product<kD>(dq_acc, p_w, k_s);
  }

  if (warp_row0 < pr.lq)  // warp-uniform: the last block's last warps may lie wholly past Lq
    store_accumulator_rows<kD>(dq_acc, s_w, dq + (bh * pr.lq + warp_row0) * kD, min(int64_t(16), pr.lq - warp_row0));
}

// ---------------------------------------------------------------------------------------------
// Launchers

Problem problem_of(int64_t heads, int64_t lq, int64_t lk, int64_t dim, float scale, bool causal, const int32_t* kv_lengths) {
  return {heads, lq, lk, static_cast<int>(dim), scale, causal, kv_lengths != nullptr};
}

dim3 grid_of(int64_t batch_heads, int64_t tiles, const char* op) {
  if (batch_heads > 2147483647 || tiles > 65535) rt::fail(std::string(op) + ": sequence or batch * heads too large for one launch");
  return dim3(static_cast<unsigned>(batch_heads), static_cast<unsigned>(tiles), 1);
}

template <class T, int kMaxD>
void launch_forward_simt(const rt::AttentionParams& p, const Problem& pr) {
  using C = FwdSimt<kMaxD>;
  const auto attention_fwd_simt = attention_fwd_simt_kernel<T, kMaxD>;
  RT_LAUNCH(attention_fwd_simt, grid_of(p.batch * p.heads, rt::ceil_div(p.lq, C::kRows), "attention"),
            C::kWarps * 32, C::kSmem, static_cast<const T*>(p.q), static_cast<const T*>(p.k), static_cast<const T*>(p.v),
            static_cast<T*>(p.out), p.lse, p.kv_lengths, pr);
}

template <class T>
void forward_simt(const rt::AttentionParams& p, const Problem& pr) {
  if (p.dim <= 32) launch_forward_simt<T, 32>(p, pr);
  else if (p.dim <= 64) launch_forward_simt<T, 64>(p, pr);
  else if (p.dim <= 128) launch_forward_simt<T, 128>(p, pr);
  else launch_forward_simt<T, 256>(p, pr);
}

template <int kD>
void launch_forward_wmma(const rt::AttentionParams& p, const Problem& pr) {
  using C = FwdWmma<kD>;
  const auto attention_fwd_wmma = attention_fwd_wmma_kernel<kD>;
  RT_LAUNCH(attention_fwd_wmma, grid_of(p.batch * p.heads, rt::ceil_div(p.lq, C::kRows), "attention"),
            C::kWarps * 32, C::kSmem, static_cast<const __nv_bfloat16*>(p.q), static_cast<const __nv_bfloat16*>(p.k),
            static_cast<const __nv_bfloat16*>(p.v), static_cast<__nv_bfloat16*>(p.out), p.lse, p.kv_lengths, pr);
}

// The WMMA kernels serve bf16 with D = 16, 32, ..., 128 and every tensor 16-byte aligned (they
// move rows in 16-byte chunks; a view at an odd element offset is not): launch(
// std::integral_constant<int, D>) for those; false when they do not apply.
template <class Launch>
bool with_wmma_dim(rt::DType dtype, int64_t dim, std::initializer_list<const void*> tensors, Launch&& launch) {
  if (dtype != rt::DType::bf16) return false;
  for (const void* t : tensors)
    if (reinterpret_cast<uintptr_t>(t) % 16 != 0) return false;
  switch (dim) {
    case 16: launch(std::integral_constant<int, 16>()); return true;
    case 32: launch(std::integral_constant<int, 32>()); return true;
    case 48: launch(std::integral_constant<int, 48>()); return true;
    case 64: launch(std::integral_constant<int, 64>()); return true;
    case 80: launch(std::integral_constant<int, 80>()); return true;
    case 96: launch(std::integral_constant<int, 96>()); return true;
    case 112: launch(std::integral_constant<int, 112>()); return true;
    case 128: launch(std::integral_constant<int, 128>()); return true;
    default: return false;
  }
}

bool forward_wmma(const rt::AttentionParams& p, const Problem& pr) {
  return with_wmma_dim(p.dtype, p.dim, {p.q, p.k, p.v, p.out}, [&](auto d) { launch_forward_wmma<decltype(d)::value>(p, pr); });
}

void attention(const rt::AttentionParams& p) {
  if (p.batch * p.heads == 0 || p.lq == 0) return;
  const Problem pr = problem_of(p.heads, p.lq, p.lk, p.dim, p.scale, p.causal, p.kv_lengths);
  if (forward_wmma(p, pr)) return;
  if (p.dtype == rt::DType::bf16) forward_simt<__nv_bfloat16>(p, pr);
  else forward_simt<float>(p, pr);
}

template <class T, int kMaxD>
void launch_backward(const rt::AttentionBackwardParams& p, const Problem& pr) {
  const auto q = static_cast<const T*>(p.q), k = static_cast<const T*>(p.k), v = static_cast<const T*>(p.v);
  const auto out = static_cast<const T*>(p.out), dout = static_cast<const T*>(p.dout);
  if (p.lq > 0) {
    using C = BwdDq<kMaxD>;
    const auto attention_bwd_dq = attention_bwd_dq_kernel<T, kMaxD>;
    RT_LAUNCH(attention_bwd_dq, grid_of(p.batch * p.heads, rt::ceil_div(p.lq, C::kRows), "attention_backward"),
              C::kWarps * 32, C::kSmem, q, k, v, out, dout, p.lse, p.kv_lengths, static_cast<T*>(p.dq), pr);
  }
  if (p.lk > 0) {
    using C = BwdDkdv<kMaxD>;
    const auto attention_bwd_dkdv = attention_bwd_dkdv_kernel<T, kMaxD>;
    RT_LAUNCH(attention_bwd_dkdv, grid_of(p.batch * p.heads, rt::ceil_div(p.lk, C::kKeys), "attention_backward"),
              32, C::kSmem, q, k, v, out, dout, p.lse, p.kv_lengths, static_cast<T*>(p.dk), static_cast<T*>(p.dv), pr);
  }
}

template <class T>
void backward_for(const rt::AttentionBackwardParams& p, const Problem& pr) {
  if (p.dim <= 32) launch_backward<T, 32>(p, pr);
  else if (p.dim <= 64) launch_backward<T, 64>(p, pr);
  else if (p.dim <= 128) launch_backward<T, 128>(p, pr);
  else launch_backward<T, 256>(p, pr);
}

template <int kD>
void launch_backward_wmma(const rt::AttentionBackwardParams& p, const Problem& pr) {
  using T = __nv_bfloat16;
  const auto q = static_cast<const T*>(p.q), k = static_cast<const T*>(p.k), v = static_cast<const T*>(p.v);
  const auto out = static_cast<const T*>(p.out), dout = static_cast<const T*>(p.dout);
  const int64_t rows = p.batch * p.heads * p.lq;
  float* delta = scratch_floats(static_cast<size_t>(rows), "attention_backward");
  if (p.lq > 0) {
    constexpr int kRowsPerBlock = kDeltaThreads / kDeltaLanesPerRow;
    const auto attention_bwd_delta = attention_bwd_delta_kernel<kD>;
    RT_LAUNCH(attention_bwd_delta, grid_of((rows + kRowsPerBlock - 1) / kRowsPerBlock, 1, "attention_backward"),
              kDeltaThreads, 0, out, dout, delta, rows);
    using C = BwdDqWmma<kD>;
    const auto attention_bwd_dq_wmma = attention_bwd_dq_wmma_kernel<kD>;
    RT_LAUNCH(attention_bwd_dq_wmma, grid_of(p.batch * p.heads, rt::ceil_div(p.lq, C::kRows), "attention_backward"),
              C::kWarps * 32, C::kSmem, q, k, v, dout, p.lse, delta, p.kv_lengths, static_cast<T*>(p.dq), pr);
  }
  if (p.lk > 0) {
    using C = BwdDkdvWmma<kD>;
    const auto attention_bwd_dkdv_wmma = attention_bwd_dkdv_wmma_kernel<kD>;
    RT_LAUNCH(attention_bwd_dkdv_wmma, grid_of(p.batch * p.heads, rt::ceil_div(p.lk, C::kKeys), "attention_backward"),
              C::kWarps * 32, C::kSmem, q, k, v, dout, p.lse, delta, p.kv_lengths, static_cast<T*>(p.dk),
              static_cast<T*>(p.dv), pr);
  }
}

void attention_backward(const rt::AttentionBackwardParams& p) {
  if (p.batch * p.heads == 0) return;
  const Problem pr = problem_of(p.heads, p.lq, p.lk, p.dim, p.scale, p.causal, p.kv_lengths);
  const std::initializer_list<const void*> tensors = {p.q, p.k, p.v, p.out, p.dout, p.dq, p.dk, p.dv};
  if (with_wmma_dim(p.dtype, p.dim, tensors, [&](auto d) { launch_backward_wmma<decltype(d)::value>(p, pr); })) return;
  if (p.dtype == rt::DType::bf16) backward_for<__nv_bfloat16>(p, pr);
  else backward_for<float>(p, pr);
}

}  // namespace

RT_REGISTER_OP(RT_BACKEND_ID, attention, attention);
RT_REGISTER_OP(RT_BACKEND_ID, attention_backward, attention_backward);

}  // namespace RT_BACKEND_NS
