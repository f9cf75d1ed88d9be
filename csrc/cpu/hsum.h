// Horizontal sums of SIMD accumulators, for the kernels that reduce long rows with
// AVX-512/AVX2 (the loss kernels). Lanes are added in double, so a row's partial sums lose
// nothing more when they are combined.
#pragma once

#include <immintrin.h>

namespace rt::cpu {

__attribute__((target("avx512f"))) inline double hsum512(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  double s = 0;
  for (float x : lanes) s += x;
  return s;
}

__attribute__((target("avx2,fma"))) inline double hsum256(__m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  double s = 0;
  for (float x : lanes) s += x;
  return s;
}

}  // namespace rt::cpu
