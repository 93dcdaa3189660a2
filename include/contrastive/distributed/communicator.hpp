#ifndef CONTRASTIVE_DISTRIBUTED_COMMUNICATOR_HPP
#define CONTRASTIVE_DISTRIBUTED_COMMUNICATOR_HPP

// The few collectives the distributed losses (contrastive/distributed/) need, as a duck-typed concept,
// so that MPI (contrastive/distributed/mpi.hpp), NCCL or any other engine can carry them.
//
// A communicator `C` is a copyable handle (it does not own the processes) with, for every
// element type T in {char, std::int64_t, float, double}:
//
//   int rank() const;                      this process, in [0, size())
//   int size() const;                      number of processes (>= 1)
//   void all_reduce(T* data, std::size_t count, reduce_op op) const;
//        in place, element-wise sum / max / min over all ranks; every rank gets the result
//   void all_gather(const T* send, std::size_t count, T* recv) const;
//        recv (size() * count) = the `count` values of rank 0, then of rank 1, ...
//   void all_gather_v(const T* send, std::size_t count, T* recv, const std::size_t* counts) const;
//        as all_gather, with counts[k] values from rank k (counts[rank()] == count, the same
//        `counts` array on every rank); recv holds sum(counts) values in rank order
//   void ring_shift(const T* send, std::size_t send_count, T* recv, std::size_t recv_count) const;
//        sends `send` to rank (rank() + 1) % size() and receives recv_count values from rank
//        (rank() - 1 + size()) % size(); send and recv do not overlap. The caller always knows
//        recv_count (the losses all-gather the shard sizes first).
//
// Every rank calls every collective in the same order with matching sizes (as in MPI). All
// calls are blocking. Errors inside the engine are the engine's business (MPI's default handler
// aborts the job); the losses never throw between collectives on one rank only: each argument
// check that can differ between ranks is agreed first (see distributed/ring.hpp), so every rank throws
// the same contrastive::invalid_argument, and no rank is left waiting in a collective.
//
// An NCCL communicator would implement the same members on device pointers (all_reduce ->
// ncclAllReduce, all_gather -> ncclAllGather, all_gather_v -> grouped ncclBroadcast or padded
// ncclAllGather, ring_shift -> ncclSend/ncclRecv in a ncclGroupStart/End pair).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "contrastive/core/config.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace distributed {

/// Element-wise reductions of all_reduce.
enum class reduce_op { sum, max, min };

/// The one-process communicator: every collective is a copy (or nothing). It makes the
/// distributed code paths testable and usable without MPI; with it, every distributed:: call equals
/// the single-process call on the same batch.
class self_communicator {
 public:
  int rank() const noexcept { return 0; }
  int size() const noexcept { return 1; }

  template <class T>
  void all_reduce(T*, std::size_t, reduce_op) const noexcept {}

  template <class T>
  void all_gather(const T* send, std::size_t count, T* recv) const {
    copy(send, count, recv);
  }

  template <class T>
  void all_gather_v(const T* send, std::size_t count, T* recv, const std::size_t*) const {
    copy(send, count, recv);
  }

  template <class T>
  void ring_shift(const T* send, std::size_t send_count, T* recv, std::size_t) const {
    copy(send, send_count, recv);
  }

 private:
  template <class T>
  static void copy(const T* from, std::size_t n, T* to) {
    if (n > 0) std::copy(from, from + n, to);
  }
};

namespace detail {

template <class C, class T, class = void>
struct has_collectives_for : std::false_type {};

template <class C, class T>
struct has_collectives_for<
    C, T,
    std::void_t<decltype(std::declval<const C&>().all_reduce(std::declval<T*>(), std::size_t{},
                                                             reduce_op::sum)),
                decltype(std::declval<const C&>().all_gather(std::declval<const T*>(),
                                                             std::size_t{}, std::declval<T*>())),
                decltype(std::declval<const C&>().all_gather_v(std::declval<const T*>(),
                                                               std::size_t{}, std::declval<T*>(),
                                                               std::declval<const std::size_t*>())),
                decltype(std::declval<const C&>().ring_shift(
                    std::declval<const T*>(), std::size_t{}, std::declval<T*>(), std::size_t{}))>>
    : std::true_type {};

template <class C, class = void>
struct has_rank_size : std::false_type {};

template <class C>
struct has_rank_size<
    C,
    std::enable_if_t<std::is_convertible<decltype(std::declval<const C&>().rank()), int>::value &&
                     std::is_convertible<decltype(std::declval<const C&>().size()), int>::value>>
    : std::true_type {};

}  // namespace detail

/// True when C models the communicator concept above (checked by every distributed:: entry point).
template <class C>
struct is_communicator
    : std::integral_constant<bool, detail::has_rank_size<C>::value &&
                                       detail::has_collectives_for<C, char>::value &&
                                       detail::has_collectives_for<C, std::int64_t>::value &&
                                       detail::has_collectives_for<C, float>::value &&
                                       detail::has_collectives_for<C, double>::value> {};

template <class C>
constexpr bool is_communicator_v = is_communicator<C>::value;

}  // namespace distributed
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_DISTRIBUTED_COMMUNICATOR_HPP
