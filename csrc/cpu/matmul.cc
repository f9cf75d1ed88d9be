// Batched GEMM on the cpu: C[b] = alpha op(A[b]) op(B[b]) + beta C[b], on the shared engine in
// gemm.cc. Large matrices use every thread each; many small ones in a batch go one per task.
#include "../ops.h"
#include "gemm.h"
#include "parallel.h"

namespace rt::cpu {
namespace {

// C = beta * C (a zero product: k == 0 or alpha == 0); beta == 0 writes zeros without reading C.
void scale_c(float* c, int64_t n, float beta) {
  parallel_for(n, 1 << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) c[i] = beta == 0.f ? 0.f : beta * c[i];
  });
}

void matmul(const MatmulParams& p) {
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  if (p.k == 0 || p.alpha == 0.f) {
    for (int64_t i = 0; i < p.batch; ++i) scale_c(p.c + i * p.stride_c, p.m * p.n, p.beta);
    return;
  }
  const int64_t a_elem = dtype_size(p.a_dtype), b_elem = dtype_size(p.b_dtype);
  auto problem = [&](int64_t i) {
    GemmProblem pb;
    pb.a = {static_cast<const char*>(p.a) + i * p.stride_a * a_elem, p.a_dtype, p.trans_a ? 1 : p.k,
            p.trans_a ? p.m : 1};
    pb.b = {static_cast<const char*>(p.b) + i * p.stride_b * b_elem, p.b_dtype, p.trans_b ? p.k : 1,
            p.trans_b ? 1 : p.n};
    pb.c = p.c + i * p.stride_c;
    pb.ldc = p.n;
    pb.m = p.m;
    pb.n = p.n;
    pb.k = p.k;
    pb.alpha = p.alpha;
    pb.beta = p.beta;
    return pb;
  };
  const int threads = num_threads();
  const double flops = 2.0 * double(p.m) * double(p.n) * double(p.k);
  // Small matrices in a batch go one per task; large ones use every thread each.
  const bool by_batch = threads > 1 && p.batch >= threads && (p.batch >= 4 * threads || flops < 3.2e7);
  if (by_batch) {
    parallel_tasks(p.batch, [&](int64_t i) { gemm(problem(i), false); });
    return;
  }
  const bool parallel = threads > 1 && flops >= 1e6;
  for (int64_t i = 0; i < p.batch; ++i) gemm(problem(i), parallel);
}

}  // namespace

RT_REGISTER_OP(BackendId::cpu, matmul, matmul);

}  // namespace rt::cpu
