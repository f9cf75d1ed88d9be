// The binding layer of realtune_dev.node, the addon of functions only test/ and bench/ use
// (built by scripts/build-native.mjs beside realtune.node; the production addon carries none of
// them). RT_DEV_BINDING(name) defines one, as RT_BINDING does for realtune.node.
//
// realtune_dev.node links against realtune.node and, at load, binds to the copy the process
// already loaded (the dynamic loader matches its soname), so both addons share one set of
// tensors, one thread pool and one cuda-emu runtime: the argument readers, tensors and kernels
// used here are realtune.node's.
#pragma once

#include "../napi/args.h"

namespace rt::napi {

BindingList& dev_bindings();

}  // namespace rt::napi

#define RT_DEV_BINDING(name) RT_BINDING_IN(::rt::napi::dev_bindings(), name)
