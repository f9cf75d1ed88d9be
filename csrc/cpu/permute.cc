// permute: a materialised copy of x.permute(perm), for 2- and 4-byte elements.
//
// Dimensions of size 1 are dropped and output dimensions that stay adjacent and in order in
// the input are merged, so e.g. [B, H, L, D] -> [B, L, H, D] becomes a copy of D-long runs.
// Each output row (the last collapsed dimension) is then either one contiguous copy or a
// strided gather; rows are spread over threads.
#include <algorithm>
#include <cstring>

#include "../ops.h"
#include "parallel.h"

namespace rt::cpu {

constexpr int64_t kGrain = 1 << 16;

struct CollapsedPermute {
  int ndim = 0;
  int64_t size[kMaxDims];       // in output order
  int64_t in_stride[kMaxDims];  // the input stride of each output dimension
  int64_t numel = 1;
};

static CollapsedPermute collapse(const PermuteParams& p) {
  int64_t stride[kMaxDims];
  int64_t s = 1;
  for (int d = p.ndim - 1; d >= 0; --d) {
    stride[d] = s;
    s *= p.in_shape[d];
  }
  CollapsedPermute c;
  for (int d = 0; d < p.ndim; ++d) {
    const int64_t size = p.in_shape[p.perm[d]], st = stride[p.perm[d]];
    c.numel *= size;
    if (size == 1) continue;
    if (c.ndim > 0 && c.in_stride[c.ndim - 1] == size * st) {
      c.size[c.ndim - 1] *= size;
      c.in_stride[c.ndim - 1] = st;
    } else {
      c.size[c.ndim] = size;
      c.in_stride[c.ndim] = st;
      ++c.ndim;
    }
  }
  if (c.ndim == 0) {
    c.ndim = 1;
    c.size[0] = 1;
    c.in_stride[0] = 1;
  }
  return c;
}

template <class T>
static void permute_typed(const PermuteParams& p) {
  const CollapsedPermute c = collapse(p);
  if (c.numel == 0) return;
  const int outer_dims = c.ndim - 1;
  const int64_t row_len = c.size[outer_dims], row_stride = c.in_stride[outer_dims];
  const int64_t rows = c.numel / row_len;
  const T* x = static_cast<const T*>(p.x);
  T* out = static_cast<T*>(p.out);
  parallel_for(rows, std::max<int64_t>(1, kGrain / row_len), [&](int64_t begin, int64_t end) {
    int64_t index[kMaxDims];
    int64_t offset = 0, rest = begin;
    for (int d = outer_dims - 1; d >= 0; --d) {
      index[d] = rest % c.size[d];
      rest /= c.size[d];
      offset += index[d] * c.in_stride[d];
    }
    for (int64_t row = begin; row < end; ++row) {
      const T* src = x + offset;
      T* dst = out + row * row_len;
      if (row_stride == 1) {
        std::memcpy(dst, src, size_t(row_len) * sizeof(T));
      } else {
        for (int64_t i = 0; i < row_len; ++i) dst[i] = src[i * row_stride];
      }
      for (int d = outer_dims - 1; d >= 0; --d) {
        offset += c.in_stride[d];
        if (++index[d] < c.size[d]) break;
        offset -= c.size[d] * c.in_stride[d];
        index[d] = 0;
      }
    }
  });
}

static void permute(const PermuteParams& p) {
  if (dtype_size(p.dtype) == 2)
    permute_typed<uint16_t>(p);
  else
    permute_typed<uint32_t>(p);
}

RT_REGISTER_OP(BackendId::cpu, permute, permute);

}  // namespace rt::cpu
