#ifndef CONTRASTIVE_CUDA_DETAIL_ELEMENTS_CUH
#define CONTRASTIVE_CUDA_DETAIL_ELEMENTS_CUH

// What every CUDA kernel of the library shares (nvcc only; internal): the math mode of float
// inputs, rows in up to two segments, and the element conversions of the 16-bit types.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "contrastive/core/config.hpp"
#include "contrastive/core/matrix_view.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {

/// How float inputs are multiplied: exact fp32 FMAs, or TF32 tensor cores (10-bit mantissa).
enum class math_mode { fp32, tf32 };

namespace detail {

/// Rows of a matrix that may be split in two segments (NT-Xent's Z = [A; B]); unit column stride.
template <class T>
struct rows2 {
  T* p0 = nullptr;
  index_t ld0 = 0, n0 = 0;
  T* p1 = nullptr;
  index_t ld1 = 0, n1 = 0;
  __host__ __device__ index_t rows() const { return n0 + n1; }
  __device__ T* row(index_t i) const { return i < n0 ? p0 + i * ld0 : p1 + (i - n0) * ld1; }
};

// ---- element types -------------------------------------------------------------------------

template <class T>
__device__ inline float to_float(T x) {
  return static_cast<float>(x);
}
template <>
__device__ inline float to_float<__half>(__half x) {
  return __half2float(x);
}
template <>
__device__ inline float to_float<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <class T>
__device__ inline T from_float(float x) {
  return static_cast<T>(x);
}
template <>
__device__ inline __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

/// The grid's warps, for grid-stride loops of one warp per row: this thread's warp and the count.
__device__ inline index_t grid_warp() {
  return (blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x) / 32;
}
__device__ inline index_t grid_warps() { return static_cast<index_t>(gridDim.x) * blockDim.x / 32; }

}  // namespace detail
}  // namespace cuda
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_DETAIL_ELEMENTS_CUH
