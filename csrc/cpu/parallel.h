// The cpu backend's thread pool. All cores by default; REALTUNE_NUM_THREADS overrides.
#pragma once

#include <cstdint>
#include <functional>

namespace rt::cpu {

int num_threads();
void set_num_threads(int n);

// Calls fn(begin, end) over [0, n) split into chunks of at least `grain` items, on the pool's
// threads and the caller's. Runs inline when the work is one chunk or the pool has one thread,
// so small ops pay no synchronisation. Exceptions from fn are rethrown on the caller.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Calls fn(task) for task in [0, tasks), one task per call, load-balanced across threads.
inline void parallel_tasks(int64_t tasks, const std::function<void(int64_t)>& fn) {
  parallel_for(tasks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) fn(t);
  });
}

}  // namespace rt::cpu
