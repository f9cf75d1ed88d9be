// Bindings of the channel-statistics loss and its backward.
#include "args.h"

namespace rt::napi {

static float* data_of(const NativeTensor* t) { return t ? static_cast<float*>(t->data("channelStatLoss", "tensor")) : nullptr; }

struct RowShape {
  int64_t batch, channels, n;
};

static RowShape row_shape(const Napi::CallbackInfo& info, size_t index, const NativeTensor& a, const char* op) {
  RowShape s{int_arg(info, index, op, "batch"), int_arg(info, index + 1, op, "channels"), int_arg(info, index + 2, op, "n")};
  RT_EXPECT(s.batch >= 1 && s.channels >= 1 && s.n >= 1 && s.batch * s.channels * s.n == a.numel(),
         std::string(op) + ": [batch, channels, n] = [" + std::to_string(s.batch) + ", " + std::to_string(s.channels) +
             ", " + std::to_string(s.n) + "] must be positive and match a (" + a.describe() + ")");
  return s;
}

static void expect_f32_on(const NativeTensor& first, const NativeTensor& t, int64_t numel, const char* op, const char* name) {
  expect_dtype(t, DType::f32, op, name);
  expect_same_device(first, t, op, name);
  expect_numel(t, numel, op, name);
}

// channelStatLoss(a, b, batch, channels, n, matchStd) -> [loss, meanA, meanB, stdA?, stdB?]
RT_BINDING(channelStatLoss) {
  const char* op = "channelStatLoss";
  NativeTensor& a = tensor_arg(info, 0, op, "a");
  NativeTensor& b = tensor_arg(info, 1, op, "b");
  expect_dtype(a, DType::f32, op, "a");
  expect_f32_on(a, b, a.numel(), op, "b");
  const RowShape s = row_shape(info, 2, a, op);
  const bool match_std = bool_arg(info, 5, op, "matchStd");
  Napi::Env env = info.Env();
  const uint32_t outputs = match_std ? 5 : 3;
  NativeTensor* out[5] = {};
  Napi::Array result = Napi::Array::New(env, outputs);
  for (uint32_t i = 0; i < outputs; ++i) {
    std::vector<int64_t> shape = i == 0 ? std::vector<int64_t>{1} : std::vector<int64_t>{s.batch, s.channels};
    result.Set(i, NativeTensor::create(env, a.device(), DType::f32, shape, &out[i]));
  }
  ChannelStatLossParams p{data_of(&a), data_of(&b), data_of(out[0]), data_of(out[1]), data_of(out[2]),
                          data_of(out[3]), data_of(out[4]), s.batch, s.channels, s.n, match_std};
  run_op(a.device(), &OpTable::channel_stat_loss, op, p);
  return result;
}

// channelStatLossBackward(a, meanA, meanB, stdA|null, stdB|null, batch, channels, n, matchStd, dloss) -> da
RT_BINDING(channelStatLossBackward) {
  const char* op = "channelStatLossBackward";
  NativeTensor& a = tensor_arg(info, 0, op, "a");
  expect_dtype(a, DType::f32, op, "a");
  NativeTensor& mean_a = tensor_arg(info, 1, op, "meanA");
  NativeTensor& mean_b = tensor_arg(info, 2, op, "meanB");
  NativeTensor* std_a = optional_tensor_arg(info, 3, op, "stdA");
  NativeTensor* std_b = optional_tensor_arg(info, 4, op, "stdB");
  const RowShape s = row_shape(info, 5, a, op);
  const bool match_std = bool_arg(info, 8, op, "matchStd");
  const float dloss = static_cast<float>(number_arg(info, 9, op, "dloss"));
  const int64_t rows = s.batch * s.channels;
  expect_f32_on(a, mean_a, rows, op, "meanA");
  expect_f32_on(a, mean_b, rows, op, "meanB");
  if (match_std) {
    RT_EXPECT(std_a != nullptr && std_b != nullptr, std::string(op) + ": matchStd needs stdA and stdB from the forward",
           Error::type);
    expect_f32_on(a, *std_a, rows, op, "stdA");
    expect_f32_on(a, *std_b, rows, op, "stdB");
  }
  NativeTensor* da;
  Napi::Value result = NativeTensor::create(info.Env(), a.device(), DType::f32, a.shape(), &da);
  ChannelStatLossBackwardParams p{data_of(&a), data_of(&mean_a), data_of(&mean_b), match_std ? data_of(std_a) : nullptr,
                                  match_std ? data_of(std_b) : nullptr, data_of(da), s.batch, s.channels, s.n,
                                  match_std, dloss};
  run_op(a.device(), &OpTable::channel_stat_loss_backward, op, p);
  return result;
}

}  // namespace rt::napi
