// Bindings of the fused attention op. Shapes, dtypes and devices are checked here as well as
// in TS so that no call can make a kernel read or write outside a buffer; kv_lengths values
// are clamped to [0, Lk] by the kernels (reading them here would cost a device sync).
#include "args.h"

namespace rt::napi {

namespace {

constexpr int64_t kMaxHeadDim = 256;

struct AttentionShape {
  int64_t batch, heads, lq, lk, dim;
  DType dtype;
  BackendId device;
};

// q [B, H, Lq, D]; k, v [B, H, Lk, D]; same dtype (f32 or bf16) and device.
AttentionShape check_qkv(const NativeTensor& q, const NativeTensor& k, const NativeTensor& v,
                         const char* op) {
  const std::string name(op);
  for (const auto& [t, arg] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}}) {
    RT_EXPECT(t->shape().size() == 4,
           name + ": " + arg + " has " + std::to_string(t->shape().size()) +
               " dims, expected 4 [batch, heads, seq, dim]");
    RT_EXPECT(t->dtype() == DType::f32 || t->dtype() == DType::bf16,
           name + ": " + arg + " must be f32 or bf16, got " + t->describe(), Error::type);
  }
  expect_same_device(q, k, op, "k");
  expect_same_device(q, v, op, "v");
  expect_dtype(k, q.dtype(), op, "k");
  expect_dtype(v, q.dtype(), op, "v");
  const auto& qs = q.shape();
  const auto& ks = k.shape();
  AttentionShape s{qs[0], qs[1], qs[2], ks[2], qs[3], q.dtype(), q.device()};
  RT_EXPECT(s.dim >= 1 && s.dim <= kMaxHeadDim,
         name + ": head dim " + std::to_string(s.dim) + " must be in [1, 256]");
  expect_shape(k, {s.batch, s.heads, s.lk, s.dim}, op, "k");
  expect_shape(v, {s.batch, s.heads, s.lk, s.dim}, op, "v");
  return s;
}

const int32_t* kv_lengths_arg(const Napi::CallbackInfo& info, size_t index, const AttentionShape& s,
                              const NativeTensor& q, const char* op) {
  NativeTensor* lengths = optional_tensor_arg(info, index, op, "kv_lengths");
  if (lengths == nullptr) return nullptr;
  expect_same_device(q, *lengths, op, "kv_lengths");
  expect_dtype(*lengths, DType::i32, op, "kv_lengths");
  expect_shape(*lengths, {s.batch}, op, "kv_lengths");
  return static_cast<const int32_t*>(lengths->data(op, "kv_lengths"));
}

}  // namespace

// attention(q, k, v, kv_lengths | null, scale, causal) -> [out, lse]
RT_BINDING(attention) {
  const char* op = "attention";
  NativeTensor& q = tensor_arg(info, 0, op, "q");
  NativeTensor& k = tensor_arg(info, 1, op, "k");
  NativeTensor& v = tensor_arg(info, 2, op, "v");
  const AttentionShape s = check_qkv(q, k, v, op);
  const int32_t* kv_lengths = kv_lengths_arg(info, 3, s, q, op);
  const float scale = static_cast<float>(number_arg(info, 4, op, "scale"));
  const bool causal = bool_arg(info, 5, op, "causal");

  NativeTensor *out, *lse;
  Napi::Object out_obj = NativeTensor::create(info.Env(), s.device, s.dtype, q.shape(), &out);
  Napi::Object lse_obj = NativeTensor::create(info.Env(), s.device, DType::f32, {s.batch, s.heads, s.lq}, &lse);
  AttentionParams p{q.data(op, "q"), k.data(op, "k"), v.data(op, "v"), out->data(op, "out"),
                    static_cast<float*>(lse->data(op, "lse")), kv_lengths, s.dtype,
                    s.batch, s.heads, s.lq, s.lk, s.dim, scale, causal};
  run_op(s.device, &OpTable::attention, op, p);
  Napi::Array result = Napi::Array::New(info.Env(), 2);
  result.Set(0u, out_obj);
  result.Set(1u, lse_obj);
  return result;
}

// attentionBackward(q, k, v, out, dout, lse, kv_lengths | null, scale, causal) -> [dq, dk, dv]
RT_BINDING(attentionBackward) {
  const char* op = "attention_backward";
  NativeTensor& q = tensor_arg(info, 0, op, "q");
  NativeTensor& k = tensor_arg(info, 1, op, "k");
  NativeTensor& v = tensor_arg(info, 2, op, "v");
  const AttentionShape s = check_qkv(q, k, v, op);
  NativeTensor& out = tensor_arg(info, 3, op, "out");
  NativeTensor& dout = tensor_arg(info, 4, op, "dout");
  NativeTensor& lse = tensor_arg(info, 5, op, "lse");
  for (const auto& [t, arg] : {std::pair{&out, "out"}, {&dout, "dout"}}) {
    expect_same_device(q, *t, op, arg);
    expect_dtype(*t, s.dtype, op, arg);
    expect_shape(*t, q.shape(), op, arg);
  }
  expect_same_device(q, lse, op, "lse");
  expect_dtype(lse, DType::f32, op, "lse");
  expect_shape(lse, {s.batch, s.heads, s.lq}, op, "lse");
  const int32_t* kv_lengths = kv_lengths_arg(info, 6, s, q, op);
  const float scale = static_cast<float>(number_arg(info, 7, op, "scale"));
  const bool causal = bool_arg(info, 8, op, "causal");

  NativeTensor *dq, *dk, *dv;
  Napi::Object dq_obj = NativeTensor::create(info.Env(), s.device, s.dtype, q.shape(), &dq);
  Napi::Object dk_obj = NativeTensor::create(info.Env(), s.device, s.dtype, k.shape(), &dk);
  Napi::Object dv_obj = NativeTensor::create(info.Env(), s.device, s.dtype, v.shape(), &dv);
  AttentionBackwardParams p{q.data(op, "q"), k.data(op, "k"), v.data(op, "v"),
                            out.data(op, "out"), dout.data(op, "dout"),
                            static_cast<const float*>(lse.data(op, "lse")), kv_lengths,
                            dq->data(op, "dq"), dk->data(op, "dk"), dv->data(op, "dv"), s.dtype,
                            s.batch, s.heads, s.lq, s.lk, s.dim, scale, causal};
  run_op(s.device, &OpTable::attention_backward, op, p);
  Napi::Array result = Napi::Array::New(info.Env(), 3);
  result.Set(0u, dq_obj);
  result.Set(1u, dk_obj);
  result.Set(2u, dv_obj);
  return result;
}

}  // namespace rt::napi
