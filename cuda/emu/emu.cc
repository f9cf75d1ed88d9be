// The cuda-emu runtime: allocation registry, launches over a worker pool, the per-block fiber
// scheduler with its barrier and warp-collective checks, and the CUDA runtime API functions.
// See cuda_emu.h for the model and the exact list of what is supported and checked.
#include "cuda_emu.h"

#include <sys/mman.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if !defined(__x86_64__) || defined(RT_EMU_UCONTEXT)
#include <ucontext.h>
#endif

namespace emu {

constinit thread_local ThreadState tl{{0, 0, 0}, {0, 0, 0}, dim3(), dim3(), 0, ~uint64_t(0), {}, 0};

namespace {

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  return buf;
}

std::string str(uint3 v) { return format("(%u,%u,%u)", v.x, v.y, v.z); }

// ---- allocation registry: an immutable sorted snapshot, replaced on every malloc/free ---------
struct Registry {
  uint64_t version = 1;  // 0 means "no launch running" in ThreadState
  std::vector<Allocation> allocations;  // sorted by base
};

std::mutex g_registry_mutex;
std::atomic<std::shared_ptr<const Registry>> g_registry{std::make_shared<const Registry>()};
thread_local const Registry* tl_registry = nullptr;  // the running launch's snapshot

void update_registry(const void* base, size_t size, bool add) {
  std::lock_guard lock(g_registry_mutex);
  std::shared_ptr<const Registry> old = g_registry.load();
  auto next = std::make_shared<Registry>();
  next->version = old->version + 1;
  next->allocations = old->allocations;
  auto& v = next->allocations;
  auto at = std::lower_bound(v.begin(), v.end(), static_cast<const char*>(base),
                             [](const Allocation& a, const char* b) { return a.base < b; });
  if (add) v.insert(at, Allocation{static_cast<const char*>(base), size});
  else v.erase(at);
  g_registry.store(std::move(next));
}

const Allocation* lookup(const Registry& r, const char* p) {
  const auto& v = r.allocations;
  auto after = std::upper_bound(v.begin(), v.end(), p,
                                [](const char* q, const Allocation& a) { return q < a.base; });
  if (after == v.begin()) return nullptr;
  const Allocation& a = *(after - 1);
  return p <= a.base + a.size ? &a : nullptr;
}

// A whole byte range inside one live allocation.
bool range_is_allocated(const void* p, size_t bytes) {
  std::shared_ptr<const Registry> r = g_registry.load();
  const char* q = static_cast<const char*>(p);
  const Allocation* a = lookup(*r, q);
  return a != nullptr && size_t(q - a->base) + bytes <= a->size;
}

// ---- launches and errors ------------------------------------------------------------------------
struct LaunchState {
  const char* name;
  dim3 grid, block;
  size_t smem;
  size_t shared_limit;  // static + dynamic bytes a block may use (48 KB unless the kernel opted in)
  bool opted_in;
  uint64_t seed;        // this launch's thread orders and WMMA lane mappings
  uint64_t serial;      // launches since the process began: tells launches apart in caches
  KernelInvoke invoke;
  const void* body;
  const Registry* registry;
  uint64_t total_blocks;
  std::atomic<uint64_t> next_block{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::string error;
};

thread_local LaunchState* tl_launch = nullptr;

void record_error(const std::string& message) {
  LaunchState* launch = tl_launch;
  if (launch == nullptr) throw KernelError("cuda-emu: " + message);
  std::lock_guard lock(launch->error_mutex);
  if (launch->error.empty()) launch->error = message;
  launch->failed.store(true, std::memory_order_relaxed);
}

std::string here(bool with_thread) {
  std::string s = "block " + str(tl.block_idx);
  if (with_thread) s += ", thread " + str(tl.thread_idx);
  return s;
}

// ---- fiber stacks and the context switch --------------------------------------------------------
constexpr size_t kStackBytes = 256 * 1024;

struct Stack {
  char* low;   // guard page below
  char* top;
};

class StackPool {
 public:
  Stack acquire() {
    if (!free_.empty()) {
      Stack s = free_.back();
      free_.pop_back();
      return s;
    }
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* mem = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) throw std::bad_alloc();
    mprotect(mem, page, PROT_NONE);
    // Stagger the tops over the 64 cache-line offsets of a page: suspended fibers' frames then
    // spread over the cache sets instead of all competing for the same few.
    const size_t color = (all_.size() % 64) * 64;
    all_.push_back(Stack{static_cast<char*>(mem), static_cast<char*>(mem) + page + kStackBytes - color});
    return all_.back();
  }
  void release(Stack s) { free_.push_back(s); }
  ~StackPool() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    for (const Stack& s : all_) munmap(s.low, kStackBytes + page);
  }

 private:
  std::vector<Stack> free_;
  std::vector<Stack> all_;
};

#if defined(__x86_64__) && !defined(RT_EMU_UCONTEXT)
// switch(save, next): pushes the callee-saved registers, saves the stack pointer to *save and
// resumes the context whose stack pointer is `next`. The FP control words (MXCSR, x87 CW) are
// not switched: kernels never change them, and ldmxcsr/fldcw would dominate the cost.
extern "C" void rt_emu_switch(void** save, void* next);
extern "C" void rt_emu_trampoline();
asm(R"(
.text
.globl rt_emu_switch
.hidden rt_emu_switch
.type rt_emu_switch,@function
rt_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size rt_emu_switch, .-rt_emu_switch
.globl rt_emu_trampoline
.hidden rt_emu_trampoline
.type rt_emu_trampoline,@function
rt_emu_trampoline:
  movq %r12, %rdi
  callq *%r13
  ud2
.size rt_emu_trampoline, .-rt_emu_trampoline
)");

struct Context {
  void* sp = nullptr;
};

// A fresh context that calls entry(arg) on `stack` when first switched to.
void make_context(Context& c, const Stack& stack, void (*entry)(void*), void* arg) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack.top) & ~uintptr_t(15)) - 16;
  void** sp = reinterpret_cast<void**>(top);
  sp[-1] = reinterpret_cast<void*>(rt_emu_trampoline);
  sp[-2] = nullptr;                                // rbp
  sp[-3] = nullptr;                                // rbx
  sp[-4] = arg;                                    // r12
  sp[-5] = reinterpret_cast<void*>(entry);         // r13
  sp[-6] = nullptr;                                // r14
  sp[-7] = nullptr;                                // r15
  c.sp = sp - 7;
}

inline void switch_context(Context& from, Context& to) { rt_emu_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t uc;
};

void make_context(Context& c, const Stack& stack, void (*entry)(void*), void* arg) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack.low + sysconf(_SC_PAGESIZE);
  c.uc.uc_stack.ss_size = kStackBytes;
  c.uc.uc_link = nullptr;
  // makecontext passes int arguments: split the pointer.
  const uintptr_t a = reinterpret_cast<uintptr_t>(arg);
  const uintptr_t e = reinterpret_cast<uintptr_t>(entry);
  makecontext(&c.uc, reinterpret_cast<void (*)()>(+[](unsigned elo, unsigned ehi, unsigned alo, unsigned ahi) {
                reinterpret_cast<void (*)(void*)>((uintptr_t(ehi) << 32) | elo)(
                    reinterpret_cast<void*>((uintptr_t(ahi) << 32) | alo));
              }),
              4, unsigned(e), unsigned(e >> 32), unsigned(a), unsigned(a >> 32));
}

inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

// ---- the block scheduler ------------------------------------------------------------------------
enum class FiberState : uint8_t { fresh, runnable, at_barrier, at_warp_op, done };

struct Fiber {
  Context context;
  Stack stack{nullptr, nullptr};
  bool has_stack = false;
  FiberState state = FiberState::fresh;
  uint3 idx;
};

struct WmmaRecord {
  uint32_t index;  // the warp's call number
  WarpOp op;
  const void* ptr;
  unsigned ldm;
  int layout;
  int kind;
  int first_lane;
  unsigned seen;   // lanes that made this call
};

struct WarpSlots {
  unsigned exists = 0;   // lanes inside blockDim
  unsigned alive = 0;    // lanes that exist and have not exited
  unsigned arrived = 0;  // lanes waiting in a collective
  WarpOp op[32];
  unsigned mask[32];
  int arg[32];
  int width[32];
  uint64_t value[32];
  uint64_t result[32];
  // __syncwarp order for the race detector: completed __syncwarp calls of this warp, and the count
  // after the last one each lane took part in.
  uint32_t syncs = 0;
  uint32_t synced_at[32] = {};
  // WMMA calls made by each lane, and the calls some lanes made and others have not yet.
  uint32_t wmma_calls[32];
  std::vector<WmmaRecord> wmma_pending;
};

// The race detector's view of one byte of shared memory: the last writer and the reader(s) since,
// with the block-barrier epoch and their warp's __syncwarp count at the time.
struct ShadowByte {
  uint32_t w_epoch, w_sync, r_epoch, r_sync;
  uint16_t writer;  // thread + 1; 0: none
  uint16_t reader;  // thread + 1; 0: none; kManyReaders
  uint16_t r_warp;  // the readers' warp, kMixedWarps when they span warps
  uint32_t gen;     // addressable (inside a variable or the dynamic region) when it is the block's
  uint8_t atomic;   // bit 0: the write was atomic; bit 1: every read since was atomic
};
constexpr uint16_t kManyReaders = 0xffff, kMixedWarps = 0xffff;

// A block's shared memory: static variables from the bottom, the dynamic region at the top.
constexpr size_t kArenaBytes = 512 * 1024;
constexpr size_t kRedzone = 64;              // unaddressable bytes around every variable
constexpr size_t kMaxSharedOptIn = 232448;   // 227 KB: what sm_90 allows a block with the opt-in
constexpr size_t kDefaultShared = 48 * 1024;  // without it

struct SharedVariable {
  const void* key;
  size_t offset, bytes;
  const char* name;
  const char* site;
};

enum class Access : uint8_t { read, write, atomic_read, atomic_write };

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::sync: return "__syncwarp";
    case WarpOp::shfl: return "__shfl_sync";
    case WarpOp::shfl_up: return "__shfl_up_sync";
    case WarpOp::shfl_down: return "__shfl_down_sync";
    case WarpOp::shfl_xor: return "__shfl_xor_sync";
    case WarpOp::ballot: return "__ballot_sync";
    case WarpOp::any: return "__any_sync";
    case WarpOp::all: return "__all_sync";
    case WarpOp::wmma_load: return "wmma::load_matrix_sync";
    case WarpOp::wmma_store: return "wmma::store_matrix_sync";
    case WarpOp::wmma_mma: return "wmma::mma_sync";
  }
  return "?";
}

char* reserve_arena();
void release_arena(char* arena);

class Scheduler {
 public:
  Scheduler();
  ~Scheduler();
  void run_grid(LaunchState& launch);

  int syncthreads(const char* site, BarrierKind kind, int predicate);
  uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width);
  unsigned active_mask() const { return warps_[current_ / 32].alive; }
  void* dynamic_shared(size_t align);
  void* static_shared(const void* key, size_t bytes, size_t align, const char* name, const char* site);
  void check_launch_bounds(long long max_threads);
  void check_shared(uintptr_t p, size_t bytes, Access access, size_t align);
  void wmma_call(WarpOp op, const void* ptr, unsigned ldm, int layout, int kind);
  const uint16_t* wmma_lane_map(int kind, int positions);

 private:
  static void fiber_main(void* self);
  void run_block(uint64_t linear_block);
  void yield();
  [[noreturn]] void abort_block(std::string message, bool with_thread);
  void on_exit(int thread);
  bool try_complete(int warp);
  void report_deadlock();
  std::string describe_wait(int thread) const;
  void mark_shared(size_t offset, size_t bytes);
  void check_shared_total(size_t more, const char* what);
  std::string describe_shared(size_t offset) const;
  std::string thread_name(int thread) const { return "thread " + str(fibers_[thread].idx); }
  bool synced(int thread, uint16_t other_plus_1, uint32_t epoch, uint32_t sync) const;
  [[noreturn]] void report_race(size_t offset, Access access, const char* what, int other);
  std::string wmma_missing_lane(const WarpSlots& w, int warp, uint32_t calls);

  LaunchState* launch_ = nullptr;
  StackPool stacks_;
  Context scheduler_context_;
  std::vector<Fiber> fibers_;
  std::vector<WarpSlots> warps_;
  int threads_ = 0;
  int live_ = 0;
  int current_ = 0;
  bool aborted_ = false;
  // The block barrier in progress.
  const char* barrier_site_ = nullptr;
  int barrier_arrived_ = 0;
  int barrier_true_ = 0;
  BarrierKind barrier_kind_ = BarrierKind::plain;
  int barrier_result_ = 0;
  // Thread order: a seeded shuffle per scheduling round.
  std::vector<int> order_;
  uint64_t rng_ = 0;
  // Shared memory of the running block, and its race-detector state.
  char* arena_ = nullptr;
  ShadowByte* shadow_ = nullptr;
  std::vector<SharedVariable> variables_;
  size_t static_top_ = 0;     // first free arena offset for the next static variable
  size_t static_bytes_ = 0;   // the block's static shared memory as a GPU counts it
  char* dynamic_base_ = nullptr;
  size_t dynamic_align_ = 0;
  uint32_t epoch_ = 0;        // advanced by every block start and __syncthreads
  uint32_t block_gen_ = 0;    // the running block: ShadowByte::gen of its addressable bytes
  // WMMA lane mappings of the running launch, by fragment kind.
  uint64_t map_serial_ = ~uint64_t(0);
  std::vector<uint16_t> lane_maps_[64];
  bool lane_map_ready_[64] = {};
};

thread_local Scheduler* tl_scheduler = nullptr;

// ---- shared-memory arenas: one per scheduler, all in one reserved range -------------------------
// The compiler's ThreadSanitizer instrumentation of the kernel sources calls the __tsan_* hooks
// below for every load and store; one compare against this range sends shared-memory accesses to
// the checks and lets every other access go.
constexpr size_t kArenaSlots = 1024;
std::mutex g_arena_mutex;
char* g_arena_region = nullptr;
size_t g_arenas_used = 0;
std::vector<char*> g_free_arenas;
std::atomic<uintptr_t> g_arena_lo{0}, g_arena_span{0};

char* reserve_arena() {
  std::lock_guard lock(g_arena_mutex);
  if (g_arena_region == nullptr) {
    void* region = mmap(nullptr, kArenaSlots * kArenaBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED) throw std::bad_alloc();
    g_arena_region = static_cast<char*>(region);
    g_arena_lo.store(reinterpret_cast<uintptr_t>(region), std::memory_order_relaxed);
    g_arena_span.store(kArenaSlots * kArenaBytes, std::memory_order_relaxed);
  }
  if (!g_free_arenas.empty()) {
    char* arena = g_free_arenas.back();
    g_free_arenas.pop_back();
    return arena;
  }
  if (g_arenas_used == kArenaSlots) throw std::runtime_error("cuda-emu: more than 1024 threads launch kernels");
  char* arena = g_arena_region + g_arenas_used++ * kArenaBytes;
  if (mprotect(arena, kArenaBytes, PROT_READ | PROT_WRITE) != 0) throw std::bad_alloc();
  return arena;
}

void release_arena(char* arena) {
  std::lock_guard lock(g_arena_mutex);
  g_free_arenas.push_back(arena);
}

Scheduler::Scheduler() : arena_(reserve_arena()) {
  // calloc maps fresh zero pages: only the shadow of bytes a kernel uses costs memory.
  shadow_ = static_cast<ShadowByte*>(std::calloc(kArenaBytes, sizeof(ShadowByte)));
  if (shadow_ == nullptr) throw std::bad_alloc();
}

Scheduler::~Scheduler() {
  std::free(shadow_);
  release_arena(arena_);
}

Scheduler& scheduler_for_this_thread() {
  thread_local std::unique_ptr<Scheduler> s = std::make_unique<Scheduler>();
  return *s;
}

void Scheduler::run_grid(LaunchState& launch) {
  launch_ = &launch;
  tl_launch = &launch;
  tl_scheduler = this;
  tl_registry = launch.registry;
  tl.launch_registry_version = launch.registry->version;
  tl.block_dim = launch.block;
  tl.grid_dim = launch.grid;
  threads_ = static_cast<int>(launch.block.x * launch.block.y * launch.block.z);
  fibers_.resize(threads_);
  warps_.resize((threads_ + 31) / 32);
  order_.resize(threads_);
  for (int t = 0; t < threads_; ++t) order_[t] = t;
  for (int t = 0; t < threads_; ++t) {
    fibers_[t].idx = uint3{t % launch.block.x, (t / launch.block.x) % launch.block.y,
                           t / (launch.block.x * launch.block.y)};
  }
  while (!launch.failed.load(std::memory_order_relaxed)) {
    const uint64_t b = launch.next_block.fetch_add(1, std::memory_order_relaxed);
    if (b >= launch.total_blocks) break;
    try {
      run_block(b);
    } catch (const std::bad_alloc&) {
      record_error(here(false) + ": out of memory for fiber stacks");
    }
  }
  tl_launch = nullptr;
  tl_scheduler = nullptr;
  tl_registry = nullptr;
  tl.launch_registry_version = 0;
  launch_ = nullptr;
}

void Scheduler::fiber_main(void* self) {
  Scheduler* s = static_cast<Scheduler*>(self);
  // An exception must not unwind past this frame: nothing above it on the fiber stack can
  // handle one. The thread counts as exited.
  try {
    s->launch_->invoke(s->launch_->body);
  } catch (const std::exception& e) {
    record_error(here(true) + ": the kernel threw a C++ exception: " + e.what());
  } catch (...) {
    record_error(here(true) + ": the kernel threw a C++ exception");
  }
  const int t = s->current_;
  s->fibers_[t].state = FiberState::done;
  s->on_exit(t);
  switch_context(s->fibers_[t].context, s->scheduler_context_);
}

uint64_t mix(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

void Scheduler::run_block(uint64_t linear_block) {
  const dim3 g = launch_->grid;
  tl.block_idx = uint3{unsigned(linear_block % g.x), unsigned((linear_block / g.x) % g.y),
                       unsigned(linear_block / (uint64_t(g.x) * g.y))};
  for (Fiber& f : fibers_) f.state = FiberState::fresh;
  for (size_t w = 0; w < warps_.size(); ++w) {
    const int lanes = std::min(32, threads_ - int(w) * 32);
    warps_[w].exists = lanes == 32 ? ~0u : (1u << lanes) - 1;
    warps_[w].alive = warps_[w].exists;
    warps_[w].arrived = 0;
    std::fill(std::begin(warps_[w].wmma_calls), std::end(warps_[w].wmma_calls), 0u);
    warps_[w].wmma_pending.clear();
  }
  live_ = threads_;
  aborted_ = false;
  barrier_arrived_ = 0;
  barrier_true_ = 0;
  // A fresh shared memory: what the previous block left is unaddressable and, being from an
  // older epoch, ordered before everything this block does.
  ++block_gen_;
  ++epoch_;
  variables_.clear();
  static_top_ = 0;
  static_bytes_ = 0;
  dynamic_base_ = nullptr;

  // Threads run in a seeded random order, reshuffled every round (a round resumes each runnable
  // thread once; it runs until it blocks in a barrier or warp collective, or exits), so code that
  // depends on the order of threads fails for some seeds.
  rng_ = mix(launch_->seed ^ (linear_block * kGolden));
  while (live_ > 0 && !aborted_) {
    for (int i = threads_ - 1; i > 0; --i) {
      rng_ += kGolden;
      std::swap(order_[i], order_[mix(rng_) % uint64_t(i + 1)]);
    }
    bool ran = false;
    for (int i = 0; i < threads_ && !aborted_; ++i) {
      const int t = order_[i];
      Fiber& f = fibers_[t];
      if (f.state == FiberState::fresh) {
        f.stack = stacks_.acquire();
        f.has_stack = true;
        make_context(f.context, f.stack, fiber_main, this);
        f.state = FiberState::runnable;
      }
      if (f.state != FiberState::runnable) continue;
      ran = true;
      current_ = t;
      tl.thread_idx = f.idx;
      switch_context(scheduler_context_, f.context);
      if (f.state == FiberState::done) {
        stacks_.release(f.stack);
        f.has_stack = false;
      }
    }
    if (!ran && !aborted_) report_deadlock();
  }
  // A stopped block leaves suspended fibers behind: drop them (kernel frames hold no resources).
  for (Fiber& f : fibers_) {
    if (f.has_stack) {
      stacks_.release(f.stack);
      f.has_stack = false;
    }
  }
}

void Scheduler::yield() { switch_context(fibers_[current_].context, scheduler_context_); }

void Scheduler::abort_block(std::string message, bool with_thread) {
  // This frame is never resumed: free the strings before leaving it.
  record_error(here(with_thread) + ": " + message);
  std::string().swap(message);
  aborted_ = true;
  yield();
  __builtin_unreachable();
}

int Scheduler::syncthreads(const char* site, BarrierKind kind, int predicate) {
  if (barrier_arrived_ == 0) {
    barrier_site_ = site;
    barrier_kind_ = kind;
  } else if (site != barrier_site_ && std::strcmp(site, barrier_site_) != 0) {
    abort_block(format("threads of the block wait at different __syncthreads() call sites: %s "
                       "(%d threads) and %s",
                       barrier_site_, barrier_arrived_, site),
                true);
  }
  ++barrier_arrived_;
  barrier_true_ += predicate;
  if (barrier_arrived_ == threads_) {
    switch (barrier_kind_) {
      case BarrierKind::plain: barrier_result_ = 0; break;
      case BarrierKind::count: barrier_result_ = barrier_true_; break;
      case BarrierKind::all: barrier_result_ = barrier_true_ == threads_; break;
      case BarrierKind::any: barrier_result_ = barrier_true_ > 0; break;
    }
    barrier_arrived_ = 0;
    barrier_true_ = 0;
    ++epoch_;  // every shared-memory access before the barrier happens before every one after
    for (Fiber& f : fibers_)
      if (f.state == FiberState::at_barrier) f.state = FiberState::runnable;
    return barrier_result_;
  }
  fibers_[current_].state = FiberState::at_barrier;
  yield();
  return barrier_result_;
}

uint64_t Scheduler::warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width) {
  const int t = current_, warp = t / 32, lane = t % 32;
  if ((mask & (1u << lane)) == 0)
    abort_block(format("%s with mask 0x%08x called by lane %d, which is not in the mask",
                       op_name(op), mask, lane),
                true);
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    abort_block(format("%s with width %d (must be a power of two in 1..32)", op_name(op), width), true);
  WarpSlots& w = warps_[warp];
  w.op[lane] = op;
  w.mask[lane] = mask;
  w.value[lane] = value;
  w.arg[lane] = arg;
  w.width[lane] = width;
  w.arrived |= 1u << lane;
  fibers_[t].state = FiberState::at_warp_op;
  // Only this lane's group can have become complete (exits rescan the whole warp).
  if ((mask & w.alive & ~w.arrived) == 0) try_complete(warp);
  if (fibers_[t].state != FiberState::runnable) yield();
  return w.result[lane];
}

// Completes every group of the warp whose live lanes have all arrived; reports misuse.
bool Scheduler::try_complete(int warp) {
  WarpSlots& w = warps_[warp];
  bool completed = false;
  for (unsigned pending = w.arrived; pending != 0;) {
    const int lead = __builtin_ctz(pending);
    const unsigned mask = w.mask[lead];
    // Shuffles and votes skip exited lanes (CUDA: "non-exited threads named in mask"); the
    // warp-wide WMMA calls need every lane of the warp.
    const bool warp_wide = w.op[lead] >= WarpOp::wmma_load;
    const unsigned group = mask & (warp_wide ? w.exists : w.alive);
    pending &= ~(1u << lead);
    if ((group & w.alive & ~w.arrived) != 0) continue;
    if (const unsigned gone = group & ~w.alive)
      abort_block(format("warp %d: %s is warp-wide, but lane %d exited without making the call",
                         warp, op_name(w.op[lead]), __builtin_ctz(gone)),
                  true);
    for (unsigned g = group; g != 0; g &= g - 1) {
      const int lane = __builtin_ctz(g);
      if (w.mask[lane] != mask || w.op[lane] != w.op[lead] || w.width[lane] != w.width[lead])
        abort_block(format("warp %d: lane %d calls %s with mask 0x%08x while lane %d calls %s with "
                           "mask 0x%08x (lanes of a mask must make the same call)",
                           warp, lead, op_name(w.op[lead]), mask, lane, op_name(w.op[lane]),
                           w.mask[lane]),
                    true);
    }
    const WarpOp op = w.op[lead];
    if (op == WarpOp::sync) {
      ++w.syncs;
      for (unsigned g = group; g != 0; g &= g - 1) w.synced_at[__builtin_ctz(g)] = w.syncs;
    }
    if (op == WarpOp::wmma_mma) {
      MmaLane* lanes[32];
      for (int l = 0; l < 32; ++l) lanes[l] = reinterpret_cast<MmaLane*>(w.value[l]);
      for (int l = 0; l < 32; ++l)
        if (lanes[l]->compute != lanes[lead]->compute)
          abort_block(format("warp %d: lanes %d and %d call wmma::mma_sync with different fragment types",
                             warp, lead, l),
                      true);
      lanes[lead]->compute(lanes);
    }
    const bool is_vote = op == WarpOp::ballot || op == WarpOp::any || op == WarpOp::all;
    uint64_t vote = 0;
    if (is_vote) {
      unsigned ballot = 0;
      for (unsigned g = group; g != 0; g &= g - 1)
        if (w.value[__builtin_ctz(g)] != 0) ballot |= g & -g;
      vote = op == WarpOp::ballot ? ballot : op == WarpOp::any ? ballot != 0 : ballot == group;
    }
    for (unsigned g = group; g != 0; g &= g - 1) {
      const int lane = __builtin_ctz(g);
      const int width = w.width[lane];
      const int segment = lane & ~(width - 1);
      int src = lane;
      switch (op) {
        case WarpOp::shfl: src = segment + (w.arg[lane] & (width - 1)); break;
        case WarpOp::shfl_up:
          if ((lane - segment) - w.arg[lane] >= 0) src = lane - w.arg[lane];
          break;
        case WarpOp::shfl_down:
          if ((lane - segment) + w.arg[lane] < width) src = lane + w.arg[lane];
          break;
        case WarpOp::shfl_xor:
          src = lane ^ w.arg[lane];
          if (src > (segment | (width - 1)) || src < 0 || src > 31) src = lane;
          break;
        default: break;
      }
      if ((group & (1u << src)) == 0)
        abort_block(format("warp %d: lane %d's %s (mask 0x%08x) reads lane %d, which %s: the "
                           "value is undefined",
                           warp, lane, op_name(op), mask, src,
                           (w.alive & (1u << src)) == 0 ? "has exited or does not exist"
                                                         : "is not in the mask"),
                    true);
      w.result[lane] = is_vote ? vote : w.value[src];
    }
    for (unsigned g = group; g != 0; g &= g - 1)
      fibers_[warp * 32 + __builtin_ctz(g)].state = FiberState::runnable;
    w.arrived &= ~group;
    pending &= ~group;
    completed = true;
  }
  return completed;
}

void Scheduler::on_exit(int thread) {
  --live_;
  const int warp = thread / 32, lane = thread % 32;
  WarpSlots& w = warps_[warp];
  w.alive &= ~(1u << lane);
  for (const WmmaRecord& r : w.wmma_pending)
    if ((r.seen & (1u << lane)) == 0 && !aborted_) {
      record_error(here(true) + format(": warp %d: %s is warp-wide, but lane %d exited without making the call",
                                       warp, op_name(r.op), lane));
      aborted_ = true;
    }
  if (w.arrived != 0 && !aborted_) try_complete(warp);
}

// ---- WMMA: per-lane calls checked against the warp's -------------------------------------------
std::string Scheduler::wmma_missing_lane(const WarpSlots& w, int warp, uint32_t calls) {
  for (unsigned gone = w.exists & ~w.alive; gone != 0; gone &= gone - 1) {
    const int lane = __builtin_ctz(gone);
    if (w.wmma_calls[lane] < calls) return format("lane %d exited without making the call", lane);
  }
  return {};
}

void Scheduler::wmma_call(WarpOp op, const void* ptr, unsigned ldm, int layout, int kind) {
  const int t = current_, warp = t / 32, lane = t % 32;
  WarpSlots& w = warps_[warp];
  if (w.exists != ~0u)
    abort_block(format("%s needs a whole warp, but warp %d has %d threads", op_name(op), warp, __builtin_popcount(w.exists)),
                true);
  const uint32_t index = w.wmma_calls[lane]++;
  if (const std::string gone = wmma_missing_lane(w, warp, index + 1); !gone.empty())
    abort_block(format("warp %d: %s is warp-wide, but ", warp, op_name(op)) + gone, true);
  auto record = std::find_if(w.wmma_pending.begin(), w.wmma_pending.end(),
                             [&](const WmmaRecord& r) { return r.index == index; });
  if (record == w.wmma_pending.end()) {
    w.wmma_pending.push_back(WmmaRecord{index, op, ptr, ldm, layout, kind, lane, 1u << lane});
    return;
  }
  const WmmaRecord& r = *record;
  const auto call = [&](WarpOp o, const void* p, unsigned l, int lay) {
    if (o == WarpOp::wmma_mma) return std::string(op_name(o));
    return format("%s(%p, ldm %u, %s)", op_name(o), p, l, lay ? "col-major" : "row-major");
  };
  if (r.op != op || r.ptr != ptr || r.ldm != ldm || r.layout != layout || r.kind != kind)
    abort_block(format("warp %d: lane %d calls ", warp, lane) + call(op, ptr, ldm, layout) +
                    format(" where lane %d called ", r.first_lane) + call(r.op, r.ptr, r.ldm, r.layout) +
                    " (every lane of a warp makes the same WMMA calls with the same pointer, ldm, layout and "
                    "fragment type)",
                true);
  record->seen |= 1u << lane;
  if (record->seen == w.exists) w.wmma_pending.erase(record);
}

const uint16_t* Scheduler::wmma_lane_map(int kind, int positions) {
  if (map_serial_ != launch_->serial) {
    std::fill(std::begin(lane_map_ready_), std::end(lane_map_ready_), false);
    map_serial_ = launch_->serial;
  }
  std::vector<uint16_t>& map = lane_maps_[kind];
  if (!lane_map_ready_[kind]) {
    map.resize(positions);
    for (int i = 0; i < positions; ++i) map[i] = uint16_t(i);
    uint64_t state = mix(launch_->seed ^ (uint64_t(kind + 1) * 0xd1b54a32d192ed03ull));
    for (int i = positions - 1; i > 0; --i) {
      state += kGolden;
      std::swap(map[i], map[mix(state) % uint64_t(i + 1)]);
    }
    lane_map_ready_[kind] = true;
  }
  return map.data();
}

// ---- shared memory ------------------------------------------------------------------------------
void Scheduler::mark_shared(size_t offset, size_t bytes) {
  std::memset(arena_ + offset, 0xff, bytes);  // NaN as floats and bf16, like the garbage of a GPU
  for (size_t i = 0; i < bytes; ++i) shadow_[offset + i] = ShadowByte{0, 0, 0, 0, 0, 0, 0, block_gen_, 0};
}

void Scheduler::check_shared_total(size_t static_bytes, const char* what) {
  const size_t total = static_bytes + launch_->smem;
  if (static_bytes > kDefaultShared)
    abort_block(format("%s brings the static shared memory to %zu bytes, over the 48 KB (49152 bytes) a kernel can "
                       "declare",
                       what, static_bytes),
                true);
  if (total > launch_->shared_limit)
    abort_block(launch_->opted_in
                    ? format("%s brings the block to %zu static + %zu dynamic = %zu bytes of shared memory, over the "
                             "%zu a block can have",
                             what, static_bytes, launch_->smem, total, kMaxSharedOptIn)
                    : format("%s brings the block to %zu static + %zu dynamic = %zu bytes of shared memory, over the "
                             "48 KB (49152 bytes) a launch gets without cudaFuncSetAttribute(kernel, "
                             "cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)",
                             what, static_bytes, launch_->smem, total),
                true);
}

void* Scheduler::static_shared(const void* key, size_t bytes, size_t align, const char* name, const char* site) {
  for (const SharedVariable& v : variables_)
    if (v.key == key) return arena_ + v.offset;
  const size_t counted = (static_bytes_ + align - 1) / align * align + bytes;
  check_shared_total(counted, format("__shared__ %s (%zu bytes, %s)", name, bytes, site).c_str());
  // At exactly `align`: an odd multiple of it, so code assuming more fails.
  size_t at = (static_top_ + kRedzone + align - 1) / align * align;
  if ((at / align) % 2 == 0) at += align;
  if (at + bytes + kRedzone > kArenaBytes - kMaxSharedOptIn - 4 * kRedzone)
    abort_block(format("__shared__ %s (%s): the block's static shared memory does not fit the emulator's arena", name, site),
                true);
  mark_shared(at, bytes);
  variables_.push_back(SharedVariable{key, at, bytes, name, site});
  static_top_ = at + bytes;
  static_bytes_ = counted;
  return arena_ + at;
}

void* Scheduler::dynamic_shared(size_t align) {
  if (dynamic_base_ == nullptr) {
    const size_t smem = launch_->smem, limit = kArenaBytes - kRedzone;
    const size_t at = (limit - smem - align) / (2 * align) * (2 * align) + align;
    mark_shared(at, smem);
    dynamic_base_ = arena_ + at;
    dynamic_align_ = align;
  } else if (align != dynamic_align_) {
    abort_block(format("dynamic shared memory declared %zu-byte aligned here and %zu-byte aligned elsewhere", align,
                       dynamic_align_),
                true);
  }
  return dynamic_base_;
}

void Scheduler::check_launch_bounds(long long max_threads) {
  if (threads_ > max_threads)
    abort_block(format("the launch has %d threads per block, more than the kernel's __launch_bounds__(%lld) allows "
                       "(a GPU refuses the launch)",
                       threads_, max_threads),
                false);
}

std::string Scheduler::describe_shared(size_t offset) const {
  struct Region {
    size_t offset, bytes;
    std::string name;
  };
  std::vector<Region> regions;
  for (const SharedVariable& v : variables_)
    regions.push_back({v.offset, v.bytes, format("__shared__ %s (%zu bytes, %s)", v.name, v.bytes, v.site)});
  if (dynamic_base_ != nullptr)
    regions.push_back({size_t(dynamic_base_ - arena_), launch_->smem,
                       format("the dynamic shared memory (%zu bytes)", launch_->smem)});
  const Region* best = nullptr;
  ptrdiff_t best_distance = 0;
  for (const Region& r : regions) {
    if (offset >= r.offset && offset < r.offset + r.bytes) return format("byte %zu of ", offset - r.offset) + r.name;
    const ptrdiff_t distance = offset < r.offset ? ptrdiff_t(r.offset - offset) : ptrdiff_t(offset - (r.offset + r.bytes)) + 1;
    if (best == nullptr || distance < best_distance) best = &r, best_distance = distance;
  }
  if (best == nullptr) return "a block with no shared memory";
  return offset < best->offset ? format("%td bytes before ", best_distance) + best->name
                               : format("%td bytes past the end of ", best_distance - 1) + best->name;
}

bool Scheduler::synced(int thread, uint16_t other_plus_1, uint32_t epoch, uint32_t sync) const {
  const int other = other_plus_1 - 1;
  if (other == thread || epoch != epoch_) return true;
  if (other / 32 != thread / 32) return false;
  const WarpSlots& w = warps_[thread / 32];
  return w.synced_at[thread % 32] > sync && w.synced_at[other % 32] > sync;
}

const char* access_verb(Access access) {
  switch (access) {
    case Access::read: return "reads";
    case Access::write: return "writes";
    case Access::atomic_read: return "atomically reads";
    case Access::atomic_write: return "atomically updates";
  }
  return "?";
}

void Scheduler::report_race(size_t offset, Access access, const char* what, int other) {
  abort_block(format("shared-memory race on %s: this thread %s what %s %s, with no __syncthreads() between them "
                     "(nor, within a warp, a __syncwarp() both took part in)",
                     describe_shared(offset).c_str(), access_verb(access),
                     other < 0 ? "other threads" : thread_name(other).c_str(), what),
              true);
}

void Scheduler::check_shared(uintptr_t p, size_t bytes, Access access, size_t align) {
  const uintptr_t base = reinterpret_cast<uintptr_t>(arena_);
  if (p < base || p + bytes > base + kArenaBytes)
    abort_block(format("access to shared memory at %p, which is another block's", reinterpret_cast<void*>(p)), true);
  const size_t offset = p - base;
  const char* kind = access == Access::read || access == Access::atomic_read ? "read" : "write";
  if (align > 1 && p % align != 0)
    abort_block(format("misaligned %zu-byte %s of shared memory at %s (needs %zu-byte alignment)", bytes, kind,
                       describe_shared(offset).c_str(), align),
                true);
  for (size_t i = 0; i < bytes; ++i)
    if (shadow_[offset + i].gen != block_gen_)
      abort_block(format("out-of-bounds %zu-byte %s of shared memory at %s", bytes, kind,
                         describe_shared(offset + i).c_str()),
                  true);
  const int t = current_, warp = t / 32;
  const uint16_t self = uint16_t(t + 1);
  const uint32_t syncs = warps_[warp].syncs;
  const bool atomic = access == Access::atomic_read || access == Access::atomic_write;
  const bool write = access == Access::write || access == Access::atomic_write;
  for (size_t i = 0; i < bytes; ++i) {
    ShadowByte& c = shadow_[offset + i];
    if (c.writer != 0 && !((c.atomic & 1) && atomic) && !synced(t, c.writer, c.w_epoch, c.w_sync))
      report_race(offset + i, access, "wrote", c.writer - 1);
    const bool reads_synced =
        c.reader == 0 || c.r_epoch != epoch_ ||
        (c.reader == kManyReaders ? c.r_warp == warp && warps_[warp].synced_at[t % 32] > c.r_sync
                                  : synced(t, c.reader, c.r_epoch, c.r_sync));
    if (write) {
      if (!reads_synced && c.reader != self && !((c.atomic & 2) && atomic))
        report_race(offset + i, access, "read", c.reader == kManyReaders ? -1 : c.reader - 1);
      c.writer = self;
      c.w_epoch = epoch_;
      c.w_sync = syncs;
      c.atomic = uint8_t((c.atomic & 2) | (atomic ? 1 : 0));
    } else if (reads_synced || c.reader == self) {
      const bool all_atomic = reads_synced ? atomic : (c.atomic & 2) && atomic;
      c.reader = self;
      c.r_epoch = epoch_;
      c.r_sync = syncs;
      c.r_warp = uint16_t(warp);
      c.atomic = uint8_t((c.atomic & 1) | (all_atomic ? 2 : 0));
    } else {
      c.reader = kManyReaders;
      c.r_sync = syncs;
      if (c.r_warp != warp) c.r_warp = kMixedWarps;
      if (!atomic) c.atomic &= 1;
    }
  }
}

std::string Scheduler::describe_wait(int t) const {
  const Fiber& f = fibers_[t];
  std::string who = "thread " + str(f.idx);
  switch (f.state) {
    case FiberState::done: return who + " exited";
    case FiberState::at_barrier: return who + " waits at __syncthreads() at " + barrier_site_;
    case FiberState::at_warp_op: {
      const WarpSlots& w = warps_[t / 32];
      return who + format(" waits in %s (mask 0x%08x)", op_name(w.op[t % 32]), w.mask[t % 32]);
    }
    default: return who + " is runnable";
  }
}

void Scheduler::report_deadlock() {
  std::string message;
  for (int t = 0; t < threads_ && message.empty(); ++t) {
    if (fibers_[t].state != FiberState::at_warp_op) continue;
    const WarpSlots& w = warps_[t / 32];
    const unsigned missing = w.mask[t % 32] & w.alive & ~w.arrived;
    if (missing == 0) continue;
    const int other = __builtin_ctz(missing);
    message = format("warp %d: lane %d waits in %s (mask 0x%08x) but lane %d never arrives: ",
                     t / 32, t % 32, op_name(w.op[t % 32]), w.mask[t % 32], other) +
              describe_wait((t / 32) * 32 + other);
  }
  if (message.empty()) {
    message = format("__syncthreads() at %s reached by only %d of %d threads: ", barrier_site_,
                     barrier_arrived_, threads_);
    int shown = 0;
    for (int t = 0; t < threads_ && shown < 3; ++t)
      if (fibers_[t].state != FiberState::at_barrier) message += (shown++ ? "; " : "") + describe_wait(t);
    message += " (every thread of a block must reach each barrier)";
  }
  record_error(here(false) + ": deadlock: " + message);
  aborted_ = true;
}

// ---- the worker pool ----------------------------------------------------------------------------
// Read when the first kernel launches (not at load), so a test can still choose it.
int configured_workers() {
  int n = 0;
  if (const char* env = std::getenv("REALTUNE_EMU_THREADS")) n = std::atoi(env);
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(n, 1, 256);
}

class Pool {
 public:
  Pool() : size_(configured_workers()) {
    for (int i = 1; i < size_; ++i) std::thread([this, i] { worker(i); }).detach();
  }
  int size() const { return size_; }

  // Runs the grid on `workers` threads, the caller being one of them.
  void run(LaunchState& launch, int workers) {
    {
      std::lock_guard lock(mutex_);
      job_ = &launch;
      wanted_ = workers - 1;
      busy_ = workers - 1;
      ++generation_;
    }
    if (workers > 1) work_cv_.notify_all();
    scheduler_for_this_thread().run_grid(launch);
    std::unique_lock lock(mutex_);
    done_cv_.wait(lock, [&] { return busy_ == 0; });
    job_ = nullptr;
  }

 private:
  void worker(int index) {
    uint64_t seen = 0;
    for (;;) {
      LaunchState* job;
      {
        std::unique_lock lock(mutex_);
        work_cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (index > wanted_) continue;
        job = job_;
      }
      scheduler_for_this_thread().run_grid(*job);
      std::lock_guard lock(mutex_);
      if (--busy_ == 0) done_cv_.notify_one();
    }
  }

  int size_ = 1;
  std::mutex mutex_;
  std::condition_variable work_cv_, done_cv_;
  uint64_t generation_ = 0;
  LaunchState* job_ = nullptr;
  int wanted_ = 0;
  int busy_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: its detached workers outlive static teardown
  return *p;
}

std::mutex g_launch_mutex;

// Guarded apart from g_launch_mutex so that reading the counts never waits for a running launch.
std::mutex g_launch_counts_mutex;
std::map<std::string, uint64_t> g_launch_counts;

void count_launch(const char* kernel_name) {
  std::lock_guard lock(g_launch_counts_mutex);
  ++g_launch_counts[kernel_name];
}

// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), by kernel.
std::mutex g_attribute_mutex;
std::map<const void*, size_t> g_max_dynamic_shared;

// The dynamic shared memory a launch of `kernel` may ask for: 0 when it did not opt in.
size_t opted_in_dynamic_shared(const void* kernel) {
  std::lock_guard lock(g_attribute_mutex);
  auto it = g_max_dynamic_shared.find(kernel);
  return it == g_max_dynamic_shared.end() ? 0 : it->second;
}

// The seed of the next launch: REALTUNE_EMU_SEED (the tests set it from their seed), each launch
// since it was last changed drawing the next value of its sequence, so a seed replays a run.
uint64_t next_launch_seed() {
  static std::string seed_text = "\x01";
  static uint64_t base = 0, launches = 0;
  const char* env = std::getenv("REALTUNE_EMU_SEED");
  const std::string text = env != nullptr ? env : "";
  if (text != seed_text) {
    seed_text = text;
    base = std::hash<std::string>()(text);
    launches = 0;
  }
  return mix(base + ++launches * kGolden);
}

std::string check_config(dim3 grid, dim3 block, size_t smem, size_t opted_in) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0)
    return format("empty grid (%u,%u,%u)", grid.x, grid.y, grid.z);
  if (block.x == 0 || block.y == 0 || block.z == 0)
    return format("empty block (%u,%u,%u)", block.x, block.y, block.z);
  if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    return format("grid (%u,%u,%u) exceeds (2^31-1, 65535, 65535)", grid.x, grid.y, grid.z);
  if (block.x > 1024 || block.y > 1024 || block.z > 64 || threads > 1024)
    return format("block (%u,%u,%u) has %llu threads (at most 1024; x, y <= 1024, z <= 64)",
                  block.x, block.y, block.z, static_cast<unsigned long long>(threads));
  if (opted_in == 0 && smem > kDefaultShared)
    return format("%zu bytes of dynamic shared memory exceed the %zu a launch gets without "
                  "cudaFuncSetAttribute",
                  smem, kDefaultShared);
  if (opted_in != 0 && smem > opted_in)
    return format("%zu bytes of dynamic shared memory exceed the %zu the kernel opted in to with "
                  "cudaFuncSetAttribute",
                  smem, opted_in);
  return {};
}

}  // namespace

// ---- entry points used by cuda_emu.h ------------------------------------------------------------
Allocation find_allocation_slow(const void* p) {
  const char* q = static_cast<const char*>(p);
  const Registry* r = tl_registry;
  std::shared_ptr<const Registry> hold;
  if (r == nullptr) {
    hold = g_registry.load();
    r = hold.get();
  }
  const Allocation* a = lookup(*r, q);
  if (a == nullptr) return Allocation{q, 0};
  if (tl_registry != nullptr) {
    if (tl.cached_version != r->version) {
      std::fill(std::begin(tl.cached), std::end(tl.cached), Allocation{nullptr, 0});
      tl.cached_version = r->version;
    }
    tl.cached[tl.next_victim++ % ThreadState::kCached] = *a;
  }
  return *a;
}

void* bad_access(const char* base, size_t size, const void* p, size_t count, size_t element_bytes,
                 size_t align, const char* type, bool is_const) {
  alignas(64) thread_local unsigned char scratch[1024];
  const size_t bytes = count * element_bytes;
  const std::string element = type ? std::string(type) : std::to_string(element_bytes) + "-byte element";
  const std::string what = count == 1 ? "a " + element : std::to_string(count) + " x " + element;
  const char* kind = is_const ? "read" : "access";
  const char* q = static_cast<const char*>(p);
  std::string message;
  if (base == nullptr && size == 0)
    message = format("%s of %s through a null pointer", kind, what.c_str());
  else if (size == 0)
    message = format("%s of %s at %p, which is not inside any live cudaMalloc allocation", kind,
                     what.c_str(), p);
  else if (reinterpret_cast<uintptr_t>(p) % align != 0 && q >= base && q + bytes <= base + size)
    message = format("misaligned %s of %s at byte offset %td of a %zu-byte allocation (needs "
                     "%zu-byte alignment)",
                     kind, what.c_str(), q - base, size, align);
  else
    message = format("out-of-bounds %s of %s (%zu bytes) at byte offset %td of a %zu-byte allocation",
                     kind, what.c_str(), bytes, q - base, size);
  record_error(here(true) + ": " + message);
  std::memset(scratch, 0, std::min(bytes, sizeof scratch));
  return scratch;
}

void launch_erased(const char* kernel_name, const void* kernel, dim3 grid, dim3 block, size_t smem,
                   KernelInvoke invoke, const void* body) {
#if defined(__x86_64__)
  // The kernels are compiled with -mfma (FMA contraction, as nvcc has it).
  static const bool has_fma = __builtin_cpu_supports("fma");
  if (!has_fma)
    throw KernelError(std::string("cuda-emu: kernel ") + kernel_name +
                      ": the emulated kernels are built with FMA contraction (-mfma), which this CPU lacks");
#endif
  const size_t opted_in = opted_in_dynamic_shared(kernel);
  const std::string bad = check_config(grid, block, smem, opted_in);
  if (!bad.empty())
    throw KernelError(std::string("cuda-emu: kernel ") + kernel_name + ": invalid launch configuration: " + bad);
  std::lock_guard serial(g_launch_mutex);
  static uint64_t launches = 0;
  count_launch(kernel_name);
  std::shared_ptr<const Registry> registry = g_registry.load();
  LaunchState launch;
  launch.name = kernel_name;
  launch.grid = grid;
  launch.block = block;
  launch.smem = smem;
  launch.opted_in = opted_in != 0;
  launch.shared_limit = opted_in != 0 ? kMaxSharedOptIn : kDefaultShared;
  launch.seed = next_launch_seed();
  launch.serial = ++launches;
  launch.invoke = invoke;
  launch.body = body;
  launch.registry = registry.get();
  launch.total_blocks = uint64_t(grid.x) * grid.y * grid.z;
  const int workers = static_cast<int>(std::min<uint64_t>(pool().size(), launch.total_blocks));
  pool().run(launch, workers);
  if (!launch.error.empty())
    throw KernelError(std::string("cuda-emu: kernel ") + kernel_name + ": " + launch.error);
}

std::map<std::string, uint64_t> launch_counts() {
  std::lock_guard lock(g_launch_counts_mutex);
  return g_launch_counts;
}

void* dynamic_shared(size_t align) {
  if (tl_scheduler == nullptr) throw KernelError("cuda-emu: dynamic shared memory used outside a kernel");
  return tl_scheduler->dynamic_shared(align);
}

void* static_shared(const void* key, size_t bytes, size_t align, const char* name, const char* site) {
  if (tl_scheduler == nullptr) throw KernelError(std::string("cuda-emu: __shared__ ") + name + " used outside a kernel");
  return tl_scheduler->static_shared(key, bytes, align, name, site);
}

void check_launch_bounds(long long max_threads, long long, long long) {
  if (tl_scheduler != nullptr) tl_scheduler->check_launch_bounds(max_threads);
}

void wmma_call(WarpOp op, const void* ptr, unsigned ldm, int layout, int kind) {
  if (tl_scheduler == nullptr) throw KernelError(std::string("cuda-emu: ") + op_name(op) + " called outside a kernel");
  tl_scheduler->wmma_call(op, ptr, ldm, layout, kind);
}

const uint16_t* wmma_lane_map(int kind, int positions) { return tl_scheduler->wmma_lane_map(kind, positions); }

int syncthreads(const char* site, BarrierKind kind, int predicate) {
  if (tl_scheduler == nullptr) throw KernelError("cuda-emu: __syncthreads() called outside a kernel");
  return tl_scheduler->syncthreads(site, kind, predicate);
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width) {
  if (tl_scheduler == nullptr)
    throw KernelError(std::string("cuda-emu: ") + op_name(op) + " called outside a kernel");
  return tl_scheduler->warp_collective(op, mask, value, arg, width);
}

unsigned active_mask() {
  if (tl_scheduler == nullptr) throw KernelError("cuda-emu: __activemask() called outside a kernel");
  return tl_scheduler->active_mask();
}

bool wmma_check(const void* ptr, unsigned ldm, size_t element_bytes, const char* what) {
  const size_t ldm_multiple = 16 / element_bytes;
  if (reinterpret_cast<uintptr_t>(ptr) % 32 != 0) {
    record_error(here(true) + format(": wmma::%s: pointer %p is not 32-byte aligned", what, ptr));
    return false;
  }
  if (ldm % ldm_multiple != 0) {
    record_error(here(true) + format(": wmma::%s: ldm %u is not a multiple of %zu elements (16 bytes)",
                                     what, ldm, ldm_multiple));
    return false;
  }
  return true;
}

}  // namespace emu

// ---- CUDA runtime API ---------------------------------------------------------------------------
const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
  }
  return "unknown error";
}

cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaPeekAtLastError() { return cudaSuccess; }

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (ptr == nullptr) return cudaErrorInvalidValue;
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) & ~size_t(255);
  void* p = std::aligned_alloc(256, rounded);
  if (p == nullptr) return cudaErrorMemoryAllocation;
  emu::update_registry(p, bytes, true);
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  {
    std::shared_ptr<const emu::Registry> r = emu::g_registry.load();
    const emu::Allocation* a = emu::lookup(*r, static_cast<const char*>(ptr));
    if (a == nullptr || a->base != ptr) return cudaErrorInvalidDevicePointer;
  }
  emu::update_registry(ptr, 0, false);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  const bool device_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  const bool device_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  if ((device_src && !emu::range_is_allocated(src, bytes)) ||
      (device_dst && !emu::range_is_allocated(dst, bytes)))
    return cudaErrorInvalidValue;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (!emu::range_is_allocated(ptr, bytes)) return cudaErrorInvalidValue;
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "cuda-emu (CPU emulation of the CUDA execution model)");
  prop->totalGlobalMem = size_t(sysconf(_SC_PHYS_PAGES)) * size_t(sysconf(_SC_PAGESIZE));
  prop->sharedMemPerBlock = emu::kDefaultShared;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->multiProcessorCount = emu::configured_workers();
  prop->major = 9;
  prop->minor = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

cudaError_t cudaFuncSetAttribute(const void* kernel, cudaFuncAttribute attribute, int value) {
  if (kernel == nullptr) return cudaErrorInvalidDeviceFunction;
  if (attribute == cudaFuncAttributePreferredSharedMemoryCarveout) return value >= -1 && value <= 100 ? cudaSuccess : cudaErrorInvalidValue;
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || size_t(value) > emu::kMaxSharedOptIn)
    return cudaErrorInvalidValue;
  std::lock_guard lock(emu::g_attribute_mutex);
  emu::g_max_dynamic_shared[kernel] = size_t(value);
  return cudaSuccess;
}

// ---- ThreadSanitizer hooks: the kernels' loads and stores ---------------------------------------
// The kernel sources (and the self-tests) are compiled with -fsanitize=thread, and this file
// without: these definitions stand in for the ThreadSanitizer runtime, which is never linked.
// Accesses outside the shared-memory arenas return at once; the rest go to the running block's
// checks (bounds, alignment for naturally aligned accesses, races), which stop the block before
// a bad access happens.
namespace emu {
namespace {
inline bool in_arena(const volatile void* p) {
  return reinterpret_cast<uintptr_t>(p) - g_arena_lo.load(std::memory_order_relaxed) <
         g_arena_span.load(std::memory_order_relaxed);
}
[[gnu::noinline, gnu::cold]] void shared_access(const volatile void* p, size_t bytes, Access access, size_t align) {
  if (tl_scheduler != nullptr) tl_scheduler->check_shared(reinterpret_cast<uintptr_t>(p), bytes, access, align);
}
}  // namespace
}  // namespace emu

#define RT_EMU_TSAN_ACCESS(n)                                                                             \
  extern "C" void __tsan_read##n(void* p) {                                                              \
    if (emu::in_arena(p)) [[unlikely]] emu::shared_access(p, n, emu::Access::read, n);                   \
  }                                                                                                      \
  extern "C" void __tsan_write##n(void* p) {                                                             \
    if (emu::in_arena(p)) [[unlikely]] emu::shared_access(p, n, emu::Access::write, n);                  \
  }                                                                                                      \
  extern "C" void __tsan_unaligned_read##n(void* p) {                                                    \
    if (emu::in_arena(p)) [[unlikely]] emu::shared_access(p, n, emu::Access::read, 1);                   \
  }                                                                                                      \
  extern "C" void __tsan_unaligned_write##n(void* p) {                                                   \
    if (emu::in_arena(p)) [[unlikely]] emu::shared_access(p, n, emu::Access::write, 1);                  \
  }                                                                                                      \
  extern "C" void __tsan_volatile_read##n(void* p) { __tsan_read##n(p); }                                \
  extern "C" void __tsan_volatile_write##n(void* p) { __tsan_write##n(p); }
RT_EMU_TSAN_ACCESS(1)
RT_EMU_TSAN_ACCESS(2)
RT_EMU_TSAN_ACCESS(4)
RT_EMU_TSAN_ACCESS(8)
RT_EMU_TSAN_ACCESS(16)
#undef RT_EMU_TSAN_ACCESS

extern "C" void __tsan_read_range(void* p, unsigned long bytes) {
  if (emu::in_arena(p)) emu::shared_access(p, bytes, emu::Access::read, 1);
}
extern "C" void __tsan_write_range(void* p, unsigned long bytes) {
  if (emu::in_arena(p)) emu::shared_access(p, bytes, emu::Access::write, 1);
}
extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_vptr_update(void**, void*) {}
extern "C" void __tsan_vptr_read(void**) {}
extern "C" void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
extern "C" void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

// Atomics run sequentially consistent, whatever order was asked for.
#define RT_EMU_TSAN_ATOMIC(bits, T)                                                                          \
  namespace emu {                                                                                            \
  inline void atomic_access(const volatile T* p, Access access) {                                            \
    if (in_arena(p)) [[unlikely]] shared_access(p, sizeof(T), access, sizeof(T));                            \
  }                                                                                                          \
  }                                                                                                          \
  extern "C" T __tsan_atomic##bits##_load(const volatile T* p, int) {                                        \
    emu::atomic_access(p, emu::Access::atomic_read);                                                         \
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);                                                             \
  }                                                                                                          \
  extern "C" void __tsan_atomic##bits##_store(volatile T* p, T v, int) {                                     \
    emu::atomic_access(p, emu::Access::atomic_write);                                                        \
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);                                                                \
  }                                                                                                          \
  extern "C" T __tsan_atomic##bits##_exchange(volatile T* p, T v, int) {                                     \
    emu::atomic_access(p, emu::Access::atomic_write);                                                        \
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);                                                      \
  }                                                                                                          \
  extern "C" T __tsan_atomic##bits##_fetch_add(volatile T* p, T v, int) {                                    \
    emu::atomic_access(p, emu::Access::atomic_write);                                                        \
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);                                                       \
  }                                                                                                          \
  extern "C" T __tsan_atomic##bits##_fetch_sub(volatile T* p, T v, int) {                                    \
    emu::atomic_access(p, emu::Access::atomic_write);                                                        \
    return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST);                                                       \
  }                                                                                                          \
  extern "C" T __tsan_atomic##bits##_fetch_and(volatile T* p, T v, int) {                                    \
    emu::atomic_access(p, emu::Access::atomic_write);                                                        \
    return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);                                                       \
  }                                                                                                          \
  extern "C" T __tsan_atomic##bits##_fetch_or(volatile T* p, T v, int) {                                     \
    emu::atomic_access(p, emu::Access::atomic_write);                                                        \
    return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                          \
  extern "C" T __tsan_atomic##bits##_fetch_xor(volatile T* p, T v, int) {                                    \
    emu::atomic_access(p, emu::Access::atomic_write);                                                        \
    return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST);                                                       \
  }                                                                                                          \
  extern "C" T __tsan_atomic##bits##_fetch_nand(volatile T* p, T v, int) {                                   \
    emu::atomic_access(p, emu::Access::atomic_write);                                                        \
    return __atomic_fetch_nand(p, v, __ATOMIC_SEQ_CST);                                                      \
  }                                                                                                          \
  extern "C" int __tsan_atomic##bits##_compare_exchange_strong(volatile T* p, T* expected, T v, int, int) {  \
    emu::atomic_access(p, emu::Access::atomic_write);                                                        \
    return __atomic_compare_exchange_n(p, expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);           \
  }                                                                                                          \
  extern "C" int __tsan_atomic##bits##_compare_exchange_weak(volatile T* p, T* expected, T v, int, int) {    \
    emu::atomic_access(p, emu::Access::atomic_write);                                                        \
    return __atomic_compare_exchange_n(p, expected, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);            \
  }                                                                                                          \
  extern "C" T __tsan_atomic##bits##_compare_exchange_val(volatile T* p, T expected, T v, int, int) {        \
    emu::atomic_access(p, emu::Access::atomic_write);                                                        \
    __atomic_compare_exchange_n(p, &expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                 \
    return expected;                                                                                         \
  }
RT_EMU_TSAN_ATOMIC(8, uint8_t)
RT_EMU_TSAN_ATOMIC(16, uint16_t)
RT_EMU_TSAN_ATOMIC(32, uint32_t)
RT_EMU_TSAN_ATOMIC(64, uint64_t)
#undef RT_EMU_TSAN_ATOMIC
