#ifndef CONTRASTIVE_LOSSES_SUPCON_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_SUPCON_OPTIONS_HPP

// The options of supcon.hpp (supervised contrastive loss over one labelled set), Eigen-free.

#include <cstdint>

#include "contrastive/core/config.hpp"
#include "contrastive/core/loss_types.hpp"
#include "contrastive/core/matrix_view.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Which peer's loss over one labelled set (docs/supcon.md, "Peer conventions").
enum class supcon_convention {
  /// Khosla et al.'s L_out, as pytorch-metric-learning's SupConLoss: per anchor, the mean over
  /// its positives of -log softmax over all other rows; the mean over the anchors.
  l_out,
  /// pytorch-metric-learning's NTXentLoss with labels: one term per positive pair (i, p),
  /// -log(e^{s_ip} / (e^{s_ip} + sum over i's negatives)), the other positives of i left out of
  /// its denominator; the mean over the positive pairs.
  ntxent_pairs
};

/// Options of SupCon (L_out) over the M rows of one matrix; tiles are square, min(tile_rows,
/// tile_cols).
struct supcon_options : tiling_options {
  double temperature = 0.1;  ///< tau > 0; logits are <a_i, a_j> / tau
  /// One label per row (length M, contiguous, required): rows j != i with labels[j] == labels[i]
  /// are the positives of anchor i. Several views of one sample are several rows with its label.
  vector_view<const std::int64_t> labels{};
  /// 0 (default, as pytorch-metric-learning's SupConLoss): no factor. > 0: the loss is multiplied
  /// by temperature / base_temperature, as in the SupCon authors' reference code (0.07 there).
  double base_temperature = 0;
  /// l_out (default) or pytorch-metric-learning's NTXentLoss convention (ntxent_pairs).
  supcon_convention convention = supcon_convention::l_out;
  /// mean over the anchors with positives (ntxent_pairs: over the positive pairs), or sum
  loss_reduction reduction = loss_reduction::mean;
  bool accumulate = false;  ///< backward adds into the gradient instead of overwriting it
};

/// What the backward returns besides the input gradient: upstream * dL/dtemperature.
using supcon_parameter_gradients = temperature_gradient;

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_SUPCON_OPTIONS_HPP
