// LoRA-fused linear layer: y = x w^T + bias + scale * (x down) up, and its gradients, on the
// GEMM engine the matmul op uses (gemm.h), so a LoRA layer runs the same kernel as a plain one.
//
// The base product's epilogue adds bias[j] + sum_r h[i, r] (scale up)[r, j] to each tile on the
// last k block (the rank-r update costs r/K of the GEMM), so y is written once. h = x down:
//   - rank 1: computed by the engine while it packs x for the base product (one dot product per
//     row while the row is in cache), so x is read from memory once;
//   - rank r > 1: a small GEMM of its own before the base product.
//
// The backward: g = dy up^T fused the same way into dx = dy w + scale g down^T, then
// ddown = scale x^T g, dup = scale h^T dy, dw = dy^T x (when wanted), dbias = column sums of dy.
#include <algorithm>
#include <vector>

#include "../ops.h"
#include "gemm.h"
#include "parallel.h"

namespace rt::cpu {
namespace {

// A read-only strided f32 matrix: element (i, j) at p[i * rs + j * cs].
struct View {
  const float* p;
  int64_t rs, cs;
  float at(int64_t i, int64_t j) const { return p[i * rs + j * cs]; }
};

// The engine's operands: A's rows and B's columns are its w axis, the shared axis its p axis.
GemmOperand as_a(View v) { return {v.p, DType::f32, v.rs, v.cs}; }
GemmOperand as_b(View v) { return {v.p, DType::f32, v.cs, v.rs}; }

bool use_threads() { return num_threads() > 1; }

// c (m x n, row-major) = alpha a b for a m x k, b k x n.
void plain_gemm(int64_t m, int64_t k, int64_t n, View a, View b, float* c, float alpha) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::fill(c, c + m * n, 0.f);
    return;
  }
  gemm({as_a(a), as_b(b), c, n, m, n, k, alpha, 0.f}, use_threads());
}

// out = a b + bias + scale (a d) u, with h = a d written: a is m x k, b k x n, d k x r, u r x n;
// out and h row-major. The forward (a = x) and the dx of the backward (a = dy) are both this.
void fused_lora_gemm(int64_t m, int64_t k, int64_t n, int64_t rank, View a, View b, View d, View u,
                     const float* bias, float scale, float* out, float* h) {
  if (m == 0) return;
  if (k == 0) {
    // No product to accumulate: the output is the bias alone (h = 0).
    std::fill(h, h + m * rank, 0.f);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) out[i * n + j] = bias ? bias[j] : 0.f;
    return;
  }
  const int64_t width = gemm_panel_width();
  const int64_t n_padded = (n + width - 1) / width * width;
  std::vector<float> bias_padded, up_padded;
  GemmEpilogue epilogue;
  if (bias) {
    bias_padded.assign(size_t(n_padded), 0.f);
    std::copy(bias, bias + n, bias_padded.begin());
    epilogue.bias = bias_padded.data();
  }
  if (rank > 0) {
    up_padded.assign(size_t(rank * n_padded), 0.f);
    for (int64_t r = 0; r < rank; ++r)
      for (int64_t j = 0; j < n; ++j) up_padded[size_t(r * n_padded + j)] = scale * u.at(r, j);
    epilogue.h = h;
    epilogue.up = up_padded.data();
    epilogue.rank = rank;
    epilogue.ld_up = n_padded;
    if (rank == 1 && a.cs == 1 && d.rs == 1) {
      epilogue.dot = d.p;  // h = a d while a is packed for the base product
      epilogue.h_out = h;
    } else {
      plain_gemm(m, k, rank, a, d, h, 1.f);
    }
  }
  const bool any = bias || rank > 0;
  gemm({as_a(a), as_b(b), out, n, m, n, k, 1.f, 0.f, any ? &epilogue : nullptr}, use_threads());
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
    plain_gemm(k, m, r, View{p.x, 1, k}, View{g.data(), r, 1}, p.ddown, p.scale);  // ddown = scale x^T g
    plain_gemm(r, m, n, View{p.h, 1, r}, View{p.dy, n, 1}, p.dup, p.scale);        // dup = scale h^T dy
  }
  if (p.dw) plain_gemm(n, m, k, View{p.dy, 1, n}, View{p.x, k, 1}, p.dw, 1.f);  // dw = dy^T x
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
