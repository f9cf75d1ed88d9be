// Two-level row reductions shared by the loss kernels (dpo_loss, channel_stat_loss; optim's
// sum_squares uses block_sum_double to finish its norm): a grid of
// (chunk, row) blocks each reduces one slice of a row into a partial, then one finishing block
// combines the partials in double. Chunks are sized so the grid covers a few waves of an H100
// (132 SMs) without making slices shorter than kMinChunk elements.
#pragma once

#include "launch.h"

namespace RT_BACKEND_NS {

constexpr int kChunkThreads = 256;
constexpr int64_t kMinChunk = 4096;
constexpr int64_t kTargetBlocks = 1056;

struct ChunkPlan {
  int64_t chunks, chunk;
  dim3 grid(int64_t rows) const { return dim3(unsigned(chunks), unsigned(std::min<int64_t>(rows, 65535))); }
};

inline ChunkPlan plan_chunks(int64_t rows, int64_t n) {
  int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(kTargetBlocks / rows, rt::ceil_div(n, kMinChunk)));
  chunks = std::min<int64_t>(chunks, 65535);
  return {chunks, rt::ceil_div(n, chunks)};
}

// Sum over a block of kChunkThreads threads in double; every thread must call it and gets the
// result. `scratch` holds kChunkThreads doubles of shared memory.
__device__ __forceinline__ double block_sum_double(double v, double* scratch) {
  __syncthreads();
  scratch[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kChunkThreads / 2; stride > 0; stride >>= 1) {
    if (int(threadIdx.x) < stride) scratch[threadIdx.x] += scratch[threadIdx.x + stride];
    __syncthreads();
  }
  return scratch[0];
}

}  // namespace RT_BACKEND_NS
