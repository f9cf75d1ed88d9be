#include "args.h"

#include <cmath>
#include <new>
#include <string>
#include <utility>

namespace rt::napi {

BindingList& bindings() {
  static BindingList list;
  return list;
}

bool register_binding(BindingList& list, const char* name, BindingFn fn) {
  list.emplace_back(name, fn);
  return true;
}

static Napi::Value call_guarded(const Napi::CallbackInfo& info, BindingFn fn) {
  Napi::Env env = info.Env();
  try {
    return fn(info);
  } catch (const Error& e) {
    switch (e.kind()) {
      case Error::type: throw Napi::TypeError::New(env, e.what());
      case Error::range: throw Napi::RangeError::New(env, e.what());
      default: throw Napi::Error::New(env, e.what());
    }
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "realtune: out of host memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("realtune: ") + e.what());
  }
}

void export_bindings(Napi::Env env, Napi::Object exports, const BindingList& list) {
  for (const auto& [name, fn] : list) {
    BindingFn target = fn;
    exports.Set(name, Napi::Function::New(
                          env, [target](const Napi::CallbackInfo& info) {
                            return call_guarded(info, target);
                          },
                          name));
  }
}

static std::string where(const char* op, const char* arg) {
  return std::string(op) + ": " + arg;
}

NativeTensor* optional_tensor_arg(const Napi::CallbackInfo& info, size_t index, const char* op,
                                  const char* arg) {
  return optional_tensor_value(info[index], op, arg);
}

NativeTensor* optional_tensor_value(Napi::Value v, const char* op, const char* arg) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  if (!v.IsObject()) fail(where(op, arg) + " must be a tensor, got a " + std::string(v.IsNumber() ? "number" : v.IsString() ? "string" : "non-object"), Error::type);
  Napi::Object obj = v.As<Napi::Object>();
  NativeTensor* t = nullptr;
  napi_status status = napi_unwrap(v.Env(), obj, reinterpret_cast<void**>(&t));
  if (status != napi_ok || t == nullptr)
    fail(where(op, arg) + " must be a tensor handle, got another object", Error::type);
  t->data(op, arg);
  return t;
}

NativeTensor& tensor_arg(const Napi::CallbackInfo& info, size_t index, const char* op,
                         const char* arg) {
  NativeTensor* t = optional_tensor_arg(info, index, op, arg);
  if (t == nullptr) fail(where(op, arg) + " must be a tensor, got null", Error::type);
  return *t;
}

double number_arg(const Napi::CallbackInfo& info, size_t index, const char* op, const char* arg) {
  Napi::Value v = info[index];
  if (!v.IsNumber()) fail(where(op, arg) + " must be a number", Error::type);
  double d = v.As<Napi::Number>().DoubleValue();
  if (std::isnan(d)) fail(where(op, arg) + " must be a number, got NaN", Error::range);
  return d;
}

int64_t int_arg(const Napi::CallbackInfo& info, size_t index, const char* op, const char* arg) {
  double d = number_arg(info, index, op, arg);
  if (d != std::floor(d) || std::fabs(d) > 9.007199254740992e15)
    fail(where(op, arg) + " must be an integer, got " + std::to_string(d), Error::range);
  return static_cast<int64_t>(d);
}

bool bool_arg(const Napi::CallbackInfo& info, size_t index, const char* op, const char* arg) {
  Napi::Value v = info[index];
  if (!v.IsBoolean()) fail(where(op, arg) + " must be a boolean", Error::type);
  return v.As<Napi::Boolean>().Value();
}

std::vector<int64_t> shape_arg(const Napi::CallbackInfo& info, size_t index, const char* op,
                               const char* arg) {
  Napi::Value v = info[index];
  if (!v.IsArray()) fail(where(op, arg) + " must be an array of dimensions", Error::type);
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> shape(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value d = a.Get(i);
    if (!d.IsNumber()) fail(where(op, arg) + " must contain only numbers", Error::type);
    double x = d.As<Napi::Number>().DoubleValue();
    if (x < 0 || x != std::floor(x) || x > 9.007199254740992e15)
      fail(where(op, arg) + " dimension " + std::to_string(i) +
               " must be a non-negative integer, got " + std::to_string(x),
           Error::range);
    shape[i] = static_cast<int64_t>(x);
  }
  return shape;
}

BackendId device_arg(const Napi::CallbackInfo& info, size_t index, const char* op) {
  int64_t d = int_arg(info, index, op, "device");
  if (d < 0 || d >= kNumBackends || !backend_compiled(static_cast<BackendId>(d)))
    fail(std::string(op) + ": device " + std::to_string(d) + " is not built into this binary",
         Error::type);
  return static_cast<BackendId>(d);
}

DType dtype_arg(const Napi::CallbackInfo& info, size_t index, const char* op) {
  int64_t d = int_arg(info, index, op, "dtype");
  if (d < 0 || d > 2) fail(std::string(op) + ": unknown dtype code " + std::to_string(d), Error::type);
  return static_cast<DType>(d);
}

void expect_failed(const std::string& message, Error::Kind kind) { fail(message, kind); }

// The checks run on every op call: build the message only when one fails.
void expect_dtype(const NativeTensor& t, DType dtype, const char* op, const char* arg) {
  if (t.dtype() != dtype)
    fail(where(op, arg) + " must be " + dtype_name(dtype) + ", got " + t.describe(), Error::type);
}

void expect_numel(const NativeTensor& t, int64_t numel, const char* op, const char* arg) {
  if (t.numel() != numel)
    fail(where(op, arg) + " must have " + std::to_string(numel) + " elements, got " + t.describe(), Error::range);
}

void expect_shape(const NativeTensor& t, const std::vector<int64_t>& shape, const char* op,
                  const char* arg) {
  if (t.shape() != shape)
    fail(where(op, arg) + " must have shape " + shape_string(shape) + ", got " + t.describe(), Error::range);
}

void expect_same_device(const NativeTensor& a, const NativeTensor& b, const char* op,
                        const char* arg) {
  if (a.device() != b.device())
    fail(where(op, arg) + " is on " + device_type(b.device()) + " but the op runs on " + device_type(a.device()),
         Error::type);
}

void expect_f32_like(const NativeTensor& t, const NativeTensor& like, const char* op, const char* arg) {
  expect_dtype(t, DType::f32, op, arg);
  expect_same_device(like, t, op, arg);
  expect_numel(t, like.numel(), op, arg);
}

void expect_f32_shaped(const NativeTensor& t, const NativeTensor& like, const std::vector<int64_t>& shape,
                       const char* op, const char* arg) {
  expect_dtype(t, DType::f32, op, arg);
  expect_same_device(like, t, op, arg);
  expect_shape(t, shape, op, arg);
}

Napi::Value output_like(const Napi::CallbackInfo& info, size_t index, const NativeTensor& like, const char* op,
                        NativeTensor** out) {
  if (NativeTensor* given = optional_tensor_arg(info, index, op, "out")) {
    expect_same_device(like, *given, op, "out");
    expect_dtype(*given, like.dtype(), op, "out");
    expect_numel(*given, like.numel(), op, "out");
    *out = given;
    return info[index];
  }
  return NativeTensor::create(info.Env(), like.device(), like.dtype(), like.shape(), out);
}

}  // namespace rt::napi
