// Storage for the op tables and backend slots that backends fill at static-initialisation time.
#include "backend.h"

namespace rt {

OpTable& op_table(BackendId backend) {
  static OpTable tables[kNumBackends];
  return tables[static_cast<int>(backend)];
}

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
