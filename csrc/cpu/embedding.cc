// Embedding lookup (gather rows of a [vocab, dim] table by i32 ids) and its backward
// (scatter-add rows of dy into the table gradient). The binding has checked every id.
//
// The backward must add repeated ids without races: threads own disjoint column blocks of the
// table gradient and each walks all ids in order, so every element is summed by one thread in
// a fixed order (deterministic) and the rows of dy are read in cache-line-sized pieces.
#include <algorithm>
#include <cstring>

#include "../ops.h"
#include "parallel.h"

namespace rt::cpu {
namespace {

constexpr int64_t kElementsPerChunk = 1 << 14;
constexpr int64_t kColumnBlock = 16;  // one 64-byte cache line of floats

void embedding(const EmbeddingParams& p) {
  parallel_for(p.n, std::max<int64_t>(1, kElementsPerChunk / std::max<int64_t>(1, p.dim)),
               [&](int64_t begin, int64_t end) {
                 for (int64_t i = begin; i < end; ++i)
                   std::memcpy(p.out + i * p.dim, p.table + int64_t(p.ids[i]) * p.dim, size_t(p.dim) * sizeof(float));
               });
}

void embedding_backward(const EmbeddingBackwardParams& p) {
  const int64_t blocks = (p.dim + kColumnBlock - 1) / kColumnBlock;
  const int64_t work_per_block = std::max<int64_t>(1, p.n * kColumnBlock);
  parallel_for(blocks, std::max<int64_t>(1, kElementsPerChunk / work_per_block), [&](int64_t b0, int64_t b1) {
    const int64_t c0 = b0 * kColumnBlock, c1 = std::min(p.dim, b1 * kColumnBlock);
    for (int64_t i = 0; i < p.n; ++i) {
      float* __restrict__ row = p.dtable + int64_t(p.ids[i]) * p.dim;
      const float* __restrict__ grad = p.dy + i * p.dim;
      for (int64_t c = c0; c < c1; ++c) row[c] += grad[c];
    }
  });
}

}  // namespace

RT_REGISTER_OP(BackendId::cpu, embedding, embedding);
RT_REGISTER_OP(BackendId::cpu, embedding_backward, embedding_backward);

}  // namespace rt::cpu
