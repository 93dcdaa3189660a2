#ifndef CONTRASTIVE_CUDA_BROWNIAN_BRIDGE_CUH
#define CONTRASTIVE_CUDA_BROWNIAN_BRIDGE_CUH

// Brownian-bridge points and K-step paths on the GPU (nvcc only; never in the umbrella): the
// forward of brownian_bridge_sample / brownian_bridge_trajectory (sampling/brownian_bridge.hpp)
// with the same options, the same Philox streams (2: noise, 3: random t) and the same per-row
// host-device code (sampling/brownian_bridge_options.hpp), so the outputs agree with the CPU to
// an ulp or so of the device's log/cos/sqrt. The backward stays on the CPU.
//
// One thread per row (pair j); every sum runs over the coordinates in the CPU's order. Instead of
// the CPU's D-double scratch per row, a row is read several times and its noise redrawn from the
// counter-based stream (same numbers each time): points need no workspace; paths keep O(N K)
// doubles (each step's divisors), see brownian_bridge_trajectory_workspace_bytes.
//
// Options as on the CPU; `ids.data`, when given, points to device memory (ids.size = N), and
// `accumulate` / `num_threads` do not apply. The _async functions never throw: bad arguments give
// cudaErrorInvalidValue before any launch, and a row with a negative id (which only the device
// sees) is written as NaN. The throwing wrappers check like the CPU (contrastive::invalid_argument
// with its messages; non-finite values, zero-norm rows and negative ids are found on the device),
// synchronise, and throw cuda::cuda_error on a CUDA failure.

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/cuda/checks.cuh"
#include "contrastive/cuda/error.cuh"
#include "contrastive/sampling/brownian_bridge_options.hpp"
#include "contrastive/sampling/philox.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

namespace cd = ::contrastive::detail;

template <class T>
using dview = matrix_view<T, device_memory>;
template <class T>
struct nondeduced {
  using type = T;
};
/// Parameters that take their element type from another argument (so that a view of T converts
/// to a view of const T).
template <class T>
using nondeduced_t = typename nondeduced<T>::type;

CONTRASTIVE_HOST_DEVICE inline bool bridge_bad_id(const brownian_bridge_options& o,
                                                  index_t j) noexcept {
  return o.ids.data != nullptr && o.ids.data[j] < 0;
}

/// The sampled point before any re-projection, coordinate k of row j:
/// m_k / rm (+ c eps_k), as in the CPU's bridge_point_forward.
template <class T>
CONTRASTIVE_HOST_DEVICE inline double bridge_point_value(const dview<const T>& v,
                                                         const dview<const T>& u, index_t j,
                                                         index_t k, double t, double rm, bool noise,
                                                         double c, const philox_stream& ns) {
  double y = cd::bridge_mix(double(v(j, k)), double(u(j, k)), t) / rm;
  if (noise) y += c * ns.normal(static_cast<std::uint64_t>(k));
  return y;
}

/// Row j of a point sample (host-device, so that it can be checked on the host too).
template <class T>
CONTRASTIVE_HOST_DEVICE void bridge_point_row(const dview<const T>& v, const dview<const T>& u,
                                              const dview<T>& y, const brownian_bridge_options& o,
                                              double sigma, index_t j) {
  const index_t d = v.cols();
  if (bridge_bad_id(o, j)) {
    for (index_t k = 0; k < d; ++k) y(j, k) = static_cast<T>(__builtin_nan(""));
    return;
  }
  const double t = cd::bridge_t(o, j);
  double s = 0;
  for (index_t k = 0; k < d; ++k) {
    const double m = cd::bridge_mix(double(v(j, k)), double(u(j, k)), t);
    s += m * m;
  }
  const double rm = cd::bridge_norm(s);
  const double c = o.noise ? cd::bridge_point_scale(sigma, t) : 0.0;
  const philox_stream ns = cd::bridge_noise_stream(o, j);
  if (!o.reproject) {
    for (index_t k = 0; k < d; ++k)
      y(j, k) = static_cast<T>(bridge_point_value(v, u, j, k, t, rm, o.noise, c, ns));
    return;
  }
  double sy = 0;
  for (index_t k = 0; k < d; ++k) {
    const double yk = bridge_point_value(v, u, j, k, t, rm, o.noise, c, ns);
    sy += yk * yk;
  }
  const double ry = cd::bridge_norm(sy);
  for (index_t k = 0; k < d; ++k)
    y(j, k) = static_cast<T>(bridge_point_value(v, u, j, k, t, rm, o.noise, c, ns) / ry);
}

template <class T>
__global__ void bridge_point_kernel(dview<const T> v, dview<const T> u, dview<T> y,
                                    brownian_bridge_options o, double sigma) {
  for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < v.rows();
       j += static_cast<index_t>(blockDim.x) * gridDim.x)
    bridge_point_row<T>(v, u, y, o, sigma, j);
}

/// Paths: ws holds (K - 1) x N divisors of the means (rm) and, with reproject, (K - 1) x N sums
/// of squares then divisors of the points (ry); entry (k - 1) * N + j, coalesced over j.
template <class T>
CONTRASTIVE_HOST_DEVICE void bridge_path_row(const dview<const T>& v, const dview<const T>& u,
                                             const dview<T>& x, const brownian_bridge_options& o,
                                             double sigma, double* ws, index_t j) {
  const index_t n = v.rows(), d = v.cols(), kk = o.steps;
  double* rm = ws;
  double* ry = ws + (kk - 1) * n;
  const index_t base = j * (kk + 1);
  if (bridge_bad_id(o, j)) {
    for (index_t k = 0; k <= kk; ++k)
      for (index_t i = 0; i < d; ++i) x(base + k, i) = static_cast<T>(__builtin_nan(""));
    return;
  }
  // X_0 = u and X_K = v, copied exactly.
  for (index_t i = 0; i < d; ++i) {
    x(base, i) = u(j, i);
    x(base + kk, i) = v(j, i);
  }
  if (kk < 2) return;
  for (index_t k = 1; k < kk; ++k) {
    const double tk = double(k) / double(kk);
    double s = 0;
    for (index_t i = 0; i < d; ++i) {
      const double m = cd::bridge_mix(double(v(j, i)), double(u(j, i)), tk);
      s += m * m;
    }
    rm[(k - 1) * n + j] = cd::bridge_norm(s);
    if (o.reproject) ry[(k - 1) * n + j] = 0;
  }
  const philox_stream ns = cd::bridge_noise_stream(o, j);
  // Pass 1 (pass 2 with reproject): coordinate i runs its noise recursion n_1, ..., n_{K-1}.
  for (int pass = 0; pass < (o.reproject ? 2 : 1); ++pass) {
    const bool store = !o.reproject || pass == 1;
    if (pass == 1)
      for (index_t k = 1; k < kk; ++k) ry[(k - 1) * n + j] = cd::bridge_norm(ry[(k - 1) * n + j]);
    for (index_t i = 0; i < d; ++i) {
      const double vi = double(v(j, i)), ui = double(u(j, i));
      double nz = 0;
      for (index_t k = 1; k < kk; ++k) {
        const double tk = double(k) / double(kk);
        double y = cd::bridge_mix(vi, ui, tk) / rm[(k - 1) * n + j];
        if (o.noise) {
          double a, b;
          cd::bridge_step_coefficients(k, kk, a, b);
          const double xi =
              ns.normal(static_cast<std::uint64_t>(k - 1) * static_cast<std::uint64_t>(d) +
                        static_cast<std::uint64_t>(i));
          nz = nz * a + b * xi;
          y += sigma * nz;
        }
        if (store) {
          x(base + k, i) = static_cast<T>(o.reproject ? y / ry[(k - 1) * n + j] : y);
        } else {
          ry[(k - 1) * n + j] += y * y;
        }
      }
    }
  }
}

template <class T>
__global__ void bridge_path_kernel(dview<const T> v, dview<const T> u, dview<T> x,
                                   brownian_bridge_options o, double sigma, double* ws) {
  for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < v.rows();
       j += static_cast<index_t>(blockDim.x) * gridDim.x)
    bridge_path_row<T>(v, u, x, o, sigma, ws, j);
}

/// The CPU's option checks without exceptions (time only for points).
inline bool bridge_options_ok(const brownian_bridge_options& o, index_t n,
                              bool trajectory) noexcept {
  if (!trajectory) {
    const bool time_ok = o.random_t ? (std::isfinite(o.t_min) && std::isfinite(o.t_max) &&
                                       o.t_min >= 0 && o.t_max <= 1 && o.t_min <= o.t_max)
                                    : (std::isfinite(o.t) && o.t >= 0 && o.t <= 1);
    if (!time_ok) return false;
  }
  if (!(std::isfinite(o.sigma) && o.sigma >= 0)) return false;
  if (trajectory && o.steps < 1) return false;
  if (o.ids.data != nullptr && o.ids.size != n) return false;
  return true;
}

template <class T>
bool bridge_args_ok(const dview<const T>& v, const dview<const T>& u, const dview<T>& out,
                    index_t out_rows, const brownian_bridge_options& o, bool trajectory) noexcept {
  if (!matrix_ok(v) || !matrix_ok(u) || !matrix_ok(out)) return false;
  if (v.rows() <= 0 || v.cols() <= 0 || u.rows() != v.rows() || u.cols() != v.cols()) return false;
  if (!bridge_options_ok(o, v.rows(), trajectory)) return false;
  if (out.rows() != out_rows || out.cols() != v.cols() || !writable_ok(out)) return false;
  return !cd::views_overlap(out, v) && !cd::views_overlap(out, u);
}

template <class T>
void bridge_check(const char* fn, const dview<const T>& v, const dview<const T>& u,
                  const dview<T>& out, const char* out_name, const brownian_bridge_options& o,
                  bool trajectory, cudaStream_t stream) {
  static_assert(std::is_floating_point<T>::value,
                "contrastive: the bridge sampler needs float or double");
  check_matrix(fn, "a", v);
  check_matrix(fn, "b", u);
  check_pair_shape(fn, v, u);
  cd::bridge_check_scalars(fn, o, trajectory, v.cols());
  const index_t n = v.rows(), d = v.cols();
  if (o.ids.data != nullptr) {
    CONTRASTIVE_CHECK(o.ids.size == n, fn, ": 'ids' has ", o.ids.size, " entries, expected ", n,
                      " (one per row)");
  }
  check_matrix(fn, out_name, out);
  if (trajectory) {
    check_shape(fn, out_name, out, n * (o.steps + 1), d, "N (steps + 1) x D");
  } else {
    check_shape(fn, out_name, out, n, d, "the shape of 'a'");
  }
  check_writable_layout(fn, out_name, out);
  check_no_alias(fn, out_name, out, "a", v);
  check_no_alias(fn, out_name, out, "b", u);
  if (o.ids.data != nullptr) check_ids_nonnegative(fn, o.ids.data, n, "row", stream);
  check_rows(fn, "a", v, stream);
  check_rows(fn, "b", u, stream);
}

}  // namespace detail

/// Device workspace of brownian_bridge_trajectory_async, in bytes (0 when K = 1).
inline std::size_t brownian_bridge_trajectory_workspace_bytes(
    index_t n, index_t d, const brownian_bridge_options& o = {}) noexcept {
  (void)d;
  if (n <= 0 || o.steps < 2) return 0;
  return static_cast<std::size_t>(o.steps - 1) * static_cast<std::size_t>(n) * sizeof(double) *
         (o.reproject ? 2u : 1u);
}

// ---- asynchronous, noexcept ----

/// One bridge point per pair into y (N x D); noise from Philox stream 2.
template <class T>
cudaError_t brownian_bridge_sample_async(
    detail::nondeduced_t<matrix_view<const T, device_memory>> v,
    detail::nondeduced_t<matrix_view<const T, device_memory>> u, matrix_view<T, device_memory> y,
    const brownian_bridge_options& o, cudaStream_t stream) noexcept {
  static_assert(std::is_floating_point<T>::value,
                "contrastive: the bridge sampler needs float or double");
  if (!detail::bridge_args_ok<T>(v, u, y, v.rows(), o, false)) return cudaErrorInvalidValue;
  detail::bridge_point_kernel<T><<<detail::grid_for(v.rows()), detail::sampler_block, 0, stream>>>(
      v, u, y, o, contrastive::detail::bridge_sigma(o, v.cols()));
  return cudaGetLastError();
}

/// A K-step path per pair into x (N (K+1) x D; row j (K+1) + k holds X_k); noise from Philox
/// stream 2. `workspace`: at least brownian_bridge_trajectory_workspace_bytes(N, D, o) bytes of
/// device memory, 8-byte aligned (may be null when that is 0).
template <class T>
cudaError_t brownian_bridge_trajectory_async(
    detail::nondeduced_t<matrix_view<const T, device_memory>> v,
    detail::nondeduced_t<matrix_view<const T, device_memory>> u, matrix_view<T, device_memory> x,
    const brownian_bridge_options& o, void* workspace, std::size_t workspace_bytes,
    cudaStream_t stream) noexcept {
  static_assert(std::is_floating_point<T>::value,
                "contrastive: the bridge sampler needs float or double");
  if (o.steps < 1 || !detail::bridge_args_ok<T>(v, u, x, v.rows() * (o.steps + 1), o, true))
    return cudaErrorInvalidValue;
  const std::size_t need = brownian_bridge_trajectory_workspace_bytes(v.rows(), v.cols(), o);
  if (need > 0 && (workspace == nullptr || workspace_bytes < need ||
                   reinterpret_cast<std::uintptr_t>(workspace) % alignof(double) != 0))
    return cudaErrorInvalidValue;
  detail::bridge_path_kernel<T><<<detail::grid_for(v.rows()), detail::sampler_block, 0, stream>>>(
      v, u, x, o, contrastive::detail::bridge_sigma(o, v.cols()), static_cast<double*>(workspace));
  return cudaGetLastError();
}

// ---- checked and synchronised ----

template <class T>
void brownian_bridge_sample(detail::nondeduced_t<matrix_view<const T, device_memory>> v,
                            detail::nondeduced_t<matrix_view<const T, device_memory>> u,
                            matrix_view<T, device_memory> y, const brownian_bridge_options& o = {},
                            cudaStream_t stream = 0) {
  constexpr const char* fn = "cuda::brownian_bridge_sample";
  detail::bridge_check<T>(fn, v, u, y, "y", o, false, stream);
  throw_on_error(brownian_bridge_sample_async<T>(v, u, y, o, stream),
                 "cuda::brownian_bridge_sample_async");
  throw_on_error(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

template <class T>
void brownian_bridge_trajectory(detail::nondeduced_t<matrix_view<const T, device_memory>> v,
                                detail::nondeduced_t<matrix_view<const T, device_memory>> u,
                                matrix_view<T, device_memory> x,
                                const brownian_bridge_options& o = {}, cudaStream_t stream = 0) {
  constexpr const char* fn = "cuda::brownian_bridge_trajectory";
  detail::bridge_check<T>(fn, v, u, x, "x", o, true, stream);
  device_buffer ws(brownian_bridge_trajectory_workspace_bytes(v.rows(), v.cols(), o));
  throw_on_error(brownian_bridge_trajectory_async<T>(v, u, x, o, ws.data(), ws.bytes(), stream),
                 "cuda::brownian_bridge_trajectory_async");
  throw_on_error(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

}  // namespace cuda
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_BROWNIAN_BRIDGE_CUH
