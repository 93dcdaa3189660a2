#ifndef CONTRASTIVE_DISTRIBUTED_NT_XENT_HPP
#define CONTRASTIVE_DISTRIBUTED_NT_XENT_HPP

// NT-Xent (SimCLR) over a batch sharded across ranks. Rank k passes its rows of the two views a
// and b (count(k) x D, counts may differ and may be 0); the global batch is the ranks' rows in
// rank order, Z = [A; B] over all 2N views, and the loss and this rank's gradients equal the
// single-process nt_xent_* on that batch (up to rounding).
//
// Every rank holds the anchors [a_k; b_k] and sees the other ranks' [a; b] blocks go by on the
// ring (distributed/ring.hpp), keeping per-anchor online log-sum-exp statistics: S is symmetric, so
// each anchor's row statistics are all the forward needs (no column all-reduce). The backward
// ring carries each block with its gradient accumulator: the tile of (local i, travelling j)
// adds lambda G_ij z_j to dz_i and lambda G_ij z_i to the accumulator of z_j, so every ordered
// pair is counted once and dZ = lambda (G + G^T) Z comes out exactly. The single-process sweep
// visits only half of the symmetric tiles; across ranks each rank pairs its rows with every
// block, so the distributed forward does the full 2N x 2N logit work (twice the single-process
// flops, split over the ranks).
//
// Options are nt_xent_options (labels: the local samples' labels, all-gathered). Not supported:
// cache_logits. Agreement and errors as in distributed/info_nce.hpp. In data-parallel training SUM the
// parameter gradients over the ranks (the loss is already global).

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
#include "contrastive/losses/nt_xent.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace distributed {

template <class T>
struct nt_xent_saved {
  T loss = 0;                      // the global loss (the same on every rank)
  double grad_log_scale = 0;       // dL/dtheta at upstream 1
  std::vector<T> lse;              // 2 n local anchors [a_k; b_k]: LSE over the other 2N - 1 views
  std::vector<index_t> positives;  // 2 n, with labels
  index_t n = 0, n_global = 0, d = 0;
  std::vector<index_t> counts;  // rows per rank
  double temperature = 0;
  double label_smoothing = 0;
  bool labelled = false;
  loss_reduction reduction = loss_reduction::mean;

  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

template <class T>
void nt_xent_local_checks(const char* fn, const matrix_view<const T>& a,
                          const matrix_view<const T>& b, const nt_xent_options& o, bool labelled) {
  cd::check_smoothing(fn, o.label_smoothing);
  CONTRASTIVE_CHECK(o.debias_tau_plus == 0 && o.hard_negative_beta == 0, fn,
                    ": 'debias_tau_plus' / 'hard_negative_beta' are not supported by the "
                    "distributed losses");
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
  if (labelled && a.rows() > 0) cd::check_labels(fn, "labels", o.labels, a.rows());
}

template <class T, class Comm>
bool nt_xent_agree(const Comm& comm, const char* fn, const matrix_view<const T>& a,
                   const matrix_view<const T>& b, const nt_xent_options& o, double upstream) {
  agree_values(comm, fn,
               {{"D (the columns of 'a')", double(a.cols())},
                {"the element size (float or double)", double(sizeof(T))},
                {"'temperature'", o.temperature},
                {"'label_smoothing'", o.label_smoothing},
                {"'reduction'", double(static_cast<int>(o.reduction))},
                {"'upstream'", upstream}});
  const bool labelled = agree_flag(comm, fn, "labels are given", !o.labels.empty(), a.rows() > 0);
  agree_checks(comm, [&] { nt_xent_local_checks(fn, a, b, o, labelled); });
  return labelled;
}

/// Labels of every rank's block [a_k; b_k] (2 count(k) values at 2 offset(k)), from the global
/// per-sample labels.
inline std::vector<std::int64_t> nt_xent_block_labels(const shard_layout& l,
                                                      const std::vector<std::int64_t>& y) {
  std::vector<std::int64_t> z(2 * y.size());
  for (int k = 0; k < l.size; ++k)
    for (index_t i = 0; i < l.count(k); ++i) {
      z[cd::uz(2 * l.offset(k) + i)] = y[cd::uz(l.offset(k) + i)];
      z[cd::uz(2 * l.offset(k) + l.count(k) + i)] = y[cd::uz(l.offset(k) + i)];
    }
  return z;
}

template <class T>
cd::pairwise_problem<T> nt_xent_block_problem(const matrix_view<const T>* z_local,
                                              const matrix_view<const T>* block,
                                              const nt_xent_options& o, const shard_layout& l,
                                              int owner, const std::int64_t* block_labels) {
  cd::pairwise_problem<T> p = cd::make_pairwise_problem(z_local, 2, block, 2, o.temperature, o);
  p.mask_diagonal = owner == l.rank;  // the own block holds the self-similarities
  if (block_labels) {
    p.label_x = block_labels + 2 * l.local_offset();
    p.label_y = block_labels + 2 * l.offset(owner);
  }
  return p;
}

template <class T, class Comm>
nt_xent_saved<T> nt_xent_forward_impl(const Comm& comm, const matrix_view<const T>& a_in,
                                      const matrix_view<const T>& b_in, const nt_xent_options& o) {
  const char* fn = "distributed::nt_xent_forward";
  const bool labelled = nt_xent_agree(comm, fn, a_in, b_in, o, 1.0);
  const shard_layout l = make_layout(comm, a_in.rows());
  CONTRASTIVE_CHECK(l.total() > 0, fn, ": empty global batch (every rank has 0 rows)");
  check_block_size(fn, l, 2, a_in.cols());

  const index_t n = a_in.rows(), d = a_in.cols(), ng = l.total(), n2 = 2 * n;
  const double eps = o.label_smoothing, lambda = 1.0 / o.temperature;
  std::vector<std::int64_t> zl;  // block labels, rank order
  if (labelled) zl = nt_xent_block_labels(l, gather_rows(comm, l, o.labels.data));

  cd::arena pack(workspace{}, cd::packing_bytes(a_in) + cd::packing_bytes(b_in), fn);
  const matrix_view<const T> seg[2] = {cd::gemm_input(a_in, pack), cd::gemm_input(b_in, pack)};
  const cd::stacked_rows<T> z{seg[0], seg[1]};
  std::vector<online_softmax<double>> stats(static_cast<std::size_t>(n2));
  std::vector<double> target(labelled ? static_cast<std::size_t>(n2) : 0);

  const step_scratch scratch(cd::pairwise_forward_bytes<T>(ring_sweep_shape(l, d, o)));
  ring_visit<T>(comm, l, seg, 2, d, [&](int owner, const matrix_view<const T>* block) {
    const cd::pairwise_problem<T> p =
        nt_xent_block_problem<T>(seg, block, o, l, owner, labelled ? zl.data() : nullptr);
    cd::pairwise_stats<T> st;
    st.row = stats.data();
    if (labelled) st.row_target = target.data();
    cd::arena ar = scratch.arena(fn);
    cd::pairwise_forward(p, st, ar);
  });

  nt_xent_saved<T> saved;
  saved.n = n;
  saved.n_global = ng;
  saved.d = d;
  saved.counts = l.counts;
  saved.temperature = o.temperature;
  saved.label_smoothing = eps;
  saved.labelled = labelled;
  saved.reduction = o.reduction;
  if (labelled) {
    saved.positives.resize(static_cast<std::size_t>(n2));
    std::vector<std::int64_t> sorted(zl.size());
    cd::count_matches(vector_view<const std::int64_t>(zl.data() + 2 * l.local_offset(), n2),
                      vector_view<const std::int64_t>(zl), saved.positives.data(), sorted.data());
    for (auto& c : saved.positives) --c;  // not itself; the other view is always left
  }
  std::vector<double> sum_z;
  if (eps > 0) {
    sum_z.assign(static_cast<std::size_t>(d), 0.0);
    add_column_sums(seg[0], sum_z.data());
    add_column_sums(seg[1], sum_z.data());
    comm.all_reduce(sum_z.data(), sum_z.size(), reduce_op::sum);
  }

  double sums[2] = {0, 0};  // loss, dtheta over the local anchors
  saved.lse.resize(static_cast<std::size_t>(n2));
  for (index_t i = 0; i < n2; ++i) {
    const double lse = stats[cd::uz(i)].lse();
    saved.lse[cd::uz(i)] = static_cast<T>(lse);
    const double hard = labelled ? target[cd::uz(i)] / double(saved.positives[cd::uz(i)])
                                 : lambda * cd::dot_rows(seg[0], z.local(i), seg[1], z.local(i));
    double soft = 0;
    if (eps > 0) {
      for (index_t k = 0; k < d; ++k)
        soft += double(z(i, k)) * (sum_z[cd::uz(k)] - double(z(i, k)));
      soft *= lambda / double(2 * ng - 1);
    }
    const double t = (1 - eps) * hard + eps * soft;
    sums[0] += lse - t;
    sums[1] += stats[cd::uz(i)].mean() - t;
  }
  sum_in_rank_order(comm, sums, 2);
  const double w = o.reduction == loss_reduction::mean ? 1.0 / double(2 * ng) : 1.0;
  const double loss = w * sums[0];
  cd::check_loss_finite(fn, loss, o.temperature);  // the same value on every rank
  saved.loss = static_cast<T>(loss);
  saved.grad_log_scale = w * sums[1];
  return saved;
}

template <class T, class Comm>
temperature_gradient nt_xent_backward_impl(const Comm& comm, const matrix_view<const T>& a_in,
                                           const matrix_view<const T>& b_in,
                                           const nt_xent_saved<T>& saved,
                                           const matrix_view<T>& grad_a,
                                           const matrix_view<T>& grad_b, const nt_xent_options& o,
                                           double upstream) {
  const char* fn = "distributed::nt_xent_backward";
  const bool labels_given = nt_xent_agree(comm, fn, a_in, b_in, o, upstream);
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
    CONTRASTIVE_CHECK(
        saved.temperature == o.temperature && saved.label_smoothing == o.label_smoothing &&
            saved.labelled == labels_given && saved.reduction == o.reduction,
        fn, ": 'saved' was computed with other options (temperature ", saved.temperature,
        ", label_smoothing ", saved.label_smoothing, ") than these (temperature ", o.temperature,
        ", label_smoothing ", o.label_smoothing, ")");
    CONTRASTIVE_CHECK(saved.lse.size() == 2 * static_cast<std::size_t>(saved.n) &&
                          (!saved.labelled || saved.positives.size() == saved.lse.size()),
                      fn, ": 'saved' is incomplete (not produced by distributed::nt_xent_forward)");
    ::contrastive::detail::check_pair_gradients(fn, a_in, b_in, grad_a, grad_b, upstream);
    ::contrastive::detail::check_pair_gradient_bound(fn, 2 * l.total(), max_input, grad_a, grad_b,
                                                     upstream, 1.0 / o.temperature, 1.0,
                                                     o.accumulate, saved.grad_log_scale);
  });

  const index_t n = a_in.rows(), d = a_in.cols(), ng = l.total(), n2 = 2 * n;
  const bool labelled = saved.labelled;
  const double eps = o.label_smoothing, lambda = 1.0 / o.temperature;
  std::vector<std::int64_t> zl;
  if (labelled) zl = nt_xent_block_labels(l, gather_rows(comm, l, o.labels.data));
  cd::arena pack(workspace{},
                 cd::packing_bytes(a_in) + cd::packing_bytes(b_in) + cd::packing_bytes(grad_a) +
                     cd::packing_bytes(grad_b),
                 fn);
  const matrix_view<const T> seg[2] = {cd::gemm_input(a_in, pack), cd::gemm_input(b_in, pack)};
  const cd::stacked_rows<T> z{seg[0], seg[1]};
  const cd::gemm_output<T> ga(grad_a, o.accumulate, pack);
  const cd::gemm_output<T> gb(grad_b, o.accumulate, pack);
  const matrix_view<T> dz[2] = {ga.view(), gb.view()};

  const double wv = upstream * (o.reduction == loss_reduction::mean ? 1.0 / double(2 * ng) : 1.0);
  std::vector<T> w(static_cast<std::size_t>(n2), static_cast<T>(wv)), q;
  if (labelled) {
    q.resize(static_cast<std::size_t>(n2));
    for (index_t i = 0; i < n2; ++i)
      q[cd::uz(i)] = static_cast<T>(wv * (1 - eps) / double(saved.positives[cd::uz(i)]));
  }
  // Row coefficients only: each (anchor, candidate) pair is visited once, on the anchor's rank.
  cd::pairwise_coefficients<T> k;
  k.row_w = w.data();
  k.row_lse = saved.lse.data();
  if (labelled) k.row_q = q.data();

  const step_scratch scratch(cd::pairwise_backward_bytes<T>(ring_sweep_shape(l, d, o)));
  ring_visit_accumulate<T>(
      comm, l, seg, dz, 2, d,
      [&](int owner, const matrix_view<const T>* block, const matrix_view<T>* dblock) {
        const cd::pairwise_problem<T> p =
            nt_xent_block_problem<T>(seg, block, o, l, owner, labelled ? zl.data() : nullptr);
        cd::arena ar = scratch.arena(fn);
        // For the own block dblock == dz: race-free, since the sweep writes dX rows only after
        // its parallel region and dY rows of one column block from one thread.
        cd::pairwise_backward(p, k, dz, dblock, ar);
      });

  auto dz_at = [&](index_t i, index_t c) -> T& { return dz[i < n ? 0 : 1](z.local(i), c); };
  if (!labelled) {  // one-hot: view i's positive is the other view of its sample (local)
    for (index_t i = 0; i < n; ++i) {
      const T coef =
          static_cast<T>(lambda * (1 - eps) * (double(w[cd::uz(i)]) + double(w[cd::uz(i + n)])));
      for (index_t c = 0; c < d; ++c) {
        dz[0](i, c) -= coef * seg[1](i, c);
        dz[1](i, c) -= coef * seg[0](i, c);
      }
    }
  }
  if (eps > 0) {  // anchor i targets the mean of the other 2N - 1 views: O(D) all-reduce
    std::vector<double> s(2 * static_cast<std::size_t>(d), 0.0);  // sum z, sum w z
    add_column_sums(seg[0], s.data());
    add_column_sums(seg[1], s.data());
    add_column_sums(seg[0], s.data() + d, 1.0, w.data());
    add_column_sums(seg[1], s.data() + d, 1.0, w.data() + n);
    comm.all_reduce(s.data(), s.size(), reduce_op::sum);
    const double f = lambda * eps / double(2 * ng - 1);
    for (index_t i = 0; i < n2; ++i) {
      const double wi = w[cd::uz(i)];
      for (index_t c = 0; c < d; ++c) {
        const double zi = z(i, c);
        dz_at(i, c) -=
            static_cast<T>(f * (wi * (s[cd::uz(c)] - zi) + (s[cd::uz(d + c)] - wi * zi)));
      }
    }
  }
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Forward over the global batch of this rank's views a, b (n_local x D). Collective.
template <class Comm, class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto nt_xent_forward(const Comm& comm, const A& a, const B& b, const nt_xent_options& o = {}) {
  detail::require_communicator<Comm>();
  const auto va = ::contrastive::detail::input_view(a);
  const auto vb = ::contrastive::detail::input_view(b);
  using T = typename decltype(va)::value_type;
  ::contrastive::detail::require_same_value_type<T, decltype(vb)>();
  return detail::nt_xent_forward_impl<T>(comm, va, vb, o);
}

/// Backward: upstream * dL/da, dL/db for this rank's rows (upstream equal on every rank).
/// Collective.
template <class Comm, class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
nt_xent_parameter_gradients
    nt_xent_backward(const Comm& comm, const A& a, const B& b, const nt_xent_saved<T>& saved,
                     GA&& grad_a, GB&& grad_b, const nt_xent_options& o = {},
                     double upstream = 1.0) {
  detail::require_communicator<Comm>();
  const auto va = ::contrastive::detail::input_view(a);
  const auto vb = ::contrastive::detail::input_view(b);
  const auto ga = ::contrastive::detail::output_view(std::forward<GA>(grad_a));
  const auto gb = ::contrastive::detail::output_view(std::forward<GB>(grad_b));
  ::contrastive::detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga),
                                                 decltype(gb)>();
  return detail::nt_xent_backward_impl<T>(comm, va, vb, saved, ga, gb, o, upstream);
}

/// Forward and backward; returns the global loss. Collective.
template <class Comm, class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto nt_xent_forward_backward(const Comm& comm, const A& a, const B& b, GA&& grad_a, GB&& grad_b,
                              const nt_xent_options& o = {},
                              nt_xent_parameter_gradients* parameter_grads = nullptr) {
  const auto saved = distributed::nt_xent_forward(comm, a, b, o);
  const temperature_gradient tg = distributed::nt_xent_backward(
      comm, a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

}  // namespace distributed
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_DISTRIBUTED_NT_XENT_HPP
