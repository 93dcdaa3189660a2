#ifndef CONTRASTIVE_DISTRIBUTED_RING_HPP
#define CONTRASTIVE_DISTRIBUTED_RING_HPP

// Machinery shared by the distributed losses (contrastive/distributed/*.hpp), on any communicator of
// distributed/communicator.hpp:
//
// - Agreement. An argument check that fails on one rank only must not leave the other ranks
//   waiting in the next collective. Every entry point therefore (1) all-gathers the values that
//   must be equal on all ranks (D, element type, options) and compares them on every rank, and
//   (2) runs its local checks inside agree_checks, which all-gathers the outcome: if any rank
//   failed, every rank throws the same contrastive::invalid_argument (the message of the lowest
//   failing rank, naming it).
// - Layout. Rank k holds rows [offset(k), offset(k) + count(k)) of the global batch (rank order);
//   counts may differ and may be 0.
// - The ring. Rank r first pairs its rows with its own block, then with the blocks of ranks r-1,
//   r-2, ... that travel around the ring (ring_shift), so a rank holds its own rows plus at most
//   two blocks at any time, never the global embedding and never an N x N matrix. The backward
//   ring sends each block together with a gradient accumulator, which comes back to its owner
//   after a full turn holding every other rank's contribution (as in ring attention).
//
// Each local-block product is one sweep of core/tiling.hpp (pairwise_forward/backward), with the
// O(N) per-row and per-column statistics merged across steps and, for columns, across ranks.

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/tiling.hpp"
#include "contrastive/core/workspace.hpp"
#include "contrastive/distributed/communicator.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace distributed {
namespace detail {

namespace cd = ::contrastive::detail;

template <class Comm>
void require_communicator() {
  static_assert(is_communicator<Comm>::value,
                "contrastive::dist: the first argument must be a communicator (see "
                "contrastive/distributed/communicator.hpp: self_communicator, mpi_communicator)");
}

// ---- agreement ---------------------------------------------------------------------------------

/// Makes every rank throw the same error when `local_error` is non-empty on any rank.
template <class Comm>
void agree_errors(const Comm& comm, const std::string& local_error) {
  const int p = comm.size();
  const std::int64_t len = static_cast<std::int64_t>(local_error.size());
  std::vector<std::int64_t> lens(static_cast<std::size_t>(p));
  comm.all_gather(&len, 1, lens.data());
  int first = -1, failed = 0;
  std::vector<std::size_t> counts(static_cast<std::size_t>(p));
  std::size_t total = 0, at = 0;
  for (int k = 0; k < p; ++k) {
    counts[static_cast<std::size_t>(k)] =
        static_cast<std::size_t>(lens[static_cast<std::size_t>(k)]);
    if (lens[static_cast<std::size_t>(k)] > 0) {
      if (first < 0) {
        first = k;
        at = total;
      }
      ++failed;
    }
    total += counts[static_cast<std::size_t>(k)];
  }
  if (first < 0) return;
  std::vector<char> all(total);
  comm.all_gather_v(local_error.data(), local_error.size(), all.data(), counts.data());
  const std::string msg(all.data() + at, counts[static_cast<std::size_t>(first)]);
  if (failed > 1) {
    CONTRASTIVE_CHECK(false, msg, " (on rank ", first, " of ", p, ", and on ", failed - 1,
                      " more rank(s))");
  }
  CONTRASTIVE_CHECK(false, msg, " (on rank ", first, " of ", p, ")");
}

/// Runs the local argument checks `f` and agrees on their outcome (see agree_errors). Without
/// exceptions a failing check ends the process through the violation handler, which with MPI
/// aborts the whole job: nothing hangs either way.
template <class Comm, class F>
void agree_checks(const Comm& comm, F&& f) {
  std::string err;
#if CONTRASTIVE_USE_EXCEPTIONS
  try {
    f();
  } catch (const std::exception& e) {
    err = e.what();
    if (err.empty()) err = "contrastive::dist: a local check failed";
  }
#else
  f();
#endif
  agree_errors(comm, err);
}

/// A value that must be the same on every rank, and its name in the error message.
struct agreed {
  const char* name;
  double value;
};

/// All-gathers `values` and checks, on every rank alike, that each one equals rank 0's.
template <class Comm>
void agree_values(const Comm& comm, const char* fn, std::initializer_list<agreed> values) {
  const std::size_t k = values.size();
  const auto p = static_cast<std::size_t>(comm.size());
  std::vector<double> mine;
  for (const agreed& v : values) mine.push_back(v.value);
  std::vector<double> all(k * p);
  comm.all_gather(mine.data(), k, all.data());
  std::size_t i = 0;
  for (const agreed& v : values) {
    const double v0 = all[i];
    for (std::size_t r = 1; r < p; ++r) {
      const double vr = all[r * k + i];
      const bool same = vr == v0 || (std::isnan(vr) && std::isnan(v0));
      CONTRASTIVE_CHECK(same, fn, ": ", v.name, " differs across ranks (rank 0: ", v0, ", rank ", r,
                        ": ", vr, "); every rank must pass the same");
    }
    ++i;
  }
}

/// A yes/no choice (e.g. "labels are given") that ranks with rows must agree on; ranks without
/// rows (which may pass empty spans) follow the others. Returns the agreed choice.
template <class Comm>
bool agree_flag(const Comm& comm, const char* fn, const char* what, bool flag, bool has_rows) {
  const std::int64_t mine = has_rows ? (flag ? 1 : 0) : -1;
  std::vector<std::int64_t> all(static_cast<std::size_t>(comm.size()));
  comm.all_gather(&mine, 1, all.data());
  int yes = -1, no = -1;
  for (int k = 0; k < comm.size(); ++k) {
    if (all[static_cast<std::size_t>(k)] == 1 && yes < 0) yes = k;
    if (all[static_cast<std::size_t>(k)] == 0 && no < 0) no = k;
  }
  CONTRASTIVE_CHECK(yes < 0 || no < 0, fn, ": ", what, " on rank ", yes, " but not on rank ", no,
                    "; every rank with rows must do the same");
  return yes >= 0;
}

/// Sums k doubles over the ranks, in rank order on every rank: the same bits everywhere,
/// whatever the engine's reduction order (scalars only: it gathers k x size values).
template <class Comm>
void sum_in_rank_order(const Comm& comm, double* v, std::size_t k) {
  const auto p = static_cast<std::size_t>(comm.size());
  std::vector<double> all(k * p);
  comm.all_gather(v, k, all.data());
  for (std::size_t i = 0; i < k; ++i) {
    double s = 0;
    for (std::size_t r = 0; r < p; ++r) s += all[r * k + i];
    v[i] = s;
  }
}

// ---- layout ------------------------------------------------------------------------------------

/// Rows of the global batch per rank, in rank order.
struct shard_layout {
  int rank = 0, size = 1;
  std::vector<index_t> counts;   // rows of each rank
  std::vector<index_t> offsets;  // size + 1 prefix sums

  index_t total() const noexcept { return offsets.back(); }
  index_t count(int k) const noexcept { return counts[static_cast<std::size_t>(k)]; }
  index_t offset(int k) const noexcept { return offsets[static_cast<std::size_t>(k)]; }
  index_t local() const noexcept { return count(rank); }
  index_t local_offset() const noexcept { return offset(rank); }
  index_t max_count() const noexcept { return *std::max_element(counts.begin(), counts.end()); }
  /// The rank whose block this rank holds at ring step t (its own at t = 0).
  int owner_at(int t) const noexcept { return ((rank - t) % size + size) % size; }
  std::vector<std::size_t> size_counts(std::size_t per_row = 1) const {
    std::vector<std::size_t> c;
    for (index_t n : counts) c.push_back(static_cast<std::size_t>(n) * per_row);
    return c;
  }
};

template <class Comm>
shard_layout make_layout(const Comm& comm, index_t local_rows) {
  shard_layout l;
  l.rank = comm.rank();
  l.size = comm.size();
  std::vector<std::int64_t> c(static_cast<std::size_t>(l.size));
  const std::int64_t mine = local_rows;
  comm.all_gather(&mine, 1, c.data());
  l.offsets.push_back(0);
  for (std::int64_t n : c) {
    l.counts.push_back(static_cast<index_t>(n));
    l.offsets.push_back(l.offsets.back() + static_cast<index_t>(n));
  }
  return l;
}

/// The global array (rank order) of a per-row local array.
template <class T, class Comm>
std::vector<T> gather_rows(const Comm& comm, const shard_layout& l, const T* local) {
  std::vector<T> out(static_cast<std::size_t>(l.total()));
  const std::vector<std::size_t> counts = l.size_counts();
  comm.all_gather_v(local, static_cast<std::size_t>(l.local()), out.data(), counts.data());
  return out;
}

/// Column statistics (max, sum, moment) merged over the ranks: all-reduce max of the maxima,
/// then all-reduce sum of the sums and moments rescaled to that maximum. O(N) values.
template <class Comm>
void all_reduce_softmax(const Comm& comm, online_softmax<double>* s, std::size_t n) {
  if (comm.size() == 1 || n == 0) return;
  std::vector<double> m(n), sm(2 * n);
  for (std::size_t i = 0; i < n; ++i) m[i] = s[i].max;
  comm.all_reduce(m.data(), n, reduce_op::max);
  for (std::size_t i = 0; i < n; ++i) {
    const double r = s[i].max == -infinity<double>() ? 0.0 : std::exp(s[i].max - m[i]);
    sm[i] = s[i].sum * r;
    sm[n + i] = s[i].moment * r;
  }
  comm.all_reduce(sm.data(), 2 * n, reduce_op::sum);
  for (std::size_t i = 0; i < n; ++i) {
    s[i].max = m[i];
    s[i].sum = m[i] == -infinity<double>() ? 0.0 : sm[i];
    s[i].moment = m[i] == -infinity<double>() ? 0.0 : sm[n + i];
  }
}

/// Column sums of the rows of `x` (in double), accumulated into out[0, cols).
template <class T>
void add_column_sums(const matrix_view<const T>& x, double* out, double weight_all = 1.0,
                     const T* row_weights = nullptr) {
  for (index_t i = 0; i < x.rows(); ++i) {
    const double w = row_weights ? double(row_weights[i]) : weight_all;
    for (index_t k = 0; k < x.cols(); ++k) out[k] += w * double(x(i, k));
  }
}

// ---- scratch -----------------------------------------------------------------------------------

/// One buffer, carved afresh for every ring step (an arena only grows).
class step_scratch {
 public:
  explicit step_scratch(std::size_t bytes)
      : bytes_(bytes), mem_(new std::byte[bytes + cd::workspace_alignment]) {}
  cd::arena arena(const char* fn) const {
    return cd::arena(workspace{mem_.get(), bytes_ + cd::workspace_alignment}, bytes_, fn);
  }

 private:
  std::size_t bytes_;
  std::unique_ptr<std::byte[]> mem_;
};

/// The largest sweep of any ring step: local rows (or a segment of them) against one block.
inline cd::sweep_shape ring_sweep_shape(const shard_layout& l, index_t d,
                                        const tiling_options& o) noexcept {
  const index_t m = l.max_count() > 0 ? l.max_count() : 1;
  return cd::make_sweep_shape(o, false, m, m, d);
}

/// Messages must fit MPI's int counts (checked alike on every rank before any transfer).
inline void check_block_size(const char* fn, const shard_layout& l, int segments, index_t d) {
  const double elems = 2.0 * segments * double(l.max_count()) * double(d);
  CONTRASTIVE_CHECK(elems <= double(INT_MAX), fn, ": a ring message of ", elems, " elements (2 x ",
                    segments, " x ", l.max_count(), " rows x ", d,
                    " columns) exceeds 2^31 - 1; use more ranks");
}

// ---- the ring ----------------------------------------------------------------------------------

template <class T>
void pack_rows(const matrix_view<const T>& x, T* out) {
  for (index_t i = 0; i < x.rows(); ++i)
    for (index_t k = 0; k < x.cols(); ++k) out[i * x.cols() + k] = x(i, k);
}

/// Visits every rank's block: visit(owner, block) with `segments` row-major views of
/// count(owner) rows each. The own block comes first (the caller's views, not copied), then the
/// blocks of rank - 1, rank - 2, ..., received from the previous rank.
template <class T, class Comm, class Visit>
void ring_visit(const Comm& comm, const shard_layout& l, const matrix_view<const T>* local,
                int segments, index_t d, Visit&& visit) {
  visit(l.rank, local);
  if (l.size == 1) return;
  const std::size_t ns = cd::uz(segments);
  const std::size_t block = static_cast<std::size_t>(l.max_count()) * static_cast<std::size_t>(d);
  std::unique_ptr<T[]> buf[2] = {std::unique_ptr<T[]>(new T[ns * block + 1]),
                                 std::unique_ptr<T[]>(new T[ns * block + 1])};
  const std::size_t own = static_cast<std::size_t>(l.local()) * static_cast<std::size_t>(d);
  for (std::size_t s = 0; s < ns; ++s) pack_rows(local[s], buf[0].get() + s * own);
  std::vector<matrix_view<const T>> views(ns);
  int cur = 0;
  for (int t = 1; t < l.size; ++t) {
    const int from = l.owner_at(t - 1), to = l.owner_at(t);
    const std::size_t nf = static_cast<std::size_t>(l.count(from)) * static_cast<std::size_t>(d);
    const std::size_t nt = static_cast<std::size_t>(l.count(to)) * static_cast<std::size_t>(d);
    comm.ring_shift(buf[cur].get(), ns * nf, buf[1 - cur].get(), ns * nt);
    cur = 1 - cur;
    for (std::size_t s = 0; s < ns; ++s)
      views[s] = matrix_view<const T>(buf[cur].get() + s * nt, l.count(to), d, d, 1);
    visit(to, views.data());
  }
}

/// The backward ring: visit(owner, block, grad) adds the block's gradient contributions into
/// `grad` (row-major views like the block). For the own block, grad is `local_grad` itself; a
/// remote block travels with an accumulator (zero when it leaves its owner) that returns to the
/// owner after a full turn and is added into local_grad.
template <class T, class Comm, class Visit>
void ring_visit_accumulate(const Comm& comm, const shard_layout& l,
                           const matrix_view<const T>* local, const matrix_view<T>* local_grad,
                           int segments, index_t d, Visit&& visit) {
  visit(l.rank, local, local_grad);
  if (l.size == 1) return;
  const std::size_t block = static_cast<std::size_t>(l.max_count()) * static_cast<std::size_t>(d);
  // A message is [block segments | accumulator segments], 2 x segments x count x d values.
  const std::size_t ns = cd::uz(segments);
  std::unique_ptr<T[]> buf[2] = {std::unique_ptr<T[]>(new T[2 * ns * block + 1]),
                                 std::unique_ptr<T[]>(new T[2 * ns * block + 1])};
  const std::size_t own = static_cast<std::size_t>(l.local()) * static_cast<std::size_t>(d);
  for (std::size_t s = 0; s < ns; ++s) pack_rows(local[s], buf[0].get() + s * own);
  std::fill(buf[0].get() + ns * own, buf[0].get() + 2 * ns * own, T(0));
  std::vector<matrix_view<const T>> views(ns);
  std::vector<matrix_view<T>> grads(ns);
  int cur = 0;
  for (int t = 1; t < l.size; ++t) {
    const int from = l.owner_at(t - 1), to = l.owner_at(t);
    const std::size_t nf = static_cast<std::size_t>(l.count(from)) * static_cast<std::size_t>(d);
    const std::size_t nt = static_cast<std::size_t>(l.count(to)) * static_cast<std::size_t>(d);
    comm.ring_shift(buf[cur].get(), 2 * ns * nf, buf[1 - cur].get(), 2 * ns * nt);
    cur = 1 - cur;
    for (std::size_t s = 0; s < ns; ++s) {
      views[s] = matrix_view<const T>(buf[cur].get() + s * nt, l.count(to), d, d, 1);
      grads[s] = matrix_view<T>(buf[cur].get() + (ns + s) * nt, l.count(to), d, d, 1);
    }
    visit(to, views.data(), grads.data());
  }
  // Home: the block held now belongs to rank + 1; send its accumulator there, receive ours.
  const int held = l.owner_at(l.size - 1);
  const std::size_t nh = static_cast<std::size_t>(l.count(held)) * static_cast<std::size_t>(d);
  comm.ring_shift(buf[cur].get() + ns * nh, ns * nh, buf[1 - cur].get(), ns * own);
  const T* back = buf[1 - cur].get();
  for (std::size_t s = 0; s < ns; ++s) {
    const matrix_view<T>& g = local_grad[s];
    for (index_t i = 0; i < g.rows(); ++i)
      for (index_t k = 0; k < d; ++k)
        g(i, k) += back[s * own + static_cast<std::size_t>(i * d + k)];
  }
}

}  // namespace detail
}  // namespace distributed
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_DISTRIBUTED_RING_HPP
