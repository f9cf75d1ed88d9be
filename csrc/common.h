// Types and error handling shared by every backend. Compiled by the host compiler and by nvcc,
// so it stays plain C++17 with no Node headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace rt {

enum class DType : int32_t { f32 = 0, bf16 = 1, i32 = 2 };

inline size_t dtype_size(DType t) { return t == DType::bf16 ? 2 : 4; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
  }
  return "?";
}

// Every failure inside the addon is an rt::Error; the N-API layer turns it into a JS exception.
// `kind` picks the JS class: TypeError for wrong dtypes/devices, RangeError for shapes and sizes.
class Error : public std::runtime_error {
 public:
  enum Kind { generic, type, range };
  explicit Error(const std::string& message, Kind kind = generic)
      : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

[[noreturn]] inline void fail(const std::string& message, Error::Kind kind = Error::generic) {
  throw Error(message, kind);
}

}  // namespace rt
