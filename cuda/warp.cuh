// Device helpers shared by the kernels: W-wide row loads and stores, and warp- and block-level
// reductions. Full-warp shuffles: callers must launch blocks whose size is a multiple of 32
// (every kernel here does).
#pragma once

#include "launch.h"

namespace RT_BACKEND_NS {

// W consecutive floats starting at element k * W of p (W = 4: one 16-byte access).
template <int W>
__device__ __forceinline__ void load_chunk(dptr<const float> p, int64_t k, float (&v)[W]) {
  if constexpr (W == 4) {
    const float4 q = dptr_cast<const float4>(p)[k];
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else {
    v[0] = p[k];
  }
}

template <int W>
__device__ __forceinline__ void store_chunk(dptr<float> p, int64_t k, const float (&v)[W]) {
  if constexpr (W == 4)
    dptr_cast<float4>(p)[k] = make_float4(v[0], v[1], v[2], v[3]);
  else
    p[k] = v[0];
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the whole block; every thread gets the result. `scratch` holds 32 floats of shared
// memory; the call contains __syncthreads(), so every thread of the block must make it.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.f;
  return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

}  // namespace RT_BACKEND_NS
