// The attention op's forward (AttentionParams in csrc/ops.h; what the attention files share is
// in attention.cuh): out = softmax(scale q k^T + mask) v and the row log-sum-exp lse, which the
// backward reads.
//
// Kernels:
//   - attention_fwd_wmma_kernel<D> (bf16, D a multiple of 16 up to 128): tensor cores through
//     WMMA 16x16x16, bf16 in, f32 accumulate. 4 warps x 16 query rows; K/V tiles of 32 keys in
//     padded shared memory. Per tile each warp computes S = Q K^T (Q fragments stay in
//     registers), then an online softmax in which lane pairs own one row (two half rows, one
//     shuffle per reduction), writes P as bf16, and computes P V fragment by fragment; the PV
//     fragment goes through a per-warp shared scratch so each lane can rescale its own slice
//     of the output accumulator (kept in registers: 16 x D per warp, D/2 floats per lane).
//   - attention_fwd_simt_kernel<T, kMaxD> (f32, and bf16 where WMMA does not apply; bf16 is
//     widened on load): a warp owns 4 query rows; lane j scores key j of a 32-key tile (16 for
//     D > 128) against the row staged in shared memory, warp shuffles give the tile's max and
//     sum, and lane l accumulates output dims l, l + 32, ... with P broadcast by shuffles.
// bf16 takes the WMMA kernel when D is a multiple of 16 up to 128 and every tensor is 16-byte
// aligned, else the SIMT one.
//
// Cost (non-causal; causal about half): 4 B H Lq Lk D FLOP. Bytes: reads q, k, v and writes out
// (+ lse): 4 B H L D elements (bf16 2 B, f32 4 B).
// H100 prediction, B=4 H=8 D=64:
//   L=256:  forward 0.54 GFLOP, 4.2 MB bf16. Ideal ~1.4 us (memory); 128 blocks, one wave, so
//           latency and launch bound: ~6-10 us bf16 WMMA, ~20-40 us f32 SIMT (~25% of the 60
//           TFLOP/s non-tensor peak: dot products read shared memory at one FMA per load).
//   L=4096: forward 137 GFLOP: 0.17 ms at the 790 TFLOP/s bf16 peak; plain WMMA through shared
//           memory without ldmatrix/cp.async pipelining and with the P and PV round trips reaches
//           ~20-30%: ~0.6-0.9 ms. f32 SIMT: 2.3 ms ideal, ~8-10 ms expected.
#include "attention.cuh"
#include "warp.cuh"

namespace RT_BACKEND_NS {

namespace {

using namespace attention_kernels;

// ---------------------------------------------------------------------------------------------
// f32 SIMT forward

template <int kMaxD>
struct FwdSimt {
  static constexpr int kWarps = kMaxD <= 64 ? 4 : 2;
  static constexpr int kRowsPerWarp = 4;
  static constexpr int kRows = kWarps * kRowsPerWarp;
  static constexpr int kKeys = kMaxD <= 128 ? 32 : 16;
  static constexpr int kPitch = kMaxD + 1;  // lane j reads row j: conflict-free
  static constexpr int kPerLane = kMaxD / 32;
  static constexpr size_t kSmem = sizeof(float) * (kRows * kMaxD + 2 * kKeys * kPitch);
};

template <class T, int kMaxD>
__global__ void __launch_bounds__(FwdSimt<kMaxD>::kWarps * 32)
    attention_fwd_simt_kernel(dptr<const T> q, dptr<const T> k, dptr<const T> v, dptr<T> out, dptr<float> lse,
                              dptr<const int32_t> kv_lengths, Problem pr) {
  using C = FwdSimt<kMaxD>;
  RT_DYNAMIC_SHARED(float, smem);
  float* q_s = smem;
  float* k_s = q_s + C::kRows * kMaxD;
  float* v_s = k_s + C::kKeys * C::kPitch;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t bh = blockIdx.x;
  const int64_t row0 = int64_t(blockIdx.y) * C::kRows;
  const KeyLimit limit = key_limit(pr, kv_lengths, bh);

  for (int idx = threadIdx.x; idx < C::kRows * kMaxD; idx += blockDim.x) {
    const int r = idx / kMaxD, d = idx % kMaxD;
    const int64_t row = row0 + r;
    q_s[idx] = (row < pr.lq && d < pr.dim) ? to_f32(q[(bh * pr.lq + row) * pr.dim + d]) : 0.f;
  }

  float acc[C::kRowsPerWarp][C::kPerLane];
  float row_max[C::kRowsPerWarp], row_sum[C::kRowsPerWarp];
  int64_t row_limit[C::kRowsPerWarp];
#pragma unroll
  for (int rr = 0; rr < C::kRowsPerWarp; ++rr) {
    const int64_t row = row0 + warp * C::kRowsPerWarp + rr;
    row_limit[rr] = row < pr.lq ? limit(row) : 0;
    row_max[rr] = -INFINITY;
    row_sum[rr] = 0.f;
#pragma unroll
    for (int t = 0; t < C::kPerLane; ++t) acc[rr][t] = 0.f;
  }
  const int64_t block_keys = limit(min(row0 + C::kRows, pr.lq) - 1);

  for (int64_t k0 = 0; k0 < block_keys; k0 += C::kKeys) {
    __syncthreads();  // Q staged; the previous tile is consumed
    stage_keys<C::kKeys, kMaxD, C::kPitch>(k, bh, k0, pr, k_s);
    stage_keys<C::kKeys, kMaxD, C::kPitch>(v, bh, k0, pr, v_s);
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < C::kRowsPerWarp; ++rr) {
      const int64_t valid = row_limit[rr] - k0;
      if (valid <= 0) continue;  // warp-uniform
      const int r = warp * C::kRowsPerWarp + rr;
      float s = -INFINITY;
      if (lane < C::kKeys && lane < valid) s = dot_row(q_s + r * kMaxD, k_s + lane * C::kPitch, pr.dim) * pr.scale;
      const float new_max = fmaxf(row_max[rr], warp_max(s));
      const float correction = expf(row_max[rr] - new_max);
      const float prob = expf(s - new_max);
      row_sum[rr] = row_sum[rr] * correction + warp_sum(prob);
      row_max[rr] = new_max;
#pragma unroll
      for (int t = 0; t < C::kPerLane; ++t) acc[rr][t] *= correction;
      const int keys_here = static_cast<int>(min(valid, int64_t(C::kKeys)));
      for (int j = 0; j < keys_here; ++j) {
        const float pj = __shfl_sync(kFullMask, prob, j);
#pragma unroll
        for (int t = 0; t < C::kPerLane; ++t) acc[rr][t] += pj * v_s[j * C::kPitch + lane + 32 * t];
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < C::kRowsPerWarp; ++rr) {
    const int64_t row = row0 + warp * C::kRowsPerWarp + rr;
    if (row >= pr.lq) continue;
    const float inv = row_sum[rr] > 0.f ? 1.f / row_sum[rr] : 0.f;
#pragma unroll
    for (int t = 0; t < C::kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < pr.dim) store_f32(out, (bh * pr.lq + row) * pr.dim + d, acc[rr][t] * inv);
    }
    if (lane == 0) lse[bh * pr.lq + row] = row_sum[rr] > 0.f ? row_max[rr] + logf(row_sum[rr]) : -INFINITY;
  }
}

// ---------------------------------------------------------------------------------------------
// bf16 WMMA forward

template <int kD>
struct FwdWmma {
  static constexpr int kWarps = 4;
  static constexpr int kRows = 16 * kWarps;
  static constexpr int kKeys = 32;
  static constexpr int kFrags = kD / 16;
  static constexpr int kPitch = Bf16Rows<kD>::kPitch;
  static constexpr int kSPitch = kKeys + 4;      // f32 scores / PV scratch
  static constexpr int kPPitch = kKeys + 8;      // bf16 probabilities
  // Q is staged through the K/V region before the first tile (kRows == 2 * kKeys rows).
  static constexpr size_t kKvBytes = 2 * kKeys * kPitch * sizeof(__nv_bfloat16);
  static constexpr size_t kSBytes = kWarps * 16 * kSPitch * sizeof(float);
  static constexpr size_t kPBytes = kWarps * 16 * kPPitch * sizeof(__nv_bfloat16);
  static constexpr size_t kSmem = kKvBytes + kSBytes + kPBytes;
  static_assert(kRows * kPitch * sizeof(__nv_bfloat16) <= kKvBytes, "Q staging fits the K/V region");
};

template <int kD>
__global__ void __launch_bounds__(128)
    attention_fwd_wmma_kernel(dptr<const __nv_bfloat16> q, dptr<const __nv_bfloat16> k, dptr<const __nv_bfloat16> v,
                              dptr<__nv_bfloat16> out, dptr<float> lse, dptr<const int32_t> kv_lengths, Problem pr) {
  using namespace nvcuda;
  using C = FwdWmma<kD>;
  RT_DYNAMIC_SHARED(unsigned char, smem);
  __nv_bfloat16* k_s = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* v_s = k_s + C::kKeys * C::kPitch;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* s_w = reinterpret_cast<float*>(smem + C::kKvBytes) + warp * 16 * C::kSPitch;
  __nv_bfloat16* p_w = reinterpret_cast<__nv_bfloat16*>(smem + C::kKvBytes + C::kSBytes) + warp * 16 * C::kPPitch;
  const int64_t bh = blockIdx.x;
  const int64_t row0 = int64_t(blockIdx.y) * C::kRows;
  const KeyLimit limit = key_limit(pr, kv_lengths, bh);

  stage_bf16_rows<kD>(q + bh * pr.lq * kD, row0, C::kRows, pr.lq, k_s);
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> q_frag[C::kFrags];
#pragma unroll
  for (int f = 0; f < C::kFrags; ++f) wmma::load_matrix_sync(q_frag[f], k_s + warp * 16 * C::kPitch + f * 16, C::kPitch);

  // Lanes 2r and 2r+1 own row r of the warp's 16: columns [16 half, 16 half + 16) of a score
  // tile and [8 half, 8 half + 8) of each 16-wide output fragment.
  const int my_row = lane >> 1, half = lane & 1;
  const int64_t row = row0 + warp * 16 + my_row;
  const int64_t row_limit = row < pr.lq ? limit(row) : 0;
  float o[C::kFrags][8];
#pragma unroll
  for (int f = 0; f < C::kFrags; ++f)
#pragma unroll
    for (int e = 0; e < 8; ++e) o[f][e] = 0.f;
  float row_max = -INFINITY, row_sum = 0.f;
  const int64_t block_keys = limit(min(row0 + C::kRows, pr.lq) - 1);

  for (int64_t k0 = 0; k0 < block_keys; k0 += C::kKeys) {
    __syncthreads();  // Q fragments loaded; the previous tile is consumed
    stage_bf16_rows<kD>(k + bh * pr.lk * kD, k0, C::kKeys, pr.lk, k_s);
    stage_bf16_rows<kD>(v + bh * pr.lk * kD, k0, C::kKeys, pr.lk, v_s);
    __syncthreads();

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
#pragma unroll
    for (int n = 0; n < C::kKeys / 16; ++n) {
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int f = 0; f < C::kFrags; ++f) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> k_frag;
        wmma::load_matrix_sync(k_frag, k_s + n * 16 * C::kPitch + f * 16, C::kPitch);
        wmma::mma_sync(acc, q_frag[f], k_frag, acc);
      }
      wmma::store_matrix_sync(s_w + n * 16, acc, C::kSPitch, wmma::mem_row_major);
    }
    __syncwarp();

    const int64_t valid = row_limit - k0;
    float scores[16];
    float tile_max = -INFINITY;
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      const int col = half * 16 + c;
      scores[c] = col < valid ? s_w[my_row * C::kSPitch + col] * pr.scale : -INFINITY;
      tile_max = fmaxf(tile_max, scores[c]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 1));
    const float new_max = fmaxf(row_max, tile_max);
    const bool seen = new_max != -INFINITY;
    const float correction = seen ? expf(row_max - new_max) : 1.f;
    float sum = 0.f;
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      // The f32 sum keeps lse exact for the backward; P V uses P rounded to bf16.
      const float prob = seen ? expf(scores[c] - new_max) : 0.f;
      p_w[my_row * C::kPPitch + half * 16 + c] = __float2bfloat16(prob);
      sum += prob;
    }
    sum += __shfl_xor_sync(kFullMask, sum, 1);
    row_sum = row_sum * correction + sum;
    row_max = new_max;
    __syncwarp();

#pragma unroll
    for (int f = 0; f < C::kFrags; ++f) {
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < C::kKeys / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> p_frag;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> v_frag;
        wmma::load_matrix_sync(p_frag, p_w + kk * 16, C::kPPitch);
        wmma::load_matrix_sync(v_frag, v_s + kk * 16 * C::kPitch + f * 16, C::kPitch);
        wmma::mma_sync(acc, p_frag, v_frag, acc);
      }
      wmma::store_matrix_sync(s_w, acc, C::kSPitch, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int e = 0; e < 8; ++e) o[f][e] = o[f][e] * correction + s_w[my_row * C::kSPitch + half * 8 + e];
      __syncwarp();
    }
  }

  if (row < pr.lq) {
    const float inv = row_sum > 0.f ? 1.f / row_sum : 0.f;
#pragma unroll
    for (int f = 0; f < C::kFrags; ++f)
#pragma unroll
      for (int e = 0; e < 8; ++e) out[(bh * pr.lq + row) * kD + f * 16 + half * 8 + e] = __float2bfloat16(o[f][e] * inv);
    if (half == 0) lse[bh * pr.lq + row] = row_sum > 0.f ? row_max + logf(row_sum) : -INFINITY;
  }
}

// ---------------------------------------------------------------------------------------------
// Launchers

template <class T, int kMaxD>
void launch_forward_simt(const rt::AttentionParams& p, const Problem& pr) {
  using C = FwdSimt<kMaxD>;
  const auto attention_fwd_simt = attention_fwd_simt_kernel<T, kMaxD>;
  RT_LAUNCH(attention_fwd_simt, grid_of(p.batch * p.heads, rt::ceil_div(p.lq, C::kRows), "attention"),
            C::kWarps * 32, C::kSmem, static_cast<const T*>(p.q), static_cast<const T*>(p.k), static_cast<const T*>(p.v),
            static_cast<T*>(p.out), p.lse, p.kv_lengths, pr);
}

template <class T>
void forward_simt(const rt::AttentionParams& p, const Problem& pr) {
  if (p.dim <= 32) launch_forward_simt<T, 32>(p, pr);
  else if (p.dim <= 64) launch_forward_simt<T, 64>(p, pr);
  else if (p.dim <= 128) launch_forward_simt<T, 128>(p, pr);
  else launch_forward_simt<T, 256>(p, pr);
}

template <int kD>
void launch_forward_wmma(const rt::AttentionParams& p, const Problem& pr) {
  using C = FwdWmma<kD>;
  const auto attention_fwd_wmma = attention_fwd_wmma_kernel<kD>;
  RT_LAUNCH(attention_fwd_wmma, grid_of(p.batch * p.heads, rt::ceil_div(p.lq, C::kRows), "attention"),
            C::kWarps * 32, C::kSmem, static_cast<const __nv_bfloat16*>(p.q), static_cast<const __nv_bfloat16*>(p.k),
            static_cast<const __nv_bfloat16*>(p.v), static_cast<__nv_bfloat16*>(p.out), p.lse, p.kv_lengths, pr);
}

bool forward_wmma(const rt::AttentionParams& p, const Problem& pr) {
  return with_wmma_dim(p.dtype, p.dim, {p.q, p.k, p.v, p.out}, [&](auto d) { launch_forward_wmma<decltype(d)::value>(p, pr); });
}

void attention(const rt::AttentionParams& p) {
  if (p.batch * p.heads == 0 || p.lq == 0) return;
  const Problem pr = problem_of(p.heads, p.lq, p.lk, p.dim, p.scale, p.causal, p.kv_lengths);
  if (forward_wmma(p, pr)) return;
  if (p.dtype == rt::DType::bf16) forward_simt<__nv_bfloat16>(p, pr);
  else forward_simt<float>(p, pr);
}
}  // namespace

RT_REGISTER_OP(RT_BACKEND_ID, attention, attention);

}  // namespace RT_BACKEND_NS
