#ifndef CONTRASTIVE_TESTS_DIST_SUPPORT_HPP
#define CONTRASTIVE_TESTS_DIST_SUPPORT_HPP

// Helpers of the distributed tests: every rank builds the same global batch, computes the
// single-process result on it, and compares its own rows of the distributed result.
// Comparisons use CHECK, never REQUIRE, after the first collective: a rank that left a test
// case early would leave the others waiting in the next collective.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include <contrastive/core/error.hpp>
#include <contrastive/distributed/mpi.hpp>

#include "support/reference.hpp"

namespace dtest {

template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Eigen::Index;

/// How the global batch is cut: equal shares, growing shares, or one rank without rows.
enum class shard { even, uneven, empty_rank };

inline const char* name(shard s) {
  return s == shard::even ? "even" : s == shard::uneven ? "uneven" : "empty rank";
}

/// Rows per rank (sum n). empty_rank gives rank 0 (2 ranks) or rank 1 (3+) no rows.
inline std::vector<Index> shard_counts(int p, Index n, shard s) {
  std::vector<Index> c(static_cast<std::size_t>(p), 0);
  if (s == shard::even || p == 1) {
    for (int k = 0; k < p; ++k) c[k] = n / p + (k < n % p ? 1 : 0);
    return c;
  }
  if (s == shard::uneven) {  // weights 1, 2, 3, ...
    const Index total_w = Index(p) * (p + 1) / 2;
    Index used = 0;
    for (int k = 0; k < p; ++k) {
      c[k] = k == p - 1 ? n - used : n * (k + 1) / total_w;
      used += c[k];
    }
    return c;
  }
  const int empty = p == 2 ? 0 : 1;
  std::vector<int> others;
  for (int k = 0; k < p; ++k)
    if (k != empty) others.push_back(k);
  for (std::size_t i = 0; i < others.size(); ++i)
    c[others[i]] = n / Index(others.size()) + (Index(i) < n % Index(others.size()) ? 1 : 0);
  return c;
}

inline Index offset_of(const std::vector<Index>& c, int rank) {
  Index o = 0;
  for (int k = 0; k < rank; ++k) o += c[k];
  return o;
}

/// This rank's rows of a global matrix.
template <class T>
rmat<T> rows_of(const rmat<T>& x, const std::vector<Index>& c, int rank) {
  return x.middleRows(offset_of(c, rank), c[rank]);
}

template <class V>
V slice(const V& v, const std::vector<Index>& c, int rank) {
  const Index o = offset_of(c, rank);
  return V(v.begin() + o, v.begin() + o + c[rank]);
}

template <class T>
constexpr double tolerance() {
  return std::is_same<T, float>::value ? 1e-6 : 1e-12;
}

inline double rel(double x, double ref) {
  return std::abs(x - ref) / std::max(std::abs(ref), 1e-300);
}

/// max |local - its rows of the reference| / max |reference| (the global scale).
template <class T>
double rel_rows(const rmat<T>& local, const rmat<T>& global_ref, const std::vector<Index>& c,
                int rank) {
  const double scale = std::max(1e-300, double(global_ref.cwiseAbs().maxCoeff()));
  if (c[rank] == 0) return local.rows() == 0 ? 0.0 : 1.0;
  const rmat<T> mine = rows_of(global_ref, c, rank);
  return double((local - mine).cwiseAbs().maxCoeff()) / scale;
}

/// A global batch of unit rows (the same on every rank: fixed seeds).
template <class T>
rmat<T> unit_rows(Index n, Index d, std::uint32_t seed) {
  return ref::normalized_rows(ref::random_matrix(n, d, seed)).cast<T>();
}

inline std::vector<std::int64_t> labels(Index n, int classes, int shift = 0) {
  std::vector<std::int64_t> y(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) y[i] = (i * 7 + shift) % classes;
  return y;
}

/// The same string on every rank?
inline bool same_on_all_ranks(const std::string& s) {
  const contrastive::distributed::mpi_communicator comm;
  std::int64_t len = static_cast<std::int64_t>(s.size());
  std::vector<std::int64_t> lens(static_cast<std::size_t>(comm.size()));
  comm.all_gather(&len, 1, lens.data());
  std::vector<std::size_t> counts(lens.begin(), lens.end());
  std::size_t total = 0;
  for (auto c : counts) total += c;
  std::vector<char> all(total + 1);
  comm.all_gather_v(s.data(), s.size(), all.data(), counts.data());
  std::size_t at = 0;
  for (auto c : counts) {
    if (std::string(all.data() + at, c) != s) return false;
    at += c;
  }
  return true;
}

/// Runs f, which must throw on every rank; returns the message ("" when it did not throw).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const contrastive::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace dtest

#endif  // CONTRASTIVE_TESTS_DIST_SUPPORT_HPP
