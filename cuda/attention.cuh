// Fused attention (AttentionParams / AttentionBackwardParams in csrc/ops.h), flash-attention
// style: out = softmax(scale q k^T + mask) v per (batch, head) without storing the Lq x Lk
// scores; the forward saves the row log-sum-exp, the backward recomputes P from it.
//
// The kernels live in three files; this header holds what they share:
//   attention_forward.cu        the attention op: the bf16 WMMA and the SIMT forward kernels
//   attention_backward.cu       the attention_backward op: its dispatch and the SIMT backward kernels
//   attention_backward_wmma.cu  the bf16 WMMA backward kernels (FlashAttention-2's backward)
// Every kernel runs on grid.x = batch * heads, grid.y = query or key tiles.
//
// Masks: key j is visible to row i when j < kv_lengths[b] and (not causal or j <= i + Lk - Lq);
// tiles past a block's last visible key are skipped; rows that see no key give 0 and lse -inf
// and zero gradients.
//
// Shared here: the problem sizes and the mask (Problem, KeyLimit), staging rows into shared
// memory (f32 for the SIMT kernels, bf16 for WMMA), the launch grid, and which head dims and
// alignments the WMMA kernels serve.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "launch.h"

namespace RT_BACKEND_NS::attention_kernels {

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

// Rows of kD bf16 staged in shared memory for WMMA loads, by every WMMA kernel.
template <int kD>
struct Bf16Rows {
  static constexpr int kChunks = kD / 8;  // 16-byte chunks per row
  static constexpr int kPitch = kD + 8;   // rows stay 16-byte aligned (32 at multiples of 16 rows), banks shift
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

inline Problem problem_of(int64_t heads, int64_t lq, int64_t lk, int64_t dim, float scale, bool causal,
                          const int32_t* kv_lengths) {
  return {heads, lq, lk, static_cast<int>(dim), scale, causal, kv_lengths != nullptr};
}

inline dim3 grid_of(int64_t batch_heads, int64_t tiles, const char* op) {
  if (batch_heads > 2147483647 || tiles > 65535) rt::fail(std::string(op) + ": sequence or batch * heads too large for one launch");
  return dim3(static_cast<unsigned>(batch_heads), static_cast<unsigned>(tiles), 1);
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

// The bf16 WMMA backward (attention_backward_wmma.cu) when it serves p's dtype, head dim and
// alignment; false when the SIMT kernels must run.
bool backward_wmma(const rt::AttentionBackwardParams& p, const Problem& pr);

}  // namespace RT_BACKEND_NS::attention_kernels
