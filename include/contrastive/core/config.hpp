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
