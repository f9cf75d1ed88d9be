// Device memory and discovery for the cuda backend (nvcc) and the cuda-emu backend (emulator).
// Every call is checked; a machine with no driver or no GPU reports the CUDA error string as
// the reason the backend is unavailable instead of failing to load.
#include "../csrc/backend.h"
#include "launch.h"

namespace RT_BACKEND_NS {
#ifndef RT_EMU
void attach_nccl(rt::Backend& b);  // cuda/nccl.cu
#endif
namespace {

void* alloc(size_t bytes) {
  void* p = nullptr;
  rt::rt_check(cudaMalloc(&p, bytes == 0 ? 16 : bytes), "cudaMalloc");
  return p;
}

void release(void* p) { cudaFree(p); }

void to_host(void* dst, const void* src, size_t bytes) {
  rt::rt_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy to host");
}

void from_host(void* dst, const void* src, size_t bytes) {
  rt::rt_check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy to device");
}

void copy(void* dst, const void* src, size_t bytes) {
  rt::rt_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "device copy");
}

void probe(rt::Backend& self) {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    self.available = false;
    self.reason = cudaGetErrorString(status);
    return;
  }
  if (count == 0) {
    self.available = false;
    self.reason = "no CUDA device found";
    return;
  }
  cudaDeviceProp prop;
  status = cudaGetDeviceProperties(&prop, 0);
  if (status != cudaSuccess) {
    self.available = false;
    self.reason = cudaGetErrorString(status);
    return;
  }
  self.available = true;
  self.name = prop.name;
}

#ifdef RT_EMU
constexpr const char* kType = "cuda-emu";
#else
constexpr const char* kType = "cuda";
#endif

rt::Backend make_backend() {
  rt::Backend b;
  b.id = RT_BACKEND_ID;
  b.type = kType;
  b.alloc = alloc;
  b.release = release;
  b.to_host = to_host;
  b.from_host = from_host;
  b.copy = copy;
  b.probe = probe;
#ifndef RT_EMU
  attach_nccl(b);
#endif
  return b;
}

const bool registered = rt::register_backend_at_startup(make_backend());

}  // namespace
}  // namespace RT_BACKEND_NS
