// The cpu backend's memory: 64-byte aligned host allocations, so every row start a kernel
// computes from an aligned base is friendly to 512-bit loads.
//
// Blocks of 64 KB and more come from mmap and are cached by exact (page-rounded) size when
// freed: a training step allocates the same sizes every step, and reusing them avoids both
// page faults on fresh memory and the heap growth glibc shows when large aligned allocations
// interleave with V8's small ones. The cache holds at most REALTUNE_CPU_CACHE_MB (default 1024).
#include <sys/mman.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "../backend.h"
#include "isa.h"
#include "memory.h"

namespace rt::cpu {
namespace {

// With REALTUNE_CHECK_MEMORY=1 (the tests set it) every allocation gets 64-byte guard zones on
// both sides, checked when it is freed: a kernel writing out of bounds is counted and reported
// by memory_check_failures() instead of silently corrupting the heap.
constexpr size_t kGuard = 64;
constexpr unsigned char kGuardByte = 0xA5;
constexpr size_t kHeader = 64;  // holds the block's total size, keeps the body 64-byte aligned
constexpr size_t kLargeBlock = 64 << 10;
constexpr size_t kPage = 4096;

bool env_flag(const char* name) {
  const char* env = std::getenv(name);
  return env != nullptr && env[0] == '1';
}

size_t cache_limit_bytes() {
  const char* env = std::getenv("REALTUNE_CPU_CACHE_MB");
  long mb = env ? std::atol(env) : 1024;
  return size_t(mb < 0 ? 0 : mb) << 20;
}

const bool checking = env_flag("REALTUNE_CHECK_MEMORY");
std::atomic<int64_t> guard_failures{0};

class BlockCache {
 public:
  void* take(size_t total) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(total);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= total;
    return p;
  }
  // Keeps the block for reuse; false when the cache is full (the caller unmaps it).
  bool give(void* p, size_t total) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ + total > limit_) return false;
    free_[total].push_back(p);
    cached_ += total;
    return true;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
  const size_t limit_ = cache_limit_bytes();
};

BlockCache& cache() {
  static BlockCache* instance = new BlockCache();  // never destroyed: tensors may outlive statics
  return *instance;
}

unsigned char* allocate_block(size_t total) {
  if (total < kLargeBlock) return static_cast<unsigned char*>(std::aligned_alloc(64, total));
  if (void* p = cache().take(total)) return static_cast<unsigned char*>(p);
  void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<unsigned char*>(p);
}

void free_block(unsigned char* p, size_t total) {
  if (total < kLargeBlock) {
    std::free(p);
  } else if (!cache().give(p, total)) {
    munmap(p, total);
  }
}

// Layout: [header: total size | pad to 64][guard][body, rounded to 64][guard]; guards only
// when checking. Large blocks are rounded up to whole pages.
void* alloc(size_t bytes) {
  size_t body = (bytes + 63) / 64 * 64;
  if (body == 0) body = 64;
  size_t total = kHeader + body + (checking ? 2 * kGuard : 0);
  if (total >= kLargeBlock) total = (total + kPage - 1) / kPage * kPage;
  unsigned char* p = allocate_block(total);
  if (p == nullptr) fail("cpu: out of memory allocating " + std::to_string(bytes) + " bytes");
  std::memcpy(p, &total, sizeof total);
  if (!checking) return p + kHeader;
  std::memcpy(p + sizeof total, &body, sizeof body);
  std::memset(p + kHeader, kGuardByte, kGuard);
  std::memset(p + kHeader + kGuard + body, kGuardByte, kGuard);
  return p + kHeader + kGuard;
}

bool guard_intact(const unsigned char* zone) {
  for (size_t i = 0; i < kGuard; ++i)
    if (zone[i] != kGuardByte) return false;
  return true;
}

void release(void* ptr) {
  auto* p = static_cast<unsigned char*>(ptr) - kHeader - (checking ? kGuard : 0);
  size_t total;
  std::memcpy(&total, p, sizeof total);
  if (checking) {
    size_t body;
    std::memcpy(&body, p + sizeof total, sizeof body);
    if (!guard_intact(p + kHeader) || !guard_intact(p + kHeader + kGuard + body)) guard_failures.fetch_add(1);
  }
  free_block(p, total);
}

void copy(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void probe(Backend& self) {
  self.available = true;
  self.name = std::string("host (") + isa_name() + ")";
}

const bool registered = register_backend_at_startup(
    Backend{BackendId::cpu, "cpu", false, "", "", alloc, release, copy, copy, copy, probe});

}  // namespace

int64_t memory_check_failures() { return guard_failures.load(); }
bool memory_checking() { return checking; }

}  // namespace rt::cpu
