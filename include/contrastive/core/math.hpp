#ifndef CONTRASTIVE_CORE_MATH_HPP
#define CONTRASTIVE_CORE_MATH_HPP

#include <math.h>

#include <cstdint>
#include <limits>

#include "contrastive/core/config.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

template <class T>
CONTRASTIVE_HOST_DEVICE constexpr T infinity() noexcept {
  // __builtin_huge_val is constexpr in both of nvcc's passes; numeric_limits is host-only there.
  return static_cast<T>(__builtin_huge_val());
}

namespace detail {
// ::expf/::exp exist with the same names in host and device code, unlike std::exp.
CONTRASTIVE_HOST_DEVICE inline float exp_(float x) noexcept { return ::expf(x); }
CONTRASTIVE_HOST_DEVICE inline double exp_(double x) noexcept { return ::exp(x); }
CONTRASTIVE_HOST_DEVICE inline float log_(float x) noexcept { return ::logf(x); }
CONTRASTIVE_HOST_DEVICE inline double log_(double x) noexcept { return ::log(x); }

/// log(e^x + e^y), -inf when both are.
CONTRASTIVE_HOST_DEVICE inline double logaddexp(double x, double y) noexcept {
  const double m = x > y ? x : y;
  if (m == -infinity<double>()) return m;
  return m + ::log1p(::exp(-(x > y ? x - y : y - x)));
}

/// The log-domain moving average of the normalizer state: log_zhat on a first visit, else
/// logaddexp(log(1 - beta) + zeta, log(beta) + log_zhat).
CONTRASTIVE_HOST_DEVICE inline double log_ema(double zeta, bool visited, double log_zhat,
                                              double beta) noexcept {
  if (!visited) return log_zhat;
  return logaddexp(::log1p(-beta) + zeta, ::log(beta) + log_zhat);
}
}  // namespace detail

/// Online log-sum-exp (Milakov & Gimelshein): LSE = max + log(sum), identity (-inf, 0).
/// Never forms exp of a raw logit, so it is stable for logits of any magnitude.
template <class T>
struct online_lse {
  T max = -infinity<T>();
  T sum = 0;

  CONTRASTIVE_HOST_DEVICE void push(T x) noexcept {
    if (x > max) {
      sum = sum * detail::exp_(max - x) + T(1);
      max = x;
    } else if (x != -infinity<T>()) {
      sum += detail::exp_(x - max);
    }
  }
  CONTRASTIVE_HOST_DEVICE void merge(const online_lse& o) noexcept {
    if (o.max == -infinity<T>()) return;
    if (max == -infinity<T>()) {
      *this = o;
      return;
    }
    if (o.max > max) {
      sum = sum * detail::exp_(max - o.max) + o.sum;
      max = o.max;
    } else {
      sum += o.sum * detail::exp_(o.max - max);
    }
  }
  CONTRASTIVE_HOST_DEVICE T value() const noexcept {
    return max == -infinity<T>() ? -infinity<T>() : max + detail::log_(sum);
  }
};

/// online_lse plus the softmax-weighted sum of the logits, so that E_p[s] = moment / sum is
/// available after one sweep. E_p[s] is d LSE / d log(scale), which gives dL/dtemperature
/// from the forward pass alone.
template <class T>
struct online_softmax {
  T max = -infinity<T>();
  T sum = 0;     // sum_k exp(x_k - max)
  T moment = 0;  // sum_k exp(x_k - max) * x_k

  CONTRASTIVE_HOST_DEVICE void push(T x) noexcept {
    online_softmax one;
    one.max = x;
    one.sum = x == -infinity<T>() ? T(0) : T(1);
    one.moment = x == -infinity<T>() ? T(0) : x;
    if (x != -infinity<T>()) merge(one);
  }
  CONTRASTIVE_HOST_DEVICE void merge(const online_softmax& o) noexcept {
    if (o.max == -infinity<T>()) return;
    if (max == -infinity<T>()) {
      *this = o;
      return;
    }
    if (o.max > max) {
      const T r = detail::exp_(max - o.max);
      sum = sum * r + o.sum;
      moment = moment * r + o.moment;
      max = o.max;
    } else {
      const T r = detail::exp_(o.max - max);
      sum += o.sum * r;
      moment += o.moment * r;
    }
  }
  CONTRASTIVE_HOST_DEVICE T lse() const noexcept {
    return max == -infinity<T>() ? -infinity<T>() : max + detail::log_(sum);
  }
  /// Softmax expectation of the pushed values (0 for the empty set).
  CONTRASTIVE_HOST_DEVICE T mean() const noexcept { return sum > T(0) ? moment / sum : T(0); }
};

/// Gradient entry of the soft-target cross-entropy: p - q with p = exp(s - lse).
template <class T>
CONTRASTIVE_HOST_DEVICE inline T softmax_grad(T s, T lse, T q) noexcept {
  return detail::exp_(s - lse) - q;
}

/// One entry of the softmax-gradient tile of the InfoNCE family, before the reduction weight:
///   w_x exp(logit - lse_x) + w_y exp(logit - lse_y) - (w_x + w_y) target
/// lse_x is the log-normaliser of the entry's row (the row softmax P), lse_y that of its column
/// (Q); CLIP's G = (P + Q - 2 T) / 2N has w_x = w_y = 1, InfoNCE's (P - T) / N has w_y = 0. A zero
/// weight skips its exponential (its lse need not be valid). Shared by the CUDA kernels.
template <class T>
CONTRASTIVE_HOST_DEVICE inline T softmax_gradient_entry(T logit, T lse_x, T lse_y, T w_x, T w_y,
                                                        T target) noexcept {
  T g = -(w_x + w_y) * target;
  if (w_x != T(0)) g += w_x * detail::exp_(logit - lse_x);
  if (w_y != T(0)) g += w_y * detail::exp_(logit - lse_y);
  return g;
}

// ---- The epilogue of the GPU block sweep (core/block_sweep.hpp), shared by the CUDA kernels
// (cuda/detail/block_sweep.cuh) and the host emulator (core/block_sweep_emulator.hpp) ----

/// What an epilogue needs to know about entry (i, j) of the virtual logit matrix
/// s_ij = scale <x_i, y_j> + row_offset_i + col_offset_j: the diagonal mask, the positives (by
/// label, or without labels column (i + positive_shift) mod ny of row i), optional additive
/// offsets (-inf masks an entry) and, for the backward, the per-anchor coefficients. Pointers
/// are of the memory the caller runs in (device for the kernels); null means absent.
template <class T>
struct pairwise_epilogue_args {
  index_t ny = 0;              // columns of the virtual logit matrix
  bool mask_diagonal = false;  // s_ii is no candidate (NT-Xent; negatives-only normalisers)
  index_t positive_shift = 0;  // without labels: the positive of row i is column (i + shift) % ny
  const std::int64_t* label_x = nullptr;  // labels of rows / columns (both or neither)
  const std::int64_t* label_y = nullptr;
  index_t label_period = 0;       // > 0: the label of row i is label_x[i % label_period] (NT-Xent)
  const T* row_offset = nullptr;  // added to every logit of row i / column j
  const T* col_offset = nullptr;
  // Backward: G_ij = row_w_i exp(s_ij - row_lse_i) + col_w_j exp(s_ij - col_lse_j)
  //                  - [positive] (row_q_i + col_q_j) - (row_w_i + col_w_j) off_target
  const T* row_w = nullptr;
  const T* row_lse = nullptr;
  const T* row_q = nullptr;
  const T* col_w = nullptr;
  const T* col_lse = nullptr;
  const T* col_q = nullptr;
  T off_target = 0;  // label smoothing: eps / (number of candidates of an anchor)
};

/// The logit of entry (i, j) from its scaled product `raw`: -inf when masked, else raw plus
/// the offsets.
template <class T>
CONTRASTIVE_HOST_DEVICE inline T pairwise_logit(const pairwise_epilogue_args<T>& a, T raw,
                                                index_t i, index_t j) noexcept {
  if (a.mask_diagonal && i == j) return -infinity<T>();
  T s = raw;
  if (a.row_offset != nullptr) s += a.row_offset[i];
  if (a.col_offset != nullptr) s += a.col_offset[j];
  return s;
}

/// Whether column j is a positive of row i (before masking: the callers skip masked entries).
template <class T>
CONTRASTIVE_HOST_DEVICE inline bool pairwise_positive(const pairwise_epilogue_args<T>& a, index_t i,
                                                      index_t j) noexcept {
  if (a.mask_diagonal && i == j) return false;
  // Subtractions instead of 64-bit divisions (this runs once per logit on the GPU): rows and
  // columns lie in [0, ny), the shift in [0, ny) and, with a period, indices in [0, 2 period).
  if (a.label_x != nullptr) {
    const index_t li = a.label_period > 0 && i >= a.label_period ? i - a.label_period : i;
    const index_t lj = a.label_period > 0 && j >= a.label_period ? j - a.label_period : j;
    return a.label_x[li] == a.label_y[lj];
  }
  const index_t k = i + a.positive_shift;
  return (k >= a.ny ? k - a.ny : k) == j;
}

/// The statistics of one anchor (a row or a column of the logit matrix) over some of its
/// candidates: the softmax normaliser as (max, sum), the sum and number of the positives' logits
/// and the sum of all candidate logits (label smoothing). Partials over disjoint candidate sets
/// merge in any order; the sweep merges them in a fixed one.
template <class T>
struct pairwise_partial {
  T max = -infinity<T>();
  T sum = 0;    // sum exp(s - max) over the candidates
  T pos = 0;    // sum of the positives' logits
  T count = 0;  // number of positives
  T total = 0;  // sum of all candidate logits

  CONTRASTIVE_HOST_DEVICE void merge(const pairwise_partial& o) noexcept {
    pos += o.pos;
    count += o.count;
    total += o.total;
    if (o.max == -infinity<T>()) return;
    if (max == -infinity<T>()) {
      max = o.max;
      sum = o.sum;
    } else if (o.max > max) {
      sum = sum * detail::exp_(max - o.max) + o.sum;
      max = o.max;
    } else {
      sum += o.sum * detail::exp_(o.max - max);
    }
  }
  CONTRASTIVE_HOST_DEVICE T lse() const noexcept {
    return max == -infinity<T>() ? -infinity<T>() : max + detail::log_(sum);
  }
};

/// The partial of one anchor over `count` consecutive candidates of a stored logit block: with
/// column == false the anchor is row i and the candidates columns j0, j0 + 1, ... (entries
/// s[k * stride]); with column == true the anchor is column j0 and the candidates rows i, i + 1,
/// .... `s` holds the scaled products (raw logits); masks and offsets are applied here. Two
/// passes: the maximum, then the sums.
template <class T, class S>
CONTRASTIVE_HOST_DEVICE inline pairwise_partial<T> pairwise_segment_partial(
    const pairwise_epilogue_args<T>& a, const S* s, index_t stride, index_t i, index_t j0,
    index_t count, bool column) noexcept {
  pairwise_partial<T> p;
  for (index_t k = 0; k < count; ++k) {
    const index_t r = column ? i + k : i, c = column ? j0 : j0 + k;
    const T v = pairwise_logit(a, static_cast<T>(s[k * stride]), r, c);
    if (v > p.max) p.max = v;
  }
  if (p.max == -infinity<T>()) return p;  // every candidate masked
  for (index_t k = 0; k < count; ++k) {
    const index_t r = column ? i + k : i, c = column ? j0 : j0 + k;
    const T v = pairwise_logit(a, static_cast<T>(s[k * stride]), r, c);
    if (v == -infinity<T>()) continue;
    p.sum += detail::exp_(v - p.max);
    p.total += v;
    if (pairwise_positive(a, r, c)) {
      p.pos += v;
      p.count += T(1);
    }
  }
  return p;
}

/// The per-anchor loss term lse - t with the target logit t = (1 - eps) mean of the positives +
/// eps mean of all candidates (`candidates` of them); *valid is false for an anchor without a
/// positive (excluded from the loss, as on the CPU).
template <class T>
CONTRASTIVE_HOST_DEVICE inline double pairwise_anchor_term(const pairwise_partial<T>& st,
                                                           double eps, double candidates,
                                                           bool* valid) noexcept {
  *valid = st.count > T(0);
  if (!*valid) return 0;
  const double hard = static_cast<double>(st.pos) / static_cast<double>(st.count);
  const double soft = eps > 0 ? static_cast<double>(st.total) / candidates : 0.0;
  return static_cast<double>(st.lse()) - ((1 - eps) * hard + eps * soft);
}

/// One entry of the logit gradient G of the block sweep (see pairwise_epilogue_args), from the
/// final logit s (after pairwise_logit): 0 for a masked entry.
template <class T>
CONTRASTIVE_HOST_DEVICE inline T pairwise_gradient(const pairwise_epilogue_args<T>& a, T s,
                                                   index_t i, index_t j) noexcept {
  if (s == -infinity<T>()) return T(0);
  const T rw = a.row_w != nullptr ? a.row_w[i] : T(0);
  const T cw = a.col_w != nullptr ? a.col_w[j] : T(0);
  T g = -(rw + cw) * a.off_target;
  if (rw != T(0)) g += rw * detail::exp_(s - a.row_lse[i]);
  if (cw != T(0)) g += cw * detail::exp_(s - a.col_lse[j]);
  if (pairwise_positive(a, i, j))
    g -= (a.row_q != nullptr ? a.row_q[i] : T(0)) + (a.col_q != nullptr ? a.col_q[j] : T(0));
  return g;
}

/// The number of positives of an anchor among `candidates` candidates (row anchor: columns
/// 0..candidates-1; column anchor: rows), masked entries excluded. Without labels at most one
/// candidate can match, and only it is looked at.
template <class T>
CONTRASTIVE_HOST_DEVICE inline T pairwise_positive_count(const pairwise_epilogue_args<T>& a,
                                                         index_t anchor, index_t candidates,
                                                         bool column) noexcept {
  auto one = [&](index_t k) -> T {
    const index_t r = column ? k : anchor, c = column ? anchor : k;
    return pairwise_positive(a, r, c) && pairwise_logit(a, T(0), r, c) != -infinity<T>() ? T(1)
                                                                                         : T(0);
  };
  if (a.label_x == nullptr) {
    // Row anchor i: column (i + shift) % ny; column anchor j: the row i with (i + shift) % ny == j.
    index_t k = column ? (anchor - a.positive_shift) % a.ny : (anchor + a.positive_shift) % a.ny;
    if (k < 0) k += a.ny;
    return k < candidates ? one(k) : T(0);
  }
  T n = 0;
  for (index_t k = 0; k < candidates; ++k) n += one(k);
  return n;
}

/// The backward coefficients of one anchor with `count` positives, `w` being the weight of the
/// valid anchors of its direction: weight w (0 without a positive) and positive target
/// w (1 - eps) / count.
template <class T>
CONTRASTIVE_HOST_DEVICE inline void pairwise_anchor_coefficients(T count, double w, double eps,
                                                                 T* weight, T* target) noexcept {
  const bool valid = count > T(0);
  *weight = valid ? static_cast<T>(w) : T(0);
  *target = valid ? static_cast<T>(w * (1 - eps) / static_cast<double>(count)) : T(0);
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_MATH_HPP
