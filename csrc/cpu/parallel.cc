// A small fork-join pool: the caller publishes a job (a chunk counter and a function), workers
// and caller claim chunks with an atomic counter, the caller waits until every chunk is done.
#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace rt::cpu {
namespace {

// A hint to the core that this thread is spinning (frees resources for its sibling).
inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Set while a thread runs pool work, so a parallel_for nested inside one runs inline.
thread_local bool inside_parallel_region = false;

struct Job {
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0, chunk = 1, chunks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::exception_ptr error;
  std::mutex error_mutex;

  // Claims and runs chunks until none are left.
  void work() {
    for (;;) {
      int64_t c = next.fetch_add(1);
      if (c >= chunks) return;
      int64_t begin = c * chunk, end = std::min(n, begin + chunk);
      try {
        inside_parallel_region = true;
        (*fn)(begin, end);
        inside_parallel_region = false;
      } catch (...) {
        inside_parallel_region = false;
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

class Pool {
 public:
  explicit Pool(int threads) { resize(threads); }
  ~Pool() { stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    stop();
    stopping_ = false;
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { loop(); });
  }

  void run(Job& job) {
    std::lock_guard<std::mutex> serial(run_mutex_);  // one parallel region at a time
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    job.work();
    while (job.done.load(std::memory_order_acquire) < job.chunks) std::this_thread::yield();
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = nullptr;
    // Workers that woke late may still hold the job pointer; wait until they let go.
    while (active_ > 0) {
      mutex_.unlock();
      std::this_thread::yield();
      mutex_.lock();
    }
  }

 private:
  void loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      lock.unlock();
      spin_while_idle(seen);
      lock.lock();
      wake_.wait(lock, [&] { return stopping_ || (generation_.load() != seen && job_ != nullptr); });
      if (stopping_) return;
      seen = generation_.load();
      Job* job = job_;
      ++active_;
      lock.unlock();
      job->work();
      lock.lock();
      --active_;
    }
  }

  // Ops run several parallel regions back to back (a GEMM has three per k block), and waking a
  // sleeping worker costs tens of microseconds on a VM: a worker that just finished watches for
  // the next region for about kSpinMicroseconds before it goes to sleep.
  void spin_while_idle(uint64_t seen) const {
    constexpr auto kSpinMicroseconds = std::chrono::microseconds(50);
    const auto until = std::chrono::steady_clock::now() + kSpinMicroseconds;
    while (generation_.load(std::memory_order_acquire) == seen) {
      for (int i = 0; i < 32; ++i) spin_pause();
      if (std::chrono::steady_clock::now() >= until) return;
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_, run_mutex_;
  std::condition_variable wake_;
  Job* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  int active_ = 0;
  bool stopping_ = false;
};

int default_threads() {
  if (const char* env = std::getenv("REALTUNE_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

Pool& pool() {
  static Pool instance(default_threads());
  return instance;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int n) { pool().resize(std::max(1, n)); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int threads = num_threads();
  if (threads == 1 || n <= grain || inside_parallel_region) {
    fn(0, n);
    return;
  }
  // A few chunks per thread balance uneven work without much claiming overhead.
  int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, int64_t(threads) * 4);
  Job job;
  job.fn = &fn;
  job.n = n;
  job.chunk = (n + chunks - 1) / chunks;
  job.chunks = (n + job.chunk - 1) / job.chunk;
  pool().run(job);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace rt::cpu
