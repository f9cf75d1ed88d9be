// Run-time instruction-set dispatch for the cpu kernels. Kernels compile their fast variants
// with __attribute__((target(...))) and pick one with isa() once per call.
#pragma once

namespace rt::cpu {

enum class Isa { scalar, avx2, avx512 };

// The best instruction set this processor supports among those realtune has kernels for
// (avx2 means AVX2 + FMA; avx512 means F, BW, DQ and VL), capped by REALTUNE_ISA when set.
Isa isa();
const char* isa_name();

}  // namespace rt::cpu
