// Binding of matmul: 2-D [M, K] x [K, N] and batched 3-D [B, M, K] x [B, K, N]; a 2-D operand
// broadcasts over the other's batch (batch stride 0). Shapes are checked here as well as in TS
// so that no call can make the kernel read or write outside a buffer; error messages are built
// only when a check fails (this runs on every call).
#include <algorithm>

#include "args.h"

namespace rt::napi {

namespace {

std::string dims_string(const NativeTensor& t) { return shape_string(t.shape()); }

// [batch, rows, cols] of a 2-D or 3-D operand; batch is -1 for 2-D (broadcast over the other's).
struct Dims {
  int64_t batch, rows, cols;
};

Dims operand_dims(const NativeTensor& t, const char* arg) {
  const auto& s = t.shape();
  if (s.size() != 2 && s.size() != 3)
    fail(std::string("matmul: ") + arg + " has " + std::to_string(s.size()) +
             " dims, expected 2 [rows, cols] or 3 [batch, rows, cols]", Error::range);
  if (s.size() == 2) return {-1, s[0], s[1]};
  return {s[0], s[1], s[2]};
}

bool overlaps(const NativeTensor& x, const NativeTensor& y) {
  const char* xp = static_cast<const char*>(x.data("matmul", "out"));
  const char* yp = static_cast<const char*>(y.data("matmul", "out"));
  return x.bytes() > 0 && y.bytes() > 0 && xp < yp + y.bytes() && yp < xp + x.bytes();
}

}  // namespace

// matmul(a, b, out?, transA, transB, alpha, beta) -> out: alpha * op(a) op(b) + beta * out.
// beta != 0 needs `out` (its contents are read); beta == 0 only writes it.
RT_BINDING(matmul) {
  NativeTensor& a = tensor_arg(info, 0, "matmul", "a");
  NativeTensor& b = tensor_arg(info, 1, "matmul", "b");
  NativeTensor* given = optional_tensor_arg(info, 2, "matmul", "out");
  const bool trans_a = bool_arg(info, 3, "matmul", "transA");
  const bool trans_b = bool_arg(info, 4, "matmul", "transB");
  const float alpha = static_cast<float>(number_arg(info, 5, "matmul", "alpha"));
  const float beta = static_cast<float>(number_arg(info, 6, "matmul", "beta"));

  expect_same_device(a, b, "matmul", "b");
  if (a.dtype() != DType::f32 && a.dtype() != DType::bf16)
    fail("matmul: a must be f32 or bf16, got " + a.describe(), Error::type);
  if (b.dtype() != DType::f32 && b.dtype() != DType::bf16)
    fail("matmul: b must be f32 or bf16, got " + b.describe(), Error::type);
  const Dims da = operand_dims(a, "a"), db = operand_dims(b, "b");
  const int64_t m = trans_a ? da.cols : da.rows, k = trans_a ? da.rows : da.cols;
  const int64_t kb = trans_b ? db.cols : db.rows, n = trans_b ? db.rows : db.cols;
  if (k != kb)
    fail("matmul: inner dimensions differ: a " + dims_string(a) + (trans_a ? " (transposed)" : "") +
                      " has K = " + std::to_string(k) + ", b " + dims_string(b) + (trans_b ? " (transposed)" : "") +
                      " has K = " + std::to_string(kb), Error::range);
  if (da.batch >= 0 && db.batch >= 0 && da.batch != db.batch)
    fail("matmul: batch sizes differ: a " + dims_string(a) + " has " + std::to_string(da.batch) + ", b " +
             dims_string(b) + " has " + std::to_string(db.batch), Error::range);
  const bool batched = a.shape().size() == 3 || b.shape().size() == 3;
  const int64_t batch = batched ? std::max(da.batch, db.batch) : 1;
  std::vector<int64_t> out_shape = batched ? std::vector<int64_t>{batch, m, n} : std::vector<int64_t>{m, n};

  NativeTensor* out = nullptr;
  Napi::Value result;
  if (given != nullptr) {
    expect_same_device(a, *given, "matmul", "out");
    expect_dtype(*given, DType::f32, "matmul", "out");
    expect_shape(*given, out_shape, "matmul", "out");
    if (overlaps(*given, a) || overlaps(*given, b))
      fail("matmul: out must not share memory with a or b", Error::range);
    out = given;
    result = info[2];
  } else {
    if (beta != 0.f)
      fail("matmul: beta is " + std::to_string(beta) + " but no out tensor was given to accumulate into", Error::range);
    result = NativeTensor::create(info.Env(), a.device(), DType::f32, out_shape, &out);
  }

  MatmulParams p{a.data("matmul", "a"), b.data("matmul", "b"), static_cast<float*>(out->data("matmul", "out")),
                 a.dtype(), b.dtype(), batch, m, n, k,
                 da.batch < 0 ? 0 : m * k, db.batch < 0 ? 0 : k * n, m * n,
                 trans_a, trans_b, alpha, beta};
  run_op(a.device(), &OpTable::matmul, "matmul", p);
  return result;
}

}  // namespace rt::napi
