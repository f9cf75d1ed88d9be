// Native helpers for the benchmark harness (bench/), in realtune_dev.node: the machine's copy
// bandwidth, clock and FMA peak measured in the same run as the ops (on realtune.node's thread
// pool, so setNumThreads applies), and OpenBLAS loaded at run time as the GEMM peer.
#include <dlfcn.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "../cpu/isa.h"
#include "../cpu/parallel.h"
#include "dev_binding.h"

namespace rt::napi {

namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// A STREAM-style copy with ordinary stores (what an elementwise op does), split over the pool.
void copy_loop(float* __restrict__ dst, const float* __restrict__ src, int64_t n) {
  cpu::parallel_for(n, 1 << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) dst[i] = src[i];
  });
}

void copy_memcpy(float* dst, const float* src, int64_t n) {
  cpu::parallel_for(n, 1 << 16, [&](int64_t lo, int64_t hi) {
    std::memcpy(dst + lo, src + lo, size_t(hi - lo) * sizeof(float));
  });
}

// Independent FMA chains per thread (16 accumulators cover latency x pipes on current cores);
// returns FLOP per second summed over the pool's threads.
template <class Body>
double fma_rate(int64_t iterations_per_thread, int64_t flops_per_iteration, const Body& body) {
  const int threads = cpu::num_threads();
  std::vector<float> sinks(size_t(threads), 0.f);
  body(1000, sinks.data());  // warm up the pipes and the clock
  const double t0 = seconds_now();
  cpu::parallel_tasks(threads, [&](int64_t t) { body(iterations_per_thread, sinks.data() + t); });
  const double elapsed = seconds_now() - t0;
  volatile float keep = sinks[0];
  (void)keep;
  return double(threads) * double(iterations_per_thread) * double(flops_per_iteration) / elapsed;
}

__attribute__((target("avx512f,fma"))) void fma_avx512(int64_t iterations, float* sink) {
  __m512 acc[16];
  for (int j = 0; j < 16; ++j) acc[j] = _mm512_set1_ps(float(j));
  const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) acc[j] = _mm512_fmadd_ps(acc[j], mul, add);
  }
  __m512 total = acc[0];
  for (int j = 1; j < 16; ++j) total = _mm512_add_ps(total, acc[j]);
  *sink = _mm512_reduce_add_ps(total);
}

__attribute__((target("avx2,fma"))) void fma_avx2(int64_t iterations, float* sink) {
  __m256 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_ps(float(j));
  const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) acc[j] = _mm256_fmadd_ps(acc[j], mul, add);
  }
  float lanes[8];
  __m256 total = acc[0];
  for (int j = 1; j < 12; ++j) total = _mm256_add_ps(total, acc[j]);
  _mm256_storeu_ps(lanes, total);
  *sink = lanes[0];
}

// OpenBLAS, found at run time. Pointers stay null when it is not installed.
struct OpenBlas {
  using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*,
                         int);
  void* handle = nullptr;
  std::string path, error;
  Sgemm sgemm = nullptr;
  void (*set_num_threads)(int) = nullptr;
  char* (*get_corename)() = nullptr;
  char* (*get_config)() = nullptr;
};

const OpenBlas& openblas() {
  static const OpenBlas lib = [] {
    OpenBlas o;
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("REALTUNE_OPENBLAS")) candidates.emplace_back(env);
    for (const char* c : {"/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
                          "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
                          "/usr/lib/x86_64-linux-gnu/openblas-serial/libopenblas.so.0",
                          "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0", "libopenblas.so.0",
                          "libopenblas.so"})
      candidates.emplace_back(c);
    for (const auto& c : candidates) {
      o.handle = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (o.handle == nullptr) {
        const char* why = dlerror();
        o.error += (o.error.empty() ? "" : "; ") + std::string(why ? why : c.c_str());
        continue;
      }
      o.sgemm = reinterpret_cast<OpenBlas::Sgemm>(dlsym(o.handle, "cblas_sgemm"));
      o.set_num_threads = reinterpret_cast<void (*)(int)>(dlsym(o.handle, "openblas_set_num_threads"));
      o.get_corename = reinterpret_cast<char* (*)()>(dlsym(o.handle, "openblas_get_corename"));
      o.get_config = reinterpret_cast<char* (*)()>(dlsym(o.handle, "openblas_get_config"));
      if (o.sgemm == nullptr) {
        o.error += "; " + c + " has no cblas_sgemm";
        dlclose(o.handle);
        o.handle = nullptr;
        continue;
      }
      o.path = c;
      o.error.clear();
      break;
    }
    return o;
  }();
  return lib;
}

const OpenBlas& require_openblas(const char* op) {
  const OpenBlas& o = openblas();
  RT_EXPECT(o.sgemm != nullptr, std::string(op) + ": OpenBLAS is not loaded (" + o.error + ")", Error::generic);
  return o;
}

float* cpu_f32(NativeTensor& t, int64_t numel, const char* op, const char* arg) {
  RT_EXPECT(t.device() == BackendId::cpu, std::string(op) + ": " + arg + " must be on cpu, got " + t.describe(),
         Error::type);
  expect_dtype(t, DType::f32, op, arg);
  expect_numel(t, numel, op, arg);
  return static_cast<float*>(t.data(op, arg));
}

}  // namespace

// benchCopyBandwidth(bytes, reps) -> { memcpy, loop }: median bytes/s (read + write counted) of a
// parallel memcpy and of a copy loop with ordinary stores, over two buffers of `bytes` each.
RT_DEV_BINDING(benchCopyBandwidth) {
  const int64_t bytes = int_arg(info, 0, "benchCopyBandwidth", "bytes");
  const int64_t reps = int_arg(info, 1, "benchCopyBandwidth", "reps");
  RT_EXPECT(bytes >= 4096 && reps >= 1, "benchCopyBandwidth: bytes must be >= 4096 and reps >= 1");
  const int64_t n = bytes / int64_t(sizeof(float));
  std::unique_ptr<float, FreeDeleter> src(static_cast<float*>(std::aligned_alloc(64, size_t(n) * 4)));
  std::unique_ptr<float, FreeDeleter> dst(static_cast<float*>(std::aligned_alloc(64, size_t(n) * 4)));
  RT_EXPECT(src && dst, "benchCopyBandwidth: out of memory", Error::generic);
  cpu::parallel_for(n, 1 << 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) src.get()[i] = float(i & 1023), dst.get()[i] = 0.f;
  });
  auto measure = [&](auto copy) {
    copy(dst.get(), src.get(), n);
    std::vector<double> rates;
    for (int64_t r = 0; r < reps; ++r) {
      const double t0 = seconds_now();
      copy(dst.get(), src.get(), n);
      rates.push_back(2.0 * double(n) * 4.0 / (seconds_now() - t0));
    }
    return median(rates);
  };
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("memcpy", measure(copy_memcpy));
  o.Set("loop", measure(copy_loop));
  return o;
}

// benchClockGHz() -> the core clock from a chain of dependent integer adds (one cycle each on
// every x86-64 core), on the calling thread.
RT_DEV_BINDING(benchClockGHz) {
  constexpr int64_t kIterations = 25'000'000, kChain = 8;
  uint64_t x = 0;
  auto run = [&](int64_t iterations) {
    for (int64_t i = 0; i < iterations; ++i)
      asm volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                   "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                   : "+r"(x));
  };
  run(kIterations / 10);
  std::vector<double> ghz;
  for (int r = 0; r < 5; ++r) {
    const double t0 = seconds_now();
    run(kIterations);
    ghz.push_back(double(kIterations * kChain) / (seconds_now() - t0) / 1e9);
  }
  return Napi::Number::New(info.Env(), *std::max_element(ghz.begin(), ghz.end()));
}

// benchFmaPeak() -> { flops, isa }: FLOP/s of independent vector FMAs on every pool thread, the
// machine's measured fp32 peak for the ISA the kernels use.
RT_DEV_BINDING(benchFmaPeak) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("isa", cpu::isa_name());
  constexpr int64_t kIterations = 4'000'000;
  double flops = 0;
  for (int r = 0; r < 3; ++r) {
    switch (cpu::isa()) {
      case cpu::Isa::avx512: flops = std::max(flops, fma_rate(kIterations, 16 * 16 * 2, fma_avx512)); break;
      case cpu::Isa::avx2: flops = std::max(flops, fma_rate(kIterations, 12 * 8 * 2, fma_avx2)); break;
      case cpu::Isa::scalar: break;
    }
  }
  o.Set("flops", flops);
  return o;
}

// openblasInfo() -> { loaded, path?, corename?, config?, error? }
RT_DEV_BINDING(openblasInfo) {
  const OpenBlas& lib = openblas();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("loaded", lib.sgemm != nullptr);
  if (lib.sgemm == nullptr) {
    o.Set("error", lib.error);
    return o;
  }
  o.Set("path", lib.path);
  if (lib.get_corename) o.Set("corename", std::string(lib.get_corename()));
  if (lib.get_config) o.Set("config", std::string(lib.get_config()));
  return o;
}

// openblasSetThreads(n)
RT_DEV_BINDING(openblasSetThreads) {
  const OpenBlas& lib = require_openblas("openblasSetThreads");
  const int64_t n = int_arg(info, 0, "openblasSetThreads", "threads");
  RT_EXPECT(n >= 1 && n <= 1024, "openblasSetThreads: threads must be in 1..1024");
  RT_EXPECT(lib.set_num_threads != nullptr, "openblasSetThreads: this OpenBLAS has no openblas_set_num_threads");
  lib.set_num_threads(int(n));
  return info.Env().Undefined();
}

// openblasSgemm(a, b, c, transA, transB, m, n, k, alpha, beta): row-major cblas_sgemm on cpu f32
// tensors, sizes checked against the tensors.
RT_DEV_BINDING(openblasSgemm) {
  const char* op = "openblasSgemm";
  const OpenBlas& lib = require_openblas(op);
  const bool trans_a = bool_arg(info, 3, op, "transA"), trans_b = bool_arg(info, 4, op, "transB");
  const int64_t m = int_arg(info, 5, op, "m"), n = int_arg(info, 6, op, "n"), k = int_arg(info, 7, op, "k");
  RT_EXPECT(m >= 1 && n >= 1 && k >= 1 && m < (1 << 30) && n < (1 << 30) && k < (1 << 30),
         "openblasSgemm: m, n, k must be in 1..2^30");
  const float alpha = float(number_arg(info, 8, op, "alpha")), beta = float(number_arg(info, 9, op, "beta"));
  const float* a = cpu_f32(tensor_arg(info, 0, op, "a"), m * k, op, "a");
  const float* b = cpu_f32(tensor_arg(info, 1, op, "b"), k * n, op, "b");
  float* c = cpu_f32(tensor_arg(info, 2, op, "c"), m * n, op, "c");
  constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
  lib.sgemm(kRowMajor, trans_a ? kTrans : kNoTrans, trans_b ? kTrans : kNoTrans, int(m), int(n), int(k), alpha, a,
            int(trans_a ? m : k), b, int(trans_b ? k : n), beta, c, int(n));
  return info.Env().Undefined();
}

}  // namespace rt::napi
