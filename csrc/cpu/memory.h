// Memory checking for tests (see csrc/cpu/device.cc).
#pragma once

#include <cstdint>

namespace rt::cpu {

// REALTUNE_CHECK_MEMORY=1: guard zones around cpu allocations (csrc/cpu/device.cc) and
// poisoned (all-ones bytes: NaN) contents for every new tensor on every backend.
bool memory_checking();
// How many freed cpu allocations had a damaged guard zone (an out-of-bounds write).
int64_t memory_check_failures();

}  // namespace rt::cpu
