// Optimizer ops: the fused AdamW step, the sum of squares behind global gradient norms, and the
// in-place clip by a norm that lives in device memory.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops.h"
#include "isa.h"
#include "parallel.h"

namespace rt::cpu {

constexpr int64_t kGrain = 1 << 16;

struct AdamWStep {
  float beta1, beta2, lr, eps, decay, correction1, correction2;
};

static void adamw_scalar(const AdamWStep& k, float* param, const float* grad, float* m, float* v, int64_t begin,
                         int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float g = grad[i];
    const float mi = k.beta1 * m[i] + (1.f - k.beta1) * g;
    const float vi = k.beta2 * v[i] + (1.f - k.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float update = (mi / k.correction1) / (std::sqrt(vi / k.correction2) + k.eps);
    param[i] -= k.lr * (update + k.decay * param[i]);
  }
}

// The same operations in the same order as adamw_scalar (no fma), 8 lanes at a time: the
// compiler will not vectorise std::sqrt itself because it may set errno.
__attribute__((target("avx"))) static void adamw_avx(const AdamWStep& k, float* param, const float* grad, float* m,
                                                      float* v, int64_t begin, int64_t end) {
  const __m256 beta1 = _mm256_set1_ps(k.beta1), beta2 = _mm256_set1_ps(k.beta2);
  const __m256 rest1 = _mm256_set1_ps(1.f - k.beta1), rest2 = _mm256_set1_ps(1.f - k.beta2);
  const __m256 correction1 = _mm256_set1_ps(k.correction1), correction2 = _mm256_set1_ps(k.correction2);
  const __m256 eps = _mm256_set1_ps(k.eps), lr = _mm256_set1_ps(k.lr), decay = _mm256_set1_ps(k.decay);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256 g = _mm256_loadu_ps(grad + i);
    const __m256 mi = _mm256_add_ps(_mm256_mul_ps(beta1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(rest1, g));
    const __m256 vi = _mm256_add_ps(_mm256_mul_ps(beta2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(rest2, g), g));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    const __m256 denominator = _mm256_add_ps(_mm256_sqrt_ps(_mm256_div_ps(vi, correction2)), eps);
    const __m256 update = _mm256_div_ps(_mm256_div_ps(mi, correction1), denominator);
    const __m256 p = _mm256_loadu_ps(param + i);
    _mm256_storeu_ps(param + i, _mm256_sub_ps(p, _mm256_mul_ps(lr, _mm256_add_ps(update, _mm256_mul_ps(decay, p)))));
  }
  adamw_scalar(k, param, grad, m, v, i, end);
}

static void adamw(const AdamWParams& p) {
  const AdamWStep k{p.beta1, p.beta2, p.lr, p.eps, p.weight_decay,
                    static_cast<float>(1.0 - std::pow(double(p.beta1), double(p.step))),
                    static_cast<float>(1.0 - std::pow(double(p.beta2), double(p.step)))};
  const bool vectorised = isa() != Isa::scalar;
  parallel_for(p.n, kGrain, [&](int64_t begin, int64_t end) {
    if (vectorised)
      adamw_avx(k, p.param, p.grad, p.m, p.v, begin, end);
    else
      adamw_scalar(k, p.param, p.grad, p.m, p.v, begin, end);
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
