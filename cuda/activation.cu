// GELU (tanh approximation) and SiLU on f32, forward and backward. Grid-stride elementwise
// loops; ~20 FLOP and one exp per element against 8 (forward) or 12 (backward) bytes, so they
// run at copy bandwidth: 64M elements forward (512 MB) ~0.17 ms on an H100 at ~3.0 TB/s.
//   gelu(x) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3);  silu(x) = x sigmoid(x)
#include <cstdint>

#include "launch.h"

namespace RT_BACKEND_NS {

constexpr int kThreads = 256;
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

__device__ __forceinline__ float gelu_u(float x) { return kGeluScale * (x + kGeluCubic * x * x * x); }

__device__ __forceinline__ float activate(float x, rt::Activation kind) {
  if (kind == rt::Activation::gelu_tanh) return x / (1.f + expf(-2.f * gelu_u(x)));
  return x / (1.f + expf(-x));
}

// gelu' = sigmoid(2u) + x/2 sech^2(u) u', with e = exp(-2|u|) <= 1 so nothing overflows:
// sigmoid(2u) = 1/(1+e) for u >= 0, e/(1+e) below; sech^2(u) = 4e/(1+e)^2.
// silu' = s (1 + x (1 - s)), s = sigmoid(x).
__device__ __forceinline__ float derivative(float x, rt::Activation kind) {
  if (kind == rt::Activation::gelu_tanh) {
    const float u = gelu_u(x);
    const float e = expf(-2.f * fabsf(u));
    const float inv = 1.f / (1.f + e);
    const float sigmoid = u >= 0.f ? inv : e * inv;
    const float sech2 = 4.f * e * inv * inv;
    return sigmoid + 0.5f * x * sech2 * kGeluScale * (1.f + 3.f * kGeluCubic * x * x);
  }
  const float s = 1.f / (1.f + expf(-x));
  return s * (1.f + x * (1.f - s));
}

__global__ void __launch_bounds__(kThreads)
    activation_kernel(dptr<const float> x, dptr<float> out, int64_t n, rt::Activation kind) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = activate(x[i], kind);
}

__global__ void __launch_bounds__(kThreads) activation_backward_kernel(dptr<const float> x, dptr<const float> dy,
                                                                       dptr<float> dx, int64_t n, rt::Activation kind) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = dy[i] * derivative(x[i], kind);
}

inline int grid_for(int64_t n) { return static_cast<int>(std::min<int64_t>(rt::ceil_div(n, kThreads), 8192)); }

static void activation(const rt::ActivationParams& p) {
  if (p.n == 0) return;
  RT_LAUNCH(activation_kernel, grid_for(p.n), kThreads, 0, p.x, p.out, p.n, p.kind);
}

static void activation_backward(const rt::ActivationBackwardParams& p) {
  if (p.n == 0) return;
  RT_LAUNCH(activation_backward_kernel, grid_for(p.n), kThreads, 0, p.x, p.dy, p.dx, p.n, p.kind);
}

RT_REGISTER_OP(RT_BACKEND_ID, activation, activation);
RT_REGISTER_OP(RT_BACKEND_ID, activation_backward, activation_backward);

}  // namespace RT_BACKEND_NS
