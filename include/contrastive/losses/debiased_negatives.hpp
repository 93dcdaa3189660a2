#ifndef CONTRASTIVE_LOSSES_DEBIASED_NEGATIVES_HPP
#define CONTRASTIVE_LOSSES_DEBIASED_NEGATIVES_HPP

// Debiased (Chuang et al. 2020) and hard-negative (Robinson et al. 2021) negative terms, the
// per-anchor math shared by the options debias_tau_plus / hard_negative_beta of InfoNCE/CLIP
// (info_nce.hpp) and NT-Xent (nt_xent.hpp). The sweep gives, over each anchor's M negatives only
// (the positive masked), LSE(s) or, for beta > 0, LSE((1 + beta) s) and LSE(beta s); this header
// turns them and the positive logit into the loss, the gradient coefficients and dL/dtheta.
// Math and gradients: docs/debiased.md.

#include <cmath>
#include <cstdint>
#include <vector>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/math.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Per-direction statistics the forward keeps for the debiased / hard-negative backward.
template <class T>
struct negative_weighting_saved {
  std::vector<T> lse_hi;    ///< beta > 0: LSE over the negatives of (1 + beta) s (else empty)
  std::vector<T> lse_lo;    ///< beta > 0: LSE over the negatives of beta s (else empty)
  std::vector<T> negative;  ///< kappa_i: the weight of the negatives' softmax terms
  std::vector<T> positive;  ///< dl_i/ds_ip: the gradient of the positive logit
  index_t clamped = 0;      ///< anchors whose negative term sat at its floor M e^{-1/tau}
};

namespace detail {

/// Is the debiased / hard-negative form of the loss selected?
inline bool negative_weighting_active(double tau_plus, double beta) noexcept {
  return tau_plus != 0 || beta != 0;
}

/// The option checks (before anything is written): tau_plus in [0, 1), beta finite >= 0, and
/// when active no labels, no smoothing and at least one negative per anchor.
inline void check_negative_weighting(const char* fn, double tau_plus, double beta, bool labelled,
                                     double smoothing, index_t negatives) {
  CONTRASTIVE_CHECK(std::isfinite(tau_plus) && tau_plus >= 0 && tau_plus < 1, fn,
                    ": 'debias_tau_plus' must lie in [0, 1), got ", tau_plus);
  CONTRASTIVE_CHECK(std::isfinite(beta) && beta >= 0, fn,
                    ": 'hard_negative_beta' must be finite and >= 0, got ", beta);
  if (!negative_weighting_active(tau_plus, beta)) return;
  CONTRASTIVE_CHECK(!labelled, fn,
                    ": 'debias_tau_plus' / 'hard_negative_beta' take one positive per anchor; "
                    "they cannot be combined with labels");
  CONTRASTIVE_CHECK(smoothing == 0, fn,
                    ": 'debias_tau_plus' / 'hard_negative_beta' cannot be combined with "
                    "'label_smoothing'");
  CONTRASTIVE_CHECK(negatives >= 1, fn,
                    ": 'debias_tau_plus' / 'hard_negative_beta' need at least one negative per "
                    "anchor (2 samples or more)");
}

/// A bound of the weight these options put on one logit, relative to plain InfoNCE, for the
/// gradient bound (check_pair_gradient_bound): the hard-negative importance weights are at most
/// the number of negatives, and the debiased correction divides by 1 - tau+ and subtracts up to
/// `negatives` tau+ positives.
inline double negative_weighting_bound(double tau_plus, double beta, index_t negatives) noexcept {
  const double m = static_cast<double>(negatives);
  return (beta > 0 ? m : 1.0) * (1 + m * tau_plus) / (1 - tau_plus);
}

/// One anchor's loss and coefficients.
struct debiased_anchor {
  double loss = 0;      // l_i
  double dtheta = 0;    // dl_i/dtheta
  double negative = 0;  // kappa_i: dl_i/ds_ij = kappa_i ((1+beta) p1_ij - beta p0_ij), j negative
  double positive = 0;  // dl_i/ds_ip
  bool clamped = false;
};

/// l_i = log(e^{s_p} + Ng) - s_p with Ng = max((R - tau+ M e^{s_p}) / (1 - tau+), M e^{-lambda}),
/// R = sum_neg e^{s} (beta = 0) or M sum_neg e^{(1+beta)s} / sum_neg e^{beta s}. `base`, `hi`,
/// `lo`: the online softmax of s, (1+beta) s and beta s over the negatives (hi, lo only for beta >
/// 0); their means are in units of s.
inline debiased_anchor debiased_anchor_terms(double s_p, const online_softmax<double>& base,
                                             const online_softmax<double>* hi,
                                             const online_softmax<double>* lo, double m,
                                             double lambda, double tau_plus, double beta) {
  const bool hard = beta > 0;
  const double log_r = hard ? std::log(m) + hi->lse() - lo->lse() : base.lse();
  const double log_floor = std::log(m) - lambda;
  // log(R - tau+ M e^{s_p}) without cancellation; raw <= 0 counts as clamped.
  double log_ng = log_floor;
  bool clamped = true;
  const double c = tau_plus > 0 ? std::log(tau_plus * m) + s_p : -infinity<double>();
  if (c < log_r) {
    const double raw = log_r + std::log1p(-std::exp(c - log_r)) - std::log1p(-tau_plus);
    if (raw >= log_floor) {
      log_ng = raw;
      clamped = false;
    }
  }
  const double x = log_ng - s_p;
  debiased_anchor r;
  r.clamped = clamped;
  r.loss = x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));  // softplus(x)
  const double nu = 1 / (1 + std::exp(-x));                                 // Ng / D
  const double pi = 1 / (1 + std::exp(x));                                  // e^{s_p} / D
  if (clamped) {
    r.positive = -nu;
    r.negative = 0;
    r.dtheta = r.positive * s_p - lambda * nu;  // the floor M e^{-lambda} moves with theta
    return r;
  }
  r.positive = -nu - tau_plus * m * pi / (1 - tau_plus);
  r.negative = std::exp(log_r - std::log1p(-tau_plus) - s_p - r.loss);  // R / ((1 - tau+) D)
  const double mean_neg = hard ? (1 + beta) * hi->mean() - beta * lo->mean() : base.mean();
  r.dtheta = r.positive * s_p + r.negative * mean_neg;
  return r;
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_DEBIASED_NEGATIVES_HPP
