#ifndef CONTRASTIVE_CUDA_NT_XENT_CUH
#define CONTRASTIVE_CUDA_NT_XENT_CUH

// NT-Xent (SimCLR) on the GPU (nvcc only; never in the umbrella). Z = [a; b] is never copied:
// the kernels read its rows from the two views. The logit matrix is symmetric, so the forward
// needs only row statistics (2N log-normalisers) and one gradient sweep writes dL/dZ =
// lambda (G + G^T) Z, whose entries are softmax_gradient_entry(s_ij, lse_i, lse_j, 1, 1, t_ij).
// Entry points, types and errors as in cuda/info_nce.cuh.

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <string>

#include "contrastive/core/block_sweep.hpp"
#include "contrastive/core/checks.hpp"
#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_types.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/workspace.hpp"
#include "contrastive/cuda/error.cuh"
#include "contrastive/cuda/info_nce.cuh"
#include "contrastive/cuda/detail/launch.cuh"
#include "contrastive/losses/nt_xent_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

/// As info_nce_problem: the CPU's checks in the CPU's order (core/checks.hpp), then the GPU's.
template <class T>
std::string nt_xent_problem(const char* fn, const device_view<T>& a, const device_view<T>& b,
                            const nt_xent_options& o, math_mode m,
                            sweep_mode mode = sweep_mode::automatic) {
  namespace cd = contrastive::detail;
  try {
    cd::check_smoothing(fn, o.label_smoothing);
    cd::check_reduction(fn, o.reduction);
    cd::check_matrix(fn, "a", a);
    cd::check_matrix(fn, "b", b);
    cd::check_temperature(fn, o.temperature);
    cd::check_tiles(fn, o.tile_rows, o.tile_cols);
    cd::check_pair_shape(fn, a, b);
    if (!o.labels.empty()) cd::check_labels(fn, "labels", o.labels, a.rows());
  } catch (const invalid_argument& e) {
    return e.what();
  }
  return device_pair_problem<T>(fn, a, b, m, !o.labels.empty(), mode);
}

/// Z = [a; b] as one sweep's X and Y, the diagonal masked.
template <class T>
sweep_args<T> nt_xent_args(const device_view<T>& a, const device_view<T>& b, double temperature) {
  sweep_args<T> s;
  s.x = rows2<const T>{a.data(), a.row_stride(), a.rows(), b.data(), b.row_stride(), b.rows()};
  s.y = s.x;
  s.nx = s.ny = 2 * a.rows();
  s.d = a.cols();
  s.scale = static_cast<float>(1.0 / temperature);
  s.mask_self = true;
  s.vec = vector_loads_ok(s.x, s.d);
  return s;
}

inline double nt_xent_weight(index_t n, const nt_xent_options& o) {
  return o.reduction == loss_reduction::mean ? 1.0 / static_cast<double>(2 * n) : 1.0;
}

template <class T, bool Tf32>
cudaError_t nt_xent_forward_run(const device_view<T>& a, const device_view<T>& b, device_stats lse,
                                double* loss, const nt_xent_options& o, workspace ws,
                                cudaStream_t s) {
  device_limits lim;
  cudaError_t e = query_limits(lim);
  if (e != cudaSuccess) return e;
  using E = typename policy_for<T, Tf32>::elem;
  const index_t n = a.rows(), d = a.cols();
  const launch_plan plan = make_launch_plan<E>(2 * n, 2 * n, d, lim);
  carver c = make_carver(ws);
  auto* packed = c.take<unsigned long long>(2 * n);
  double* sum = c.take<double>(d);
  c.take<double>(d);
  double* terms = c.take<double>(2 * n);
  const sweep_args<T> z = nt_xent_args(a, b, o.temperature);
  e = launch_stats<T, Tf32>(z, plan, packed, nullptr, lse.data, lse.stride, nullptr, 1, s);
  if (e != cudaSuccess) return e;
  const double eps = o.label_smoothing;
  if (eps > 0) launch_column_sum(z.y, 2 * n, d, sum, s);
  launch_loss_terms(z, lse.data, lse.stride, n, static_cast<float>(1 - eps),
                    static_cast<float>(eps / double(2 * n - 1)), sum, terms, s);
  sum_kernel<><<<1, 1024, 0, s>>>(terms, 2 * n, nt_xent_weight(n, o), loss, false);
  return cudaGetLastError();
}

template <class T, bool Tf32>
cudaError_t nt_xent_backward_run(const device_view<T>& a, const device_view<T>& b,
                                 device_const_stats lse, const device_out_view<T>& grad_a,
                                 const device_out_view<T>& grad_b, const nt_xent_options& o,
                                 double upstream, double* grad_temperature, workspace ws,
                                 cudaStream_t s) {
  device_limits lim;
  cudaError_t e = query_limits(lim);
  if (e != cudaSuccess) return e;
  using E = typename policy_for<T, Tf32>::elem;
  const index_t n = a.rows(), d = a.cols();
  const launch_plan plan = make_launch_plan<E>(2 * n, 2 * n, d, lim);
  carver c = make_carver(ws);
  double* moment = c.take<double>(1);
  float* scratch = c.take<float>(plan.scratch_bytes / sizeof(float));
  if (grad_temperature != nullptr) cudaMemsetAsync(moment, 0, sizeof(double), s);
  const double weight = nt_xent_weight(n, o) * upstream;
  const double scale = 1.0 / o.temperature;
  gradient_args<T> g;
  g.lse_x = lse.data;
  g.lse_y = lse.data;
  g.w_x = g.w_y = 1.f;
  g.on_target = static_cast<float>(1 - o.label_smoothing);
  g.off_target = static_cast<float>(o.label_smoothing / double(2 * n - 1));
  g.pos_shift = n;
  g.out_scale = static_cast<float>(scale * weight);
  g.accumulate = o.accumulate;
  g.out = rows2<T>{grad_a.data(), grad_a.row_stride(), n, grad_b.data(), grad_b.row_stride(), n};
  g.scratch = scratch;
  g.moment = grad_temperature != nullptr ? moment : nullptr;
  g.moment_weight = 0.5f;  // the sweep sums (G + G^T) s = 2 G s
  e = launch_gradient<T, Tf32>(nt_xent_args(a, b, o.temperature), g, plan, s);
  if (e != cudaSuccess) return e;
  if (grad_temperature != nullptr)
    temperature_kernel<><<<1, 1, 0, s>>>(moment, weight, scale, grad_temperature);
  return cudaGetLastError();
}

template <class T>
std::string nt_xent_backward_problem(const char* fn, const device_view<T>& a,
                                     const device_view<T>& b, device_const_stats lse,
                                     const device_out_view<T>& ga, const device_out_view<T>& gb,
                                     const nt_xent_options& o, double upstream, math_mode m,
                                     sweep_mode mode = sweep_mode::automatic) {
  std::string err = nt_xent_problem<T>(fn, a, b, o, m, mode);
  // The CPU's gradient checks in its order, then the GPU's layout.
  if (err.empty()) err = gradients_problem<T>(fn, a, b, ga, gb, upstream);
  if (err.empty()) err = stats_problem(fn, "lse", lse.size, 2 * a.rows(), lse.data);
  if (err.empty() && lse.stride != 1) err = std::string(fn) + ": 'lse' must be contiguous";
  if (err.empty()) {
    info_nce_options io;
    io.temperature = o.temperature;
    io.label_smoothing = o.label_smoothing;
    io.reduction = o.reduction;
    io.symmetric = false;
    err = info_nce_backward_problem<T>(fn, a, b, {lse.data, a.rows(), 1}, {}, ga, gb, io, upstream,
                                       m);
  }
  return err;
}

template <class T>
block_plan nt_xent_block_plan(index_t n, index_t d, const nt_xent_options& o) {
  return contrastive::detail::make_block_plan(contrastive::detail::nt_xent_block_problem(n, d, o),
                                              block_sizes<T>());
}

/// Z = [a; b] as X and Y of the blocked sweep; labels (n, device memory) serve both views.
template <class T>
block_inputs<T> nt_xent_block_inputs(const device_view<T>& a, const device_view<T>& b,
                                     const nt_xent_options& o) {
  block_inputs<T> in;
  in.x = rows2<const T>{a.data(), a.row_stride(), a.rows(), b.data(), b.row_stride(), b.rows()};
  in.y = in.x;
  in.label_x = in.label_y = o.labels.data;
  return in;
}

}  // namespace detail

/// Device workspace bytes of both passes for the given sweep mode (see info_nce_workspace_bytes).
template <class T>
std::size_t nt_xent_workspace_bytes(index_t n, index_t d, const nt_xent_options& o = {},
                                    math_mode m = math_mode::fp32,
                                    sweep_mode mode = sweep_mode::automatic) {
  const std::size_t blocked = detail::nt_xent_block_plan<T>(n, d, o).bytes;
  if (mode == sweep_mode::blocked) return blocked;
  detail::device_limits lim;
  throw_on_error(detail::query_limits(lim), "nt_xent_workspace_bytes");
  const bool tf32 = m == math_mode::tf32 && std::is_same<T, float>::value;
  const detail::launch_plan p =
      tf32 ? detail::make_launch_plan<float>(2 * n, 2 * n, d, lim)
           : detail::make_launch_plan<typename detail::policy_for<T, false>::elem>(2 * n, 2 * n, d,
                                                                                   lim);
  const std::size_t f = detail::forward_bytes(2 * n, 2 * n, d, false);
  const std::size_t b = detail::backward_bytes(p);
  std::size_t fused = f > b ? f : b;
  if (mode == sweep_mode::automatic && detail::blocked_by_default && blocked > fused)
    fused = blocked;
  return fused;
}

/// Forward: writes lse (2n floats: the rows of a, then those of b) and *loss (device).
template <class T>
cudaError_t nt_xent_forward_async(device_view<T> a, device_view<T> b, device_stats lse,
                                  double* loss, const nt_xent_options& o, workspace ws,
                                  cudaStream_t stream, math_mode m = math_mode::fp32,
                                  sweep_mode mode = sweep_mode::automatic) noexcept {
  try {
    const char* fn = "cuda::nt_xent_forward_async";
    if (!detail::nt_xent_problem<T>(fn, a, b, o, m, mode).empty() || loss == nullptr ||
        !detail::stats_problem(fn, "lse", lse.size, 2 * a.rows(), lse.data).empty() ||
        ws.data == nullptr || ws.bytes < nt_xent_workspace_bytes<T>(a.rows(), a.cols(), o, m, mode))
      return cudaErrorInvalidValue;
    cudaError_t e = cudaSuccess;
    if (detail::use_blocked(a, b, lse.stride == 1, mode, &e)) {
      const detail::block_plan plan = detail::nt_xent_block_plan<T>(a.rows(), a.cols(), o);
      const detail::block_inputs<T> in = detail::nt_xent_block_inputs(a, b, o);
      if constexpr (std::is_same<T, float>::value) {
        if (m == math_mode::tf32)
          return detail::block_forward_run<T, true>(plan, in, lse.data, nullptr, loss, ws, stream);
      }
      return detail::block_forward_run<T, false>(plan, in, lse.data, nullptr, loss, ws, stream);
    }
    if (e != cudaSuccess) return e;
    if constexpr (std::is_same<T, float>::value) {
      if (m == math_mode::tf32)
        return detail::nt_xent_forward_run<T, true>(a, b, lse, loss, o, ws, stream);
    }
    return detail::nt_xent_forward_run<T, false>(a, b, lse, loss, o, ws, stream);
  } catch (const cuda_error& e) {
    return e.status();
  } catch (...) {
    return cudaErrorMemoryAllocation;
  }
}

template <class T>
cudaError_t nt_xent_backward_async(device_view<T> a, device_view<T> b, device_const_stats lse,
                                   device_out_view<T> grad_a, device_out_view<T> grad_b,
                                   const nt_xent_options& o, double upstream,
                                   double* grad_temperature, workspace ws, cudaStream_t stream,
                                   math_mode m = math_mode::fp32,
                                   sweep_mode mode = sweep_mode::automatic) noexcept {
  try {
    if (!detail::nt_xent_backward_problem<T>("cuda::nt_xent_backward_async", a, b, lse, grad_a,
                                             grad_b, o, upstream, m, mode)
             .empty() ||
        ws.data == nullptr || ws.bytes < nt_xent_workspace_bytes<T>(a.rows(), a.cols(), o, m, mode))
      return cudaErrorInvalidValue;
    cudaError_t e = cudaSuccess;
    if (detail::use_blocked(a, b, lse.stride == 1, mode, &e)) {
      const detail::block_plan plan = detail::nt_xent_block_plan<T>(a.rows(), a.cols(), o);
      const detail::block_inputs<T> in = detail::nt_xent_block_inputs(a, b, o);
      const detail::rows2<T> oz{grad_a.data(), grad_a.row_stride(), a.rows(),
                                grad_b.data(), grad_b.row_stride(), b.rows()};
      if constexpr (std::is_same<T, float>::value) {
        if (m == math_mode::tf32)
          return detail::block_backward_run<T, true>(plan, in, lse.data, nullptr, oz, oz,
                                                     o.accumulate, upstream, grad_temperature, ws,
                                                     stream);
      }
      return detail::block_backward_run<T, false>(plan, in, lse.data, nullptr, oz, oz, o.accumulate,
                                                  upstream, grad_temperature, ws, stream);
    }
    if (e != cudaSuccess) return e;
    if constexpr (std::is_same<T, float>::value) {
      if (m == math_mode::tf32)
        return detail::nt_xent_backward_run<T, true>(a, b, lse, grad_a, grad_b, o, upstream,
                                                     grad_temperature, ws, stream);
    }
    return detail::nt_xent_backward_run<T, false>(a, b, lse, grad_a, grad_b, o, upstream,
                                                  grad_temperature, ws, stream);
  } catch (const cuda_error& e) {
    return e.status();
  } catch (...) {
    return cudaErrorMemoryAllocation;
  }
}

struct nt_xent_device_saved {
  double loss = 0;
  device_buffer lse;  // 2n floats
  index_t n = 0, d = 0;
  double temperature = 0, label_smoothing = 0;
  loss_reduction reduction = loss_reduction::mean;
  math_mode math = math_mode::fp32;
  sweep_mode mode = sweep_mode::automatic;
  device_const_stats stats() const noexcept { return {lse.as<const float>(), 2 * n, 1}; }
};

template <class T>
nt_xent_device_saved nt_xent_forward(device_view<T> a, device_view<T> b,
                                     const nt_xent_options& o = {}, math_mode m = math_mode::fp32,
                                     cudaStream_t stream = nullptr,
                                     sweep_mode mode = sweep_mode::automatic) {
  const char* fn = "cuda::nt_xent_forward";
  const std::string err = detail::nt_xent_problem<T>(fn, a, b, o, m, mode);
  CONTRASTIVE_CHECK(err.empty(), err);
  if (o.scan_inputs) {  // the CPU's check_finite, on the device (o.scan_inputs = false skips it)
    detail::check_finite_device(fn, "a", a, stream);
    detail::check_finite_device(fn, "b", b, stream);
  }
  nt_xent_device_saved saved;
  saved.n = a.rows();
  saved.d = a.cols();
  saved.temperature = o.temperature;
  saved.label_smoothing = o.label_smoothing;
  saved.reduction = o.reduction;
  saved.math = m;
  saved.mode = mode;
  saved.lse = device_buffer(sizeof(float) * 2 * static_cast<std::size_t>(saved.n));
  saved.loss = detail::run_owned(fn, nt_xent_workspace_bytes<T>(saved.n, saved.d, o, m, mode),
                                 stream, [&](workspace ws, double* loss) {
                                   return nt_xent_forward_async<T>(
                                       a, b, {saved.lse.as<float>(), 2 * saved.n, 1}, loss, o, ws,
                                       stream, m, mode);
                                 });
  detail::check_finite_loss(fn, saved.loss, o.temperature);
  return saved;
}

template <class T>
nt_xent_parameter_gradients nt_xent_backward(device_view<T> a, device_view<T> b,
                                             const nt_xent_device_saved& saved,
                                             device_out_view<T> grad_a, device_out_view<T> grad_b,
                                             const nt_xent_options& o = {}, double upstream = 1.0,
                                             cudaStream_t stream = nullptr) {
  const char* fn = "cuda::nt_xent_backward";
  CONTRASTIVE_CHECK(saved.n == a.rows() && saved.d == a.cols(), fn, ": 'saved' belongs to a ",
                    saved.n, " x ", saved.d, " problem, the inputs are ", a.rows(), " x ",
                    a.cols());
  CONTRASTIVE_CHECK(
      saved.temperature == o.temperature && saved.label_smoothing == o.label_smoothing &&
          saved.reduction == o.reduction,
      fn, ": 'saved' was computed with other options (temperature ", saved.temperature,
      ", label_smoothing ", saved.label_smoothing, ") than these (temperature ", o.temperature,
      ", label_smoothing ", o.label_smoothing, ")");
  const std::string err = detail::nt_xent_backward_problem<T>(
      fn, a, b, saved.stats(), grad_a, grad_b, o, upstream, saved.math, saved.mode);
  CONTRASTIVE_CHECK(err.empty(), err);
  const double dtau = detail::run_owned(
      fn, nt_xent_workspace_bytes<T>(saved.n, saved.d, o, saved.math, saved.mode), stream,
      [&](workspace ws, double* gt) {
        return nt_xent_backward_async<T>(a, b, saved.stats(), grad_a, grad_b, o, upstream, gt, ws,
                                         stream, saved.math, saved.mode);
      });
  return temperature_gradient::from_log_scale(-dtau * o.temperature, o.temperature);
}

template <class T>
double nt_xent_forward_backward(device_view<T> a, device_view<T> b, device_out_view<T> grad_a,
                                device_out_view<T> grad_b, const nt_xent_options& o = {},
                                nt_xent_parameter_gradients* parameter_grads = nullptr,
                                math_mode m = math_mode::fp32, cudaStream_t stream = nullptr,
                                sweep_mode mode = sweep_mode::automatic) {
  const nt_xent_device_saved saved = nt_xent_forward<T>(a, b, o, m, stream, mode);
  const temperature_gradient tg = nt_xent_backward<T>(a, b, saved, grad_a, grad_b, o, 1.0, stream);
  if (parameter_grads != nullptr) *parameter_grads = tg;
  return saved.loss;
}

}  // namespace cuda

namespace detail {
/// The generic contrastive::nt_xent_* functions land here for device views.
template <class V>
struct device_backend<nt_xent_tag, V> {
  static constexpr bool available = true;
  static cuda::nt_xent_device_saved forward(const matrix_view<const V, device_memory>& a,
                                            const matrix_view<const V, device_memory>& b,
                                            const nt_xent_options& o) {
    return cuda::nt_xent_forward<V>(a, b, o);
  }
  static temperature_gradient backward(const matrix_view<const V, device_memory>& a,
                                       const matrix_view<const V, device_memory>& b,
                                       const cuda::nt_xent_device_saved& saved,
                                       const matrix_view<V, device_memory>& ga,
                                       const matrix_view<V, device_memory>& gb,
                                       const nt_xent_options& o, double upstream) {
    return cuda::nt_xent_backward<V>(a, b, saved, ga, gb, o, upstream);
  }
};
}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_NT_XENT_CUH
