// Bindings of the embedding gather and its scatter-add backward. Every id is checked against
// the vocabulary here, on the host, so no kernel can read or write outside the table.
#include <algorithm>
#include <vector>

#include "args.h"

namespace rt::napi {

// Throws a RangeError naming the first id outside [0, vocab) and its (flat) position.
static void expect_ids_in_range(const NativeTensor& ids, int64_t vocab, const char* op) {
  if (ids.numel() == 0) return;
  const int32_t* values = static_cast<const int32_t*>(ids.data(op, "ids"));
  std::vector<int32_t> host;
  if (ids.device() != BackendId::cpu) {
    host.resize(size_t(ids.numel()));
    backend(ids.device()).to_host(host.data(), values, ids.bytes());
    values = host.data();
  }
  for (int64_t i = 0; i < ids.numel(); ++i) {
    if (values[i] < 0 || values[i] >= vocab)
      fail(std::string(op) + ": ids[" + std::to_string(i) + "] (flat index) is " + std::to_string(values[i]) +
               ", expected 0 <= id < " + std::to_string(vocab) + " (vocab)",
           Error::range);
  }
}

// embedding(table [V, D], ids) -> out [...ids.shape, D]
RT_BINDING(embedding) {
  const char* op = "embedding";
  NativeTensor& table = tensor_arg(info, 0, op, "table");
  NativeTensor& ids = tensor_arg(info, 1, op, "ids");
  expect_dtype(table, DType::f32, op, "table");
  expect_dtype(ids, DType::i32, op, "ids");
  expect_same_device(table, ids, op, "ids");
  RT_EXPECT(table.shape().size() == 2, std::string(op) + ": table must have 2 dims [vocab, dim], got " + table.describe());
  const int64_t vocab = table.shape()[0], dim = table.shape()[1];
  expect_ids_in_range(ids, vocab, op);
  std::vector<int64_t> out_shape = ids.shape();
  out_shape.push_back(dim);
  NativeTensor* out;
  Napi::Object result = NativeTensor::create(info.Env(), table.device(), DType::f32, out_shape, &out);
  if (out->numel() == 0) return result;
  EmbeddingParams p{static_cast<const float*>(table.data(op, "table")), static_cast<const int32_t*>(ids.data(op, "ids")),
                    static_cast<float*>(out->data(op, "out")), ids.numel(), vocab, dim};
  run_op(table.device(), &OpTable::embedding, op, p);
  return result;
}

// embeddingBackward(ids, dy [...ids.shape, D], vocab) -> dtable [vocab, D], zero-filled then scatter-added
RT_BINDING(embeddingBackward) {
  const char* op = "embeddingBackward";
  NativeTensor& ids = tensor_arg(info, 0, op, "ids");
  NativeTensor& dy = tensor_arg(info, 1, op, "dy");
  const int64_t vocab = int_arg(info, 2, op, "vocab");
  expect_dtype(ids, DType::i32, op, "ids");
  expect_dtype(dy, DType::f32, op, "dy");
  expect_same_device(ids, dy, op, "dy");
  RT_EXPECT(vocab >= 0, std::string(op) + ": vocab must be >= 0, got " + std::to_string(vocab));
  const auto& ids_shape = ids.shape();
  const auto& dy_shape = dy.shape();
  const bool shape_ok = dy_shape.size() == ids_shape.size() + 1 &&
                        std::equal(ids_shape.begin(), ids_shape.end(), dy_shape.begin());
  std::string expected = shape_string(ids_shape);
  expected.insert(expected.size() - 1, ids_shape.empty() ? "dim" : ", dim");
  RT_EXPECT(shape_ok, std::string(op) + ": dy must have shape " + expected + " (the ids' shape, then dim), got " +
                       dy.describe());
  const int64_t dim = dy_shape.back();
  expect_ids_in_range(ids, vocab, op);
  NativeTensor* dtable;
  Napi::Object result = NativeTensor::create(info.Env(), ids.device(), DType::f32, {vocab, dim}, &dtable);
  if (dtable->numel() == 0) return result;
  run_op(ids.device(), &OpTable::fill, "fill", FillParams{dtable->data(op, "dtable"), dtable->numel(), DType::f32, 0.f});
  if (dy.numel() == 0) return result;
  EmbeddingBackwardParams p{static_cast<const int32_t*>(ids.data(op, "ids")), static_cast<const float*>(dy.data(op, "dy")),
                            static_cast<float*>(dtable->data(op, "dtable")), ids.numel(), vocab, dim};
  run_op(ids.device(), &OpTable::embedding_backward, "embedding_backward", p);
  return result;
}

}  // namespace rt::napi
