#ifndef CONTRASTIVE_CORE_MATH_HPP
#define CONTRASTIVE_CORE_MATH_HPP

#include <math.h>

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

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_MATH_HPP
