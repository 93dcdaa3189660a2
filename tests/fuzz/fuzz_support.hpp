// Shared decoding and contract checking of the libFuzzer harnesses (tests/fuzz/fuzz_*.cpp).
//
// The contract every harness asserts on every input: a public call either throws
// contrastive::invalid_argument and leaves every output buffer bit-for-bit as it was (the
// buffers are poisoned first), or returns a finite loss, finite gradients, and touches nothing
// outside its output views (the padding of a strided output keeps its poison). Anything else --
// another exception type, a crash, a sanitizer report -- is a finding.
#ifndef CONTRASTIVE_TESTS_FUZZ_SUPPORT_HPP
#define CONTRASTIVE_TESTS_FUZZ_SUPPORT_HPP

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <contrastive/core/error.hpp>
#include <contrastive/core/matrix_view.hpp>

namespace fuzz {

/// Reads the fuzzer's bytes as a stream of small decisions; past the end every read is 0.
class input {
 public:
  input(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}

  std::uint8_t byte() { return pos_ < n_ ? p_[pos_++] : 0; }
  bool flag() { return (byte() & 1) != 0; }
  /// An integer in [lo, hi].
  int range(int lo, int hi) { return lo + static_cast<int>(byte() % unsigned(hi - lo + 1)); }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | byte();
    return v;
  }

  /// A matrix entry: mostly ordinary values in [-2, 2], sometimes an edge value.
  double value() {
    const std::uint8_t k = byte();
    if (k < 224) return (static_cast<double>((k << 8) | byte()) / 28672.0) - 2.0;
    return edge(k - 224);
  }
  /// An option value (temperature, weight, t, sigma, ...): an edge value or one near `typical`.
  double option(double typical) {
    const std::uint8_t k = byte();
    if (k < 128) return typical * (0.25 + static_cast<double>(k) / 64.0);
    return edge(k - 128);
  }

 private:
  static double edge(unsigned k) {
    static const double table[] = {0.0,
                                   -0.0,
                                   1.0,
                                   -1.0,
                                   1e-3,
                                   1e-300,
                                   std::numeric_limits<double>::denorm_min(),
                                   std::numeric_limits<float>::denorm_min(),
                                   1e38,
                                   -1e38,
                                   1e300,
                                   std::numeric_limits<double>::quiet_NaN(),
                                   std::numeric_limits<double>::infinity(),
                                   -std::numeric_limits<double>::infinity(),
                                   0.5,
                                   0.999999};
    return table[k % (sizeof(table) / sizeof(table[0]))];
  }

  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
};

/// Poison: a finite value no computation here produces by accident.
template <class T>
T poison() {
  return static_cast<T>(-1234.5625);
}

/// What the current input decoded to, printed with a finding (set by each harness).
inline std::function<void()>& describe() {
  static std::function<void()> f;
  return f;
}

/// The message of the last invalid_argument a checked call threw (printed with a finding).
inline std::string& last_error() {
  static std::string s;
  return s;
}

[[noreturn]] inline void finding(const char* what) {
  std::fprintf(stderr, "fuzz contract violated: %s\n", what);
  if (!last_error().empty()) std::fprintf(stderr, "last error: %s\n", last_error().c_str());
  if (describe()) describe()();
  std::abort();
}

/// Prints a matrix (shape, strides, values) for a finding's report.
template <class T>
void print_matrix(const char* name, contrastive::matrix_view<const T> m) {
  std::fprintf(stderr, "%s: %td x %td, strides %td, %td:", name, m.rows(), m.cols(), m.row_stride(),
               m.col_stride());
  for (contrastive::index_t i = 0; i < m.rows(); ++i) {
    std::fprintf(stderr, "\n ");
    for (contrastive::index_t j = 0; j < m.cols(); ++j)
      std::fprintf(stderr, " %.6g", static_cast<double>(m(i, j)));
  }
  std::fprintf(stderr, "\n");
}

/// A matrix with a decoded layout in its own buffer: row-major, column-major, padded rows,
/// reversed rows (negative stride) or repeated rows (stride 0), over a buffer with a poisoned
/// margin on both sides.
template <class T>
struct matrix {
  std::vector<T> buf;
  std::size_t offset = 0;
  contrastive::index_t rows = 0, cols = 0, rs = 0, cs = 0;

  contrastive::matrix_view<T> view() {
    return contrastive::matrix_view<T>(buf.data() + offset, rows, cols, rs, cs);
  }
  contrastive::matrix_view<const T> cview() const {
    return contrastive::matrix_view<const T>(buf.data() + offset, rows, cols, rs, cs);
  }
  /// Whether buffer position k is an element of the view.
  bool in_view(std::size_t k) const {
    for (contrastive::index_t i = 0; i < rows; ++i)
      for (contrastive::index_t j = 0; j < cols; ++j)
        if (static_cast<std::ptrdiff_t>(offset) + i * rs + j * cs == static_cast<std::ptrdiff_t>(k))
          return true;
    return false;
  }
};

/// Decodes a layout for a rows x cols matrix; `allow_repeat` permits stride-0 rows.
template <class T>
matrix<T> make_matrix(input& in, contrastive::index_t rows, contrastive::index_t cols,
                      bool allow_repeat = true) {
  matrix<T> m;
  m.rows = rows;
  m.cols = cols;
  const int layout = in.range(0, 7);
  const contrastive::index_t pad = in.range(1, 3);
  const std::size_t margin = 4;
  contrastive::index_t span = 0;
  if (layout == 4 && rows > 0 && cols > 0) {  // column-major
    m.rs = 1;
    m.cs = rows;
    span = rows * cols;
  } else if (layout == 5) {  // padded rows
    m.rs = cols + pad;
    m.cs = 1;
    span = rows * (cols + pad);
  } else if (layout == 6) {  // reversed rows
    m.rs = -cols;
    m.cs = 1;
    span = rows * cols;
  } else if (layout == 7 && allow_repeat) {  // every row is the same memory
    m.rs = 0;
    m.cs = 1;
    span = cols;
  } else {
    m.rs = cols;
    m.cs = 1;
    span = rows * cols;
  }
  m.buf.assign(static_cast<std::size_t>(span) + 2 * margin, poison<T>());
  m.offset = margin + (m.rs < 0 && rows > 0 ? static_cast<std::size_t>((rows - 1) * cols) : 0);
  return m;
}

/// An input matrix: a decoded layout with decoded values; a whole row may be zeroed.
template <class T>
matrix<T> make_input(input& in, contrastive::index_t rows, contrastive::index_t cols) {
  matrix<T> m = make_matrix<T>(in, rows, cols);
  auto v = m.view();
  const int zero_row = in.range(-1, 7);
  for (contrastive::index_t i = 0; i < rows; ++i)
    for (contrastive::index_t j = 0; j < cols; ++j)
      v(i, j) = i == zero_row ? T(0) : static_cast<T>(in.value());
  return m;
}

/// An output matrix: a decoded layout (no stride-0 rows unless `allow_repeat`), all poison.
template <class T>
matrix<T> make_output(input& in, contrastive::index_t rows, contrastive::index_t cols,
                      bool allow_repeat = false) {
  return make_matrix<T>(in, rows, cols, allow_repeat);
}

/// Snapshot of outputs before a call, checked after it.
template <class T>
class outputs {
 public:
  /// An output (finite inside its view after a success) or an input (never changed).
  void add(matrix<T>& m, bool output = true) {
    list_.push_back(&m);
    before_.push_back(m.buf);
    is_output_.push_back(output);
  }
  void add_input(matrix<T>& m) { add(m, false); }
  /// Prints every registered matrix (for a finding's report).
  void print() const {
    for (std::size_t k = 0; k < list_.size(); ++k) {
      const std::string name = "matrix " + std::to_string(k);
      print_matrix<T>(name.c_str(), list_[k]->cview());
    }
  }
  /// After a throw: every buffer bit-for-bit unchanged.
  void expect_unchanged() const {
    for (std::size_t k = 0; k < list_.size(); ++k)
      if (std::memcmp(list_[k]->buf.data(), before_[k].data(), before_[k].size() * sizeof(T)) != 0)
        print(), finding("an output changed although the call threw invalid_argument");
  }
  /// After a success: output view elements finite, everything outside them unchanged, inputs
  /// unchanged.
  void expect_finite_and_contained() const {
    for (std::size_t k = 0; k < list_.size(); ++k) {
      const matrix<T>& m = *list_[k];
      if (!is_output_[k]) {
        if (std::memcmp(m.buf.data(), before_[k].data(), before_[k].size() * sizeof(T)) != 0)
          print(), finding("a successful call changed an input");
        continue;
      }
      for (std::size_t i = 0; i < m.buf.size(); ++i) {
        const bool in = m.in_view(i);
        if (in && !std::isfinite(static_cast<double>(m.buf[i]))) {
          std::fprintf(stderr, "output %zu, buffer element %zu is %g\n", k, i,
                       static_cast<double>(m.buf[i]));
          print();
          finding("a gradient is not finite after a successful call");
        }
        if (!in && std::memcmp(&m.buf[i], &before_[k][i], sizeof(T)) != 0)
          print(), finding("a call wrote outside its output view");
      }
    }
  }

 private:
  std::vector<matrix<T>*> list_;
  std::vector<std::vector<T>> before_;
  std::vector<bool> is_output_;
};

/// Runs `call` (which returns the loss, or 0 when it has none) under the contract.
template <class T, class F, class OnSuccess>
void check_contract(const outputs<T>& outs, F&& call, OnSuccess&& on_success) {
  double loss = 0;
  last_error().clear();
  try {
    loss = static_cast<double>(call());
  } catch (const contrastive::invalid_argument& e) {
    last_error() = e.what();
    outs.expect_unchanged();
    return;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    finding("an exception other than contrastive::invalid_argument");
  }
  if (!std::isfinite(loss)) {
    outs.print();
    finding("a successful call returned a non-finite loss");
  }
  outs.expect_finite_and_contained();
  on_success();
}

template <class T, class F>
void check_contract(const outputs<T>& outs, F&& call) {
  check_contract(outs, std::forward<F>(call), [] {});
}

/// A double result of a successful call (a parameter gradient) must be finite.
inline void expect_finite(double v, const char* what) {
  if (!std::isfinite(v)) {
    std::fprintf(stderr, "%s is %g\n", what, v);
    finding("a non-finite parameter gradient after a successful call");
  }
}

/// The libFuzzer entry point running run<double> or run<float> on the input (its first bit).
#define CONTRASTIVE_FUZZ_FLOAT_AND_DOUBLE(run)                                        \
  extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { \
    fuzz::input in(data, size);                                                       \
    if (in.flag())                                                                    \
      run<double>(in);                                                                \
    else                                                                              \
      run<float>(in);                                                                 \
    return 0;                                                                         \
  }

/// Decodes tiling options (tile sizes 0 to 6 or huge, thread counts 0 to 3).
template <class Options>
void decode_tiling(input& in, Options& o) {
  const int tr = in.range(0, 7), tc = in.range(0, 7);
  o.tile_rows = tr == 7 ? (contrastive::index_t(1) << 40) : tr;
  o.tile_cols = tc == 7 ? (contrastive::index_t(1) << 40) : tc;
  o.num_threads = in.range(-1, 3);
}

/// Labels of length n drawn from a small alphabet (repeats are the point), sometimes negative.
inline std::vector<std::int64_t> make_labels(input& in, contrastive::index_t n) {
  std::vector<std::int64_t> l(static_cast<std::size_t>(n));
  for (auto& x : l) x = in.range(-1, 3);
  return l;
}

}  // namespace fuzz

#endif  // CONTRASTIVE_TESTS_FUZZ_SUPPORT_HPP
