// reduce: out[o, i] = sum_r x[o, r, i] (times 1/reduce for a mean), x viewed as [outer, reduce, inner];
// broadcast: out[o, r, i] = alpha * x[o, i], its backward.
//
// reduce has two layouts:
//   inner == 1 (row sums): one block per row, threads stride along the row (coalesced), each
//     accumulating in double, then a warp-shuffle block sum. 32-thread blocks for short rows.
//   inner > 1 (column sums): one thread per output column (o, i), walking down the rows; adjacent
//     threads read adjacent addresses, so each row step is one coalesced transaction per warp.
// When outer (or outer * inner) is too small to fill the GPU, blockIdx.y splits the reduced axis:
// each split writes its partial sums to scratch [splits, outputs], and reduce_splits_kernel adds
// them per output in split order (in double) and scales. No atomics: the result is the same bit
// for bit on every run.
// FLOPs: one add per element; bytes: 4 per input element. Memory-bound: a full reduction of 64M
// floats (256 MB) takes ~0.09 ms on an H100 at ~3.0 TB/s; broadcast writes 4 B per output,
// ~0.09 ms per 64M outputs.
#include <cstdint>

#include "launch.h"
#include "scratch.cuh"
#include "warp.cuh"

namespace RT_BACKEND_NS {

// Enough resident blocks to cover an H100's 132 SMs several times over.
constexpr int64_t kTargetBlocks = 1056;
constexpr int kColumnThreads = 256;

inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

__global__ void __launch_bounds__(256)
    reduce_rows_kernel(dptr<const float> x, dptr<float> out, int64_t outer, int64_t reduce, int splits, float scale) {
  // With splits > 1, `out` is the scratch [splits, outer] and scale is 1.
  __shared__ float scratch[32];
  const int split = blockIdx.y;
  const int64_t r0 = reduce * split / splits, r1 = reduce * (split + 1) / splits;
  for (int64_t row = blockIdx.x; row < outer; row += gridDim.x) {
    double acc = 0;
    for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x) acc += x[row * reduce + r];
    const float total = block_sum(static_cast<float>(acc), scratch);
    if (threadIdx.x == 0) out[split * outer + row] = total * scale;
  }
}

__global__ void __launch_bounds__(kColumnThreads)
    reduce_columns_kernel(dptr<const float> x, dptr<float> out, int64_t outer, int64_t reduce, int64_t inner,
                          int splits, float scale) {
  // With splits > 1, `out` is the scratch [splits, outer * inner] and scale is 1.
  const int split = blockIdx.y;
  const int64_t r0 = reduce * split / splits, r1 = reduce * (split + 1) / splits;
  const int64_t columns = outer * inner;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < columns; c += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = c / inner, i = c % inner;
    double acc = 0;
    for (int64_t r = r0; r < r1; ++r) acc += x[(o * reduce + r) * inner + i];
    out[split * columns + c] = static_cast<float>(acc) * scale;
  }
}

// out[c] = scale * sum over s, in order, of partials[s, c].
__global__ void __launch_bounds__(kColumnThreads)
    reduce_splits_kernel(dptr<const float> partials, dptr<float> out, int64_t outputs, int splits, float scale) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < outputs; c += int64_t(gridDim.x) * blockDim.x) {
    double acc = 0;
    for (int s = 0; s < splits; ++s) acc += partials[s * outputs + c];
    out[c] = static_cast<float>(acc * scale);
  }
}

// Adds the split partials into `out` (a no-op when the kernel wrote `out` directly).
static void finish_splits(const float* partials, float* out, int64_t outputs, int splits, float scale) {
  if (splits == 1) return;
  const int64_t blocks = std::min<int64_t>(rt::ceil_div(outputs, kColumnThreads), 65535);
  RT_LAUNCH(reduce_splits_kernel, unsigned(blocks), kColumnThreads, 0, partials, out, outputs, splits, scale);
}

static void reduce(const rt::ReduceParams& p) {
  if (p.outer == 0 || p.inner == 0) return;
  // An empty reduction gives 0 for a sum and 0 * inf = NaN for a mean, as in NumPy and PyTorch.
  const float scale = p.mean ? static_cast<float>(1.0 / static_cast<double>(p.reduce)) : 1.f;
  int splits = 1;
  if (p.inner == 1) {
    const int threads = p.reduce >= 2048 ? 256 : 32;
    const int64_t blocks = std::min<int64_t>(p.outer, 65535);
    if (p.outer < kTargetBlocks)
      splits = static_cast<int>(clamp64(std::min<int64_t>(kTargetBlocks / p.outer, rt::ceil_div(p.reduce, 4096)), 1, 65535));
    float* target = splits == 1 ? p.out : scratch_floats(size_t(splits) * size_t(p.outer), "reduce scratch");
    RT_LAUNCH(reduce_rows_kernel, dim3(unsigned(blocks), unsigned(splits)), threads, 0, p.x, target, p.outer, p.reduce,
              splits, splits == 1 ? scale : 1.f);
    finish_splits(target, p.out, p.outer, splits, scale);
    return;
  }
  const int64_t columns = p.outer * p.inner;
  const int64_t blocks = std::min<int64_t>(rt::ceil_div(columns, kColumnThreads), 65535);
  if (blocks < kTargetBlocks)
    splits = static_cast<int>(clamp64(std::min<int64_t>(kTargetBlocks / blocks, rt::ceil_div(p.reduce, 64)), 1, 65535));
  float* target = splits == 1 ? p.out : scratch_floats(size_t(splits) * size_t(columns), "reduce scratch");
  RT_LAUNCH(reduce_columns_kernel, dim3(unsigned(blocks), unsigned(splits)), kColumnThreads, 0, p.x, target, p.outer,
            p.reduce, p.inner, splits, splits == 1 ? scale : 1.f);
  finish_splits(target, p.out, columns, splits, scale);
}

__global__ void __launch_bounds__(256)
    broadcast_kernel(dptr<const float> x, dptr<float> out, int64_t n, int64_t reduce, int64_t inner, float alpha) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = k / (reduce * inner), i = k % inner;
    out[k] = alpha * x[o * inner + i];
  }
}

static void broadcast(const rt::BroadcastParams& p) {
  const int64_t n = p.outer * p.reduce * p.inner;
  if (n == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>(rt::ceil_div(n, 256), 8192));
  RT_LAUNCH(broadcast_kernel, blocks, 256, 0, p.x, p.out, n, p.reduce, p.inner, p.alpha);
}

RT_REGISTER_OP(RT_BACKEND_ID, reduce, reduce);
RT_REGISTER_OP(RT_BACKEND_ID, broadcast, broadcast);

}  // namespace RT_BACKEND_NS
