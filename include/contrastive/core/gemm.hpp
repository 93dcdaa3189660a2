#ifndef CONTRASTIVE_CORE_GEMM_HPP
#define CONTRASTIVE_CORE_GEMM_HPP

// Host-only tile products through Eigen's GEMM (the only <Eigen/Core> in core/). Whatever the
// caller's tensor type, tiles reach Eigen as Maps with a compile-time unit inner stride, which is
// what Eigen's fast path needs; other layouts are packed by the caller first.

#include <Eigen/Core>

#include "contrastive/core/config.hpp"
#include "contrastive/core/matrix_view.hpp"

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
