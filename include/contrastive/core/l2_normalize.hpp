#ifndef CONTRASTIVE_CORE_L2_NORMALIZE_HPP
#define CONTRASTIVE_CORE_L2_NORMALIZE_HPP

// Row-wise L2 normalisation, kept apart from the losses (which use their inputs as given):
//   forward  y_i = x_i / max(||x_i||, eps)
//   backward dL/dx_i = (g_i - y_i <y_i, g_i>) / ||x_i||   when ||x_i|| > eps, else g_i / eps.

#include <cmath>
#include <utility>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_common.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/traits.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

namespace detail {
template <class T>
double row_norm(const matrix_view<const T>& x, index_t i) noexcept {
  double s = 0;
  for (index_t k = 0; k < x.cols(); ++k) s += double(x(i, k)) * double(x(i, k));
  return std::sqrt(s);
}

// In-place use (output == input, same strides) is allowed; partial overlap is not.
template <class T, class U>
void check_same_or_disjoint(const char* fn, const char* out_name, const matrix_view<T>& out,
                            const char* in_name, const matrix_view<U>& in) {
  const bool same = static_cast<const void*>(out.data()) == static_cast<const void*>(in.data()) &&
                    out.row_stride() == in.row_stride() && out.col_stride() == in.col_stride();
  CONTRASTIVE_CHECK(same || !views_overlap(out, in), fn, ": output '", out_name,
                    "' partially overlaps '", in_name, "' (only exact in-place use is allowed)");
}
}  // namespace detail

/// y = x with each row scaled to unit L2 norm (rows of norm < eps are divided by eps).
/// `y` may be `x` itself.
template <class X, class Y>
CONTRASTIVE_REQUIRES(tensor_like<X>&& writable_tensor<Y&&>)
void l2_normalize(const X& x, Y&& y, double eps = 1e-12) {
  const char* fn = "l2_normalize";
  const auto vx = detail::input_view(x);
  const auto vy = detail::output_view(std::forward<Y>(y));
  using T = typename decltype(vx)::value_type;
  detail::require_same_value_type<T, decltype(vy)>();
  detail::check_matrix(fn, "x", vx);
  detail::check_shape(fn, "y", vy, vx.rows(), vx.cols(), "the shape of 'x'");
  detail::check_writable_layout(fn, "y", vy);
  detail::check_same_or_disjoint(fn, "y", vy, "x", vx);
  CONTRASTIVE_CHECK(eps > 0 && std::isfinite(eps), fn, ": 'eps' must be finite and > 0, got ", eps);
  detail::check_finite(fn, "x", vx);
  for (index_t i = 0; i < vx.rows(); ++i) {
    const double nrm = detail::row_norm(vx, i);
    const double inv = 1.0 / (nrm > eps ? nrm : eps);
    for (index_t k = 0; k < vx.cols(); ++k) vy(i, k) = static_cast<T>(double(vx(i, k)) * inv);
  }
}

/// grad_x = dL/dx given x and grad_y = dL/dy for y = l2_normalize(x). `grad_x` may be `grad_y`.
template <class X, class G, class GX>
CONTRASTIVE_REQUIRES(tensor_like<X>&& tensor_like<G>&& writable_tensor<GX&&>)
void l2_normalize_backward(const X& x, const G& grad_y, GX&& grad_x, double eps = 1e-12) {
  const char* fn = "l2_normalize_backward";
  const auto vx = detail::input_view(x);
  const auto vg = detail::input_view(grad_y);
  const auto vgx = detail::output_view(std::forward<GX>(grad_x));
  using T = typename decltype(vx)::value_type;
  detail::require_same_value_type<T, decltype(vg), decltype(vgx)>();
  detail::check_matrix(fn, "x", vx);
  detail::check_shape(fn, "grad_y", vg, vx.rows(), vx.cols(), "the shape of 'x'");
  detail::check_shape(fn, "grad_x", vgx, vx.rows(), vx.cols(), "the shape of 'x'");
  detail::check_writable_layout(fn, "grad_x", vgx);
  detail::check_no_alias(fn, "grad_x", vgx, "x", vx);
  detail::check_same_or_disjoint(fn, "grad_x", vgx, "grad_y", vg);
  CONTRASTIVE_CHECK(eps > 0 && std::isfinite(eps), fn, ": 'eps' must be finite and > 0, got ", eps);
  detail::check_finite(fn, "x", vx);
  detail::check_finite(fn, "grad_y", vg);
  for (index_t i = 0; i < vx.rows(); ++i) {
    const double nrm = detail::row_norm(vx, i);
    if (nrm > eps) {
      double yg = 0;
      for (index_t k = 0; k < vx.cols(); ++k) yg += double(vx(i, k)) / nrm * double(vg(i, k));
      for (index_t k = 0; k < vx.cols(); ++k)
        vgx(i, k) = static_cast<T>((double(vg(i, k)) - double(vx(i, k)) / nrm * yg) / nrm);
    } else {
      for (index_t k = 0; k < vx.cols(); ++k) vgx(i, k) = static_cast<T>(double(vg(i, k)) / eps);
    }
  }
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_L2_NORMALIZE_HPP
