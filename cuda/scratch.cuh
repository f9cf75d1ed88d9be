// Device scratch for ops that keep temporaries between their kernels (partial sums, an
// intermediate product). Ops run one at a time on the calling host thread and each takes one
// scratch region, so a single buffer per backend serves them all.
//   cuda:     the buffer grows to the largest request and is kept: no cudaMalloc (which
//             synchronises the device) on every call.
//   cuda-emu: exactly the requested size on every call, so the emulator's bounds checks still
//             catch a kernel that writes past what its op asked for.
#pragma once

#include "launch.h"

namespace RT_BACKEND_NS {

inline float* scratch_floats(size_t count, const char* op) {
  static float* buffer = nullptr;  // kept for the process: freeing at exit could outlive the driver
  static size_t capacity = 0;
  count = count == 0 ? 1 : count;
#ifdef RT_EMU
  const bool reallocate = count != capacity;
#else
  const bool reallocate = count > capacity;
#endif
  if (reallocate) {
    if (buffer != nullptr) cudaFree(buffer);
    buffer = nullptr;
    capacity = 0;
    rt::rt_check(cudaMalloc(&buffer, count * sizeof(float)), op);
    capacity = count;
  }
  return buffer;
}

}  // namespace RT_BACKEND_NS
