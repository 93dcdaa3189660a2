#ifndef CONTRASTIVE_LOSSES_SUPCON_HPP
#define CONTRASTIVE_LOSSES_SUPCON_HPP

// Supervised contrastive loss over one labelled set (Khosla et al. 2020, the L_out form, as
// pytorch-metric-learning's SupConLoss computes it): M x D features and M labels, anchor i's
// positives are the other rows with its label, its denominator all other rows, the loss the mean
// over its positives of -log softmax. Anchors without positives are skipped and counted. The
// symmetric logits S = A A^T / tau are swept in self mode over one segment (only tiles J >= I),
// label matches tested inside the tiles. The ntxent_pairs convention (pytorch-metric-learning's
// NTXentLoss with labels) sweeps twice forward: the negatives-only normalisers, then the positive
// pairs. Math and gradients: docs/supcon.md.

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
#include "contrastive/losses/supcon_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// What the SupCon forward keeps for the backward: O(M) statistics.
template <class T>
struct supcon_saved {
  T loss = 0;                 ///< the loss
  double grad_log_scale = 0;  ///< dL/dtheta, theta = log(1/tau), at upstream 1
  /// M: log-sum-exp over the other M - 1 rows (ntxent_pairs: over the anchor's negatives only,
  /// -inf when it has none)
  std::vector<T> lse;
  std::vector<index_t> positives;  ///< M: |P_i|, the other rows with the anchor's label
  index_t skipped = 0;             ///< anchors without positives (no loss, no gradient)
  /// ntxent_pairs, M: sum over the anchor's positives p of sigmoid(lse_i - s_ip)
  std::vector<T> pair_weight;
  index_t pairs = 0;  ///< ntxent_pairs: the positive pairs (i, p), both orders counted
  supcon_convention convention = supcon_convention::l_out;  ///< see supcon_options
  index_t m = 0;                                            ///< rows M
  index_t d = 0;                                            ///< feature dimension D
  double temperature = 0;                           ///< the options the statistics belong to
  double base_temperature = 0;                      ///< see supcon_options
  loss_reduction reduction = loss_reduction::mean;  ///< reduction of the forward

  /// dL/dtemperature in the three parameterisations, at upstream 1.
  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

constexpr const char* supcon_fwd_name = "supcon_forward";
constexpr const char* supcon_bwd_name = "supcon_backward";

template <class T>
void supcon_check_inputs(const char* fn, const matrix_view<const T>& a, const supcon_options& o) {
  check_reduction(fn, o.reduction);
  check_matrix(fn, "a", a);
  check_temperature(fn, o.temperature);
  CONTRASTIVE_CHECK(std::isfinite(o.base_temperature) && o.base_temperature >= 0, fn,
                    ": 'base_temperature' must be finite and >= 0 (0: off), got ",
                    o.base_temperature);
  CONTRASTIVE_CHECK(
      o.convention == supcon_convention::l_out || o.convention == supcon_convention::ntxent_pairs,
      fn, ": 'convention' must be l_out or ntxent_pairs, got ", static_cast<int>(o.convention));
  check_tiles(fn, o.tile_rows, o.tile_cols);
  CONTRASTIVE_CHECK(a.rows() > 0, fn, ": empty batch ('a' has 0 rows)");
  CONTRASTIVE_CHECK(a.cols() > 0, fn, ": 'a' has 0 columns (D must be > 0)");
  CONTRASTIVE_CHECK(!o.labels.empty(), fn, ": 'labels' are required (one per row of 'a')");
  check_labels(fn, "labels", o.labels, a.rows());
  check_finite(fn, "a", a);
}

inline sweep_shape supcon_sweep(index_t m, index_t d, const supcon_options& o) noexcept {
  return make_sweep_shape(o, true, m, m, d);
}

/// ntxent_pairs: per chunk and anchor, the sums over its positive pairs of softplus(L_i - s_ip),
/// sigmoid(L_i - s_ip) and sigmoid(L_i - s_ip) s_ip.
constexpr std::size_t supcon_pair_sums = 3 * sweep_chunks;

template <class T>
std::size_t supcon_forward_bytes(index_t m, index_t d, const supcon_options& o,
                                 std::size_t packing) {
  const auto um = static_cast<std::size_t>(m);
  std::size_t bytes = array_bytes<online_softmax<double>>(um) + array_bytes<double>(um) +
                      array_bytes<std::int64_t>(um) + packing +
                      pairwise_forward_bytes<T>(supcon_sweep(m, d, o)) + workspace_alignment;
  if (o.convention == supcon_convention::ntxent_pairs)
    bytes += array_bytes<double>(checked_product(supcon_pair_sums, um)) +
             pairwise_backward_bytes<T>(supcon_sweep(m, d, o));
  return bytes;
}

template <class T>
std::size_t supcon_backward_bytes(index_t m, index_t d, const supcon_options& o,
                                  std::size_t packing) {
  const auto um = static_cast<std::size_t>(m);
  return 3 * array_bytes<T>(um) + packing + pairwise_backward_bytes<T>(supcon_sweep(m, d, o)) +
         workspace_alignment;
}

template <class T>
pairwise_problem<T> supcon_problem(const matrix_view<const T>* a, const supcon_options& o) {
  pairwise_problem<T> p = make_pairwise_problem(a, 1, a, 1, o.temperature, o);
  p.self = true;
  p.label_x = p.label_y = o.labels.data;
  return p;
}

/// The factor of the authors' reference code: tau / base_tau, or 1.
inline double supcon_factor(const supcon_options& o) noexcept {
  return o.base_temperature > 0 ? o.temperature / o.base_temperature : 1.0;
}

/// Stable sigmoid.
template <class T>
T supcon_sigmoid(T x) noexcept {
  using std::exp;
  return x >= T(0) ? T(1) / (T(1) + exp(-x)) : exp(x) / (T(1) + exp(x));
}

/// ntxent_pairs, after the negatives-only forward (lneg[i] = L_i): one more sweep over the
/// positive pairs (i, p) folds softplus(L_i - s_ip), sigmoid(L_i - s_ip) and
/// sigmoid(L_i - s_ip) s_ip into per-chunk sums of each anchor, each tile serving its rows and
/// (off the diagonal) its columns. Returns the sums, 3 per anchor, merged in fixed chunk order.
template <class T>
const double* supcon_pair_sweep(const pairwise_problem<T>& p, const double* lneg, index_t m,
                                arena& ar) {
  const std::size_t um = static_cast<std::size_t>(m);
  double* sums = ar.take<double>(supcon_pair_sums * um);
  std::fill(sums, sums + supcon_pair_sums * um, 0.0);
  auto fold = [](double* acc, double x, double s) {
    if (x == -infinity<double>()) return;  // no negatives: the pair's loss and weight are 0
    acc[0] += std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x)));  // softplus
    const double sig = supcon_sigmoid(x);
    acc[1] += sig;
    acc[2] += sig * s;
  };
  auto kernel = [&](const row_block& I, const row_block& J, const tile_mask& mask,
                    const tile_map<T>& s, tile_map<T>&, int c) {
    double* acc = sums + 3 * uz(c) * um;
    const bool diag = I.global == J.global;  // self mode: one blocking for rows and columns
    for (index_t r = 0; r < I.rows; ++r) {
      const index_t i = I.global + r;
      for (index_t k = 0; k < J.rows; ++k) {
        const index_t j = J.global + k;
        if (p.label_y[j] != p.label_x[i] || mask.masked(r, k)) continue;
        const double sv = static_cast<double>(s(r, k));
        fold(acc + 3 * uz(i), lneg[i] - sv, sv);
        if (!diag) fold(acc + 3 * uz(j), lneg[j] - sv, sv);
      }
    }
  };
  const matrix_view<T>* no_products = nullptr;  // a forward: only folds the tiles
  pairwise_sweep_tiles(p, kernel, no_products, no_products, ar);
  for (int c = 1; c < sweep_chunks; ++c)  // fixed order, into chunk 0
    for (std::size_t k = 0; k < 3 * um; ++k) sums[k] += sums[3 * uz(c) * um + k];
  return sums;
}

/// ntxent_pairs backward: the symmetrised logit gradient of a tile. Entry (i, j) is
///   negative: w_i exp(s - lse_i) + w_j exp(s - lse_j)   (w_i = weight * pair_weight_i)
///   positive: -weight (sigmoid(L_i - s) + sigmoid(L_j - s))
/// with lse_i = L_i, or +inf for an anchor without negatives (its w_i is 0).
template <class T>
struct supcon_pair_gradient {
  const pairwise_problem<T>* p;
  const T* w;
  const T* lse;
  const T* lneg;
  T weight;

  void operator()(const row_block& I, const row_block& J, const tile_mask& mask,
                  const tile_map<T>& s, tile_map<T>& g, int) const {
    using cvec = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;
    const cvec wc(w + J.global, J.rows), lc(lse + J.global, J.rows);
    Eigen::Array<T, 1, Eigen::Dynamic> e(J.rows);  // g may be the memory of s
    for (index_t r = 0; r < I.rows; ++r) {
      const index_t i = I.global + r;
      const auto sr = s.row(r).array();
      // An anchor's positive can exceed its negatives' lse: exp may overflow there, and the
      // positive's own formula replaces it.
      e = w[i] * (sr - lse[i]).exp() + wc * (sr - lc).exp();
      for (index_t k = 0; k < J.rows; ++k) {
        const index_t j = J.global + k;
        if (p->label_y[j] != p->label_x[i] || mask.masked(r, k)) continue;
        e(k) = -weight * (supcon_sigmoid(lneg[i] - sr(k)) + supcon_sigmoid(lneg[j] - sr(k)));
      }
      g.row(r).array() = e;
    }
    mask.for_each([&](index_t r, index_t c) { g(r, c) = 0; });
  }
};

template <class T>
supcon_saved<T> supcon_forward_impl(const matrix_view<const T>& a_in, const supcon_options& o,
                                    workspace ws) {
  const char* fn = supcon_fwd_name;
  supcon_check_inputs(fn, a_in, o);
  const index_t m = a_in.rows(), d = a_in.cols();
  arena ar(ws, supcon_forward_bytes<T>(m, d, o, packing_bytes(a_in)) - workspace_alignment, fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  auto* stats = ar.take<online_softmax<double>>(static_cast<std::size_t>(m));
  auto* target = ar.take<double>(static_cast<std::size_t>(m));
  auto* sort_scratch = ar.take<std::int64_t>(static_cast<std::size_t>(m));
  for (index_t i = 0; i < m; ++i) {
    stats[i] = online_softmax<double>();
    target[i] = 0;
  }
  pairwise_problem<T> p = supcon_problem<T>(&a, o);
  const bool pairs = o.convention == supcon_convention::ntxent_pairs;
  pairwise_stats<T> st;
  st.row = st.col = stats;
  if (pairs)
    p.exclude_label_matches = true;  // the normalisers over the negatives only
  else
    st.row_target = st.col_target = target;
  pairwise_forward(p, st, ar);
  p.exclude_label_matches = false;
  const double* pair_sums = nullptr;
  if (pairs) {
    for (index_t i = 0; i < m; ++i) target[i] = stats[i].lse();
    pair_sums = supcon_pair_sweep(p, target, m, ar);
  }

  supcon_saved<T> saved;
  saved.convention = o.convention;
  saved.m = m;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.base_temperature = o.base_temperature;
  saved.reduction = o.reduction;
  saved.positives.resize(static_cast<std::size_t>(m));
  count_matches(o.labels, o.labels, saved.positives.data(), sort_scratch);
  saved.lse.resize(static_cast<std::size_t>(m));
  if (pairs) saved.pair_weight.assign(static_cast<std::size_t>(m), T(0));
  double loss = 0, dtheta = 0;
  index_t valid = 0;  // the terms of the mean: anchors (l_out) or positive pairs (ntxent_pairs)
  for (index_t i = 0; i < m; ++i) {
    --saved.positives[uz(i)];  // not itself
    const double lse = stats[i].lse();
    saved.lse[uz(i)] = static_cast<T>(lse);
    if (saved.positives[uz(i)] == 0) {
      ++saved.skipped;
      continue;
    }
    if (pairs) {
      // d/dtheta softplus(L_i - s_ip) = sigmoid(L_i - s_ip) (E_neg[s] - s_ip).
      const double* q = pair_sums + 3 * uz(i);
      loss += q[0];
      dtheta += q[1] * stats[i].mean() - q[2];
      saved.pair_weight[uz(i)] = static_cast<T>(q[1]);
      valid += saved.positives[uz(i)];
      continue;
    }
    const double t = target[i] / double(saved.positives[uz(i)]);
    loss += lse - t;
    dtheta += stats[i].mean() - t;
    ++valid;
  }
  saved.pairs = pairs ? valid : 0;
  const double w =
      valid == 0 ? 0.0 : (o.reduction == loss_reduction::mean ? 1.0 / double(valid) : 1.0);
  // L' = c L with c = tau / base_tau = e^{-theta} / base_tau: dL'/dtheta = c (dL/dtheta - L).
  const double c = supcon_factor(o);
  loss *= w;
  dtheta *= w;
  check_loss_finite(fn, c * loss, o.temperature);
  saved.loss = static_cast<T>(c * loss);
  saved.grad_log_scale = o.base_temperature > 0 ? c * (dtheta - loss) : dtheta;
  return saved;
}

template <class T>
temperature_gradient supcon_backward_impl(const matrix_view<const T>& a_in,
                                          const supcon_saved<T>& saved,
                                          const matrix_view<T>& grad_a, const supcon_options& o,
                                          double upstream, workspace ws) {
  const char* fn = supcon_bwd_name;
  supcon_check_inputs(fn, a_in, o);
  const bool pairs = o.convention == supcon_convention::ntxent_pairs;
  CONTRASTIVE_CHECK(
      saved.temperature == o.temperature && saved.base_temperature == o.base_temperature &&
          saved.reduction == o.reduction && saved.convention == o.convention,
      fn, ": 'saved' was computed with other options (temperature ", saved.temperature,
      ", base_temperature ", saved.base_temperature, ", reduction ",
      static_cast<int>(saved.reduction), ", convention ", static_cast<int>(saved.convention),
      ") than these (temperature ", o.temperature, ", base_temperature ", o.base_temperature,
      ", reduction ", static_cast<int>(o.reduction), ", convention ",
      static_cast<int>(o.convention), ")");
  CONTRASTIVE_CHECK(saved.m == a_in.rows() && saved.d == a_in.cols() &&
                        saved.lse.size() == static_cast<std::size_t>(saved.m) &&
                        saved.positives.size() == static_cast<std::size_t>(saved.m) &&
                        (!pairs || saved.pair_weight.size() == static_cast<std::size_t>(saved.m)),
                    fn, ": 'saved' belongs to a ", saved.m, " x ", saved.d, " batch, 'a' is ",
                    a_in.rows(), " x ", a_in.cols());
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
  check_matrix(fn, "grad_a", grad_a);
  check_shape(fn, "grad_a", grad_a, a_in.rows(), a_in.cols(), "the shape of 'a'");
  check_writable_layout(fn, "grad_a", grad_a);
  check_no_alias(fn, "grad_a", grad_a, "a", a_in);
  // The factor tau / base_tau of base_temperature scales every anchor weight; summed pair terms
  // weigh an anchor by its positives.
  index_t most_positives = 1;
  for (const index_t k : saved.positives) most_positives = std::max(most_positives, k);
  const double pair_factor =
      pairs && o.reduction == loss_reduction::sum ? double(most_positives) : 1.0;
  check_pair_gradient_bound(fn, a_in.rows(), max_abs(a_in), grad_a, grad_a, upstream,
                            1.0 / o.temperature, supcon_factor(o) * pair_factor, o.accumulate,
                            saved.grad_log_scale);

  const index_t m = a_in.rows(), d = a_in.cols();
  arena ar(ws,
           supcon_backward_bytes<T>(m, d, o, packing_bytes(a_in) + packing_bytes(grad_a)) -
               workspace_alignment,
           fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  T* w = ar.take<T>(static_cast<std::size_t>(m));
  T* lse = ar.take<T>(static_cast<std::size_t>(m));
  T* q = ar.take<T>(static_cast<std::size_t>(m));
  const index_t valid = pairs ? saved.pairs : m - saved.skipped;
  const double wv = valid == 0
                        ? 0.0
                        : upstream * supcon_factor(o) *
                              (o.reduction == loss_reduction::mean ? 1.0 / double(valid) : 1.0);
  const pairwise_problem<T> p = supcon_problem<T>(&a, o);
  const matrix_view<T> da = ga.view();
  if (pairs) {
    for (index_t i = 0; i < m; ++i) {
      w[i] = static_cast<T>(wv * double(saved.pair_weight[uz(i)]));
      lse[i] = saved.lse[uz(i)] == -infinity<T>() ? infinity<T>() : saved.lse[uz(i)];
      q[i] = saved.lse[uz(i)];
    }
    pairwise_sweep_tiles(p, supcon_pair_gradient<T>{&p, w, lse, q, static_cast<T>(wv)}, &da, &da,
                         ar);
    ga.finish();
    return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
  }
  for (index_t i = 0; i < m; ++i) {
    const bool ok = saved.positives[uz(i)] > 0;
    w[i] = static_cast<T>(ok ? wv : 0.0);
    lse[i] = saved.lse[uz(i)];
    q[i] = static_cast<T>(ok ? wv / double(saved.positives[uz(i)]) : 0.0);
  }
  pairwise_coefficients<T> k;
  k.row_w = k.col_w = w;
  k.row_lse = k.col_lse = lse;
  k.row_q = k.col_q = q;
  pairwise_backward(p, k, &da, &da, ar);
  ga.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Scratch bytes for a row-major M x D view (see info_nce_workspace_bytes).
template <class T>
std::size_t supcon_workspace_bytes(index_t m, index_t d, const supcon_options& o = {}) {
  const std::size_t f = detail::supcon_forward_bytes<T>(m, d, o, 0);
  const std::size_t b = detail::supcon_backward_bytes<T>(m, d, o, 0);
  return f > b ? f : b;
}

/// Exact bytes for this input, packing included (the gradient assumed row-major).
template <class A, std::enable_if_t<is_tensor_like<A>::value, int> = 0>
std::size_t supcon_workspace_bytes(const A& a, const supcon_options& o = {}) {
  const auto va = detail::input_view(a);
  using T = typename decltype(va)::value_type;
  const std::size_t pack = detail::packing_bytes(va);
  const std::size_t f = detail::supcon_forward_bytes<T>(va.rows(), va.cols(), o, pack);
  const std::size_t bw = detail::supcon_backward_bytes<T>(va.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

/// Forward pass: the loss, O(M) statistics and the count of anchors without positives.
template <class A>
CONTRASTIVE_REQUIRES(tensor_like<A>)
auto supcon_forward(const A& a, const supcon_options& o, workspace ws = {}) {
  const auto va = detail::input_view(a);
  using T = typename decltype(va)::value_type;
  return detail::supcon_forward_impl<T>(va, o, ws);
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da. Returns
/// upstream * dL/dtemperature.
template <class A, class T, class GA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& writable_tensor<GA&&>)
supcon_parameter_gradients
    supcon_backward(const A& a, const supcon_saved<T>& saved, GA&& grad_a, const supcon_options& o,
                    double upstream = 1.0, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  detail::require_same_value_type<T, decltype(va), decltype(ga)>();
  return detail::supcon_backward_impl<T>(va, saved, ga, o, upstream, ws);
}

/// Forward and backward in one call; returns the loss. The temperature gradient is written to
/// *parameter_grads when given.
template <class A, class GA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& writable_tensor<GA&&>)
auto supcon_forward_backward(const A& a, GA&& grad_a, const supcon_options& o,
                             supcon_parameter_gradients* parameter_grads = nullptr,
                             workspace ws = {}) {
  const auto saved = supcon_forward(a, o, ws);
  const temperature_gradient tg = supcon_backward(a, saved, std::forward<GA>(grad_a), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_SUPCON_HPP
