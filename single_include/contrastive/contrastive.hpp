// contrastive v0.1.0: single-header edition (SPDX-License-Identifier: MIT).
//
// GENERATED FILE: DO NOT EDIT. It is include/contrastive/contrastive.hpp with every header it
// uses inlined by cmake/amalgamate.cmake; edit the headers under include/ and regenerate with
//   cmake --build <build-dir> --target contrastive_amalgamate
// or, from the repository root,
//   cmake -DSRC=include -DOUT=single_include/contrastive/contrastive.hpp -P cmake/amalgamate.cmake
// The xtensor adapter, cuda/ and dist/ are not part of it.

#ifndef CONTRASTIVE_CONTRASTIVE_HPP
#define CONTRASTIVE_CONTRASTIVE_HPP

// Umbrella header: core, raw and Eigen adapters, losses (sampling and state are added as they
// land). Never includes the xtensor adapter, cuda/ or dist/.
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
#  define CONTRASTIVE_LIKELY(x) __builtin_expect(!!(x), 1)
#  define CONTRASTIVE_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#  define CONTRASTIVE_COLD
#  define CONTRASTIVE_LIKELY(x) (x)
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
#define CONTRASTIVE_CHECK(cond, ...)                                                 \
  do {                                                                               \
    if (CONTRASTIVE_UNLIKELY(!(cond)))                                               \
      ::contrastive::detail::report_violation(__FILE__, __LINE__, __VA_ARGS__);      \
  } while (0)

#endif  // CONTRASTIVE_CORE_ERROR_HPP
// ---- end contrastive/core/error.hpp ----
// ---- begin contrastive/core/matrix_view.hpp ----
#ifndef CONTRASTIVE_CORE_MATRIX_VIEW_HPP
#define CONTRASTIVE_CORE_MATRIX_VIEW_HPP

#include <cstdint>
#include <type_traits>


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
  template <class U, std::enable_if_t<!std::is_const<U>::value &&
                                          std::is_same<const U, T>::value, int> = 0>
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
  CONTRASTIVE_HOST_DEVICE constexpr matrix_view middle_rows(index_t first, index_t count) const noexcept {
    return matrix_view(data_ + first * row_stride_, count, cols_, row_stride_, col_stride_);
  }
  CONTRASTIVE_HOST_DEVICE constexpr matrix_view block(index_t r0, index_t c0, index_t nr,
                                                      index_t nc) const noexcept {
    return matrix_view(data_ + r0 * row_stride_ + c0 * col_stride_, nr, nc, row_stride_, col_stride_);
  }

  CONTRASTIVE_HOST_DEVICE constexpr bool is_row_major_contiguous() const noexcept {
    return col_stride_ == 1 && (row_stride_ == cols_ || rows_ <= 1);
  }

 private:
  CONTRASTIVE_HOST_DEVICE static constexpr index_t abs_(index_t x) noexcept { return x < 0 ? -x : x; }

  T* data_ = nullptr;
  index_t rows_ = 0, cols_ = 0, row_stride_ = 0, col_stride_ = 0;
};

template <class T>
using device_matrix_view = matrix_view<T, device_memory>;

/// A non-owning 1-D view (statistics, labels).
template <class T, class Space = host_memory>
struct vector_view {
  T* data = nullptr;
  index_t size = 0;
  index_t stride = 1;
  CONTRASTIVE_HOST_DEVICE constexpr T& operator[](index_t i) const noexcept { return data[i * stride]; }
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
struct is_tensor_like<T, std::void_t<decltype(as_view(std::declval<const T&>()))>> : std::true_type {};

/// A tensor whose view (from the expression type T, e.g. `M&` or a Map temporary) is writable.
template <class T, class = void>
struct is_writable_tensor : std::false_type {};
template <class T>
struct is_writable_tensor<T, std::void_t<decltype(as_view(std::declval<T>()))>>
    : std::bool_constant<!std::is_const<typename view_t<T>::element_type>::value> {};

/// Element type of a tensor (without const).
template <class T>
using tensor_value_t = typename decltype(as_view(std::declval<const remove_cvref_t<T>&>()))::value_type;

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

#include <limits>


CONTRASTIVE_NAMESPACE_BEGIN

template <class T>
CONTRASTIVE_HOST_DEVICE constexpr T infinity() noexcept {
  return std::numeric_limits<T>::infinity();
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

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_MATH_HPP
// ---- end contrastive/core/math.hpp ----
// ---- begin contrastive/core/workspace.hpp ----
#ifndef CONTRASTIVE_CORE_WORKSPACE_HPP
#define CONTRASTIVE_CORE_WORKSPACE_HPP

#include <cstddef>
#include <cstdint>
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

/// Size arithmetic shared by the workspace queries and the carving below: one aligned array.
template <class T>
constexpr std::size_t array_bytes(std::size_t count) noexcept {
  return align_up(count * sizeof(T));
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
    CONTRASTIVE_ASSERT(offset_ + bytes <= size_);
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

// Pieces every loss entry point shares: option types, argument checks with messages that name
// the function, the argument and the bad value, and the packing of layouts Eigen cannot take
// directly.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

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

/// How per-anchor losses are combined: the mean over valid anchors (those with a positive), or
/// their sum.
enum class loss_reduction { mean, sum };

/// A non-owning span of integer label ids (one per row).
struct label_span {
  const std::int64_t* data = nullptr;
  index_t size = 0;

  constexpr label_span() noexcept = default;
  constexpr label_span(const std::int64_t* d, index_t n) noexcept : data(d), size(n) {}
  label_span(const std::vector<std::int64_t>& v) noexcept  // NOLINT: implicit by design
      : data(v.data()), size(static_cast<index_t>(v.size())) {}
  constexpr bool empty() const noexcept { return data == nullptr; }
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

template <class T>
constexpr bool is_supported_scalar = std::is_same<T, float>::value || std::is_same<T, double>::value;

template <class T, class S>
matrix_view<const T, S> const_view(const matrix_view<T, S>& v) noexcept {
  return matrix_view<const T, S>(v.data(), v.rows(), v.cols(), v.row_stride(), v.col_stride());
}

inline void check_temperature(const char* fn, double tau) {
  CONTRASTIVE_CHECK(std::isfinite(tau) && tau > 0, fn,
                    ": 'temperature' must be finite and > 0, got ", tau);
}

inline void check_smoothing(const char* fn, double eps) {
  CONTRASTIVE_CHECK(std::isfinite(eps) && eps >= 0 && eps < 1, fn,
                    ": 'label_smoothing' must lie in [0, 1), got ", eps);
}

inline void check_tiles(const char* fn, index_t tile_rows, index_t tile_cols) {
  CONTRASTIVE_CHECK(tile_rows > 0 && tile_cols > 0, fn, ": tile sizes must be > 0, got ",
                    tile_rows, " x ", tile_cols);
}

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
  CONTRASTIVE_CHECK(v.rows() == rows && v.cols() == cols, fn, ": '", name, "' is ", v.rows(),
                    " x ", v.cols(), ", expected ", rows, " x ", cols, " (", expected_what, ")");
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
      for (index_t j = 0; j < v.cols(); ++j) {
        const T x = v(i, j);
        CONTRASTIVE_CHECK(std::isfinite(x), fn, ": '", name, "' has a non-finite value (", x,
                          ") at row ", i, ", column ", j);
      }
    }
  }
}

/// Outputs must not share memory with inputs or with each other.
template <class T, class U>
void check_no_alias(const char* fn, const char* out_name, const matrix_view<T>& out,
                    const char* in_name, const matrix_view<U>& in) {
  CONTRASTIVE_CHECK(!views_overlap(out, in), fn, ": output '", out_name,
                    "' overlaps the memory of '", in_name, "'");
}

/// An output whose rows or columns overlap each other (e.g. stride 0) cannot be written.
template <class T>
void check_writable_layout(const char* fn, const char* name, const matrix_view<T>& v) {
  const index_t rs = v.row_stride() < 0 ? -v.row_stride() : v.row_stride();
  const index_t cs = v.col_stride() < 0 ? -v.col_stride() : v.col_stride();
  const bool row_major_ok = (v.cols() <= 1 || cs >= 1) && (v.rows() <= 1 || rs >= v.cols() * cs);
  const bool col_major_ok = (v.rows() <= 1 || rs >= 1) && (v.cols() <= 1 || cs >= v.rows() * rs);
  CONTRASTIVE_CHECK(v.empty() || row_major_ok || col_major_ok, fn, ": output '", name,
                    "' has self-overlapping strides (", v.row_stride(), ", ", v.col_stride(), ")");
}

template <class T>
void check_labels(const char* fn, const char* name, const label_span& l, index_t n) {
  CONTRASTIVE_CHECK(l.size == n, fn, ": '", name, "' has ", l.size, " labels, expected ", n,
                    " (one per row)");
}

/// Bytes to pack a view that Eigen cannot take in place (0 when it can).
template <class T, class S>
std::size_t packing_bytes(const matrix_view<T, S>& v) noexcept {
  return gemm_ready(v) ? 0 : array_bytes<std::remove_const_t<T>>(static_cast<std::size_t>(v.size()));
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
inline void count_matches(const label_span& x, const label_span& y, index_t* counts,
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
  static_assert(std::is_same<T, typename decltype(vy)::value_type>::value,
                "contrastive: 'x' and 'y' must have the same element type");
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
  static_assert(std::is_same<T, typename decltype(vg)::value_type>::value &&
                    std::is_same<T, typename decltype(vgx)::value_type>::value,
                "contrastive: 'x', 'grad_y' and 'grad_x' must have the same element type");
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
constexpr matrix_view<T, device_memory> make_device_view(T* data, index_t rows, index_t cols,
                                                         index_t row_stride, index_t col_stride) noexcept {
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
// the tiles. Spec: shared/spec/losses.md, section 2.

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

#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include <Eigen/Core>


CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

/// One tile-sized block of rows of a virtual matrix.
struct row_block {
  int segment;        // which segment it lies in
  index_t first;      // first row inside that segment
  index_t rows;       // number of rows
  index_t global;     // index of its first row in the virtual matrix
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
  T scale = 1;  // lambda = 1 / temperature
  index_t tile_rows = 256, tile_cols = 256;
  // Optional labels per virtual row: s_ij is a positive when label_x[i] == label_y[j] (i != j
  // in self mode). Without labels the targets are handled outside the sweep in O(N D).
  const std::int64_t* label_x = nullptr;
  const std::int64_t* label_y = nullptr;

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

/// Row blocks of X and of Y. In self mode one blocking serves both sides (square tiles of
/// min(tile_rows, tile_cols)), so that diagonal tiles are exactly the pairs I == J.
template <class T>
std::pair<std::vector<row_block>, std::vector<row_block>> make_tiling(const pairwise_problem<T>& p) {
  std::vector<index_t> xr(p.x_segments), yr(p.y_segments);
  for (int s = 0; s < p.x_segments; ++s) xr[s] = p.x[s].rows();
  for (int s = 0; s < p.y_segments; ++s) yr[s] = p.y[s].rows();
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
                                              index_t max_x_segment, index_t max_y_segment) noexcept {
  auto lo = [](index_t a, index_t b) { return a < b ? a : b; };
  if (self) {
    const index_t t = lo(lo(tile_rows, tile_cols), max_x_segment);
    return {t, t};
  }
  return {lo(tile_rows, max_x_segment), lo(tile_cols, max_y_segment)};
}

/// Scratch for one sweep: the logit tile plus four tile-length vectors.
template <class T>
constexpr std::size_t pairwise_workspace_bytes(std::pair<index_t, index_t> tile) noexcept {
  const auto tr = static_cast<std::size_t>(tile.first), tc = static_cast<std::size_t>(tile.second);
  return array_bytes<T>(tr * tc) + 4 * array_bytes<T>(tc);
}

template <class T>
std::pair<index_t, index_t> tile_shape(const pairwise_problem<T>& p) noexcept {
  index_t mx = 0, my = 0;
  for (int s = 0; s < p.x_segments; ++s) mx = p.x[s].rows() > mx ? p.x[s].rows() : mx;
  for (int s = 0; s < p.y_segments; ++s) my = p.y[s].rows() > my ? p.y[s].rows() : my;
  return tile_shape(p.tile_rows, p.tile_cols, p.self, mx, my);
}

template <class T>
struct pairwise_scratch {
  using tile_map = Eigen::Map<row_major_matrix<T>, Eigen::Aligned16, Eigen::OuterStride<>>;
  using vec = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>, Eigen::Aligned16>;
  T* tile;
  T* v0;
  T* v1;
  T* v2;
  T* v3;
  index_t tile_cols;

  pairwise_scratch(arena& ar, index_t tr, index_t tc)
      : tile(ar.take<T>(static_cast<std::size_t>(tr * tc))),
        v0(ar.take<T>(static_cast<std::size_t>(tc))),
        v1(ar.take<T>(static_cast<std::size_t>(tc))),
        v2(ar.take<T>(static_cast<std::size_t>(tc))),
        v3(ar.take<T>(static_cast<std::size_t>(tc))),
        tile_cols(tc) {}

  tile_map logits(index_t r, index_t c) const noexcept {
    return tile_map(tile, r, c, Eigen::OuterStride<>(tile_cols));
  }
};

/// The masked entries of tile (I, J): local (r, r + offset) for r in [first, last).
struct tile_mask {
  index_t first = 0, last = 0, offset = 0;
  bool any() const noexcept { return last > first; }
  /// Masked column of local row r, or -1.
  index_t col(index_t r) const noexcept { return r >= first && r < last ? r + offset : -1; }
};

template <class T>
tile_mask diagonal_mask(const pairwise_problem<T>& p, const row_block& I, const row_block& J) noexcept {
  tile_mask m;
  if (!(p.self || p.mask_diagonal)) return m;
  // Global row g is masked in column g: local row r = g - I.global, column g - J.global.
  const index_t lo = I.global > J.global ? I.global : J.global;
  const index_t hi = I.global + I.rows < J.global + J.rows ? I.global + I.rows : J.global + J.rows;
  if (hi <= lo) return m;
  m.first = lo - I.global;
  m.last = hi - I.global;
  m.offset = I.global - J.global;
  return m;
}

/// S_IJ = scale X_I Y_J^T into the scratch tile, with masked entries set to -inf.
template <class T>
void compute_logits(const pairwise_problem<T>& p, const row_block& bi, const row_block& bj,
                    const tile_mask& mask, const pairwise_scratch<T>& ws) {
  auto s = ws.logits(bi.rows, bj.rows);
  const auto xi = map_rows<T>(p.x[bi.segment].middle_rows(bi.first, bi.rows));
  const auto yj = map_rows<T>(p.y[bj.segment].middle_rows(bj.first, bj.rows));
  s.noalias() = p.scale * (xi * yj.transpose());
  for (index_t r = mask.first; r < mask.last; ++r) s(r, r + mask.offset) = -infinity<T>();
}

/// Output of the forward sweep. `row`/`col` may be null (direction not needed); in self mode
/// they are the same array. `row_target`/`col_target` receive the label-matched logit sums.
template <class T>
struct pairwise_stats {
  online_softmax<double>* row = nullptr;
  online_softmax<double>* col = nullptr;
  double* row_target = nullptr;
  double* col_target = nullptr;
};

template <class T>
void pairwise_forward(const pairwise_problem<T>& p, const pairwise_stats<T>& out, arena& ar) {
  if (p.x_rows() == 0 || p.y_rows() == 0) return;
  const auto blocks = make_tiling(p);
  const auto& xb = blocks.first;
  const auto& yb = blocks.second;
  const auto shape = tile_shape(p);
  pairwise_scratch<T> ws(ar, shape.first, shape.second);
  constexpr T lowest = std::numeric_limits<T>::lowest();

  for (std::size_t bi = 0; bi < xb.size(); ++bi) {
    for (std::size_t bj = p.self ? bi : 0; bj < yb.size(); ++bj) {
      const row_block& I = xb[bi];
      const row_block& J = yb[bj];
      const bool diag = p.self && bi == bj;  // serves its rows only (S_II is symmetric)
      const tile_mask mask = diagonal_mask(p, I, J);
      compute_logits(p, I, J, mask, ws);
      const auto s = ws.logits(I.rows, J.rows);
      typename pairwise_scratch<T>::vec e(ws.v0, J.rows);

      if (out.row) {
        for (index_t r = 0; r < I.rows; ++r) {
          const auto sr = s.row(r).array();
          const T m = sr.maxCoeff();
          if (m == -infinity<T>()) continue;  // a 1-column tile whose entry is masked
          e = (sr - m).exp();
          // Eigen's vectorised exp clamps its argument, so exp(-inf) is tiny, not 0: zero the
          // masked entry explicitly, and clamp its -inf so that 0 * s stays 0.
          const index_t mc = mask.col(r);
          if (mc >= 0) e(mc) = 0;
          const T mom = mc >= 0 ? (e * sr.max(lowest)).sum() : (e * sr).sum();
          online_softmax<double> t;
          t.max = m;
          t.sum = e.sum();
          t.moment = mom;
          out.row[I.global + r].merge(t);
        }
      }
      if (out.col && !diag) {
        typename pairwise_scratch<T>::vec cmax(ws.v1, J.rows), csum(ws.v2, J.rows),
            cmom(ws.v3, J.rows);
        cmax = s.row(0).array();
        for (index_t r = 1; r < I.rows; ++r) cmax = cmax.max(s.row(r).array());
        csum.setZero();
        cmom.setZero();
        for (index_t r = 0; r < I.rows; ++r) {
          const auto sr = s.row(r).array();
          e = (sr - cmax).exp();
          const index_t mc = mask.col(r);
          if (mc >= 0) {
            e(mc) = 0;
            csum += e;
            cmom += e * sr.max(lowest);
          } else {
            csum += e;
            cmom += e * sr;
          }
        }
        for (index_t c = 0; c < J.rows; ++c) {
          if (cmax(c) == -infinity<T>()) continue;  // a 1-row tile whose entry is masked
          online_softmax<double> t;
          t.max = cmax(c);
          t.sum = csum(c);
          t.moment = cmom(c);
          out.col[J.global + c].merge(t);
        }
      }
      if (p.label_x) {
        for (index_t r = 0; r < I.rows; ++r) {
          const std::int64_t li = p.label_x[I.global + r];
          for (index_t c = 0; c < J.rows; ++c) {
            if (p.label_y[J.global + c] != li || mask.col(r) == c) continue;
            if (out.row_target) out.row_target[I.global + r] += s(r, c);
            if (out.col_target && !diag) out.col_target[J.global + c] += s(r, c);
          }
        }
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
};

/// Adds scale * G Y into the segments of dX and scale * G^T X into those of dY (in self mode
/// dY == dX and G is symmetrised on the fly). The outputs must be gemm_ready.
template <class T>
void pairwise_backward(const pairwise_problem<T>& p, const pairwise_coefficients<T>& k,
                       const matrix_view<T>* dx, const matrix_view<T>* dy, arena& ar) {
  if (p.x_rows() == 0 || p.y_rows() == 0) return;
  const auto blocks = make_tiling(p);
  const auto& xb = blocks.first;
  const auto& yb = blocks.second;
  const auto shape = tile_shape(p);
  pairwise_scratch<T> ws(ar, shape.first, shape.second);
  using cvec = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;

  for (std::size_t bi = 0; bi < xb.size(); ++bi) {
    for (std::size_t bj = p.self ? bi : 0; bj < yb.size(); ++bj) {
      const row_block& I = xb[bi];
      const row_block& J = yb[bj];
      const bool diag = p.self && bi == bj;
      const tile_mask mask = diagonal_mask(p, I, J);
      compute_logits(p, I, J, mask, ws);
      auto g = ws.logits(I.rows, J.rows);  // overwritten in place by G
      const bool has_row = k.row_w != nullptr, has_col = k.col_w != nullptr;
      for (index_t r = 0; r < I.rows; ++r) {
        auto gr = g.row(r).array();
        const T wr = has_row ? k.row_w[I.global + r] : T(0);
        const T lr = has_row ? k.row_lse[I.global + r] : T(0);
        if (has_col) {
          const cvec wc(k.col_w + J.global, J.rows), lc(k.col_lse + J.global, J.rows);
          if (has_row)
            gr = wr * (gr - lr).exp() + wc * (gr - lc).exp();
          else
            gr = wc * (gr - lc).exp();
        } else {
          gr = wr * (gr - lr).exp();
        }
      }
      // exp(-inf) is not exactly 0 in Eigen's exp.
      for (index_t r = mask.first; r < mask.last; ++r) g(r, r + mask.offset) = 0;
      if (p.label_x) {
        for (index_t r = 0; r < I.rows; ++r) {
          const std::int64_t li = p.label_x[I.global + r];
          const T qr = k.row_q ? k.row_q[I.global + r] : T(0);
          for (index_t c = 0; c < J.rows; ++c) {
            if (p.label_y[J.global + c] != li || mask.col(r) == c) continue;
            g(r, c) -= qr + (k.col_q ? k.col_q[J.global + c] : T(0));
          }
        }
      }
      const auto xi = map_rows<T>(p.x[I.segment].middle_rows(I.first, I.rows));
      const auto yj = map_rows<T>(p.y[J.segment].middle_rows(J.first, J.rows));
      auto dxi = map_rows_mut<T>(dx[I.segment].middle_rows(I.first, I.rows));
      dxi.noalias() += p.scale * (g * yj);
      if (!diag) {
        auto dyj = map_rows_mut<T>(dy[J.segment].middle_rows(J.first, J.rows));
        dyj.noalias() += p.scale * (g.transpose() * xi);
      }
    }
  }
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_TILING_HPP
// ---- end contrastive/core/tiling.hpp ----

CONTRASTIVE_NAMESPACE_BEGIN

struct info_nce_options {
  double temperature = 0.07;  // tau > 0; logits are <a_i, b_j> / tau
  bool symmetric = true;      // true: CLIP, the mean of the a->b and b->a losses
  double label_smoothing = 0; // eps in [0, 1)
  // Multiple positives (SupCon style): b_j is a positive of a_i when labels_b[j] == labels_a[i].
  // Give both or neither; without labels the positive of a_i is b_i.
  label_span labels_a{};
  label_span labels_b{};
  loss_reduction reduction = loss_reduction::mean;
  index_t tile_rows = 256;
  index_t tile_cols = 256;
  bool accumulate = false;  // backward adds into the gradients instead of overwriting them
};

/// What the forward keeps for the backward: O(N) statistics, never an N x N matrix.
template <class T>
struct info_nce_saved {
  T loss = 0;
  double grad_log_scale = 0;  // dL/dtheta, theta = log(1/tau), at upstream 1
  std::vector<T> row_lse;     // LSE_j s_ij (a -> b)
  std::vector<T> col_lse;     // LSE_i s_ij (b -> a); empty unless symmetric
  std::vector<index_t> row_positives;  // |P_i| with labels (else empty)
  std::vector<index_t> col_positives;
  index_t n = 0, d = 0;
  // The options the statistics belong to; backward checks them.
  double temperature = 0;
  double label_smoothing = 0;
  bool symmetric = true;
  bool labelled = false;
  loss_reduction reduction = loss_reduction::mean;

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
  check_matrix(fn, "a", a);
  check_matrix(fn, "b", b);
  check_temperature(fn, o.temperature);
  check_smoothing(fn, o.label_smoothing);
  check_tiles(fn, o.tile_rows, o.tile_cols);
  CONTRASTIVE_CHECK(a.rows() > 0, fn, ": empty batch ('a' has 0 rows)");
  CONTRASTIVE_CHECK(a.cols() > 0, fn, ": 'a' has 0 columns (D must be > 0)");
  CONTRASTIVE_CHECK(b.rows() == a.rows(), fn, ": 'b' has ", b.rows(), " rows, expected ",
                    a.rows(), " (rows of 'a')");
  CONTRASTIVE_CHECK(b.cols() == a.cols(), fn, ": 'b' has ", b.cols(), " columns, expected ",
                    a.cols(), " (columns of 'a')");
  CONTRASTIVE_CHECK(o.labels_a.empty() == o.labels_b.empty(), fn,
                    ": give both 'labels_a' and 'labels_b' or neither");
  if (!o.labels_a.empty()) {
    check_labels<T>(fn, "labels_a", o.labels_a, a.rows());
    check_labels<T>(fn, "labels_b", o.labels_b, b.rows());
  }
  check_finite(fn, "a", a);
  check_finite(fn, "b", b);
}

/// Carves (or, with size_counter, sizes) the forward's scratch in one fixed order.
template <class T, class Alloc>
struct info_nce_forward_buffers {
  online_softmax<double>* row = nullptr;
  online_softmax<double>* col = nullptr;
  double* row_target = nullptr;
  double* col_target = nullptr;
  std::int64_t* sort_scratch = nullptr;

  info_nce_forward_buffers(Alloc& al, index_t n, bool symmetric, bool labelled) {
    row = al.template take<online_softmax<double>>(static_cast<std::size_t>(n));
    if (symmetric) col = al.template take<online_softmax<double>>(static_cast<std::size_t>(n));
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

  info_nce_backward_buffers(Alloc& al, index_t n, index_t d, bool symmetric, bool labelled,
                            bool smoothing) {
    const auto un = static_cast<std::size_t>(n);
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

template <class T>
std::pair<index_t, index_t> info_nce_tile(index_t n, const info_nce_options& o) noexcept {
  return tile_shape(o.tile_rows, o.tile_cols, false, n, n);
}

template <class T>
std::size_t info_nce_forward_bytes(index_t n, const info_nce_options& o, std::size_t packing) {
  size_counter c;
  const info_nce_forward_buffers<T, size_counter> sized(c, n, o.symmetric, !o.labels_a.empty());
  (void)sized;
  return c.bytes + packing + pairwise_workspace_bytes<T>(info_nce_tile<T>(n, o)) +
         workspace_alignment;
}

template <class T>
std::size_t info_nce_backward_bytes(index_t n, index_t d, const info_nce_options& o,
                                    std::size_t packing) {
  size_counter c;
  const info_nce_backward_buffers<T, size_counter> sized(c, n, d, o.symmetric,
                                                         !o.labels_a.empty(), o.label_smoothing > 0);
  (void)sized;
  return c.bytes + packing + pairwise_workspace_bytes<T>(info_nce_tile<T>(n, o)) +
         workspace_alignment;
}

template <class T>
void column_mean(const matrix_view<const T>& x, std::vector<double>& out) {
  out.assign(static_cast<std::size_t>(x.cols()), 0.0);
  for (index_t i = 0; i < x.rows(); ++i)
    for (index_t k = 0; k < x.cols(); ++k) out[k] += double(x(i, k));
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

template <class T>
info_nce_saved<T> info_nce_forward_impl(const matrix_view<const T>& a_in,
                                        const matrix_view<const T>& b_in,
                                        const info_nce_options& o, workspace ws) {
  const char* fn = info_nce_fwd_name;
  info_nce_check_inputs(fn, a_in, b_in, o);
  const index_t n = a_in.rows(), d = a_in.cols();
  const bool sym = o.symmetric, labelled = !o.labels_a.empty();
  const double eps = o.label_smoothing;
  const double lambda_d = 1.0 / o.temperature;

  arena ar(ws, info_nce_forward_bytes<T>(n, o, packing_bytes(a_in) + packing_bytes(b_in)) -
                   workspace_alignment,
           fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  info_nce_forward_buffers<T, arena> buf(ar, n, sym, labelled);
  for (index_t i = 0; i < n; ++i) {
    buf.row[i] = online_softmax<double>();
    if (sym) buf.col[i] = online_softmax<double>();
    if (labelled) {
      buf.row_target[i] = 0;
      if (sym) buf.col_target[i] = 0;
    }
  }

  pairwise_problem<T> p;
  p.x = &a;
  p.x_segments = 1;
  p.y = &b;
  p.y_segments = 1;
  p.scale = static_cast<T>(lambda_d);
  p.tile_rows = o.tile_rows;
  p.tile_cols = o.tile_cols;
  if (labelled) {
    p.label_x = o.labels_a.data;
    p.label_y = o.labels_b.data;
  }
  pairwise_stats<T> st;
  st.row = buf.row;
  st.col = buf.col;
  st.row_target = buf.row_target;
  st.col_target = buf.col_target;
  pairwise_forward(p, st, ar);

  info_nce_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.label_smoothing = eps;
  saved.symmetric = sym;
  saved.labelled = labelled;
  saved.reduction = o.reduction;
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
      lse_out[i] = static_cast<T>(lse);
      if (labelled && positives[i] == 0) continue;  // no positive: excluded (l_i = 0)
      const double hard = labelled ? target[i] / double(positives[i]) : lambda_d * dot_rows(x, i, y, i);
      const double soft = eps > 0 ? lambda_d * dot_row_vec(x, i, mean_y.data()) : 0.0;
      const double t = (1 - eps) * hard + eps * soft;
      sums.loss += lse - t;
      sums.dtheta += stats[i].mean() - t;
      ++sums.valid;
    }
    return sums;
  };

  const double c = sym ? 0.5 : 1.0;
  const direction_sums r =
      direction(a, b, buf.row, buf.row_target, saved.row_positives, mean_b, saved.row_lse);
  double loss = c * r.weight(o.reduction) * r.loss;
  double dtheta = c * r.weight(o.reduction) * r.dtheta;
  if (sym) {
    const direction_sums cs =
        direction(b, a, buf.col, buf.col_target, saved.col_positives, mean_a, saved.col_lse);
    loss += c * cs.weight(o.reduction) * cs.loss;
    dtheta += c * cs.weight(o.reduction) * cs.dtheta;
  }
  CONTRASTIVE_CHECK(std::isfinite(loss), fn,
                    ": the logits overflow (loss is not finite) at temperature ", o.temperature,
                    "; scale the inputs down or normalise them");
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
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
  CONTRASTIVE_CHECK(saved.n == a.rows() && saved.d == a.cols(), fn, ": 'saved' belongs to a ",
                    saved.n, " x ", saved.d, " batch, the inputs are ", a.rows(), " x ", a.cols());
  CONTRASTIVE_CHECK(saved.temperature == o.temperature && saved.symmetric == o.symmetric &&
                        saved.label_smoothing == o.label_smoothing &&
                        saved.labelled == !o.labels_a.empty() && saved.reduction == o.reduction,
                    fn, ": 'saved' was computed with other options (temperature ", saved.temperature,
                    ", symmetric ", saved.symmetric, ", label_smoothing ", saved.label_smoothing,
                    ") than these (temperature ", o.temperature, ", symmetric ", o.symmetric,
                    ", label_smoothing ", o.label_smoothing, ")");
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

template <class T>
temperature_gradient info_nce_backward_impl(const matrix_view<const T>& a_in,
                                            const matrix_view<const T>& b_in,
                                            const info_nce_saved<T>& saved,
                                            const matrix_view<T>& grad_a,
                                            const matrix_view<T>& grad_b,
                                            const info_nce_options& o, double upstream,
                                            workspace ws) {
  const char* fn = info_nce_bwd_name;
  info_nce_check_backward(fn, a_in, b_in, saved, grad_a, grad_b, o, upstream);
  const index_t n = a_in.rows(), d = a_in.cols();
  const bool sym = o.symmetric, labelled = saved.labelled;
  const double eps = o.label_smoothing;
  const double lambda_d = 1.0 / o.temperature;
  const std::size_t packing = packing_bytes(a_in) + packing_bytes(b_in) +
                              packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, info_nce_backward_bytes<T>(n, d, o, packing) - workspace_alignment, fn);
  const matrix_view<const T> a = gemm_input(a_in, ar);
  const matrix_view<const T> b = gemm_input(b_in, ar);
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  info_nce_backward_buffers<T, arena> buf(ar, n, d, sym, labelled, eps > 0);

  // Per-anchor weights: 1/|V| (mean) or 1, times 1/2 when symmetric, times upstream; 0 for
  // anchors without a positive.
  const double c = (sym ? 0.5 : 1.0) * upstream;
  auto weights = [&](const std::vector<index_t>& positives, const std::vector<T>& lse, T* w,
                     T* lse_out, T* q) {
    index_t valid = n;
    if (labelled) {
      valid = 0;
      for (index_t i = 0; i < n; ++i) valid += positives[i] > 0;
    }
    const double wv = valid == 0 ? 0.0 : c * (o.reduction == loss_reduction::mean ? 1.0 / double(valid) : 1.0);
    for (index_t i = 0; i < n; ++i) {
      const bool ok = !labelled || positives[i] > 0;
      w[i] = static_cast<T>(ok ? wv : 0.0);
      lse_out[i] = lse[i];
      if (q) q[i] = static_cast<T>(ok ? wv * (1 - eps) / double(positives[i]) : 0.0);
    }
  };
  weights(saved.row_positives, saved.row_lse, buf.row_w, buf.row_lse, buf.row_q);
  if (sym) weights(saved.col_positives, saved.col_lse, buf.col_w, buf.col_lse, buf.col_q);

  pairwise_problem<T> p;
  p.x = &a;
  p.x_segments = 1;
  p.y = &b;
  p.y_segments = 1;
  p.scale = static_cast<T>(lambda_d);
  p.tile_rows = o.tile_rows;
  p.tile_cols = o.tile_cols;
  if (labelled) {
    p.label_x = o.labels_a.data;
    p.label_y = o.labels_b.data;
  }
  pairwise_coefficients<T> k;
  k.row_w = buf.row_w;
  k.row_lse = buf.row_lse;
  k.row_q = buf.row_q;
  k.col_w = buf.col_w;
  k.col_lse = buf.col_lse;
  k.col_q = buf.col_q;
  const matrix_view<T> dA = ga.view(), dB = gb.view();
  pairwise_backward(p, k, &dA, &dB, ar);

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
        dA(i, k2) -= static_cast<T>(lambda_d * eps * (double(buf.row_w[i]) * mean_b[k2] + wb[k2] / double(n)));
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
  const std::size_t f = detail::info_nce_forward_bytes<T>(n, o, 0);
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
  const std::size_t f = detail::info_nce_forward_bytes<T>(va.rows(), o, pack);
  // Gradients are assumed row-major; non-row-major gradients add 2 N D elements.
  const std::size_t bw = detail::info_nce_backward_bytes<T>(va.rows(), va.cols(), o, pack);
  return f > bw ? f : bw;
}

/// Forward pass. Returns the loss and the O(N) statistics the backward needs.
template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto info_nce_forward(const A& a, const B& b, const info_nce_options& o = {}, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  static_assert(std::is_same<T, typename decltype(vb)::value_type>::value,
                "contrastive: 'a' and 'b' must have the same element type");
  return detail::info_nce_forward_impl<T>(va, vb, o, ws);
}

/// Backward pass: writes (or, with options.accumulate, adds) upstream * dL/da and dL/db into the
/// caller's tensors. Returns upstream * dL/dtemperature in three parameterisations.
template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
temperature_gradient info_nce_backward(const A& a, const B& b, const info_nce_saved<T>& saved,
                                       GA&& grad_a, GB&& grad_b, const info_nce_options& o = {},
                                       double upstream = 1.0, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  static_assert(std::is_same<T, typename decltype(va)::value_type>::value &&
                    std::is_same<T, typename decltype(vb)::value_type>::value &&
                    std::is_same<T, typename decltype(ga)::value_type>::value &&
                    std::is_same<T, typename decltype(gb)::value_type>::value,
                "contrastive: inputs, gradients and saved statistics must share one element type");
  return detail::info_nce_backward_impl<T>(va, vb, saved, ga, gb, o, upstream, ws);
}

/// Forward and backward in one call; returns the loss. The temperature gradient is written to
/// *temperature_grad when given.
template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto info_nce_forward_backward(const A& a, const B& b, GA&& grad_a, GB&& grad_b,
                               const info_nce_options& o = {},
                               temperature_gradient* temperature_grad = nullptr,
                               workspace ws = {}) {
  const auto saved = info_nce_forward(a, b, o, ws);
  const temperature_gradient tg =
      info_nce_backward(a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0, ws);
  if (temperature_grad) *temperature_grad = tg;
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
// the rows of I and of J. Spec: shared/spec/losses.md, section 2.

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>


CONTRASTIVE_NAMESPACE_BEGIN

struct nt_xent_options {
  double temperature = 0.1;    // tau > 0; logits are <z_i, z_j> / tau
  double label_smoothing = 0;  // eps in [0, 1); spread over the 2N - 1 candidates
  // Multiple positives: one label per sample (length N), inherited by both views. Without
  // labels the positive of view i is the other view of the same sample.
  label_span labels{};
  loss_reduction reduction = loss_reduction::mean;
  index_t tile_rows = 256;  // NT-Xent tiles are square: min(tile_rows, tile_cols)
  index_t tile_cols = 256;
  bool accumulate = false;
};

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
  check_matrix(fn, "a", a);
  check_matrix(fn, "b", b);
  check_temperature(fn, o.temperature);
  check_smoothing(fn, o.label_smoothing);
  check_tiles(fn, o.tile_rows, o.tile_cols);
  CONTRASTIVE_CHECK(a.rows() > 0, fn, ": empty batch ('a' has 0 rows)");
  CONTRASTIVE_CHECK(a.cols() > 0, fn, ": 'a' has 0 columns (D must be > 0)");
  CONTRASTIVE_CHECK(b.rows() == a.rows(), fn, ": 'b' has ", b.rows(), " rows, expected ",
                    a.rows(), " (rows of 'a': one second view per sample)");
  CONTRASTIVE_CHECK(b.cols() == a.cols(), fn, ": 'b' has ", b.cols(), " columns, expected ",
                    a.cols(), " (columns of 'a')");
  if (!o.labels.empty()) check_labels<T>(fn, "labels", o.labels, a.rows());
  check_finite(fn, "a", a);
  check_finite(fn, "b", b);
}

template <class T, class Alloc>
struct nt_xent_forward_buffers {
  online_softmax<double>* stats = nullptr;
  double* target = nullptr;
  std::int64_t* labels = nullptr;  // 2N
  std::int64_t* sort_scratch = nullptr;

  nt_xent_forward_buffers(Alloc& al, index_t n, bool labelled) {
    const auto n2 = 2 * static_cast<std::size_t>(n);
    stats = al.template take<online_softmax<double>>(n2);
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
  double* sums = nullptr;  // 2 D: sum_i z_i and sum_i w_i z_i (smoothing)

  nt_xent_backward_buffers(Alloc& al, index_t n, index_t d, bool labelled, bool smoothing) {
    const auto n2 = 2 * static_cast<std::size_t>(n);
    w = al.template take<T>(n2);
    lse = al.template take<T>(n2);
    if (labelled) {
      q = al.template take<T>(n2);
      labels = al.template take<std::int64_t>(n2);
    }
    if (smoothing) sums = al.template take<double>(2 * static_cast<std::size_t>(d));
  }
};

template <class T>
std::size_t nt_xent_forward_bytes(index_t n, const nt_xent_options& o, std::size_t packing) {
  size_counter c;
  const nt_xent_forward_buffers<T, size_counter> sized(c, n, !o.labels.empty());
  (void)sized;
  return c.bytes + packing +
         pairwise_workspace_bytes<T>(tile_shape(o.tile_rows, o.tile_cols, true, n, n)) +
         workspace_alignment;
}

template <class T>
std::size_t nt_xent_backward_bytes(index_t n, index_t d, const nt_xent_options& o,
                                   std::size_t packing) {
  size_counter c;
  const nt_xent_backward_buffers<T, size_counter> sized(c, n, d, !o.labels.empty(),
                                                        o.label_smoothing > 0);
  (void)sized;
  return c.bytes + packing +
         pairwise_workspace_bytes<T>(tile_shape(o.tile_rows, o.tile_cols, true, n, n)) +
         workspace_alignment;
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

template <class T>
void nt_xent_labels(const label_span& y, index_t n, std::int64_t* out) {
  for (index_t i = 0; i < 2 * n; ++i) out[i] = y.data[i < n ? i : i - n];
}

template <class T>
pairwise_problem<T> nt_xent_problem(const matrix_view<const T>* segments, const nt_xent_options& o,
                                    const std::int64_t* labels) {
  pairwise_problem<T> p;
  p.x = segments;
  p.x_segments = 2;
  p.y = segments;
  p.y_segments = 2;
  p.self = true;
  p.scale = static_cast<T>(1.0 / o.temperature);
  p.tile_rows = o.tile_rows;
  p.tile_cols = o.tile_cols;
  p.label_x = labels;
  p.label_y = labels;
  return p;
}

template <class T>
nt_xent_saved<T> nt_xent_forward_impl(const matrix_view<const T>& a_in,
                                      const matrix_view<const T>& b_in, const nt_xent_options& o,
                                      workspace ws) {
  const char* fn = nt_xent_fwd_name;
  nt_xent_check_inputs(fn, a_in, b_in, o);
  const index_t n = a_in.rows(), d = a_in.cols(), n2 = 2 * n;
  const bool labelled = !o.labels.empty();
  const double eps = o.label_smoothing;
  const double lambda_d = 1.0 / o.temperature;

  arena ar(ws, nt_xent_forward_bytes<T>(n, o, packing_bytes(a_in) + packing_bytes(b_in)) -
                   workspace_alignment,
           fn);
  const matrix_view<const T> seg[2] = {gemm_input(a_in, ar), gemm_input(b_in, ar)};
  const stacked_rows<T> z{seg[0], seg[1]};
  nt_xent_forward_buffers<T, arena> buf(ar, n, labelled);
  for (index_t i = 0; i < n2; ++i) {
    buf.stats[i] = online_softmax<double>();
    if (labelled) buf.target[i] = 0;
  }
  if (labelled) nt_xent_labels<T>(o.labels, n, buf.labels);

  const pairwise_problem<T> p = nt_xent_problem<T>(seg, o, buf.labels);
  pairwise_stats<T> st;
  st.row = buf.stats;
  st.col = buf.stats;  // the same anchors: S is symmetric
  st.row_target = buf.target;
  st.col_target = buf.target;
  pairwise_forward(p, st, ar);

  nt_xent_saved<T> saved;
  saved.n = n;
  saved.d = d;
  saved.temperature = o.temperature;
  saved.label_smoothing = eps;
  saved.labelled = labelled;
  saved.reduction = o.reduction;
  if (labelled) {
    saved.positives.resize(static_cast<std::size_t>(n2));
    const label_span zl(buf.labels, n2);
    count_matches(zl, zl, saved.positives.data(), buf.sort_scratch);
    for (auto& c : saved.positives) --c;  // not itself; the other view is always left
  }
  std::vector<double> sum_z;
  if (eps > 0) {
    sum_z.assign(static_cast<std::size_t>(d), 0.0);
    for (index_t i = 0; i < n2; ++i)
      for (index_t k = 0; k < d; ++k) sum_z[k] += double(z(i, k));
  }

  double loss = 0, dtheta = 0;
  saved.lse.resize(static_cast<std::size_t>(n2));
  for (index_t i = 0; i < n2; ++i) {
    const double lse = buf.stats[i].lse();
    saved.lse[i] = static_cast<T>(lse);
    const double hard = labelled ? buf.target[i] / double(saved.positives[i])
                                 : lambda_d * dot_rows(seg[0], z.local(i), seg[1], z.local(i));
    double soft = 0;
    if (eps > 0) {
      for (index_t k = 0; k < d; ++k) soft += double(z(i, k)) * (sum_z[k] - double(z(i, k)));
      soft *= lambda_d / double(n2 - 1);
    }
    const double t = (1 - eps) * hard + eps * soft;
    loss += lse - t;
    dtheta += buf.stats[i].mean() - t;
  }
  const double w = o.reduction == loss_reduction::mean ? 1.0 / double(n2) : 1.0;
  loss *= w;
  dtheta *= w;
  CONTRASTIVE_CHECK(std::isfinite(loss), fn,
                    ": the logits overflow (loss is not finite) at temperature ", o.temperature,
                    "; scale the inputs down or normalise them");
  saved.loss = static_cast<T>(loss);
  saved.grad_log_scale = dtheta;
  return saved;
}

template <class T>
temperature_gradient nt_xent_backward_impl(const matrix_view<const T>& a_in,
                                           const matrix_view<const T>& b_in,
                                           const nt_xent_saved<T>& saved,
                                           const matrix_view<T>& grad_a,
                                           const matrix_view<T>& grad_b,
                                           const nt_xent_options& o, double upstream,
                                           workspace ws) {
  const char* fn = nt_xent_bwd_name;
  nt_xent_check_inputs(fn, a_in, b_in, o);
  CONTRASTIVE_CHECK(std::isfinite(upstream), fn, ": 'upstream' must be finite, got ", upstream);
  CONTRASTIVE_CHECK(saved.n == a_in.rows() && saved.d == a_in.cols(), fn,
                    ": 'saved' belongs to a ", saved.n, " x ", saved.d, " batch, the inputs are ",
                    a_in.rows(), " x ", a_in.cols());
  CONTRASTIVE_CHECK(saved.temperature == o.temperature &&
                        saved.label_smoothing == o.label_smoothing &&
                        saved.labelled == !o.labels.empty() && saved.reduction == o.reduction,
                    fn, ": 'saved' was computed with other options (temperature ",
                    saved.temperature, ", label_smoothing ", saved.label_smoothing,
                    ") than these (temperature ", o.temperature, ", label_smoothing ",
                    o.label_smoothing, ")");
  check_matrix(fn, "grad_a", grad_a);
  check_matrix(fn, "grad_b", grad_b);
  check_shape(fn, "grad_a", grad_a, a_in.rows(), a_in.cols(), "the shape of 'a'");
  check_shape(fn, "grad_b", grad_b, b_in.rows(), b_in.cols(), "the shape of 'b'");
  check_writable_layout(fn, "grad_a", grad_a);
  check_writable_layout(fn, "grad_b", grad_b);
  check_no_alias(fn, "grad_a", grad_a, "a", a_in);
  check_no_alias(fn, "grad_a", grad_a, "b", b_in);
  check_no_alias(fn, "grad_b", grad_b, "a", a_in);
  check_no_alias(fn, "grad_b", grad_b, "b", b_in);
  check_no_alias(fn, "grad_a", grad_a, "grad_b", grad_b);

  const index_t n = a_in.rows(), d = a_in.cols(), n2 = 2 * n;
  const bool labelled = saved.labelled;
  const double eps = o.label_smoothing;
  const double lambda_d = 1.0 / o.temperature;
  const std::size_t packing = packing_bytes(a_in) + packing_bytes(b_in) +
                              packing_bytes(grad_a) + packing_bytes(grad_b);
  arena ar(ws, nt_xent_backward_bytes<T>(n, d, o, packing) - workspace_alignment, fn);
  const matrix_view<const T> seg[2] = {gemm_input(a_in, ar), gemm_input(b_in, ar)};
  const stacked_rows<T> z{seg[0], seg[1]};
  const gemm_output<T> ga(grad_a, o.accumulate, ar);
  const gemm_output<T> gb(grad_b, o.accumulate, ar);
  nt_xent_backward_buffers<T, arena> buf(ar, n, d, labelled, eps > 0);

  const double wv = upstream * (o.reduction == loss_reduction::mean ? 1.0 / double(n2) : 1.0);
  for (index_t i = 0; i < n2; ++i) {
    buf.w[i] = static_cast<T>(wv);
    buf.lse[i] = saved.lse[i];
    if (labelled) buf.q[i] = static_cast<T>(wv * (1 - eps) / double(saved.positives[i]));
  }
  if (labelled) nt_xent_labels<T>(o.labels, n, buf.labels);

  const pairwise_problem<T> p = nt_xent_problem<T>(seg, o, buf.labels);
  pairwise_coefficients<T> k;
  k.row_w = k.col_w = buf.w;
  k.row_lse = k.col_lse = buf.lse;
  k.row_q = k.col_q = buf.q;
  const matrix_view<T> dz[2] = {ga.view(), gb.view()};
  pairwise_backward(p, k, dz, dz, ar);

  auto dz_at = [&](index_t i, index_t c) -> T& { return dz[i < n ? 0 : 1](z.local(i), c); };
  // Target terms, O(N D). One-hot: view i's positive is view p(i) = i +- N, and
  // dL/dz_i gets -(w_i + w_p(i)) lambda z_p(i) (as anchor and as candidate).
  if (!labelled) {
    for (index_t i = 0; i < n; ++i) {
      const T coef = static_cast<T>(lambda_d * (1 - eps) * (double(buf.w[i]) + double(buf.w[i + n])));
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
  const std::size_t f = detail::nt_xent_forward_bytes<T>(n, o, 0);
  const std::size_t b = detail::nt_xent_backward_bytes<T>(n, d, o, 0);
  return f > b ? f : b;
}

template <class A, class B>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>)
auto nt_xent_forward(const A& a, const B& b, const nt_xent_options& o = {}, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  using T = typename decltype(va)::value_type;
  static_assert(std::is_same<T, typename decltype(vb)::value_type>::value,
                "contrastive: 'a' and 'b' must have the same element type");
  return detail::nt_xent_forward_impl<T>(va, vb, o, ws);
}

template <class A, class B, class T, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
temperature_gradient nt_xent_backward(const A& a, const B& b, const nt_xent_saved<T>& saved,
                                      GA&& grad_a, GB&& grad_b, const nt_xent_options& o = {},
                                      double upstream = 1.0, workspace ws = {}) {
  const auto va = detail::input_view(a);
  const auto vb = detail::input_view(b);
  const auto ga = detail::output_view(std::forward<GA>(grad_a));
  const auto gb = detail::output_view(std::forward<GB>(grad_b));
  static_assert(std::is_same<T, typename decltype(va)::value_type>::value &&
                    std::is_same<T, typename decltype(vb)::value_type>::value &&
                    std::is_same<T, typename decltype(ga)::value_type>::value &&
                    std::is_same<T, typename decltype(gb)::value_type>::value,
                "contrastive: inputs, gradients and saved statistics must share one element type");
  return detail::nt_xent_backward_impl<T>(va, vb, saved, ga, gb, o, upstream, ws);
}

template <class A, class B, class GA, class GB>
CONTRASTIVE_REQUIRES(tensor_like<A>&& tensor_like<B>&& writable_tensor<GA&&>&& writable_tensor<GB&&>)
auto nt_xent_forward_backward(const A& a, const B& b, GA&& grad_a, GB&& grad_b,
                              const nt_xent_options& o = {},
                              temperature_gradient* temperature_grad = nullptr,
                              workspace ws = {}) {
  const auto saved = nt_xent_forward(a, b, o, ws);
  const temperature_gradient tg =
      nt_xent_backward(a, b, saved, std::forward<GA>(grad_a), std::forward<GB>(grad_b), o, 1.0, ws);
  if (temperature_grad) *temperature_grad = tg;
  return saved.loss;
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_LOSSES_NT_XENT_HPP
// ---- end contrastive/losses/nt_xent.hpp ----
// ---- begin contrastive/sampling/philox.hpp ----
#ifndef CONTRASTIVE_SAMPLING_PHILOX_HPP
#define CONTRASTIVE_SAMPLING_PHILOX_HPP

// Philox4x32-10 (Salmon et al., SC 2011), counter-based: every draw is a pure function of
// (seed, id, step, stream, block), so CPU and GPU, any tiling and any thread count produce the
// same numbers. Layout (shared/spec/losses.md 3.6):
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
    const philox_block c{{static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(id >> 32), step,
                          (stream << 28) | (k & 0x0FFFFFFFu)}};
    return philox4x32_10(c, static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
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

#endif  // CONTRASTIVE_CONTRASTIVE_HPP
