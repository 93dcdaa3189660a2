#ifndef CONTRASTIVE_EXAMPLES_ENCODER_TWO_TOWER_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_TWO_TOWER_HPP

// The two-tower setting of train_two_tower and gamma_study: the two modalities cut from each
// Fashion-MNIST image, the alignment metrics, and the objectives composed from the library's
// losses. Each `add_*` function returns weight * loss and ADDS weight * dL/d(embedding) into the
// gradient matrices (callers zero them once per step), so a method's objective is a sum of calls.
// Symbols follow docs/README.md#modality-structure-regularisers: V = modality A's embeddings, U = modality B's,
// Va / Ua their augmented views, Vi / Ui "independent" features.

#include <cmath>
#include <cstdint>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/losses/brownian_bridge.hpp>
#include <contrastive/losses/feature_separation.hpp>
#include <contrastive/losses/gamma_nce.hpp>
#include <contrastive/losses/geometric_consistency.hpp>

#include "common.hpp"
#include "fashion_mnist.hpp"

namespace encoder {

// ---- the two modalities ------------------------------------------------------------------------

/// A is the top half of each image (rows 0-13), B the bottom half (rows 14-27).
constexpr int half_h = 14, half_w = 28;

struct modalities {
  matrix<float> a;        // top halves, clean
  matrix<float> b_clean;  // bottom halves before noise
  matrix<float> b_eval;   // bottom halves with the fixed evaluation noise
  std::vector<int> labels;
};

/// Cuts 28x28 images into the two modalities; b_eval gets N(0, noise_b^2) noise drawn from
/// (seed, image index, eval_step), so train and test (different eval_step) use apart streams.
inline modalities split_modalities(const image_dataset& d, std::uint64_t seed, double noise_b,
                                   std::uint32_t eval_step) {
  if (d.height != 28 || d.width != 28) throw error("the two-tower setting expects 28x28 images");
  modalities m;
  m.a = d.images.leftCols(half_h * half_w);
  m.b_clean = d.images.rightCols(half_h * half_w);
  m.b_eval = m.b_clean;
  for (index_t i = 0; i < d.size(); ++i) {
    rng r(seed, static_cast<std::uint64_t>(i), eval_step, stream_eval);
    for (index_t k = 0; k < m.b_eval.cols(); ++k)
      m.b_eval(i, k) += static_cast<float>(noise_b * r.normal());
  }
  m.labels = d.labels;
  return m;
}

/// Rows `ids` of b_clean with the training noise of `epoch` (redrawn every epoch).
inline matrix<float> noisy_b(const modalities& m, const std::vector<index_t>& ids,
                             std::uint64_t seed, double noise_b, std::uint32_t epoch) {
  matrix<float> out = gather_rows(m.b_clean, ids);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    rng r(seed, static_cast<std::uint64_t>(ids[i]), epoch, stream_modality);
    for (index_t k = 0; k < out.cols(); ++k)
      out(static_cast<index_t>(i), k) += static_cast<float>(noise_b * r.normal());
  }
  return out;
}

/// [x, y] side by side (the A+B probe's features).
inline matrix<float> concat(const matrix<float>& x, const matrix<float>& y) {
  matrix<float> out(x.rows(), x.cols() + y.cols());
  out << x, y;
  return out;
}

// ---- alignment metrics -------------------------------------------------------------------------

/// The batch CLIP loss (forward only), comparable across methods at the same batch size.
inline double clip_value(const matrix<float>& a, const matrix<float>& b, double tau) {
  contrastive::info_nce_options o;
  o.temperature = tau;
  return static_cast<double>(contrastive::info_nce_forward(a, b, o).loss);
}

/// Mean CLIP loss and A->B top-1 retrieval over consecutive chunks of `chunk` pairs (a partial
/// last chunk is left out; NaN when there is no whole chunk).
inline void alignment_metrics(const matrix<float>& za, const matrix<float>& zb, double tau,
                              index_t chunk, double& clip, double& top1) {
  double loss = 0, hits = 0;
  int chunks = 0;
  for (index_t r = 0; chunk > 0 && r + chunk <= za.rows(); r += chunk, ++chunks) {
    const matrix<float> a = za.middleRows(r, chunk), b = zb.middleRows(r, chunk);
    loss += clip_value(a, b, tau);
    const matrix<float> sim = a * b.transpose();
    for (index_t i = 0; i < chunk; ++i) {
      index_t arg = 0;
      sim.row(i).maxCoeff(&arg);
      hits += arg == i;
    }
  }
  clip = chunks ? loss / chunks : std::nan("");
  top1 = chunks ? hits / static_cast<double>(chunks * chunk) : std::nan("");
}

// ---- objectives ---------------------------------------------------------------------------------

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
