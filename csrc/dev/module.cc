// realtune_dev.node's entry point: it exports what RT_DEV_BINDING defines (bench.cc, and in
// cuda-emu builds emu.cc), nothing of realtune.node.
#include "dev_binding.h"

namespace rt::napi {

BindingList& dev_bindings() {
  static BindingList list;
  return list;
}

static Napi::Object init(Napi::Env env, Napi::Object exports) {
  export_bindings(env, exports, dev_bindings());
  return exports;
}

NODE_API_MODULE(realtune_dev, init)

}  // namespace rt::napi
