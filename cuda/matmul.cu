// Matmul: C[b] = alpha op(A[b]) op(B[b]) + beta C[b] (MatmulParams in csrc/ops.h).
//
// Two kernels, one blockIdx.z per batch entry (grid-stride over batches past 65535):
//   - matmul_f32_kernel (any mix of f32/bf16 inputs, f32 FMA): a 128x128 C tile per block of
//     256 threads, k in steps of 8. Each thread owns an 8x8 register tile split in four 4x4
//     quadrants (rows ty*4 and 64+ty*4, cols tx*4 and 64+tx*4) so shared-memory reads are
//     conflict-free float4s. Double buffered: the next k tile is fetched into registers while
//     the current one is multiplied from shared memory, then stored to the other buffer (one
//     barrier per k step). Shared rows are padded to 132 floats so the transposing stores of a
//     k-contiguous operand hit 32 different banks.
//   - matmul_bf16_wmma_kernel (both inputs bf16): tensor cores through WMMA 16x16x16, bf16 in,
//     f32 accumulate. A 64x64 C tile per block of 4 warps, each warp a 32x32 quadrant (2x2
//     fragments), k in steps of 32, the same register double buffering; the accumulators go
//     through shared memory so the alpha/beta epilogue can guard the edges.
// Transposes are resolved in the tile loads: an operand is (w, k) -> w * stride_w + k * stride_k,
// and threads walk whichever index is contiguous in memory so global loads coalesce.
// Edges: loads outside [0, M) x [0, K) (or N) read zero, stores are guarded; beta == 0 never
// reads C.
//
// Cost: 2*B*M*N*K FLOP; at least 4*B*(M*K + K*N + M*N) bytes (bf16 inputs: half for A and B).
// H100 prediction, 1024^3: f32 2.1 GFLOP at ~60 TFLOP/s peak non-tensor = 36 us ideal; this
// SIMT kernel without cp.async should reach ~50-65% of that (~60 us). bf16 WMMA: 2.7 us at 790
// TFLOP/s dense peak; plain WMMA from padded shared memory without ldmatrix/cp.async pipelining
// reaches ~25-35% (~9 us). Both are compute-bound (arithmetic intensity ~100+ FLOP/byte).
#include <string>

#include "launch.h"

namespace RT_BACKEND_NS {

// An operand as a kernel sees it: element (w, k) of batch z at
// data[z * stride_batch + w * stride_w + k * stride_k]; w is the row of op(A) or column of op(B).
template <class T>
struct Operand {
  dptr<const T> data;
  int64_t stride_batch, stride_w, stride_k, extent_w;
};

// Loads the W x KT tile at (w0, k0) of batch z into registers, kPer elements per thread of a
// THREADS-thread block; zero outside the matrix. `k_fast` picks which index consecutive threads
// walk (the one contiguous in memory). Element e of thread t is tile index t + e * THREADS, which
// is (w_first + e * w_step, k_first + e * k_step): one base offset and one stride per thread.
template <int W, int KT, int THREADS>
struct TileWalk {
  static_assert(THREADS % W == 0 && THREADS % KT == 0, "a tile row or column per thread group");
  static constexpr int kPer = W * KT / THREADS;
  int w_first, k_first, w_step, k_step;
  __device__ __forceinline__ explicit TileWalk(bool k_fast)
      : w_first(k_fast ? int(threadIdx.x) / KT : int(threadIdx.x) % W),
        k_first(k_fast ? int(threadIdx.x) % KT : int(threadIdx.x) / W),
        w_step(k_fast ? THREADS / KT : 0),
        k_step(k_fast ? 0 : THREADS / W) {}

  template <class T, class R>
  __device__ __forceinline__ void load(const Operand<T>& op, int64_t z, int64_t w0, int64_t k0, int64_t k_extent,
                                       R* regs) const {
    const int64_t gw = w0 + w_first, gk = k0 + k_first;
    const int64_t base = z * op.stride_batch + gw * op.stride_w + gk * op.stride_k;
    const int64_t step = w_step * op.stride_w + k_step * op.stride_k;
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const bool inside = gw + e * w_step < op.extent_w && gk + e * k_step < k_extent;
      regs[e] = inside ? R(op.data[base + e * step]) : R(0.f);
    }
  }

  // Stores what load() fetched into shared memory at tile[w * s_w + k * s_k].
  template <class R>
  __device__ __forceinline__ void store(R* tile, int s_w, int s_k, const R* regs) const {
#pragma unroll
    for (int e = 0; e < kPer; ++e) tile[(w_first + e * w_step) * s_w + (k_first + e * k_step) * s_k] = regs[e];
  }
};

__device__ __forceinline__ void store_output(dptr<float> c, int64_t index, float value, float alpha, float beta) {
  c[index] = beta == 0.f ? alpha * value : alpha * value + beta * c[index];
}

// ---------------------------------------------------------------------------------------------
// f32 SIMT kernel

constexpr int kTile = 128, kTileK = 8, kThreads = 256, kRowPad = kTile + 4;

template <class TA, class TB>
struct OperandTypes {
  using A = TA;
  using B = TB;
};

template <class Types>
__global__ void __launch_bounds__(kThreads)
    matmul_f32_kernel(Operand<typename Types::A> a, Operand<typename Types::B> b, dptr<float> c, int64_t m,
                      int64_t n, int64_t k, int64_t batch, int64_t stride_c, float alpha, float beta) {
  __shared__ __align__(16) float as[2][kTileK * kRowPad];  // [k][m]
  __shared__ __align__(16) float bs[2][kTileK * kRowPad];  // [k][n]
  constexpr int kPer = TileWalk<kTile, kTileK, kThreads>::kPer;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t row0 = int64_t(blockIdx.y) * kTile, col0 = int64_t(blockIdx.x) * kTile;
  using Walk = TileWalk<kTile, kTileK, kThreads>;
  const Walk walk_a(a.stride_k == 1), walk_b(b.stride_k == 1);

  for (int64_t z = blockIdx.z; z < batch; z += gridDim.z) {
    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
    float ra[kPer], rb[kPer];
    walk_a.load(a, z, row0, 0, k, ra);
    walk_b.load(b, z, col0, 0, k, rb);
    walk_a.store(as[0], 1, kRowPad, ra);
    walk_b.store(bs[0], 1, kRowPad, rb);
    __syncthreads();

    int buf = 0;
    for (int64_t k0 = 0; k0 < k; k0 += kTileK) {
      const bool more = k0 + kTileK < k;
      if (more) {
        walk_a.load(a, z, row0, k0 + kTileK, k, ra);
        walk_b.load(b, z, col0, k0 + kTileK, k, rb);
      }
#pragma unroll
      for (int kk = 0; kk < kTileK; ++kk) {
        const float* arow = as[buf] + kk * kRowPad;
        const float* brow = bs[buf] + kk * kRowPad;
        const float4 a0 = *reinterpret_cast<const float4*>(arow + ty * 4);
        const float4 a1 = *reinterpret_cast<const float4*>(arow + 64 + ty * 4);
        const float4 b0 = *reinterpret_cast<const float4*>(brow + tx * 4);
        const float4 b1 = *reinterpret_cast<const float4*>(brow + 64 + tx * 4);
        const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
        const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
      if (more) {
        walk_a.store(as[buf ^ 1], 1, kRowPad, ra);
        walk_b.store(bs[buf ^ 1], 1, kRowPad, rb);
      }
      __syncthreads();
      buf ^= 1;
    }

#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int64_t row = row0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
      if (row >= m) continue;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int64_t col = col0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
        if (col < n) store_output(c, z * stride_c + row * n + col, acc[i][j], alpha, beta);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// bf16 tensor-core kernel

constexpr int kWTile = 64, kWTileK = 32, kWThreads = 128;
constexpr int kAPitch = kWTileK + 8;  // bf16 elements per shared row of A ([m][k]); 80 bytes
constexpr int kBPitch = kWTile + 8;   // of B ([k][n]); 144 bytes
constexpr int kCPitch = kWTile + 4;   // floats per row of the accumulator staging tile

__global__ void __launch_bounds__(kWThreads)
    matmul_bf16_wmma_kernel(Operand<__nv_bfloat16> a, Operand<__nv_bfloat16> b, dptr<float> c, int64_t m, int64_t n,
                            int64_t k, int64_t batch, int64_t stride_c, float alpha, float beta) {
  using namespace nvcuda;
  __shared__ __align__(32) __nv_bfloat16 as[2][kWTile * kAPitch];
  __shared__ __align__(32) __nv_bfloat16 bs[2][kWTileK * kBPitch];
  __shared__ __align__(32) float cs[kWTile * kCPitch];
  constexpr int kPer = TileWalk<kWTile, kWTileK, kWThreads>::kPer;
  const int warp = threadIdx.x / 32, warp_row = (warp / 2) * 32, warp_col = (warp % 2) * 32;
  const int64_t row0 = int64_t(blockIdx.y) * kWTile, col0 = int64_t(blockIdx.x) * kWTile;
  using Walk = TileWalk<kWTile, kWTileK, kWThreads>;
  const Walk walk_a(a.stride_k == 1), walk_b(b.stride_k == 1);

  for (int64_t z = blockIdx.z; z < batch; z += gridDim.z) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
    __nv_bfloat16 ra[kPer], rb[kPer];
    walk_a.load(a, z, row0, 0, k, ra);
    walk_b.load(b, z, col0, 0, k, rb);
    walk_a.store(as[0], kAPitch, 1, ra);
    walk_b.store(bs[0], 1, kBPitch, rb);
    __syncthreads();

    int buf = 0;
    for (int64_t k0 = 0; k0 < k; k0 += kWTileK) {
      const bool more = k0 + kWTileK < k;
      if (more) {
        walk_a.load(a, z, row0, k0 + kWTileK, k, ra);
        walk_b.load(b, z, col0, k0 + kWTileK, k, rb);
      }
#pragma unroll
      for (int kk = 0; kk < kWTileK; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb[2];
#pragma unroll
        for (int i = 0; i < 2; ++i)
          wmma::load_matrix_sync(fa[i], as[buf] + (warp_row + i * 16) * kAPitch + kk, kAPitch);
#pragma unroll
        for (int j = 0; j < 2; ++j)
          wmma::load_matrix_sync(fb[j], bs[buf] + kk * kBPitch + warp_col + j * 16, kBPitch);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
      if (more) {
        walk_a.store(as[buf ^ 1], kAPitch, 1, ra);
        walk_b.store(bs[buf ^ 1], 1, kBPitch, rb);
      }
      __syncthreads();
      buf ^= 1;
    }

#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(cs + (warp_row + i * 16) * kCPitch + warp_col + j * 16, acc[i][j], kCPitch,
                                wmma::mem_row_major);
    __syncthreads();
#pragma unroll 1  // unrolled, the hoisted 64-bit indices spill
    for (int index = threadIdx.x; index < kWTile * kWTile; index += kWThreads) {
      const int r = index / kWTile, col = index % kWTile;
      if (row0 + r < m && col0 + col < n)
        store_output(c, z * stride_c + (row0 + r) * n + col0 + col, cs[r * kCPitch + col], alpha, beta);
    }
    __syncthreads();  // cs is rewritten by the next batch entry
  }
}

// ---------------------------------------------------------------------------------------------
// A zero product (k == 0 or alpha == 0): C = beta * C, zeros without reading C when beta == 0.

__global__ void __launch_bounds__(256)
    matmul_scale_c_kernel(dptr<float> c, int64_t batch, int64_t mn, int64_t stride_c, float beta) {
  const int64_t total = batch * mn;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t index = (i / mn) * stride_c + i % mn;
    c[index] = beta == 0.f ? 0.f : beta * c[index];
  }
}

// ---------------------------------------------------------------------------------------------

template <class T>
Operand<T> operand_a(const rt::MatmulParams& p) {
  return {static_cast<const T*>(p.a), p.stride_a, p.trans_a ? 1 : p.k, p.trans_a ? p.m : 1, p.m};
}
template <class T>
Operand<T> operand_b(const rt::MatmulParams& p) {
  return {static_cast<const T*>(p.b), p.stride_b, p.trans_b ? p.k : 1, p.trans_b ? 1 : p.n, p.n};
}

inline unsigned batch_blocks(int64_t batch) { return unsigned(std::min<int64_t>(batch, 65535)); }

// gridDim.y is at most 65535 on every GPU (x allows 2^31 - 1, and the batch grid-strides over z):
// more row tiles than that fail here, by name, rather than as a bare launch error.
inline unsigned row_tiles(int64_t m, int tile) {
  const int64_t tiles = (m + tile - 1) / tile;
  if (tiles > 65535)
    rt::fail("matmul: " + std::to_string(m) + " rows of op(a) need " + std::to_string(tiles) + " row tiles of " +
             std::to_string(tile) + ", more than the 65535 of one launch (gridDim.y): at most " +
             std::to_string(int64_t(65535) * tile) + " rows");
  return unsigned(tiles);
}

template <class TA, class TB>
void launch_f32(const rt::MatmulParams& p) {
  using Types = OperandTypes<TA, TB>;
  const dim3 grid(rt::ceil_div(p.n, kTile), row_tiles(p.m, kTile), batch_blocks(p.batch));
  RT_LAUNCH(matmul_f32_kernel<Types>, grid, kThreads, 0, operand_a<TA>(p), operand_b<TB>(p), p.c,
            p.m, p.n, p.k, p.batch, p.stride_c, p.alpha, p.beta);
}

template <class TA>
void launch_f32_for_b(const rt::MatmulParams& p) {
  if (p.b_dtype == rt::DType::bf16)
    launch_f32<TA, __nv_bfloat16>(p);
  else
    launch_f32<TA, float>(p);
}

static void matmul(const rt::MatmulParams& p) {
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  if (p.k == 0 || p.alpha == 0.f) {
    const int blocks = static_cast<int>(std::min<int64_t>(rt::ceil_div(p.batch * p.m * p.n, 256), 8192));
    RT_LAUNCH(matmul_scale_c_kernel, blocks, 256, 0, p.c, p.batch, p.m * p.n, p.stride_c, p.beta);
    return;
  }
  if (p.a_dtype == rt::DType::bf16 && p.b_dtype == rt::DType::bf16) {
    const dim3 grid(rt::ceil_div(p.n, kWTile), row_tiles(p.m, kWTile), batch_blocks(p.batch));
    RT_LAUNCH(matmul_bf16_wmma_kernel, grid, kWThreads, 0, operand_a<__nv_bfloat16>(p), operand_b<__nv_bfloat16>(p),
              p.c, p.m, p.n, p.k, p.batch, p.stride_c, p.alpha, p.beta);
    return;
  }
  if (p.a_dtype == rt::DType::bf16)
    launch_f32_for_b<__nv_bfloat16>(p);
  else
    launch_f32_for_b<float>(p);
}

RT_REGISTER_OP(RT_BACKEND_ID, matmul, matmul);

}  // namespace RT_BACKEND_NS
