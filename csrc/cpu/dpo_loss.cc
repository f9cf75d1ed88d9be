// Diffusion-DPO loss (SPEC section 1), fused: the forward reads each of the six inputs once and
// reduces the four squared errors of a pair in the same pass; the backward is one elementwise pass.
// Work is split into (pair, chunk) tasks whose float partial sums are combined in double in a
// fixed order, so results do not depend on the thread count.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops.h"
#include "hsum.h"
#include "isa.h"
#include "parallel.h"

namespace rt::cpu {
namespace {

constexpr int64_t kChunk = 1 << 14;  // elements per task: 6 streams x 64 KB

// Sums of squared errors over one chunk: policy winner, policy loser, reference winner, reference loser.
struct ErrorSums {
  double w = 0, l = 0, rw = 0, rl = 0;
};

struct Streams {
  const float *pw, *pl, *rw, *rl, *nw, *nl;
};

void tail_sums(const Streams& s, int64_t begin, int64_t end, ErrorSums& out) {
  for (int64_t i = begin; i < end; ++i) {
    double nw = s.nw[i], nl = s.nl[i];
    double dw = s.pw[i] - nw, dl = s.pl[i] - nl, drw = s.rw[i] - nw, drl = s.rl[i] - nl;
    out.w += dw * dw;
    out.l += dl * dl;
    out.rw += drw * drw;
    out.rl += drl * drl;
  }
}

__attribute__((target("avx512f"))) ErrorSums sums_avx512(const Streams& s, int64_t begin, int64_t end) {
  __m512 w = _mm512_setzero_ps(), l = w, rw = w, rl = w;
  int64_t i = begin;
  for (; i + 16 <= end; i += 16) {
    __m512 nw = _mm512_loadu_ps(s.nw + i), nl = _mm512_loadu_ps(s.nl + i);
    __m512 d = _mm512_sub_ps(_mm512_loadu_ps(s.pw + i), nw);
    w = _mm512_fmadd_ps(d, d, w);
    d = _mm512_sub_ps(_mm512_loadu_ps(s.pl + i), nl);
    l = _mm512_fmadd_ps(d, d, l);
    d = _mm512_sub_ps(_mm512_loadu_ps(s.rw + i), nw);
    rw = _mm512_fmadd_ps(d, d, rw);
    d = _mm512_sub_ps(_mm512_loadu_ps(s.rl + i), nl);
    rl = _mm512_fmadd_ps(d, d, rl);
  }
  ErrorSums out{hsum512(w), hsum512(l), hsum512(rw), hsum512(rl)};
  tail_sums(s, i, end, out);
  return out;
}

__attribute__((target("avx2,fma"))) ErrorSums sums_avx2(const Streams& s, int64_t begin, int64_t end) {
  __m256 w = _mm256_setzero_ps(), l = w, rw = w, rl = w;
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    __m256 nw = _mm256_loadu_ps(s.nw + i), nl = _mm256_loadu_ps(s.nl + i);
    __m256 d = _mm256_sub_ps(_mm256_loadu_ps(s.pw + i), nw);
    w = _mm256_fmadd_ps(d, d, w);
    d = _mm256_sub_ps(_mm256_loadu_ps(s.pl + i), nl);
    l = _mm256_fmadd_ps(d, d, l);
    d = _mm256_sub_ps(_mm256_loadu_ps(s.rw + i), nw);
    rw = _mm256_fmadd_ps(d, d, rw);
    d = _mm256_sub_ps(_mm256_loadu_ps(s.rl + i), nl);
    rl = _mm256_fmadd_ps(d, d, rl);
  }
  ErrorSums out{hsum256(w), hsum256(l), hsum256(rw), hsum256(rl)};
  tail_sums(s, i, end, out);
  return out;
}

ErrorSums sums_scalar(const Streams& s, int64_t begin, int64_t end) {
  ErrorSums out;
  tail_sums(s, begin, end, out);
  return out;
}

// log(sigmoid(x)) without overflow for |x| in the thousands.
double log_sigmoid(double x) { return std::min(x, 0.0) - std::log1p(std::exp(-std::fabs(x))); }

// sigmoid(-x) = 1 - sigmoid(x), stable on both sides.
double sigmoid_neg(double x) {
  if (x >= 0) {
    double e = std::exp(-x);
    return e / (1 + e);
  }
  return 1 / (1 + std::exp(x));
}

void dpo_loss(const DpoLossParams& p) {
  const Streams s{p.pred_w, p.pred_l, p.ref_w, p.ref_l, p.noise_w, p.noise_l};
  const int64_t chunks = std::max<int64_t>(1, (p.per_pair + kChunk - 1) / kChunk);
  const int64_t chunk = (p.per_pair + chunks - 1) / chunks;
  auto sums = isa() == Isa::avx512 ? sums_avx512 : isa() == Isa::avx2 ? sums_avx2 : sums_scalar;
  std::vector<ErrorSums> partial(size_t(p.pairs * chunks));
  parallel_tasks(p.pairs * chunks, [&](int64_t task) {
    int64_t pair = task / chunks, c = task % chunks;
    int64_t begin = pair * p.per_pair + c * chunk;
    int64_t end = pair * p.per_pair + std::min(p.per_pair, (c + 1) * chunk);
    partial[size_t(task)] = sums(s, begin, end);
  });
  double loss = 0, wins = 0;
  for (int64_t pair = 0; pair < p.pairs; ++pair) {
    ErrorSums total;
    for (int64_t c = 0; c < chunks; ++c) {
      const ErrorSums& e = partial[size_t(pair * chunks + c)];
      total.w += e.w;
      total.l += e.l;
      total.rw += e.rw;
      total.rl += e.rl;
    }
    double n = double(p.per_pair);
    double mw = total.w / n, ml = total.l / n, rw = total.rw / n, rl = total.rl / n;
    double inside = -double(p.beta) * ((mw - ml) - (rw - rl));
    p.mse_w[pair] = float(mw);
    p.mse_l[pair] = float(ml);
    p.ref_mse_w[pair] = float(rw);
    p.ref_mse_l[pair] = float(rl);
    p.inside[pair] = float(inside);
    loss -= log_sigmoid(inside);
    wins += inside > 0 ? 1.0 : inside == 0 ? 0.5 : 0.0;
  }
  p.loss[0] = float(loss / double(p.pairs));
  p.accuracy[0] = float(wins / double(p.pairs));
}

// d loss / d pred_w[i] = dloss * 2 beta sigmoid(-inside) (pred_w[i] - noise_w[i]) / (pairs * per_pair),
// and the negative of the same form for the loser.
void dpo_loss_backward(const DpoLossBackwardParams& p) {
  std::vector<float> coef(size_t(p.pairs));
  for (int64_t pair = 0; pair < p.pairs; ++pair)
    coef[size_t(pair)] = float(double(p.dloss) * 2.0 * double(p.beta) * sigmoid_neg(p.inside[pair]) /
                               (double(p.pairs) * double(p.per_pair)));
  const int64_t chunks = std::max<int64_t>(1, (p.per_pair + kChunk - 1) / kChunk);
  const int64_t chunk = (p.per_pair + chunks - 1) / chunks;
  parallel_tasks(p.pairs * chunks, [&](int64_t task) {
    int64_t pair = task / chunks, c = task % chunks;
    int64_t begin = pair * p.per_pair + c * chunk;
    int64_t end = pair * p.per_pair + std::min(p.per_pair, (c + 1) * chunk);
    const float cw = coef[size_t(pair)], cl = -cw;
    const float* __restrict__ pw = p.pred_w;
    const float* __restrict__ pl = p.pred_l;
    const float* __restrict__ nw = p.noise_w;
    const float* __restrict__ nl = p.noise_l;
    float* __restrict__ dw = p.d_pred_w;
    float* __restrict__ dl = p.d_pred_l;
    for (int64_t i = begin; i < end; ++i) {
      dw[i] = cw * (pw[i] - nw[i]);
      dl[i] = cl * (pl[i] - nl[i]);
    }
  });
}

}  // namespace

RT_REGISTER_OP(BackendId::cpu, dpo_loss, dpo_loss);
RT_REGISTER_OP(BackendId::cpu, dpo_loss_backward, dpo_loss_backward);

}  // namespace rt::cpu
