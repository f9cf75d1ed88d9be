// Bindings of reduce (sum/mean over a run of adjacent axes) and broadcast (its backward).
// Both view their tensors as [outer, reduce, inner]; the sizes are products of the tensors' own
// dimensions, taken only when the tensor they bound is non-empty, so they cannot overflow.
#include "args.h"

namespace rt::napi {

static int64_t dims_product(const std::vector<int64_t>& shape, int64_t begin, int64_t end) {
  int64_t n = 1;
  for (int64_t d = begin; d < end; ++d) n *= shape[size_t(d)];
  return n;
}

static void expect_axis_range(int64_t begin, int64_t end, size_t ndim, const char* op) {
  RT_EXPECT(begin >= 0 && begin <= end && end <= int64_t(ndim),
         std::string(op) + ": axes [" + std::to_string(begin) + ", " + std::to_string(end) +
             ") must be a range within the " + std::to_string(ndim) + " dimensions");
}

// reduce(x, axisBegin, axisEnd, mean) -> x summed (or averaged) over axes [axisBegin, axisEnd),
// which are removed from the shape.
RT_BINDING(reduce) {
  NativeTensor& x = tensor_arg(info, 0, "reduce", "x");
  expect_dtype(x, DType::f32, "reduce", "x");
  const int64_t begin = int_arg(info, 1, "reduce", "axisBegin");
  const int64_t end = int_arg(info, 2, "reduce", "axisEnd");
  const bool mean = bool_arg(info, 3, "reduce", "mean");
  expect_axis_range(begin, end, x.shape().size(), "reduce");
  std::vector<int64_t> out_shape(x.shape().begin(), x.shape().begin() + begin);
  out_shape.insert(out_shape.end(), x.shape().begin() + end, x.shape().end());
  NativeTensor* out;
  Napi::Object result = NativeTensor::create(info.Env(), x.device(), DType::f32, out_shape, &out);
  if (out->numel() == 0) return result;
  const int64_t outer = dims_product(x.shape(), 0, begin);
  const int64_t inner = dims_product(x.shape(), end, int64_t(x.shape().size()));
  ReduceParams p{static_cast<const float*>(x.data("reduce", "x")), static_cast<float*>(out->data("reduce", "out")),
                 outer, x.numel() / (outer * inner), inner, mean};
  run_op(x.device(), &OpTable::reduce, "reduce", p);
  return result;
}

// broadcast(x, shape, axisBegin, axisEnd, alpha) -> alpha * x repeated along axes
// [axisBegin, axisEnd) of `shape`; x holds the elements of `shape` without those axes.
RT_BINDING(broadcast) {
  NativeTensor& x = tensor_arg(info, 0, "broadcast", "x");
  expect_dtype(x, DType::f32, "broadcast", "x");
  const std::vector<int64_t> shape = shape_arg(info, 1, "broadcast", "shape");
  const int64_t begin = int_arg(info, 2, "broadcast", "axisBegin");
  const int64_t end = int_arg(info, 3, "broadcast", "axisEnd");
  const float alpha = static_cast<float>(number_arg(info, 4, "broadcast", "alpha"));
  expect_axis_range(begin, end, shape.size(), "broadcast");
  NativeTensor* out;
  Napi::Object result = NativeTensor::create(info.Env(), x.device(), DType::f32, shape, &out);
  if (out->numel() == 0) return result;
  const int64_t outer = dims_product(shape, 0, begin);
  const int64_t reduce = dims_product(shape, begin, end);
  const int64_t inner = dims_product(shape, end, int64_t(shape.size()));
  expect_numel(x, outer * inner, "broadcast", "x");
  BroadcastParams p{static_cast<const float*>(x.data("broadcast", "x")), static_cast<float*>(out->data("broadcast", "out")),
                    outer, reduce, inner, alpha};
  run_op(x.device(), &OpTable::broadcast, "broadcast", p);
  return result;
}

}  // namespace rt::napi
