// Bindings of the optimizer ops: adamw, sum_squares, clip_by_norm. All update in place.
#include <cmath>

#include "args.h"

namespace rt::napi {

static float* f32_arg(NativeTensor& t, const NativeTensor& like, const char* op, const char* arg) {
  expect_f32_like(t, like, op, arg);
  return static_cast<float*>(t.data(op, arg));
}

// adamw(param, grad, m, v, lr, beta1, beta2, eps, weightDecay, step)
RT_BINDING(adamw) {
  NativeTensor& param = tensor_arg(info, 0, "adamw", "param");
  expect_dtype(param, DType::f32, "adamw", "param");
  AdamWParams p{};
  p.param = static_cast<float*>(param.data("adamw", "param"));
  p.grad = f32_arg(tensor_arg(info, 1, "adamw", "grad"), param, "adamw", "grad");
  p.m = f32_arg(tensor_arg(info, 2, "adamw", "m"), param, "adamw", "m");
  p.v = f32_arg(tensor_arg(info, 3, "adamw", "v"), param, "adamw", "v");
  p.n = param.numel();
  p.lr = static_cast<float>(number_arg(info, 4, "adamw", "lr"));
  p.beta1 = static_cast<float>(number_arg(info, 5, "adamw", "beta1"));
  p.beta2 = static_cast<float>(number_arg(info, 6, "adamw", "beta2"));
  p.eps = static_cast<float>(number_arg(info, 7, "adamw", "eps"));
  p.weight_decay = static_cast<float>(number_arg(info, 8, "adamw", "weightDecay"));
  p.step = int_arg(info, 9, "adamw", "step");
  RT_EXPECT(p.step >= 1, "adamw: step must be an integer >= 1, got " + std::to_string(p.step));
  RT_EXPECT(p.beta1 >= 0 && p.beta1 < 1 && p.beta2 >= 0 && p.beta2 < 1,
         "adamw: beta1 and beta2 must be in [0, 1), got " + std::to_string(p.beta1) + " and " + std::to_string(p.beta2));
  if (p.n > 0) run_op(param.device(), &OpTable::adamw, "adamw", p);
  return info.Env().Undefined();
}

// sumSquares(x, out, accumulate): out[0] (+)= sum of x^2; out is a one-element f32 tensor.
RT_BINDING(sumSquares) {
  NativeTensor& x = tensor_arg(info, 0, "sumSquares", "x");
  NativeTensor& out = tensor_arg(info, 1, "sumSquares", "out");
  expect_dtype(x, DType::f32, "sumSquares", "x");
  expect_dtype(out, DType::f32, "sumSquares", "out");
  expect_same_device(x, out, "sumSquares", "out");
  expect_numel(out, 1, "sumSquares", "out");
  SumSquaresParams p{static_cast<const float*>(x.data("sumSquares", "x")), static_cast<float*>(out.data("sumSquares", "out")),
                     x.numel(), bool_arg(info, 2, "sumSquares", "accumulate")};
  run_op(x.device(), &OpTable::sum_squares, "sum_squares", p);
  return info.Env().Undefined();
}

// clipByNorm(x, totalSq, maxNorm): x *= min(1, maxNorm / (sqrt(totalSq[0]) + 1e-6)).
RT_BINDING(clipByNorm) {
  NativeTensor& x = tensor_arg(info, 0, "clipByNorm", "x");
  NativeTensor& total = tensor_arg(info, 1, "clipByNorm", "totalSq");
  expect_dtype(x, DType::f32, "clipByNorm", "x");
  expect_dtype(total, DType::f32, "clipByNorm", "totalSq");
  expect_same_device(x, total, "clipByNorm", "totalSq");
  expect_numel(total, 1, "clipByNorm", "totalSq");
  const double max_norm = number_arg(info, 2, "clipByNorm", "maxNorm");
  RT_EXPECT(max_norm >= 0 && std::isfinite(max_norm), "clipByNorm: maxNorm must be finite and >= 0, got " + std::to_string(max_norm));
  ClipByNormParams p{static_cast<float*>(x.data("clipByNorm", "x")), static_cast<const float*>(total.data("clipByNorm", "totalSq")),
                     x.numel(), static_cast<float>(max_norm)};
  if (p.n > 0) run_op(x.device(), &OpTable::clip_by_norm, "clip_by_norm", p);
  return info.Env().Undefined();
}

}  // namespace rt::napi
