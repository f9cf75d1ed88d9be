// The emulator's self-test scenarios (selftest.cc), by name: correct kernels exercising each
// supported feature, and deliberately broken kernels the emulator must catch. Plain C++ with no
// binding-layer types; test/emu reaches them through realtune_dev.node's emuSelfTest.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace rt_emu::selftest {

using Input = std::vector<double>;
using Output = std::vector<double>;
// Runs the scenario's launches on `input`; throws emu::KernelError when a launch fails.
using Scenario = std::function<Output(const Input&)>;

// The scenario called `name`, or nullptr when there is none.
const Scenario* find_scenario(const std::string& name);

}  // namespace rt_emu::selftest
