// The one header every .cu file includes. It makes the same kernel source build two ways:
//   - by nvcc, as the `cuda` backend (namespace rt_cuda, BackendId::cuda);
//   - by the host compiler with RT_EMU defined, against the execution-model emulator in
//     cuda/emu/, as the `cuda-emu` backend (namespace rt_emu, BackendId::emu).
//
// Kernel files use only what is named here and in cuda/emu/cuda_emu.h:
//   dptr<T>                        a global-memory pointer parameter (T* under nvcc; a
//                                  bounds-checked pointer in the emulator)
//   RT_LAUNCH(kernel, grid, block, smem, args...)   launch, then check for launch errors
//   RT_DYNAMIC_SHARED(T, name)     declare the block's dynamic shared memory as `T* name`
//                                  (RT_DYNAMIC_SHARED_ALIGN-byte aligned, no more)
//   rt_check(cudaError_t, "op")    turn a CUDA error into rt::Error naming the op
// and standard CUDA: __global__, __device__, __shared__, threadIdx..., __syncthreads,
// __shfl_*_sync, atomics, bf16 conversions, nvcuda::wmma.
#pragma once

#include <string>

#include "../csrc/ops.h"

// The alignment the dynamic shared-memory region is declared with, all a kernel may assume of its
// start: 32 bytes, what a WMMA tile pointer needs (the emulator places it at exactly this).
#define RT_DYNAMIC_SHARED_ALIGN 32

#ifdef RT_EMU
#include "emu/cuda_emu.h"
#define RT_BACKEND_NS rt_emu
#define RT_BACKEND_ID ::rt::BackendId::emu
template <class T>
using dptr = ::emu::checked_ptr<T>;
// Reinterprets a global pointer as another element type (for 16-byte vector loads).
template <class To, class From>
inline dptr<To> dptr_cast(dptr<From> p) {
  return p.template reinterpret<To>();
}
#define RT_LAUNCH(kernel, grid, block, smem, ...)                                   \
  ::emu::launch(#kernel, ::emu::kernel_key(kernel), dim3(grid), dim3(block), size_t(smem), \
                [=] { kernel(__VA_ARGS__); })
#define RT_DYNAMIC_SHARED(T, name) \
  T* name = static_cast<T*>(::emu::dynamic_shared(RT_DYNAMIC_SHARED_ALIGN))
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>
#define RT_BACKEND_NS rt_cuda
#define RT_BACKEND_ID ::rt::BackendId::cuda
template <class T>
using dptr = T*;
template <class To, class From>
__host__ __device__ inline To* dptr_cast(From* p) {
  return reinterpret_cast<To*>(p);
}
#define RT_LAUNCH(kernel, grid, block, smem, ...)                                   \
  do {                                                                               \
    kernel<<<dim3(grid), dim3(block), size_t(smem)>>>(__VA_ARGS__);                  \
    ::rt::rt_check(cudaGetLastError(), #kernel);                                     \
  } while (0)
#define RT_DYNAMIC_SHARED(T, name) \
  extern __shared__ __align__(RT_DYNAMIC_SHARED_ALIGN) unsigned char rt_dynamic_smem_[]; \
  T* name = reinterpret_cast<T*>(rt_dynamic_smem_)
#endif

namespace rt {

inline void rt_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    fail(std::string(what) + ": CUDA error: " + cudaGetErrorString(status));
}

inline int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

}  // namespace rt
