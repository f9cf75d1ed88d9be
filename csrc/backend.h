// A backend: where tensor memory lives and which op table computes on it.
// cpu is always built; cuda and cuda-emu register themselves from cuda/device.cu when compiled in.
#pragma once

#include <cstddef>
#include <string>

#include "ops.h"

namespace rt {

struct Backend {
  BackendId id = BackendId::cpu;
  const char* type = "";  // "cpu", "cuda", "cuda-emu"; empty when not compiled in
  // Filled by probe(): whether the backend can run here, a device name, and why not.
  bool available = false;
  std::string name;
  std::string reason;

  void* (*alloc)(size_t bytes) = nullptr;  // throws rt::Error when out of memory
  void (*release)(void* ptr) = nullptr;
  void (*to_host)(void* host_dst, const void* src, size_t bytes) = nullptr;
  void (*from_host)(void* dst, const void* host_src, size_t bytes) = nullptr;
  void (*copy)(void* dst, const void* src, size_t bytes) = nullptr;
  void (*probe)(Backend& self) = nullptr;

  // Collectives across processes on this backend's buffers (cuda: NCCL, loaded at run time;
  // csrc/napi/dist.cc carries the id over MPI). nullptr: buffers go through host memory and MPI.
  // comm_unique_id writes the id rank 0 makes (at most `capacity` bytes) and returns its size;
  // comm_init joins the communicator; comm_allreduce_f32 sums (or averages) `count` floats in place.
  size_t (*comm_unique_id)(void* out, size_t capacity) = nullptr;
  void (*comm_init)(const void* id, size_t bytes, int rank, int size) = nullptr;
  void (*comm_allreduce_f32)(void* data, size_t count, bool average) = nullptr;
};

// The backend slot for `id`; `type` is empty when that backend was not compiled in.
Backend& backend(BackendId id);
bool backend_compiled(BackendId id);
void register_backend(const Backend& b);
bool register_backend_at_startup(const Backend& b);

}  // namespace rt
