#ifndef CONTRASTIVE_LOSSES_BROWNIAN_BRIDGE_HPP
#define CONTRASTIVE_LOSSES_BROWNIAN_BRIDGE_HPP

// Brownian-bridge loss (Jiang et al., CVPR 2023; docs/brownian_bridge.md#loss): pulls the
// augmented image embedding a_j = va_j of pair j onto the bridge mean between its image v_j
// (t = 1) and text u_j (t = 0):
//
//   L_Br = (1/N) sum_j w_j ||a_j - mu(v_j, u_j, t_j)||^2,
//   mu = m / max(||m||, 1e-12),  m = t v + (1 - t) u,
//   w_j = 1 (default, the paper's loss) or, with `nll_weight`, 1 / (2 t_j (1 - t_j)) (the
//   Gaussian negative log-likelihood weight of the model va ~ N(mu, t (1 - t) I), up to a
//   constant; it only matters for random t).
//
// Reading chosen: the paper prints a closed form (t<v,a> + (1-t)<u,a>) / (t^2 + (1-t)^2 +
// 2t(1-t)<v,u>) that lacks "2 - 2*" and a square root (minimising it would push a away from mu);
// the loss here is the squared distance, which for unit vectors equals
// 2 - 2 (t<v,a> + (1-t)<u,a>) / sqrt(t^2 + (1-t)^2 + 2t(1-t)<v,u>).
// t is fixed (0.25 by default, the paper's value) or drawn per row exactly as the sampler draws
// it (sampling/brownian_bridge.hpp: Philox stream 3, seed, id_j, step), so a loss and a sampler
// given the same seed, step and ids use the same t_j.
//
// Backward: with g_mu = -(2 w_j / N)(a_j - mu_j) and g_m = (g_mu - mu <mu, g_mu>) / r,
// dL/dv_j = t g_m, dL/du_j = (1 - t) g_m, dL/da_j = (2 w_j / N)(a_j - mu_j) (zero with
// `detach_a`: a from a momentum encoder reaches the encoders only through mu), and
// dL/dt_j = <v_j - u_j, g_m> (+ dw_j/dt_j ||a_j - mu_j||^2 / N with `nll_weight`).
//
// Inputs are used as given (normalise them first); a zero-norm row or a non-finite value in
// v, u or a, t outside [0, 1] (or in {0, 1} with `nll_weight`) is contrastive::invalid_argument.

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_common.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/modal_common.hpp"
#include "contrastive/core/parallel.hpp"
#include "contrastive/core/traits.hpp"
#include "contrastive/core/workspace.hpp"
#include "contrastive/losses/brownian_bridge_loss_options.hpp"
#include "contrastive/sampling/brownian_bridge.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

template <class T>
struct brownian_bridge_loss_saved {
  T loss = 0;
  index_t n = 0, d = 0;
  std::vector<double> t;  // per-row t
  bool nll_weight = false;
};

namespace detail {

template <class T>
void bridge_loss_check(const char* fn, const matrix_view<const T>& v, const matrix_view<const T>& u,
                       const matrix_view<const T>& a, const brownian_bridge_loss_options& o) {
  const brownian_bridge_options b = bridge_loss_time_options(o);
  bridge_check_endpoints(fn, v, u, b, false, false);  // shapes of v/u, t range, ids, rows
  check_matrix(fn, "a_aug", a);
  check_shape(fn, "a_aug", a, v.rows(), v.cols(), "the shape of 'a'");
  bridge_loss_check_weight(fn, o);
  check_rows(fn, "a_aug", a);
}

template <class T>
brownian_bridge_loss_saved<T> bridge_loss_forward(const matrix_view<const T>& v,
                                                  const matrix_view<const T>& u,
                                                  const matrix_view<const T>& a,
                                                  const brownian_bridge_loss_options& o) {
  const char* fn = "brownian_bridge_loss_forward";
  bridge_loss_check(fn, v, u, a, o);
  const index_t n = v.rows(), d = v.cols();
  const brownian_bridge_options b = bridge_loss_time_options(o);
  brownian_bridge_loss_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.nll_weight = o.nll_weight;
  saved.t.resize(static_cast<std::size_t>(n));
  std::vector<double> terms(static_cast<std::size_t>(n));
  const int threads = resolve_threads(o.num_threads, 64.0 * double(n) * double(d));
  bridge_scratch scratch(threads, d);
  bridge_for_rows(n, threads, [&](index_t j, int tid) {
    double* mu = scratch.get(tid);
    const double t = bridge_t(b, j);
    saved.t[static_cast<std::size_t>(j)] = t;
    bridge_mean_row(v, u, j, t, mu);
    double s = 0;
    for (index_t k = 0; k < d; ++k) {
      const double e = double(a(j, k)) - mu[k];
      s += e * e;
    }
    terms[static_cast<std::size_t>(j)] = bridge_loss_weight(t, o.nll_weight) * s;
  });
  double loss = 0;
  for (const double x : terms) loss += x;
  check_loss_finite(fn, static_cast<double>(static_cast<T>(loss / double(n))));
  saved.loss = static_cast<T>(loss / double(n));
  return saved;
}

template <class T>
brownian_bridge_loss_parameter_gradients bridge_loss_backward(
    const matrix_view<const T>& v, const matrix_view<const T>& u, const matrix_view<const T>& a,
    const brownian_bridge_loss_saved<T>& saved, const matrix_view<T>& gv, const matrix_view<T>& gu,
    const matrix_view<T>& ga, const brownian_bridge_loss_options& o, double upstream) {
  const char* fn = "brownian_bridge_loss_backward";
  bridge_loss_check(fn, v, u, a, o);
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
  const index_t n = v.rows(), d = v.cols();
  CONTRASTIVE_CHECK(saved.n == n && saved.d == d && saved.t.size() == static_cast<std::size_t>(n),
                    fn, ": 'saved' belongs to a ", saved.n, " x ", saved.d,
                    " batch, the inputs are ", n, " x ", d);
  CONTRASTIVE_CHECK(saved.nll_weight == o.nll_weight, fn, ": 'saved' was computed with nll_weight ",
                    saved.nll_weight, ", these options have ", o.nll_weight);
  const char* names[3] = {"grad_a", "grad_b", "grad_a_aug"};
  const matrix_view<T>* outs[3] = {&gv, &gu, &ga};
  for (int k = 0; k < 3; ++k) {
    check_matrix(fn, names[k], *outs[k]);
    check_shape(fn, names[k], *outs[k], n, d, "the shape of 'a'");
    check_writable_layout(fn, names[k], *outs[k]);
    check_no_alias(fn, names[k], *outs[k], "a", v);
    check_no_alias(fn, names[k], *outs[k], "b", u);
    check_no_alias(fn, names[k], *outs[k], "a_aug", a);
    for (int j = 0; j < k; ++j) check_no_alias(fn, names[k], *outs[k], names[j], *outs[j]);
  }

  brownian_bridge_loss_parameter_gradients out;
  out.t_rows.assign(static_cast<std::size_t>(n), 0.0);
  const int threads = resolve_threads(o.num_threads, 64.0 * double(n) * double(d));
  bridge_scratch scratch(threads, 2 * d);
  const double scale = upstream / double(n);
  bridge_for_rows_checked<T>(
      fn, n, threads,
      [&](index_t j, int tid, bool store) {
        double* mu = scratch.get(tid);
        double* g = mu + d;
        const double t = saved.t[static_cast<std::size_t>(j)];
        const double r = bridge_mean_row(v, u, j, t, mu);
        const double w = bridge_loss_weight(t, o.nll_weight);
        double dist = 0;
        for (index_t k = 0; k < d; ++k) {
          const double e = double(a(j, k)) - mu[k];
          dist += e * e;
          g[k] = 2 * w * scale * e;  // dL/da
        }
        bool ok = o.detach_a_aug || bridge_put_row(ga, j, g, o.accumulate, store);
        for (index_t k = 0; k < d; ++k) g[k] = -g[k];  // dL/dmu
        bridge_mean_backward(mu, r, d, g);             // dL/dm
        double dt = 0;
        for (index_t k = 0; k < d; ++k) dt += (double(v(j, k)) - double(u(j, k))) * g[k];
        dt += bridge_loss_weight_dt(t, o.nll_weight) * dist * scale;
        out.t_rows[static_cast<std::size_t>(j)] = dt;
        ok = std::isfinite(dt) && ok;
        for (index_t k = 0; k < d; ++k) mu[k] = t * g[k];
        ok = bridge_put_row(gv, j, mu, o.accumulate, store) && ok;
        for (index_t k = 0; k < d; ++k) mu[k] = (1 - t) * g[k];
        return bridge_put_row(gu, j, mu, o.accumulate, store) && ok;
      },
      [&] {
        for (const double x : out.t_rows) out.t += x;
        CONTRASTIVE_CHECK(std::isfinite(out.t), fn, ": dL/dt overflows; scale 'upstream' down");
      });
  if (o.detach_a_aug && !o.accumulate) {
    for (index_t i = 0; i < n; ++i)
      for (index_t k = 0; k < d; ++k) ga(i, k) = T(0);
  }
  return out;
}

}  // namespace detail

/// Scratch bytes: none (per-thread rows are allocated inside; the call takes a workspace only to
/// share the shape of every loss).
template <class T>
std::size_t brownian_bridge_loss_workspace_bytes(
    index_t, index_t, const brownian_bridge_loss_options& = {}) noexcept {
  return 0;
}

/// The same for these inputs.
template <
    class A, class B, class AA,
    std::enable_if_t<
        is_tensor_like<A>::value && is_tensor_like<B>::value && is_tensor_like<AA>::value, int> = 0>
std::size_t brownian_bridge_loss_workspace_bytes(
    const A&, const B&, const AA&, const brownian_bridge_loss_options& = {}) noexcept {
  return 0;
}

/// Forward: returns L_Br and the per-row t the backward reuses. `a` (image) and `b` (text) are
/// the pair's endpoints, `a_aug` the augmented image embedding (N x D each).
template <class A, class B, class AA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<AA>)
auto brownian_bridge_loss_forward(const A& a, const B& b, const AA& a_aug,
                                  const brownian_bridge_loss_options& o = {}, workspace = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/brownian_bridge.cuh
    return detail::device_backend_of<detail::brownian_bridge_loss_tag, A>::type::forward(
        as_view(a), as_view(b), as_view(a_aug), o);
  } else {
    const auto va = detail::input_view(a);
    const auto vb = detail::input_view(b);
    const auto vaa = detail::input_view(a_aug);
    using T = typename decltype(va)::value_type;
    detail::require_same_value_type<T, decltype(vb), decltype(vaa)>();
    return detail::bridge_loss_forward<T>(va, vb, vaa, o);
  }
}

/// Backward of a forward run on device views (cuda/brownian_bridge.cuh).
template <class A, class B, class AA, class GA, class GB, class GAA>
brownian_bridge_loss_parameter_gradients brownian_bridge_loss_backward(
    const A& a, const B& b, const AA& a_aug, const cuda::brownian_bridge_loss_device_saved& saved,
    GA&& grad_a, GB&& grad_b, GAA&& grad_a_aug, const brownian_bridge_loss_options& o = {},
    double upstream = 1.0, workspace = {}) {
  return detail::device_backend_of<detail::brownian_bridge_loss_tag, A>::type::backward(
      as_view(a), as_view(b), as_view(a_aug), saved, as_view(grad_a), as_view(grad_b),
      as_view(grad_a_aug), o, upstream);
}

/// Backward: writes (or adds) upstream * dL/da, dL/db and dL/da_aug; returns upstream * dL/dt
/// (per row and summed).
template <class A, class B, class AA, class T, class GA, class GB, class GAA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<AA>&& writable_tensor<GA&&>&&
                         writable_tensor<GB&&>&& writable_tensor<GAA&&>)
brownian_bridge_loss_parameter_gradients
    brownian_bridge_loss_backward(const A& a, const B& b, const AA& a_aug,
                                  const brownian_bridge_loss_saved<T>& saved, GA&& grad_a,
                                  GB&& grad_b, GAA&& grad_a_aug,
                                  const brownian_bridge_loss_options& o = {}, double upstream = 1.0,
                                  workspace = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto vaa = detail::input_view(a_aug);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  const auto gaa = detail::output_view(std::forward<GAA>(grad_a_aug));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(vaa), decltype(ga),
                                  decltype(gb), decltype(gaa)>();
  return detail::bridge_loss_backward<T>(va, vb, vaa, saved, ga, gb, gaa, o, upstream);
}

/// Forward and backward in one call; returns the loss (and dL/dt through *parameter_grads).
template <class A, class B, class AA, class GA, class GB, class GAA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<AA>&& writable_tensor<GA&&>&&
                         writable_tensor<GB&&>&& writable_tensor<GAA&&>)
auto brownian_bridge_loss_forward_backward(
    const A& a, const B& b, const AA& a_aug, GA&& grad_a, GB&& grad_b, GAA&& grad_a_aug,
    const brownian_bridge_loss_options& o = {},
    brownian_bridge_loss_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto saved = brownian_bridge_loss_forward(a, b, a_aug, o, ws);
  auto g = brownian_bridge_loss_backward(a, b, a_aug, saved, std::forward<GA>(grad_a),
                                         std::forward<GB>(grad_b), std::forward<GAA>(grad_a_aug), o,
                                         1.0, ws);
  if (parameter_grads) *parameter_grads = std::move(g);
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_BROWNIAN_BRIDGE_HPP
