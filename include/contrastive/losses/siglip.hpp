#ifndef CONTRASTIVE_LOSSES_SIGLIP_HPP
#define CONTRASTIVE_LOSSES_SIGLIP_HPP

// The sigmoid loss of SigLIP (Zhai et al. 2023): every pair (i, j) is a binary classification,
// positive on the diagonal, with logits x_ij = t <a_i, b_j> + b:
//   L = -(1/N) sum_ij log sigmoid(z_ij x_ij),  z_ii = 1, z_ij = -1 (i != j).
// No normaliser couples the entries of a row, so the gradient tile depends on the logits alone:
// the forward sums the log-sigmoids of the tiles and also the parameter gradients (dL/dlog t,
// dL/db); the backward recomputes the tiles; forward_backward does both in one sweep (three
// products). Math and gradients: docs/siglip.md; the sweep: docs/tiled_sweep.md.

#include <cmath>
#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_common.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/tiling.hpp"
#include "contrastive/core/traits.hpp"
#include "contrastive/core/workspace.hpp"
#include "contrastive/losses/siglip_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// What the SigLIP forward keeps: the loss and the parameter gradients (O(1); the backward needs
/// no per-anchor statistic).
template <class T>
struct siglip_saved {
  T loss = 0;                                       ///< the loss
  double grad_log_scale = 0;                        ///< dL/dlog t at upstream 1
  double grad_bias = 0;                             ///< dL/db at upstream 1
  index_t n = 0;                                    ///< pairs N
  index_t d = 0;                                    ///< feature dimension D
  double scale = 0;                                 ///< the options the values belong to
  double bias = 0;                                  ///< (backward checks them)
  loss_reduction reduction = loss_reduction::mean;  ///< reduction of the forward

  /// The parameter gradients at upstream 1.
  siglip_parameter_gradients parameter_grads() const noexcept {
    return siglip_parameter_gradients{grad_log_scale, grad_log_scale / scale, grad_bias};
  }
};

namespace detail {

constexpr const char* siglip_fwd_name = "siglip_forward";
constexpr const char* siglip_bwd_name = "siglip_backward";

template <class T>
void siglip_check_inputs(const char* fn, const matrix_view<const T>& a,
                         const matrix_view<const T>& b, const siglip_options& o) {
  check_reduction(fn, o.reduction);
  check_matrix(fn, "a", a);
  check_matrix(fn, "b", b);
  CONTRASTIVE_CHECK(std::isfinite(o.scale) && o.scale > 0, fn,
                    ": 'scale' must be finite and > 0, got ", o.scale);
  CONTRASTIVE_CHECK(std::isfinite(o.bias), fn, ": 'bias' must be finite, got ", o.bias);
  check_tiles(fn, o.tile_rows, o.tile_cols);
  check_pair_shape(fn, a, b);
  check_finite(fn, "a", a);
  check_finite(fn, "b", b);
  // The logits cannot overflow: |x_ij| <= t max|a_i| max|b_j| + |b|, and a tile row adds at most
  // min(tile_cols, N) of them in T. Checked before the sweep, so that forward_backward (one sweep,
  // gradients written as it goes) never writes when the loss would not be finite.
  double ma = 0, mb = 0;
  for (index_t i = 0; i < a.rows(); ++i) {
    ma = std::max(ma, dot_rows(a, i, a, i));
    mb = std::max(mb, dot_rows(b, i, b, i));
  }
  const double bound = o.scale * std::sqrt(ma) * std::sqrt(mb) + std::abs(o.bias);
  const double cols = double(std::min(o.tile_cols, a.rows()));
  if (!(bound * cols < double(std::numeric_limits<T>::max()) / 4))
    check_loss_finite(fn, infinity<double>(), 1.0 / o.scale);
}

inline sweep_shape siglip_sweep(index_t n, index_t d, const siglip_options& o) noexcept {
  return make_sweep_shape(o, false, n, n, d);
}

/// Per chunk: the loss, sum G s and sum G (the parameter gradients), in double.
constexpr std::size_t siglip_chunk_sums = 3 * sweep_chunks;

template <class T>
std::size_t siglip_bytes(index_t n, index_t d, const siglip_options& o, std::size_t packing) {
  return array_bytes<double>(siglip_chunk_sums) + packing +
         pairwise_backward_bytes<T>(siglip_sweep(n, d, o)) + workspace_alignment;
}

template <class T>
pairwise_problem<T> siglip_problem(const matrix_view<const T>* a, const matrix_view<const T>* b,
                                   const siglip_options& o) {
  pairwise_problem<T> p = make_pairwise_problem(a, 1, b, 1, 1.0 / o.scale, o);
  p.scale = static_cast<T>(o.scale);
  return p;
}

/// One sweep: with `grads` null only the sums (forward), else also upstream * dL/da and dL/db.
/// Returns {loss, dL/dlog t, dL/db} at upstream 1.
template <class T>
std::array<double, 3> siglip_sweep_impl(const matrix_view<const T>& a,
                                        const matrix_view<const T>& b, const siglip_options& o,
                                        double upstream, const matrix_view<T>* grads, arena& ar) {
  const index_t n = a.rows();
  const double w = o.reduction == loss_reduction::mean ? 1.0 / double(n) : 1.0;
  double* sums = ar.take<double>(siglip_chunk_sums);
  for (std::size_t i = 0; i < siglip_chunk_sums; ++i) sums[i] = 0;
  const T bias = static_cast<T>(o.bias);
  const T wg = static_cast<T>(w * upstream);
  const pairwise_problem<T> p = siglip_problem<T>(&a, &b, o);
  auto kernel = [&](const row_block& I, const row_block& J, const tile_mask&, const tile_map<T>& s,
                    tile_map<T>& g, int c) {
    double loss = 0, gs = 0, gsum = 0;
    Eigen::Array<T, 1, Eigen::Dynamic> e(J.rows), sig(J.rows);
    for (index_t r = 0; r < I.rows; ++r) {
      const auto sr = s.row(r).array();
      // The positive of global row I.global + r, if in this tile.
      const index_t dc = I.global + r - J.global;
      const bool has_pos = dc >= 0 && dc < J.rows;
      const T s_pos = has_pos ? sr(dc) : T(0);
      // Every entry as a negative, x = s + b: softplus(x) = max(x, 0) + log1p(e^{-|x|}) and
      // dl/dx = sigmoid(x) from the same exponential; the positive is corrected below
      // (softplus(-x) = softplus(x) - x, dl/dx = sigmoid(x) - 1).
      e = (-(sr + bias).abs()).exp();
      sig = (sr + bias >= T(0)).select(T(1) / (T(1) + e), e / (T(1) + e));
      loss += double(((sr + bias).max(T(0)) + e.log1p()).sum());
      gs += double((sr * sig).sum());
      gsum += double(sig.sum());
      if (has_pos) {
        loss -= double(s_pos + bias);
        gs -= double(s_pos);
        gsum -= 1.0;
      }
      if (grads) {
        g.row(r).array() = wg * sig;  // sig is a copy, so g may be the memory of s
        if (has_pos) g(r, dc) -= wg;
      }
    }
    sums[3 * c] += loss;
    sums[3 * c + 1] += gs;
    sums[3 * c + 2] += gsum;
  };
  pairwise_sweep_tiles(p, kernel, grads, grads ? grads + 1 : nullptr, ar);
  std::array<double, 3> out{0, 0, 0};
  for (int c = 0; c < sweep_chunks; ++c)  // fixed order
    for (int k = 0; k < 3; ++k) out[uz(k)] += sums[3 * c + k];
  for (auto& v : out) v *= w;
  return out;
}

template <class T>
siglip_saved<T> siglip_make_saved(const matrix_view<const T>& a, const siglip_options& o,
                                  const std::array<double, 3>& r) {
  siglip_saved<T> saved;
  saved.n = a.rows();
  saved.d = a.cols();
  saved.scale = o.scale;
  saved.bias = o.bias;
  saved.reduction = o.reduction;
  saved.loss = static_cast<T>(r[0]);
  saved.grad_log_scale = r[1];
  saved.grad_bias = r[2];
  return saved;
}

template <class T>
siglip_saved<T> siglip_forward_impl(const matrix_view<const T>& a_in,
                                    const matrix_view<const T>& b_in, const siglip_options& o,
                                    workspace ws) {
  const char* fn = siglip_fwd_name;
  siglip_check_inputs(fn, a_in, b_in, o);
  arena ar(ws,
           siglip_bytes<T>(a_in.rows(), a_in.cols(), o, packing_bytes(a_in) + packing_bytes(b_in)) -
               workspace_alignment,
           fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  const auto r = siglip_sweep_impl<T>(a, b, o, 1.0, nullptr, ar);
  check_loss_finite(fn, r[0], 1.0 / o.scale);
  return siglip_make_saved<T>(a_in, o, r);
}

template <class T>
void siglip_check_backward(const char* fn, const matrix_view<const T>& a,
                           const matrix_view<const T>& b, const siglip_saved<T>* saved,
                           const matrix_view<T>& ga, const matrix_view<T>& gb,
                           const siglip_options& o, double upstream) {
  siglip_check_inputs(fn, a, b, o);
  if (saved) {
    CONTRASTIVE_CHECK(saved->n == a.rows() && saved->d == a.cols(), fn, ": 'saved' belongs to a ",
                      saved->n, " x ", saved->d, " batch, the inputs are ", a.rows(), " x ",
                      a.cols());
    CONTRASTIVE_CHECK(
        saved->scale == o.scale && saved->bias == o.bias && saved->reduction == o.reduction, fn,
        ": 'saved' was computed with other options (scale ", saved->scale, ", bias ", saved->bias,
        ") than these (scale ", o.scale, ", bias ", o.bias, ")");
  }
  check_pair_gradients(fn, a, b, ga, gb, upstream);
}

template <class T>
siglip_parameter_gradients siglip_backward_impl(
    const matrix_view<const T>& a_in, const matrix_view<const T>& b_in,
    const siglip_saved<T>* saved, const matrix_view<T>& grad_a, const matrix_view<T>& grad_b,
    const siglip_options& o, double upstream, workspace ws, T* loss_out) {
  const char* fn = saved ? siglip_bwd_name : siglip_fwd_name;
  siglip_check_backward(fn, a_in, b_in, saved, grad_a, grad_b, o, upstream);
  const std::size_t packing =
      packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, siglip_bytes<T>(a_in.rows(), a_in.cols(), o, packing) - workspace_alignment, fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  const matrix_view<T> g[2] = {ga.view(), gb.view()};
  const auto r = siglip_sweep_impl<T>(a, b, o, upstream, g, ar);
  ga.finish();
  gb.finish();
  if (loss_out) *loss_out = static_cast<T>(r[0]);
  const double dlt = saved ? saved->grad_log_scale : r[1];
  const double db = saved ? saved->grad_bias : r[2];
  return siglip_parameter_gradients{dlt * upstream, dlt * upstream / o.scale, db * upstream};
}

}  // namespace detail

/// Scratch bytes for row-major N x D views (see info_nce_workspace_bytes).
template <class T>
std::size_t siglip_workspace_bytes(index_t n, index_t d, const siglip_options& o = {}) {
  return detail::siglip_bytes<T>(n, d, o, 0);
}

/// Exact bytes for these inputs, packing included (gradients assumed row-major).
template <class A, class B,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value, int> = 0>
std::size_t siglip_workspace_bytes(const A& a, const B& b, const siglip_options& o = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  return detail::siglip_bytes<T>(va.rows(), va.cols(), o,
                                 detail::packing_bytes(va) + detail::packing_bytes(vb));
}

/// Forward pass: the loss and the parameter gradients at upstream 1 (O(1) saved state).
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto siglip_forward(const A& a, const B& b, const siglip_options& o = {}, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  detail::require_same_value_type<T, decltype(vb)>();
  return detail::siglip_forward_impl<T>(va, vb, o, ws);
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da and dL/db. Returns
/// upstream * (dL/dlog t, dL/dt, dL/db).
template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
siglip_parameter_gradients
    siglip_backward(const A& a, const B& b, const siglip_saved<T>& saved, GA&& grad_a, GB&& grad_b,
                    const siglip_options& o = {}, double upstream = 1.0, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga), decltype(gb)>();
  return detail::siglip_backward_impl<T>(va, vb, &saved, ga, gb, o, upstream, ws, nullptr);
}

/// Forward and backward in one sweep (three products per tile instead of four); returns the
/// loss, bitwise equal to siglip_forward's. The parameter gradients are written to
/// *parameter_grads when given.
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto siglip_forward_backward(const A& a, const B& b, GA&& grad_a, GB&& grad_b,
                             const siglip_options& o = {},
                             siglip_parameter_gradients* parameter_grads = nullptr,
                             workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  using T = typename decltype(va)::value_type;
  detail::require_same_value_type<T, decltype(vb), decltype(ga), decltype(gb)>();
  T loss = 0;
  const siglip_parameter_gradients pg =
      detail::siglip_backward_impl<T>(va, vb, nullptr, ga, gb, o, 1.0, ws, &loss);
  if (parameter_grads) *parameter_grads = pg;
  return loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_SIGLIP_HPP
