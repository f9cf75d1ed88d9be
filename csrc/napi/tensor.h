// Native tensors as seen from JS: a handle object owning (a share of) device memory.
// Shapes are checked here as well as in TS, so that no call from JS can make a kernel read or
// write outside a buffer, whatever it passes.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "../backend.h"

namespace rt::napi {

// Device memory shared by a tensor and its views; reported to V8 as external memory.
struct Storage {
  Storage(napi_env env, BackendId device, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  // Storages alive now and their bytes, across all devices (tests check steps do not leak).
  static int64_t live_count();
  static int64_t live_bytes();

  napi_env env;
  BackendId device;
  void* data;
  size_t bytes;
};

class NativeTensor : public Napi::ObjectWrap<NativeTensor> {
 public:
  static Napi::Function define_class(Napi::Env env);
  // A new, uninitialised tensor; `out` receives the native side.
  static Napi::Object create(Napi::Env env, BackendId device, DType dtype,
                             const std::vector<int64_t>& shape, NativeTensor** out = nullptr);
  // A new handle sharing `base`'s memory with another shape of the same element count.
  static Napi::Object view_of(Napi::Env env, const NativeTensor& base,
                              const std::vector<int64_t>& shape);
  // A new handle on `count` elements of `base` starting at element `start`, with `shape`.
  static Napi::Object range_of(Napi::Env env, const NativeTensor& base, int64_t start,
                               const std::vector<int64_t>& shape);

  explicit NativeTensor(const Napi::CallbackInfo& info);

  // The first element; throws when the tensor was disposed.
  void* data(const char* op, const char* arg) const;
  bool disposed() const { return !storage_; }
  void dispose() { storage_.reset(); }

  BackendId device() const { return device_; }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const { return numel_; }
  size_t bytes() const { return size_t(numel_) * dtype_size(dtype_); }
  std::string describe() const;  // "f32 [2, 3] on cpu"

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  BackendId device_ = BackendId::cpu;
  DType dtype_ = DType::f32;
  std::vector<int64_t> shape_;
  int64_t numel_ = 0;
};

const char* device_type(BackendId id);
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace rt::napi
