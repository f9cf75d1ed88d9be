// A shared library opened at run time rather than linked (Open MPI for csrc/napi/dist.cc, NCCL
// for cuda/nccl.cu), so that the addon builds and loads where it is not installed. Every failure
// is an rt::Error saying what could not be loaded and what to install. Plain C++17: nvcc
// compiles it too.
#pragma once

#include <dlfcn.h>

#include <string>

#include "common.h"

namespace rt {

class RuntimeLibrary {
 public:
  bool is_open() const { return handle_ != nullptr; }

  // dlopen with RTLD_GLOBAL: Open MPI's plugins resolve their symbols against libmpi. On failure
  // throws "<context> but <file> could not be loaded: <reason>; <hint>".
  void open(const std::string& file, const std::string& context, const std::string& hint) {
    handle_ = dlopen(file.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (handle_ == nullptr) {
      const char* reason = dlerror();
      fail(context + " but " + file + " could not be loaded: " + (reason != nullptr ? reason : "unknown reason") + "; " + hint);
    }
    file_ = file;
    hint_ = hint;
  }

  // The address of `name` (a function, or a global such as an MPI handle).
  template <class T>
  T symbol(const char* name) const {
    void* address = dlsym(handle_, name);
    if (address == nullptr) fail("data-parallel: " + file_ + " has no symbol " + name + "; " + hint_);
    return reinterpret_cast<T>(address);
  }

 private:
  void* handle_ = nullptr;
  std::string file_;
  std::string hint_;
};

}  // namespace rt
