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
  out[threadIdx.x] = tile[255 - threadIdx.x];
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

Output missing_barrier(const Input& in) {
  DeviceBuffer<float> x(as_floats(in)), out(in.size());
  RT_LAUNCH(missing_barrier_kernel, int(in.size() / 64), 64, 0, x.get(), out.get());
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
  };
  auto it = table.find(name);
  return it == table.end() ? nullptr : &it->second;
}

}  // namespace rt_emu::selftest
