#ifndef CONTRASTIVE_LOSSES_GEOMETRIC_CONSISTENCY_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_GEOMETRIC_CONSISTENCY_OPTIONS_HPP

// The options of geometric_consistency.hpp, apart so that the CUDA path
// (cuda/geometric_consistency.cuh, nvcc) takes the same struct without Eigen.

#include <cmath>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_types.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Which algorithm computes the geometric-consistency losses.
enum class gc_algorithm {
  automatic,  // gram when D < N, else naive
  naive,      // N x N similarity matrices (test reference; O(N^2) memory)
  gram,       // D x D Grams, cancellation-free P/Q form (three-Gram form for unequal weights)
  gram_split  // D x D Grams, the three-Gram form (docs/geometric_consistency.md#gram-form; cross-check)
};

/// Options of geometric consistency. From tiling_options: tile_rows is the rows per block of the
/// Gram path (512 by default), num_threads its threads; tile_cols is not used.
struct geometric_consistency_options : tiling_options {
  geometric_consistency_options() noexcept { tile_rows = 512; }

  double cross_modal_weight = 1;  // w_x >= 0 (L_GC only)
  double in_modal_weight = 1;     // w_i >= 0 (L_GC only)
  // Augmented variant: no gradient to a_aug / b_aug (momentum-encoder features); their gradient
  // outputs are zeroed (left untouched with `accumulate`).
  bool detach_a_aug = false;
  bool detach_b_aug = false;
  gc_algorithm algorithm = gc_algorithm::automatic;
  bool accumulate = false;  // backward adds into the gradients instead of overwriting them
};

namespace detail {

inline bool gc_equal_weights(const geometric_consistency_options& o) noexcept {
  return o.cross_modal_weight == o.in_modal_weight;
}

inline void gc_check_options(const char* fn, const geometric_consistency_options& o) {
  CONTRASTIVE_CHECK(std::isfinite(o.cross_modal_weight) && o.cross_modal_weight >= 0, fn,
                    ": 'cross_modal_weight' must be finite and >= 0, got ", o.cross_modal_weight);
  CONTRASTIVE_CHECK(std::isfinite(o.in_modal_weight) && o.in_modal_weight >= 0, fn,
                    ": 'in_modal_weight' must be finite and >= 0, got ", o.in_modal_weight);
  CONTRASTIVE_CHECK(o.tile_rows > 0, fn, ": 'tile_rows' must be > 0, got ", o.tile_rows);
}

}  // namespace detail

/// What the backward returns: geometric consistency has no parameters of its own, so nothing.
struct geometric_consistency_parameter_gradients {};

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_GEOMETRIC_CONSISTENCY_OPTIONS_HPP
