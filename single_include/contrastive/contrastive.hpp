// contrastive v0.1.0: single-header edition (SPDX-License-Identifier: MIT).
//
// GENERATED FILE: DO NOT EDIT. It is include/contrastive/contrastive.hpp with every header it
// uses inlined by cmake/amalgamate.cmake; edit the headers under include/ and regenerate with
//   cmake --build <build-dir> --target contrastive_amalgamate
// or, from the repository root,
//   cmake -DSRC=include -DOUT=single_include/contrastive/contrastive.hpp -P cmake/amalgamate.cmake
// The xtensor adapter, cuda/ and distributed/ are not part of it.

#ifndef CONTRASTIVE_CONTRASTIVE_HPP
#define CONTRASTIVE_CONTRASTIVE_HPP

// Umbrella header: core, the raw and Eigen adapters, every loss, the samplers and the normaliser
// state. Never includes the xtensor or torch adapters, cuda/ or distributed/.
// ---- begin contrastive/version.hpp ----
#ifndef CONTRASTIVE_VERSION_HPP
#define CONTRASTIVE_VERSION_HPP

// Kept equal to project(VERSION) in CMakeLists.txt; a ctest test compares them.
#define CONTRASTIVE_VERSION_MAJOR 0
#define CONTRASTIVE_VERSION_MINOR 1
#define CONTRASTIVE_VERSION_PATCH 0
#define CONTRASTIVE_VERSION \
  (CONTRASTIVE_VERSION_MAJOR * 10000 + CONTRASTIVE_VERSION_MINOR * 100 + CONTRASTIVE_VERSION_PATCH)

#endif  // CONTRASTIVE_VERSION_HPP
// ---- end contrastive/version.hpp ----
// ---- begin contrastive/core/config.hpp ----
#ifndef CONTRASTIVE_CORE_CONFIG_HPP
#define CONTRASTIVE_CORE_CONFIG_HPP

#include <cstddef>
#include <type_traits>

// Host/device annotation for small functions shared with the CUDA kernels.
#if defined(__CUDACC__) || defined(__HIPCC__)
#  define CONTRASTIVE_HOST_DEVICE __host__ __device__
#else
#  define CONTRASTIVE_HOST_DEVICE
#endif

// Exceptions: on unless the compiler has them switched off or the user says otherwise.
#ifndef CONTRASTIVE_USE_EXCEPTIONS
#  if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#    define CONTRASTIVE_USE_EXCEPTIONS 1
#  else
#    define CONTRASTIVE_USE_EXCEPTIONS 0
#  endif
#endif

// Debug-only internal assertion; tests predefine it to throw.
#ifndef CONTRASTIVE_ASSERT
#  include <cassert>
#  define CONTRASTIVE_ASSERT(cond) assert(cond)
#endif

// C++20 concepts where available; in C++17 the entry points static_assert instead.
#if defined(__cpp_concepts) && __cpp_concepts >= 201907L
#  define CONTRASTIVE_HAS_CONCEPTS 1
#  define CONTRASTIVE_REQUIRES(...) requires(__VA_ARGS__)
#else
#  define CONTRASTIVE_HAS_CONCEPTS 0
#  define CONTRASTIVE_REQUIRES(...)
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define CONTRASTIVE_COLD __attribute__((cold, noinline))
#  define CONTRASTIVE_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#  define CONTRASTIVE_COLD
#  define CONTRASTIVE_UNLIKELY(x) (x)
#endif

// ABI namespace: a user macro may add a tag; never derived from __CUDA_ARCH__.
#ifndef CONTRASTIVE_ABI_NAMESPACE
#  define CONTRASTIVE_ABI_NAMESPACE v0
#endif
#define CONTRASTIVE_NAMESPACE_BEGIN \
  namespace contrastive {           \
  inline namespace CONTRASTIVE_ABI_NAMESPACE {
#define CONTRASTIVE_NAMESPACE_END \
  }                               \
  }

CONTRASTIVE_NAMESPACE_BEGIN

/// Signed index type used for extents and strides (as std::ptrdiff_t, like mdspan's layout_stride).
using index_t = std::ptrdiff_t;

namespace detail {
/// A non-negative index_t (an extent, a row, a count) as a std::size_t: for std::vector
/// subscripts and sizes, and for pointer offsets computed in std::size_t.
CONTRASTIVE_HOST_DEVICE constexpr std::size_t uz(index_t i) noexcept {
  return static_cast<std::size_t>(i);
}
}  // namespace detail

template <class T>
using remove_cvref_t = std::remove_cv_t<std::remove_reference_t<T>>;

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_CONFIG_HPP
// ---- end contrastive/core/config.hpp ----
// ---- begin contrastive/core/error.hpp ----
#ifndef CONTRASTIVE_CORE_ERROR_HPP
#define CONTRASTIVE_CORE_ERROR_HPP

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>


CONTRASTIVE_NAMESPACE_BEGIN

/// Thrown for every bad argument at an entry point: shapes, scalars, non-finite inputs, aliasing.
class invalid_argument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

// The default handler: throw (or print and abort in builds without exceptions).
[[noreturn]] inline void default_violation_handler(const char* msg, const char* file, int line) {
#if CONTRASTIVE_USE_EXCEPTIONS
  (void)file;
  (void)line;
  throw ::contrastive::invalid_argument(msg);
#else
  std::fprintf(stderr, "contrastive: precondition violated at %s:%d: %s\n", file, line, msg);
  std::abort();
#endif
}

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

// Users may predefine this (e.g. to log and exit under -fno-exceptions). If it returns, the
// library aborts: it never continues with arguments it has rejected.
#ifndef CONTRASTIVE_PRECONDITION_VIOLATION_HANDLER
#  define CONTRASTIVE_PRECONDITION_VIOLATION_HANDLER(msg, file, line) \
    ::contrastive::detail::default_violation_handler(msg, file, line)
#endif

CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

// Message building lives in a cold, out-of-line function so the checks cost one branch.
template <class... Args>
CONTRASTIVE_COLD void report_violation(const char* file, int line, const Args&... args) {
  std::ostringstream os;
  os.precision(9);
  (os << ... << args);
  const std::string msg = os.str();
  CONTRASTIVE_PRECONDITION_VIOLATION_HANDLER(msg.c_str(), file, line);
  std::abort();
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

/// Always-on argument check: CONTRASTIVE_CHECK(cond, "fn: 'x' has ", n, " rows").
#define CONTRASTIVE_CHECK(cond, ...)                                            \
  do {                                                                          \
    if (CONTRASTIVE_UNLIKELY(!(cond)))                                          \
      ::contrastive::detail::report_violation(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

#endif  // CONTRASTIVE_CORE_ERROR_HPP
// ---- end contrastive/core/error.hpp ----
// ---- begin contrastive/core/matrix_view.hpp ----
#ifndef CONTRASTIVE_CORE_MATRIX_VIEW_HPP
#define CONTRASTIVE_CORE_MATRIX_VIEW_HPP

#include <cstdint>
#include <type_traits>
#include <vector>


CONTRASTIVE_NAMESPACE_BEGIN

/// Memory-space tags. Views are host views unless made explicitly for device memory; the
/// front-end dispatches on this tag, never by inspecting pointers.
struct host_memory {};
struct device_memory {};

/// A non-owning, strided 2-D view: a miniature mdspan<T, dextents<2>, layout_stride>.
/// Element (i, j) lives at data()[i * stride(0) + j * stride(1)]. Strides are in elements and
/// may be any value, including 0 or negative (the kernels pack such inputs first).
template <class T, class Space = host_memory>
class matrix_view {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using index_type = index_t;
  using memory_space = Space;
  using pointer = T*;
  using reference = T&;

  constexpr matrix_view() noexcept = default;
  CONTRASTIVE_HOST_DEVICE constexpr matrix_view(T* data, index_t rows, index_t cols,
                                                index_t row_stride, index_t col_stride) noexcept
      : data_(data), rows_(rows), cols_(cols), row_stride_(row_stride), col_stride_(col_stride) {}
  /// Row-major, contiguous.
  CONTRASTIVE_HOST_DEVICE constexpr matrix_view(T* data, index_t rows, index_t cols) noexcept
      : matrix_view(data, rows, cols, cols, 1) {}

  /// Adds const (only from a non-const view: a const-to-const "conversion" would be a copy).
  template <class U,
            std::enable_if_t<!std::is_const<U>::value && std::is_same<const U, T>::value, int> = 0>
  CONTRASTIVE_HOST_DEVICE constexpr matrix_view(const matrix_view<U, Space>& o) noexcept
      : matrix_view(o.data(), o.rows(), o.cols(), o.row_stride(), o.col_stride()) {}

  CONTRASTIVE_HOST_DEVICE constexpr T* data() const noexcept { return data_; }
  CONTRASTIVE_HOST_DEVICE constexpr index_t rows() const noexcept { return rows_; }
  CONTRASTIVE_HOST_DEVICE constexpr index_t cols() const noexcept { return cols_; }
  CONTRASTIVE_HOST_DEVICE constexpr index_t row_stride() const noexcept { return row_stride_; }
  CONTRASTIVE_HOST_DEVICE constexpr index_t col_stride() const noexcept { return col_stride_; }
  /// mdspan names: extent(0) = rows, extent(1) = cols; stride(r) likewise.
  CONTRASTIVE_HOST_DEVICE constexpr index_t extent(int r) const noexcept {
    return r == 0 ? rows_ : cols_;
  }
  CONTRASTIVE_HOST_DEVICE constexpr index_t stride(int r) const noexcept {
    return r == 0 ? row_stride_ : col_stride_;
  }
  CONTRASTIVE_HOST_DEVICE constexpr index_t size() const noexcept { return rows_ * cols_; }
  CONTRASTIVE_HOST_DEVICE constexpr bool empty() const noexcept { return rows_ == 0 || cols_ == 0; }

  /// Number of elements between the lowest and the highest addressed element, plus one
  /// (mdspan's required_span_size for non-negative strides).
  CONTRASTIVE_HOST_DEVICE constexpr index_t required_span_size() const noexcept {
    if (empty()) return 0;
    return 1 + (rows_ - 1) * abs_(row_stride_) + (cols_ - 1) * abs_(col_stride_);
  }
  /// Lowest addressed element (differs from data() only for negative strides).
  CONTRASTIVE_HOST_DEVICE constexpr T* lowest() const noexcept {
    return data_ + (row_stride_ < 0 ? (rows_ - 1) * row_stride_ : 0) +
           (col_stride_ < 0 ? (cols_ - 1) * col_stride_ : 0);
  }

  CONTRASTIVE_HOST_DEVICE constexpr T& operator()(index_t i, index_t j) const noexcept {
    return data_[i * row_stride_ + j * col_stride_];
  }
  CONTRASTIVE_HOST_DEVICE constexpr T* row_ptr(index_t i) const noexcept {
    return data_ + i * row_stride_;
  }

  /// Rows [first, first + count).
  CONTRASTIVE_HOST_DEVICE constexpr matrix_view middle_rows(index_t first,
                                                            index_t count) const noexcept {
    return matrix_view(data_ + first * row_stride_, count, cols_, row_stride_, col_stride_);
  }
  CONTRASTIVE_HOST_DEVICE constexpr matrix_view block(index_t r0, index_t c0, index_t nr,
                                                      index_t nc) const noexcept {
    return matrix_view(data_ + r0 * row_stride_ + c0 * col_stride_, nr, nc, row_stride_,
                       col_stride_);
  }

  CONTRASTIVE_HOST_DEVICE constexpr bool is_row_major_contiguous() const noexcept {
    return col_stride_ == 1 && (row_stride_ == cols_ || rows_ <= 1);
  }

 private:
  CONTRASTIVE_HOST_DEVICE static constexpr index_t abs_(index_t x) noexcept {
    return x < 0 ? -x : x;
  }

  T* data_ = nullptr;
  index_t rows_ = 0, cols_ = 0, row_stride_ = 0, col_stride_ = 0;
};

template <class T>
using device_matrix_view = matrix_view<T, device_memory>;

/// A non-owning 1-D view: statistics, and the one span type of every option that takes per-row
/// values (labels, sample ids, log-normalisers). Those option spans must be contiguous
/// (stride 1); the losses check it. A host view converts implicitly from a whole std::vector.
template <class T, class Space = host_memory>
struct vector_view {
  T* data = nullptr;
  index_t size = 0;
  index_t stride = 1;

  constexpr vector_view() noexcept = default;
  CONTRASTIVE_HOST_DEVICE constexpr vector_view(T* d, index_t n, index_t s = 1) noexcept
      : data(d), size(n), stride(s) {}
  template <
      class Alloc, class S = Space,
      std::enable_if_t<std::is_same<S, host_memory>::value && std::is_const<T>::value, int> = 0>
  vector_view(const std::vector<std::remove_const_t<T>, Alloc>& v) noexcept  // NOLINT: implicit
      : data(v.data()), size(static_cast<index_t>(v.size())) {}

  CONTRASTIVE_HOST_DEVICE constexpr T& operator[](index_t i) const noexcept {
    return data[i * stride];
  }
  /// True when no span is given (a null pointer); a zero-length span is not empty.
  CONTRASTIVE_HOST_DEVICE constexpr bool empty() const noexcept { return data == nullptr; }
};

namespace detail {

/// Do two views share an element? O(1) when their bounding ranges are disjoint; for views with
/// the same strides (e.g. the top and bottom halves of one column-major matrix) an exact O(min
/// extent) test; otherwise conservatively "yes" when the bounding ranges meet.
template <class T, class U, class S1, class S2>
bool views_overlap(const matrix_view<T, S1>& x, const matrix_view<U, S2>& y) noexcept {
  if (x.empty() || y.empty()) return false;
  const auto x0 = reinterpret_cast<std::uintptr_t>(x.lowest());
  const auto x1 = reinterpret_cast<std::uintptr_t>(x.lowest() + x.required_span_size());
  const auto y0 = reinterpret_cast<std::uintptr_t>(y.lowest());
  const auto y1 = reinterpret_cast<std::uintptr_t>(y.lowest() + y.required_span_size());
  if (!(x0 < y1 && y0 < x1)) return false;
  const index_t rs = x.row_stride(), cs = x.col_stride();
  if (sizeof(T) != sizeof(U) || rs != y.row_stride() || cs != y.col_stride() || rs == 0 || cs == 0)
    return true;
  const auto xd = reinterpret_cast<std::intptr_t>(x.data());
  const auto yd = reinterpret_cast<std::intptr_t>(y.data());
  const std::intptr_t bytes = yd - xd;
  if (bytes % static_cast<std::intptr_t>(sizeof(T)) != 0) return true;
  const index_t delta = static_cast<index_t>(bytes / static_cast<std::intptr_t>(sizeof(T)));
  // Shared element <=> delta = di * rs + dj * cs with di in (-y.rows, x.rows), dj in (-y.cols, x.cols).
  const bool by_cols = x.cols() + y.cols() <= x.rows() + y.rows();
  const index_t lo = by_cols ? 1 - y.cols() : 1 - y.rows(), hi = by_cols ? x.cols() : x.rows();
  const index_t step = by_cols ? cs : rs, other = by_cols ? rs : cs;
  const index_t olo = by_cols ? 1 - y.rows() : 1 - y.cols(), ohi = by_cols ? x.rows() : x.cols();
  for (index_t k = lo; k < hi; ++k) {
    const index_t rest = delta - k * step;
    if (rest % other != 0) continue;
    const index_t q = rest / other;
    if (q >= olo && q < ohi) return true;
  }
  return false;
}

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_MATRIX_VIEW_HPP
// ---- end contrastive/core/matrix_view.hpp ----
// ---- begin contrastive/core/traits.hpp ----
#ifndef CONTRASTIVE_CORE_TRAITS_HPP
#define CONTRASTIVE_CORE_TRAITS_HPP

#include <type_traits>
#include <utility>


CONTRASTIVE_NAMESPACE_BEGIN

/// Customisation point: specialise with static `view(T&)` and `view(const T&)` returning a
/// matrix_view. The primary template is undefined, which means "not a tensor".
template <class T, class Enable = void>
struct tensor_traits;

/// Views are tensors of themselves.
template <class T, class Space>
struct tensor_traits<matrix_view<T, Space>> {
  static constexpr matrix_view<T, Space> view(const matrix_view<T, Space>& v) noexcept { return v; }
};

namespace detail {
struct as_view_fn {
  template <class T>
  constexpr auto operator()(T&& t) const
      noexcept(noexcept(tensor_traits<remove_cvref_t<T>>::view(std::forward<T>(t))))
          -> decltype(tensor_traits<remove_cvref_t<T>>::view(std::forward<T>(t))) {
    return tensor_traits<remove_cvref_t<T>>::view(std::forward<T>(t));
  }
};
}  // namespace detail

/// as_view(x): the matrix_view of any supported tensor (a function object, so it is not found
/// by ADL and cannot be hijacked).
inline constexpr detail::as_view_fn as_view{};

/// The view type as_view gives for an expression of type T (T may be a reference type).
template <class T>
using view_t = decltype(as_view(std::declval<T>()));

template <class T, class = void>
struct is_tensor_like : std::false_type {};
template <class T>
struct is_tensor_like<T, std::void_t<decltype(as_view(std::declval<const T&>()))>>
    : std::true_type {};

/// A tensor whose view (from the expression type T, e.g. `M&` or a Map temporary) is writable.
template <class T, class = void>
struct is_writable_tensor : std::false_type {};
template <class T>
struct is_writable_tensor<T, std::void_t<decltype(as_view(std::declval<T>()))>>
    : std::bool_constant<!std::is_const<typename view_t<T>::element_type>::value> {};

/// Element type of a tensor (without const).
template <class T>
using tensor_value_t =
    typename decltype(as_view(std::declval<const remove_cvref_t<T>&>()))::value_type;

namespace detail {

/// The element-type check of a public function: every view in Views (as returned by as_view,
/// input_view or output_view) has element type T. A compile-time check only.
template <class T, class... Views>
constexpr void require_same_value_type() noexcept {
  static_assert((std::is_same<T, typename Views::value_type>::value && ...),
                "contrastive: the tensor arguments (inputs, gradients, noise, saved state) must "
                "share one element type");
}

}  // namespace detail

#if CONTRASTIVE_HAS_CONCEPTS
template <class T>
concept tensor_like = is_tensor_like<remove_cvref_t<T>>::value;
template <class T>
concept writable_tensor = is_writable_tensor<T>::value;
#endif

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_TRAITS_HPP
// ---- end contrastive/core/traits.hpp ----
// ---- begin contrastive/core/math.hpp ----
#ifndef CONTRASTIVE_CORE_MATH_HPP
#define CONTRASTIVE_CORE_MATH_HPP

#include <math.h>

#include <cstdint>
#include <limits>


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
// ---- end contrastive/core/math.hpp ----
// ---- begin contrastive/core/workspace.hpp ----
#ifndef CONTRASTIVE_CORE_WORKSPACE_HPP
#define CONTRASTIVE_CORE_WORKSPACE_HPP

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>


CONTRASTIVE_NAMESPACE_BEGIN

/// Caller-provided scratch memory. An empty workspace means "allocate once inside the call".
struct workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

namespace detail {

constexpr std::size_t workspace_alignment = 64;

constexpr std::size_t align_up(std::size_t n) noexcept {
  return (n + workspace_alignment - 1) / workspace_alignment * workspace_alignment;
}

/// No query reports more than 2^60 bytes (an exbibyte; 2^28 on a 32-bit size_t): a shape that
/// needs more is rejected, and the sums of a few dozen arrays below this bound cannot wrap.
constexpr std::size_t max_workspace_bytes = std::size_t(1) << (sizeof(std::size_t) >= 8 ? 60 : 28);

[[noreturn]] inline void workspace_too_large(std::size_t a, std::size_t b) {
  CONTRASTIVE_CHECK(false, "contrastive: the problem is too large: its scratch memory would pass ",
                    "the 2^60 bytes a workspace may have (a product of ", a, " x ", b, ")");
  std::abort();  // not reached: the check throws, or the violation handler does not return
}

/// a * b for element counts and byte sizes, rejecting products past max_workspace_bytes.
inline std::size_t checked_product(std::size_t a, std::size_t b) {
  if (b != 0 && a > max_workspace_bytes / b) workspace_too_large(a, b);
  return a * b;
}

/// Size arithmetic shared by the workspace queries and the carving below: one aligned array.
/// Throws invalid_argument when the array would pass max_workspace_bytes (never wraps).
template <class T>
std::size_t array_bytes(std::size_t count) {
  return align_up(checked_product(count, sizeof(T)));
}

/// Carves aligned arrays out of a workspace, or out of one owned allocation when the caller
/// passed none. Arrays are uninitialised.
class arena {
 public:
  arena(workspace ws, std::size_t required, const char* fn) {
    if (ws.data == nullptr && ws.bytes == 0) {
      owned_.reset(new std::byte[required + workspace_alignment]);
      base_ = owned_.get();
      size_ = required + workspace_alignment;
    } else {
      CONTRASTIVE_CHECK(ws.data != nullptr, fn, ": workspace has ", ws.bytes,
                        " bytes but a null data pointer");
      CONTRASTIVE_CHECK(ws.bytes >= required + workspace_alignment, fn, ": workspace has ",
                        ws.bytes, " bytes, the call needs ", required + workspace_alignment,
                        " (use the matching *_workspace_bytes query)");
      base_ = static_cast<std::byte*>(ws.data);
      size_ = ws.bytes;
    }
    // Align the start; the query reserves one alignment unit for this.
    const auto addr = reinterpret_cast<std::uintptr_t>(base_);
    offset_ = (workspace_alignment - addr % workspace_alignment) % workspace_alignment;
  }

  template <class T>
  T* take(std::size_t count) {
    const std::size_t bytes = array_bytes<T>(count);
    // Always on (one comparison per array): a size query that disagrees with the carving would
    // otherwise write past the caller's buffer.
    CONTRASTIVE_CHECK(offset_ + bytes <= size_,
                      "contrastive: internal error: workspace layout "
                      "needs more than the ",
                      size_, " bytes its size query reported");
    T* p = reinterpret_cast<T*>(base_ + offset_);
    offset_ += bytes;
    return p;
  }

 private:
  std::unique_ptr<std::byte[]> owned_;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t offset_ = 0;
};

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_WORKSPACE_HPP
// ---- end contrastive/core/workspace.hpp ----
// ---- begin contrastive/core/l2_normalize.hpp ----
#ifndef CONTRASTIVE_CORE_L2_NORMALIZE_HPP
#define CONTRASTIVE_CORE_L2_NORMALIZE_HPP

// Row-wise L2 normalisation, kept apart from the losses (which use their inputs as given):
//   forward  y_i = x_i / max(||x_i||, eps)
//   backward dL/dx_i = (g_i - y_i <y_i, g_i>) / ||x_i||   when ||x_i|| > eps, else g_i / eps.

#include <cmath>
#include <utility>

// ---- begin contrastive/core/loss_common.hpp ----
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

// ---- begin contrastive/core/checks.hpp ----
#ifndef CONTRASTIVE_CORE_CHECKS_HPP
#define CONTRASTIVE_CORE_CHECKS_HPP

// The argument checks that read no element: extents, null pointers, shapes, strides, aliasing,
// scalar options and spans. One home for the CPU losses (through core/loss_common.hpp, which adds
// the scans that read elements) and the CUDA functions (through cuda/detail/checks.cuh, which adds
// the device-side scans): the same messages on both paths, naming the function, the argument and
// the bad value. Host-only, Eigen-free; views of either memory space (only their extents, strides
// and addresses are read). The `*_ok` predicates are the noexcept forms for the `_async` entry
// points.

#include <cmath>
#include <cstdint>

// ---- begin contrastive/core/loss_types.hpp ----
#ifndef CONTRASTIVE_CORE_LOSS_TYPES_HPP
#define CONTRASTIVE_CORE_LOSS_TYPES_HPP

// Option and result types shared by the losses, free of Eigen so that the CUDA path (nvcc) can
// use them too.

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>


CONTRASTIVE_NAMESPACE_BEGIN

/// How per-anchor losses are combined: the mean over valid anchors (those with a positive), or
/// their sum.
enum class loss_reduction { mean, sum };

/// Tile sizes and thread count, embedded the same way in every loss's options (each options
/// struct derives from it). A loss that has no use for one of them says so on its options.
struct tiling_options {
  index_t tile_rows = 256;  // rows per tile (> 0)
  index_t tile_cols = 256;  // columns per tile (> 0)
  int num_threads = 0;      // 0: all OpenMP threads (1 without OpenMP); results do not depend on it
  // The GPU's throwing calls scan their device inputs first (one pass: NaN / Inf, and zero-norm
  // rows where the CPU rejects them) for the CPU's messages; false skips that pass for trusted
  // inputs. The CPU path always scans.
  bool scan_inputs = true;
};

/// Gradient of a loss with respect to its temperature, in the three usual parameterisations:
/// theta = log(1/tau) (CLIP's learnable logit scale), tau itself and lambda = 1/tau.
struct temperature_gradient {
  double log_scale = 0;    // dL/dtheta
  double temperature = 0;  // dL/dtau = -dL/dtheta / tau
  double scale = 0;        // dL/dlambda = tau dL/dtheta

  static temperature_gradient from_log_scale(double dtheta, double tau) noexcept {
    return temperature_gradient{dtheta, -dtheta / tau, dtheta * tau};
  }
};

namespace detail {
/// Hook of the generic front-end functions for device views (memory-space tag device_memory):
/// cuda/<loss>.cuh specialises it for its loss tag; without that header it is unavailable and
/// the front-end says which header to include.
template <class LossTag, class View>
struct device_backend {
  static constexpr bool available = false;
};
struct info_nce_tag {};
struct nt_xent_tag {};
struct gamma_nce_tag {};
struct feature_uniformity_tag {};
struct feature_separation_tag {};
struct feature_orthogonality_tag {};
struct in_modal_contrastive_tag {};
struct geometric_consistency_tag {};
struct brownian_bridge_loss_tag {};
struct bridge_sampler_tag {};
struct gamma_sampler_tag {};

/// Does A view device memory? Then the generic entry points hand it to the CUDA path.
template <class A, bool = is_tensor_like<A>::value>
struct is_device_input : std::false_type {};
template <class A>
struct is_device_input<A, true>
    : std::is_same<typename decltype(as_view(std::declval<const A&>()))::memory_space,
                   device_memory> {};

/// The CUDA implementation of loss Tag for A's element type, with a clear error when its header
/// was not included.
template <class Tag, class A>
struct device_backend_of {
  using type = device_backend<
      Tag, std::remove_const_t<typename decltype(as_view(std::declval<const A&>()))::value_type>>;
  static_assert(type::available,
                "contrastive: device views need the CUDA header of the loss or sampler called, "
                "#include <contrastive/cuda/NAME.cuh> with NAME one of info_nce, nt_xent, "
                "gamma_nce, feature_separation, geometric_consistency, brownian_bridge, gamma, in "
                "a file compiled by nvcc");
};

/// Does the writable O view device memory? (fill_gamma's output.)
template <class O, class = void>
struct is_device_output : std::false_type {};
template <class O>
struct is_device_output<O, std::void_t<decltype(as_view(std::declval<O>()))>>
    : std::is_same<typename decltype(as_view(std::declval<O>()))::memory_space, device_memory> {};
}  // namespace detail

namespace cuda {
// What the CUDA forwards return (cuda/info_nce.cuh, nt_xent.cuh, gamma_nce.cuh,
// feature_separation.cuh, geometric_consistency.cuh, brownian_bridge.cuh) and the device state;
// declared here so that the generic functions have overloads for them.
struct info_nce_device_saved;
struct nt_xent_device_saved;
struct gamma_nce_device_saved;
class device_normalizer_state;
struct feature_uniformity_device_saved;
struct feature_separation_device_saved;
struct feature_orthogonality_device_saved;
struct in_modal_contrastive_device_saved;
template <class T>
struct geometric_consistency_device_saved;
struct brownian_bridge_loss_device_saved;
}  // namespace cuda

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_LOSS_TYPES_HPP
// ---- end contrastive/core/loss_types.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

// ---- noexcept predicates ----

/// Extents >= 0 and a non-null pointer unless empty (the condition of check_matrix).
template <class T, class S>
bool matrix_ok(const matrix_view<T, S>& v) noexcept {
  return v.rows() >= 0 && v.cols() >= 0 && (v.empty() || v.data() != nullptr);
}

/// No two elements of an output share memory (the condition of check_writable_layout).
template <class T, class S>
bool writable_ok(const matrix_view<T, S>& v) noexcept {
  const index_t rs = v.row_stride() < 0 ? -v.row_stride() : v.row_stride();
  const index_t cs = v.col_stride() < 0 ? -v.col_stride() : v.col_stride();
  const bool row_major_ok = (v.cols() <= 1 || cs >= 1) && (v.rows() <= 1 || rs >= v.cols() * cs);
  const bool col_major_ok = (v.rows() <= 1 || rs >= 1) && (v.cols() <= 1 || cs >= v.rows() * rs);
  return v.empty() || row_major_ok || col_major_ok;
}

// ---- scalar options ----

inline void check_temperature(const char* fn, double tau) {
  CONTRASTIVE_CHECK(std::isfinite(tau) && tau > 0, fn,
                    ": 'temperature' must be finite and > 0, got ", tau);
}

inline void check_smoothing(const char* fn, double eps) {
  CONTRASTIVE_CHECK(std::isfinite(eps) && eps >= 0 && eps < 1, fn,
                    ": 'label_smoothing' must lie in [0, 1), got ", eps);
}

inline void check_reduction(const char* fn, loss_reduction r) {
  CONTRASTIVE_CHECK(r == loss_reduction::mean || r == loss_reduction::sum, fn,
                    ": 'reduction' has an invalid value (", static_cast<int>(r), ")");
}

/// The upstream gradient of a backward is finite.
inline void check_upstream(const char* fn, double upstream) {
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
}

inline void check_tiles(const char* fn, index_t tile_rows, index_t tile_cols) {
  CONTRASTIVE_CHECK(tile_rows > 0 && tile_cols > 0, fn, ": tile sizes must be > 0, got ", tile_rows,
                    " x ", tile_cols);
}

/// The loss of a sweep is finite (it is the same value on every rank of a distributed call, so
/// every rank throws or none does).
/// The loss of a regulariser is finite (its products overflow otherwise).
inline void check_loss_finite(const char* fn, double loss) {
  CONTRASTIVE_CHECK(std::isfinite(loss), fn,
                    ": the loss overflows (it is not finite); scale the inputs down or normalise "
                    "them");
}

inline void check_loss_finite(const char* fn, double loss, double temperature) {
  CONTRASTIVE_CHECK(std::isfinite(loss), fn,
                    ": the logits overflow (loss is not finite) at temperature ", temperature,
                    "; scale the inputs down or normalise them");
}

// ---- views ----

template <class T, class S>
void check_matrix(const char* fn, const char* name, const matrix_view<T, S>& v) {
  CONTRASTIVE_CHECK(v.rows() >= 0 && v.cols() >= 0, fn, ": '", name, "' has a negative extent (",
                    v.rows(), " x ", v.cols(), ")");
  CONTRASTIVE_CHECK(v.empty() || v.data() != nullptr, fn, ": '", name,
                    "' is a null pointer with shape ", v.rows(), " x ", v.cols());
}

template <class T, class S>
void check_shape(const char* fn, const char* name, const matrix_view<T, S>& v, index_t rows,
                 index_t cols, const char* expected_what) {
  CONTRASTIVE_CHECK(v.rows() == rows && v.cols() == cols, fn, ": '", name, "' is ", v.rows(), " x ",
                    v.cols(), ", expected ", rows, " x ", cols, " (", expected_what, ")");
}

/// 'b' has the rows and columns of 'a'.
template <class T, class U, class S>
void check_same_shape(const char* fn, const matrix_view<T, S>& a, const matrix_view<U, S>& b) {
  CONTRASTIVE_CHECK(b.rows() == a.rows(), fn, ": 'b' has ", b.rows(), " rows, expected ", a.rows(),
                    " (rows of 'a')");
  CONTRASTIVE_CHECK(b.cols() == a.cols(), fn, ": 'b' has ", b.cols(), " columns, expected ",
                    a.cols(), " (columns of 'a')");
}

/// The shapes of a pair of inputs 'a', 'b' (two towers, a bridge's endpoints, the two spaces of
/// geometric consistency): 'a' is N x D with N > 0 and D > 0, 'b' has its shape.
template <class T, class U, class S>
void check_pair_shape(const char* fn, const matrix_view<T, S>& a, const matrix_view<U, S>& b) {
  CONTRASTIVE_CHECK(a.rows() > 0, fn, ": empty batch ('a' has 0 rows)");
  CONTRASTIVE_CHECK(a.cols() > 0, fn, ": 'a' has 0 columns (D must be > 0)");
  check_same_shape(fn, a, b);
}

/// Outputs must not share memory with inputs or with each other.
template <class T, class U, class S1, class S2>
void check_no_alias(const char* fn, const char* out_name, const matrix_view<T, S1>& out,
                    const char* in_name, const matrix_view<U, S2>& in) {
  CONTRASTIVE_CHECK(!views_overlap(out, in), fn, ": output '", out_name,
                    "' overlaps the memory of '", in_name, "'");
}

/// An output whose rows or columns overlap each other (e.g. stride 0) cannot be written.
template <class T, class S>
void check_writable_layout(const char* fn, const char* name, const matrix_view<T, S>& v) {
  CONTRASTIVE_CHECK(writable_ok(v), fn, ": output '", name, "' has self-overlapping strides (",
                    v.row_stride(), ", ", v.col_stride(), ")");
}

/// The checks on the gradient outputs of a two-tower backward: a finite upstream, shapes,
/// writable strides, and no memory shared with the inputs or with each other. Views of either
/// memory space (the CUDA path calls it too).
template <class T, class S>
void check_pair_gradients(const char* fn, const matrix_view<const T, S>& a,
                          const matrix_view<const T, S>& b, const matrix_view<T, S>& ga,
                          const matrix_view<T, S>& gb, double upstream) {
  check_upstream(fn, upstream);
  check_matrix(fn, "grad_a", ga);
  check_matrix(fn, "grad_b", gb);
  check_shape(fn, "grad_a", ga, a.rows(), a.cols(), "the shape of 'a'");
  check_shape(fn, "grad_b", gb, b.rows(), b.cols(), "the shape of 'b'");
  check_writable_layout(fn, "grad_a", ga);
  check_writable_layout(fn, "grad_b", gb);
  check_no_alias(fn, "grad_a", ga, "a", a);
  check_no_alias(fn, "grad_a", ga, "b", b);
  check_no_alias(fn, "grad_b", gb, "a", a);
  check_no_alias(fn, "grad_b", gb, "b", b);
  check_no_alias(fn, "grad_a", ga, "grad_b", gb);
}

// ---- spans ----

/// Per-row labels: one per row, contiguous.
inline void check_labels(const char* fn, const char* name, const vector_view<const std::int64_t>& l,
                         index_t n) {
  CONTRASTIVE_CHECK(l.size == n, fn, ": '", name, "' has ", l.size, " labels, expected ", n,
                    " (one per row)");
  CONTRASTIVE_CHECK(l.stride == 1, fn, ": '", name, "' must be contiguous (stride 1), got stride ",
                    l.stride);
}

/// Two-tower labels (InfoNCE's labels_a / labels_b) come both or neither.
inline void check_label_pair(const char* fn, const vector_view<const std::int64_t>& la,
                             const vector_view<const std::int64_t>& lb) {
  CONTRASTIVE_CHECK(la.empty() == lb.empty(), fn,
                    ": give both 'labels_a' and 'labels_b' or neither");
}

/// One sample id, found at position/row `index` (`where`: "position" or "row"), is >= 0.
inline void check_id_nonnegative(const char* fn, std::int64_t id, const char* where,
                                 index_t index) {
  CONTRASTIVE_CHECK(id >= 0, fn, ": 'ids' has a negative id (", id, ") at ", where, " ", index);
}

/// One input value found by a scan (the CPU's check_finite, the GPU's device scan) is finite;
/// else the error names the input, the value and its position.
template <class T>
void check_value_finite(const char* fn, const char* name, T value, index_t row, index_t col) {
  CONTRASTIVE_CHECK(std::isfinite(value), fn, ": '", name, "' has a non-finite value (", value,
                    ") at row ", row, ", column ", col);
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_CHECKS_HPP
// ---- end contrastive/core/checks.hpp ----
// ---- begin contrastive/core/gemm.hpp ----
#ifndef CONTRASTIVE_CORE_GEMM_HPP
#define CONTRASTIVE_CORE_GEMM_HPP

// Host-only tile products through Eigen's GEMM (the only <Eigen/Core> in core/). Whatever the
// caller's tensor type, tiles reach Eigen as Maps with a compile-time unit inner stride, which is
// what Eigen's fast path needs; other layouts are packed by the caller first.

#include <Eigen/Core>


CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

template <class T>
using row_major_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using row_map = Eigen::Map<row_major_matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using const_row_map = Eigen::Map<const row_major_matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// A row-major (col_stride == 1) view as an Eigen map.
template <class T>
const_row_map<T> map_rows(const matrix_view<const T>& v) {
  CONTRASTIVE_ASSERT(v.col_stride() == 1 || v.cols() <= 1);
  const index_t outer = v.rows() <= 1 ? v.cols() : v.row_stride();
  return const_row_map<T>(v.data(), v.rows(), v.cols(), Eigen::OuterStride<>(outer));
}
template <class T>
row_map<T> map_rows_mut(const matrix_view<T>& v) {
  CONTRASTIVE_ASSERT(v.col_stride() == 1 || v.cols() <= 1);
  const index_t outer = v.rows() <= 1 ? v.cols() : v.row_stride();
  return row_map<T>(v.data(), v.rows(), v.cols(), Eigen::OuterStride<>(outer));
}

/// Elements rounded up to whole 64-byte lines, so that consecutive buffers stay aligned (Eigen's
/// micro-kernels load packed blocks with aligned loads).
template <class T>
constexpr std::size_t whole_lines(std::size_t elements) noexcept {
  return (elements * sizeof(T) + 63) / 64 * 64 / sizeof(T);
}

/// Eigen's packing buffers for one product shape, carved by the caller (so that workspace
/// queries count them) instead of allocated and freed on every call as the expression API does,
/// which costs a page fault per 4 KiB on every tile.
template <class T>
class tile_blocking : public Eigen::internal::level3_blocking<T, T> {
 public:
  /// Eigen's blocking sizes (kc, mc, nc) for a column-major rows x cols result of this depth.
  static void sizes(index_t rows, index_t cols, index_t depth, index_t& kc, index_t& mc,
                    index_t& nc) {
    kc = depth;
    mc = rows;
    nc = cols;
    Eigen::internal::computeProductBlockingSizes<T, T, 1>(kc, mc, nc, index_t(1));
  }
  /// Elements of packed A plus packed B (each starting on a 64-byte line).
  static std::size_t elements(index_t rows, index_t cols, index_t depth) {
    index_t kc, mc, nc;
    sizes(rows, cols, depth, kc, mc, nc);
    return whole_lines<T>(static_cast<std::size_t>(kc * mc)) +
           whole_lines<T>(static_cast<std::size_t>(kc * nc));
  }
  tile_blocking() = default;
  /// `buffer`: elements(rows, cols, depth) values, 64-byte aligned.
  tile_blocking(index_t rows, index_t cols, index_t depth, T* buffer) {
    sizes(rows, cols, depth, this->m_kc, this->m_mc, this->m_nc);
    this->m_blockA = buffer;
    this->m_blockB = buffer + whole_lines<T>(static_cast<std::size_t>(this->m_kc * this->m_mc));
  }
};

/// The three tile products of the pairwise sweeps, on row-major operands, through Eigen's GEMM
/// kernel (each is the column-major product C^T = ... of the row-major one):
///   abt:     C (m x n)  = alpha A (m x k) B (n x k)^T
///   ab_add:  C (m x n) += alpha A (m x k) B (k x n)
///   atb_add: C (m x n) += alpha A (k x m)^T B (k x n)
/// Leading dimensions are row strides in elements.
template <class T>
class tile_gemm {
  template <int LhsOrder, int RhsOrder>
  using kernel =
      Eigen::internal::general_matrix_matrix_product<index_t, T, LhsOrder, false, T, RhsOrder,
                                                     false, Eigen::ColMajor, 1>;

 public:
  /// Buffer elements for tiles of at most tr x tc logits and embedding dimension d.
  static std::size_t elements(index_t tr, index_t tc, index_t d) {
    return tile_blocking<T>::elements(tc, tr, d) + tile_blocking<T>::elements(d, tr, tc) +
           tile_blocking<T>::elements(d, tc, tr);
  }
  tile_gemm() = default;
  /// `buffer` holds elements(tr, tc, d) values, 64-byte aligned.
  tile_gemm(index_t tr, index_t tc, index_t d, T* buffer) {
    abt_ = tile_blocking<T>(tc, tr, d, buffer);
    buffer += tile_blocking<T>::elements(tc, tr, d);
    ab_ = tile_blocking<T>(d, tr, tc, buffer);
    buffer += tile_blocking<T>::elements(d, tr, tc);
    atb_ = tile_blocking<T>(d, tc, tr, buffer);
  }

  void abt(index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda, const T* b,
           index_t ldb, T* c, index_t ldc) {
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) c[i * ldc + j] = T(0);
    if (k == 0) return;
    // C^T (n x m) = B (n x k, row-major) * A^T (k x m, column-major view of row-major A).
    kernel<Eigen::RowMajor, Eigen::ColMajor>::run(n, m, k, b, ldb, a, lda, c, 1, ldc, alpha, abt_);
  }
  void ab_add(index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda, const T* b,
              index_t ldb, T* c, index_t ldc) {
    if (k == 0) return;
    // C^T (n x m) += B^T (n x k) * A^T (k x m), both column-major views of row-major data.
    kernel<Eigen::ColMajor, Eigen::ColMajor>::run(n, m, k, b, ldb, a, lda, c, 1, ldc, alpha, ab_);
  }
  void atb_add(index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda, const T* b,
               index_t ldb, T* c, index_t ldc) {
    if (k == 0) return;
    // C^T (n x m) += B^T (n x k, column-major view) * A (k x m, row-major).
    kernel<Eigen::ColMajor, Eigen::RowMajor>::run(n, m, k, b, ldb, a, lda, c, 1, ldc, alpha, atb_);
  }

 private:
  tile_blocking<T> abt_, ab_, atb_;
};

/// Leading dimension of a gemm_ready view.
template <class T, class S>
index_t leading_dim(const matrix_view<T, S>& v) noexcept {
  return v.rows() <= 1 ? (v.cols() > 0 ? v.cols() : 1) : v.row_stride();
}

/// Can this view go to Eigen without packing? (row-major with a non-negative row stride)
template <class T, class S>
bool gemm_ready(const matrix_view<T, S>& v) noexcept {
  return (v.col_stride() == 1 || v.cols() <= 1) && (v.row_stride() >= v.cols() || v.rows() <= 1);
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_GEMM_HPP
// ---- end contrastive/core/gemm.hpp ----

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
// ---- end contrastive/core/loss_common.hpp ----

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
// ---- end contrastive/core/l2_normalize.hpp ----
// ---- begin contrastive/adapters/raw.hpp ----
#ifndef CONTRASTIVE_ADAPTERS_RAW_HPP
#define CONTRASTIVE_ADAPTERS_RAW_HPP


#if __cplusplus >= 202002L && __has_include(<span>)
#  include <span>
#endif

CONTRASTIVE_NAMESPACE_BEGIN

/// A row-major, contiguous rows x cols view of raw memory.
template <class T>
constexpr matrix_view<T> make_view(T* data, index_t rows, index_t cols) noexcept {
  return matrix_view<T>(data, rows, cols, cols, 1);
}

/// A view with explicit strides, in elements (row_stride between rows, col_stride between columns).
template <class T>
constexpr matrix_view<T> make_view(T* data, index_t rows, index_t cols, index_t row_stride,
                                   index_t col_stride) noexcept {
  return matrix_view<T>(data, rows, cols, row_stride, col_stride);
}

/// A view of device memory (for the CUDA specialisations); made explicitly, never guessed.
template <class T>
constexpr matrix_view<T, device_memory> make_device_view(T* data, index_t rows,
                                                         index_t cols) noexcept {
  return matrix_view<T, device_memory>(data, rows, cols, cols, 1);
}

/// A device view with explicit strides, in elements.
template <class T>
constexpr matrix_view<T, device_memory> make_device_view(T* data, index_t rows, index_t cols,
                                                         index_t row_stride,
                                                         index_t col_stride) noexcept {
  return matrix_view<T, device_memory>(data, rows, cols, row_stride, col_stride);
}

#if defined(__cpp_lib_span) && __cpp_lib_span >= 202002L
/// Row-major view of a std::span; the span must hold exactly rows * cols elements.
template <class T, std::size_t Extent>
matrix_view<T> make_view(std::span<T, Extent> s, index_t rows, index_t cols) {
  CONTRASTIVE_CHECK(rows >= 0 && cols >= 0 && static_cast<std::size_t>(rows * cols) == s.size(),
                    "make_view: span of ", s.size(), " elements cannot be viewed as ", rows, " x ",
                    cols);
  return matrix_view<T>(s.data(), rows, cols, cols, 1);
}
#endif

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_ADAPTERS_RAW_HPP
// ---- end contrastive/adapters/raw.hpp ----
// ---- begin contrastive/adapters/eigen.hpp ----
#ifndef CONTRASTIVE_ADAPTERS_EIGEN_HPP
#define CONTRASTIVE_ADAPTERS_EIGEN_HPP

#include <type_traits>
#include <utility>

#include <Eigen/Core>


CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

// Derived-to-base deduction rather than is_base_of<DenseBase<M>, M>: some Eigen classes inherit
// the CRTP base of another (VectorBlock, what head/tail/segment return, derives from
// DenseBase<Block<...>>), as do user classes derived from Eigen::Matrix.
template <class D>
std::true_type eigen_dense_test(const Eigen::DenseBase<D>*);
std::false_type eigen_dense_test(...);
template <class D>
std::true_type eigen_plain_test(const Eigen::PlainObjectBase<D>*);
std::false_type eigen_plain_test(...);

// Two steps, because `M::Flags` is a hard error for non-Eigen types (traits do not short-circuit).
template <class M>
struct is_eigen_dense : decltype(eigen_dense_test(std::declval<M*>())) {};

template <class M, bool = is_eigen_dense<M>::value>
struct is_eigen_direct : std::false_type {};
template <class M>
struct is_eigen_direct<M, true>
    : std::bool_constant<(static_cast<unsigned>(M::Flags) & Eigen::DirectAccessBit) != 0> {};

// Matrix and Array own their storage; Map, Ref and Block do not.
template <class M>
struct eigen_owns_storage : decltype(eigen_plain_test(std::declval<M*>())) {};

}  // namespace detail

/// Eigen dense expressions with direct access: Matrix, Array, Map, Ref, Block (any storage order).
template <class M>
struct tensor_traits<M, std::enable_if_t<detail::is_eigen_direct<M>::value>> {
  template <class Obj>
  static auto make(Obj& m) noexcept {
    using E = std::remove_pointer_t<decltype(m.data())>;
    return matrix_view<E>(m.data(), static_cast<index_t>(m.rows()), static_cast<index_t>(m.cols()),
                          static_cast<index_t>(m.rowStride()), static_cast<index_t>(m.colStride()));
  }
  static auto view(M& m) noexcept { return make(m); }
  static auto view(const M& m) noexcept { return make(m); }
  /// Map / Block / Ref temporaries view memory that outlives them: allowed (and writable).
  template <class U = M, std::enable_if_t<!detail::eigen_owns_storage<U>::value, int> = 0>
  static auto view(M&& m) noexcept {
    return make(m);
  }
  /// An owning temporary (e.g. `Eigen::MatrixXf{}` as an output) would dangle: rejected.
  template <class U = M, std::enable_if_t<detail::eigen_owns_storage<U>::value, int> = 0>
  static void view(M&& m) = delete;
};

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_ADAPTERS_EIGEN_HPP
// ---- end contrastive/adapters/eigen.hpp ----
// ---- begin contrastive/losses/info_nce.hpp ----
#ifndef CONTRASTIVE_LOSSES_INFO_NCE_HPP
#define CONTRASTIVE_LOSSES_INFO_NCE_HPP

// InfoNCE (one direction, a -> b) and the symmetric CLIP loss, with multiple positives by label
// id and label smoothing. Logits s_ij = <a_i, b_j> / temperature are streamed in tiles: the
// forward keeps only per-row and per-column log-sum-exp statistics, the backward recomputes
// the tiles. Math and gradients: docs/info_nce.md; the sweep: docs/tiled_sweep.md.

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

// ---- begin contrastive/core/tiling.hpp ----
#ifndef CONTRASTIVE_CORE_TILING_HPP
#define CONTRASTIVE_CORE_TILING_HPP

// The row-tile x column-tile sweep shared by the pairwise losses. S = scale * X Y^T is never
// stored whole: each Tr x Tc tile is computed, folded into O(N) statistics and dropped
// (forward), or recomputed and turned into gradient products (backward).
//
// X and Y are "virtual" matrices made of row segments (InfoNCE: X = A, Y = B; NT-Xent: X = Y =
// [A; B], which is `self` mode: the diagonal is masked and only tiles J >= I are visited, each
// serving the rows of I through its rows and the rows of J through its columns).
//
// Threads (OpenMP, when the target is built with it): row blocks I are visited in order; the
// column blocks of one row block are cut into `sweep_chunks` fixed chunks that run in parallel.
// Column statistics and dY_J have one writer per I and are merged in I order; row statistics and
// dX_I get one partial per chunk, merged in chunk order. Chunks do not depend on the thread
// count, so results are bitwise identical for any number of threads.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include <Eigen/Core>

// ---- begin contrastive/core/parallel.hpp ----
#ifndef CONTRASTIVE_CORE_PARALLEL_HPP
#define CONTRASTIVE_CORE_PARALLEL_HPP

// The one home of the library's CPU threading (OpenMP when the target is built with it, serial
// otherwise): how many threads a call gets and the loop that runs on them. Results never depend
// on the thread count: every caller splits its work into pieces fixed by the problem, not by the
// team, and merges them in a fixed order. Eigen-free.

#if defined(_OPENMP)
#  include <omp.h>
#endif


CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

/// Work (multiply-adds, roughly) below which a loop runs on one thread: starting a team costs
/// more than it saves there (the results are the same either way).
constexpr double parallel_min_work = double(1 << 20);

/// Threads for a parallel loop: `requested` if > 0, else all OpenMP threads; always 1 without
/// OpenMP.
inline int resolve_threads(int requested) noexcept {
#if defined(_OPENMP)
  const int avail = omp_get_max_threads();
  return requested > 0 ? requested : (avail > 0 ? avail : 1);
#else
  (void)requested;
  return 1;
#endif
}

/// resolve_threads for a loop of about `work` multiply-adds: 1 below parallel_min_work.
inline int resolve_threads(int requested, double work) noexcept {
  return work < parallel_min_work ? 1 : resolve_threads(requested);
}

/// body(i, thread) for i in [0, count), on up to `threads` OpenMP threads (dynamic schedule);
/// `thread` in [0, threads) indexes per-thread scratch. The body must not throw; each i must
/// write disjoint memory. Inside, Eigen's GEMM is kept single-threaded (also for one thread),
/// so every product is computed the same way whatever the thread count.
template <class F>
void parallel_for(index_t count, int threads, F&& body) {
#if defined(_OPENMP)
  const int nt =
      threads < 1 ? 1 : (count < index_t(threads) ? (count > 0 ? int(count) : 1) : threads);
#  pragma omp parallel num_threads(nt)
  {
    omp_set_num_threads(1);
    const int tid = omp_get_thread_num();
#  pragma omp for schedule(dynamic, 1)
    for (index_t i = 0; i < count; ++i) body(i, tid);
  }
#else
  (void)threads;
  for (index_t i = 0; i < count; ++i) body(i, 0);
#endif
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_PARALLEL_HPP
// ---- end contrastive/core/parallel.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

/// One tile-sized block of rows of a virtual matrix.
struct row_block {
  int segment;     // which segment it lies in
  index_t first;   // first row inside that segment
  index_t rows;    // number of rows
  index_t global;  // index of its first row in the virtual matrix
};

/// Cuts segments of the given row counts into blocks of at most `tile` rows (never straddling).
inline std::vector<row_block> make_blocks(const index_t* segment_rows, int segments, index_t tile) {
  std::vector<row_block> blocks;
  index_t global = 0;
  for (int s = 0; s < segments; ++s) {
    for (index_t r = 0; r < segment_rows[s]; r += tile) {
      const index_t n = segment_rows[s] - r < tile ? segment_rows[s] - r : tile;
      blocks.push_back(row_block{s, r, n, global + r});
    }
    global += segment_rows[s];
  }
  return blocks;
}

template <class T>
struct pairwise_problem {
  const matrix_view<const T>* x = nullptr;  // segments of X, each gemm_ready
  int x_segments = 0;
  const matrix_view<const T>* y = nullptr;  // segments of Y (== x in self mode)
  int y_segments = 0;
  bool self = false;
  // Exclude s_ii (global row == global column) from every statistic and gradient. Implied by
  // `self`; on its own it gives negatives-only normalisers for two-tower losses.
  bool mask_diagonal = false;
  // Also exclude each row's partner: in self mode over [A; B] with partner_offset = N, global row
  // g < N loses column g + N and row g >= N loses column g - N (the other view of the same
  // sample). Used by the losses whose denominators hold negatives only (DCL, debiased NT-Xent).
  index_t partner_offset = 0;
  T scale = 1;  // lambda = 1 / temperature
  // Extra statistics at scaled logits: besides the row/column softmax of s, the forward can keep
  // the online softmax of gamma_k s (k < extra_scales, gamma_k > 0; moments stay in units of s)
  // and the backward add w_k exp(gamma_k s - lse_k) terms (the hard-negative loss).
  int extra_scales = 0;
  T gamma[2] = {T(1), T(1)};
  index_t tile_rows = 256, tile_cols = 256;
  int threads = 1;  // resolved thread count (see resolve_threads in core/parallel.hpp)
  // Optional logit cache (cached mode): one slot of tile_shape() per visited tile, written by
  // the forward and read by the backward instead of recomputing the tile.
  T* cache = nullptr;
  // Optional labels per virtual row: s_ij is a positive when label_x[i] == label_y[j] (i != j
  // in self mode). Without labels the targets are handled outside the sweep in O(N D).
  const std::int64_t* label_x = nullptr;
  const std::int64_t* label_y = nullptr;
  // With labels: leave the label-matched entries out of the forward's softmax statistics
  // (negatives-only normalisers, the pair convention of supcon.hpp). The forward sets them to
  // -inf in its tile, so not with `cache`.
  bool exclude_label_matches = false;

  index_t x_rows() const noexcept { return total(x, x_segments); }
  index_t y_rows() const noexcept { return total(y, y_segments); }
  index_t dim() const noexcept { return x_segments > 0 ? x[0].cols() : 0; }

 private:
  static index_t total(const matrix_view<const T>* s, int k) noexcept {
    index_t n = 0;
    for (int i = 0; i < k; ++i) n += s[i].rows();
    return n;
  }
};

/// The setup every loss's sweep shares: X and Y as segments, the scale 1/temperature, the tiles
/// and the resolved thread count of the loss's tiling_options. The caller adds what is its own
/// (self mode, the diagonal mask, labels, the logit cache).
template <class T>
pairwise_problem<T> make_pairwise_problem(const matrix_view<const T>* x, int x_segments,
                                          const matrix_view<const T>* y, int y_segments,
                                          double temperature, const tiling_options& o) {
  pairwise_problem<T> p;
  p.x = x;
  p.x_segments = x_segments;
  p.y = y;
  p.y_segments = y_segments;
  p.scale = static_cast<T>(1.0 / temperature);
  p.tile_rows = o.tile_rows;
  p.tile_cols = o.tile_cols;
  p.threads = resolve_threads(o.num_threads);
  return p;
}

/// Row blocks of X and of Y. In self mode one blocking serves both sides (square tiles of
/// min(tile_rows, tile_cols)), so that diagonal tiles are exactly the pairs I == J.
template <class T>
std::pair<std::vector<row_block>, std::vector<row_block>> make_tiling(
    const pairwise_problem<T>& p) {
  std::vector<index_t> xr(uz(p.x_segments)), yr(uz(p.y_segments));
  for (std::size_t s = 0; s < xr.size(); ++s) xr[s] = p.x[s].rows();
  for (std::size_t s = 0; s < yr.size(); ++s) yr[s] = p.y[s].rows();
  if (p.self) {
    const index_t t = p.tile_rows < p.tile_cols ? p.tile_rows : p.tile_cols;
    auto b = make_blocks(xr.data(), p.x_segments, t);
    return {b, b};
  }
  return {make_blocks(xr.data(), p.x_segments, p.tile_rows),
          make_blocks(yr.data(), p.y_segments, p.tile_cols)};
}

/// The largest tile a sweep visits, given the largest segment of X and of Y.
inline std::pair<index_t, index_t> tile_shape(index_t tile_rows, index_t tile_cols, bool self,
                                              index_t max_x_segment,
                                              index_t max_y_segment) noexcept {
  auto lo = [](index_t a, index_t b) { return a < b ? a : b; };
  if (self) {
    const index_t t = lo(lo(tile_rows, tile_cols), max_x_segment);
    return {t, t};
  }
  return {lo(tile_rows, max_x_segment), lo(tile_cols, max_y_segment)};
}

template <class T>
std::pair<index_t, index_t> tile_shape(const pairwise_problem<T>& p) noexcept {
  index_t mx = 0, my = 0;
  for (int s = 0; s < p.x_segments; ++s) mx = p.x[s].rows() > mx ? p.x[s].rows() : mx;
  for (int s = 0; s < p.y_segments; ++s) my = p.y[s].rows() > my ? p.y[s].rows() : my;
  return tile_shape(p.tile_rows, p.tile_cols, p.self, mx, my);
}

/// Fixed number of column chunks per row block (independent of the thread count).
constexpr int sweep_chunks = 8;

/// Everything the scratch size of a sweep depends on.
struct sweep_shape {
  index_t tr = 0, tc = 0;  // largest tile
  index_t d = 0;
  int threads = 1;
};

/// The sweep shape of a loss's tiling_options for segments of at most the given rows.
inline sweep_shape make_sweep_shape(const tiling_options& o, bool self, index_t max_x_segment,
                                    index_t max_y_segment, index_t d) noexcept {
  const auto t = tile_shape(o.tile_rows, o.tile_cols, self, max_x_segment, max_y_segment);
  return sweep_shape{t.first, t.second, d, resolve_threads(o.num_threads)};
}

/// Per-thread scratch: one logit tile, four tile-length vectors and the GEMM packing buffers.
template <class T>
std::size_t thread_scratch_bytes(const sweep_shape& s) {
  return array_bytes<T>(
             checked_product(static_cast<std::size_t>(s.tr), static_cast<std::size_t>(s.tc))) +
         4 * array_bytes<T>(static_cast<std::size_t>(s.tc)) +
         array_bytes<T>(tile_gemm<T>::elements(s.tr, s.tc, s.d));
}

/// Forward scratch; `extra_scales` adds the chunk partials of the scaled-logit statistics.
template <class T>
std::size_t pairwise_forward_bytes(const sweep_shape& s, int extra_scales = 0) {
  const auto tr = static_cast<std::size_t>(s.tr);
  return checked_product(static_cast<std::size_t>(s.threads), thread_scratch_bytes<T>(s)) +
         sweep_chunks * (array_bytes<online_softmax<double>>(tr) + array_bytes<double>(tr)) +
         static_cast<std::size_t>(extra_scales) *
             array_bytes<online_softmax<double>>(sweep_chunks * tr);
}

template <class T>
std::size_t pairwise_backward_bytes(const sweep_shape& s) {
  return checked_product(static_cast<std::size_t>(s.threads), thread_scratch_bytes<T>(s)) +
         sweep_chunks * array_bytes<T>(checked_product(static_cast<std::size_t>(s.tr),
                                                       static_cast<std::size_t>(s.d)));
}

template <class T>
sweep_shape sweep_shape_of(const pairwise_problem<T>& p) noexcept {
  const auto t = tile_shape(p);
  return sweep_shape{t.first, t.second, p.dim(), p.threads < 1 ? 1 : p.threads};
}

/// Number of tiles a sweep visits (the slots of the logit cache).
inline std::size_t tile_count(index_t nx_blocks, index_t ny_blocks, bool self) noexcept {
  const auto a = static_cast<std::size_t>(nx_blocks), b = static_cast<std::size_t>(ny_blocks);
  return self ? a * (a + 1) / 2 : a * b;
}

/// Cache elements for an n_x x n_y problem of single segments (self: one segment of n_x rows
/// split in two equal halves is bounded by the same count).
inline std::size_t cache_elements(index_t tile_rows, index_t tile_cols, bool self, index_t nx,
                                  index_t ny, index_t max_x_segment, index_t max_y_segment) {
  const auto t = tile_shape(tile_rows, tile_cols, self, max_x_segment, max_y_segment);
  if (t.first <= 0 || t.second <= 0) return 0;  // no rows, or tile sizes the call will reject
  auto blocks = [](index_t n, index_t seg, index_t tile) {
    // Blocks never straddle segments: ceil per segment; equal segments of `seg` rows.
    const index_t segs = seg > 0 ? (n + seg - 1) / seg : 0;
    return segs * ((seg + tile - 1) / tile);
  };
  const index_t bx = blocks(nx, max_x_segment, t.first);
  const index_t by = self ? bx : blocks(ny, max_y_segment, t.second);
  return checked_product(
      tile_count(bx, by, self),
      checked_product(static_cast<std::size_t>(t.first), static_cast<std::size_t>(t.second)));
}

template <class T>
using tile_map = Eigen::Map<row_major_matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using tile_vec = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>, Eigen::Aligned16>;

template <class T>
struct thread_scratch {
  T* tile;
  T* v[4];
  tile_gemm<T> gemm;
};

template <class T>
std::vector<thread_scratch<T>> carve_thread_scratch(arena& ar, const sweep_shape& s) {
  std::vector<thread_scratch<T>> out(static_cast<std::size_t>(s.threads));
  for (auto& t : out) {
    t.tile = ar.take<T>(static_cast<std::size_t>(s.tr * s.tc));
    for (auto& v : t.v) v = ar.take<T>(static_cast<std::size_t>(s.tc));
    t.gemm = tile_gemm<T>(s.tr, s.tc, s.d, ar.take<T>(tile_gemm<T>::elements(s.tr, s.tc, s.d)));
  }
  return out;
}

/// One band of masked entries of a tile: local (r, r + offset) for r in [first, last).
struct mask_band {
  index_t first = 0, last = 0, offset = 0;
  /// Masked column of local row r, or -1.
  index_t col(index_t r) const noexcept { return r >= first && r < last ? r + offset : -1; }
};

/// The masked entries of tile (I, J): the diagonal band and up to two partner bands. A row meets
/// at most one partner band, and partner columns never fall on the diagonal.
struct tile_mask {
  mask_band band[3];
  int bands = 0;
  index_t first = 0, last = 0;  // hull of the rows of all bands
  /// The first masked column of local row r, or -1.
  index_t col(index_t r) const noexcept {
    for (int k = 0; k < bands; ++k)
      if (band[k].col(r) >= 0) return band[k].col(r);
    return -1;
  }
  /// Is local entry (r, c) masked?
  bool masked(index_t r, index_t c) const noexcept {
    for (int k = 0; k < bands; ++k)
      if (band[k].col(r) == c) return true;
    return false;
  }
  /// Zeroes the masked entries of row r in e (indexed by column); true when there were any.
  template <class V>
  bool zero_row(index_t r, V& e) const noexcept {
    bool any = false;
    for (int k = 0; k < bands; ++k) {
      const index_t c = band[k].col(r);
      if (c >= 0) {
        e(c) = 0;
        any = true;
      }
    }
    return any;
  }
  /// Applies f(r, c) to every masked entry.
  template <class F>
  void for_each(F&& f) const {
    for (int k = 0; k < bands; ++k)
      for (index_t r = band[k].first; r < band[k].last; ++r) f(r, r + band[k].offset);
  }
};

namespace tiling_detail {
/// Adds the band of global entries (g, g + shift) for g in [row_lo, row_hi) that falls in (I, J).
inline void add_band(tile_mask& m, const row_block& I, const row_block& J, index_t shift,
                     index_t row_lo, index_t row_hi) noexcept {
  // Rows g with g in I, g + shift in J and g in [row_lo, row_hi).
  auto mx = [](index_t a, index_t b) { return a > b ? a : b; };
  auto mn = [](index_t a, index_t b) { return a < b ? a : b; };
  const index_t lo = mx(mx(I.global, J.global - shift), row_lo);
  const index_t hi = mn(mn(I.global + I.rows, J.global + J.rows - shift), row_hi);
  if (hi <= lo) return;
  mask_band& b = m.band[m.bands];
  b.first = lo - I.global;
  b.last = hi - I.global;
  b.offset = I.global + shift - J.global;
  if (m.bands == 0 || b.first < m.first) m.first = b.first;
  if (m.bands == 0 || b.last > m.last) m.last = b.last;
  ++m.bands;
}
}  // namespace tiling_detail

template <class T>
tile_mask diagonal_mask(const pairwise_problem<T>& p, const row_block& I,
                        const row_block& J) noexcept {
  tile_mask m;
  constexpr index_t any = std::numeric_limits<index_t>::max();
  // Global row g is masked in column g: local row r = g - I.global, column g - J.global.
  if (p.self || p.mask_diagonal) tiling_detail::add_band(m, I, J, 0, -any, any);
  if (p.partner_offset > 0) {
    const index_t off = p.partner_offset;
    tiling_detail::add_band(m, I, J, off, 0, off);
    tiling_detail::add_band(m, I, J, -off, off, 2 * off);
  }
  return m;
}

/// S_IJ = scale X_I Y_J^T into `s`, with masked entries set to -inf.
template <class T>
void compute_logits(const pairwise_problem<T>& p, const row_block& bi, const row_block& bj,
                    const tile_mask& mask, tile_gemm<T>& gemm, tile_map<T>& s) {
  const matrix_view<const T> xi = p.x[bi.segment].middle_rows(bi.first, bi.rows);
  const matrix_view<const T> yj = p.y[bj.segment].middle_rows(bj.first, bj.rows);
  gemm.abt(bi.rows, bj.rows, p.dim(), p.scale, xi.data(), leading_dim(xi), yj.data(),
           leading_dim(yj), s.data(), s.outerStride());
  mask.for_each([&](index_t r, index_t c) { s(r, c) = -infinity<T>(); });
}

/// The visiting order: row blocks in order; for each, its column blocks [lo, hi) cut into
/// sweep_chunks contiguous chunks.
struct sweep_plan {
  std::vector<row_block> xb, yb;
  bool self = false;
  std::size_t first_col(std::size_t bi) const noexcept { return self ? bi : 0; }
  std::size_t chunk_begin(std::size_t bi, int c) const noexcept {
    const std::size_t lo = first_col(bi), n = yb.size() - lo;
    return lo + n * static_cast<std::size_t>(c) / sweep_chunks;
  }
  /// Cache slot of tile (bi, bj).
  std::size_t slot(std::size_t bi, std::size_t bj) const noexcept {
    const std::size_t ny = yb.size();
    return self ? bi * ny - bi * (bi - 1) / 2 + (bj - bi) : bi * ny + bj;
  }
};

template <class T>
sweep_plan make_plan(const pairwise_problem<T>& p) {
  auto b = make_tiling(p);
  sweep_plan plan;
  plan.xb = std::move(b.first);
  plan.yb = std::move(b.second);
  plan.self = p.self;
  return plan;
}

/// Threads worth starting for this sweep (core/parallel.hpp: one thread below parallel_min_work
/// multiply-adds; results are the same for any count, so this is only about speed).
template <class T>
int sweep_threads(const pairwise_problem<T>& p) noexcept {
  const double work = double(p.x_rows()) * double(p.y_rows()) * double(p.dim());
  return work < parallel_min_work ? 1 : p.threads;
}

/// Output of the forward sweep. `row`/`col` may be null (direction not needed); in self mode
/// they are the same array. `row_target`/`col_target` receive the label-matched logit sums.
template <class T>
struct pairwise_stats {
  online_softmax<double>* row = nullptr;
  online_softmax<double>* col = nullptr;
  double* row_target = nullptr;
  double* col_target = nullptr;
  // With p.extra_scales: the statistics of gamma_k s per row and per column (null: not needed;
  // in self mode the same arrays). Their max is in units of gamma_k s, their moment in units of s.
  online_softmax<double>* row_scaled[2] = {nullptr, nullptr};
  online_softmax<double>* col_scaled[2] = {nullptr, nullptr};
};

/// Folds one logit tile into statistics: rows into row_part (this chunk's partial for block I),
/// columns straight into out.col (one writer per column block and row block).
template <class T>
void forward_tile(const pairwise_problem<T>& p, const pairwise_stats<T>& out, const row_block& I,
                  const row_block& J, const tile_mask& mask, bool diag, const tile_map<T>& s,
                  const thread_scratch<T>& ws, online_softmax<double>* row_part,
                  double* row_target_part, online_softmax<double>* const* row_scaled_part) {
  constexpr T lowest = std::numeric_limits<T>::lowest();
  tile_vec<T> e(ws.v[0], J.rows);
  if (out.row) {
    for (index_t r = 0; r < I.rows; ++r) {
      const auto sr = s.row(r).array();
      const T m = sr.maxCoeff();
      if (m == -infinity<T>()) continue;  // a 1-column tile whose entry is masked
      e = (sr - m).exp();
      // Eigen's vectorised exp clamps its argument, so exp(-inf) is tiny, not 0: zero the
      // masked entries explicitly, and clamp their -inf so that 0 * s stays 0.
      bool masked = mask.zero_row(r, e);
      if (p.exclude_label_matches) {
        e = (sr == -infinity<T>()).select(T(0), e);
        masked = true;
      }
      const T mom = masked ? (e * sr.max(lowest)).sum() : (e * sr).sum();
      online_softmax<double> t;
      t.max = m;
      t.sum = e.sum();
      t.moment = mom;
      row_part[r].merge(t);
    }
  }
  for (int k = 0; k < p.extra_scales; ++k) {
    if (!out.row_scaled[k]) continue;
    const T gk = p.gamma[k];
    for (index_t r = 0; r < I.rows; ++r) {
      const auto sr = s.row(r).array();
      const T m = sr.maxCoeff();
      if (m == -infinity<T>()) continue;
      e = (gk * sr - gk * m).exp();
      mask.zero_row(r, e);
      online_softmax<double> t;
      t.max = gk * m;
      t.sum = e.sum();
      t.moment = (e * sr.max(lowest)).sum();
      row_scaled_part[k][r].merge(t);
    }
  }
  if (out.col && !diag) {
    tile_vec<T> cmax(ws.v[1], J.rows), csum(ws.v[2], J.rows), cmom(ws.v[3], J.rows);
    cmax = s.row(0).array();
    for (index_t r = 1; r < I.rows; ++r) cmax = cmax.max(s.row(r).array());
    csum.setZero();
    cmom.setZero();
    for (index_t r = 0; r < I.rows; ++r) {
      const auto sr = s.row(r).array();
      e = (sr - cmax).exp();
      if (p.exclude_label_matches) e = (sr == -infinity<T>()).select(T(0), e);
      if (mask.zero_row(r, e) || p.exclude_label_matches) {
        csum += e;
        cmom += e * sr.max(lowest);
      } else {
        csum += e;
        cmom += e * sr;
      }
    }
    for (index_t c = 0; c < J.rows; ++c) {
      if (cmax(c) == -infinity<T>()) continue;  // a 1-row tile whose entries are masked
      online_softmax<double> t;
      t.max = cmax(c);
      t.sum = csum(c);
      t.moment = cmom(c);
      out.col[J.global + c].merge(t);
    }
  }
  for (int k = 0; k < p.extra_scales; ++k) {
    if (!out.col_scaled[k] || diag) continue;
    const T gk = p.gamma[k];
    tile_vec<T> cmax(ws.v[1], J.rows), csum(ws.v[2], J.rows), cmom(ws.v[3], J.rows);
    cmax = s.row(0).array();
    for (index_t r = 1; r < I.rows; ++r) cmax = cmax.max(s.row(r).array());
    csum.setZero();
    cmom.setZero();
    for (index_t r = 0; r < I.rows; ++r) {
      const auto sr = s.row(r).array();
      e = (gk * sr - gk * cmax).exp();
      mask.zero_row(r, e);
      csum += e;
      cmom += e * sr.max(lowest);
    }
    for (index_t c = 0; c < J.rows; ++c) {
      if (cmax(c) == -infinity<T>()) continue;
      online_softmax<double> t;
      t.max = gk * cmax(c);
      t.sum = csum(c);
      t.moment = cmom(c);
      out.col_scaled[k][J.global + c].merge(t);
    }
  }
  if (p.label_x && (out.row_target || out.col_target)) {
    for (index_t r = 0; r < I.rows; ++r) {
      const std::int64_t li = p.label_x[I.global + r];
      for (index_t c = 0; c < J.rows; ++c) {
        if (p.label_y[J.global + c] != li || mask.masked(r, c)) continue;
        if (out.row_target) row_target_part[r] += s(r, c);
        if (out.col_target && !diag) out.col_target[J.global + c] += s(r, c);
      }
    }
  }
}

/// Sets the label-matched entries of a tile to -inf (p.exclude_label_matches).
template <class T>
void mask_label_matches(const pairwise_problem<T>& p, const row_block& I, const row_block& J,
                        tile_map<T>& s) {
  for (index_t r = 0; r < I.rows; ++r) {
    const std::int64_t li = p.label_x[I.global + r];
    for (index_t c = 0; c < J.rows; ++c)
      if (p.label_y[J.global + c] == li) s(r, c) = -infinity<T>();
  }
}

template <class T>
void pairwise_forward(const pairwise_problem<T>& p, const pairwise_stats<T>& out, arena& ar) {
  if (p.x_rows() == 0 || p.y_rows() == 0) return;
  const sweep_plan plan = make_plan(p);
  const sweep_shape shape = sweep_shape_of(p);
  auto scratch = carve_thread_scratch<T>(ar, shape);
  auto* row_part =
      ar.take<online_softmax<double>>(sweep_chunks * static_cast<std::size_t>(shape.tr));
  auto* target_part = ar.take<double>(sweep_chunks * static_cast<std::size_t>(shape.tr));
  online_softmax<double>* scaled_part[2] = {nullptr, nullptr};
  for (int k = 0; k < p.extra_scales; ++k)
    scaled_part[k] =
        ar.take<online_softmax<double>>(sweep_chunks * static_cast<std::size_t>(shape.tr));
  const std::size_t slot_elems = static_cast<std::size_t>(shape.tr * shape.tc);
  const int threads = sweep_threads(p);

  for (std::size_t bi = 0; bi < plan.xb.size(); ++bi) {
    const row_block& I = plan.xb[bi];
    parallel_for(sweep_chunks, threads, [&](index_t ci, int t) {
      const int c = static_cast<int>(ci);
      online_softmax<double>* rp = row_part + uz(c * shape.tr);
      double* tp = target_part + uz(c * shape.tr);
      online_softmax<double>* sp[2] = {nullptr, nullptr};
      for (int k = 0; k < p.extra_scales; ++k) sp[k] = scaled_part[k] + uz(c * shape.tr);
      for (index_t r = 0; r < I.rows; ++r) {
        rp[r] = online_softmax<double>();
        tp[r] = 0;
        for (int k = 0; k < p.extra_scales; ++k) sp[k][r] = online_softmax<double>();
      }
      for (std::size_t bj = plan.chunk_begin(bi, c); bj < plan.chunk_begin(bi, c + 1); ++bj) {
        const row_block& J = plan.yb[bj];
        const tile_mask mask = diagonal_mask(p, I, J);
        T* buf = p.cache ? p.cache + plan.slot(bi, bj) * slot_elems : scratch[uz(t)].tile;
        tile_map<T> s(buf, I.rows, J.rows, Eigen::OuterStride<>(shape.tc));
        compute_logits(p, I, J, mask, scratch[uz(t)].gemm, s);
        if (p.exclude_label_matches) mask_label_matches(p, I, J, s);
        forward_tile(p, out, I, J, mask, p.self && bi == bj, s, scratch[uz(t)], rp, tp, sp);
      }
    });
    for (int c = 0; c < sweep_chunks; ++c) {  // fixed merge order
      if (plan.chunk_begin(bi, c) == plan.chunk_begin(bi, c + 1)) continue;
      for (index_t r = 0; r < I.rows; ++r) {
        if (out.row) out.row[I.global + r].merge(row_part[uz(c * shape.tr + r)]);
        if (out.row_target) out.row_target[I.global + r] += target_part[uz(c * shape.tr + r)];
        for (int k = 0; k < p.extra_scales; ++k)
          if (out.row_scaled[k])
            out.row_scaled[k][I.global + r].merge(scaled_part[k][uz(c * shape.tr + r)]);
      }
    }
  }
}

/// Per-anchor coefficients of the backward sweep, all of length rows(X) (row_*) or rows(Y)
/// (col_*); a null row_w/col_w drops that direction. The logit gradient of a tile is
///   G_ij = row_w_i exp(s_ij - row_lse_i) + col_w_j exp(s_ij - col_lse_j)
///          - [label_i == label_j] (row_q_i + col_q_j)
/// which already folds in the mean/sum weights, the 1/2 of the symmetric loss and the upstream.
template <class T>
struct pairwise_coefficients {
  const T* row_lse = nullptr;
  const T* row_w = nullptr;
  const T* col_lse = nullptr;
  const T* col_w = nullptr;
  const T* row_q = nullptr;  // label targets only (with labels)
  const T* col_q = nullptr;
  // With p.extra_scales == 2 and no plain term (row_w and col_w null) the logit gradient is
  // sum_k row_scaled_w_k,i exp(gamma_k s_ij - row_scaled_lse_k,i) + the same per column (null:
  // that term is absent).
  const T* row_scaled_w[2] = {nullptr, nullptr};
  const T* row_scaled_lse[2] = {nullptr, nullptr};
  const T* col_scaled_w[2] = {nullptr, nullptr};
  const T* col_scaled_lse[2] = {nullptr, nullptr};
};

/// The scaled terms of one gradient row (p.extra_scales == 2, no plain row/column term):
///   sum_k row_scaled_w_k,i exp(gamma_k s_ij - row_scaled_lse_k,i) + the same per column,
/// written in one expression, so that `gr` may be the memory of `sr`.
template <class T, class SR, class GR>
void scaled_gradient_row(const pairwise_problem<T>& p, const pairwise_coefficients<T>& k,
                         const row_block& I, const row_block& J, index_t r, const SR& sr, GR& gr) {
  using cvec = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;
  if (p.extra_scales != 2) {
    gr.setZero();
    return;
  }
  const T g0 = p.gamma[0], g1 = p.gamma[1];
  const index_t i = I.global + r;
  const T w0 = k.row_scaled_w[0] ? k.row_scaled_w[0][i] : T(0);
  const T w1 = k.row_scaled_w[1] ? k.row_scaled_w[1][i] : T(0);
  const T l0 = k.row_scaled_w[0] ? k.row_scaled_lse[0][i] : T(0);
  const T l1 = k.row_scaled_w[1] ? k.row_scaled_lse[1][i] : T(0);
  if (k.col_scaled_w[0] && k.col_scaled_w[1]) {
    const cvec wc0(k.col_scaled_w[0] + J.global, J.rows),
        lc0(k.col_scaled_lse[0] + J.global, J.rows);
    const cvec wc1(k.col_scaled_w[1] + J.global, J.rows),
        lc1(k.col_scaled_lse[1] + J.global, J.rows);
    gr = w0 * (g0 * sr - l0).exp() + w1 * (g1 * sr - l1).exp() + wc0 * (g0 * sr - lc0).exp() +
         wc1 * (g1 * sr - lc1).exp();
  } else {
    gr = w0 * (g0 * sr - l0).exp() + w1 * (g1 * sr - l1).exp();
  }
}

/// G for one tile, from the logits `s` into `g` (which may be the same memory).
template <class T>
void gradient_tile(const pairwise_problem<T>& p, const pairwise_coefficients<T>& k,
                   const row_block& I, const row_block& J, const tile_mask& mask,
                   const tile_map<T>& s, tile_map<T>& g) {
  using cvec = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;
  const bool has_row = k.row_w != nullptr, has_col = k.col_w != nullptr;
  for (index_t r = 0; r < I.rows; ++r) {
    const auto sr = s.row(r).array();
    auto gr = g.row(r).array();
    const T wr = has_row ? k.row_w[I.global + r] : T(0);
    const T lr = has_row ? k.row_lse[I.global + r] : T(0);
    if (has_col) {
      const cvec wc(k.col_w + J.global, J.rows), lc(k.col_lse + J.global, J.rows);
      if (has_row)
        gr = wr * (sr - lr).exp() + wc * (sr - lc).exp();
      else
        gr = wc * (sr - lc).exp();
    } else if (has_row) {
      gr = wr * (sr - lr).exp();
    } else {
      scaled_gradient_row(p, k, I, J, r, sr, gr);  // g may alias s: one expression per row
    }
  }
  // exp(-inf) is not exactly 0 in Eigen's exp.
  mask.for_each([&](index_t r, index_t c) { g(r, c) = 0; });
  if (p.label_x) {
    for (index_t r = 0; r < I.rows; ++r) {
      const std::int64_t li = p.label_x[I.global + r];
      const T qr = k.row_q ? k.row_q[I.global + r] : T(0);
      for (index_t c = 0; c < J.rows; ++c) {
        if (p.label_y[J.global + c] != li || mask.masked(r, c)) continue;
        g(r, c) -= qr + (k.col_q ? k.col_q[J.global + c] : T(0));
      }
    }
  }
}

/// The backward sweep with any gradient kernel: for every visited tile (the logits recomputed, or
/// read from p.cache) kernel(I, J, mask, s, g, chunk) writes the logit gradient G_IJ into g (which
/// is the memory of s when not cached; the kernel must read s[r, c] before writing g[r, c]);
/// `chunk` in [0, sweep_chunks) is the column chunk, owned by one thread at a time and visited in
/// the same order for any thread count, so per-chunk accumulators are deterministic. Then adds
/// scale * G Y into the segments of dX and scale * G^T X into those of dY (in self mode dY == dX
/// and G is symmetrised on the fly); with dx null no product is formed (a forward that only
/// folds tiles), and a dY segment with a null data pointer (or dy null) gets no product (an input
/// that is not differentiated, e.g. a queue of negatives). The outputs must be gemm_ready.
template <class T, class Kernel>
void pairwise_sweep_tiles(const pairwise_problem<T>& p, Kernel&& kernel, const matrix_view<T>* dx,
                          const matrix_view<T>* dy, arena& ar) {
  if (p.x_rows() == 0 || p.y_rows() == 0) return;
  const sweep_plan plan = make_plan(p);
  const sweep_shape shape = sweep_shape_of(p);
  auto scratch = carve_thread_scratch<T>(ar, shape);
  T* dx_part = ar.take<T>(sweep_chunks * static_cast<std::size_t>(shape.tr * shape.d));
  const std::size_t slot_elems = static_cast<std::size_t>(shape.tr * shape.tc);
  const index_t d = shape.d;
  const int threads = sweep_threads(p);
  const bool products = dx != nullptr;

  for (std::size_t bi = 0; bi < plan.xb.size(); ++bi) {
    const row_block& I = plan.xb[bi];
    const matrix_view<const T> xi = p.x[I.segment].middle_rows(I.first, I.rows);
    parallel_for(sweep_chunks, threads, [&](index_t ci, int t) {
      const int c = static_cast<int>(ci);
      if (plan.chunk_begin(bi, c) == plan.chunk_begin(bi, c + 1)) return;
      T* part = dx_part + uz(c * shape.tr * d);
      if (products) std::fill(part, part + I.rows * d, T(0));
      tile_gemm<T>& gemm = scratch[uz(t)].gemm;
      for (std::size_t bj = plan.chunk_begin(bi, c); bj < plan.chunk_begin(bi, c + 1); ++bj) {
        const row_block& J = plan.yb[bj];
        const bool diag = p.self && bi == bj;
        const tile_mask mask = diagonal_mask(p, I, J);
        tile_map<T> g(scratch[uz(t)].tile, I.rows, J.rows, Eigen::OuterStride<>(shape.tc));
        if (p.cache) {
          const tile_map<T> s(p.cache + plan.slot(bi, bj) * slot_elems, I.rows, J.rows,
                              Eigen::OuterStride<>(shape.tc));
          kernel(I, J, mask, s, g, c);
        } else {
          compute_logits(p, I, J, mask, gemm, g);
          kernel(I, J, mask, g, g, c);  // in place: coefficient-wise
        }
        if (!products) continue;
        const matrix_view<const T> yj = p.y[J.segment].middle_rows(J.first, J.rows);
        gemm.ab_add(I.rows, d, J.rows, p.scale, g.data(), g.outerStride(), yj.data(),
                    leading_dim(yj), part, d);
        if (!diag && dy != nullptr && dy[J.segment].data() != nullptr) {  // null: no dY
          const matrix_view<T> dyj = dy[J.segment].middle_rows(J.first, J.rows);
          gemm.atb_add(J.rows, d, I.rows, p.scale, g.data(), g.outerStride(), xi.data(),
                       leading_dim(xi), dyj.data(), leading_dim(dyj));
        }
      }
    });
    if (!products) continue;
    auto dxi = map_rows_mut<T>(dx[I.segment].middle_rows(I.first, I.rows));
    for (int c = 0; c < sweep_chunks; ++c) {  // fixed reduction order
      if (plan.chunk_begin(bi, c) == plan.chunk_begin(bi, c + 1)) continue;
      dxi += row_map<T>(dx_part + uz(c * shape.tr * d), I.rows, d, Eigen::OuterStride<>(d));
    }
  }
}

/// Adds scale * G Y into the segments of dX and scale * G^T X into those of dY (in self mode
/// dY == dX and G is symmetrised on the fly), G from the softmax coefficients k (gradient_tile).
/// The outputs must be gemm_ready. With p.cache set, the tiles written by pairwise_forward are
/// read instead of recomputed.
template <class T>
void pairwise_backward(const pairwise_problem<T>& p, const pairwise_coefficients<T>& k,
                       const matrix_view<T>* dx, const matrix_view<T>* dy, arena& ar) {
  pairwise_sweep_tiles(
      p,
      [&](const row_block& I, const row_block& J, const tile_mask& mask, const tile_map<T>& s,
          tile_map<T>& g, int) { gradient_tile(p, k, I, J, mask, s, g); },
      dx, dy, ar);
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_TILING_HPP
// ---- end contrastive/core/tiling.hpp ----
// ---- begin contrastive/losses/debiased_negatives.hpp ----
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
// ---- end contrastive/losses/debiased_negatives.hpp ----
// ---- begin contrastive/losses/info_nce_options.hpp ----
#ifndef CONTRASTIVE_LOSSES_INFO_NCE_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_INFO_NCE_OPTIONS_HPP

// The options of info_nce.hpp, apart so that the CUDA path (cuda/info_nce.cuh, nvcc) takes the same
// struct without Eigen.


CONTRASTIVE_NAMESPACE_BEGIN

/// Options of InfoNCE / CLIP; tile_rows, tile_cols and num_threads come from tiling_options.
struct info_nce_options : tiling_options {
  double temperature = 0.07;   // tau > 0; logits are <a_i, b_j> / tau
  bool symmetric = true;       // true: CLIP, the mean of the a->b and b->a losses
  double label_smoothing = 0;  // eps in [0, 1)
  // Multiple positives (SupCon style): b_j is a positive of a_i when labels_b[j] == labels_a[i].
  // Give both or neither; without labels the positive of a_i is b_i.
  vector_view<const std::int64_t> labels_a{};
  vector_view<const std::int64_t> labels_b{};
  loss_reduction reduction = loss_reduction::mean;
  bool accumulate = false;  // backward adds into the gradients instead of overwriting them
  // Cached mode: the forward keeps every logit tile in the caller's workspace (sized by the
  // workspace query with this option set, about N^2 elements) and a backward given the same
  // workspace reads them instead of recomputing. forward_backward allocates it when no
  // workspace is given. Inputs must not change between the two calls.
  bool cache_logits = false;
  // Debiased negatives (Chuang et al. 2020): the class prior tau+ in [0, 1); 0 is off.
  // Hard negatives (Robinson et al. 2021): the concentration beta >= 0; 0 is off. Either one
  // selects l_i = log(e^{s_p} + Ng) - s_p over the negatives only, Ng clamped below at
  // M e^{-1/tau} (docs/debiased.md); one positive per anchor (no labels, no smoothing).
  double debias_tau_plus = 0;
  double hard_negative_beta = 0;
};

/// What the backward returns besides the input gradients: upstream * dL/dtemperature.
using info_nce_parameter_gradients = temperature_gradient;

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_INFO_NCE_OPTIONS_HPP
// ---- end contrastive/losses/info_nce_options.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

/// What the forward keeps for the backward: O(N) statistics, never an N x N matrix.
template <class T>
struct info_nce_saved {
  T loss = 0;
  double grad_log_scale = 0;           // dL/dtheta, theta = log(1/tau), at upstream 1
  std::vector<T> row_lse;              // LSE_j s_ij (a -> b)
  std::vector<T> col_lse;              // LSE_i s_ij (b -> a); empty unless symmetric
  std::vector<index_t> row_positives;  // |P_i| with labels (else empty)
  std::vector<index_t> col_positives;
  index_t n = 0, d = 0;
  // The options the statistics belong to; backward checks them.
  double temperature = 0;
  double label_smoothing = 0;
  bool symmetric = true;
  bool labelled = false;
  loss_reduction reduction = loss_reduction::mean;
  const void* logit_cache = nullptr;  // the workspace holding the cached tiles (cached mode)
  double debias_tau_plus = 0;         // the debiased / hard-negative options of the forward
  double hard_negative_beta = 0;
  negative_weighting_saved<T> row_weighting;  // with debias_tau_plus or hard_negative_beta
  negative_weighting_saved<T> col_weighting;  // (the column direction, when symmetric)

  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

constexpr const char* info_nce_fwd_name = "info_nce_forward";
constexpr const char* info_nce_bwd_name = "info_nce_backward";

template <class T>
void info_nce_check_inputs(const char* fn, const matrix_view<const T>& a,
                           const matrix_view<const T>& b, const info_nce_options& o) {
  check_smoothing(fn, o.label_smoothing);
  check_reduction(fn, o.reduction);
  CONTRASTIVE_CHECK(o.labels_a.empty() == o.labels_b.empty(), fn,
                    ": give both 'labels_a' and 'labels_b' or neither");
  check_negative_weighting(fn, o.debias_tau_plus, o.hard_negative_beta, !o.labels_a.empty(),
                           o.label_smoothing, a.rows() - 1);
  check_pair_inputs(fn, a, b, o.temperature, o.tile_rows, o.tile_cols);
  if (!o.labels_a.empty()) {
    check_labels(fn, "labels_a", o.labels_a, a.rows());
    check_labels(fn, "labels_b", o.labels_b, b.rows());
  }
}

/// Carves (or, with size_counter, sizes) the forward's scratch in one fixed order.
template <class T, class Alloc>
struct info_nce_forward_buffers {
  online_softmax<double>* row = nullptr;
  online_softmax<double>* col = nullptr;
  double* row_target = nullptr;
  double* col_target = nullptr;
  std::int64_t* sort_scratch = nullptr;
  online_softmax<double>* row_scaled[2] = {nullptr, nullptr};  // hard negatives
  online_softmax<double>* col_scaled[2] = {nullptr, nullptr};

  info_nce_forward_buffers(Alloc& al, index_t n, bool symmetric, bool labelled, bool hard = false) {
    row = al.template take<online_softmax<double>>(static_cast<std::size_t>(n));
    if (symmetric) col = al.template take<online_softmax<double>>(static_cast<std::size_t>(n));
    for (int k = 0; k < 2 && hard; ++k) {
      row_scaled[k] = al.template take<online_softmax<double>>(static_cast<std::size_t>(n));
      if (symmetric)
        col_scaled[k] = al.template take<online_softmax<double>>(static_cast<std::size_t>(n));
    }
    if (labelled) {
      row_target = al.template take<double>(static_cast<std::size_t>(n));
      if (symmetric) col_target = al.template take<double>(static_cast<std::size_t>(n));
      sort_scratch = al.template take<std::int64_t>(static_cast<std::size_t>(n));
    }
  }
};

template <class T, class Alloc>
struct info_nce_backward_buffers {
  T* row_w = nullptr;
  T* row_lse = nullptr;
  T* row_q = nullptr;
  T* col_w = nullptr;
  T* col_lse = nullptr;
  T* col_q = nullptr;
  double* sums = nullptr;  // 4 D: mean a, mean b, sum_i w_r a_i, sum_j w_c b_j (smoothing)
  T* row_scaled_w[2] = {nullptr, nullptr};  // hard negatives
  T* row_scaled_lse[2] = {nullptr, nullptr};
  T* col_scaled_w[2] = {nullptr, nullptr};
  T* col_scaled_lse[2] = {nullptr, nullptr};

  info_nce_backward_buffers(Alloc& al, index_t n, index_t d, bool symmetric, bool labelled,
                            bool smoothing, bool hard = false) {
    const auto un = static_cast<std::size_t>(n);
    for (int k = 0; k < 2 && hard; ++k) {
      row_scaled_w[k] = al.template take<T>(un);
      row_scaled_lse[k] = al.template take<T>(un);
      if (symmetric) {
        col_scaled_w[k] = al.template take<T>(un);
        col_scaled_lse[k] = al.template take<T>(un);
      }
    }
    row_w = al.template take<T>(un);
    row_lse = al.template take<T>(un);
    if (labelled) row_q = al.template take<T>(un);
    if (symmetric) {
      col_w = al.template take<T>(un);
      col_lse = al.template take<T>(un);
      if (labelled) col_q = al.template take<T>(un);
    }
    if (smoothing) sums = al.template take<double>(4 * static_cast<std::size_t>(d));
  }
};

inline sweep_shape info_nce_sweep(index_t n, index_t d, const info_nce_options& o) noexcept {
  return make_sweep_shape(o, false, n, n, d);
}

template <class T>
std::size_t info_nce_cache_bytes(index_t n, const info_nce_options& o) {
  return o.cache_logits
             ? array_bytes<T>(cache_elements(o.tile_rows, o.tile_cols, false, n, n, n, n))
             : 0;
}

template <class T>
std::size_t info_nce_forward_bytes(index_t n, index_t d, const info_nce_options& o,
                                   std::size_t packing) {
  size_counter c;
  const bool hard = o.hard_negative_beta > 0;
  const info_nce_forward_buffers<T, size_counter> sized(c, n, o.symmetric, !o.labels_a.empty(),
                                                        hard);
  (void)sized;
  return info_nce_cache_bytes<T>(n, o) + c.bytes + packing +
         pairwise_forward_bytes<T>(info_nce_sweep(n, d, o), hard ? 2 : 0) + workspace_alignment;
}

template <class T>
std::size_t info_nce_backward_bytes(index_t n, index_t d, const info_nce_options& o,
                                    std::size_t packing) {
  size_counter c;
  const info_nce_backward_buffers<T, size_counter> sized(
      c, n, d, o.symmetric, !o.labels_a.empty(), o.label_smoothing > 0, o.hard_negative_beta > 0);
  (void)sized;
  return info_nce_cache_bytes<T>(n, o) + c.bytes + packing +
         pairwise_backward_bytes<T>(info_nce_sweep(n, d, o)) + workspace_alignment;
}

template <class T>
void column_mean(const matrix_view<const T>& x, std::vector<double>& out) {
  out.assign(static_cast<std::size_t>(x.cols()), 0.0);
  for (index_t i = 0; i < x.rows(); ++i)
    for (index_t k = 0; k < x.cols(); ++k) out[uz(k)] += double(x(i, k));
  for (auto& v : out) v /= double(x.rows());
}

/// Per-direction reduction: the per-anchor terms, the valid count and the reduced values.
struct direction_sums {
  double loss = 0, dtheta = 0;
  index_t valid = 0;
  double weight(loss_reduction r) const noexcept {  // w for a valid anchor
    if (valid == 0) return 0;
    return r == loss_reduction::mean ? 1.0 / double(valid) : 1.0;
  }
};

/// The sweep of one call: X = a, Y = b (one segment each), labels when given.
template <class T>
pairwise_problem<T> info_nce_problem(const matrix_view<const T>* a, const matrix_view<const T>* b,
                                     const info_nce_options& o, T* cache) {
  pairwise_problem<T> p = make_pairwise_problem(a, 1, b, 1, o.temperature, o);
  p.cache = cache;
  if (!o.labels_a.empty()) {
    p.label_x = o.labels_a.data;
    p.label_y = o.labels_b.data;
  }
  // Debiased / hard negatives: normalisers over the negatives only.
  if (negative_weighting_active(o.debias_tau_plus, o.hard_negative_beta)) p.mask_diagonal = true;
  if (o.hard_negative_beta > 0) {
    p.extra_scales = 2;
    p.gamma[0] = static_cast<T>(1 + o.hard_negative_beta);
    p.gamma[1] = static_cast<T>(o.hard_negative_beta);
  }
  return p;
}

template <class T>
info_nce_saved<T> info_nce_forward_impl(const matrix_view<const T>& a_in,
                                        const matrix_view<const T>& b_in,
                                        const info_nce_options& o_in, workspace ws) {
  const char* fn = info_nce_fwd_name;
  info_nce_check_inputs(fn, a_in, b_in, o_in);
  info_nce_options o = o_in;
  o.cache_logits = o.cache_logits && ws.data != nullptr;  // a cache must outlive the call
  const index_t n = a_in.rows(), d = a_in.cols();
  const bool sym = o.symmetric, labelled = !o.labels_a.empty();
  const double eps = o.label_smoothing;
  const double lambda_d = 1.0 / o.temperature;

  arena ar(ws,
           info_nce_forward_bytes<T>(n, d, o, packing_bytes(a_in) + packing_bytes(b_in)) -
               workspace_alignment,
           fn);
  // The cache comes first, so that the backward finds it at the same place.
  T* cache = o.cache_logits ? ar.take<T>(info_nce_cache_bytes<T>(n, o) / sizeof(T)) : nullptr;
  const bool keep_cache = cache != nullptr && ws.data != nullptr;
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  const bool weighted_neg = negative_weighting_active(o.debias_tau_plus, o.hard_negative_beta);
  const bool hard = o.hard_negative_beta > 0;
  info_nce_forward_buffers<T, arena> buf(ar, n, sym, labelled, hard);
  for (index_t i = 0; i < n; ++i) {
    buf.row[i] = online_softmax<double>();
    if (sym) buf.col[i] = online_softmax<double>();
    for (int k = 0; k < 2 && hard; ++k) {
      buf.row_scaled[k][i] = online_softmax<double>();
      if (sym) buf.col_scaled[k][i] = online_softmax<double>();
    }
    if (labelled) {
      buf.row_target[i] = 0;
      if (sym) buf.col_target[i] = 0;
    }
  }

  const pairwise_problem<T> p = info_nce_problem<T>(&a, &b, o, keep_cache ? cache : nullptr);
  pairwise_stats<T> st;
  st.row = buf.row;
  st.col = buf.col;
  st.row_target = buf.row_target;
  st.col_target = buf.col_target;
  for (int k = 0; k < 2; ++k) {
    st.row_scaled[k] = buf.row_scaled[k];
    st.col_scaled[k] = buf.col_scaled[k];
  }
  pairwise_forward(p, st, ar);

  info_nce_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.label_smoothing = eps;
  saved.symmetric = sym;
  saved.labelled = labelled;
  saved.reduction = o.reduction;
  saved.logit_cache = keep_cache ? ws.data : nullptr;
  saved.debias_tau_plus = o.debias_tau_plus;
  saved.hard_negative_beta = o.hard_negative_beta;
  if (labelled) {
    saved.row_positives.resize(static_cast<std::size_t>(n));
    count_matches(o.labels_a, o.labels_b, saved.row_positives.data(), buf.sort_scratch);
    if (sym) {
      saved.col_positives.resize(static_cast<std::size_t>(n));
      count_matches(o.labels_b, o.labels_a, saved.col_positives.data(), buf.sort_scratch);
    }
  }
  std::vector<double> mean_a, mean_b;
  if (eps > 0) {
    column_mean(b, mean_b);
    if (sym) column_mean(a, mean_a);
  }

  // One direction: anchors x (rows of the logit matrix or of its transpose), candidates y.
  auto direction = [&](const matrix_view<const T>& x, const matrix_view<const T>& y,
                       const online_softmax<double>* stats, const double* target,
                       const std::vector<index_t>& positives, const std::vector<double>& mean_y,
                       std::vector<T>& lse_out) {
    direction_sums sums;
    lse_out.resize(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) {
      const double lse = stats[i].lse();
      lse_out[uz(i)] = static_cast<T>(lse);
      if (labelled && positives[uz(i)] == 0) continue;  // no positive: excluded (l_i = 0)
      const double positive =
          labelled ? target[i] / double(positives[uz(i)]) : lambda_d * dot_rows(x, i, y, i);
      const double soft = eps > 0 ? lambda_d * dot_row_vec(x, i, mean_y.data()) : 0.0;
      const double t = (1 - eps) * positive + eps * soft;
      sums.loss += lse - t;
      sums.dtheta += stats[i].mean() - t;
      ++sums.valid;
    }
    return sums;
  };

  // Debiased / hard negatives (docs/debiased.md): the same per-anchor reduction, other terms.
  auto weighted_direction = [&](const online_softmax<double>* stats,
                                online_softmax<double>* const* scaled, std::vector<T>& lse_out,
                                negative_weighting_saved<T>& nw) {
    direction_sums sums;
    lse_out.resize(static_cast<std::size_t>(n));
    nw.negative.resize(static_cast<std::size_t>(n));
    nw.positive.resize(static_cast<std::size_t>(n));
    if (hard) {
      nw.lse_hi.resize(static_cast<std::size_t>(n));
      nw.lse_lo.resize(static_cast<std::size_t>(n));
    }
    for (index_t i = 0; i < n; ++i) {
      lse_out[uz(i)] = static_cast<T>(stats[i].lse());
      const double s_p = lambda_d * dot_rows(a, i, b, i);
      const debiased_anchor t = debiased_anchor_terms(
          s_p, stats[i], hard ? &scaled[0][i] : nullptr, hard ? &scaled[1][i] : nullptr,
          double(n - 1), lambda_d, o.debias_tau_plus, o.hard_negative_beta);
      if (hard) {
        nw.lse_hi[uz(i)] = static_cast<T>(scaled[0][i].lse());
        nw.lse_lo[uz(i)] = static_cast<T>(scaled[1][i].lse());
      }
      nw.negative[uz(i)] = static_cast<T>(t.negative);
      nw.positive[uz(i)] = static_cast<T>(t.positive);
      nw.clamped += t.clamped;
      sums.loss += t.loss;
      sums.dtheta += t.dtheta;
      ++sums.valid;
    }
    return sums;
  };

  const double c = sym ? 0.5 : 1.0;
  const direction_sums r =
      weighted_neg
          ? weighted_direction(buf.row, buf.row_scaled, saved.row_lse, saved.row_weighting)
          : direction(a, b, buf.row, buf.row_target, saved.row_positives, mean_b, saved.row_lse);
  double loss = c * r.weight(o.reduction) * r.loss;
  double dtheta = c * r.weight(o.reduction) * r.dtheta;
  if (sym) {
    const direction_sums cs =
        weighted_neg
            ? weighted_direction(buf.col, buf.col_scaled, saved.col_lse, saved.col_weighting)
            : direction(b, a, buf.col, buf.col_target, saved.col_positives, mean_a, saved.col_lse);
    loss += c * cs.weight(o.reduction) * cs.loss;
    dtheta += c * cs.weight(o.reduction) * cs.dtheta;
  }
  check_loss_finite(fn, static_cast<double>(static_cast<T>(loss)), o.temperature);  // as stored
  saved.loss = static_cast<T>(loss);
  saved.grad_log_scale = dtheta;
  return saved;
}

template <class T>
void info_nce_check_backward(const char* fn, const matrix_view<const T>& a,
                             const matrix_view<const T>& b, const info_nce_saved<T>& saved,
                             const matrix_view<T>& ga, const matrix_view<T>& gb,
                             const info_nce_options& o, double upstream) {
  info_nce_check_inputs(fn, a, b, o);
  CONTRASTIVE_CHECK(saved.n == a.rows() && saved.d == a.cols(), fn, ": 'saved' belongs to a ",
                    saved.n, " x ", saved.d, " batch, the inputs are ", a.rows(), " x ", a.cols());
  CONTRASTIVE_CHECK(saved.temperature == o.temperature && saved.symmetric == o.symmetric &&
                        saved.label_smoothing == o.label_smoothing &&
                        saved.labelled == !o.labels_a.empty() && saved.reduction == o.reduction &&
                        saved.debias_tau_plus == o.debias_tau_plus &&
                        saved.hard_negative_beta == o.hard_negative_beta,
                    fn, ": 'saved' was computed with other options (temperature ",
                    saved.temperature, ", symmetric ", saved.symmetric, ", label_smoothing ",
                    saved.label_smoothing, ") than these (temperature ", o.temperature,
                    ", symmetric ", o.symmetric, ", label_smoothing ", o.label_smoothing, ")");
  check_pair_gradients(fn, a, b, ga, gb, upstream);
  check_pair_gradient_bound(
      fn, a, b, ga, gb, upstream, 1.0 / o.temperature,
      negative_weighting_bound(o.debias_tau_plus, o.hard_negative_beta, a.rows()), o.accumulate,
      saved.grad_log_scale);
}

template <class T>
temperature_gradient info_nce_backward_impl(
    const matrix_view<const T>& a_in, const matrix_view<const T>& b_in,
    const info_nce_saved<T>& saved, const matrix_view<T>& grad_a, const matrix_view<T>& grad_b,
    const info_nce_options& o_in, double upstream, workspace ws) {
  const char* fn = info_nce_bwd_name;
  info_nce_check_backward(fn, a_in, b_in, saved, grad_a, grad_b, o_in, upstream);
  info_nce_options o = o_in;
  o.cache_logits = o.cache_logits && ws.data != nullptr;
  const index_t n = a_in.rows(), d = a_in.cols();
  const bool sym = o.symmetric, labelled = saved.labelled;
  const double eps = o.label_smoothing;
  const double lambda_d = 1.0 / o.temperature;
  const std::size_t packing =
      packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, info_nce_backward_bytes<T>(n, d, o, packing) - workspace_alignment, fn);
  T* cache = o.cache_logits ? ar.take<T>(info_nce_cache_bytes<T>(n, o) / sizeof(T)) : nullptr;
  const bool use_cache =
      cache != nullptr && saved.logit_cache != nullptr && saved.logit_cache == ws.data;
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  const bool weighted_neg = negative_weighting_active(o.debias_tau_plus, o.hard_negative_beta);
  const bool hard = o.hard_negative_beta > 0;
  info_nce_backward_buffers<T, arena> buf(ar, n, d, sym, labelled, eps > 0, hard);

  // Per-anchor weights: 1/|V| (mean) or 1, times 1/2 when symmetric, times upstream; 0 for
  // anchors without a positive.
  const double c = (sym ? 0.5 : 1.0) * upstream;
  auto weights = [&](const std::vector<index_t>& positives, const std::vector<T>& lse, T* w,
                     T* lse_out, T* q) {
    index_t valid = n;
    if (labelled) {
      valid = 0;
      for (index_t i = 0; i < n; ++i) valid += positives[uz(i)] > 0;
    }
    const double wv =
        valid == 0 ? 0.0 : c * (o.reduction == loss_reduction::mean ? 1.0 / double(valid) : 1.0);
    for (index_t i = 0; i < n; ++i) {
      const bool ok = !labelled || positives[uz(i)] > 0;
      w[i] = static_cast<T>(ok ? wv : 0.0);
      lse_out[i] = lse[uz(i)];
      if (q) q[i] = static_cast<T>(ok ? wv * (1 - eps) / double(positives[uz(i)]) : 0.0);
    }
  };
  weights(saved.row_positives, saved.row_lse, buf.row_w, buf.row_lse, buf.row_q);
  if (sym) weights(saved.col_positives, saved.col_lse, buf.col_w, buf.col_lse, buf.col_q);
  // Weighted negatives: kappa_i on the softmax over the negatives (beta = 0), or kappa_i
  // ((1 + beta) p1 - beta p0) through the scaled terms; buf.*_w keeps the plain weight w_v.
  const double wdir = c * (o.reduction == loss_reduction::mean ? 1.0 / double(n) : 1.0);
  auto negative_weights = [&](const negative_weighting_saved<T>& nw, T* w, T* const* sw,
                              T* const* slse) {
    for (index_t i = 0; i < n; ++i) {
      const double kw = wdir * double(nw.negative[uz(i)]);
      w[i] = static_cast<T>(kw);
      if (hard) {
        const double beta = o.hard_negative_beta;
        sw[0][i] = static_cast<T>(kw * (1 + beta));
        sw[1][i] = static_cast<T>(-kw * beta);
        slse[0][i] = nw.lse_hi[uz(i)];
        slse[1][i] = nw.lse_lo[uz(i)];
      }
    }
  };
  if (weighted_neg) {
    negative_weights(saved.row_weighting, buf.row_w, buf.row_scaled_w, buf.row_scaled_lse);
    if (sym) negative_weights(saved.col_weighting, buf.col_w, buf.col_scaled_w, buf.col_scaled_lse);
  }

  const pairwise_problem<T> p = info_nce_problem<T>(&a, &b, o, use_cache ? cache : nullptr);
  pairwise_coefficients<T> k;
  k.row_w = hard ? nullptr : buf.row_w;
  k.row_lse = buf.row_lse;
  k.row_q = buf.row_q;
  k.col_w = hard ? nullptr : buf.col_w;
  k.col_lse = buf.col_lse;
  k.col_q = buf.col_q;
  for (int e = 0; e < 2; ++e) {
    k.row_scaled_w[e] = buf.row_scaled_w[e];
    k.row_scaled_lse[e] = buf.row_scaled_lse[e];
    k.col_scaled_w[e] = buf.col_scaled_w[e];
    k.col_scaled_lse[e] = buf.col_scaled_lse[e];
  }
  const matrix_view<T> dA = ga.view(), dB = gb.view();
  pairwise_backward(p, k, &dA, &dB, ar);

  if (weighted_neg) {  // the positive logit s_ii = lambda <a_i, b_i>, both directions
    for (index_t i = 0; i < n; ++i) {
      const double pr = double(saved.row_weighting.positive[uz(i)]);
      const double pc = sym ? double(saved.col_weighting.positive[uz(i)]) : 0.0;
      const T coef = static_cast<T>(lambda_d * wdir * (pr + pc));
      for (index_t k2 = 0; k2 < d; ++k2) {
        dA(i, k2) += coef * b(i, k2);
        dB(i, k2) += coef * a(i, k2);
      }
    }
    ga.finish();
    gb.finish();
    return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
  }

  // Target terms, O(N D): the one-hot positives (without labels) and label smoothing.
  auto wc = [&](index_t i) -> double { return sym ? double(buf.col_w[i]) : 0.0; };
  if (!labelled) {
    for (index_t i = 0; i < n; ++i) {
      const T coef = static_cast<T>(lambda_d * (1 - eps) * (double(buf.row_w[i]) + wc(i)));
      for (index_t k2 = 0; k2 < d; ++k2) {
        dA(i, k2) -= coef * b(i, k2);
        dB(i, k2) -= coef * a(i, k2);
      }
    }
  }
  if (eps > 0) {
    double* mean_a = buf.sums;
    double* mean_b = buf.sums + d;
    double* wa = buf.sums + 2 * d;  // sum_i w_r,i a_i
    double* wb = buf.sums + 3 * d;  // sum_j w_c,j b_j
    for (index_t k2 = 0; k2 < 4 * d; ++k2) buf.sums[k2] = 0;
    for (index_t i = 0; i < n; ++i) {
      for (index_t k2 = 0; k2 < d; ++k2) {
        mean_a[k2] += double(a(i, k2)) / double(n);
        mean_b[k2] += double(b(i, k2)) / double(n);
        wa[k2] += double(buf.row_w[i]) * double(a(i, k2));
        wb[k2] += wc(i) * double(b(i, k2));
      }
    }
    for (index_t i = 0; i < n; ++i) {
      for (index_t k2 = 0; k2 < d; ++k2) {
        dA(i, k2) -= static_cast<T>(lambda_d * eps *
                                    (double(buf.row_w[i]) * mean_b[k2] + wb[k2] / double(n)));
        dB(i, k2) -= static_cast<T>(lambda_d * eps * (wc(i) * mean_a[k2] + wa[k2] / double(n)));
      }
    }
  }
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Bytes of scratch a call will use for N x D inputs and outputs that are row-major (unit column
/// stride); other layouts add one packed copy each (see the view-based overload). Pass at least
/// this much as `workspace` to make the call allocation-free (besides `saved`).
template <class T>
std::size_t info_nce_workspace_bytes(index_t n, index_t d, const info_nce_options& o = {}) {
  const std::size_t f = detail::info_nce_forward_bytes<T>(n, d, o, 0);
  const std::size_t b = detail::info_nce_backward_bytes<T>(n, d, o, 0);
  return f > b ? f : b;
}

/// Exact bytes for these inputs and (optional) outputs, packing included.
template <class A, class B,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value, int> = 0>
std::size_t info_nce_workspace_bytes(const A& a, const B& b, const info_nce_options& o = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  const std::size_t pack = detail::packing_bytes(va) + detail::packing_bytes(vb);
  const std::size_t f = detail::info_nce_forward_bytes<T>(va.rows(), va.cols(), o, pack);
  // Gradients are assumed row-major; non-row-major gradients add 2 N D elements.
  const std::size_t bw = detail::info_nce_backward_bytes<T>(va.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

/// Forward pass. Returns the loss and the O(N) statistics the backward needs.
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto info_nce_forward(const A& a, const B& b, const info_nce_options& o = {}, workspace ws = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/info_nce.cuh; ws is the CPU's
    (void)ws;
    CONTRASTIVE_CHECK(!detail::negative_weighting_active(o.debias_tau_plus, o.hard_negative_beta),
                      "info_nce_forward: 'debias_tau_plus' / 'hard_negative_beta' are CPU-only");
    return detail::device_backend_of<detail::info_nce_tag, A>::type::forward(as_view(a), as_view(b),
                                                                             o);
  } else {
    const auto va = detail::input_view(a);
    const auto vb = detail::input_view(b);
    using T = typename decltype(va)::value_type;
    detail::require_same_value_type<T, decltype(vb)>();
    return detail::info_nce_forward_impl<T>(va, vb, o, ws);
  }
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da and dL/db into the
/// caller's tensors. Returns upstream * dL/dtemperature in three parameterisations.
template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
info_nce_parameter_gradients
    info_nce_backward(const A& a, const B& b, const info_nce_saved<T>& saved, GA&& grad_a,
                      GB&& grad_b, const info_nce_options& o = {}, double upstream = 1.0,
                      workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga), decltype(gb)>();
  return detail::info_nce_backward_impl<T>(va, vb, saved, ga, gb, o, upstream, ws);
}

/// Backward of a forward run on device views (the CUDA path; needs cuda/info_nce.cuh).
template <class A, class B, class GA, class GB>
info_nce_parameter_gradients info_nce_backward(const A& a, const B& b,
                                               const cuda::info_nce_device_saved& saved,
                                               GA&& grad_a, GB&& grad_b,
                                               const info_nce_options& o = {},
                                               double upstream = 1.0, workspace = {}) {
  return detail::device_backend_of<detail::info_nce_tag, A>::type::backward(
      as_view(a), as_view(b), saved, as_view(grad_a), as_view(grad_b), o, upstream);
}

/// Forward and backward in one call; returns the loss. The temperature gradient is written to
/// *parameter_grads when given.
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto info_nce_forward_backward(const A& a, const B& b, GA&& grad_a, GB&& grad_b,
                               const info_nce_options& o = {},
                               info_nce_parameter_gradients* parameter_grads = nullptr,
                               workspace ws = {}) {
  std::vector<unsigned char> own;  // cached mode needs one workspace shared by both passes
  if constexpr (!detail::is_device_input<A>::value) {  // no cached mode on the GPU
    if (o.cache_logits && ws.data == nullptr) {
      own.resize(info_nce_workspace_bytes(a, b, o) + detail::packing_bytes(as_view(grad_a)) +
                 detail::packing_bytes(as_view(grad_b)));
      ws = workspace{own.data(), own.size()};
    }
  }
  const auto saved = info_nce_forward(a, b, o, ws);
  const temperature_gradient tg = info_nce_backward(a, b, saved, std::forward<GA>(grad_a),
                                                    std::forward<GB>(grad_b), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_INFO_NCE_HPP
// ---- end contrastive/losses/info_nce.hpp ----
// ---- begin contrastive/losses/nt_xent.hpp ----
#ifndef CONTRASTIVE_LOSSES_NT_XENT_HPP
#define CONTRASTIVE_LOSSES_NT_XENT_HPP

// NT-Xent (SimCLR) over 2N views: Z = [a; b], row i of a and row i of b are two views of sample
// i. Each of the 2N anchors is contrasted with the other 2N - 1 rows (self-similarity masked).
// S = Z Z^T / tau is symmetric, so the sweep visits only tiles J >= I and uses each tile for
// the rows of I and of J. Math and gradients: docs/nt_xent.md; the sweep: docs/tiled_sweep.md.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

// ---- begin contrastive/losses/nt_xent_options.hpp ----
#ifndef CONTRASTIVE_LOSSES_NT_XENT_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_NT_XENT_OPTIONS_HPP

// The options of nt_xent.hpp, apart so that the CUDA path (cuda/nt_xent.cuh, nvcc) takes the same
// struct without Eigen.


CONTRASTIVE_NAMESPACE_BEGIN

/// Options of NT-Xent; tiles are square, min(tile_rows, tile_cols) (from tiling_options).
struct nt_xent_options : tiling_options {
  double temperature = 0.1;    // tau > 0; logits are <z_i, z_j> / tau
  double label_smoothing = 0;  // eps in [0, 1); spread over the 2N - 1 candidates
  // Multiple positives: one label per sample (length N), inherited by both views. Without
  // labels the positive of view i is the other view of the same sample.
  vector_view<const std::int64_t> labels{};
  loss_reduction reduction = loss_reduction::mean;
  bool accumulate = false;    // backward adds into the gradients instead of overwriting them
  bool cache_logits = false;  // cached mode, as in info_nce_options (about 2 N^2 elements)
  // Debiased negatives (Chuang et al. 2020): the class prior tau+ in [0, 1); 0 is off.
  // Hard negatives (Robinson et al. 2021): the concentration beta >= 0; 0 is off. Either one
  // selects l_i = log(e^{s_p} + Ng) - s_p over the negatives only, Ng clamped below at
  // M e^{-1/tau} (docs/debiased.md); one positive per anchor (no labels, no smoothing).
  double debias_tau_plus = 0;
  double hard_negative_beta = 0;
};

/// What the backward returns besides the input gradients: upstream * dL/dtemperature.
using nt_xent_parameter_gradients = temperature_gradient;

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_NT_XENT_OPTIONS_HPP
// ---- end contrastive/losses/nt_xent_options.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

template <class T>
struct nt_xent_saved {
  T loss = 0;
  double grad_log_scale = 0;       // dL/dtheta at upstream 1
  std::vector<T> lse;              // 2N: LSE over the other 2N - 1 rows, anchors [a; b]
  std::vector<index_t> positives;  // 2N: |P_i| with labels (else empty)
  index_t n = 0, d = 0;
  double temperature = 0;
  double label_smoothing = 0;
  bool labelled = false;
  loss_reduction reduction = loss_reduction::mean;
  const void* logit_cache = nullptr;  // the workspace holding the cached tiles (cached mode)
  double debias_tau_plus = 0;         // the debiased / hard-negative options of the forward
  double hard_negative_beta = 0;
  negative_weighting_saved<T> weighting;  // with debias_tau_plus or hard_negative_beta (2N)

  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

constexpr const char* nt_xent_fwd_name = "nt_xent_forward";
constexpr const char* nt_xent_bwd_name = "nt_xent_backward";

template <class T>
void nt_xent_check_inputs(const char* fn, const matrix_view<const T>& a,
                          const matrix_view<const T>& b, const nt_xent_options& o) {
  check_smoothing(fn, o.label_smoothing);
  check_reduction(fn, o.reduction);
  check_negative_weighting(fn, o.debias_tau_plus, o.hard_negative_beta, !o.labels.empty(),
                           o.label_smoothing, 2 * a.rows() - 2);
  check_pair_inputs(fn, a, b, o.temperature, o.tile_rows, o.tile_cols);
  if (!o.labels.empty()) check_labels(fn, "labels", o.labels, a.rows());
}

inline bool nt_xent_weighted_negatives(const nt_xent_options& o) noexcept {
  return negative_weighting_active(o.debias_tau_plus, o.hard_negative_beta);
}

template <class T, class Alloc>
struct nt_xent_forward_buffers {
  online_softmax<double>* stats = nullptr;
  double* target = nullptr;
  std::int64_t* labels = nullptr;  // 2N
  std::int64_t* sort_scratch = nullptr;
  online_softmax<double>* scaled[2] = {nullptr, nullptr};  // hard negatives: (1+beta) s, beta s

  nt_xent_forward_buffers(Alloc& al, index_t n, bool labelled, bool hard = false) {
    const auto n2 = 2 * static_cast<std::size_t>(n);
    stats = al.template take<online_softmax<double>>(n2);
    if (hard)
      for (auto& s : scaled) s = al.template take<online_softmax<double>>(n2);
    if (labelled) {
      target = al.template take<double>(n2);
      labels = al.template take<std::int64_t>(n2);
      sort_scratch = al.template take<std::int64_t>(n2);
    }
  }
};

template <class T, class Alloc>
struct nt_xent_backward_buffers {
  T* w = nullptr;
  T* lse = nullptr;
  T* q = nullptr;
  std::int64_t* labels = nullptr;
  double* sums = nullptr;               // 2 D: sum_i z_i and sum_i w_i z_i (smoothing)
  T* scaled_w[2] = {nullptr, nullptr};  // hard negatives
  T* scaled_lse[2] = {nullptr, nullptr};

  nt_xent_backward_buffers(Alloc& al, index_t n, index_t d, bool labelled, bool smoothing,
                           bool hard = false) {
    const auto n2 = 2 * static_cast<std::size_t>(n);
    w = al.template take<T>(n2);
    lse = al.template take<T>(n2);
    if (hard) {
      for (int k = 0; k < 2; ++k) {
        scaled_w[k] = al.template take<T>(n2);
        scaled_lse[k] = al.template take<T>(n2);
      }
    }
    if (labelled) {
      q = al.template take<T>(n2);
      labels = al.template take<std::int64_t>(n2);
    }
    if (smoothing) sums = al.template take<double>(2 * static_cast<std::size_t>(d));
  }
};

inline sweep_shape nt_xent_sweep(index_t n, index_t d, const nt_xent_options& o) noexcept {
  return make_sweep_shape(o, true, n, n, d);
}

template <class T>
std::size_t nt_xent_cache_bytes(index_t n, const nt_xent_options& o) {
  return o.cache_logits
             ? array_bytes<T>(cache_elements(o.tile_rows, o.tile_cols, true, 2 * n, 2 * n, n, n))
             : 0;
}

template <class T>
std::size_t nt_xent_forward_bytes(index_t n, index_t d, const nt_xent_options& o,
                                  std::size_t packing) {
  size_counter c;
  const bool hard = o.hard_negative_beta > 0;
  const nt_xent_forward_buffers<T, size_counter> sized(c, n, !o.labels.empty(), hard);
  (void)sized;
  return nt_xent_cache_bytes<T>(n, o) + c.bytes + packing +
         pairwise_forward_bytes<T>(nt_xent_sweep(n, d, o), hard ? 2 : 0) + workspace_alignment;
}

template <class T>
std::size_t nt_xent_backward_bytes(index_t n, index_t d, const nt_xent_options& o,
                                   std::size_t packing) {
  size_counter c;
  const nt_xent_backward_buffers<T, size_counter> sized(
      c, n, d, !o.labels.empty(), o.label_smoothing > 0, o.hard_negative_beta > 0);
  (void)sized;
  return nt_xent_cache_bytes<T>(n, o) + c.bytes + packing +
         pairwise_backward_bytes<T>(nt_xent_sweep(n, d, o)) + workspace_alignment;
}

/// Views of Z = [a; b] row by row.
template <class T>
struct stacked_rows {
  matrix_view<const T> a, b;
  index_t n() const noexcept { return a.rows(); }
  const matrix_view<const T>& half(index_t i) const noexcept { return i < n() ? a : b; }
  index_t local(index_t i) const noexcept { return i < n() ? i : i - n(); }
  T operator()(index_t i, index_t k) const noexcept { return half(i)(local(i), k); }
};

inline void nt_xent_labels(const vector_view<const std::int64_t>& y, index_t n, std::int64_t* out) {
  for (index_t i = 0; i < 2 * n; ++i) out[i] = y.data[i < n ? i : i - n];
}

template <class T>
pairwise_problem<T> nt_xent_problem(const matrix_view<const T>* segments, const nt_xent_options& o,
                                    const std::int64_t* labels, T* cache) {
  pairwise_problem<T> p = make_pairwise_problem(segments, 2, segments, 2, o.temperature, o);
  p.self = true;
  p.cache = cache;
  p.label_x = labels;
  p.label_y = labels;
  if (nt_xent_weighted_negatives(o)) p.partner_offset = segments[0].rows();  // negatives only
  if (o.hard_negative_beta > 0) {
    p.extra_scales = 2;
    p.gamma[0] = static_cast<T>(1 + o.hard_negative_beta);
    p.gamma[1] = static_cast<T>(o.hard_negative_beta);
  }
  return p;
}

template <class T>
nt_xent_saved<T> nt_xent_forward_impl(const matrix_view<const T>& a_in,
                                      const matrix_view<const T>& b_in, const nt_xent_options& o_in,
                                      workspace ws) {
  const char* fn = nt_xent_fwd_name;
  nt_xent_check_inputs(fn, a_in, b_in, o_in);
  nt_xent_options o = o_in;
  o.cache_logits = o.cache_logits && ws.data != nullptr;  // a cache must outlive the call
  const index_t n = a_in.rows(), d = a_in.cols(), n2 = 2 * n;
  const bool labelled = !o.labels.empty();
  const double eps = o.label_smoothing;
  const double lambda_d = 1.0 / o.temperature;

  arena ar(ws,
           nt_xent_forward_bytes<T>(n, d, o, packing_bytes(a_in) + packing_bytes(b_in)) -
               workspace_alignment,
           fn);
  T* cache = o.cache_logits ? ar.take<T>(nt_xent_cache_bytes<T>(n, o) / sizeof(T)) : nullptr;
  const matrix_view<const T> seg[2] = {gemm_input(a_in, ar), gemm_input(b_in, ar)};
  const stacked_rows<T> z{seg[0], seg[1]};
  const bool weighted_neg = nt_xent_weighted_negatives(o), hard = o.hard_negative_beta > 0;
  nt_xent_forward_buffers<T, arena> buf(ar, n, labelled, hard);
  for (index_t i = 0; i < n2; ++i) {
    buf.stats[i] = online_softmax<double>();
    if (labelled) buf.target[i] = 0;
    if (hard) buf.scaled[0][i] = buf.scaled[1][i] = online_softmax<double>();
  }
  if (labelled) nt_xent_labels(o.labels, n, buf.labels);

  const pairwise_problem<T> p = nt_xent_problem<T>(seg, o, buf.labels, cache);
  pairwise_stats<T> st;
  st.row = buf.stats;
  st.col = buf.stats;  // the same anchors: S is symmetric
  st.row_target = buf.target;
  st.col_target = buf.target;
  for (int k = 0; k < 2; ++k) st.row_scaled[k] = st.col_scaled[k] = buf.scaled[k];
  pairwise_forward(p, st, ar);

  nt_xent_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.label_smoothing = eps;
  saved.labelled = labelled;
  saved.reduction = o.reduction;
  saved.logit_cache = cache ? ws.data : nullptr;
  saved.debias_tau_plus = o.debias_tau_plus;
  saved.hard_negative_beta = o.hard_negative_beta;
  if (labelled) {
    saved.positives.resize(static_cast<std::size_t>(n2));
    const vector_view<const std::int64_t> zl(buf.labels, n2);
    count_matches(zl, zl, saved.positives.data(), buf.sort_scratch);
    for (auto& c : saved.positives) --c;  // not itself; the other view is always left
  }
  std::vector<double> sum_z;
  if (eps > 0) {
    sum_z.assign(static_cast<std::size_t>(d), 0.0);
    for (index_t i = 0; i < n2; ++i)
      for (index_t k = 0; k < d; ++k) sum_z[uz(k)] += double(z(i, k));
  }

  double loss = 0, dtheta = 0;
  saved.lse.resize(static_cast<std::size_t>(n2));
  if (weighted_neg) {  // debiased / hard negatives: docs/debiased.md
    negative_weighting_saved<T>& nw = saved.weighting;
    nw.negative.resize(static_cast<std::size_t>(n2));
    nw.positive.resize(static_cast<std::size_t>(n2));
    if (hard) {
      nw.lse_hi.resize(static_cast<std::size_t>(n2));
      nw.lse_lo.resize(static_cast<std::size_t>(n2));
    }
    for (index_t i = 0; i < n2; ++i) {
      saved.lse[uz(i)] = static_cast<T>(buf.stats[i].lse());
      const double s_p = lambda_d * dot_rows(seg[0], z.local(i), seg[1], z.local(i));
      const debiased_anchor t = debiased_anchor_terms(
          s_p, buf.stats[i], hard ? &buf.scaled[0][i] : nullptr, hard ? &buf.scaled[1][i] : nullptr,
          double(n2 - 2), lambda_d, o.debias_tau_plus, o.hard_negative_beta);
      if (hard) {
        nw.lse_hi[uz(i)] = static_cast<T>(buf.scaled[0][i].lse());
        nw.lse_lo[uz(i)] = static_cast<T>(buf.scaled[1][i].lse());
      }
      nw.negative[uz(i)] = static_cast<T>(t.negative);
      nw.positive[uz(i)] = static_cast<T>(t.positive);
      nw.clamped += t.clamped;
      loss += t.loss;
      dtheta += t.dtheta;
    }
  }
  for (index_t i = 0; i < n2 && !weighted_neg; ++i) {
    const double lse = buf.stats[i].lse();
    saved.lse[uz(i)] = static_cast<T>(lse);
    const double positive = labelled ? buf.target[i] / double(saved.positives[uz(i)])
                                     : lambda_d * dot_rows(seg[0], z.local(i), seg[1], z.local(i));
    double soft = 0;
    if (eps > 0) {
      for (index_t k = 0; k < d; ++k) soft += double(z(i, k)) * (sum_z[uz(k)] - double(z(i, k)));
      soft *= lambda_d / double(n2 - 1);
    }
    const double t = (1 - eps) * positive + eps * soft;
    loss += lse - t;
    dtheta += buf.stats[i].mean() - t;
  }
  const double w = o.reduction == loss_reduction::mean ? 1.0 / double(n2) : 1.0;
  loss *= w;
  dtheta *= w;
  check_loss_finite(fn, static_cast<double>(static_cast<T>(loss)), o.temperature);  // as stored
  saved.loss = static_cast<T>(loss);
  saved.grad_log_scale = dtheta;
  return saved;
}

template <class T>
temperature_gradient nt_xent_backward_impl(
    const matrix_view<const T>& a_in, const matrix_view<const T>& b_in,
    const nt_xent_saved<T>& saved, const matrix_view<T>& grad_a, const matrix_view<T>& grad_b,
    const nt_xent_options& o_in, double upstream, workspace ws) {
  const char* fn = nt_xent_bwd_name;
  nt_xent_check_inputs(fn, a_in, b_in, o_in);
  nt_xent_options o = o_in;
  o.cache_logits = o.cache_logits && ws.data != nullptr;
  CONTRASTIVE_CHECK(saved.n == a_in.rows() && saved.d == a_in.cols(), fn, ": 'saved' belongs to a ",
                    saved.n, " x ", saved.d, " batch, the inputs are ", a_in.rows(), " x ",
                    a_in.cols());
  CONTRASTIVE_CHECK(
      saved.temperature == o.temperature && saved.label_smoothing == o.label_smoothing &&
          saved.labelled == !o.labels.empty() && saved.reduction == o.reduction &&
          saved.debias_tau_plus == o.debias_tau_plus &&
          saved.hard_negative_beta == o.hard_negative_beta,
      fn, ": 'saved' was computed with other options (temperature ", saved.temperature,
      ", label_smoothing ", saved.label_smoothing, ") than these (temperature ", o.temperature,
      ", label_smoothing ", o.label_smoothing, ")");
  check_pair_gradients(fn, a_in, b_in, grad_a, grad_b, upstream);
  check_pair_gradient_bound(
      fn, 2 * a_in.rows(), std::max(max_abs(a_in), max_abs(b_in)), grad_a, grad_b, upstream,
      1.0 / o.temperature,
      negative_weighting_bound(o.debias_tau_plus, o.hard_negative_beta, 2 * a_in.rows()),
      o.accumulate, saved.grad_log_scale);

  const index_t n = a_in.rows(), d = a_in.cols(), n2 = 2 * n;
  const bool labelled = saved.labelled;
  const double eps = o.label_smoothing;
  const double lambda_d = 1.0 / o.temperature;
  const std::size_t packing =
      packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, nt_xent_backward_bytes<T>(n, d, o, packing) - workspace_alignment, fn);
  T* cache = o.cache_logits ? ar.take<T>(nt_xent_cache_bytes<T>(n, o) / sizeof(T)) : nullptr;
  const bool use_cache = cache != nullptr && saved.logit_cache == ws.data;
  const matrix_view<const T> seg[2] = {gemm_input(a_in, ar), gemm_input(b_in, ar)};
  const stacked_rows<T> z{seg[0], seg[1]};
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  const bool weighted_neg = nt_xent_weighted_negatives(o), hard = o.hard_negative_beta > 0;
  nt_xent_backward_buffers<T, arena> buf(ar, n, d, labelled, eps > 0, hard);

  const double wv = upstream * (o.reduction == loss_reduction::mean ? 1.0 / double(n2) : 1.0);
  const negative_weighting_saved<T>& nw = saved.weighting;
  for (index_t i = 0; i < n2; ++i) {
    buf.w[i] = static_cast<T>(weighted_neg ? wv * double(nw.negative[uz(i)]) : wv);
    buf.lse[i] = saved.lse[uz(i)];
    if (labelled) buf.q[i] = static_cast<T>(wv * (1 - eps) / double(saved.positives[uz(i)]));
    if (hard) {  // kappa ((1 + beta) p1 - beta p0)
      const double beta = o.hard_negative_beta;
      buf.scaled_w[0][i] = static_cast<T>(wv * double(nw.negative[uz(i)]) * (1 + beta));
      buf.scaled_w[1][i] = static_cast<T>(-wv * double(nw.negative[uz(i)]) * beta);
      buf.scaled_lse[0][i] = nw.lse_hi[uz(i)];
      buf.scaled_lse[1][i] = nw.lse_lo[uz(i)];
    }
  }
  if (labelled) nt_xent_labels(o.labels, n, buf.labels);

  const pairwise_problem<T> p = nt_xent_problem<T>(seg, o, buf.labels, use_cache ? cache : nullptr);
  pairwise_coefficients<T> k;
  k.row_w = k.col_w = hard ? nullptr : buf.w;
  k.row_lse = k.col_lse = buf.lse;
  k.row_q = k.col_q = buf.q;
  for (int e = 0; e < 2; ++e) {
    k.row_scaled_w[e] = k.col_scaled_w[e] = buf.scaled_w[e];
    k.row_scaled_lse[e] = k.col_scaled_lse[e] = buf.scaled_lse[e];
  }
  const matrix_view<T> dz[2] = {ga.view(), gb.view()};
  pairwise_backward(p, k, dz, dz, ar);

  auto dz_at = [&](index_t i, index_t c) -> T& { return dz[i < n ? 0 : 1](z.local(i), c); };
  // Target terms, O(N D). One-hot: view i's positive is view p(i) = i +- N, and
  // dL/dz_i gets -(w_i + w_p(i)) lambda z_p(i) (as anchor and as candidate).
  if (!labelled) {
    for (index_t i = 0; i < n; ++i) {
      // Weighted negatives: dl_i/ds_ip is saved per anchor instead of -1.
      const T coef = static_cast<T>(
          weighted_neg
              ? -lambda_d * wv * (double(nw.positive[uz(i)]) + double(nw.positive[uz(i + n)]))
              : lambda_d * (1 - eps) * (double(buf.w[i]) + double(buf.w[i + n])));
      for (index_t c = 0; c < d; ++c) {
        dz[0](i, c) -= coef * seg[1](i, c);
        dz[1](i, c) -= coef * seg[0](i, c);
      }
    }
  }
  // Smoothing: anchor i targets the mean of the other 2N - 1 rows.
  if (eps > 0) {
    double* sum_z = buf.sums;
    double* sum_wz = buf.sums + d;
    for (index_t c = 0; c < 2 * d; ++c) buf.sums[c] = 0;
    for (index_t i = 0; i < n2; ++i) {
      for (index_t c = 0; c < d; ++c) {
        sum_z[c] += double(z(i, c));
        sum_wz[c] += double(buf.w[i]) * double(z(i, c));
      }
    }
    const double f = lambda_d * eps / double(n2 - 1);
    for (index_t i = 0; i < n2; ++i) {
      const double wi = buf.w[i];
      for (index_t c = 0; c < d; ++c) {
        const double zi = z(i, c);
        dz_at(i, c) -= static_cast<T>(f * (wi * (sum_z[c] - zi) + (sum_wz[c] - wi * zi)));
      }
    }
  }
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Scratch bytes for row-major N x D views (see info_nce_workspace_bytes).
template <class T>
std::size_t nt_xent_workspace_bytes(index_t n, index_t d, const nt_xent_options& o = {}) {
  const std::size_t f = detail::nt_xent_forward_bytes<T>(n, d, o, 0);
  const std::size_t b = detail::nt_xent_backward_bytes<T>(n, d, o, 0);
  return f > b ? f : b;
}

/// Exact bytes for these inputs, packing included (gradients assumed row-major).
template <class A, class B,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value, int> = 0>
std::size_t nt_xent_workspace_bytes(const A& a, const B& b, const nt_xent_options& o = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  const std::size_t pack = detail::packing_bytes(va) + detail::packing_bytes(vb);
  const std::size_t f = detail::nt_xent_forward_bytes<T>(va.rows(), va.cols(), o, pack);
  const std::size_t bw = detail::nt_xent_backward_bytes<T>(va.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto nt_xent_forward(const A& a, const B& b, const nt_xent_options& o = {}, workspace ws = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/nt_xent.cuh; ws is the CPU's
    (void)ws;
    CONTRASTIVE_CHECK(!detail::negative_weighting_active(o.debias_tau_plus, o.hard_negative_beta),
                      "nt_xent_forward: 'debias_tau_plus' / 'hard_negative_beta' are CPU-only");
    return detail::device_backend_of<detail::nt_xent_tag, A>::type::forward(as_view(a), as_view(b),
                                                                            o);
  } else {
    const auto va = detail::input_view(a);
    const auto vb = detail::input_view(b);
    using T = typename decltype(va)::value_type;
    detail::require_same_value_type<T, decltype(vb)>();
    return detail::nt_xent_forward_impl<T>(va, vb, o, ws);
  }
}

template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
nt_xent_parameter_gradients
    nt_xent_backward(const A& a, const B& b, const nt_xent_saved<T>& saved, GA&& grad_a,
                     GB&& grad_b, const nt_xent_options& o = {}, double upstream = 1.0,
                     workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga), decltype(gb)>();
  return detail::nt_xent_backward_impl<T>(va, vb, saved, ga, gb, o, upstream, ws);
}

/// Backward of a forward run on device views (the CUDA path; needs cuda/nt_xent.cuh).
template <class A, class B, class GA, class GB>
nt_xent_parameter_gradients nt_xent_backward(const A& a, const B& b,
                                             const cuda::nt_xent_device_saved& saved, GA&& grad_a,
                                             GB&& grad_b, const nt_xent_options& o = {},
                                             double upstream = 1.0, workspace = {}) {
  return detail::device_backend_of<detail::nt_xent_tag, A>::type::backward(
      as_view(a), as_view(b), saved, as_view(grad_a), as_view(grad_b), o, upstream);
}

template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto nt_xent_forward_backward(const A& a, const B& b, GA&& grad_a, GB&& grad_b,
                              const nt_xent_options& o = {},
                              nt_xent_parameter_gradients* parameter_grads = nullptr,
                              workspace ws = {}) {
  std::vector<unsigned char> own;  // cached mode needs one workspace shared by both passes
  if constexpr (!detail::is_device_input<A>::value) {  // no cached mode on the GPU
    if (o.cache_logits && ws.data == nullptr) {
      const auto va = detail::input_view(a);
      using T = typename decltype(va)::value_type;
      own.resize(nt_xent_workspace_bytes<T>(va.rows(), va.cols(), o) + detail::packing_bytes(va) +
                 detail::packing_bytes(detail::input_view(b)) +
                 detail::packing_bytes(as_view(grad_a)) + detail::packing_bytes(as_view(grad_b)));
      ws = workspace{own.data(), own.size()};
    }
  }
  const auto saved = nt_xent_forward(a, b, o, ws);
  const temperature_gradient tg =
      nt_xent_backward(a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_NT_XENT_HPP
// ---- end contrastive/losses/nt_xent.hpp ----
// ---- begin contrastive/losses/dcl.hpp ----
#ifndef CONTRASTIVE_LOSSES_DCL_HPP
#define CONTRASTIVE_LOSSES_DCL_HPP

// Decoupled contrastive learning (Yeh et al., ECCV 2022): DCL and its weighted form DCLW over the
// 2N views Z = [a; b]. As NT-Xent, but each anchor's denominator holds its 2N - 2 negatives only:
// the positive (the other view) is masked in the tiled sweep like the self-similarity. DCLW
// multiplies the positive term of sample k by w_k = 2 - N softmax_k(<a_k, b_k> / sigma) and is
// differentiated through w. Math and gradients: docs/dcl.md; the sweep: docs/tiled_sweep.md.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

// ---- begin contrastive/losses/dcl_options.hpp ----
#ifndef CONTRASTIVE_LOSSES_DCL_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_DCL_OPTIONS_HPP

// The options of dcl.hpp (decoupled contrastive learning, DCL and DCLW), Eigen-free.


CONTRASTIVE_NAMESPACE_BEGIN

/// Options of DCL / DCLW over the 2N views [a; b]; tiles are square, min(tile_rows, tile_cols).
struct dcl_options : tiling_options {
  double temperature = 0.1;  ///< tau > 0; logits are <z_i, z_j> / tau
  /// DCLW: weight the positive term of sample k by w_k = 2 - N softmax_k(<a_k, b_k> / sigma).
  bool weighted = false;
  double sigma = 0.5;  ///< the von Mises-Fisher concentration of DCLW (> 0)
  loss_reduction reduction = loss_reduction::mean;  ///< mean over the 2N anchors, or sum
  bool accumulate = false;  ///< backward adds into the gradients instead of overwriting them
};

/// What the backward returns besides the input gradients: upstream * dL/dtemperature.
using dcl_parameter_gradients = temperature_gradient;

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_DCL_OPTIONS_HPP
// ---- end contrastive/losses/dcl_options.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

/// What the DCL forward keeps for the backward: O(N) statistics.
template <class T>
struct dcl_saved {
  T loss = 0;                 ///< the loss
  double grad_log_scale = 0;  ///< dL/dtheta, theta = log(1/tau), at upstream 1
  std::vector<T> lse;         ///< 2N: log-sum-exp over each anchor's 2N - 2 negatives
  index_t n = 0;              ///< samples N
  index_t d = 0;              ///< feature dimension D
  double temperature = 0;     ///< the options the statistics belong to
  double sigma = 0;           ///< DCLW's sigma (0 for DCL)
  bool weighted = false;      ///< DCLW
  loss_reduction reduction = loss_reduction::mean;  ///< reduction of the forward

  /// dL/dtemperature in the three parameterisations, at upstream 1.
  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

constexpr const char* dcl_fwd_name = "dcl_forward";
constexpr const char* dcl_bwd_name = "dcl_backward";

template <class T>
void dcl_check_inputs(const char* fn, const matrix_view<const T>& a, const matrix_view<const T>& b,
                      const dcl_options& o) {
  check_reduction(fn, o.reduction);
  if (o.weighted)
    CONTRASTIVE_CHECK(std::isfinite(o.sigma) && o.sigma > 0, fn,
                      ": 'sigma' must be finite and > 0, got ", o.sigma);
  check_pair_inputs(fn, a, b, o.temperature, o.tile_rows, o.tile_cols);
  CONTRASTIVE_CHECK(a.rows() >= 2, fn,
                    ": needs at least 2 samples (an anchor's negatives are the other 2N - 2 "
                    "views), got ",
                    a.rows());
}

inline sweep_shape dcl_sweep(index_t n, index_t d, const dcl_options& o) noexcept {
  return make_sweep_shape(o, true, n, n, d);
}

template <class T>
std::size_t dcl_forward_bytes(index_t n, index_t d, const dcl_options& o, std::size_t packing) {
  return array_bytes<online_softmax<double>>(2 * static_cast<std::size_t>(n)) + packing +
         pairwise_forward_bytes<T>(dcl_sweep(n, d, o)) + workspace_alignment;
}

template <class T>
std::size_t dcl_backward_bytes(index_t n, index_t d, const dcl_options& o, std::size_t packing) {
  return 2 * array_bytes<T>(2 * static_cast<std::size_t>(n)) + packing +
         pairwise_backward_bytes<T>(dcl_sweep(n, d, o)) + workspace_alignment;
}

/// The self sweep over [a; b] with the diagonal and each row's other view masked.
template <class T>
pairwise_problem<T> dcl_problem(const matrix_view<const T>* segments, const dcl_options& o) {
  pairwise_problem<T> p = make_pairwise_problem(segments, 2, segments, 2, o.temperature, o);
  p.self = true;
  p.partner_offset = segments[0].rows();
  return p;
}

/// The positive part of DCL/DCLW, O(N D): u_k = <a_k, b_k>, the weights w_k (1 for DCL) and
/// c_k = dP/du_k / lambda for P = -2 wv lambda sum_k w_k u_k (wv: the per-anchor weight).
struct dcl_positive {
  std::vector<double> u, c;
  double sum_wu = 0;  // sum_k w_k u_k
};

template <class T>
dcl_positive dcl_positive_terms(const matrix_view<const T>& a, const matrix_view<const T>& b,
                                bool weighted, double sigma, double wv) {
  const index_t n = a.rows();
  dcl_positive r;
  r.u.resize(static_cast<std::size_t>(n));
  r.c.resize(static_cast<std::size_t>(n));
  for (index_t k = 0; k < n; ++k) r.u[uz(k)] = dot_rows(a, k, b, k);
  if (!weighted) {
    for (std::size_t k = 0; k < r.u.size(); ++k) {
      r.sum_wu += r.u[k];
      r.c[k] = -2 * wv;
    }
    return r;
  }
  // p = softmax(u / sigma), w_k = 2 - N p_k; dP/du_k = -2 wv lambda (w_k - N p_k (u_k - ubar) /
  // sigma), ubar = sum_m p_m u_m.
  double m = -infinity<double>();
  for (std::size_t k = 0; k < r.u.size(); ++k) m = std::max(m, r.u[k] / sigma);
  double z = 0;
  for (std::size_t k = 0; k < r.u.size(); ++k) z += std::exp(r.u[k] / sigma - m);
  std::vector<double> pk(static_cast<std::size_t>(n));
  double ubar = 0;
  for (std::size_t k = 0; k < pk.size(); ++k) {
    pk[k] = std::exp(r.u[k] / sigma - m) / z;
    ubar += pk[k] * r.u[k];
  }
  for (std::size_t k = 0; k < pk.size(); ++k) {
    const double w = 2 - double(n) * pk[k];
    r.sum_wu += w * r.u[k];
    r.c[k] = -2 * wv * (w - double(n) * pk[k] * (r.u[k] - ubar) / sigma);
  }
  return r;
}

template <class T>
dcl_saved<T> dcl_forward_impl(const matrix_view<const T>& a_in, const matrix_view<const T>& b_in,
                              const dcl_options& o, workspace ws) {
  const char* fn = dcl_fwd_name;
  dcl_check_inputs(fn, a_in, b_in, o);
  const index_t n = a_in.rows(), d = a_in.cols(), n2 = 2 * n;
  const double lambda_d = 1.0 / o.temperature;
  arena ar(ws,
           dcl_forward_bytes<T>(n, d, o, packing_bytes(a_in) + packing_bytes(b_in)) -
               workspace_alignment,
           fn);
  const matrix_view<const T> seg[2] = {gemm_input(a_in, ar), gemm_input(b_in, ar)};
  auto* stats = ar.take<online_softmax<double>>(static_cast<std::size_t>(n2));
  for (index_t i = 0; i < n2; ++i) stats[i] = online_softmax<double>();
  const pairwise_problem<T> p = dcl_problem<T>(seg, o);
  pairwise_stats<T> st;
  st.row = st.col = stats;
  pairwise_forward(p, st, ar);

  const double wv = o.reduction == loss_reduction::mean ? 1.0 / double(n2) : 1.0;
  const dcl_positive pos = dcl_positive_terms(seg[0], seg[1], o.weighted, o.sigma, wv);
  dcl_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.sigma = o.weighted ? o.sigma : 0.0;
  saved.weighted = o.weighted;
  saved.reduction = o.reduction;
  saved.lse.resize(static_cast<std::size_t>(n2));
  double neg = 0, dneg = 0;
  for (index_t i = 0; i < n2; ++i) {
    const double lse = stats[i].lse();
    saved.lse[uz(i)] = static_cast<T>(lse);
    neg += lse;
    dneg += stats[i].mean();
  }
  // P = -2 wv lambda sum_k w_k u_k is linear in lambda, so dP/dtheta = P.
  const double positive = -2 * wv * lambda_d * pos.sum_wu;
  const double loss = wv * neg + positive;
  check_loss_finite(fn, static_cast<double>(static_cast<T>(loss)), o.temperature);  // as stored
  saved.loss = static_cast<T>(loss);
  saved.grad_log_scale = wv * dneg + positive;
  return saved;
}

template <class T>
temperature_gradient dcl_backward_impl(const matrix_view<const T>& a_in,
                                       const matrix_view<const T>& b_in, const dcl_saved<T>& saved,
                                       const matrix_view<T>& grad_a, const matrix_view<T>& grad_b,
                                       const dcl_options& o, double upstream, workspace ws) {
  const char* fn = dcl_bwd_name;
  dcl_check_inputs(fn, a_in, b_in, o);
  CONTRASTIVE_CHECK(saved.n == a_in.rows() && saved.d == a_in.cols() &&
                        saved.lse.size() == 2 * static_cast<std::size_t>(saved.n),
                    fn, ": 'saved' belongs to a ", saved.n, " x ", saved.d,
                    " batch, the inputs are ", a_in.rows(), " x ", a_in.cols());
  CONTRASTIVE_CHECK(saved.temperature == o.temperature && saved.weighted == o.weighted &&
                        (!o.weighted || saved.sigma == o.sigma) && saved.reduction == o.reduction,
                    fn, ": 'saved' was computed with other options (temperature ",
                    saved.temperature, ", weighted ", saved.weighted, ", sigma ", saved.sigma,
                    ") than these (temperature ", o.temperature, ", weighted ", o.weighted,
                    ", sigma ", o.sigma, ")");
  check_pair_gradients(fn, a_in, b_in, grad_a, grad_b, upstream);
  // DCLW's positive weights 2 - N softmax_i lie in (2 - N, 2).
  check_pair_gradient_bound(fn, 2 * a_in.rows(), std::max(max_abs(a_in), max_abs(b_in)), grad_a,
                            grad_b, upstream, 1.0 / o.temperature,
                            o.weighted ? 2.0 * static_cast<double>(a_in.rows()) : 1.0, o.accumulate,
                            saved.grad_log_scale);

  const index_t n = a_in.rows(), d = a_in.cols(), n2 = 2 * n;
  const double lambda_d = 1.0 / o.temperature;
  const std::size_t packing =
      packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, dcl_backward_bytes<T>(n, d, o, packing) - workspace_alignment, fn);
  const matrix_view<const T> seg[2] = {gemm_input(a_in, ar), gemm_input(b_in, ar)};
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  T* w = ar.take<T>(static_cast<std::size_t>(n2));
  T* lse = ar.take<T>(static_cast<std::size_t>(n2));
  const double wv = upstream * (o.reduction == loss_reduction::mean ? 1.0 / double(n2) : 1.0);
  for (index_t i = 0; i < n2; ++i) {
    w[i] = static_cast<T>(wv);
    lse[i] = saved.lse[uz(i)];
  }
  const pairwise_problem<T> p = dcl_problem<T>(seg, o);
  pairwise_coefficients<T> k;
  k.row_w = k.col_w = w;
  k.row_lse = k.col_lse = lse;
  const matrix_view<T> dz[2] = {ga.view(), gb.view()};
  pairwise_backward(p, k, dz, dz, ar);

  // The positive terms, O(N D): dL/da_k += lambda c_k b_k, dL/db_k += lambda c_k a_k.
  const dcl_positive pos = dcl_positive_terms(seg[0], seg[1], o.weighted, o.sigma, wv);
  for (index_t i = 0; i < n; ++i) {
    const T coef = static_cast<T>(lambda_d * pos.c[uz(i)]);
    for (index_t c = 0; c < d; ++c) {
      dz[0](i, c) += coef * seg[1](i, c);
      dz[1](i, c) += coef * seg[0](i, c);
    }
  }
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Scratch bytes for row-major N x D views (see info_nce_workspace_bytes).
template <class T>
std::size_t dcl_workspace_bytes(index_t n, index_t d, const dcl_options& o = {}) {
  const std::size_t f = detail::dcl_forward_bytes<T>(n, d, o, 0);
  const std::size_t b = detail::dcl_backward_bytes<T>(n, d, o, 0);
  return f > b ? f : b;
}

/// Exact bytes for these inputs, packing included (gradients assumed row-major).
template <class A, class B,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value, int> = 0>
std::size_t dcl_workspace_bytes(const A& a, const B& b, const dcl_options& o = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  const std::size_t pack = detail::packing_bytes(va) + detail::packing_bytes(vb);
  const std::size_t f = detail::dcl_forward_bytes<T>(va.rows(), va.cols(), o, pack);
  const std::size_t bw = detail::dcl_backward_bytes<T>(va.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

/// Forward pass of DCL (or DCLW with options.weighted): the loss and O(N) statistics.
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto dcl_forward(const A& a, const B& b, const dcl_options& o = {}, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  detail::require_same_value_type<T, decltype(vb)>();
  return detail::dcl_forward_impl<T>(va, vb, o, ws);
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da and dL/db. Returns
/// upstream * dL/dtemperature.
template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
dcl_parameter_gradients
    dcl_backward(const A& a, const B& b, const dcl_saved<T>& saved, GA&& grad_a, GB&& grad_b,
                 const dcl_options& o = {}, double upstream = 1.0, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga), decltype(gb)>();
  return detail::dcl_backward_impl<T>(va, vb, saved, ga, gb, o, upstream, ws);
}

/// Forward and backward in one call; returns the loss. The temperature gradient is written to
/// *parameter_grads when given.
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto dcl_forward_backward(const A& a, const B& b, GA&& grad_a, GB&& grad_b,
                          const dcl_options& o = {},
                          dcl_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto saved = dcl_forward(a, b, o, ws);
  const temperature_gradient tg =
      dcl_backward(a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_DCL_HPP
// ---- end contrastive/losses/dcl.hpp ----
// ---- begin contrastive/losses/supcon.hpp ----
#ifndef CONTRASTIVE_LOSSES_SUPCON_HPP
#define CONTRASTIVE_LOSSES_SUPCON_HPP

// Supervised contrastive loss over one labelled set (Khosla et al. 2020, the L_out form, as
// pytorch-metric-learning's SupConLoss computes it): M x D features and M labels, anchor i's
// positives are the other rows with its label, its denominator all other rows, the loss the mean
// over its positives of -log softmax. Anchors without positives are skipped and counted. The
// symmetric logits S = A A^T / tau are swept in self mode over one segment (only tiles J >= I),
// label matches tested inside the tiles. The ntxent_pairs convention (pytorch-metric-learning's
// NTXentLoss with labels) sweeps twice forward: the negatives-only normalisers, then the positive
// pairs. Math and gradients: docs/supcon.md.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

// ---- begin contrastive/losses/supcon_options.hpp ----
#ifndef CONTRASTIVE_LOSSES_SUPCON_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_SUPCON_OPTIONS_HPP

// The options of supcon.hpp (supervised contrastive loss over one labelled set), Eigen-free.

#include <cstdint>


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
// ---- end contrastive/losses/supcon_options.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

/// What the SupCon forward keeps for the backward: O(M) statistics.
template <class T>
struct supcon_saved {
  T loss = 0;                 ///< the loss
  double grad_log_scale = 0;  ///< dL/dtheta, theta = log(1/tau), at upstream 1
  /// M: log-sum-exp over the other M - 1 rows (ntxent_pairs: over the anchor's negatives only,
  /// -inf when it has none)
  std::vector<T> lse;
  std::vector<index_t> positives;  ///< M: |P_i|, the other rows with the anchor's label
  index_t skipped = 0;             ///< anchors without positives (no loss, no gradient)
  /// ntxent_pairs, M: sum over the anchor's positives p of sigmoid(lse_i - s_ip)
  std::vector<T> pair_weight;
  index_t pairs = 0;  ///< ntxent_pairs: the positive pairs (i, p), both orders counted
  supcon_convention convention = supcon_convention::l_out;  ///< see supcon_options
  index_t m = 0;                                            ///< rows M
  index_t d = 0;                                            ///< feature dimension D
  double temperature = 0;                           ///< the options the statistics belong to
  double base_temperature = 0;                      ///< see supcon_options
  loss_reduction reduction = loss_reduction::mean;  ///< reduction of the forward

  /// dL/dtemperature in the three parameterisations, at upstream 1.
  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

constexpr const char* supcon_fwd_name = "supcon_forward";
constexpr const char* supcon_bwd_name = "supcon_backward";

template <class T>
void supcon_check_inputs(const char* fn, const matrix_view<const T>& a, const supcon_options& o) {
  check_reduction(fn, o.reduction);
  check_matrix(fn, "a", a);
  check_temperature(fn, o.temperature);
  CONTRASTIVE_CHECK(std::isfinite(o.base_temperature) && o.base_temperature >= 0, fn,
                    ": 'base_temperature' must be finite and >= 0 (0: off), got ",
                    o.base_temperature);
  CONTRASTIVE_CHECK(
      o.convention == supcon_convention::l_out || o.convention == supcon_convention::ntxent_pairs,
      fn, ": 'convention' must be l_out or ntxent_pairs, got ", static_cast<int>(o.convention));
  check_tiles(fn, o.tile_rows, o.tile_cols);
  CONTRASTIVE_CHECK(a.rows() > 0, fn, ": empty batch ('a' has 0 rows)");
  CONTRASTIVE_CHECK(a.cols() > 0, fn, ": 'a' has 0 columns (D must be > 0)");
  CONTRASTIVE_CHECK(!o.labels.empty(), fn, ": 'labels' are required (one per row of 'a')");
  check_labels(fn, "labels", o.labels, a.rows());
  check_finite(fn, "a", a);
}

inline sweep_shape supcon_sweep(index_t m, index_t d, const supcon_options& o) noexcept {
  return make_sweep_shape(o, true, m, m, d);
}

/// ntxent_pairs: per chunk and anchor, the sums over its positive pairs of softplus(L_i - s_ip),
/// sigmoid(L_i - s_ip) and sigmoid(L_i - s_ip) s_ip.
constexpr std::size_t supcon_pair_sums = 3 * sweep_chunks;

template <class T>
std::size_t supcon_forward_bytes(index_t m, index_t d, const supcon_options& o,
                                 std::size_t packing) {
  const auto um = static_cast<std::size_t>(m);
  std::size_t bytes = array_bytes<online_softmax<double>>(um) + array_bytes<double>(um) +
                      array_bytes<std::int64_t>(um) + packing +
                      pairwise_forward_bytes<T>(supcon_sweep(m, d, o)) + workspace_alignment;
  if (o.convention == supcon_convention::ntxent_pairs)
    bytes += array_bytes<double>(checked_product(supcon_pair_sums, um)) +
             pairwise_backward_bytes<T>(supcon_sweep(m, d, o));
  return bytes;
}

template <class T>
std::size_t supcon_backward_bytes(index_t m, index_t d, const supcon_options& o,
                                  std::size_t packing) {
  const auto um = static_cast<std::size_t>(m);
  return 3 * array_bytes<T>(um) + packing + pairwise_backward_bytes<T>(supcon_sweep(m, d, o)) +
         workspace_alignment;
}

template <class T>
pairwise_problem<T> supcon_problem(const matrix_view<const T>* a, const supcon_options& o) {
  pairwise_problem<T> p = make_pairwise_problem(a, 1, a, 1, o.temperature, o);
  p.self = true;
  p.label_x = p.label_y = o.labels.data;
  return p;
}

/// The factor of the authors' reference code: tau / base_tau, or 1.
inline double supcon_factor(const supcon_options& o) noexcept {
  return o.base_temperature > 0 ? o.temperature / o.base_temperature : 1.0;
}

/// Stable sigmoid.
template <class T>
T supcon_sigmoid(T x) noexcept {
  using std::exp;
  return x >= T(0) ? T(1) / (T(1) + exp(-x)) : exp(x) / (T(1) + exp(x));
}

/// ntxent_pairs, after the negatives-only forward (lneg[i] = L_i): one more sweep over the
/// positive pairs (i, p) folds softplus(L_i - s_ip), sigmoid(L_i - s_ip) and
/// sigmoid(L_i - s_ip) s_ip into per-chunk sums of each anchor, each tile serving its rows and
/// (off the diagonal) its columns. Returns the sums, 3 per anchor, merged in fixed chunk order.
template <class T>
const double* supcon_pair_sweep(const pairwise_problem<T>& p, const double* lneg, index_t m,
                                arena& ar) {
  const std::size_t um = static_cast<std::size_t>(m);
  double* sums = ar.take<double>(supcon_pair_sums * um);
  std::fill(sums, sums + supcon_pair_sums * um, 0.0);
  auto fold = [](double* acc, double x, double s) {
    if (x == -infinity<double>()) return;  // no negatives: the pair's loss and weight are 0
    acc[0] += std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x)));  // softplus
    const double sig = supcon_sigmoid(x);
    acc[1] += sig;
    acc[2] += sig * s;
  };
  auto kernel = [&](const row_block& I, const row_block& J, const tile_mask& mask,
                    const tile_map<T>& s, tile_map<T>&, int c) {
    double* acc = sums + 3 * uz(c) * um;
    const bool diag = I.global == J.global;  // self mode: one blocking for rows and columns
    for (index_t r = 0; r < I.rows; ++r) {
      const index_t i = I.global + r;
      for (index_t k = 0; k < J.rows; ++k) {
        const index_t j = J.global + k;
        if (p.label_y[j] != p.label_x[i] || mask.masked(r, k)) continue;
        const double sv = static_cast<double>(s(r, k));
        fold(acc + 3 * uz(i), lneg[i] - sv, sv);
        if (!diag) fold(acc + 3 * uz(j), lneg[j] - sv, sv);
      }
    }
  };
  const matrix_view<T>* no_products = nullptr;  // a forward: only folds the tiles
  pairwise_sweep_tiles(p, kernel, no_products, no_products, ar);
  for (int c = 1; c < sweep_chunks; ++c)  // fixed order, into chunk 0
    for (std::size_t k = 0; k < 3 * um; ++k) sums[k] += sums[3 * uz(c) * um + k];
  return sums;
}

/// ntxent_pairs backward: the symmetrised logit gradient of a tile. Entry (i, j) is
///   negative: w_i exp(s - lse_i) + w_j exp(s - lse_j)   (w_i = weight * pair_weight_i)
///   positive: -weight (sigmoid(L_i - s) + sigmoid(L_j - s))
/// with lse_i = L_i, or +inf for an anchor without negatives (its w_i is 0).
template <class T>
struct supcon_pair_gradient {
  const pairwise_problem<T>* p;
  const T* w;
  const T* lse;
  const T* lneg;
  T weight;

  void operator()(const row_block& I, const row_block& J, const tile_mask& mask,
                  const tile_map<T>& s, tile_map<T>& g, int) const {
    using cvec = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;
    const cvec wc(w + J.global, J.rows), lc(lse + J.global, J.rows);
    Eigen::Array<T, 1, Eigen::Dynamic> e(J.rows);  // g may be the memory of s
    for (index_t r = 0; r < I.rows; ++r) {
      const index_t i = I.global + r;
      const auto sr = s.row(r).array();
      // An anchor's positive can exceed its negatives' lse: exp may overflow there, and the
      // positive's own formula replaces it.
      e = w[i] * (sr - lse[i]).exp() + wc * (sr - lc).exp();
      for (index_t k = 0; k < J.rows; ++k) {
        const index_t j = J.global + k;
        if (p->label_y[j] != p->label_x[i] || mask.masked(r, k)) continue;
        e(k) = -weight * (supcon_sigmoid(lneg[i] - sr(k)) + supcon_sigmoid(lneg[j] - sr(k)));
      }
      g.row(r).array() = e;
    }
    mask.for_each([&](index_t r, index_t c) { g(r, c) = 0; });
  }
};

template <class T>
supcon_saved<T> supcon_forward_impl(const matrix_view<const T>& a_in, const supcon_options& o,
                                    workspace ws) {
  const char* fn = supcon_fwd_name;
  supcon_check_inputs(fn, a_in, o);
  const index_t m = a_in.rows(), d = a_in.cols();
  arena ar(ws, supcon_forward_bytes<T>(m, d, o, packing_bytes(a_in)) - workspace_alignment, fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  auto* stats = ar.take<online_softmax<double>>(static_cast<std::size_t>(m));
  auto* target = ar.take<double>(static_cast<std::size_t>(m));
  auto* sort_scratch = ar.take<std::int64_t>(static_cast<std::size_t>(m));
  for (index_t i = 0; i < m; ++i) {
    stats[i] = online_softmax<double>();
    target[i] = 0;
  }
  pairwise_problem<T> p = supcon_problem<T>(&a, o);
  const bool pairs = o.convention == supcon_convention::ntxent_pairs;
  pairwise_stats<T> st;
  st.row = st.col = stats;
  if (pairs)
    p.exclude_label_matches = true;  // the normalisers over the negatives only
  else
    st.row_target = st.col_target = target;
  pairwise_forward(p, st, ar);
  p.exclude_label_matches = false;
  const double* pair_sums = nullptr;
  if (pairs) {
    for (index_t i = 0; i < m; ++i) target[i] = stats[i].lse();
    pair_sums = supcon_pair_sweep(p, target, m, ar);
  }

  supcon_saved<T> saved;
  saved.convention = o.convention;
  saved.m = m;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.base_temperature = o.base_temperature;
  saved.reduction = o.reduction;
  saved.positives.resize(static_cast<std::size_t>(m));
  count_matches(o.labels, o.labels, saved.positives.data(), sort_scratch);
  saved.lse.resize(static_cast<std::size_t>(m));
  if (pairs) saved.pair_weight.assign(static_cast<std::size_t>(m), T(0));
  double loss = 0, dtheta = 0;
  index_t valid = 0;  // the terms of the mean: anchors (l_out) or positive pairs (ntxent_pairs)
  for (index_t i = 0; i < m; ++i) {
    --saved.positives[uz(i)];  // not itself
    const double lse = stats[i].lse();
    saved.lse[uz(i)] = static_cast<T>(lse);
    if (saved.positives[uz(i)] == 0) {
      ++saved.skipped;
      continue;
    }
    if (pairs) {
      // d/dtheta softplus(L_i - s_ip) = sigmoid(L_i - s_ip) (E_neg[s] - s_ip).
      const double* q = pair_sums + 3 * uz(i);
      loss += q[0];
      dtheta += q[1] * stats[i].mean() - q[2];
      saved.pair_weight[uz(i)] = static_cast<T>(q[1]);
      valid += saved.positives[uz(i)];
      continue;
    }
    const double t = target[i] / double(saved.positives[uz(i)]);
    loss += lse - t;
    dtheta += stats[i].mean() - t;
    ++valid;
  }
  saved.pairs = pairs ? valid : 0;
  const double w =
      valid == 0 ? 0.0 : (o.reduction == loss_reduction::mean ? 1.0 / double(valid) : 1.0);
  // L' = c L with c = tau / base_tau = e^{-theta} / base_tau: dL'/dtheta = c (dL/dtheta - L).
  const double c = supcon_factor(o);
  loss *= w;
  dtheta *= w;
  check_loss_finite(fn, c * loss, o.temperature);
  saved.loss = static_cast<T>(c * loss);
  saved.grad_log_scale = o.base_temperature > 0 ? c * (dtheta - loss) : dtheta;
  return saved;
}

template <class T>
temperature_gradient supcon_backward_impl(const matrix_view<const T>& a_in,
                                          const supcon_saved<T>& saved,
                                          const matrix_view<T>& grad_a, const supcon_options& o,
                                          double upstream, workspace ws) {
  const char* fn = supcon_bwd_name;
  supcon_check_inputs(fn, a_in, o);
  const bool pairs = o.convention == supcon_convention::ntxent_pairs;
  CONTRASTIVE_CHECK(
      saved.temperature == o.temperature && saved.base_temperature == o.base_temperature &&
          saved.reduction == o.reduction && saved.convention == o.convention,
      fn, ": 'saved' was computed with other options (temperature ", saved.temperature,
      ", base_temperature ", saved.base_temperature, ", reduction ",
      static_cast<int>(saved.reduction), ", convention ", static_cast<int>(saved.convention),
      ") than these (temperature ", o.temperature, ", base_temperature ", o.base_temperature,
      ", reduction ", static_cast<int>(o.reduction), ", convention ",
      static_cast<int>(o.convention), ")");
  CONTRASTIVE_CHECK(saved.m == a_in.rows() && saved.d == a_in.cols() &&
                        saved.lse.size() == static_cast<std::size_t>(saved.m) &&
                        saved.positives.size() == static_cast<std::size_t>(saved.m) &&
                        (!pairs || saved.pair_weight.size() == static_cast<std::size_t>(saved.m)),
                    fn, ": 'saved' belongs to a ", saved.m, " x ", saved.d, " batch, 'a' is ",
                    a_in.rows(), " x ", a_in.cols());
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
  check_matrix(fn, "grad_a", grad_a);
  check_shape(fn, "grad_a", grad_a, a_in.rows(), a_in.cols(), "the shape of 'a'");
  check_writable_layout(fn, "grad_a", grad_a);
  check_no_alias(fn, "grad_a", grad_a, "a", a_in);
  // The factor tau / base_tau of base_temperature scales every anchor weight; summed pair terms
  // weigh an anchor by its positives.
  index_t most_positives = 1;
  for (const index_t k : saved.positives) most_positives = std::max(most_positives, k);
  const double pair_factor =
      pairs && o.reduction == loss_reduction::sum ? double(most_positives) : 1.0;
  check_pair_gradient_bound(fn, a_in.rows(), max_abs(a_in), grad_a, grad_a, upstream,
                            1.0 / o.temperature, supcon_factor(o) * pair_factor, o.accumulate,
                            saved.grad_log_scale);

  const index_t m = a_in.rows(), d = a_in.cols();
  arena ar(ws,
           supcon_backward_bytes<T>(m, d, o, packing_bytes(a_in) + packing_bytes(grad_a)) -
               workspace_alignment,
           fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  T* w = ar.take<T>(static_cast<std::size_t>(m));
  T* lse = ar.take<T>(static_cast<std::size_t>(m));
  T* q = ar.take<T>(static_cast<std::size_t>(m));
  const index_t valid = pairs ? saved.pairs : m - saved.skipped;
  const double wv = valid == 0
                        ? 0.0
                        : upstream * supcon_factor(o) *
                              (o.reduction == loss_reduction::mean ? 1.0 / double(valid) : 1.0);
  const pairwise_problem<T> p = supcon_problem<T>(&a, o);
  const matrix_view<T> da = ga.view();
  if (pairs) {
    for (index_t i = 0; i < m; ++i) {
      w[i] = static_cast<T>(wv * double(saved.pair_weight[uz(i)]));
      lse[i] = saved.lse[uz(i)] == -infinity<T>() ? infinity<T>() : saved.lse[uz(i)];
      q[i] = saved.lse[uz(i)];
    }
    pairwise_sweep_tiles(p, supcon_pair_gradient<T>{&p, w, lse, q, static_cast<T>(wv)}, &da, &da,
                         ar);
    ga.finish();
    return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
  }
  for (index_t i = 0; i < m; ++i) {
    const bool ok = saved.positives[uz(i)] > 0;
    w[i] = static_cast<T>(ok ? wv : 0.0);
    lse[i] = saved.lse[uz(i)];
    q[i] = static_cast<T>(ok ? wv / double(saved.positives[uz(i)]) : 0.0);
  }
  pairwise_coefficients<T> k;
  k.row_w = k.col_w = w;
  k.row_lse = k.col_lse = lse;
  k.row_q = k.col_q = q;
  pairwise_backward(p, k, &da, &da, ar);
  ga.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Scratch bytes for a row-major M x D view (see info_nce_workspace_bytes).
template <class T>
std::size_t supcon_workspace_bytes(index_t m, index_t d, const supcon_options& o = {}) {
  const std::size_t f = detail::supcon_forward_bytes<T>(m, d, o, 0);
  const std::size_t b = detail::supcon_backward_bytes<T>(m, d, o, 0);
  return f > b ? f : b;
}

/// Exact bytes for this input, packing included (the gradient assumed row-major).
template <class A, std::enable_if_t<is_tensor_like<A>::value, int> = 0>
std::size_t supcon_workspace_bytes(const A& a, const supcon_options& o = {}) {
  const auto va = detail::input_view(a);
  using T = typename decltype(va)::value_type;
  const std::size_t pack = detail::packing_bytes(va);
  const std::size_t f = detail::supcon_forward_bytes<T>(va.rows(), va.cols(), o, pack);
  const std::size_t bw = detail::supcon_backward_bytes<T>(va.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

/// Forward pass: the loss, O(M) statistics and the count of anchors without positives.
template <class A>
CONTRASTIVE_REQUIRES(tensor_like<A>)
auto supcon_forward(const A& a, const supcon_options& o, workspace ws = {}) {
  const auto va = detail::input_view(a);
  using T = typename decltype(va)::value_type;
  return detail::supcon_forward_impl<T>(va, o, ws);
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da. Returns
/// upstream * dL/dtemperature.
template <class A, class T, class GA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& writable_tensor<GA&&>)
supcon_parameter_gradients
    supcon_backward(const A& a, const supcon_saved<T>& saved, GA&& grad_a, const supcon_options& o,
                    double upstream = 1.0, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  detail::require_same_value_type<T, decltype(va), decltype(ga)>();
  return detail::supcon_backward_impl<T>(va, saved, ga, o, upstream, ws);
}

/// Forward and backward in one call; returns the loss. The temperature gradient is written to
/// *parameter_grads when given.
template <class A, class GA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& writable_tensor<GA&&>)
auto supcon_forward_backward(const A& a, GA&& grad_a, const supcon_options& o,
                             supcon_parameter_gradients* parameter_grads = nullptr,
                             workspace ws = {}) {
  const auto saved = supcon_forward(a, o, ws);
  const temperature_gradient tg = supcon_backward(a, saved, std::forward<GA>(grad_a), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_SUPCON_HPP
// ---- end contrastive/losses/supcon.hpp ----
// ---- begin contrastive/losses/siglip.hpp ----
#ifndef CONTRASTIVE_LOSSES_SIGLIP_HPP
#define CONTRASTIVE_LOSSES_SIGLIP_HPP

// The sigmoid loss of SigLIP (Zhai et al. 2023): every pair (i, j) is a binary classification,
// positive on the diagonal, with logits x_ij = t <a_i, b_j> + b:
//   L = -(1/N) sum_ij log sigmoid(z_ij x_ij),  z_ii = 1, z_ij = -1 (i != j).
// No normaliser couples the entries of a row, so the gradient tile depends on the logits alone:
// the forward sums the log-sigmoids of the tiles and also the parameter gradients (dL/dlog t,
// dL/db); the backward recomputes the tiles; forward_backward does both in one sweep (three
// products). Math and gradients: docs/siglip.md; the sweep: docs/tiled_sweep.md.

#include <cmath>
#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

// ---- begin contrastive/losses/siglip_options.hpp ----
#ifndef CONTRASTIVE_LOSSES_SIGLIP_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_SIGLIP_OPTIONS_HPP

// The options of siglip.hpp (the sigmoid loss of SigLIP), Eigen-free.


CONTRASTIVE_NAMESPACE_BEGIN

/// Options of the SigLIP loss; tile_rows, tile_cols and num_threads come from tiling_options.
struct siglip_options : tiling_options {
  double scale = 10;  ///< t > 0: logits are t <a_i, b_j> + bias (SigLIP initialises log t = log 10)
  double bias = -10;  ///< b, finite (SigLIP initialises -10)
  loss_reduction reduction = loss_reduction::mean;  ///< mean: the sum over pairs / N; sum: the sum
  bool accumulate = false;  ///< backward adds into the gradients instead of overwriting them
};

/// What the backward returns besides the input gradients (times upstream).
struct siglip_parameter_gradients {
  double log_scale = 0;  ///< dL/dlog t
  double scale = 0;      ///< dL/dt = dL/dlog t / t
  double bias = 0;       ///< dL/db
};

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_SIGLIP_OPTIONS_HPP
// ---- end contrastive/losses/siglip_options.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

/// What the SigLIP forward keeps: the loss and the parameter gradients (O(1); the backward needs
/// no per-anchor statistic).
template <class T>
struct siglip_saved {
  T loss = 0;                                       ///< the loss
  double grad_log_scale = 0;                        ///< dL/dlog t at upstream 1
  double grad_bias = 0;                             ///< dL/db at upstream 1
  index_t n = 0;                                    ///< pairs N
  index_t d = 0;                                    ///< feature dimension D
  double scale = 0;                                 ///< the options the values belong to
  double bias = 0;                                  ///< (backward checks them)
  loss_reduction reduction = loss_reduction::mean;  ///< reduction of the forward

  /// The parameter gradients at upstream 1.
  siglip_parameter_gradients parameter_grads() const noexcept {
    return siglip_parameter_gradients{grad_log_scale, grad_log_scale / scale, grad_bias};
  }
};

namespace detail {

constexpr const char* siglip_fwd_name = "siglip_forward";
constexpr const char* siglip_bwd_name = "siglip_backward";

template <class T>
void siglip_check_inputs(const char* fn, const matrix_view<const T>& a,
                         const matrix_view<const T>& b, const siglip_options& o) {
  check_reduction(fn, o.reduction);
  check_matrix(fn, "a", a);
  check_matrix(fn, "b", b);
  CONTRASTIVE_CHECK(std::isfinite(o.scale) && o.scale > 0, fn,
                    ": 'scale' must be finite and > 0, got ", o.scale);
  CONTRASTIVE_CHECK(std::isfinite(o.bias), fn, ": 'bias' must be finite, got ", o.bias);
  check_tiles(fn, o.tile_rows, o.tile_cols);
  check_pair_shape(fn, a, b);
  check_finite(fn, "a", a);
  check_finite(fn, "b", b);
  // The logits cannot overflow: |x_ij| <= t max|a_i| max|b_j| + |b|, and a tile row adds at most
  // min(tile_cols, N) of them in T. Checked before the sweep, so that forward_backward (one sweep,
  // gradients written as it goes) never writes when the loss would not be finite.
  double ma = 0, mb = 0;
  for (index_t i = 0; i < a.rows(); ++i) {
    ma = std::max(ma, dot_rows(a, i, a, i));
    mb = std::max(mb, dot_rows(b, i, b, i));
  }
  const double bound = o.scale * std::sqrt(ma) * std::sqrt(mb) + std::abs(o.bias);
  const double cols = double(std::min(o.tile_cols, a.rows()));
  if (!(bound * cols < double(std::numeric_limits<T>::max()) / 4))
    check_loss_finite(fn, infinity<double>(), 1.0 / o.scale);
}

inline sweep_shape siglip_sweep(index_t n, index_t d, const siglip_options& o) noexcept {
  return make_sweep_shape(o, false, n, n, d);
}

/// Per chunk: the loss, sum G s and sum G (the parameter gradients), in double.
constexpr std::size_t siglip_chunk_sums = 3 * sweep_chunks;

template <class T>
std::size_t siglip_bytes(index_t n, index_t d, const siglip_options& o, std::size_t packing) {
  return array_bytes<double>(siglip_chunk_sums) + packing +
         pairwise_backward_bytes<T>(siglip_sweep(n, d, o)) + workspace_alignment;
}

template <class T>
pairwise_problem<T> siglip_problem(const matrix_view<const T>* a, const matrix_view<const T>* b,
                                   const siglip_options& o) {
  pairwise_problem<T> p = make_pairwise_problem(a, 1, b, 1, 1.0 / o.scale, o);
  p.scale = static_cast<T>(o.scale);
  return p;
}

/// One sweep: with `grads` null only the sums (forward), else also upstream * dL/da and dL/db.
/// Returns {loss, dL/dlog t, dL/db} at upstream 1.
template <class T>
std::array<double, 3> siglip_sweep_impl(const matrix_view<const T>& a,
                                        const matrix_view<const T>& b, const siglip_options& o,
                                        double upstream, const matrix_view<T>* grads, arena& ar) {
  const index_t n = a.rows();
  const double w = o.reduction == loss_reduction::mean ? 1.0 / double(n) : 1.0;
  double* sums = ar.take<double>(siglip_chunk_sums);
  for (std::size_t i = 0; i < siglip_chunk_sums; ++i) sums[i] = 0;
  const T bias = static_cast<T>(o.bias);
  const T wg = static_cast<T>(w * upstream);
  const pairwise_problem<T> p = siglip_problem<T>(&a, &b, o);
  auto kernel = [&](const row_block& I, const row_block& J, const tile_mask&, const tile_map<T>& s,
                    tile_map<T>& g, int c) {
    double loss = 0, gs = 0, gsum = 0;
    Eigen::Array<T, 1, Eigen::Dynamic> e(J.rows), sig(J.rows);
    for (index_t r = 0; r < I.rows; ++r) {
      const auto sr = s.row(r).array();
      // The positive of global row I.global + r, if in this tile.
      const index_t dc = I.global + r - J.global;
      const bool has_pos = dc >= 0 && dc < J.rows;
      const T s_pos = has_pos ? sr(dc) : T(0);
      // Every entry as a negative, x = s + b: softplus(x) = max(x, 0) + log1p(e^{-|x|}) and
      // dl/dx = sigmoid(x) from the same exponential; the positive is corrected below
      // (softplus(-x) = softplus(x) - x, dl/dx = sigmoid(x) - 1).
      e = (-(sr + bias).abs()).exp();
      sig = (sr + bias >= T(0)).select(T(1) / (T(1) + e), e / (T(1) + e));
      loss += double(((sr + bias).max(T(0)) + e.log1p()).sum());
      gs += double((sr * sig).sum());
      gsum += double(sig.sum());
      if (has_pos) {
        loss -= double(s_pos + bias);
        gs -= double(s_pos);
        gsum -= 1.0;
      }
      if (grads) {
        g.row(r).array() = wg * sig;  // sig is a copy, so g may be the memory of s
        if (has_pos) g(r, dc) -= wg;
      }
    }
    sums[3 * c] += loss;
    sums[3 * c + 1] += gs;
    sums[3 * c + 2] += gsum;
  };
  pairwise_sweep_tiles(p, kernel, grads, grads ? grads + 1 : nullptr, ar);
  std::array<double, 3> out{0, 0, 0};
  for (int c = 0; c < sweep_chunks; ++c)  // fixed order
    for (int k = 0; k < 3; ++k) out[uz(k)] += sums[3 * c + k];
  for (auto& v : out) v *= w;
  return out;
}

template <class T>
siglip_saved<T> siglip_make_saved(const matrix_view<const T>& a, const siglip_options& o,
                                  const std::array<double, 3>& r) {
  siglip_saved<T> saved;
  saved.n = a.rows();
  saved.d = a.cols();
  saved.scale = o.scale;
  saved.bias = o.bias;
  saved.reduction = o.reduction;
  saved.loss = static_cast<T>(r[0]);
  saved.grad_log_scale = r[1];
  saved.grad_bias = r[2];
  return saved;
}

template <class T>
siglip_saved<T> siglip_forward_impl(const matrix_view<const T>& a_in,
                                    const matrix_view<const T>& b_in, const siglip_options& o,
                                    workspace ws) {
  const char* fn = siglip_fwd_name;
  siglip_check_inputs(fn, a_in, b_in, o);
  arena ar(ws,
           siglip_bytes<T>(a_in.rows(), a_in.cols(), o, packing_bytes(a_in) + packing_bytes(b_in)) -
               workspace_alignment,
           fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  const auto r = siglip_sweep_impl<T>(a, b, o, 1.0, nullptr, ar);
  check_loss_finite(fn, r[0], 1.0 / o.scale);
  return siglip_make_saved<T>(a_in, o, r);
}

template <class T>
void siglip_check_backward(const char* fn, const matrix_view<const T>& a,
                           const matrix_view<const T>& b, const siglip_saved<T>* saved,
                           const matrix_view<T>& ga, const matrix_view<T>& gb,
                           const siglip_options& o, double upstream) {
  siglip_check_inputs(fn, a, b, o);
  if (saved) {
    CONTRASTIVE_CHECK(saved->n == a.rows() && saved->d == a.cols(), fn, ": 'saved' belongs to a ",
                      saved->n, " x ", saved->d, " batch, the inputs are ", a.rows(), " x ",
                      a.cols());
    CONTRASTIVE_CHECK(
        saved->scale == o.scale && saved->bias == o.bias && saved->reduction == o.reduction, fn,
        ": 'saved' was computed with other options (scale ", saved->scale, ", bias ", saved->bias,
        ") than these (scale ", o.scale, ", bias ", o.bias, ")");
  }
  check_pair_gradients(fn, a, b, ga, gb, upstream);
}

template <class T>
siglip_parameter_gradients siglip_backward_impl(
    const matrix_view<const T>& a_in, const matrix_view<const T>& b_in,
    const siglip_saved<T>* saved, const matrix_view<T>& grad_a, const matrix_view<T>& grad_b,
    const siglip_options& o, double upstream, workspace ws, T* loss_out) {
  const char* fn = saved ? siglip_bwd_name : siglip_fwd_name;
  siglip_check_backward(fn, a_in, b_in, saved, grad_a, grad_b, o, upstream);
  const std::size_t packing =
      packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, siglip_bytes<T>(a_in.rows(), a_in.cols(), o, packing) - workspace_alignment, fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  const matrix_view<T> g[2] = {ga.view(), gb.view()};
  const auto r = siglip_sweep_impl<T>(a, b, o, upstream, g, ar);
  ga.finish();
  gb.finish();
  if (loss_out) *loss_out = static_cast<T>(r[0]);
  const double dlt = saved ? saved->grad_log_scale : r[1];
  const double db = saved ? saved->grad_bias : r[2];
  return siglip_parameter_gradients{dlt * upstream, dlt * upstream / o.scale, db * upstream};
}

}  // namespace detail

/// Scratch bytes for row-major N x D views (see info_nce_workspace_bytes).
template <class T>
std::size_t siglip_workspace_bytes(index_t n, index_t d, const siglip_options& o = {}) {
  return detail::siglip_bytes<T>(n, d, o, 0);
}

/// Exact bytes for these inputs, packing included (gradients assumed row-major).
template <class A, class B,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value, int> = 0>
std::size_t siglip_workspace_bytes(const A& a, const B& b, const siglip_options& o = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  return detail::siglip_bytes<T>(va.rows(), va.cols(), o,
                                 detail::packing_bytes(va) + detail::packing_bytes(vb));
}

/// Forward pass: the loss and the parameter gradients at upstream 1 (O(1) saved state).
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto siglip_forward(const A& a, const B& b, const siglip_options& o = {}, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  detail::require_same_value_type<T, decltype(vb)>();
  return detail::siglip_forward_impl<T>(va, vb, o, ws);
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da and dL/db. Returns
/// upstream * (dL/dlog t, dL/dt, dL/db).
template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
siglip_parameter_gradients
    siglip_backward(const A& a, const B& b, const siglip_saved<T>& saved, GA&& grad_a, GB&& grad_b,
                    const siglip_options& o = {}, double upstream = 1.0, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga), decltype(gb)>();
  return detail::siglip_backward_impl<T>(va, vb, &saved, ga, gb, o, upstream, ws, nullptr);
}

/// Forward and backward in one sweep (three products per tile instead of four); returns the
/// loss, bitwise equal to siglip_forward's. The parameter gradients are written to
/// *parameter_grads when given.
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto siglip_forward_backward(const A& a, const B& b, GA&& grad_a, GB&& grad_b,
                             const siglip_options& o = {},
                             siglip_parameter_gradients* parameter_grads = nullptr,
                             workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  using T = typename decltype(va)::value_type;
  detail::require_same_value_type<T, decltype(vb), decltype(ga), decltype(gb)>();
  T loss = 0;
  const siglip_parameter_gradients pg =
      detail::siglip_backward_impl<T>(va, vb, nullptr, ga, gb, o, 1.0, ws, &loss);
  if (parameter_grads) *parameter_grads = pg;
  return loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_SIGLIP_HPP
// ---- end contrastive/losses/siglip.hpp ----
// ---- begin contrastive/losses/moco.hpp ----
#ifndef CONTRASTIVE_LOSSES_MOCO_HPP
#define CONTRASTIVE_LOSSES_MOCO_HPP

// InfoNCE of N queries a against their keys b and a queue of K negative keys (MoCo, He et al.
// 2020), streamed: Y = [b; queue] (or the queue alone, MoCo's own form, with the positive merged
// in O(N D)) is swept in tiles, so neither the N x (N + K) logits nor an N x K block is formed.
// Gradients for the queries and the keys only; the queue is detached (its tiles get no product).
// Math and gradients: docs/moco.md; the ring buffer: state/negative_queue.hpp.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

// ---- begin contrastive/losses/moco_options.hpp ----
#ifndef CONTRASTIVE_LOSSES_MOCO_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_MOCO_OPTIONS_HPP

// The options of moco.hpp (InfoNCE against a queue of negatives), Eigen-free.


CONTRASTIVE_NAMESPACE_BEGIN

/// Options of the queue loss; tile_rows, tile_cols and num_threads come from tiling_options.
struct moco_options : tiling_options {
  double temperature = 0.07;  ///< tau > 0; logits are <a_i, .> / tau (MoCo v1: 0.07, v2: 0.2)
  /// true: every key of the batch is a candidate (N + K logits per query, the other keys are
  /// negatives too); false: MoCo's own form, the query's own key and the K queued keys (1 + K).
  bool batch_negatives = true;
  loss_reduction reduction = loss_reduction::mean;  ///< mean over the N queries, or sum
  bool accumulate = false;  ///< backward adds into the gradients instead of overwriting them
};

/// What the backward returns besides the input gradients: upstream * dL/dtemperature.
using moco_parameter_gradients = temperature_gradient;

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_MOCO_OPTIONS_HPP
// ---- end contrastive/losses/moco_options.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

/// What the queue-loss forward keeps for the backward: O(N) statistics.
template <class T>
struct moco_saved {
  T loss = 0;                   ///< the loss
  double grad_log_scale = 0;    ///< dL/dtheta, theta = log(1/tau), at upstream 1
  std::vector<T> lse;           ///< N: log-sum-exp over each query's candidates
  index_t n = 0;                ///< queries N
  index_t k = 0;                ///< queued negatives K
  index_t d = 0;                ///< feature dimension D
  double temperature = 0;       ///< the options the statistics belong to
  bool batch_negatives = true;  ///< see moco_options
  loss_reduction reduction = loss_reduction::mean;  ///< reduction of the forward

  /// dL/dtemperature in the three parameterisations, at upstream 1.
  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

constexpr const char* moco_fwd_name = "moco_forward";
constexpr const char* moco_bwd_name = "moco_backward";

template <class T>
void moco_check_inputs(const char* fn, const matrix_view<const T>& a, const matrix_view<const T>& b,
                       const matrix_view<const T>& q, const moco_options& o) {
  check_reduction(fn, o.reduction);
  check_pair_inputs(fn, a, b, o.temperature, o.tile_rows, o.tile_cols);
  check_matrix(fn, "queue", q);
  CONTRASTIVE_CHECK(q.rows() == 0 || q.cols() == a.cols(), fn, ": 'queue' has ", q.cols(),
                    " columns, expected ", a.cols(), " (columns of 'a')");
  check_finite(fn, "queue", q);
}

inline sweep_shape moco_sweep(index_t n, index_t k, index_t d, const moco_options& o) noexcept {
  const index_t my = o.batch_negatives ? (n > k ? n : k) : k;
  return make_sweep_shape(o, false, n, my > 0 ? my : 1, d);
}

template <class T>
std::size_t moco_forward_bytes(index_t n, index_t k, index_t d, const moco_options& o,
                               std::size_t packing) {
  return array_bytes<online_softmax<double>>(static_cast<std::size_t>(n)) + packing +
         pairwise_forward_bytes<T>(moco_sweep(n, k, d, o)) + workspace_alignment;
}

template <class T>
std::size_t moco_backward_bytes(index_t n, index_t k, index_t d, const moco_options& o,
                                std::size_t packing) {
  return 2 * array_bytes<T>(static_cast<std::size_t>(n)) + packing +
         pairwise_backward_bytes<T>(moco_sweep(n, k, d, o)) + workspace_alignment;
}

/// X = a; Y = [b; queue] (batch negatives) or [queue].
template <class T>
pairwise_problem<T> moco_problem(const matrix_view<const T>* a, const matrix_view<const T>* y,
                                 const moco_options& o) {
  return make_pairwise_problem(a, 1, o.batch_negatives ? y : y + 1, o.batch_negatives ? 2 : 1,
                               o.temperature, o);
}

template <class T>
moco_saved<T> moco_forward_impl(const matrix_view<const T>& a_in, const matrix_view<const T>& b_in,
                                const matrix_view<const T>& q_in, const moco_options& o,
                                workspace ws) {
  const char* fn = moco_fwd_name;
  moco_check_inputs(fn, a_in, b_in, q_in, o);
  const index_t n = a_in.rows(), k = q_in.rows(), d = a_in.cols();
  const double lambda_d = 1.0 / o.temperature;
  arena ar(ws,
           moco_forward_bytes<T>(n, k, d, o,
                                 packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(q_in)) -
               workspace_alignment,
           fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> y[2] = {gemm_input(b_in, ar), gemm_input(q_in, ar)};
  auto* stats = ar.take<online_softmax<double>>(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) stats[i] = online_softmax<double>();
  const pairwise_problem<T> p = moco_problem<T>(&a, y, o);
  pairwise_stats<T> st;
  st.row = stats;
  pairwise_forward(p, st, ar);

  moco_saved<T> saved;
  saved.n = n;
  saved.k = k;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.batch_negatives = o.batch_negatives;
  saved.reduction = o.reduction;
  saved.lse.resize(static_cast<std::size_t>(n));
  double loss = 0, dtheta = 0;
  for (index_t i = 0; i < n; ++i) {
    const double s_pos = lambda_d * dot_rows(a, i, y[0], i);
    if (!o.batch_negatives) stats[i].push(s_pos);  // MoCo: the own key joins the queue
    const double lse = stats[i].lse();
    saved.lse[uz(i)] = static_cast<T>(lse);
    loss += lse - s_pos;
    dtheta += stats[i].mean() - s_pos;
  }
  const double w = o.reduction == loss_reduction::mean ? 1.0 / double(n) : 1.0;
  check_loss_finite(fn, w * loss, o.temperature);
  saved.loss = static_cast<T>(w * loss);
  saved.grad_log_scale = w * dtheta;
  return saved;
}

template <class T>
temperature_gradient moco_backward_impl(const matrix_view<const T>& a_in,
                                        const matrix_view<const T>& b_in,
                                        const matrix_view<const T>& q_in,
                                        const moco_saved<T>& saved, const matrix_view<T>& grad_a,
                                        const matrix_view<T>& grad_b, const moco_options& o,
                                        double upstream, workspace ws) {
  const char* fn = moco_bwd_name;
  moco_check_inputs(fn, a_in, b_in, q_in, o);
  CONTRASTIVE_CHECK(saved.n == a_in.rows() && saved.k == q_in.rows() && saved.d == a_in.cols() &&
                        saved.lse.size() == static_cast<std::size_t>(saved.n),
                    fn, ": 'saved' belongs to ", saved.n, " queries and ", saved.k,
                    " queued keys of dimension ", saved.d, ", the inputs are ", a_in.rows(), ", ",
                    q_in.rows(), " and ", a_in.cols());
  CONTRASTIVE_CHECK(
      saved.temperature == o.temperature && saved.batch_negatives == o.batch_negatives &&
          saved.reduction == o.reduction,
      fn, ": 'saved' was computed with other options (temperature ", saved.temperature,
      ", batch_negatives ", saved.batch_negatives, ") than these (temperature ", o.temperature,
      ", batch_negatives ", o.batch_negatives, ")");
  check_pair_gradients(fn, a_in, b_in, grad_a, grad_b, upstream);
  check_no_alias(fn, "grad_a", grad_a, "queue", q_in);
  check_no_alias(fn, "grad_b", grad_b, "queue", q_in);
  // N + K candidates per query; the queue's magnitude enters the queries' gradient.
  check_pair_gradient_bound(fn, a_in.rows() + q_in.rows(),
                            std::max({max_abs(a_in), max_abs(b_in), max_abs(q_in)}), grad_a, grad_b,
                            upstream, 1.0 / o.temperature, 1.0, o.accumulate, saved.grad_log_scale);

  const index_t n = a_in.rows(), k = q_in.rows(), d = a_in.cols();
  const double lambda_d = 1.0 / o.temperature;
  const std::size_t packing = packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(q_in) +
                              packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, moco_backward_bytes<T>(n, k, d, o, packing) - workspace_alignment, fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> y[2] = {gemm_input(b_in, ar), gemm_input(q_in, ar)};
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  T* w = ar.take<T>(static_cast<std::size_t>(n));
  T* lse = ar.take<T>(static_cast<std::size_t>(n));
  const double wv = upstream * (o.reduction == loss_reduction::mean ? 1.0 / double(n) : 1.0);
  for (index_t i = 0; i < n; ++i) {
    w[i] = static_cast<T>(wv);
    lse[i] = saved.lse[uz(i)];
  }
  const pairwise_problem<T> p = moco_problem<T>(&a, y, o);
  pairwise_coefficients<T> coef;
  coef.row_w = w;
  coef.row_lse = lse;
  const matrix_view<T> da = ga.view();
  // dY: the keys' segment only; the queue's has no data pointer, so its tiles form no product.
  const matrix_view<T> dy[2] = {gb.view(), matrix_view<T>()};
  pairwise_backward(p, coef, &da, o.batch_negatives ? dy : dy + 1, ar);

  // The positive, O(N D): dl_i/ds_ii = p_ii - 1, where p_ii is already in the sweep with batch
  // negatives (the diagonal of the keys' segment) and is added here in MoCo's form.
  const matrix_view<T> db = gb.view();
  for (index_t i = 0; i < n; ++i) {
    double g = -1;
    if (!o.batch_negatives)
      g += std::exp(lambda_d * dot_rows(a, i, y[0], i) - double(saved.lse[uz(i)]));
    const T c = static_cast<T>(lambda_d * wv * g);
    for (index_t j = 0; j < d; ++j) {
      da(i, j) += c * y[0](i, j);
      db(i, j) += c * a(i, j);
    }
  }
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Scratch bytes for row-major N x D queries/keys and a K x D queue.
template <class T>
std::size_t moco_workspace_bytes(index_t n, index_t k, index_t d, const moco_options& o = {}) {
  const std::size_t f = detail::moco_forward_bytes<T>(n, k, d, o, 0);
  const std::size_t b = detail::moco_backward_bytes<T>(n, k, d, o, 0);
  return f > b ? f : b;
}

/// Exact bytes for these inputs, packing included (gradients assumed row-major).
template <
    class A, class B, class Q,
    std::enable_if_t<
        is_tensor_like<A>::value && is_tensor_like<B>::value && is_tensor_like<Q>::value, int> = 0>
std::size_t moco_workspace_bytes(const A& a, const B& b, const Q& queue,
                                 const moco_options& o = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto vq = detail::input_view(queue);
  using T = typename decltype(va)::value_type;
  const std::size_t pack =
      detail::packing_bytes(va) + detail::packing_bytes(vb) + detail::packing_bytes(vq);
  const std::size_t f = detail::moco_forward_bytes<T>(va.rows(), vq.rows(), va.cols(), o, pack);
  const std::size_t bw = detail::moco_backward_bytes<T>(va.rows(), vq.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

/// Forward pass: queries a, keys b (N x D), queue (K x D, e.g. negative_queue::view()).
template <class A, class B, class Q>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<Q>)
auto moco_forward(const A& a, const B& b, const Q& queue, const moco_options& o = {},
                  workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto vq = detail::input_view(queue);
  using T = typename decltype(va)::value_type;
  detail::require_same_value_type<T, decltype(vb), decltype(vq)>();
  return detail::moco_forward_impl<T>(va, vb, vq, o, ws);
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da and dL/db; the
/// queue gets no gradient. Returns upstream * dL/dtemperature.
template <class A, class B, class Q, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<Q>&& writable_tensor<GA&&>&&
                         writable_tensor<GB&&>)
moco_parameter_gradients
    moco_backward(const A& a, const B& b, const Q& queue, const moco_saved<T>& saved, GA&& grad_a,
                  GB&& grad_b, const moco_options& o = {}, double upstream = 1.0,
                  workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto vq = detail::input_view(queue);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(vq), decltype(ga),
                                  decltype(gb)>();
  return detail::moco_backward_impl<T>(va, vb, vq, saved, ga, gb, o, upstream, ws);
}

/// Forward and backward in one call; returns the loss. The temperature gradient is written to
/// *parameter_grads when given.
template <class A, class B, class Q, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<Q>&& writable_tensor<GA&&>&&
                         writable_tensor<GB&&>)
auto moco_forward_backward(const A& a, const B& b, const Q& queue, GA&& grad_a, GB&& grad_b,
                           const moco_options& o = {},
                           moco_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto saved = moco_forward(a, b, queue, o, ws);
  const temperature_gradient tg = moco_backward(a, b, queue, saved, std::forward<GA>(grad_a),
                                                std::forward<GB>(grad_b), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_MOCO_HPP
// ---- end contrastive/losses/moco.hpp ----
// ---- begin contrastive/losses/feature_separation.hpp ----
#ifndef CONTRASTIVE_LOSSES_FEATURE_SEPARATION_HPP
#define CONTRASTIVE_LOSSES_FEATURE_SEPARATION_HPP

// Deep feature separation (Jiang et al., "Understanding and Constructing Latent Modality
// Structures in Multi-modal Representation Learning", CVPR 2023; docs/feature_separation.md):
//
//   L_Sep = w_o L_Ortho + w_c L^i_Con + w_u L^i_Uni     (weights 1, 1, 1 by default)
//
// Inputs (N x D each, row j = pair j): v, u the shared (aligned) image and text features;
// vi, ui the "independent" features of an extra head of width D; via, uia the independent
// features of the augmented views.
//
// - Orthogonality:  L_Ortho = (1/N) sum_j (<v_j, vi_j>^2 + <u_j, ui_j>^2).
// - In-modal contrastive: L^i_Con = InfoNCE(vi, via) + InfoNCE(ui, uia), one-direction InfoNCE
//   (mean reduction) computed by info_nce_forward / info_nce_backward, with the temperature
//   shared with the base loss L_Con. Reading chosen (the printed numerator <z^i_Vj, z^i_Vj> is
//   identically 1): the positive of vi_j is the augmented view's via_j and the candidates are
//   the rows of via, mirroring L_Con.
// - Uniformity, G_t(x, y) = exp(-t ||x - y||^2), t = 2 (the paper's value):
//   * literal (default, the paper's text): log((1/N) sum_{j,k} [G_t(vi_j, vi_k) + G_t(ui_j, ui_k)]),
//     j = k included, one log over both modalities;
//   * wang_isola (option, after Wang & Isola 2020): per modality log((1/(N(N-1))) sum_{j != k} G_t),
//     the two logs summed (needs N >= 2).
//   ||x - y||^2 = ||x||^2 + ||y||^2 - 2<x, y> from tiled Gram products: the N x N kernel matrix
//   is never stored (tiles of tile_rows x tile_cols, per-row log-sum-exp statistics in double).
//
// The independent head is not specified by the paper; library guidance: a linear layer of width
// D on the pooled backbone output, L2-normalised, used in training only, no stop-gradients.
//
// Each term has its own forward / backward / forward_backward and the combined loss takes the
// weights. Backward writes (or, with `accumulate`, adds) upstream * the gradients; the combined
// backward writes all six gradients (those a term does not touch get only the other terms).
// The temperature gradient of L^i_Con is returned as contrastive::temperature_gradient.
//
// Inputs are used as given (normalise them with l2_normalize); a zero-norm row or a non-finite
// value is contrastive::invalid_argument. Threads: OpenMP over row tiles of the uniformity term
// (InfoNCE uses its own); results never depend on the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

// ---- begin contrastive/core/modal_common.hpp ----
#ifndef CONTRASTIVE_CORE_MODAL_COMMON_HPP
#define CONTRASTIVE_CORE_MODAL_COMMON_HPP

// Pieces shared by the modality-structure regularisers (docs/README.md#modality-structure-regularisers): the
// row check (every value finite, no row of zero norm); their threads come from core/parallel.hpp. A zero-norm
// row is bad input for these losses (their inputs are meant to be L2-normalised embeddings).

#include <cmath>


CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

/// Squared L2 norm of row i, accumulated in double.
template <class T>
double row_squared_norm(const matrix_view<const T>& x, index_t i) noexcept {
  const T* r = x.row_ptr(i);
  const index_t cs = x.col_stride();
  double s = 0;
  if (cs == 1) {
    for (index_t k = 0; k < x.cols(); ++k) s += double(r[k]) * double(r[k]);
  } else {
    for (index_t k = 0; k < x.cols(); ++k) s += double(r[k * cs]) * double(r[k * cs]);
  }
  return s;
}

/// Called for a row whose squared norm is not finite and positive: reports a non-finite value
/// or a zero-norm row. Returns when the row is fine after all (a finite row whose squared norm
/// overflowed double). Row i of '`name`' is given as `cols` host values at `values`, `stride`
/// apart (the CUDA check_rows passes its host copy of a device row).
template <class T>
CONTRASTIVE_COLD void report_bad_row_values(const char* fn, const char* name, index_t i,
                                            const T* values, index_t cols, index_t stride) {
  bool all_zero = true;
  for (index_t k = 0; k < cols; ++k) {
    const T v = values[k * stride];
    CONTRASTIVE_CHECK(std::isfinite(v), fn, ": '", name, "' has a non-finite value (", v,
                      ") at row ", i, ", column ", k);
    all_zero = all_zero && v == T(0);
  }
  CONTRASTIVE_CHECK(!all_zero, fn, ": '", name, "' has a row of zero norm (row ", i,
                    "); the inputs must be non-zero embeddings (L2-normalise them first)");
}

template <class T>
CONTRASTIVE_COLD void report_bad_row(const char* fn, const char* name,
                                     const matrix_view<const T>& x, index_t i) {
  report_bad_row_values(fn, name, i, x.row_ptr(i), x.cols(), x.col_stride());
}

/// Fast test of one row's squared norm (computed by the caller while it reads the row anyway).
inline bool row_norm_ok(double squared_norm) noexcept {
  return std::isfinite(squared_norm) && squared_norm > 0;
}

/// One O(N D) pass: every value finite and every row of non-zero norm.
template <class T>
void check_rows(const char* fn, const char* name, const matrix_view<const T>& x) {
  for (index_t i = 0; i < x.rows(); ++i) {
    if (CONTRASTIVE_UNLIKELY(!row_norm_ok(row_squared_norm(x, i)))) report_bad_row(fn, name, x, i);
  }
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_MODAL_COMMON_HPP
// ---- end contrastive/core/modal_common.hpp ----
// ---- begin contrastive/losses/feature_separation_options.hpp ----
#ifndef CONTRASTIVE_LOSSES_FEATURE_SEPARATION_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_FEATURE_SEPARATION_OPTIONS_HPP

// The options of feature_separation.hpp, the checks that read no element and the uniformity
// term's composition from its log-sums, apart so that the block sweep's plan
// (core/block_sweep.hpp) and the CUDA path (cuda/feature_separation.cuh) share them without
// Eigen.

#include <math.h>

#include <cmath>


CONTRASTIVE_NAMESPACE_BEGIN

/// The two readings of the uniformity term.
enum class uniformity_form {
  literal,    // log((1/N) sum_{j,k} [G(vi) + G(ui)]), j = k included (the paper's text)
  wang_isola  // sum over modalities of log((1/(N(N-1))) sum_{j != k} G)
};

/// Options of deep feature separation; tile_rows x tile_cols tiles the uniformity sweep and the
/// in-modal InfoNCE calls, num_threads the uniformity sweep (tiling_options).
struct feature_separation_options : tiling_options {
  double orthogonality_weight = 1;
  double contrastive_weight = 1;
  double uniformity_weight = 1;
  double temperature = 0.07;  // in-modal InfoNCE temperature (shared with the base loss)
  double uniformity_t = 2;    // t of G_t(x, y) = exp(-t ||x - y||^2), > 0
  uniformity_form uniformity = uniformity_form::literal;
  bool accumulate = false;  // backward adds into the gradients instead of overwriting them
};

/// What every backward returns besides the input gradients: upstream * dL/dtemperature (from
/// the in-modal InfoNCE term; zero for the terms without a temperature).
using feature_separation_parameter_gradients = temperature_gradient;

namespace detail {

// ---- checks that read no element (the CPU adds its scans, the GPU its device scans) ----

inline void fs_check_options(const char* fn, const feature_separation_options& o) {
  CONTRASTIVE_CHECK(std::isfinite(o.orthogonality_weight) && o.orthogonality_weight >= 0, fn,
                    ": 'orthogonality_weight' must be finite and >= 0, got ",
                    o.orthogonality_weight);
  CONTRASTIVE_CHECK(std::isfinite(o.contrastive_weight) && o.contrastive_weight >= 0, fn,
                    ": 'contrastive_weight' must be finite and >= 0, got ", o.contrastive_weight);
  CONTRASTIVE_CHECK(std::isfinite(o.uniformity_weight) && o.uniformity_weight >= 0, fn,
                    ": 'uniformity_weight' must be finite and >= 0, got ", o.uniformity_weight);
  check_temperature(fn, o.temperature);
  CONTRASTIVE_CHECK(std::isfinite(o.uniformity_t) && o.uniformity_t > 0, fn,
                    ": 'uniformity_t' must be finite and > 0, got ", o.uniformity_t);
  check_tiles(fn, o.tile_rows, o.tile_cols);
}

inline void fs_check_upstream(const char* fn, double upstream) {
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
}

template <class T, class S>
void fs_check_same_shape(const char* fn, const char* name, const matrix_view<const T, S>& x,
                         const char* ref_name, const matrix_view<const T, S>& r) {
  check_matrix(fn, name, x);
  CONTRASTIVE_CHECK(x.rows() == r.rows(), fn, ": '", name, "' has ", x.rows(), " rows, expected ",
                    r.rows(), " (rows of '", ref_name, "')");
  CONTRASTIVE_CHECK(x.cols() == r.cols(), fn, ": '", name, "' has ", x.cols(),
                    " columns, expected ", r.cols(), " (columns of '", ref_name, "')");
}

/// Inputs named in `names` (host or device views): all the shape of the first, N > 0, D > 0.
template <class T, class S>
void fs_check_shapes(const char* fn, const matrix_view<const T, S>* const* in,
                     const char* const* names, int count) {
  check_matrix(fn, names[0], *in[0]);
  CONTRASTIVE_CHECK(in[0]->rows() > 0, fn, ": empty batch ('", names[0], "' has 0 rows)");
  CONTRASTIVE_CHECK(in[0]->cols() > 0, fn, ": '", names[0], "' has 0 columns (D must be > 0)");
  for (int k = 1; k < count; ++k) fs_check_same_shape(fn, names[k], *in[k], names[0], *in[0]);
}

/// The uniformity term from the log-sums lv, lu of G_t over the two modalities' pairs (n rows
/// each), and the normaliser log S of each modality's gradient: the shared sum for the literal
/// form, the modality's own for wang_isola. Used by the CPU term, the block-sweep emulator and
/// the GPU.
CONTRASTIVE_HOST_DEVICE inline double uniformity_loss(uniformity_form f, index_t n, double lv,
                                                      double lu) noexcept {
  if (f == uniformity_form::wang_isola) {
    const double pairs = ::log(double(n) * double(n - 1));
    return (lv - pairs) + (lu - pairs);
  }
  return logaddexp(lv, lu) - ::log(double(n));
}
CONTRASTIVE_HOST_DEVICE inline void uniformity_normalizers(uniformity_form f, double lv, double lu,
                                                           double* nv, double* nu) noexcept {
  *nv = f == uniformity_form::wang_isola ? lv : logaddexp(lv, lu);
  *nu = f == uniformity_form::wang_isola ? lu : *nv;
}

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_FEATURE_SEPARATION_OPTIONS_HPP
// ---- end contrastive/losses/feature_separation_options.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

template <class T>
struct feature_orthogonality_saved {
  T loss = 0;
  index_t n = 0, d = 0;
};

template <class T>
struct in_modal_contrastive_saved {
  T loss = 0;
  info_nce_saved<T> a, b;  // InfoNCE(a_ind, a_ind_aug) and InfoNCE(b_ind, b_ind_aug)
};

template <class T>
struct feature_uniformity_saved {
  T loss = 0;
  index_t n = 0, d = 0;
  uniformity_form form = uniformity_form::literal;
  double t = 2;
  double log_sum_v = 0, log_sum_u = 0;  // log of sum_{j,k} G over each modality's pairs
};

template <class T>
struct feature_separation_saved {
  T loss = 0;
  feature_orthogonality_saved<T> orthogonality;  // unweighted terms
  in_modal_contrastive_saved<T> contrastive;
  feature_uniformity_saved<T> uniformity;
  double orthogonality_weight = 1, contrastive_weight = 1, uniformity_weight = 1;
};

namespace detail {

/// Inputs named in `names`: all the shape of the first, N > 0, D > 0, finite, no zero-norm row.
template <class T>
void fs_check_inputs(const char* fn, const matrix_view<const T>* const* in,
                     const char* const* names, int count) {
  fs_check_shapes(fn, in, names, count);
  for (int k = 0; k < count; ++k) check_rows(fn, names[k], *in[k]);
}

template <class T>
void fs_check_outputs(const char* fn, const matrix_view<T>* const* out,
                      const char* const* out_names, int count,
                      const matrix_view<const T>* const* in, const char* const* in_names,
                      int in_count) {
  const index_t n = in[0]->rows(), d = in[0]->cols();
  for (int k = 0; k < count; ++k) {
    check_matrix(fn, out_names[k], *out[k]);
    check_shape(fn, out_names[k], *out[k], n, d, "the shape of the inputs");
    check_writable_layout(fn, out_names[k], *out[k]);
    for (int j = 0; j < in_count; ++j)
      check_no_alias(fn, out_names[k], *out[k], in_names[j], *in[j]);
    for (int j = 0; j < k; ++j) check_no_alias(fn, out_names[k], *out[k], out_names[j], *out[j]);
  }
}

/// Rejects a backward whose gradients could overflow T, before anything is written. With
/// m = max|x|: |dL/dx| <= |upstream| (2 w_o D m^3 + 4 (N + 1) w_c m / tau + 8 t w_u m), the
/// orthogonality, in-modal InfoNCE (check_pair_gradient_bound) and uniformity bounds; `accumulate`
/// adds what the outputs hold. `in_modal` (the in-modal InfoNCE forwards, or null) gives the
/// temperature gradient, which must be finite too.
template <class T>
void fs_check_gradient_bound(const char* fn, const matrix_view<T>* const* out, int count,
                             const matrix_view<const T>* const* in, int in_count,
                             const feature_separation_options& o, double upstream, double w_o,
                             double w_c, double w_u,
                             const in_modal_contrastive_saved<T>* in_modal) {
  double m = 0, existing = 0;
  for (int k = 0; k < in_count; ++k) m = std::max(m, max_abs(*in[k]));
  if (o.accumulate)
    for (int k = 0; k < count; ++k) existing = std::max(existing, max_abs(*out[k]));
  const double d = static_cast<double>(in[0]->cols()), n = static_cast<double>(in[0]->rows());
  const double m1 = at_least_one(m);  // each factor at least 1: partial products are bounded too
  const double bound = at_least_one(upstream) *
                       (2 * at_least_one(w_o) * d * m1 * m1 * m1 +
                        4 * (n + 1) * at_least_one(w_c) * m1 * at_least_one(1 / o.temperature) +
                        8 * at_least_one(o.uniformity_t) * at_least_one(w_u) * m1);
  check_output_bound<T>(fn, "gradients", bound + existing);
  if (in_modal) {
    // What each in-modal InfoNCE backward checks besides its gradients, so that none throws
    // after the orthogonality gradients are written (a fuzz run found that order).
    // (An array, not a braced list: nvcc's front end rejects the latter in a range-for here.)
    const double grads[2] = {in_modal->a.grad_log_scale, in_modal->b.grad_log_scale};
    for (const double g : grads)
      check_pair_logit_bounds<T>(fn, in[0]->rows(), in[0]->cols(), m, upstream * w_c,
                                 1 / o.temperature, 1.0, g);
    check_output_bound<double>(
        fn, "temperature gradient",
        std::abs(upstream * w_c * (in_modal->a.grad_log_scale + in_modal->b.grad_log_scale)) /
            o.temperature);
  }
}

template <class T>
void fs_clear(const matrix_view<T>& out) {
  for (index_t i = 0; i < out.rows(); ++i)
    for (index_t k = 0; k < out.cols(); ++k) out(i, k) = T(0);
}

// ---- orthogonality ----

template <class T>
double fs_ortho_forward(const matrix_view<const T>& v, const matrix_view<const T>& u,
                        const matrix_view<const T>& vi, const matrix_view<const T>& ui) {
  double s = 0;
  for (index_t j = 0; j < v.rows(); ++j) {
    const double a = dot_rows(v, j, vi, j), b = dot_rows(u, j, ui, j);
    s += a * a + b * b;
  }
  return s / double(v.rows());
}

/// Adds (always) scale * gradients of L_Ortho into the four outputs.
template <class T>
void fs_ortho_backward(const matrix_view<const T>& v, const matrix_view<const T>& u,
                       const matrix_view<const T>& vi, const matrix_view<const T>& ui,
                       const matrix_view<T>& gv, const matrix_view<T>& gu,
                       const matrix_view<T>& gvi, const matrix_view<T>& gui, double scale) {
  const index_t n = v.rows(), d = v.cols();
  const double c = 2 * scale / double(n);
  for (index_t j = 0; j < n; ++j) {
    const double a = c * dot_rows(v, j, vi, j), b = c * dot_rows(u, j, ui, j);
    for (index_t k = 0; k < d; ++k) {
      gv(j, k) += static_cast<T>(a * double(vi(j, k)));
      gvi(j, k) += static_cast<T>(a * double(v(j, k)));
      gu(j, k) += static_cast<T>(b * double(ui(j, k)));
      gui(j, k) += static_cast<T>(b * double(u(j, k)));
    }
  }
}

// ---- uniformity (tiled) ----

/// One modality prepared for the sweep: a gemm-ready view and the squared row norms.
template <class T>
struct fs_modality {
  row_major_matrix<T> packed;  // used when the input is not gemm_ready
  matrix_view<const T> x;
  std::vector<double> sq;

  explicit fs_modality(const matrix_view<const T>& in) {
    if (gemm_ready(in)) {
      x = in;
    } else {
      packed.resize(in.rows(), in.cols());
      for (index_t i = 0; i < in.rows(); ++i)
        for (index_t k = 0; k < in.cols(); ++k) packed(i, k) = in(i, k);
      x = matrix_view<const T>(packed.data(), in.rows(), in.cols(), in.cols(), 1);
    }
    sq.resize(static_cast<std::size_t>(in.rows()));
    for (index_t i = 0; i < in.rows(); ++i)
      sq[static_cast<std::size_t>(i)] = row_squared_norm(in, i);
  }
};

/// Exponent e_jk = -t ||x_j - x_k||^2 of tile (I, J) written over the Gram tile s (Tr x Tc,
/// row-major, in double); the diagonal is 0 (literal) or -inf (excluded, wang_isola).
template <class T>
void fs_exponents(const fs_modality<T>& m, index_t i0, index_t tr, index_t j0, index_t tc,
                  const T* s, double* e, double t, bool exclude_diagonal) noexcept {
  for (index_t a = 0; a < tr; ++a) {
    const double na = m.sq[static_cast<std::size_t>(i0 + a)];
    for (index_t b = 0; b < tc; ++b) {
      double d2 = na + m.sq[static_cast<std::size_t>(j0 + b)] - 2 * double(s[a * tc + b]);
      d2 = d2 > 0 ? d2 : 0;
      e[a * tc + b] = -t * d2;
    }
    if (i0 + a >= j0 && i0 + a < j0 + tc)
      e[a * tc + (i0 + a - j0)] = exclude_diagonal ? -infinity<double>() : 0.0;
  }
}

/// Forward sweep of one modality: log sum_{j,k} G (j != k when excluded).
template <class T>
double fs_uniformity_log_sum(const fs_modality<T>& m, const feature_separation_options& o,
                             bool exclude_diagonal) {
  const index_t n = m.x.rows();
  const index_t tr = std::min(o.tile_rows, n), tc = std::min(o.tile_cols, n);
  const index_t row_tiles = (n + tr - 1) / tr;
  const int threads = resolve_threads(o.num_threads, double(n) * double(n) * double(m.x.cols()));
  const int used = threads < row_tiles ? threads : static_cast<int>(row_tiles);
  std::vector<T> s_buf(static_cast<std::size_t>(used * tr * tc));
  std::vector<double> e_buf(static_cast<std::size_t>(used * tr * tc));
  std::vector<online_lse<double>> rows(static_cast<std::size_t>(n));
  parallel_for(row_tiles, used, [&](index_t it, int tid) {
    T* s = s_buf.data() + static_cast<std::size_t>(tid) * static_cast<std::size_t>(tr * tc);
    double* e = e_buf.data() + static_cast<std::size_t>(tid) * static_cast<std::size_t>(tr * tc);
    const index_t i0 = it * tr, ni = std::min(tr, n - i0);
    const auto xi = map_rows(m.x.middle_rows(i0, ni));
    for (index_t j0 = 0; j0 < n; j0 += tc) {
      const index_t nj = std::min(tc, n - j0);
      row_map<T> sm(s, ni, nj, Eigen::OuterStride<>(nj));
      sm.noalias() = xi * map_rows(m.x.middle_rows(j0, nj)).transpose();
      fs_exponents(m, i0, ni, j0, nj, s, e, o.uniformity_t, exclude_diagonal);
      for (index_t a = 0; a < ni; ++a) {
        const double* er = e + a * nj;
        double mx = -infinity<double>();
        for (index_t b = 0; b < nj; ++b) mx = er[b] > mx ? er[b] : mx;
        if (mx == -infinity<double>()) continue;
        online_lse<double> part;
        part.max = mx;
        part.sum = 0;
        for (index_t b = 0; b < nj; ++b) part.sum += std::exp(er[b] - mx);
        rows[static_cast<std::size_t>(i0 + a)].merge(part);
      }
    }
  });
  online_lse<double> total;
  for (const auto& r : rows) total.merge(r);
  return total.value();
}

/// Adds scale * d(log S)/dx into g for one modality, with log S = lambda (the normaliser the
/// weights W_jk = G_jk / S use): dx_j = -4 t scale sum_k W_jk (x_j - x_k).
template <class T>
void fs_uniformity_backward(const fs_modality<T>& m, const feature_separation_options& o,
                            bool exclude_diagonal, double lambda, double scale,
                            const matrix_view<T>& g) {
  const index_t n = m.x.rows(), d = m.x.cols();
  const index_t tr = std::min(o.tile_rows, n), tc = std::min(o.tile_cols, n);
  const index_t row_tiles = (n + tr - 1) / tr;
  const int threads = resolve_threads(o.num_threads, double(n) * double(n) * double(m.x.cols()));
  const int used = threads < row_tiles ? threads : static_cast<int>(row_tiles);
  const std::size_t tile = static_cast<std::size_t>(tr * tc);
  std::vector<T> s_buf(static_cast<std::size_t>(used) * tile);
  std::vector<double> e_buf(static_cast<std::size_t>(used) * tile);
  std::vector<T> acc_buf(static_cast<std::size_t>(used * tr * d));
  std::vector<double> rs_buf(static_cast<std::size_t>(used * tr));
  const double c = -4 * o.uniformity_t * scale;
  parallel_for(row_tiles, used, [&](index_t it, int tid) {
    T* s = s_buf.data() + static_cast<std::size_t>(tid) * tile;
    double* e = e_buf.data() + static_cast<std::size_t>(tid) * tile;
    T* acc = acc_buf.data() + static_cast<std::size_t>(tid) * static_cast<std::size_t>(tr * d);
    double* rs = rs_buf.data() + static_cast<std::size_t>(tid) * static_cast<std::size_t>(tr);
    const index_t i0 = it * tr, ni = std::min(tr, n - i0);
    const auto xi = map_rows(m.x.middle_rows(i0, ni));
    row_map<T> am(acc, ni, d, Eigen::OuterStride<>(d));
    am.setZero();
    std::fill(rs, rs + ni, 0.0);
    for (index_t j0 = 0; j0 < n; j0 += tc) {
      const index_t nj = std::min(tc, n - j0);
      const auto xj = map_rows(m.x.middle_rows(j0, nj));
      row_map<T> sm(s, ni, nj, Eigen::OuterStride<>(nj));
      sm.noalias() = xi * xj.transpose();
      fs_exponents(m, i0, ni, j0, nj, s, e, o.uniformity_t, exclude_diagonal);
      for (index_t a = 0; a < ni; ++a) {
        double r = 0;
        for (index_t b = 0; b < nj; ++b) {
          const double w = std::exp(e[a * nj + b] - lambda);
          s[a * nj + b] = static_cast<T>(w);
          r += w;
        }
        rs[a] += r;
      }
      am.noalias() += sm * xj;  // sum_k W_jk x_k
    }
    for (index_t a = 0; a < ni; ++a)
      for (index_t k = 0; k < d; ++k)
        g(i0 + a, k) +=
            static_cast<T>(c * (rs[a] * double(m.x(i0 + a, k)) - double(acc[a * d + k])));
  });
}

template <class T>
feature_uniformity_saved<T> fs_uniformity_forward(const char* fn, const matrix_view<const T>& vi,
                                                  const matrix_view<const T>& ui,
                                                  const feature_separation_options& o) {
  const index_t n = vi.rows();
  const bool wang = o.uniformity == uniformity_form::wang_isola;
  CONTRASTIVE_CHECK(!wang || n >= 2, fn,
                    ": the wang_isola uniformity needs at least 2 rows (pairs j != k), got ", n);
  feature_uniformity_saved<T> s;
  s.n = n;
  s.d = vi.cols();
  s.form = o.uniformity;
  s.t = o.uniformity_t;
  s.log_sum_v = fs_uniformity_log_sum(fs_modality<T>(vi), o, wang);
  s.log_sum_u = fs_uniformity_log_sum(fs_modality<T>(ui), o, wang);
  s.loss = static_cast<T>(uniformity_loss(o.uniformity, n, s.log_sum_v, s.log_sum_u));
  return s;
}

/// Adds scale * dL_Uni into gvi and gui.
template <class T>
void fs_uniformity_backward_both(const char* fn, const matrix_view<const T>& vi,
                                 const matrix_view<const T>& ui,
                                 const feature_uniformity_saved<T>& s,
                                 const feature_separation_options& o, const matrix_view<T>& gvi,
                                 const matrix_view<T>& gui, double scale) {
  CONTRASTIVE_CHECK(
      s.n == vi.rows() && s.d == vi.cols() && s.form == o.uniformity && s.t == o.uniformity_t, fn,
      ": 'saved' (uniformity) was computed for a ", s.n, " x ", s.d, " batch with t = ", s.t,
      ", these are ", vi.rows(), " x ", vi.cols(), " with t = ", o.uniformity_t,
      " (or another uniformity form)");
  const bool wang = o.uniformity == uniformity_form::wang_isola;
  double lv = 0, lu = 0;
  uniformity_normalizers(o.uniformity, s.log_sum_v, s.log_sum_u, &lv, &lu);
  fs_uniformity_backward(fs_modality<T>(vi), o, wang, lv, scale, gvi);
  fs_uniformity_backward(fs_modality<T>(ui), o, wang, lu, scale, gui);
}

// ---- in-modal contrastive ----

inline info_nce_options fs_info_nce_options(const feature_separation_options& o, index_t n,
                                            index_t d) {
  info_nce_options io;
  io.temperature = o.temperature;
  io.symmetric = false;
  io.tile_rows = o.tile_rows;
  io.tile_cols = o.tile_cols;
  io.accumulate = true;
  // Small problems run on one thread (InfoNCE's results do not depend on it either).
  io.num_threads = resolve_threads(o.num_threads, double(n) * double(n) * double(d));
  return io;
}

template <class T>
in_modal_contrastive_saved<T> fs_contrastive_forward(
    const matrix_view<const T>& vi, const matrix_view<const T>& ui, const matrix_view<const T>& via,
    const matrix_view<const T>& uia, const feature_separation_options& o, workspace ws) {
  const info_nce_options io = fs_info_nce_options(o, vi.rows(), vi.cols());
  in_modal_contrastive_saved<T> s;
  s.a = info_nce_forward(vi, via, io, ws);
  s.b = info_nce_forward(ui, uia, io, ws);
  s.loss = static_cast<T>(double(s.a.loss) + double(s.b.loss));
  return s;
}

/// Adds scale * dL^i_Con into the four outputs; returns scale * the temperature gradient.
template <class T>
temperature_gradient fs_contrastive_backward(
    const matrix_view<const T>& vi, const matrix_view<const T>& ui, const matrix_view<const T>& via,
    const matrix_view<const T>& uia, const in_modal_contrastive_saved<T>& s,
    const matrix_view<T>& gvi, const matrix_view<T>& gui, const matrix_view<T>& gvia,
    const matrix_view<T>& guia, const feature_separation_options& o, double scale, workspace ws) {
  const info_nce_options io = fs_info_nce_options(o, vi.rows(), vi.cols());
  const temperature_gradient a = info_nce_backward(vi, via, s.a, gvi, gvia, io, scale, ws);
  const temperature_gradient b = info_nce_backward(ui, uia, s.b, gui, guia, io, scale, ws);
  return temperature_gradient::from_log_scale(a.log_scale + b.log_scale, o.temperature);
}

}  // namespace detail

/// Bytes of scratch the in-modal InfoNCE calls use for N x D row-major inputs (the workspace of
/// every feature-separation call serves them; the orthogonality and uniformity terms keep their
/// O(N + tile^2) scratch themselves). Pass at least this much to make those calls
/// allocation-free.
template <class T>
std::size_t feature_separation_workspace_bytes(index_t n, index_t d,
                                               const feature_separation_options& o = {}) {
  return info_nce_workspace_bytes<T>(n, d, detail::fs_info_nce_options(o, n, d));
}

/// The same for these inputs (the augmented views' layouts add their packing).
template <class A, class B, class AI, class BI, class AIA, class BIA,
          std::enable_if_t<is_tensor_like<AI>::value && is_tensor_like<AIA>::value, int> = 0>
std::size_t feature_separation_workspace_bytes(const A&, const B&, const AI& a_ind, const BI& b_ind,
                                               const AIA& a_ind_aug, const BIA& b_ind_aug,
                                               const feature_separation_options& o = {}) {
  const auto va = detail::input_view(a_ind);
  const info_nce_options io = detail::fs_info_nce_options(o, va.rows(), va.cols());
  const std::size_t x = info_nce_workspace_bytes(a_ind, a_ind_aug, io);
  const std::size_t y = info_nce_workspace_bytes(b_ind, b_ind_aug, io);
  return x > y ? x : y;
}

// ---------------------------------------------------------------------------------------------
// Orthogonality term.

/// L_Ortho = (1/N) sum_j (<v_j, vi_j>^2 + <u_j, ui_j>^2).
template <class A, class B, class AI, class BI>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<AI>&& tensor_like<BI>)
auto feature_orthogonality_forward(const A& a, const B& b, const AI& a_ind, const BI& b_ind,
                                   const feature_separation_options& o = {}, workspace ws = {}) {
  (void)ws;                                           // these terms need no caller scratch
  if constexpr (detail::is_device_input<A>::value) {  // cuda/feature_separation.cuh
    return detail::device_backend_of<detail::feature_orthogonality_tag, A>::type::forward(
        as_view(a), as_view(b), as_view(a_ind), as_view(b_ind), o);
  } else {
    const char* fn = "feature_orthogonality_forward";
    const auto x0 = detail::input_view(a);
    using T = typename decltype(x0)::value_type;
    const matrix_view<const T> x1 = detail::input_view(b), x2 = detail::input_view(a_ind),
                               x3 = detail::input_view(b_ind);
    const matrix_view<const T>* in[4] = {&x0, &x1, &x2, &x3};
    const char* names[4] = {"a", "b", "a_ind", "b_ind"};
    detail::fs_check_options(fn, o);
    detail::fs_check_inputs(fn, in, names, 4);
    feature_orthogonality_saved<T> s;
    s.n = x0.rows();
    s.d = x0.cols();
    s.loss = static_cast<T>(detail::fs_ortho_forward(x0, x1, x2, x3));
    return s;
  }
}

/// Backward of an orthogonality forward run on device views (cuda/feature_separation.cuh).
template <class A, class B, class AI, class BI, class GA, class GB, class GAI, class GBI>
feature_separation_parameter_gradients feature_orthogonality_backward(
    const A& a, const B& b, const AI& a_ind, const BI& b_ind,
    const cuda::feature_orthogonality_device_saved& saved, GA&& grad_a, GB&& grad_b,
    GAI&& grad_a_ind, GBI&& grad_b_ind, const feature_separation_options& o = {},
    double upstream = 1.0, workspace = {}) {
  const decltype(as_view(grad_a)) g[4] = {as_view(grad_a), as_view(grad_b), as_view(grad_a_ind),
                                          as_view(grad_b_ind)};
  return detail::device_backend_of<detail::feature_orthogonality_tag, A>::type::backward(
      as_view(a), as_view(b), as_view(a_ind), as_view(b_ind), saved, g, o, upstream);
}

template <class A, class B, class AI, class BI, class T, class GA, class GB, class GAI, class GBI>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& tensor_like<AI>&& tensor_like<BI>&& writable_tensor<GA&&>&&
        writable_tensor<GB&&>&& writable_tensor<GAI&&>&& writable_tensor<GBI&&>)
feature_separation_parameter_gradients
    feature_orthogonality_backward(const A& a, const B& b, const AI& a_ind, const BI& b_ind,
                                   const feature_orthogonality_saved<T>& saved, GA&& grad_a,
                                   GB&& grad_b, GAI&& grad_a_ind, GBI&& grad_b_ind,
                                   const feature_separation_options& o = {}, double upstream = 1.0,
                                   workspace ws = {}) {
  const char* fn = "feature_orthogonality_backward";
  (void)ws;  // these terms need no caller scratch
  const matrix_view<const T> x0 = detail::input_view(a), x1 = detail::input_view(b),
                             x2 = detail::input_view(a_ind), x3 = detail::input_view(b_ind);
  const matrix_view<T> g0 = detail::output_view(std::forward<GA>(grad_a)),
                       g1 = detail::output_view(std::forward<GB>(grad_b)),
                       g2 = detail::output_view(std::forward<GAI>(grad_a_ind)),
                       g3 = detail::output_view(std::forward<GBI>(grad_b_ind));
  const matrix_view<const T>* in[4] = {&x0, &x1, &x2, &x3};
  const char* names[4] = {"a", "b", "a_ind", "b_ind"};
  const matrix_view<T>* out[4] = {&g0, &g1, &g2, &g3};
  const char* out_names[4] = {"grad_a", "grad_b", "grad_a_ind", "grad_b_ind"};
  detail::fs_check_options(fn, o);
  detail::fs_check_upstream(fn, upstream);
  detail::fs_check_inputs(fn, in, names, 4);
  CONTRASTIVE_CHECK(saved.n == x0.rows() && saved.d == x0.cols(), fn, ": 'saved' belongs to x0 ",
                    saved.n, " x ", saved.d, " batch, the inputs are ", x0.rows(), " x ",
                    x0.cols());
  detail::fs_check_outputs(fn, out, out_names, 4, in, names, 4);
  detail::fs_check_gradient_bound<T>(fn, out, 4, in, 4, o, upstream, 1, 0, 0, nullptr);
  if (!o.accumulate)
    for (const auto* g : out) detail::fs_clear(*g);
  detail::fs_ortho_backward(x0, x1, x2, x3, g0, g1, g2, g3, upstream);
  return {};
}

template <class A, class B, class AI, class BI, class GA, class GB, class GAI, class GBI>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& tensor_like<AI>&& tensor_like<BI>&& writable_tensor<GA&&>&&
        writable_tensor<GB&&>&& writable_tensor<GAI&&>&& writable_tensor<GBI&&>)
auto feature_orthogonality_forward_backward(
    const A& a, const B& b, const AI& a_ind, const BI& b_ind, GA&& grad_a, GB&& grad_b,
    GAI&& grad_a_ind, GBI&& grad_b_ind, const feature_separation_options& o = {},
    feature_separation_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto s = feature_orthogonality_forward(a, b, a_ind, b_ind, o, ws);
  feature_orthogonality_backward(a, b, a_ind, b_ind, s, std::forward<GA>(grad_a),
                                 std::forward<GB>(grad_b), std::forward<GAI>(grad_a_ind),
                                 std::forward<GBI>(grad_b_ind), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = {};
  return s.loss;
}

// ---------------------------------------------------------------------------------------------
// In-modal contrastive term.

/// L^i_Con = InfoNCE(a_ind, a_ind_aug) + InfoNCE(b_ind, b_ind_aug) (one direction each).
template <class AI, class BI, class AIA, class BIA>
CONTRASTIVE_REQUIRES(tensor_like<AI>&& tensor_like<BI>&& tensor_like<AIA>&& tensor_like<BIA>)
auto in_modal_contrastive_forward(const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug,
                                  const BIA& b_ind_aug, const feature_separation_options& o = {},
                                  workspace ws = {}) {
  if constexpr (detail::is_device_input<AI>::value) {  // cuda/feature_separation.cuh
    (void)ws;
    return detail::device_backend_of<detail::in_modal_contrastive_tag, AI>::type::forward(
        as_view(a_ind), as_view(b_ind), as_view(a_ind_aug), as_view(b_ind_aug), o);
  } else {
    const char* fn = "in_modal_contrastive_forward";
    const auto x0 = detail::input_view(a_ind);
    using T = typename decltype(x0)::value_type;
    const matrix_view<const T> x1 = detail::input_view(b_ind), x2 = detail::input_view(a_ind_aug),
                               x3 = detail::input_view(b_ind_aug);
    const matrix_view<const T>* in[4] = {&x0, &x1, &x2, &x3};
    const char* names[4] = {"a_ind", "b_ind", "a_ind_aug", "b_ind_aug"};
    detail::fs_check_options(fn, o);
    detail::fs_check_inputs(fn, in, names, 4);
    return detail::fs_contrastive_forward(x0, x1, x2, x3, o, ws);
  }
}

/// Backward of an in-modal contrastive forward run on device views (cuda/feature_separation.cuh).
template <class AI, class BI, class AIA, class BIA, class GAI, class GBI, class GAIA, class GBIA>
feature_separation_parameter_gradients in_modal_contrastive_backward(
    const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug, const BIA& b_ind_aug,
    const cuda::in_modal_contrastive_device_saved& saved, GAI&& grad_a_ind, GBI&& grad_b_ind,
    GAIA&& grad_a_ind_aug, GBIA&& grad_b_ind_aug, const feature_separation_options& o = {},
    double upstream = 1.0, workspace = {}) {
  const decltype(as_view(grad_a_ind)) g[4] = {as_view(grad_a_ind), as_view(grad_b_ind),
                                              as_view(grad_a_ind_aug), as_view(grad_b_ind_aug)};
  return detail::device_backend_of<detail::in_modal_contrastive_tag, AI>::type::backward(
      as_view(a_ind), as_view(b_ind), as_view(a_ind_aug), as_view(b_ind_aug), saved, g, o,
      upstream);
}

template <class AI, class BI, class AIA, class BIA, class T, class GAI, class GBI, class GAIA,
          class GBIA>
CONTRASTIVE_REQUIRES(tensor_like<AI>&& tensor_like<BI>&& tensor_like<AIA>&& tensor_like<BIA>&&
                         writable_tensor<GAI&&>&& writable_tensor<GBI&&>&& writable_tensor<GAIA&&>&&
                             writable_tensor<GBIA&&>)
feature_separation_parameter_gradients
    in_modal_contrastive_backward(const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug,
                                  const BIA& b_ind_aug, const in_modal_contrastive_saved<T>& saved,
                                  GAI&& grad_a_ind, GBI&& grad_b_ind, GAIA&& grad_a_ind_aug,
                                  GBIA&& grad_b_ind_aug, const feature_separation_options& o = {},
                                  double upstream = 1.0, workspace ws = {}) {
  const char* fn = "in_modal_contrastive_backward";
  const matrix_view<const T> x0 = detail::input_view(a_ind), x1 = detail::input_view(b_ind),
                             x2 = detail::input_view(a_ind_aug), x3 = detail::input_view(b_ind_aug);
  const matrix_view<T> g0 = detail::output_view(std::forward<GAI>(grad_a_ind)),
                       g1 = detail::output_view(std::forward<GBI>(grad_b_ind)),
                       g2 = detail::output_view(std::forward<GAIA>(grad_a_ind_aug)),
                       g3 = detail::output_view(std::forward<GBIA>(grad_b_ind_aug));
  const matrix_view<const T>* in[4] = {&x0, &x1, &x2, &x3};
  const char* names[4] = {"a_ind", "b_ind", "a_ind_aug", "b_ind_aug"};
  const matrix_view<T>* out[4] = {&g0, &g1, &g2, &g3};
  const char* out_names[4] = {"grad_a_ind", "grad_b_ind", "grad_a_ind_aug", "grad_b_ind_aug"};
  detail::fs_check_options(fn, o);
  detail::fs_check_upstream(fn, upstream);
  detail::fs_check_inputs(fn, in, names, 4);
  detail::fs_check_outputs(fn, out, out_names, 4, in, names, 4);
  detail::fs_check_gradient_bound(fn, out, 4, in, 4, o, upstream, 0, 1, 0, &saved);
  if (!o.accumulate)
    for (const auto* g : out) detail::fs_clear(*g);
  return detail::fs_contrastive_backward(x0, x1, x2, x3, saved, g0, g1, g2, g3, o, upstream, ws);
}

template <class AI, class BI, class AIA, class BIA, class GAI, class GBI, class GAIA, class GBIA>
CONTRASTIVE_REQUIRES(tensor_like<AI>&& tensor_like<BI>&& tensor_like<AIA>&& tensor_like<BIA>&&
                         writable_tensor<GAI&&>&& writable_tensor<GBI&&>&& writable_tensor<GAIA&&>&&
                             writable_tensor<GBIA&&>)
auto in_modal_contrastive_forward_backward(
    const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug, const BIA& b_ind_aug, GAI&& grad_a_ind,
    GBI&& grad_b_ind, GAIA&& grad_a_ind_aug, GBIA&& grad_b_ind_aug,
    const feature_separation_options& o = {},
    feature_separation_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto s = in_modal_contrastive_forward(a_ind, b_ind, a_ind_aug, b_ind_aug, o, ws);
  const temperature_gradient tg = in_modal_contrastive_backward(
      a_ind, b_ind, a_ind_aug, b_ind_aug, s, std::forward<GAI>(grad_a_ind),
      std::forward<GBI>(grad_b_ind), std::forward<GAIA>(grad_a_ind_aug),
      std::forward<GBIA>(grad_b_ind_aug), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return s.loss;
}

// ---------------------------------------------------------------------------------------------
// Uniformity term.

template <class AI, class BI>
CONTRASTIVE_REQUIRES(tensor_like<AI>&& tensor_like<BI>)
auto feature_uniformity_forward(const AI& a_ind, const BI& b_ind,
                                const feature_separation_options& o = {}, workspace ws = {}) {
  (void)ws;                                            // these terms need no caller scratch
  if constexpr (detail::is_device_input<AI>::value) {  // cuda/feature_separation.cuh
    return detail::device_backend_of<detail::feature_uniformity_tag, AI>::type::forward(
        as_view(a_ind), as_view(b_ind), o);
  } else {
    const char* fn = "feature_uniformity_forward";
    const auto x0 = detail::input_view(a_ind);
    using T = typename decltype(x0)::value_type;
    const matrix_view<const T> x1 = detail::input_view(b_ind);
    const matrix_view<const T>* in[2] = {&x0, &x1};
    const char* names[2] = {"a_ind", "b_ind"};
    detail::fs_check_options(fn, o);
    detail::fs_check_inputs(fn, in, names, 2);
    return detail::fs_uniformity_forward(fn, x0, x1, o);
  }
}

/// Backward of a uniformity forward run on device views (cuda/feature_separation.cuh).
template <class AI, class BI, class GAI, class GBI>
feature_separation_parameter_gradients feature_uniformity_backward(
    const AI& a_ind, const BI& b_ind, const cuda::feature_uniformity_device_saved& saved,
    GAI&& grad_a_ind, GBI&& grad_b_ind, const feature_separation_options& o = {},
    double upstream = 1.0, workspace = {}) {
  return detail::device_backend_of<detail::feature_uniformity_tag, AI>::type::backward(
      as_view(a_ind), as_view(b_ind), saved, as_view(grad_a_ind), as_view(grad_b_ind), o, upstream);
}

template <class AI, class BI, class T, class GAI, class GBI>
CONTRASTIVE_REQUIRES(
    tensor_like<AI>&& tensor_like<BI>&& writable_tensor<GAI&&>&& writable_tensor<GBI&&>)
feature_separation_parameter_gradients
    feature_uniformity_backward(const AI& a_ind, const BI& b_ind,
                                const feature_uniformity_saved<T>& saved, GAI&& grad_a_ind,
                                GBI&& grad_b_ind, const feature_separation_options& o = {},
                                double upstream = 1.0, workspace ws = {}) {
  const char* fn = "feature_uniformity_backward";
  (void)ws;  // these terms need no caller scratch
  const matrix_view<const T> x0 = detail::input_view(a_ind), x1 = detail::input_view(b_ind);
  const matrix_view<T> g0 = detail::output_view(std::forward<GAI>(grad_a_ind)),
                       g1 = detail::output_view(std::forward<GBI>(grad_b_ind));
  const matrix_view<const T>* in[2] = {&x0, &x1};
  const char* names[2] = {"a_ind", "b_ind"};
  const matrix_view<T>* out[2] = {&g0, &g1};
  const char* out_names[2] = {"grad_a_ind", "grad_b_ind"};
  detail::fs_check_options(fn, o);
  detail::fs_check_upstream(fn, upstream);
  detail::fs_check_inputs(fn, in, names, 2);
  detail::fs_check_outputs(fn, out, out_names, 2, in, names, 2);
  detail::fs_check_gradient_bound<T>(fn, out, 2, in, 2, o, upstream, 0, 0, 1, nullptr);
  if (!o.accumulate)
    for (const auto* g : out) detail::fs_clear(*g);
  detail::fs_uniformity_backward_both(fn, x0, x1, saved, o, g0, g1, upstream);
  return {};
}

template <class AI, class BI, class GAI, class GBI>
CONTRASTIVE_REQUIRES(
    tensor_like<AI>&& tensor_like<BI>&& writable_tensor<GAI&&>&& writable_tensor<GBI&&>)
auto feature_uniformity_forward_backward(
    const AI& a_ind, const BI& b_ind, GAI&& grad_a_ind, GBI&& grad_b_ind,
    const feature_separation_options& o = {},
    feature_separation_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto s = feature_uniformity_forward(a_ind, b_ind, o, ws);
  feature_uniformity_backward(a_ind, b_ind, s, std::forward<GAI>(grad_a_ind),
                              std::forward<GBI>(grad_b_ind), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = {};
  return s.loss;
}

// ---------------------------------------------------------------------------------------------
// Combined loss L_Sep = w_o L_Ortho + w_c L^i_Con + w_u L^i_Uni (a term of weight 0 is skipped).

namespace detail {
template <class A, class B, class AI, class BI, class AIA, class BIA>
auto fs_forward_host(const A& a, const B& b, const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug,
                     const BIA& b_ind_aug, const feature_separation_options& o, workspace ws) {
  const char* fn = "feature_separation_forward";
  const auto a0 = detail::input_view(a);
  using T = typename decltype(a0)::value_type;
  const matrix_view<const T> a1 = detail::input_view(b), a2 = detail::input_view(a_ind),
                             a3 = detail::input_view(b_ind), a4 = detail::input_view(a_ind_aug),
                             a5 = detail::input_view(b_ind_aug);
  const matrix_view<const T>* in[6] = {&a0, &a1, &a2, &a3, &a4, &a5};
  const char* names[6] = {"a", "b", "a_ind", "b_ind", "a_ind_aug", "b_ind_aug"};
  detail::fs_check_options(fn, o);
  detail::fs_check_inputs(fn, in, names, 6);
  feature_separation_saved<T> s;
  s.orthogonality_weight = o.orthogonality_weight;
  s.contrastive_weight = o.contrastive_weight;
  s.uniformity_weight = o.uniformity_weight;
  s.orthogonality.n = a0.rows();
  s.orthogonality.d = a0.cols();
  double loss = 0;
  if (o.orthogonality_weight != 0) {
    s.orthogonality.loss = static_cast<T>(detail::fs_ortho_forward(a0, a1, a2, a3));
    loss += o.orthogonality_weight * double(s.orthogonality.loss);
  }
  if (o.contrastive_weight != 0) {
    s.contrastive = detail::fs_contrastive_forward(a2, a3, a4, a5, o, ws);
    loss += o.contrastive_weight * double(s.contrastive.loss);
  }
  if (o.uniformity_weight != 0) {
    s.uniformity = detail::fs_uniformity_forward(fn, a2, a3, o);
    loss += o.uniformity_weight * double(s.uniformity.loss);
  }
  detail::check_loss_finite(fn, static_cast<double>(static_cast<T>(loss)));
  s.loss = static_cast<T>(loss);
  return s;
}
}  // namespace detail

template <class A, class B, class AI, class BI, class AIA, class BIA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<AI>&& tensor_like<BI>&&
                         tensor_like<AIA>&& tensor_like<BIA>)
auto feature_separation_forward(const A& a, const B& b, const AI& a_ind, const BI& b_ind,
                                const AIA& a_ind_aug, const BIA& b_ind_aug,
                                const feature_separation_options& o = {}, workspace ws = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/feature_separation.cuh
    (void)ws;
    return detail::device_backend_of<detail::feature_separation_tag, A>::type::forward(
        as_view(a), as_view(b), as_view(a_ind), as_view(b_ind), as_view(a_ind_aug),
        as_view(b_ind_aug), o);
  } else {
    return detail::fs_forward_host(a, b, a_ind, b_ind, a_ind_aug, b_ind_aug, o, ws);
  }
}

/// Writes (or adds) upstream * dL_Sep for all six inputs; returns upstream * the temperature
/// gradient (from L^i_Con).
template <class A, class B, class AI, class BI, class AIA, class BIA, class T, class GA, class GB,
          class GAI, class GBI, class GAIA, class GBIA>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& tensor_like<AI>&& tensor_like<BI>&& tensor_like<AIA>&&
        tensor_like<BIA>&& writable_tensor<GA&&>&& writable_tensor<GB&&>&& writable_tensor<GAI&&>&&
            writable_tensor<GBI&&>&& writable_tensor<GAIA&&>&& writable_tensor<GBIA&&>)
feature_separation_parameter_gradients
    feature_separation_backward(const A& a, const B& b, const AI& a_ind, const BI& b_ind,
                                const AIA& a_ind_aug, const BIA& b_ind_aug,
                                const feature_separation_saved<T>& saved, GA&& grad_a, GB&& grad_b,
                                GAI&& grad_a_ind, GBI&& grad_b_ind, GAIA&& grad_a_ind_aug,
                                GBIA&& grad_b_ind_aug, const feature_separation_options& o = {},
                                double upstream = 1.0, workspace ws = {}) {
  const char* fn = "feature_separation_backward";
  const matrix_view<const T> a0 = detail::input_view(a), a1 = detail::input_view(b),
                             a2 = detail::input_view(a_ind), a3 = detail::input_view(b_ind),
                             a4 = detail::input_view(a_ind_aug), a5 = detail::input_view(b_ind_aug);
  const matrix_view<T> g0 = detail::output_view(std::forward<GA>(grad_a)),
                       g1 = detail::output_view(std::forward<GB>(grad_b)),
                       g2 = detail::output_view(std::forward<GAI>(grad_a_ind)),
                       g3 = detail::output_view(std::forward<GBI>(grad_b_ind)),
                       g4 = detail::output_view(std::forward<GAIA>(grad_a_ind_aug)),
                       g5 = detail::output_view(std::forward<GBIA>(grad_b_ind_aug));
  const matrix_view<const T>* in[6] = {&a0, &a1, &a2, &a3, &a4, &a5};
  const char* names[6] = {"a", "b", "a_ind", "b_ind", "a_ind_aug", "b_ind_aug"};
  const matrix_view<T>* out[6] = {&g0, &g1, &g2, &g3, &g4, &g5};
  const char* out_names[6] = {"grad_a",     "grad_b",         "grad_a_ind",
                              "grad_b_ind", "grad_a_ind_aug", "grad_b_ind_aug"};
  detail::fs_check_options(fn, o);
  detail::fs_check_upstream(fn, upstream);
  detail::fs_check_inputs(fn, in, names, 6);
  CONTRASTIVE_CHECK(saved.orthogonality.n == a0.rows() && saved.orthogonality.d == a0.cols(), fn,
                    ": 'saved' belongs to x0 ", saved.orthogonality.n, " x ", saved.orthogonality.d,
                    " batch, the inputs are ", a0.rows(), " x ", a0.cols());
  CONTRASTIVE_CHECK(saved.orthogonality_weight == o.orthogonality_weight &&
                        saved.contrastive_weight == o.contrastive_weight &&
                        saved.uniformity_weight == o.uniformity_weight,
                    fn, ": 'saved' was computed with other weights (", saved.orthogonality_weight,
                    ", ", saved.contrastive_weight, ", ", saved.uniformity_weight, ") than these (",
                    o.orthogonality_weight, ", ", o.contrastive_weight, ", ", o.uniformity_weight,
                    ")");
  detail::fs_check_outputs(fn, out, out_names, 6, in, names, 6);
  detail::fs_check_gradient_bound(fn, out, 6, in, 6, o, upstream, o.orthogonality_weight,
                                  o.contrastive_weight, o.uniformity_weight,
                                  o.contrastive_weight != 0 ? &saved.contrastive : nullptr);
  if (!o.accumulate)
    for (const auto* g : out) detail::fs_clear(*g);
  temperature_gradient tg;
  if (o.orthogonality_weight != 0)
    detail::fs_ortho_backward(a0, a1, a2, a3, g0, g1, g2, g3, upstream * o.orthogonality_weight);
  if (o.contrastive_weight != 0)
    tg = detail::fs_contrastive_backward(a2, a3, a4, a5, saved.contrastive, g2, g3, g4, g5, o,
                                         upstream * o.contrastive_weight, ws);
  if (o.uniformity_weight != 0)
    detail::fs_uniformity_backward_both(fn, a2, a3, saved.uniformity, o, g2, g3,
                                        upstream * o.uniformity_weight);
  return tg;
}

/// Backward of a combined forward run on device views (cuda/feature_separation.cuh).
template <class A, class B, class AI, class BI, class AIA, class BIA, class GA, class GB, class GAI,
          class GBI, class GAIA, class GBIA>
feature_separation_parameter_gradients feature_separation_backward(
    const A& a, const B& b, const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug,
    const BIA& b_ind_aug, const cuda::feature_separation_device_saved& saved, GA&& grad_a,
    GB&& grad_b, GAI&& grad_a_ind, GBI&& grad_b_ind, GAIA&& grad_a_ind_aug, GBIA&& grad_b_ind_aug,
    const feature_separation_options& o = {}, double upstream = 1.0, workspace = {}) {
  const decltype(as_view(grad_a)) g[6] = {as_view(grad_a),         as_view(grad_b),
                                          as_view(grad_a_ind),     as_view(grad_b_ind),
                                          as_view(grad_a_ind_aug), as_view(grad_b_ind_aug)};
  return detail::device_backend_of<detail::feature_separation_tag, A>::type::backward(
      as_view(a), as_view(b), as_view(a_ind), as_view(b_ind), as_view(a_ind_aug),
      as_view(b_ind_aug), saved, g, o, upstream);
}

template <class A, class B, class AI, class BI, class AIA, class BIA, class GA, class GB, class GAI,
          class GBI, class GAIA, class GBIA>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& tensor_like<AI>&& tensor_like<BI>&& tensor_like<AIA>&&
        tensor_like<BIA>&& writable_tensor<GA&&>&& writable_tensor<GB&&>&& writable_tensor<GAI&&>&&
            writable_tensor<GBI&&>&& writable_tensor<GAIA&&>&& writable_tensor<GBIA&&>)
auto feature_separation_forward_backward(
    const A& a, const B& b, const AI& a_ind, const BI& b_ind, const AIA& a_ind_aug,
    const BIA& b_ind_aug, GA&& grad_a, GB&& grad_b, GAI&& grad_a_ind, GBI&& grad_b_ind,
    GAIA&& grad_a_ind_aug, GBIA&& grad_b_ind_aug, const feature_separation_options& o = {},
    feature_separation_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto s = feature_separation_forward(a, b, a_ind, b_ind, a_ind_aug, b_ind_aug, o, ws);
  const temperature_gradient tg = feature_separation_backward(
      a, b, a_ind, b_ind, a_ind_aug, b_ind_aug, s, std::forward<GA>(grad_a),
      std::forward<GB>(grad_b), std::forward<GAI>(grad_a_ind), std::forward<GBI>(grad_b_ind),
      std::forward<GAIA>(grad_a_ind_aug), std::forward<GBIA>(grad_b_ind_aug), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = tg;
  return s.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_FEATURE_SEPARATION_HPP
// ---- end contrastive/losses/feature_separation.hpp ----
// ---- begin contrastive/losses/brownian_bridge.hpp ----
#ifndef CONTRASTIVE_LOSSES_BROWNIAN_BRIDGE_HPP
#define CONTRASTIVE_LOSSES_BROWNIAN_BRIDGE_HPP

// Brownian-bridge loss (Jiang et al., CVPR 2023; docs/brownian_bridge.md#loss): pulls the
// augmented image embedding a_j = va_j of pair j onto the bridge mean between its image v_j
// (t = 1) and text u_j (t = 0):
//
//   L_Br = (1/N) sum_j w_j ||a_j - mu(v_j, u_j, t_j)||^2,
//   mu = m / max(||m||, 1e-12),  m = t v + (1 - t) u,
//   w_j = 1 (default, the paper's loss) or, with `nll_weight`, 1 / (2 t_j (1 - t_j)) (the
//   Gaussian negative log-likelihood weight of the model va ~ N(mu, t (1 - t) I), up to a
//   constant; it only matters for random t).
//
// Reading chosen: the paper prints a closed form (t<v,a> + (1-t)<u,a>) / (t^2 + (1-t)^2 +
// 2t(1-t)<v,u>) that lacks "2 - 2*" and a square root (minimising it would push a away from mu);
// the loss here is the squared distance, which for unit vectors equals
// 2 - 2 (t<v,a> + (1-t)<u,a>) / sqrt(t^2 + (1-t)^2 + 2t(1-t)<v,u>).
// t is fixed (0.25 by default, the paper's value) or drawn per row exactly as the sampler draws
// it (sampling/brownian_bridge.hpp: Philox stream 3, seed, id_j, step), so a loss and a sampler
// given the same seed, step and ids use the same t_j.
//
// Backward: with g_mu = -(2 w_j / N)(a_j - mu_j) and g_m = (g_mu - mu <mu, g_mu>) / r,
// dL/dv_j = t g_m, dL/du_j = (1 - t) g_m, dL/da_j = (2 w_j / N)(a_j - mu_j) (zero with
// `detach_a`: a from a momentum encoder reaches the encoders only through mu), and
// dL/dt_j = <v_j - u_j, g_m> (+ dw_j/dt_j ||a_j - mu_j||^2 / N with `nll_weight`).
//
// Inputs are used as given (normalise them first); a zero-norm row or a non-finite value in
// v, u or a, t outside [0, 1] (or in {0, 1} with `nll_weight`) is contrastive::invalid_argument.

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

// ---- begin contrastive/losses/brownian_bridge_loss_options.hpp ----
#ifndef CONTRASTIVE_LOSSES_BROWNIAN_BRIDGE_LOSS_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_BROWNIAN_BRIDGE_LOSS_OPTIONS_HPP

// The options of the Brownian-bridge loss (losses/brownian_bridge.hpp), its per-row weight and the
// checks that read no element, apart so that the CUDA path (cuda/brownian_bridge.cuh) shares them
// without Eigen.

#include <vector>

// ---- begin contrastive/sampling/brownian_bridge_options.hpp ----
#ifndef CONTRASTIVE_SAMPLING_BROWNIAN_BRIDGE_OPTIONS_HPP
#define CONTRASTIVE_SAMPLING_BROWNIAN_BRIDGE_OPTIONS_HPP

// The options of sampling/brownian_bridge.hpp and the per-row pieces of its draws (the row's t,
// its Philox id and noise stream, sigma, the path coefficients, the floored norm), apart and free
// of Eigen so that cuda/brownian_bridge.cuh (nvcc) runs the same host-device code as the CPU.

#include <math.h>

#include <cmath>
#include <cstdint>
#include <vector>

// ---- begin contrastive/sampling/philox.hpp ----
#ifndef CONTRASTIVE_SAMPLING_PHILOX_HPP
#define CONTRASTIVE_SAMPLING_PHILOX_HPP

// Philox4x32-10 (Salmon et al., SC 2011), counter-based: every draw is a pure function of
// (seed, id, step, stream, block), so CPU and GPU, any tiling and any thread count produce the
// same numbers. Layout (docs/gamma_sampler.md#stream-layout):
//   key     = (lo32(seed), hi32(seed))
//   counter = (lo32(id), hi32(id), lo32(step), (stream << 28) | block)
// Streams: 0 = direction a (or the only one), 1 = direction b, 2 = bridge noise, 3 = bridge t.

#include <math.h>

#include <cstdint>


CONTRASTIVE_NAMESPACE_BEGIN

/// Four 32-bit words: one Philox block.
struct philox_block {
  std::uint32_t w[4];
};

namespace detail {
CONTRASTIVE_HOST_DEVICE inline void mulhilo32(std::uint32_t a, std::uint32_t b, std::uint32_t& hi,
                                              std::uint32_t& lo) noexcept {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b);
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}
}  // namespace detail

/// The raw bijection: ten rounds of Philox4x32 on counter c with key (k0, k1).
CONTRASTIVE_HOST_DEVICE inline philox_block philox4x32_10(philox_block c, std::uint32_t k0,
                                                          std::uint32_t k1) noexcept {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += W0;
      k1 += W1;
    }
    std::uint32_t hi0, lo0, hi1, lo1;
    detail::mulhilo32(M0, c.w[0], hi0, lo0);
    detail::mulhilo32(M1, c.w[2], hi1, lo1);
    c = philox_block{{hi1 ^ c.w[1] ^ k0, lo1, hi0 ^ c.w[3] ^ k1, lo0}};
  }
  return c;
}

/// Named streams of the library's layout.
enum class philox_stream_id : std::uint32_t { a = 0, b = 1, bridge_noise = 2, bridge_t = 3 };

/// The stream of one (seed, id, step, stream): blocks 0, 1, 2, ... (up to 2^28 per stream).
struct philox_stream {
  std::uint64_t seed = 0;
  std::uint64_t id = 0;
  std::uint32_t step = 0;
  std::uint32_t stream = 0;

  CONTRASTIVE_HOST_DEVICE philox_block block(std::uint32_t k) const noexcept {
    const philox_block c{{static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(id >> 32),
                          step, (stream << 28) | (k & 0x0FFFFFFFu)}};
    return philox4x32_10(c, static_cast<std::uint32_t>(seed),
                         static_cast<std::uint32_t>(seed >> 32));
  }

  /// The m-th standard normal of the stream: block m/2, words (0, 1) or (2, 3), Box-Muller
  /// (cosine branch).
  CONTRASTIVE_HOST_DEVICE double normal(std::uint64_t m) const noexcept;
};

/// u(w) = (w + 0.5) 2^-32: exact in double and strictly inside (0, 1).
CONTRASTIVE_HOST_DEVICE inline double uniform_open01(std::uint32_t w) noexcept {
  return (static_cast<double>(w) + 0.5) * (1.0 / 4294967296.0);
}

/// Box-Muller, cosine branch, from two words.
CONTRASTIVE_HOST_DEVICE inline double box_muller(std::uint32_t w0, std::uint32_t w1) noexcept {
  constexpr double two_pi = 6.283185307179586476925286766559;
  return ::sqrt(-2.0 * ::log(uniform_open01(w0))) * ::cos(two_pi * uniform_open01(w1));
}

CONTRASTIVE_HOST_DEVICE inline double philox_stream::normal(std::uint64_t m) const noexcept {
  const philox_block b = block(static_cast<std::uint32_t>(m / 2));
  return (m % 2 == 0) ? box_muller(b.w[0], b.w[1]) : box_muller(b.w[2], b.w[3]);
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_SAMPLING_PHILOX_HPP
// ---- end contrastive/sampling/philox.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

struct brownian_bridge_options {
  double t = 0.25;        // fixed t in [0, 1] (t = 0: u, t = 1: v)
  bool random_t = false;  // per-row t_j ~ U(t_min, t_max) on Philox stream 3
  double t_min = 0.05;
  double t_max = 0.95;
  bool noise = true;           // add sigma sqrt(t(1-t)) eps (points) / sigma n_k (paths)
  double sigma = 0;            // noise scale >= 0; 0 (default) means 1/sqrt(D)
  bool reproject = false;      // divide each sampled point by its norm
  index_t steps = 8;           // K, the number of steps of a trajectory (>= 1)
  std::uint64_t seed = 0;      // Philox key
  std::uint32_t step = 0;      // Philox counter word 2 (e.g. the training step)
  std::uint64_t first_id = 0;  // Philox id of row j is first_id + j ...
  vector_view<const std::int64_t>
      ids{};  // ... or ids[j] when given (one per row, >= 0; device memory on the GPU)
  bool accumulate = false;  // backward adds into grad_v / grad_u instead of overwriting them
  int num_threads = 0;      // 0: all OpenMP threads (1 without OpenMP)
};

/// Gradients of a sampling call beyond those to v and u.
struct brownian_bridge_gradient {
  double t = 0;                // dL/dt of a t shared by all rows (the sum of t_rows); 0 for paths
  std::vector<double> t_rows;  // dL/dt_j per row (points)
  double sigma = 0;            // dL/dsigma
};

namespace detail {

constexpr double bridge_floor = 1e-12;

CONTRASTIVE_HOST_DEVICE inline std::uint64_t bridge_id(const brownian_bridge_options& o,
                                                       index_t j) noexcept {
  // ids.data, not ids.empty(): the constexpr member is host-only under nvcc.
  return o.ids.data == nullptr ? o.first_id + static_cast<std::uint64_t>(j)
                               : static_cast<std::uint64_t>(o.ids.data[j]);
}

/// The t of row j (unchecked options).
CONTRASTIVE_HOST_DEVICE inline double bridge_t(const brownian_bridge_options& o,
                                               index_t j) noexcept {
  if (!o.random_t) return o.t;
  const philox_stream s{o.seed, bridge_id(o, j), o.step,
                        static_cast<std::uint32_t>(philox_stream_id::bridge_t)};
  return o.t_min + (o.t_max - o.t_min) * uniform_open01(s.block(0).w[0]);
}

/// The noise stream of row j (stream 2): normal m is eps_m (points) or xi of path step m / D + 1.
CONTRASTIVE_HOST_DEVICE inline philox_stream bridge_noise_stream(const brownian_bridge_options& o,
                                                                 index_t j) noexcept {
  return philox_stream{o.seed, bridge_id(o, j), o.step,
                       static_cast<std::uint32_t>(philox_stream_id::bridge_noise)};
}

CONTRASTIVE_HOST_DEVICE inline double bridge_sigma(const brownian_bridge_options& o,
                                                   index_t d) noexcept {
  return o.sigma > 0 ? o.sigma : 1.0 / ::sqrt(double(d));
}

/// One coordinate of m = t v + (1 - t) u.
CONTRASTIVE_HOST_DEVICE inline double bridge_mix(double v, double u, double t) noexcept {
  return t * v + (1 - t) * u;
}

/// max(sqrt(s), floor) for a sum of squares s: the divisor of the mean and of a re-projection.
CONTRASTIVE_HOST_DEVICE inline double bridge_norm(double s) noexcept {
  const double r = ::sqrt(s);
  return r > bridge_floor ? r : bridge_floor;
}

/// The noise scale of a point at t: sigma sqrt(t (1 - t)).
CONTRASTIVE_HOST_DEVICE inline double bridge_point_scale(double sigma, double t) noexcept {
  return sigma * ::sqrt(t * (1 - t));
}

/// n_k = a n_{k-1} + b xi_k on a K-step path (k = 1..K-1).
CONTRASTIVE_HOST_DEVICE inline void bridge_step_coefficients(index_t k, index_t kk, double& a,
                                                             double& b) noexcept {
  a = double(kk - k) / double(kk - k + 1);
  b = ::sqrt(double(kk - k) / (double(kk) * double(kk - k + 1)));
}

/// Standard normals m = first, first + 1, ..., first + count - 1 of a stream (one block per pair).
CONTRASTIVE_HOST_DEVICE inline void bridge_normals(const philox_stream& s, std::uint64_t first,
                                                   index_t count, double* out) noexcept {
  index_t k = 0;
  std::uint64_t m = first;
  if (count > 0 && (m & 1u)) {
    out[k++] = s.normal(m++);
  }
  for (; k + 1 < count; k += 2, m += 2) {
    const philox_block b = s.block(static_cast<std::uint32_t>(m / 2));
    out[k] = box_muller(b.w[0], b.w[1]);
    out[k + 1] = box_muller(b.w[2], b.w[3]);
  }
  if (k < count) out[k] = s.normal(m);
}

/// t (fixed) or [t_min, t_max] (random_t) must lie in [0, 1].
inline void bridge_check_time(const char* fn, const brownian_bridge_options& o) {
  if (o.random_t) {
    CONTRASTIVE_CHECK(std::isfinite(o.t_min) && std::isfinite(o.t_max) && o.t_min >= 0 &&
                          o.t_max <= 1 && o.t_min <= o.t_max,
                      fn, ": 't_min' and 't_max' must satisfy 0 <= t_min <= t_max <= 1, got [",
                      o.t_min, ", ", o.t_max, "]");
  } else {
    CONTRASTIVE_CHECK(std::isfinite(o.t) && o.t >= 0 && o.t <= 1, fn,
                      ": 't' must lie in [0, 1], got ", o.t);
  }
}

/// Normals one Philox stream gives (2^28 blocks of two normals each); one row's noise is one
/// stream, so a row may not need more (they would repeat).
constexpr std::uint64_t bridge_stream_normals = std::uint64_t(1) << 29;

/// The scalar options of a bridge call: the time (points only), sigma, steps (trajectories) and,
/// for Philox noise of rows of D = d > 0 columns, the stream length (d = 0: caller's noise).

inline void bridge_check_scalars(const char* fn, const brownian_bridge_options& o, bool trajectory,
                                 index_t d) {
  if (!trajectory) bridge_check_time(fn, o);
  CONTRASTIVE_CHECK(std::isfinite(o.sigma) && o.sigma >= 0, fn,
                    ": 'sigma' must be finite and >= 0 (0: 1/sqrt(D)), got ", o.sigma);
  if (trajectory) CONTRASTIVE_CHECK(o.steps >= 1, fn, ": 'steps' must be >= 1, got ", o.steps);
  if (o.noise && d > 0) {
    const index_t steps = trajectory ? o.steps : 1;
    CONTRASTIVE_CHECK(
        static_cast<std::uint64_t>(steps) <= bridge_stream_normals / static_cast<std::uint64_t>(d),
        fn, ": the noise of one row needs ", steps, " x ", d,
        " (steps x D) normals, more than the 2^29 of one Philox stream (they would "
        "repeat); pass the noise yourself (the *_with_noise calls)");
  }
}

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_SAMPLING_BROWNIAN_BRIDGE_OPTIONS_HPP
// ---- end contrastive/sampling/brownian_bridge_options.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

/// Options of the bridge loss. Each row's t comes from the composed sampler options `bridge`
/// (t, random_t, t_min, t_max, seed, step, first_id, ids: the same t_j the sampler draws); the
/// sampler's noise, sigma, reproject, steps, accumulate and num_threads are not read. From
/// tiling_options only num_threads is used (rows are independent; there are no tiles).
struct brownian_bridge_loss_options : tiling_options {
  brownian_bridge_options bridge{};
  bool nll_weight = false;  // weight term j by 1 / (2 t_j (1 - t_j))
  bool detach_a_aug =
      false;  // no gradient to a_aug (grad_a_aug zeroed, or untouched with accumulate)
  bool accumulate = false;  // backward adds into the gradients instead of overwriting them
};

/// What the backward returns besides the input gradients: upstream * dL/dt.
struct brownian_bridge_loss_parameter_gradients {
  double t = 0;                // dL/dt of a t shared by all rows (the sum of t_rows)
  std::vector<double> t_rows;  // dL/dt_j per row
};

namespace detail {

inline brownian_bridge_options bridge_loss_time_options(const brownian_bridge_loss_options& o) {
  brownian_bridge_options b = o.bridge;
  b.noise = false;
  b.num_threads = o.num_threads;
  return b;
}

/// The weight check of the options: `nll_weight` needs t inside (0, 1).
inline void bridge_loss_check_weight(const char* fn, const brownian_bridge_loss_options& o) {
  const brownian_bridge_options b = bridge_loss_time_options(o);
  if (o.nll_weight) {
    if (b.random_t) {
      CONTRASTIVE_CHECK(b.t_min > 0 && b.t_max < 1, fn,
                        ": 'nll_weight' needs 0 < t_min and t_max < 1 (the weight 1/(2t(1-t)) is "
                        "infinite at the ends), got [",
                        b.t_min, ", ", b.t_max, "]");
    } else {
      CONTRASTIVE_CHECK(b.t > 0 && b.t < 1, fn,
                        ": 'nll_weight' needs 0 < t < 1 (the weight 1/(2t(1-t)) is infinite at the "
                        "ends), got ",
                        b.t);
    }
  }
}

/// w_j = 1, or 1 / (2 t (1 - t)) with `nll_weight`; and dw/dt.
CONTRASTIVE_HOST_DEVICE inline double bridge_loss_weight(double t, bool nll) noexcept {
  return nll ? 1.0 / (2 * t * (1 - t)) : 1.0;
}
CONTRASTIVE_HOST_DEVICE inline double bridge_loss_weight_dt(double t, bool nll) noexcept {
  return nll ? -(1 - 2 * t) / (2 * t * t * (1 - t) * (1 - t)) : 0.0;
}

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_BROWNIAN_BRIDGE_LOSS_OPTIONS_HPP
// ---- end contrastive/losses/brownian_bridge_loss_options.hpp ----
// ---- begin contrastive/sampling/brownian_bridge.hpp ----
#ifndef CONTRASTIVE_SAMPLING_BROWNIAN_BRIDGE_HPP
#define CONTRASTIVE_SAMPLING_BROWNIAN_BRIDGE_HPP

// Brownian-bridge path sampling between paired embeddings (Jiang et al., CVPR 2023, eq. (1);
// docs/brownian_bridge.md#sampler). Row j of V (image, the t = 1 end) and U (text, the t = 0
// end) are the endpoints of pair j.
//
//   mean    mu(v, u, t) = m / max(||m||, 1e-12),   m = t v + (1 - t) u   (on the unit sphere)
//   point   y = mu(v, u, t) + sigma sqrt(t (1 - t)) eps,   eps ~ N(0, I_D)      [optional noise]
//           then, with `reproject`, y / max(||y||, 1e-12)
//   path    K steps, t_k = k / K; increments conditioned on both endpoints:
//           n_0 = n_K = 0,  n_k = n_{k-1} (K-k)/(K-k+1) + sqrt((K-k)/(K(K-k+1))) xi_k,
//           X_k = mu(v, u, t_k) + sigma n_k  (k = 1..K-1; `reproject` as above),
//           so Cov(n_j, n_k) = t_j (1 - t_k) I for j <= k and each X_k has the point's law.
//
// Readings and library choices (the paper leaves these open):
// - t: fixed (default 0.25, the paper's value, which puts the mean near the text), or with
//   `random_t` t_j ~ U(t_min, t_max) (default [0.05, 0.95]): t_j = t_min + (t_max - t_min) u,
//   u = uniform_open01(word 0 of block 0) of Philox stream 3 (seed, id_j, step).
// - sigma defaults to 1/sqrt(D), so that E||noise||^2 = t (1 - t); the paper's literal unit
//   variance per coordinate (sigma = 1) would swamp unit vectors.
// - Noise: eps_d (points) and xi_k,d (paths) are normal numbers m = d and m = (k-1) D + d of
//   Philox stream 2 (seed, id_j, step): block m/2, words (0,1) for even m and (2,3) for odd m,
//   Box-Muller cosine branch, i.e. exactly philox_stream::normal(m). id_j = ids[j] when `ids`
//   is given (e.g. dataset indices), else first_id + j. The caller may pass eps / xi instead.
// - Trajectories have K + 1 rows per pair (row j (K+1) + k holds X_k); X_0 = u and X_K = v are
//   copies of the inputs (exact, never re-projected) and pass their gradient straight through.
// - Backward is by reparameterisation (the noise is fixed): gradients to v, u (both endpoints),
//   to each row's t (points) and to sigma. At t = 0 or t = 1 the noise term's t-derivative
//   sigma (1 - 2t) / (2 sqrt(t (1 - t))) <g, eps> is infinite; it is omitted there (the mean
//   term's derivative is still reported).
//
// Inputs are used as given (the mean is normalised, the endpoints are not); a row of zero norm
// or a non-finite value in v or u is bad input (contrastive::invalid_argument), as are t outside
// [0, 1] and non-finite noise. Threads: OpenMP over rows when compiled with it; results never
// depend on the thread count.

#include <cmath>
#include <limits>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>


CONTRASTIVE_NAMESPACE_BEGIN

/// What a sampling call keeps for its backward: O(N) numbers, never the noise.
template <class T>
struct brownian_bridge_saved {
  index_t n = 0, d = 0;
  index_t steps = 0;      // K for trajectories, 0 for points
  std::vector<double> t;  // per-row t (points)
  double sigma = 0;       // the resolved noise scale
  bool noise = true, reproject = false, given_noise = false;
  std::uint64_t seed = 0;
  std::uint32_t step = 0;
};

namespace detail {

/// mu = m / max(||m||, floor), m = t v + (1 - t) u, for row j; returns max(||m||, floor).
template <class T>
double bridge_mean_row(const matrix_view<const T>& v, const matrix_view<const T>& u, index_t j,
                       double t, double* mu) noexcept {
  const index_t d = v.cols();
  double s = 0;
  for (index_t k = 0; k < d; ++k) {
    const double m = bridge_mix(double(v(j, k)), double(u(j, k)), t);
    mu[k] = m;
    s += m * m;
  }
  const double rr = bridge_norm(s);
  for (index_t k = 0; k < d; ++k) mu[k] /= rr;
  return rr;
}

/// Replaces g (dL/dmu) by g_m = dL/dm: (g - mu <mu, g>) / r, or g / floor when ||m|| <= floor.
inline void bridge_mean_backward(const double* mu, double r, index_t d, double* g) noexcept {
  if (r <= bridge_floor) {
    for (index_t k = 0; k < d; ++k) g[k] /= bridge_floor;
    return;
  }
  double p = 0;
  for (index_t k = 0; k < d; ++k) p += mu[k] * g[k];
  for (index_t k = 0; k < d; ++k) g[k] = (g[k] - mu[k] * p) / r;
}

/// y /= max(||y||, floor); returns the norm used.
inline double bridge_project(double* y, index_t d) noexcept {
  double s = 0;
  for (index_t k = 0; k < d; ++k) s += y[k] * y[k];
  const double rr = bridge_norm(s);
  for (index_t k = 0; k < d; ++k) y[k] /= rr;
  return rr;
}

/// Gradient through s = y / max(||y||, floor) (s given, r the norm used).
inline void bridge_project_backward(const double* s, double r, index_t d, double* g) noexcept {
  bridge_mean_backward(s, r, d, g);
}

inline void bridge_check_ids(const char* fn, const brownian_bridge_options& o, index_t n) {
  if (o.ids.empty()) return;
  CONTRASTIVE_CHECK(o.ids.size == n, fn, ": 'ids' has ", o.ids.size, " entries, expected ", n,
                    " (one per row)");
  CONTRASTIVE_CHECK(o.ids.stride == 1, fn, ": 'ids' must be contiguous (stride 1), got stride ",
                    o.ids.stride);
  for (index_t j = 0; j < n; ++j) check_id_nonnegative(fn, o.ids.data[j], "row", j);
}

/// v, u: N x D, N > 0, D > 0, finite, no zero-norm row; options valid.
template <class T>
void bridge_check_endpoints(const char* fn, const matrix_view<const T>& v,
                            const matrix_view<const T>& u, const brownian_bridge_options& o,
                            bool trajectory, bool philox_noise) {
  check_matrix(fn, "a", v);
  check_matrix(fn, "b", u);
  check_pair_shape(fn, v, u);
  bridge_check_scalars(fn, o, trajectory, philox_noise ? v.cols() : 0);
  bridge_check_ids(fn, o, v.rows());
  check_rows(fn, "a", v);
  check_rows(fn, "b", u);
}

template <class T>
void bridge_check_noise(const char* fn, const char* name, const matrix_view<const T>& e,
                        index_t rows, index_t cols, const char* what) {
  check_matrix(fn, name, e);
  check_shape(fn, name, e, rows, cols, what);
  check_finite(fn, name, e);
}

/// Rows per parallel task and per-thread scratch of D doubles x `width`.
struct bridge_scratch {
  std::vector<double> data;
  index_t stride = 0;
  double* get(int tid) noexcept {
    return data.data() + static_cast<std::size_t>(tid) * static_cast<std::size_t>(stride);
  }
  bridge_scratch(int threads, index_t per_thread)
      : data(static_cast<std::size_t>(threads) * static_cast<std::size_t>(per_thread)),
        stride(per_thread) {}
};

constexpr index_t bridge_rows_per_task = 16;

template <class F>
void bridge_for_rows(index_t n, int threads, F&& row_fn) {
  const index_t tasks = (n + bridge_rows_per_task - 1) / bridge_rows_per_task;
  parallel_for(tasks, threads, [&](index_t task, int tid) {
    const index_t j1 =
        (task + 1) * bridge_rows_per_task < n ? (task + 1) * bridge_rows_per_task : n;
    for (index_t j = task * bridge_rows_per_task; j < j1; ++j) row_fn(j, tid);
  });
}

template <class T>
void bridge_store_row(const matrix_view<T>& out, index_t i, const double* x, bool accumulate) {
  for (index_t k = 0; k < out.cols(); ++k)
    out(i, k) = accumulate ? static_cast<T>(double(out(i, k)) + x[k]) : static_cast<T>(x[k]);
}

/// Stores row i (store), or only tells whether storing it would keep every element finite in T.
template <class T>
bool bridge_put_row(const matrix_view<T>& out, index_t i, const double* x, bool accumulate,
                    bool store) {
  if (store) {
    bridge_store_row(out, i, x, accumulate);
    return true;
  }
  constexpr double largest = static_cast<double>(std::numeric_limits<T>::max());
  for (index_t k = 0; k < out.cols(); ++k) {
    const double y = accumulate ? double(out(i, k)) + x[k] : x[k];
    if (!(std::abs(y) <= largest)) return false;
  }
  return true;
}

/// Runs row_fn(j, tid, store) -> bool over the rows twice: first with store = false, when a row
/// only reports whether everything it would write (and its double results) is finite, then, if
/// every row is, with store = true. The O(N D) row work is done twice so that a call whose results
/// overflow T throws with every output untouched. `finish` (after the first pass) may check sums.
template <class T, class F, class G>
void bridge_for_rows_checked(const char* fn, index_t n, int threads, F&& row_fn, G&& finish) {
  std::vector<unsigned char> fits(static_cast<std::size_t>(n), 1);
  bridge_for_rows(n, threads, [&](index_t j, int tid) {
    fits[static_cast<std::size_t>(j)] = row_fn(j, tid, false) ? 1 : 0;
  });
  for (index_t j = 0; j < n; ++j)
    CONTRASTIVE_CHECK(fits[static_cast<std::size_t>(j)], fn, ": the results of row ", j,
                      " overflow ", sizeof(T) == sizeof(float) ? "float" : "double",
                      "; scale the inputs, 'sigma' or the upstream gradient down");
  finish();
  bridge_for_rows(n, threads, [&](index_t j, int tid) { row_fn(j, tid, true); });
}

// ---- points ----

/// What a sampling call records for its backward (the per-row t of points excepted).
template <class T>
brownian_bridge_saved<T> bridge_saved_for(index_t n, index_t d, index_t steps,
                                          const brownian_bridge_options& o, bool given_noise) {
  brownian_bridge_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.steps = steps;
  saved.sigma = bridge_sigma(o, d);
  saved.noise = o.noise;
  saved.reproject = o.reproject;
  saved.given_noise = given_noise;
  saved.seed = o.seed;
  saved.step = o.step;
  return saved;
}

/// A backward's `saved` belongs to these inputs and options: a point sample (o.steps ignored;
/// with its per-row t when `needs_t`) or a path of o.steps steps, the same noise source.
template <class T>
void bridge_check_saved(const char* fn, const brownian_bridge_saved<T>& saved, index_t n, index_t d,
                        const brownian_bridge_options& o, bool given_noise, bool point,
                        bool needs_t = true) {
  const char* noise_name = point ? "'eps'" : "'xi'";
  if (point) {
    CONTRASTIVE_CHECK(saved.steps == 0 && saved.n == n && saved.d == d &&
                          (!needs_t || saved.t.size() == static_cast<std::size_t>(n)),
                      fn, ": 'saved' belongs to a ", saved.n, " x ", saved.d,
                      saved.steps ? " trajectory" : " point", " sample, the inputs are ", n, " x ",
                      d);
  } else {
    CONTRASTIVE_CHECK(saved.steps == o.steps && saved.n == n && saved.d == d, fn,
                      ": 'saved' belongs to a ", saved.n, " x ", saved.d, " sample with ",
                      saved.steps, " steps, the inputs are ", n, " x ", d,
                      " with 'steps' = ", o.steps);
  }
  CONTRASTIVE_CHECK(saved.given_noise == given_noise, fn,
                    saved.given_noise ? ": 'saved' was sampled with caller noise: pass the same "
                                      : ": 'saved' was sampled on the Philox stream: pass no ",
                    noise_name);
  CONTRASTIVE_CHECK(saved.noise == o.noise && saved.reproject == o.reproject &&
                        saved.sigma == bridge_sigma(o, d) &&
                        (given_noise || (saved.seed == o.seed && saved.step == o.step)),
                    fn, ": 'saved' was sampled with other options (noise ", saved.noise,
                    ", reproject ", saved.reproject, ", sigma ", saved.sigma, ", seed ", saved.seed,
                    ", step ", saved.step, ")");
}

template <class T>
brownian_bridge_saved<T> bridge_point_forward(const char* fn, const matrix_view<const T>& v,
                                              const matrix_view<const T>& u,
                                              const matrix_view<const T>* eps,
                                              const matrix_view<T>& y,
                                              const brownian_bridge_options& o) {
  bridge_check_endpoints(fn, v, u, o, false, eps == nullptr);
  const index_t n = v.rows(), d = v.cols();
  if (eps) bridge_check_noise(fn, "eps", *eps, n, d, "the shape of 'a'");
  check_matrix(fn, "y", y);
  check_shape(fn, "y", y, n, d, "the shape of 'a'");
  check_writable_layout(fn, "y", y);
  check_no_alias(fn, "y", y, "a", v);
  check_no_alias(fn, "y", y, "b", u);
  if (eps) check_no_alias(fn, "y", y, "eps", *eps);

  brownian_bridge_saved<T> saved = bridge_saved_for<T>(n, d, 0, o, eps != nullptr);
  saved.t.resize(static_cast<std::size_t>(n));
  const int threads = resolve_threads(o.num_threads, 64.0 * double(n) * double(d));
  bridge_scratch scratch(threads, 2 * d);
  const double sigma = saved.sigma;
  bridge_for_rows_checked<T>(
      fn, n, threads,
      [&](index_t j, int tid, bool store) {
        double* mu = scratch.get(tid);
        double* e = mu + d;
        const double t = bridge_t(o, j);
        saved.t[static_cast<std::size_t>(j)] = t;
        bridge_mean_row(v, u, j, t, mu);
        if (o.noise) {
          const double c = bridge_point_scale(sigma, t);
          if (eps) {
            for (index_t k = 0; k < d; ++k) e[k] = double((*eps)(j, k));
          } else {
            bridge_normals(bridge_noise_stream(o, j), 0, d, e);
          }
          for (index_t k = 0; k < d; ++k) mu[k] += c * e[k];
        }
        if (o.reproject) bridge_project(mu, d);
        return bridge_put_row(y, j, mu, false, store);
      },
      [] {});
  return saved;
}

template <class T>
brownian_bridge_gradient bridge_point_backward(const char* fn, const matrix_view<const T>& v,
                                               const matrix_view<const T>& u,
                                               const matrix_view<const T>* eps,
                                               const brownian_bridge_saved<T>& saved,
                                               const matrix_view<const T>& gy,
                                               const matrix_view<T>& gv, const matrix_view<T>& gu,
                                               const brownian_bridge_options& o) {
  bridge_check_endpoints(fn, v, u, o, false, eps == nullptr);
  const index_t n = v.rows(), d = v.cols();
  bridge_check_saved(fn, saved, n, d, o, eps != nullptr, true);
  if (eps) bridge_check_noise(fn, "eps", *eps, n, d, "the shape of 'a'");
  check_matrix(fn, "grad_y", gy);
  check_shape(fn, "grad_y", gy, n, d, "the shape of 'a'");
  check_finite(fn, "grad_y", gy);
  check_matrix(fn, "grad_a", gv);
  check_matrix(fn, "grad_b", gu);
  check_shape(fn, "grad_a", gv, n, d, "the shape of 'a'");
  check_shape(fn, "grad_b", gu, n, d, "the shape of 'b'");
  check_writable_layout(fn, "grad_a", gv);
  check_writable_layout(fn, "grad_b", gu);
  check_no_alias(fn, "grad_a", gv, "grad_b", gu);
  check_no_alias(fn, "grad_a", gv, "a", v);
  check_no_alias(fn, "grad_a", gv, "b", u);
  check_no_alias(fn, "grad_a", gv, "grad_y", gy);
  check_no_alias(fn, "grad_b", gu, "a", v);
  check_no_alias(fn, "grad_b", gu, "b", u);
  check_no_alias(fn, "grad_b", gu, "grad_y", gy);

  brownian_bridge_gradient out;
  out.t_rows.assign(static_cast<std::size_t>(n), 0.0);
  std::vector<double> dsig(static_cast<std::size_t>(n), 0.0);
  const int threads = resolve_threads(o.num_threads, 64.0 * double(n) * double(d));
  bridge_scratch scratch(threads, 4 * d);
  const double sigma = saved.sigma;
  bridge_for_rows_checked<T>(
      fn, n, threads,
      [&](index_t j, int tid, bool store) {
        double* mu = scratch.get(tid);
        double* e = mu + d;
        double* y = e + d;
        double* g = y + d;
        const double t = saved.t[static_cast<std::size_t>(j)];
        const double r = bridge_mean_row(v, u, j, t, mu);
        for (index_t k = 0; k < d; ++k) g[k] = double(gy(j, k));
        const double c = o.noise ? sigma * std::sqrt(t * (1 - t)) : 0.0;
        if (o.noise) {
          if (eps) {
            for (index_t k = 0; k < d; ++k) e[k] = double((*eps)(j, k));
          } else {
            const philox_stream s{o.seed, bridge_id(o, j), o.step,
                                  static_cast<std::uint32_t>(philox_stream_id::bridge_noise)};
            bridge_normals(s, 0, d, e);
          }
        }
        if (o.reproject) {
          for (index_t k = 0; k < d; ++k) y[k] = mu[k] + (o.noise ? c * e[k] : 0.0);
          const double ry = bridge_project(y, d);
          bridge_project_backward(y, ry, d, g);
        }
        double dt = 0;
        if (o.noise) {
          double ge = 0;
          for (index_t k = 0; k < d; ++k) ge += g[k] * e[k];
          dsig[static_cast<std::size_t>(j)] = std::sqrt(t * (1 - t)) * ge;
          if (t > 0 && t < 1) dt += sigma * (1 - 2 * t) / (2 * std::sqrt(t * (1 - t))) * ge;
        }
        bridge_mean_backward(mu, r, d, g);  // g = dL/dm
        double dvu = 0;
        for (index_t k = 0; k < d; ++k) dvu += (double(v(j, k)) - double(u(j, k))) * g[k];
        dt += dvu;
        out.t_rows[static_cast<std::size_t>(j)] = dt;
        bool ok = std::isfinite(dt) && std::isfinite(dsig[static_cast<std::size_t>(j)]);
        for (index_t k = 0; k < d; ++k) y[k] = t * g[k];
        ok = bridge_put_row(gv, j, y, o.accumulate, store) && ok;
        for (index_t k = 0; k < d; ++k) y[k] = (1 - t) * g[k];
        return bridge_put_row(gu, j, y, o.accumulate, store) && ok;
      },
      [&] {
        for (index_t j = 0; j < n; ++j) {
          out.t += out.t_rows[static_cast<std::size_t>(j)];
          out.sigma += dsig[static_cast<std::size_t>(j)];
        }
        CONTRASTIVE_CHECK(std::isfinite(out.t) && std::isfinite(out.sigma), fn,
                          ": dL/dt or dL/dsigma overflows; scale the upstream gradient down");
      });
  return out;
}

// ---- trajectories ----

/// n_k from n_{k-1} and xi_k (k = 1..K-1).
inline void bridge_step_noise(double* nk, const double* xi, index_t d, index_t k,
                              index_t kk) noexcept {
  double a, b;
  bridge_step_coefficients(k, kk, a, b);
  for (index_t i = 0; i < d; ++i) nk[i] = nk[i] * a + b * xi[i];
}

template <class T>
void bridge_load_xi(const matrix_view<const T>* xi, const brownian_bridge_options& o, index_t j,
                    index_t k, index_t kk, index_t d, double* out) {
  if (xi) {
    const index_t row = j * (kk - 1) + (k - 1);
    for (index_t i = 0; i < d; ++i) out[i] = double((*xi)(row, i));
  } else {
    bridge_normals(bridge_noise_stream(o, j),
                   static_cast<std::uint64_t>(k - 1) * static_cast<std::uint64_t>(d), d, out);
  }
}

template <class T>
brownian_bridge_saved<T> bridge_path_forward(const char* fn, const matrix_view<const T>& v,
                                             const matrix_view<const T>& u,
                                             const matrix_view<const T>* xi,
                                             const matrix_view<T>& x,
                                             const brownian_bridge_options& o) {
  bridge_check_endpoints(fn, v, u, o, true, xi == nullptr);
  const index_t n = v.rows(), d = v.cols(), kk = o.steps;
  if (xi) bridge_check_noise(fn, "xi", *xi, n * (kk - 1), d, "N (steps - 1) x D");
  check_matrix(fn, "x", x);
  check_shape(fn, "x", x, n * (kk + 1), d, "N (steps + 1) x D");
  check_writable_layout(fn, "x", x);
  check_no_alias(fn, "x", x, "a", v);
  check_no_alias(fn, "x", x, "b", u);
  if (xi) check_no_alias(fn, "x", x, "xi", *xi);

  brownian_bridge_saved<T> saved = bridge_saved_for<T>(n, d, kk, o, xi != nullptr);
  const int threads = resolve_threads(o.num_threads, 64.0 * double(n) * double(d));
  bridge_scratch scratch(threads, 3 * d);
  const double sigma = saved.sigma;
  bridge_for_rows_checked<T>(
      fn, n, threads,
      [&](index_t j, int tid, bool store) {
        double* mu = scratch.get(tid);
        double* nk = mu + d;
        double* xk = nk + d;
        const index_t base = j * (kk + 1);
        for (index_t i = 0; i < d; ++i) {
          if (store) {
            x(base, i) = u(j, i);
            x(base + kk, i) = v(j, i);
          }
          nk[i] = 0;
        }
        bool ok = true;
        for (index_t k = 1; k < kk; ++k) {
          bridge_mean_row(v, u, j, double(k) / double(kk), mu);
          if (o.noise) {
            bridge_load_xi(xi, o, j, k, kk, d, xk);
            bridge_step_noise(nk, xk, d, k, kk);
            for (index_t i = 0; i < d; ++i) mu[i] += sigma * nk[i];
          }
          if (o.reproject) bridge_project(mu, d);
          ok = bridge_put_row(x, base + k, mu, false, store) && ok;
        }
        return ok;
      },
      [] {});
  return saved;
}

template <class T>
brownian_bridge_gradient bridge_path_backward(const char* fn, const matrix_view<const T>& v,
                                              const matrix_view<const T>& u,
                                              const matrix_view<const T>* xi,
                                              const brownian_bridge_saved<T>& saved,
                                              const matrix_view<const T>& gx,
                                              const matrix_view<T>& gv, const matrix_view<T>& gu,
                                              const brownian_bridge_options& o) {
  bridge_check_endpoints(fn, v, u, o, true, xi == nullptr);
  const index_t n = v.rows(), d = v.cols(), kk = o.steps;
  bridge_check_saved(fn, saved, n, d, o, xi != nullptr, false);
  if (xi) bridge_check_noise(fn, "xi", *xi, n * (kk - 1), d, "N (steps - 1) x D");
  check_matrix(fn, "grad_x", gx);
  check_shape(fn, "grad_x", gx, n * (kk + 1), d, "N (steps + 1) x D");
  check_finite(fn, "grad_x", gx);
  check_matrix(fn, "grad_a", gv);
  check_matrix(fn, "grad_b", gu);
  check_shape(fn, "grad_a", gv, n, d, "the shape of 'a'");
  check_shape(fn, "grad_b", gu, n, d, "the shape of 'b'");
  check_writable_layout(fn, "grad_a", gv);
  check_writable_layout(fn, "grad_b", gu);
  check_no_alias(fn, "grad_a", gv, "grad_b", gu);
  check_no_alias(fn, "grad_a", gv, "a", v);
  check_no_alias(fn, "grad_a", gv, "b", u);
  check_no_alias(fn, "grad_a", gv, "grad_x", gx);
  check_no_alias(fn, "grad_b", gu, "a", v);
  check_no_alias(fn, "grad_b", gu, "b", u);
  check_no_alias(fn, "grad_b", gu, "grad_x", gx);

  brownian_bridge_gradient out;
  std::vector<double> dsig(static_cast<std::size_t>(n), 0.0);
  const int threads = resolve_threads(o.num_threads, 64.0 * double(n) * double(d));
  bridge_scratch scratch(threads, 6 * d);
  const double sigma = saved.sigma;
  bridge_for_rows_checked<T>(
      fn, n, threads,
      [&](index_t j, int tid, bool store) {
        double* mu = scratch.get(tid);
        double* nk = mu + d;
        double* xk = nk + d;
        double* g = xk + d;
        double* dv = g + d;
        double* du = dv + d;
        const index_t base = j * (kk + 1);
        for (index_t i = 0; i < d; ++i) {
          du[i] = double(gx(base, i));       // X_0 = u
          dv[i] = double(gx(base + kk, i));  // X_K = v
          nk[i] = 0;
        }
        double ds = 0;
        for (index_t k = 1; k < kk; ++k) {
          const double tk = double(k) / double(kk);
          const double r = bridge_mean_row(v, u, j, tk, mu);
          if (o.noise) {
            bridge_load_xi(xi, o, j, k, kk, d, xk);
            bridge_step_noise(nk, xk, d, k, kk);
          }
          for (index_t i = 0; i < d; ++i) g[i] = double(gx(base + k, i));
          if (o.reproject) {
            for (index_t i = 0; i < d; ++i) xk[i] = mu[i] + (o.noise ? sigma * nk[i] : 0.0);
            const double rx = bridge_project(xk, d);
            bridge_project_backward(xk, rx, d, g);
          }
          if (o.noise)
            for (index_t i = 0; i < d; ++i) ds += g[i] * nk[i];
          bridge_mean_backward(mu, r, d, g);
          for (index_t i = 0; i < d; ++i) {
            dv[i] += tk * g[i];
            du[i] += (1 - tk) * g[i];
          }
        }
        dsig[static_cast<std::size_t>(j)] = ds;
        const bool ok = std::isfinite(ds) && bridge_put_row(gv, j, dv, o.accumulate, store);
        return bridge_put_row(gu, j, du, o.accumulate, store) && ok;
      },
      [&] {
        for (index_t j = 0; j < n; ++j) out.sigma += dsig[static_cast<std::size_t>(j)];
        CONTRASTIVE_CHECK(std::isfinite(out.sigma), fn,
                          ": dL/dsigma overflows; scale the upstream gradient down");
      });
  return out;
}

}  // namespace detail

/// The t of row j under these options: o.t, or the row's draw on Philox stream 3.
inline double brownian_bridge_time(const brownian_bridge_options& o, index_t j) {
  detail::bridge_check_time("brownian_bridge_time", o);
  return detail::bridge_t(o, j);
}

/// Samples one bridge point per pair into y (N x D), noise from Philox stream 2.
template <class A, class B, class Y>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& writable_tensor<Y&&>)
auto brownian_bridge_sample(const A& a, const B& b, Y&& y, const brownian_bridge_options& o = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/brownian_bridge.cuh
    // The GPU backward draws t_j again from the options: `saved` holds no per-row t.
    using Backend = typename detail::device_backend_of<detail::bridge_sampler_tag, A>::type;
    Backend::sample(as_view(a), as_view(b), as_view(y), o);
    return detail::bridge_saved_for<typename Backend::value_type>(as_view(a).rows(),
                                                                  as_view(a).cols(), 0, o, false);
  } else {
    const auto vv = detail::input_view(a);
    const auto vu = detail::input_view(b);
    const auto vy = detail::output_view(std::forward<Y>(y));
    using T = typename decltype(vv)::value_type;
    detail::require_same_value_type<T, decltype(vu), decltype(vy)>();
    return detail::bridge_point_forward<T>("brownian_bridge_sample", vv, vu, nullptr, vy, o);
  }
}

/// As brownian_bridge_sample, with the caller's standard-normal noise eps (N x D).
template <class A, class B, class E, class Y>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<E>&& writable_tensor<Y&&>)
auto brownian_bridge_sample_with_noise(const A& a, const B& b, const E& eps, Y&& y,
                                       const brownian_bridge_options& o = {}) {
  const auto vv = detail::input_view(a);
  const auto vu = detail::input_view(b);
  const auto ve = detail::input_view(eps);
  const auto vy = detail::output_view(std::forward<Y>(y));
  using T = typename decltype(vv)::value_type;
  detail::require_same_value_type<T, decltype(vu), decltype(ve), decltype(vy)>();
  return detail::bridge_point_forward<T>("brownian_bridge_sample_with_noise", vv, vu, &ve, vy, o);
}

/// Backward of brownian_bridge_sample: given grad_y = dL/dy, writes (or adds) dL/da and dL/db
/// and returns dL/dt (per row and summed) and dL/dsigma.
template <class A, class B, class T, class GY, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<GY>&& writable_tensor<GA&&>&&
                         writable_tensor<GB&&>)
brownian_bridge_gradient
    brownian_bridge_sample_backward(const A& a, const B& b, const brownian_bridge_saved<T>& saved,
                                    const GY& grad_y, GA&& grad_a, GB&& grad_b,
                                    const brownian_bridge_options& o = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/brownian_bridge.cuh
    const char* fn = "brownian_bridge_sample_backward";
    detail::bridge_check_saved(fn, saved, as_view(a).rows(), as_view(a).cols(), o, false, true,
                               false);
    return detail::device_backend_of<detail::bridge_sampler_tag, A>::type::sample_backward(
        as_view(a), as_view(b), as_view(grad_y), as_view(grad_a), as_view(grad_b), o);
  } else {
    const auto vv = detail::input_view(a);
    const auto vu = detail::input_view(b);
    const auto vg = detail::input_view(grad_y);
    const auto gv = detail::output_view(std::forward<GA>(grad_a));
    const auto gu = detail::output_view(std::forward<GB>(grad_b));
    detail::require_same_value_type<T, decltype(vv), decltype(vu), decltype(vg), decltype(gv),
                                    decltype(gu)>();
    return detail::bridge_point_backward<T>("brownian_bridge_sample_backward", vv, vu, nullptr,
                                            saved, vg, gv, gu, o);
  }
}

/// Backward of brownian_bridge_sample_with_noise (pass the same eps).
template <class A, class B, class E, class T, class GY, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<E>&& tensor_like<GY>&&
                         writable_tensor<GA&&>&& writable_tensor<GB&&>)
brownian_bridge_gradient
    brownian_bridge_sample_with_noise_backward(const A& a, const B& b, const E& eps,
                                               const brownian_bridge_saved<T>& saved,
                                               const GY& grad_y, GA&& grad_a, GB&& grad_b,
                                               const brownian_bridge_options& o = {}) {
  const auto vv = detail::input_view(a);
  const auto vu = detail::input_view(b);
  const auto ve = detail::input_view(eps);
  const auto vg = detail::input_view(grad_y);
  const auto gv = detail::output_view(std::forward<GA>(grad_a));
  const auto gu = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(vv), decltype(vu), decltype(ve), decltype(vg),
                                  decltype(gv), decltype(gu)>();
  return detail::bridge_point_backward<T>("brownian_bridge_sample_with_noise_backward", vv, vu, &ve,
                                          saved, vg, gv, gu, o);
}

/// Samples a K-step trajectory per pair into x (N (K+1) x D; row j (K+1) + k holds X_k), noise
/// from Philox stream 2.
template <class A, class B, class X>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& writable_tensor<X&&>)
auto brownian_bridge_trajectory(const A& a, const B& b, X&& x,
                                const brownian_bridge_options& o = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/brownian_bridge.cuh
    using Backend = typename detail::device_backend_of<detail::bridge_sampler_tag, A>::type;
    Backend::trajectory(as_view(a), as_view(b), as_view(x), o);
    return detail::bridge_saved_for<typename Backend::value_type>(
        as_view(a).rows(), as_view(a).cols(), o.steps, o, false);
  } else {
    const auto vv = detail::input_view(a);
    const auto vu = detail::input_view(b);
    const auto vx = detail::output_view(std::forward<X>(x));
    using T = typename decltype(vv)::value_type;
    detail::require_same_value_type<T, decltype(vu), decltype(vx)>();
    return detail::bridge_path_forward<T>("brownian_bridge_trajectory", vv, vu, nullptr, vx, o);
  }
}

/// As brownian_bridge_trajectory, with the caller's standard-normal xi (N (K-1) x D; row
/// j (K-1) + k - 1 holds xi_k of pair j).
template <class A, class B, class XI, class X>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<XI>&& writable_tensor<X&&>)
auto brownian_bridge_trajectory_with_noise(const A& a, const B& b, const XI& xi, X&& x,
                                           const brownian_bridge_options& o = {}) {
  const auto vv = detail::input_view(a);
  const auto vu = detail::input_view(b);
  const auto vxi = detail::input_view(xi);
  const auto vx = detail::output_view(std::forward<X>(x));
  using T = typename decltype(vv)::value_type;
  detail::require_same_value_type<T, decltype(vu), decltype(vxi), decltype(vx)>();
  return detail::bridge_path_forward<T>("brownian_bridge_trajectory_with_noise", vv, vu, &vxi, vx,
                                        o);
}

/// Backward of brownian_bridge_trajectory: given grad_x = dL/dx, writes (or adds) dL/da and
/// dL/db and returns dL/dsigma.
template <class A, class B, class T, class GX, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<GX>&& writable_tensor<GA&&>&&
                         writable_tensor<GB&&>)
brownian_bridge_gradient
    brownian_bridge_trajectory_backward(const A& a, const B& b,
                                        const brownian_bridge_saved<T>& saved, const GX& grad_x,
                                        GA&& grad_a, GB&& grad_b,
                                        const brownian_bridge_options& o = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/brownian_bridge.cuh
    detail::bridge_check_saved("brownian_bridge_trajectory_backward", saved, as_view(a).rows(),
                               as_view(a).cols(), o, false, false);
    return detail::device_backend_of<detail::bridge_sampler_tag, A>::type::trajectory_backward(
        as_view(a), as_view(b), as_view(grad_x), as_view(grad_a), as_view(grad_b), o);
  } else {
    const auto vv = detail::input_view(a);
    const auto vu = detail::input_view(b);
    const auto vg = detail::input_view(grad_x);
    const auto gv = detail::output_view(std::forward<GA>(grad_a));
    const auto gu = detail::output_view(std::forward<GB>(grad_b));
    detail::require_same_value_type<T, decltype(vv), decltype(vu), decltype(vg), decltype(gv),
                                    decltype(gu)>();
    return detail::bridge_path_backward<T>("brownian_bridge_trajectory_backward", vv, vu, nullptr,
                                           saved, vg, gv, gu, o);
  }
}

/// Backward of brownian_bridge_trajectory_with_noise (pass the same xi).
template <class A, class B, class XI, class T, class GX, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<XI>&& tensor_like<GX>&&
                         writable_tensor<GA&&>&& writable_tensor<GB&&>)
brownian_bridge_gradient
    brownian_bridge_trajectory_with_noise_backward(const A& a, const B& b, const XI& xi,
                                                   const brownian_bridge_saved<T>& saved,
                                                   const GX& grad_x, GA&& grad_a, GB&& grad_b,
                                                   const brownian_bridge_options& o = {}) {
  const auto vv = detail::input_view(a);
  const auto vu = detail::input_view(b);
  const auto vxi = detail::input_view(xi);
  const auto vg = detail::input_view(grad_x);
  const auto gv = detail::output_view(std::forward<GA>(grad_a));
  const auto gu = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(vv), decltype(vu), decltype(vxi), decltype(vg),
                                  decltype(gv), decltype(gu)>();
  return detail::bridge_path_backward<T>("brownian_bridge_trajectory_with_noise_backward", vv, vu,
                                         &vxi, saved, vg, gv, gu, o);
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_SAMPLING_BROWNIAN_BRIDGE_HPP
// ---- end contrastive/sampling/brownian_bridge.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

template <class T>
struct brownian_bridge_loss_saved {
  T loss = 0;
  index_t n = 0, d = 0;
  std::vector<double> t;  // per-row t
  bool nll_weight = false;
};

namespace detail {

template <class T>
void bridge_loss_check(const char* fn, const matrix_view<const T>& v, const matrix_view<const T>& u,
                       const matrix_view<const T>& a, const brownian_bridge_loss_options& o) {
  const brownian_bridge_options b = bridge_loss_time_options(o);
  bridge_check_endpoints(fn, v, u, b, false, false);  // shapes of v/u, t range, ids, rows
  check_matrix(fn, "a_aug", a);
  check_shape(fn, "a_aug", a, v.rows(), v.cols(), "the shape of 'a'");
  bridge_loss_check_weight(fn, o);
  check_rows(fn, "a_aug", a);
}

template <class T>
brownian_bridge_loss_saved<T> bridge_loss_forward(const matrix_view<const T>& v,
                                                  const matrix_view<const T>& u,
                                                  const matrix_view<const T>& a,
                                                  const brownian_bridge_loss_options& o) {
  const char* fn = "brownian_bridge_loss_forward";
  bridge_loss_check(fn, v, u, a, o);
  const index_t n = v.rows(), d = v.cols();
  const brownian_bridge_options b = bridge_loss_time_options(o);
  brownian_bridge_loss_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.nll_weight = o.nll_weight;
  saved.t.resize(static_cast<std::size_t>(n));
  std::vector<double> terms(static_cast<std::size_t>(n));
  const int threads = resolve_threads(o.num_threads, 64.0 * double(n) * double(d));
  bridge_scratch scratch(threads, d);
  bridge_for_rows(n, threads, [&](index_t j, int tid) {
    double* mu = scratch.get(tid);
    const double t = bridge_t(b, j);
    saved.t[static_cast<std::size_t>(j)] = t;
    bridge_mean_row(v, u, j, t, mu);
    double s = 0;
    for (index_t k = 0; k < d; ++k) {
      const double e = double(a(j, k)) - mu[k];
      s += e * e;
    }
    terms[static_cast<std::size_t>(j)] = bridge_loss_weight(t, o.nll_weight) * s;
  });
  double loss = 0;
  for (const double x : terms) loss += x;
  check_loss_finite(fn, static_cast<double>(static_cast<T>(loss / double(n))));
  saved.loss = static_cast<T>(loss / double(n));
  return saved;
}

template <class T>
brownian_bridge_loss_parameter_gradients bridge_loss_backward(
    const matrix_view<const T>& v, const matrix_view<const T>& u, const matrix_view<const T>& a,
    const brownian_bridge_loss_saved<T>& saved, const matrix_view<T>& gv, const matrix_view<T>& gu,
    const matrix_view<T>& ga, const brownian_bridge_loss_options& o, double upstream) {
  const char* fn = "brownian_bridge_loss_backward";
  bridge_loss_check(fn, v, u, a, o);
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
  const index_t n = v.rows(), d = v.cols();
  CONTRASTIVE_CHECK(saved.n == n && saved.d == d && saved.t.size() == static_cast<std::size_t>(n),
                    fn, ": 'saved' belongs to a ", saved.n, " x ", saved.d,
                    " batch, the inputs are ", n, " x ", d);
  CONTRASTIVE_CHECK(saved.nll_weight == o.nll_weight, fn, ": 'saved' was computed with nll_weight ",
                    saved.nll_weight, ", these options have ", o.nll_weight);
  const char* names[3] = {"grad_a", "grad_b", "grad_a_aug"};
  const matrix_view<T>* outs[3] = {&gv, &gu, &ga};
  for (int k = 0; k < 3; ++k) {
    check_matrix(fn, names[k], *outs[k]);
    check_shape(fn, names[k], *outs[k], n, d, "the shape of 'a'");
    check_writable_layout(fn, names[k], *outs[k]);
    check_no_alias(fn, names[k], *outs[k], "a", v);
    check_no_alias(fn, names[k], *outs[k], "b", u);
    check_no_alias(fn, names[k], *outs[k], "a_aug", a);
    for (int j = 0; j < k; ++j) check_no_alias(fn, names[k], *outs[k], names[j], *outs[j]);
  }

  brownian_bridge_loss_parameter_gradients out;
  out.t_rows.assign(static_cast<std::size_t>(n), 0.0);
  const int threads = resolve_threads(o.num_threads, 64.0 * double(n) * double(d));
  bridge_scratch scratch(threads, 2 * d);
  const double scale = upstream / double(n);
  bridge_for_rows_checked<T>(
      fn, n, threads,
      [&](index_t j, int tid, bool store) {
        double* mu = scratch.get(tid);
        double* g = mu + d;
        const double t = saved.t[static_cast<std::size_t>(j)];
        const double r = bridge_mean_row(v, u, j, t, mu);
        const double w = bridge_loss_weight(t, o.nll_weight);
        double dist = 0;
        for (index_t k = 0; k < d; ++k) {
          const double e = double(a(j, k)) - mu[k];
          dist += e * e;
          g[k] = 2 * w * scale * e;  // dL/da
        }
        bool ok = o.detach_a_aug || bridge_put_row(ga, j, g, o.accumulate, store);
        for (index_t k = 0; k < d; ++k) g[k] = -g[k];  // dL/dmu
        bridge_mean_backward(mu, r, d, g);             // dL/dm
        double dt = 0;
        for (index_t k = 0; k < d; ++k) dt += (double(v(j, k)) - double(u(j, k))) * g[k];
        dt += bridge_loss_weight_dt(t, o.nll_weight) * dist * scale;
        out.t_rows[static_cast<std::size_t>(j)] = dt;
        ok = std::isfinite(dt) && ok;
        for (index_t k = 0; k < d; ++k) mu[k] = t * g[k];
        ok = bridge_put_row(gv, j, mu, o.accumulate, store) && ok;
        for (index_t k = 0; k < d; ++k) mu[k] = (1 - t) * g[k];
        return bridge_put_row(gu, j, mu, o.accumulate, store) && ok;
      },
      [&] {
        for (const double x : out.t_rows) out.t += x;
        CONTRASTIVE_CHECK(std::isfinite(out.t), fn, ": dL/dt overflows; scale 'upstream' down");
      });
  if (o.detach_a_aug && !o.accumulate) {
    for (index_t i = 0; i < n; ++i)
      for (index_t k = 0; k < d; ++k) ga(i, k) = T(0);
  }
  return out;
}

}  // namespace detail

/// Scratch bytes: none (per-thread rows are allocated inside; the call takes a workspace only to
/// share the shape of every loss).
template <class T>
std::size_t brownian_bridge_loss_workspace_bytes(
    index_t, index_t, const brownian_bridge_loss_options& = {}) noexcept {
  return 0;
}

/// The same for these inputs.
template <
    class A, class B, class AA,
    std::enable_if_t<
        is_tensor_like<A>::value && is_tensor_like<B>::value && is_tensor_like<AA>::value, int> = 0>
std::size_t brownian_bridge_loss_workspace_bytes(
    const A&, const B&, const AA&, const brownian_bridge_loss_options& = {}) noexcept {
  return 0;
}

/// Forward: returns L_Br and the per-row t the backward reuses. `a` (image) and `b` (text) are
/// the pair's endpoints, `a_aug` the augmented image embedding (N x D each).
template <class A, class B, class AA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<AA>)
auto brownian_bridge_loss_forward(const A& a, const B& b, const AA& a_aug,
                                  const brownian_bridge_loss_options& o = {}, workspace = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/brownian_bridge.cuh
    return detail::device_backend_of<detail::brownian_bridge_loss_tag, A>::type::forward(
        as_view(a), as_view(b), as_view(a_aug), o);
  } else {
    const auto va = detail::input_view(a);
    const auto vb = detail::input_view(b);
    const auto vaa = detail::input_view(a_aug);
    using T = typename decltype(va)::value_type;
    detail::require_same_value_type<T, decltype(vb), decltype(vaa)>();
    return detail::bridge_loss_forward<T>(va, vb, vaa, o);
  }
}

/// Backward of a forward run on device views (cuda/brownian_bridge.cuh).
template <class A, class B, class AA, class GA, class GB, class GAA>
brownian_bridge_loss_parameter_gradients brownian_bridge_loss_backward(
    const A& a, const B& b, const AA& a_aug, const cuda::brownian_bridge_loss_device_saved& saved,
    GA&& grad_a, GB&& grad_b, GAA&& grad_a_aug, const brownian_bridge_loss_options& o = {},
    double upstream = 1.0, workspace = {}) {
  return detail::device_backend_of<detail::brownian_bridge_loss_tag, A>::type::backward(
      as_view(a), as_view(b), as_view(a_aug), saved, as_view(grad_a), as_view(grad_b),
      as_view(grad_a_aug), o, upstream);
}

/// Backward: writes (or adds) upstream * dL/da, dL/db and dL/da_aug; returns upstream * dL/dt
/// (per row and summed).
template <class A, class B, class AA, class T, class GA, class GB, class GAA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<AA>&& writable_tensor<GA&&>&&
                         writable_tensor<GB&&>&& writable_tensor<GAA&&>)
brownian_bridge_loss_parameter_gradients
    brownian_bridge_loss_backward(const A& a, const B& b, const AA& a_aug,
                                  const brownian_bridge_loss_saved<T>& saved, GA&& grad_a,
                                  GB&& grad_b, GAA&& grad_a_aug,
                                  const brownian_bridge_loss_options& o = {}, double upstream = 1.0,
                                  workspace = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto vaa = detail::input_view(a_aug);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  const auto gaa = detail::output_view(std::forward<GAA>(grad_a_aug));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(vaa), decltype(ga),
                                  decltype(gb), decltype(gaa)>();
  return detail::bridge_loss_backward<T>(va, vb, vaa, saved, ga, gb, gaa, o, upstream);
}

/// Forward and backward in one call; returns the loss (and dL/dt through *parameter_grads).
template <class A, class B, class AA, class GA, class GB, class GAA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<AA>&& writable_tensor<GA&&>&&
                         writable_tensor<GB&&>&& writable_tensor<GAA&&>)
auto brownian_bridge_loss_forward_backward(
    const A& a, const B& b, const AA& a_aug, GA&& grad_a, GB&& grad_b, GAA&& grad_a_aug,
    const brownian_bridge_loss_options& o = {},
    brownian_bridge_loss_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto saved = brownian_bridge_loss_forward(a, b, a_aug, o, ws);
  auto g = brownian_bridge_loss_backward(a, b, a_aug, saved, std::forward<GA>(grad_a),
                                         std::forward<GB>(grad_b), std::forward<GAA>(grad_a_aug), o,
                                         1.0, ws);
  if (parameter_grads) *parameter_grads = std::move(g);
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_BROWNIAN_BRIDGE_HPP
// ---- end contrastive/losses/brownian_bridge.hpp ----
// ---- begin contrastive/losses/geometric_consistency.hpp ----
#ifndef CONTRASTIVE_LOSSES_GEOMETRIC_CONSISTENCY_HPP
#define CONTRASTIVE_LOSSES_GEOMETRIC_CONSISTENCY_HPP

// Geometric consistency (Jiang et al., "Understanding and Constructing Latent Modality Structures
// in Multi-modal Representation Learning", CVPR 2023, after CyCLIP). Math, gradients and
// options: docs/geometric_consistency.md. Rows j of V (image) and U (text) are the two embeddings of pair j.
//
//   L_GC   = (1/N) sum_{j,k} [ w_x (<v_j,u_k> - <v_k,u_j>)^2 + w_i (<v_j,v_k> - <u_j,u_k>)^2 ]
//   L^a_GC = (1/N) sum_{j,k} [ (<v_j,v_k> - <va_j,va_k>)^2 + (<u_j,u_k> - <ua_j,ua_k>)^2 ]
//          + (1/N) sum_j (<v_j,u_j> - <va_j,ua_j>)^2
//
// w_x (cross-modal symmetry) and w_i (in-modal consistency) are 1 by default, which is the
// paper's L_GC; either may be set to 0 to use one term alone. The double sums carry 1/N, not
// 1/N^2, as in the paper and CyCLIP; under data parallelism N is the global batch.
//
// Two algorithms:
// - naive: the N x N similarity matrices, O(N^2 D) time and O(N^2) memory; the test reference.
//   Its products are plain Eigen expressions (threaded by Eigen itself under OpenMP).
// - gram: D x D Gram matrices only, O(N D^2) time, O((N/chunk + threads) chunk D + D^2) memory,
//   never N x N. With equal weights it uses the cancellation-free P = V + U, Q = V - U form
//   (L_GC = (1/N) tr((P^T P)(Q^T Q)): 6 N D^2 flop for forward + backward with symmetric rank
//   updates); with unequal weights (or `gram_split`) the three-Gram form (V^T V, U^T U,
//   V^T U). The augmented variant uses P = X + Y, Q = X - Y per pair (X, Y) in {(V, Va), (U, Ua)}
//   (`gram_split`: X^T X, Y^T Y, X^T Y). Rows are processed in chunks of `tile_rows`; chunks are
//   grouped into a fixed number of slabs (a function of N, D and the element type only), each
//   with its own Gram accumulators, summed in slab order, so its results are bit-for-bit the
//   same for any `num_threads`.
// `automatic` picks gram when D < N (it then costs less than naive) and naive otherwise.
//
// Inputs are used as given (normalise them with l2_normalize); a row of zero norm or a
// non-finite value is bad input (contrastive::invalid_argument). The backward checks every row
// before it writes anything, so a throwing call leaves the gradient outputs untouched.
//
// Threads: OpenMP when compiled with it (`num_threads`, 0 = omp_get_max_threads()); serial
// otherwise.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

// ---- begin contrastive/losses/geometric_consistency_options.hpp ----
#ifndef CONTRASTIVE_LOSSES_GEOMETRIC_CONSISTENCY_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_GEOMETRIC_CONSISTENCY_OPTIONS_HPP

// The options of geometric_consistency.hpp, apart so that the CUDA path
// (cuda/geometric_consistency.cuh, nvcc) takes the same struct without Eigen.

#include <cmath>


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
// ---- end contrastive/losses/geometric_consistency_options.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

/// What the forward keeps: the loss, the path that ran and, on the gram path, the D x D Gram
/// matrices (and, for the augmented variant, the N diagonal differences) the backward reuses.
template <class T>
struct geometric_consistency_saved {
  T loss = 0;
  index_t n = 0, d = 0;
  bool augmented = false;
  gc_algorithm algorithm = gc_algorithm::naive;  // never automatic
  double cross_modal_weight = 1, in_modal_weight = 1;
  std::vector<T> grams;       // gram paths: row-major D x D matrices, see detail::gc_gram_count
  std::vector<double> delta;  // augmented: <v_j,u_j> - <va_j,ua_j>
};

namespace detail {

constexpr const char* gc_fwd_name = "geometric_consistency_forward";
constexpr const char* gc_bwd_name = "geometric_consistency_backward";
constexpr const char* gca_fwd_name = "geometric_consistency_augmented_forward";
constexpr const char* gca_bwd_name = "geometric_consistency_augmented_backward";

/// The path that runs for an n x d problem.
inline gc_algorithm gc_resolve(index_t n, index_t d, bool augmented,
                               const geometric_consistency_options& o) noexcept {
  gc_algorithm a = o.algorithm;
  if (a == gc_algorithm::automatic) a = d < n ? gc_algorithm::gram : gc_algorithm::naive;
  if (a == gc_algorithm::gram && !augmented && !gc_equal_weights(o)) a = gc_algorithm::gram_split;
  return a;
}

/// D x D matrices kept by the gram paths.
inline int gc_gram_count(gc_algorithm a, bool augmented) noexcept {
  if (a == gc_algorithm::naive) return 0;
  if (augmented) return 6;                 // per pair: (P^TP, Q^TQ, P^TQ) or (X^TX, Y^TY, X^TY)
  return a == gc_algorithm::gram ? 2 : 3;  // (P^TP, Q^TQ) or (V^TV, U^TU, V^TU)
}

/// The fixed work split of the gram path.
struct gc_plan {
  gc_algorithm algorithm = gc_algorithm::naive;
  bool augmented = false;
  index_t n = 0, d = 0;
  index_t chunk = 0, chunks = 0, slabs = 0;
  int grams = 0;
  int threads = 1;
};

template <class T>
gc_plan gc_make_plan(index_t n, index_t d, bool augmented, const geometric_consistency_options& o) {
  gc_plan p;
  p.algorithm = gc_resolve(n, d, augmented, o);
  p.augmented = augmented;
  p.n = n;
  p.d = d;
  p.grams = gc_gram_count(p.algorithm, augmented);
  p.threads = resolve_threads(o.num_threads, double(n) * double(d) * double(d));
  if (p.algorithm == gc_algorithm::naive) return p;
  p.chunk = o.tile_rows < n ? o.tile_rows : n;
  p.chunks = (n + p.chunk - 1) / p.chunk;
  // Slabs: at most 8, and their extra Gram accumulators within 64 MiB. A function of (N, D, T)
  // and the options only, never of the thread count.
  const std::size_t per_slab = static_cast<std::size_t>(p.grams) * static_cast<std::size_t>(d) *
                               static_cast<std::size_t>(d) * sizeof(T);
  index_t s = p.chunks < 8 ? p.chunks : 8;
  while (s > 1 && static_cast<std::size_t>(s - 1) * per_slab > (std::size_t(64) << 20)) --s;
  p.slabs = s;
  return p;
}

/// Per-thread scratch on the gram path: four chunk x D blocks.
template <class T>
std::size_t gc_thread_bytes(const gc_plan& p) {
  return 4 * array_bytes<T>(static_cast<std::size_t>(p.chunk * p.d));
}

template <class T>
std::size_t gc_forward_bytes(const gc_plan& p) {
  if (p.algorithm == gc_algorithm::naive) return workspace_alignment;
  const int threads = p.threads < p.slabs ? p.threads : static_cast<int>(p.slabs);
  const std::size_t dd = static_cast<std::size_t>(p.d * p.d);
  return static_cast<std::size_t>(p.slabs - 1) *
             array_bytes<T>(dd * static_cast<std::size_t>(p.grams)) +
         static_cast<std::size_t>(threads) * gc_thread_bytes<T>(p) + workspace_alignment;
}

template <class T>
std::size_t gc_backward_bytes(const gc_plan& p) {
  if (p.algorithm == gc_algorithm::naive) return workspace_alignment;
  const int threads = p.threads < p.chunks ? p.threads : static_cast<int>(p.chunks);
  const std::size_t dd = static_cast<std::size_t>(p.d * p.d);
  return 8 * array_bytes<T>(dd) + static_cast<std::size_t>(threads) * gc_thread_bytes<T>(p) +
         workspace_alignment;
}

template <class T>
using gc_map = Eigen::Map<row_major_matrix<T>>;
template <class T>
using gc_cmap = Eigen::Map<const row_major_matrix<T>>;

/// The first bad row a chunk met (row < 0: none).
struct gc_row_flag {
  index_t row = -1;
};

/// One input of the problem with its name (for messages).
template <class T>
struct gc_input {
  matrix_view<const T> view;
  const char* name;
};

/// Copies rows [r0, r0 + c) of x (row-major into dst, c x D) and flags a bad row.
template <class T>
void gc_load(const matrix_view<const T>& x, index_t r0, index_t c, T* dst, gc_row_flag& flag) {
  const index_t d = x.cols(), cs = x.col_stride();
  for (index_t r = 0; r < c; ++r) {
    const T* src = x.row_ptr(r0 + r);
    T* out = dst + r * d;
    double s = 0;
    for (index_t k = 0; k < d; ++k) {
      const T a = src[k * cs];
      out[k] = a;
      s += double(a) * double(a);
    }
    if (CONTRASTIVE_UNLIKELY(!row_norm_ok(s)) && flag.row < 0) flag.row = r0 + r;
  }
}

/// P = X + Y and Q = X - Y for rows [r0, r0 + c), flagging a bad row of X or Y.
template <class T>
void gc_load_pq(const matrix_view<const T>& x, const matrix_view<const T>& y, index_t r0, index_t c,
                T* p, T* q, gc_row_flag& flag) {
  const index_t d = x.cols(), xs = x.col_stride(), ys = y.col_stride();
  for (index_t r = 0; r < c; ++r) {
    const T* xr = x.row_ptr(r0 + r);
    const T* yr = y.row_ptr(r0 + r);
    T* pr = p + r * d;
    T* qr = q + r * d;
    double sx = 0, sy = 0;
    if (xs == 1 && ys == 1) {
      for (index_t k = 0; k < d; ++k) {
        const T a = xr[k], b = yr[k];
        pr[k] = a + b;
        qr[k] = a - b;
        sx += double(a) * double(a);
        sy += double(b) * double(b);
      }
    } else {
      for (index_t k = 0; k < d; ++k) {
        const T a = xr[k * xs], b = yr[k * ys];
        pr[k] = a + b;
        qr[k] = a - b;
        sx += double(a) * double(a);
        sy += double(b) * double(b);
      }
    }
    if (CONTRASTIVE_UNLIKELY(!(row_norm_ok(sx) && row_norm_ok(sy))) && flag.row < 0)
      flag.row = r0 + r;
  }
}

/// After a parallel pass: the first flagged row (in row order) is reported with the inputs'
/// names; a false alarm (a squared norm overflowing double) re-checks the rest of its chunk.
template <class T>
void gc_report_flags(const char* fn, const std::vector<gc_row_flag>& flags, const gc_plan& p,
                     const gc_input<T>* inputs, int count) {
  for (index_t c = 0; c < p.chunks; ++c) {
    if (flags[static_cast<std::size_t>(c)].row < 0) continue;
    const index_t r0 = c * p.chunk;
    const index_t rows = p.n - r0 < p.chunk ? p.n - r0 : p.chunk;
    for (int k = 0; k < count; ++k)
      check_rows(fn, inputs[k].name, inputs[k].view.middle_rows(r0, rows));
  }
}

/// out(rows r0.., :) = (accumulate ? out : 0) + s * buf
template <class T>
void gc_store(const matrix_view<T>& out, index_t r0, index_t c, const T* buf, double s,
              bool accumulate) {
  const index_t d = out.cols();
  const T st = static_cast<T>(s);
  for (index_t r = 0; r < c; ++r) {
    const T* b = buf + r * d;
    if (out.col_stride() == 1) {
      T* o = out.row_ptr(r0 + r);
      if (accumulate) {
        for (index_t k = 0; k < d; ++k) o[k] += st * b[k];
      } else {
        for (index_t k = 0; k < d; ++k) o[k] = st * b[k];
      }
    } else {
      for (index_t k = 0; k < d; ++k) {
        T& o = out(r0 + r, k);
        o = accumulate ? o + st * b[k] : st * b[k];
      }
    }
  }
}

/// out1 = s (X + Y), out2 = s (X - Y) for rows r0.. (either output may be absent).
template <class T>
void gc_store_sum_diff(const matrix_view<T>* out1, const matrix_view<T>* out2, index_t r0,
                       index_t c, index_t d, const T* x, const T* y, double s, bool accumulate) {
  const T st = static_cast<T>(s);
  for (index_t r = 0; r < c; ++r) {
    const T* xr = x + r * d;
    const T* yr = y + r * d;
    for (index_t k = 0; k < d; ++k) {
      const T a = xr[k], b = yr[k];
      if (out1) {
        T& o = (*out1)(r0 + r, k);
        o = accumulate ? o + st * (a + b) : st * (a + b);
      }
      if (out2) {
        T& o = (*out2)(r0 + r, k);
        o = accumulate ? o + st * (a - b) : st * (a - b);
      }
    }
  }
}

/// Zero (or leave, when accumulating) an output.
template <class T>
void gc_clear(const matrix_view<T>& out, bool accumulate) {
  if (accumulate) return;
  for (index_t i = 0; i < out.rows(); ++i)
    for (index_t k = 0; k < out.cols(); ++k) out(i, k) = T(0);
}

/// sum_ij X_ij Y_ij and sum_ij X_ij Y_ji in double.
template <class T>
double gc_frobenius(const T* x, const T* y, index_t d) noexcept {
  double s = 0;
  for (index_t i = 0; i < d * d; ++i) s += double(x[i]) * double(y[i]);
  return s;
}
template <class T>
double gc_trace_product(const T* x, const T* y, index_t d) noexcept {
  double s = 0;
  for (index_t i = 0; i < d; ++i)
    for (index_t j = 0; j < d; ++j) s += double(x[i * d + j]) * double(y[j * d + i]);
  return s;
}

/// Copies the lower triangle onto the upper one.
template <class T>
void gc_symmetrize(T* a, index_t d) noexcept {
  for (index_t i = 0; i < d; ++i)
    for (index_t j = i + 1; j < d; ++j) a[i * d + j] = a[j * d + i];
}

/// Which Grams of a slab are symmetric rank updates (lower triangle only until summed).
inline bool gc_gram_is_symmetric(const gc_plan& p, int g) noexcept {
  if (p.augmented) return g % 3 != 2;
  return p.algorithm == gc_algorithm::gram ? true : g != 2;
}

/// The forward sweep of the gram paths: fills saved.grams (and saved.delta) and returns the loss.
template <class T>
double gc_gram_forward(const char* fn, const gc_plan& p, const gc_input<T>* in, int inputs,
                       const geometric_consistency_options& o,
                       geometric_consistency_saved<T>& saved, workspace ws) {
  const index_t n = p.n, d = p.d, dd = d * d;
  arena ar(ws, gc_forward_bytes<T>(p) - workspace_alignment, fn);
  saved.grams.assign(static_cast<std::size_t>(p.grams * dd), T(0));
  if (p.augmented) saved.delta.assign(static_cast<std::size_t>(n), 0.0);
  std::vector<T*> slab(static_cast<std::size_t>(p.slabs));
  slab[0] = saved.grams.data();
  for (index_t s = 1; s < p.slabs; ++s) {
    slab[static_cast<std::size_t>(s)] = ar.take<T>(static_cast<std::size_t>(p.grams * dd));
    std::fill(slab[static_cast<std::size_t>(s)], slab[static_cast<std::size_t>(s)] + p.grams * dd,
              T(0));
  }
  const int threads = p.threads < p.slabs ? p.threads : static_cast<int>(p.slabs);
  std::vector<T*> scratch(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t)
    scratch[static_cast<std::size_t>(t)] = ar.take<T>(4 * static_cast<std::size_t>(p.chunk * d));
  std::vector<gc_row_flag> flags(static_cast<std::size_t>(p.chunks));

  parallel_for(p.slabs, threads, [&](index_t s, int tid) {
    T* buf0 = scratch[static_cast<std::size_t>(tid)];
    T* buf1 = buf0 + p.chunk * d;
    T* g = slab[static_cast<std::size_t>(s)];
    const index_t c0 = s * p.chunks / p.slabs, c1 = (s + 1) * p.chunks / p.slabs;
    for (index_t ch = c0; ch < c1; ++ch) {
      const index_t r0 = ch * p.chunk;
      const index_t c = n - r0 < p.chunk ? n - r0 : p.chunk;
      gc_row_flag& flag = flags[static_cast<std::size_t>(ch)];
      const gc_cmap<T> m0(buf0, c, d), m1(buf1, c, d);
      const int pairs = p.augmented ? 2 : 1;
      for (int pr = 0; pr < pairs; ++pr) {
        // The pair (X, Y): (V, U), or (V, Va) and (U, Ua) when augmented.
        const matrix_view<const T>& xv = p.augmented ? in[pr].view : in[0].view;
        const matrix_view<const T>& yv = p.augmented ? in[pr + 2].view : in[1].view;
        T* g0 = g + static_cast<index_t>(3 * pr) * dd;
        gc_map<T> G0(g0, d, d), G1(g0 + dd, d, d);
        if (p.algorithm == gc_algorithm::gram) {
          gc_load_pq(xv, yv, r0, c, buf0, buf1, flag);  // buf0 = P, buf1 = Q
        } else {
          gc_load(xv, r0, c, buf0, flag);
          gc_load(yv, r0, c, buf1, flag);
        }
        G0.template selfadjointView<Eigen::Lower>().rankUpdate(m0.transpose());
        G1.template selfadjointView<Eigen::Lower>().rankUpdate(m1.transpose());
        if (p.augmented || p.algorithm == gc_algorithm::gram_split) {
          gc_map<T> G2(g0 + 2 * dd, d, d);
          G2.noalias() += m0.transpose() * m1;
        }
      }
      if (p.augmented) {
        const matrix_view<const T>& v = in[0].view;
        const matrix_view<const T>& u = in[1].view;
        const matrix_view<const T>& va = in[2].view;
        const matrix_view<const T>& ua = in[3].view;
        for (index_t r = r0; r < r0 + c; ++r)
          saved.delta[static_cast<std::size_t>(r)] = dot_rows(v, r, u, r) - dot_rows(va, r, ua, r);
      }
    }
  });
  gc_report_flags(fn, flags, p, in, inputs);

  T* g = saved.grams.data();
  for (index_t s = 1; s < p.slabs; ++s) {
    const T* o2 = slab[static_cast<std::size_t>(s)];
    for (index_t i = 0; i < p.grams * dd; ++i) g[i] += o2[i];
  }
  for (int k = 0; k < p.grams; ++k)
    if (gc_gram_is_symmetric(p, k)) gc_symmetrize(g + k * dd, d);

  const double inv_n = 1.0 / double(n);
  if (!p.augmented) {
    if (p.algorithm == gc_algorithm::gram) {  // w (1/N) tr(A B), A = P^TP, B = Q^TQ
      return o.in_modal_weight * inv_n * gc_frobenius(g, g + dd, d);
    }
    const T* av = g;
    const T* au = g + dd;
    const T* cc = g + 2 * dd;  // V^T U
    const double cross = 2 * gc_frobenius(av, au, d) - 2 * gc_trace_product(cc, cc, d);
    const double inmod =
        gc_frobenius(av, av, d) + gc_frobenius(au, au, d) - 2 * gc_frobenius(cc, cc, d);
    return inv_n * (o.cross_modal_weight * cross + o.in_modal_weight * inmod);
  }
  double f = 0;
  for (int pr = 0; pr < 2; ++pr) {
    const T* a = g + 3 * pr * dd;
    const T* b = a + dd;
    const T* c = a + 2 * dd;
    if (p.algorithm == gc_algorithm::gram) {
      f += 0.5 * (gc_frobenius(a, b, d) + gc_trace_product(c, c, d));
    } else {
      f += gc_frobenius(a, a, d) + gc_frobenius(b, b, d) - 2 * gc_frobenius(c, c, d);
    }
  }
  for (const double dl : saved.delta) f += dl * dl;
  return inv_n * f;
}

/// The backward sweep of the gram paths. out[k] may be null (detached).
template <class T>
void gc_gram_backward(const char* fn, const gc_plan& p, const gc_input<T>* in, int inputs,
                      const geometric_consistency_saved<T>& saved, const matrix_view<T>* const* out,
                      const geometric_consistency_options& o, double upstream, workspace ws) {
  const index_t n = p.n, d = p.d, dd = d * d;
  arena ar(ws, gc_backward_bytes<T>(p) - workspace_alignment, fn);
  const T* g = saved.grams.data();
  // Right-hand D x D factors of the products, combined once.
  T* f[8] = {};
  const auto cm = [d](const T* x) { return gc_cmap<T>(x, d, d); };
  if (!p.augmented && p.algorithm == gc_algorithm::gram) {
    // dV = s (P B + Q A), dU = s (P B - Q A), s = 2 w / N: the factors are B and A themselves.
  } else if (!p.augmented) {
    const double wx = o.cross_modal_weight, wi = o.in_modal_weight;
    for (int k = 0; k < 4; ++k) f[k] = ar.take<T>(static_cast<std::size_t>(dd));
    const auto av = cm(g), au = cm(g + dd), c = cm(g + 2 * dd);   // c = V^T U
    gc_map<T>(f[0], d, d) = (T(wx) * au + T(wi) * av);            // Mv
    gc_map<T>(f[1], d, d) = (T(wx) * c + T(wi) * c.transpose());  // Nv
    gc_map<T>(f[2], d, d) = (T(wx) * av + T(wi) * au);            // Mu
    gc_map<T>(f[3], d, d) = (T(wx) * c.transpose() + T(wi) * c);  // Nu
  } else {
    for (int pr = 0; pr < 2; ++pr) {
      const auto a = cm(g + 3 * pr * dd), b = cm(g + (3 * pr + 1) * dd),
                 c = cm(g + (3 * pr + 2) * dd);
      T* const* fp = f + 4 * pr;
      for (int k = 0; k < 4; ++k) f[4 * pr + k] = ar.take<T>(static_cast<std::size_t>(dd));
      if (p.algorithm == gc_algorithm::gram) {       // c = P^T Q
        gc_map<T>(fp[0], d, d) = b + c.transpose();  // dX = P G1 + Q G2
        gc_map<T>(fp[1], d, d) = c + a;
        gc_map<T>(fp[2], d, d) = b - c.transpose();  // dY = P G3 + Q G4
        gc_map<T>(fp[3], d, d) = c - a;
      } else {  // a = X^TX, b = Y^TY, c = X^TY: dX = 4 (X a - Y c^T), dY = 4 (Y b - X c)
        gc_map<T>(fp[0], d, d) = a;
        gc_map<T>(fp[1], d, d) = -c.transpose();
        gc_map<T>(fp[2], d, d) = b;
        gc_map<T>(fp[3], d, d) = -c;
      }
    }
  }
  const int threads = p.threads < p.chunks ? p.threads : static_cast<int>(p.chunks);
  std::vector<T*> scratch(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t)
    scratch[static_cast<std::size_t>(t)] = ar.take<T>(4 * static_cast<std::size_t>(p.chunk * d));
  std::vector<gc_row_flag> flags(static_cast<std::size_t>(p.chunks));
  const double inv_n = 1.0 / double(n);
  const bool acc = o.accumulate;

  parallel_for(p.chunks, threads, [&](index_t ch, int tid) {
    T* buf0 = scratch[static_cast<std::size_t>(tid)];
    T* buf1 = buf0 + p.chunk * d;
    T* buf2 = buf1 + p.chunk * d;
    T* buf3 = buf2 + p.chunk * d;
    const index_t r0 = ch * p.chunk;
    const index_t c = n - r0 < p.chunk ? n - r0 : p.chunk;
    gc_row_flag& flag = flags[static_cast<std::size_t>(ch)];
    const gc_cmap<T> m0(buf0, c, d), m1(buf1, c, d);
    gc_map<T> x2(buf2, c, d), x3(buf3, c, d);
    if (!p.augmented && p.algorithm == gc_algorithm::gram) {
      gc_load_pq(in[0].view, in[1].view, r0, c, buf0, buf1, flag);
      const double s = 2 * o.in_modal_weight * upstream * inv_n;
      if (!acc && gemm_ready(*out[0]) && gemm_ready(*out[1])) {
        // The products go straight into the outputs, then (x, y) -> s (x + y), s (x - y).
        auto gvm = map_rows_mut(out[0]->middle_rows(r0, c));
        auto gum = map_rows_mut(out[1]->middle_rows(r0, c));
        gvm.noalias() = m0 * cm(g + dd);  // P B
        gum.noalias() = m1 * cm(g);       // Q A
        const T st = static_cast<T>(s);
        for (index_t r = 0; r < c; ++r) {
          T* xr = out[0]->row_ptr(r0 + r);
          T* yr = out[1]->row_ptr(r0 + r);
          for (index_t k = 0; k < d; ++k) {
            const T a = xr[k], b = yr[k];
            xr[k] = st * (a + b);
            yr[k] = st * (a - b);
          }
        }
        return;
      }
      x2.noalias() = m0 * cm(g + dd);  // P B
      x3.noalias() = m1 * cm(g);       // Q A
      gc_store_sum_diff(out[0], out[1], r0, c, d, buf2, buf3, s, acc);
      return;
    }
    if (!p.augmented) {
      gc_load(in[0].view, r0, c, buf0, flag);
      gc_load(in[1].view, r0, c, buf1, flag);
      const double s = 4 * upstream * inv_n;
      x2.noalias() = m0 * cm(f[0]);
      x2.noalias() -= m1 * cm(f[1]);
      gc_store(*out[0], r0, c, buf2, s, acc);
      x3.noalias() = m1 * cm(f[2]);
      x3.noalias() -= m0 * cm(f[3]);
      gc_store(*out[1], r0, c, buf3, s, acc);
      return;
    }
    for (int pr = 0; pr < 2; ++pr) {
      const matrix_view<const T>& xv = in[pr].view;
      const matrix_view<const T>& yv = in[pr + 2].view;
      const matrix_view<T>* ox = out[pr];
      const matrix_view<T>* oy = out[pr + 2];
      T* const* fp = f + 4 * pr;
      if (p.algorithm == gc_algorithm::gram) {
        gc_load_pq(xv, yv, r0, c, buf0, buf1, flag);
      } else {
        gc_load(xv, r0, c, buf0, flag);
        gc_load(yv, r0, c, buf1, flag);
      }
      // gram: dX = P G1 + Q G2, dY = P G3 + Q G4 (scale 1/N);
      // split: dX = X a + Y (-c^T), dY = Y b + X (-c) (scale 4/N).
      const double s = (p.algorithm == gc_algorithm::gram ? 1.0 : 4.0) * upstream * inv_n;
      const bool split = p.algorithm == gc_algorithm::gram_split;
      if (ox) {
        x2.noalias() = m0 * cm(fp[0]);
        x2.noalias() += m1 * cm(fp[1]);
        gc_store(*ox, r0, c, buf2, s, acc);
      }
      if (oy) {
        if (split) {
          x3.noalias() = m1 * cm(fp[2]);
          x3.noalias() += m0 * cm(fp[3]);
        } else {
          x3.noalias() = m0 * cm(fp[2]);
          x3.noalias() += m1 * cm(fp[3]);
        }
        gc_store(*oy, r0, c, buf3, s, acc);
      }
    }
    // Diagonal term: (1/N) sum_j delta_j^2, delta_j = <v_j,u_j> - <va_j,ua_j>.
    const matrix_view<const T>* xs[4] = {&in[0].view, &in[1].view, &in[2].view, &in[3].view};
    for (index_t r = r0; r < r0 + c; ++r) {
      const double dl = 2 * upstream * inv_n * saved.delta[static_cast<std::size_t>(r)];
      // dv += dl u, du += dl v, dva -= dl ua, dua -= dl va
      const int partner[4] = {1, 0, 3, 2};
      const double sign[4] = {1, 1, -1, -1};
      for (int k = 0; k < 4; ++k) {
        if (!out[k]) continue;
        const matrix_view<const T>& w = *xs[partner[k]];
        const T coef = static_cast<T>(sign[k] * dl);
        for (index_t j = 0; j < d; ++j) (*out[k])(r, j) += coef * w(r, j);
      }
    }
  });
  gc_report_flags(fn, flags, p, in, inputs);
}

/// Row-major Eigen copy of a view (naive path).
template <class T>
row_major_matrix<T> gc_dense(const matrix_view<const T>& x) {
  row_major_matrix<T> m(x.rows(), x.cols());
  for (index_t i = 0; i < x.rows(); ++i)
    for (index_t k = 0; k < x.cols(); ++k) m(i, k) = x(i, k);
  return m;
}

template <class M>
double gc_squared_norm(const M& m) {
  double s = 0;
  for (index_t i = 0; i < m.rows(); ++i)
    for (index_t k = 0; k < m.cols(); ++k) s += double(m(i, k)) * double(m(i, k));
  return s;
}

template <class T>
void gc_store_dense(const matrix_view<T>& out, const row_major_matrix<T>& g, bool accumulate) {
  for (index_t i = 0; i < out.rows(); ++i)
    for (index_t k = 0; k < out.cols(); ++k) out(i, k) = accumulate ? out(i, k) + g(i, k) : g(i, k);
}

/// Naive forward: N x N matrices.
template <class T>
double gc_naive_forward(const gc_plan& p, const gc_input<T>* in,
                        const geometric_consistency_options& o,
                        geometric_consistency_saved<T>& saved) {
  const double inv_n = 1.0 / double(p.n);
  const row_major_matrix<T> v = gc_dense(in[0].view), u = gc_dense(in[1].view);
  if (!p.augmented) {
    const row_major_matrix<T> m = v * u.transpose();
    const row_major_matrix<T> k = m - m.transpose();
    const row_major_matrix<T> e = v * v.transpose() - u * u.transpose();
    return inv_n *
           (o.cross_modal_weight * gc_squared_norm(k) + o.in_modal_weight * gc_squared_norm(e));
  }
  const row_major_matrix<T> va = gc_dense(in[2].view), ua = gc_dense(in[3].view);
  const row_major_matrix<T> ev = v * v.transpose() - va * va.transpose();
  const row_major_matrix<T> eu = u * u.transpose() - ua * ua.transpose();
  double f = gc_squared_norm(ev) + gc_squared_norm(eu);
  saved.delta.assign(static_cast<std::size_t>(p.n), 0.0);
  for (index_t j = 0; j < p.n; ++j) {
    const double dl =
        dot_rows(in[0].view, j, in[1].view, j) - dot_rows(in[2].view, j, in[3].view, j);
    saved.delta[static_cast<std::size_t>(j)] = dl;
    f += dl * dl;
  }
  return inv_n * f;
}

template <class T>
void gc_naive_backward(const gc_plan& p, const gc_input<T>* in,
                       const geometric_consistency_saved<T>& saved,
                       const matrix_view<T>* const* out, const geometric_consistency_options& o,
                       double upstream) {
  const T s = static_cast<T>(4 * upstream / double(p.n));
  const row_major_matrix<T> v = gc_dense(in[0].view), u = gc_dense(in[1].view);
  if (!p.augmented) {
    const row_major_matrix<T> m = v * u.transpose();
    const row_major_matrix<T> k = m - m.transpose();
    const row_major_matrix<T> e = v * v.transpose() - u * u.transpose();
    const T wx = static_cast<T>(o.cross_modal_weight), wi = static_cast<T>(o.in_modal_weight);
    const row_major_matrix<T> gv = s * (wx * (k * u) + wi * (e * v));
    const row_major_matrix<T> gu = -s * (wx * (k * v) + wi * (e * u));
    gc_store_dense(*out[0], gv, o.accumulate);
    gc_store_dense(*out[1], gu, o.accumulate);
    return;
  }
  const row_major_matrix<T> va = gc_dense(in[2].view), ua = gc_dense(in[3].view);
  const row_major_matrix<T> ev = v * v.transpose() - va * va.transpose();
  const row_major_matrix<T> eu = u * u.transpose() - ua * ua.transpose();
  row_major_matrix<T> g[4] = {s * (ev * v), s * (eu * u), -s * (ev * va), -s * (eu * ua)};
  const row_major_matrix<T>* xs[4] = {&v, &u, &va, &ua};
  const int partner[4] = {1, 0, 3, 2};
  const double sign[4] = {1, 1, -1, -1};
  for (index_t j = 0; j < p.n; ++j) {
    const double dl = 2 * upstream / double(p.n) * saved.delta[static_cast<std::size_t>(j)];
    for (int k = 0; k < 4; ++k)
      g[k].row(j) += static_cast<T>(sign[k] * dl) * xs[partner[k]]->row(j);
  }
  for (int k = 0; k < 4; ++k)
    if (out[k]) gc_store_dense(*out[k], g[k], o.accumulate);
}

/// Shapes (all inputs N x D like the first, N > 0, D > 0) and options.
template <class T>
void gc_check_inputs(const char* fn, const gc_input<T>* in, int count,
                     const geometric_consistency_options& o) {
  gc_check_options(fn, o);
  for (int k = 0; k < count; ++k) check_matrix(fn, in[k].name, in[k].view);
  const matrix_view<const T>& a = in[0].view;
  CONTRASTIVE_CHECK(a.rows() > 0, fn, ": empty batch ('", in[0].name, "' has 0 rows)");
  CONTRASTIVE_CHECK(a.cols() > 0, fn, ": '", in[0].name, "' has 0 columns (D must be > 0)");
  for (int k = 1; k < count; ++k) {
    CONTRASTIVE_CHECK(in[k].view.rows() == a.rows(), fn, ": '", in[k].name, "' has ",
                      in[k].view.rows(), " rows, expected ", a.rows(), " (rows of '", in[0].name,
                      "')");
    CONTRASTIVE_CHECK(in[k].view.cols() == a.cols(), fn, ": '", in[k].name, "' has ",
                      in[k].view.cols(), " columns, expected ", a.cols(), " (columns of '",
                      in[0].name, "')");
  }
}

template <class T>
geometric_consistency_saved<T> gc_forward_impl(const char* fn, const gc_input<T>* in, int count,
                                               const geometric_consistency_options& o,
                                               workspace ws) {
  gc_check_inputs(fn, in, count, o);
  const bool augmented = count == 4;
  const gc_plan p = gc_make_plan<T>(in[0].view.rows(), in[0].view.cols(), augmented, o);
  geometric_consistency_saved<T> saved;
  saved.n = p.n;
  saved.d = p.d;
  saved.augmented = augmented;
  saved.algorithm = p.algorithm;
  saved.cross_modal_weight = o.cross_modal_weight;
  saved.in_modal_weight = o.in_modal_weight;
  double loss;
  if (p.algorithm == gc_algorithm::naive) {
    for (int k = 0; k < count; ++k) check_rows(fn, in[k].name, in[k].view);
    loss = gc_naive_forward(p, in, o, saved);
  } else {
    loss = gc_gram_forward(fn, p, in, count, o, saved, ws);
  }
  check_loss_finite(fn, static_cast<double>(static_cast<T>(loss)));
  saved.loss = static_cast<T>(loss);
  return saved;
}

template <class T>
void gc_backward_impl(const char* fn, const gc_input<T>* in, int count,
                      const geometric_consistency_saved<T>& saved, const matrix_view<T>* grads,
                      const geometric_consistency_options& o, double upstream, workspace ws) {
  static const char* const grad_names[4] = {"grad_a", "grad_b", "grad_a_aug", "grad_b_aug"};
  gc_check_inputs(fn, in, count, o);
  const bool augmented = count == 4;
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
  const index_t n = in[0].view.rows(), d = in[0].view.cols();
  CONTRASTIVE_CHECK(saved.n == n && saved.d == d && saved.augmented == augmented, fn,
                    ": 'saved' belongs to a ", saved.n, " x ", saved.d,
                    saved.augmented ? " augmented" : "", " problem, the inputs are ", n, " x ", d,
                    augmented ? " (augmented)" : "");
  CONTRASTIVE_CHECK(augmented || (saved.cross_modal_weight == o.cross_modal_weight &&
                                  saved.in_modal_weight == o.in_modal_weight),
                    fn, ": 'saved' was computed with other weights (", saved.cross_modal_weight,
                    ", ", saved.in_modal_weight, ") than these (", o.cross_modal_weight, ", ",
                    o.in_modal_weight, ")");
  const int grams = gc_gram_count(saved.algorithm, augmented);
  CONTRASTIVE_CHECK(saved.algorithm != gc_algorithm::automatic &&
                        saved.grams.size() == static_cast<std::size_t>(grams * d * d) &&
                        (!augmented || saved.delta.size() == static_cast<std::size_t>(n)),
                    fn, ": 'saved' is incomplete (not produced by the matching forward)");
  for (int k = 0; k < count; ++k) {
    check_matrix(fn, grad_names[k], grads[k]);
    check_shape(fn, grad_names[k], grads[k], n, d, "the shape of the inputs");
    check_writable_layout(fn, grad_names[k], grads[k]);
    for (int j = 0; j < count; ++j)
      check_no_alias(fn, grad_names[k], grads[k], in[j].name, in[j].view);
    for (int j = 0; j < k; ++j)
      check_no_alias(fn, grad_names[k], grads[k], grad_names[j], grads[j]);
  }
  // Every value and row norm is checked before any output is written (one O(N D) pass, next to
  // the O(N D^2) products), so a throwing call leaves all gradients untouched.
  for (int k = 0; k < count; ++k) check_rows(fn, in[k].name, in[k].view);
  // |dL/dx| <= 8 (w_x + w_i) D max|x|^3 (docs/geometric_consistency.md: K and E entries are at
  // most 2 D max|x|^2, summed over N rows and divided by N); the augmented loss has weights 1 and
  // a diagonal term, 24 D max|x|^3 in all.
  double m = 0, existing = 0;
  for (int k = 0; k < count; ++k) m = std::max(m, max_abs(in[k].view));
  if (o.accumulate)
    for (int k = 0; k < count; ++k) existing = std::max(existing, max_abs(grads[k]));
  const double weights = augmented ? 3.0 : o.cross_modal_weight + o.in_modal_weight;
  const double m1 = at_least_one(m);  // each factor at least 1: partial products are bounded too
  check_output_bound<T>(
      fn, "gradients",
      8.0 * at_least_one(weights) * static_cast<double>(d) * m1 * m1 * m1 * at_least_one(upstream) +
          existing);
  const matrix_view<T>* out[4] = {&grads[0], &grads[1], nullptr, nullptr};
  if (augmented) {
    out[2] = o.detach_a_aug ? nullptr : &grads[2];
    out[3] = o.detach_b_aug ? nullptr : &grads[3];
  }
  // The path follows `saved` (its Grams); the plan gives the chunking.
  geometric_consistency_options po = o;
  po.algorithm = saved.algorithm;
  gc_plan p = gc_make_plan<T>(n, d, augmented, po);
  p.algorithm = saved.algorithm;
  if (p.algorithm == gc_algorithm::naive) {
    gc_naive_backward(p, in, saved, out, o, upstream);
  } else {
    gc_gram_backward(fn, p, in, count, saved, out, o, upstream, ws);
  }
  // Detached outputs are cleared last, once nothing can throw any more.
  if (augmented && o.detach_a_aug) gc_clear(grads[2], o.accumulate);
  if (augmented && o.detach_b_aug) gc_clear(grads[3], o.accumulate);
}

}  // namespace detail

/// Scratch bytes of the gram path for an N x D problem (the naive path allocates its N x N
/// matrices itself). Pass at least this much as `workspace` to make the gram path's calls
/// allocation-free besides `saved`.
template <class T>
std::size_t geometric_consistency_workspace_bytes(index_t n, index_t d,
                                                  const geometric_consistency_options& o = {}) {
  const detail::gc_plan p = detail::gc_make_plan<T>(n, d, false, o);
  const std::size_t f = detail::gc_forward_bytes<T>(p), b = detail::gc_backward_bytes<T>(p);
  return f > b ? f : b;
}

/// The same for these inputs.
template <class A, class B,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value, int> = 0>
std::size_t geometric_consistency_workspace_bytes(const A& a, const B& b,
                                                  const geometric_consistency_options& o = {}) {
  const auto va = detail::input_view(a);
  (void)b;
  using T = typename decltype(va)::value_type;
  return geometric_consistency_workspace_bytes<T>(va.rows(), va.cols(), o);
}

/// Scratch bytes of the augmented variant's gram path.
template <class T>
std::size_t geometric_consistency_augmented_workspace_bytes(
    index_t n, index_t d, const geometric_consistency_options& o = {}) {
  const detail::gc_plan p = detail::gc_make_plan<T>(n, d, true, o);
  const std::size_t f = detail::gc_forward_bytes<T>(p), b = detail::gc_backward_bytes<T>(p);
  return f > b ? f : b;
}

/// The same for these inputs.
template <class A, class B, class AA, class BA,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value &&
                               is_tensor_like<AA>::value && is_tensor_like<BA>::value,
                           int> = 0>
std::size_t geometric_consistency_augmented_workspace_bytes(
    const A& a, const B& b, const AA& a_aug, const BA& b_aug,
    const geometric_consistency_options& o = {}) {
  const auto va = detail::input_view(a);
  (void)b, (void)a_aug, (void)b_aug;
  using T = typename decltype(va)::value_type;
  return geometric_consistency_augmented_workspace_bytes<T>(va.rows(), va.cols(), o);
}

/// L_GC forward. `a` (image) and `b` (text) are N x D; row j of each is pair j.
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto geometric_consistency_forward(const A& a, const B& b,
                                   const geometric_consistency_options& o = {}, workspace ws = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/geometric_consistency.cuh
    (void)ws;
    return detail::device_backend_of<detail::geometric_consistency_tag, A>::type::forward(
        as_view(a), as_view(b), o);
  } else {
    const auto va = detail::input_view(a);
    const auto vb = detail::input_view(b);
    using T = typename decltype(va)::value_type;
    detail::require_same_value_type<T, decltype(vb)>();
    const detail::gc_input<T> in[2] = {{va, "a"}, {vb, "b"}};
    return detail::gc_forward_impl<T>(detail::gc_fwd_name, in, 2, o, ws);
  }
}

/// Backward of a forward run on device views (cuda/geometric_consistency.cuh).
template <class A, class B, class T, class GA, class GB>
geometric_consistency_parameter_gradients geometric_consistency_backward(
    const A& a, const B& b, const cuda::geometric_consistency_device_saved<T>& saved, GA&& grad_a,
    GB&& grad_b, const geometric_consistency_options& o = {}, double upstream = 1.0,
    workspace = {}) {
  detail::device_backend_of<detail::geometric_consistency_tag, A>::type::backward(
      as_view(a), as_view(b), saved, as_view(grad_a), as_view(grad_b), o, upstream);
  return {};
}

/// L_GC backward: writes (or adds) upstream * dL/da and dL/db. Nothing to return: the loss has
/// no parameters of its own.
template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
geometric_consistency_parameter_gradients
    geometric_consistency_backward(const A& a, const B& b,
                                   const geometric_consistency_saved<T>& saved, GA&& grad_a,
                                   GB&& grad_b, const geometric_consistency_options& o = {},
                                   double upstream = 1.0, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga), decltype(gb)>();
  const detail::gc_input<T> in[2] = {{va, "a"}, {vb, "b"}};
  const matrix_view<T> grads[2] = {ga, gb};
  detail::gc_backward_impl<T>(detail::gc_bwd_name, in, 2, saved, grads, o, upstream, ws);
  return {};
}

/// L_GC forward and backward in one call; returns the loss.
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto geometric_consistency_forward_backward(
    const A& a, const B& b, GA&& grad_a, GB&& grad_b, const geometric_consistency_options& o = {},
    geometric_consistency_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto saved = geometric_consistency_forward(a, b, o, ws);
  const auto pg = geometric_consistency_backward(a, b, saved, std::forward<GA>(grad_a),
                                                 std::forward<GB>(grad_b), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = pg;
  return saved.loss;
}

/// L^a_GC forward: `a_aug`, `b_aug` are the augmented views' embeddings (N x D each).
template <class A, class B, class AA, class BA>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& tensor_like<AA>&& tensor_like<BA>)
auto geometric_consistency_augmented_forward(const A& a, const B& b, const AA& a_aug,
                                             const BA& b_aug,
                                             const geometric_consistency_options& o = {},
                                             workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto vaa = detail::input_view(a_aug);
  const auto vba = detail::input_view(b_aug);
  using T = typename decltype(va)::value_type;
  detail::require_same_value_type<T, decltype(vb), decltype(vaa), decltype(vba)>();
  const detail::gc_input<T> in[4] = {{va, "a"}, {vb, "b"}, {vaa, "a_aug"}, {vba, "b_aug"}};
  return detail::gc_forward_impl<T>(detail::gca_fwd_name, in, 4, o, ws);
}

/// L^a_GC backward: writes (or adds) upstream * the gradients for a, b, a_aug and b_aug (the
/// last two zeroed, or left untouched with `accumulate`, when detached).
template <class A, class B, class AA, class BA, class T, class GA, class GB, class GAA, class GBA>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& tensor_like<AA>&& tensor_like<BA>&& writable_tensor<GA&&>&&
        writable_tensor<GB&&>&& writable_tensor<GAA&&>&& writable_tensor<GBA&&>)
geometric_consistency_parameter_gradients
    geometric_consistency_augmented_backward(const A& a, const B& b, const AA& a_aug,
                                             const BA& b_aug,
                                             const geometric_consistency_saved<T>& saved,
                                             GA&& grad_a, GB&& grad_b, GAA&& grad_a_aug,
                                             GBA&& grad_b_aug,
                                             const geometric_consistency_options& o = {},
                                             double upstream = 1.0, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto vaa = detail::input_view(a_aug);
  const auto vba = detail::input_view(b_aug);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  const auto gaa = detail::output_view(std::forward<GAA>(grad_a_aug));
  const auto gba = detail::output_view(std::forward<GBA>(grad_b_aug));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(vaa), decltype(vba),
                                  decltype(ga), decltype(gb), decltype(gaa), decltype(gba)>();
  const detail::gc_input<T> in[4] = {{va, "a"}, {vb, "b"}, {vaa, "a_aug"}, {vba, "b_aug"}};
  const matrix_view<T> grads[4] = {ga, gb, gaa, gba};
  detail::gc_backward_impl<T>(detail::gca_bwd_name, in, 4, saved, grads, o, upstream, ws);
  return {};
}

/// L^a_GC forward and backward in one call; returns the loss.
template <class A, class B, class AA, class BA, class GA, class GB, class GAA, class GBA>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& tensor_like<AA>&& tensor_like<BA>&& writable_tensor<GA&&>&&
        writable_tensor<GB&&>&& writable_tensor<GAA&&>&& writable_tensor<GBA&&>)
auto geometric_consistency_augmented_forward_backward(
    const A& a, const B& b, const AA& a_aug, const BA& b_aug, GA&& grad_a, GB&& grad_b,
    GAA&& grad_a_aug, GBA&& grad_b_aug, const geometric_consistency_options& o = {},
    geometric_consistency_parameter_gradients* parameter_grads = nullptr, workspace ws = {}) {
  const auto saved = geometric_consistency_augmented_forward(a, b, a_aug, b_aug, o, ws);
  const auto pg = geometric_consistency_augmented_backward(
      a, b, a_aug, b_aug, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b),
      std::forward<GAA>(grad_a_aug), std::forward<GBA>(grad_b_aug), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = pg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_GEOMETRIC_CONSISTENCY_HPP
// ---- end contrastive/losses/geometric_consistency.hpp ----
// ---- begin contrastive/losses/gamma_nce.hpp ----
#ifndef CONTRASTIVE_LOSSES_GAMMA_NCE_HPP
#define CONTRASTIVE_LOSSES_GAMMA_NCE_HPP

// The gamma-auxiliary decomposable contrastive loss (C. Chen et al., "Why do We Need Large
// Batchsizes in Contrastive Learning? A Gradient-Bias Perspective", NeurIPS 2022).
//
// [RECON] The paper's full text was not available; this implements the reconstruction described
// in docs/gamma_nce.md (tags: docs/README.md#tags), which is consistent with the paper's abstract and
// its public summary but is not a transcription of the paper's equations or algorithm.
//
// Target, per anchor i and direction: l_i = -s_ii + log Z_i with Z_i = E_neg[exp s(x_i, y-)], the
// infinite-negative ("global") contrastive loss. With an auxiliary u_i | w ~ Gamma(alpha, Z_i),
// parameterised as u~_i = g_i / (alpha Zbar_i), g_i ~ Gamma(alpha, 1), the surrogate
//
//     l_i^aug = -s_ii + u~_i Zhat_i,        Zhat_i = (1/|N_i|) sum_{j in N_i} exp(s_ij)
//
// is linear in the minibatch estimate Zhat_i, so its gradient is unbiased for fixed u~ (the
// in-batch InfoNCE gradient is not: E[grad Zhat / Zhat] != grad Z / Z). Writing
// r_i = u~_i Zhat_i = (g_i/alpha) exp(log Zhat_i - zeta_i), zeta_i = log Zbar_i, the logit gradient
// is dl_i/ds_ii = -1 and dl_i/ds_ij = r_i pn_ij (j in N_i), pn the softmax over N_i: InfoNCE/DCL
// (r = 1), SogCLR (r = Zhat/Zbar) and this loss differ only in the per-anchor weight r_i, which
// is exactly the row/column weight of the shared tiled sweep (core/tiling.hpp). No N x N matrix
// is formed: forward keeps O(N) statistics per direction, backward recomputes the tiles.
//
// One training step (the forward does 1-4, the backward 5):
//   1. LSE_i over N_i per direction (N_i = batch minus i; all of the batch with
//      positive_in_normaliser), log Zhat_i = LSE_i - log |N_i|;
//   2. rate: zeta_i from the normalizer_state (log-domain EMA with weight beta, first visit
//      zeta = log Zhat; update then sample by default), or log Zhat_i itself (same_batch: the
//      bias is back, E[gradient] = in-batch log-mean-exp gradient), or a caller-supplied exact
//      log-normaliser (exact: unbiased);
//   3. g_i ~ Gamma(alpha, 1) from Philox (key = seed, counter = (sample id, step, direction)),
//      or g_i/alpha := 1 when alpha = +infinity (deterministic: SogCLR's estimator);
//   4. r_i = (g_i/alpha) exp(log Zhat_i - zeta_i);
//   5. gradients with r_i, the auxiliary variables and the state held constant.
//
// Reported values: `loss` = the surrogate (1/N) sum_i (-s_ii + r_i) (mean of both directions
// when symmetric), which is not comparable to InfoNCE; `info_nce` = the plain batch InfoNCE
// (the CLIP loss when symmetric) for monitoring; `rate_loss` = (1/N) sum_i (-s_ii + zeta_i), the
// global-loss estimate through the rates.
//
// The forward *mutates the state* (rate_source::state): it is checked in full first and written
// only once the loss is known to be finite, so a throwing call leaves the state unchanged.
// Direction a -> b uses state direction 0 and Philox stream 0, b -> a direction 1 and stream 1;
// a one-direction loss needs (and touches) only direction 0.
//
// Sample ids: row i of `a` and of `b` are the two views of dataset sample ids[i]. Ids must be
// >= 0, < state.samples() with the state, and distinct within a batch (a duplicate would give two
// anchors the same auxiliary draw and two EMA updates of one entry in one step): an out-of-range
// or repeated id throws contrastive::invalid_argument naming the id and its positions.
//
// [LIB] choices (docs/gamma_nce.md): the u~ = g/(alpha Zbar) parameterisation, alpha = 1, beta = 0.9,
// update then sample (it bounds r_i <= g_i/(alpha beta); sample_then_update does not), N_i =
// negatives only, and the monitoring values.

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

// ---- begin contrastive/losses/gamma_nce_options.hpp ----
#ifndef CONTRASTIVE_LOSSES_GAMMA_NCE_OPTIONS_HPP
#define CONTRASTIVE_LOSSES_GAMMA_NCE_OPTIONS_HPP

// The options of gamma_nce.hpp, their checks and the per-anchor step (rate, gamma draw, weight),
// apart so that the block sweep's plan (core/block_sweep.hpp) and the CUDA path
// (cuda/gamma_nce.cuh) share them without Eigen: the GPU kernels call the same host-device step.

#include <math.h>

#include <cmath>
#include <cstdint>
#include <limits>

// ---- begin contrastive/sampling/gamma.hpp ----
#ifndef CONTRASTIVE_SAMPLING_GAMMA_HPP
#define CONTRASTIVE_SAMPLING_GAMMA_HPP

// Gamma(alpha, rate) variates on the library's Philox streams (docs/gamma_sampler.md, [LIB]:
// the layout and block usage are the library's own, pinned by the known answers listed there).
//
// Marsaglia and Tsang's method (ACM TOMS 26(3), 2000) for alpha >= 1, with the standard boost
// Gamma(alpha) = Gamma(alpha + 1) * U^(1/alpha) for alpha < 1. Rejection attempt k consumes
// exactly Philox block k of the stream (seed, id, step, stream):
//
//   a = alpha < 1 ? alpha + 1 : alpha;   d = a - 1/3;   c = 1/sqrt(9 d)
//   for k = 0, 1, ...:  (w0, w1, w2, w3) = block k
//       x = sqrt(-2 log u(w0)) cos(2 pi u(w1))             (box_muller, as in philox.hpp)
//       v = 1 + c x;   if v <= 0: next k
//       v = v^3;  U = u(w2)
//       if U < 1 - 0.0331 x^4  or  log U < x^2/2 + d (1 - v + log v):
//           g = d v;   if alpha < 1: g *= u(w3)^(1/alpha)
//           return g / rate
//
// Every draw is a pure function of (alpha, rate, seed, id, step, stream): it does not depend on
// the order of the calls, the tiling or the thread count, and device code that reuses these
// CONTRASTIVE_HOST_DEVICE functions sees the same uint32 words bit for bit (the transcendental
// functions may differ by an ulp between libm and device math, so g agrees to ~1e-12 relative).
// Acceptance is above 0.95, so a draw costs 1.00-1.05 Philox blocks on average.
//
// Two layers:
//   * gamma_variate / gamma_standard / gamma_log_standard: unchecked, noexcept, host-device;
//   * sample_gamma / fill_gamma: checked host entry points (alpha > 0, rate > 0, both finite),
//     throwing contrastive::invalid_argument.

#include <math.h>

#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>


CONTRASTIVE_NAMESPACE_BEGIN

/// One accepted Marsaglia-Tsang draw, kept in two factors so that tiny shapes can be handled in
/// the log domain: g = dv * exp(log_boost) (log_boost = log(u(w3)) / alpha for alpha < 1, else 0).
struct gamma_draw {
  double dv = 0;             // d v^3 of the accepted attempt
  double log_boost = 0;      // 0 when alpha >= 1
  std::uint32_t blocks = 0;  // Philox blocks consumed (attempts made)
};

namespace detail {

/// Constants of the method for one shape.
struct gamma_constants {
  double d = 0, c = 0, inv_alpha = 0;
  bool boost = false;
};

CONTRASTIVE_HOST_DEVICE inline gamma_constants gamma_setup(double alpha) noexcept {
  gamma_constants k;
  k.boost = alpha < 1.0;
  const double a = k.boost ? alpha + 1.0 : alpha;
  k.d = a - 1.0 / 3.0;
  k.c = 1.0 / ::sqrt(9.0 * k.d);
  k.inv_alpha = 1.0 / alpha;
  return k;
}

CONTRASTIVE_HOST_DEVICE inline gamma_draw gamma_run(const gamma_constants& k,
                                                    const philox_stream& s) noexcept {
  gamma_draw out;
  // A stream has 2^28 blocks; acceptance > 0.95 makes running out impossible in practice
  // (probability < 0.05^(2^28)), but the loop stays bounded for device code.
  for (std::uint32_t blk = 0; blk < 0x0FFFFFFFu; ++blk) {
    const philox_block w = s.block(blk);
    const double x = box_muller(w.w[0], w.w[1]);
    double v = 1.0 + k.c * x;
    if (v <= 0.0) continue;
    v = v * v * v;
    const double u = uniform_open01(w.w[2]);
    const double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2 || ::log(u) < 0.5 * x2 + k.d * (1.0 - v + ::log(v))) {
      out.dv = k.d * v;
      out.log_boost = k.boost ? ::log(uniform_open01(w.w[3])) * k.inv_alpha : 0.0;
      out.blocks = blk + 1;
      return out;
    }
  }
  out.dv = __builtin_nan("");  // quiet NaN; numeric_limits is host-only under nvcc
  out.blocks = 0x0FFFFFFFu;
  return out;
}

/// The draw as a number: dv exp(log_boost), without the exp when there is no boost.
CONTRASTIVE_HOST_DEVICE inline double gamma_value(const gamma_draw& g) noexcept {
  return g.log_boost == 0.0 ? g.dv : g.dv * ::exp(g.log_boost);
}

}  // namespace detail

/// The accepted draw of Gamma(alpha, 1) on stream s, in factored form. Unchecked: alpha must be
/// finite and > 0.
CONTRASTIVE_HOST_DEVICE inline gamma_draw gamma_variate(double alpha,
                                                        const philox_stream& s) noexcept {
  return detail::gamma_run(detail::gamma_setup(alpha), s);
}

/// Gamma(alpha, 1) on stream s. Unchecked (alpha finite and > 0). For alpha < 1 the boost
/// u^(1/alpha) underflows to 0 once alpha is below about 0.0015; use gamma_log_standard there.
/// `blocks_used`, when given, receives the number of Philox blocks consumed.
CONTRASTIVE_HOST_DEVICE inline double gamma_standard(
    double alpha, const philox_stream& s, std::uint32_t* blocks_used = nullptr) noexcept {
  const gamma_draw g = gamma_variate(alpha, s);
  if (blocks_used) *blocks_used = g.blocks;
  return detail::gamma_value(g);
}

/// log of the same draw as gamma_standard, without underflow for tiny shapes.
CONTRASTIVE_HOST_DEVICE inline double gamma_log_standard(double alpha,
                                                         const philox_stream& s) noexcept {
  const gamma_draw g = gamma_variate(alpha, s);
  return ::log(g.dv) + g.log_boost;
}

/// Parameters of a family of gamma draws; the sample id selects the member.
struct gamma_params {
  double alpha = 1.0;        // shape, finite and > 0
  double rate = 1.0;         // rate lambda, finite and > 0 (the draw is Gamma(alpha, 1) / rate)
  std::uint64_t seed = 0;    // Philox key
  std::uint32_t step = 0;    // counter word 2
  std::uint32_t stream = 0;  // 0..15, see philox_stream_id
};

namespace detail {

/// What fill_gamma stores for sample `id` (before the cast to the element type); shared with
/// the CUDA sampler (cuda/gamma.cuh) so that both run the same code.
CONTRASTIVE_HOST_DEVICE inline double gamma_sample(const gamma_constants& k, const gamma_params& p,
                                                   std::uint64_t id) noexcept {
  return gamma_value(gamma_run(k, philox_stream{p.seed, id, p.step, p.stream})) / p.rate;
}

inline void check_gamma_params(const char* fn, const gamma_params& p) {
  CONTRASTIVE_CHECK(p.alpha > 0 && p.alpha < std::numeric_limits<double>::infinity(), fn,
                    ": 'alpha' must be finite and > 0, got ", p.alpha);
  CONTRASTIVE_CHECK(p.rate > 0 && p.rate < std::numeric_limits<double>::infinity(), fn,
                    ": 'rate' must be finite and > 0, got ", p.rate);
  CONTRASTIVE_CHECK(p.stream < 16u, fn,
                    ": 'stream' must be in [0, 15] (4 bits of the counter), got ", p.stream);
}

template <class Out>
auto gamma_output_view(Out&& out) {
  static_assert(is_writable_tensor<Out&&>::value,
                "contrastive: fill_gamma needs a writable tensor: an lvalue (or a non-owning view "
                "such as an Eigen Map/Block) of a supported type, not const and not an owning "
                "temporary; include contrastive/adapters/<lib>.hpp or specialise "
                "contrastive::tensor_traits");
  auto v = as_view(std::forward<Out>(out));
  static_assert(std::is_same<typename decltype(v)::memory_space, host_memory>::value,
                "contrastive: fill_gamma fills host memory; device views need the CUDA sampler");
  static_assert(std::is_floating_point<typename decltype(v)::value_type>::value,
                "contrastive: fill_gamma needs a floating-point tensor");
  return v;
}

}  // namespace detail

/// One Gamma(p.alpha, p.rate) draw for sample `id` on stream (p.seed, id, p.step, p.stream).
inline double sample_gamma(std::uint64_t id, const gamma_params& p) {
  detail::check_gamma_params("sample_gamma", p);
  const philox_stream s{p.seed, id, p.step, p.stream};
  return gamma_standard(p.alpha, s) / p.rate;
}

/// Fills every element of a writable tensor (any tensor_traits type: Eigen, xtensor, raw views,
/// float or double) with independent draws. Element (i, j) gets the draw of sample id
/// first_id + i * cols + j, whatever the memory layout, so a row-major and a column-major tensor
/// of the same shape receive the same values at the same (i, j).
template <class Out>
void fill_gamma(Out&& out, const gamma_params& p, std::uint64_t first_id = 0) {
  if constexpr (detail::is_device_output<Out&&>::value) {  // cuda/gamma.cuh
    detail::device_backend_of<detail::gamma_sampler_tag, std::remove_reference_t<Out>>::type::fill(
        as_view(std::forward<Out>(out)), p, first_id);
  } else {
    const auto v = detail::gamma_output_view(std::forward<Out>(out));
    using T = typename decltype(v)::value_type;
    detail::check_gamma_params("fill_gamma", p);
    CONTRASTIVE_CHECK(v.empty() || v.data() != nullptr,
                      "fill_gamma: 'out' is a null pointer with shape ", v.rows(), " x ", v.cols());
    const detail::gamma_constants k = detail::gamma_setup(p.alpha);
    for (index_t i = 0; i < v.rows(); ++i) {
      for (index_t j = 0; j < v.cols(); ++j) {
        const std::uint64_t id = first_id + static_cast<std::uint64_t>(i * v.cols() + j);
        v(i, j) = static_cast<T>(detail::gamma_sample(k, p, id));
      }
    }
  }
}

/// Fills element (i, j) with the draw of sample ids[i * cols + j] (count must equal the number of
/// elements; ids must be >= 0).
template <class Out>
void fill_gamma(Out&& out, const gamma_params& p, const std::int64_t* ids, index_t count) {
  if constexpr (detail::is_device_output<Out&&>::value) {  // cuda/gamma.cuh; ids: device memory
    detail::device_backend_of<detail::gamma_sampler_tag, std::remove_reference_t<Out>>::type::fill(
        as_view(std::forward<Out>(out)), p, ids, count);
  } else {
    const auto v = detail::gamma_output_view(std::forward<Out>(out));
    using T = typename decltype(v)::value_type;
    detail::check_gamma_params("fill_gamma", p);
    CONTRASTIVE_CHECK(count == v.size(), "fill_gamma: 'ids' has ", count, " entries, expected ",
                      v.size(), " (one per element of 'out', ", v.rows(), " x ", v.cols(), ")");
    CONTRASTIVE_CHECK(count == 0 || ids != nullptr, "fill_gamma: 'ids' is a null pointer");
    CONTRASTIVE_CHECK(v.empty() || v.data() != nullptr,
                      "fill_gamma: 'out' is a null pointer with shape ", v.rows(), " x ", v.cols());
    for (index_t k = 0; k < count; ++k)
      detail::check_id_nonnegative("fill_gamma", ids[k], "position", k);
    const detail::gamma_constants k = detail::gamma_setup(p.alpha);
    for (index_t i = 0; i < v.rows(); ++i) {
      for (index_t j = 0; j < v.cols(); ++j) {
        const auto id = static_cast<std::uint64_t>(ids[i * v.cols() + j]);
        v(i, j) = static_cast<T>(detail::gamma_sample(k, p, id));
      }
    }
  }
}

template <class Out>
void fill_gamma(Out&& out, const gamma_params& p, const std::vector<std::int64_t>& ids) {
  fill_gamma(std::forward<Out>(out), p, ids.data(), static_cast<index_t>(ids.size()));
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_SAMPLING_GAMMA_HPP
// ---- end contrastive/sampling/gamma.hpp ----
// ---- begin contrastive/state/normalizer_state.hpp ----
#ifndef CONTRASTIVE_STATE_NORMALIZER_STATE_HPP
#define CONTRASTIVE_STATE_NORMALIZER_STATE_HPP

// Per-sample log-normaliser estimates for the gamma-auxiliary loss (docs/gamma_nce.md#normaliser-state,
// [RECON]: the paper's full text was not available; this implements the reconstruction described
// there).
//
// For every dataset sample id and direction (0 = a -> b, 1 = b -> a) the state holds
// zeta = log Zbar (double) and a visited flag. The moving average runs in the log domain, with
// beta weighting the new estimate:
//
//   first visit:  zeta = log Zhat
//   otherwise:    zeta = logaddexp(log(1 - beta) + zeta, log(beta) + log Zhat)
//
// which is the linear EMA Zbar <- (1 - beta) Zbar + beta Zhat without ever forming Zbar.
// Memory is O(samples x directions) (9 bytes per entry).
//
// Batches: an id outside [0, samples()) is an error, and so is an id that appears twice in one
// batch (its two estimates would race for one entry): both throw contrastive::invalid_argument
// before anything is written.
//
// Files (save/load): binary in the saving machine's byte order (with a byte-order mark), rejected
// on any mismatch.
//
//   offset  size  field
//   0       8     magic "CTRSNORM"
//   8       4     format version (1)
//   12      4     byte-order mark 0x01020304 (as written by the saving machine)
//   16      4     directions (1 or 2)
//   20      4     reserved (0)
//   24      8     samples
//   32      8 S D zeta, direction-major (unvisited entries are written as 0)
//   ...     S D   visited flags (0 or 1), direction-major
//   end-4   4     CRC-32 (IEEE, as zlib) of every preceding byte
//
// save() writes a temporary file next to the target, flushes it (fsync on POSIX) and renames it
// over the target, so a crash leaves either the old or the new file, never a mix. load() reads and
// verifies the whole file (size, magic, version, byte order, sizes, checksum, flags) before it
// touches the state: a truncated, corrupted or mismatched file throws and leaves the state
// exactly as it was.

#include <math.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#  include <fcntl.h>
#  include <unistd.h>
#  define CONTRASTIVE_STATE_POSIX 1
#else
#  define CONTRASTIVE_STATE_POSIX 0
#endif


CONTRASTIVE_NAMESPACE_BEGIN

namespace detail {

/// CRC-32 (IEEE 802.3 polynomial, reflected, as zlib's crc32); crc32("123456789") = 0xCBF43926.
inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t n) noexcept {
  struct table_t {
    std::uint32_t t[256];
    table_t() noexcept {
      for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
      }
    }
  };
  static const table_t table;
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table.t[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

struct normalizer_state_access;

/// A distinct temporary name next to `path` (for concurrent saves in one process too).
inline std::string state_temporary_name(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  std::string t = path + ".tmp.";
#if CONTRASTIVE_STATE_POSIX
  t += std::to_string(static_cast<long long>(::getpid())) + ".";
#endif
  t += std::to_string(++counter);
  return t;
}

#if CONTRASTIVE_STATE_POSIX
/// Makes a rename durable; failure here is not an error (the data is already safe from a process
/// crash, only a power loss could undo the rename).
inline void state_sync_directory(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int fd = ::open(dir.c_str(), O_RDONLY);
  if (fd >= 0) {
    (void)::fsync(fd);
    (void)::close(fd);
  }
}
#endif

/// The one atomic write of the state files (normalizer_state, negative_queue): a temporary file
/// in the same directory, flush, fsync, rename over `path`, fsync of the directory. Throws
/// contrastive::invalid_argument on any failure, leaving the old file (if any) and no temporary.
inline void state_write_atomically(const char* fn, const std::string& path,
                                   const std::vector<unsigned char>& bytes) {
  CONTRASTIVE_CHECK(!path.empty(), fn, ": 'path' is empty");
  const std::string tmp = state_temporary_name(path);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  CONTRASTIVE_CHECK(f != nullptr, fn, ": cannot create '", tmp, "': ", std::strerror(errno));
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  bool flushed = std::fflush(f) == 0;
#if CONTRASTIVE_STATE_POSIX
  flushed = flushed && ::fsync(::fileno(f)) == 0;
#endif
  const int err = errno;
  const bool closed = std::fclose(f) == 0;
  if (!(written && flushed && closed)) {
    std::remove(tmp.c_str());
    CONTRASTIVE_CHECK(false, fn, ": writing '", tmp, "' failed: ", std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int rerr = errno;
    std::remove(tmp.c_str());
    CONTRASTIVE_CHECK(false, fn, ": cannot rename '", tmp, "' to '", path,
                      "': ", std::strerror(rerr));
  }
#if CONTRASTIVE_STATE_POSIX
  state_sync_directory(path);
#endif
}

/// The whole file, or a throw naming it.
inline std::vector<unsigned char> state_read_file(const char* fn, const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  CONTRASTIVE_CHECK(f != nullptr, fn, ": cannot open '", path, "': ", std::strerror(errno));
  std::vector<unsigned char> bytes;
  unsigned char buf[1 << 16];
  std::size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.insert(bytes.end(), buf, buf + got);
  const bool read_error = std::ferror(f) != 0;
  std::fclose(f);
  CONTRASTIVE_CHECK(!read_error, fn, ": reading '", path, "' failed");
  return bytes;
}

}  // namespace detail

/// Per-sample, per-direction log-domain normaliser estimates indexed by dataset sample id.
class normalizer_state {
 public:
  static constexpr std::uint32_t file_version = 1;
  static constexpr char file_magic[9] = "CTRSNORM";

  normalizer_state() = default;

  /// `samples` dataset ids (>= 0) and 1 or 2 directions (2 for symmetric losses); all unvisited.
  explicit normalizer_state(std::int64_t samples, int directions = 2) {
    CONTRASTIVE_CHECK(samples >= 0, "normalizer_state: 'samples' must be >= 0, got ", samples);
    CONTRASTIVE_CHECK(directions == 1 || directions == 2,
                      "normalizer_state: 'directions' must be 1 or 2, got ", directions);
    samples_ = samples;
    directions_ = directions;
    zeta_.assign(static_cast<std::size_t>(samples) * static_cast<std::size_t>(directions), 0.0);
    visited_.assign(zeta_.size(), 0);
  }

  std::int64_t samples() const noexcept { return samples_; }
  int directions() const noexcept { return directions_; }

  /// Has (id, direction) received an estimate?
  bool visited(std::int64_t id, int direction = 0) const {
    return visited_[index("normalizer_state::visited", id, direction)] != 0;
  }
  /// zeta = log Zbar of (id, direction); quiet NaN while unvisited.
  double log_normalizer(std::int64_t id, int direction = 0) const {
    const std::size_t k = index("normalizer_state::log_normalizer", id, direction);
    return visited_[k] ? zeta_[k] : std::numeric_limits<double>::quiet_NaN();
  }
  /// Sets zeta (finite) and marks the entry visited.
  void set(std::int64_t id, int direction, double zeta) {
    const std::size_t k = index("normalizer_state::set", id, direction);
    CONTRASTIVE_CHECK(std::isfinite(zeta), "normalizer_state::set: 'zeta' must be finite, got ",
                      zeta);
    zeta_[k] = zeta;
    visited_[k] = 1;
  }
  /// Forgets every estimate (e.g. after the temperature has moved far).
  void reset() noexcept {
    std::fill(zeta_.begin(), zeta_.end(), 0.0);
    std::fill(visited_.begin(), visited_.end(), std::uint8_t(0));
  }

  /// The value the EMA gives: log_zhat on a first visit, else
  /// logaddexp(log(1 - beta) + zeta, log(beta) + log_zhat).
  static double ema(double zeta, bool visited, double log_zhat, double beta) noexcept {
    return detail::log_ema(zeta, visited, log_zhat, beta);
  }

  /// EMA update of every id of a batch in one direction with its log Zhat. beta in (0, 1];
  /// ids in [0, samples()), distinct; log_zhat finite. Nothing is written unless all checks pass.
  void update(vector_view<const std::int64_t> ids, int direction, const double* log_zhat,
              double beta) {
    const char* fn = "normalizer_state::update";
    check_beta(fn, beta);
    check_direction(fn, direction);
    check_ids(fn, ids);
    CONTRASTIVE_CHECK(ids.size == 0 || log_zhat != nullptr, fn, ": 'log_zhat' is a null pointer");
    for (index_t i = 0; i < ids.size; ++i)
      CONTRASTIVE_CHECK(std::isfinite(log_zhat[i]), fn, ": 'log_zhat' has a non-finite value (",
                        log_zhat[i], ") at position ", i);
    for (index_t i = 0; i < ids.size; ++i) {
      const std::size_t k = slot(ids.data[i], direction);
      zeta_[k] = ema(zeta_[k], visited_[k] != 0, log_zhat[i], beta);
      visited_[k] = 1;
    }
  }

  /// Bitwise equality of sizes, flags and estimates.
  friend bool operator==(const normalizer_state& x, const normalizer_state& y) noexcept {
    return x.samples_ == y.samples_ && x.directions_ == y.directions_ && x.visited_ == y.visited_ &&
           (x.zeta_.empty() ||
            std::memcmp(x.zeta_.data(), y.zeta_.data(), x.zeta_.size() * sizeof(double)) == 0);
  }
  friend bool operator!=(const normalizer_state& x, const normalizer_state& y) noexcept {
    return !(x == y);
  }

  /// Atomically replaces `path` with the state (temporary file in the same directory, flush,
  /// fsync, rename). Throws contrastive::invalid_argument on any I/O failure, leaving the old
  /// file (if any) in place and no temporary behind.
  void save(const std::string& path) const {
    const char* fn = "normalizer_state::save";
    CONTRASTIVE_CHECK(!path.empty(), fn, ": 'path' is empty");
    detail::state_write_atomically(fn, path, serialize());
  }

  /// Replaces the state with the one in `path`, which must have the same samples() and
  /// directions(). Throws (state unchanged) on a missing, truncated, corrupted or mismatched file.
  void load(const std::string& path) {
    normalizer_state s = read_file("normalizer_state::load", path);
    CONTRASTIVE_CHECK(s.samples_ == samples_ && s.directions_ == directions_,
                      "normalizer_state::load: '", path, "' holds ", s.samples_, " samples x ",
                      s.directions_, " directions, this state has ", samples_, " x ", directions_,
                      " (use normalizer_state::from_file to take the file's sizes)");
    *this = std::move(s);
  }

  /// A state of the file's own sizes.
  static normalizer_state from_file(const std::string& path) {
    return read_file("normalizer_state::from_file", path);
  }

 private:
  friend struct detail::normalizer_state_access;

  std::int64_t samples_ = 0;
  int directions_ = 1;
  std::vector<double> zeta_;  // direction-major: [direction * samples + id]
  std::vector<std::uint8_t> visited_;

  static constexpr std::size_t header_bytes = 32;

  std::size_t slot(std::int64_t id, int direction) const noexcept {
    return static_cast<std::size_t>(direction) * static_cast<std::size_t>(samples_) +
           static_cast<std::size_t>(id);
  }
  void check_direction(const char* fn, int direction) const {
    CONTRASTIVE_CHECK(direction >= 0 && direction < directions_, fn,
                      ": 'direction' must be in [0, ", directions_, "), got ", direction);
  }
  std::size_t index(const char* fn, std::int64_t id, int direction) const {
    check_direction(fn, direction);
    CONTRASTIVE_CHECK(id >= 0 && id < samples_, fn, ": sample id ", id, " is out of range [0, ",
                      samples_, ")");
    return slot(id, direction);
  }
  static void check_beta(const char* fn, double beta) {
    CONTRASTIVE_CHECK(beta > 0 && beta <= 1, fn, ": 'beta' must lie in (0, 1], got ", beta);
  }

 public:
  /// Range and uniqueness checks of a batch of ids (O(n log n)); throws naming the bad id.
  void check_ids(const char* fn, vector_view<const std::int64_t> ids) const {
    CONTRASTIVE_CHECK(ids.size >= 0, fn, ": 'ids' has a negative size (", ids.size, ")");
    CONTRASTIVE_CHECK(ids.size == 0 || ids.data != nullptr, fn, ": 'ids' is a null pointer");
    CONTRASTIVE_CHECK(ids.stride == 1, fn, ": 'ids' must be contiguous (stride 1), got stride ",
                      ids.stride);
    for (index_t i = 0; i < ids.size; ++i)
      CONTRASTIVE_CHECK(ids.data[i] >= 0 && ids.data[i] < samples_, fn, ": sample id ", ids.data[i],
                        " at position ", i, " is out of range [0, ", samples_, ")");
    std::vector<std::int64_t> sorted(ids.data, ids.data + ids.size);
    check_distinct(fn, ids, sorted.data());
  }

  /// Duplicate check with caller scratch of ids.size entries (holds the sorted ids afterwards).
  static void check_distinct(const char* fn, vector_view<const std::int64_t> ids,
                             std::int64_t* scratch) {
    std::copy(ids.data, ids.data + ids.size, scratch);
    std::sort(scratch, scratch + ids.size);
    const std::int64_t* dup = std::adjacent_find(scratch, scratch + ids.size);
    if (CONTRASTIVE_UNLIKELY(dup != scratch + ids.size)) {
      index_t first = -1, second = -1;
      for (index_t i = 0; i < ids.size; ++i) {
        if (ids.data[i] != *dup) continue;
        if (first < 0) {
          first = i;
        } else {
          second = i;
          break;
        }
      }
      CONTRASTIVE_CHECK(false, fn, ": sample id ", *dup, " appears twice in the batch (positions ",
                        first, " and ", second, "); ids must be distinct within a batch");
    }
  }

 private:
  std::vector<unsigned char> serialize() const {
    const std::size_t entries = zeta_.size();
    std::vector<unsigned char> out(header_bytes + entries * (sizeof(double) + 1) + 4, 0);
    unsigned char* p = out.data();
    std::memcpy(p, file_magic, 8);
    const std::uint32_t version = file_version, bom = 0x01020304u;
    const auto dirs = static_cast<std::uint32_t>(directions_), reserved = std::uint32_t(0);
    const auto n = static_cast<std::uint64_t>(samples_);
    std::memcpy(p + 8, &version, 4);
    std::memcpy(p + 12, &bom, 4);
    std::memcpy(p + 16, &dirs, 4);
    std::memcpy(p + 20, &reserved, 4);
    std::memcpy(p + 24, &n, 8);
    unsigned char* z = p + header_bytes;
    for (std::size_t k = 0; k < entries; ++k) {
      const double v = visited_[k] ? zeta_[k] : 0.0;
      std::memcpy(z + k * sizeof(double), &v, sizeof(double));
    }
    if (entries > 0) std::memcpy(z + entries * sizeof(double), visited_.data(), entries);
    const std::uint32_t crc = detail::crc32_update(0, p, out.size() - 4);
    std::memcpy(p + out.size() - 4, &crc, 4);
    return out;
  }

  static normalizer_state read_file(const char* fn, const std::string& path) {
    const std::vector<unsigned char> bytes = detail::state_read_file(fn, path);

    const std::size_t size = bytes.size();
    CONTRASTIVE_CHECK(size >= header_bytes + 4, fn, ": '", path, "' is truncated (", size,
                      " bytes, a state file has at least ", header_bytes + 4, ")");
    const unsigned char* p = bytes.data();
    CONTRASTIVE_CHECK(std::memcmp(p, file_magic, 8) == 0, fn, ": '", path,
                      "' is not a contrastive normalizer_state file (bad magic)");
    std::uint32_t version, bom, dirs, reserved;
    std::uint64_t n;
    std::memcpy(&version, p + 8, 4);
    std::memcpy(&bom, p + 12, 4);
    std::memcpy(&dirs, p + 16, 4);
    std::memcpy(&reserved, p + 20, 4);
    std::memcpy(&n, p + 24, 8);
    CONTRASTIVE_CHECK(bom == 0x01020304u, fn, ": '", path,
                      "' was written on a machine of the other byte order");
    CONTRASTIVE_CHECK(version == file_version, fn, ": '", path, "' has format version ", version,
                      ", this library reads version ", file_version);
    CONTRASTIVE_CHECK((dirs == 1 || dirs == 2) && reserved == 0, fn, ": '", path,
                      "' has a corrupted header (directions ", dirs, ")");
    const std::uint64_t max_n = (std::numeric_limits<std::uint64_t>::max() / 32);
    CONTRASTIVE_CHECK(n <= max_n, fn, ": '", path, "' has a corrupted header (samples ", n, ")");
    const std::uint64_t entries = n * dirs;
    const std::uint64_t expected = header_bytes + entries * (sizeof(double) + 1) + 4;
    CONTRASTIVE_CHECK(size == expected, fn, ": '", path, "' is ",
                      size < expected ? "truncated" : "too long", " (", size, " bytes, expected ",
                      expected, " for ", n, " samples x ", dirs, " directions)");
    std::uint32_t stored;
    std::memcpy(&stored, p + size - 4, 4);
    const std::uint32_t crc = detail::crc32_update(0, p, size - 4);
    CONTRASTIVE_CHECK(crc == stored, fn, ": '", path, "' is corrupted (checksum ", crc,
                      " != stored ", stored, ")");

    normalizer_state s;
    s.samples_ = static_cast<std::int64_t>(n);
    s.directions_ = static_cast<int>(dirs);
    s.zeta_.resize(static_cast<std::size_t>(entries));
    s.visited_.resize(static_cast<std::size_t>(entries));
    const unsigned char* z = p + header_bytes;
    if (entries > 0) {
      std::memcpy(s.zeta_.data(), z, static_cast<std::size_t>(entries) * sizeof(double));
      std::memcpy(s.visited_.data(), z + entries * sizeof(double),
                  static_cast<std::size_t>(entries));
    }
    for (std::size_t k = 0; k < s.zeta_.size(); ++k) {
      CONTRASTIVE_CHECK(s.visited_[k] <= 1, fn, ": '", path, "' is corrupted (visited flag ",
                        int(s.visited_[k]), " at entry ", k, ")");
      CONTRASTIVE_CHECK(!s.visited_[k] || std::isfinite(s.zeta_[k]), fn, ": '", path,
                        "' is corrupted (non-finite estimate at entry ", k, ")");
      if (!s.visited_[k]) s.zeta_[k] = 0.0;
    }
    return s;
  }
};

namespace detail {

/// Unchecked access for the losses, which validate a whole batch once.
struct normalizer_state_access {
  /// The arrays as they are ([direction * samples + id]), for the device state's copies.
  static std::vector<double>& zetas(normalizer_state& s) noexcept { return s.zeta_; }
  static const std::vector<double>& zetas(const normalizer_state& s) noexcept { return s.zeta_; }
  static std::vector<std::uint8_t>& flags(normalizer_state& s) noexcept { return s.visited_; }
  static const std::vector<std::uint8_t>& flags(const normalizer_state& s) noexcept {
    return s.visited_;
  }
  static double zeta(const normalizer_state& s, std::int64_t id, int direction) noexcept {
    return s.zeta_[s.slot(id, direction)];
  }
  static bool visited(const normalizer_state& s, std::int64_t id, int direction) noexcept {
    return s.visited_[s.slot(id, direction)] != 0;
  }
  static void set(normalizer_state& s, std::int64_t id, int direction, double zeta) noexcept {
    const std::size_t k = s.slot(id, direction);
    s.zeta_[k] = zeta;
    s.visited_[k] = 1;
  }
  static void restore(normalizer_state& s, std::int64_t id, int direction, double zeta,
                      bool visited) noexcept {
    const std::size_t k = s.slot(id, direction);
    s.zeta_[k] = zeta;
    s.visited_[k] = visited ? 1 : 0;
  }
};

/// The entries of one batch's ids (every direction), to put back when a call that has already
/// updated them throws afterwards (the backward of gamma_nce_forward_backward), so that a call
/// that throws leaves the state as it was. O(batch) memory; out-of-range ids are skipped (the
/// forward rejects them before it updates anything).
class normalizer_state_snapshot {
 public:
  normalizer_state_snapshot(const normalizer_state& s, vector_view<const std::int64_t> ids) {
    for (int dir = 0; dir < s.directions(); ++dir)
      for (index_t i = 0; i < ids.size; ++i) {
        const std::int64_t id = ids.data[i * ids.stride];
        if (id < 0 || id >= s.samples()) continue;
        entries_.push_back({id, dir, normalizer_state_access::zeta(s, id, dir),
                            normalizer_state_access::visited(s, id, dir)});
      }
  }
  void restore(normalizer_state& s) const noexcept {
    for (const entry& e : entries_)
      normalizer_state_access::restore(s, e.id, e.direction, e.zeta, e.visited);
  }

 private:
  struct entry {
    std::int64_t id;
    int direction;
    double zeta;
    bool visited;
  };
  std::vector<entry> entries_;
};

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_STATE_NORMALIZER_STATE_HPP
// ---- end contrastive/state/normalizer_state.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

/// Where zeta_i = log Zbar_i (the rate of the auxiliary variable) comes from.
enum class gamma_rate_source {
  state,       // the normalizer_state's moving average (training)
  same_batch,  // zeta_i = log Zhat_i of this batch (biased; for tests and research)
  exact        // caller-supplied exact log-normalisers (options.exact_log_normalizer_*)
};

/// With rate_source::state: is the state updated before r_i is formed (bounded weights,
/// r_i <= g_i / (alpha beta)) or after (rate independent of the batch, unbounded weights)?
enum class gamma_update_order { update_then_sample, sample_then_update };

/// Options of the gamma loss; tile_rows, tile_cols and num_threads come from tiling_options.
struct gamma_nce_options : tiling_options {
  /// alpha = deterministic: g/alpha := 1 (alpha -> infinity), which with update_then_sample is
  /// SogCLR's estimator r_i = Zhat_i / Zbar_i (its gamma = beta).
  static constexpr double deterministic = std::numeric_limits<double>::infinity();

  double temperature = 0.07;  // tau > 0; logits are <a_i, b_j> / tau
  bool symmetric = true;      // both directions (state directions 0 and 1), else a -> b only
  double alpha = 1.0;         // gamma shape > 0 (1: exponential; 4 or 16 cut the variance)
  double beta = 0.9;          // moving-average weight of the new estimate, in (0, 1]
  std::uint64_t seed = 0;     // Philox key of the gamma draws
  std::uint32_t step = 0;     // training step (Philox counter word 2); change it every step
  gamma_rate_source rate_source = gamma_rate_source::state;
  gamma_update_order order = gamma_update_order::update_then_sample;
  bool positive_in_normaliser = false;  // N_i = whole batch (default: negatives only)
  // rate_source::exact: log Zbar_i per anchor, in the units of log Zhat_i (log of the *mean* of
  // exp(s_ij) over the negatives), for direction a -> b and (symmetric) b -> a.
  vector_view<const double> exact_log_normalizer_a{};
  vector_view<const double> exact_log_normalizer_b{};
  loss_reduction reduction = loss_reduction::mean;
  bool accumulate = false;  // backward adds into the gradients instead of overwriting them
};

/// What the backward returns besides the input gradients: upstream * dL/dtemperature.
using gamma_nce_parameter_gradients = temperature_gradient;

namespace detail {

// ---- the per-anchor step (docs/gamma_nce.md), shared by the CPU, distributed and GPU losses ----

/// zeta_i, one anchor's log-rate: the state's entry (`old`, `seen`) moved by the EMA before
/// sampling (update_then_sample) or taken as it is (sample_then_update; log Zhat_i on a first
/// visit), the caller's `exact` value, or log Zhat_i itself (same_batch).
CONTRASTIVE_HOST_DEVICE inline double gamma_anchor_zeta(gamma_rate_source src,
                                                        gamma_update_order order, double beta,
                                                        double log_zhat, double old, bool seen,
                                                        double exact) noexcept {
  if (src == gamma_rate_source::exact) return exact;
  if (src == gamma_rate_source::same_batch) return log_zhat;
  if (order == gamma_update_order::update_then_sample) return log_ema(old, seen, log_zhat, beta);
  return seen ? old : log_zhat;
}

/// g_i / alpha: the Gamma(alpha, 1) draw of Philox stream (seed, id, step, direction) over alpha;
/// 1 in the deterministic mode (alpha = +infinity).
CONTRASTIVE_HOST_DEVICE inline double gamma_anchor_draw(double alpha, std::uint64_t seed,
                                                        std::int64_t id, std::uint32_t step,
                                                        int direction) noexcept {
  if (!(alpha < infinity<double>())) return 1.0;
  const philox_stream s{seed, static_cast<std::uint64_t>(id), step,
                        static_cast<std::uint32_t>(direction)};
  return gamma_standard(alpha, s) / alpha;
}

/// One anchor's weight r_i = (g_i / alpha) exp(log Zhat_i - zeta_i) and its unweighted terms: the
/// surrogate r - s_ii, the batch InfoNCE term (over N_i and the positive) and the rate term.
struct gamma_anchor_values {
  double r = 0, loss = 0, info_nce = 0, rate = 0;
};
CONTRASTIVE_HOST_DEVICE inline gamma_anchor_values gamma_anchor(
    double g, double lse, double log_zhat, double zeta, double s_ii,
    bool positive_in_normaliser) noexcept {
  gamma_anchor_values v;
  v.r = g * ::exp(log_zhat - zeta);
  v.loss = v.r - s_ii;
  v.info_nce = (positive_in_normaliser ? lse : logaddexp(lse, s_ii)) - s_ii;
  v.rate = zeta - s_ii;
  return v;
}

// ---- checks (host data) ----

/// What the id and rate checks need to know of a normalizer state, host or device.
struct gamma_state_shape {
  bool present = false;
  std::int64_t samples = 0;
  int directions = 0;
};

inline void gamma_nce_check_options(const char* fn, const gamma_nce_options& o) {
  check_temperature(fn, o.temperature);
  check_tiles(fn, o.tile_rows, o.tile_cols);
  CONTRASTIVE_CHECK(o.alpha > 0, fn,
                    ": 'alpha' must be > 0 (or gamma_nce_options::deterministic), got ", o.alpha);
  CONTRASTIVE_CHECK(o.beta > 0 && o.beta <= 1, fn, ": 'beta' must lie in (0, 1], got ", o.beta);
  CONTRASTIVE_CHECK(
      o.rate_source == gamma_rate_source::state || o.rate_source == gamma_rate_source::same_batch ||
          o.rate_source == gamma_rate_source::exact,
      fn, ": 'rate_source' has an invalid value (", static_cast<int>(o.rate_source), ")");
  CONTRASTIVE_CHECK(o.order == gamma_update_order::update_then_sample ||
                        o.order == gamma_update_order::sample_then_update,
                    fn, ": 'order' has an invalid value (", static_cast<int>(o.order), ")");
  check_reduction(fn, o.reduction);
}

/// Shapes and options (no element read: the CPU adds its scan for non-finite values, the GPU
/// its device scan).
template <class T, class Space>
void gamma_nce_check_shapes(const char* fn, const matrix_view<const T, Space>& a,
                            const matrix_view<const T, Space>& b, const gamma_nce_options& o) {
  check_matrix(fn, "a", a);
  check_matrix(fn, "b", b);
  gamma_nce_check_options(fn, o);
  check_pair_shape(fn, a, b);
  CONTRASTIVE_CHECK(a.rows() > 1 || o.positive_in_normaliser, fn,
                    ": a batch of 1 has no negatives (use N >= 2 or positive_in_normaliser)");
}

/// A backward's `saved` (the CPU's or the GPU's: any struct with n, d, temperature, symmetric,
/// positive_in_normaliser, reduction) belongs to these rows x cols inputs and these options.
template <class S>
void gamma_nce_check_saved(const char* fn, const S& saved, index_t rows, index_t cols,
                           const gamma_nce_options& o) {
  CONTRASTIVE_CHECK(saved.n == rows && saved.d == cols, fn, ": 'saved' belongs to a ", saved.n,
                    " x ", saved.d, " batch, the inputs are ", rows, " x ", cols);
  CONTRASTIVE_CHECK(saved.temperature == o.temperature && saved.symmetric == o.symmetric &&
                        saved.positive_in_normaliser == o.positive_in_normaliser &&
                        saved.reduction == o.reduction,
                    fn, ": 'saved' was computed with other options (temperature ",
                    saved.temperature, ", symmetric ", saved.symmetric, ", positive_in_normaliser ",
                    saved.positive_in_normaliser, ") than these (temperature ", o.temperature,
                    ", symmetric ", o.symmetric, ", positive_in_normaliser ",
                    o.positive_in_normaliser, ")");
}

inline void gamma_nce_check_exact(const char* fn, const char* name,
                                  const vector_view<const double>& s, index_t n) {
  CONTRASTIVE_CHECK(!s.empty(), fn, ": rate_source::exact needs '", name, "'");
  CONTRASTIVE_CHECK(s.size == n, fn, ": '", name, "' has ", s.size, " values, expected ", n,
                    " (one per row)");
  CONTRASTIVE_CHECK(s.stride == 1, fn, ": '", name, "' must be contiguous (stride 1), got stride ",
                    s.stride);
  for (index_t i = 0; i < n; ++i)
    CONTRASTIVE_CHECK(std::isfinite(s.data[i]), fn, ": '", name, "' has a non-finite value (",
                      s.data[i], ") at position ", i);
}

/// The sample ids (one per row, contiguous, >= 0) and the rate source's inputs: the state
/// (present, enough directions, ids in range) or the exact log-normalisers. `n` rows; a rank of
/// a distributed call may have none. Host memory throughout: the GPU path checks host copies.
inline void gamma_nce_check_ids_and_rates(const char* fn, vector_view<const std::int64_t> ids,
                                          index_t n, const gamma_state_shape& state,
                                          const gamma_nce_options& o,
                                          vector_view<const double> exact_a,
                                          vector_view<const double> exact_b) {
  const bool sym = o.symmetric;
  const int dirs = sym ? 2 : 1;
  CONTRASTIVE_CHECK(ids.size == n, fn, ": 'ids' has ", ids.size, " sample ids, expected ", n,
                    " (one per row)");
  CONTRASTIVE_CHECK(n == 0 || ids.data != nullptr, fn, ": 'ids' is a null pointer");
  CONTRASTIVE_CHECK(ids.stride == 1, fn, ": 'ids' must be contiguous (stride 1), got stride ",
                    ids.stride);
  for (index_t i = 0; i < n; ++i)
    CONTRASTIVE_CHECK(ids.data[i] >= 0, fn, ": sample id ", ids.data[i], " at position ", i,
                      " is negative");
  if (o.rate_source == gamma_rate_source::state) {
    CONTRASTIVE_CHECK(state.present, fn,
                      ": rate_source::state needs a normalizer_state (pass one, or choose "
                      "rate_source::same_batch or ::exact)");
    CONTRASTIVE_CHECK(state.directions >= dirs, fn, ": the normalizer_state has ", state.directions,
                      " direction(s), a ", sym ? "symmetric" : "one-direction", " loss needs ",
                      dirs);
    for (index_t i = 0; i < n; ++i)
      CONTRASTIVE_CHECK(ids.data[i] < state.samples, fn, ": sample id ", ids.data[i],
                        " at position ", i, " is out of range [0, ", state.samples,
                        ") of the normalizer_state");
  }
  if (o.rate_source == gamma_rate_source::exact && n > 0) {
    gamma_nce_check_exact(fn, "exact_log_normalizer_a", exact_a, n);
    if (sym) gamma_nce_check_exact(fn, "exact_log_normalizer_b", exact_b, n);
  }
}

inline void gamma_nce_check_ids_and_rates(const char* fn, vector_view<const std::int64_t> ids,
                                          index_t n, const normalizer_state* state,
                                          const gamma_nce_options& o) {
  gamma_state_shape shape;
  if (state != nullptr) shape = {true, state->samples(), state->directions()};
  gamma_nce_check_ids_and_rates(fn, ids, n, shape, o, o.exact_log_normalizer_a,
                                o.exact_log_normalizer_b);
}

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_GAMMA_NCE_OPTIONS_HPP
// ---- end contrastive/losses/gamma_nce_options.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

/// Per-anchor quantities of one direction (all of length N).
template <class T>
struct gamma_nce_direction {
  std::vector<T> lse;            // LSE_{j in N_i} s_ij (saved for the backward)
  std::vector<double> log_zhat;  // log Zhat_i = LSE_i - log |N_i|
  std::vector<double> zeta;      // the log-rate used for r_i
  std::vector<double> g;         // g_i / alpha (1 in the deterministic mode)
  std::vector<double> r;         // r_i = g_i/alpha exp(log Zhat_i - zeta_i)
};

/// What the forward keeps for the backward (O(N), never N x N), plus monitoring values.
template <class T>
struct gamma_nce_saved {
  T loss = 0;                  // surrogate: mean (or sum) of -s_ii + r_i, averaged over directions
  double info_nce = 0;         // plain batch InfoNCE / CLIP value, same reduction (monitoring)
  double rate_loss = 0;        // mean (or sum) of -s_ii + zeta_i, averaged over directions
  double grad_log_scale = 0;   // dL/dtheta of the surrogate, theta = log(1/tau), r held fixed
  gamma_nce_direction<T> row;  // a -> b (state direction 0, Philox stream 0)
  gamma_nce_direction<T> col;  // b -> a (direction 1, stream 1); empty unless symmetric
  index_t n = 0, d = 0;
  // The options the statistics belong to; backward checks them.
  double temperature = 0;
  bool symmetric = true;
  bool positive_in_normaliser = false;
  loss_reduction reduction = loss_reduction::mean;

  temperature_gradient temperature_grad() const noexcept {
    return temperature_gradient::from_log_scale(grad_log_scale, temperature);
  }
};

namespace detail {

constexpr const char* gamma_nce_fwd_name = "gamma_nce_forward";
constexpr const char* gamma_nce_bwd_name = "gamma_nce_backward";

template <class T>
void gamma_nce_check_inputs(const char* fn, const matrix_view<const T>& a,
                            const matrix_view<const T>& b, const gamma_nce_options& o) {
  gamma_nce_check_shapes(fn, a, b, o);
  check_finite(fn, "a", a);
  check_finite(fn, "b", b);
}

template <class Alloc>
struct gamma_nce_forward_buffers {
  online_softmax<double>* row = nullptr;
  online_softmax<double>* col = nullptr;
  std::int64_t* sorted_ids = nullptr;

  gamma_nce_forward_buffers(Alloc& al, index_t n, bool symmetric) {
    const auto un = static_cast<std::size_t>(n);
    row = al.template take<online_softmax<double>>(un);
    if (symmetric) col = al.template take<online_softmax<double>>(un);
    sorted_ids = al.template take<std::int64_t>(un);
  }
};

template <class T, class Alloc>
struct gamma_nce_backward_buffers {
  T* row_w = nullptr;
  T* row_lse = nullptr;
  T* col_w = nullptr;
  T* col_lse = nullptr;

  gamma_nce_backward_buffers(Alloc& al, index_t n, bool symmetric) {
    const auto un = static_cast<std::size_t>(n);
    row_w = al.template take<T>(un);
    row_lse = al.template take<T>(un);
    if (symmetric) {
      col_w = al.template take<T>(un);
      col_lse = al.template take<T>(un);
    }
  }
};

inline sweep_shape gamma_nce_sweep(index_t n, index_t d, const gamma_nce_options& o) noexcept {
  return make_sweep_shape(o, false, n, n, d);
}

template <class T>
std::size_t gamma_nce_forward_bytes(index_t n, index_t d, const gamma_nce_options& o,
                                    std::size_t packing) {
  size_counter c;
  const gamma_nce_forward_buffers<size_counter> sized(c, n, o.symmetric);
  (void)sized;
  return c.bytes + packing + pairwise_forward_bytes<T>(gamma_nce_sweep(n, d, o)) +
         workspace_alignment;
}

template <class T>
std::size_t gamma_nce_backward_bytes(index_t n, index_t d, const gamma_nce_options& o,
                                     std::size_t packing) {
  size_counter c;
  const gamma_nce_backward_buffers<T, size_counter> sized(c, n, o.symmetric);
  (void)sized;
  return c.bytes + packing + pairwise_backward_bytes<T>(gamma_nce_sweep(n, d, o)) +
         workspace_alignment;
}

template <class T>
pairwise_problem<T> gamma_nce_problem(const matrix_view<const T>& a, const matrix_view<const T>& b,
                                      const gamma_nce_options& o) {
  pairwise_problem<T> p = make_pairwise_problem(&a, 1, &b, 1, o.temperature, o);
  p.mask_diagonal = !o.positive_in_normaliser;
  return p;
}

inline double gamma_reduction_weight(loss_reduction r, index_t n) noexcept {
  return r == loss_reduction::mean ? 1.0 / double(n) : 1.0;
}

/// The gamma step of one direction, for anchors i in [0, n) (docs/gamma_nce.md): log Zhat_i from
/// the row statistics, the rate zeta_i (the state's EMA or last value, the exact value, or
/// log Zhat_i itself), the draw g_i ~ Gamma(alpha)/alpha (Philox stream (seed, id, step, dir);
/// 1 when deterministic) and the weight r_i = g_i exp(log Zhat_i - zeta_i), written to `out`.
/// add(loss, info_nce, rate_loss, dtheta) receives each anchor's unweighted terms; the caller
/// sums them in its own order. `state` is used only when non-null (rate_source::state); `exact`
/// only when non-null (rate_source::exact). Shared by the single-process and distributed losses.
template <class T, class Add>
void gamma_nce_direction_step(int dir, index_t n, const std::int64_t* ids,
                              const matrix_view<const T>& a, const matrix_view<const T>& b,
                              double lambda, double log_count, const online_softmax<double>* stats,
                              const double* exact, const normalizer_state* state,
                              const gamma_nce_options& o, gamma_nce_direction<T>& out, Add&& add) {
  const auto un = static_cast<std::size_t>(n);
  out.lse.resize(un);
  out.log_zhat.resize(un);
  out.zeta.resize(un);
  out.g.resize(un);
  out.r.resize(un);
  for (index_t i = 0; i < n; ++i) {
    const std::int64_t id = ids[i];
    const double s_ii = lambda * dot_rows(a, i, b, i);
    const double lse = stats[i].lse();
    const double log_zhat = lse - log_count;
    const bool seen = state && normalizer_state_access::visited(*state, id, dir);
    const double old = state ? normalizer_state_access::zeta(*state, id, dir) : 0.0;
    const gamma_rate_source src = state   ? gamma_rate_source::state
                                  : exact ? gamma_rate_source::exact
                                          : gamma_rate_source::same_batch;
    const double zeta =
        gamma_anchor_zeta(src, o.order, o.beta, log_zhat, old, seen, exact ? exact[i] : 0.0);
    const double g = gamma_anchor_draw(o.alpha, o.seed, id, o.step, dir);
    const gamma_anchor_values v =
        gamma_anchor(g, lse, log_zhat, zeta, s_ii, o.positive_in_normaliser);
    out.lse[uz(i)] = static_cast<T>(lse);
    out.log_zhat[uz(i)] = log_zhat;
    out.zeta[uz(i)] = zeta;
    out.g[uz(i)] = g;
    out.r[uz(i)] = v.r;
    add(v.loss, v.info_nce, v.rate, v.r * stats[i].mean() - s_ii);
  }
}

/// The forward's loss and its d/dtheta are finite.
inline void gamma_nce_check_loss(const char* fn, double loss, double dtheta, double temperature) {
  CONTRASTIVE_CHECK(std::isfinite(loss) && std::isfinite(dtheta), fn, ": the loss is not finite (",
                    loss, ") at temperature ", temperature,
                    "; the logits overflow or a weight r_i = (g_i/alpha) Zhat_i/Zbar_i does (check "
                    "the rates; sample_then_update does not bound r_i)");
}

/// The -s_ii terms of the backward, O(N D): G_ii -= coef per direction, i.e. dA_i -= coef b_i and
/// dB_i -= coef a_i for the local rows (coef = lambda c w up, twice when symmetric).
template <class T>
void gamma_nce_diagonal_backward(const matrix_view<const T>& a, const matrix_view<const T>& b,
                                 const matrix_view<T>& dA, const matrix_view<T>& dB, T coef) {
  for (index_t i = 0; i < a.rows(); ++i) {
    for (index_t k2 = 0; k2 < a.cols(); ++k2) {
      dA(i, k2) -= coef * b(i, k2);
      dB(i, k2) -= coef * a(i, k2);
    }
  }
}

template <class T>
gamma_nce_saved<T> gamma_nce_forward_impl(const matrix_view<const T>& a_in,
                                          const matrix_view<const T>& b_in,
                                          vector_view<const std::int64_t> ids,
                                          normalizer_state* state, const gamma_nce_options& o,
                                          workspace ws) {
  const char* fn = gamma_nce_fwd_name;
  gamma_nce_check_inputs(fn, a_in, b_in, o);
  const index_t n = a_in.rows(), d = a_in.cols();
  const bool sym = o.symmetric;
  const int dirs = sym ? 2 : 1;
  gamma_nce_check_ids_and_rates(fn, ids, n, state, o);
  const bool use_state = o.rate_source == gamma_rate_source::state;

  arena ar(ws,
           gamma_nce_forward_bytes<T>(n, d, o, packing_bytes(a_in) + packing_bytes(b_in)) -
               workspace_alignment,
           fn);
  gamma_nce_forward_buffers<arena> buf(ar, n, sym);
  normalizer_state::check_distinct(fn, ids, buf.sorted_ids);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  for (index_t i = 0; i < n; ++i) {
    buf.row[i] = online_softmax<double>();
    if (sym) buf.col[i] = online_softmax<double>();
  }
  const pairwise_problem<T> p = gamma_nce_problem(a, b, o);
  pairwise_stats<T> st;
  st.row = buf.row;
  st.col = buf.col;
  pairwise_forward(p, st, ar);

  const double lambda_d = 1.0 / o.temperature;
  const double log_count = std::log(double(o.positive_in_normaliser ? n : n - 1));
  const double w = gamma_reduction_weight(o.reduction, n);
  const double c = sym ? 0.5 : 1.0;

  gamma_nce_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.symmetric = sym;
  saved.positive_in_normaliser = o.positive_in_normaliser;
  saved.reduction = o.reduction;

  double loss = 0, info = 0, rate = 0, dtheta = 0;
  const normalizer_state* rate_state = use_state ? state : nullptr;
  auto direction = [&](int dir, const online_softmax<double>* stats, const double* exact,
                       gamma_nce_direction<T>& out) {
    double l_sum = 0, info_sum = 0, rate_sum = 0, dt_sum = 0;
    gamma_nce_direction_step(dir, n, ids.data, a, b, lambda_d, log_count, stats, exact, rate_state,
                             o, out, [&](double l, double in, double ra, double dt) {
                               l_sum += l;
                               info_sum += in;
                               rate_sum += ra;
                               dt_sum += dt;
                             });
    loss += c * w * l_sum;
    info += c * w * info_sum;
    rate += c * w * rate_sum;
    dtheta += c * w * dt_sum;
  };
  const bool use_exact = o.rate_source == gamma_rate_source::exact;
  direction(0, buf.row, use_exact ? o.exact_log_normalizer_a.data : nullptr, saved.row);
  // b -> a: the anchors are the rows of b; s_ii is the same diagonal.
  if (sym) direction(1, buf.col, use_exact ? o.exact_log_normalizer_b.data : nullptr, saved.col);

  gamma_nce_check_loss(fn, static_cast<double>(static_cast<T>(loss)), dtheta, o.temperature);
  saved.loss = static_cast<T>(loss);
  saved.info_nce = info;
  saved.rate_loss = rate;
  saved.grad_log_scale = dtheta;

  // Commit the state only now: a throwing call leaves it unchanged.
  if (use_state) {
    for (int dir = 0; dir < dirs; ++dir) {
      const gamma_nce_direction<T>& dd = dir == 0 ? saved.row : saved.col;
      for (index_t i = 0; i < n; ++i) {
        const std::int64_t id = ids.data[i];
        const double updated = normalizer_state::ema(
            normalizer_state_access::zeta(*state, id, dir),
            normalizer_state_access::visited(*state, id, dir), dd.log_zhat[uz(i)], o.beta);
        normalizer_state_access::set(*state, id, dir, updated);
      }
    }
  }
  return saved;
}

template <class T>
void gamma_nce_check_backward(const char* fn, const matrix_view<const T>& a,
                              const matrix_view<const T>& b, const gamma_nce_saved<T>& saved,
                              const matrix_view<T>& ga, const matrix_view<T>& gb,
                              const gamma_nce_options& o, double upstream) {
  gamma_nce_check_inputs(fn, a, b, o);
  gamma_nce_check_saved(fn, saved, a.rows(), a.cols(), o);
  const auto un = static_cast<std::size_t>(saved.n);
  CONTRASTIVE_CHECK(
      saved.row.r.size() == un && saved.row.lse.size() == un &&
          (!saved.symmetric || (saved.col.r.size() == un && saved.col.lse.size() == un)),
      fn, ": 'saved' is incomplete (not produced by gamma_nce_forward)");
  check_pair_gradients(fn, a, b, ga, gb, upstream);
  double max_r = 1;  // the anchor weights r_i multiply the softmax terms
  for (const auto* r : {&saved.row.r, &saved.col.r})
    for (const double x : *r) max_r = std::abs(x) > max_r || x != x ? std::abs(x) : max_r;
  check_pair_gradient_bound(fn, a, b, ga, gb, upstream, 1.0 / o.temperature, max_r, o.accumulate,
                            saved.grad_log_scale);
}

template <class T>
temperature_gradient gamma_nce_backward_impl(
    const matrix_view<const T>& a_in, const matrix_view<const T>& b_in,
    const gamma_nce_saved<T>& saved, const matrix_view<T>& grad_a, const matrix_view<T>& grad_b,
    const gamma_nce_options& o, double upstream, workspace ws) {
  const char* fn = gamma_nce_bwd_name;
  gamma_nce_check_backward(fn, a_in, b_in, saved, grad_a, grad_b, o, upstream);
  const index_t n = a_in.rows(), d = a_in.cols();
  const bool sym = o.symmetric;
  const double lambda_d = 1.0 / o.temperature;
  const std::size_t packing =
      packing_bytes(a_in) + packing_bytes(b_in) + packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, gamma_nce_backward_bytes<T>(n, d, o, packing) - workspace_alignment, fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  gamma_nce_backward_buffers<T, arena> buf(ar, n, sym);

  // G_ij = c w up [ -delta_ij (per direction) + r_i pn^row_ij + r_j pn^col_ij ] on N_i.
  const double cw = (sym ? 0.5 : 1.0) * gamma_reduction_weight(o.reduction, n) * upstream;
  for (index_t i = 0; i < n; ++i) {
    buf.row_w[i] = static_cast<T>(cw * saved.row.r[uz(i)]);
    buf.row_lse[i] = saved.row.lse[uz(i)];
    if (sym) {
      buf.col_w[i] = static_cast<T>(cw * saved.col.r[uz(i)]);
      buf.col_lse[i] = saved.col.lse[uz(i)];
    }
  }
  const pairwise_problem<T> p = gamma_nce_problem(a, b, o);
  pairwise_coefficients<T> k;
  k.row_w = buf.row_w;
  k.row_lse = buf.row_lse;
  k.col_w = buf.col_w;
  k.col_lse = buf.col_lse;
  const matrix_view<T> dA = ga.view(), dB = gb.view();
  pairwise_backward(p, k, &dA, &dB, ar);

  gamma_nce_diagonal_backward(a, b, dA, dB, static_cast<T>(lambda_d * cw * (sym ? 2.0 : 1.0)));
  ga.finish();
  gb.finish();
  return temperature_gradient::from_log_scale(saved.grad_log_scale * upstream, o.temperature);
}

}  // namespace detail

/// Bytes of scratch a call will use for N x D row-major inputs and outputs; other layouts add one
/// packed copy each (see the tensor overload). Passing at least this much as `workspace` makes
/// the sweeps allocation-free (the returned `saved` still owns its O(N) vectors).
template <class T>
std::size_t gamma_nce_workspace_bytes(index_t n, index_t d, const gamma_nce_options& o = {}) {
  const std::size_t f = detail::gamma_nce_forward_bytes<T>(n, d, o, 0);
  const std::size_t b = detail::gamma_nce_backward_bytes<T>(n, d, o, 0);
  return f > b ? f : b;
}

/// Exact bytes for these inputs (packing included; gradients assumed row-major).
template <class A, class B,
          std::enable_if_t<is_tensor_like<A>::value && is_tensor_like<B>::value, int> = 0>
std::size_t gamma_nce_workspace_bytes(const A& a, const B& b, const gamma_nce_options& o = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  const std::size_t pack = detail::packing_bytes(va) + detail::packing_bytes(vb);
  const std::size_t f = detail::gamma_nce_forward_bytes<T>(va.rows(), va.cols(), o, pack);
  const std::size_t bw = detail::gamma_nce_backward_bytes<T>(va.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

/// Forward pass with the moving-average state (or any rate source): computes the per-direction
/// log Zhat, the rates, the gamma draws and the weights r_i; updates `state` (rate_source::state);
/// returns the surrogate loss, the monitoring values and the O(N) statistics for the backward.
/// `ids` are the dataset sample ids of the batch rows: distinct, >= 0 and, with the state,
/// < state.samples().
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto gamma_nce_forward(const A& a, const B& b, vector_view<const std::int64_t> ids,
                       normalizer_state& state, const gamma_nce_options& o = {},
                       workspace ws = {}) {
  static_assert(!detail::is_device_input<A>::value,
                "contrastive: device views keep their rates in a cuda::device_normalizer_state "
                "(#include <contrastive/cuda/gamma_nce.cuh>, compiled by nvcc)");
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  detail::require_same_value_type<T, decltype(vb)>();
  return detail::gamma_nce_forward_impl<T>(va, vb, ids, &state, o, ws);
}

/// Forward pass without a state: rate_source must be same_batch or exact (the ids still key the
/// gamma draws). Device views (ids and exact rates in device memory) run on the GPU.
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto gamma_nce_forward(const A& a, const B& b, vector_view<const std::int64_t> ids,
                       const gamma_nce_options& o, workspace ws = {}) {
  if constexpr (detail::is_device_input<A>::value) {  // cuda/gamma_nce.cuh; ws is the CPU's
    (void)ws;
    return detail::device_backend_of<detail::gamma_nce_tag, A>::type::forward(
        as_view(a), as_view(b), ids, nullptr, o);
  } else {
    const auto va = detail::input_view(a);
    const auto vb = detail::input_view(b);
    using T = typename decltype(va)::value_type;
    detail::require_same_value_type<T, decltype(vb)>();
    return detail::gamma_nce_forward_impl<T>(va, vb, ids, nullptr, o, ws);
  }
}

/// Forward pass on device views with the device-resident state (cuda/gamma_nce.cuh); ids in
/// device memory.
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto gamma_nce_forward(const A& a, const B& b, vector_view<const std::int64_t> ids,
                       cuda::device_normalizer_state& state, const gamma_nce_options& o = {},
                       workspace = {}) {
  return detail::device_backend_of<detail::gamma_nce_tag, A>::type::forward(as_view(a), as_view(b),
                                                                            ids, &state, o);
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da and dL/db of the
/// surrogate, with r_i (hence the gamma draws and the state) held fixed. Returns upstream *
/// dL/dtemperature in three parameterisations. Does not touch any state.
template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
gamma_nce_parameter_gradients
    gamma_nce_backward(const A& a, const B& b, const gamma_nce_saved<T>& saved, GA&& grad_a,
                       GB&& grad_b, const gamma_nce_options& o = {}, double upstream = 1.0,
                       workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  detail::require_same_value_type<T, decltype(va), decltype(vb), decltype(ga), decltype(gb)>();
  return detail::gamma_nce_backward_impl<T>(va, vb, saved, ga, gb, o, upstream, ws);
}

/// Backward of a forward run on device views (cuda/gamma_nce.cuh).
template <class A, class B, class GA, class GB>
gamma_nce_parameter_gradients gamma_nce_backward(const A& a, const B& b,
                                                 const cuda::gamma_nce_device_saved& saved,
                                                 GA&& grad_a, GB&& grad_b,
                                                 const gamma_nce_options& o = {},
                                                 double upstream = 1.0, workspace = {}) {
  return detail::device_backend_of<detail::gamma_nce_tag, A>::type::backward(
      as_view(a), as_view(b), saved, as_view(grad_a), as_view(grad_b), o, upstream);
}

/// Forward and backward in one call; returns the surrogate loss (call forward and backward
/// separately to keep the monitoring values of `saved`). The temperature gradient is written to
/// *parameter_grads when given.
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto gamma_nce_forward_backward(const A& a, const B& b, vector_view<const std::int64_t> ids,
                                normalizer_state& state, GA&& grad_a, GB&& grad_b,
                                const gamma_nce_options& o = {},
                                gamma_nce_parameter_gradients* parameter_grads = nullptr,
                                workspace ws = {}) {
  // The forward updates the state: the backward's arguments are checked first, and the batch's
  // entries are put back if the backward still throws (its gradient bound needs the forward's
  // r_i), so that a call that throws leaves the state as it was.
  detail::check_pair_gradients(detail::gamma_nce_bwd_name, detail::input_view(a),
                               detail::input_view(b), detail::output_view(grad_a),
                               detail::output_view(grad_b), 1.0);
  const detail::normalizer_state_snapshot before(state, ids);
  const auto saved = gamma_nce_forward(a, b, ids, state, o, ws);
  gamma_nce_parameter_gradients pg;
#if CONTRASTIVE_USE_EXCEPTIONS
  try {
    pg = gamma_nce_backward(a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0,
                            ws);
  } catch (...) {
    before.restore(state);
    throw;
  }
#else
  pg = gamma_nce_backward(a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0,
                          ws);
#endif
  if (parameter_grads) *parameter_grads = pg;
  return saved.loss;
}

/// The same on device views with the device-resident state (cuda/gamma_nce.cuh); the gradients'
/// arguments are checked before the state is touched.
template <class A, class B, class GA, class GB>
auto gamma_nce_forward_backward(const A& a, const B& b, vector_view<const std::int64_t> ids,
                                cuda::device_normalizer_state& state, GA&& grad_a, GB&& grad_b,
                                const gamma_nce_options& o = {},
                                gamma_nce_parameter_gradients* parameter_grads = nullptr,
                                workspace = {}) {
  return detail::device_backend_of<detail::gamma_nce_tag, A>::type::forward_backward(
      as_view(a), as_view(b), ids, state, as_view(grad_a), as_view(grad_b), o, parameter_grads);
}

/// The same without a state (rate_source same_batch or exact).
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(
    tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto gamma_nce_forward_backward(const A& a, const B& b, vector_view<const std::int64_t> ids,
                                GA&& grad_a, GB&& grad_b, const gamma_nce_options& o,
                                gamma_nce_parameter_gradients* parameter_grads = nullptr,
                                workspace ws = {}) {
  const auto saved = gamma_nce_forward(a, b, ids, o, ws);
  const gamma_nce_parameter_gradients pg = gamma_nce_backward(a, b, saved, std::forward<GA>(grad_a),
                                                              std::forward<GB>(grad_b), o, 1.0, ws);
  if (parameter_grads) *parameter_grads = pg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_GAMMA_NCE_HPP
// ---- end contrastive/losses/gamma_nce.hpp ----
// ---- begin contrastive/state/negative_queue.hpp ----
#ifndef CONTRASTIVE_STATE_NEGATIVE_QUEUE_HPP
#define CONTRASTIVE_STATE_NEGATIVE_QUEUE_HPP

// A fixed-capacity ring buffer of negative keys for the MoCo-style queue loss
// (losses/moco.hpp, docs/moco.md): enqueue a batch of keys after each step, the oldest rows are
// overwritten. The loss reads it as a K x D matrix (view()); it is never differentiated.
//
// Files (save/load), with the conventions of normalizer_state (state/normalizer_state.hpp): binary
// in the saving machine's byte order with a byte-order mark, written atomically (temporary file,
// fsync, rename), read and verified whole before the queue is touched.
//
//   offset  size  field
//   0       8     magic "CTRSQUEU"
//   8       4     format version (1)
//   12      4     byte-order mark 0x01020304
//   16      4     element bytes (4: float, 8: double)
//   20      4     reserved (0)
//   24      8     capacity K
//   32      8     dimension D
//   40      8     size (rows filled, <= K)
//   48      8     head (next row to write, < K; 0 when K = 0)
//   56      K D   rows, row-major, element bytes each (unfilled rows 0)
//   end-4   4     CRC-32 (IEEE, as zlib) of every preceding byte

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>


CONTRASTIVE_NAMESPACE_BEGIN

/// A ring buffer of at most `capacity` rows of dimension D (float or double).
template <class T>
class negative_queue {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "contrastive: negative_queue holds float or double");

 public:
  static constexpr std::uint32_t file_version = 1;  ///< the format version save() writes
  static constexpr std::size_t header_bytes = 56;   ///< bytes before the rows

  negative_queue() = default;

  /// An empty queue of `capacity` rows (>= 0) of dimension `dim` (> 0).
  negative_queue(index_t capacity, index_t dim) {
    CONTRASTIVE_CHECK(capacity >= 0, "negative_queue: 'capacity' must be >= 0, got ", capacity);
    CONTRASTIVE_CHECK(dim > 0, "negative_queue: 'dim' must be > 0, got ", dim);
    capacity_ = capacity;
    dim_ = dim;
    rows_.assign(static_cast<std::size_t>(capacity) * static_cast<std::size_t>(dim), T(0));
  }

  index_t capacity() const noexcept { return capacity_; }    ///< K
  index_t dim() const noexcept { return dim_; }              ///< D
  index_t size() const noexcept { return size_; }            ///< rows filled so far (<= K)
  index_t head() const noexcept { return head_; }            ///< the row the next key goes to
  bool full() const noexcept { return size_ == capacity_; }  ///< size() == capacity()

  /// The filled rows as a size() x D row-major matrix (storage order: once full, row head() is
  /// the oldest). Valid until the next enqueue, load or assignment.
  matrix_view<const T> view() const noexcept {
    return matrix_view<const T>(rows_.data(), size_, dim_, dim_, 1);
  }

  /// Appends the rows of `keys` (N x D, finite), overwriting the oldest rows when full; with N >
  /// capacity() only the last capacity() rows are kept. Throws before writing anything when the
  /// shape or a value is bad.
  template <class X>
  void enqueue(const X& keys) {
    const char* fn = "negative_queue::enqueue";
    const auto v = as_view(keys);
    static_assert(std::is_same<std::remove_const_t<typename decltype(v)::value_type>, T>::value,
                  "contrastive: negative_queue::enqueue takes keys of the queue's element type");
    detail::check_matrix(fn, "keys", v);
    CONTRASTIVE_CHECK(v.cols() == dim_, fn, ": 'keys' has ", v.cols(), " columns, expected ", dim_,
                      " (the queue's dimension)");
    for (index_t i = 0; i < v.rows(); ++i)
      for (index_t j = 0; j < v.cols(); ++j)
        CONTRASTIVE_CHECK(std::isfinite(v(i, j)), fn, ": 'keys' has a non-finite value (", v(i, j),
                          ") at row ", i, ", column ", j);
    if (capacity_ == 0) return;
    const index_t first = v.rows() > capacity_ ? v.rows() - capacity_ : 0;
    for (index_t i = first; i < v.rows(); ++i) {
      T* row = rows_.data() + static_cast<std::size_t>(head_) * static_cast<std::size_t>(dim_);
      for (index_t j = 0; j < dim_; ++j) row[j] = v(i, j);
      head_ = head_ + 1 == capacity_ ? 0 : head_ + 1;
      if (size_ < capacity_) ++size_;
    }
  }

  /// Empties the queue (capacity and dimension stay).
  void clear() noexcept {
    std::fill(rows_.begin(), rows_.end(), T(0));
    size_ = head_ = 0;
  }

  /// Bitwise equality of sizes, positions and rows.
  friend bool operator==(const negative_queue& x, const negative_queue& y) noexcept {
    return x.capacity_ == y.capacity_ && x.dim_ == y.dim_ && x.size_ == y.size_ &&
           x.head_ == y.head_ &&
           (x.rows_.empty() ||
            std::memcmp(x.rows_.data(), y.rows_.data(), x.rows_.size() * sizeof(T)) == 0);
  }
  friend bool operator!=(const negative_queue& x, const negative_queue& y) noexcept {
    return !(x == y);
  }

  /// Atomically replaces `path` with the queue (see the file format above).
  void save(const std::string& path) const {
    detail::state_write_atomically("negative_queue::save", path, serialize());
  }

  /// Replaces the queue with the one in `path`, which must have the same capacity and dimension.
  /// Throws (queue unchanged) on a missing, truncated, corrupted or mismatched file.
  void load(const std::string& path) {
    negative_queue q = read_file("negative_queue::load", path);
    CONTRASTIVE_CHECK(q.capacity_ == capacity_ && q.dim_ == dim_, "negative_queue::load: '", path,
                      "' holds ", q.capacity_, " x ", q.dim_, ", this queue is ", capacity_, " x ",
                      dim_, " (use negative_queue::from_file to take the file's sizes)");
    *this = std::move(q);
  }

  /// The queue stored in `path`, with the file's capacity and dimension.
  static negative_queue from_file(const std::string& path) {
    return read_file("negative_queue::from_file", path);
  }

 private:
  std::vector<unsigned char> serialize() const {
    const std::size_t data = rows_.size() * sizeof(T);
    std::vector<unsigned char> out(header_bytes + data + 4, 0);
    unsigned char* p = out.data();
    std::memcpy(p, "CTRSQUEU", 8);
    const std::uint32_t version = file_version, bom = 0x01020304u,
                        elem = static_cast<std::uint32_t>(sizeof(T)), reserved = 0;
    const std::uint64_t fields[4] = {
        static_cast<std::uint64_t>(capacity_), static_cast<std::uint64_t>(dim_),
        static_cast<std::uint64_t>(size_), static_cast<std::uint64_t>(head_)};
    std::memcpy(p + 8, &version, 4);
    std::memcpy(p + 12, &bom, 4);
    std::memcpy(p + 16, &elem, 4);
    std::memcpy(p + 20, &reserved, 4);
    std::memcpy(p + 24, fields, 32);
    if (data > 0) std::memcpy(p + header_bytes, rows_.data(), data);
    const std::uint32_t crc = detail::crc32_update(0, p, out.size() - 4);
    std::memcpy(p + out.size() - 4, &crc, 4);
    return out;
  }

  static negative_queue read_file(const char* fn, const std::string& path) {
    const std::vector<unsigned char> bytes = detail::state_read_file(fn, path);
    const std::size_t size = bytes.size();
    CONTRASTIVE_CHECK(size >= header_bytes + 4, fn, ": '", path, "' is truncated (", size,
                      " bytes, a queue file has at least ", header_bytes + 4, ")");
    const unsigned char* p = bytes.data();
    CONTRASTIVE_CHECK(std::memcmp(p, "CTRSQUEU", 8) == 0, fn, ": '", path,
                      "' is not a contrastive negative_queue file (bad magic)");
    std::uint32_t version, bom, elem, reserved;
    std::uint64_t f[4];
    std::memcpy(&version, p + 8, 4);
    std::memcpy(&bom, p + 12, 4);
    std::memcpy(&elem, p + 16, 4);
    std::memcpy(&reserved, p + 20, 4);
    std::memcpy(f, p + 24, 32);
    CONTRASTIVE_CHECK(bom == 0x01020304u, fn, ": '", path,
                      "' was written on a machine of the other byte order");
    CONTRASTIVE_CHECK(version == file_version, fn, ": '", path, "' has format version ", version,
                      ", this library reads version ", file_version);
    CONTRASTIVE_CHECK(elem == sizeof(T), fn, ": '", path, "' holds ", elem,
                      "-byte elements, this queue ", sizeof(T), "-byte ones");
    const std::uint64_t cap = f[0], dim = f[1], filled = f[2], head = f[3];
    const std::uint64_t limit = std::uint64_t(1) << 40;
    CONTRASTIVE_CHECK(reserved == 0 && dim > 0 && dim < limit && cap < limit && filled <= cap &&
                          (cap == 0 ? head == 0 : head < cap) && (filled == cap || head == filled),
                      fn, ": '", path, "' has a corrupted header (capacity ", cap, ", dim ", dim,
                      ", size ", filled, ", head ", head, ")");
    const std::uint64_t expected = header_bytes + cap * dim * sizeof(T) + 4;
    CONTRASTIVE_CHECK(size == expected, fn, ": '", path, "' is ",
                      size < expected ? "truncated" : "too long", " (", size, " bytes, expected ",
                      expected, ")");
    std::uint32_t stored;
    std::memcpy(&stored, p + size - 4, 4);
    const std::uint32_t crc = detail::crc32_update(0, p, size - 4);
    CONTRASTIVE_CHECK(crc == stored, fn, ": '", path, "' is corrupted (checksum ", crc,
                      " != stored ", stored, ")");
    negative_queue q;
    q.capacity_ = static_cast<index_t>(cap);
    q.dim_ = static_cast<index_t>(dim);
    q.size_ = static_cast<index_t>(filled);
    q.head_ = static_cast<index_t>(head);
    q.rows_.resize(static_cast<std::size_t>(cap * dim));
    if (!q.rows_.empty()) std::memcpy(q.rows_.data(), p + header_bytes, q.rows_.size() * sizeof(T));
    for (std::size_t k = 0; k < q.rows_.size(); ++k)
      CONTRASTIVE_CHECK(std::isfinite(q.rows_[k]), fn, ": '", path,
                        "' is corrupted (non-finite value at element ", k, ")");
    return q;
  }

  index_t capacity_ = 0, dim_ = 0, size_ = 0, head_ = 0;
  std::vector<T> rows_;
};

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_STATE_NEGATIVE_QUEUE_HPP
// ---- end contrastive/state/negative_queue.hpp ----

#endif  // CONTRASTIVE_CONTRASTIVE_HPP
