// The bf16 WMMA backward of attention (the attention_backward op dispatches here from
// attention_backward.cu; what the attention files share is in attention.cuh):
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
//
// Cost (non-causal; causal about half): 10 B H Lq Lk D FLOP of work, 14 executed (the dQ kernel
// recomputes S and dP: 7 products of 2 Lq Lk D each). Bytes: reads q, k, v, out, dout, lse and
// writes dq, dk, dv: 8 B H L D bf16 elements, plus re-reads, mostly from L2 (the dK/dV kernel
// reads Q and dO once per 64-key block, the dQ kernel K and V once per 64-row block).
// H100 prediction, B=4 H=8 D=64:
//   L=256:  1.9 GFLOP executed: 128 blocks per kernel (one wave), each walking 8 tiles at ~1-2 us
//           a tile (global loads staged synchronously, 2 barriers): ~30-50 us for the three
//           launches.
//   L=4096: 481 GFLOP executed, 0.61 ms at peak; bound by shared memory (per 32-row tile a warp
//           loads ~30 KB of fragments and scratch against 32 MMAs, ~1/3 of the MMA rate at
//           128 B/clock), less barriers and latency: ~20-25%, ~2.5-3.5 ms.
#include "attention.cuh"
#include "scratch.cuh"

namespace RT_BACKEND_NS {

namespace attention_kernels {

namespace {

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
}  // namespace

bool backward_wmma(const rt::AttentionBackwardParams& p, const Problem& pr) {
  const std::initializer_list<const void*> tensors = {p.q, p.k, p.v, p.out, p.dout, p.dq, p.dk, p.dv};
  return with_wmma_dim(p.dtype, p.dim, tensors, [&](auto d) { launch_backward_wmma<decltype(d)::value>(p, pr); });
}

}  // namespace attention_kernels

}  // namespace RT_BACKEND_NS
