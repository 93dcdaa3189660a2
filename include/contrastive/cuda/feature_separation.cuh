#ifndef CONTRASTIVE_CUDA_FEATURE_SEPARATION_CUH
#define CONTRASTIVE_CUDA_FEATURE_SEPARATION_CUH

// Deep feature separation (losses/feature_separation.hpp) on the GPU (nvcc only; never in the
// umbrella): L_Sep = w_o L_Ortho + w_c L^i_Con + w_u L^i_Uni.
//
// STATUS: compiled for sm_80 / sm_90, NOT YET RUN ON A GPU. What CI checks without one: the
// uniformity term's sweep through the host emulator (core/block_sweep_emulator.hpp,
// emulate_uniformity_*, against the CPU term in double). tests/cuda/test_feature_separation.cpp
// compares the GPU with the CPU where a GPU exists.
//
//  - Uniformity, per modality, on the blocked sweep (cuda/detail/block_sweep.cuh) in self mode:
//    s_jk = 2t <x_j, x_k> - t |x_j|^2 - t |x_k|^2 = -t |x_j - x_k|^2, the last two terms being
//    per-row and per-column logit offsets; the diagonal masked for wang_isola. The forward
//    merges the rows' statistics into the modality's log-sum (one CTA, fixed order); the
//    backward runs the sweep with P_jk = exp(s_jk - log S) and adds the offsets' part
//    -4 t up x_j sum_k P_jk as per-row terms at the stores.
//  - Orthogonality: the row dot products <v_j, vi_j>, <u_j, ui_j> (a warp per row, in double),
//    the loss in one fixed-order reduction, the gradients elementwise.
//  - In-modal contrastive: the GPU InfoNCE (cuda/info_nce.cuh), one direction, twice.
//
// Inputs: float (fp32 or tf32), __half or __nv_bfloat16, row-major; the uniformity term needs
// cuBLASLt's alignment (rows 16-byte aligned, D a multiple of 16 bytes), else
// cudaErrorNotSupported. The throwing wrappers check the CPU's conditions with the CPU's messages
// (shapes and options first, then a device scan: every value finite, no row of zero norm).

#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "contrastive/core/block_sweep.hpp"
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
#include "contrastive/losses/feature_separation_options.hpp"
#include "contrastive/losses/info_nce_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace cuda {

/// Where the uniformity forward writes: each modality's per-anchor log-sums (n floats each; the
/// backward reads them), the two log-sums and the loss (device doubles).
struct feature_uniformity_device_outputs {
  float* row_lse_a = nullptr;
  float* row_lse_b = nullptr;
  double* log_sums = nullptr;  // 2: a_ind's, b_ind's
  double* loss = nullptr;
};

/// What the uniformity backward reads of its forward.
struct feature_uniformity_device_weights {
  const float* row_lse_a = nullptr;
  const float* row_lse_b = nullptr;
  const double* log_sums = nullptr;
};

namespace detail {

/// off[j] = -t |x_j|^2, a warp per row, in double.
template <class T>
__global__ void uniformity_offsets_kernel(rows2<const T> x, index_t n, index_t d, double t,
                                          float* off) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  for (index_t i = grid_warp(); i < n; i += grid_warps()) {  // uniform per warp
    const T* r = x.row(i);
    double acc = 0;
    for (index_t k = lane; k < d; k += 32) {
      const double v = static_cast<double>(to_float(r[k]));
      acc += v * v;
    }
    for (int o = 16; o > 0; o /= 2) acc += __shfl_down_sync(0xffffffffu, acc, o);
    if (lane == 0) off[i] = static_cast<float>(-t * acc);
  }
}

/// The modality's log-sum from its rows' statistics (one CTA: each thread folds a strided set
/// of rows in order, then a fixed tree), and each row's log-sum into row_lse.
template <int = 0>
__global__ void uniformity_log_sum_kernel(const partial_t* stats, index_t n, float* row_lse,
                                          double* log_sum) {
  __shared__ double mx[kBlockThreads], sm[kBlockThreads];
  pairwise_partial<double> p;
  for (index_t i = threadIdx.x; i < n; i += kBlockThreads) {
    pairwise_partial<double> s;
    s.max = static_cast<double>(stats[i].max);
    s.sum = static_cast<double>(stats[i].sum);
    p.merge(s);
    row_lse[i] = stats[i].lse();
  }
  mx[threadIdx.x] = p.max;
  sm[threadIdx.x] = p.sum;
  __syncthreads();
  for (int h = kBlockThreads / 2; h > 0; h /= 2) {
    if (static_cast<int>(threadIdx.x) < h) {
      pairwise_partial<double> x, y;
      x.max = mx[threadIdx.x];
      x.sum = sm[threadIdx.x];
      y.max = mx[threadIdx.x + h];
      y.sum = sm[threadIdx.x + h];
      x.merge(y);
      mx[threadIdx.x] = x.max;
      sm[threadIdx.x] = x.sum;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    pairwise_partial<double> t;
    t.max = mx[0];
    t.sum = sm[0];
    *log_sum = t.lse();
  }
}

template <int = 0>
__global__ void uniformity_loss_kernel(const double* log_sums, index_t n, uniformity_form f,
                                       double* loss) {
  *loss = contrastive::detail::uniformity_loss(f, n, log_sums[0], log_sums[1]);
}

/// The backward's coefficients of modality m: w = upstream, lse = log S (the form's
/// normaliser), and the offsets' row terms c_j = -4 t up exp(row_lse_j - log S).
template <int = 0>
__global__ void uniformity_coefficients_kernel(const double* log_sums, int m, uniformity_form f,
                                               const float* row_lse, index_t n, double t,
                                               double upstream, stat_t* w, stat_t* lse,
                                               float* terms) {
  double nv = 0, nu = 0;
  contrastive::detail::uniformity_normalizers(f, log_sums[0], log_sums[1], &nv, &nu);
  const double norm = m == 0 ? nv : nu;
  for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<index_t>(gridDim.x) * blockDim.x) {
    w[j] = static_cast<stat_t>(upstream);
    lse[j] = static_cast<stat_t>(norm);
    terms[j] = static_cast<float>(-4 * t * upstream * ::exp(row_lse[j] - norm));
  }
}

template <class T>
block_plan uniformity_block_plan(index_t n, index_t d, const feature_separation_options& o) {
  return contrastive::detail::make_block_plan(
      contrastive::detail::uniformity_block_problem(n, d, o), block_sizes<T>());
}

/// The offsets (n floats) after the plan's regions.
inline float* uniformity_offsets(const block_plan& p, workspace ws) {
  return reinterpret_cast<float*>(block_base(ws) + (p.bytes - contrastive::detail::block_ws_align));
}

/// Shapes and options (the CPU's checks, in its order; no element read), then the GPU's own
/// requirements, as a message (empty when fine).
template <class T>
std::string uniformity_problem(const char* fn, const device_view<T>& x0, const device_view<T>& x1,
                               const feature_separation_options& o, math_mode m) {
  try {
    const matrix_view<const T, device_memory>* in[2] = {&x0, &x1};
    const char* names[2] = {"a_ind", "b_ind"};
    contrastive::detail::fs_check_options(fn, o);
    contrastive::detail::fs_check_shapes(fn, in, names, 2);
    CONTRASTIVE_CHECK(o.uniformity != uniformity_form::wang_isola || x0.rows() >= 2, fn,
                      ": the wang_isola uniformity needs at least 2 rows (pairs j != k), got ",
                      x0.rows());
  } catch (const invalid_argument& e) {
    return e.what();
  }
  std::string err = device_pair_problem<T>(fn, x0, x1, m, false, sweep_mode::blocked);
  if (err.empty() && !(lt_rows_ok<T>(x0.data(), x0.row_stride(), x0.rows(), x0.cols()) &&
                       lt_rows_ok<T>(x1.data(), x1.row_stride(), x1.rows(), x1.cols())))
    err = std::string(fn) +
          ": the GPU uniformity term runs on the blocked sweep, which needs rows 16-byte aligned "
          "and D and the row strides multiples of 16 bytes";
  return err;
}

template <class T, bool Tf32>
cudaError_t uniformity_forward_run(const device_view<T>& x0, const device_view<T>& x1,
                                   const feature_uniformity_device_outputs& out,
                                   const feature_separation_options& o, workspace ws,
                                   cudaStream_t s) {
  const index_t n = x0.rows(), d = x0.cols();
  const block_plan p = uniformity_block_plan<T>(n, d, o);
  float* off = uniformity_offsets(p, ws);
  for (int m = 0; m < 2; ++m) {
    block_inputs<T> in;
    in.x = in.y = rows_of(m == 0 ? x0 : x1);
    uniformity_offsets_kernel<T>
        <<<block_grid(32 * n), kBlockThreads, 0, s>>>(in.x, n, d, o.uniformity_t, off);
    pairwise_epilogue_args<stat_t> ep = block_device_args(p.problem, in);
    ep.row_offset = ep.col_offset = off;
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) e = block_statistics_run<T, Tf32>(p, in, ep, ws, s);
    if (e != cudaSuccess) return e;
    uniformity_log_sum_kernel<><<<1, kBlockThreads, 0, s>>>(
        block_row_stats(p, ws), n, m == 0 ? out.row_lse_a : out.row_lse_b, out.log_sums + m);
  }
  uniformity_loss_kernel<><<<1, 1, 0, s>>>(out.log_sums, n, o.uniformity, out.loss);
  return cudaGetLastError();
}

template <class T, bool Tf32>
cudaError_t uniformity_backward_run(const device_view<T>& x0, const device_view<T>& x1,
                                    const feature_uniformity_device_weights& w,
                                    const device_out_view<T>& g0, const device_out_view<T>& g1,
                                    const feature_separation_options& o, double upstream,
                                    workspace ws, cudaStream_t s) {
  const index_t n = x0.rows(), d = x0.cols();
  const block_plan p = uniformity_block_plan<T>(n, d, o);
  float* off = uniformity_offsets(p, ws);
  auto* coef = reinterpret_cast<stat_t*>(block_base(ws) + p.b_coef.offset);
  stat_t *rw = coef, *rl = coef + n;
  float* terms = coef + 2 * n;  // stat_t is float
  for (int m = 0; m < 2; ++m) {
    block_inputs<T> in;
    in.x = in.y = rows_of(m == 0 ? x0 : x1);
    uniformity_offsets_kernel<T>
        <<<block_grid(32 * n), kBlockThreads, 0, s>>>(in.x, n, d, o.uniformity_t, off);
    uniformity_coefficients_kernel<><<<block_grid(n), kBlockThreads, 0, s>>>(
        w.log_sums, m, o.uniformity, m == 0 ? w.row_lse_a : w.row_lse_b, n, o.uniformity_t,
        upstream, rw, rl, terms);
    pairwise_epilogue_args<stat_t> ep = block_device_args(p.problem, in);
    ep.row_offset = ep.col_offset = off;
    ep.row_w = ep.col_w = rw;
    ep.row_lse = ep.col_lse = rl;
    block_row_terms rt;
    rt.per_row = terms;
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess)
      e = block_gradient_run<T, Tf32>(p, in, ep, rows_of(m == 0 ? g0 : g1), rows2<T>{},
                                      o.accumulate, rt, ws, s);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// ---- orthogonality ----

/// dots[j] = <x_j, y_j> and dots[n + j] = <u_j, w_j>, a warp per row, in double.
template <class T>
__global__ void ortho_dots_kernel(rows2<const T> x, rows2<const T> y, rows2<const T> u,
                                  rows2<const T> w, index_t n, index_t d, double* dots) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  for (index_t i = grid_warp(); i < 2 * n; i += grid_warps()) {  // uniform per warp
    const index_t j = i < n ? i : i - n;
    const T* p = i < n ? x.row(j) : u.row(j);
    const T* q = i < n ? y.row(j) : w.row(j);
    double acc = 0;
    for (index_t k = lane; k < d; k += 32)
      acc += static_cast<double>(to_float(p[k])) * static_cast<double>(to_float(q[k]));
    for (int o = 16; o > 0; o /= 2) acc += __shfl_down_sync(0xffffffffu, acc, o);
    if (lane == 0) dots[i] = acc;
  }
}

/// loss = sum (dots^2) / n, one CTA, fixed order.
template <int = 0>
__global__ void ortho_loss_kernel(const double* dots, index_t n, double* loss) {
  __shared__ double red[kBlockThreads];
  double v = 0;
  for (index_t i = threadIdx.x; i < 2 * n; i += kBlockThreads) v += dots[i] * dots[i];
  v = block_sum(v, red);
  if (threadIdx.x == 0) *loss = v / static_cast<double>(n);
}

/// g_x (+)= c a_j y_j, g_y (+)= c a_j x_j and likewise for (u, w) with b_j; c = 2 scale / n.
template <class T>
__global__ void ortho_gradient_kernel(rows2<const T> x, rows2<const T> y, rows2<const T> u,
                                      rows2<const T> w, const double* dots, index_t n, index_t d,
                                      double scale, bool accumulate, rows2<T> gx, rows2<T> gy,
                                      rows2<T> gu, rows2<T> gw) {
  const double c = 2 * scale / static_cast<double>(n);
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < n * d;
       e += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t j = e / d, k = e % d;
    const float a = static_cast<float>(c * dots[j]), b = static_cast<float>(c * dots[n + j]);
    auto put = [&](rows2<T> g, float v) {
      T* o = g.row(j) + k;
      *o = from_float<T>(accumulate ? to_float(*o) + v : v);
    };
    put(gx, a * to_float(y.row(j)[k]));
    put(gy, a * to_float(x.row(j)[k]));
    put(gu, b * to_float(w.row(j)[k]));
    put(gw, b * to_float(u.row(j)[k]));
  }
}

/// out (n x d) = 0.
template <class T>
__global__ void zero_rows_kernel(rows2<T> out, index_t n, index_t d) {
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < n * d;
       e += static_cast<index_t>(gridDim.x) * blockDim.x)
    out.row(e / d)[e % d] = from_float<T>(0.f);
}

}  // namespace detail

/// Device workspace bytes of the uniformity forward and backward (one buffer serves both): the
/// self-mode sweep's plan of one modality and 4 bytes per row.
template <class T>
std::size_t feature_uniformity_workspace_bytes(index_t n, index_t d,
                                               const feature_separation_options& o = {}) {
  return detail::uniformity_block_plan<T>(n, d, o).bytes +
         contrastive::detail::block_ws_round(sizeof(float) * static_cast<std::size_t>(n));
}

/// The uniformity forward on device views a_ind, b_ind. Never throws.
template <class T>
cudaError_t feature_uniformity_forward_async(device_view<T> a_ind, device_view<T> b_ind,
                                             feature_uniformity_device_outputs out,
                                             const feature_separation_options& o, workspace ws,
                                             cudaStream_t stream,
                                             math_mode m = math_mode::fp32) noexcept {
  try {
    if (!detail::uniformity_problem<T>("cuda::feature_uniformity_forward_async", a_ind, b_ind, o, m)
             .empty() ||
        out.row_lse_a == nullptr || out.row_lse_b == nullptr || out.log_sums == nullptr ||
        out.loss == nullptr || ws.data == nullptr ||
        ws.bytes < cuda::feature_uniformity_workspace_bytes<T>(a_ind.rows(), a_ind.cols(), o))
      return cudaErrorInvalidValue;
    if constexpr (std::is_same<T, float>::value) {
      if (m == math_mode::tf32)
        return detail::uniformity_forward_run<T, true>(a_ind, b_ind, out, o, ws, stream);
    }
    return detail::uniformity_forward_run<T, false>(a_ind, b_ind, out, o, ws, stream);
  } catch (...) {
    return cudaErrorMemoryAllocation;
  }
}

/// The uniformity backward: writes (or with o.accumulate adds) upstream * dL_Uni. Never throws.
template <class T>
cudaError_t feature_uniformity_backward_async(device_view<T> a_ind, device_view<T> b_ind,
                                              feature_uniformity_device_weights w,
                                              device_out_view<T> grad_a_ind,
                                              device_out_view<T> grad_b_ind,
                                              const feature_separation_options& o, double upstream,
                                              workspace ws, cudaStream_t stream,
                                              math_mode m = math_mode::fp32) noexcept {
  try {
    const char* fn = "cuda::feature_uniformity_backward_async";
    if (!detail::uniformity_problem<T>(fn, a_ind, b_ind, o, m).empty() ||
        !detail::gradients_problem<T>(fn, a_ind, b_ind, grad_a_ind, grad_b_ind, upstream).empty() ||
        w.row_lse_a == nullptr || w.row_lse_b == nullptr || w.log_sums == nullptr ||
        ws.data == nullptr ||
        ws.bytes < cuda::feature_uniformity_workspace_bytes<T>(a_ind.rows(), a_ind.cols(), o))
      return cudaErrorInvalidValue;
    if constexpr (std::is_same<T, float>::value) {
      if (m == math_mode::tf32)
        return detail::uniformity_backward_run<T, true>(a_ind, b_ind, w, grad_a_ind, grad_b_ind, o,
                                                        upstream, ws, stream);
    }
    return detail::uniformity_backward_run<T, false>(a_ind, b_ind, w, grad_a_ind, grad_b_ind, o,
                                                     upstream, ws, stream);
  } catch (...) {
    return cudaErrorMemoryAllocation;
  }
}

/// What the throwing uniformity forward keeps for the backward (O(N)), and its values.
struct feature_uniformity_device_saved {
  double loss = 0;
  double log_sum_a = 0, log_sum_b = 0;  // as the CPU's log_sum_v, log_sum_u
  device_buffer row_lse_a, row_lse_b;   // n floats each
  device_buffer log_sums;               // the two log-sums, on the device
  index_t n = 0, d = 0;
  uniformity_form form = uniformity_form::literal;
  double t = 2;
  math_mode math = math_mode::fp32;

  feature_uniformity_device_weights weights() const noexcept {
    return {row_lse_a.as<const float>(), row_lse_b.as<const float>(), log_sums.as<const double>()};
  }
};

namespace detail {

/// The CPU's fs_check_outputs on device outputs, plus the GPU's layout (unit column stride).
template <class T>
void fs_check_device_outputs(const char* fn, const device_out_view<T>* const* out,
                             const char* const* out_names, int count,
                             const device_view<T>* const* in, const char* const* names,
                             int in_count) {
  const index_t n = in[0]->rows(), d = in[0]->cols();
  for (int k = 0; k < count; ++k) {
    contrastive::detail::check_matrix(fn, out_names[k], *out[k]);
    contrastive::detail::check_shape(fn, out_names[k], *out[k], n, d, "the shape of the inputs");
    contrastive::detail::check_writable_layout(fn, out_names[k], *out[k]);
    for (int j = 0; j < in_count; ++j)
      contrastive::detail::check_no_alias(fn, out_names[k], *out[k], names[j], *in[j]);
    for (int j = 0; j < k; ++j)
      contrastive::detail::check_no_alias(fn, out_names[k], *out[k], out_names[j], *out[j]);
    CONTRASTIVE_CHECK(out[k]->col_stride() == 1, fn,
                      ": device gradients must be row-major with unit column stride");
  }
}

/// Zeroes the outputs (the terms then add into them).
template <class T>
void fs_clear_device(const char* fn, const device_out_view<T>* const* out, int count,
                     cudaStream_t stream) {
  for (int k = 0; k < count; ++k) {
    zero_rows_kernel<T><<<block_grid(out[k]->rows() * out[k]->cols()), kBlockThreads, 0, stream>>>(
        rows_of(*out[k]), out[k]->rows(), out[k]->cols());
    throw_on_error(cudaGetLastError(), fn);
  }
}

/// The CPU's input checks of the named device inputs: shapes and options (the caller's), then
/// the device scan of every input (finite, no row of zero norm), in the CPU's order.
template <class T>
void fs_scan_device(const char* fn, const device_view<T>* const* in, const char* const* names,
                    int count, const feature_separation_options& o, cudaStream_t stream) {
  if (!o.scan_inputs) return;
  for (int k = 0; k < count; ++k) check_rows(fn, names[k], *in[k], stream);
}

}  // namespace detail

template <class T>
feature_uniformity_device_saved feature_uniformity_forward(device_view<T> a_ind,
                                                           device_view<T> b_ind,
                                                           const feature_separation_options& o = {},
                                                           math_mode m = math_mode::fp32,
                                                           cudaStream_t stream = nullptr) {
  const char* fn = "cuda::feature_uniformity_forward";
  {  // the CPU's order: options, shapes, the scan, then the pair count
    const device_view<T>* in[2] = {&a_ind, &b_ind};
    const char* names[2] = {"a_ind", "b_ind"};
    contrastive::detail::fs_check_options(fn, o);
    contrastive::detail::fs_check_shapes(fn, in, names, 2);
    detail::fs_scan_device(fn, in, names, 2, o, stream);
  }
  const std::string err = detail::uniformity_problem<T>(fn, a_ind, b_ind, o, m);
  CONTRASTIVE_CHECK(err.empty(), err);
  feature_uniformity_device_saved s;
  s.n = a_ind.rows();
  s.d = a_ind.cols();
  s.form = o.uniformity;
  s.t = o.uniformity_t;
  s.math = m;
  const auto un = static_cast<std::size_t>(s.n);
  s.row_lse_a = device_buffer(sizeof(float) * un);
  s.row_lse_b = device_buffer(sizeof(float) * un);
  s.log_sums = device_buffer(2 * sizeof(double));
  feature_uniformity_device_outputs out;
  out.row_lse_a = s.row_lse_a.as<float>();
  out.row_lse_b = s.row_lse_b.as<float>();
  out.log_sums = s.log_sums.as<double>();
  s.loss = detail::run_owned(fn, cuda::feature_uniformity_workspace_bytes<T>(s.n, s.d, o), stream,
                             [&](workspace ws, double* loss) {
                               out.loss = loss;
                               return feature_uniformity_forward_async<T>(a_ind, b_ind, out, o, ws,
                                                                          stream, m);
                             });
  double sums[2] = {0, 0};
  throw_on_error(cudaMemcpy(sums, s.log_sums.data(), sizeof(sums), cudaMemcpyDeviceToHost), fn);
  s.log_sum_a = sums[0];
  s.log_sum_b = sums[1];
  contrastive::detail::check_loss_finite(fn, s.loss);
  return s;
}

template <class T>
feature_separation_parameter_gradients feature_uniformity_backward(
    device_view<T> a_ind, device_view<T> b_ind, const feature_uniformity_device_saved& saved,
    device_out_view<T> grad_a_ind, device_out_view<T> grad_b_ind,
    const feature_separation_options& o = {}, double upstream = 1.0,
    cudaStream_t stream = nullptr) {
  const char* fn = "cuda::feature_uniformity_backward";
  {  // the CPU's order: options, upstream, inputs, outputs, then 'saved'
    const device_view<T>* in[2] = {&a_ind, &b_ind};
    const char* names[2] = {"a_ind", "b_ind"};
    const device_out_view<T>* out[2] = {&grad_a_ind, &grad_b_ind};
    const char* out_names[2] = {"grad_a_ind", "grad_b_ind"};
    contrastive::detail::fs_check_options(fn, o);
    contrastive::detail::fs_check_upstream(fn, upstream);
    contrastive::detail::fs_check_shapes(fn, in, names, 2);
    detail::fs_scan_device(fn, in, names, 2, o, stream);
    detail::fs_check_device_outputs(fn, out, out_names, 2, in, names, 2);
  }
  CONTRASTIVE_CHECK(saved.n == a_ind.rows() && saved.d == a_ind.cols() &&
                        saved.form == o.uniformity && saved.t == o.uniformity_t,
                    fn, ": 'saved' (uniformity) was computed for a ", saved.n, " x ", saved.d,
                    " batch with t = ", saved.t, ", these are ", a_ind.rows(), " x ", a_ind.cols(),
                    " with t = ", o.uniformity_t, " (or another uniformity form)");
  const std::string err = detail::uniformity_problem<T>(fn, a_ind, b_ind, o, saved.math);
  CONTRASTIVE_CHECK(err.empty(), err);
  detail::run_owned(fn, cuda::feature_uniformity_workspace_bytes<T>(saved.n, saved.d, o), stream,
                    [&](workspace ws, double*) {
                      return feature_uniformity_backward_async<T>(a_ind, b_ind, saved.weights(),
                                                                  grad_a_ind, grad_b_ind, o,
                                                                  upstream, ws, stream, saved.math);
                    });
  return {};
}

// ---- the combined loss ----

/// What the throwing combined forward keeps (on the device, O(N)) and its values.
struct feature_separation_device_saved {
  double loss = 0;
  double orthogonality = 0;  // the unweighted terms
  double contrastive = 0;
  double uniformity = 0;
  info_nce_device_saved contrastive_a, contrastive_b;  // InfoNCE(a_ind, a_ind_aug), (b_ind, ...)
  feature_uniformity_device_saved uniformity_saved;
  double orthogonality_weight = 1, contrastive_weight = 1, uniformity_weight = 1;
  index_t n = 0, d = 0;
  math_mode math = math_mode::fp32;
};

namespace detail {

/// The in-modal InfoNCE calls' options (the combined call has scanned the inputs already).
inline info_nce_options fs_device_info_nce_options(const feature_separation_options& o) {
  info_nce_options io;
  io.temperature = o.temperature;
  io.symmetric = false;
  io.accumulate = true;
  io.scan_inputs = false;
  return io;
}

/// The orthogonality term's loss (host double) of (a, a_ind), (b, b_ind).
template <class T>
double ortho_forward(const char* fn, const device_view<T>& a, const device_view<T>& b,
                     const device_view<T>& ai, const device_view<T>& bi, cudaStream_t s) {
  const index_t n = a.rows(), d = a.cols();
  return run_owned(fn, sizeof(double) * static_cast<std::size_t>(2 * n), s,
                   [&](workspace ws, double* loss) {
                     auto* dots = static_cast<double*>(ws.data);
                     ortho_dots_kernel<T><<<block_grid(64 * n), kBlockThreads, 0, s>>>(
                         rows_of(a), rows_of(ai), rows_of(b), rows_of(bi), n, d, dots);
                     ortho_loss_kernel<><<<1, kBlockThreads, 0, s>>>(dots, n, loss);
                     return cudaGetLastError();
                   });
}

/// Adds scale * the orthogonality gradients into the four outputs.
template <class T>
void ortho_backward(const char* fn, const device_view<T>& a, const device_view<T>& b,
                    const device_view<T>& ai, const device_view<T>& bi,
                    const device_out_view<T>& ga, const device_out_view<T>& gb,
                    const device_out_view<T>& gai, const device_out_view<T>& gbi, double scale,
                    cudaStream_t s) {
  const index_t n = a.rows(), d = a.cols();
  run_owned(fn, sizeof(double) * static_cast<std::size_t>(2 * n), s, [&](workspace ws, double*) {
    auto* dots = static_cast<double*>(ws.data);
    ortho_dots_kernel<T><<<block_grid(64 * n), kBlockThreads, 0, s>>>(
        rows_of(a), rows_of(ai), rows_of(b), rows_of(bi), n, d, dots);
    ortho_gradient_kernel<T><<<block_grid(n * d), kBlockThreads, 0, s>>>(
        rows_of(a), rows_of(ai), rows_of(b), rows_of(bi), dots, n, d, scale, true, rows_of(ga),
        rows_of(gai), rows_of(gb), rows_of(gbi));
    return cudaGetLastError();
  });
}

}  // namespace detail

/// What the throwing orthogonality forward returns.
struct feature_orthogonality_device_saved {
  double loss = 0;
  index_t n = 0, d = 0;
};

/// L_Ortho on device views (a, b the shared features, a_ind, b_ind the independent ones).
template <class T>
feature_orthogonality_device_saved feature_orthogonality_forward(
    device_view<T> a, device_view<T> b, device_view<T> a_ind, device_view<T> b_ind,
    const feature_separation_options& o = {}, cudaStream_t stream = nullptr) {
  const char* fn = "cuda::feature_orthogonality_forward";
  const device_view<T>* in[4] = {&a, &b, &a_ind, &b_ind};
  const char* names[4] = {"a", "b", "a_ind", "b_ind"};
  contrastive::detail::fs_check_options(fn, o);
  contrastive::detail::fs_check_shapes(fn, in, names, 4);
  detail::fs_scan_device(fn, in, names, 4, o, stream);
  feature_orthogonality_device_saved s;
  s.n = a.rows();
  s.d = a.cols();
  s.loss = detail::ortho_forward(fn, a, b, a_ind, b_ind, stream);
  return s;
}

/// Writes (or with o.accumulate adds) upstream * dL_Ortho into the four outputs.
template <class T>
feature_separation_parameter_gradients feature_orthogonality_backward(
    device_view<T> a, device_view<T> b, device_view<T> a_ind, device_view<T> b_ind,
    const feature_orthogonality_device_saved& saved, device_out_view<T> grad_a,
    device_out_view<T> grad_b, device_out_view<T> grad_a_ind, device_out_view<T> grad_b_ind,
    const feature_separation_options& o = {}, double upstream = 1.0,
    cudaStream_t stream = nullptr) {
  const char* fn = "cuda::feature_orthogonality_backward";
  const device_view<T>* in[4] = {&a, &b, &a_ind, &b_ind};
  const char* names[4] = {"a", "b", "a_ind", "b_ind"};
  const device_out_view<T>* out[4] = {&grad_a, &grad_b, &grad_a_ind, &grad_b_ind};
  const char* out_names[4] = {"grad_a", "grad_b", "grad_a_ind", "grad_b_ind"};
  contrastive::detail::fs_check_options(fn, o);
  contrastive::detail::fs_check_upstream(fn, upstream);
  contrastive::detail::fs_check_shapes(fn, in, names, 4);
  detail::fs_scan_device(fn, in, names, 4, o, stream);
  CONTRASTIVE_CHECK(saved.n == a.rows() && saved.d == a.cols(), fn, ": 'saved' belongs to x0 ",
                    saved.n, " x ", saved.d, " batch, the inputs are ", a.rows(), " x ", a.cols());
  detail::fs_check_device_outputs(fn, out, out_names, 4, in, names, 4);
  if (!o.accumulate) detail::fs_clear_device(fn, out, 4, stream);
  detail::ortho_backward(fn, a, b, a_ind, b_ind, grad_a, grad_b, grad_a_ind, grad_b_ind, upstream,
                         stream);
  return {};
}

/// What the throwing in-modal contrastive forward keeps (two one-direction InfoNCE forwards).
struct in_modal_contrastive_device_saved {
  double loss = 0;
  info_nce_device_saved a, b;  // InfoNCE(a_ind, a_ind_aug) and InfoNCE(b_ind, b_ind_aug)
};

/// L^i_Con on device views: InfoNCE(a_ind, a_ind_aug) + InfoNCE(b_ind, b_ind_aug) on the GPU.
template <class T>
in_modal_contrastive_device_saved in_modal_contrastive_forward(
    device_view<T> a_ind, device_view<T> b_ind, device_view<T> a_ind_aug, device_view<T> b_ind_aug,
    const feature_separation_options& o = {}, math_mode m = math_mode::fp32,
    cudaStream_t stream = nullptr) {
  const char* fn = "cuda::in_modal_contrastive_forward";
  const device_view<T>* in[4] = {&a_ind, &b_ind, &a_ind_aug, &b_ind_aug};
  const char* names[4] = {"a_ind", "b_ind", "a_ind_aug", "b_ind_aug"};
  contrastive::detail::fs_check_options(fn, o);
  contrastive::detail::fs_check_shapes(fn, in, names, 4);
  detail::fs_scan_device(fn, in, names, 4, o, stream);
  const info_nce_options io = detail::fs_device_info_nce_options(o);
  in_modal_contrastive_device_saved s;
  s.a = info_nce_forward<T>(a_ind, a_ind_aug, io, m, stream);
  s.b = info_nce_forward<T>(b_ind, b_ind_aug, io, m, stream);
  s.loss = s.a.loss + s.b.loss;
  return s;
}

/// Writes (or with o.accumulate adds) upstream * dL^i_Con into the four outputs; returns upstream
/// * the temperature gradient.
template <class T>
feature_separation_parameter_gradients in_modal_contrastive_backward(
    device_view<T> a_ind, device_view<T> b_ind, device_view<T> a_ind_aug, device_view<T> b_ind_aug,
    const in_modal_contrastive_device_saved& saved, device_out_view<T> grad_a_ind,
    device_out_view<T> grad_b_ind, device_out_view<T> grad_a_ind_aug,
    device_out_view<T> grad_b_ind_aug, const feature_separation_options& o = {},
    double upstream = 1.0, cudaStream_t stream = nullptr) {
  const char* fn = "cuda::in_modal_contrastive_backward";
  const device_view<T>* in[4] = {&a_ind, &b_ind, &a_ind_aug, &b_ind_aug};
  const char* names[4] = {"a_ind", "b_ind", "a_ind_aug", "b_ind_aug"};
  const device_out_view<T>* out[4] = {&grad_a_ind, &grad_b_ind, &grad_a_ind_aug, &grad_b_ind_aug};
  const char* out_names[4] = {"grad_a_ind", "grad_b_ind", "grad_a_ind_aug", "grad_b_ind_aug"};
  contrastive::detail::fs_check_options(fn, o);
  contrastive::detail::fs_check_upstream(fn, upstream);
  contrastive::detail::fs_check_shapes(fn, in, names, 4);
  detail::fs_scan_device(fn, in, names, 4, o, stream);
  detail::fs_check_device_outputs(fn, out, out_names, 4, in, names, 4);
  if (!o.accumulate) detail::fs_clear_device(fn, out, 4, stream);
  const info_nce_options io = detail::fs_device_info_nce_options(o);
  const temperature_gradient ta = info_nce_backward<T>(a_ind, a_ind_aug, saved.a, grad_a_ind,
                                                       grad_a_ind_aug, io, upstream, stream);
  const temperature_gradient tb = info_nce_backward<T>(b_ind, b_ind_aug, saved.b, grad_b_ind,
                                                       grad_b_ind_aug, io, upstream, stream);
  return temperature_gradient::from_log_scale(ta.log_scale + tb.log_scale, o.temperature);
}

/// L_Sep on device views (row j = pair j; a, b the shared features, a_ind, b_ind the independent
/// ones, *_aug of the augmented views): the CPU's checks and messages, then the three terms
/// (a term of weight 0 is skipped).
template <class T>
feature_separation_device_saved feature_separation_forward(
    device_view<T> a, device_view<T> b, device_view<T> a_ind, device_view<T> b_ind,
    device_view<T> a_ind_aug, device_view<T> b_ind_aug, const feature_separation_options& o = {},
    math_mode m = math_mode::fp32, cudaStream_t stream = nullptr) {
  const char* fn = "cuda::feature_separation_forward";
  const device_view<T>* in[6] = {&a, &b, &a_ind, &b_ind, &a_ind_aug, &b_ind_aug};
  const char* names[6] = {"a", "b", "a_ind", "b_ind", "a_ind_aug", "b_ind_aug"};
  contrastive::detail::fs_check_options(fn, o);
  contrastive::detail::fs_check_shapes(fn, in, names, 6);
  detail::fs_scan_device(fn, in, names, 6, o, stream);
  feature_separation_device_saved s;
  s.n = a.rows();
  s.d = a.cols();
  s.math = m;
  s.orthogonality_weight = o.orthogonality_weight;
  s.contrastive_weight = o.contrastive_weight;
  s.uniformity_weight = o.uniformity_weight;
  if (o.orthogonality_weight != 0) {
    s.orthogonality = detail::ortho_forward(fn, a, b, a_ind, b_ind, stream);
    s.loss += o.orthogonality_weight * s.orthogonality;
  }
  if (o.contrastive_weight != 0) {
    const info_nce_options io = detail::fs_device_info_nce_options(o);
    s.contrastive_a = info_nce_forward<T>(a_ind, a_ind_aug, io, m, stream);
    s.contrastive_b = info_nce_forward<T>(b_ind, b_ind_aug, io, m, stream);
    s.contrastive = s.contrastive_a.loss + s.contrastive_b.loss;
    s.loss += o.contrastive_weight * s.contrastive;
  }
  if (o.uniformity_weight != 0) {
    feature_separation_options uo = o;
    uo.scan_inputs = false;  // scanned above
    s.uniformity_saved = feature_uniformity_forward<T>(a_ind, b_ind, uo, m, stream);
    s.uniformity = s.uniformity_saved.loss;
    s.loss += o.uniformity_weight * s.uniformity;
  }
  contrastive::detail::check_loss_finite(fn, s.loss);
  return s;
}

/// Writes (or with o.accumulate adds) upstream * dL_Sep into the six outputs; returns upstream
/// * the temperature gradient (from L^i_Con).
template <class T>
feature_separation_parameter_gradients feature_separation_backward(
    device_view<T> a, device_view<T> b, device_view<T> a_ind, device_view<T> b_ind,
    device_view<T> a_ind_aug, device_view<T> b_ind_aug, const feature_separation_device_saved& s,
    device_out_view<T> grad_a, device_out_view<T> grad_b, device_out_view<T> grad_a_ind,
    device_out_view<T> grad_b_ind, device_out_view<T> grad_a_ind_aug,
    device_out_view<T> grad_b_ind_aug, const feature_separation_options& o = {},
    double upstream = 1.0, cudaStream_t stream = nullptr) {
  const char* fn = "cuda::feature_separation_backward";
  const device_view<T>* in[6] = {&a, &b, &a_ind, &b_ind, &a_ind_aug, &b_ind_aug};
  const char* names[6] = {"a", "b", "a_ind", "b_ind", "a_ind_aug", "b_ind_aug"};
  const device_out_view<T>* out[6] = {&grad_a,     &grad_b,         &grad_a_ind,
                                      &grad_b_ind, &grad_a_ind_aug, &grad_b_ind_aug};
  const char* out_names[6] = {"grad_a",     "grad_b",         "grad_a_ind",
                              "grad_b_ind", "grad_a_ind_aug", "grad_b_ind_aug"};
  contrastive::detail::fs_check_options(fn, o);
  contrastive::detail::fs_check_upstream(fn, upstream);
  contrastive::detail::fs_check_shapes(fn, in, names, 6);
  detail::fs_scan_device(fn, in, names, 6, o, stream);
  CONTRASTIVE_CHECK(s.n == a.rows() && s.d == a.cols(), fn, ": 'saved' belongs to a ", s.n, " x ",
                    s.d, " batch, the inputs are ", a.rows(), " x ", a.cols());
  CONTRASTIVE_CHECK(s.orthogonality_weight == o.orthogonality_weight &&
                        s.contrastive_weight == o.contrastive_weight &&
                        s.uniformity_weight == o.uniformity_weight,
                    fn, ": 'saved' was computed with other weights (", s.orthogonality_weight, ", ",
                    s.contrastive_weight, ", ", s.uniformity_weight, ") than these (",
                    o.orthogonality_weight, ", ", o.contrastive_weight, ", ", o.uniformity_weight,
                    ")");
  detail::fs_check_device_outputs(fn, out, out_names, 6, in, names, 6);
  if (!o.accumulate) detail::fs_clear_device(fn, out, 6, stream);
  temperature_gradient tg;
  if (o.orthogonality_weight != 0)
    detail::ortho_backward(fn, a, b, a_ind, b_ind, grad_a, grad_b, grad_a_ind, grad_b_ind,
                           upstream * o.orthogonality_weight, stream);
  if (o.contrastive_weight != 0) {
    const info_nce_options io = detail::fs_device_info_nce_options(o);
    const double c = upstream * o.contrastive_weight;
    const temperature_gradient ta = info_nce_backward<T>(a_ind, a_ind_aug, s.contrastive_a,
                                                         grad_a_ind, grad_a_ind_aug, io, c, stream);
    const temperature_gradient tb = info_nce_backward<T>(b_ind, b_ind_aug, s.contrastive_b,
                                                         grad_b_ind, grad_b_ind_aug, io, c, stream);
    tg = temperature_gradient::from_log_scale(ta.log_scale + tb.log_scale, o.temperature);
  }
  if (o.uniformity_weight != 0) {
    feature_separation_options uo = o;
    uo.accumulate = true;
    uo.scan_inputs = false;  // scanned above
    feature_uniformity_backward<T>(a_ind, b_ind, s.uniformity_saved, grad_a_ind, grad_b_ind, uo,
                                   upstream * o.uniformity_weight, stream);
  }
  throw_on_error(cudaStreamSynchronize(stream), fn);
  return tg;
}

}  // namespace cuda

namespace detail {
/// The generic contrastive::feature_uniformity_* and feature_separation_* functions land here
/// for device views.
template <class V>
struct device_backend<feature_uniformity_tag, V> {
  static constexpr bool available = true;
  using view = matrix_view<const V, device_memory>;
  using out_view = matrix_view<V, device_memory>;
  static cuda::feature_uniformity_device_saved forward(const view& a, const view& b,
                                                       const feature_separation_options& o) {
    return cuda::feature_uniformity_forward<V>(a, b, o);
  }
  static temperature_gradient backward(const view& a, const view& b,
                                       const cuda::feature_uniformity_device_saved& s,
                                       const out_view& ga, const out_view& gb,
                                       const feature_separation_options& o, double upstream) {
    return cuda::feature_uniformity_backward<V>(a, b, s, ga, gb, o, upstream);
  }
};
template <class V>
struct device_backend<feature_orthogonality_tag, V> {
  static constexpr bool available = true;
  using view = matrix_view<const V, device_memory>;
  using out_view = matrix_view<V, device_memory>;
  static cuda::feature_orthogonality_device_saved forward(const view& a, const view& b,
                                                          const view& ai, const view& bi,
                                                          const feature_separation_options& o) {
    return cuda::feature_orthogonality_forward<V>(a, b, ai, bi, o);
  }
  static temperature_gradient backward(const view& a, const view& b, const view& ai, const view& bi,
                                       const cuda::feature_orthogonality_device_saved& s,
                                       const out_view* g, const feature_separation_options& o,
                                       double upstream) {
    return cuda::feature_orthogonality_backward<V>(a, b, ai, bi, s, g[0], g[1], g[2], g[3], o,
                                                   upstream);
  }
};
template <class V>
struct device_backend<in_modal_contrastive_tag, V> {
  static constexpr bool available = true;
  using view = matrix_view<const V, device_memory>;
  using out_view = matrix_view<V, device_memory>;
  static cuda::in_modal_contrastive_device_saved forward(const view& ai, const view& bi,
                                                         const view& aa, const view& ba,
                                                         const feature_separation_options& o) {
    return cuda::in_modal_contrastive_forward<V>(ai, bi, aa, ba, o);
  }
  static temperature_gradient backward(const view& ai, const view& bi, const view& aa,
                                       const view& ba,
                                       const cuda::in_modal_contrastive_device_saved& s,
                                       const out_view* g, const feature_separation_options& o,
                                       double upstream) {
    return cuda::in_modal_contrastive_backward<V>(ai, bi, aa, ba, s, g[0], g[1], g[2], g[3], o,
                                                  upstream);
  }
};
template <class V>
struct device_backend<feature_separation_tag, V> {
  static constexpr bool available = true;
  using view = matrix_view<const V, device_memory>;
  using out_view = matrix_view<V, device_memory>;
  static cuda::feature_separation_device_saved forward(const view& a, const view& b, const view& ai,
                                                       const view& bi, const view& aa,
                                                       const view& ba,
                                                       const feature_separation_options& o) {
    return cuda::feature_separation_forward<V>(a, b, ai, bi, aa, ba, o);
  }
  static temperature_gradient backward(const view& a, const view& b, const view& ai, const view& bi,
                                       const view& aa, const view& ba,
                                       const cuda::feature_separation_device_saved& s,
                                       const out_view* g, const feature_separation_options& o,
                                       double upstream) {
    return cuda::feature_separation_backward<V>(a, b, ai, bi, aa, ba, s, g[0], g[1], g[2], g[3],
                                                g[4], g[5], o, upstream);
  }
};
}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CUDA_FEATURE_SEPARATION_CUH
