// Self-test scenarios of the emulator (declared in selftest.h), run from
// test/emu/emulator.test.ts through realtune_dev.node's emuSelfTest(name, input): correct
// kernels exercising each supported feature (their outputs are checked in TS against known
// results) and deliberately broken kernels the emulator must catch (the binding returns the
// launch's error message as a string). Built into realtune_dev.node only.
#define RT_EMU
#include "selftest.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../launch.h"
#include "../warp.cuh"

namespace rt_emu::selftest {

// A device buffer freed when its last copy goes (RT_LAUNCH's lambda captures by copy), so a
// failing scenario leaks nothing.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    T* p = nullptr;
    rt::rt_check(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), "selftest");
    p_ = std::shared_ptr<T>(p, [](T* q) { cudaFree(q); });
  }
  DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    rt::rt_check(cudaMemcpy(get(), host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "selftest");
  }
  T* get() const { return p_.get(); }
  std::vector<T> host() const {
    std::vector<T> out(n_);
    rt::rt_check(cudaMemcpy(out.data(), get(), n_ * sizeof(T), cudaMemcpyDeviceToHost), "selftest");
    return out;
  }

 private:
  std::shared_ptr<T> p_;
  size_t n_;
};

std::vector<float> as_floats(const Input& in) { return std::vector<float>(in.begin(), in.end()); }
template <class T>
Output as_output(const std::vector<T>& v) {
  Output out;
  for (const T& x : v) out.push_back(static_cast<double>(x));
  return out;
}

// ---- correct kernels ----------------------------------------------------------------------------

// Per-block sum by a shared-memory tree (blockDim.x = 256) and by warp.cuh's block_sum/block_max.
__global__ void tree_sum_kernel(dptr<const float> x, int n, dptr<float> sums, dptr<float> warp_sums,
                                dptr<float> maxes) {
  __shared__ float tile[256];
  __shared__ float scratch[32];
  const int i = blockIdx.x * 256 + threadIdx.x;
  const float v = i < n ? x[i] : 0.f;
  tile[threadIdx.x] = v;
  __syncthreads();
  for (int stride = 128; stride > 0; stride >>= 1) {
    if (int(threadIdx.x) < stride) tile[threadIdx.x] += tile[threadIdx.x + stride];
    __syncthreads();
  }
  const float by_warps = block_sum(v, scratch);
  const float largest = block_max(i < n ? v : -INFINITY, scratch);
  if (threadIdx.x == 0) {
    sums[blockIdx.x] = tile[0];
    warp_sums[blockIdx.x] = by_warps;
    maxes[blockIdx.x] = largest;
  }
}

Output block_reduce(const Input& in) {
  const int n = static_cast<int>(in.size()), blocks = rt::ceil_div(n, 256);
  DeviceBuffer<float> x(as_floats(in)), sums(blocks), warp_sums(blocks), maxes(blocks);
  RT_LAUNCH(tree_sum_kernel, blocks, 256, 0, x.get(), n, sums.get(), warp_sums.get(), maxes.get());
  Output out = as_output(sums.host());
  for (double v : as_output(warp_sums.host())) out.push_back(v);
  for (double v : as_output(maxes.host())) out.push_back(v);
  return out;
}

// Each variant writes one value per thread: out[variant * threads + thread].
constexpr int kShuffleVariants = 8;
__global__ void shuffle_kernel(dptr<const float> x, dptr<float> out) {
  const int t = threadIdx.x, lane = t % 32, threads = blockDim.x;
  const float v = x[t];
  out[0 * threads + t] = __shfl_sync(0xffffffffu, v, (lane * 7 + 3) % 32);
  out[1 * threads + t] = __shfl_up_sync(0xffffffffu, v, 3);
  out[2 * threads + t] = __shfl_down_sync(0xffffffffu, v, 5);
  out[3 * threads + t] = __shfl_xor_sync(0xffffffffu, v, 9);
  out[4 * threads + t] = __shfl_sync(0xffffffffu, v, 2, 8);
  out[5 * threads + t] = __shfl_down_sync(0xffffffffu, v, 3, 16);
  out[6 * threads + t] = __shfl_up_sync(0xffffffffu, v, 1, 4);
  // A half-warp shuffle inside a branch taken by half of each warp.
  float half = -1.f;
  if (lane < 16) half = __shfl_xor_sync(0x0000ffffu, v, 1);
  out[7 * threads + t] = half;
  // 64-bit values shuffle too.
  const double d = __shfl_xor_sync(0xffffffffu, double(v) * 3.0, 16);
  if (d != double(x[t ^ 16]) * 3.0) out[7 * threads + t] = 1e30f;
}

Output shuffles(const Input& in) {
  const int threads = static_cast<int>(in.size());
  DeviceBuffer<float> x(as_floats(in)), out(size_t(threads) * kShuffleVariants);
  RT_LAUNCH(shuffle_kernel, 1, threads, 0, x.get(), out.get());
  return as_output(out.host());
}

// Per thread, 9 values: ballot, any, all of (x > 0) over the warp; then the same over the lower
// half-warp for lanes < 16 (__activemask, 7, 7 for the others); then __syncthreads_count, _and, _or.
__global__ void vote_kernel(dptr<const float> x, dptr<unsigned> out) {
  const int t = threadIdx.x, lane = t % 32;
  const int p = x[t] > 0.f;
  dptr<unsigned> mine = out + 9 * t;
  mine[0] = __ballot_sync(0xffffffffu, p);
  mine[1] = __any_sync(0xffffffffu, p);
  mine[2] = __all_sync(0xffffffffu, p);
  __syncwarp();
  if (lane < 16) {
    mine[3] = __ballot_sync(0x0000ffffu, p);
    mine[4] = __any_sync(0x0000ffffu, p);
    mine[5] = __all_sync(0x0000ffffu, p);
  } else {
    mine[3] = __activemask();
    mine[4] = 7;
    mine[5] = 7;
  }
  mine[6] = __syncthreads_count(p);
  mine[7] = __syncthreads_and(p);
  mine[8] = __syncthreads_or(p);
}

Output votes(const Input& in) {
  const int threads = static_cast<int>(in.size());
  DeviceBuffer<float> x(as_floats(in));
  DeviceBuffer<unsigned> out(size_t(threads) * 9);
  RT_LAUNCH(vote_kernel, 1, threads, 0, x.get(), out.get());
  return as_output(out.host());
}

// Every thread of every block adds into a few shared counters.
struct AtomicCounters {
  float float_sum;
  int int_sum;
  int int_max;
  int int_min;
  unsigned cas_count;
  unsigned exch_seen;
  unsigned long long u64_sum;
  double double_sum;
};

__global__ void atomics_kernel(dptr<const float> x, int n, dptr<AtomicCounters> counters,
                               dptr<float> bins) {
  __shared__ int block_count;
  if (threadIdx.x == 0) block_count = 0;
  __syncthreads();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    const float v = x[i];
    AtomicCounters* c = &counters[0];
    atomicAdd(&c->float_sum, v);
    atomicAdd(&c->int_sum, 1);
    atomicMax(&c->int_max, i);
    atomicMin(&c->int_min, i);
    unsigned seen = atomicCAS(&c->cas_count, 0u, 0u);
    for (;;) {
      const unsigned old = atomicCAS(&c->cas_count, seen, seen + 1);
      if (old == seen) break;
      seen = old;
    }
    atomicExch(&c->exch_seen, 1u);
    atomicAdd(&c->u64_sum, static_cast<unsigned long long>(i));
    atomicAdd(&c->double_sum, double(v));
    atomicAdd(bins + (i % 4), 1.0f);
    atomicAdd(&block_count, 1);
  }
  __syncthreads();
  if (threadIdx.x == 0 && block_count != min(int(blockDim.x), n - int(blockIdx.x * blockDim.x)))
    atomicAdd(&counters[0].int_sum, 1000000);
}

Output atomics(const Input& in) {
  const int n = static_cast<int>(in.size());
  AtomicCounters init{0.f, 0, -1, 1 << 30, 0, 0, 0, 0.0};
  DeviceBuffer<float> x(as_floats(in)), bins(std::vector<float>(4, 0.f));
  DeviceBuffer<AtomicCounters> counters(std::vector<AtomicCounters>{init});
  RT_LAUNCH(atomics_kernel, rt::ceil_div(n, 128), 128, 0, x.get(), n, counters.get(), bins.get());
  const AtomicCounters c = counters.host()[0];
  Output out{c.float_sum, double(c.int_sum), double(c.int_max), double(c.int_min),
             double(c.cas_count), double(c.exch_seen), double(c.u64_sum), c.double_sum};
  for (float b : bins.host()) out.push_back(b);
  return out;
}

// Reverses each block's slice through dynamic shared memory.
__global__ void reverse_kernel(dptr<const float> x, dptr<float> out) {
  RT_DYNAMIC_SHARED(float, buffer);
  const int base = blockIdx.x * blockDim.x;
  buffer[threadIdx.x] = x[base + threadIdx.x];
  __syncthreads();
  out[base + threadIdx.x] = buffer[blockDim.x - 1 - threadIdx.x];
}

Output dynamic_shared_reverse(const Input& in) {
  const int threads = 96, blocks = static_cast<int>(in.size()) / threads;
  DeviceBuffer<float> x(as_floats(in)), out(in.size());
  RT_LAUNCH(reverse_kernel, blocks, threads, threads * sizeof(float), x.get(), out.get());
  return as_output(out.host());
}

// out[4i..4i+3] = bf16(x[i]) as float, and the pair conversions of (x[i], -x[i]).
__global__ void bf16_kernel(dptr<const float> x, int n, dptr<__nv_bfloat16> stored, dptr<float> out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  stored[i] = __float2bfloat16(x[i]);
  const __nv_bfloat162 pair = __floats2bfloat162_rn(x[i], -x[i]);
  out[4 * i + 0] = __bfloat162float(stored[i]);
  out[4 * i + 1] = __low2float(pair);
  out[4 * i + 2] = __high2float(pair);
  out[4 * i + 3] = __bfloat162float(__float2bfloat16_rn(x[i]) * __nv_bfloat16(2.0f));
}

Output bf16_round_trip(const Input& in) {
  const int n = static_cast<int>(in.size());
  DeviceBuffer<float> x(as_floats(in)), out(size_t(n) * 4);
  DeviceBuffer<__nv_bfloat16> stored(n);
  RT_LAUNCH(bf16_kernel, rt::ceil_div(n, 64), 64, 0, x.get(), n, stored.get(), out.get());
  Output result = as_output(out.host());
  for (const __nv_bfloat16& h : stored.host()) result.push_back(h.__x);
  return result;
}

// One warp: D = A (16x16, row-major, global) * B (16x16, loaded col-major from shared memory)
// + C (row-major, global); D stored row-major, then 2 * D stored col-major.
__global__ void wmma_kernel(dptr<const __nv_bfloat16> a, dptr<const __nv_bfloat16> b_col,
                            dptr<const float> c, dptr<float> d, dptr<float> d2_col) {
  using namespace nvcuda;
  __shared__ __align__(32) __nv_bfloat16 b_tile[16 * 16];
  for (int i = threadIdx.x; i < 256; i += 32) b_tile[i] = b_col[i];
  __syncwarp();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b_tile, 16);
  wmma::load_matrix_sync(acc, c, 16, wmma::mem_row_major);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
  for (int i = 0; i < acc.num_elements; ++i) acc.x[i] *= 2.f;
  wmma::store_matrix_sync(d2_col, acc, 16, wmma::mem_col_major);
}

// input: A (256, row-major), B (256, row-major), C (256); output: D row-major, then 2D row-major
// (read back from the col-major store).
Output wmma_16x16x16(const Input& in) {
  std::vector<__nv_bfloat16> a(256), b_col(256);
  std::vector<float> c(256);
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 16; ++k) {
      a[r * 16 + k] = __float2bfloat16(float(in[r * 16 + k]));
      b_col[k * 16 + r] = __float2bfloat16(float(in[256 + r * 16 + k]));  // B[r][k] at col-major
    }
  for (int i = 0; i < 256; ++i) c[i] = float(in[512 + i]);
  DeviceBuffer<__nv_bfloat16> da(a), db(b_col);
  DeviceBuffer<float> dc(c), dd(256), dd2(256);
  RT_LAUNCH(wmma_kernel, 1, 32, 0, da.get(), db.get(), dc.get(), dd.get(), dd2.get());
  Output out = as_output(dd.host());
  const std::vector<float> col = dd2.host();
  for (int r = 0; r < 16; ++r)
    for (int j = 0; j < 16; ++j) out.push_back(col[j * 16 + r]);
  return out;
}

// ---- broken kernels -----------------------------------------------------------------------------

__global__ void copy_kernel(dptr<const float> x, dptr<float> out, int read_end, int write_end) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  float v = 0.f;
  if (i < read_end) v = x[i];
  if (i < write_end) out[i] = v;
}

// Copies n = 1000 elements (not a multiple of the 256-thread tile) with the given loop ends.
Output copy_with_ends(int read_end, int write_end) {
  const int n = 1000;
  DeviceBuffer<float> x(std::vector<float>(n, 1.f)), out(n);
  RT_LAUNCH(copy_kernel, rt::ceil_div(n + 1, 256), 256, 0, x.get(), out.get(), read_end, write_end);
  return as_output(out.host());
}

__global__ void sync_in_branch_kernel(dptr<float> out) {
  __shared__ float tile[256];
  tile[threadIdx.x] = float(threadIdx.x);
  if (threadIdx.x < 64) __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

__global__ void sync_two_sites_kernel(dptr<float> out) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.f;
}

__global__ void early_return_kernel(dptr<const float> x, int n, dptr<float> out) {
  __shared__ float tile[256];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  tile[threadIdx.x] = x[i];
  __syncthreads();
  out[i] = tile[(threadIdx.x + 1) % blockDim.x];
}

__global__ void shuffle_missing_lane_kernel(dptr<float> out) {
  float v = float(threadIdx.x);
  if (threadIdx.x % 32 != 31) v = __shfl_down_sync(0xffffffffu, v, 1);
  __syncthreads();
  out[threadIdx.x] = v;
}

__global__ void shuffle_exited_lane_kernel(dptr<float> out) {
  if (threadIdx.x % 32 == 31) return;
  out[threadIdx.x] = warp_sum(float(threadIdx.x));
}

__global__ void shuffle_mask_without_self_kernel(dptr<float> out) {
  out[threadIdx.x] = __shfl_sync(0x0000ffffu, float(threadIdx.x), 0);
}

__global__ void read_kernel(dptr<const float> x, dptr<float> out) { out[threadIdx.x] = x[threadIdx.x]; }

__global__ void vector_read_kernel(dptr<const float> x, dptr<float> out) {
  const float4 v = dptr_cast<const float4>(x + 1)[0];
  out[threadIdx.x] = v.x;
}

Output sync_in_branch(const Input&) {
  DeviceBuffer<float> out(256);
  RT_LAUNCH(sync_in_branch_kernel, 2, 256, 0, out.get());
  return as_output(out.host());
}

Output sync_two_sites(const Input&) {
  DeviceBuffer<float> out(64);
  RT_LAUNCH(sync_two_sites_kernel, 1, 64, 0, out.get());
  return as_output(out.host());
}

Output early_return(const Input&) {
  const int n = 1000;
  DeviceBuffer<float> x(std::vector<float>(n, 1.f)), out(n);
  RT_LAUNCH(early_return_kernel, rt::ceil_div(n, 256), 256, 0, x.get(), n, out.get());
  return as_output(out.host());
}

Output shuffle_missing_lane(const Input&) {
  DeviceBuffer<float> out(64);
  RT_LAUNCH(shuffle_missing_lane_kernel, 1, 64, 0, out.get());
  return as_output(out.host());
}

Output shuffle_exited_lane(const Input&) {
  DeviceBuffer<float> out(64);
  RT_LAUNCH(shuffle_exited_lane_kernel, 1, 64, 0, out.get());
  return as_output(out.host());
}

Output shuffle_mask_without_self(const Input&) {
  DeviceBuffer<float> out(32);
  RT_LAUNCH(shuffle_mask_without_self_kernel, 1, 32, 0, out.get());
  return as_output(out.host());
}

Output null_pointer(const Input&) {
  DeviceBuffer<float> out(32);
  RT_LAUNCH(read_kernel, 1, 32, 0, static_cast<const float*>(nullptr), out.get());
  return as_output(out.host());
}

Output host_pointer(const Input&) {
  std::vector<float> host(32, 1.f);
  DeviceBuffer<float> out(32);
  RT_LAUNCH(read_kernel, 1, 32, 0, host.data(), out.get());
  return as_output(out.host());
}

Output misaligned_vector(const Input&) {
  DeviceBuffer<float> x(std::vector<float>(64, 1.f)), out(32);
  RT_LAUNCH(vector_read_kernel, 1, 32, 0, x.get(), out.get());
  return as_output(out.host());
}

Output too_many_threads(const Input&) {
  DeviceBuffer<float> out(2048);
  RT_LAUNCH(read_kernel, 1, 2048, 0, out.get(), out.get());
  return as_output(out.host());
}

Output too_much_shared(const Input&) {
  DeviceBuffer<float> x(32), out(32);
  RT_LAUNCH(reverse_kernel, 1, 32, 64 * 1024, x.get(), out.get());
  return as_output(out.host());
}

__global__ void wmma_misaligned_kernel(dptr<const __nv_bfloat16> a, dptr<float> d) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, a + 8, 16);
  d[threadIdx.x] = float(fa.x[0]);
}

Output wmma_misaligned(const Input&) {
  DeviceBuffer<__nv_bfloat16> a(std::vector<__nv_bfloat16>(512, __float2bfloat16(1.f)));
  DeviceBuffer<float> d(32);
  RT_LAUNCH(wmma_misaligned_kernel, 1, 32, 0, a.get(), d.get());
  return as_output(d.host());
}

__global__ void wmma_tile_past_end_kernel(dptr<const __nv_bfloat16> a, dptr<float> d) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, a, 16);  // a holds 15 rows of 16
  d[threadIdx.x] = float(fa.x[0]);
}

Output wmma_tile_past_end(const Input&) {
  DeviceBuffer<__nv_bfloat16> a(std::vector<__nv_bfloat16>(240, __float2bfloat16(1.f)));
  DeviceBuffer<float> d(32);
  RT_LAUNCH(wmma_tile_past_end_kernel, 1, 32, 0, a.get(), d.get());
  return as_output(d.host());
}

__global__ void wmma_divergent_kernel(dptr<const __nv_bfloat16> a, dptr<float> d) {
  using namespace nvcuda;
  if (threadIdx.x % 32 >= 16) return;  // half of the warp skips a warp-wide call
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, a, 16);
  d[threadIdx.x] = float(fa.x[0]);
}

Output wmma_divergent(const Input&) {
  DeviceBuffer<__nv_bfloat16> a(std::vector<__nv_bfloat16>(256, __float2bfloat16(1.f)));
  DeviceBuffer<float> d(32);
  RT_LAUNCH(wmma_divergent_kernel, 1, 32, 0, a.get(), d.get());
  return as_output(d.host());
}

// Reads its left neighbour's shared-memory slot with no barrier after the writes.
__global__ void missing_barrier_kernel(dptr<const float> x, dptr<float> out) {
  __shared__ float tile[64];
  const int i = blockIdx.x * 64 + threadIdx.x;
  tile[threadIdx.x] = x[i];
  out[i] = tile[(threadIdx.x + 63) % 64];
}

Output missing_barrier(const Input&) {
  std::vector<float> values(128);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i + 1);
  DeviceBuffer<float> x(values), out(values.size());
  RT_LAUNCH(missing_barrier_kernel, 2, 64, 0, x.get(), out.get());
  return as_output(out.host());
}

__global__ void throwing_kernel(dptr<float> out) {
  if (threadIdx.x == 5) rt::fail("device code is not allowed to throw");
  out[threadIdx.x] = 1.f;
}

Output kernel_throws(const Input&) {
  DeviceBuffer<float> out(32);
  RT_LAUNCH(throwing_kernel, 1, 32, 0, out.get());
  return as_output(out.host());
}

// ---- the checks that model the hardware more closely -------------------------------------------

// One warp: D = A B (16x16x16, A and B row-major in global memory); then each lane writes its
// accumulator elements as if lane l held D's elements l * 8 .. l * 8 + 7 in row-major order,
// which is no mapping a correct kernel may assume.
__global__ void wmma_assumed_mapping_kernel(dptr<const __nv_bfloat16> a, dptr<const __nv_bfloat16> b, dptr<float> d) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  for (int i = 0; i < acc.num_elements; ++i) d[threadIdx.x * acc.num_elements + i] = acc.x[i];
}

// input: A (256), B (256), both row-major; output: what the kernel wrote (256).
Output wmma_assumed_mapping(const Input& in) {
  std::vector<__nv_bfloat16> a(256), b(256);
  for (int i = 0; i < 256; ++i) a[i] = __float2bfloat16(float(in[i])), b[i] = __float2bfloat16(float(in[256 + i]));
  DeviceBuffer<__nv_bfloat16> da(a), db(b);
  DeviceBuffer<float> dd(256);
  RT_LAUNCH(wmma_assumed_mapping_kernel, 1, 32, 0, da.get(), db.get(), dd.get());
  return as_output(dd.host());
}

// Stores an accumulator tile to shared memory and reads it back by rows, each lane a row half:
// with `sync` a __syncwarp orders the lanes' stores before the reads, without it the reads race.
__global__ void wmma_shared_round_trip_kernel(dptr<float> out, bool sync) {
  using namespace nvcuda;
  __shared__ __align__(32) float tile[16 * 16];
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 1.f);
  wmma::store_matrix_sync(tile, acc, 16, wmma::mem_row_major);
  if (sync) __syncwarp();
  float s = 0.f;
  for (int c = 0; c < 8; ++c) s += tile[threadIdx.x / 2 * 16 + threadIdx.x % 2 * 8 + c];
  out[threadIdx.x] = s;
}

Output wmma_round_trip(bool sync) {
  DeviceBuffer<float> out(32);
  RT_LAUNCH(wmma_shared_round_trip_kernel, 1, 32, 0, out.get(), sync);
  return as_output(out.host());
}

// Half of the warp passes another pointer (0), ldm (1) or layout (2) than the other half.
__global__ void wmma_lanes_disagree_kernel(dptr<const float> c, dptr<float> out, int what) {
  using namespace nvcuda;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  const bool upper = threadIdx.x >= 16;
  dptr<const float> p = what == 0 && upper ? c + 256 : c;
  const unsigned ldm = what == 1 && upper ? 32 : 16;
  wmma::load_matrix_sync(acc, p, ldm, what == 2 && upper ? wmma::mem_col_major : wmma::mem_row_major);
  out[threadIdx.x] = acc.x[0];
}

Output wmma_lanes_disagree(int what) {
  DeviceBuffer<float> c(std::vector<float>(1024, 1.f)), out(32);
  RT_LAUNCH(wmma_lanes_disagree_kernel, 1, 32, 0, c.get(), out.get(), what);
  return as_output(out.host());
}

// A float array gets its type's alignment and no more, however a GPU happens to place it: as a
// WMMA pointer it must be declared __align__(32).
__global__ void wmma_underaligned_shared_kernel(dptr<float> out) {
  using namespace nvcuda;
  __shared__ float tile[16 * 16];
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 1.f);
  wmma::store_matrix_sync(tile, acc, 16, wmma::mem_row_major);
  out[threadIdx.x] = 1.f;
}

Output wmma_underaligned_shared(const Input&) {
  DeviceBuffer<float> out(32);
  RT_LAUNCH(wmma_underaligned_shared_kernel, 1, 32, 0, out.get());
  return as_output(out.host());
}

__global__ void wmma_partial_warp_kernel(dptr<float> out) {
  using namespace nvcuda;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 1.f);
  wmma::store_matrix_sync(out, acc, 16, wmma::mem_row_major);
}

Output wmma_partial_warp(const Input&) {
  DeviceBuffer<float> out(256);
  RT_LAUNCH(wmma_partial_warp_kernel, 1, 16, 0, out.get());
  return as_output(out.host());
}

// Shared memory: out-of-bounds static (one past the end) and dynamic (one past the launch's
// bytes) accesses, and a misaligned float4 read.
__global__ void shared_past_end_kernel(dptr<float> out) {
  __shared__ float tile[64];
  tile[threadIdx.x + 1] = 1.f;
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

__global__ void dynamic_shared_past_end_kernel(dptr<float> out) {
  RT_DYNAMIC_SHARED(float, buffer);
  buffer[threadIdx.x] = 2.f;
  __syncthreads();
  out[threadIdx.x] = buffer[threadIdx.x + 1];
}

__global__ void shared_misaligned_kernel(dptr<float> out) {
  __shared__ __align__(16) float tile[68];
  tile[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  const float4 v = *reinterpret_cast<const float4*>(tile + 1 + threadIdx.x);
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

Output shared_past_end(const Input&) {
  DeviceBuffer<float> out(64);
  RT_LAUNCH(shared_past_end_kernel, 1, 64, 0, out.get());
  return as_output(out.host());
}

Output dynamic_shared_past_end(const Input&) {
  DeviceBuffer<float> out(64);
  RT_LAUNCH(dynamic_shared_past_end_kernel, 1, 64, 64 * sizeof(float), out.get());
  return as_output(out.host());
}

Output shared_misaligned(const Input&) {
  DeviceBuffer<float> out(64);
  RT_LAUNCH(shared_misaligned_kernel, 1, 64, 0, out.get());
  return as_output(out.host());
}

// Lanes trade values through shared memory: `order` 0 with a __syncwarp between the write and the
// read (correct), 1 with a __shfl_sync there instead (a shuffle orders no memory), 2 with
// nothing; 3: lanes of different warps with only a __syncwarp (which orders one warp).
__global__ void warp_exchange_kernel(dptr<float> out, int order) {
  __shared__ float slots[64];
  const int t = threadIdx.x, lane = t % 32;
  slots[t] = float(t);
  float v = float(t);
  if (order == 0 || order == 3) __syncwarp();
  if (order == 1) v = __shfl_xor_sync(0xffffffffu, v, 1);
  const int partner = order == 3 ? (t + 32) % 64 : t - lane + 31 - lane;
  out[t] = slots[partner] + v - float(t);
}

Output warp_exchange(int order) {
  DeviceBuffer<float> out(64);
  RT_LAUNCH(warp_exchange_kernel, 1, 64, 0, out.get(), order);
  return as_output(out.host());
}

// Thread 0 overwrites a value the other threads of the block read, with no barrier between: the
// report comes from whichever of the two accesses the schedule runs second.
__global__ void write_after_read_kernel(dptr<float> out) {
  __shared__ float value;
  if (threadIdx.x == 0) value = 1.f;
  __syncthreads();
  out[threadIdx.x] = value;
  if (threadIdx.x == 0) value = 2.f;
}

Output write_after_read(const Input&) {
  DeviceBuffer<float> out(64);
  RT_LAUNCH(write_after_read_kernel, 1, 64, 0, out.get());
  return as_output(out.host());
}

// Reads shared memory nobody wrote: static starts as NaN in every block, dynamic too.
__global__ void uninitialised_shared_kernel(dptr<float> out) {
  __shared__ float tile[32];
  RT_DYNAMIC_SHARED(float, buffer);
  out[blockIdx.x * 64 + threadIdx.x] = tile[threadIdx.x];
  out[blockIdx.x * 64 + 32 + threadIdx.x] = buffer[threadIdx.x];
  __syncthreads();
  tile[threadIdx.x] = 1.f;  // the next block on this worker must not see it
  buffer[threadIdx.x] = 1.f;
}

Output uninitialised_shared(const Input&) {
  DeviceBuffer<float> out(16 * 64);  // more blocks than workers: a worker runs several in turn
  RT_LAUNCH(uninitialised_shared_kernel, 16, 32, 32 * sizeof(float), out.get());
  return as_output(out.host());
}

// Where the dynamic region and static arrays lie: their addresses modulo 64 and 32.
__global__ void shared_placement_kernel(dptr<unsigned> out) {
  __shared__ __align__(16) float aligned16[4];
  __shared__ double plain[2];
  RT_DYNAMIC_SHARED(unsigned char, dynamic);
  if (threadIdx.x == 0) {
    out[0] = unsigned(reinterpret_cast<uintptr_t>(dynamic) % 64);
    out[1] = unsigned(reinterpret_cast<uintptr_t>(aligned16) % 32);
    out[2] = unsigned(reinterpret_cast<uintptr_t>(plain) % 16);
  }
}

Output shared_placement(const Input&) {
  DeviceBuffer<unsigned> out(3);
  RT_LAUNCH(shared_placement_kernel, 1, 32, 256, out.get());
  return as_output(out.host());
}

// Each thread's place in the order the block ran it: one block of `in.size()` threads (input
// unused beyond its length) and a second launch of 4 blocks of 64.
__global__ void thread_order_kernel(dptr<unsigned> counter, dptr<unsigned> rank) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
  rank[t] = atomicAdd(&counter[blockIdx.x], 1u);
}

Output thread_order(const Input& in) {
  const int threads = static_cast<int>(in.size());
  DeviceBuffer<unsigned> counter(std::vector<unsigned>(4, 0u)), rank(threads);
  RT_LAUNCH(thread_order_kernel, 1, threads, 0, counter.get(), rank.get());
  return as_output(rank.host());
}

// a * b + c: nvcc contracts it into an FMA, so the emulator does too (GCC contracts within a basic
// block: the operands are loaded first, as the checked loads of a dptr branch).
__global__ void multiply_add_kernel(dptr<const float> x, dptr<float> out, int n) {
  const int i = threadIdx.x;
  if (i >= n) return;
  const float a = x[3 * i], b = x[3 * i + 1], c = x[3 * i + 2];
  out[i] = a * b + c;
}

Output multiply_add(const Input& in) {
  const int n = static_cast<int>(in.size() / 3);
  DeviceBuffer<float> x(as_floats(in)), out(n);
  RT_LAUNCH(multiply_add_kernel, 1, 32, 0, x.get(), out.get(), n);
  return as_output(out.host());
}

// Launch realism: a block over the kernel's __launch_bounds__, static plus dynamic shared memory
// over 48 KB, the opt-in that allows more, and a grid past the hardware's limits.
__global__ void __launch_bounds__(64) bounded_kernel(dptr<float> out) { out[threadIdx.x] = 1.f; }

Output over_launch_bounds(const Input&) {
  DeviceBuffer<float> out(128);
  RT_LAUNCH(bounded_kernel, 1, 128, 0, out.get());
  return as_output(out.host());
}

Output within_launch_bounds(const Input&) {
  DeviceBuffer<float> out(64);
  RT_LAUNCH(bounded_kernel, 1, 64, 0, out.get());
  return as_output(out.host());
}

// Tagged so each scenario has a kernel of its own: an opt-in lasts for the process, as on a GPU.
template <int kTag>
__global__ void big_static_shared_kernel(dptr<float> out) {
  __shared__ float big[4096];  // 16 KB
  RT_DYNAMIC_SHARED(float, buffer);
  big[threadIdx.x] = 1.f;
  buffer[threadIdx.x] = 2.f;
  __syncthreads();
  out[threadIdx.x] = big[threadIdx.x] + buffer[threadIdx.x];
}

Output static_plus_dynamic_over_48k(const Input&) {
  DeviceBuffer<float> out(32);
  RT_LAUNCH(big_static_shared_kernel<0>, 1, 32, 40 * 1024, out.get());
  return as_output(out.host());
}

// The same launch after the opt-in a real launcher must make (100 KB dynamic).
Output opted_in_shared(const Input&) {
  rt::rt_check(cudaFuncSetAttribute(big_static_shared_kernel<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024),
               "selftest");
  DeviceBuffer<float> out(32);
  RT_LAUNCH(big_static_shared_kernel<1>, 1, 32, 100 * 1024, out.get());
  return as_output(out.host());
}

Output grid_too_tall(const Input&) {
  DeviceBuffer<float> out(64);
  RT_LAUNCH(read_kernel, dim3(1, 65536, 1), 32, 0, out.get(), out.get());
  return as_output(out.host());
}

const Scenario* find_scenario(const std::string& name) {
  static const std::map<std::string, Scenario> table = {
      {"block_reduce", block_reduce},
      {"shuffles", shuffles},
      {"votes", votes},
      {"atomics", atomics},
      {"dynamic_shared", dynamic_shared_reverse},
      {"bf16", bf16_round_trip},
      {"wmma", wmma_16x16x16},
      {"oob_read", [](const Input&) { return copy_with_ends(1001, 1000); }},
      {"oob_write", [](const Input&) { return copy_with_ends(1000, 1024); }},
      {"oob_write_by_one", [](const Input&) { return copy_with_ends(1000, 1001); }},
      {"in_bounds_copy", [](const Input&) { return copy_with_ends(1000, 1000); }},
      {"sync_in_branch", sync_in_branch},
      {"sync_two_sites", sync_two_sites},
      {"early_return", early_return},
      {"shuffle_missing_lane", shuffle_missing_lane},
      {"shuffle_exited_lane", shuffle_exited_lane},
      {"shuffle_mask_without_self", shuffle_mask_without_self},
      {"null_pointer", null_pointer},
      {"host_pointer", host_pointer},
      {"misaligned_vector", misaligned_vector},
      {"too_many_threads", too_many_threads},
      {"too_much_shared", too_much_shared},
      {"wmma_misaligned", wmma_misaligned},
      {"wmma_tile_past_end", wmma_tile_past_end},
      {"wmma_divergent", wmma_divergent},
      {"missing_barrier", missing_barrier},
      {"kernel_throws", kernel_throws},
      {"wmma_assumed_mapping", wmma_assumed_mapping},
      {"wmma_round_trip_synced", [](const Input&) { return wmma_round_trip(true); }},
      {"wmma_missing_syncwarp", [](const Input&) { return wmma_round_trip(false); }},
      {"wmma_lanes_disagree_pointer", [](const Input&) { return wmma_lanes_disagree(0); }},
      {"wmma_lanes_disagree_ldm", [](const Input&) { return wmma_lanes_disagree(1); }},
      {"wmma_lanes_disagree_layout", [](const Input&) { return wmma_lanes_disagree(2); }},
      {"wmma_underaligned_shared", wmma_underaligned_shared},
      {"wmma_partial_warp", wmma_partial_warp},
      {"shared_past_end", shared_past_end},
      {"dynamic_shared_past_end", dynamic_shared_past_end},
      {"shared_misaligned", shared_misaligned},
      {"warp_exchange_synced", [](const Input&) { return warp_exchange(0); }},
      {"warp_exchange_shuffle_only", [](const Input&) { return warp_exchange(1); }},
      {"warp_exchange_unsynced", [](const Input&) { return warp_exchange(2); }},
      {"warp_exchange_across_warps", [](const Input&) { return warp_exchange(3); }},
      {"write_after_read", write_after_read},
      {"uninitialised_shared", uninitialised_shared},
      {"shared_placement", shared_placement},
      {"thread_order", thread_order},
      {"multiply_add", multiply_add},
      {"over_launch_bounds", over_launch_bounds},
      {"within_launch_bounds", within_launch_bounds},
      {"static_plus_dynamic_over_48k", static_plus_dynamic_over_48k},
      {"opted_in_shared", opted_in_shared},
      {"grid_too_tall", grid_too_tall},
  };
  auto it = table.find(name);
  return it == table.end() ? nullptr : &it->second;
}

}  // namespace rt_emu::selftest
