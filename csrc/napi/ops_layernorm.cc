// Bindings of layer norm over the last axis (optional gamma/beta, optional adaLN scale/shift
// shared by `group` consecutive rows) and its backward.
#include <string>

#include "args.h"

namespace rt::napi {

struct RowsCols {
  int64_t rows, cols;
  std::vector<int64_t> row_shape;  // x's shape without the last axis: the shape of mean and rstd
};

static RowsCols rows_cols(const NativeTensor& x, const char* op) {
  RT_EXPECT(!x.shape().empty() && x.shape().back() > 0,
         std::string(op) + ": x must have at least 1 dim with a last dim > 0, got " + x.describe());
  RowsCols rc{1, x.shape().back(), {x.shape().begin(), x.shape().end() - 1}};
  for (int64_t d : rc.row_shape) rc.rows *= d;
  return rc;
}

static const float* optional_vector(const Napi::CallbackInfo& info, size_t index, const NativeTensor& x,
                                    int64_t cols, const char* op, const char* arg) {
  NativeTensor* t = optional_tensor_arg(info, index, op, arg);
  if (!t) return nullptr;
  expect_f32_shaped(*t, x, {cols}, op, arg);
  return static_cast<const float*>(t->data(op, arg));
}

static int64_t group_arg(const Napi::CallbackInfo& info, size_t index, int64_t rows, const char* op) {
  const int64_t group = int_arg(info, index, op, "group");
  RT_EXPECT(group >= 1 && rows % group == 0, std::string(op) + ": group must be >= 1 and divide the " +
                                              std::to_string(rows) + " rows, got " + std::to_string(group));
  return group;
}

// A modulation tensor [rows / group, cols], or null.
static const float* optional_modulation(const Napi::CallbackInfo& info, size_t index, const NativeTensor& x,
                                        const RowsCols& rc, int64_t group, const char* op, const char* arg) {
  NativeTensor* t = optional_tensor_arg(info, index, op, arg);
  if (!t) return nullptr;
  expect_f32_shaped(*t, x, {rc.rows / group, rc.cols}, op, arg);
  return static_cast<const float*>(t->data(op, arg));
}

static const float* row_stat(const Napi::CallbackInfo& info, size_t index, const NativeTensor& x, const RowsCols& rc,
                             const char* op, const char* arg) {
  NativeTensor& t = tensor_arg(info, index, op, arg);
  expect_dtype(t, DType::f32, op, arg);
  expect_same_device(x, t, op, arg);
  expect_numel(t, rc.rows, op, arg);
  return static_cast<const float*>(t.data(op, arg));
}

// layerNorm(x, gamma?, beta?, scale?, shift?, group, eps) -> [y, mean, rstd]
RT_BINDING(layerNorm) {
  const char* op = "layerNorm";
  NativeTensor& x = tensor_arg(info, 0, op, "x");
  expect_dtype(x, DType::f32, op, "x");
  const RowsCols rc = rows_cols(x, op);
  const int64_t group = group_arg(info, 5, rc.rows, op);
  const double eps = number_arg(info, 6, op, "eps");
  RT_EXPECT(eps >= 0, std::string(op) + ": eps must be >= 0, got " + std::to_string(eps));
  LayerNormParams p{};
  p.x = static_cast<const float*>(x.data(op, "x"));
  p.gamma = optional_vector(info, 1, x, rc.cols, op, "gamma");
  p.beta = optional_vector(info, 2, x, rc.cols, op, "beta");
  p.scale = optional_modulation(info, 3, x, rc, group, op, "scale");
  p.shift = optional_modulation(info, 4, x, rc, group, op, "shift");
  p.rows = rc.rows;
  p.cols = rc.cols;
  p.group = group;
  p.eps = static_cast<float>(eps);

  Napi::Env env = info.Env();
  NativeTensor *y, *mean, *rstd;
  Napi::Array result = Napi::Array::New(env, 3);
  result.Set(0u, NativeTensor::create(env, x.device(), DType::f32, x.shape(), &y));
  result.Set(1u, NativeTensor::create(env, x.device(), DType::f32, rc.row_shape, &mean));
  result.Set(2u, NativeTensor::create(env, x.device(), DType::f32, rc.row_shape, &rstd));
  if (rc.rows == 0) return result;
  p.y = static_cast<float*>(y->data(op, "y"));
  p.mean = static_cast<float*>(mean->data(op, "mean"));
  p.rstd = static_cast<float*>(rstd->data(op, "rstd"));
  run_op(x.device(), &OpTable::layernorm, "layernorm", p);
  return result;
}

// layerNormBackward(x, dy, gamma?, beta?, scale?, mean, rstd, group, needGamma, needBeta, needScale, needShift)
//   -> [dx, dgamma | null, dbeta | null, dscale | null, dshift | null]
RT_BINDING(layerNormBackward) {
  const char* op = "layerNormBackward";
  NativeTensor& x = tensor_arg(info, 0, op, "x");
  NativeTensor& dy = tensor_arg(info, 1, op, "dy");
  expect_dtype(x, DType::f32, op, "x");
  expect_f32_shaped(dy, x, x.shape(), op, "dy");
  const RowsCols rc = rows_cols(x, op);
  const int64_t group = group_arg(info, 7, rc.rows, op);
  const bool need_gamma = bool_arg(info, 8, op, "needGamma");
  const bool need_beta = bool_arg(info, 9, op, "needBeta");
  const bool need_scale = bool_arg(info, 10, op, "needScale");
  const bool need_shift = bool_arg(info, 11, op, "needShift");

  LayerNormBackwardParams p{};
  p.x = static_cast<const float*>(x.data(op, "x"));
  p.dy = static_cast<const float*>(dy.data(op, "dy"));
  p.gamma = optional_vector(info, 2, x, rc.cols, op, "gamma");
  p.beta = optional_vector(info, 3, x, rc.cols, op, "beta");
  p.scale = optional_modulation(info, 4, x, rc, group, op, "scale");
  p.mean = row_stat(info, 5, x, rc, op, "mean");
  p.rstd = row_stat(info, 6, x, rc, op, "rstd");
  RT_EXPECT(!need_gamma || p.gamma, std::string(op) + ": needGamma is set but gamma is null");
  RT_EXPECT(!need_scale || p.scale, std::string(op) + ": needScale is set but scale is null");
  p.rows = rc.rows;
  p.cols = rc.cols;
  p.group = group;

  Napi::Env env = info.Env();
  const std::vector<int64_t> vector_shape{rc.cols}, modulation_shape{rc.rows / group, rc.cols};
  Napi::Array result = Napi::Array::New(env, 5);
  NativeTensor* dx;
  result.Set(0u, NativeTensor::create(env, x.device(), DType::f32, x.shape(), &dx));
  p.dx = static_cast<float*>(dx->data(op, "dx"));
  auto gradient = [&](uint32_t slot, bool wanted, const std::vector<int64_t>& shape, const char* name) -> float* {
    if (!wanted) {
      result.Set(slot, env.Null());
      return nullptr;
    }
    NativeTensor* t;
    result.Set(slot, NativeTensor::create(env, x.device(), DType::f32, shape, &t));
    return static_cast<float*>(t->data(op, name));
  };
  p.dgamma = gradient(1, need_gamma, vector_shape, "dgamma");
  p.dbeta = gradient(2, need_beta, vector_shape, "dbeta");
  p.dscale = gradient(3, need_scale, modulation_shape, "dscale");
  p.dshift = gradient(4, need_shift, modulation_shape, "dshift");
  run_op(x.device(), &OpTable::layernorm_backward, "layernorm_backward", p);
  return result;
}

}  // namespace rt::napi
