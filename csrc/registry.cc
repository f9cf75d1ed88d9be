// Storage for the op tables and backend slots that backends fill at static-initialisation time,
// and the per-(op, backend) call counters.
#include <atomic>

#include "backend.h"

namespace rt {

OpTable& op_table(BackendId backend) {
  static OpTable tables[kNumBackends];
  return tables[static_cast<int>(backend)];
}

static std::atomic<uint64_t>& call_counter(OpId op, BackendId backend) {
  static std::atomic<uint64_t> counters[kNumOps][kNumBackends];
  return counters[static_cast<int>(op)][static_cast<int>(backend)];
}

uint64_t op_calls(OpId op, BackendId backend) { return call_counter(op, backend).load(std::memory_order_relaxed); }

void count_op_call(OpId op, BackendId backend) { call_counter(op, backend).fetch_add(1, std::memory_order_relaxed); }

static Backend& slot(BackendId id) {
  static Backend slots[kNumBackends];
  return slots[static_cast<int>(id)];
}

Backend& backend(BackendId id) {
  Backend& b = slot(id);
  b.id = id;
  return b;
}

bool backend_compiled(BackendId id) { return slot(id).type[0] != '\0'; }

void register_backend(const Backend& b) { slot(b.id) = b; }

bool register_backend_at_startup(const Backend& b) {
  register_backend(b);
  return true;
}

}  // namespace rt
