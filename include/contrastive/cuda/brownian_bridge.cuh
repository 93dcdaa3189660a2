#ifndef CONTRASTIVE_CUDA_BROWNIAN_BRIDGE_CUH
#define CONTRASTIVE_CUDA_BROWNIAN_BRIDGE_CUH

// Brownian-bridge points and K-step paths on the GPU (nvcc only; never in the umbrella): the
// forward of brownian_bridge_sample / brownian_bridge_trajectory (sampling/brownian_bridge.hpp)
// with the same options, the same Philox streams (2: noise, 3: random t) and the same per-row
// host-device code (sampling/brownian_bridge_options.hpp), so the outputs agree with the CPU to
// an ulp or so of the device's log/cos/sqrt. The samplers' backward too, on Philox noise (the
// caller-noise variants stay on the CPU), compiled but NOT yet run on a GPU:
// brownian_bridge_sample_backward(_async) and brownian_bridge_trajectory_backward(_async).
//
// The Brownian-bridge loss (losses/brownian_bridge.hpp) too, forward and backward, one thread per
// row with the CPU's per-row formulas and the same t_j (compiled, NOT yet run on a GPU):
// brownian_bridge_loss_forward_async / _backward_async and the throwing forms; the generic
// contrastive::brownian_bridge_loss_* calls dispatch device views here. Unlike the CPU, a
// backward whose gradients overflow is not refused before writing (the CPU checks every row
// first); the throwing backward reports a non-finite dL/dt.
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
#include "contrastive/core/workspace.hpp"
#include "contrastive/cuda/detail/checks.cuh"
#include "contrastive/cuda/error.cuh"
#include "contrastive/losses/brownian_bridge_loss_options.hpp"
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

/// A caller workspace of at least `need` bytes of doubles (8-byte aligned); none needed for 0.
inline bool bridge_scratch_ok(const workspace& ws, std::size_t need) noexcept {
  return need == 0 || (ws.data != nullptr && ws.bytes >= need &&
                       reinterpret_cast<std::uintptr_t>(ws.data) % alignof(double) == 0);
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
/// stream 2. `ws`: at least brownian_bridge_trajectory_workspace_bytes(N, D, o) bytes of
/// device memory, 8-byte aligned (may be null when that is 0).
template <class T>
cudaError_t brownian_bridge_trajectory_async(
    detail::nondeduced_t<matrix_view<const T, device_memory>> v,
    detail::nondeduced_t<matrix_view<const T, device_memory>> u, matrix_view<T, device_memory> x,
    const brownian_bridge_options& o, workspace ws, cudaStream_t stream) noexcept {
  void* const scratch = ws.data;
  static_assert(std::is_floating_point<T>::value,
                "contrastive: the bridge sampler needs float or double");
  if (o.steps < 1 || !detail::bridge_args_ok<T>(v, u, x, v.rows() * (o.steps + 1), o, true))
    return cudaErrorInvalidValue;
  const std::size_t need = brownian_bridge_trajectory_workspace_bytes(v.rows(), v.cols(), o);
  if (!detail::bridge_scratch_ok(ws, need)) return cudaErrorInvalidValue;
  detail::bridge_path_kernel<T><<<detail::grid_for(v.rows()), detail::sampler_block, 0, stream>>>(
      v, u, x, o, contrastive::detail::bridge_sigma(o, v.cols()), static_cast<double*>(scratch));
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
  throw_on_error(
      brownian_bridge_trajectory_async<T>(v, u, x, o, workspace{ws.data(), ws.bytes()}, stream),
      "cuda::brownian_bridge_trajectory_async");
  throw_on_error(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

// ---- the samplers' backward (Philox noise) ----

namespace detail {

/// Row j's mean mu = m / r, m = t v + (1 - t) u: r (the divisor) by one pass over the row.
template <class T>
CONTRASTIVE_HOST_DEVICE inline double bridge_loss_mean_norm(const dview<const T>& v,
                                                            const dview<const T>& u, index_t j,
                                                            double t) noexcept {
  double s = 0;
  for (index_t k = 0; k < v.cols(); ++k) {
    const double m = cd::bridge_mix(double(v(j, k)), double(u(j, k)), t);
    s += m * m;
  }
  return cd::bridge_norm(s);
}

/// *out = scale * sum(x[0, n)), one CTA of sampler_block threads, a fixed tree.
template <int = 0>
__global__ void bridge_sum_kernel(const double* x, index_t n, double scale, double* out) {
  __shared__ double red[sampler_block];
  double v = 0;
  for (index_t i = threadIdx.x; i < n; i += sampler_block) v += x[i];
  red[threadIdx.x] = v;
  __syncthreads();
  for (int h = sampler_block / 2; h > 0; h /= 2) {
    if (static_cast<int>(threadIdx.x) < h) red[threadIdx.x] += red[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = scale * red[0];
}

/// out(j, k) = value, or += value with `accumulate` (in double, one rounding to T).
template <class T>
CONTRASTIVE_HOST_DEVICE inline void bridge_put(const dview<T>& out, index_t j, index_t k,
                                               double value, bool accumulate) {
  out(j, k) = static_cast<T>(accumulate ? double(out(j, k)) + value : value);
}

/// dL/dm from g (dL/dmu) for coordinate k: (g - mu p) / r, g / floor at the floor (the CPU's
/// bridge_mean_backward, with p = <mu, g> summed by the caller).
CONTRASTIVE_HOST_DEVICE inline double bridge_unproject(double g, double mu, double p,
                                                       double r) noexcept {
  return r <= cd::bridge_floor ? g / cd::bridge_floor : (g - mu * p) / r;
}

/// Backward of row j of a point sample (the CPU's bridge_point_backward on Philox noise,
/// re-reading the row and redrawing its noise instead of keeping them): writes (or adds) t g_m
/// and (1 - t) g_m into gv and gu, dL/dt_j into dt_rows[j] and dL/dsigma's share into ds_rows[j].
template <class T>
CONTRASTIVE_HOST_DEVICE void bridge_point_backward_row(
    const dview<const T>& v, const dview<const T>& u, const dview<const T>& gy, const dview<T>& gv,
    const dview<T>& gu, const brownian_bridge_options& o, double sigma, index_t j, double* dt_rows,
    double* ds_rows) {
  const index_t d = v.cols();
  const double t = cd::bridge_t(o, j);
  const double r = bridge_loss_mean_norm(v, u, j, t);
  const double c = o.noise ? cd::bridge_point_scale(sigma, t) : 0.0;
  const philox_stream ns = cd::bridge_noise_stream(o, j);
  auto mean = [&](index_t k) { return cd::bridge_mix(double(v(j, k)), double(u(j, k)), t) / r; };
  auto noise = [&](index_t k) { return o.noise ? ns.normal(static_cast<std::uint64_t>(k)) : 0.0; };
  // With reproject, y = mu + c e is divided by ry: g <- (g - s <s, g>) / ry, s = y / ry.
  double ry = 1, ps = 0;
  if (o.reproject) {
    double sy = 0;
    for (index_t k = 0; k < d; ++k) {
      const double y = mean(k) + c * noise(k);
      sy += y * y;
    }
    ry = cd::bridge_norm(sy);
    for (index_t k = 0; k < d; ++k) ps += (mean(k) + c * noise(k)) / ry * double(gy(j, k));
  }
  auto grad = [&](index_t k) {  // dL/dy after the projection's backward
    const double g = double(gy(j, k));
    return o.reproject ? bridge_unproject(g, (mean(k) + c * noise(k)) / ry, ps, ry) : g;
  };
  double ge = 0, pm = 0;
  for (index_t k = 0; k < d; ++k) {
    const double g = grad(k);
    ge += g * noise(k);
    pm += mean(k) * g;
  }
  double dt = 0;
  ds_rows[j] = o.noise ? ::sqrt(t * (1 - t)) * ge : 0.0;
  if (o.noise && t > 0 && t < 1) dt += sigma * (1 - 2 * t) / (2 * ::sqrt(t * (1 - t))) * ge;
  for (index_t k = 0; k < d; ++k) {
    const double gm = bridge_unproject(grad(k), mean(k), pm, r);
    dt += (double(v(j, k)) - double(u(j, k))) * gm;
    bridge_put(gv, j, k, t * gm, o.accumulate);
    bridge_put(gu, j, k, (1 - t) * gm, o.accumulate);
  }
  dt_rows[j] = dt;
}

template <class T>
__global__ void bridge_point_backward_kernel(dview<const T> v, dview<const T> u, dview<const T> gy,
                                             dview<T> gv, dview<T> gu, brownian_bridge_options o,
                                             double sigma, double* dt_rows, double* ds_rows) {
  for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < v.rows();
       j += static_cast<index_t>(blockDim.x) * gridDim.x)
    bridge_point_backward_row<T>(v, u, gy, gv, gu, o, sigma, j, dt_rows, ds_rows);
}

/// Backward of row j of a K-step path (the CPU's bridge_path_backward on Philox noise). Each
/// coordinate i runs its noise recursion n_1, ..., n_{K-1} again in every pass; ws holds four
/// (K - 1) x N arrays of per-step sums, entry (k - 1) * N + j: the means' divisors r_k, the
/// points' divisors rx_k, <s_k, g_k> and <mu_k, g'_k>. ds_rows[j] gets dL/dsigma's share.
template <class T>
CONTRASTIVE_HOST_DEVICE void bridge_path_backward_row(
    const dview<const T>& v, const dview<const T>& u, const dview<const T>& gx, const dview<T>& gv,
    const dview<T>& gu, const brownian_bridge_options& o, double sigma, double* ws, index_t j,
    double* ds_rows) {
  const index_t n = v.rows(), d = v.cols(), kk = o.steps;
  const index_t base = j * (kk + 1);
  double* rm = ws;
  double* rx = ws + (kk - 1) * n;
  double* ps = ws + 2 * (kk - 1) * n;
  double* pm = ws + 3 * (kk - 1) * n;
  auto at = [&](double* a, index_t k) -> double& { return a[(k - 1) * n + j]; };
  for (index_t k = 1; k < kk; ++k) {
    at(rm, k) = bridge_loss_mean_norm(v, u, j, double(k) / double(kk));
    at(rx, k) = 0;
    at(ps, k) = 0;
    at(pm, k) = 0;
  }
  const philox_stream ns = cd::bridge_noise_stream(o, j);
  // One sweep of coordinate i over the steps: f(k, mu_k_i, n_k_i, g_k_i).
  auto sweep = [&](index_t i, auto&& f) {
    const double vi = double(v(j, i)), ui = double(u(j, i));
    double nz = 0;
    for (index_t k = 1; k < kk; ++k) {
      const double tk = double(k) / double(kk);
      if (o.noise) {
        double a, b;
        cd::bridge_step_coefficients(k, kk, a, b);
        nz = nz * a +
             b * ns.normal(static_cast<std::uint64_t>(k - 1) * static_cast<std::uint64_t>(d) +
                           static_cast<std::uint64_t>(i));
      }
      f(k, tk, cd::bridge_mix(vi, ui, tk) / at(rm, k), nz, double(gx(base + k, i)));
    }
  };
  auto point = [&](double mu, double nz) { return mu + (o.noise ? sigma * nz : 0.0); };
  auto projected = [&](index_t k, double mu, double nz, double g) {  // g'_k after reproject
    return o.reproject ? bridge_unproject(g, point(mu, nz) / at(rx, k), at(ps, k), at(rx, k)) : g;
  };
  if (o.reproject) {
    for (index_t i = 0; i < d; ++i)
      sweep(i, [&](index_t k, double, double mu, double nz, double) {
        at(rx, k) += point(mu, nz) * point(mu, nz);
      });
    for (index_t k = 1; k < kk; ++k) at(rx, k) = cd::bridge_norm(at(rx, k));
    for (index_t i = 0; i < d; ++i)
      sweep(i, [&](index_t k, double, double mu, double nz, double g) {
        at(ps, k) += point(mu, nz) / at(rx, k) * g;
      });
  }
  double ds = 0;
  for (index_t i = 0; i < d; ++i)
    sweep(i, [&](index_t k, double, double mu, double nz, double g) {
      const double gp = projected(k, mu, nz, g);
      if (o.noise) ds += gp * nz;
      at(pm, k) += mu * gp;
    });
  ds_rows[j] = ds;
  for (index_t i = 0; i < d; ++i) {
    double dvi = double(gx(base + kk, i)), dui = double(gx(base, i));  // X_K = v, X_0 = u
    sweep(i, [&](index_t k, double tk, double mu, double nz, double g) {
      const double gm = bridge_unproject(projected(k, mu, nz, g), mu, at(pm, k), at(rm, k));
      dvi += tk * gm;
      dui += (1 - tk) * gm;
    });
    bridge_put(gv, j, i, dvi, o.accumulate);
    bridge_put(gu, j, i, dui, o.accumulate);
  }
}

template <class T>
__global__ void bridge_path_backward_kernel(dview<const T> v, dview<const T> u, dview<const T> gx,
                                            dview<T> gv, dview<T> gu, brownian_bridge_options o,
                                            double sigma, double* ws, double* ds_rows) {
  for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < v.rows();
       j += static_cast<index_t>(blockDim.x) * gridDim.x)
    bridge_path_backward_row<T>(v, u, gx, gv, gu, o, sigma, ws, j, ds_rows);
}

template <class T>
bool bridge_backward_args_ok(const dview<const T>& v, const dview<const T>& u,
                             const dview<const T>& g, index_t g_rows, const dview<T>& gv,
                             const dview<T>& gu, const brownian_bridge_options& o,
                             bool trajectory) noexcept {
  if (!matrix_ok(v) || !matrix_ok(u) || !matrix_ok(g) || !matrix_ok(gv) || !matrix_ok(gu))
    return false;
  if (v.rows() <= 0 || v.cols() <= 0 || u.rows() != v.rows() || u.cols() != v.cols()) return false;
  if (!bridge_options_ok(o, v.rows(), trajectory)) return false;
  if (g.rows() != g_rows || g.cols() != v.cols()) return false;
  for (const dview<T>* out : {&gv, &gu})
    if (out->rows() != v.rows() || out->cols() != v.cols() || !writable_ok(*out) ||
        cd::views_overlap(*out, v) || cd::views_overlap(*out, u) || cd::views_overlap(*out, g))
      return false;
  return !cd::views_overlap(gv, gu);
}

/// The CPU's backward checks (Philox noise), on device inputs.
template <class T>
void bridge_backward_check(const char* fn, const dview<const T>& v, const dview<const T>& u,
                           const dview<const T>& g, const char* g_name, const dview<T>& gv,
                           const dview<T>& gu, const brownian_bridge_options& o, bool trajectory,
                           cudaStream_t stream) {
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
    check_ids_nonnegative(fn, o.ids.data, n, "row", stream);
  }
  check_rows(fn, "a", v, stream);
  check_rows(fn, "b", u, stream);
  check_matrix(fn, g_name, g);
  if (trajectory)
    check_shape(fn, g_name, g, n * (o.steps + 1), d, "N (steps + 1) x D");
  else
    check_shape(fn, g_name, g, n, d, "the shape of 'a'");
  check_finite_device(fn, g_name, g, stream);
  check_matrix(fn, "grad_a", gv);
  check_matrix(fn, "grad_b", gu);
  check_shape(fn, "grad_a", gv, n, d, "the shape of 'a'");
  check_shape(fn, "grad_b", gu, n, d, "the shape of 'b'");
  check_writable_layout(fn, "grad_a", gv);
  check_writable_layout(fn, "grad_b", gu);
  check_no_alias(fn, "grad_a", gv, "grad_b", gu);
  check_no_alias(fn, "grad_a", gv, "a", v);
  check_no_alias(fn, "grad_a", gv, "b", u);
  check_no_alias(fn, "grad_a", gv, g_name, g);
  check_no_alias(fn, "grad_b", gu, "a", v);
  check_no_alias(fn, "grad_b", gu, "b", u);
  check_no_alias(fn, "grad_b", gu, g_name, g);
}

}  // namespace detail

/// Device scratch of the samplers' backward, in bytes: 2 N doubles for points, 4 (K - 1) N + N
/// for paths.
inline std::size_t brownian_bridge_backward_workspace_bytes(index_t n,
                                                            const brownian_bridge_options& o,
                                                            bool trajectory) noexcept {
  if (n <= 0) return 0;
  const std::size_t un = static_cast<std::size_t>(n);
  if (!trajectory) return 2 * un * sizeof(double);
  const std::size_t steps = o.steps > 1 ? static_cast<std::size_t>(o.steps - 1) : 0;
  return (4 * steps + 1) * un * sizeof(double);
}

/// Backward of brownian_bridge_sample (Philox noise; the same options): writes (or with
/// o.accumulate adds) dL/da and dL/db; dL/dt per row into dt_rows, summed into *dt, and dL/dsigma
/// into *dsigma (device doubles; each may be null). Never throws.
template <class T>
cudaError_t brownian_bridge_sample_backward_async(
    detail::nondeduced_t<matrix_view<const T, device_memory>> v,
    detail::nondeduced_t<matrix_view<const T, device_memory>> u,
    detail::nondeduced_t<matrix_view<const T, device_memory>> grad_y,
    matrix_view<T, device_memory> grad_a, matrix_view<T, device_memory> grad_b, double* dt_rows,
    double* dt, double* dsigma, const brownian_bridge_options& o, workspace ws,
    cudaStream_t stream) noexcept {
  void* const scratch = ws.data;
  static_assert(std::is_floating_point<T>::value,
                "contrastive: the bridge sampler needs float or double");
  const index_t n = v.rows();
  if (!detail::bridge_backward_args_ok<T>(v, u, grad_y, n, grad_a, grad_b, o, false) ||
      !detail::bridge_scratch_ok(ws, brownian_bridge_backward_workspace_bytes(n, o, false)))
    return cudaErrorInvalidValue;
  double* ds_rows = static_cast<double*>(scratch);
  double* rows = dt_rows != nullptr ? dt_rows : ds_rows + n;
  detail::bridge_point_backward_kernel<T>
      <<<detail::grid_for(n), detail::sampler_block, 0, stream>>>(
          v, u, grad_y, grad_a, grad_b, o, contrastive::detail::bridge_sigma(o, v.cols()), rows,
          ds_rows);
  if (dt != nullptr)
    detail::bridge_sum_kernel<><<<1, detail::sampler_block, 0, stream>>>(rows, n, 1.0, dt);
  if (dsigma != nullptr)
    detail::bridge_sum_kernel<><<<1, detail::sampler_block, 0, stream>>>(ds_rows, n, 1.0, dsigma);
  return cudaGetLastError();
}

/// Backward of brownian_bridge_trajectory (Philox noise; the same options): writes (or adds)
/// dL/da and dL/db, and dL/dsigma into *dsigma (device; may be null). Never throws.
template <class T>
cudaError_t brownian_bridge_trajectory_backward_async(
    detail::nondeduced_t<matrix_view<const T, device_memory>> v,
    detail::nondeduced_t<matrix_view<const T, device_memory>> u,
    detail::nondeduced_t<matrix_view<const T, device_memory>> grad_x,
    matrix_view<T, device_memory> grad_a, matrix_view<T, device_memory> grad_b, double* dsigma,
    const brownian_bridge_options& o, workspace ws, cudaStream_t stream) noexcept {
  void* const scratch = ws.data;
  static_assert(std::is_floating_point<T>::value,
                "contrastive: the bridge sampler needs float or double");
  const index_t n = v.rows();
  if (o.steps < 1 ||
      !detail::bridge_backward_args_ok<T>(v, u, grad_x, n * (o.steps + 1), grad_a, grad_b, o,
                                          true) ||
      !detail::bridge_scratch_ok(ws, brownian_bridge_backward_workspace_bytes(n, o, true)))
    return cudaErrorInvalidValue;
  double* ds_rows = static_cast<double*>(scratch);
  detail::bridge_path_backward_kernel<T><<<detail::grid_for(n), detail::sampler_block, 0, stream>>>(
      v, u, grad_x, grad_a, grad_b, o, contrastive::detail::bridge_sigma(o, v.cols()), ds_rows + n,
      ds_rows);
  if (dsigma != nullptr)
    detail::bridge_sum_kernel<><<<1, detail::sampler_block, 0, stream>>>(ds_rows, n, 1.0, dsigma);
  return cudaGetLastError();
}

/// Throwing backward of brownian_bridge_sample: the CPU's checks and messages, then the async
/// call; returns dL/dt (per row and summed) and dL/dsigma like the CPU.
template <class T>
brownian_bridge_gradient brownian_bridge_sample_backward(
    detail::nondeduced_t<matrix_view<const T, device_memory>> v,
    detail::nondeduced_t<matrix_view<const T, device_memory>> u,
    detail::nondeduced_t<matrix_view<const T, device_memory>> grad_y,
    matrix_view<T, device_memory> grad_a, matrix_view<T, device_memory> grad_b,
    const brownian_bridge_options& o = {}, cudaStream_t stream = 0) {
  constexpr const char* fn = "cuda::brownian_bridge_sample_backward";
  detail::bridge_backward_check<T>(fn, v, u, grad_y, "grad_y", grad_a, grad_b, o, false, stream);
  const index_t n = v.rows();
  device_buffer ws(brownian_bridge_backward_workspace_bytes(n, o, false)), rows(sizeof(double) * n),
      sums(2 * sizeof(double));
  throw_on_error(brownian_bridge_sample_backward_async<T>(
                     v, u, grad_y, grad_a, grad_b, rows.as<double>(), sums.as<double>(),
                     sums.as<double>() + 1, o, workspace{ws.data(), ws.bytes()}, stream),
                 "cuda::brownian_bridge_sample_backward_async");
  brownian_bridge_gradient out;
  out.t_rows.resize(static_cast<std::size_t>(n));
  double host[2] = {0, 0};
  throw_on_error(
      cudaMemcpyAsync(out.t_rows.data(), rows.data(), rows.bytes(), cudaMemcpyDeviceToHost, stream),
      "cudaMemcpyAsync");
  throw_on_error(cudaMemcpyAsync(host, sums.data(), sizeof(host), cudaMemcpyDeviceToHost, stream),
                 "cudaMemcpyAsync");
  throw_on_error(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  out.t = host[0];
  out.sigma = host[1];
  CONTRASTIVE_CHECK(std::isfinite(out.t) && std::isfinite(out.sigma), fn,
                    ": dL/dt or dL/dsigma overflows; scale the upstream gradient down");
  return out;
}

/// Throwing backward of brownian_bridge_trajectory; returns dL/dsigma like the CPU.
template <class T>
brownian_bridge_gradient brownian_bridge_trajectory_backward(
    detail::nondeduced_t<matrix_view<const T, device_memory>> v,
    detail::nondeduced_t<matrix_view<const T, device_memory>> u,
    detail::nondeduced_t<matrix_view<const T, device_memory>> grad_x,
    matrix_view<T, device_memory> grad_a, matrix_view<T, device_memory> grad_b,
    const brownian_bridge_options& o = {}, cudaStream_t stream = 0) {
  constexpr const char* fn = "cuda::brownian_bridge_trajectory_backward";
  detail::bridge_backward_check<T>(fn, v, u, grad_x, "grad_x", grad_a, grad_b, o, true, stream);
  device_buffer ws(brownian_bridge_backward_workspace_bytes(v.rows(), o, true)),
      sum(sizeof(double));
  throw_on_error(
      brownian_bridge_trajectory_backward_async<T>(v, u, grad_x, grad_a, grad_b, sum.as<double>(),
                                                   o, workspace{ws.data(), ws.bytes()}, stream),
      "cuda::brownian_bridge_trajectory_backward_async");
  brownian_bridge_gradient out;
  throw_on_error(
      cudaMemcpyAsync(&out.sigma, sum.data(), sizeof(double), cudaMemcpyDeviceToHost, stream),
      "cudaMemcpyAsync");
  throw_on_error(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  CONTRASTIVE_CHECK(std::isfinite(out.sigma), fn,
                    ": dL/dsigma overflows; scale the upstream gradient down");
  return out;
}

// ---- the Brownian-bridge loss ----

namespace detail {

/// Forward of row j: t_j and w_j ||a_j - mu_j||^2 (the CPU's bridge_loss_forward).
template <class T>
CONTRASTIVE_HOST_DEVICE void bridge_loss_forward_row(const dview<const T>& v,
                                                     const dview<const T>& u,
                                                     const dview<const T>& a,
                                                     const brownian_bridge_options& b, bool nll,
                                                     index_t j, double* t_rows, double* terms) {
  const double t = cd::bridge_t(b, j);
  const double r = bridge_loss_mean_norm(v, u, j, t);
  double s = 0;
  for (index_t k = 0; k < v.cols(); ++k) {
    const double e = double(a(j, k)) - cd::bridge_mix(double(v(j, k)), double(u(j, k)), t) / r;
    s += e * e;
  }
  t_rows[j] = t;
  terms[j] = cd::bridge_loss_weight(t, nll) * s;
}

template <class T>
__global__ void bridge_loss_forward_kernel(dview<const T> v, dview<const T> u, dview<const T> a,
                                           brownian_bridge_options b, bool nll, double* t_rows,
                                           double* terms) {
  for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < v.rows();
       j += static_cast<index_t>(blockDim.x) * gridDim.x)
    bridge_loss_forward_row<T>(v, u, a, b, nll, j, t_rows, terms);
}

/// Backward of row j (the CPU's bridge_loss_backward, re-reading the row instead of keeping it):
/// dL/da = 2 w s e, dL/dm = g_m = (g_mu - mu <mu, g_mu>) / r with g_mu = -dL/da (g_mu / floor
/// when ||m|| is below the floor), dL/dv = t g_m, dL/du = (1 - t) g_m, dL/dt = <v - u, g_m> +
/// dw/dt ||e||^2 s; s = upstream / N.
template <class T>
CONTRASTIVE_HOST_DEVICE void bridge_loss_backward_row(
    const dview<const T>& v, const dview<const T>& u, const dview<const T>& a, const double* t_rows,
    const dview<T>& gv, const dview<T>& gu, const dview<T>& ga, bool nll, bool detach,
    bool accumulate, double scale, index_t j, double* dt_rows) {
  const index_t d = v.cols();
  const double t = t_rows[j];
  const double r = bridge_loss_mean_norm(v, u, j, t);
  const double w = cd::bridge_loss_weight(t, nll);
  double dist = 0, p = 0;  // ||e||^2 and <mu, g_mu>
  for (index_t k = 0; k < d; ++k) {
    const double mu = cd::bridge_mix(double(v(j, k)), double(u(j, k)), t) / r;
    const double e = double(a(j, k)) - mu;
    dist += e * e;
    p += mu * (-2 * w * scale * e);
  }
  const bool floor = r <= cd::bridge_floor;
  double dt = 0;
  for (index_t k = 0; k < d; ++k) {
    const double vk = double(v(j, k)), uk = double(u(j, k));
    const double mu = cd::bridge_mix(vk, uk, t) / r;
    const double da = 2 * w * scale * (double(a(j, k)) - mu);
    const double gm = floor ? -da / cd::bridge_floor : (-da - mu * p) / r;
    dt += (vk - uk) * gm;
    bridge_put(gv, j, k, t * gm, accumulate);
    bridge_put(gu, j, k, (1 - t) * gm, accumulate);
    if (!detach)
      bridge_put(ga, j, k, da, accumulate);
    else if (!accumulate)
      ga(j, k) = T(0);
  }
  dt_rows[j] = dt + cd::bridge_loss_weight_dt(t, nll) * dist * scale;
}

template <class T>
__global__ void bridge_loss_backward_kernel(dview<const T> v, dview<const T> u, dview<const T> a,
                                            const double* t_rows, dview<T> gv, dview<T> gu,
                                            dview<T> ga, bool nll, bool detach, bool accumulate,
                                            double scale, double* dt_rows) {
  for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < v.rows();
       j += static_cast<index_t>(blockDim.x) * gridDim.x)
    bridge_loss_backward_row<T>(v, u, a, t_rows, gv, gu, ga, nll, detach, accumulate, scale, j,
                                dt_rows);
}

template <class T>
bool bridge_loss_args_ok(const dview<const T>& v, const dview<const T>& u, const dview<const T>& a,
                         const brownian_bridge_loss_options& o) noexcept {
  if (!matrix_ok(v) || !matrix_ok(u) || !matrix_ok(a)) return false;
  if (v.rows() <= 0 || v.cols() <= 0 || u.rows() != v.rows() || u.cols() != v.cols() ||
      a.rows() != v.rows() || a.cols() != v.cols())
    return false;
  const brownian_bridge_options b = cd::bridge_loss_time_options(o);
  if (!bridge_options_ok(b, v.rows(), false)) return false;
  if (o.nll_weight && (b.random_t ? !(b.t_min > 0 && b.t_max < 1) : !(b.t > 0 && b.t < 1)))
    return false;
  return true;
}

/// The CPU's bridge_loss_check, on device inputs (the row scans on the device).
template <class T>
void bridge_loss_check(const char* fn, const dview<const T>& v, const dview<const T>& u,
                       const dview<const T>& a, const brownian_bridge_loss_options& o,
                       cudaStream_t stream) {
  static_assert(std::is_floating_point<T>::value,
                "contrastive: the bridge loss on the GPU needs float or double");
  const brownian_bridge_options b = cd::bridge_loss_time_options(o);
  check_matrix(fn, "a", v);
  check_matrix(fn, "b", u);
  check_pair_shape(fn, v, u);
  cd::bridge_check_scalars(fn, b, false, 0);
  if (b.ids.data != nullptr) {
    CONTRASTIVE_CHECK(b.ids.size == v.rows(), fn, ": 'ids' has ", b.ids.size, " entries, expected ",
                      v.rows(), " (one per row)");
    CONTRASTIVE_CHECK(b.ids.stride == 1, fn, ": 'ids' must be contiguous (stride 1), got stride ",
                      b.ids.stride);
    check_ids_nonnegative(fn, b.ids.data, v.rows(), "row", stream);
  }
  if (o.scan_inputs) {
    check_rows(fn, "a", v, stream);
    check_rows(fn, "b", u, stream);
  }
  check_matrix(fn, "a_aug", a);
  check_shape(fn, "a_aug", a, v.rows(), v.cols(), "the shape of 'a'");
  cd::bridge_loss_check_weight(fn, o);
  if (o.scan_inputs) check_rows(fn, "a_aug", a, stream);
}

}  // namespace detail

/// Device scratch of the bridge loss's async calls: N doubles.
inline std::size_t brownian_bridge_loss_workspace_bytes(index_t n) noexcept {
  return static_cast<std::size_t>(n > 0 ? n : 0) * sizeof(double);
}

/// Forward: t_rows (N device doubles, the backward reads them) and *loss (device double).
/// `ws`: brownian_bridge_loss_workspace_bytes(N) bytes, 8-byte aligned. Never throws.
template <class T>
cudaError_t brownian_bridge_loss_forward_async(
    detail::nondeduced_t<matrix_view<const T, device_memory>> a,
    detail::nondeduced_t<matrix_view<const T, device_memory>> b,
    detail::nondeduced_t<matrix_view<const T, device_memory>> a_aug, double* t_rows, double* loss,
    const brownian_bridge_loss_options& o, workspace ws, cudaStream_t stream) noexcept {
  void* const scratch = ws.data;
  static_assert(std::is_floating_point<T>::value,
                "contrastive: the bridge loss on the GPU needs float or double");
  if (!detail::bridge_loss_args_ok<T>(a, b, a_aug, o) || t_rows == nullptr || loss == nullptr ||
      !detail::bridge_scratch_ok(ws, brownian_bridge_loss_workspace_bytes(a.rows())))
    return cudaErrorInvalidValue;
  auto* terms = static_cast<double*>(scratch);
  detail::bridge_loss_forward_kernel<T>
      <<<detail::grid_for(a.rows()), detail::sampler_block, 0, stream>>>(
          a, b, a_aug, contrastive::detail::bridge_loss_time_options(o), o.nll_weight, t_rows,
          terms);
  detail::bridge_sum_kernel<><<<1, detail::sampler_block, 0, stream>>>(
      terms, a.rows(), 1.0 / static_cast<double>(a.rows()), loss);
  return cudaGetLastError();
}

/// Backward: writes (or with o.accumulate adds) upstream * dL/da, dL/db, dL/da_aug (zero with
/// detach_a_aug, untouched when also accumulating); upstream * dL/dt_j into dt_rows and their
/// sum into *dt (device; each may be null). Never throws.
template <class T>
cudaError_t brownian_bridge_loss_backward_async(
    detail::nondeduced_t<matrix_view<const T, device_memory>> a,
    detail::nondeduced_t<matrix_view<const T, device_memory>> b,
    detail::nondeduced_t<matrix_view<const T, device_memory>> a_aug, const double* t_rows,
    matrix_view<T, device_memory> grad_a, matrix_view<T, device_memory> grad_b,
    matrix_view<T, device_memory> grad_a_aug, double* dt_rows, double* dt,
    const brownian_bridge_loss_options& o, double upstream, workspace ws,
    cudaStream_t stream) noexcept {
  void* const scratch = ws.data;
  static_assert(std::is_floating_point<T>::value,
                "contrastive: the bridge loss on the GPU needs float or double");
  const index_t n = a.rows();
  if (!detail::bridge_loss_args_ok<T>(a, b, a_aug, o) || t_rows == nullptr ||
      !std::isfinite(upstream) ||
      !detail::bridge_scratch_ok(ws, brownian_bridge_loss_workspace_bytes(n)))
    return cudaErrorInvalidValue;
  const matrix_view<T, device_memory>* outs[3] = {&grad_a, &grad_b, &grad_a_aug};
  const matrix_view<const T, device_memory>* ins[3] = {&a, &b, &a_aug};
  for (int k = 0; k < 3; ++k) {
    if (!detail::matrix_ok(*outs[k]) || outs[k]->rows() != n || outs[k]->cols() != a.cols() ||
        !detail::writable_ok(*outs[k]))
      return cudaErrorInvalidValue;
    for (int i = 0; i < 3; ++i)
      if (contrastive::detail::views_overlap(*outs[k], *ins[i])) return cudaErrorInvalidValue;
    for (int i = 0; i < k; ++i)
      if (contrastive::detail::views_overlap(*outs[k], *outs[i])) return cudaErrorInvalidValue;
  }
  double* rows = dt_rows != nullptr ? dt_rows : static_cast<double*>(scratch);
  detail::bridge_loss_backward_kernel<T><<<detail::grid_for(n), detail::sampler_block, 0, stream>>>(
      a, b, a_aug, t_rows, grad_a, grad_b, grad_a_aug, o.nll_weight, o.detach_a_aug, o.accumulate,
      upstream / static_cast<double>(n), rows);
  if (dt != nullptr)
    detail::bridge_sum_kernel<><<<1, detail::sampler_block, 0, stream>>>(rows, n, 1.0, dt);
  return cudaGetLastError();
}

/// What the throwing forward keeps on the device: the per-row t.
struct brownian_bridge_loss_device_saved {
  double loss = 0;
  device_buffer t;  // N doubles
  index_t n = 0, d = 0;
  bool nll_weight = false;
};

template <class T>
brownian_bridge_loss_device_saved brownian_bridge_loss_forward(
    detail::nondeduced_t<matrix_view<const T, device_memory>> a,
    detail::nondeduced_t<matrix_view<const T, device_memory>> b,
    detail::nondeduced_t<matrix_view<const T, device_memory>> a_aug,
    const brownian_bridge_loss_options& o = {}, cudaStream_t stream = 0) {
  constexpr const char* fn = "cuda::brownian_bridge_loss_forward";
  detail::bridge_loss_check<T>(fn, a, b, a_aug, o, stream);
  brownian_bridge_loss_device_saved s;
  s.n = a.rows();
  s.d = a.cols();
  s.nll_weight = o.nll_weight;
  s.t = device_buffer(sizeof(double) * static_cast<std::size_t>(s.n));
  device_buffer ws(brownian_bridge_loss_workspace_bytes(s.n)), loss(sizeof(double));
  throw_on_error(
      brownian_bridge_loss_forward_async<T>(a, b, a_aug, s.t.as<double>(), loss.as<double>(), o,
                                            workspace{ws.data(), ws.bytes()}, stream),
      "cuda::brownian_bridge_loss_forward_async");
  throw_on_error(
      cudaMemcpyAsync(&s.loss, loss.data(), sizeof(double), cudaMemcpyDeviceToHost, stream),
      "cudaMemcpyAsync");
  throw_on_error(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  contrastive::detail::check_loss_finite(fn, s.loss);
  return s;
}

/// Returns upstream * dL/dt per row and summed (host copies), like the CPU backward.
template <class T>
brownian_bridge_loss_parameter_gradients brownian_bridge_loss_backward(
    detail::nondeduced_t<matrix_view<const T, device_memory>> a,
    detail::nondeduced_t<matrix_view<const T, device_memory>> b,
    detail::nondeduced_t<matrix_view<const T, device_memory>> a_aug,
    const brownian_bridge_loss_device_saved& saved, matrix_view<T, device_memory> grad_a,
    matrix_view<T, device_memory> grad_b, matrix_view<T, device_memory> grad_a_aug,
    const brownian_bridge_loss_options& o = {}, double upstream = 1.0, cudaStream_t stream = 0) {
  constexpr const char* fn = "cuda::brownian_bridge_loss_backward";
  detail::bridge_loss_check<T>(fn, a, b, a_aug, o, stream);
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
  const index_t n = a.rows(), d = a.cols();
  CONTRASTIVE_CHECK(saved.n == n && saved.d == d && saved.t.bytes() == sizeof(double) * n, fn,
                    ": 'saved' belongs to a ", saved.n, " x ", saved.d, " batch, the inputs are ",
                    n, " x ", d);
  CONTRASTIVE_CHECK(saved.nll_weight == o.nll_weight, fn, ": 'saved' was computed with nll_weight ",
                    saved.nll_weight, ", these options have ", o.nll_weight);
  const char* names[3] = {"grad_a", "grad_b", "grad_a_aug"};
  const matrix_view<T, device_memory>* outs[3] = {&grad_a, &grad_b, &grad_a_aug};
  for (int k = 0; k < 3; ++k) {
    detail::check_matrix(fn, names[k], *outs[k]);
    detail::check_shape(fn, names[k], *outs[k], n, d, "the shape of 'a'");
    detail::check_writable_layout(fn, names[k], *outs[k]);
    detail::check_no_alias(fn, names[k], *outs[k], "a", a);
    detail::check_no_alias(fn, names[k], *outs[k], "b", b);
    detail::check_no_alias(fn, names[k], *outs[k], "a_aug", a_aug);
    for (int j = 0; j < k; ++j) detail::check_no_alias(fn, names[k], *outs[k], names[j], *outs[j]);
  }
  device_buffer ws(brownian_bridge_loss_workspace_bytes(n)), rows(sizeof(double) * n),
      sum(sizeof(double));
  throw_on_error(
      brownian_bridge_loss_backward_async<T>(
          a, b, a_aug, saved.t.as<const double>(), grad_a, grad_b, grad_a_aug, rows.as<double>(),
          sum.as<double>(), o, upstream, workspace{ws.data(), ws.bytes()}, stream),
      "cuda::brownian_bridge_loss_backward_async");
  brownian_bridge_loss_parameter_gradients out;
  out.t_rows.resize(static_cast<std::size_t>(n));
  throw_on_error(
      cudaMemcpyAsync(out.t_rows.data(), rows.data(), rows.bytes(), cudaMemcpyDeviceToHost, stream),
      "cudaMemcpyAsync");
  throw_on_error(
      cudaMemcpyAsync(&out.t, sum.data(), sizeof(double), cudaMemcpyDeviceToHost, stream),
      "cudaMemcpyAsync");
  throw_on_error(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  CONTRASTIVE_CHECK(std::isfinite(out.t), fn, ": dL/dt overflows; scale 'upstream' down");
  return out;
}

}  // namespace cuda

namespace detail {
/// The generic contrastive::brownian_bridge_sample / _trajectory and their backward land here for
/// device views (Philox noise).
template <class V>
struct device_backend<bridge_sampler_tag, V> {
  static constexpr bool available = true;
  using value_type = V;
  using view = matrix_view<const V, device_memory>;
  using out_view = matrix_view<V, device_memory>;
  static void sample(const view& a, const view& b, const out_view& y,
                     const brownian_bridge_options& o) {
    cuda::brownian_bridge_sample<V>(a, b, y, o);
  }
  static void trajectory(const view& a, const view& b, const out_view& x,
                         const brownian_bridge_options& o) {
    cuda::brownian_bridge_trajectory<V>(a, b, x, o);
  }
  static brownian_bridge_gradient sample_backward(const view& a, const view& b, const view& gy,
                                                  const out_view& ga, const out_view& gb,
                                                  const brownian_bridge_options& o) {
    return cuda::brownian_bridge_sample_backward<V>(a, b, gy, ga, gb, o);
  }
  static brownian_bridge_gradient trajectory_backward(const view& a, const view& b, const view& gx,
                                                      const out_view& ga, const out_view& gb,
                                                      const brownian_bridge_options& o) {
    return cuda::brownian_bridge_trajectory_backward<V>(a, b, gx, ga, gb, o);
  }
};

/// The generic contrastive::brownian_bridge_loss_* functions land here for device views.
template <class V>
struct device_backend<brownian_bridge_loss_tag, V> {
  static constexpr bool available = true;
  using view = matrix_view<const V, device_memory>;
  using out_view = matrix_view<V, device_memory>;
  static cuda::brownian_bridge_loss_device_saved forward(const view& a, const view& b,
                                                         const view& aa,
                                                         const brownian_bridge_loss_options& o) {
    return cuda::brownian_bridge_loss_forward<V>(a, b, aa, o);
  }
  static brownian_bridge_loss_parameter_gradients backward(
      const view& a, const view& b, const view& aa,
      const cuda::brownian_bridge_loss_device_saved& s, const out_view& ga, const out_view& gb,
      const out_view& gaa, const brownian_bridge_loss_options& o, double upstream) {
    return cuda::brownian_bridge_loss_backward<V>(a, b, aa, s, ga, gb, gaa, o, upstream);
  }
};
}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_BROWNIAN_BRIDGE_CUH
