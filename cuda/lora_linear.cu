// LoRA-fused linear layer: y = x w^T + bias + scale * (x down) up, and its gradients.
//
// One tiled f32 GEMM kernel, lora_gemm_kernel, over strided operands
//   C(i, j) = alpha * sum_k A(i, k) B(k, j) (+ C) + bias[j] + scale * sum_r H(i, r) U(r, j)
// 64 x 64 output tile per 256-thread block, 4 x 4 outputs per thread (rows ty + 16 i, columns
// tx + 16 j, so shared-memory reads are broadcasts or consecutive and stores are coalesced),
// k advanced 16 at a time through shared memory; tile loads pick the coalesced mapping from the
// operand's strides. With fuse_h (rank <= 16) the block also accumulates H = A D while the A tiles
// stream through shared memory, so x is read once: the blocks of the first column of tiles write
// H out, every block keeps its rows of H in shared memory for the epilogue.
//
// Forward: one launch (rank <= 16); a larger rank first computes h with the same kernel.
// Backward: dx = dy w with g = dy up^T fused the same way (epilogue adds scale g down^T), then
// ddown = scale x^T g, dup = scale h^T dy, dw = dy^T x, and a column-sum kernel for dbias.
//
// FLOPs: 2 M N K (+ 2 M K r + 2 M N r) forward, twice that (three times with dw) backward.
// Bytes per block-k-step: (64 + 64) x 16 floats for 2 x 64 x 64 x 16 FLOP: 16 FLOP/byte of shared
// traffic, so this SIMT kernel is bound by FMA issue: expect ~20 TFLOP/s on an H100 (a third of its
// ~60 TFLOP/s f32 peak): a 4096 x 3072 x 768 rank-8 LoRA linear (19.3 GFLOP) in ~1 ms.
#include <cstdint>
#include <string>

#include "launch.h"
#include "scratch.cuh"

namespace RT_BACKEND_NS {
namespace {

constexpr int kTile = 64;        // output rows and columns per block
constexpr int kDepth = 16;       // k per shared-memory step
constexpr int kThreads = 256;    // 16 x 16 threads, 4 x 4 outputs each
constexpr int kMaxFusedRank = 16;

// Element (i, j) at p[i * rs + j * cs].
struct MatrixView {
  dptr<const float> p;
  int64_t rs, cs;
};

struct LoraGemmArgs {
  MatrixView a;  // A(i, k): m x k
  MatrixView b;  // B(k, j): k x n
  dptr<float> c;
  int64_t c_rs, c_cs;
  int64_t m, n, k;
  float alpha;
  bool accumulate;
  bool has_bias;
  dptr<const float> bias;  // [n]
  int rank;                // 0: no low-rank epilogue
  bool fuse_h;             // H = A D computed here (rank <= kMaxFusedRank) and written to h_out
  MatrixView d;            // D(k, r)
  dptr<float> h_out;       // [m, rank]
  dptr<const float> h_in;  // [m, rank], read when !fuse_h
  MatrixView u;            // U(r, j)
  float scale;
};

__global__ void __launch_bounds__(kThreads) lora_gemm_kernel(LoraGemmArgs g) {
  __shared__ float a_tile[kDepth][kTile + 4];
  __shared__ float b_tile[kDepth][kTile + 4];
  __shared__ float d_tile[kDepth][kMaxFusedRank];
  __shared__ float h_tile[kTile][kMaxFusedRank + 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = int64_t(blockIdx.x) * kTile, n0 = int64_t(blockIdx.y) * kTile;
  const bool a_k_contiguous = g.a.cs == 1, b_j_contiguous = g.b.cs == 1;
  const int h_pairs = g.fuse_h ? kTile * g.rank : 0;

  float acc[4][4] = {};
  float h_acc[4] = {0, 0, 0, 0};  // pairs tid + 256 q of (row, r), row-major over [kTile, rank]

  for (int64_t k0 = 0; k0 < g.k; k0 += kDepth) {
    for (int q = 0; q < kTile * kDepth / kThreads; ++q) {
      const int e = tid + q * kThreads;
      const int row = a_k_contiguous ? e / kDepth : e % kTile;
      const int kk = a_k_contiguous ? e % kDepth : e / kTile;
      const int64_t i = m0 + row, k = k0 + kk;
      a_tile[kk][row] = i < g.m && k < g.k ? g.a.p[i * g.a.rs + k * g.a.cs] : 0.f;
      const int col = b_j_contiguous ? e % kTile : e / kDepth;
      const int kb = b_j_contiguous ? e / kTile : e % kDepth;
      const int64_t j = n0 + col, kj = k0 + kb;
      b_tile[kb][col] = j < g.n && kj < g.k ? g.b.p[kj * g.b.rs + j * g.b.cs] : 0.f;
    }
    if (tid < kDepth * g.rank && g.fuse_h) {
      const int kk = tid % kDepth, r = tid / kDepth;
      const int64_t k = k0 + kk;
      d_tile[kk][r] = k < g.k ? g.d.p[k * g.d.rs + r * g.d.cs] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kDepth; ++kk) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = a_tile[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = b_tile[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int pair = tid + q * kThreads;
      if (pair < h_pairs) {
        const int row = pair / g.rank, r = pair % g.rank;
        float s = h_acc[q];
#pragma unroll
        for (int kk = 0; kk < kDepth; ++kk) s = fmaf(a_tile[kk][row], d_tile[kk][r], s);
        h_acc[q] = s;
      }
    }
    __syncthreads();
  }

  if (g.fuse_h) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int pair = tid + q * kThreads;
      if (pair < h_pairs) {
        const int row = pair / g.rank, r = pair % g.rank;
        h_tile[row][r] = h_acc[q];
        if (blockIdx.y == 0 && m0 + row < g.m) g.h_out[(m0 + row) * g.rank + r] = h_acc[q];
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = ty + 16 * i;
    const int64_t gi = m0 + row;
    if (gi >= g.m) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t gj = n0 + tx + 16 * j;
      if (gj >= g.n) continue;
      const int64_t at = gi * g.c_rs + gj * g.c_cs;
      float v = g.alpha * acc[i][j];
      if (g.accumulate) v += g.c[at];
      if (g.has_bias) v += g.bias[gj];
      for (int r = 0; r < g.rank; ++r) {
        const float h = g.fuse_h ? h_tile[row][r] : g.h_in[gi * g.rank + r];
        v = fmaf(g.scale * h, g.u.p[r * g.u.rs + gj * g.u.cs], v);
      }
      g.c[at] = v;
    }
  }
}

void launch_gemm(const LoraGemmArgs& g) {
  if (g.m == 0 || g.n == 0) return;
  // Row tiles go on x (up to 2^31 - 1), column tiles on y, which no GPU allows past 65535.
  const int64_t column_tiles = (g.n + kTile - 1) / kTile;
  if (column_tiles > 65535)
    rt::fail("lora_linear: a product with " + std::to_string(g.n) + " columns needs " + std::to_string(column_tiles) +
             " column tiles of 64, more than the 65535 of one launch (gridDim.y): at most " +
             std::to_string(int64_t(65535) * kTile) + " columns (out features, or in features for dw)");
  const dim3 grid(unsigned(rt::ceil_div(g.m, kTile)), unsigned(column_tiles));
  RT_LAUNCH(lora_gemm_kernel, grid, kThreads, 0, g);
}

// C = alpha A B for strided operands (c row stride c_rs, column stride c_cs).
LoraGemmArgs plain(MatrixView a, MatrixView b, float* c, int64_t c_rs, int64_t c_cs, int64_t m, int64_t n, int64_t k,
                   float alpha) {
  LoraGemmArgs g{};
  g.a = a;
  g.b = b;
  g.c = c;
  g.c_rs = c_rs;
  g.c_cs = c_cs;
  g.m = m;
  g.n = n;
  g.k = k;
  g.alpha = alpha;
  return g;
}

// out = a b + bias + scale (a d) u with h = a d written; out [m, n] and h [m, rank] row-major.
void fused_lora_gemm(int64_t m, int64_t k, int64_t n, int64_t rank, MatrixView a, MatrixView b, MatrixView d,
                     MatrixView u, const float* bias, float scale, float* out, float* h) {
  LoraGemmArgs g = plain(a, b, out, n, 1, m, n, k, 1.f);
  g.has_bias = bias != nullptr;
  g.bias = bias;
  g.rank = int(rank);
  g.d = d;
  g.u = u;
  g.scale = scale;
  if (rank > kMaxFusedRank) {
    launch_gemm(plain(a, d, h, rank, 1, m, rank, k, 1.f));
    g.h_in = h;
  } else {
    g.fuse_h = rank > 0;
    g.h_out = h;
  }
  launch_gemm(g);
}

void lora_linear(const rt::LoraLinearParams& p) {
  fused_lora_gemm(p.m, p.k, p.n, p.rank, {p.x, p.k, 1}, {p.w, 1, p.k}, {p.down, p.rank, 1}, {p.up, p.n, 1}, p.bias,
                  p.scale, p.y, p.h);
}

__global__ void __launch_bounds__(kThreads) column_sum_kernel(dptr<const float> x, dptr<float> out, int64_t rows, int64_t cols) {
  const int64_t j = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (j >= cols) return;
  float s = 0;
  for (int64_t i = 0; i < rows; ++i) s += x[i * cols + j];
  out[j] = s;
}

void lora_linear_backward(const rt::LoraLinearBackwardParams& p) {
  const int64_t m = p.m, n = p.n, k = p.k, r = p.rank;
  float* g = scratch_floats(size_t(std::max<int64_t>(m * r, 1)), "lora_linear_backward scratch");
  fused_lora_gemm(m, n, k, r, {p.dy, n, 1}, {p.w, k, 1}, {p.up, 1, n}, {p.down, 1, r}, nullptr, p.scale, p.dx, g);
  if (r > 0) {
    launch_gemm(plain({p.x, 1, k}, {g, r, 1}, p.ddown, r, 1, k, r, m, p.scale));
    launch_gemm(plain({p.h, 1, r}, {p.dy, n, 1}, p.dup, n, 1, r, n, m, p.scale));
  }
  if (p.dw) launch_gemm(plain({p.dy, 1, n}, {p.x, k, 1}, p.dw, k, 1, n, k, m, 1.f));
  if (p.dbias && n > 0) RT_LAUNCH(column_sum_kernel, rt::ceil_div(n, kThreads), kThreads, 0, p.dy, p.dbias, m, n);
}

RT_REGISTER_OP(RT_BACKEND_ID, lora_linear, lora_linear);
RT_REGISTER_OP(RT_BACKEND_ID, lora_linear_backward, lora_linear_backward);

}  // namespace
}  // namespace RT_BACKEND_NS
