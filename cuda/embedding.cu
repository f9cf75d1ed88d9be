// Embedding gather (out[i, :] = table[ids[i], :]) and its scatter-add backward
// (dtable[ids[i], :] += dy[i, :], with atomicAdd: repeated ids collide; the binding zero-fills
// dtable first and has checked every id against the vocabulary).
// Grid: x tiles the embedding dimension in 256-column pieces (coalesced row segments), y walks
// the ids (grid-stride past 65535). Pure data movement: 8 bytes per output element forward,
// 8 bytes plus an atomic per element backward: 64M elements ~0.17 ms on an H100 at ~3.0 TB/s
// forward; the backward depends on how often ids repeat (atomics to one address serialise).
#include <algorithm>
#include <cstdint>

#include "launch.h"

namespace RT_BACKEND_NS {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

__global__ void __launch_bounds__(kThreads)
    embedding_kernel(dptr<const float> table, dptr<const int32_t> ids, dptr<float> out, int64_t n, int64_t dim) {
  const int64_t col = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (col >= dim) return;
  for (int64_t i = blockIdx.y; i < n; i += gridDim.y) out[i * dim + col] = table[int64_t(ids[i]) * dim + col];
}

__global__ void __launch_bounds__(kThreads)
    embedding_backward_kernel(dptr<const int32_t> ids, dptr<const float> dy, dptr<float> dtable, int64_t n, int64_t dim) {
  const int64_t col = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (col >= dim) return;
  for (int64_t i = blockIdx.y; i < n; i += gridDim.y) atomicAdd(dtable + (int64_t(ids[i]) * dim + col), dy[i * dim + col]);
}

static dim3 grid_for(int64_t n, int64_t dim) {
  return dim3(rt::ceil_div(dim, kThreads), static_cast<unsigned>(std::min(n, kMaxGridY)));
}

static void embedding(const rt::EmbeddingParams& p) {
  if (p.n == 0 || p.dim == 0) return;
  RT_LAUNCH(embedding_kernel, grid_for(p.n, p.dim), kThreads, 0, p.table, p.ids, p.out, p.n, p.dim);
}

static void embedding_backward(const rt::EmbeddingBackwardParams& p) {
  if (p.n == 0 || p.dim == 0) return;
  RT_LAUNCH(embedding_backward_kernel, grid_for(p.n, p.dim), kThreads, 0, p.ids, p.dy, p.dtable, p.n, p.dim);
}

RT_REGISTER_OP(RT_BACKEND_ID, embedding, embedding);
RT_REGISTER_OP(RT_BACKEND_ID, embedding_backward, embedding_backward);

}  // namespace RT_BACKEND_NS
