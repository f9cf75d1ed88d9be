// permute: a materialised copy of x.permute(perm), for 2- and 4-byte elements.
//
// Dimensions of size 1 are dropped and output dimensions that stay adjacent and in order in
// the input are merged, so e.g. [B, H, L, D] -> [B, L, H, D] becomes a copy of D-long runs.
// Each output row (the last collapsed dimension) is then one contiguous copy, or, when the
// input's unit-stride dimension moved away from the end (a transpose), the copy goes through
// 32x32 tiles so that neither side strides through memory line by line (4-byte elements are
// transposed 8x8 in AVX registers when the cpu has AVX2). Work is spread over
// threads by rows or tiles.
#include <algorithm>
#include <cstring>

#include "../ops.h"
#include "isa.h"
#include "parallel.h"
#include "transpose.h"

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

// Output offsets and input offsets of index `flat` over the dimensions in `dims` (row-major).
static void decompose(const CollapsedPermute& c, const int64_t* out_stride, const int* dims, int count, int64_t flat,
                      int64_t* in_offset, int64_t* out_offset) {
  *in_offset = *out_offset = 0;
  for (int k = count - 1; k >= 0; --k) {
    const int d = dims[k];
    const int64_t index = flat % c.size[d];
    flat /= c.size[d];
    *in_offset += index * c.in_stride[d];
    *out_offset += index * out_stride[d];
  }
}

// A transposing permutation: the input's unit-stride dimension `unit` is not the output's last.
// Each 32x32 tile of (unit, last) is read along the input's rows into a local buffer and written
// along the output's rows, so every cache line is touched once on each side (a direct strided
// copy would thrash L1 sets when the strides are powers of two).
// One full 32x32 tile of 4-byte elements: src rows (`src_stride` apart) become dst columns, in
// 8x8 register transposes straight from the input to the output.
__attribute__((target("avx2"))) static void transpose_tile_avx2(const uint32_t* src, int64_t src_stride, uint32_t* dst,
                                                                 int64_t dst_stride) {
  for (int64_t b = 0; b < 32; b += 8)
    for (int64_t a = 0; a < 32; a += 8)
      transpose_8x8(reinterpret_cast<const float*>(src + b * src_stride + a), src_stride,
                    reinterpret_cast<float*>(dst + a * dst_stride + b), dst_stride);
}

template <class T>
static void permute_tiled(const CollapsedPermute& c, int unit, const T* x, T* out) {
  constexpr int64_t kTile = 32, kBlock = 256;
  const int last = c.ndim - 1;
  int64_t out_stride[kMaxDims];
  int64_t s = 1;
  for (int d = last; d >= 0; --d) {
    out_stride[d] = s;
    s *= c.size[d];
  }
  int others[kMaxDims];
  int other_count = 0;
  for (int d = 0; d < last; ++d)
    if (d != unit) others[other_count++] = d;
  const int64_t unit_size = c.size[unit], last_size = c.size[last];
  const int64_t unit_blocks = (unit_size + kBlock - 1) / kBlock, last_blocks = (last_size + kBlock - 1) / kBlock;
  const int64_t blocks_per_slice = unit_blocks * last_blocks;
  const int64_t tasks = c.numel / (unit_size * last_size) * blocks_per_slice;
  const int64_t last_stride = c.in_stride[last], unit_out_stride = out_stride[unit];
  const bool registers = isa() != Isa::scalar;  // AVX2 8x8 transposes for 4-byte elements
  // A task is a 256x256 block (few enough pages on each side for the TLB), copied in tiles.
  parallel_for(tasks, std::max<int64_t>(1, kGrain / (kBlock * kBlock)), [&](int64_t begin, int64_t end) {
    T tile[kTile][kTile];
    for (int64_t task = begin; task < end; ++task) {
      int64_t in_base, out_base;
      decompose(c, out_stride, others, other_count, task / blocks_per_slice, &in_base, &out_base);
      const int64_t block = task % blocks_per_slice;
      const int64_t a_begin = block / last_blocks * kBlock, a_end = std::min(unit_size, a_begin + kBlock);
      const int64_t b_begin = block % last_blocks * kBlock, b_end = std::min(last_size, b_begin + kBlock);
      for (int64_t a0 = a_begin; a0 < a_end; a0 += kTile) {
        const int64_t a1 = std::min(a_end, a0 + kTile);
        for (int64_t b0 = b_begin; b0 < b_end; b0 += kTile) {
          const int64_t b1 = std::min(b_end, b0 + kTile);
          if constexpr (sizeof(T) == 4) {
            if (registers && a1 - a0 == kTile && b1 - b0 == kTile) {
              transpose_tile_avx2(reinterpret_cast<const uint32_t*>(x + in_base + b0 * last_stride + a0), last_stride,
                                  reinterpret_cast<uint32_t*>(out + out_base + a0 * unit_out_stride + b0),
                                  unit_out_stride);
              continue;
            }
          }
          if (a1 - a0 == kTile && b1 - b0 == kTile) {
            // Full tiles with constant trip counts, which the compiler unrolls and vectorises.
            for (int64_t b = 0; b < kTile; ++b) std::memcpy(tile[b], x + in_base + (b0 + b) * last_stride + a0, sizeof(tile[b]));
            for (int64_t a = 0; a < kTile; ++a) {
              T* dst = out + out_base + (a0 + a) * unit_out_stride + b0;
              for (int64_t b = 0; b < kTile; ++b) dst[b] = tile[b][a];
            }
            continue;
          }
          for (int64_t b = b0; b < b1; ++b) {
            const T* src = x + in_base + b * last_stride;
            for (int64_t a = a0; a < a1; ++a) tile[b - b0][a - a0] = src[a];
          }
          for (int64_t a = a0; a < a1; ++a) {
            T* dst = out + out_base + a * unit_out_stride;
            for (int64_t b = b0; b < b1; ++b) dst[b] = tile[b - b0][a - a0];
          }
        }
      }
    }
  });
}

template <class T>
static void permute_typed(const PermuteParams& p) {
  const CollapsedPermute c = collapse(p);
  if (c.numel == 0) return;
  const int outer_dims = c.ndim - 1;
  const int64_t row_len = c.size[outer_dims], row_stride = c.in_stride[outer_dims];
  const T* x = static_cast<const T*>(p.x);
  T* out = static_cast<T*>(p.out);
  if (row_stride != 1) {
    for (int d = 0; d < outer_dims; ++d)
      if (c.in_stride[d] == 1) return permute_tiled(c, d, x, out);
  }
  const int64_t rows = c.numel / row_len;
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
