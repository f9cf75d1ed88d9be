// The attention_backward op (AttentionBackwardParams in csrc/ops.h; what the attention files
// share is in attention.cuh): dq, dk, dv from q, k, v, out, dout and the forward's lse, P
// recomputed from lse. bf16 takes the WMMA kernels (attention_backward_wmma.cu) when D is a
// multiple of 16 up to 128 and every tensor is 16-byte aligned; everything else runs the SIMT
// kernels here:
//   - attention_bwd_dq_kernel<T, kMaxD> (f32, and bf16 where WMMA does not apply; likewise the
//     dK/dV kernel below): the forward's structure; per row recomputes p = exp(s - lse),
//     dp = dO . V_j, ds = p (dp - delta) scale, dq += ds K_j, where delta = dO . O is computed
//     when the row is staged.
//   - attention_bwd_dkdv_kernel<T, kMaxD>: one warp per tile of 32 keys (16 for D > 64, 8 for
//     D > 128, so four tiles fit 48 KB of shared memory); it walks the query rows that can see
//     the tile, lane j accumulating dK_j and dV_j in padded shared memory (no atomics, no races).
//
// Cost (non-causal; causal about half): 10 B H Lq Lk D FLOP (S recomputed, dV, dP, dQ, dK).
// Bytes: reads q, k, v, out, dout, lse and writes dq, dk, dv: 8 B H L D elements (bf16 2 B,
// f32 4 B), plus re-reads, mostly from L2.
// H100 prediction, B=4 H=8 D=64, f32:
//   L=256:  1.3 GFLOP: the dK/dV kernel is latency bound (one warp per key tile walks the 256
//           rows one after another, ~2K cycles a row): ~0.2-0.4 ms.
//   L=4096: 344 GFLOP: ~25-35 ms (4096 rows per dK/dV block, ~5 waves of blocks).
#include "attention.cuh"
#include "warp.cuh"

namespace RT_BACKEND_NS {

namespace {

using namespace attention_kernels;

// ---------------------------------------------------------------------------------------------
// f32 SIMT backward: dQ

template <int kMaxD>
struct BwdDq {
  static constexpr int kWarps = kMaxD <= 64 ? 4 : 2;
  static constexpr int kRowsPerWarp = 4;
  static constexpr int kRows = kWarps * kRowsPerWarp;
  static constexpr int kKeys = kMaxD <= 128 ? 32 : 8;
  static constexpr int kPitch = kMaxD + 1;
  static constexpr int kPerLane = kMaxD / 32;
  static constexpr size_t kSmem = sizeof(float) * (2 * kRows * kMaxD + 2 * kKeys * kPitch);
};

template <class T, int kMaxD>
__global__ void __launch_bounds__(BwdDq<kMaxD>::kWarps * 32, 1)
    attention_bwd_dq_kernel(dptr<const T> q, dptr<const T> k, dptr<const T> v, dptr<const T> out, dptr<const T> dout,
                            dptr<const float> lse, dptr<const int32_t> kv_lengths, dptr<T> dq, Problem pr) {
  using C = BwdDq<kMaxD>;
  RT_DYNAMIC_SHARED(float, smem);
  float* q_s = smem;
  float* do_s = q_s + C::kRows * kMaxD;
  float* k_s = do_s + C::kRows * kMaxD;
  float* v_s = k_s + C::kKeys * C::kPitch;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t bh = blockIdx.x;
  const int64_t row0 = int64_t(blockIdx.y) * C::kRows;
  const KeyLimit limit = key_limit(pr, kv_lengths, bh);

  for (int idx = threadIdx.x; idx < C::kRows * kMaxD; idx += blockDim.x) {
    const int r = idx / kMaxD, d = idx % kMaxD;
    const int64_t row = row0 + r;
    const bool inside = row < pr.lq && d < pr.dim;
    q_s[idx] = inside ? to_f32(q[(bh * pr.lq + row) * pr.dim + d]) : 0.f;
    do_s[idx] = inside ? to_f32(dout[(bh * pr.lq + row) * pr.dim + d]) : 0.f;
  }
  __syncthreads();

  float acc[C::kRowsPerWarp][C::kPerLane];
  float row_lse[C::kRowsPerWarp], row_delta[C::kRowsPerWarp];
  int64_t row_limit[C::kRowsPerWarp];
#pragma unroll
  for (int rr = 0; rr < C::kRowsPerWarp; ++rr) {
    const int r = warp * C::kRowsPerWarp + rr;
    const int64_t row = row0 + r;
    const bool inside = row < pr.lq;
    row_limit[rr] = inside ? limit(row) : 0;
    row_lse[rr] = inside ? lse[bh * pr.lq + row] : 0.f;
    float partial = 0.f;
    for (int d = lane; d < pr.dim && inside; d += 32) partial += do_s[r * kMaxD + d] * to_f32(out[(bh * pr.lq + row) * pr.dim + d]);
    row_delta[rr] = warp_sum(partial);
#pragma unroll
    for (int t = 0; t < C::kPerLane; ++t) acc[rr][t] = 0.f;
  }
  const int64_t block_keys = limit(min(row0 + C::kRows, pr.lq) - 1);

  for (int64_t k0 = 0; k0 < block_keys; k0 += C::kKeys) {
    __syncthreads();
    stage_keys<C::kKeys, kMaxD, C::kPitch>(k, bh, k0, pr, k_s);
    stage_keys<C::kKeys, kMaxD, C::kPitch>(v, bh, k0, pr, v_s);
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < C::kRowsPerWarp; ++rr) {
      const int64_t valid = row_limit[rr] - k0;
      if (valid <= 0) continue;  // warp-uniform
      const int r = warp * C::kRowsPerWarp + rr;
      float dscore = 0.f;
      if (lane < C::kKeys && lane < valid) {
        const float prob = expf(dot_row(q_s + r * kMaxD, k_s + lane * C::kPitch, pr.dim) * pr.scale - row_lse[rr]);
        const float dprob = dot_row(do_s + r * kMaxD, v_s + lane * C::kPitch, pr.dim);
        dscore = prob * (dprob - row_delta[rr]) * pr.scale;
      }
      const int keys_here = static_cast<int>(min(valid, int64_t(C::kKeys)));
      for (int j = 0; j < keys_here; ++j) {
        const float ds = __shfl_sync(kFullMask, dscore, j);
#pragma unroll
        for (int t = 0; t < C::kPerLane; ++t) acc[rr][t] += ds * k_s[j * C::kPitch + lane + 32 * t];
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < C::kRowsPerWarp; ++rr) {
    const int64_t row = row0 + warp * C::kRowsPerWarp + rr;
    if (row >= pr.lq) continue;
#pragma unroll
    for (int t = 0; t < C::kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < pr.dim) store_f32(dq, (bh * pr.lq + row) * pr.dim + d, acc[rr][t]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// f32 SIMT backward: dK, dV

template <int kMaxD>
struct BwdDkdv {
  static constexpr int kKeys = kMaxD <= 64 ? 32 : kMaxD <= 128 ? 16 : 8;
  static constexpr int kPitch = kMaxD + 1;
  static constexpr int kPerLane = kMaxD / 32;
  static constexpr size_t kSmem = sizeof(float) * (4 * kKeys * kPitch + 2 * kMaxD);
};

template <class T, int kMaxD>
__global__ void __launch_bounds__(32)
    attention_bwd_dkdv_kernel(dptr<const T> q, dptr<const T> k, dptr<const T> v, dptr<const T> out, dptr<const T> dout,
                              dptr<const float> lse, dptr<const int32_t> kv_lengths, dptr<T> dk, dptr<T> dv, Problem pr) {
  using C = BwdDkdv<kMaxD>;
  RT_DYNAMIC_SHARED(float, smem);
  float* k_s = smem;
  float* v_s = k_s + C::kKeys * C::kPitch;
  float* dk_s = v_s + C::kKeys * C::kPitch;
  float* dv_s = dk_s + C::kKeys * C::kPitch;
  float* q_row = dv_s + C::kKeys * C::kPitch;
  float* do_row = q_row + kMaxD;
  const int lane = threadIdx.x;
  const int64_t bh = blockIdx.x;
  const int64_t k0 = int64_t(blockIdx.y) * C::kKeys;
  const KeyLimit limit = key_limit(pr, kv_lengths, bh);

  stage_keys<C::kKeys, kMaxD, C::kPitch>(k, bh, k0, pr, k_s);
  stage_keys<C::kKeys, kMaxD, C::kPitch>(v, bh, k0, pr, v_s);
  for (int idx = lane; idx < C::kKeys * C::kPitch; idx += 32) {
    dk_s[idx] = 0.f;
    dv_s[idx] = 0.f;
  }
  __syncwarp();

  // Rows before the causal diagonal reaches k0 see none of these keys; nor does any row when
  // the kv length ends before k0.
  const int64_t first_row = k0 >= limit.keys ? pr.lq : (pr.causal ? max(int64_t(0), k0 - limit.diag_offset) : 0);
  for (int64_t i = first_row; i < pr.lq; ++i) {
    const int64_t valid = limit(i) - k0;
    if (valid <= 0) continue;  // warp-uniform
    float partial = 0.f;
#pragma unroll
    for (int t = 0; t < C::kPerLane; ++t) {
      const int d = lane + 32 * t;
      const bool inside = d < pr.dim;
      const float g = inside ? to_f32(dout[(bh * pr.lq + i) * pr.dim + d]) : 0.f;
      q_row[d] = inside ? to_f32(q[(bh * pr.lq + i) * pr.dim + d]) : 0.f;
      do_row[d] = g;
      if (inside) partial += g * to_f32(out[(bh * pr.lq + i) * pr.dim + d]);
    }
    const float delta = warp_sum(partial);  // also orders the row writes before the reads below
    __syncwarp();
    if (lane < C::kKeys && lane < valid) {
      const float prob = expf(dot_row(q_row, k_s + lane * C::kPitch, pr.dim) * pr.scale - lse[bh * pr.lq + i]);
      const float dprob = dot_row(do_row, v_s + lane * C::kPitch, pr.dim);
      const float dscore = prob * (dprob - delta) * pr.scale;
      float* dk_j = dk_s + lane * C::kPitch;
      float* dv_j = dv_s + lane * C::kPitch;
#pragma unroll 4
      for (int d = 0; d < pr.dim; ++d) {
        dv_j[d] += prob * do_row[d];
        dk_j[d] += dscore * q_row[d];
      }
    }
    __syncwarp();  // q_row / do_row are rewritten by the next row
  }

  for (int idx = lane; idx < C::kKeys * pr.dim; idx += 32) {
    const int j = idx / pr.dim, d = idx % pr.dim;
    const int64_t key = k0 + j;
    if (key >= pr.lk) break;
    store_f32(dk, (bh * pr.lk + key) * pr.dim + d, dk_s[j * C::kPitch + d]);
    store_f32(dv, (bh * pr.lk + key) * pr.dim + d, dv_s[j * C::kPitch + d]);
  }
}

// ---------------------------------------------------------------------------------------------
// Launchers

template <class T, int kMaxD>
void launch_backward(const rt::AttentionBackwardParams& p, const Problem& pr) {
  const auto q = static_cast<const T*>(p.q), k = static_cast<const T*>(p.k), v = static_cast<const T*>(p.v);
  const auto out = static_cast<const T*>(p.out), dout = static_cast<const T*>(p.dout);
  if (p.lq > 0) {
    using C = BwdDq<kMaxD>;
    const auto attention_bwd_dq = attention_bwd_dq_kernel<T, kMaxD>;
    RT_LAUNCH(attention_bwd_dq, grid_of(p.batch * p.heads, rt::ceil_div(p.lq, C::kRows), "attention_backward"),
              C::kWarps * 32, C::kSmem, q, k, v, out, dout, p.lse, p.kv_lengths, static_cast<T*>(p.dq), pr);
  }
  if (p.lk > 0) {
    using C = BwdDkdv<kMaxD>;
    const auto attention_bwd_dkdv = attention_bwd_dkdv_kernel<T, kMaxD>;
    RT_LAUNCH(attention_bwd_dkdv, grid_of(p.batch * p.heads, rt::ceil_div(p.lk, C::kKeys), "attention_backward"),
              32, C::kSmem, q, k, v, out, dout, p.lse, p.kv_lengths, static_cast<T*>(p.dk), static_cast<T*>(p.dv), pr);
  }
}

template <class T>
void backward_for(const rt::AttentionBackwardParams& p, const Problem& pr) {
  if (p.dim <= 32) launch_backward<T, 32>(p, pr);
  else if (p.dim <= 64) launch_backward<T, 64>(p, pr);
  else if (p.dim <= 128) launch_backward<T, 128>(p, pr);
  else launch_backward<T, 256>(p, pr);
}

void attention_backward(const rt::AttentionBackwardParams& p) {
  if (p.batch * p.heads == 0) return;
  const Problem pr = problem_of(p.heads, p.lq, p.lk, p.dim, p.scale, p.causal, p.kv_lengths);
  if (backward_wmma(p, pr)) return;
  if (p.dtype == rt::DType::bf16) backward_for<__nv_bfloat16>(p, pr);
  else backward_for<float>(p, pr);
}

}  // namespace

RT_REGISTER_OP(RT_BACKEND_ID, attention_backward, attention_backward);

}  // namespace RT_BACKEND_NS
