// The module's entry point, device discovery and the tensor functions that are not ops:
// creation, views, copies in and out of JS, disposal.
#include <napi.h>

#include <cstring>
#include <utility>
#include <vector>

#include "../cpu/bf16.h"
#include "../cpu/isa.h"
#include "../cpu/memory.h"
#include "../cpu/parallel.h"
#include "args.h"

namespace rt::napi {

namespace {

void probe_backends() {
  for (int i = 0; i < kNumBackends; ++i) {
    Backend& b = backend(static_cast<BackendId>(i));
    if (backend_compiled(b.id) && b.probe) b.probe(b);
  }
}

}  // namespace

RT_BINDING(devices) {
  Napi::Env env = info.Env();
  Napi::Array list = Napi::Array::New(env);
  uint32_t n = 0;
  for (int i = 0; i < kNumBackends; ++i) {
    const Backend& b = backend(static_cast<BackendId>(i));
    if (!backend_compiled(b.id)) continue;
    Napi::Object d = Napi::Object::New(env);
    d.Set("type", b.type);
    d.Set("code", i);
    d.Set("available", b.available);
    if (!b.name.empty()) d.Set("name", b.name);
    if (!b.available) d.Set("reason", b.reason);
    list.Set(n++, d);
  }
  return list;
}

RT_BINDING(info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("threads", cpu::num_threads());
  o.Set("isa", cpu::isa_name());
  o.Set("memoryChecking", cpu::memory_checking());
  o.Set("memoryCheckFailures", static_cast<double>(cpu::memory_check_failures()));
  o.Set("liveStorages", static_cast<double>(Storage::live_count()));
  o.Set("liveBytes", static_cast<double>(Storage::live_bytes()));
  return o;
}

RT_BINDING(setNumThreads) {
  int64_t n = int_arg(info, 0, "setNumThreads", "threads");
  RT_EXPECT(n >= 1 && n <= 1024, "setNumThreads: threads must be in 1..1024, got " + std::to_string(n));
  cpu::set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

// { opName: [backend types implementing it] }
RT_BINDING(opTable) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#define RT_LIST_OP(name, P)                                                   \
  {                                                                           \
    Napi::Array impls = Napi::Array::New(env);                                \
    uint32_t n = 0;                                                           \
    for (int i = 0; i < kNumBackends; ++i) {                                  \
      BackendId id = static_cast<BackendId>(i);                               \
      if (backend_compiled(id) && op_table(id).name != nullptr)               \
        impls.Set(n++, device_type(id));                                      \
    }                                                                         \
    o.Set(#name, impls);                                                      \
  }
  RT_OP_LIST(RT_LIST_OP)
#undef RT_LIST_OP
  return o;
}

// { opName: { backendType: calls } }: every op call dispatched in this process, for each
// (op, backend) pair compiled in, calls or not.
RT_BINDING(opCalls) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#define RT_COUNT_CALLS(name, P)                                                          \
  {                                                                                      \
    Napi::Object calls = Napi::Object::New(env);                                         \
    for (int i = 0; i < kNumBackends; ++i) {                                             \
      BackendId id = static_cast<BackendId>(i);                                          \
      if (backend_compiled(id) && op_table(id).name != nullptr)                          \
        calls.Set(device_type(id), static_cast<double>(op_calls(OpId::name, id)));        \
    }                                                                                    \
    o.Set(#name, calls);                                                                 \
  }
  RT_OP_LIST(RT_COUNT_CALLS)
#undef RT_COUNT_CALLS
  return o;
}

// empty(shape, dtype, device): uninitialised memory.
RT_BINDING(empty) {
  auto shape = shape_arg(info, 0, "empty", "shape");
  DType dtype = dtype_arg(info, 1, "empty");
  BackendId device = device_arg(info, 2, "empty");
  return NativeTensor::create(info.Env(), device, dtype, shape);
}

// fromArray(Float32Array | Int32Array, shape, dtype, device)
RT_BINDING(fromArray) {
  const char* op = "fromArray";
  Napi::Value v = info[0];
  RT_EXPECT(v.IsTypedArray(), "fromArray: data must be a Float32Array or Int32Array", Error::type);
  Napi::TypedArray arr = v.As<Napi::TypedArray>();
  auto shape = shape_arg(info, 1, op, "shape");
  DType dtype = dtype_arg(info, 2, op);
  BackendId device = device_arg(info, 3, op);
  bool is_f32 = arr.TypedArrayType() == napi_float32_array;
  bool is_i32 = arr.TypedArrayType() == napi_int32_array;
  RT_EXPECT(dtype == DType::i32 ? is_i32 : is_f32,
         std::string("fromArray: a ") + dtype_name(dtype) + " tensor needs " +
             (dtype == DType::i32 ? "an Int32Array" : "a Float32Array"),
         Error::type);
  NativeTensor* t;
  Napi::Object obj = NativeTensor::create(info.Env(), device, dtype, shape, &t);
  RT_EXPECT(size_t(t->numel()) == arr.ElementLength(),
         "fromArray: data has " + std::to_string(arr.ElementLength()) + " elements, shape " +
             shape_string(shape) + " needs " + std::to_string(t->numel()));
  const char* src = static_cast<const char*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  std::vector<uint16_t> staged;
  if (dtype == DType::bf16) {
    staged.resize(t->numel());
    const float* f = reinterpret_cast<const float*>(src);
    for (int64_t i = 0; i < t->numel(); ++i) staged[i] = cpu::f32_to_bf16(f[i]);
    src = reinterpret_cast<const char*>(staged.data());
  }
  backend(device).from_host(t->data(op, "result"), src, t->bytes());
  return obj;
}

// toArray(t): Float32Array (f32, bf16) or Int32Array (i32), a copy.
RT_BINDING(toArray) {
  NativeTensor& t = tensor_arg(info, 0, "toArray", "tensor");
  Napi::Env env = info.Env();
  size_t n = size_t(t.numel());
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, n * 4);
  const void* src = t.data("toArray", "tensor");
  if (t.dtype() == DType::bf16) {
    std::vector<uint16_t> staged(n);
    backend(t.device()).to_host(staged.data(), src, n * 2);
    float* dst = static_cast<float*>(buf.Data());
    for (size_t i = 0; i < n; ++i) dst[i] = cpu::bf16_to_f32(staged[i]);
  } else {
    backend(t.device()).to_host(buf.Data(), src, n * 4);
  }
  if (t.dtype() == DType::i32) return Napi::Int32Array::New(env, n, buf, 0);
  return Napi::Float32Array::New(env, n, buf, 0);
}

// view(t, shape): shares memory.
RT_BINDING(view) {
  NativeTensor& t = tensor_arg(info, 0, "view", "tensor");
  return NativeTensor::view_of(info.Env(), t, shape_arg(info, 1, "view", "shape"));
}

// viewRange(t, start, shape): shares memory; a contiguous run of elements from `start`.
RT_BINDING(viewRange) {
  NativeTensor& t = tensor_arg(info, 0, "viewRange", "tensor");
  int64_t start = int_arg(info, 1, "viewRange", "start");
  return NativeTensor::range_of(info.Env(), t, start, shape_arg(info, 2, "viewRange", "shape"));
}

// copyTo(t, device): a copy on another (or the same) device.
RT_BINDING(copyTo) {
  NativeTensor& t = tensor_arg(info, 0, "copyTo", "tensor");
  BackendId device = device_arg(info, 1, "copyTo");
  NativeTensor* out;
  Napi::Object obj = NativeTensor::create(info.Env(), device, t.dtype(), t.shape(), &out);
  const void* src = t.data("copyTo", "tensor");
  void* dst = out->data("copyTo", "result");
  if (device == t.device()) {
    backend(device).copy(dst, src, t.bytes());
  } else {
    std::vector<char> staged(t.bytes());
    backend(t.device()).to_host(staged.data(), src, t.bytes());
    backend(device).from_host(dst, staged.data(), t.bytes());
  }
  return obj;
}

// copyInto(dst, src): dst <- src, same device, dtype and element count.
RT_BINDING(copyInto) {
  NativeTensor& dst = tensor_arg(info, 0, "copyInto", "dst");
  NativeTensor& src = tensor_arg(info, 1, "copyInto", "src");
  expect_same_device(dst, src, "copyInto", "src");
  expect_dtype(src, dst.dtype(), "copyInto", "src");
  expect_numel(src, dst.numel(), "copyInto", "src");
  backend(dst.device()).copy(dst.data("copyInto", "dst"), src.data("copyInto", "src"), dst.bytes());
  return info.Env().Undefined();
}

RT_BINDING(dispose) {
  Napi::Value v = info[0];
  NativeTensor* t = nullptr;
  if (v.IsObject() && napi_unwrap(info.Env(), v, reinterpret_cast<void**>(&t)) == napi_ok && t)
    t->dispose();
  return info.Env().Undefined();
}

RT_BINDING(isDisposed) {
  Napi::Value v = info[0];
  NativeTensor* t = nullptr;
  RT_EXPECT(v.IsObject() && napi_unwrap(info.Env(), v, reinterpret_cast<void**>(&t)) == napi_ok && t,
         "isDisposed: argument must be a tensor handle", Error::type);
  return Napi::Boolean::New(info.Env(), t->disposed());
}

static Napi::Object init(Napi::Env env, Napi::Object exports) {
  probe_backends();
  exports.Set("NativeTensor", NativeTensor::define_class(env));
  export_bindings(env, exports, bindings());
  return exports;
}

NODE_API_MODULE(realtune, init)

}  // namespace rt::napi
