#ifndef CONTRASTIVE_EXAMPLES_ENCODER_TWO_TOWER_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_TWO_TOWER_HPP

// Two-tower losses of train_two_tower, composed from the library's losses. Each `add_*` function
// returns weight * loss and ADDS weight * dL/d(embedding) into the gradient matrices (callers zero
// them once per step), so a method's objective is a sum of calls.
// Symbols follow docs/README.md#modality-structure-regularisers: V = modality A's embeddings, U = modality B's,
// Va / Ua their augmented views, Vi / Ui "independent" features.

#include <contrastive/contrastive.hpp>
#include <contrastive/losses/brownian_bridge.hpp>
#include <contrastive/losses/feature_separation.hpp>
#include <contrastive/losses/gamma_nce.hpp>
#include <contrastive/losses/geometric_consistency.hpp>

#include "common.hpp"

namespace encoder {

/// One modality in one step: embeddings (L2-normalised rows) and their gradients. Views a
/// method does not use stay empty.
template <class T>
struct tower_views {
  matrix<T> z, za, zi, zia;      // V (or U), its augmented view, independent features of both
  matrix<T> gz, gza, gzi, gzia;  // dL/d of each
};

/// weight * InfoNCE(x -> y) (symmetric: the CLIP loss), temperature tau.
template <class T>
double add_info_nce(const matrix<T>& x, const matrix<T>& y, matrix<T>& gx, matrix<T>& gy,
                    double weight, bool symmetric, double tau) {
  contrastive::info_nce_options o;
  o.temperature = tau;
  o.symmetric = symmetric;
  o.accumulate = true;
  const auto saved = contrastive::info_nce_forward(x, y, o);
  contrastive::info_nce_backward(x, y, saved, gx, gy, o, weight);
  return weight * static_cast<double>(saved.loss);
}

/// L_Con = (1/4)(InfoNCE(V,U) + InfoNCE(U,V) + InfoNCE(V,Va) + InfoNCE(U,Ua))
///       = (1/2) CLIP(V,U) + (1/4) InfoNCE(V,Va) + (1/4) InfoNCE(U,Ua)        (docs/README.md, base loss)
template <class T>
double add_l_con(tower_views<T>& a, tower_views<T>& b, double tau, double weight = 1) {
  double l = add_info_nce(a.z, b.z, a.gz, b.gz, 0.5 * weight, true, tau);
  l += add_info_nce(a.z, a.za, a.gz, a.gza, 0.25 * weight, false, tau);
  l += add_info_nce(b.z, b.za, b.gz, b.gza, 0.25 * weight, false, tau);
  return l;
}

/// weight * (L_GC(V,U) + L^a_GC(V,U,Va,Ua)) (docs/geometric_consistency.md), from
/// contrastive/losses/geometric_consistency.hpp.
template <class T>
double add_geometric_consistency(tower_views<T>& a, tower_views<T>& b, double weight) {
  contrastive::geometric_consistency_options o;
  o.accumulate = true;
  const auto s1 = contrastive::geometric_consistency_forward(a.z, b.z, o);
  contrastive::geometric_consistency_backward(a.z, b.z, s1, a.gz, b.gz, o, weight);
  const auto s2 = contrastive::geometric_consistency_augmented_forward(a.z, b.z, a.za, b.za, o);
  contrastive::geometric_consistency_augmented_backward(a.z, b.z, a.za, b.za, s2, a.gz, b.gz, a.gza,
                                                        b.gza, o, weight);
  return weight * (static_cast<double>(s1.loss) + static_cast<double>(s2.loss));
}

/// weight * L_Sep(V, U, Vi, Ui, Via, Uia) = weight * (L_Ortho + L^i_Con + L^i_Uni) (docs/feature_separation.md), from
/// contrastive/losses/feature_separation.hpp; tau is the in-modal InfoNCE temperature.
template <class T>
double add_feature_separation(tower_views<T>& a, tower_views<T>& b, double weight, double tau) {
  contrastive::feature_separation_options o;
  o.temperature = tau;
  o.accumulate = true;
  const auto s = contrastive::feature_separation_forward(a.z, b.z, a.zi, b.zi, a.zia, b.zia, o);
  contrastive::feature_separation_backward(a.z, b.z, a.zi, b.zi, a.zia, b.zia, s, a.gz, b.gz, a.gzi,
                                           b.gzi, a.gzia, b.gzia, o, weight);
  return weight * static_cast<double>(s.loss);
}

/// weight * L_Br(a = V, b = U, a_aug = Va) at fixed t (docs/brownian_bridge.md: the paper's t = 0.25, the bridge
/// mean near U), from contrastive/losses/brownian_bridge.hpp.
template <class T>
double add_brownian_bridge(tower_views<T>& a, tower_views<T>& b, double weight, double t = 0.25) {
  contrastive::brownian_bridge_loss_options o;
  o.bridge.t = t;
  o.accumulate = true;
  const auto s = contrastive::brownian_bridge_loss_forward(a.z, b.z, a.za, o);
  contrastive::brownian_bridge_loss_backward(a.z, b.z, a.za, s, a.gz, b.gz, a.gza, o, weight);
  return weight * static_cast<double>(s.loss);
}

/// weight * the gamma-auxiliary surrogate loss of (V, U) (docs/gamma_nce.md, contrastive/losses/gamma_nce.hpp)
/// for the batch's dataset ids, with its rate state (updated by the call) and options (seed, step,
/// alpha, beta, temperature). The gradient holds the gamma draws and rates fixed, so it is not
/// the derivative of the returned surrogate value. *info_nce gets the plain batch CLIP value.
template <class T>
double add_gamma_nce(tower_views<T>& a, tower_views<T>& b, const std::vector<std::int64_t>& ids,
                     contrastive::normalizer_state& state, contrastive::gamma_nce_options o,
                     double weight, double* info_nce = nullptr) {
  o.accumulate = true;
  const auto saved = contrastive::gamma_nce_forward(a.z, b.z, ids, state, o);
  contrastive::gamma_nce_backward(a.z, b.z, saved, a.gz, b.gz, o, weight);
  if (info_nce) *info_nce = saved.info_nce;
  return weight * static_cast<double>(saved.loss);
}

}  // namespace encoder

#endif  // CONTRASTIVE_EXAMPLES_ENCODER_TWO_TOWER_HPP
