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
