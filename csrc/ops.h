// The op table: every op realtune computes, declared once.
//
// An op is a plain parameter struct (device pointers, sizes, attributes) and one function per
// backend `void op(const Params&)`. Pointers are already resolved to the op's device and every
// size has been validated by the binding layer, so kernels do no argument checking of their own.
// All tensors are contiguous, row-major. Backends register their implementations with
// RT_REGISTER_OP from the file that implements the op (csrc/cpu/<op>.cc, cuda/<op>.cu).
#pragma once

#include <cstdint>

#include "common.h"

namespace rt {

// ---------------------------------------------------------------------------------------------
// Foundation ops

// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b], op(X) = X or X^T.
// A is [M, K] (or [K, M] when trans_a), B is [K, N] (or [N, K] when trans_b), C is [M, N].
// Batch strides are in elements; a stride of 0 broadcasts that operand over the batch.
// A and B may be f32 or bf16 (converted to f32 on load); C is f32. When beta == 0, C is only
// written (NaNs already in C do not propagate).
struct MatmulParams {
  const void* a;
  const void* b;
  float* c;
  DType a_dtype, b_dtype;
  int64_t batch, m, n, k;
  int64_t stride_a, stride_b, stride_c;
  bool trans_a, trans_b;
  float alpha, beta;
};

enum class BinaryOp : int32_t { add = 0, sub = 1, mul = 2 };
// out[i] = a[i] (op) b[i]. out may alias a or b.
struct BinaryParams {
  const float* a;
  const float* b;
  float* out;
  int64_t n;
  BinaryOp op;
};

// out[i] = alpha * x[i]. out may alias x.
struct ScaleParams {
  const float* x;
  float* out;
  int64_t n;
  float alpha;
};

// y[i] = alpha * x[i] + beta * y[i], in place on y.
struct AxpyParams {
  const float* x;
  float* y;
  int64_t n;
  float alpha, beta;
};

// out[o, c, i] = x[o, c, i] + bias[c], x viewed as [outer, channels, inner].
struct BiasAddParams {
  const float* x;
  const float* bias;
  float* out;
  int64_t outer, channels, inner;
};

// out[o, i] = sum_r x[o, r, i] (times 1/reduce when mean), x viewed as [outer, reduce, inner].
struct ReduceParams {
  const float* x;
  float* out;
  int64_t outer, reduce, inner;
  bool mean;
};

// out[o, r, i] = alpha * x[o, i]: the backward of reduce.
struct BroadcastParams {
  const float* x;
  float* out;
  int64_t outer, reduce, inner;
  float alpha;
};

constexpr int kMaxDims = 8;
// out = x.permute(perm) materialised contiguously; out_shape[d] = in_shape[perm[d]].
struct PermuteParams {
  const void* x;
  void* out;
  DType dtype;
  int32_t ndim;
  int64_t in_shape[kMaxDims];
  int32_t perm[kMaxDims];
};

// Softmax over the last axis of x viewed as [rows, cols].
struct SoftmaxParams {
  const float* x;
  float* out;
  int64_t rows, cols;
};
// dx = y * (dy - sum(dy * y)) per row.
struct SoftmaxBackwardParams {
  const float* y;
  const float* dy;
  float* dx;
  int64_t rows, cols;
};

// Layer norm over the last axis of x viewed as [rows, cols]:
//   y = norm(x) * gamma + beta                       (gamma/beta optional, [cols])
//   y = y * (1 + scale[g]) + shift[g]                 (adaLN, optional, [rows / group, cols])
// where g = row / group: `group` rows share one modulation vector (tokens of one sample).
// mean and rstd ([rows]) are written for the backward.
struct LayerNormParams {
  const float* x;
  const float* gamma;
  const float* beta;
  const float* scale;
  const float* shift;
  float* y;
  float* mean;
  float* rstd;
  int64_t rows, cols, group;
  float eps;
};
// Gradients of LayerNormParams. dgamma, dbeta, dscale, dshift are written (not accumulated)
// and may be null when not wanted; they must be null when the matching input was. beta is read
// only for dscale (the modulation scales z gamma + beta).
struct LayerNormBackwardParams {
  const float* x;
  const float* gamma;
  const float* beta;
  const float* scale;
  const float* mean;
  const float* rstd;
  const float* dy;
  float* dx;
  float* dgamma;
  float* dbeta;
  float* dscale;
  float* dshift;
  int64_t rows, cols, group;
};

enum class Activation : int32_t { gelu_tanh = 0, silu = 1 };
struct ActivationParams {
  const float* x;
  float* out;
  int64_t n;
  Activation kind;
};
struct ActivationBackwardParams {
  const float* x;
  const float* dy;
  float* dx;
  int64_t n;
  Activation kind;
};

// out[i, :] = table[ids[i], :]; ids are in [0, vocab) (checked by the binding).
struct EmbeddingParams {
  const float* table;
  const int32_t* ids;
  float* out;
  int64_t n, vocab, dim;
};
// dtable[ids[i], :] += dy[i, :] (scatter-add; dtable is accumulated into).
struct EmbeddingBackwardParams {
  const int32_t* ids;
  const float* dy;
  float* dtable;
  int64_t n, vocab, dim;
};

// One fused AdamW step in place (decoupled weight decay, bias correction with `step` >= 1):
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + wd * p)
struct AdamWParams {
  float* param;
  const float* grad;
  float* m;
  float* v;
  int64_t n;
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;
};

// *out (+)= sum_i x[i]^2, accumulated in double precision where the backend can.
struct SumSquaresParams {
  const float* x;
  float* out;
  int64_t n;
  bool accumulate;
};
// x *= min(1, max_norm / (sqrt(*total_sq) + 1e-6)); reads the norm on the device.
struct ClipByNormParams {
  float* x;
  const float* total_sq;
  int64_t n;
  float max_norm;
};

enum class RandomKind : int32_t { uniform = 0, normal = 1 };
// Counter-based (Philox-4x32-10) random numbers: element i depends only on (seed, offset + i),
// so every backend produces the same numbers. uniform: a + (b - a) * u, u in [0, 1);
// normal: a + b * z (a = mean, b = std).
struct RandomParams {
  float* out;
  int64_t n;
  uint64_t seed, offset;
  RandomKind kind;
  float a, b;
};

// out = x converted between dtypes (f32 <-> bf16 round-to-nearest-even, i32 <-> f32).
struct CastParams {
  const void* x;
  void* out;
  int64_t n;
  DType from, to;
};

// out[i] = min(max(x[i], lo), hi). out may alias x.
struct ClampParams {
  const float* x;
  float* out;
  int64_t n;
  float lo, hi;
};

// out[i] = sign(x[i]): -1, 0 or 1 (0 for NaN). out may alias x.
struct SignParams {
  const float* x;
  float* out;
  int64_t n;
};

// out[i] = value, for any dtype (value converted).
struct FillParams {
  void* out;
  int64_t n;
  DType dtype;
  float value;
};

// ---------------------------------------------------------------------------------------------
// Headline kernels (SPEC.md)

// Fused attention: out = softmax(scale * q k^T + mask) v, per (batch, head).
// q [B, H, Lq, D]; k, v [B, H, Lk, D]; out [B, H, Lq, D]; lse [B, H, Lq] (log-sum-exp of the
// scaled, masked scores; -inf for fully masked rows, whose output is 0).
// kv_lengths (i32 [B], may be null) masks keys j >= kv_lengths[b]; causal masks j > i + (Lk - Lq).
// dtype is f32 or bf16 for q, k, v and out; lse is always f32.
struct AttentionParams {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  float* lse;
  const int32_t* kv_lengths;
  DType dtype;
  int64_t batch, heads, lq, lk, dim;
  float scale;
  bool causal;
};
struct AttentionBackwardParams {
  const void* q;
  const void* k;
  const void* v;
  const void* out;
  const void* dout;
  const float* lse;
  const int32_t* kv_lengths;
  void* dq;
  void* dk;
  void* dv;
  DType dtype;
  int64_t batch, heads, lq, lk, dim;
  float scale;
  bool causal;
};

// Diffusion-DPO loss, diffusers form (SPEC section 1). `pairs` pairs of `per_pair` elements each.
//   mw = mse(pred_w, noise_w), ml = mse(pred_l, noise_l), rw, rl likewise for the reference
//   inside = -beta * ((mw - ml) - (rw - rl));  loss = -mean(logsigmoid(inside))
// Outputs: loss[1], and per pair inside, mse_w, mse_l, ref_mse_w, ref_mse_l ([pairs] each),
// accuracy[1] (inside > 0, ties 0.5).
struct DpoLossParams {
  const float* pred_w;
  const float* pred_l;
  const float* ref_w;
  const float* ref_l;
  const float* noise_w;
  const float* noise_l;
  float* loss;
  float* accuracy;
  float* inside;
  float* mse_w;
  float* mse_l;
  float* ref_mse_w;
  float* ref_mse_l;
  int64_t pairs, per_pair;
  float beta;
};
// d(loss)/d(pred_w), d(loss)/d(pred_l), times dloss (a host scalar), from the saved `inside`.
struct DpoLossBackwardParams {
  const float* pred_w;
  const float* pred_l;
  const float* noise_w;
  const float* noise_l;
  const float* inside;
  float* d_pred_w;
  float* d_pred_l;
  int64_t pairs, per_pair;
  float beta, dloss;
};

// Channel-statistics loss on a, b [B, C, N]:
//   loss = mean_{B,C} (mean_N a - mean_N b)^2 (+ (std_N a - std_N b)^2 when match_std)
// Saves per-(b, c) statistics of both inputs for the backward: mean_a, mean_b, std_a, std_b
// ([B*C] each; std only written when match_std).
struct ChannelStatLossParams {
  const float* a;
  const float* b;
  float* loss;
  float* mean_a;
  float* mean_b;
  float* std_a;
  float* std_b;
  int64_t batch, channels, n;
  bool match_std;
};
struct ChannelStatLossBackwardParams {
  const float* a;
  const float* mean_a;
  const float* mean_b;
  const float* std_a;
  const float* std_b;
  float* da;
  int64_t batch, channels, n;
  bool match_std;
  float dloss;
};

// LoRA-fused linear: y = x w^T + bias + scale * (x down) up.
// x [M, K], w [N, K], bias [N] (may be null), down [K, r], up [r, N]; y [M, N];
// h [M, r] = x down is written for the backward.
struct LoraLinearParams {
  const float* x;
  const float* w;
  const float* bias;
  const float* down;
  const float* up;
  float* y;
  float* h;
  int64_t m, n, k, rank;
  float scale;
};
// Gradients; dw and dbias may be null (frozen). All outputs are written, not accumulated.
struct LoraLinearBackwardParams {
  const float* x;
  const float* w;
  const float* down;
  const float* up;
  const float* h;
  const float* dy;
  float* dx;
  float* dw;
  float* dbias;
  float* ddown;
  float* dup;
  int64_t m, n, k, rank;
  float scale;
};

// ---------------------------------------------------------------------------------------------

// Where each op lives: a family name F gives csrc/cpu/F.cc, cuda/F.cu, csrc/napi/ops_F.cc,
// lib/ops/F.ts, test/ops/F.test.ts and test/reference/F.ts; an op's backward sits beside it.
//   elementwise: binary, scale, axpy, bias_add      reduce: reduce, broadcast
//   optim: adamw, sum_squares, clip_by_norm          fill (ops_tensor.cc; lib/tensor.ts)
//   every other op: the family named like the op (matmul, permute, softmax, layernorm,
//   activation, embedding, random, cast, clamp, sign, attention, dpo_loss, channel_stat_loss,
//   lora_linear)
#define RT_OP_LIST(X)                                   \
  X(matmul, MatmulParams)                               \
  X(binary, BinaryParams)                               \
  X(scale, ScaleParams)                                 \
  X(axpy, AxpyParams)                                   \
  X(bias_add, BiasAddParams)                            \
  X(reduce, ReduceParams)                               \
  X(broadcast, BroadcastParams)                         \
  X(permute, PermuteParams)                             \
  X(softmax, SoftmaxParams)                             \
  X(softmax_backward, SoftmaxBackwardParams)            \
  X(layernorm, LayerNormParams)                         \
  X(layernorm_backward, LayerNormBackwardParams)        \
  X(activation, ActivationParams)                       \
  X(activation_backward, ActivationBackwardParams)      \
  X(embedding, EmbeddingParams)                         \
  X(embedding_backward, EmbeddingBackwardParams)        \
  X(adamw, AdamWParams)                                 \
  X(sum_squares, SumSquaresParams)                      \
  X(clip_by_norm, ClipByNormParams)                     \
  X(random, RandomParams)                               \
  X(cast, CastParams)                                   \
  X(fill, FillParams)                                   \
  X(clamp, ClampParams)                                 \
  X(sign, SignParams)                                   \
  X(attention, AttentionParams)                         \
  X(attention_backward, AttentionBackwardParams)        \
  X(dpo_loss, DpoLossParams)                            \
  X(dpo_loss_backward, DpoLossBackwardParams)           \
  X(channel_stat_loss, ChannelStatLossParams)           \
  X(channel_stat_loss_backward, ChannelStatLossBackwardParams) \
  X(lora_linear, LoraLinearParams)                      \
  X(lora_linear_backward, LoraLinearBackwardParams)

enum class BackendId : int32_t { cpu = 0, cuda = 1, emu = 2 };
constexpr int kNumBackends = 3;

struct OpTable {
#define RT_DECLARE_SLOT(name, P) void (*name)(const P&) = nullptr;
  RT_OP_LIST(RT_DECLARE_SLOT)
#undef RT_DECLARE_SLOT
};

// The table each backend fills at static-initialisation time.
OpTable& op_table(BackendId backend);

template <class Fn>
bool register_op(BackendId backend, Fn OpTable::*slot, Fn fn) {
  op_table(backend).*slot = fn;
  return true;
}

// Every op by position in RT_OP_LIST, for per-op bookkeeping.
enum class OpId : int32_t {
#define RT_DECLARE_OP_ID(name, P) name,
  RT_OP_LIST(RT_DECLARE_OP_ID)
#undef RT_DECLARE_OP_ID
};
constexpr int kNumOps = 0
#define RT_COUNT_OP(name, P) +1
    RT_OP_LIST(RT_COUNT_OP)
#undef RT_COUNT_OP
    ;

// How many times op `op` has been dispatched to `backend` in this process (the binding layer
// counts every call; tests use it to prove that every (op, backend) pair ran).
uint64_t op_calls(OpId op, BackendId backend);
void count_op_call(OpId op, BackendId backend);

// Register `fn` as `backend`'s implementation of op `name`, at namespace scope.
#define RT_REGISTER_OP(backend, name, fn) \
  static const bool rt_registered_##name = ::rt::register_op(backend, &::rt::OpTable::name, fn)

}  // namespace rt
