// permute: a materialised copy of x.permute(perm) for 2- and 4-byte elements.
// On the host, size-1 dimensions are dropped and output dimensions that stay adjacent and in
// order in the input are merged (as in csrc/cpu/permute.cc), which leaves few dimensions.
//   - The innermost output dimension is also innermost in the input (e.g. [B, L, H, D] ->
//     [B, H, L, D]): one thread per output element, gathering through the collapsed strides;
//     loads and stores are both coalesced.
//   - Otherwise (a transpose): 32x32 tiles through shared memory, coalesced on both sides.
// Either way 4 + 4 bytes (f32) move per element: ~0.17 ms per 64M f32 elements on an H100 at
// ~3.0 TB/s, a little more for transposes with ragged edge tiles.
#include <cstdint>

#include "launch.h"

namespace RT_BACKEND_NS {

struct PermuteDims {
  int ndim;
  int64_t size[rt::kMaxDims];       // in output order
  int64_t in_stride[rt::kMaxDims];  // the input stride of each output dimension
};

static PermuteDims collapse(const rt::PermuteParams& p, int64_t* numel) {
  int64_t stride[rt::kMaxDims];
  int64_t s = 1;
  for (int d = p.ndim - 1; d >= 0; --d) {
    stride[d] = s;
    s *= p.in_shape[d];
  }
  *numel = s;
  PermuteDims c{};
  for (int d = 0; d < p.ndim; ++d) {
    const int64_t size = p.in_shape[p.perm[d]], st = stride[p.perm[d]];
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
  return c;
}

template <class T>
__global__ void __launch_bounds__(256) permute_kernel(dptr<const T> x, dptr<T> out, int64_t n, PermuteDims dims) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = k, offset = 0;
    for (int d = dims.ndim - 1; d >= 0; --d) {
      offset += (rest % dims.size[d]) * dims.in_stride[d];
      rest /= dims.size[d];
    }
    out[k] = x[offset];
  }
}

// A transposing permutation, seen as slices [unit, last] -> out[.., a, .., b] = in[a + b * last_stride]:
// the input's unit-stride dimension `unit` is not the output's last. Tiles of 32x32 go through
// shared memory (padded against bank conflicts): loads are coalesced along `unit`, stores along
// `last`. blockIdx.z walks the remaining ("other") dimensions.
struct TransposeDims {
  int other_count;
  int64_t other_size[rt::kMaxDims];
  int64_t other_in_stride[rt::kMaxDims];
  int64_t other_out_stride[rt::kMaxDims];
  int64_t others;  // product of other_size
  int64_t unit_size, last_size, last_in_stride, unit_out_stride;
};

constexpr int kTile = 32, kTileRows = 8;

template <class T>
__global__ void __launch_bounds__(kTile * kTileRows)
    permute_transpose_kernel(dptr<const T> x, dptr<T> out, TransposeDims dims) {
  __shared__ T tile[kTile][kTile + 1];
  const int64_t b0 = int64_t(blockIdx.x) * kTile;
  for (int64_t slice = blockIdx.z; slice < dims.others; slice += gridDim.z) {
    int64_t rest = slice, in_base = 0, out_base = 0;
    for (int d = dims.other_count - 1; d >= 0; --d) {
      const int64_t index = rest % dims.other_size[d];
      rest /= dims.other_size[d];
      in_base += index * dims.other_in_stride[d];
      out_base += index * dims.other_out_stride[d];
    }
    for (int64_t a0 = int64_t(blockIdx.y) * kTile; a0 < dims.unit_size; a0 += int64_t(gridDim.y) * kTile) {
      const int64_t a = a0 + threadIdx.x;
      for (int k = threadIdx.y; k < kTile; k += kTileRows) {
        const int64_t b = b0 + k;
        if (a < dims.unit_size && b < dims.last_size) tile[k][threadIdx.x] = x[in_base + a + b * dims.last_in_stride];
      }
      __syncthreads();
      const int64_t b = b0 + threadIdx.x;
      for (int k = threadIdx.y; k < kTile; k += kTileRows) {
        const int64_t row = a0 + k;
        if (row < dims.unit_size && b < dims.last_size) out[out_base + row * dims.unit_out_stride + b] = tile[threadIdx.x][k];
      }
      __syncthreads();  // the tile is reused by the next iteration
    }
  }
}

template <class T>
static void launch_permute(const rt::PermuteParams& p, const PermuteDims& dims, int64_t n) {
  const int last = dims.ndim - 1;
  int unit = -1;
  if (dims.in_stride[last] != 1)
    for (int d = 0; d < last; ++d)
      if (dims.in_stride[d] == 1) unit = d;
  if (unit < 0) {
    const int blocks = static_cast<int>(std::min<int64_t>(rt::ceil_div(n, 256), 8192));
    RT_LAUNCH(permute_kernel<T>, blocks, 256, 0, static_cast<const T*>(p.x), static_cast<T*>(p.out), n, dims);
    return;
  }
  TransposeDims t{};
  int64_t out_stride[rt::kMaxDims];
  int64_t s = 1;
  for (int d = last; d >= 0; --d) {
    out_stride[d] = s;
    s *= dims.size[d];
  }
  t.others = 1;
  for (int d = 0; d < last; ++d) {
    if (d == unit) continue;
    t.other_size[t.other_count] = dims.size[d];
    t.other_in_stride[t.other_count] = dims.in_stride[d];
    t.other_out_stride[t.other_count] = out_stride[d];
    t.others *= dims.size[d];
    ++t.other_count;
  }
  t.unit_size = dims.size[unit];
  t.last_size = dims.size[last];
  t.last_in_stride = dims.in_stride[last];
  t.unit_out_stride = out_stride[unit];
  // The last dimension's tiles go on x (up to 2^31 - 1 blocks); y (unit tiles) and z (slices)
  // are capped at 65535 and loop inside the kernel.
  const dim3 grid(unsigned(rt::ceil_div(t.last_size, kTile)), unsigned(std::min<int64_t>(rt::ceil_div(t.unit_size, kTile), 65535)),
                  unsigned(std::min<int64_t>(t.others, 65535)));
  RT_LAUNCH(permute_transpose_kernel<T>, grid, dim3(kTile, kTileRows), 0, static_cast<const T*>(p.x),
            static_cast<T*>(p.out), t);
}

static void permute(const rt::PermuteParams& p) {
  int64_t n = 0;
  const PermuteDims dims = collapse(p, &n);
  if (n == 0) return;
  if (rt::dtype_size(p.dtype) == 2)
    launch_permute<uint16_t>(p, dims, n);
  else
    launch_permute<uint32_t>(p, dims, n);
}

RT_REGISTER_OP(RT_BACKEND_ID, permute, permute);

}  // namespace RT_BACKEND_NS
