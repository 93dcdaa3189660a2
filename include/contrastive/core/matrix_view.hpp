#ifndef CONTRASTIVE_CORE_MATRIX_VIEW_HPP
#define CONTRASTIVE_CORE_MATRIX_VIEW_HPP

#include <cstdint>
#include <type_traits>
#include <vector>

#include "contrastive/core/config.hpp"

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
