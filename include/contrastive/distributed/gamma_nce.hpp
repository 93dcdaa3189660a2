#ifndef CONTRASTIVE_DISTRIBUTED_GAMMA_NCE_HPP
#define CONTRASTIVE_DISTRIBUTED_GAMMA_NCE_HPP

// The gamma-auxiliary loss (losses/gamma_nce.hpp; [RECON], docs/gamma_nce.md) over
// a batch sharded across ranks. Rank k passes its rows of a and b, their dataset sample ids and
// its normalizer_state; the surrogate loss, the monitoring values and this rank's gradients
// equal the single-process gamma_nce_* on the global batch (rank order), and the states end as
// the single-process state would (see the two modes below).
//
// Per anchor everything is local once its log-sum-exp is known: the rate zeta_i (state, same
// batch or exact), the draw g_i (Philox keyed by the sample id, so the same on any rank) and
// r_i. The log-sum-exps come from the ring of distributed/ring.hpp (rows local, columns all-reduced, the
// diagonal s_ii masked on the own block unless positive_in_normaliser); the backward ring
// carries the b blocks with their gradient accumulators. Ids must be distinct over the GLOBAL
// batch (checked on the all-gathered ids, O(N)).
//
// State modes (options.state_mode; only with rate_source::state):
// - replicated (default): every rank holds a state over all dataset ids. Each rank reads the
//   entries of its own rows, and after the forward the batch's ids and log Zhat are all-gathered
//   and every rank applies every update, so replicas that start equal stay bitwise equal
//   (docs/gamma_nce.md#one-training-step, step 6) and equal the single-process state. Costs O(N)
//   communication per step.
// - sharded: each rank reads and writes only the entries of its own rows' ids; nothing is
//   exchanged. Equal to one process when every id is always placed on the same rank (e.g. a
//   fixed partition of the dataset by rank): each rank's state then owns its ids, and the union
//   of the rank states is the single-process state. Placing an id on another rank later reads
//   that rank's (stale or unvisited) entry instead: the library cannot detect this.
//
// Not supported: a state object shared between ranks in one process. Agreement and errors as in
// distributed/info_nce.hpp; state directions and (replicated) sizes must agree as well.

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
#include "contrastive/losses/gamma_nce.hpp"
#include "contrastive/sampling/gamma.hpp"
#include "contrastive/sampling/philox.hpp"
#include "contrastive/state/normalizer_state.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace distributed {

/// How the ranks' normalizer_states relate (see the header comment).
enum class gamma_state_mode { replicated, sharded };

/// The single-process options plus the state mode.
struct gamma_nce_options : ::contrastive::gamma_nce_options {
  gamma_state_mode state_mode = gamma_state_mode::replicated;
};

template <class T>
struct gamma_nce_saved {
  T loss = 0;                     // global surrogate (the same on every rank)
  double info_nce = 0;            // global batch InfoNCE / CLIP (monitoring)
  double rate_loss = 0;           // global (1/N) sum (-s_ii + zeta_i), averaged over directions
  double grad_log_scale = 0;      // dL/dtheta of the surrogate at upstream 1
  gamma_nce_direction<T> row;     // this rank's anchors a_i (direction 0)
  gamma_nce_direction<T> col;     // this rank's anchors b_i (direction 1); empty unless symmetric
  std::vector<T> col_lse_all;     // all N columns (symmetric): for the travelling blocks
  std::vector<double> col_r_all;  // all N columns' r (symmetric)
  index_t n = 0, n_global = 0, d = 0;
  std::vector<index_t> counts;  // rows per rank
  double temperature = 0;
  bool symmetric = true;
  bool positive_in_normaliser = false;
  loss_reduction reduction = loss_reduction::mean;

  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

using base_gamma_options = ::contrastive::gamma_nce_options;

template <class T>
void gamma_nce_local_checks(const char* fn, const matrix_view<const T>& a,
                            const matrix_view<const T>& b, const base_gamma_options& o) {
  cd::check_matrix(fn, "a", a);
  cd::check_matrix(fn, "b", b);
  cd::gamma_nce_check_options(fn, o);
  CONTRASTIVE_CHECK(a.cols() > 0, fn,
                    ": 'a' has 0 columns (D must be > 0; a rank without rows "
                    "passes 0 x D)");
  cd::check_same_shape(fn, a, b);
  cd::check_finite(fn, "a", a);
  cd::check_finite(fn, "b", b);
}

template <class T, class Comm>
void gamma_nce_agree_common(const Comm& comm, const char* fn, const matrix_view<const T>& a,
                            const base_gamma_options& o, double upstream) {
  agree_values(comm, fn,
               {{"D (the columns of 'a')", double(a.cols())},
                {"the element size (float or double)", double(sizeof(T))},
                {"'temperature'", o.temperature},
                {"'symmetric'", double(o.symmetric)},
                {"'positive_in_normaliser'", double(o.positive_in_normaliser)},
                {"'reduction'", double(static_cast<int>(o.reduction))},
                {"'upstream'", upstream}});
}

template <class T>
cd::pairwise_problem<T> gamma_block_problem(const matrix_view<const T>* a,
                                            const matrix_view<const T>* block,
                                            const base_gamma_options& o, const shard_layout& l,
                                            int owner) {
  cd::pairwise_problem<T> p = cd::make_pairwise_problem(a, 1, block, 1, o.temperature, o);
  p.mask_diagonal = !o.positive_in_normaliser && owner == l.rank;  // s_ii lies in the own block
  return p;
}

template <class T, class Comm>
gamma_nce_saved<T> gamma_nce_forward_impl(const Comm& comm, const matrix_view<const T>& a_in,
                                          const matrix_view<const T>& b_in,
                                          vector_view<const std::int64_t> ids,
                                          normalizer_state* state, const gamma_nce_options& o) {
  const char* fn = "distributed::gamma_nce_forward";
  const bool use_state = o.rate_source == gamma_rate_source::state;
  const bool replicated = o.state_mode == gamma_state_mode::replicated;
  const bool sym = o.symmetric;
  const int dirs = sym ? 2 : 1;
  gamma_nce_agree_common(comm, fn, a_in, o, 1.0);
  agree_values(comm, fn,
               {{"'alpha'", o.alpha},
                {"'beta'", o.beta},
                {"'seed' (low 32 bits)", double(o.seed & 0xffffffffu)},
                {"'seed' (high 32 bits)", double(o.seed >> 32)},
                {"'step'", double(o.step)},
                {"'rate_source'", double(static_cast<int>(o.rate_source))},
                {"'order'", double(static_cast<int>(o.order))},
                {"'state_mode'", double(static_cast<int>(o.state_mode))},
                {"whether a normalizer_state is passed", double(state != nullptr)},
                {"the normalizer_state's directions", state ? double(state->directions()) : 0.0},
                {"the normalizer_state's samples (replicated mode)",
                 state && replicated ? double(state->samples()) : 0.0}});
  const index_t n = a_in.rows();
  agree_checks(comm, [&] {
    gamma_nce_local_checks(fn, a_in, b_in, o);
    cd::gamma_nce_check_ids_and_rates(fn, ids, n, state, o);
  });
  const shard_layout l = make_layout(comm, n);
  const index_t ng = l.total(), d = a_in.cols(), off = l.local_offset();
  CONTRASTIVE_CHECK(ng > 0, fn, ": empty global batch (every rank has 0 rows)");
  CONTRASTIVE_CHECK(
      ng > 1 || o.positive_in_normaliser, fn,
      ": a global batch of 1 has no negatives (use N >= 2 or positive_in_normaliser)");
  check_block_size(fn, l, 1, d);
  // Distinct over the global batch; every rank checks the same gathered ids.
  const std::vector<std::int64_t> all_ids = gather_rows(comm, l, ids.data);
  {
    std::vector<std::int64_t> sorted(all_ids.size());
    normalizer_state::check_distinct(fn, vector_view<const std::int64_t>(all_ids), sorted.data());
  }

  cd::arena pack(workspace{}, cd::packing_bytes(a_in) + cd::packing_bytes(b_in), fn);
  const matrix_view<const T> a = cd::gemm_input(a_in, pack);
  const matrix_view<const T> b = cd::gemm_input(b_in, pack);
  std::vector<online_softmax<double>> row(static_cast<std::size_t>(n));
  std::vector<online_softmax<double>> col(sym ? static_cast<std::size_t>(ng) : 0);
  const step_scratch scratch(cd::pairwise_forward_bytes<T>(ring_sweep_shape(l, d, o)));
  ring_visit<T>(comm, l, &b, 1, d, [&](int owner, const matrix_view<const T>* block) {
    const cd::pairwise_problem<T> p = gamma_block_problem<T>(&a, block, o, l, owner);
    cd::pairwise_stats<T> st;
    st.row = row.data();
    if (sym) st.col = col.data() + l.offset(owner);
    cd::arena ar = scratch.arena(fn);
    cd::pairwise_forward(p, st, ar);
  });
  if (sym) all_reduce_softmax(comm, col.data(), col.size());

  const double lambda = 1.0 / o.temperature;
  const double log_count = std::log(double(o.positive_in_normaliser ? ng : ng - 1));
  const double cw = (sym ? 0.5 : 1.0) * cd::gamma_reduction_weight(o.reduction, ng);

  gamma_nce_saved<T> saved;
  saved.n = n;
  saved.n_global = ng;
  saved.d = d;
  saved.counts = l.counts;
  saved.temperature = o.temperature;
  saved.symmetric = sym;
  saved.positive_in_normaliser = o.positive_in_normaliser;
  saved.reduction = o.reduction;

  double sums[4] = {0, 0, 0, 0};  // loss, info_nce, rate_loss, dtheta (weighted, local anchors)
  const normalizer_state* rate_state = use_state ? state : nullptr;
  auto direction = [&](int dir, const online_softmax<double>* stats, const double* exact,
                       gamma_nce_direction<T>& out) {
    cd::gamma_nce_direction_step(dir, n, ids.data, a, b, lambda, log_count, stats, exact,
                                 rate_state, o, out,
                                 [&](double term, double in, double ra, double dt) {
                                   sums[0] += cw * term;
                                   sums[1] += cw * in;
                                   sums[2] += cw * ra;
                                   sums[3] += cw * dt;
                                 });
  };
  const bool use_exact = o.rate_source == gamma_rate_source::exact;
  direction(0, row.data(), use_exact ? o.exact_log_normalizer_a.data : nullptr, saved.row);
  if (sym)
    direction(1, col.data() + off, use_exact ? o.exact_log_normalizer_b.data : nullptr, saved.col);
  sum_in_rank_order(comm, sums, 4);
  cd::gamma_nce_check_loss(fn, sums[0], sums[3], o.temperature);
  saved.loss = static_cast<T>(sums[0]);
  saved.info_nce = sums[1];
  saved.rate_loss = sums[2];
  saved.grad_log_scale = sums[3];
  if (sym) {
    saved.col_r_all = gather_rows(comm, l, saved.col.r.data());
    saved.col_lse_all.resize(static_cast<std::size_t>(ng));
    for (index_t j = 0; j < ng; ++j)
      saved.col_lse_all[cd::uz(j)] = static_cast<T>(col[cd::uz(j)].lse());
  }

  // Commit the state only now (every rank passed every check, the loss is finite everywhere).
  if (use_state) {
    auto update = [&](std::int64_t id, int dir, double log_zhat) {
      const double v = normalizer_state::ema(cd::normalizer_state_access::zeta(*state, id, dir),
                                             cd::normalizer_state_access::visited(*state, id, dir),
                                             log_zhat, o.beta);
      cd::normalizer_state_access::set(*state, id, dir, v);
    };
    if (replicated) {
      for (int dir = 0; dir < dirs; ++dir) {
        const gamma_nce_direction<T>& dd = dir == 0 ? saved.row : saved.col;
        const std::vector<double> all = gather_rows(comm, l, dd.log_zhat.data());
        for (index_t i = 0; i < ng; ++i) update(all_ids[cd::uz(i)], dir, all[cd::uz(i)]);
      }
    } else {
      for (int dir = 0; dir < dirs; ++dir) {
        const gamma_nce_direction<T>& dd = dir == 0 ? saved.row : saved.col;
        for (index_t i = 0; i < n; ++i) update(ids.data[i], dir, dd.log_zhat[cd::uz(i)]);
      }
    }
  }
  return saved;
}

template <class T, class Comm>
temperature_gradient gamma_nce_backward_impl(const Comm& comm, const matrix_view<const T>& a_in,
                                             const matrix_view<const T>& b_in,
                                             const gamma_nce_saved<T>& saved,
                                             const matrix_view<T>& grad_a,
                                             const matrix_view<T>& grad_b,
                                             const base_gamma_options& o, double upstream) {
  const char* fn = "distributed::gamma_nce_backward";
  gamma_nce_agree_common(comm, fn, a_in, o, upstream);
  const shard_layout l = make_layout(comm, a_in.rows());
  // The largest input magnitude and anchor weight r_i of the global batch, for the gradient bound
  // (collective; bad views are left to the checks below).
  double maxima[2] = {cd::matrix_ok(a_in) && cd::matrix_ok(b_in)
                          ? std::max(cd::max_abs(a_in), cd::max_abs(b_in))
                          : 0.0,
                      1.0};
  for (const auto* r : {&saved.row.r, &saved.col_r_all})
    for (const double x : *r)
      maxima[1] = std::abs(x) > maxima[1] || x != x ? std::abs(x) : maxima[1];
  comm.all_reduce(maxima, 2, reduce_op::max);
  agree_checks(comm, [&] {
    gamma_nce_local_checks(fn, a_in, b_in, o);
    CONTRASTIVE_CHECK(saved.n == a_in.rows() && saved.d == a_in.cols() && saved.counts == l.counts,
                      fn, ": 'saved' belongs to another batch (", saved.n, " x ", saved.d,
                      " rows here, ", saved.n_global, " in all) than these inputs (", a_in.rows(),
                      " x ", a_in.cols(), ", ", l.total(), " in all)");
    CONTRASTIVE_CHECK(saved.temperature == o.temperature && saved.symmetric == o.symmetric &&
                          saved.positive_in_normaliser == o.positive_in_normaliser &&
                          saved.reduction == o.reduction,
                      fn, ": 'saved' was computed with other options (temperature ",
                      saved.temperature, ", symmetric ", saved.symmetric,
                      ", positive_in_normaliser ", saved.positive_in_normaliser,
                      ") than these (temperature ", o.temperature, ", symmetric ", o.symmetric,
                      ", positive_in_normaliser ", o.positive_in_normaliser, ")");
    const auto un = static_cast<std::size_t>(saved.n),
               ug = static_cast<std::size_t>(saved.n_global);
    CONTRASTIVE_CHECK(
        saved.row.r.size() == un && saved.row.lse.size() == un &&
            (!saved.symmetric || (saved.col_r_all.size() == ug && saved.col_lse_all.size() == ug)),
        fn, ": 'saved' is incomplete (not produced by distributed::gamma_nce_forward)");
    ::contrastive::detail::check_pair_gradients(fn, a_in, b_in, grad_a, grad_b, upstream);
    ::contrastive::detail::check_pair_gradient_bound(fn, l.total(), maxima[0], grad_a, grad_b,
                                                     upstream, 1.0 / o.temperature, maxima[1],
                                                     o.accumulate, saved.grad_log_scale);
  });

  const index_t n = a_in.rows(), d = a_in.cols(), ng = l.total();
  const bool sym = o.symmetric;
  const double lambda = 1.0 / o.temperature;
  cd::arena pack(workspace{},
                 cd::packing_bytes(a_in) + cd::packing_bytes(b_in) + cd::packing_bytes(grad_a) +
                     cd::packing_bytes(grad_b),
                 fn);
  const matrix_view<const T> a = cd::gemm_input(a_in, pack);
  const matrix_view<const T> b = cd::gemm_input(b_in, pack);
  const cd::gemm_output<T> ga(grad_a, o.accumulate, pack);
  const cd::gemm_output<T> gb(grad_b, o.accumulate, pack);

  // G_ij = c w up [ -delta_ij (per direction) + r_i pn^row_ij + r_j pn^col_ij ] on N_i.
  const double cw = (sym ? 0.5 : 1.0) * cd::gamma_reduction_weight(o.reduction, ng) * upstream;
  std::vector<T> row_w(static_cast<std::size_t>(n)), col_w(sym ? static_cast<std::size_t>(ng) : 0);
  for (index_t i = 0; i < n; ++i) row_w[cd::uz(i)] = static_cast<T>(cw * saved.row.r[cd::uz(i)]);
  for (index_t j = 0; j < static_cast<index_t>(col_w.size()); ++j)
    col_w[cd::uz(j)] = static_cast<T>(cw * saved.col_r_all[cd::uz(j)]);

  const matrix_view<T> dA = ga.view(), dB = gb.view();
  const step_scratch scratch(cd::pairwise_backward_bytes<T>(ring_sweep_shape(l, d, o)));
  ring_visit_accumulate<T>(
      comm, l, &b, &dB, 1, d,
      [&](int owner, const matrix_view<const T>* block, const matrix_view<T>* dblock) {
        const cd::pairwise_problem<T> p = gamma_block_problem<T>(&a, block, o, l, owner);
        cd::pairwise_coefficients<T> k;
        k.row_w = row_w.data();
        k.row_lse = saved.row.lse.data();
        if (sym) {
          k.col_w = col_w.data() + l.offset(owner);
          k.col_lse = saved.col_lse_all.data() + l.offset(owner);
        }
        cd::arena ar = scratch.arena(fn);
        cd::pairwise_backward(p, k, &dA, dblock, ar);
      });

  // The -s_ii terms of the local rows.
  cd::gamma_nce_diagonal_backward(a, b, dA, dB, static_cast<T>(lambda * cw * (sym ? 2.0 : 1.0)));
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Forward with a normalizer_state (updated by the call; see state modes above). `ids` are the
/// dataset ids of this rank's rows. Collective.
template <class Comm, class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto gamma_nce_forward(const Comm& comm, const A& a, const B& b,
                       vector_view<const std::int64_t> ids, normalizer_state& state,
                       const gamma_nce_options& o = {}) {
  detail::require_communicator<Comm>();
  const auto va = ::contrastive::detail::input_view(a);
  const auto vb = ::contrastive::detail::input_view(b);
  using T = typename decltype(va)::value_type;
  ::contrastive::detail::require_same_value_type<T, decltype(vb)>();
  return detail::gamma_nce_forward_impl<T>(comm, va, vb, ids, &state, o);
}

/// Forward without a state (rate_source same_batch or exact). Collective.
template <class Comm, class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto gamma_nce_forward(const Comm& comm, const A& a, const B& b,
                       vector_view<const std::int64_t> ids, const gamma_nce_options& o) {
  detail::require_communicator<Comm>();
  const auto va = ::contrastive::detail::input_view(a);
  const auto vb = ::contrastive::detail::input_view(b);
  using T = typename decltype(va)::value_type;
  ::contrastive::detail::require_same_value_type<T, decltype(vb)>();
  return detail::gamma_nce_forward_impl<T>(comm, va, vb, ids, nullptr, o);
}

/// Backward of the surrogate for this rank's rows (r, draws and states held fixed; upstream
/// equal on every rank). Collective.
template <class Comm, class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
gamma_nce_parameter_gradients
    gamma_nce_backward(const Comm& comm, const A& a, const B& b, const gamma_nce_saved<T>& saved,
                       GA&& grad_a, GB&& grad_b, const ::contrastive::gamma_nce_options& o = {},
                       double upstream = 1.0) {
  detail::require_communicator<Comm>();
  const auto va = ::contrastive::detail::input_view(a);
  const auto vb = ::contrastive::detail::input_view(b);
  const auto ga = ::contrastive::detail::output_view(std::forward<GA>(grad_a));
  const auto gb = ::contrastive::detail::output_view(std::forward<GB>(grad_b));
  ::contrastive::detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga),
                                                 decltype(gb)>();
  return detail::gamma_nce_backward_impl<T>(comm, va, vb, saved, ga, gb, o, upstream);
}

/// Forward (with the state) and backward; returns the global surrogate loss. Collective.
template <class Comm, class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto gamma_nce_forward_backward(const Comm& comm, const A& a, const B& b,
                                vector_view<const std::int64_t> ids, normalizer_state& state,
                                GA&& grad_a, GB&& grad_b, const gamma_nce_options& o = {},
                                gamma_nce_parameter_gradients* parameter_grads = nullptr) {
  // The forward updates the state: check the backward's gradients first (on every rank), so that
  // a call that throws leaves the state as it was.
  detail::agree_checks(comm, [&] {
    ::contrastive::detail::check_pair_gradients(
        "distributed::gamma_nce_backward", ::contrastive::detail::input_view(a),
        ::contrastive::detail::input_view(b), ::contrastive::detail::output_view(grad_a),
        ::contrastive::detail::output_view(grad_b), 1.0);
  });
  const ::contrastive::detail::normalizer_state_snapshot before(state, ids);
  auto saved = distributed::gamma_nce_forward(comm, a, b, ids, state, o);
  temperature_gradient tg;
#if CONTRASTIVE_USE_EXCEPTIONS
  try {  // every rank throws together (agreed checks) and puts its batch's entries back
    tg = distributed::gamma_nce_backward(comm, a, b, saved, std::forward<GA>(grad_a),
                                         std::forward<GB>(grad_b), o, 1.0);
  } catch (...) {
    before.restore(state);
    throw;
  }
#else
  tg = distributed::gamma_nce_backward(comm, a, b, saved, std::forward<GA>(grad_a),
                                       std::forward<GB>(grad_b), o, 1.0);
#endif
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

/// The same without a state (rate_source same_batch or exact). Collective.
template <class Comm, class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto gamma_nce_forward_backward(const Comm& comm, const A& a, const B& b,
                                vector_view<const std::int64_t> ids, GA&& grad_a, GB&& grad_b,
                                const gamma_nce_options& o,
                                gamma_nce_parameter_gradients* parameter_grads = nullptr) {
  auto saved = distributed::gamma_nce_forward(comm, a, b, ids, o);
  const temperature_gradient tg = distributed::gamma_nce_backward(
      comm, a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

}  // namespace distributed
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_DISTRIBUTED_GAMMA_NCE_HPP
