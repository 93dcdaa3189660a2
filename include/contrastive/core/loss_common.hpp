#ifndef CONTRASTIVE_CORE_LOSS_COMMON_HPP
#define CONTRASTIVE_CORE_LOSS_COMMON_HPP

// Pieces every CPU loss entry point shares: the argument checks that read elements on the host
// (the others, which read no element, live in core/checks.hpp and come with this header), the
// input/output view helpers, and the packing of layouts Eigen cannot take directly.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "contrastive/core/checks.hpp"
#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/gemm.hpp"
#include "contrastive/core/loss_types.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/traits.hpp"
#include "contrastive/core/workspace.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

namespace detail {

template <class T>
constexpr bool is_supported_scalar =
    std::is_same<T, float>::value || std::is_same<T, double>::value;

template <class T, class S>
matrix_view<const T, S> const_view(const matrix_view<T, S>& v) noexcept {
  return matrix_view<const T, S>(v.data(), v.rows(), v.cols(), v.row_stride(), v.col_stride());
}

/// One O(N D) pass: NaN or Inf anywhere in an input is an error, reported with its position.
template <class T, class S>
void check_finite(const char* fn, const char* name, const matrix_view<const T, S>& v) {
  for (index_t i = 0; i < v.rows(); ++i) {
    const T* row = v.row_ptr(i);
    bool ok = true;
    if (v.col_stride() == 1) {
      T acc = 0;  // x - x is 0 for finite x and NaN otherwise: one branch per row
      for (index_t j = 0; j < v.cols(); ++j) acc += row[j] - row[j];
      ok = acc == T(0);
    } else {
      for (index_t j = 0; j < v.cols() && ok; ++j) ok = std::isfinite(row[j * v.col_stride()]);
    }
    if (CONTRASTIVE_UNLIKELY(!ok)) {
      for (index_t j = 0; j < v.cols(); ++j) check_value_finite(fn, name, v(i, j), i, j);
    }
  }
}

/// Largest |x| of a view (0 when empty). Read only by the output bounds below.
template <class T, class S>
double max_abs(const matrix_view<T, S>& v) noexcept {
  double m = 0;
  for (index_t i = 0; i < v.rows(); ++i)
    for (index_t j = 0; j < v.cols(); ++j) {
      const double x = std::abs(static_cast<double>(v(i, j)));
      m = x > m ? x : m;
    }
  return m;
}

/// Rejects, before anything is written, a call whose outputs could overflow T: `bound` is an upper
/// bound of the magnitude of every output element, a loss-specific product of the largest input
/// magnitude, |upstream|, the scale and the weights (with `accumulate`, the caller adds the
/// largest magnitude already in the outputs). Finite inputs near T's range otherwise give inf or
/// NaN gradients from a call that returned normally; the bounds are loose (orders of magnitude
/// above what the math needs), so ordinary inputs never come near them.
template <class T>
void check_output_bound(const char* fn, const char* what, double bound) {
  const double limit = 0.0625 * static_cast<double>(std::numeric_limits<T>::max());
  CONTRASTIVE_CHECK(bound <= limit, fn, ": the ", what, " could overflow ",
                    sizeof(T) == sizeof(float) ? "float" : "double", " (bound ", bound, " > ",
                    limit, "); scale the inputs, 'upstream', the weights or 1/temperature down");
}

/// max(|x|, 1) (NaN stays NaN): the bounds below multiply these, so that every partial product
/// a computation may form first (upstream times an input before the 1/temperature, say) is
/// bounded too, not only the final gradient.
inline double at_least_one(double x) noexcept { return std::max(std::abs(x), 1.0); }

/// The logit bound D max|x|^2 scale and the temperature-gradient bounds of
/// check_pair_gradient_bound: its computed value, and a priori 2 (N + 1) |upstream| max_weight
/// max|s| scale. At logits near the range the computed value is mostly rounding (an lse minus a
/// target, both ~1e299), and a decision on it alone depended on the summation order (a fuzz run
/// found the distributed loss accepting what the single-process loss rejected). A caller that
/// runs a pairwise backward after writing other terms (feature separation) checks these first.
template <class T>
void check_pair_logit_bounds(const char* fn, index_t n, index_t d, double max_input,
                             double upstream, double scale, double max_weight,
                             double grad_log_scale) {
  // The backward recomputes every logit, also of anchors the loss leaves out (no positive):
  // |s_ij| <= D max|x|^2 scale must fit too (a fuzz run found NaN gradients from such a row).
  const double m1 = at_least_one(max_input);
  const double logit_bound = static_cast<double>(d) * m1 * m1 * at_least_one(scale);
  check_output_bound<T>(fn, "logits", logit_bound);
  const double theta_bound = 2.0 * (static_cast<double>(n) + 1) * at_least_one(upstream) *
                             at_least_one(max_weight) * logit_bound * at_least_one(scale);
  check_output_bound<double>(fn, "temperature gradient",
                             std::max(theta_bound, std::abs(upstream * grad_log_scale) * scale));
}

/// The bound of the softmax (pairwise) losses: a row or a column of the logit gradient sums to at
/// most 2 per unit of anchor weight, so every element of dL/da, dL/db is at most
/// 4 (N + 1) |upstream| scale max|x| max_weight (for either reduction; each factor taken as at
/// least 1, see at_least_one). The logits and the temperature gradient
/// dL/dtau = -upstream dL/dtheta scale (known from the forward, `grad_log_scale`) are checked too
/// (check_pair_logit_bounds). `n`: anchors in the (global) batch, `max_input`: the largest |x| of
/// every input.
template <class T>
void check_pair_gradient_bound(const char* fn, index_t n, double max_input,
                               const matrix_view<T>& ga, const matrix_view<T>& gb, double upstream,
                               double scale, double max_weight, bool accumulate,
                               double grad_log_scale) {
  double bound = 4.0 * (static_cast<double>(n) + 1) * at_least_one(upstream) * at_least_one(scale) *
                 at_least_one(max_input) * at_least_one(max_weight);
  if (accumulate) bound += std::max(max_abs(ga), max_abs(gb));
  check_output_bound<T>(fn, "gradients", bound);
  check_pair_logit_bounds<T>(fn, n, ga.cols(), max_input, upstream, scale, max_weight,
                             grad_log_scale);
}

template <class T>
void check_pair_gradient_bound(const char* fn, const matrix_view<const T>& a,
                               const matrix_view<const T>& b, const matrix_view<T>& ga,
                               const matrix_view<T>& gb, double upstream, double scale,
                               double max_weight, bool accumulate, double grad_log_scale) {
  check_pair_gradient_bound(fn, a.rows(), std::max(max_abs(a), max_abs(b)), ga, gb, upstream, scale,
                            max_weight, accumulate, grad_log_scale);
}

/// The checks every two-tower loss makes on its inputs: non-null, non-empty, same shape,
/// finite values, a valid temperature and tiles.
template <class T>
void check_pair_inputs(const char* fn, const matrix_view<const T>& a, const matrix_view<const T>& b,
                       double temperature, index_t tile_rows, index_t tile_cols) {
  check_matrix(fn, "a", a);
  check_matrix(fn, "b", b);
  check_temperature(fn, temperature);
  check_tiles(fn, tile_rows, tile_cols);
  check_pair_shape(fn, a, b);
  check_finite(fn, "a", a);
  check_finite(fn, "b", b);
}

/// Bytes to pack a view that Eigen cannot take in place (0 when it can).
template <class T, class S>
std::size_t packing_bytes(const matrix_view<T, S>& v) {
  return gemm_ready(v)
             ? 0
             : array_bytes<std::remove_const_t<T>>(checked_product(
                   static_cast<std::size_t>(v.rows()), static_cast<std::size_t>(v.cols())));
}

/// The input itself when gemm_ready, else a row-major copy carved from the arena.
template <class T>
matrix_view<const T> gemm_input(const matrix_view<const T>& v, arena& ar) {
  if (gemm_ready(v)) return v;
  T* p = ar.take<T>(static_cast<std::size_t>(v.size()));
  for (index_t i = 0; i < v.rows(); ++i)
    for (index_t j = 0; j < v.cols(); ++j) p[i * v.cols() + j] = v(i, j);
  return matrix_view<const T>(p, v.rows(), v.cols(), v.cols(), 1);
}

/// A gradient output: written in place when gemm_ready, else through a row-major buffer that
/// finish() scatters back. Starts from zero, or from the current contents when accumulating.
template <class T>
class gemm_output {
 public:
  gemm_output(const matrix_view<T>& out, bool accumulate, arena& ar) : out_(out) {
    if (gemm_ready(out)) {
      work_ = out;
      if (!accumulate) {
        for (index_t i = 0; i < out.rows(); ++i)
          std::fill(out.row_ptr(i), out.row_ptr(i) + out.cols(), T(0));
      }
    } else {
      T* p = ar.take<T>(static_cast<std::size_t>(out.size()));
      work_ = matrix_view<T>(p, out.rows(), out.cols(), out.cols(), 1);
      for (index_t i = 0; i < out.rows(); ++i)
        for (index_t j = 0; j < out.cols(); ++j) work_(i, j) = accumulate ? out(i, j) : T(0);
    }
  }
  const matrix_view<T>& view() const noexcept { return work_; }
  void finish() const {
    if (work_.data() == out_.data()) return;
    for (index_t i = 0; i < out_.rows(); ++i)
      for (index_t j = 0; j < out_.cols(); ++j) out_(i, j) = work_(i, j);
  }

 private:
  matrix_view<T> out_;
  matrix_view<T> work_;
};

/// Counts, for each x label, how many y labels equal it (O((n + m) log m), no n x m mask).
inline void count_matches(const vector_view<const std::int64_t>& x,
                          const vector_view<const std::int64_t>& y, index_t* counts,
                          std::int64_t* sorted_scratch) {
  std::copy(y.data, y.data + y.size, sorted_scratch);
  std::sort(sorted_scratch, sorted_scratch + y.size);
  for (index_t i = 0; i < x.size; ++i) {
    const auto r = std::equal_range(sorted_scratch, sorted_scratch + y.size, x.data[i]);
    counts[i] = static_cast<index_t>(r.second - r.first);
  }
}

/// Counts allocations the way `arena` carves them, so size queries and calls agree.
struct size_counter {
  std::size_t bytes = 0;
  template <class T>
  T* take(std::size_t count) noexcept {
    bytes += array_bytes<T>(count);
    return nullptr;
  }
};

template <class T, class Space>
struct host_only_check {
  static_assert(std::is_same<Space, host_memory>::value,
                "contrastive: device views go to the CUDA functions in contrastive/cuda/ "
                "(include the .cuh header and call contrastive::cuda::...)");
};

template <class T>
double dot_rows(const matrix_view<const T>& x, index_t i, const matrix_view<const T>& y,
                index_t j) noexcept {
  double s = 0;
  for (index_t k = 0; k < x.cols(); ++k) s += double(x(i, k)) * double(y(j, k));
  return s;
}

template <class T>
double dot_row_vec(const matrix_view<const T>& x, index_t i, const double* v) noexcept {
  double s = 0;
  for (index_t k = 0; k < x.cols(); ++k) s += double(x(i, k)) * v[k];
  return s;
}

template <class A>
auto input_view(const A& a) {
  static_assert(is_tensor_like<A>::value,
                "contrastive: input is not a tensor: include contrastive/adapters/<lib>.hpp or "
                "specialise contrastive::tensor_traits");
  auto v = as_view(a);
  using V = decltype(v);
  using T = typename V::value_type;
  static_assert(is_supported_scalar<T>, "contrastive: element type must be float or double");
  (void)host_only_check<T, typename V::memory_space>{};
  return const_view(v);
}

template <class G>
auto output_view(G&& g) {
  static_assert(is_writable_tensor<G&&>::value,
                "contrastive: gradient output must be a writable tensor: an lvalue (or a "
                "non-owning view such as an Eigen Map/Block) of a supported type, not const and "
                "not an owning temporary");
  auto v = as_view(std::forward<G>(g));
  (void)host_only_check<typename decltype(v)::value_type, typename decltype(v)::memory_space>{};
  return v;
}

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_LOSS_COMMON_HPP
