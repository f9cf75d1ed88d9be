// The cpu backend's memory: 64-byte aligned host allocations, so every row start a kernel
// computes from an aligned base is friendly to 512-bit loads.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

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
const bool checking = [] {
  const char* env = std::getenv("REALTUNE_CHECK_MEMORY");
  return env != nullptr && env[0] == '1';
}();
std::atomic<int64_t> guard_failures{0};

void* alloc(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  size_t total = checking ? rounded + 2 * kGuard + 64 : rounded;
  auto* p = static_cast<unsigned char*>(std::aligned_alloc(64, total));
  if (p == nullptr) fail("cpu: out of memory allocating " + std::to_string(bytes) + " bytes");
  if (!checking) return p;
  // Layout: [size (8 bytes) | pad to 64][guard][body rounded][guard]
  std::memcpy(p, &rounded, sizeof rounded);
  std::memset(p + 64, kGuardByte, kGuard);
  std::memset(p + 64 + kGuard + rounded, kGuardByte, kGuard);
  return p + 64 + kGuard;
}

bool guard_intact(const unsigned char* zone) {
  for (size_t i = 0; i < kGuard; ++i)
    if (zone[i] != kGuardByte) return false;
  return true;
}

void release(void* body) {
  if (!checking) {
    std::free(body);
    return;
  }
  auto* p = static_cast<unsigned char*>(body) - kGuard - 64;
  size_t rounded;
  std::memcpy(&rounded, p, sizeof rounded);
  if (!guard_intact(p + 64) || !guard_intact(p + 64 + kGuard + rounded)) guard_failures.fetch_add(1);
  std::free(p);
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
