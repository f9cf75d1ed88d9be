// Helpers every op binding uses: reading arguments with errors that name the op and the
// argument, allocating outputs, and dispatching to the tensor's backend.
#pragma once

#include <napi.h>

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tensor.h"

namespace rt::napi {

using BindingFn = Napi::Value (*)(const Napi::CallbackInfo&);
// The functions one addon exports, by name.
using BindingList = std::vector<std::pair<const char*, BindingFn>>;
// realtune.node's list (every RT_BINDING); realtune_dev.node keeps its own (csrc/dev/).
BindingList& bindings();
bool register_binding(BindingList& list, const char* name, BindingFn fn);
// Sets every binding of `list` on `exports`, each turning rt::Error into a JS TypeError,
// RangeError or Error with the same message.
void export_bindings(Napi::Env env, Napi::Object exports, const BindingList& list);

// Defines a function exported on the native module under `name`; rt::Error thrown inside it
// becomes a JS TypeError/RangeError/Error with the same message.
#define RT_BINDING(name) RT_BINDING_IN(::rt::napi::bindings(), name)
#define RT_BINDING_IN(list, name)                                                           \
  static Napi::Value rt_binding_fn_##name(const Napi::CallbackInfo& info);                  \
  static const bool rt_binding_registered_##name =                                          \
      ::rt::napi::register_binding(list, #name, rt_binding_fn_##name);                      \
  static Napi::Value rt_binding_fn_##name(const Napi::CallbackInfo& info)

// Argument readers. `op` and `arg` name the call in error messages.
NativeTensor& tensor_arg(const Napi::CallbackInfo& info, size_t index, const char* op,
                         const char* arg);
// A tensor, or nullptr when the argument is null or undefined.
NativeTensor* optional_tensor_arg(const Napi::CallbackInfo& info, size_t index, const char* op,
                                  const char* arg);
// The same for a value that is not an argument (an element of an array argument).
NativeTensor* optional_tensor_value(Napi::Value v, const char* op, const char* arg);
int64_t int_arg(const Napi::CallbackInfo& info, size_t index, const char* op, const char* arg);
double number_arg(const Napi::CallbackInfo& info, size_t index, const char* op, const char* arg);
bool bool_arg(const Napi::CallbackInfo& info, size_t index, const char* op, const char* arg);
std::vector<int64_t> shape_arg(const Napi::CallbackInfo& info, size_t index, const char* op,
                               const char* arg);
BackendId device_arg(const Napi::CallbackInfo& info, size_t index, const char* op);
DType dtype_arg(const Napi::CallbackInfo& info, size_t index, const char* op);

// Checks; each throws rt::Error naming op, argument, expectation and what came.
void expect_dtype(const NativeTensor& t, DType dtype, const char* op, const char* arg);
void expect_numel(const NativeTensor& t, int64_t numel, const char* op, const char* arg);
void expect_shape(const NativeTensor& t, const std::vector<int64_t>& shape, const char* op,
                  const char* arg);
void expect_same_device(const NativeTensor& a, const NativeTensor& b, const char* op,
                        const char* arg);
// An f32 input that goes with `like`: on its device, with its element count, or with `shape`.
void expect_f32_like(const NativeTensor& t, const NativeTensor& like, const char* op, const char* arg);
void expect_f32_shaped(const NativeTensor& t, const NativeTensor& like, const std::vector<int64_t>& shape,
                       const char* op, const char* arg);
[[noreturn]] void expect_failed(const std::string& message, Error::Kind kind = Error::range);

// Throws rt::Error (a RangeError in JS unless a kind is given) when `condition` is false. A
// macro so that the message, often built from strings, is only made when the check fails:
// these checks run on every op call.
#define RT_EXPECT(condition, ...)                                      \
  do {                                                                 \
    if (!(condition)) ::rt::napi::expect_failed(__VA_ARGS__);          \
  } while (0)

// An op's output: the `out` argument at `index` when given (checked to match `like` in
// device, dtype and element count; it may alias an input), else a new tensor shaped like `like`.
Napi::Value output_like(const Napi::CallbackInfo& info, size_t index, const NativeTensor& like, const char* op,
                        NativeTensor** out);

template <class P>
using OpFn = void (*)(const P&);

// The backend's implementation of an op, or an error saying it has none.
template <class P>
OpFn<P> op_impl(BackendId device, OpFn<P> OpTable::*slot, const char* op) {
  OpFn<P> fn = op_table(device).*slot;
  if (fn == nullptr)
    fail(std::string(op) + ": not implemented on the " + device_type(device) + " backend");
  return fn;
}

// The OpId of a slot of the op table.
template <class P>
OpId op_id(OpFn<P> OpTable::*slot) {
#define RT_MATCH_SLOT(name, Params)                                          \
  if constexpr (std::is_same_v<P, Params>)                                   \
    if (slot == &OpTable::name) return OpId::name;
  RT_OP_LIST(RT_MATCH_SLOT)
#undef RT_MATCH_SLOT
  fail("op_id: a slot that is not in RT_OP_LIST");
}

// Runs the backend's implementation of an op and counts the call.
template <class P>
void run_op(BackendId device, OpFn<P> OpTable::*slot, const char* op, const P& params) {
  OpFn<P> fn = op_impl(device, slot, op);
  count_op_call(op_id(slot), device);
  fn(params);
}

}  // namespace rt::napi
