#ifndef CONTRASTIVE_CUDA_DETAIL_CHECKS_CUH
#define CONTRASTIVE_CUDA_DETAIL_CHECKS_CUH

// Argument checks shared by the CUDA samplers and regularisers (gamma.cuh, brownian_bridge.cuh,
// geometric_consistency.cuh). nvcc only; never in the umbrella.
//
// The host checks (shapes, strides, aliasing) and their noexcept `*_ok` forms for the `_async`
// entry points are those of core/checks.hpp (Eigen-free, so nvcc sees it), brought into this
// namespace; this header adds only the data checks. Those (non-finite values, zero-norm rows,
// negative ids) run on the device, flag the first bad index with atomicMin and copy back one
// number, so the throwing wrappers report the same errors as the CPU path at the cost of one
// extra read of the input.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "contrastive/core/checks.hpp"
#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/modal_common.hpp"
#include "contrastive/cuda/error.cuh"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

using device_index = unsigned long long;  // atomicMin's type
constexpr device_index no_bad_index = ~0ull;

constexpr int sampler_block = 256;

/// Blocks for a grid-stride loop over `count` items (at least 1, at most 2^16).
inline unsigned grid_for(index_t count, int block = sampler_block) noexcept {
  const index_t b = (count + block - 1) / block;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

// The host checks and their noexcept predicates: one home, core/checks.hpp.
using contrastive::detail::check_matrix;
using contrastive::detail::check_no_alias;
using contrastive::detail::check_pair_shape;
using contrastive::detail::check_shape;
using contrastive::detail::check_writable_layout;
using contrastive::detail::matrix_ok;
using contrastive::detail::writable_ok;

// ---- device data checks ----

/// first = the smallest row >= first_row whose squared norm (in double) is not finite and > 0.
template <class T>
__global__ void first_bad_row_kernel(matrix_view<const T, device_memory> x, index_t first_row,
                                     device_index* first) {
  for (index_t i = first_row + blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
       i < x.rows(); i += static_cast<index_t>(blockDim.x) * gridDim.x) {
    double s = 0;
    for (index_t k = 0; k < x.cols(); ++k) {
      const double a = static_cast<double>(x(i, k));
      s += a * a;
    }
    // Not finite and > 0 (NaN fails both comparisons); the row_norm_ok of modal_common.hpp.
    if (!(s > 0 && s <= 1.7976931348623157e308)) atomicMin(first, static_cast<device_index>(i));
  }
}

/// first = the smallest position k with ids[k] < 0. (A template only so that every translation
/// unit may instantiate it.)
template <int = 0>
__global__ void first_negative_id_kernel(const std::int64_t* ids, index_t count,
                                         device_index* first) {
  for (index_t k = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; k < count;
       k += static_cast<index_t>(blockDim.x) * gridDim.x)
    if (ids[k] < 0) atomicMin(first, static_cast<device_index>(k));
}

/// One device_index on the device, set to no_bad_index, read back after a kernel.
class device_flag {
 public:
  explicit device_flag(cudaStream_t stream) : buf_(sizeof(device_index)), stream_(stream) {}
  device_index* get() const noexcept { return buf_.as<device_index>(); }
  void reset() const {
    // 0xFF bytes: no_bad_index.
    throw_on_error(cudaMemsetAsync(buf_.data(), 0xFF, sizeof(device_index), stream_),
                   "cudaMemsetAsync");
  }
  device_index read() const {
    device_index h = no_bad_index;
    throw_on_error(
        cudaMemcpyAsync(&h, buf_.data(), sizeof(device_index), cudaMemcpyDeviceToHost, stream_),
        "cudaMemcpyAsync");
    throw_on_error(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    return h;
  }

 private:
  device_buffer buf_;
  cudaStream_t stream_;
};

/// An element as a double, for the scans (16-bit types through float; exact).
template <class T>
__host__ __device__ inline double scan_value(T x) {
  return static_cast<double>(x);
}
template <>
__host__ __device__ inline double scan_value<__half>(__half x) {
  return static_cast<double>(__half2float(x));
}
template <>
__host__ __device__ inline double scan_value<__nv_bfloat16>(__nv_bfloat16 x) {
  return static_cast<double>(__bfloat162float(x));
}

/// first = the smallest row-major position i * cols + j whose element is NaN or +-inf.
template <class T>
__global__ void first_non_finite_kernel(matrix_view<const T, device_memory> x,
                                        device_index* first) {
  const index_t total = x.rows() * x.cols();
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<index_t>(blockDim.x) * gridDim.x) {
    const double v = scan_value(x(e / x.cols(), e % x.cols()));
    if (!(v - v == 0.0)) atomicMin(first, static_cast<device_index>(e));
  }
}

/// The CPU's check_finite on a device matrix (any element type): one pass over the input, the
/// first bad element copied back and reported with the CPU's message (check_value_finite).
template <class T>
void check_finite_device(const char* fn, const char* name,
                         const matrix_view<const T, device_memory>& x, cudaStream_t stream) {
  if (x.rows() == 0 || x.cols() == 0) return;
  device_flag flag(stream);
  flag.reset();
  first_non_finite_kernel<T>
      <<<grid_for(x.rows() * x.cols()), sampler_block, 0, stream>>>(x, flag.get());
  throw_on_error(cudaGetLastError(), "first_non_finite_kernel");
  const device_index bad = flag.read();
  if (bad == no_bad_index) return;
  const auto i = static_cast<index_t>(bad) / x.cols(), j = static_cast<index_t>(bad) % x.cols();
  T value{};
  throw_on_error(cudaMemcpy(&value, &x(i, j), sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  contrastive::detail::check_value_finite(fn, name, scan_value(value), i, j);
}

/// The CPU's check_rows on a device matrix: every value finite, no row of zero norm; the first
/// bad row is copied back and reported with modal_common.hpp's messages.
template <class T>
void check_rows(const char* fn, const char* name, const matrix_view<const T, device_memory>& x,
                cudaStream_t stream) {
  if (x.empty()) return;
  device_flag flag(stream);
  std::vector<T> row(static_cast<std::size_t>(x.cols()));
  std::vector<double> values(row.size());  // any element type, as the CPU prints it
  index_t start = 0;
  while (start < x.rows()) {
    flag.reset();
    first_bad_row_kernel<T>
        <<<grid_for(x.rows() - start), sampler_block, 0, stream>>>(x, start, flag.get());
    throw_on_error(cudaGetLastError(), "first_bad_row_kernel");
    const device_index bad = flag.read();
    if (bad == no_bad_index) return;
    const auto i = static_cast<index_t>(bad);
    // The row, element by element (any strides), to the host.
    for (index_t k = 0; k < x.cols(); ++k)
      throw_on_error(cudaMemcpy(&row[static_cast<std::size_t>(k)], &x(i, k), sizeof(T),
                                cudaMemcpyDeviceToHost),
                     "cudaMemcpy");
    for (std::size_t k = 0; k < row.size(); ++k) values[k] = scan_value(row[k]);
    contrastive::detail::report_bad_row_values(fn, name, i, values.data(), x.cols(), index_t(1));
    start = i + 1;  // a finite row whose squared norm overflowed double: look further
  }
}

/// ids (device memory, `count` entries) must all be >= 0; `where` is "position" or "row".
inline void check_ids_nonnegative(const char* fn, const std::int64_t* ids, index_t count,
                                  const char* where, cudaStream_t stream) {
  if (count <= 0) return;
  device_flag flag(stream);
  flag.reset();
  first_negative_id_kernel<><<<grid_for(count), sampler_block, 0, stream>>>(ids, count, flag.get());
  throw_on_error(cudaGetLastError(), "first_negative_id_kernel");
  const device_index bad = flag.read();
  if (bad == no_bad_index) return;
  std::int64_t id = 0;
  throw_on_error(cudaMemcpy(&id, ids + bad, sizeof(id), cudaMemcpyDeviceToHost), "cudaMemcpy");
  contrastive::detail::check_id_nonnegative(fn, id, where, static_cast<index_t>(bad));
}

}  // namespace detail
}  // namespace cuda
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_DETAIL_CHECKS_CUH
