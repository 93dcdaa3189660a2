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

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/loss_types.hpp"
#include "contrastive/core/matrix_view.hpp"

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
