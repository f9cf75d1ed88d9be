// The cuda-emu bindings the tests use, in realtune_dev.node when the emulator is built in:
// emuSelfTest runs the emulator's self-test scenarios (cuda/emu/selftest.cc) and
// emuLaunchCounts reads its launch counter, so a test can check which kernel an op dispatched
// to (e.g. the WMMA or the SIMT attention backward).
#include <algorithm>
#include <string>

#include "../../cuda/emu/cuda_emu.h"
#include "../../cuda/emu/selftest.h"
#include "dev_binding.h"

namespace rt::napi {

// emuSelfTest(name, input?, rethrow?) -> the scenario's outputs, or the launch's error message
// (rethrown as the JS Error every op would raise when `rethrow`).
RT_DEV_BINDING(emuSelfTest) {
  Napi::Env env = info.Env();
  RT_EXPECT(info.Length() >= 1 && info[0].IsString(), "emuSelfTest: name must be a string", Error::type);
  const std::string name = info[0].As<Napi::String>();
  const rt_emu::selftest::Scenario* scenario = rt_emu::selftest::find_scenario(name);
  RT_EXPECT(scenario != nullptr, "emuSelfTest: no scenario named '" + name + "'");
  rt_emu::selftest::Input input;
  if (info.Length() >= 2 && info[1].IsTypedArray()) {
    Napi::Float64Array a = info[1].As<Napi::Float64Array>();
    input.assign(a.Data(), a.Data() + a.ElementLength());
  }
  try {
    const rt_emu::selftest::Output out = (*scenario)(input);
    Napi::Float64Array result = Napi::Float64Array::New(env, out.size());
    std::copy(out.begin(), out.end(), result.Data());
    return result;
  } catch (const emu::KernelError& e) {
    if (info.Length() >= 3 && info[2].ToBoolean()) throw;
    return Napi::String::New(env, e.what());
  }
}

// emuLaunchCounts() -> { [kernel name]: launches started since the process began }
RT_DEV_BINDING(emuLaunchCounts) {
  Napi::Env env = info.Env();
  Napi::Object counts = Napi::Object::New(env);
  for (const auto& [name, launches] : emu::launch_counts()) counts.Set(name, Napi::Number::New(env, double(launches)));
  return counts;
}

}  // namespace rt::napi
