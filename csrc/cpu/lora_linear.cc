// LoRA-fused linear layer: y = x w^T + bias + scale * (x down) up, and its gradients.
//
// One blocked GEMM engine (GotoBLAS shape) of our own: per k block of KC, the B operand is packed
// into NR-wide panels shared by all threads; each task owns MC rows, packs its slice of A into
// MR-tall panels and runs an MR x NR register-tile micro-kernel (AVX-512 12x32 or AVX2 6x16, FMA)
// over every panel. On the last k block the micro-kernel applies an epilogue before storing:
// + bias[j] + sum_r h[i, r] * (scale up)[r, j] (the rank-r update costs r/K of the GEMM).
//
// h = x down is computed in the same pass over x:
//   - rank 1: while A's rows are packed (x is in L1 then), one dot product per row with down;
//   - rank r > 1: down^T is an extra leading segment of B columns, so its panels are multiplied by
//     the same packed x tile right before the base panels.
// Either way x is read from memory once, and h is complete for a row block before the epilogue of
// its last k block needs it. Rank 0 is the plain linear (the benchmark baseline).
//
// The backward reuses the engine: dx = dy w with g = dy up^T fused the same way (epilogue adds
// scale g down^T), then ddown = scale x^T g, dup = scale h^T dy (computed as its transpose, so the
// long M axis is the reduction and the N axis the parallel rows), dw = dy^T x, dbias = sum_rows dy.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../ops.h"
#include "isa.h"
#include "parallel.h"

namespace rt::cpu {
namespace {

constexpr int64_t kKc = 256;

// 64-byte aligned scratch, so the packed panels' vector loads never straddle cache lines.
class AlignedBuffer {
 public:
  float* get(size_t floats) {
    if (storage_.size() < floats + 16) storage_.resize(floats + 16);
    const auto address = reinterpret_cast<uintptr_t>(storage_.data());
    return storage_.data() + ((64 - address % 64) % 64) / sizeof(float);
  }

 private:
  std::vector<float> storage_;
};

// A read-only strided matrix: element (i, j) at p[i * rs + j * cs].
struct View {
  const float* p;
  int64_t rs, cs;
  float at(int64_t i, int64_t j) const { return p[i * rs + j * cs]; }
};

struct OutView {
  float* p;
  int64_t rs, cs;
};

// What the micro-kernel adds on the last k block: bias (NR values at this panel, or null) and
// sum_r h[i, r] * up[r, j] (up already times scale, rows ld_up apart; null for none).
struct TileEpilogue {
  const float* bias = nullptr;
  const float* up = nullptr;
  int64_t ld_up = 0, rank = 0;
  const float* h = nullptr;  // [rows, rank]; rows past the end are clamped (their results are dropped)
  int64_t row0 = 0, rows = 0;
};

struct TileArgs {
  int64_t kc;
  const float* a;  // packed [kc][MR]
  const float* b;  // packed [kc][NR]
  float* c;        // MR x NR destination, row-major with ldc
  int64_t ldc;
  bool accumulate;
  float alpha;
  const TileEpilogue* epilogue;
};

const float* h_row(const TileEpilogue& e, int64_t ii) {
  return e.h + std::min(e.row0 + ii, e.rows - 1) * e.rank;
}

template <int MR, int NR>
void micro_scalar(const TileArgs& t) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < t.kc; ++k)
    for (int ii = 0; ii < MR; ++ii)
      for (int jj = 0; jj < NR; ++jj) acc[ii][jj] += t.a[k * MR + ii] * t.b[k * NR + jj];
  for (int ii = 0; ii < MR; ++ii) {
    float* c = t.c + ii * t.ldc;
    for (int jj = 0; jj < NR; ++jj) {
      float v = t.alpha * acc[ii][jj];
      if (t.accumulate) v += c[jj];
      if (t.epilogue) {
        const TileEpilogue& e = *t.epilogue;
        if (e.bias) v += e.bias[jj];
        if (e.up) {
          const float* h = h_row(e, ii);
          for (int64_t r = 0; r < e.rank; ++r) v += h[r] * e.up[r * e.ld_up + jj];
        }
      }
      c[jj] = v;
    }
  }
}

float dot_scalar(const float* x, const float* y, int64_t n) {
  float lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += x[i + l] * y[i + l];
  float s = 0;
  for (float v : lanes) s += v;
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

struct ScalarKernel {
  static constexpr int MR = 4, NR = 16;
  static void micro(const TileArgs& t) { micro_scalar<MR, NR>(t); }
  static float dot(const float* x, const float* y, int64_t n) { return dot_scalar(x, y, n); }
};

__attribute__((target("avx512f,fma"))) void micro_avx512(const TileArgs& t) {
  constexpr int MR = 12;
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int ii = 0; ii < MR; ++ii) {
    acc[ii][0] = acc[ii][1] = _mm512_setzero_ps();
    _mm_prefetch(reinterpret_cast<const char*>(t.c + ii * t.ldc), _MM_HINT_T0);
  }
  const float* a = t.a;
  const float* b = t.b;
  for (int64_t k = 0; k < t.kc; ++k, a += MR, b += 32) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
    for (int ii = 0; ii < MR; ++ii) {
      const __m512 av = _mm512_set1_ps(a[ii]);
      acc[ii][0] = _mm512_fmadd_ps(av, b0, acc[ii][0]);
      acc[ii][1] = _mm512_fmadd_ps(av, b1, acc[ii][1]);
    }
  }
  const __m512 alpha = _mm512_set1_ps(t.alpha);
  const TileEpilogue* e = t.epilogue;
  for (int ii = 0; ii < MR; ++ii) {
    float* c = t.c + ii * t.ldc;
    __m512 v0 = _mm512_mul_ps(alpha, acc[ii][0]), v1 = _mm512_mul_ps(alpha, acc[ii][1]);
    if (t.accumulate) {
      v0 = _mm512_add_ps(v0, _mm512_loadu_ps(c));
      v1 = _mm512_add_ps(v1, _mm512_loadu_ps(c + 16));
    }
    if (e) {
      if (e->bias) {
        v0 = _mm512_add_ps(v0, _mm512_loadu_ps(e->bias));
        v1 = _mm512_add_ps(v1, _mm512_loadu_ps(e->bias + 16));
      }
      if (e->up) {
        const float* h = h_row(*e, ii);
        for (int64_t r = 0; r < e->rank; ++r) {
          const __m512 hv = _mm512_set1_ps(h[r]);
          const float* up = e->up + r * e->ld_up;
          v0 = _mm512_fmadd_ps(hv, _mm512_loadu_ps(up), v0);
          v1 = _mm512_fmadd_ps(hv, _mm512_loadu_ps(up + 16), v1);
        }
      }
    }
    _mm512_storeu_ps(c, v0);
    _mm512_storeu_ps(c + 16, v1);
  }
}

__attribute__((target("avx512f"))) double hsum512(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  double s = 0;
  for (float x : lanes) s += x;
  return s;
}

__attribute__((target("avx512f,fma"))) float dot_avx512(const float* x, const float* y, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), acc1);
  }
  float s = float(hsum512(_mm512_add_ps(acc0, acc1)));
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

struct Avx512Kernel {
  static constexpr int MR = 12, NR = 32;
  static void micro(const TileArgs& t) { micro_avx512(t); }
  static float dot(const float* x, const float* y, int64_t n) { return dot_avx512(x, y, n); }
};

__attribute__((target("avx2,fma"))) void micro_avx2(const TileArgs& t) {
  constexpr int MR = 6;
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int ii = 0; ii < MR; ++ii) {
    acc[ii][0] = acc[ii][1] = _mm256_setzero_ps();
    _mm_prefetch(reinterpret_cast<const char*>(t.c + ii * t.ldc), _MM_HINT_T0);
  }
  const float* a = t.a;
  const float* b = t.b;
  for (int64_t k = 0; k < t.kc; ++k, a += MR, b += 16) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int ii = 0; ii < MR; ++ii) {
      const __m256 av = _mm256_broadcast_ss(a + ii);
      acc[ii][0] = _mm256_fmadd_ps(av, b0, acc[ii][0]);
      acc[ii][1] = _mm256_fmadd_ps(av, b1, acc[ii][1]);
    }
  }
  const __m256 alpha = _mm256_set1_ps(t.alpha);
  const TileEpilogue* e = t.epilogue;
  for (int ii = 0; ii < MR; ++ii) {
    float* c = t.c + ii * t.ldc;
    __m256 v0 = _mm256_mul_ps(alpha, acc[ii][0]), v1 = _mm256_mul_ps(alpha, acc[ii][1]);
    if (t.accumulate) {
      v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c));
      v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c + 8));
    }
    if (e) {
      if (e->bias) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(e->bias));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(e->bias + 8));
      }
      if (e->up) {
        const float* h = h_row(*e, ii);
        for (int64_t r = 0; r < e->rank; ++r) {
          const __m256 hv = _mm256_set1_ps(h[r]);
          const float* up = e->up + r * e->ld_up;
          v0 = _mm256_fmadd_ps(hv, _mm256_loadu_ps(up), v0);
          v1 = _mm256_fmadd_ps(hv, _mm256_loadu_ps(up + 8), v1);
        }
      }
    }
    _mm256_storeu_ps(c, v0);
    _mm256_storeu_ps(c + 8, v1);
  }
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* x, const float* y, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), acc1);
  }
  acc0 = _mm256_add_ps(acc0, acc1);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
  s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  s4 = _mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 1));
  float s = _mm_cvtss_f32(s4);
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

struct Avx2Kernel {
  static constexpr int MR = 6, NR = 16;
  static void micro(const TileArgs& t) { micro_avx2(t); }
  static float dot(const float* x, const float* y, int64_t n) { return dot_avx2(x, y, n); }
};

// Columns of the product that land in one output: C(i, j) (+)= alpha * sum_k A(i, k) B(k, j), j < n.
struct Segment {
  View b;
  int64_t n = 0;
  OutView c;
  bool accumulate = false;
  // Applied on the last k block (pointers into arrays padded to whole panels), or null.
  const float* bias = nullptr;
  const float* up = nullptr;  // [rank, ld_up], scale folded in
  int64_t ld_up = 0, rank = 0;
  const float* h = nullptr;  // [m, rank]
};

struct Gemm {
  int64_t m = 0, k = 0;
  View a;
  float alpha = 1;
  Segment segments[2];
  int segment_count = 0;
  // Rank-1 fusion: dot_out[i] = sum_k A(i, k) dot_vector[k], accumulated while A is packed
  // (needs A.cs == 1). Finished for a row block before that block's last-k-block epilogue.
  const float* dot_vector = nullptr;
  float* dot_out = nullptr;
};

template <class Kernel>
void pack_b_panel(const View& b, int64_t n, int64_t k0, int64_t kc, int64_t j0, float* out) {
  constexpr int NR = Kernel::NR;
  const int64_t cols = std::min<int64_t>(NR, n - j0);
  if (b.cs == 1) {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = b.p + (k0 + k) * b.rs + j0;
      float* dst = out + k * NR;
      for (int64_t jj = 0; jj < cols; ++jj) dst[jj] = src[jj];
      for (int64_t jj = cols; jj < NR; ++jj) dst[jj] = 0;
    }
  } else if (cols == NR) {
    const float* base = b.p + j0 * b.cs + k0 * b.rs;
    for (int64_t k = 0; k < kc; ++k) {
#pragma GCC unroll 16
      for (int jj = 0; jj < NR; ++jj) out[k * NR + jj] = base[jj * b.cs + k * b.rs];
    }
  } else {
    for (int64_t jj = 0; jj < NR; ++jj) {
      if (jj < cols) {
        const float* src = b.p + (j0 + jj) * b.cs + k0 * b.rs;
        for (int64_t k = 0; k < kc; ++k) out[k * NR + jj] = src[k * b.rs];
      } else {
        for (int64_t k = 0; k < kc; ++k) out[k * NR + jj] = 0;
      }
    }
  }
}

template <class Kernel>
void pack_a_block(const View& a, int64_t m, int64_t i0, int64_t mc_padded, int64_t k0, int64_t kc, float* out) {
  constexpr int MR = Kernel::MR;
  for (int64_t block = 0; block < mc_padded; block += MR) {
    float* dst = out + block * kc;
    const float* base = a.p + (i0 + block) * a.rs + k0 * a.cs;
    if (i0 + block + MR <= m) {
      // A whole panel: MR row streams read in step, each packed k-row written whole.
      for (int64_t k = 0; k < kc; ++k) {
#pragma GCC unroll 16
        for (int ii = 0; ii < MR; ++ii) dst[k * MR + ii] = base[ii * a.rs + k * a.cs];
      }
      continue;
    }
    for (int64_t ii = 0; ii < MR; ++ii) {
      if (i0 + block + ii >= m) {
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + ii] = 0;
      } else {
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + ii] = base[ii * a.rs + k * a.cs];
      }
    }
  }
}

template <class Kernel>
void run_gemm(const Gemm& g) {
  constexpr int MR = Kernel::MR, NR = Kernel::NR;
  if (g.m == 0) return;
  // Enough row blocks to keep every thread busy, at most 8 micro-panels (A slice ~ L2-sized).
  const int64_t micro_rows = (g.m + MR - 1) / MR;
  const int64_t per_block = std::clamp<int64_t>(micro_rows / (2 * num_threads()), 1, 8);
  const int64_t mc = per_block * MR;
  const int64_t row_blocks = (g.m + mc - 1) / mc;

  int64_t panel_offset[3] = {0, 0, 0};
  for (int s = 0; s < g.segment_count; ++s)
    panel_offset[s + 1] = panel_offset[s] + (g.segments[s].n + NR - 1) / NR;
  const int64_t panels = panel_offset[g.segment_count];
  AlignedBuffer b_buffer;
  float* const b_pack = b_buffer.get(size_t(panels * std::min(kKc, std::max<int64_t>(g.k, 1)) * NR));

  for (int64_t k0 = 0; k0 < g.k; k0 += kKc) {
    const int64_t kc = std::min(kKc, g.k - k0);
    const bool last = k0 + kc == g.k;
    parallel_tasks(panels, [&](int64_t panel) {
      int s = 0;
      while (panel >= panel_offset[s + 1]) ++s;
      const Segment& seg = g.segments[s];
      pack_b_panel<Kernel>(seg.b, seg.n, k0, kc, (panel - panel_offset[s]) * NR, b_pack + panel * kc * NR);
    });
    parallel_tasks(row_blocks, [&](int64_t block) {
      thread_local AlignedBuffer a_buffer;
      const int64_t i0 = block * mc;
      const int64_t rows = std::min(mc, g.m - i0);
      const int64_t rows_padded = (rows + MR - 1) / MR * MR;
      float* const a_pack = a_buffer.get(size_t(rows_padded * kc));
      pack_a_block<Kernel>(g.a, g.m, i0, rows_padded, k0, kc, a_pack);
      if (g.dot_vector) {
        for (int64_t i = i0; i < i0 + rows; ++i) {
          float d = Kernel::dot(g.a.p + i * g.a.rs + k0, g.dot_vector + k0, kc);
          g.dot_out[i] = k0 == 0 ? d : g.dot_out[i] + d;
        }
      }
      alignas(64) float tile[MR * NR];
      for (int s = 0; s < g.segment_count; ++s) {
        const Segment& seg = g.segments[s];
        for (int64_t j0 = 0; j0 < seg.n; j0 += NR) {
          const float* b = b_pack + (panel_offset[s] + j0 / NR) * kc * NR;
          const int64_t cols = std::min<int64_t>(NR, seg.n - j0);
          TileEpilogue epilogue;
          const bool with_epilogue = last && (seg.bias || seg.up);
          if (with_epilogue) {
            epilogue.bias = seg.bias ? seg.bias + j0 : nullptr;
            epilogue.up = seg.up ? seg.up + j0 : nullptr;
            epilogue.ld_up = seg.ld_up;
            epilogue.rank = seg.rank;
            epilogue.h = seg.h;
            epilogue.rows = g.m;
          }
          for (int64_t r0 = 0; r0 < rows; r0 += MR) {
            const int64_t i = i0 + r0;
            const int64_t tile_rows = std::min<int64_t>(MR, rows - r0);
            epilogue.row0 = i;
            TileArgs t{kc, a_pack + r0 * kc, b, nullptr, 0, seg.accumulate || k0 > 0, g.alpha,
                       with_epilogue ? &epilogue : nullptr};
            float* c = seg.c.p + i * seg.c.rs + j0 * seg.c.cs;
            if (tile_rows == MR && cols == NR && seg.c.cs == 1) {
              t.c = c;
              t.ldc = seg.c.rs;
              Kernel::micro(t);
              continue;
            }
            t.c = tile;
            t.ldc = NR;
            if (t.accumulate) {
              for (int64_t ii = 0; ii < MR; ++ii)
                for (int64_t jj = 0; jj < NR; ++jj)
                  tile[ii * NR + jj] = ii < tile_rows && jj < cols ? c[ii * seg.c.rs + jj * seg.c.cs] : 0.f;
            }
            Kernel::micro(t);
            for (int64_t ii = 0; ii < tile_rows; ++ii)
              for (int64_t jj = 0; jj < cols; ++jj) c[ii * seg.c.rs + jj * seg.c.cs] = tile[ii * NR + jj];
          }
        }
      }
    });
  }
}

void gemm(const Gemm& g) {
  switch (isa()) {
    case Isa::avx512: return run_gemm<Avx512Kernel>(g);
    case Isa::avx2: return run_gemm<Avx2Kernel>(g);
    case Isa::scalar: return run_gemm<ScalarKernel>(g);
  }
}

int64_t panel_width() {
  switch (isa()) {
    case Isa::avx512: return Avx512Kernel::NR;
    case Isa::avx2: return Avx2Kernel::NR;
    case Isa::scalar: return ScalarKernel::NR;
  }
  return ScalarKernel::NR;
}

// out = a b + bias + scale (a d) u, with h = a d written: a is m x k, b k x n, d k x r, u r x n;
// out and h row-major. The forward (a = x) and the dx of the backward (a = dy) are both this.
void fused_lora_gemm(int64_t m, int64_t k, int64_t n, int64_t rank, View a, View b, View d, View u,
                     const float* bias, float scale, float* out, float* h) {
  const int64_t width = panel_width();
  const int64_t n_padded = (n + width - 1) / width * width;
  std::vector<float> bias_padded, up_padded;
  Gemm g;
  g.m = m;
  g.k = k;
  g.a = a;
  Segment base;
  base.b = b;
  base.n = n;
  base.c = {out, n, 1};
  if (bias) {
    bias_padded.assign(size_t(n_padded), 0.f);
    std::copy(bias, bias + n, bias_padded.begin());
    base.bias = bias_padded.data();
  }
  if (rank > 0) {
    up_padded.assign(size_t(rank * n_padded), 0.f);
    for (int64_t r = 0; r < rank; ++r)
      for (int64_t j = 0; j < n; ++j) up_padded[size_t(r * n_padded + j)] = scale * u.at(r, j);
    base.up = up_padded.data();
    base.ld_up = n_padded;
    base.rank = rank;
    base.h = h;
    if (rank == 1 && a.cs == 1 && d.rs == 1) {
      g.dot_vector = d.p;
      g.dot_out = h;
    } else {
      Segment down;
      down.b = d;
      down.n = rank;
      down.c = {h, rank, 1};
      g.segments[g.segment_count++] = down;
    }
  }
  g.segments[g.segment_count++] = base;
  if (k == 0) {
    // No product to accumulate: the output is the epilogue alone (h = 0).
    for (int64_t i = 0; i < m * rank; ++i) h[i] = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) out[i * n + j] = bias ? bias[j] : 0.f;
    return;
  }
  gemm(g);
}

void plain_gemm(int64_t m, int64_t k, int64_t n, View a, View b, OutView c, float alpha) {
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c.p[i * c.rs + j * c.cs] = 0;
    return;
  }
  Gemm g;
  g.m = m;
  g.k = k;
  g.a = a;
  g.alpha = alpha;
  g.segments[0].b = b;
  g.segments[0].n = n;
  g.segments[0].c = c;
  g.segment_count = 1;
  gemm(g);
}

void lora_linear(const LoraLinearParams& p) {
  fused_lora_gemm(p.m, p.k, p.n, p.rank, View{p.x, p.k, 1}, View{p.w, 1, p.k}, View{p.down, p.rank, 1},
                  View{p.up, p.n, 1}, p.bias, p.scale, p.y, p.h);
}

void lora_linear_backward(const LoraLinearBackwardParams& p) {
  const int64_t m = p.m, n = p.n, k = p.k, r = p.rank;
  // g = dy up^T [m, r], fused into dx = dy w + scale g down^T.
  std::vector<float> g(size_t(m * r));
  fused_lora_gemm(m, n, k, r, View{p.dy, n, 1}, View{p.w, k, 1}, View{p.up, 1, n}, View{p.down, 1, r}, nullptr,
                  p.scale, p.dx, g.data());
  if (r > 0) {
    plain_gemm(k, m, r, View{p.x, 1, k}, View{g.data(), r, 1}, OutView{p.ddown, r, 1}, p.scale);
    plain_gemm(n, m, r, View{p.dy, 1, n}, View{p.h, r, 1}, OutView{p.dup, 1, n}, p.scale);
  }
  if (p.dw) plain_gemm(n, m, k, View{p.dy, 1, n}, View{p.x, k, 1}, OutView{p.dw, k, 1}, 1.f);
  if (p.dbias) {
    constexpr int64_t kColumns = 256;
    parallel_tasks((n + kColumns - 1) / kColumns, [&](int64_t block) {
      const int64_t j0 = block * kColumns, j1 = std::min(n, j0 + kColumns);
      float sums[kColumns] = {};
      for (int64_t i = 0; i < m; ++i) {
        const float* row = p.dy + i * n;
        for (int64_t j = j0; j < j1; ++j) sums[j - j0] += row[j];
      }
      std::copy(sums, sums + (j1 - j0), p.dbias + j0);
    });
  }
}

}  // namespace

RT_REGISTER_OP(BackendId::cpu, lora_linear, lora_linear);
RT_REGISTER_OP(BackendId::cpu, lora_linear_backward, lora_linear_backward);

}  // namespace rt::cpu
