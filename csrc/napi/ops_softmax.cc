// Bindings of softmax and its backward over the last axis of an f32 tensor of any rank.
#include "args.h"

namespace rt::napi {

// The last axis is the row; a 0-d tensor is one row of one element.
static int64_t last_dim(const NativeTensor& t) { return t.shape().empty() ? 1 : t.shape().back(); }
static int64_t row_count(const NativeTensor& t) {
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < t.shape().size(); ++d) rows *= t.shape()[d];
  return rows;
}

// softmax(x) -> y
RT_BINDING(softmax) {
  NativeTensor& x = tensor_arg(info, 0, "softmax", "x");
  expect_dtype(x, DType::f32, "softmax", "x");
  NativeTensor* y;
  Napi::Object result = NativeTensor::create(info.Env(), x.device(), DType::f32, x.shape(), &y);
  if (x.numel() == 0) return result;
  SoftmaxParams p{static_cast<const float*>(x.data("softmax", "x")), static_cast<float*>(y->data("softmax", "y")),
                  row_count(x), last_dim(x)};
  run_op(x.device(), &OpTable::softmax, "softmax", p);
  return result;
}

// softmaxBackward(y, dy) -> dx
RT_BINDING(softmaxBackward) {
  const char* op = "softmaxBackward";
  NativeTensor& y = tensor_arg(info, 0, op, "y");
  NativeTensor& dy = tensor_arg(info, 1, op, "dy");
  expect_dtype(y, DType::f32, op, "y");
  expect_f32_shaped(dy, y, y.shape(), op, "dy");
  NativeTensor* dx;
  Napi::Object result = NativeTensor::create(info.Env(), y.device(), DType::f32, y.shape(), &dx);
  if (y.numel() == 0) return result;
  SoftmaxBackwardParams p{static_cast<const float*>(y.data(op, "y")), static_cast<const float*>(dy.data(op, "dy")),
                          static_cast<float*>(dx->data(op, "dx")), row_count(y), last_dim(y)};
  run_op(y.device(), &OpTable::softmax_backward, "softmax_backward", p);
  return result;
}

}  // namespace rt::napi
