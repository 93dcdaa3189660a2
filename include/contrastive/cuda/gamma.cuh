#ifndef CONTRASTIVE_CUDA_GAMMA_CUH
#define CONTRASTIVE_CUDA_GAMMA_CUH

// The gamma sampler on the GPU (nvcc only; never in the umbrella). Each element runs the host-
// device code of sampling/gamma.hpp (detail::gamma_sample: Marsaglia-Tsang on the Philox stream
// (seed, id, step, stream)), so it draws exactly the CPU's uint32 words; the result agrees with
// fill_gamma to an ulp or so of the device's log/cos/exp (about 1e-15 relative in double).
//
//   fill_gamma_async(out, p, first_id, stream)     element (i, j) gets sample id
//                                                  first_id + i * cols + j (vector: first_id + i)
//   fill_gamma_async(out, p, ids, count, stream)   element (i, j) gets ids[i * cols + j]
//                                                  (ids in device memory, count = out's size)
//   fill_gamma(...)                                the same, checked (contrastive::invalid_argument
//                                                  with the CPU's messages, negative ids found on
//                                                  the device), then synchronised; CUDA failures
//                                                  throw cuda::cuda_error.
//
// The _async functions never throw: bad arguments give cudaErrorInvalidValue before any launch;
// a negative id (which only the device sees) makes its element NaN.

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/cuda/detail/checks.cuh"
#include "contrastive/cuda/error.cuh"
#include "contrastive/sampling/gamma.hpp"
#include "contrastive/sampling/philox.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

/// Grid-stride over the elements in row-major order e = i * cols + j (the id order of the CPU).
template <class T>
__global__ void fill_gamma_kernel(matrix_view<T, device_memory> out, gamma_params p,
                                  contrastive::detail::gamma_constants k, std::uint64_t first_id,
                                  const std::int64_t* ids) {
  const index_t n = out.size(), cols = out.cols();
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<index_t>(blockDim.x) * gridDim.x) {
    const index_t i = e / cols, j = e - (e / cols) * cols;
    if (ids != nullptr && ids[e] < 0) {
      out(i, j) = static_cast<T>(__builtin_nan(""));
      continue;
    }
    const std::uint64_t id = ids != nullptr ? static_cast<std::uint64_t>(ids[e])
                                            : first_id + static_cast<std::uint64_t>(e);
    out(i, j) = static_cast<T>(contrastive::detail::gamma_sample(k, p, id));
  }
}

/// check_gamma_params without exceptions.
inline bool gamma_params_ok(const gamma_params& p) noexcept {
  constexpr double inf = __builtin_huge_val();
  return p.alpha > 0 && p.alpha < inf && p.rate > 0 && p.rate < inf && p.stream < 16u;
}

template <class T>
cudaError_t fill_gamma_launch(const matrix_view<T, device_memory>& out, const gamma_params& p,
                              std::uint64_t first_id, const std::int64_t* ids,
                              cudaStream_t stream) noexcept {
  if (out.empty()) return cudaSuccess;
  fill_gamma_kernel<T><<<grid_for(out.size()), sampler_block, 0, stream>>>(
      out, p, contrastive::detail::gamma_setup(p.alpha), first_id, ids);
  return cudaGetLastError();
}

template <class T>
matrix_view<T, device_memory> as_column(const vector_view<T, device_memory>& v) noexcept {
  return matrix_view<T, device_memory>(v.data, v.size, 1, v.stride, 1);
}

template <class T>
void check_gamma_output(const char* fn, const matrix_view<T, device_memory>& out) {
  static_assert(std::is_floating_point<T>::value, "contrastive: fill_gamma needs float or double");
  check_matrix(fn, "out", out);
  check_writable_layout(fn, "out", out);
}

}  // namespace detail

// ---- asynchronous, noexcept ----

/// Element (i, j) of `out` gets the draw of sample id first_id + i * cols + j.
template <class T>
cudaError_t fill_gamma_async(matrix_view<T, device_memory> out, const gamma_params& p,
                             std::uint64_t first_id, cudaStream_t stream) noexcept {
  static_assert(std::is_floating_point<T>::value, "contrastive: fill_gamma needs float or double");
  if (!detail::gamma_params_ok(p) || !detail::matrix_ok(out) || !detail::writable_ok(out))
    return cudaErrorInvalidValue;
  return detail::fill_gamma_launch(out, p, first_id, nullptr, stream);
}

/// Element i of `out` gets the draw of sample id first_id + i.
template <class T>
cudaError_t fill_gamma_async(vector_view<T, device_memory> out, const gamma_params& p,
                             std::uint64_t first_id, cudaStream_t stream) noexcept {
  return fill_gamma_async(detail::as_column(out), p, first_id, stream);
}

/// Element (i, j) of `out` gets the draw of sample id ids[i * cols + j] (`ids`: device memory,
/// count = rows * cols entries, each >= 0; a negative one makes its element NaN).
template <class T>
cudaError_t fill_gamma_async(matrix_view<T, device_memory> out, const gamma_params& p,
                             const std::int64_t* ids, index_t count, cudaStream_t stream) noexcept {
  static_assert(std::is_floating_point<T>::value, "contrastive: fill_gamma needs float or double");
  if (!detail::gamma_params_ok(p) || !detail::matrix_ok(out) || !detail::writable_ok(out) ||
      count != out.size() || (count > 0 && ids == nullptr))
    return cudaErrorInvalidValue;
  return detail::fill_gamma_launch(out, p, 0, ids, stream);
}

/// Element i of `out` gets the draw of sample id ids[i].
template <class T>
cudaError_t fill_gamma_async(vector_view<T, device_memory> out, const gamma_params& p,
                             const std::int64_t* ids, index_t count, cudaStream_t stream) noexcept {
  return fill_gamma_async(detail::as_column(out), p, ids, count, stream);
}

// ---- checked and synchronised ----

template <class T>
void fill_gamma(matrix_view<T, device_memory> out, const gamma_params& p,
                std::uint64_t first_id = 0, cudaStream_t stream = 0) {
  constexpr const char* fn = "cuda::fill_gamma";
  contrastive::detail::check_gamma_params(fn, p);
  detail::check_gamma_output(fn, out);
  throw_on_error(fill_gamma_async(out, p, first_id, stream), "cuda::fill_gamma_async");
  throw_on_error(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

template <class T>
void fill_gamma(vector_view<T, device_memory> out, const gamma_params& p,
                std::uint64_t first_id = 0, cudaStream_t stream = 0) {
  fill_gamma(detail::as_column(out), p, first_id, stream);
}

template <class T>
void fill_gamma(matrix_view<T, device_memory> out, const gamma_params& p, const std::int64_t* ids,
                index_t count, cudaStream_t stream = 0) {
  constexpr const char* fn = "cuda::fill_gamma";
  contrastive::detail::check_gamma_params(fn, p);
  detail::check_gamma_output(fn, out);
  CONTRASTIVE_CHECK(count == out.size(), fn, ": 'ids' has ", count, " entries, expected ",
                    out.size(), " (one per element of 'out', ", out.rows(), " x ", out.cols(), ")");
  CONTRASTIVE_CHECK(count == 0 || ids != nullptr, fn, ": 'ids' is a null pointer");
  detail::check_ids_nonnegative(fn, ids, count, "position", stream);
  throw_on_error(fill_gamma_async(out, p, ids, count, stream), "cuda::fill_gamma_async");
  throw_on_error(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

template <class T>
void fill_gamma(vector_view<T, device_memory> out, const gamma_params& p, const std::int64_t* ids,
                index_t count, cudaStream_t stream = 0) {
  fill_gamma(detail::as_column(out), p, ids, count, stream);
}

}  // namespace cuda

namespace detail {
/// The generic contrastive::fill_gamma lands here for device views (ids in device memory).
template <class V>
struct device_backend<gamma_sampler_tag, V> {
  static constexpr bool available = true;
  static void fill(const matrix_view<V, device_memory>& out, const gamma_params& p,
                   std::uint64_t first_id) {
    cuda::fill_gamma<V>(out, p, first_id);
  }
  static void fill(const matrix_view<V, device_memory>& out, const gamma_params& p,
                   const std::int64_t* ids, index_t count) {
    cuda::fill_gamma<V>(out, p, ids, count);
  }
};
}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_GAMMA_CUH
