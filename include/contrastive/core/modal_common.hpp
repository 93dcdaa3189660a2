#ifndef CONTRASTIVE_CORE_MODAL_COMMON_HPP
#define CONTRASTIVE_CORE_MODAL_COMMON_HPP

// Pieces shared by the modality-structure regularisers (docs/README.md#modality-structure-regularisers): the
// row check (every value finite, no row of zero norm); their threads come from core/parallel.hpp. A zero-norm
// row is bad input for these losses (their inputs are meant to be L2-normalised embeddings).

#include <cmath>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/matrix_view.hpp"

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
