#ifndef CONTRASTIVE_LOSSES_GAMMA_NCE_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_GAMMA_NCE_OPTIONS_HPP

// The options of gamma_nce.hpp, their checks and the per-anchor step (rate, gamma draw, weight),
// apart so that the block sweep's plan (core/block_sweep.hpp) and the CUDA path
// (cuda/gamma_nce.cuh) share them without Eigen: the GPU kernels call the same host-device step.

#include <math.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "contrastive/core/checks.hpp"
#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_types.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/sampling/gamma.hpp"
#include "contrastive/sampling/philox.hpp"
#include "contrastive/state/normalizer_state.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Where zeta_i = log Zbar_i (the rate of the auxiliary variable) comes from.
enum class gamma_rate_source {
  state,       // the normalizer_state's moving average (training)
  same_batch,  // zeta_i = log Zhat_i of this batch (biased; for tests and research)
  exact        // caller-supplied exact log-normalisers (options.exact_log_normalizer_*)
};

/// With rate_source::state: is the state updated before r_i is formed (bounded weights,
/// r_i <= g_i / (alpha beta)) or after (rate independent of the batch, unbounded weights)?
enum class gamma_update_order { update_then_sample, sample_then_update };

/// Options of the gamma loss; tile_rows, tile_cols and num_threads come from tiling_options.
struct gamma_nce_options : tiling_options {
  /// alpha = deterministic: g/alpha := 1 (alpha -> infinity), which with update_then_sample is
  /// SogCLR's estimator r_i = Zhat_i / Zbar_i (its gamma = beta).
  static constexpr double deterministic = std::numeric_limits<double>::infinity();

  double temperature = 0.07;  // tau > 0; logits are <a_i, b_j> / tau
  bool symmetric = true;      // both directions (state directions 0 and 1), else a -> b only
  double alpha = 1.0;         // gamma shape > 0 (1: exponential; 4 or 16 cut the variance)
  double beta = 0.9;          // moving-average weight of the new estimate, in (0, 1]
  std::uint64_t seed = 0;     // Philox key of the gamma draws
  std::uint32_t step = 0;     // training step (Philox counter word 2); change it every step
  gamma_rate_source rate_source = gamma_rate_source::state;
  gamma_update_order order = gamma_update_order::update_then_sample;
  bool positive_in_normaliser = false;  // N_i = whole batch (default: negatives only)
  // rate_source::exact: log Zbar_i per anchor, in the units of log Zhat_i (log of the *mean* of
  // exp(s_ij) over the negatives), for direction a -> b and (symmetric) b -> a.
  vector_view<const double> exact_log_normalizer_a{};
  vector_view<const double> exact_log_normalizer_b{};
  loss_reduction reduction = loss_reduction::mean;
  bool accumulate = false;  // backward adds into the gradients instead of overwriting them
};

/// What the backward returns besides the input gradients: upstream * dL/dtemperature.
using gamma_nce_parameter_gradients = temperature_gradient;

namespace detail {

// ---- the per-anchor step (docs/gamma_nce.md), shared by the CPU, distributed and GPU losses ----

/// zeta_i, one anchor's log-rate: the state's entry (`old`, `seen`) moved by the EMA before
/// sampling (update_then_sample) or taken as it is (sample_then_update; log Zhat_i on a first
/// visit), the caller's `exact` value, or log Zhat_i itself (same_batch).
CONTRASTIVE_HOST_DEVICE inline double gamma_anchor_zeta(gamma_rate_source src,
                                                        gamma_update_order order, double beta,
                                                        double log_zhat, double old, bool seen,
                                                        double exact) noexcept {
  if (src == gamma_rate_source::exact) return exact;
  if (src == gamma_rate_source::same_batch) return log_zhat;
  if (order == gamma_update_order::update_then_sample) return log_ema(old, seen, log_zhat, beta);
  return seen ? old : log_zhat;
}

/// g_i / alpha: the Gamma(alpha, 1) draw of Philox stream (seed, id, step, direction) over alpha;
/// 1 in the deterministic mode (alpha = +infinity).
CONTRASTIVE_HOST_DEVICE inline double gamma_anchor_draw(double alpha, std::uint64_t seed,
                                                        std::int64_t id, std::uint32_t step,
                                                        int direction) noexcept {
  if (!(alpha < infinity<double>())) return 1.0;
  const philox_stream s{seed, static_cast<std::uint64_t>(id), step,
                        static_cast<std::uint32_t>(direction)};
  return gamma_standard(alpha, s) / alpha;
}

/// One anchor's weight r_i = (g_i / alpha) exp(log Zhat_i - zeta_i) and its unweighted terms: the
/// surrogate r - s_ii, the batch InfoNCE term (over N_i and the positive) and the rate term.
struct gamma_anchor_values {
  double r = 0, loss = 0, info_nce = 0, rate = 0;
};
CONTRASTIVE_HOST_DEVICE inline gamma_anchor_values gamma_anchor(
    double g, double lse, double log_zhat, double zeta, double s_ii,
    bool positive_in_normaliser) noexcept {
  gamma_anchor_values v;
  v.r = g * ::exp(log_zhat - zeta);
  v.loss = v.r - s_ii;
  v.info_nce = (positive_in_normaliser ? lse : logaddexp(lse, s_ii)) - s_ii;
  v.rate = zeta - s_ii;
  return v;
}

// ---- checks (host data) ----

/// What the id and rate checks need to know of a normalizer state, host or device.
struct gamma_state_shape {
  bool present = false;
  std::int64_t samples = 0;
  int directions = 0;
};

inline void gamma_nce_check_options(const char* fn, const gamma_nce_options& o) {
  check_temperature(fn, o.temperature);
  check_tiles(fn, o.tile_rows, o.tile_cols);
  CONTRASTIVE_CHECK(o.alpha > 0, fn,
                    ": 'alpha' must be > 0 (or gamma_nce_options::deterministic), got ", o.alpha);
  CONTRASTIVE_CHECK(o.beta > 0 && o.beta <= 1, fn, ": 'beta' must lie in (0, 1], got ", o.beta);
  CONTRASTIVE_CHECK(
      o.rate_source == gamma_rate_source::state || o.rate_source == gamma_rate_source::same_batch ||
          o.rate_source == gamma_rate_source::exact,
      fn, ": 'rate_source' has an invalid value (", static_cast<int>(o.rate_source), ")");
  CONTRASTIVE_CHECK(o.order == gamma_update_order::update_then_sample ||
                        o.order == gamma_update_order::sample_then_update,
                    fn, ": 'order' has an invalid value (", static_cast<int>(o.order), ")");
  check_reduction(fn, o.reduction);
}

/// Shapes and options (no element read: the CPU adds its scan for non-finite values, the GPU
/// its device scan).
template <class T, class Space>
void gamma_nce_check_shapes(const char* fn, const matrix_view<const T, Space>& a,
                            const matrix_view<const T, Space>& b, const gamma_nce_options& o) {
  check_matrix(fn, "a", a);
  check_matrix(fn, "b", b);
  gamma_nce_check_options(fn, o);
  check_pair_shape(fn, a, b);
  CONTRASTIVE_CHECK(a.rows() > 1 || o.positive_in_normaliser, fn,
                    ": a batch of 1 has no negatives (use N >= 2 or positive_in_normaliser)");
}

/// A backward's `saved` (the CPU's or the GPU's: any struct with n, d, temperature, symmetric,
/// positive_in_normaliser, reduction) belongs to these rows x cols inputs and these options.
template <class S>
void gamma_nce_check_saved(const char* fn, const S& saved, index_t rows, index_t cols,
                           const gamma_nce_options& o) {
  CONTRASTIVE_CHECK(saved.n == rows && saved.d == cols, fn, ": 'saved' belongs to a ", saved.n,
                    " x ", saved.d, " batch, the inputs are ", rows, " x ", cols);
  CONTRASTIVE_CHECK(saved.temperature == o.temperature && saved.symmetric == o.symmetric &&
                        saved.positive_in_normaliser == o.positive_in_normaliser &&
                        saved.reduction == o.reduction,
                    fn, ": 'saved' was computed with other options (temperature ",
                    saved.temperature, ", symmetric ", saved.symmetric, ", positive_in_normaliser ",
                    saved.positive_in_normaliser, ") than these (temperature ", o.temperature,
                    ", symmetric ", o.symmetric, ", positive_in_normaliser ",
                    o.positive_in_normaliser, ")");
}

inline void gamma_nce_check_exact(const char* fn, const char* name,
                                  const vector_view<const double>& s, index_t n) {
  CONTRASTIVE_CHECK(!s.empty(), fn, ": rate_source::exact needs '", name, "'");
  CONTRASTIVE_CHECK(s.size == n, fn, ": '", name, "' has ", s.size, " values, expected ", n,
                    " (one per row)");
  CONTRASTIVE_CHECK(s.stride == 1, fn, ": '", name, "' must be contiguous (stride 1), got stride ",
                    s.stride);
  for (index_t i = 0; i < n; ++i)
    CONTRASTIVE_CHECK(std::isfinite(s.data[i]), fn, ": '", name, "' has a non-finite value (",
                      s.data[i], ") at position ", i);
}

/// The sample ids (one per row, contiguous, >= 0) and the rate source's inputs: the state
/// (present, enough directions, ids in range) or the exact log-normalisers. `n` rows; a rank of
/// a distributed call may have none. Host memory throughout: the GPU path checks host copies.
inline void gamma_nce_check_ids_and_rates(const char* fn, vector_view<const std::int64_t> ids,
                                          index_t n, const gamma_state_shape& state,
                                          const gamma_nce_options& o,
                                          vector_view<const double> exact_a,
                                          vector_view<const double> exact_b) {
  const bool sym = o.symmetric;
  const int dirs = sym ? 2 : 1;
  CONTRASTIVE_CHECK(ids.size == n, fn, ": 'ids' has ", ids.size, " sample ids, expected ", n,
                    " (one per row)");
  CONTRASTIVE_CHECK(n == 0 || ids.data != nullptr, fn, ": 'ids' is a null pointer");
  CONTRASTIVE_CHECK(ids.stride == 1, fn, ": 'ids' must be contiguous (stride 1), got stride ",
                    ids.stride);
  for (index_t i = 0; i < n; ++i)
    CONTRASTIVE_CHECK(ids.data[i] >= 0, fn, ": sample id ", ids.data[i], " at position ", i,
                      " is negative");
  if (o.rate_source == gamma_rate_source::state) {
    CONTRASTIVE_CHECK(state.present, fn,
                      ": rate_source::state needs a normalizer_state (pass one, or choose "
                      "rate_source::same_batch or ::exact)");
    CONTRASTIVE_CHECK(state.directions >= dirs, fn, ": the normalizer_state has ", state.directions,
                      " direction(s), a ", sym ? "symmetric" : "one-direction", " loss needs ",
                      dirs);
    for (index_t i = 0; i < n; ++i)
      CONTRASTIVE_CHECK(ids.data[i] < state.samples, fn, ": sample id ", ids.data[i],
                        " at position ", i, " is out of range [0, ", state.samples,
                        ") of the normalizer_state");
  }
  if (o.rate_source == gamma_rate_source::exact && n > 0) {
    gamma_nce_check_exact(fn, "exact_log_normalizer_a", exact_a, n);
    if (sym) gamma_nce_check_exact(fn, "exact_log_normalizer_b", exact_b, n);
  }
}

inline void gamma_nce_check_ids_and_rates(const char* fn, vector_view<const std::int64_t> ids,
                                          index_t n, const normalizer_state* state,
                                          const gamma_nce_options& o) {
  gamma_state_shape shape;
  if (state != nullptr) shape = {true, state->samples(), state->directions()};
  gamma_nce_check_ids_and_rates(fn, ids, n, shape, o, o.exact_log_normalizer_a,
                                o.exact_log_normalizer_b);
}

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_GAMMA_NCE_OPTIONS_HPP
