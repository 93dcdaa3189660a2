#ifndef CONTRASTIVE_LOSSES_INFO_NCE_HPP
#define CONTRASTIVE_LOSSES_INFO_NCE_HPP

// InfoNCE (one direction, a -> b) and the symmetric CLIP loss, with multiple positives by label
// id and label smoothing. Logits s_ij = <a_i, b_j> / temperature are streamed in tiles: the
// forward keeps only per-row and per-column log-sum-exp statistics, the backward recomputes
// the tiles. Math and gradients: docs/info_nce.md; the sweep: docs/tiled_sweep.md.

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
#include "contrastive/losses/debiased_negatives.hpp"
#include "contrastive/losses/info_nce_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// What the forward keeps for the backward: O(N) statistics, never an N x N matrix.
template <class T>
struct info_nce_saved {
  T loss = 0;
  double grad_log_scale = 0;           // dL/dtheta, theta = log(1/tau), at upstream 1
  std::vector<T> row_lse;              // LSE_j s_ij (a -> b)
  std::vector<T> col_lse;              // LSE_i s_ij (b -> a); empty unless symmetric
  std::vector<index_t> row_positives;  // |P_i| with labels (else empty)
  std::vector<index_t> col_positives;
  index_t n = 0, d = 0;
  // The options the statistics belong to; backward checks them.
  double temperature = 0;
  double label_smoothing = 0;
  bool symmetric = true;
  bool labelled = false;
  loss_reduction reduction = loss_reduction::mean;
  const void* logit_cache = nullptr;  // the workspace holding the cached tiles (cached mode)
  double debias_tau_plus = 0;         // the debiased / hard-negative options of the forward
  double hard_negative_beta = 0;
  negative_weighting_saved<T> row_weighting;  // with debias_tau_plus or hard_negative_beta
  negative_weighting_saved<T> col_weighting;  // (the column direction, when symmetric)

  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

constexpr const char* info_nce_fwd_name = "info_nce_forward";
constexpr const char* info_nce_bwd_name = "info_nce_backward";

template <class T>
void info_nce_check_inputs(const char* fn, const matrix_view<const T>& a,
                           const matrix_view<const T>& b, const info_nce_options& o) {
  check_smoothing(fn, o.label_smoothing);
  check_reduction(fn, o.reduction);
  CONTRASTIVE_CHECK(o.labels_a.empty() == o.labels_b.empty(), fn,
                    ": give both 'labels_a' and 'labels_b' or neither");
  check_negative_weighting(fn, o.debias_tau_plus, o.hard_negative_beta, !o.labels_a.empty(),
                           o.label_smoothing, a.rows() - 1);
  check_pair_inputs(fn, a, b, o.temperature, o.tile_rows, o.tile_cols);
  if (!o.labels_a.empty()) {
    check_labels(fn, "labels_a", o.labels_a, a.rows());
    check_labels(fn, "labels_b", o.labels_b, b.rows());
  }
}

/// Carves (or, with size_counter, sizes) the forward's scratch in one fixed order.
template <class T, class Alloc>
struct info_nce_forward_buffers {
  online_softmax<double>* row = nullptr;
  online_softmax<double>* col = nullptr;
  double* row_target = nullptr;
  double* col_target = nullptr;
  std::int64_t* sort_scratch = nullptr;
  online_softmax<double>* row_scaled[2] = {nullptr, nullptr};  // hard negatives
  online_softmax<double>* col_scaled[2] = {nullptr, nullptr};

  info_nce_forward_buffers(Alloc& al, index_t n, bool symmetric, bool labelled, bool hard = false) {
    row = al.template take<online_softmax<double>>(static_cast<std::size_t>(n));
    if (symmetric) col = al.template take<online_softmax<double>>(static_cast<std::size_t>(n));
    for (int k = 0; k < 2 && hard; ++k) {
      row_scaled[k] = al.template take<online_softmax<double>>(static_cast<std::size_t>(n));
      if (symmetric)
        col_scaled[k] = al.template take<online_softmax<double>>(static_cast<std::size_t>(n));
    }
    if (labelled) {
      row_target = al.template take<double>(static_cast<std::size_t>(n));
      if (symmetric) col_target = al.template take<double>(static_cast<std::size_t>(n));
      sort_scratch = al.template take<std::int64_t>(static_cast<std::size_t>(n));
    }
  }
};

template <class T, class Alloc>
struct info_nce_backward_buffers {
  T* row_w = nullptr;
  T* row_lse = nullptr;
  T* row_q = nullptr;
  T* col_w = nullptr;
  T* col_lse = nullptr;
  T* col_q = nullptr;
  double* sums = nullptr;  // 4 D: mean a, mean b, sum_i w_r a_i, sum_j w_c b_j (smoothing)
  T* row_scaled_w[2] = {nullptr, nullptr};  // hard negatives
  T* row_scaled_lse[2] = {nullptr, nullptr};
  T* col_scaled_w[2] = {nullptr, nullptr};
  T* col_scaled_lse[2] = {nullptr, nullptr};

  info_nce_backward_buffers(Alloc& al, index_t n, index_t d, bool symmetric, bool labelled,
                            bool smoothing, bool hard = false) {
    const auto un = static_cast<std::size_t>(n);
    for (int k = 0; k < 2 && hard; ++k) {
      row_scaled_w[k] = al.template take<T>(un);
      row_scaled_lse[k] = al.template take<T>(un);
      if (symmetric) {
        col_scaled_w[k] = al.template take<T>(un);
        col_scaled_lse[k] = al.template take<T>(un);
      }
    }
    row_w = al.template take<T>(un);
    row_lse = al.template take<T>(un);
    if (labelled) row_q = al.template take<T>(un);
    if (symmetric) {
      col_w = al.template take<T>(un);
      col_lse = al.template take<T>(un);
      if (labelled) col_q = al.template take<T>(un);
    }
    if (smoothing) sums = al.template take<double>(4 * static_cast<std::size_t>(d));
  }
};

inline sweep_shape info_nce_sweep(index_t n, index_t d, const info_nce_options& o) noexcept {
  return make_sweep_shape(o, false, n, n, d);
}

template <class T>
std::size_t info_nce_cache_bytes(index_t n, const info_nce_options& o) {
  return o.cache_logits
             ? array_bytes<T>(cache_elements(o.tile_rows, o.tile_cols, false, n, n, n, n))
             : 0;
}

template <class T>
std::size_t info_nce_forward_bytes(index_t n, index_t d, const info_nce_options& o,
                                   std::size_t packing) {
  size_counter c;
  const bool hard = o.hard_negative_beta > 0;
  const info_nce_forward_buffers<T, size_counter> sized(c, n, o.symmetric, !o.labels_a.empty(),
                                                        hard);
  (void)sized;
  return info_nce_cache_bytes<T>(n, o) + c.bytes + packing +
         pairwise_forward_bytes<T>(info_nce_sweep(n, d, o), hard ? 2 : 0) + workspace_alignment;
}

template <class T>
std::size_t info_nce_backward_bytes(index_t n, index_t d, const info_nce_options& o,
                                    std::size_t packing) {
  size_counter c;
  const info_nce_backward_buffers<T, size_counter> sized(
      c, n, d, o.symmetric, !o.labels_a.empty(), o.label_smoothing > 0, o.hard_negative_beta > 0);
  (void)sized;
  return info_nce_cache_bytes<T>(n, o) + c.bytes + packing +
         pairwise_backward_bytes<T>(info_nce_sweep(n, d, o)) + workspace_alignment;
}

template <class T>
void column_mean(const matrix_view<const T>& x, std::vector<double>& out) {
  out.assign(static_cast<std::size_t>(x.cols()), 0.0);
  for (index_t i = 0; i < x.rows(); ++i)
    for (index_t k = 0; k < x.cols(); ++k) out[uz(k)] += double(x(i, k));
  for (auto& v : out) v /= double(x.rows());
}

/// Per-direction reduction: the per-anchor terms, the valid count and the reduced values.
struct direction_sums {
  double loss = 0, dtheta = 0;
  index_t valid = 0;
  double weight(loss_reduction r) const noexcept {  // w for a valid anchor
    if (valid == 0) return 0;
    return r == loss_reduction::mean ? 1.0 / double(valid) : 1.0;
  }
};

/// The sweep of one call: X = a, Y = b (one segment each), labels when given.
template <class T>
pairwise_problem<T> info_nce_problem(const matrix_view<const T>* a, const matrix_view<const T>* b,
                                     const info_nce_options& o, T* cache) {
  pairwise_problem<T> p = make_pairwise_problem(a, 1, b, 1, o.temperature, o);
  p.cache = cache;
  if (!o.labels_a.empty()) {
    p.label_x = o.labels_a.data;
    p.label_y = o.labels_b.data;
  }
  // Debiased / hard negatives: normalisers over the negatives only.
  if (negative_weighting_active(o.debias_tau_plus, o.hard_negative_beta)) p.mask_diagonal = true;
  if (o.hard_negative_beta > 0) {
    p.extra_scales = 2;
    p.gamma[0] = static_cast<T>(1 + o.hard_negative_beta);
    p.gamma[1] = static_cast<T>(o.hard_negative_beta);
  }
  return p;
}

template <class T>
info_nce_saved<T> info_nce_forward_impl(const matrix_view<const T>& a_in,
                                        const matrix_view<const T>& b_in,
                                        const info_nce_options& o_in, workspace ws) {
  const char* fn = info_nce_fwd_name;
  info_nce_check_inputs(fn, a_in, b_in, o_in);
  info_nce_options o = o_in;
  o.cache_logits = o.cache_logits && ws.data != nullptr;  // a cache must outlive the call
  const index_t n = a_in.rows(), d = a_in.cols();
  const bool sym = o.symmetric, labelled = !o.labels_a.empty();
  const double eps = o.label_smoothing;
  const double lambda_d = 1.0 / o.temperature;

  arena ar(ws,
           info_nce_forward_bytes<T>(n, d, o, packing_bytes(a_in) + packing_bytes(b_in)) -
               workspace_alignment,
           fn);
  // The cache comes first, so that the backward finds it at the same place.
  T* cache = o.cache_logits ? ar.take<T>(info_nce_cache_bytes<T>(n, o) / sizeof(T)) : nullptr;
  const bool keep_cache = cache != nullptr && ws.data != nullptr;
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  const bool weighted_neg = negative_weighting_active(o.debias_tau_plus, o.hard_negative_beta);
  const bool hard = o.hard_negative_beta > 0;
  info_nce_forward_buffers<T, arena> buf(ar, n, sym, labelled, hard);
  for (index_t i = 0; i < n; ++i) {
    buf.row[i] = online_softmax<double>();
    if (sym) buf.col[i] = online_softmax<double>();
    for (int k = 0; k < 2 && hard; ++k) {
      buf.row_scaled[k][i] = online_softmax<double>();
      if (sym) buf.col_scaled[k][i] = online_softmax<double>();
    }
    if (labelled) {
      buf.row_target[i] = 0;
      if (sym) buf.col_target[i] = 0;
    }
  }

  const pairwise_problem<T> p = info_nce_problem<T>(&a, &b, o, keep_cache ? cache : nullptr);
  pairwise_stats<T> st;
  st.row = buf.row;
  st.col = buf.col;
  st.row_target = buf.row_target;
  st.col_target = buf.col_target;
  for (int k = 0; k < 2; ++k) {
    st.row_scaled[k] = buf.row_scaled[k];
    st.col_scaled[k] = buf.col_scaled[k];
  }
  pairwise_forward(p, st, ar);

  info_nce_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.label_smoothing = eps;
  saved.symmetric = sym;
  saved.labelled = labelled;
  saved.reduction = o.reduction;
  saved.logit_cache = keep_cache ? ws.data : nullptr;
  saved.debias_tau_plus = o.debias_tau_plus;
  saved.hard_negative_beta = o.hard_negative_beta;
  if (labelled) {
    saved.row_positives.resize(static_cast<std::size_t>(n));
    count_matches(o.labels_a, o.labels_b, saved.row_positives.data(), buf.sort_scratch);
    if (sym) {
      saved.col_positives.resize(static_cast<std::size_t>(n));
      count_matches(o.labels_b, o.labels_a, saved.col_positives.data(), buf.sort_scratch);
    }
  }
  std::vector<double> mean_a, mean_b;
  if (eps > 0) {
    column_mean(b, mean_b);
    if (sym) column_mean(a, mean_a);
  }

  // One direction: anchors x (rows of the logit matrix or of its transpose), candidates y.
  auto direction = [&](const matrix_view<const T>& x, const matrix_view<const T>& y,
                       const online_softmax<double>* stats, const double* target,
                       const std::vector<index_t>& positives, const std::vector<double>& mean_y,
                       std::vector<T>& lse_out) {
    direction_sums sums;
    lse_out.resize(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) {
      const double lse = stats[i].lse();
      lse_out[uz(i)] = static_cast<T>(lse);
      if (labelled && positives[uz(i)] == 0) continue;  // no positive: excluded (l_i = 0)
      const double positive =
          labelled ? target[i] / double(positives[uz(i)]) : lambda_d * dot_rows(x, i, y, i);
      const double soft = eps > 0 ? lambda_d * dot_row_vec(x, i, mean_y.data()) : 0.0;
      const double t = (1 - eps) * positive + eps * soft;
      sums.loss += lse - t;
      sums.dtheta += stats[i].mean() - t;
      ++sums.valid;
    }
    return sums;
  };

  // Debiased / hard negatives (docs/debiased.md): the same per-anchor reduction, other terms.
  auto weighted_direction = [&](const online_softmax<double>* stats,
                                online_softmax<double>* const* scaled, std::vector<T>& lse_out,
                                negative_weighting_saved<T>& nw) {
    direction_sums sums;
    lse_out.resize(static_cast<std::size_t>(n));
    nw.negative.resize(static_cast<std::size_t>(n));
    nw.positive.resize(static_cast<std::size_t>(n));
    if (hard) {
      nw.lse_hi.resize(static_cast<std::size_t>(n));
      nw.lse_lo.resize(static_cast<std::size_t>(n));
    }
    for (index_t i = 0; i < n; ++i) {
      lse_out[uz(i)] = static_cast<T>(stats[i].lse());
      const double s_p = lambda_d * dot_rows(a, i, b, i);
      const debiased_anchor t = debiased_anchor_terms(
          s_p, stats[i], hard ? &scaled[0][i] : nullptr, hard ? &scaled[1][i] : nullptr,
          double(n - 1), lambda_d, o.debias_tau_plus, o.hard_negative_beta);
      if (hard) {
        nw.lse_hi[uz(i)] = static_cast<T>(scaled[0][i].lse());
        nw.lse_lo[uz(i)] = static_cast<T>(scaled[1][i].lse());
      }
      nw.negative[uz(i)] = static_cast<T>(t.negative);
      nw.positive[uz(i)] = static_cast<T>(t.positive);
      nw.clamped += t.clamped;
      sums.loss += t.loss;
      sums.dtheta += t.dtheta;
      ++sums.valid;
    }
    return sums;
  };

  const double c = sym ? 0.5 : 1.0;
  const direction_sums r =
      weighted_neg
          ? weighted_direction(buf.row, buf.row_scaled, saved.row_lse, saved.row_weighting)
          : direction(a, b, buf.row, buf.row_target, saved.row_positives, mean_b, saved.row_lse);
  double loss = c * r.weight(o.reduction) * r.loss;
  double dtheta = c * r.weight(o.reduction) * r.dtheta;
  if (sym) {
    const direction_sums cs =
        weighted_neg
            ? weighted_direction(buf.col, buf.col_scaled, saved.col_lse, saved.col_weighting)
            : direction(b, a, buf.col, buf.col_target, saved.col_positives, mean_a, saved.col_lse);
    loss += c * cs.weight(o.reduction) * cs.loss;
    dtheta += c * cs.weight(o.reduction) * cs.dtheta;
  }
  check_loss_finite(fn, static_cast<double>(static_cast<T>(loss)), o.temperature);  // as stored
  saved.loss = static_cast<T>(loss);
  saved.grad_log_scale = dtheta;
  return saved;
}

template <class T>
void info_nce_check_backward(const char* fn, const matrix_view<const T>& a,
                             const matrix_view<const T>& b, const info_nce_saved<T>& saved,
                             const matrix_view<T>& ga, const matrix_view<T>& gb,
                             const info_nce_options& o, double upstream) {
  info_nce_check_inputs(fn, a, b, o);
  CONTRASTIVE_CHECK(saved.n == a.rows() && saved.d == a.cols(), fn, ": 'saved' belongs to a ",
                    saved.n, " x ", saved.d, " batch, the inputs are ", a.rows(), " x ", a.cols());
  CONTRASTIVE_CHECK(saved.temperature == o.temperature && saved.symmetric == o.symmetric &&
                        saved.label_smoothing == o.label_smoothing &&
                        saved.labelled == !o.labels_a.empty() && saved.reduction == o.reduction &&
                        saved.debias_tau_plus == o.debias_tau_plus &&
                        saved.hard_negative_beta == o.hard_negative_beta,
                    fn, ": 'saved' was computed with other options (temperature ",
                    saved.temperature, ", symmetric ", saved.symmetric, ", label_smoothing ",
                    saved.label_smoothing, ") than these (temperature ", o.temperature,
                    ", symmetric ", o.symmetric, ", label_smoothing ", o.label_smoothing, ")");
  check_pair_gradients(fn, a, b, ga, gb, upstream);
  check_pair_gradient_bound(
      fn, a, b, ga, gb, upstream, 1.0 / o.temperature,
      negative_weighting_bound(o.debias_tau_plus, o.hard_negative_beta, a.rows()), o.accumulate,
      saved.grad_log_scale);
}

template <class T>
temperature_gradient info_nce_backward_impl(
    const matrix_view<const T>& a_in, const matrix_view<const T>& b_in,
    const info_nce_saved<T>& saved, const matrix_view<T>& grad_a, const matrix_view<T>& grad_b,
    const info_nce_options& o_in, double upstream, workspace ws) {
  const char* fn = info_nce_bwd_name;
  info_nce_check_backward(fn, a_in, b_in, saved, grad_a, grad_b, o_in, upstream);
  info_nce_options o = o_in;
  o.cache_logits = o.cache_logits && ws.data != nullptr;
  const index_t n = a_in.rows(), d = a_in.cols();
  const bool sym = o.symmetric, labelled = saved.labelled;
  const double eps = o.label_smoothing;
  const double lambda_d = 1.0 / o.temperature;
  const std::size_t packing =
      packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, info_nce_backward_bytes<T>(n, d, o, packing) - workspace_alignment, fn);
  T* cache = o.cache_logits ? ar.take<T>(info_nce_cache_bytes<T>(n, o) / sizeof(T)) : nullptr;
  const bool use_cache =
      cache != nullptr && saved.logit_cache != nullptr && saved.logit_cache == ws.data;
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  const bool weighted_neg = negative_weighting_active(o.debias_tau_plus, o.hard_negative_beta);
  const bool hard = o.hard_negative_beta > 0;
  info_nce_backward_buffers<T, arena> buf(ar, n, d, sym, labelled, eps > 0, hard);

  // Per-anchor weights: 1/|V| (mean) or 1, times 1/2 when symmetric, times upstream; 0 for
  // anchors without a positive.
  const double c = (sym ? 0.5 : 1.0) * upstream;
  auto weights = [&](const std::vector<index_t>& positives, const std::vector<T>& lse, T* w,
                     T* lse_out, T* q) {
    index_t valid = n;
    if (labelled) {
      valid = 0;
      for (index_t i = 0; i < n; ++i) valid += positives[uz(i)] > 0;
    }
    const double wv =
        valid == 0 ? 0.0 : c * (o.reduction == loss_reduction::mean ? 1.0 / double(valid) : 1.0);
    for (index_t i = 0; i < n; ++i) {
      const bool ok = !labelled || positives[uz(i)] > 0;
      w[i] = static_cast<T>(ok ? wv : 0.0);
      lse_out[i] = lse[uz(i)];
      if (q) q[i] = static_cast<T>(ok ? wv * (1 - eps) / double(positives[uz(i)]) : 0.0);
    }
  };
  weights(saved.row_positives, saved.row_lse, buf.row_w, buf.row_lse, buf.row_q);
  if (sym) weights(saved.col_positives, saved.col_lse, buf.col_w, buf.col_lse, buf.col_q);
  // Weighted negatives: kappa_i on the softmax over the negatives (beta = 0), or kappa_i
  // ((1 + beta) p1 - beta p0) through the scaled terms; buf.*_w keeps the plain weight w_v.
  const double wdir = c * (o.reduction == loss_reduction::mean ? 1.0 / double(n) : 1.0);
  auto negative_weights = [&](const negative_weighting_saved<T>& nw, T* w, T* const* sw,
                              T* const* slse) {
    for (index_t i = 0; i < n; ++i) {
      const double kw = wdir * double(nw.negative[uz(i)]);
      w[i] = static_cast<T>(kw);
      if (hard) {
        const double beta = o.hard_negative_beta;
        sw[0][i] = static_cast<T>(kw * (1 + beta));
        sw[1][i] = static_cast<T>(-kw * beta);
        slse[0][i] = nw.lse_hi[uz(i)];
        slse[1][i] = nw.lse_lo[uz(i)];
      }
    }
  };
  if (weighted_neg) {
    negative_weights(saved.row_weighting, buf.row_w, buf.row_scaled_w, buf.row_scaled_lse);
    if (sym) negative_weights(saved.col_weighting, buf.col_w, buf.col_scaled_w, buf.col_scaled_lse);
  }

  const pairwise_problem<T> p = info_nce_problem<T>(&a, &b, o, use_cache ? cache : nullptr);
  pairwise_coefficients<T> k;
  k.row_w = hard ? nullptr : buf.row_w;
  k.row_lse = buf.row_lse;
  k.row_q = buf.row_q;
  k.col_w = hard ? nullptr : buf.col_w;
  k.col_lse = buf.col_lse;
  k.col_q = buf.col_q;
  for (int e = 0; e < 2; ++e) {
    k.row_scaled_w[e] = buf.row_scaled_w[e];
    k.row_scaled_lse[e] = buf.row_scaled_lse[e];
    k.col_scaled_w[e] = buf.col_scaled_w[e];
    k.col_scaled_lse[e] = buf.col_scaled_lse[e];
  }
  const matrix_view<T> dA = ga.view(), dB = gb.view();
  pairwise_backward(p, k, &dA, &dB, ar);

  if (weighted_neg) {  // the positive logit s_ii = lambda <a_i, b_i>, both directions
    for (index_t i = 0; i < n; ++i) {
      const double pr = double(saved.row_weighting.positive[uz(i)]);
      const double pc = sym ? double(saved.col_weighting.positive[uz(i)]) : 0.0;
      const T coef = static_cast<T>(lambda_d * wdir * (pr + pc));
      for (index_t k2 = 0; k2 < d; ++k2) {
        dA(i, k2) += coef * b(i, k2);
        dB(i, k2) += coef * a(i, k2);
      }
    }
    ga.finish();
    gb.finish();
    return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
  }

  // Target terms, O(N D): the one-hot positives (without labels) and label smoothing.
  auto wc = [&](index_t i) -> double { return sym ? double(buf.col_w[i]) : 0.0; };
  if (!labelled) {
    for (index_t i = 0; i < n; ++i) {
      const T coef = static_cast<T>(lambda_d * (1 - eps) * (double(buf.row_w[i]) + wc(i)));
      for (index_t k2 = 0; k2 < d; ++k2) {
        dA(i, k2) -= coef * b(i, k2);
        dB(i, k2) -= coef * a(i, k2);
      }
    }
  }
  if (eps > 0) {
    double* mean_a = buf.sums;
    double* mean_b = buf.sums + d;
    double* wa = buf.sums + 2 * d;  // sum_i w_r,i a_i
    double* wb = buf.sums + 3 * d;  // sum_j w_c,j b_j
    for (index_t k2 = 0; k2 < 4 * d; ++k2) buf.sums[k2] = 0;
    for (index_t i = 0; i < n; ++i) {
      for (index_t k2 = 0; k2 < d; ++k2) {
        mean_a[k2] += double(a(i, k2)) / double(n);
        mean_b[k2] += double(b(i, k2)) / double(n);
        wa[k2] += double(buf.row_w[i]) * double(a(i, k2));
        wb[k2] += wc(i) * double(b(i, k2));
      }
    }
    for (index_t i = 0; i < n; ++i) {
      for (index_t k2 = 0; k2 < d; ++k2) {
        dA(i, k2) -= static_cast<T>(lambda_d * eps *
                                    (double(buf.row_w[i]) * mean_b[k2] + wb[k2] / double(n)));
        dB(i, k2) -= static_cast<T>(lambda_d * eps * (wc(i) * mean_a[k2] + wa[k2] / double(n)));
      }
    }
  }
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Bytes of scratch a call will use for N x D inputs and outputs that are row-major (unit column
/// stride); other layouts add one packed copy each (see the view-based overload). Pass at least
/// this much as `workspace` to make the call allocation-free (besides `saved`).
template <class T>
std::size_t info_nce_workspace_bytes(index_t n, index_t d, const info_nce_options& o = {}) {
  const std::size_t f = detail::info_nce_forward_bytes<T>(n, d, o, 0);
  const std::size_t b = detail::info_nce_backward_bytes<T>(n, d, o, 0);
  return f > b ? f : b;
}

/// Exact bytes for these inputs and (optional) outputs, packing included.
template <class A, class B,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value, int> = 0>
std::size_t info_nce_workspace_bytes(const A& a, const B& b, const info_nce_options& o = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  const std::size_t pack = detail::packing_bytes(va) + detail::packing_bytes(vb);
  const std::size_t f = detail::info_nce_forward_bytes<T>(va.rows(), va.cols(), o, pack);
  // Gradients are assumed row-major; non-row-major gradients add 2 N D elements.
  const std::size_t bw = detail::info_nce_backward_bytes<T>(va.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

/// Forward pass. Returns the loss and the O(N) statistics the backward needs.
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto info_nce_forward(const A& a, const B& b, const info_nce_options& o = {}, workspace ws = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/info_nce.cuh; ws is the CPU's
    (void)ws;
    CONTRASTIVE_CHECK(!detail::negative_weighting_active(o.debias_tau_plus, o.hard_negative_beta),
                      "info_nce_forward: 'debias_tau_plus' / 'hard_negative_beta' are CPU-only");
    return detail::device_backend_of<detail::info_nce_tag, A>::type::forward(as_view(a), as_view(b),
                                                                             o);
  } else {
    const auto va = detail::input_view(a);
    const auto vb = detail::input_view(b);
    using T = typename decltype(va)::value_type;
    detail::require_same_value_type<T, decltype(vb)>();
    return detail::info_nce_forward_impl<T>(va, vb, o, ws);
  }
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da and dL/db into the
/// caller's tensors. Returns upstream * dL/dtemperature in three parameterisations.
template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
info_nce_parameter_gradients
    info_nce_backward(const A& a, const B& b, const info_nce_saved<T>& saved, GA&& grad_a,
                      GB&& grad_b, const info_nce_options& o = {}, double upstream = 1.0,
                      workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga), decltype(gb)>();
  return detail::info_nce_backward_impl<T>(va, vb, saved, ga, gb, o, upstream, ws);
}

/// Backward of a forward run on device views (the CUDA path; needs cuda/info_nce.cuh).
template <class A, class B, class GA, class GB>
info_nce_parameter_gradients info_nce_backward(const A& a, const B& b,
                                               const cuda::info_nce_device_saved& saved,
                                               GA&& grad_a, GB&& grad_b,
                                               const info_nce_options& o = {},
                                               double upstream = 1.0, workspace = {}) {
  return detail::device_backend_of<detail::info_nce_tag, A>::type::backward(
      as_view(a), as_view(b), saved, as_view(grad_a), as_view(grad_b), o, upstream);
}

/// Forward and backward in one call; returns the loss. The temperature gradient is written to
/// *parameter_grads when given.
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto info_nce_forward_backward(const A& a, const B& b, GA&& grad_a, GB&& grad_b,
                               const info_nce_options& o = {},
                               info_nce_parameter_gradients* parameter_grads = nullptr,
                               workspace ws = {}) {
  std::vector<unsigned char> own;  // cached mode needs one workspace shared by both passes
  if constexpr (!detail::is_device_input<A>::value) {  // no cached mode on the GPU
    if (o.cache_logits && ws.data == nullptr) {
      own.resize(info_nce_workspace_bytes(a, b, o) + detail::packing_bytes(as_view(grad_a)) +
                 detail::packing_bytes(as_view(grad_b)));
      ws = workspace{own.data(), own.size()};
    }
  }
  const auto saved = info_nce_forward(a, b, o, ws);
  const temperature_gradient tg = info_nce_backward(a, b, saved, std::forward<GA>(grad_a),
                                                    std::forward<GB>(grad_b), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_INFO_NCE_HPP
