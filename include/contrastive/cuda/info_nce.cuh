#ifndef CONTRASTIVE_CUDA_INFO_NCE_CUH
#define CONTRASTIVE_CUDA_INFO_NCE_CUH

// InfoNCE and the symmetric CLIP loss on the GPU (nvcc only; never in the umbrella).
//
// CUTLASS-style entry points: info_nce_forward_async / info_nce_backward_async take device views,
// a caller workspace sized by info_nce_workspace_bytes and a stream; they never throw and return
// cudaErrorInvalidValue for bad arguments, else the launch status. info_nce_forward / _backward /
// _forward_backward check arguments (contrastive::invalid_argument, as on the CPU), allocate,
// synchronise and throw cuda::cuda_error on a CUDA failure. The generic contrastive::info_nce_*
// functions call these when given device views (matrix_view<T, device_memory>).
//
// Inputs: float (fp32 FMAs, or TF32 tensor cores with math_mode::tf32), __half or __nv_bfloat16
// (tensor cores), row-major with unit column stride, accumulation in fp32; statistics in float,
// the loss and the temperature gradient in double. Supported options: temperature, symmetric,
// label_smoothing, reduction, accumulate; labels (multiple positives, device int64 arrays) with
// sweep_mode::blocked only.
//
// Two implementations (sweep_mode, cuda/detail/block_sweep.cuh): the fused streaming kernels
// (cuda/detail/fused_kernels.cuh; minimal memory) and the blocked sweep (cuBLASLt logit and
// gradient blocks with fused epilogues; compiled, not yet run on a GPU). sweep_mode::automatic
// picks the fused kernels until the blocked path has passed on a GPU.

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
#include "contrastive/cuda/detail/block_sweep.cuh"
#include "contrastive/cuda/detail/checks.cuh"
#include "contrastive/cuda/error.cuh"
#include "contrastive/cuda/detail/launch.cuh"
#include "contrastive/losses/info_nce_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {

template <class T>
using device_view = matrix_view<const T, device_memory>;
template <class T>
using device_out_view = matrix_view<T, device_memory>;
using device_stats = vector_view<float, device_memory>;
using device_const_stats = vector_view<const float, device_memory>;

namespace detail {

/// What only the GPU path requires of a pair of inputs (after the CPU's checks): element type,
/// layout, labels only on the blocked sweep, tf32 only for float.
template <class T>
std::string device_pair_problem(const char* fn, const device_view<T>& a, const device_view<T>& b,
                                math_mode m, bool labelled, sweep_mode mode) {
  auto msg = [&](const std::string& s) { return std::string(fn) + ": " + s; };
  if (!supported_type<T>::value) return msg("element type must be float, __half or __nv_bfloat16");
  if (a.col_stride() != 1 || b.col_stride() != 1)
    return msg("device inputs must be row-major with unit column stride");
  if (a.rows() > 1 && (a.row_stride() < a.cols() || b.row_stride() < b.cols()))
    return msg("device inputs need a row stride of at least the number of columns");
  if (labelled && mode != sweep_mode::blocked)
    return msg(
        "labels (multiple positives) on the GPU need sweep_mode::blocked (device arrays); the "
        "fused kernels have none");
  if (m == math_mode::tf32 && !std::is_same<T, float>::value)
    return msg("math_mode::tf32 applies to float inputs only");
  return {};
}

/// Everything the CUDA path rejects, as a message (empty when the arguments are fine). Shared
/// by the _async functions (which return cudaErrorInvalidValue) and the throwing wrappers. The
/// checks the CPU makes come first, in the CPU's order and through the CPU's functions
/// (core/checks.hpp), so the same bad input gives the same message after the function name;
/// then what only the GPU path requires.
template <class T>
std::string info_nce_problem(const char* fn, const device_view<T>& a, const device_view<T>& b,
                             const info_nce_options& o, math_mode m,
                             sweep_mode mode = sweep_mode::automatic) {
  namespace cd = contrastive::detail;
  try {
    cd::check_smoothing(fn, o.label_smoothing);
    cd::check_reduction(fn, o.reduction);
    cd::check_label_pair(fn, o.labels_a, o.labels_b);
    cd::check_matrix(fn, "a", a);
    cd::check_matrix(fn, "b", b);
    cd::check_temperature(fn, o.temperature);
    cd::check_tiles(fn, o.tile_rows, o.tile_cols);
    cd::check_pair_shape(fn, a, b);
    if (!o.labels_a.empty()) {
      cd::check_labels(fn, "labels_a", o.labels_a, a.rows());
      cd::check_labels(fn, "labels_b", o.labels_b, b.rows());
    }
  } catch (const invalid_argument& e) {
    return e.what();
  }
  return device_pair_problem<T>(fn, a, b, m, !o.labels_a.empty(), mode);
}

/// The CPU's gradient checks, as a message (empty when fine), plus the GPU's layout.
template <class T>
std::string gradients_problem(const char* fn, const device_view<T>& a, const device_view<T>& b,
                              const device_out_view<T>& ga, const device_out_view<T>& gb,
                              double upstream) {
  try {
    contrastive::detail::check_pair_gradients(fn, a, b, ga, gb, upstream);
  } catch (const invalid_argument& e) {
    return e.what();
  }
  if (ga.col_stride() != 1 || gb.col_stride() != 1 ||
      (a.rows() > 1 && (ga.row_stride() < a.cols() || gb.row_stride() < a.cols())))
    return std::string(fn) + ": device gradients must be row-major with unit column stride";
  return {};
}

inline std::string stats_problem(const char* fn, const char* name, index_t size, index_t n,
                                 const void* data) {
  if (data == nullptr || size != n)
    return std::string(fn) + ": '" + name + "' must be a device vector of " + std::to_string(n) +
           " floats, got " + std::to_string(size) + (data == nullptr ? " (null)" : "");
  return {};
}

template <class T>
sweep_args<T> info_nce_args(const device_view<T>& x, const device_view<T>& y, double temperature) {
  sweep_args<T> a;
  a.x = rows_of(x);
  a.y = rows_of(y);
  a.nx = x.rows();
  a.ny = y.rows();
  a.d = x.cols();
  a.scale = static_cast<float>(1.0 / temperature);
  a.vec = vector_loads_ok(a.x, a.d) && vector_loads_ok(a.y, a.d);
  return a;
}

/// Reduction weight of one direction's sum of per-anchor losses (CLIP averages two directions).
inline double info_nce_weight(index_t n, const info_nce_options& o) {
  const double c = o.symmetric ? 0.5 : 1.0;
  return o.reduction == loss_reduction::mean ? c / static_cast<double>(n) : c;
}

template <class T, bool Tf32>
cudaError_t info_nce_forward_run(const device_view<T>& a, const device_view<T>& b,
                                 device_stats row_lse, device_stats col_lse, double* loss,
                                 const info_nce_options& o, workspace ws, cudaStream_t s) {
  device_limits lim;
  cudaError_t e = query_limits(lim);
  if (e != cudaSuccess) return e;
  using E = typename policy_for<T, Tf32>::elem;
  const index_t n = a.rows(), d = a.cols();
  const launch_plan plan = make_launch_plan<E>(n, n, d, lim);
  carver c = make_carver(ws);
  auto* row_packed = c.take<unsigned long long>(n);
  auto* col_packed = o.symmetric ? c.take<unsigned long long>(n) : nullptr;
  double* sum_a = c.take<double>(d);
  double* sum_b = c.take<double>(d);
  double* terms = c.take<double>(o.symmetric ? 2 * n : n);

  const sweep_args<T> ab = info_nce_args(a, b, o.temperature);
  e = launch_stats<T, Tf32>(ab, plan, row_packed, col_packed, row_lse.data, row_lse.stride,
                            col_packed ? col_lse.data : nullptr, col_lse.stride, s);
  if (e != cudaSuccess) return e;
  const double eps = o.label_smoothing;
  const float on = static_cast<float>(1 - eps), off = static_cast<float>(eps / double(n));
  if (eps > 0) launch_column_sum(ab.y, n, d, sum_b, s);
  launch_loss_terms(ab, row_lse.data, row_lse.stride, 0, on, off, sum_b, terms, s);
  if (o.symmetric) {
    const sweep_args<T> ba = info_nce_args(b, a, o.temperature);
    if (eps > 0) launch_column_sum(ba.y, n, d, sum_a, s);
    launch_loss_terms(ba, col_lse.data, col_lse.stride, 0, on, off, sum_a, terms + n, s);
  }
  sum_kernel<>
      <<<1, 1024, 0, s>>>(terms, o.symmetric ? 2 * n : n, info_nce_weight(n, o), loss, false);
  return cudaGetLastError();
}

template <class T, bool Tf32>
cudaError_t info_nce_backward_run(const device_view<T>& a, const device_view<T>& b,
                                  device_const_stats row_lse, device_const_stats col_lse,
                                  const device_out_view<T>& grad_a,
                                  const device_out_view<T>& grad_b, const info_nce_options& o,
                                  double upstream, double* grad_temperature, workspace ws,
                                  cudaStream_t s) {
  device_limits lim;
  cudaError_t e = query_limits(lim);
  if (e != cudaSuccess) return e;
  using E = typename policy_for<T, Tf32>::elem;
  const index_t n = a.rows(), d = a.cols();
  const launch_plan plan = make_launch_plan<E>(n, n, d, lim);
  carver c = make_carver(ws);
  double* moment = c.take<double>(1);
  float* scratch = c.take<float>(plan.scratch_bytes / sizeof(float));
  if (grad_temperature != nullptr) cudaMemsetAsync(moment, 0, sizeof(double), s);

  const double weight = info_nce_weight(n, o) * upstream;
  const double scale = 1.0 / o.temperature;
  const float on = static_cast<float>(1 - o.label_smoothing);
  const float off = static_cast<float>(o.label_smoothing / double(n));
  const float sym = o.symmetric ? 1.f : 0.f;
  // Row stride 1 is the layout the kernels read; stats views with other strides are rejected.
  gradient_args<T> g;
  g.on_target = on;
  g.off_target = off;
  g.out_scale = static_cast<float>(scale * weight);
  g.accumulate = o.accumulate;
  g.scratch = scratch;
  // dA: rows of A against B; G = w_row P + w_col Q - (w_row + w_col) T.
  g.lse_x = row_lse.data;
  g.lse_y = o.symmetric ? col_lse.data : nullptr;
  g.w_x = 1.f;
  g.w_y = sym;
  g.out = rows_of(grad_a);
  g.moment = grad_temperature != nullptr ? moment : nullptr;
  g.moment_weight = 1.f;
  e = launch_gradient<T, Tf32>(info_nce_args(a, b, o.temperature), g, plan, s);
  if (e != cudaSuccess) return e;
  // dB: rows of B against A; the same entries, transposed.
  g.lse_x = o.symmetric ? col_lse.data : nullptr;
  g.lse_y = row_lse.data;
  g.w_x = sym;
  g.w_y = 1.f;
  g.out = rows_of(grad_b);
  g.moment = nullptr;
  e = launch_gradient<T, Tf32>(info_nce_args(b, a, o.temperature), g, plan, s);
  if (e != cudaSuccess) return e;
  if (grad_temperature != nullptr)
    temperature_kernel<><<<1, 1, 0, s>>>(moment, weight, scale, grad_temperature);
  return cudaGetLastError();
}

template <class T>
std::string info_nce_backward_problem(const char* fn, const device_view<T>& a,
                                      const device_view<T>& b, device_const_stats row_lse,
                                      device_const_stats col_lse, const device_out_view<T>& ga,
                                      const device_out_view<T>& gb, const info_nce_options& o,
                                      double upstream, math_mode m,
                                      sweep_mode mode = sweep_mode::automatic) {
  std::string err = info_nce_problem<T>(fn, a, b, o, m, mode);
  // The CPU's gradient checks in its order, then the GPU's layout.
  if (err.empty()) err = gradients_problem<T>(fn, a, b, ga, gb, upstream);
  if (err.empty()) err = stats_problem(fn, "row_lse", row_lse.size, a.rows(), row_lse.data);
  if (err.empty() && o.symmetric)
    err = stats_problem(fn, "col_lse", col_lse.size, a.rows(), col_lse.data);
  if (err.empty() && (row_lse.stride != 1 || (o.symmetric && col_lse.stride != 1)))
    err = std::string(fn) + ": statistics must be contiguous (stride 1)";
  return err;
}

/// Whether a call runs the blocked sweep (cuda/detail/block_sweep.cuh). *e is
/// cudaErrorNotSupported when sweep_mode::blocked is asked for where cuBLASLt cannot serve (D or
/// a row stride not a multiple of 16 bytes, rows not 16-byte aligned, strided statistics).
template <class T>
bool use_blocked(const device_view<T>& a, const device_view<T>& b, bool stats_contiguous,
                 sweep_mode mode, cudaError_t* e) {
  const bool servable = lt_rows_ok<T>(a.data(), a.row_stride(), a.rows(), a.cols()) &&
                        lt_rows_ok<T>(b.data(), b.row_stride(), b.rows(), b.cols()) &&
                        stats_contiguous;
  *e = mode == sweep_mode::blocked && !servable ? cudaErrorNotSupported : cudaSuccess;
  return *e == cudaSuccess && blocked_wanted(mode, servable);
}

template <class T>
block_plan info_nce_block_plan(index_t n, index_t d, const info_nce_options& o) {
  return contrastive::detail::make_block_plan(contrastive::detail::info_nce_block_problem(n, d, o),
                                              block_sizes<T>());
}

template <class T>
block_inputs<T> info_nce_block_inputs(const device_view<T>& a, const device_view<T>& b,
                                      const info_nce_options& o) {
  block_inputs<T> in;
  in.x = rows_of(a);
  in.y = rows_of(b);
  in.label_x = o.labels_a.data;  // device memory
  in.label_y = o.labels_b.data;
  return in;
}

}  // namespace detail

/// Device workspace bytes of the forward and backward of an n x d problem (the larger of the
/// two; one buffer serves both) for the given sweep mode. The fused kernels' size depends on the
/// current device (multiprocessors, shared memory); the blocked sweep's is its plan's
/// (core/block_sweep.hpp: at most about 0.25 GiB at N = 32768, D = 512).
template <class T>
std::size_t info_nce_workspace_bytes(index_t n, index_t d, const info_nce_options& o = {},
                                     math_mode m = math_mode::fp32,
                                     sweep_mode mode = sweep_mode::automatic) {
  const std::size_t blocked = detail::info_nce_block_plan<T>(n, d, o).bytes;
  if (mode == sweep_mode::blocked) return blocked;
  detail::device_limits lim;
  throw_on_error(detail::query_limits(lim), "info_nce_workspace_bytes");
  const bool tf32 = m == math_mode::tf32 && std::is_same<T, float>::value;
  const detail::launch_plan p =
      tf32 ? detail::make_launch_plan<float>(n, n, d, lim)
           : detail::make_launch_plan<typename detail::policy_for<T, false>::elem>(n, n, d, lim);
  const std::size_t f = detail::forward_bytes(n, n, d, o.symmetric);
  const std::size_t b = detail::backward_bytes(p);
  std::size_t fused = f > b ? f : b;
  if (mode == sweep_mode::automatic && detail::blocked_by_default && blocked > fused)
    fused = blocked;
  return fused;
}

/// Forward: writes row_lse (and, when symmetric, col_lse), n floats each, and *loss (device).
template <class T>
cudaError_t info_nce_forward_async(device_view<T> a, device_view<T> b, device_stats row_lse,
                                   device_stats col_lse, double* loss, const info_nce_options& o,
                                   workspace ws, cudaStream_t stream, math_mode m = math_mode::fp32,
                                   sweep_mode mode = sweep_mode::automatic) noexcept {
  try {
    const char* fn = "cuda::info_nce_forward_async";
    if (!detail::info_nce_problem<T>(fn, a, b, o, m, mode).empty() || loss == nullptr ||
        !detail::stats_problem(fn, "row_lse", row_lse.size, a.rows(), row_lse.data).empty() ||
        (o.symmetric &&
         !detail::stats_problem(fn, "col_lse", col_lse.size, a.rows(), col_lse.data).empty()) ||
        ws.data == nullptr ||
        ws.bytes < info_nce_workspace_bytes<T>(a.rows(), a.cols(), o, m, mode))
      return cudaErrorInvalidValue;
    cudaError_t e = cudaSuccess;
    const bool contiguous = row_lse.stride == 1 && (!o.symmetric || col_lse.stride == 1);
    if (detail::use_blocked(a, b, contiguous, mode, &e)) {
      const detail::block_plan plan = detail::info_nce_block_plan<T>(a.rows(), a.cols(), o);
      const detail::block_inputs<T> in = detail::info_nce_block_inputs(a, b, o);
      if constexpr (std::is_same<T, float>::value) {
        if (m == math_mode::tf32)
          return detail::block_forward_run<T, true>(plan, in, row_lse.data, col_lse.data, loss, ws,
                                                    stream);
      }
      return detail::block_forward_run<T, false>(plan, in, row_lse.data, col_lse.data, loss, ws,
                                                 stream);
    }
    if (e != cudaSuccess) return e;
    if constexpr (std::is_same<T, float>::value) {
      if (m == math_mode::tf32)
        return detail::info_nce_forward_run<T, true>(a, b, row_lse, col_lse, loss, o, ws, stream);
    }
    return detail::info_nce_forward_run<T, false>(a, b, row_lse, col_lse, loss, o, ws, stream);
  } catch (const cuda_error& e) {  // the workspace query found no usable device
    return e.status();
  } catch (...) {  // std::string allocation in the checks
    return cudaErrorMemoryAllocation;
  }
}

/// Backward: writes (or with o.accumulate adds) upstream * dL/da and dL/db; when
/// grad_temperature (device) is given, writes upstream * dL/dtemperature there.
template <class T>
cudaError_t info_nce_backward_async(device_view<T> a, device_view<T> b, device_const_stats row_lse,
                                    device_const_stats col_lse, device_out_view<T> grad_a,
                                    device_out_view<T> grad_b, const info_nce_options& o,
                                    double upstream, double* grad_temperature, workspace ws,
                                    cudaStream_t stream, math_mode m = math_mode::fp32,
                                    sweep_mode mode = sweep_mode::automatic) noexcept {
  try {
    if (!detail::info_nce_backward_problem<T>("cuda::info_nce_backward_async", a, b, row_lse,
                                              col_lse, grad_a, grad_b, o, upstream, m, mode)
             .empty() ||
        ws.data == nullptr ||
        ws.bytes < info_nce_workspace_bytes<T>(a.rows(), a.cols(), o, m, mode))
      return cudaErrorInvalidValue;
    cudaError_t e = cudaSuccess;
    const bool contiguous = row_lse.stride == 1 && (!o.symmetric || col_lse.stride == 1);
    if (detail::use_blocked(a, b, contiguous, mode, &e)) {
      const detail::block_plan plan = detail::info_nce_block_plan<T>(a.rows(), a.cols(), o);
      const detail::block_inputs<T> in = detail::info_nce_block_inputs(a, b, o);
      const auto ox = detail::rows_of(grad_a), oy = detail::rows_of(grad_b);
      if constexpr (std::is_same<T, float>::value) {
        if (m == math_mode::tf32)
          return detail::block_backward_run<T, true>(plan, in, row_lse.data, col_lse.data, ox, oy,
                                                     o.accumulate, upstream, grad_temperature, ws,
                                                     stream);
      }
      return detail::block_backward_run<T, false>(plan, in, row_lse.data, col_lse.data, ox, oy,
                                                  o.accumulate, upstream, grad_temperature, ws,
                                                  stream);
    }
    if (e != cudaSuccess) return e;
    if constexpr (std::is_same<T, float>::value) {
      if (m == math_mode::tf32)
        return detail::info_nce_backward_run<T, true>(a, b, row_lse, col_lse, grad_a, grad_b, o,
                                                      upstream, grad_temperature, ws, stream);
    }
    return detail::info_nce_backward_run<T, false>(a, b, row_lse, col_lse, grad_a, grad_b, o,
                                                   upstream, grad_temperature, ws, stream);
  } catch (const cuda_error& e) {
    return e.status();
  } catch (...) {
    return cudaErrorMemoryAllocation;
  }
}

/// What the throwing forward keeps on the device for the backward: O(N) statistics.
struct info_nce_device_saved {
  double loss = 0;
  device_buffer row_lse, col_lse;  // n floats each (col_lse only when symmetric)
  index_t n = 0, d = 0;
  double temperature = 0, label_smoothing = 0;
  bool symmetric = true;
  loss_reduction reduction = loss_reduction::mean;
  math_mode math = math_mode::fp32;
  sweep_mode mode = sweep_mode::automatic;

  device_const_stats row() const noexcept { return {row_lse.as<const float>(), n, 1}; }
  device_const_stats col() const noexcept {
    return {symmetric ? col_lse.as<const float>() : nullptr, symmetric ? n : 0, 1};
  }
};

template <class T>
info_nce_device_saved info_nce_forward(device_view<T> a, device_view<T> b,
                                       const info_nce_options& o = {},
                                       math_mode m = math_mode::fp32, cudaStream_t stream = nullptr,
                                       sweep_mode mode = sweep_mode::automatic) {
  const char* fn = "cuda::info_nce_forward";
  const std::string err = detail::info_nce_problem<T>(fn, a, b, o, m, mode);
  CONTRASTIVE_CHECK(err.empty(), err);
  if (o.scan_inputs) {  // the CPU's check_finite, on the device (o.scan_inputs = false skips it)
    detail::check_finite_device(fn, "a", a, stream);
    detail::check_finite_device(fn, "b", b, stream);
  }
  info_nce_device_saved saved;
  saved.n = a.rows();
  saved.d = a.cols();
  saved.temperature = o.temperature;
  saved.label_smoothing = o.label_smoothing;
  saved.symmetric = o.symmetric;
  saved.reduction = o.reduction;
  saved.math = m;
  saved.mode = mode;
  saved.row_lse = device_buffer(sizeof(float) * static_cast<std::size_t>(saved.n));
  if (o.symmetric) saved.col_lse = device_buffer(sizeof(float) * static_cast<std::size_t>(saved.n));
  saved.loss = detail::run_owned(fn, info_nce_workspace_bytes<T>(saved.n, saved.d, o, m, mode),
                                 stream, [&](workspace ws, double* loss) {
                                   return info_nce_forward_async<T>(
                                       a, b, {saved.row_lse.as<float>(), saved.n, 1},
                                       {saved.col_lse.as<float>(), o.symmetric ? saved.n : 0, 1},
                                       loss, o, ws, stream, m, mode);
                                 });
  detail::check_finite_loss(fn, saved.loss, o.temperature);
  return saved;
}

/// Returns upstream * dL/dtemperature in the three parameterisations, like the CPU backward.
template <class T>
info_nce_parameter_gradients info_nce_backward(device_view<T> a, device_view<T> b,
                                               const info_nce_device_saved& saved,
                                               device_out_view<T> grad_a, device_out_view<T> grad_b,
                                               const info_nce_options& o = {},
                                               double upstream = 1.0,
                                               cudaStream_t stream = nullptr) {
  const char* fn = "cuda::info_nce_backward";
  CONTRASTIVE_CHECK(saved.n == a.rows() && saved.d == a.cols(), fn, ": 'saved' belongs to a ",
                    saved.n, " x ", saved.d, " problem, the inputs are ", a.rows(), " x ",
                    a.cols());
  CONTRASTIVE_CHECK(saved.temperature == o.temperature && saved.symmetric == o.symmetric &&
                        saved.label_smoothing == o.label_smoothing &&
                        saved.reduction == o.reduction,
                    fn, ": 'saved' was computed with other options (temperature ",
                    saved.temperature, ", symmetric ", saved.symmetric, ", label_smoothing ",
                    saved.label_smoothing, ") than these (temperature ", o.temperature,
                    ", symmetric ", o.symmetric, ", label_smoothing ", o.label_smoothing, ")");
  const std::string err = detail::info_nce_backward_problem<T>(
      fn, a, b, saved.row(), saved.col(), grad_a, grad_b, o, upstream, saved.math, saved.mode);
  CONTRASTIVE_CHECK(err.empty(), err);
  const double dtau = detail::run_owned(
      fn, info_nce_workspace_bytes<T>(saved.n, saved.d, o, saved.math, saved.mode), stream,
      [&](workspace ws, double* gt) {
        return info_nce_backward_async<T>(a, b, saved.row(), saved.col(), grad_a, grad_b, o,
                                          upstream, gt, ws, stream, saved.math, saved.mode);
      });
  return temperature_gradient::from_log_scale(-dtau * o.temperature, o.temperature);
}

/// Forward and backward; returns the loss (host). *parameter_grads is written when given.
template <class T>
double info_nce_forward_backward(device_view<T> a, device_view<T> b, device_out_view<T> grad_a,
                                 device_out_view<T> grad_b, const info_nce_options& o = {},
                                 info_nce_parameter_gradients* parameter_grads = nullptr,
                                 math_mode m = math_mode::fp32, cudaStream_t stream = nullptr,
                                 sweep_mode mode = sweep_mode::automatic) {
  const info_nce_device_saved saved = info_nce_forward<T>(a, b, o, m, stream, mode);
  const temperature_gradient tg = info_nce_backward<T>(a, b, saved, grad_a, grad_b, o, 1.0, stream);
  if (parameter_grads != nullptr) *parameter_grads = tg;
  return saved.loss;
}

}  // namespace cuda

namespace detail {
/// The generic contrastive::info_nce_* functions land here for device views.
template <class V>
struct device_backend<info_nce_tag, V> {
  static constexpr bool available = true;
  static cuda::info_nce_device_saved forward(const matrix_view<const V, device_memory>& a,
                                             const matrix_view<const V, device_memory>& b,
                                             const info_nce_options& o) {
    return cuda::info_nce_forward<V>(a, b, o);
  }
  static temperature_gradient backward(const matrix_view<const V, device_memory>& a,
                                       const matrix_view<const V, device_memory>& b,
                                       const cuda::info_nce_device_saved& saved,
                                       const matrix_view<V, device_memory>& ga,
                                       const matrix_view<V, device_memory>& gb,
                                       const info_nce_options& o, double upstream) {
    return cuda::info_nce_backward<V>(a, b, saved, ga, gb, o, upstream);
  }
};
}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_INFO_NCE_CUH
