#ifndef CONTRASTIVE_DISTRIBUTED_INFO_NCE_HPP
#define CONTRASTIVE_DISTRIBUTED_INFO_NCE_HPP

// InfoNCE (one direction) and the symmetric CLIP loss over a batch sharded across ranks.
// Rank k passes its rows of a and b (count(k) x D; counts may differ and may be 0) and gets the
// loss over the GLOBAL batch (the ranks' rows concatenated in rank order; the same value on
// every rank) and the gradients of that loss with respect to its own rows. Loss and gradients
// equal the single-process info_nce_* on the concatenated batch (up to rounding).
//
// Forward: a ring pass of b blocks (distributed/ring.hpp). Local rows keep online log-sum-exp
// statistics across the steps; column statistics are partial per rank and merged with two
// all-reduces of O(N) values. Backward: a second ring pass in which each b block travels with its
// gradient accumulator and comes back to its owner with every rank's contribution. Per rank:
// O(N_local D + one block) memory plus O(N) statistics, never an N x N matrix and never the
// global embedding.
//
// Options are info_nce_options; labels (labels_a, labels_b) are the local rows' labels (they are
// all-gathered, O(N)). The mean is over the global batch's valid anchors. Not supported:
// cache_logits. Options, D, the element type and the upstream must agree on every rank: a
// mismatch, or any argument error on any rank, makes every rank throw the same
// contrastive::invalid_argument (nothing hangs). In data-parallel training the loss is already
// global: SUM (do not average) the parameter gradients over the ranks.

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
#include "contrastive/distributed/communicator.hpp"
#include "contrastive/distributed/ring.hpp"
#include "contrastive/losses/info_nce.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace distributed {

/// What the forward keeps for the backward: O(N_local) row and O(N) column statistics.
template <class T>
struct info_nce_saved {
  T loss = 0;                              // the global loss (the same on every rank)
  double grad_log_scale = 0;               // dL/dtheta of the global loss at upstream 1
  std::vector<T> row_lse;                  // local anchors a_i: LSE over all N columns
  std::vector<T> col_lse;                  // all N columns (symmetric only): LSE over all N rows
  std::vector<index_t> row_positives;      // local, with labels
  std::vector<index_t> col_positives;      // all N, with labels (symmetric)
  index_t valid_rows = 0, valid_cols = 0;  // global counts of anchors with a positive
  index_t n = 0, n_global = 0, d = 0;
  std::vector<index_t> counts;  // rows per rank
  double temperature = 0;
  double label_smoothing = 0;
  bool symmetric = true;
  bool labelled = false;
  loss_reduction reduction = loss_reduction::mean;

  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

template <class T>
void info_nce_local_checks(const char* fn, const matrix_view<const T>& a,
                           const matrix_view<const T>& b, const info_nce_options& o,
                           bool labelled) {
  cd::check_smoothing(fn, o.label_smoothing);
  CONTRASTIVE_CHECK(o.debias_tau_plus == 0 && o.hard_negative_beta == 0, fn,
                    ": 'debias_tau_plus' / 'hard_negative_beta' are not supported by the "
                    "distributed losses");
  CONTRASTIVE_CHECK(a.rows() == 0 || o.labels_a.empty() == o.labels_b.empty(), fn,
                    ": give both 'labels_a' and 'labels_b' or neither");
  CONTRASTIVE_CHECK(!o.cache_logits, fn,
                    ": 'cache_logits' is not supported by the distributed losses (the blocks "
                    "travel; the backward recomputes the tiles)");
  cd::check_matrix(fn, "a", a);
  cd::check_matrix(fn, "b", b);
  cd::check_temperature(fn, o.temperature);
  cd::check_tiles(fn, o.tile_rows, o.tile_cols);
  cd::check_reduction(fn, o.reduction);
  CONTRASTIVE_CHECK(a.cols() > 0, fn,
                    ": 'a' has 0 columns (D must be > 0; a rank without rows "
                    "passes 0 x D)");
  cd::check_same_shape(fn, a, b);
  cd::check_finite(fn, "a", a);
  cd::check_finite(fn, "b", b);
  if (labelled && a.rows() > 0) {
    cd::check_labels(fn, "labels_a", o.labels_a, a.rows());
    cd::check_labels(fn, "labels_b", o.labels_b, b.rows());
  }
}

/// The collective checks of both passes; returns whether labels are used (ranks without rows
/// may pass empty label spans).
template <class T, class Comm>
bool info_nce_agree(const Comm& comm, const char* fn, const matrix_view<const T>& a,
                    const matrix_view<const T>& b, const info_nce_options& o, double upstream) {
  agree_values(comm, fn,
               {{"D (the columns of 'a')", double(a.cols())},
                {"the element size (float or double)", double(sizeof(T))},
                {"'temperature'", o.temperature},
                {"'symmetric'", double(o.symmetric)},
                {"'label_smoothing'", o.label_smoothing},
                {"'reduction'", double(static_cast<int>(o.reduction))},
                {"'upstream'", upstream}});
  const bool labelled = agree_flag(comm, fn, "labels are given", !o.labels_a.empty(), a.rows() > 0);
  agree_checks(comm, [&] { info_nce_local_checks(fn, a, b, o, labelled); });
  return labelled;
}

template <class T>
cd::pairwise_problem<T> info_nce_block_problem(const matrix_view<const T>* a,
                                               const matrix_view<const T>* block,
                                               const info_nce_options& o, const shard_layout& l,
                                               int owner, const std::int64_t* lab_a,
                                               const std::int64_t* lab_b) {
  cd::pairwise_problem<T> p = cd::make_pairwise_problem(a, 1, block, 1, o.temperature, o);
  if (lab_a) {
    p.label_x = lab_a + l.local_offset();
    p.label_y = lab_b + l.offset(owner);
  }
  return p;
}

template <class T, class Comm>
info_nce_saved<T> info_nce_forward_impl(const Comm& comm, const matrix_view<const T>& a_in,
                                        const matrix_view<const T>& b_in,
                                        const info_nce_options& o) {
  const char* fn = "distributed::info_nce_forward";
  const bool labelled = info_nce_agree(comm, fn, a_in, b_in, o, 1.0);
  const shard_layout l = make_layout(comm, a_in.rows());
  CONTRASTIVE_CHECK(l.total() > 0, fn, ": empty global batch (every rank has 0 rows)");
  check_block_size(fn, l, 1, a_in.cols());

  const index_t n = a_in.rows(), d = a_in.cols(), ng = l.total(), off = l.local_offset();
  const bool sym = o.symmetric;
  const double eps = o.label_smoothing, lambda = 1.0 / o.temperature;
  std::vector<std::int64_t> lab_a, lab_b;  // global, rank order
  if (labelled) {
    lab_a = gather_rows(comm, l, o.labels_a.data);
    lab_b = gather_rows(comm, l, o.labels_b.data);
  }

  cd::arena pack(workspace{}, cd::packing_bytes(a_in) + cd::packing_bytes(b_in), fn);
  const matrix_view<const T> a = cd::gemm_input(a_in, pack);
  const matrix_view<const T> b = cd::gemm_input(b_in, pack);
  std::vector<online_softmax<double>> row(static_cast<std::size_t>(n));
  std::vector<online_softmax<double>> col(sym ? static_cast<std::size_t>(ng) : 0);
  std::vector<double> row_t(labelled ? static_cast<std::size_t>(n) : 0);
  std::vector<double> col_t(labelled && sym ? static_cast<std::size_t>(ng) : 0);

  const step_scratch scratch(cd::pairwise_forward_bytes<T>(ring_sweep_shape(l, d, o)));
  ring_visit<T>(comm, l, &b, 1, d, [&](int owner, const matrix_view<const T>* block) {
    const cd::pairwise_problem<T> p = info_nce_block_problem<T>(
        &a, block, o, l, owner, labelled ? lab_a.data() : nullptr, lab_b.data());
    cd::pairwise_stats<T> st;
    st.row = row.data();
    if (sym) st.col = col.data() + l.offset(owner);
    if (labelled) {
      st.row_target = row_t.data();
      if (sym) st.col_target = col_t.data() + l.offset(owner);
    }
    cd::arena ar = scratch.arena(fn);
    cd::pairwise_forward(p, st, ar);
  });
  if (sym) {
    all_reduce_softmax(comm, col.data(), col.size());
    if (labelled) comm.all_reduce(col_t.data(), col_t.size(), reduce_op::sum);
  }

  info_nce_saved<T> saved;
  saved.n = n;
  saved.n_global = ng;
  saved.d = d;
  saved.counts = l.counts;
  saved.temperature = o.temperature;
  saved.label_smoothing = eps;
  saved.symmetric = sym;
  saved.labelled = labelled;
  saved.reduction = o.reduction;
  if (labelled) {
    std::vector<std::int64_t> scratch_ids(static_cast<std::size_t>(ng));
    saved.row_positives.resize(static_cast<std::size_t>(n));
    cd::count_matches(vector_view<const std::int64_t>(lab_a.data() + off, n),
                      vector_view<const std::int64_t>(lab_b), saved.row_positives.data(),
                      scratch_ids.data());
    if (sym) {
      saved.col_positives.resize(static_cast<std::size_t>(ng));
      cd::count_matches(vector_view<const std::int64_t>(lab_b),
                        vector_view<const std::int64_t>(lab_a), saved.col_positives.data(),
                        scratch_ids.data());
    }
  }
  // Smoothing targets the mean of the global candidates: O(D) all-reduce.
  std::vector<double> means;
  if (eps > 0) {
    means.assign(2 * static_cast<std::size_t>(d), 0.0);  // mean a, mean b
    add_column_sums(a, means.data());
    add_column_sums(b, means.data() + d);
    comm.all_reduce(means.data(), means.size(), reduce_op::sum);
    for (double& v : means) v /= double(ng);
  }

  // Per-direction sums over this rank's anchors: rows a_i, and (symmetric) columns b_j of its
  // own rows, whose statistics are now global.
  double sums[6] = {0, 0, 0, 0, 0, 0};  // loss, dtheta, valid for rows, then columns
  auto direction = [&](const matrix_view<const T>& x, const matrix_view<const T>& y,
                       const online_softmax<double>* stats, const double* target,
                       const index_t* positives, const double* mean_y, std::vector<T>& lse_out,
                       double* out) {
    lse_out.resize(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) {
      const double lse = stats[i].lse();
      lse_out[cd::uz(i)] = static_cast<T>(lse);
      if (labelled && positives[i] == 0) continue;  // no positive: excluded (l_i = 0)
      const double hard =
          labelled ? target[i] / double(positives[i]) : lambda * cd::dot_rows(x, i, y, i);
      const double soft = eps > 0 ? lambda * cd::dot_row_vec(x, i, mean_y) : 0.0;
      const double t = (1 - eps) * hard + eps * soft;
      out[0] += lse - t;
      out[1] += stats[i].mean() - t;
      out[2] += 1;
    }
  };
  direction(a, b, row.data(), labelled ? row_t.data() : nullptr,
            labelled ? saved.row_positives.data() : nullptr, eps > 0 ? means.data() + d : nullptr,
            saved.row_lse, sums);
  std::vector<T> own_col_lse;
  if (sym)
    direction(b, a, col.data() + off, labelled ? col_t.data() + off : nullptr,
              labelled ? saved.col_positives.data() + off : nullptr,
              eps > 0 ? means.data() : nullptr, own_col_lse, sums + 3);
  sum_in_rank_order(comm, sums, 6);

  saved.valid_rows = static_cast<index_t>(sums[2]);
  saved.valid_cols = static_cast<index_t>(sums[5]);
  auto weight = [&](double valid) {
    if (valid == 0) return 0.0;
    return o.reduction == loss_reduction::mean ? 1.0 / valid : 1.0;
  };
  const double c = sym ? 0.5 : 1.0;
  double loss = c * weight(sums[2]) * sums[0];
  double dtheta = c * weight(sums[2]) * sums[1];
  if (sym) {
    loss += c * weight(sums[5]) * sums[3];
    dtheta += c * weight(sums[5]) * sums[4];
    saved.col_lse.resize(static_cast<std::size_t>(ng));
    for (index_t j = 0; j < ng; ++j)
      saved.col_lse[cd::uz(j)] = static_cast<T>(col[cd::uz(j)].lse());
  }
  cd::check_loss_finite(fn, loss, o.temperature);  // the same value on every rank
  saved.loss = static_cast<T>(loss);
  saved.grad_log_scale = dtheta;
  return saved;
}

template <class T, class Comm>
temperature_gradient info_nce_backward_impl(const Comm& comm, const matrix_view<const T>& a_in,
                                            const matrix_view<const T>& b_in,
                                            const info_nce_saved<T>& saved,
                                            const matrix_view<T>& grad_a,
                                            const matrix_view<T>& grad_b, const info_nce_options& o,
                                            double upstream) {
  const char* fn = "distributed::info_nce_backward";
  const bool labels_given = info_nce_agree(comm, fn, a_in, b_in, o, upstream);
  const shard_layout l = make_layout(comm, a_in.rows());
  // The largest input magnitude of the global batch, for the gradient bound (collective).
  double max_input = cd::matrix_ok(a_in) && cd::matrix_ok(b_in)
                         ? std::max(cd::max_abs(a_in), cd::max_abs(b_in))
                         : 0.0;  // bad views: the checks below throw
  comm.all_reduce(&max_input, 1, reduce_op::max);
  agree_checks(comm, [&] {
    CONTRASTIVE_CHECK(saved.n == a_in.rows() && saved.d == a_in.cols() && saved.counts == l.counts,
                      fn, ": 'saved' belongs to another batch (", saved.n, " x ", saved.d,
                      " rows here, ", saved.n_global, " in all) than these inputs (", a_in.rows(),
                      " x ", a_in.cols(), ", ", l.total(), " in all)");
    CONTRASTIVE_CHECK(saved.temperature == o.temperature && saved.symmetric == o.symmetric &&
                          saved.label_smoothing == o.label_smoothing &&
                          saved.labelled == labels_given && saved.reduction == o.reduction,
                      fn, ": 'saved' was computed with other options (temperature ",
                      saved.temperature, ", symmetric ", saved.symmetric, ", label_smoothing ",
                      saved.label_smoothing, ") than these (temperature ", o.temperature,
                      ", symmetric ", o.symmetric, ", label_smoothing ", o.label_smoothing, ")");
    const auto un = static_cast<std::size_t>(saved.n),
               ug = static_cast<std::size_t>(saved.n_global);
    CONTRASTIVE_CHECK(
        saved.row_lse.size() == un && (!saved.symmetric || saved.col_lse.size() == ug), fn,
        ": 'saved' is incomplete (not produced by distributed::info_nce_forward)");
    ::contrastive::detail::check_pair_gradients(fn, a_in, b_in, grad_a, grad_b, upstream);
    ::contrastive::detail::check_pair_gradient_bound(fn, l.total(), max_input, grad_a, grad_b,
                                                     upstream, 1.0 / o.temperature, 1.0,
                                                     o.accumulate, saved.grad_log_scale);
  });

  const index_t n = a_in.rows(), d = a_in.cols(), ng = l.total(), off = l.local_offset();
  const bool sym = o.symmetric, labelled = saved.labelled;
  const double eps = o.label_smoothing, lambda = 1.0 / o.temperature;
  std::vector<std::int64_t> lab_a, lab_b;
  if (labelled) {
    lab_a = gather_rows(comm, l, o.labels_a.data);
    lab_b = gather_rows(comm, l, o.labels_b.data);
  }
  cd::arena pack(workspace{},
                 cd::packing_bytes(a_in) + cd::packing_bytes(b_in) + cd::packing_bytes(grad_a) +
                     cd::packing_bytes(grad_b),
                 fn);
  const matrix_view<const T> a = cd::gemm_input(a_in, pack);
  const matrix_view<const T> b = cd::gemm_input(b_in, pack);
  const cd::gemm_output<T> ga(grad_a, o.accumulate, pack);
  const cd::gemm_output<T> gb(grad_b, o.accumulate, pack);

  // Per-anchor weights (global valid counts): rows for the local anchors, columns for all N
  // (the travelling blocks need theirs).
  const double c = (sym ? 0.5 : 1.0) * upstream;
  auto wv = [&](index_t valid) {
    if (valid == 0) return 0.0;
    return c * (o.reduction == loss_reduction::mean ? 1.0 / double(valid) : 1.0);
  };
  auto weights = [&](index_t count, const std::vector<index_t>& positives, double w,
                     std::vector<T>& wout, std::vector<T>& qout) {
    wout.resize(static_cast<std::size_t>(count));
    if (labelled) qout.resize(static_cast<std::size_t>(count));
    for (index_t i = 0; i < count; ++i) {
      const bool ok = !labelled || positives[cd::uz(i)] > 0;
      wout[cd::uz(i)] = static_cast<T>(ok ? w : 0.0);
      if (labelled)
        qout[cd::uz(i)] = static_cast<T>(ok ? w * (1 - eps) / double(positives[cd::uz(i)]) : 0.0);
    }
  };
  std::vector<T> row_w, row_q, col_w, col_q;
  weights(n, saved.row_positives, wv(saved.valid_rows), row_w, row_q);
  if (sym) weights(ng, saved.col_positives, wv(saved.valid_cols), col_w, col_q);

  const matrix_view<T> dA = ga.view(), dB = gb.view();
  const step_scratch scratch(cd::pairwise_backward_bytes<T>(ring_sweep_shape(l, d, o)));
  ring_visit_accumulate<T>(
      comm, l, &b, &dB, 1, d,
      [&](int owner, const matrix_view<const T>* block, const matrix_view<T>* dblock) {
        const cd::pairwise_problem<T> p = info_nce_block_problem<T>(
            &a, block, o, l, owner, labelled ? lab_a.data() : nullptr, lab_b.data());
        cd::pairwise_coefficients<T> k;
        k.row_w = row_w.data();
        k.row_lse = saved.row_lse.data();
        if (labelled) k.row_q = row_q.data();
        if (sym) {
          const index_t at = l.offset(owner);
          k.col_w = col_w.data() + at;
          k.col_lse = saved.col_lse.data() + at;
          if (labelled) k.col_q = col_q.data() + at;
        }
        cd::arena ar = scratch.arena(fn);
        cd::pairwise_backward(p, k, &dA, dblock, ar);
      });

  // Target terms, O(N_local D): one-hot positives (both rows local) and label smoothing.
  auto wc = [&](index_t i) -> double { return sym ? double(col_w[cd::uz(off + i)]) : 0.0; };
  if (!labelled) {
    for (index_t i = 0; i < n; ++i) {
      const T coef = static_cast<T>(lambda * (1 - eps) * (double(row_w[cd::uz(i)]) + wc(i)));
      for (index_t k2 = 0; k2 < d; ++k2) {
        dA(i, k2) -= coef * b(i, k2);
        dB(i, k2) -= coef * a(i, k2);
      }
    }
  }
  if (eps > 0) {
    // Global sums, one all-reduce: sum a, sum b, sum_i w_r,i a_i, sum_j w_c,j b_j.
    std::vector<double> s(4 * static_cast<std::size_t>(d), 0.0);
    add_column_sums(a, s.data());
    add_column_sums(b, s.data() + d);
    add_column_sums(a, s.data() + 2 * d, 1.0, row_w.data());
    if (sym) add_column_sums(b, s.data() + 3 * d, 1.0, col_w.data() + off);
    comm.all_reduce(s.data(), s.size(), reduce_op::sum);
    const double* sum_a = s.data();
    const double* sum_b = s.data() + d;
    const double* wa = s.data() + 2 * d;
    const double* wb = s.data() + 3 * d;
    for (index_t i = 0; i < n; ++i) {
      for (index_t k2 = 0; k2 < d; ++k2) {
        dA(i, k2) -= static_cast<T>(
            lambda * eps *
            (double(row_w[cd::uz(i)]) * sum_b[k2] / double(ng) + wb[k2] / double(ng)));
        dB(i, k2) -=
            static_cast<T>(lambda * eps * (wc(i) * sum_a[k2] / double(ng) + wa[k2] / double(ng)));
      }
    }
  }
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Forward over the global batch: `a`, `b` are this rank's rows (n_local x D, n_local may be
/// 0). Returns the global loss and the statistics the backward needs. Collective: every rank of
/// `comm` calls it, in the same order as the other collectives.
template <class Comm, class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto info_nce_forward(const Comm& comm, const A& a, const B& b, const info_nce_options& o = {}) {
  detail::require_communicator<Comm>();
  const auto va = ::contrastive::detail::input_view(a);
  const auto vb = ::contrastive::detail::input_view(b);
  using T = typename decltype(va)::value_type;
  ::contrastive::detail::require_same_value_type<T, decltype(vb)>();
  return detail::info_nce_forward_impl<T>(comm, va, vb, o);
}

/// Backward: writes (or, with options.accumulate, adds) upstream * dL/da and dL/db for this
/// rank's rows, L the global loss. `upstream` must be the same on every rank. Collective.
template <class Comm, class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
info_nce_parameter_gradients
    info_nce_backward(const Comm& comm, const A& a, const B& b, const info_nce_saved<T>& saved,
                      GA&& grad_a, GB&& grad_b, const info_nce_options& o = {},
                      double upstream = 1.0) {
  detail::require_communicator<Comm>();
  const auto va = ::contrastive::detail::input_view(a);
  const auto vb = ::contrastive::detail::input_view(b);
  const auto ga = ::contrastive::detail::output_view(std::forward<GA>(grad_a));
  const auto gb = ::contrastive::detail::output_view(std::forward<GB>(grad_b));
  ::contrastive::detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga),
                                                 decltype(gb)>();
  return detail::info_nce_backward_impl<T>(comm, va, vb, saved, ga, gb, o, upstream);
}

/// Forward and backward in one call; returns the global loss (temperature gradient into
/// *temperature_grad when given). Collective.
template <class Comm, class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto info_nce_forward_backward(const Comm& comm, const A& a, const B& b, GA&& grad_a, GB&& grad_b,
                               const info_nce_options& o = {},
                               info_nce_parameter_gradients* parameter_grads = nullptr) {
  const auto saved = distributed::info_nce_forward(comm, a, b, o);
  const temperature_gradient tg = distributed::info_nce_backward(
      comm, a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

}  // namespace distributed
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_DISTRIBUTED_INFO_NCE_HPP
