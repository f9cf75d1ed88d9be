// emuLaunchCounts() -> { [kernel name]: launches started }: the cuda-emu launch counter, so a
// test can check which kernel an op dispatched to (e.g. the WMMA or the SIMT attention backward).
#include "cuda_emu.h"

#include "../../csrc/napi/args.h"

namespace rt::napi {

RT_BINDING(emuLaunchCounts) {
  Napi::Env env = info.Env();
  Napi::Object counts = Napi::Object::New(env);
  for (const auto& [name, launches] : emu::launch_counts()) counts.Set(name, Napi::Number::New(env, double(launches)));
  return counts;
}

}  // namespace rt::napi
