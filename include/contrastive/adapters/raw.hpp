#ifndef CONTRASTIVE_ADAPTERS_RAW_HPP
#define CONTRASTIVE_ADAPTERS_RAW_HPP

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/traits.hpp"

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
