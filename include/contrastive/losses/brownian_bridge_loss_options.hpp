#ifndef CONTRASTIVE_LOSSES_BROWNIAN_BRIDGE_LOSS_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_BROWNIAN_BRIDGE_LOSS_OPTIONS_HPP

// The options of the Brownian-bridge loss (losses/brownian_bridge.hpp), its per-row weight and the
// checks that read no element, apart so that the CUDA path (cuda/brownian_bridge.cuh) shares them
// without Eigen.

#include <vector>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_types.hpp"
#include "contrastive/sampling/brownian_bridge_options.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Options of the bridge loss. Each row's t comes from the composed sampler options `bridge`
/// (t, random_t, t_min, t_max, seed, step, first_id, ids: the same t_j the sampler draws); the
/// sampler's noise, sigma, reproject, steps, accumulate and num_threads are not read. From
/// tiling_options only num_threads is used (rows are independent; there are no tiles).
struct brownian_bridge_loss_options : tiling_options {
  brownian_bridge_options bridge{};
  bool nll_weight = false;  // weight term j by 1 / (2 t_j (1 - t_j))
  bool detach_a_aug =
      false;  // no gradient to a_aug (grad_a_aug zeroed, or untouched with accumulate)
  bool accumulate = false;  // backward adds into the gradients instead of overwriting them
};

/// What the backward returns besides the input gradients: upstream * dL/dt.
struct brownian_bridge_loss_parameter_gradients {
  double t = 0;                // dL/dt of a t shared by all rows (the sum of t_rows)
  std::vector<double> t_rows;  // dL/dt_j per row
};

namespace detail {

inline brownian_bridge_options bridge_loss_time_options(const brownian_bridge_loss_options& o) {
  brownian_bridge_options b = o.bridge;
  b.noise = false;
  b.num_threads = o.num_threads;
  return b;
}

/// The weight check of the options: `nll_weight` needs t inside (0, 1).
inline void bridge_loss_check_weight(const char* fn, const brownian_bridge_loss_options& o) {
  const brownian_bridge_options b = bridge_loss_time_options(o);
  if (o.nll_weight) {
    if (b.random_t) {
      CONTRASTIVE_CHECK(b.t_min > 0 && b.t_max < 1, fn,
                        ": 'nll_weight' needs 0 < t_min and t_max < 1 (the weight 1/(2t(1-t)) is "
                        "infinite at the ends), got [",
                        b.t_min, ", ", b.t_max, "]");
    } else {
      CONTRASTIVE_CHECK(b.t > 0 && b.t < 1, fn,
                        ": 'nll_weight' needs 0 < t < 1 (the weight 1/(2t(1-t)) is infinite at the "
                        "ends), got ",
                        b.t);
    }
  }
}

/// w_j = 1, or 1 / (2 t (1 - t)) with `nll_weight`; and dw/dt.
CONTRASTIVE_HOST_DEVICE inline double bridge_loss_weight(double t, bool nll) noexcept {
  return nll ? 1.0 / (2 * t * (1 - t)) : 1.0;
}
CONTRASTIVE_HOST_DEVICE inline double bridge_loss_weight_dt(double t, bool nll) noexcept {
  return nll ? -(1 - 2 * t) / (2 * t * t * (1 - t) * (1 - t)) : 0.0;
}

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_BROWNIAN_BRIDGE_LOSS_OPTIONS_HPP
