#ifndef CONTRASTIVE_CUDA_GAMMA_NCE_CUH
#define CONTRASTIVE_CUDA_GAMMA_NCE_CUH

// The gamma-auxiliary loss (losses/gamma_nce.hpp) on the GPU (nvcc only; never in the umbrella),
// on the blocked sweep of cuda/detail/block_sweep.cuh.
//
// STATUS: compiled for sm_80 / sm_90, NOT YET RUN ON A GPU. What CI checks without one: the
// sweep's part through the host emulator (core/block_sweep_emulator.hpp, emulate_gamma_nce_*,
// against the CPU loss in double), and the per-anchor step, which is the CPU's own host-device
// code (losses/gamma_nce_options.hpp: gamma_anchor_zeta, gamma_anchor_draw, gamma_anchor).
// tests/cuda/test_gamma_nce.cpp compares the GPU with the CPU where a GPU exists.
//
// One step, as on the CPU (docs/gamma_nce.md):
//   forward   the sweep's row (and, symmetric, column) statistics over N_i; s_ii = <a_i, b_i>/tau
//             (one warp per row); per anchor and direction the CPU's step: log Zhat_i, zeta_i
//             from the device state (or exact / same batch), g_i from the same Philox stream
//             (so CPU and GPU draw the same g_i for the same seed, step and id), r_i; the three
//             reported values in one fixed-order reduction; then the state's EMA, written only
//             when the surrogate loss is finite (a kernel reads it on the device: nothing is
//             copied back), so a non-finite step leaves the state as it was;
//   backward  the sweep with per-anchor coefficients row_w_i = c w up r_i (no positive
//             targets; G's 2^k scale found on the device from the r_i), the -s_ii terms added
//             to the fp32 accumulators at their stores, and the temperature gradient from the
//             sweep's moment and sum_i s_ii.
//
// The state lives on the device (device_normalizer_state: the host layout, zeta and visited per
// [direction * samples + id]); it is copied from and to a host normalizer_state, so its files are
// the CPU's (a file written by either loads in the other).
//
// Inputs: float (fp32 or tf32), __half or __nv_bfloat16, row-major, rows 16-byte aligned with D a
// multiple of 16 bytes (cuBLASLt; there is no fused-kernel fallback for this loss): otherwise
// cudaErrorNotSupported (the throwing wrappers say so). The `_async` functions trust their ids
// (distinct, in range); an id outside the state is neither read nor written. The throwing
// wrappers check everything the CPU checks, with the CPU's messages, on host copies of the O(N)
// ids and exact rates, and scan the inputs on the device (cuda/detail/checks.cuh).

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

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
#include "contrastive/cuda/info_nce.cuh"
#include "contrastive/cuda/detail/launch.cuh"
#include "contrastive/losses/gamma_nce_options.hpp"
#include "contrastive/state/normalizer_state.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {

/// What the kernels see of a device state.
struct device_state_view {
  double* zeta = nullptr;           // [direction * samples + id]
  std::uint8_t* visited = nullptr;  // the same layout
  std::int64_t samples = 0;
  int directions = 0;
};

/// The normalizer_state on the device, in the host layout. Copied from and to a host state;
/// save and load go through the host state's file format.
class device_normalizer_state {
 public:
  device_normalizer_state() = default;
  /// `samples` ids, 1 or 2 directions, all unvisited (the host constructor's checks).
  device_normalizer_state(std::int64_t samples, int directions) {
    upload(normalizer_state(samples, directions));
  }
  explicit device_normalizer_state(const normalizer_state& host) { upload(host); }

  std::int64_t samples() const noexcept { return samples_; }
  int directions() const noexcept { return directions_; }
  device_state_view view() const noexcept {
    return {zeta_.as<double>(), visited_.as<std::uint8_t>(), samples_, directions_};
  }

  /// Takes the host state's sizes and values (synchronous).
  void upload(const normalizer_state& host) {
    using access = contrastive::detail::normalizer_state_access;
    const std::vector<double>& z = access::zetas(host);
    const std::vector<std::uint8_t>& v = access::flags(host);
    device_buffer zb(z.size() * sizeof(double)), vb(v.size());
    if (!z.empty()) {
      throw_on_error(cudaMemcpy(zb.data(), z.data(), zb.bytes(), cudaMemcpyHostToDevice),
                     "device_normalizer_state::upload");
      throw_on_error(cudaMemcpy(vb.data(), v.data(), vb.bytes(), cudaMemcpyHostToDevice),
                     "device_normalizer_state::upload");
    }
    zeta_ = std::move(zb);
    visited_ = std::move(vb);
    samples_ = host.samples();
    directions_ = host.directions();
  }
  /// A host copy (synchronous; waits for the device's pending work on the default stream).
  normalizer_state download() const {
    using access = contrastive::detail::normalizer_state_access;
    normalizer_state host(samples_, directions_);
    std::vector<double>& z = access::zetas(host);
    std::vector<std::uint8_t>& v = access::flags(host);
    if (!z.empty()) {
      throw_on_error(cudaMemcpy(z.data(), zeta_.data(), zeta_.bytes(), cudaMemcpyDeviceToHost),
                     "device_normalizer_state::download");
      throw_on_error(cudaMemcpy(v.data(), visited_.data(), v.size(), cudaMemcpyDeviceToHost),
                     "device_normalizer_state::download");
    }
    return host;
  }
  /// The host state's atomic save, of a host copy.
  void save(const std::string& path) const { download().save(path); }
  /// The host state's checked load (same sizes), then an upload; unchanged when it throws.
  void load(const std::string& path) {
    normalizer_state host(samples_, directions_);
    host.load(path);
    upload(host);
  }

 private:
  device_buffer zeta_, visited_;
  std::int64_t samples_ = 0;
  int directions_ = 1;
};

/// Where a forward writes: the saved log-normalisers (n floats each; col_lse when symmetric),
/// the weights r_i (n doubles each) and three doubles: the surrogate loss, the batch InfoNCE
/// (monitoring) and the rate loss, as on the CPU.
struct gamma_nce_device_outputs {
  float* row_lse = nullptr;
  float* col_lse = nullptr;
  double* r_row = nullptr;
  double* r_col = nullptr;
  double* values = nullptr;
};

/// What a backward reads of its forward.
struct gamma_nce_device_weights {
  const float* row_lse = nullptr;
  const float* col_lse = nullptr;
  const double* r_row = nullptr;
  const double* r_col = nullptr;
};

namespace detail {

using contrastive::detail::gamma_nce_block_problem;

/// s[i] = scale <a_i, b_i>, one warp per row, in double (a fixed shuffle tree).
template <class T>
__global__ void gamma_diagonal_kernel(rows2<const T> a, rows2<const T> b, index_t n, index_t d,
                                      double scale, double* s) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  for (index_t i = grid_warp(); i < n; i += grid_warps()) {  // uniform per warp
    const T* x = a.row(i);
    const T* y = b.row(i);
    double acc = 0;
    for (index_t k = lane; k < d; k += 32)
      acc += static_cast<double>(to_float(x[k])) * static_cast<double>(to_float(y[k]));
    for (int o = 16; o > 0; o /= 2) acc += __shfl_down_sync(0xffffffffu, acc, o);
    if (lane == 0) s[i] = scale * acc;
  }
}

/// The scalars of one forward's step.
struct gamma_step_params {
  gamma_rate_source source = gamma_rate_source::same_batch;
  gamma_update_order order = gamma_update_order::update_then_sample;
  double alpha = 1, beta = 0.9, log_count = 0;
  std::uint64_t seed = 0;
  std::uint32_t step = 0;
  bool positive_in_normaliser = false;
};

/// One direction's step, a thread per anchor: the CPU's gamma_nce_direction_step on the sweep's
/// statistics. Writes lse_out, r, log_zhat and the three unweighted terms (terms[0..2][i]).
template <int = 0>
__global__ void gamma_step_kernel(const partial_t* stats, const double* s_diag,
                                  const std::int64_t* ids, index_t n, int dir, device_state_view st,
                                  const double* exact, gamma_step_params p, float* lse_out,
                                  double* r, double* log_zhat, double* terms) {
  namespace cd = contrastive::detail;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const std::int64_t id = ids[i];
    const double lse = static_cast<double>(stats[i].lse());
    const double lz = lse - p.log_count;
    double old = 0;
    bool seen = false;
    if (p.source == gamma_rate_source::state && id >= 0 && id < st.samples) {
      const std::int64_t k = static_cast<std::int64_t>(dir) * st.samples + id;
      old = st.zeta[k];
      seen = st.visited[k] != 0;
    }
    const double zeta = cd::gamma_anchor_zeta(p.source, p.order, p.beta, lz, old, seen,
                                              exact != nullptr ? exact[i] : 0.0);
    const double g = cd::gamma_anchor_draw(p.alpha, p.seed, id, p.step, dir);
    const cd::gamma_anchor_values v =
        cd::gamma_anchor(g, lse, lz, zeta, s_diag[i], p.positive_in_normaliser);
    lse_out[i] = static_cast<float>(lse);
    r[i] = v.r;
    log_zhat[i] = lz;
    terms[i] = v.loss;
    terms[n + i] = v.info_nce;
    terms[2 * n + i] = v.rate;
  }
}

/// values[t] = weight * sum over directions and anchors of terms[dir][t][i], one CTA, fixed
/// order (t: surrogate, batch InfoNCE, rate).
template <int = 0>
__global__ void gamma_values_kernel(const double* terms, index_t n, int dirs, double weight,
                                    double* values) {
  __shared__ double red[kBlockThreads];
  for (int t = 0; t < 3; ++t) {
    double v = 0;
    for (int dir = 0; dir < dirs; ++dir)
      for (index_t i = threadIdx.x; i < n; i += kBlockThreads) v += terms[(3 * dir + t) * n + i];
    v = block_sum(v, red);
    if (threadIdx.x == 0) values[t] = weight * v;
  }
}

/// The state's EMA for one direction's anchors, only when the surrogate loss (values[0]) is
/// finite; ids outside the state are skipped (the throwing wrappers reject them first).
template <int = 0>
__global__ void gamma_commit_kernel(const std::int64_t* ids, index_t n, int dir,
                                    const double* log_zhat, double beta, const double* values,
                                    device_state_view st) {
  const double loss = values[0];
  if (!(loss - loss == 0.0)) return;  // NaN or +-inf
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const std::int64_t id = ids[i];
    if (id < 0 || id >= st.samples) continue;
    const std::int64_t k = static_cast<std::int64_t>(dir) * st.samples + id;
    st.zeta[k] = contrastive::detail::log_ema(st.zeta[k], st.visited[k] != 0, log_zhat[i], beta);
    st.visited[k] = 1;
  }
}

/// The backward's coefficients of one direction: w_i = cw r_i, lse_i.
template <int = 0>
__global__ void gamma_coefficients_kernel(const double* r, const float* lse_in, index_t n,
                                          double cw, stat_t* w, stat_t* lse) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    w[i] = static_cast<stat_t>(cw * r[i]);
    lse[i] = lse_in[i];
  }
}

/// upstream dL/dtau = -scale (moment - diag_weight sum_i s_ii), one CTA, fixed order.
template <int = 0>
__global__ void gamma_temperature_kernel(const double* moment, const double* s_diag, index_t n,
                                         double diag_weight, double scale, double* out) {
  __shared__ double red[kBlockThreads];
  double v = 0;
  for (index_t i = threadIdx.x; i < n; i += kBlockThreads) v += s_diag[i];
  v = block_sum(v, red);
  if (threadIdx.x == 0) *out = -scale * (*moment - diag_weight * v);
}

/// The loss's own O(N) scratch after the plan's: s_ii, the terms of both directions (3 per
/// anchor each) and log Zhat of both directions.
inline std::size_t gamma_extra_bytes(index_t n) {
  return contrastive::detail::block_ws_round(sizeof(double) * static_cast<std::size_t>(9 * n));
}

template <class T>
block_plan gamma_block_plan(index_t n, index_t d, const gamma_nce_options& o) {
  return contrastive::detail::make_block_plan(gamma_nce_block_problem(n, d, o), block_sizes<T>());
}

inline double* gamma_extra(const block_plan& p, workspace ws) {
  return reinterpret_cast<double*>(block_base(ws) +
                                   (p.bytes - contrastive::detail::block_ws_align));
}

/// The async functions' argument problems (empty when fine): shapes and options as the CPU
/// checks them, then what the GPU requires (element type, layout, cuBLASLt alignment).
template <class T>
std::string gamma_nce_problem(const char* fn, const device_view<T>& a, const device_view<T>& b,
                              const gamma_nce_options& o, math_mode m) {
  try {
    contrastive::detail::gamma_nce_check_shapes(fn, a, b, o);
  } catch (const invalid_argument& e) {
    return e.what();
  }
  std::string err = device_pair_problem<T>(fn, a, b, m, false, sweep_mode::blocked);
  if (err.empty() && !(lt_rows_ok<T>(a.data(), a.row_stride(), a.rows(), a.cols()) &&
                       lt_rows_ok<T>(b.data(), b.row_stride(), b.rows(), b.cols())))
    err = std::string(fn) +
          ": the GPU gamma loss runs on the blocked sweep, which needs rows 16-byte aligned and "
          "D and the row strides multiples of 16 bytes";
  return err;
}

template <class T, bool Tf32>
cudaError_t gamma_forward_run(const device_view<T>& a, const device_view<T>& b,
                              const std::int64_t* ids, device_state_view st,
                              const gamma_nce_device_outputs& out, const gamma_nce_options& o,
                              workspace ws, cudaStream_t s) {
  const index_t n = a.rows(), d = a.cols();
  const block_plan p = gamma_block_plan<T>(n, d, o);
  block_inputs<T> in;
  in.x = rows_of(a);
  in.y = rows_of(b);
  cudaError_t e = block_statistics_run<T, Tf32>(p, in, block_device_args(p.problem, in), ws, s);
  if (e != cudaSuccess) return e;
  double* extra = gamma_extra(p, ws);
  double *s_diag = extra, *terms = extra + n, *log_zhat = extra + 7 * n;
  gamma_diagonal_kernel<T>
      <<<block_grid(32 * n), kBlockThreads, 0, s>>>(in.x, in.y, n, d, 1.0 / o.temperature, s_diag);
  gamma_step_params sp;
  sp.source = o.rate_source;
  sp.order = o.order;
  sp.alpha = o.alpha;
  sp.beta = o.beta;
  sp.log_count = std::log(static_cast<double>(o.positive_in_normaliser ? n : n - 1));
  sp.seed = o.seed;
  sp.step = o.step;
  sp.positive_in_normaliser = o.positive_in_normaliser;
  const bool exact = o.rate_source == gamma_rate_source::exact;
  gamma_step_kernel<><<<block_grid(n), kBlockThreads, 0, s>>>(
      block_row_stats(p, ws), s_diag, ids, n, 0, st,
      exact ? o.exact_log_normalizer_a.data : nullptr, sp, out.row_lse, out.r_row, log_zhat, terms);
  if (o.symmetric)
    gamma_step_kernel<><<<block_grid(n), kBlockThreads, 0, s>>>(
        block_col_stats(p, ws), s_diag, ids, n, 1, st,
        exact ? o.exact_log_normalizer_b.data : nullptr, sp, out.col_lse, out.r_col, log_zhat + n,
        terms + 3 * n);
  gamma_values_kernel<><<<1, kBlockThreads, 0, s>>>(
      terms, n, o.symmetric ? 2 : 1, contrastive::detail::gamma_block_weight(p.problem, 1.0),
      out.values);
  if (o.rate_source == gamma_rate_source::state)
    for (int dir = 0; dir < (o.symmetric ? 2 : 1); ++dir)
      gamma_commit_kernel<><<<block_grid(n), kBlockThreads, 0, s>>>(ids, n, dir, log_zhat + dir * n,
                                                                    o.beta, out.values, st);
  return cudaGetLastError();
}

template <class T, bool Tf32>
cudaError_t gamma_backward_run(const device_view<T>& a, const device_view<T>& b,
                               const gamma_nce_device_weights& w, const device_out_view<T>& ga,
                               const device_out_view<T>& gb, const gamma_nce_options& o,
                               double upstream, double* grad_temperature, workspace ws,
                               cudaStream_t s) {
  const index_t n = a.rows(), d = a.cols();
  const block_plan p = gamma_block_plan<T>(n, d, o);
  block_inputs<T> in;
  in.x = rows_of(a);
  in.y = rows_of(b);
  auto* coef = reinterpret_cast<stat_t*>(block_base(ws) + p.b_coef.offset);
  stat_t *rw = coef, *rl = coef + n, *cw = coef + 3 * n, *cl = cw + n;
  const double weight = contrastive::detail::gamma_block_weight(p.problem, upstream);
  gamma_coefficients_kernel<>
      <<<block_grid(n), kBlockThreads, 0, s>>>(w.r_row, w.row_lse, n, weight, rw, rl);
  pairwise_epilogue_args<stat_t> ep = block_device_args(p.problem, in);
  ep.row_w = rw;
  ep.row_lse = rl;
  if (o.symmetric) {
    gamma_coefficients_kernel<>
        <<<block_grid(n), kBlockThreads, 0, s>>>(w.r_col, w.col_lse, n, weight, cw, cl);
    ep.col_w = cw;
    ep.col_lse = cl;
  }
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  // The -s_ii terms: G_ii -= c w up per direction, added at the stores.
  const double dirs = o.symmetric ? 2.0 : 1.0;
  const double diagonal = -(1.0 / o.temperature) * weight * dirs;
  block_row_terms terms;
  terms.diagonal = static_cast<float>(diagonal);
  e = block_gradient_run<T, Tf32>(p, in, ep, rows_of(ga), rows_of(gb), o.accumulate, terms, ws, s);
  if (e != cudaSuccess || grad_temperature == nullptr) return e;
  double* s_diag = gamma_extra(p, ws);
  gamma_diagonal_kernel<T>
      <<<block_grid(32 * n), kBlockThreads, 0, s>>>(in.x, in.y, n, d, 1.0 / o.temperature, s_diag);
  gamma_temperature_kernel<><<<1, kBlockThreads, 0, s>>>(
      block_moment(p, ws), s_diag, n, weight * dirs, 1.0 / o.temperature, grad_temperature);
  return cudaGetLastError();
}

}  // namespace detail

/// Device workspace bytes of the forward and backward (one buffer serves both): the blocked
/// sweep's plan (at most about 0.25 GiB at N = 32768, D = 512) and 72 bytes per row.
template <class T>
std::size_t gamma_nce_workspace_bytes(index_t n, index_t d, const gamma_nce_options& o = {}) {
  return detail::gamma_block_plan<T>(n, d, o).bytes + detail::gamma_extra_bytes(n);
}

/// Forward: the statistics, the step, the outputs and (rate_source::state) the state's update,
/// skipped when the surrogate loss is not finite. `ids` and `state` are device memory; so are
/// options.exact_log_normalizer_a / _b with rate_source::exact. Never throws.
template <class T>
cudaError_t gamma_nce_forward_async(device_view<T> a, device_view<T> b,
                                    vector_view<const std::int64_t, device_memory> ids,
                                    device_state_view state, gamma_nce_device_outputs out,
                                    const gamma_nce_options& o, workspace ws, cudaStream_t stream,
                                    math_mode m = math_mode::fp32) noexcept {
  try {
    const index_t n = a.rows();
    if (!detail::gamma_nce_problem<T>("cuda::gamma_nce_forward_async", a, b, o, m).empty() ||
        ids.size != n || ids.stride != 1 || (n > 0 && ids.data == nullptr) ||
        out.row_lse == nullptr || out.r_row == nullptr || out.values == nullptr ||
        (o.symmetric && (out.col_lse == nullptr || out.r_col == nullptr)) ||
        (o.rate_source == gamma_rate_source::state &&
         (state.zeta == nullptr || state.directions < (o.symmetric ? 2 : 1))) ||
        ws.data == nullptr || ws.bytes < cuda::gamma_nce_workspace_bytes<T>(n, a.cols(), o))
      return cudaErrorInvalidValue;
    if constexpr (std::is_same<T, float>::value) {
      if (m == math_mode::tf32)
        return detail::gamma_forward_run<T, true>(a, b, ids.data, state, out, o, ws, stream);
    }
    return detail::gamma_forward_run<T, false>(a, b, ids.data, state, out, o, ws, stream);
  } catch (...) {  // std::string allocation in the checks
    return cudaErrorMemoryAllocation;
  }
}

/// Backward: writes (or with o.accumulate adds) upstream * dL/da and dL/db of the surrogate with
/// the forward's r_i held fixed; when grad_temperature (device) is given, upstream *
/// dL/dtemperature there. Never throws.
template <class T>
cudaError_t gamma_nce_backward_async(device_view<T> a, device_view<T> b, gamma_nce_device_weights w,
                                     device_out_view<T> grad_a, device_out_view<T> grad_b,
                                     const gamma_nce_options& o, double upstream,
                                     double* grad_temperature, workspace ws, cudaStream_t stream,
                                     math_mode m = math_mode::fp32) noexcept {
  try {
    const char* fn = "cuda::gamma_nce_backward_async";
    if (!detail::gamma_nce_problem<T>(fn, a, b, o, m).empty() ||
        !detail::gradients_problem<T>(fn, a, b, grad_a, grad_b, upstream).empty() ||
        w.row_lse == nullptr || w.r_row == nullptr ||
        (o.symmetric && (w.col_lse == nullptr || w.r_col == nullptr)) || ws.data == nullptr ||
        ws.bytes < cuda::gamma_nce_workspace_bytes<T>(a.rows(), a.cols(), o))
      return cudaErrorInvalidValue;
    if constexpr (std::is_same<T, float>::value) {
      if (m == math_mode::tf32)
        return detail::gamma_backward_run<T, true>(a, b, w, grad_a, grad_b, o, upstream,
                                                   grad_temperature, ws, stream);
    }
    return detail::gamma_backward_run<T, false>(a, b, w, grad_a, grad_b, o, upstream,
                                                grad_temperature, ws, stream);
  } catch (...) {
    return cudaErrorMemoryAllocation;
  }
}

/// What the throwing forward keeps on the device for the backward (O(N)), and its values.
struct gamma_nce_device_saved {
  double loss = 0;      // the surrogate, as the CPU's saved.loss
  double info_nce = 0;  // the plain batch InfoNCE / CLIP value (monitoring)
  double rate_loss = 0;
  device_buffer row_lse, col_lse;  // n floats each (col only when symmetric)
  device_buffer r_row, r_col;      // n doubles each
  index_t n = 0, d = 0;
  double temperature = 0;
  bool symmetric = true;
  bool positive_in_normaliser = false;
  loss_reduction reduction = loss_reduction::mean;
  math_mode math = math_mode::fp32;

  gamma_nce_device_weights weights() const noexcept {
    return {row_lse.as<const float>(), symmetric ? col_lse.as<const float>() : nullptr,
            r_row.as<const double>(), symmetric ? r_col.as<const double>() : nullptr};
  }
};

namespace detail {

template <class T>
std::vector<T> to_host(const T* device, index_t n, const char* fn) {
  std::vector<T> h(static_cast<std::size_t>(n > 0 ? n : 0));
  if (n > 0 && device != nullptr)
    throw_on_error(cudaMemcpy(h.data(), device, sizeof(T) * h.size(), cudaMemcpyDeviceToHost), fn);
  return h;
}

/// The throwing forward, with or without a state: the CPU's checks on host copies of the O(N)
/// ids and exact rates (the same messages), the device scan of the inputs, the GPU's own
/// requirements, then the async call; a non-finite loss throws (the state is then unchanged).
template <class T>
gamma_nce_device_saved gamma_forward_checked(const char* fn, device_view<T> a, device_view<T> b,
                                             vector_view<const std::int64_t, device_memory> ids,
                                             device_normalizer_state* state,
                                             const gamma_nce_options& o, math_mode m,
                                             cudaStream_t stream) {
  namespace cd = contrastive::detail;
  cd::gamma_nce_check_shapes(fn, a, b, o);
  if (o.scan_inputs) {
    check_finite_device(fn, "a", a, stream);
    check_finite_device(fn, "b", b, stream);
  }
  const index_t n = a.rows();
  CONTRASTIVE_CHECK(ids.size == n, fn, ": 'ids' has ", ids.size, " sample ids, expected ", n,
                    " (one per row)");
  CONTRASTIVE_CHECK(ids.stride == 1, fn, ": 'ids' must be contiguous (stride 1), got stride ",
                    ids.stride);
  const std::vector<std::int64_t> host_ids = to_host(ids.data, n, fn);
  const bool exact = o.rate_source == gamma_rate_source::exact;
  const std::vector<double> ea =
      exact ? to_host(o.exact_log_normalizer_a.data, o.exact_log_normalizer_a.size, fn)
            : std::vector<double>();
  const std::vector<double> eb = exact && o.symmetric ? to_host(o.exact_log_normalizer_b.data,
                                                                o.exact_log_normalizer_b.size, fn)
                                                      : std::vector<double>();
  auto span = [](const std::vector<double>& v, const vector_view<const double>& dev) {
    return dev.empty() ? vector_view<const double>()
                       : vector_view<const double>(v.data(), dev.size, dev.stride);
  };
  cd::gamma_state_shape shape;
  if (state != nullptr) shape = {true, state->samples(), state->directions()};
  cd::gamma_nce_check_ids_and_rates(
      fn, vector_view<const std::int64_t>(ids.data != nullptr ? host_ids.data() : nullptr, n), n,
      shape, o, span(ea, o.exact_log_normalizer_a), span(eb, o.exact_log_normalizer_b));
  std::vector<std::int64_t> sorted(host_ids.size());
  normalizer_state::check_distinct(fn, vector_view<const std::int64_t>(host_ids.data(), n),
                                   sorted.data());
  const std::string err = gamma_nce_problem<T>(fn, a, b, o, m);
  CONTRASTIVE_CHECK(err.empty(), err);

  gamma_nce_device_saved saved;
  saved.n = n;
  saved.d = a.cols();
  saved.temperature = o.temperature;
  saved.symmetric = o.symmetric;
  saved.positive_in_normaliser = o.positive_in_normaliser;
  saved.reduction = o.reduction;
  saved.math = m;
  const auto un = static_cast<std::size_t>(n);
  saved.row_lse = device_buffer(sizeof(float) * un);
  saved.r_row = device_buffer(sizeof(double) * un);
  if (o.symmetric) {
    saved.col_lse = device_buffer(sizeof(float) * un);
    saved.r_col = device_buffer(sizeof(double) * un);
  }
  device_buffer ws(cuda::gamma_nce_workspace_bytes<T>(n, a.cols(), o));
  device_buffer values(3 * sizeof(double));
  gamma_nce_device_outputs out;
  out.row_lse = saved.row_lse.as<float>();
  out.col_lse = saved.col_lse.as<float>();
  out.r_row = saved.r_row.as<double>();
  out.r_col = saved.r_col.as<double>();
  out.values = values.as<double>();
  throw_on_error(
      gamma_nce_forward_async<T>(a, b, ids, state != nullptr ? state->view() : device_state_view{},
                                 out, o, workspace{ws.data(), ws.bytes()}, stream, m),
      fn);
  double host[3] = {0, 0, 0};
  throw_on_error(cudaMemcpyAsync(host, values.data(), sizeof(host), cudaMemcpyDeviceToHost, stream),
                 fn);
  throw_on_error(cudaStreamSynchronize(stream), fn);
  saved.loss = host[0];
  saved.info_nce = host[1];
  saved.rate_loss = host[2];
  CONTRASTIVE_CHECK(std::isfinite(saved.loss), fn, ": the loss is not finite (", saved.loss,
                    ") at temperature ", o.temperature,
                    "; the logits overflow or a weight r_i = (g_i/alpha) Zhat_i/Zbar_i does (check "
                    "the rates; sample_then_update does not bound r_i)");
  return saved;
}

}  // namespace detail

/// Forward with the device state (rate_source::state, which it updates); ids in device memory.
template <class T>
gamma_nce_device_saved gamma_nce_forward(device_view<T> a, device_view<T> b,
                                         vector_view<const std::int64_t, device_memory> ids,
                                         device_normalizer_state& state,
                                         const gamma_nce_options& o = {},
                                         math_mode m = math_mode::fp32,
                                         cudaStream_t stream = nullptr) {
  return detail::gamma_forward_checked<T>("cuda::gamma_nce_forward", a, b, ids, &state, o, m,
                                          stream);
}

/// Forward without a state: rate_source same_batch or exact (exact rates in device memory).
template <class T>
gamma_nce_device_saved gamma_nce_forward(device_view<T> a, device_view<T> b,
                                         vector_view<const std::int64_t, device_memory> ids,
                                         const gamma_nce_options& o, math_mode m = math_mode::fp32,
                                         cudaStream_t stream = nullptr) {
  return detail::gamma_forward_checked<T>("cuda::gamma_nce_forward", a, b, ids, nullptr, o, m,
                                          stream);
}

/// Backward of a device forward; returns upstream * dL/dtemperature in three parameterisations.
template <class T>
gamma_nce_parameter_gradients gamma_nce_backward(
    device_view<T> a, device_view<T> b, const gamma_nce_device_saved& saved,
    device_out_view<T> grad_a, device_out_view<T> grad_b, const gamma_nce_options& o = {},
    double upstream = 1.0, cudaStream_t stream = nullptr) {
  const char* fn = "cuda::gamma_nce_backward";
  contrastive::detail::gamma_nce_check_shapes(fn, a, b, o);
  contrastive::detail::gamma_nce_check_saved(fn, saved, a.rows(), a.cols(), o);
  std::string err = detail::gradients_problem<T>(fn, a, b, grad_a, grad_b, upstream);
  if (err.empty()) err = detail::gamma_nce_problem<T>(fn, a, b, o, saved.math);
  CONTRASTIVE_CHECK(err.empty(), err);
  const double dtau = detail::run_owned(fn, cuda::gamma_nce_workspace_bytes<T>(saved.n, saved.d, o),
                                        stream, [&](workspace ws, double* gt) {
                                          return gamma_nce_backward_async<T>(
                                              a, b, saved.weights(), grad_a, grad_b, o, upstream,
                                              gt, ws, stream, saved.math);
                                        });
  return temperature_gradient::from_log_scale(-dtau * o.temperature, o.temperature);
}

/// Forward and backward with the device state; returns the surrogate loss.
template <class T>
double gamma_nce_forward_backward(device_view<T> a, device_view<T> b,
                                  vector_view<const std::int64_t, device_memory> ids,
                                  device_normalizer_state& state, device_out_view<T> grad_a,
                                  device_out_view<T> grad_b, const gamma_nce_options& o = {},
                                  gamma_nce_parameter_gradients* parameter_grads = nullptr,
                                  math_mode m = math_mode::fp32, cudaStream_t stream = nullptr) {
  // As on the CPU: the backward's arguments first, so that a throwing call leaves the state.
  contrastive::detail::check_pair_gradients("cuda::gamma_nce_backward", a, b, grad_a, grad_b, 1.0);
  const gamma_nce_device_saved saved = gamma_nce_forward<T>(a, b, ids, state, o, m, stream);
  const temperature_gradient tg =
      gamma_nce_backward<T>(a, b, saved, grad_a, grad_b, o, 1.0, stream);
  if (parameter_grads != nullptr) *parameter_grads = tg;
  return saved.loss;
}

}  // namespace cuda

namespace detail {
/// The generic contrastive::gamma_nce_* functions land here for device views.
template <class V>
struct device_backend<gamma_nce_tag, V> {
  static constexpr bool available = true;
  static cuda::gamma_nce_device_saved forward(const matrix_view<const V, device_memory>& a,
                                              const matrix_view<const V, device_memory>& b,
                                              vector_view<const std::int64_t> ids,
                                              cuda::device_normalizer_state* state,
                                              const gamma_nce_options& o) {
    const vector_view<const std::int64_t, device_memory> d(ids.data, ids.size, ids.stride);
    return state != nullptr ? cuda::gamma_nce_forward<V>(a, b, d, *state, o)
                            : cuda::gamma_nce_forward<V>(a, b, d, o);
  }
  static temperature_gradient backward(const matrix_view<const V, device_memory>& a,
                                       const matrix_view<const V, device_memory>& b,
                                       const cuda::gamma_nce_device_saved& saved,
                                       const matrix_view<V, device_memory>& ga,
                                       const matrix_view<V, device_memory>& gb,
                                       const gamma_nce_options& o, double upstream) {
    return cuda::gamma_nce_backward<V>(a, b, saved, ga, gb, o, upstream);
  }
  static double forward_backward(const matrix_view<const V, device_memory>& a,
                                 const matrix_view<const V, device_memory>& b,
                                 vector_view<const std::int64_t> ids,
                                 cuda::device_normalizer_state& state,
                                 const matrix_view<V, device_memory>& ga,
                                 const matrix_view<V, device_memory>& gb,
                                 const gamma_nce_options& o, temperature_gradient* pg) {
    const vector_view<const std::int64_t, device_memory> d(ids.data, ids.size, ids.stride);
    return cuda::gamma_nce_forward_backward<V>(a, b, d, state, ga, gb, o, pg);
  }
};
}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_GAMMA_NCE_CUH
