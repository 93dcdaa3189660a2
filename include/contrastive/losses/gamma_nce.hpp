#ifndef CONTRASTIVE_LOSSES_GAMMA_NCE_HPP
#define CONTRASTIVE_LOSSES_GAMMA_NCE_HPP

// The gamma-auxiliary decomposable contrastive loss (C. Chen et al., "Why do We Need Large
// Batchsizes in Contrastive Learning? A Gradient-Bias Perspective", NeurIPS 2022).
//
// [RECON] The paper's full text was not available; this implements the reconstruction described
// in docs/gamma_nce.md (tags: docs/README.md#tags), which is consistent with the paper's abstract and
// its public summary but is not a transcription of the paper's equations or algorithm.
//
// Target, per anchor i and direction: l_i = -s_ii + log Z_i with Z_i = E_neg[exp s(x_i, y-)], the
// infinite-negative ("global") contrastive loss. With an auxiliary u_i | w ~ Gamma(alpha, Z_i),
// parameterised as u~_i = g_i / (alpha Zbar_i), g_i ~ Gamma(alpha, 1), the surrogate
//
//     l_i^aug = -s_ii + u~_i Zhat_i,        Zhat_i = (1/|N_i|) sum_{j in N_i} exp(s_ij)
//
// is linear in the minibatch estimate Zhat_i, so its gradient is unbiased for fixed u~ (the
// in-batch InfoNCE gradient is not: E[grad Zhat / Zhat] != grad Z / Z). Writing
// r_i = u~_i Zhat_i = (g_i/alpha) exp(log Zhat_i - zeta_i), zeta_i = log Zbar_i, the logit gradient
// is dl_i/ds_ii = -1 and dl_i/ds_ij = r_i pn_ij (j in N_i), pn the softmax over N_i: InfoNCE/DCL
// (r = 1), SogCLR (r = Zhat/Zbar) and this loss differ only in the per-anchor weight r_i, which
// is exactly the row/column weight of the shared tiled sweep (core/tiling.hpp). No N x N matrix
// is formed: forward keeps O(N) statistics per direction, backward recomputes the tiles.
//
// One training step (the forward does 1-4, the backward 5):
//   1. LSE_i over N_i per direction (N_i = batch minus i; all of the batch with
//      positive_in_normaliser), log Zhat_i = LSE_i - log |N_i|;
//   2. rate: zeta_i from the normalizer_state (log-domain EMA with weight beta, first visit
//      zeta = log Zhat; update then sample by default), or log Zhat_i itself (same_batch: the
//      bias is back, E[gradient] = in-batch log-mean-exp gradient), or a caller-supplied exact
//      log-normaliser (exact: unbiased);
//   3. g_i ~ Gamma(alpha, 1) from Philox (key = seed, counter = (sample id, step, direction)),
//      or g_i/alpha := 1 when alpha = +infinity (deterministic: SogCLR's estimator);
//   4. r_i = (g_i/alpha) exp(log Zhat_i - zeta_i);
//   5. gradients with r_i, the auxiliary variables and the state held constant.
//
// Reported values: `loss` = the surrogate (1/N) sum_i (-s_ii + r_i) (mean of both directions
// when symmetric), which is not comparable to InfoNCE; `info_nce` = the plain batch InfoNCE
// (the CLIP loss when symmetric) for monitoring; `rate_loss` = (1/N) sum_i (-s_ii + zeta_i), the
// global-loss estimate through the rates.
//
// The forward *mutates the state* (rate_source::state): it is checked in full first and written
// only once the loss is known to be finite, so a throwing call leaves the state unchanged.
// Direction a -> b uses state direction 0 and Philox stream 0, b -> a direction 1 and stream 1;
// a one-direction loss needs (and touches) only direction 0.
//
// Sample ids: row i of `a` and of `b` are the two views of dataset sample ids[i]. Ids must be
// >= 0, < state.samples() with the state, and distinct within a batch (a duplicate would give two
// anchors the same auxiliary draw and two EMA updates of one entry in one step): an out-of-range
// or repeated id throws contrastive::invalid_argument naming the id and its positions.
//
// [LIB] choices (docs/gamma_nce.md): the u~ = g/(alpha Zbar) parameterisation, alpha = 1, beta = 0.9,
// update then sample (it bounds r_i <= g_i/(alpha beta); sample_then_update does not), N_i =
// negatives only, and the monitoring values.

#include <cmath>
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
#include "contrastive/losses/gamma_nce_options.hpp"
#include "contrastive/sampling/gamma.hpp"
#include "contrastive/sampling/philox.hpp"
#include "contrastive/state/normalizer_state.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Per-anchor quantities of one direction (all of length N).
template <class T>
struct gamma_nce_direction {
  std::vector<T> lse;            // LSE_{j in N_i} s_ij (saved for the backward)
  std::vector<double> log_zhat;  // log Zhat_i = LSE_i - log |N_i|
  std::vector<double> zeta;      // the log-rate used for r_i
  std::vector<double> g;         // g_i / alpha (1 in the deterministic mode)
  std::vector<double> r;         // r_i = g_i/alpha exp(log Zhat_i - zeta_i)
};

/// What the forward keeps for the backward (O(N), never N x N), plus monitoring values.
template <class T>
struct gamma_nce_saved {
  T loss = 0;                  // surrogate: mean (or sum) of -s_ii + r_i, averaged over directions
  double info_nce = 0;         // plain batch InfoNCE / CLIP value, same reduction (monitoring)
  double rate_loss = 0;        // mean (or sum) of -s_ii + zeta_i, averaged over directions
  double grad_log_scale = 0;   // dL/dtheta of the surrogate, theta = log(1/tau), r held fixed
  gamma_nce_direction<T> row;  // a -> b (state direction 0, Philox stream 0)
  gamma_nce_direction<T> col;  // b -> a (direction 1, stream 1); empty unless symmetric
  index_t n = 0, d = 0;
  // The options the statistics belong to; backward checks them.
  double temperature = 0;
  bool symmetric = true;
  bool positive_in_normaliser = false;
  loss_reduction reduction = loss_reduction::mean;

  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

constexpr const char* gamma_nce_fwd_name = "gamma_nce_forward";
constexpr const char* gamma_nce_bwd_name = "gamma_nce_backward";

template <class T>
void gamma_nce_check_inputs(const char* fn, const matrix_view<const T>& a,
                            const matrix_view<const T>& b, const gamma_nce_options& o) {
  gamma_nce_check_shapes(fn, a, b, o);
  check_finite(fn, "a", a);
  check_finite(fn, "b", b);
}

template <class Alloc>
struct gamma_nce_forward_buffers {
  online_softmax<double>* row = nullptr;
  online_softmax<double>* col = nullptr;
  std::int64_t* sorted_ids = nullptr;

  gamma_nce_forward_buffers(Alloc& al, index_t n, bool symmetric) {
    const auto un = static_cast<std::size_t>(n);
    row = al.template take<online_softmax<double>>(un);
    if (symmetric) col = al.template take<online_softmax<double>>(un);
    sorted_ids = al.template take<std::int64_t>(un);
  }
};

template <class T, class Alloc>
struct gamma_nce_backward_buffers {
  T* row_w = nullptr;
  T* row_lse = nullptr;
  T* col_w = nullptr;
  T* col_lse = nullptr;

  gamma_nce_backward_buffers(Alloc& al, index_t n, bool symmetric) {
    const auto un = static_cast<std::size_t>(n);
    row_w = al.template take<T>(un);
    row_lse = al.template take<T>(un);
    if (symmetric) {
      col_w = al.template take<T>(un);
      col_lse = al.template take<T>(un);
    }
  }
};

inline sweep_shape gamma_nce_sweep(index_t n, index_t d, const gamma_nce_options& o) noexcept {
  return make_sweep_shape(o, false, n, n, d);
}

template <class T>
std::size_t gamma_nce_forward_bytes(index_t n, index_t d, const gamma_nce_options& o,
                                    std::size_t packing) {
  size_counter c;
  const gamma_nce_forward_buffers<size_counter> sized(c, n, o.symmetric);
  (void)sized;
  return c.bytes + packing + pairwise_forward_bytes<T>(gamma_nce_sweep(n, d, o)) +
         workspace_alignment;
}

template <class T>
std::size_t gamma_nce_backward_bytes(index_t n, index_t d, const gamma_nce_options& o,
                                     std::size_t packing) {
  size_counter c;
  const gamma_nce_backward_buffers<T, size_counter> sized(c, n, o.symmetric);
  (void)sized;
  return c.bytes + packing + pairwise_backward_bytes<T>(gamma_nce_sweep(n, d, o)) +
         workspace_alignment;
}

template <class T>
pairwise_problem<T> gamma_nce_problem(const matrix_view<const T>& a, const matrix_view<const T>& b,
                                      const gamma_nce_options& o) {
  pairwise_problem<T> p = make_pairwise_problem(&a, 1, &b, 1, o.temperature, o);
  p.mask_diagonal = !o.positive_in_normaliser;
  return p;
}

inline double gamma_reduction_weight(loss_reduction r, index_t n) noexcept {
  return r == loss_reduction::mean ? 1.0 / double(n) : 1.0;
}

/// The gamma step of one direction, for anchors i in [0, n) (docs/gamma_nce.md): log Zhat_i from
/// the row statistics, the rate zeta_i (the state's EMA or last value, the exact value, or
/// log Zhat_i itself), the draw g_i ~ Gamma(alpha)/alpha (Philox stream (seed, id, step, dir);
/// 1 when deterministic) and the weight r_i = g_i exp(log Zhat_i - zeta_i), written to `out`.
/// add(loss, info_nce, rate_loss, dtheta) receives each anchor's unweighted terms; the caller
/// sums them in its own order. `state` is used only when non-null (rate_source::state); `exact`
/// only when non-null (rate_source::exact). Shared by the single-process and distributed losses.
template <class T, class Add>
void gamma_nce_direction_step(int dir, index_t n, const std::int64_t* ids,
                              const matrix_view<const T>& a, const matrix_view<const T>& b,
                              double lambda, double log_count, const online_softmax<double>* stats,
                              const double* exact, const normalizer_state* state,
                              const gamma_nce_options& o, gamma_nce_direction<T>& out, Add&& add) {
  const auto un = static_cast<std::size_t>(n);
  out.lse.resize(un);
  out.log_zhat.resize(un);
  out.zeta.resize(un);
  out.g.resize(un);
  out.r.resize(un);
  for (index_t i = 0; i < n; ++i) {
    const std::int64_t id = ids[i];
    const double s_ii = lambda * dot_rows(a, i, b, i);
    const double lse = stats[i].lse();
    const double log_zhat = lse - log_count;
    const bool seen = state && normalizer_state_access::visited(*state, id, dir);
    const double old = state ? normalizer_state_access::zeta(*state, id, dir) : 0.0;
    const gamma_rate_source src = state   ? gamma_rate_source::state
                                  : exact ? gamma_rate_source::exact
                                          : gamma_rate_source::same_batch;
    const double zeta =
        gamma_anchor_zeta(src, o.order, o.beta, log_zhat, old, seen, exact ? exact[i] : 0.0);
    const double g = gamma_anchor_draw(o.alpha, o.seed, id, o.step, dir);
    const gamma_anchor_values v =
        gamma_anchor(g, lse, log_zhat, zeta, s_ii, o.positive_in_normaliser);
    out.lse[uz(i)] = static_cast<T>(lse);
    out.log_zhat[uz(i)] = log_zhat;
    out.zeta[uz(i)] = zeta;
    out.g[uz(i)] = g;
    out.r[uz(i)] = v.r;
    add(v.loss, v.info_nce, v.rate, v.r * stats[i].mean() - s_ii);
  }
}

/// The forward's loss and its d/dtheta are finite.
inline void gamma_nce_check_loss(const char* fn, double loss, double dtheta, double temperature) {
  CONTRASTIVE_CHECK(std::isfinite(loss) && std::isfinite(dtheta), fn, ": the loss is not finite (",
                    loss, ") at temperature ", temperature,
                    "; the logits overflow or a weight r_i = (g_i/alpha) Zhat_i/Zbar_i does (check "
                    "the rates; sample_then_update does not bound r_i)");
}

/// The -s_ii terms of the backward, O(N D): G_ii -= coef per direction, i.e. dA_i -= coef b_i and
/// dB_i -= coef a_i for the local rows (coef = lambda c w up, twice when symmetric).
template <class T>
void gamma_nce_diagonal_backward(const matrix_view<const T>& a, const matrix_view<const T>& b,
                                 const matrix_view<T>& dA, const matrix_view<T>& dB, T coef) {
  for (index_t i = 0; i < a.rows(); ++i) {
    for (index_t k2 = 0; k2 < a.cols(); ++k2) {
      dA(i, k2) -= coef * b(i, k2);
      dB(i, k2) -= coef * a(i, k2);
    }
  }
}

template <class T>
gamma_nce_saved<T> gamma_nce_forward_impl(const matrix_view<const T>& a_in,
                                          const matrix_view<const T>& b_in,
                                          vector_view<const std::int64_t> ids,
                                          normalizer_state* state, const gamma_nce_options& o,
                                          workspace ws) {
  const char* fn = gamma_nce_fwd_name;
  gamma_nce_check_inputs(fn, a_in, b_in, o);
  const index_t n = a_in.rows(), d = a_in.cols();
  const bool sym = o.symmetric;
  const int dirs = sym ? 2 : 1;
  gamma_nce_check_ids_and_rates(fn, ids, n, state, o);
  const bool use_state = o.rate_source == gamma_rate_source::state;

  arena ar(ws,
           gamma_nce_forward_bytes<T>(n, d, o, packing_bytes(a_in) + packing_bytes(b_in)) -
               workspace_alignment,
           fn);
  gamma_nce_forward_buffers<arena> buf(ar, n, sym);
  normalizer_state::check_distinct(fn, ids, buf.sorted_ids);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  for (index_t i = 0; i < n; ++i) {
    buf.row[i] = online_softmax<double>();
    if (sym) buf.col[i] = online_softmax<double>();
  }
  const pairwise_problem<T> p = gamma_nce_problem(a, b, o);
  pairwise_stats<T> st;
  st.row = buf.row;
  st.col = buf.col;
  pairwise_forward(p, st, ar);

  const double lambda_d = 1.0 / o.temperature;
  const double log_count = std::log(double(o.positive_in_normaliser ? n : n - 1));
  const double w = gamma_reduction_weight(o.reduction, n);
  const double c = sym ? 0.5 : 1.0;

  gamma_nce_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.symmetric = sym;
  saved.positive_in_normaliser = o.positive_in_normaliser;
  saved.reduction = o.reduction;

  double loss = 0, info = 0, rate = 0, dtheta = 0;
  const normalizer_state* rate_state = use_state ? state : nullptr;
  auto direction = [&](int dir, const online_softmax<double>* stats, const double* exact,
                       gamma_nce_direction<T>& out) {
    double l_sum = 0, info_sum = 0, rate_sum = 0, dt_sum = 0;
    gamma_nce_direction_step(dir, n, ids.data, a, b, lambda_d, log_count, stats, exact, rate_state,
                             o, out, [&](double l, double in, double ra, double dt) {
                               l_sum += l;
                               info_sum += in;
                               rate_sum += ra;
                               dt_sum += dt;
                             });
    loss += c * w * l_sum;
    info += c * w * info_sum;
    rate += c * w * rate_sum;
    dtheta += c * w * dt_sum;
  };
  const bool use_exact = o.rate_source == gamma_rate_source::exact;
  direction(0, buf.row, use_exact ? o.exact_log_normalizer_a.data : nullptr, saved.row);
  // b -> a: the anchors are the rows of b; s_ii is the same diagonal.
  if (sym) direction(1, buf.col, use_exact ? o.exact_log_normalizer_b.data : nullptr, saved.col);

  gamma_nce_check_loss(fn, static_cast<double>(static_cast<T>(loss)), dtheta, o.temperature);
  saved.loss = static_cast<T>(loss);
  saved.info_nce = info;
  saved.rate_loss = rate;
  saved.grad_log_scale = dtheta;

  // Commit the state only now: a throwing call leaves it unchanged.
  if (use_state) {
    for (int dir = 0; dir < dirs; ++dir) {
      const gamma_nce_direction<T>& dd = dir == 0 ? saved.row : saved.col;
      for (index_t i = 0; i < n; ++i) {
        const std::int64_t id = ids.data[i];
        const double updated = normalizer_state::ema(
            normalizer_state_access::zeta(*state, id, dir),
            normalizer_state_access::visited(*state, id, dir), dd.log_zhat[uz(i)], o.beta);
        normalizer_state_access::set(*state, id, dir, updated);
      }
    }
  }
  return saved;
}

template <class T>
void gamma_nce_check_backward(const char* fn, const matrix_view<const T>& a,
                              const matrix_view<const T>& b, const gamma_nce_saved<T>& saved,
                              const matrix_view<T>& ga, const matrix_view<T>& gb,
                              const gamma_nce_options& o, double upstream) {
  gamma_nce_check_inputs(fn, a, b, o);
  gamma_nce_check_saved(fn, saved, a.rows(), a.cols(), o);
  const auto un = static_cast<std::size_t>(saved.n);
  CONTRASTIVE_CHECK(
      saved.row.r.size() == un && saved.row.lse.size() == un &&
          (!saved.symmetric || (saved.col.r.size() == un && saved.col.lse.size() == un)),
      fn, ": 'saved' is incomplete (not produced by gamma_nce_forward)");
  check_pair_gradients(fn, a, b, ga, gb, upstream);
  double max_r = 1;  // the anchor weights r_i multiply the softmax terms
  for (const auto* r : {&saved.row.r, &saved.col.r})
    for (const double x : *r) max_r = std::abs(x) > max_r || x != x ? std::abs(x) : max_r;
  check_pair_gradient_bound(fn, a, b, ga, gb, upstream, 1.0 / o.temperature, max_r, o.accumulate,
                            saved.grad_log_scale);
}

template <class T>
temperature_gradient gamma_nce_backward_impl(
    const matrix_view<const T>& a_in, const matrix_view<const T>& b_in,
    const gamma_nce_saved<T>& saved, const matrix_view<T>& grad_a, const matrix_view<T>& grad_b,
    const gamma_nce_options& o, double upstream, workspace ws) {
  const char* fn = gamma_nce_bwd_name;
  gamma_nce_check_backward(fn, a_in, b_in, saved, grad_a, grad_b, o, upstream);
  const index_t n = a_in.rows(), d = a_in.cols();
  const bool sym = o.symmetric;
  const double lambda_d = 1.0 / o.temperature;
  const std::size_t packing =
      packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, gamma_nce_backward_bytes<T>(n, d, o, packing) - workspace_alignment, fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  gamma_nce_backward_buffers<T, arena> buf(ar, n, sym);

  // G_ij = c w up [ -delta_ij (per direction) + r_i pn^row_ij + r_j pn^col_ij ] on N_i.
  const double cw = (sym ? 0.5 : 1.0) * gamma_reduction_weight(o.reduction, n) * upstream;
  for (index_t i = 0; i < n; ++i) {
    buf.row_w[i] = static_cast<T>(cw * saved.row.r[uz(i)]);
    buf.row_lse[i] = saved.row.lse[uz(i)];
    if (sym) {
      buf.col_w[i] = static_cast<T>(cw * saved.col.r[uz(i)]);
      buf.col_lse[i] = saved.col.lse[uz(i)];
    }
  }
  const pairwise_problem<T> p = gamma_nce_problem(a, b, o);
  pairwise_coefficients<T> k;
  k.row_w = buf.row_w;
  k.row_lse = buf.row_lse;
  k.col_w = buf.col_w;
  k.col_lse = buf.col_lse;
  const matrix_view<T> dA = ga.view(), dB = gb.view();
  pairwise_backward(p, k, &dA, &dB, ar);

  gamma_nce_diagonal_backward(a, b, dA, dB, static_cast<T>(lambda_d * cw * (sym ? 2.0 : 1.0)));
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Bytes of scratch a call will use for N x D row-major inputs and outputs; other layouts add one
/// packed copy each (see the tensor overload). Passing at least this much as `workspace` makes
/// the sweeps allocation-free (the returned `saved` still owns its O(N) vectors).
template <class T>
std::size_t gamma_nce_workspace_bytes(index_t n, index_t d, const gamma_nce_options& o = {}) {
  const std::size_t f = detail::gamma_nce_forward_bytes<T>(n, d, o, 0);
  const std::size_t b = detail::gamma_nce_backward_bytes<T>(n, d, o, 0);
  return f > b ? f : b;
}

/// Exact bytes for these inputs (packing included; gradients assumed row-major).
template <class A, class B,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value, int> = 0>
std::size_t gamma_nce_workspace_bytes(const A& a, const B& b, const gamma_nce_options& o = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  const std::size_t pack = detail::packing_bytes(va) + detail::packing_bytes(vb);
  const std::size_t f = detail::gamma_nce_forward_bytes<T>(va.rows(), va.cols(), o, pack);
  const std::size_t bw = detail::gamma_nce_backward_bytes<T>(va.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

/// Forward pass with the moving-average state (or any rate source): computes the per-direction
/// log Zhat, the rates, the gamma draws and the weights r_i; updates `state` (rate_source::state);
/// returns the surrogate loss, the monitoring values and the O(N) statistics for the backward.
/// `ids` are the dataset sample ids of the batch rows: distinct, >= 0 and, with the state,
/// < state.samples().
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto gamma_nce_forward(const A& a, const B& b, vector_view<const std::int64_t> ids,
                       normalizer_state& state, const gamma_nce_options& o = {},
                       workspace ws = {}) {
  static_assert(!detail::is_device_input<A>::value,
                "contrastive: device views keep their rates in a cuda::device_normalizer_state "
                "(#include <contrastive/cuda/gamma_nce.cuh>, compiled by nvcc)");
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  detail::require_same_value_type<T, decltype(vb)>();
  return detail::gamma_nce_forward_impl<T>(va, vb, ids, &state, o, ws);
}

/// Forward pass without a state: rate_source must be same_batch or exact (the ids still key the
/// gamma draws). Device views (ids and exact rates in device memory) run on the GPU.
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto gamma_nce_forward(const A& a, const B& b, vector_view<const std::int64_t> ids,
                       const gamma_nce_options& o, workspace ws = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/gamma_nce.cuh; ws is the CPU's
    (void)ws;
    return detail::device_backend_of<detail::gamma_nce_tag, A>::type::forward(
        as_view(a), as_view(b), ids, nullptr, o);
  } else {
    const auto va = detail::input_view(a);
    const auto vb = detail::input_view(b);
    using T = typename decltype(va)::value_type;
    detail::require_same_value_type<T, decltype(vb)>();
    return detail::gamma_nce_forward_impl<T>(va, vb, ids, nullptr, o, ws);
  }
}

/// Forward pass on device views with the device-resident state (cuda/gamma_nce.cuh); ids in
/// device memory.
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto gamma_nce_forward(const A& a, const B& b, vector_view<const std::int64_t> ids,
                       cuda::device_normalizer_state& state, const gamma_nce_options& o = {},
                       workspace = {}) {
  return detail::device_backend_of<detail::gamma_nce_tag, A>::type::forward(as_view(a), as_view(b),
                                                                            ids, &state, o);
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da and dL/db of the
/// surrogate, with r_i (hence the gamma draws and the state) held fixed. Returns upstream *
/// dL/dtemperature in three parameterisations. Does not touch any state.
template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
gamma_nce_parameter_gradients
    gamma_nce_backward(const A& a, const B& b, const gamma_nce_saved<T>& saved, GA&& grad_a,
                       GB&& grad_b, const gamma_nce_options& o = {}, double upstream = 1.0,
                       workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga), decltype(gb)>();
  return detail::gamma_nce_backward_impl<T>(va, vb, saved, ga, gb, o, upstream, ws);
}

/// Backward of a forward run on device views (cuda/gamma_nce.cuh).
template <class A, class B, class GA, class GB>
gamma_nce_parameter_gradients gamma_nce_backward(const A& a, const B& b,
                                                 const cuda::gamma_nce_device_saved& saved,
                                                 GA&& grad_a, GB&& grad_b,
                                                 const gamma_nce_options& o = {},
                                                 double upstream = 1.0, workspace = {}) {
  return detail::device_backend_of<detail::gamma_nce_tag, A>::type::backward(
      as_view(a), as_view(b), saved, as_view(grad_a), as_view(grad_b), o, upstream);
}

/// Forward and backward in one call; returns the surrogate loss (call forward and backward
/// separately to keep the monitoring values of `saved`). The temperature gradient is written to
/// *parameter_grads when given.
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto gamma_nce_forward_backward(const A& a, const B& b, vector_view<const std::int64_t> ids,
                                normalizer_state& state, GA&& grad_a, GB&& grad_b,
                                const gamma_nce_options& o = {},
                                gamma_nce_parameter_gradients* parameter_grads = nullptr,
                                workspace ws = {}) {
  // The forward updates the state: the backward's arguments are checked first, and the batch's
  // entries are put back if the backward still throws (its gradient bound needs the forward's
  // r_i), so that a call that throws leaves the state as it was.
  detail::check_pair_gradients(detail::gamma_nce_bwd_name, detail::input_view(a),
                               detail::input_view(b), detail::output_view(grad_a),
                               detail::output_view(grad_b), 1.0);
  const detail::normalizer_state_snapshot before(state, ids);
  const auto saved = gamma_nce_forward(a, b, ids, state, o, ws);
  gamma_nce_parameter_gradients pg;
#if CONTRASTIVE_USE_EXCEPTIONS
  try {
    pg = gamma_nce_backward(a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0,
                            ws);
  } catch (...) {
    before.restore(state);
    throw;
  }
#else
  pg = gamma_nce_backward(a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0,
                          ws);
#endif
  if (parameter_grads) *parameter_grads = pg;
  return saved.loss;
}

/// The same on device views with the device-resident state (cuda/gamma_nce.cuh); the gradients'
/// arguments are checked before the state is touched.
template <class A, class B, class GA, class GB>
auto gamma_nce_forward_backward(const A& a, const B& b, vector_view<const std::int64_t> ids,
                                cuda::device_normalizer_state& state, GA&& grad_a, GB&& grad_b,
                                const gamma_nce_options& o = {},
                                gamma_nce_parameter_gradients* parameter_grads = nullptr,
                                workspace = {}) {
  return detail::device_backend_of<detail::gamma_nce_tag, A>::type::forward_backward(
      as_view(a), as_view(b), ids, state, as_view(grad_a), as_view(grad_b), o, parameter_grads);
}

/// The same without a state (rate_source same_batch or exact).
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto gamma_nce_forward_backward(const A& a, const B& b, vector_view<const std::int64_t> ids,
                                GA&& grad_a, GB&& grad_b, const gamma_nce_options& o,
                                gamma_nce_parameter_gradients* parameter_grads = nullptr,
                                workspace ws = {}) {
  const auto saved = gamma_nce_forward(a, b, ids, o, ws);
  const gamma_nce_parameter_gradients pg = gamma_nce_backward(a, b, saved, std::forward<GA>(grad_a),
                                                              std::forward<GB>(grad_b), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = pg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_GAMMA_NCE_HPP
