// Counter-based random numbers shared by every backend: Philox-4x32-10 (Salmon et al., SC'11,
// the generator of Random123, cuRAND and PyTorch) and the maps from its output to uniform and
// normal floats. Element `index` of a draw depends only on (seed, index), never on how the work
// was split, and the maps are computed in double precision with explicit fma (no contraction
// choices left to the compiler) before one final rounding to float, so cpu, cuda and cuda-emu
// produce the same numbers.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__) || defined(RT_EMU)
#define RT_HOST_DEVICE __host__ __device__
#else
#define RT_HOST_DEVICE
#endif

namespace rt::philox {

// The four 32-bit words of Philox-4x32-10 at counter (index, 0) under key `seed`.
RT_HOST_DEVICE inline void philox4x32_10(uint64_t index, uint64_t seed, uint32_t out[4]) {
  uint32_t c0 = uint32_t(index), c1 = uint32_t(index >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(0xD2511F53u) * c0;
    const uint64_t p1 = uint64_t(0xCD9E8D57u) * c2;
    const uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// low + (high - low) * u with u = 24 random bits / 2^24, exactly representable, in [0, 1).
RT_HOST_DEVICE inline float uniform(uint64_t seed, uint64_t index, float low, float high) {
  uint32_t w[4];
  philox4x32_10(index, seed, w);
  const double u = double(w[0] >> 8) * 0x1p-24;
  return float(fma(double(high) - double(low), u, double(low)));
}

// mean + std * z, z standard normal by Box-Muller on two 53-bit uniforms (the cosine branch).
RT_HOST_DEVICE inline float normal(uint64_t seed, uint64_t index, float mean, float std) {
  uint32_t w[4];
  philox4x32_10(index, seed, w);
  const uint64_t bits1 = ((uint64_t(w[0]) << 32) | w[1]) >> 11;
  const uint64_t bits2 = ((uint64_t(w[2]) << 32) | w[3]) >> 11;
  const double u1 = double(bits1 + 1) * 0x1p-53;  // (0, 1]: the log stays finite
  const double u2 = double(bits2) * 0x1p-53;      // [0, 1)
  const double radius = sqrt(-2.0 * log(u1));
  const double z = radius * cos(6.283185307179586 * u2);
  return float(fma(double(std), z, double(mean)));
}

}  // namespace rt::philox
