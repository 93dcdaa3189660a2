#ifndef CONTRASTIVE_DISTRIBUTED_MPI_HPP
#define CONTRASTIVE_DISTRIBUTED_MPI_HPP

// The communicator of contrastive/distributed/communicator.hpp on MPI. Include it only where MPI is
// wanted (link MPI::MPI_CXX); the rest of the library never includes <mpi.h>.
//
//   MPI_Init(&argc, &argv);                       // the application owns MPI's lifetime
//   contrastive::distributed::mpi_communicator comm;      // MPI_COMM_WORLD, or any MPI_Comm
//   float loss = contrastive::distributed::info_nce_forward_backward(comm, a, b, ga, gb, opt);
//   MPI_Finalize();
//
// The handle neither duplicates nor frees the MPI_Comm: it must stay valid while in use. Calls
// are made from one thread at a time (MPI_THREAD_SINGLE or FUNNELED is enough). MPI errors go to
// the communicator's error handler (MPI_ERRORS_ARE_FATAL by default: the job aborts); with
// MPI_ERRORS_RETURN, a failing call throws std::runtime_error. MPI counts are int: a single
// message of more than INT_MAX elements throws std::length_error before any rank sends.

#include <mpi.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "contrastive/core/config.hpp"
#include "contrastive/distributed/communicator.hpp"

CONTRASTIVE_NAMESPACE_BEGIN
namespace distributed {

namespace detail {

template <class T>
struct mpi_type;
template <>
struct mpi_type<char> {
  static MPI_Datatype get() noexcept { return MPI_CHAR; }
};
template <>
struct mpi_type<std::int64_t> {
  static MPI_Datatype get() noexcept { return MPI_INT64_T; }
};
template <>
struct mpi_type<float> {
  static MPI_Datatype get() noexcept { return MPI_FLOAT; }
};
template <>
struct mpi_type<double> {
  static MPI_Datatype get() noexcept { return MPI_DOUBLE; }
};

inline void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw std::runtime_error(std::string("contrastive::distributed::mpi_communicator: ") + what +
                           " failed: " + std::string(text, static_cast<std::size_t>(len)));
}

inline int mpi_count(std::size_t n, const char* what) {
  if (n > static_cast<std::size_t>(INT_MAX))
    throw std::length_error(std::string("contrastive::distributed::mpi_communicator: ") + what +
                            " of " + std::to_string(n) +
                            " elements exceeds MPI's int count (INT_MAX)");
  return static_cast<int>(n);
}

}  // namespace detail

/// A communicator on an MPI_Comm (MPI_COMM_WORLD by default). MPI must be initialised first.
class mpi_communicator {
 public:
  explicit mpi_communicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised)
      throw std::logic_error(
          "contrastive::distributed::mpi_communicator: MPI is not initialised (call "
          "MPI_Init first; the communicator does not own MPI's lifetime)");
    detail::mpi_check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    detail::mpi_check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  MPI_Comm get() const noexcept { return comm_; }

  template <class T>
  void all_reduce(T* data, std::size_t count, reduce_op op) const {
    if (count == 0) return;  // every rank passes the same count
    const MPI_Op mop = op == reduce_op::sum ? MPI_SUM : op == reduce_op::max ? MPI_MAX : MPI_MIN;
    detail::mpi_check(MPI_Allreduce(MPI_IN_PLACE, data, detail::mpi_count(count, "all_reduce"),
                                    detail::mpi_type<T>::get(), mop, comm_),
                      "MPI_Allreduce");
  }

  template <class T>
  void all_gather(const T* send, std::size_t count, T* recv) const {
    const int c = detail::mpi_count(count, "all_gather");
    detail::mpi_count(count * static_cast<std::size_t>(size_), "all_gather (total)");
    detail::mpi_check(MPI_Allgather(send, c, detail::mpi_type<T>::get(), recv, c,
                                    detail::mpi_type<T>::get(), comm_),
                      "MPI_Allgather");
  }

  template <class T>
  void all_gather_v(const T* send, std::size_t count, T* recv, const std::size_t* counts) const {
    std::vector<int> cs(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_));
    std::size_t total = 0;
    for (int k = 0; k < size_; ++k) {
      cs[static_cast<std::size_t>(k)] = detail::mpi_count(counts[k], "all_gather_v");
      displs[static_cast<std::size_t>(k)] = detail::mpi_count(total, "all_gather_v (offset)");
      total += counts[k];
    }
    detail::mpi_check(
        MPI_Allgatherv(send, detail::mpi_count(count, "all_gather_v"), detail::mpi_type<T>::get(),
                       recv, cs.data(), displs.data(), detail::mpi_type<T>::get(), comm_),
        "MPI_Allgatherv");
  }

  template <class T>
  void ring_shift(const T* send, std::size_t send_count, T* recv, std::size_t recv_count) const {
    const int next = (rank_ + 1) % size_, prev = (rank_ - 1 + size_) % size_;
    detail::mpi_check(
        MPI_Sendrecv(send, detail::mpi_count(send_count, "ring_shift"), detail::mpi_type<T>::get(),
                     next, ring_tag, recv, detail::mpi_count(recv_count, "ring_shift"),
                     detail::mpi_type<T>::get(), prev, ring_tag, comm_, MPI_STATUS_IGNORE),
        "MPI_Sendrecv");
  }

 private:
  static constexpr int ring_tag = 0x6374;  // "ct"
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

static_assert(is_communicator<mpi_communicator>::value, "mpi_communicator models the concept");

}  // namespace distributed
CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_DISTRIBUTED_MPI_HPP
