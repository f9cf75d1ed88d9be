// The cpu GEMM engine (gemm.h), the GotoBLAS/BLIS design:
//   C = alpha op(A) op(B) + beta C (+ bias and a rank-r update on the last k block).
//
// Loops, outermost first: jc over NC columns of C; pc over KC of the shared dimension, packing
// the KC x NC panel of op(B) into NR-wide column panels ([k][NR] each, contiguous); ic over MC
// rows, packing the MC x KC block of op(A) into MR-tall row panels ([k][MR] each); then the
// micro-tiles: an MR x NR block of C held in registers, updated by the micro-kernel with one
// broadcast of A and NR/lanes vector loads of B per k step. Transposes and bf16 are resolved
// while packing, so micro-kernels see contiguous, zero-padded f32 and edge tiles only differ at
// the store (masked on AVX-512, through a stack tile otherwise).
//
// Block sizes: the packed A block (MC x KC, ~340 KB) stays in the 1 MB L2, the B micro-panel
// (KC x NR) is reused across the ir loop from L1/L2, and the B panel (KC x NC) lives in L3.
// Threads share the packed panels: packing and the micro-tile grid of each block are split with
// parallel_for.
//
// The epilogue (LoRA's fused linear): on the last k block the micro-kernel adds bias[j] and
// sum_r h[i][r] up[r][j] to the tile before storing it. For rank 1, h itself can be produced
// here: while a row block of A is packed (its rows are in cache then), each row's dot product
// with the down vector is accumulated, so h[i] is complete before the epilogue of that row block.
#include "gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>

#include "bf16.h"
#include "isa.h"
#include "parallel.h"
#include "transpose.h"
#include "vec_math.h"

namespace rt::cpu {
namespace {

inline float load_f32(const float* p, int64_t i) { return p[i]; }
inline float load_f32(const uint16_t* p, int64_t i) { return bf16_to_f32(p[i]); }

// Packs rows [w0, w0 + count) x [p0, p0 + kc) of `op` into W-wide panels: out[(w / W) * kc * W +
// p * W + w % W], zero-padding the last panel to W.
template <int W, class T>
void pack_panels(const T* src, int64_t stride_w, int64_t stride_k, int64_t w0, int64_t count, int64_t p0,
                 int64_t kc, float* out) {
  for (int64_t panel = 0; panel < count; panel += W) {
    const int64_t width = std::min<int64_t>(W, count - panel);
    float* dst = out + panel * kc;
    const T* base = src + (w0 + panel) * stride_w + p0 * stride_k;
    if (stride_w == 1) {  // contiguous along w: copy rows of the panel
      for (int64_t p = 0; p < kc; ++p) {
        const T* s = base + p * stride_k;
        float* d = dst + p * W;
        for (int64_t w = 0; w < width; ++w) d[w] = load_f32(s, w);
        for (int64_t w = width; w < W; ++w) d[w] = 0.f;
      }
    } else if (width == W) {
      // Contiguous along k: W row streams read in step, each packed row written whole.
      for (int64_t p = 0; p < kc; ++p) {
        float* d = dst + p * W;
#pragma GCC unroll 8
        for (int w = 0; w < W; ++w) d[w] = load_f32(base + w * stride_w, p * stride_k);
      }
    } else {
      for (int64_t w = 0; w < width; ++w) {
        const T* s = base + w * stride_w;
        for (int64_t p = 0; p < kc; ++p) dst[p * W + w] = load_f32(s, p * stride_k);
      }
      for (int64_t w = width; w < W; ++w)
        for (int64_t p = 0; p < kc; ++p) dst[p * W + w] = 0.f;
    }
  }
}

// pack_panels' k-contiguous case for whole f32 panels (the weight of x W^T, and a row-major A):
// 8 x 8 blocks transposed in registers instead of W strided scalar loads per k; the rows past the
// last multiple of 8 (W = 14, 6) go element by element.
template <int W>
__attribute__((target("avx2"))) void pack_k_contiguous_avx2(const float* src, int64_t stride_w, int64_t w0,
                                                             int64_t count, int64_t p0, int64_t kc, float* out) {
  constexpr int kBlocked = W / 8 * 8;
  for (int64_t panel = 0; panel < count; panel += W) {
    const float* base = src + (w0 + panel) * stride_w + p0;
    float* dst = out + panel * kc;
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
      for (int w = 0; w < kBlocked; w += 8) transpose_8x8(base + w * stride_w + p, stride_w, dst + p * W + w, W);
      for (int w = kBlocked; w < W; ++w)
        for (int64_t q = p; q < p + 8; ++q) dst[q * W + w] = base[w * stride_w + q];
    }
    for (; p < kc; ++p)
      for (int w = 0; w < W; ++w) dst[p * W + w] = base[w * stride_w + p];
  }
}

template <int W>
void pack(const GemmOperand& op, int64_t w0, int64_t count, int64_t p0, int64_t kc, float* out) {
  if constexpr (W >= 8) {
    // Whole panels only: a ragged last panel takes the general path below.
    const int64_t whole = count / W * W;
    if (op.dtype == DType::f32 && op.stride_k == 1 && op.stride_w != 1 && whole > 0 && isa() != Isa::scalar) {
      pack_k_contiguous_avx2<W>(static_cast<const float*>(op.data), op.stride_w, w0, whole, p0, kc, out);
      if (whole == count) return;
      w0 += whole;
      count -= whole;
      out += whole * kc;
    }
  }
  if (op.dtype == DType::bf16)
    pack_panels<W>(static_cast<const uint16_t*>(op.data), op.stride_w, op.stride_k, w0, count, p0, kc, out);
  else
    pack_panels<W>(static_cast<const float*>(op.data), op.stride_w, op.stride_k, w0, count, p0, kc, out);
}

// The epilogue as one micro-tile sees it: pointers at the tile's first row (h) and column (bias, up).
struct TileEpilogue {
  const float* bias;
  const float* h;
  const float* up;
  int64_t rank, ld_up;

  float at(int i, int j) const {
    float v = bias ? bias[j] : 0.f;
    for (int64_t r = 0; r < rank; ++r) v += h[i * rank + r] * up[r * ld_up + j];
    return v;
  }
};

// Writes an MR x NR tile computed into `tile` to c: alpha * tile + beta * c (+ epilogue) for the
// m x n corner. beta == 0 never reads c.
template <int MR, int NR>
inline void store_tile(const float* tile, float* c, int64_t ldc, int m, int n, float alpha, float beta,
                       const TileEpilogue* e) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      float v = alpha * tile[i * NR + j];
      if (beta != 0.f) v += beta * c[i * ldc + j];
      if (e) v += e->at(i, j);
      c[i * ldc + j] = v;
    }
}

// Micro-kernels: c[0..m) x [0..n) = alpha * (a-panel x b-panel) + beta * c (+ epilogue), m <= MR,
// n <= NR. beta == 0 never reads c.

struct Avx512Kernel {
  static constexpr int MR = 14, NR = 32;
  static constexpr int64_t MC = 14 * 24, KC = 256, NC = 3072;

  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
  static void run(int64_t kc, const float* __restrict__ a, const float* __restrict__ b, float* c, int64_t ldc,
                  int m, int n, float alpha, float beta, const TileEpilogue* e) {
    __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    for (int64_t p = 0; p < kc; ++p) {
      const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
      for (int i = 0; i < MR; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      }
      a += MR;
      b += NR;
    }
    const __mmask16 k0 = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
    const __mmask16 k1 = n >= 32 ? __mmask16(0xffff) : n > 16 ? __mmask16((1u << (n - 16)) - 1) : __mmask16(0);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i) {
      if (i >= m) break;
      float* row = c + i * ldc;
      __m512 r0 = _mm512_mul_ps(va, acc0[i]), r1 = _mm512_mul_ps(va, acc1[i]);
      if (beta != 0.f) {
        r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k0, row), r0);
        r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k1, row + 16), r1);
      }
      if (e) {
        if (e->bias) {
          r0 = _mm512_add_ps(r0, _mm512_loadu_ps(e->bias));
          r1 = _mm512_add_ps(r1, _mm512_loadu_ps(e->bias + 16));
        }
        for (int64_t r = 0; r < e->rank; ++r) {
          const __m512 hv = _mm512_set1_ps(e->h[i * e->rank + r]);
          const float* up = e->up + r * e->ld_up;
          r0 = _mm512_fmadd_ps(hv, _mm512_loadu_ps(up), r0);
          r1 = _mm512_fmadd_ps(hv, _mm512_loadu_ps(up + 16), r1);
        }
      }
      _mm512_mask_storeu_ps(row, k0, r0);
      _mm512_mask_storeu_ps(row + 16, k1, r1);
    }
  }

  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,prefer-vector-width=512")))
  static float dot(const float* x, const float* y, int64_t n) {
    return dot16(x, y, n);
  }
};

struct Avx2Kernel {
  static constexpr int MR = 6, NR = 16;
  static constexpr int64_t MC = 6 * 48, KC = 256, NC = 3072;

  __attribute__((target("avx2,fma")))
  static void run(int64_t kc, const float* __restrict__ a, const float* __restrict__ b, float* c, int64_t ldc,
                  int m, int n, float alpha, float beta, const TileEpilogue* e) {
    __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
    for (int64_t p = 0; p < kc; ++p) {
      const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        const __m256 ai = _mm256_broadcast_ss(a + i);
        acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
      }
      a += MR;
      b += NR;
    }
    if (m == MR && n == NR) {
      const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        float* row = c + i * ldc;
        __m256 r0 = _mm256_mul_ps(va, acc0[i]), r1 = _mm256_mul_ps(va, acc1[i]);
        if (beta != 0.f) {
          r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row), r0);
          r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row + 8), r1);
        }
        if (e) {
          if (e->bias) {
            r0 = _mm256_add_ps(r0, _mm256_loadu_ps(e->bias));
            r1 = _mm256_add_ps(r1, _mm256_loadu_ps(e->bias + 8));
          }
          for (int64_t r = 0; r < e->rank; ++r) {
            const __m256 hv = _mm256_set1_ps(e->h[i * e->rank + r]);
            const float* up = e->up + r * e->ld_up;
            r0 = _mm256_fmadd_ps(hv, _mm256_loadu_ps(up), r0);
            r1 = _mm256_fmadd_ps(hv, _mm256_loadu_ps(up + 8), r1);
          }
        }
        _mm256_storeu_ps(row, r0);
        _mm256_storeu_ps(row + 8, r1);
      }
      return;
    }
    alignas(32) float tile[MR * NR];
    for (int i = 0; i < MR; ++i) {
      _mm256_store_ps(tile + i * NR, acc0[i]);
      _mm256_store_ps(tile + i * NR + 8, acc1[i]);
    }
    store_tile<MR, NR>(tile, c, ldc, m, n, alpha, beta, e);
  }

  __attribute__((target("avx2,fma"))) static float dot(const float* x, const float* y, int64_t n) {
    return dot16(x, y, n);
  }
};

struct ScalarKernel {
  static constexpr int MR = 4, NR = 16;
  static constexpr int64_t MC = 4 * 64, KC = 256, NC = 2048;

  static void run(int64_t kc, const float* __restrict__ a, const float* __restrict__ b, float* c, int64_t ldc,
                  int m, int n, float alpha, float beta, const TileEpilogue* e) {
    float tile[MR * NR] = {};
    for (int64_t p = 0; p < kc; ++p, a += MR, b += NR)
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) tile[i * NR + j] += a[i] * b[j];
    store_tile<MR, NR>(tile, c, ldc, m, n, alpha, beta, e);
  }

  static float dot(const float* x, const float* y, int64_t n) { return dot16(x, y, n); }
};

// A 64-byte aligned scratch buffer per thread, grown on demand and kept for the next call.
class PackBuffer {
 public:
  ~PackBuffer() { std::free(data_); }
  float* get(size_t floats) {
    if (floats > capacity_) {
      std::free(data_);
      data_ = static_cast<float*>(std::aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64));
      if (data_ == nullptr) {
        capacity_ = 0;
        fail("matmul: out of memory for packing buffers");
      }
      capacity_ = floats;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

thread_local PackBuffer packed_a_buffer, packed_b_buffer;

// Runs fn over [0, n) on the pool when `parallel`, else inline.
template <class Fn>
void split(bool parallel, int64_t n, int64_t grain, const Fn& fn) {
  if (parallel)
    parallel_for(n, grain, fn);
  else
    fn(0, n);
}

template <class K>
void run_gemm(const GemmProblem& pb, bool parallel) {
  constexpr int MR = K::MR, NR = K::NR;
  const int64_t ldc = pb.ldc;
  const int64_t kc_max = std::min(K::KC, pb.k);
  const int64_t nc_max = std::min(K::NC, (pb.n + NR - 1) / NR * NR);
  const int64_t mc_max = std::min(K::MC, (pb.m + MR - 1) / MR * MR);
  float* packed_b = packed_b_buffer.get(size_t(kc_max * nc_max));
  float* packed_a = packed_a_buffer.get(size_t(kc_max * mc_max));
  const GemmEpilogue* epilogue = pb.epilogue;
  const float* a_rows = static_cast<const float*>(pb.a.data);

  for (int64_t jc = 0; jc < pb.n; jc += K::NC) {
    const int64_t nc = std::min(K::NC, pb.n - jc);
    const int64_t b_panels = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < pb.k; pc += K::KC) {
      const int64_t kc = std::min(K::KC, pb.k - pc);
      const bool last = pc + kc == pb.k;
      const float beta = pc == 0 ? pb.beta : 1.f;
      const bool fuse_dot = epilogue && epilogue->dot && jc == 0;
      const int64_t pack_grain_b = std::max<int64_t>(1, 16384 / (kc * NR));
      split(parallel, b_panels, pack_grain_b, [&](int64_t lo, int64_t hi) {
        pack<NR>(pb.b, jc + lo * NR, std::min(nc, hi * NR) - lo * NR, pc, kc, packed_b + lo * NR * kc);
      });
      for (int64_t ic = 0; ic < pb.m; ic += K::MC) {
        const int64_t mc = std::min(K::MC, pb.m - ic);
        const int64_t a_panels = (mc + MR - 1) / MR;
        const int64_t pack_grain_a = std::max<int64_t>(1, 16384 / (kc * MR));
        split(parallel, a_panels, pack_grain_a, [&](int64_t lo, int64_t hi) {
          const int64_t rows = std::min(mc, hi * MR) - lo * MR;
          pack<MR>(pb.a, ic + lo * MR, rows, pc, kc, packed_a + lo * MR * kc);
          if (!fuse_dot) return;
          for (int64_t i = ic + lo * MR; i < ic + lo * MR + rows; ++i) {
            const float d = K::dot(a_rows + i * pb.a.stride_w + pc, epilogue->dot + pc, kc);
            epilogue->h_out[i] = pc == 0 ? d : epilogue->h_out[i] + d;
          }
        });
        // Micro-tiles in jr-major order: consecutive tiles share the B micro-panel.
        const int64_t tile_grain = std::max<int64_t>(1, (1 << 18) / (2 * MR * NR * kc));
        split(parallel, a_panels * b_panels, tile_grain, [&](int64_t lo, int64_t hi) {
          for (int64_t t = lo; t < hi; ++t) {
            const int64_t jr = t / a_panels, ir = t % a_panels;
            const int64_t i0 = ic + ir * MR, j0 = jc + jr * NR;
            TileEpilogue tile_epilogue{};
            const bool with_epilogue = last && epilogue != nullptr;
            if (with_epilogue) {
              tile_epilogue = {epilogue->bias ? epilogue->bias + j0 : nullptr,
                               epilogue->h ? epilogue->h + i0 * epilogue->rank : nullptr,
                               epilogue->up ? epilogue->up + j0 : nullptr, epilogue->h ? epilogue->rank : 0,
                               epilogue->ld_up};
            }
            K::run(kc, packed_a + ir * MR * kc, packed_b + jr * NR * kc, pb.c + i0 * ldc + j0, ldc,
                   int(std::min<int64_t>(MR, mc - ir * MR)), int(std::min<int64_t>(NR, nc - jr * NR)), pb.alpha,
                   beta, with_epilogue ? &tile_epilogue : nullptr);
          }
        });
      }
    }
  }
}

}  // namespace

void gemm(const GemmProblem& problem, bool parallel) {
  switch (isa()) {
    case Isa::avx512: return run_gemm<Avx512Kernel>(problem, parallel);
    case Isa::avx2: return run_gemm<Avx2Kernel>(problem, parallel);
    case Isa::scalar: return run_gemm<ScalarKernel>(problem, parallel);
  }
}

int64_t gemm_panel_width() {
  switch (isa()) {
    case Isa::avx512: return Avx512Kernel::NR;
    case Isa::avx2: return Avx2Kernel::NR;
    case Isa::scalar: return ScalarKernel::NR;
  }
  return ScalarKernel::NR;
}

}  // namespace rt::cpu
