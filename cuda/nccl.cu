// NCCL collectives for data-parallel training on the cuda backend (csrc/napi/dist.cc uses them
// through Backend::comm_*). NCCL is loaded at run time (dlopen of libnccl.so.2) with prototypes
// of its stable C ABI declared here, so building needs no NCCL and a machine without it fails
// only when a multi-process run sums a cuda tensor, with an error saying what to install.
// The sum runs on the default stream, which the kernels use too, and is waited for.
// Not part of the emulator build: the emulator has no multi-process collectives.
#ifndef RT_EMU
#include <cstring>
#include <string>

#include "../csrc/backend.h"
#include "../csrc/runtime_library.h"
#include "launch.h"

namespace rt_cuda {
namespace {

struct NcclUniqueId {
  char internal[128];
};
using NcclComm = void*;
using NcclResult = int;
constexpr int kNcclFloat32 = 7;
constexpr int kNcclSum = 0;
constexpr int kNcclAvg = 4;  // NCCL 2.10 and newer

struct Nccl {
  rt::RuntimeLibrary library;
  NcclResult (*get_unique_id)(NcclUniqueId*) = nullptr;
  NcclResult (*comm_init_rank)(NcclComm*, int, NcclUniqueId, int) = nullptr;
  NcclResult (*all_reduce)(const void*, void*, size_t, int, int, NcclComm, cudaStream_t) = nullptr;
  const char* (*error_string)(NcclResult) = nullptr;
  NcclComm comm = nullptr;
};

Nccl nccl;

void load_nccl() {
  if (nccl.library.is_open()) return;
  nccl.library.open("libnccl.so.2", "data-parallel: cuda tensors are summed with NCCL,",
                    "install NCCL 2.10 or newer (e.g. apt-get install libnccl2 from NVIDIA's CUDA repository)");
  nccl.get_unique_id = nccl.library.symbol<decltype(nccl.get_unique_id)>("ncclGetUniqueId");
  nccl.comm_init_rank = nccl.library.symbol<decltype(nccl.comm_init_rank)>("ncclCommInitRank");
  nccl.all_reduce = nccl.library.symbol<decltype(nccl.all_reduce)>("ncclAllReduce");
  nccl.error_string = nccl.library.symbol<decltype(nccl.error_string)>("ncclGetErrorString");
}

void nccl_check(NcclResult result, const char* what) {
  if (result != 0) rt::fail(std::string("data-parallel: ") + what + " failed: " + nccl.error_string(result));
}

size_t unique_id(void* out, size_t capacity) {
  load_nccl();
  NcclUniqueId id;
  nccl_check(nccl.get_unique_id(&id), "ncclGetUniqueId");
  if (capacity < sizeof id) rt::fail("data-parallel: the NCCL id does not fit its buffer");
  std::memcpy(out, &id, sizeof id);
  return sizeof id;
}

void init(const void* id_bytes, size_t bytes, int rank, int size) {
  load_nccl();
  NcclUniqueId id;
  if (bytes != sizeof id) rt::fail("data-parallel: the NCCL id from rank 0 has " + std::to_string(bytes) + " bytes, expected " + std::to_string(sizeof id));
  std::memcpy(&id, id_bytes, sizeof id);
  nccl_check(nccl.comm_init_rank(&nccl.comm, size, id, rank), "ncclCommInitRank");
}

void allreduce_f32(void* data, size_t count, bool average) {
  nccl_check(nccl.all_reduce(data, data, count, kNcclFloat32, average ? kNcclAvg : kNcclSum, nccl.comm, nullptr), "ncclAllReduce");
  rt::rt_check(cudaStreamSynchronize(nullptr), "ncclAllReduce (stream synchronize)");
}

}  // namespace

void attach_nccl(rt::Backend& b) {
  b.comm_unique_id = unique_id;
  b.comm_init = init;
  b.comm_allreduce_f32 = allreduce_f32;
}

}  // namespace rt_cuda
#endif
