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

// Umbrella header: core, raw and Eigen adapters (losses, sampling and state are added as they
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

/// Do the memory ranges spanned by two views overlap? (O(1); bounding ranges, conservative.)
template <class T, class U, class S1, class S2>
bool views_overlap(const matrix_view<T, S1>& x, const matrix_view<U, S2>& y) noexcept {
  if (x.empty() || y.empty()) return false;
  const auto x0 = reinterpret_cast<std::uintptr_t>(x.lowest());
  const auto x1 = reinterpret_cast<std::uintptr_t>(x.lowest() + x.required_span_size());
  const auto y0 = reinterpret_cast<std::uintptr_t>(y.lowest());
  const auto y1 = reinterpret_cast<std::uintptr_t>(y.lowest() + y.required_span_size());
  return x0 < y1 && y0 < x1;
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

#include <Eigen/Core>


CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

// Two steps, because `M::Flags` is a hard error for non-Eigen types (traits do not short-circuit).
template <class M, class = void>
struct is_eigen_dense : std::false_type {};
template <class M>
struct is_eigen_dense<M, std::enable_if_t<std::is_base_of<Eigen::DenseBase<M>, M>::value>>
    : std::true_type {};

template <class M, bool = is_eigen_dense<M>::value>
struct is_eigen_direct : std::false_type {};
template <class M>
struct is_eigen_direct<M, true>
    : std::bool_constant<(static_cast<unsigned>(M::Flags) & Eigen::DirectAccessBit) != 0> {};

// Matrix and Array own their storage; Map, Ref and Block do not.
template <class M>
struct eigen_owns_storage : std::is_base_of<Eigen::PlainObjectBase<M>, M> {};

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

#endif  // CONTRASTIVE_CONTRASTIVE_HPP
