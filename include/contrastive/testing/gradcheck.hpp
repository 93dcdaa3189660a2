#ifndef CONTRASTIVE_TESTING_GRADCHECK_HPP
#define CONTRASTIVE_TESTING_GRADCHECK_HPP

// A central finite-difference gradient checker in double, for any forward/backward pair on any
// tensor type as_view accepts: the oracle of the library's own tests (docs/README.md#testing-oracles),
// shipped so that users can check the backward of their own layers (docs/gradcheck.md).
//   numeric  n_k = (f(x + h_k e_k) - f(x - h_k e_k)) / (2 h_k),  h_k = step * max(1, |x_k|)
//   pass     max_k |g_k - n_k| <= atol + rtol * max(scale_floor, max_k |n_k|)
// Host-only and Eigen-free; not part of the umbrella header contrastive/contrastive.hpp.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <ostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "contrastive/core/checks.hpp"
#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/traits.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Tools for testing code written against the library: the finite-difference gradient checker.
namespace testing {

/// Options of the gradient checker: the finite-difference step and the pass rule.
struct gradcheck_options {
  /// Central-difference step: h_k = step * max(1, |x_k|) when `relative_step`, else h_k = step.
  double step = 1e-6;
  /// Scale the step with the magnitude of the entry (the rule of the library's own tests).
  bool relative_step = true;
  /// Relative tolerance: the gradient passes when max_k |g_k - n_k| <= atol + rtol * scale,
  /// with scale = max(scale_floor, max_k |n_k|) (g analytic, n numeric).
  double rtol = 1e-6;
  /// Absolute tolerance added to the bound (0: purely relative to the scale).
  double atol = 0;
  /// Lower bound of the scale, so that gradients near zero are compared absolutely.
  double scale_floor = 1;
  /// How many of the worst entries the result keeps (worst first).
  std::size_t worst_entries = 5;
};

/// One entry of a gradient comparison.
struct gradcheck_entry {
  index_t row = 0;       ///< Row of the entry.
  index_t col = 0;       ///< Column of the entry.
  double analytic = 0;   ///< The gradient under test, g_k.
  double numeric = 0;    ///< The reference (central differences), n_k.
  double abs_error = 0;  ///< |g_k - n_k| (infinity when either is not finite).
  double rel_error = 0;  ///< abs_error / scale, the quantity bounded by `rtol` (with atol = 0).
};

/// The outcome of a gradient check: pass/fail, the error measures and the worst entries.
struct gradcheck_result {
  bool passed = true;                  ///< Every entry is within the bound (and finite).
  index_t rows = 0;                    ///< Rows of the checked gradient.
  index_t cols = 0;                    ///< Columns of the checked gradient.
  double scale = 1;                    ///< max(scale_floor, max_k |n_k|).
  double bound = 0;                    ///< The allowed error, atol + rtol * scale.
  double max_abs_error = 0;            ///< max_k |g_k - n_k|.
  double max_rel_error = 0;            ///< max_abs_error / scale.
  index_t failures = 0;                ///< Number of entries over the bound.
  std::vector<gradcheck_entry> worst;  ///< The worst entries, largest error first.

  /// True when the check passed.
  explicit operator bool() const noexcept { return passed; }

  /// A readable report: verdict, errors, bound and the worst entries.
  std::string summary() const {
    std::ostringstream os;
    os.precision(6);
    os << "gradcheck " << (passed ? "passed" : "FAILED") << " on " << rows << " x " << cols
       << ": max abs error " << max_abs_error << ", max rel error " << max_rel_error << " (scale "
       << scale << ", bound " << bound << "), " << failures
       << (failures == 1 ? " entry" : " entries") << " over the bound";
    for (const auto& e : worst) {
      os << "\n  (" << e.row << ", " << e.col << "): analytic " << e.analytic << ", numeric "
         << e.numeric << ", abs error " << e.abs_error << ", rel error " << e.rel_error;
    }
    return os.str();
  }
};

/// Writes gradcheck_result::summary() (what test frameworks print for a failed check).
inline std::ostream& operator<<(std::ostream& os, const gradcheck_result& r) {
  return os << r.summary();
}

namespace detail {

using ::contrastive::detail::check_matrix;
using ::contrastive::detail::check_no_alias;
using ::contrastive::detail::check_shape;
using ::contrastive::detail::check_writable_layout;

inline void check_options(const char* fn, const gradcheck_options& o) {
  CONTRASTIVE_CHECK(o.step > 0 && std::isfinite(o.step), fn,
                    ": 'step' must be finite and > 0, got ", o.step);
  CONTRASTIVE_CHECK(o.rtol >= 0 && std::isfinite(o.rtol), fn,
                    ": 'rtol' must be finite and >= 0, got ", o.rtol);
  CONTRASTIVE_CHECK(o.atol >= 0 && std::isfinite(o.atol), fn,
                    ": 'atol' must be finite and >= 0, got ", o.atol);
  CONTRASTIVE_CHECK(o.scale_floor >= 0 && std::isfinite(o.scale_floor), fn,
                    ": 'scale_floor' must be finite and >= 0, got ", o.scale_floor);
}

template <class T>
constexpr bool is_real = std::is_same<T, float>::value || std::is_same<T, double>::value;

// The loss is called with the perturbed tensor when it takes one, else with no argument.
template <class F, class X>
double call_loss(F& f, const X& x) {
  if constexpr (std::is_invocable<F&, const X&>::value) {
    return static_cast<double>(f(x));
  } else {
    static_assert(std::is_invocable<F&>::value,
                  "contrastive::testing: the loss must be callable as f(x) or f() and return a "
                  "number");
    return static_cast<double>(f());
  }
}

// The point of a check is viewed through an lvalue: an owning temporary (a copy of the point)
// lives until the check returns, so it is accepted there, unlike as an output.
template <class X>
auto writable_double_view(X& x) {
  static_assert(is_tensor_like<remove_cvref_t<X>>::value,
                "contrastive::testing: 'x' is not a tensor: include contrastive/adapters/<lib>.hpp "
                "or specialise contrastive::tensor_traits");
  static_assert(
      is_writable_tensor<X&>::value,
      "contrastive::testing: 'x' must be writable (it is perturbed in place and restored)");
  auto v = as_view(x);
  static_assert(std::is_same<typename decltype(v)::value_type, double>::value,
                "contrastive::testing: finite differences need double ('x' must hold double)");
  static_assert(std::is_same<typename decltype(v)::memory_space, host_memory>::value,
                "contrastive::testing: host memory only");
  return v;
}

template <class T>
auto readable_view(const T& t) {
  static_assert(is_tensor_like<T>::value,
                "contrastive::testing: not a tensor: include contrastive/adapters/<lib>.hpp or "
                "specialise contrastive::tensor_traits");
  auto v = as_view(t);
  static_assert(is_real<typename decltype(v)::value_type>,
                "contrastive::testing: element type must be float or double");
  static_assert(std::is_same<typename decltype(v)::memory_space, host_memory>::value,
                "contrastive::testing: host memory only");
  return matrix_view<const typename decltype(v)::value_type>(v);
}

// Fills out(i, j) with the central difference of f at x(i, j); x is restored bit for bit.
template <class F, class T>
void numeric_gradient_into(F& f, const matrix_view<double>& v, const gradcheck_options& o,
                           const T& x, double* out, index_t out_rs, index_t out_cs) {
  for (index_t i = 0; i < v.rows(); ++i) {
    for (index_t j = 0; j < v.cols(); ++j) {
      double& e = v(i, j);
      const double x0 = e;
      const double h = o.relative_step ? o.step * std::max(1.0, std::abs(x0)) : o.step;
      e = x0 + h;
      const double fp = call_loss(f, x);
      e = x0 - h;
      const double fm = call_loss(f, x);
      e = x0;
      out[i * out_rs + j * out_cs] = (fp - fm) / (2 * h);
    }
  }
}

template <class TA, class TN>
gradcheck_result compare(const matrix_view<const TA>& g, const matrix_view<const TN>& n,
                         const gradcheck_options& o) {
  gradcheck_result r;
  r.rows = g.rows();
  r.cols = g.cols();
  const double inf = std::numeric_limits<double>::infinity();
  double nmax = 0;
  for (index_t i = 0; i < n.rows(); ++i)
    for (index_t j = 0; j < n.cols(); ++j) {
      const double a = std::abs(double(n(i, j)));
      nmax = std::isfinite(a) ? std::max(nmax, a) : nmax;
    }
  r.scale = std::max(o.scale_floor, nmax);
  r.bound = o.atol + o.rtol * r.scale;
  const double denom = r.scale > 0 ? r.scale : 1.0;
  std::vector<gradcheck_entry> worst;
  const auto by_error = [](const gradcheck_entry& x, const gradcheck_entry& y) {
    return x.abs_error > y.abs_error;
  };
  for (index_t i = 0; i < g.rows(); ++i) {
    for (index_t j = 0; j < g.cols(); ++j) {
      gradcheck_entry e;
      e.row = i;
      e.col = j;
      e.analytic = double(g(i, j));
      e.numeric = double(n(i, j));
      const double d = std::abs(e.analytic - e.numeric);
      e.abs_error = std::isfinite(e.analytic) && std::isfinite(e.numeric) ? d : inf;
      e.rel_error = e.abs_error / denom;
      if (!(e.abs_error <= r.bound)) ++r.failures;
      r.max_abs_error = std::max(r.max_abs_error, e.abs_error);
      if (o.worst_entries == 0) continue;
      // Keep the worst entries sorted, largest first; ties keep the first (lowest) index.
      if (worst.size() < o.worst_entries || by_error(e, worst.back())) {
        worst.insert(std::upper_bound(worst.begin(), worst.end(), e, by_error), e);
        if (worst.size() > o.worst_entries) worst.pop_back();
      }
    }
  }
  r.max_rel_error = r.max_abs_error / denom;
  r.passed = r.failures == 0;
  r.worst = std::move(worst);
  return r;
}

}  // namespace detail

/// Compares a gradient under test with a reference gradient of the same shape (for instance a
/// numeric_gradient, or the gradient of a trusted implementation) under the pass rule of
/// gradcheck_options. Both may be float or double, any tensor type, any strides.
/// @param analytic  the gradient under test, g
/// @param reference the reference gradient, n (the scale is taken from it)
/// @param opt       tolerances and the number of worst entries to report
/// @return the verdict, the errors and the worst entries
/// @throws contrastive::invalid_argument on a shape mismatch or bad options
template <class G, class N>
gradcheck_result compare_gradients(const G& analytic, const N& reference,
                                   const gradcheck_options& opt = {}) {
  const char* fn = "compare_gradients";
  detail::check_options(fn, opt);
  const auto vg = detail::readable_view(analytic);
  const auto vn = detail::readable_view(reference);
  detail::check_matrix(fn, "analytic", vg);
  detail::check_matrix(fn, "reference", vn);
  detail::check_shape(fn, "reference", vn, vg.rows(), vg.cols(), "the shape of 'analytic'");
  return detail::compare(vg, vn, opt);
}

/// Central finite differences of a scalar loss with respect to every entry of `x`, in double:
/// `out(i, j) = (f(x + h e_ij) - f(x - h e_ij)) / (2 h)`. Each entry of `x` is perturbed in place
/// and restored bit for bit, so `f` must read the current contents of `x`; it is called as
/// `f(x)` when it takes the tensor and as `f()` otherwise (a closure over `x`), twice per entry.
/// @param x   a writable tensor of double (an lvalue, or a non-owning view)
/// @param f   the forward pass: the scalar loss at the current `x`
/// @param out a writable tensor of double with the shape of `x` (not overlapping it)
/// @param opt the step (`step`, `relative_step`; the tolerances are not used)
/// @throws contrastive::invalid_argument on bad shapes, overlapping memory or bad options
template <class X, class F, class O>
void numeric_gradient(X&& x, F&& f, O&& out, const gradcheck_options& opt = {}) {
  const char* fn = "numeric_gradient";
  detail::check_options(fn, opt);
  const auto vx = detail::writable_double_view(x);
  static_assert(is_writable_tensor<O&&>::value,
                "contrastive::testing: 'out' must be a writable tensor (not const, not an owning "
                "temporary)");
  const auto vo = detail::writable_double_view(out);
  detail::check_matrix(fn, "x", vx);
  detail::check_matrix(fn, "out", vo);
  detail::check_writable_layout(fn, "x", vx);
  detail::check_writable_layout(fn, "out", vo);
  detail::check_shape(fn, "out", vo, vx.rows(), vx.cols(), "the shape of 'x'");
  detail::check_no_alias(fn, "out", vo, "x", vx);
  detail::numeric_gradient_into(f, vx, opt, x, vo.data(), vo.row_stride(), vo.col_stride());
}

/// Checks a backward pass: compares `analytic` (what the backward wrote for dL/dx) with the
/// central finite differences of the forward `f` at `x` (see numeric_gradient for how `f` is
/// called and how `x` is perturbed), under the pass rule of `opt`.
/// @param x        a writable tensor of double, the point of the check (restored on return); an
///                 owning temporary such as `Eigen::MatrixXd(a)` checks at a copy of `a`
/// @param analytic the gradient under test, float or double, with the shape of `x`
/// @param f        the forward pass: the scalar loss at the current `x`
/// @param opt      the step, the tolerances and the number of worst entries to report
/// @return the verdict, the errors and the worst entries (`summary()` prints them)
/// @throws contrastive::invalid_argument on bad shapes or bad options
template <class X, class G, class F>
gradcheck_result gradcheck(X&& x, const G& analytic, F&& f, const gradcheck_options& opt = {}) {
  const char* fn = "gradcheck";
  detail::check_options(fn, opt);
  const auto vx = detail::writable_double_view(x);
  const auto vg = detail::readable_view(analytic);
  detail::check_matrix(fn, "x", vx);
  detail::check_matrix(fn, "analytic", vg);
  detail::check_writable_layout(fn, "x", vx);
  detail::check_shape(fn, "analytic", vg, vx.rows(), vx.cols(), "the shape of 'x'");
  // A copy of the gradient under test: it may be a view into memory the forward overwrites.
  std::vector<double> g(static_cast<std::size_t>(vx.rows() * vx.cols()));
  for (index_t i = 0; i < vx.rows(); ++i)
    for (index_t j = 0; j < vx.cols(); ++j)
      g[static_cast<std::size_t>(i * vx.cols() + j)] = double(vg(i, j));
  std::vector<double> n(g.size());
  detail::numeric_gradient_into(f, vx, opt, x, n.data(), vx.cols(), 1);
  return detail::compare(matrix_view<const double>(g.data(), vx.rows(), vx.cols()),
                         matrix_view<const double>(n.data(), vx.rows(), vx.cols()), opt);
}

/// The sum of `y(i, j) * r(i, j)` in double: the scalar `L = sum(R .* y)` whose gradient with
/// respect to `y` is `R`, which turns a layer `y = layer(x)` into a loss for gradcheck (run the
/// layer's backward with upstream gradient `R`, then check dL/dx).
/// @throws contrastive::invalid_argument when the shapes differ
template <class Y, class R>
double weighted_sum(const Y& y, const R& r) {
  const char* fn = "weighted_sum";
  const auto vy = detail::readable_view(y);
  const auto vr = detail::readable_view(r);
  detail::check_matrix(fn, "y", vy);
  detail::check_matrix(fn, "r", vr);
  detail::check_shape(fn, "r", vr, vy.rows(), vy.cols(), "the shape of 'y'");
  double s = 0;
  for (index_t i = 0; i < vy.rows(); ++i)
    for (index_t j = 0; j < vy.cols(); ++j) s += double(vy(i, j)) * double(vr(i, j));
  return s;
}

}  // namespace testing

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_TESTING_GRADCHECK_HPP
