// Optimizer ops: the fused AdamW step, the sum of squares behind global gradient norms, and the
// in-place clip by a norm that lives in device memory.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops.h"
#include "parallel.h"

namespace rt::cpu {

constexpr int64_t kGrain = 1 << 16;

static void adamw(const AdamWParams& p) {
  const float beta1 = p.beta1, beta2 = p.beta2, lr = p.lr, eps = p.eps, decay = p.weight_decay;
  const float correction1 = static_cast<float>(1.0 - std::pow(double(beta1), double(p.step)));
  const float correction2 = static_cast<float>(1.0 - std::pow(double(beta2), double(p.step)));
  parallel_for(p.n, kGrain, [&](int64_t begin, int64_t end) {
    float* __restrict__ param = p.param;
    const float* __restrict__ grad = p.grad;
    float* __restrict__ m = p.m;
    float* __restrict__ v = p.v;
    for (int64_t i = begin; i < end; ++i) {
      const float g = grad[i];
      const float mi = beta1 * m[i] + (1.f - beta1) * g;
      const float vi = beta2 * v[i] + (1.f - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      const float update = (mi / correction1) / (std::sqrt(vi / correction2) + eps);
      param[i] -= lr * (update + decay * param[i]);
    }
  });
}

static double sum_squares_contiguous(const float* x, int64_t n) {
  double lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) lanes[k] += double(x[i + k]) * x[i + k];
  double total = 0;
  for (; i < n; ++i) total += double(x[i]) * x[i];
  for (double lane : lanes) total += lane;
  return total;
}

static void sum_squares(const SumSquaresParams& p) {
  // Fixed chunks, summed in order: the result does not depend on the thread count.
  const int64_t chunks = std::max<int64_t>(1, (p.n + kGrain - 1) / kGrain);
  std::vector<double> partials(static_cast<size_t>(chunks));
  parallel_tasks(chunks, [&](int64_t c) {
    const int64_t begin = c * kGrain, end = std::min(p.n, begin + kGrain);
    partials[size_t(c)] = sum_squares_contiguous(p.x + begin, std::max<int64_t>(0, end - begin));
  });
  double total = p.accumulate ? double(*p.out) : 0.0;
  for (double partial : partials) total += partial;
  *p.out = static_cast<float>(total);
}

static void clip_by_norm(const ClipByNormParams& p) {
  const double factor = double(p.max_norm) / (std::sqrt(double(*p.total_sq)) + 1e-6);
  if (!(factor < 1.0)) return;
  const float f = static_cast<float>(factor);
  parallel_for(p.n, kGrain, [&](int64_t begin, int64_t end) {
    float* x = p.x;
    for (int64_t i = begin; i < end; ++i) x[i] *= f;
  });
}

RT_REGISTER_OP(BackendId::cpu, adamw, adamw);
RT_REGISTER_OP(BackendId::cpu, sum_squares, sum_squares);
RT_REGISTER_OP(BackendId::cpu, clip_by_norm, clip_by_norm);

}  // namespace rt::cpu
