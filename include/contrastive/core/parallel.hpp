#ifndef CONTRASTIVE_CORE_PARALLEL_HPP
#define CONTRASTIVE_CORE_PARALLEL_HPP

// The one home of the library's CPU threading (OpenMP when the target is built with it, serial
// otherwise): how many threads a call gets and the loop that runs on them. Results never depend
// on the thread count: every caller splits its work into pieces fixed by the problem, not by the
// team, and merges them in a fixed order. Eigen-free.

#if defined(_OPENMP)
#  include <omp.h>
#endif

#include "contrastive/core/config.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

/// Work (multiply-adds, roughly) below which a loop runs on one thread: starting a team costs
/// more than it saves there (the results are the same either way).
constexpr double parallel_min_work = double(1 << 20);

/// Threads for a parallel loop: `requested` if > 0, else all OpenMP threads; always 1 without
/// OpenMP.
inline int resolve_threads(int requested) noexcept {
#if defined(_OPENMP)
  const int avail = omp_get_max_threads();
  return requested > 0 ? requested : (avail > 0 ? avail : 1);
#else
  (void)requested;
  return 1;
#endif
}

/// resolve_threads for a loop of about `work` multiply-adds: 1 below parallel_min_work.
inline int resolve_threads(int requested, double work) noexcept {
  return work < parallel_min_work ? 1 : resolve_threads(requested);
}

/// body(i, thread) for i in [0, count), on up to `threads` OpenMP threads (dynamic schedule);
/// `thread` in [0, threads) indexes per-thread scratch. The body must not throw; each i must
/// write disjoint memory. Inside, Eigen's GEMM is kept single-threaded (also for one thread),
/// so every product is computed the same way whatever the thread count.
template <class F>
void parallel_for(index_t count, int threads, F&& body) {
#if defined(_OPENMP)
  const int nt =
      threads < 1 ? 1 : (count < index_t(threads) ? (count > 0 ? int(count) : 1) : threads);
#  pragma omp parallel num_threads(nt)
  {
    omp_set_num_threads(1);
    const int tid = omp_get_thread_num();
#  pragma omp for schedule(dynamic, 1)
    for (index_t i = 0; i < count; ++i) body(i, tid);
  }
#else
  (void)threads;
  for (index_t i = 0; i < count; ++i) body(i, 0);
#endif
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_PARALLEL_HPP
