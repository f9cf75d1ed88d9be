// cuda-emu: the CUDA execution model on the CPU, so the kernels in cuda/*.cu run (and are
// checked) on machines without a GPU. cuda/launch.h includes this header when RT_EMU is defined;
// the same kernel source then compiles with g++ (C++20).
//
// Execution model
//   Every CUDA thread is a fiber with its own 256 KB stack (mmap'd, guard page below, reused
//   across launches; a thread that finishes without blocking hands its stack to the next one).
//   The threads of a block run on one OS thread in a seeded random order, reshuffled every round
//   (a round resumes each runnable thread once; it runs until it blocks in a barrier or warp
//   collective, or exits). The seed comes from REALTUNE_EMU_SEED, read at every launch (the tests
//   set it from their seed and print it); each launch since the variable last changed draws the
//   next seed of its sequence, so a seed replays a run. Blocks are spread over a pool of worker
//   threads (REALTUNE_EMU_THREADS, else std::thread::hardware_concurrency); launches are
//   synchronous and serialised. Warps are 32 consecutive linear thread ids (x fastest); lanes past
//   blockDim count as exited.
//
// How kernel sources are built: cuda/emu/instrument.mjs first rewrites their `__shared__` and
// `__launch_bounds__` declarations (RT_EMU_SHARED, RT_EMU_LAUNCH_BOUNDS below), line for line;
// then g++ compiles them with -fsanitize=thread, whose per-access hooks (__tsan_read4, ...) emu.cc
// implements as the shared-memory checks (the ThreadSanitizer runtime is never linked), with
// -fno-tree-sra so vector accesses stay whole, and with -ffp-contract=fast -mfma so a*b+c
// contracts into an FMA as nvcc contracts it (GCC contracts within a basic block: a checked
// global load between the multiply and the add keeps them apart).
//
// Supported, exactly:
//   qualifiers   __global__ __device__ __host__ __forceinline__ __launch_bounds__(max[, min])
//                __restrict__ __align__(n) __constant__ __shared__ (`T name[dims];`, optionally
//                __align__(n): the block's checked copy, see below)
//   built-ins    threadIdx blockIdx blockDim gridDim (uint3 / dim3) warpSize
//   types        dim3 uint3 char4 uchar4 short2 int2 int3 int4 uint2 uint4 float2 float3 float4
//                double2 longlong2 and make_<type>(...) for each
//   barriers     __syncthreads() __syncthreads_count/and/or(pred) __syncwarp(mask) __threadfence()
//                __threadfence_block()
//   warp ops     __shfl_sync __shfl_xor_sync __shfl_up_sync __shfl_down_sync (any type of 1..8
//                bytes, optional width) __ballot_sync __any_sync __all_sync __activemask (the
//                warp's live lanes)
//   atomics      atomicAdd (int, unsigned, unsigned long long, float, double), atomicSub,
//                atomicMax/atomicMin (int, unsigned, long long, unsigned long long), atomicCAS
//                (int, unsigned, unsigned long long), atomicExch (int, unsigned, unsigned long
//                long, float), atomicAnd/Or/Xor (int, unsigned); on raw pointers (shared memory)
//                and on dptr (bounds-checked)
//   math         the <cmath> float functions (expf logf sqrtf tanhf erff sinf cosf powf floorf
//                ceilf log1pf expm1f fmaxf fminf fabsf ...), isnan isinf isfinite, __expf __logf
//                __sinf __cosf __tanf __powf __exp10f __log2f rsqrtf __fdividef __frcp_rn
//                __fsqrt_rn __saturatef __fmaf_rn __fadd_rn __fmul_rn, min/max for every mix of
//                arithmetic types (CUDA's overloads), __ldg, __float_as_int __int_as_float
//                __float_as_uint __uint_as_float __double_as_longlong __longlong_as_double
//                __popc __popcll __clz __clzll __ffs __ffsll __brev, INFINITY
//   bf16         __nv_bfloat16 (2-byte storage; implicit conversions from float, double and
//                integers and to float; + - * / and
//                comparisons as cuda_bf16.h has them), __nv_bfloat162, __float2bfloat16(_rn)
//                (round to nearest even, NaN -> 0x7fff), __bfloat162float,
//                __floats2bfloat162_rn, __float22bfloat162_rn, __bfloat1622float2,
//                __halves2bfloat162, __low2float, __high2float, __low2bfloat16, __high2bfloat16
//   wmma         nvcuda::wmma fragment<matrix_a|matrix_b|accumulator, 16,16,16 | 32,8,16 |
//                8,32,16, __nv_bfloat16|float, row_major|col_major>, fill_fragment,
//                load_matrix_sync, mma_sync (bf16 x bf16 + f32), store_matrix_sync. As on sm_80
//                each lane holds its share of the tile (num_elements = rows * cols / 32: 8 of a
//                16x16 accumulator) under a seeded random (lane, element) -> (row, col) mapping
//                per launch and fragment kind; load/store_matrix_sync read and write only the
//                calling lane's elements when it runs, without waiting for the warp (so a
//                missing __syncwarp around a shared-memory round trip is a race); mma_sync waits
//                for the whole warp and computes once. Pointers may be raw (shared memory) or
//                dptr (the whole tile must lie in the allocation).
//   runtime      cudaError_t cudaSuccess cudaGetErrorString cudaGetLastError cudaPeekAtLastError
//                cudaMalloc cudaFree cudaMemcpy (all kinds) cudaMemset cudaGetDeviceCount (1)
//                cudaGetDevice cudaSetDevice cudaDeviceProp cudaGetDeviceProperties
//                cudaDeviceSynchronize cudaStream_t (only the default stream, 0)
//                cudaFuncSetAttribute (cudaFuncAttributeMaxDynamicSharedMemorySize, up to 227 KB;
//                PreferredSharedMemoryCarveout accepted and ignored)
//   shared memory static __shared__ variables and the dynamic region (RT_DYNAMIC_SHARED) live in
//                a per-worker arena: a variable is allocated when the first thread of the block
//                reaches its declaration, at exactly its alignment (an odd multiple of it: code
//                assuming more fails), with unaddressable bytes around it; the dynamic region at
//                exactly the alignment cuda/launch.h declares. Both start as 0xff bytes (NaN)
//                in every block.
//   launch counts ::emu::launch_counts(): launches started per kernel name since the process
//                began (realtune_dev.node's emuLaunchCounts), so tests can see which kernel an
//                op chose
//
// Checks (each one fails the launch: ::emu::launch throws emu::KernelError, a
// std::runtime_error whose message starts "cuda-emu: kernel <name>: " and names the block and
// thread; the first error wins, and the blocks not yet started are skipped)
//   - launch configuration: empty grid or block, more than 1024 threads, grid limits (x up to
//     2^31-1, y and z up to 65535), block limits, dynamic shared memory over 48 KB without the
//     opt-in (or over what the kernel opted in to); a block bigger than the kernel's
//     __launch_bounds__; static plus dynamic shared memory over 48 KB without the opt-in (over
//     227 KB with it), static alone over 48 KB;
//   - every element access through a dptr (checked_ptr) must lie wholly inside one live
//     cudaMalloc allocation and be aligned to its type; a bad access is redirected to a zeroed
//     scratch element so the kernel finishes safely;
//   - every load and store to shared memory (through any pointer): inside a variable or the
//     launch's dynamic bytes, naturally aligned (a float4 to 16 bytes), and free of races: per
//     byte the emulator keeps the last writer and the readers since, with the __syncthreads
//     epoch and their warp's __syncwarp count; an access by another thread with no
//     __syncthreads between (or, within a warp, a __syncwarp both took part in) is reported:
//     read after write, write after write, write after read. Shuffles, votes and WMMA calls
//     order nothing; atomics do not race with atomics. The block stops before the bad access;
//   - __syncthreads reached by only part of a block (others exited or wait elsewhere), or at
//     different call sites: the block is stopped;
//   - warp operations: the caller must be in its mask, all lanes of a mask must use the same
//     operation and mask, a lane never arriving (deadlock) is reported, and reading a lane that
//     exited or is outside the mask is reported (its value is undefined on a GPU);
//   - WMMA: every lane of a whole warp makes the same calls in the same order with the same
//     pointer, ldm, layout and fragment type (a lane that exits without a call the others made is
//     reported); tile pointers 32-byte aligned, ldm a multiple of 16 bytes;
//   - cudaMemcpy/cudaMemset device ranges must lie inside one allocation (else
//     cudaErrorInvalidValue).
//
// Not modelled: raw pointers into global memory (only dptr is checked), memcpy/memset inside a
// kernel (not instrumented), races in global memory, infinite loops and inter-block spin waits
// (they hang), fiber stack overflow past 256 KB (crashes on the guard page), register and
// occupancy limits behind __launch_bounds__, streams and events, tensor-core accumulation order
// (mma_sync sums k in order with one rounding per step). The race detector is approximate where
// several threads read a byte (it keeps one reader, or "many" and their warp) and for partial
// __syncwarp masks (it asks that both lanes took part in some __syncwarp since the access).
#pragma once

#include <math.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <type_traits>

// ---- qualifiers -------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// cuda/emu/instrument.mjs rewrites every `__launch_bounds__(...)` and `__shared__` declaration of a
// kernel source into RT_EMU_LAUNCH_BOUNDS / RT_EMU_SHARED (below); these definitions only meet
// code that did not go through it.
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __constant__
#define __shared__ \
  static_assert(false, "cuda-emu: build kernel sources through cuda/emu/instrument.mjs, which checks __shared__");

// ---- vector types ------------------------------------------------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return {x, y, z}; }
};

#define RT_EMU_VECTOR2(name, T, align)                                        \
  struct __attribute__((aligned(align))) name {                               \
    T x, y;                                                                   \
  };                                                                          \
  inline constexpr name make_##name(T x, T y) { return name{x, y}; }
#define RT_EMU_VECTOR3(name, T)                                               \
  struct name {                                                               \
    T x, y, z;                                                                \
  };                                                                          \
  inline constexpr name make_##name(T x, T y, T z) { return name{x, y, z}; }
#define RT_EMU_VECTOR4(name, T, align)                                        \
  struct __attribute__((aligned(align))) name {                               \
    T x, y, z, w;                                                             \
  };                                                                          \
  inline constexpr name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }

RT_EMU_VECTOR2(short2, short, 4)
RT_EMU_VECTOR2(int2, int, 8)
RT_EMU_VECTOR2(uint2, unsigned, 8)
RT_EMU_VECTOR2(float2, float, 8)
RT_EMU_VECTOR2(double2, double, 16)
RT_EMU_VECTOR2(longlong2, long long, 16)
RT_EMU_VECTOR3(int3, int)
RT_EMU_VECTOR3(float3, float)
RT_EMU_VECTOR4(char4, signed char, 4)
RT_EMU_VECTOR4(uchar4, unsigned char, 4)
RT_EMU_VECTOR4(int4, int, 16)
RT_EMU_VECTOR4(uint4, unsigned, 16)
RT_EMU_VECTOR4(float4, float, 16)
inline constexpr uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
#undef RT_EMU_VECTOR2
#undef RT_EMU_VECTOR3
#undef RT_EMU_VECTOR4

constexpr int warpSize = 32;

// ---- runtime API -------------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
struct CUstream_st;
using cudaStream_t = CUstream_st*;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int multiProcessorCount;
  int major;
  int minor;
};

const char* cudaGetErrorString(cudaError_t error);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <class T>
inline cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemset(void* ptr, int value, size_t bytes);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceSynchronize();
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
// The opt-in a launch needs for more than 48 KB of shared memory per block (up to 227 KB).
cudaError_t cudaFuncSetAttribute(const void* kernel, cudaFuncAttribute attribute, int value);
template <class F>
inline cudaError_t cudaFuncSetAttribute(F* kernel, cudaFuncAttribute attribute, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attribute, value);
}

namespace emu {

// The error every failed launch throws.
class KernelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---- memory registry and checked pointers ------------------------------------------------------
struct Allocation {
  const char* base;
  size_t size;
};

// Per-OS-thread state: the running fiber's identity (set by the block scheduler before each
// resume) and the last allocations pointers resolved to. One constinit struct: one TLS lookup
// and no TLS wrapper calls.
struct ThreadState {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  uint64_t launch_registry_version;  // the running launch's registry snapshot; 0 outside launches
  uint64_t cached_version;           // the snapshot `cached` was filled from
  static constexpr int kCached = 4;  // kernels take a few pointers, each resolved per thread
  Allocation cached[kCached];
  unsigned next_victim;
};
extern constinit thread_local ThreadState tl;

Allocation find_allocation_slow(const void* p);

// The live cudaMalloc allocation containing [p, p + 1) (or ending exactly at p), or {p, 0}
// (unknown) when there is none. Lock-free inside a launch: a snapshot of the registry, with a
// small cache in front of it.
inline Allocation find_allocation(const void* p) {
  const ThreadState& s = tl;
  const char* q = static_cast<const char*>(p);
  if (s.cached_version == s.launch_registry_version)
    for (const Allocation& a : s.cached)
      if (q >= a.base && q <= a.base + a.size) return a;
  return find_allocation_slow(p);
}

// The element type's name in error messages.
template <class T>
struct type_label {
  static constexpr const char* name = nullptr;
};
#define RT_EMU_TYPE_LABEL(T, label)                 \
  template <>                                       \
  struct type_label<T> {                            \
    static constexpr const char* name = label;      \
  };
RT_EMU_TYPE_LABEL(float, "float")
RT_EMU_TYPE_LABEL(double, "double")
RT_EMU_TYPE_LABEL(int, "int")
RT_EMU_TYPE_LABEL(unsigned, "unsigned")
RT_EMU_TYPE_LABEL(long, "int64")
RT_EMU_TYPE_LABEL(long long, "int64")
RT_EMU_TYPE_LABEL(unsigned long, "uint64")
RT_EMU_TYPE_LABEL(unsigned long long, "uint64")
RT_EMU_TYPE_LABEL(float2, "float2")
RT_EMU_TYPE_LABEL(float4, "float4")
RT_EMU_TYPE_LABEL(int4, "int4")
RT_EMU_TYPE_LABEL(uint2, "uint2")
RT_EMU_TYPE_LABEL(uint4, "uint4")

// Records an out-of-bounds or misaligned access of `count` elements (cold path) and returns a
// zeroed scratch area the access is redirected to.
[[gnu::cold, gnu::noinline]] void* bad_access(const char* base, size_t size, const void* p,
                                              size_t count, size_t element_bytes, size_t align,
                                              const char* type, bool is_const);

template <class T>
class checked_ptr {
 public:
  using element_type = T;

  checked_ptr() = default;
  checked_ptr(std::nullptr_t) {}
  checked_ptr(T* p) : p_(p) {
    if (p != nullptr) {
      Allocation a = find_allocation(p);
      base_ = a.base;
      size_ = a.size;
    }
  }
  template <class U>
    requires(!std::is_same_v<U, T> && std::is_convertible_v<U*, T*>)
  checked_ptr(const checked_ptr<U>& other)
      : p_(other.raw()), base_(other.alloc_base()), size_(other.alloc_size()) {}
  checked_ptr(T* p, const char* base, size_t size) : p_(p), base_(base), size_(size) {}

  // The element at p + i, checked: a bad access yields a zeroed scratch element.
  template <std::integral I>
  T& operator[](I i) const {
    return *checked(p_ + static_cast<ptrdiff_t>(i));
  }
  T& operator*() const { return *checked(p_); }
  T* operator->() const { return checked(p_); }

  template <std::integral I>
  checked_ptr operator+(I i) const {
    return {p_ + static_cast<ptrdiff_t>(i), base_, size_};
  }
  template <std::integral I>
  friend checked_ptr operator+(I i, const checked_ptr& p) {
    return p + i;
  }
  template <std::integral I>
  checked_ptr operator-(I i) const {
    return {p_ - static_cast<ptrdiff_t>(i), base_, size_};
  }
  ptrdiff_t operator-(const checked_ptr& other) const { return p_ - other.p_; }
  template <std::integral I>
  checked_ptr& operator+=(I i) {
    p_ += static_cast<ptrdiff_t>(i);
    return *this;
  }
  template <std::integral I>
  checked_ptr& operator-=(I i) {
    p_ -= static_cast<ptrdiff_t>(i);
    return *this;
  }
  checked_ptr& operator++() {
    ++p_;
    return *this;
  }
  checked_ptr& operator--() {
    --p_;
    return *this;
  }
  checked_ptr operator++(int) {
    checked_ptr old = *this;
    ++p_;
    return old;
  }
  checked_ptr operator--(int) {
    checked_ptr old = *this;
    --p_;
    return old;
  }
  friend bool operator==(const checked_ptr& a, const checked_ptr& b) { return a.p_ == b.p_; }
  friend auto operator<=>(const checked_ptr& a, const checked_ptr& b) { return a.p_ <=> b.p_; }
  friend bool operator==(const checked_ptr& a, std::nullptr_t) { return a.p_ == nullptr; }
  explicit operator bool() const { return p_ != nullptr; }

  template <class To>
  checked_ptr<To> reinterpret() const {
    return {reinterpret_cast<To*>(const_cast<std::remove_const_t<T>*>(p_)), base_, size_};
  }

  // [p, p + count) checked as one range; the raw pointer, or nullptr after reporting.
  T* checked_range(ptrdiff_t offset, size_t count) const {
    T* q = p_ + offset;
    const size_t off = reinterpret_cast<const char*>(q) - base_;
    const size_t bytes = count * sizeof(T);
    if (size_ < bytes || off > size_ - bytes || reinterpret_cast<uintptr_t>(q) % alignof(T) != 0) {
      bad_access(base_, size_, q, count, sizeof(T), alignof(T), type_name(), std::is_const_v<T>);
      return nullptr;
    }
    return q;
  }

  T* raw() const { return p_; }
  const char* alloc_base() const { return base_; }
  size_t alloc_size() const { return size_; }

 private:
  static const char* type_name() { return type_label<std::remove_cv_t<T>>::name; }
  T* checked(T* q) const {
    const size_t off = reinterpret_cast<const char*>(q) - base_;
    if (off > size_ - sizeof(T) || size_ < sizeof(T) ||
        reinterpret_cast<uintptr_t>(q) % alignof(T) != 0) [[unlikely]]
      return static_cast<T*>(
          bad_access(base_, size_, q, 1, sizeof(T), alignof(T), type_name(), std::is_const_v<T>));
    return q;
  }

  T* p_ = nullptr;
  const char* base_ = nullptr;
  size_t size_ = 0;
};

// ---- launch ------------------------------------------------------------------------------------
using KernelInvoke = void (*)(const void* body);
void launch_erased(const char* kernel_name, const void* kernel, dim3 grid, dim3 block, size_t smem,
                   KernelInvoke invoke, const void* body);

// The key cudaFuncSetAttribute and a launch share for a kernel: its address.
template <class F>
inline const void* kernel_key(F* kernel) {
  return reinterpret_cast<const void*>(kernel);
}

// Runs body() once per CUDA thread of the grid; throws KernelError when a check failed.
template <class F>
void launch(const char* kernel_name, const void* kernel, dim3 grid, dim3 block, size_t smem, F body) {
  launch_erased(kernel_name, kernel, grid, block, smem,
                [](const void* f) { (*static_cast<const F*>(f))(); }, &body);
}

// Launches started so far (a valid configuration, whatever the kernel then did) by kernel name:
// the kernel expression RT_LAUNCH was given, as written.
std::map<std::string, uint64_t> launch_counts();

// ---- shared memory -----------------------------------------------------------------------------
// The block's dynamic shared memory (the launch's smem bytes), placed at exactly `align` (aligned
// to it, not to twice it) as the declaration in cuda/launch.h promises no more.
void* dynamic_shared(size_t align);
// The block's copy of a static __shared__ variable, allocated (NaN-filled, exactly `align`-aligned,
// fenced by unaddressable bytes) when the first thread of the block reaches the declaration.
void* static_shared(const void* key, size_t bytes, size_t align, const char* name, const char* site);
// A thread reached a kernel declared __launch_bounds__(max_threads, ...): fails a bigger block.
void check_launch_bounds(long long max_threads, long long min_blocks = 0, long long max_cluster = 0);

// ---- block and warp synchronisation ------------------------------------------------------------
enum class BarrierKind : uint8_t { plain, count, all, any };
int syncthreads(const char* site, BarrierKind kind, int predicate);

enum class WarpOp : uint8_t {
  sync, shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all,
  wmma_load, wmma_store, wmma_mma  // warp-wide: every live lane of the warp must make the call
};
// A warp collective: waits for the live lanes of `mask`, then returns this lane's result (the
// shuffled bits, or the vote).
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width);
unsigned active_mask();

template <class T>
inline uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>,
                "warp shuffles move values of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <class T>
inline T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

}  // namespace emu

#define threadIdx (static_cast<const uint3&>(::emu::tl.thread_idx))
#define blockIdx (static_cast<const uint3&>(::emu::tl.block_idx))
#define blockDim (static_cast<const dim3&>(::emu::tl.block_dim))
#define gridDim (static_cast<const dim3&>(::emu::tl.grid_dim))

#define RT_EMU_STRINGIFY2(x) #x
#define RT_EMU_STRINGIFY(x) RT_EMU_STRINGIFY2(x)
#define RT_EMU_SITE __FILE__ ":" RT_EMU_STRINGIFY(__LINE__)

// `__shared__ __align__(align) T name dims;` as instrument.mjs rewrites it: `name` is a reference to
// the block's checked copy (align 0: the type's own).
#define RT_EMU_SHARED(align, T, name, dims)                                                          \
  static constexpr char rt_emu_shared_key_##name = 0;                                                \
  std::type_identity_t<T>(&name) dims = *static_cast<std::type_identity_t<T>(*) dims>(               \
      ::emu::static_shared(&rt_emu_shared_key_##name, sizeof(std::type_identity_t<T> dims),          \
                           std::max<size_t>(align, alignof(std::type_identity_t<T> dims)), #name,     \
                           RT_EMU_SITE))
#define RT_EMU_LAUNCH_BOUNDS(...) ::emu::check_launch_bounds(__VA_ARGS__)
#define __syncthreads() ((void)::emu::syncthreads(RT_EMU_SITE, ::emu::BarrierKind::plain, 0))
#define __syncthreads_count(pred) ::emu::syncthreads(RT_EMU_SITE, ::emu::BarrierKind::count, (pred) ? 1 : 0)
#define __syncthreads_and(pred) ::emu::syncthreads(RT_EMU_SITE, ::emu::BarrierKind::all, (pred) ? 1 : 0)
#define __syncthreads_or(pred) ::emu::syncthreads(RT_EMU_SITE, ::emu::BarrierKind::any, (pred) ? 1 : 0)

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::emu::warp_collective(::emu::WarpOp::sync, mask, 0, 0, 32);
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = warpSize) {
  return ::emu::from_bits<T>(::emu::warp_collective(::emu::WarpOp::shfl, mask, ::emu::to_bits(v), src_lane, width));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  return ::emu::from_bits<T>(::emu::warp_collective(::emu::WarpOp::shfl_up, mask, ::emu::to_bits(v), int(delta), width));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  return ::emu::from_bits<T>(::emu::warp_collective(::emu::WarpOp::shfl_down, mask, ::emu::to_bits(v), int(delta), width));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
  return ::emu::from_bits<T>(::emu::warp_collective(::emu::WarpOp::shfl_xor, mask, ::emu::to_bits(v), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return unsigned(::emu::warp_collective(::emu::WarpOp::ballot, mask, predicate != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int predicate) {
  return int(::emu::warp_collective(::emu::WarpOp::any, mask, predicate != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int predicate) {
  return int(::emu::warp_collective(::emu::WarpOp::all, mask, predicate != 0, 0, 32));
}
inline unsigned __activemask() { return ::emu::active_mask(); }

// ---- atomics -----------------------------------------------------------------------------------
namespace emu {
template <class T>
inline T* atomic_target(T* p) {
  return p;
}
template <class T>
inline T* atomic_target(const checked_ptr<T>& p) {
  return &*p;
}
}  // namespace emu

#define RT_EMU_ATOMIC_RMW(name, T, expr_fetch)                                          \
  inline T name(T* address, T val) {                                                    \
    std::atomic_ref<T> ref(*address);                                                   \
    return expr_fetch;                                                                  \
  }                                                                                     \
  inline T name(const ::emu::checked_ptr<T>& address, T val) { return name(::emu::atomic_target(address), val); }

RT_EMU_ATOMIC_RMW(atomicAdd, int, ref.fetch_add(val))
RT_EMU_ATOMIC_RMW(atomicAdd, unsigned, ref.fetch_add(val))
RT_EMU_ATOMIC_RMW(atomicAdd, unsigned long long, ref.fetch_add(val))
RT_EMU_ATOMIC_RMW(atomicAdd, float, ref.fetch_add(val))
RT_EMU_ATOMIC_RMW(atomicAdd, double, ref.fetch_add(val))
RT_EMU_ATOMIC_RMW(atomicSub, int, ref.fetch_sub(val))
RT_EMU_ATOMIC_RMW(atomicSub, unsigned, ref.fetch_sub(val))
RT_EMU_ATOMIC_RMW(atomicExch, int, ref.exchange(val))
RT_EMU_ATOMIC_RMW(atomicExch, unsigned, ref.exchange(val))
RT_EMU_ATOMIC_RMW(atomicExch, unsigned long long, ref.exchange(val))
RT_EMU_ATOMIC_RMW(atomicExch, float, ref.exchange(val))
RT_EMU_ATOMIC_RMW(atomicAnd, int, ref.fetch_and(val))
RT_EMU_ATOMIC_RMW(atomicAnd, unsigned, ref.fetch_and(val))
RT_EMU_ATOMIC_RMW(atomicOr, int, ref.fetch_or(val))
RT_EMU_ATOMIC_RMW(atomicOr, unsigned, ref.fetch_or(val))
RT_EMU_ATOMIC_RMW(atomicXor, int, ref.fetch_xor(val))
RT_EMU_ATOMIC_RMW(atomicXor, unsigned, ref.fetch_xor(val))

namespace emu {
template <class T, class Better>
inline T atomic_select(T* address, T val, Better better) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load();
  while (better(val, old) && !ref.compare_exchange_weak(old, val)) {
  }
  return old;
}
}  // namespace emu

#define RT_EMU_ATOMIC_MINMAX(T)                                                                  \
  inline T atomicMax(T* a, T v) { return ::emu::atomic_select(a, v, [](T x, T y) { return x > y; }); } \
  inline T atomicMin(T* a, T v) { return ::emu::atomic_select(a, v, [](T x, T y) { return x < y; }); } \
  inline T atomicMax(const ::emu::checked_ptr<T>& a, T v) { return atomicMax(::emu::atomic_target(a), v); } \
  inline T atomicMin(const ::emu::checked_ptr<T>& a, T v) { return atomicMin(::emu::atomic_target(a), v); }
RT_EMU_ATOMIC_MINMAX(int)
RT_EMU_ATOMIC_MINMAX(unsigned)
RT_EMU_ATOMIC_MINMAX(long long)
RT_EMU_ATOMIC_MINMAX(unsigned long long)

#define RT_EMU_ATOMIC_CAS(T)                                                                     \
  inline T atomicCAS(T* address, T compare, T val) {                                             \
    std::atomic_ref<T> ref(*address);                                                            \
    ref.compare_exchange_strong(compare, val);                                                   \
    return compare;                                                                              \
  }                                                                                              \
  inline T atomicCAS(const ::emu::checked_ptr<T>& address, T compare, T val) {                   \
    return atomicCAS(::emu::atomic_target(address), compare, val);                               \
  }
RT_EMU_ATOMIC_CAS(int)
RT_EMU_ATOMIC_CAS(unsigned)
RT_EMU_ATOMIC_CAS(unsigned long long)
#undef RT_EMU_ATOMIC_RMW
#undef RT_EMU_ATOMIC_MINMAX
#undef RT_EMU_ATOMIC_CAS

// ---- math --------------------------------------------------------------------------------------
using std::isfinite;
using std::isinf;
using std::isnan;

template <class A, class B>
  requires(std::is_arithmetic_v<A> && std::is_arithmetic_v<B>)
inline std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>) return std::fmin(C(a), C(b));
  else return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B>
  requires(std::is_arithmetic_v<A> && std::is_arithmetic_v<B>)
inline std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>) return std::fmax(C(a), C(b));
  else return C(a) < C(b) ? C(b) : C(a);
}

inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __saturatef(float x) { return x >= 1.0f ? 1.0f : x > 0.0f ? x : 0.0f; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
  return (x >> 16) | (x << 16);
}

template <class T>
inline T __ldg(const T* p) {
  return *p;
}
template <class T>
inline std::remove_const_t<T> __ldg(const ::emu::checked_ptr<T>& p) {
  return *p;
}

// ---- bf16 --------------------------------------------------------------------------------------
struct __align__(2) __nv_bfloat16 {
  unsigned short __x;

  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(from_float(f)) {}
  __nv_bfloat16(double d) : __x(from_float(float(d))) {}
  template <std::integral I>
  __nv_bfloat16(I v) : __x(from_float(float(v))) {}
  operator float() const { return std::bit_cast<float>(uint32_t(__x) << 16); }

  static unsigned short from_float(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;  // CUDA's canonical NaN
    u += 0x7fffu + ((u >> 16) & 1u);                       // round to nearest, ties to even
    return static_cast<unsigned short>(u >> 16);
  }
};
using nv_bfloat16 = __nv_bfloat16;

struct __align__(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
using nv_bfloat162 = __nv_bfloat162;
namespace emu {
RT_EMU_TYPE_LABEL(__nv_bfloat16, "bf16")
RT_EMU_TYPE_LABEL(__nv_bfloat162, "bf16x2")
}  // namespace emu
#undef RT_EMU_TYPE_LABEL

inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return float(h); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__nv_bfloat16(a), __nv_bfloat16(b)}; }
inline __nv_bfloat162 __float22bfloat162_rn(float2 f) { return {__nv_bfloat16(f.x), __nv_bfloat16(f.y)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 h) { return {float(h.x), float(h.y)}; }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return {a, b}; }
inline float __low2float(__nv_bfloat162 h) { return float(h.x); }
inline float __high2float(__nv_bfloat162 h) { return float(h.y); }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 h) { return h.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 h) { return h.y; }

inline __nv_bfloat16 operator+(const __nv_bfloat16& a, const __nv_bfloat16& b) { return float(a) + float(b); }
inline __nv_bfloat16 operator-(const __nv_bfloat16& a, const __nv_bfloat16& b) { return float(a) - float(b); }
inline __nv_bfloat16 operator*(const __nv_bfloat16& a, const __nv_bfloat16& b) { return float(a) * float(b); }
inline __nv_bfloat16 operator/(const __nv_bfloat16& a, const __nv_bfloat16& b) { return float(a) / float(b); }
inline __nv_bfloat16 operator-(const __nv_bfloat16& a) { return -float(a); }
inline __nv_bfloat16& operator+=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = a + b; }
inline __nv_bfloat16& operator-=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = a - b; }
inline __nv_bfloat16& operator*=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = a * b; }
inline __nv_bfloat16& operator/=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = a / b; }
inline bool operator==(const __nv_bfloat16& a, const __nv_bfloat16& b) { return float(a) == float(b); }
inline bool operator!=(const __nv_bfloat16& a, const __nv_bfloat16& b) { return float(a) != float(b); }
inline bool operator<(const __nv_bfloat16& a, const __nv_bfloat16& b) { return float(a) < float(b); }
inline bool operator<=(const __nv_bfloat16& a, const __nv_bfloat16& b) { return float(a) <= float(b); }
inline bool operator>(const __nv_bfloat16& a, const __nv_bfloat16& b) { return float(a) > float(b); }
inline bool operator>=(const __nv_bfloat16& a, const __nv_bfloat16& b) { return float(a) >= float(b); }

// ---- WMMA --------------------------------------------------------------------------------------
namespace emu {
// A WMMA pointer argument: raw (shared memory) or a checked global pointer.
template <class T>
struct TilePointer {
  T* raw = nullptr;
  checked_ptr<T> global;
  bool is_global = false;
  TilePointer(T* p) : raw(p) {}
  TilePointer(checked_ptr<T> p) : global(p), is_global(true) {}
  template <class U>
    requires(!std::is_same_v<U, T> && std::is_convertible_v<U*, T*>)
  TilePointer(U* p) : raw(p) {}
  template <class U>
    requires(!std::is_same_v<U, T> && std::is_convertible_v<U*, T*>)
  TilePointer(checked_ptr<U> p) : global(p), is_global(true) {}

  // `len` elements starting at offset: checked for a global pointer (nullptr after reporting).
  T* span(ptrdiff_t offset, size_t len) const {
    return is_global ? global.checked_range(offset, len) : raw + offset;
  }
  T* base() const { return is_global ? global.raw() : raw; }
  const void* address() const { return base(); }
};
// Reports WMMA misuse (alignment, ldm); false when the call must be skipped.
bool wmma_check(const void* ptr, unsigned ldm, size_t element_bytes, const char* what);
// One lane's WMMA call, in the warp's order of calls: every lane of the warp must make the same
// calls with the same pointer, ldm and layout (reported otherwise, and when a lane exits without
// making a call the others made). It does not wait for the other lanes.
void wmma_call(WarpOp op, const void* ptr, unsigned ldm, int layout, int kind);
// The running launch's seeded (lane, element) -> tile position (row * cols + col) mapping of a
// fragment kind: lane l's elements are [l * per_lane, (l + 1) * per_lane).
const uint16_t* wmma_lane_map(int kind, int positions);
// The calling thread's lane in its warp.
inline int lane_id() {
  const ThreadState& s = tl;
  return int((s.thread_idx.z * s.block_dim.y + s.thread_idx.y) * s.block_dim.x + s.thread_idx.x) % 32;
}
// One lane's operands of an mma_sync; the lane completing the warp's call runs compute() over all 32.
struct MmaLane {
  void (*compute)(MmaLane* const* lanes);
  const void* a;
  const void* b;
  const void* c;
  void* d;
};
}  // namespace emu

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K>
struct tile_shape;
template <int M, int N, int K>
struct tile_shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K, use = 0;
};
template <int M, int N, int K>
struct tile_shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N, use = 1;
};
template <int M, int N, int K>
struct tile_shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N, use = 2;
};

// As on sm_80, each lane holds rows * cols / 32 elements of the tile; which (row, col) element
// x[i] of lane l is, is a seeded random mapping per launch and fragment kind, so code that
// assumes a mapping fails.
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert((M == 16 && N == 16 && K == 16) || (M == 32 && N == 8 && K == 16) ||
                    (M == 8 && N == 32 && K == 16),
                "cuda-emu wmma: shapes 16x16x16, 32x8x16, 8x32x16");
  static_assert(std::is_same_v<Use, accumulator> ? std::is_same_v<T, float>
                                                 : std::is_same_v<T, __nv_bfloat16>,
                "cuda-emu wmma: bf16 matrix_a/matrix_b and float accumulators");
  static_assert(std::is_same_v<Use, accumulator> == std::is_same_v<Layout, void>,
                "cuda-emu wmma: matrix_a/matrix_b need row_major or col_major, accumulators none");
  static constexpr int rows = tile_shape<Use, M, N, K>::rows;
  static constexpr int cols = tile_shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols / 32;
  // Distinct per use, shape and layout (< 64).
  static constexpr int kind = tile_shape<Use, M, N, K>::use * 16 + (M == 16 ? 0 : M == 32 ? 1 : 2) * 4 +
                              (std::is_same_v<Layout, row_major> ? 1 : std::is_same_v<Layout, col_major> ? 2 : 0);
  using element_type = T;
  using storage_element_type = T;
  T x[num_elements];
};

template <class Use, int M, int N, int K, class T, class Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const std::type_identity_t<T>& value) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = value;
}

namespace detail {
// Tile element (r, c) of a tile stored at p with leading dimension ldm.
inline ptrdiff_t tile_offset(int r, int c, unsigned ldm, bool col_major) {
  return col_major ? ptrdiff_t(c) * ldm + r : ptrdiff_t(r) * ldm + c;
}

// The whole tile must lie in the allocation of a global pointer; false after reporting.
template <class Frag, class T>
inline bool tile_in_bounds(const ::emu::TilePointer<T>& p, unsigned ldm, bool col_major) {
  if (!p.is_global) return true;
  const int outer = col_major ? Frag::cols : Frag::rows, inner = col_major ? Frag::rows : Frag::cols;
  for (int o = 0; o < outer; ++o)
    if (p.span(ptrdiff_t(o) * ldm, inner) == nullptr) return false;
  return true;
}

// This lane's elements only, read now.
template <class Frag, class T>
inline void load(Frag& f, const ::emu::TilePointer<const T>& p, unsigned ldm, bool col_major) {
  ::emu::wmma_call(::emu::WarpOp::wmma_load, p.address(), ldm, col_major, Frag::kind);
  if (!::emu::wmma_check(p.address(), ldm, sizeof(T), "load_matrix_sync")) return;
  if (!tile_in_bounds<Frag>(p, ldm, col_major)) return;
  const uint16_t* map = ::emu::wmma_lane_map(Frag::kind, Frag::rows * Frag::cols) + ::emu::lane_id() * Frag::num_elements;
  const T* base = p.base();
  for (int e = 0; e < Frag::num_elements; ++e)
    f.x[e] = base[tile_offset(map[e] / Frag::cols, map[e] % Frag::cols, ldm, col_major)];
}
}  // namespace detail

template <class Use, int M, int N, int K, class Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, __nv_bfloat16, Layout>& f,
                             ::emu::TilePointer<const __nv_bfloat16> p, unsigned ldm) {
  detail::load(f, p, ldm, std::is_same_v<Layout, col_major>);
}
template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& f,
                             ::emu::TilePointer<const float> p, unsigned ldm, layout_t layout) {
  detail::load(f, p, ldm, layout == mem_col_major);
}

namespace detail {
// D = A B + C over the whole warp, gathered from and scattered to the 32 lanes' fragments. A
// bf16 x bf16 product is exact in float, so acc + a * b rounds once, as fmaf would; k is summed
// in order.
template <int M, int N, int K, class LayoutA, class LayoutB>
void mma_compute(::emu::MmaLane* const* lanes) {
  using FA = fragment<matrix_a, M, N, K, __nv_bfloat16, LayoutA>;
  using FB = fragment<matrix_b, M, N, K, __nv_bfloat16, LayoutB>;
  using FC = fragment<accumulator, M, N, K, float>;
  const uint16_t* map_a = ::emu::wmma_lane_map(FA::kind, M * K);
  const uint16_t* map_b = ::emu::wmma_lane_map(FB::kind, K * N);
  const uint16_t* map_c = ::emu::wmma_lane_map(FC::kind, M * N);
  float a[M * K], b[K * N], d[M * N];
  for (int l = 0; l < 32; ++l) {
    const auto& fa = *static_cast<const FA*>(lanes[l]->a);
    const auto& fb = *static_cast<const FB*>(lanes[l]->b);
    const auto& fc = *static_cast<const FC*>(lanes[l]->c);
    for (int e = 0; e < FA::num_elements; ++e) a[map_a[l * FA::num_elements + e]] = float(fa.x[e]);
    for (int e = 0; e < FB::num_elements; ++e) b[map_b[l * FB::num_elements + e]] = float(fb.x[e]);
    for (int e = 0; e < FC::num_elements; ++e) d[map_c[l * FC::num_elements + e]] = fc.x[e];
  }
  for (int i = 0; i < M; ++i)
    for (int k = 0; k < K; ++k) {
      const float aik = a[i * K + k];
      for (int j = 0; j < N; ++j) d[i * N + j] = std::fma(aik, b[k * N + j], d[i * N + j]);
    }
  for (int l = 0; l < 32; ++l) {
    auto& fd = *static_cast<FC*>(lanes[l]->d);
    for (int e = 0; e < FC::num_elements; ++e) fd.x[e] = d[map_c[l * FC::num_elements + e]];
  }
}
}  // namespace detail

// Warp-synchronous: waits for every lane of the warp, then computes once for all of them.
template <int M, int N, int K, class LayoutA, class LayoutB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d,
                     const fragment<matrix_a, M, N, K, __nv_bfloat16, LayoutA>& a,
                     const fragment<matrix_b, M, N, K, __nv_bfloat16, LayoutB>& b,
                     const fragment<accumulator, M, N, K, float>& c) {
  ::emu::wmma_call(::emu::WarpOp::wmma_mma, nullptr, 0, 0, fragment<matrix_a, M, N, K, __nv_bfloat16, LayoutA>::kind);
  ::emu::MmaLane self{&detail::mma_compute<M, N, K, LayoutA, LayoutB>, &a, &b, &c, &d};
  ::emu::warp_collective(::emu::WarpOp::wmma_mma, 0xffffffffu, reinterpret_cast<uintptr_t>(&self), 0, 32);
}

// This lane's elements only, written now.
template <int M, int N, int K>
inline void store_matrix_sync(::emu::TilePointer<float> p, const fragment<accumulator, M, N, K, float>& f,
                              unsigned ldm, layout_t layout) {
  using Frag = fragment<accumulator, M, N, K, float>;
  const bool col = layout == mem_col_major;
  ::emu::wmma_call(::emu::WarpOp::wmma_store, p.address(), ldm, col, Frag::kind);
  if (!::emu::wmma_check(p.address(), ldm, sizeof(float), "store_matrix_sync")) return;
  if (!detail::tile_in_bounds<Frag>(p, ldm, col)) return;
  const uint16_t* map = ::emu::wmma_lane_map(Frag::kind, M * N) + ::emu::lane_id() * Frag::num_elements;
  float* base = p.base();
  for (int e = 0; e < Frag::num_elements; ++e) base[detail::tile_offset(map[e] / N, map[e] % N, ldm, col)] = f.x[e];
}

}  // namespace nvcuda::wmma
