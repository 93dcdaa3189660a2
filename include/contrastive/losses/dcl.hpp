#ifndef CONTRASTIVE_LOSSES_DCL_HPP
#define CONTRASTIVE_LOSSES_DCL_HPP

// Decoupled contrastive learning (Yeh et al., ECCV 2022): DCL and its weighted form DCLW over the
// 2N views Z = [a; b]. As NT-Xent, but each anchor's denominator holds its 2N - 2 negatives only:
// the positive (the other view) is masked in the tiled sweep like the self-similarity. DCLW
// multiplies the positive term of sample k by w_k = 2 - N softmax_k(<a_k, b_k> / sigma) and is
// differentiated through w. Math and gradients: docs/dcl.md; the sweep: docs/tiled_sweep.md.

#include <algorithm>
#include <cmath>
#include <cstdint>
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
#include "contrastive/losses/dcl_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// What the DCL forward keeps for the backward: O(N) statistics.
template <class T>
struct dcl_saved {
  T loss = 0;                 ///< the loss
  double grad_log_scale = 0;  ///< dL/dtheta, theta = log(1/tau), at upstream 1
  std::vector<T> lse;         ///< 2N: log-sum-exp over each anchor's 2N - 2 negatives
  index_t n = 0;              ///< samples N
  index_t d = 0;              ///< feature dimension D
  double temperature = 0;     ///< the options the statistics belong to
  double sigma = 0;           ///< DCLW's sigma (0 for DCL)
  bool weighted = false;      ///< DCLW
  loss_reduction reduction = loss_reduction::mean;  ///< reduction of the forward

  /// dL/dtemperature in the three parameterisations, at upstream 1.
  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

constexpr const char* dcl_fwd_name = "dcl_forward";
constexpr const char* dcl_bwd_name = "dcl_backward";

template <class T>
void dcl_check_inputs(const char* fn, const matrix_view<const T>& a, const matrix_view<const T>& b,
                      const dcl_options& o) {
  check_reduction(fn, o.reduction);
  if (o.weighted)
    CONTRASTIVE_CHECK(std::isfinite(o.sigma) && o.sigma > 0, fn,
                      ": 'sigma' must be finite and > 0, got ", o.sigma);
  check_pair_inputs(fn, a, b, o.temperature, o.tile_rows, o.tile_cols);
  CONTRASTIVE_CHECK(a.rows() >= 2, fn,
                    ": needs at least 2 samples (an anchor's negatives are the other 2N - 2 "
                    "views), got ",
                    a.rows());
}

inline sweep_shape dcl_sweep(index_t n, index_t d, const dcl_options& o) noexcept {
  return make_sweep_shape(o, true, n, n, d);
}

template <class T>
std::size_t dcl_forward_bytes(index_t n, index_t d, const dcl_options& o, std::size_t packing) {
  return array_bytes<online_softmax<double>>(2 * static_cast<std::size_t>(n)) + packing +
         pairwise_forward_bytes<T>(dcl_sweep(n, d, o)) + workspace_alignment;
}

template <class T>
std::size_t dcl_backward_bytes(index_t n, index_t d, const dcl_options& o, std::size_t packing) {
  return 2 * array_bytes<T>(2 * static_cast<std::size_t>(n)) + packing +
         pairwise_backward_bytes<T>(dcl_sweep(n, d, o)) + workspace_alignment;
}

/// The self sweep over [a; b] with the diagonal and each row's other view masked.
template <class T>
pairwise_problem<T> dcl_problem(const matrix_view<const T>* segments, const dcl_options& o) {
  pairwise_problem<T> p = make_pairwise_problem(segments, 2, segments, 2, o.temperature, o);
  p.self = true;
  p.partner_offset = segments[0].rows();
  return p;
}

/// The positive part of DCL/DCLW, O(N D): u_k = <a_k, b_k>, the weights w_k (1 for DCL) and
/// c_k = dP/du_k / lambda for P = -2 wv lambda sum_k w_k u_k (wv: the per-anchor weight).
struct dcl_positive {
  std::vector<double> u, c;
  double sum_wu = 0;  // sum_k w_k u_k
};

template <class T>
dcl_positive dcl_positive_terms(const matrix_view<const T>& a, const matrix_view<const T>& b,
                                bool weighted, double sigma, double wv) {
  const index_t n = a.rows();
  dcl_positive r;
  r.u.resize(static_cast<std::size_t>(n));
  r.c.resize(static_cast<std::size_t>(n));
  for (index_t k = 0; k < n; ++k) r.u[uz(k)] = dot_rows(a, k, b, k);
  if (!weighted) {
    for (std::size_t k = 0; k < r.u.size(); ++k) {
      r.sum_wu += r.u[k];
      r.c[k] = -2 * wv;
    }
    return r;
  }
  // p = softmax(u / sigma), w_k = 2 - N p_k; dP/du_k = -2 wv lambda (w_k - N p_k (u_k - ubar) /
  // sigma), ubar = sum_m p_m u_m.
  double m = -infinity<double>();
  for (std::size_t k = 0; k < r.u.size(); ++k) m = std::max(m, r.u[k] / sigma);
  double z = 0;
  for (std::size_t k = 0; k < r.u.size(); ++k) z += std::exp(r.u[k] / sigma - m);
  std::vector<double> pk(static_cast<std::size_t>(n));
  double ubar = 0;
  for (std::size_t k = 0; k < pk.size(); ++k) {
    pk[k] = std::exp(r.u[k] / sigma - m) / z;
    ubar += pk[k] * r.u[k];
  }
  for (std::size_t k = 0; k < pk.size(); ++k) {
    const double w = 2 - double(n) * pk[k];
    r.sum_wu += w * r.u[k];
    r.c[k] = -2 * wv * (w - double(n) * pk[k] * (r.u[k] - ubar) / sigma);
  }
  return r;
}

template <class T>
dcl_saved<T> dcl_forward_impl(const matrix_view<const T>& a_in, const matrix_view<const T>& b_in,
                              const dcl_options& o, workspace ws) {
  const char* fn = dcl_fwd_name;
  dcl_check_inputs(fn, a_in, b_in, o);
  const index_t n = a_in.rows(), d = a_in.cols(), n2 = 2 * n;
  const double lambda_d = 1.0 / o.temperature;
  arena ar(ws,
           dcl_forward_bytes<T>(n, d, o, packing_bytes(a_in) + packing_bytes(b_in)) -
               workspace_alignment,
           fn);
  const matrix_view<const T> seg[2] = {gemm_input(a_in, ar), gemm_input(b_in, ar)};
  auto* stats = ar.take<online_softmax<double>>(static_cast<std::size_t>(n2));
  for (index_t i = 0; i < n2; ++i) stats[i] = online_softmax<double>();
  const pairwise_problem<T> p = dcl_problem<T>(seg, o);
  pairwise_stats<T> st;
  st.row = st.col = stats;
  pairwise_forward(p, st, ar);

  const double wv = o.reduction == loss_reduction::mean ? 1.0 / double(n2) : 1.0;
  const dcl_positive pos = dcl_positive_terms(seg[0], seg[1], o.weighted, o.sigma, wv);
  dcl_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.sigma = o.weighted ? o.sigma : 0.0;
  saved.weighted = o.weighted;
  saved.reduction = o.reduction;
  saved.lse.resize(static_cast<std::size_t>(n2));
  double neg = 0, dneg = 0;
  for (index_t i = 0; i < n2; ++i) {
    const double lse = stats[i].lse();
    saved.lse[uz(i)] = static_cast<T>(lse);
    neg += lse;
    dneg += stats[i].mean();
  }
  // P = -2 wv lambda sum_k w_k u_k is linear in lambda, so dP/dtheta = P.
  const double positive = -2 * wv * lambda_d * pos.sum_wu;
  const double loss = wv * neg + positive;
  check_loss_finite(fn, static_cast<double>(static_cast<T>(loss)), o.temperature);  // as stored
  saved.loss = static_cast<T>(loss);
  saved.grad_log_scale = wv * dneg + positive;
  return saved;
}

template <class T>
temperature_gradient dcl_backward_impl(const matrix_view<const T>& a_in,
                                       const matrix_view<const T>& b_in, const dcl_saved<T>& saved,
                                       const matrix_view<T>& grad_a, const matrix_view<T>& grad_b,
                                       const dcl_options& o, double upstream, workspace ws) {
  const char* fn = dcl_bwd_name;
  dcl_check_inputs(fn, a_in, b_in, o);
  CONTRASTIVE_CHECK(saved.n == a_in.rows() && saved.d == a_in.cols() &&
                        saved.lse.size() == 2 * static_cast<std::size_t>(saved.n),
                    fn, ": 'saved' belongs to a ", saved.n, " x ", saved.d,
                    " batch, the inputs are ", a_in.rows(), " x ", a_in.cols());
  CONTRASTIVE_CHECK(saved.temperature == o.temperature && saved.weighted == o.weighted &&
                        (!o.weighted || saved.sigma == o.sigma) && saved.reduction == o.reduction,
                    fn, ": 'saved' was computed with other options (temperature ",
                    saved.temperature, ", weighted ", saved.weighted, ", sigma ", saved.sigma,
                    ") than these (temperature ", o.temperature, ", weighted ", o.weighted,
                    ", sigma ", o.sigma, ")");
  check_pair_gradients(fn, a_in, b_in, grad_a, grad_b, upstream);
  // DCLW's positive weights 2 - N softmax_i lie in (2 - N, 2).
  check_pair_gradient_bound(fn, 2 * a_in.rows(), std::max(max_abs(a_in), max_abs(b_in)), grad_a,
                            grad_b, upstream, 1.0 / o.temperature,
                            o.weighted ? 2.0 * static_cast<double>(a_in.rows()) : 1.0, o.accumulate,
                            saved.grad_log_scale);

  const index_t n = a_in.rows(), d = a_in.cols(), n2 = 2 * n;
  const double lambda_d = 1.0 / o.temperature;
  const std::size_t packing =
      packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, dcl_backward_bytes<T>(n, d, o, packing) - workspace_alignment, fn);
  const matrix_view<const T> seg[2] = {gemm_input(a_in, ar), gemm_input(b_in, ar)};
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  T* w = ar.take<T>(static_cast<std::size_t>(n2));
  T* lse = ar.take<T>(static_cast<std::size_t>(n2));
  const double wv = upstream * (o.reduction == loss_reduction::mean ? 1.0 / double(n2) : 1.0);
  for (index_t i = 0; i < n2; ++i) {
    w[i] = static_cast<T>(wv);
    lse[i] = saved.lse[uz(i)];
  }
  const pairwise_problem<T> p = dcl_problem<T>(seg, o);
  pairwise_coefficients<T> k;
  k.row_w = k.col_w = w;
  k.row_lse = k.col_lse = lse;
  const matrix_view<T> dz[2] = {ga.view(), gb.view()};
  pairwise_backward(p, k, dz, dz, ar);

  // The positive terms, O(N D): dL/da_k += lambda c_k b_k, dL/db_k += lambda c_k a_k.
  const dcl_positive pos = dcl_positive_terms(seg[0], seg[1], o.weighted, o.sigma, wv);
  for (index_t i = 0; i < n; ++i) {
    const T coef = static_cast<T>(lambda_d * pos.c[uz(i)]);
    for (index_t c = 0; c < d; ++c) {
      dz[0](i, c) += coef * seg[1](i, c);
      dz[1](i, c) += coef * seg[0](i, c);
    }
  }
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Scratch bytes for row-major N x D views (see info_nce_workspace_bytes).
template <class T>
std::size_t dcl_workspace_bytes(index_t n, index_t d, const dcl_options& o = {}) {
  const std::size_t f = detail::dcl_forward_bytes<T>(n, d, o, 0);
  const std::size_t b = detail::dcl_backward_bytes<T>(n, d, o, 0);
  return f > b ? f : b;
}

/// Exact bytes for these inputs, packing included (gradients assumed row-major).
template <class A, class B,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value, int> = 0>
std::size_t dcl_workspace_bytes(const A& a, const B& b, const dcl_options& o = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  const std::size_t pack = detail::packing_bytes(va) + detail::packing_bytes(vb);
  const std::size_t f = detail::dcl_forward_bytes<T>(va.rows(), va.cols(), o, pack);
  const std::size_t bw = detail::dcl_backward_bytes<T>(va.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

/// Forward pass of DCL (or DCLW with options.weighted): the loss and O(N) statistics.
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto dcl_forward(const A& a, const B& b, const dcl_options& o = {}, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  detail::require_same_value_type<T, decltype(vb)>();
  return detail::dcl_forward_impl<T>(va, vb, o, ws);
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da and dL/db. Returns
/// upstream * dL/dtemperature.
template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
dcl_parameter_gradients
    dcl_backward(const A& a, const B& b, const dcl_saved<T>& saved, GA&& grad_a, GB&& grad_b,
                 const dcl_options& o = {}, double upstream = 1.0, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga), decltype(gb)>();
  return detail::dcl_backward_impl<T>(va, vb, saved, ga, gb, o, upstream, ws);
}

/// Forward and backward in one call; returns the loss. The temperature gradient is written to
/// *parameter_grads when given.
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto dcl_forward_backward(const A& a, const B& b, GA&& grad_a, GB&& grad_b,
                          const dcl_options& o = {},
                          dcl_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto saved = dcl_forward(a, b, o, ws);
  const temperature_gradient tg =
      dcl_backward(a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_DCL_HPP
