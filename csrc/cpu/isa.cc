#include "isa.h"

#include <cstdlib>
#include <cstring>

namespace rt::cpu {

static Isa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
  return Isa::scalar;
}

// REALTUNE_ISA=avx2|scalar caps the dispatch below what the processor supports, so the tests
// (and a user chasing a numerical difference) can run every kernel variant on one machine.
static Isa choose() {
  Isa best = detect();
  const char* cap = std::getenv("REALTUNE_ISA");
  if (cap == nullptr) return best;
  Isa wanted = std::strcmp(cap, "scalar") == 0 ? Isa::scalar
               : std::strcmp(cap, "avx2") == 0 ? Isa::avx2
                                                : Isa::avx512;
  return wanted < best ? wanted : best;
}

Isa isa() {
  static const Isa chosen = choose();
  return chosen;
}

const char* isa_name() {
  switch (isa()) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::scalar: return "scalar";
  }
  return "scalar";
}

}  // namespace rt::cpu
