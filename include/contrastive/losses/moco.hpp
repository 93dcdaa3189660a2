#ifndef CONTRASTIVE_LOSSES_MOCO_HPP
#define CONTRASTIVE_LOSSES_MOCO_HPP

// InfoNCE of N queries a against their keys b and a queue of K negative keys (MoCo, He et al.
// 2020), streamed: Y = [b; queue] (or the queue alone, MoCo's own form, with the positive merged
// in O(N D)) is swept in tiles, so neither the N x (N + K) logits nor an N x K block is formed.
// Gradients for the queries and the keys only; the queue is detached (its tiles get no product).
// Math and gradients: docs/moco.md; the ring buffer: state/negative_queue.hpp.

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
#include "contrastive/losses/moco_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// What the queue-loss forward keeps for the backward: O(N) statistics.
template <class T>
struct moco_saved {
  T loss = 0;                   ///< the loss
  double grad_log_scale = 0;    ///< dL/dtheta, theta = log(1/tau), at upstream 1
  std::vector<T> lse;           ///< N: log-sum-exp over each query's candidates
  index_t n = 0;                ///< queries N
  index_t k = 0;                ///< queued negatives K
  index_t d = 0;                ///< feature dimension D
  double temperature = 0;       ///< the options the statistics belong to
  bool batch_negatives = true;  ///< see moco_options
  loss_reduction reduction = loss_reduction::mean;  ///< reduction of the forward

  /// dL/dtemperature in the three parameterisations, at upstream 1.
  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

constexpr const char* moco_fwd_name = "moco_forward";
constexpr const char* moco_bwd_name = "moco_backward";

template <class T>
void moco_check_inputs(const char* fn, const matrix_view<const T>& a, const matrix_view<const T>& b,
                       const matrix_view<const T>& q, const moco_options& o) {
  check_reduction(fn, o.reduction);
  check_pair_inputs(fn, a, b, o.temperature, o.tile_rows, o.tile_cols);
  check_matrix(fn, "queue", q);
  CONTRASTIVE_CHECK(q.rows() == 0 || q.cols() == a.cols(), fn, ": 'queue' has ", q.cols(),
                    " columns, expected ", a.cols(), " (columns of 'a')");
  check_finite(fn, "queue", q);
}

inline sweep_shape moco_sweep(index_t n, index_t k, index_t d, const moco_options& o) noexcept {
  const index_t my = o.batch_negatives ? (n > k ? n : k) : k;
  return make_sweep_shape(o, false, n, my > 0 ? my : 1, d);
}

template <class T>
std::size_t moco_forward_bytes(index_t n, index_t k, index_t d, const moco_options& o,
                               std::size_t packing) {
  return array_bytes<online_softmax<double>>(static_cast<std::size_t>(n)) + packing +
         pairwise_forward_bytes<T>(moco_sweep(n, k, d, o)) + workspace_alignment;
}

template <class T>
std::size_t moco_backward_bytes(index_t n, index_t k, index_t d, const moco_options& o,
                                std::size_t packing) {
  return 2 * array_bytes<T>(static_cast<std::size_t>(n)) + packing +
         pairwise_backward_bytes<T>(moco_sweep(n, k, d, o)) + workspace_alignment;
}

/// X = a; Y = [b; queue] (batch negatives) or [queue].
template <class T>
pairwise_problem<T> moco_problem(const matrix_view<const T>* a, const matrix_view<const T>* y,
                                 const moco_options& o) {
  return make_pairwise_problem(a, 1, o.batch_negatives ? y : y + 1, o.batch_negatives ? 2 : 1,
                               o.temperature, o);
}

template <class T>
moco_saved<T> moco_forward_impl(const matrix_view<const T>& a_in, const matrix_view<const T>& b_in,
                                const matrix_view<const T>& q_in, const moco_options& o,
                                workspace ws) {
  const char* fn = moco_fwd_name;
  moco_check_inputs(fn, a_in, b_in, q_in, o);
  const index_t n = a_in.rows(), k = q_in.rows(), d = a_in.cols();
  const double lambda_d = 1.0 / o.temperature;
  arena ar(ws,
           moco_forward_bytes<T>(n, k, d, o,
                                 packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(q_in)) -
               workspace_alignment,
           fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> y[2] = {gemm_input(b_in, ar), gemm_input(q_in, ar)};
  auto* stats = ar.take<online_softmax<double>>(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) stats[i] = online_softmax<double>();
  const pairwise_problem<T> p = moco_problem<T>(&a, y, o);
  pairwise_stats<T> st;
  st.row = stats;
  pairwise_forward(p, st, ar);

  moco_saved<T> saved;
  saved.n = n;
  saved.k = k;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.batch_negatives = o.batch_negatives;
  saved.reduction = o.reduction;
  saved.lse.resize(static_cast<std::size_t>(n));
  double loss = 0, dtheta = 0;
  for (index_t i = 0; i < n; ++i) {
    const double s_pos = lambda_d * dot_rows(a, i, y[0], i);
    if (!o.batch_negatives) stats[i].push(s_pos);  // MoCo: the own key joins the queue
    const double lse = stats[i].lse();
    saved.lse[uz(i)] = static_cast<T>(lse);
    loss += lse - s_pos;
    dtheta += stats[i].mean() - s_pos;
  }
  const double w = o.reduction == loss_reduction::mean ? 1.0 / double(n) : 1.0;
  check_loss_finite(fn, w * loss, o.temperature);
  saved.loss = static_cast<T>(w * loss);
  saved.grad_log_scale = w * dtheta;
  return saved;
}

template <class T>
temperature_gradient moco_backward_impl(const matrix_view<const T>& a_in,
                                        const matrix_view<const T>& b_in,
                                        const matrix_view<const T>& q_in,
                                        const moco_saved<T>& saved, const matrix_view<T>& grad_a,
                                        const matrix_view<T>& grad_b, const moco_options& o,
                                        double upstream, workspace ws) {
  const char* fn = moco_bwd_name;
  moco_check_inputs(fn, a_in, b_in, q_in, o);
  CONTRASTIVE_CHECK(saved.n == a_in.rows() && saved.k == q_in.rows() && saved.d == a_in.cols() &&
                        saved.lse.size() == static_cast<std::size_t>(saved.n),
                    fn, ": 'saved' belongs to ", saved.n, " queries and ", saved.k,
                    " queued keys of dimension ", saved.d, ", the inputs are ", a_in.rows(), ", ",
                    q_in.rows(), " and ", a_in.cols());
  CONTRASTIVE_CHECK(
      saved.temperature == o.temperature && saved.batch_negatives == o.batch_negatives &&
          saved.reduction == o.reduction,
      fn, ": 'saved' was computed with other options (temperature ", saved.temperature,
      ", batch_negatives ", saved.batch_negatives, ") than these (temperature ", o.temperature,
      ", batch_negatives ", o.batch_negatives, ")");
  check_pair_gradients(fn, a_in, b_in, grad_a, grad_b, upstream);
  check_no_alias(fn, "grad_a", grad_a, "queue", q_in);
  check_no_alias(fn, "grad_b", grad_b, "queue", q_in);
  // N + K candidates per query; the queue's magnitude enters the queries' gradient.
  check_pair_gradient_bound(fn, a_in.rows() + q_in.rows(),
                            std::max({max_abs(a_in), max_abs(b_in), max_abs(q_in)}), grad_a, grad_b,
                            upstream, 1.0 / o.temperature, 1.0, o.accumulate, saved.grad_log_scale);

  const index_t n = a_in.rows(), k = q_in.rows(), d = a_in.cols();
  const double lambda_d = 1.0 / o.temperature;
  const std::size_t packing = packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(q_in) +
                              packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, moco_backward_bytes<T>(n, k, d, o, packing) - workspace_alignment, fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> y[2] = {gemm_input(b_in, ar), gemm_input(q_in, ar)};
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  T* w = ar.take<T>(static_cast<std::size_t>(n));
  T* lse = ar.take<T>(static_cast<std::size_t>(n));
  const double wv = upstream * (o.reduction == loss_reduction::mean ? 1.0 / double(n) : 1.0);
  for (index_t i = 0; i < n; ++i) {
    w[i] = static_cast<T>(wv);
    lse[i] = saved.lse[uz(i)];
  }
  const pairwise_problem<T> p = moco_problem<T>(&a, y, o);
  pairwise_coefficients<T> coef;
  coef.row_w = w;
  coef.row_lse = lse;
  const matrix_view<T> da = ga.view();
  // dY: the keys' segment only; the queue's has no data pointer, so its tiles form no product.
  const matrix_view<T> dy[2] = {gb.view(), matrix_view<T>()};
  pairwise_backward(p, coef, &da, o.batch_negatives ? dy : dy + 1, ar);

  // The positive, O(N D): dl_i/ds_ii = p_ii - 1, where p_ii is already in the sweep with batch
  // negatives (the diagonal of the keys' segment) and is added here in MoCo's form.
  const matrix_view<T> db = gb.view();
  for (index_t i = 0; i < n; ++i) {
    double g = -1;
    if (!o.batch_negatives)
      g += std::exp(lambda_d * dot_rows(a, i, y[0], i) - double(saved.lse[uz(i)]));
    const T c = static_cast<T>(lambda_d * wv * g);
    for (index_t j = 0; j < d; ++j) {
      da(i, j) += c * y[0](i, j);
      db(i, j) += c * a(i, j);
    }
  }
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Scratch bytes for row-major N x D queries/keys and a K x D queue.
template <class T>
std::size_t moco_workspace_bytes(index_t n, index_t k, index_t d, const moco_options& o = {}) {
  const std::size_t f = detail::moco_forward_bytes<T>(n, k, d, o, 0);
  const std::size_t b = detail::moco_backward_bytes<T>(n, k, d, o, 0);
  return f > b ? f : b;
}

/// Exact bytes for these inputs, packing included (gradients assumed row-major).
template <
    class A, class B, class Q,
    std::enable_if_t<
        is_tensor_like<A>::value && is_tensor_like<B>::value && is_tensor_like<Q>::value, int> = 0>
std::size_t moco_workspace_bytes(const A& a, const B& b, const Q& queue,
                                 const moco_options& o = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto vq = detail::input_view(queue);
  using T = typename decltype(va)::value_type;
  const std::size_t pack =
      detail::packing_bytes(va) + detail::packing_bytes(vb) + detail::packing_bytes(vq);
  const std::size_t f = detail::moco_forward_bytes<T>(va.rows(), vq.rows(), va.cols(), o, pack);
  const std::size_t bw = detail::moco_backward_bytes<T>(va.rows(), vq.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

/// Forward pass: queries a, keys b (N x D), queue (K x D, e.g. negative_queue::view()).
template <class A, class B, class Q>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<Q>)
auto moco_forward(const A& a, const B& b, const Q& queue, const moco_options& o = {},
                  workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto vq = detail::input_view(queue);
  using T = typename decltype(va)::value_type;
  detail::require_same_value_type<T, decltype(vb), decltype(vq)>();
  return detail::moco_forward_impl<T>(va, vb, vq, o, ws);
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da and dL/db; the
/// queue gets no gradient. Returns upstream * dL/dtemperature.
template <class A, class B, class Q, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<Q>&& writable_tensor<GA&&>&&
                         writable_tensor<GB&&>)
moco_parameter_gradients
    moco_backward(const A& a, const B& b, const Q& queue, const moco_saved<T>& saved, GA&& grad_a,
                  GB&& grad_b, const moco_options& o = {}, double upstream = 1.0,
                  workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto vq = detail::input_view(queue);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(vq), decltype(ga),
                                  decltype(gb)>();
  return detail::moco_backward_impl<T>(va, vb, vq, saved, ga, gb, o, upstream, ws);
}

/// Forward and backward in one call; returns the loss. The temperature gradient is written to
/// *parameter_grads when given.
template <class A, class B, class Q, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<Q>&& writable_tensor<GA&&>&&
                         writable_tensor<GB&&>)
auto moco_forward_backward(const A& a, const B& b, const Q& queue, GA&& grad_a, GB&& grad_b,
                           const moco_options& o = {},
                           moco_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto saved = moco_forward(a, b, queue, o, ws);
  const temperature_gradient tg = moco_backward(a, b, queue, saved, std::forward<GA>(grad_a),
                                                std::forward<GB>(grad_b), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_MOCO_HPP
