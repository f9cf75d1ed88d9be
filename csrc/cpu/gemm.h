// The cpu GEMM engine shared by the matmul and lora_linear ops (csrc/cpu/gemm.cc):
//   C = alpha op(A) op(B) + beta C (+ an epilogue on the last k block)
// with op(A) m x k and op(B) k x n given as strided f32 or bf16 matrices, C row-major f32.
#pragma once

#include <cstdint>

#include "../ops.h"

namespace rt::cpu {

// One operand seen as a matrix: element (w, p) at data[w * stride_w + p * stride_k], where w is
// the row of op(A) or the column of op(B) and p runs along the shared dimension.
struct GemmOperand {
  const void* data;
  DType dtype;
  int64_t stride_w, stride_k;
};

// Added to every element of C after alpha and beta: C(i, j) += bias[j] + sum_r h[i][r] up[r][j].
// bias and up rows must be readable up to n rounded up to gemm_panel_width() (pad with zeros).
// With `dot` set, h (rank 1) is computed by the GEMM itself, h[i] = sum_p op(A)(i, p) dot[p],
// while A is packed, so A is read from memory once (op(A) must be f32 with stride_k == 1).
struct GemmEpilogue {
  const float* bias = nullptr;
  const float* h = nullptr;  // [m][rank]
  const float* up = nullptr;  // [rank][ld_up]
  int64_t rank = 0, ld_up = 0;
  const float* dot = nullptr;  // [k]; then h must be the `h_out` below and rank 1
  float* h_out = nullptr;      // [m]
};

struct GemmProblem {
  GemmOperand a, b;  // a: w = row of C; b: w = column of C
  float* c;
  int64_t ldc;
  int64_t m, n, k;  // k > 0
  float alpha, beta;
  const GemmEpilogue* epilogue = nullptr;
};

// Runs one GEMM, spread over the thread pool when `parallel` (else on the calling thread).
void gemm(const GemmProblem& problem, bool parallel);

// Column padding the epilogue's bias and up rows need for the current instruction set.
int64_t gemm_panel_width();

}  // namespace rt::cpu
