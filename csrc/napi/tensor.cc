#include "tensor.h"

#include <algorithm>
#include <atomic>
#include <sstream>

#include "../cpu/memory.h"

namespace rt::napi {

const char* device_type(BackendId id) {
  switch (id) {
    case BackendId::cpu: return "cpu";
    case BackendId::cuda: return "cuda";
    case BackendId::emu: return "cuda-emu";
  }
  return "?";
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

static std::atomic<int64_t> storages_alive{0};
static std::atomic<int64_t> storage_bytes_alive{0};

int64_t Storage::live_count() { return storages_alive.load(); }
int64_t Storage::live_bytes() { return storage_bytes_alive.load(); }

Storage::Storage(napi_env env_, BackendId device_, size_t bytes_)
    : env(env_), device(device_), data(nullptr), bytes(bytes_) {
  Backend& b = backend(device);
  if (!b.available)
    fail(std::string("the ") + device_type(device) + " backend is unavailable: " + b.reason,
         Error::type);
  data = b.alloc(bytes);
  if (cpu::memory_checking()) {
    static const std::vector<unsigned char> poison(1 << 16, 0xFF);  // NaN in f32/bf16, -1 in i32
    for (size_t at = 0; at < bytes; at += poison.size())
      b.from_host(static_cast<char*>(data) + at, poison.data(), std::min(poison.size(), bytes - at));
  }
  int64_t total;
  napi_adjust_external_memory(env, static_cast<int64_t>(bytes), &total);
  storages_alive.fetch_add(1);
  storage_bytes_alive.fetch_add(int64_t(bytes));
}

Storage::~Storage() {
  backend(device).release(data);
  int64_t total;
  napi_adjust_external_memory(env, -static_cast<int64_t>(bytes), &total);
  storages_alive.fetch_sub(1);
  storage_bytes_alive.fetch_sub(int64_t(bytes));
}

struct InstanceData {
  Napi::FunctionReference tensor_class;
};

Napi::Function NativeTensor::define_class(Napi::Env env) {
  Napi::Function cls = DefineClass(env, "NativeTensor", {});
  auto* data = new InstanceData();
  data->tensor_class = Napi::Persistent(cls);
  env.SetInstanceData(data);
  return cls;
}

NativeTensor::NativeTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTensor>(info) {}

static int64_t checked_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail("tensor shape " + shape_string(shape) + " has a negative dimension");
    if (d != 0 && n > (int64_t(1) << 40) / d)
      fail("tensor shape " + shape_string(shape) + " is too large");
    n *= d;
  }
  return n;
}

Napi::Object NativeTensor::create(Napi::Env env, BackendId device, DType dtype,
                                  const std::vector<int64_t>& shape, NativeTensor** out) {
  int64_t numel = checked_numel(shape);
  auto storage = std::make_shared<Storage>(env, device, size_t(numel) * dtype_size(dtype));
  Napi::Object obj = env.GetInstanceData<InstanceData>()->tensor_class.New({});
  NativeTensor* t = Unwrap(obj);
  t->storage_ = std::move(storage);
  t->device_ = device;
  t->dtype_ = dtype;
  t->shape_ = shape;
  t->numel_ = numel;
  if (out) *out = t;
  return obj;
}

Napi::Object NativeTensor::view_of(Napi::Env env, const NativeTensor& base,
                                   const std::vector<int64_t>& shape) {
  base.data("view", "tensor");
  int64_t numel = checked_numel(shape);
  if (numel != base.numel_)
    fail("view: cannot view " + base.describe() + " as " + shape_string(shape) + " (" +
             std::to_string(numel) + " elements, expected " + std::to_string(base.numel_) + ")",
         Error::range);
  Napi::Object obj = env.GetInstanceData<InstanceData>()->tensor_class.New({});
  NativeTensor* t = Unwrap(obj);
  t->storage_ = base.storage_;
  t->offset_ = base.offset_;
  t->device_ = base.device_;
  t->dtype_ = base.dtype_;
  t->shape_ = shape;
  t->numel_ = numel;
  return obj;
}

Napi::Object NativeTensor::range_of(Napi::Env env, const NativeTensor& base, int64_t start,
                                    const std::vector<int64_t>& shape) {
  base.data("viewRange", "tensor");
  int64_t numel = checked_numel(shape);
  if (start < 0 || start > base.numel_ || numel > base.numel_ - start)
    fail("viewRange: elements [" + std::to_string(start) + ", " + std::to_string(start + numel) +
             ") are outside " + base.describe(),
         Error::range);
  Napi::Object obj = env.GetInstanceData<InstanceData>()->tensor_class.New({});
  NativeTensor* t = Unwrap(obj);
  t->storage_ = base.storage_;
  t->offset_ = base.offset_ + size_t(start) * dtype_size(base.dtype_);
  t->device_ = base.device_;
  t->dtype_ = base.dtype_;
  t->shape_ = shape;
  t->numel_ = numel;
  return obj;
}

void* NativeTensor::data(const char* op, const char* arg) const {
  if (!storage_) fail(std::string(op) + ": " + arg + " was disposed", Error::type);
  return static_cast<char*>(storage_->data) + offset_;
}

std::string NativeTensor::describe() const {
  return std::string(dtype_name(dtype_)) + " " + shape_string(shape_) + " on " +
         device_type(device_);
}

}  // namespace rt::napi
