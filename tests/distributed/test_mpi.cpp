#include "support/test_config.hpp"

#include <cstdint>
#include <vector>

#include <contrastive/distributed/mpi.hpp>

#include "distributed/distributed_support.hpp"

static_assert(
    contrastive::distributed::is_communicator<contrastive::distributed::mpi_communicator>::value,
    "");
static_assert(!contrastive::distributed::is_communicator<int>::value, "");

TEMPLATE_TEST_CASE("mpi_communicator: collectives", "[dist][mpi]", char, std::int64_t, float,
                   double) {
  using T = TestType;
  const contrastive::distributed::mpi_communicator comm;
  const int p = comm.size(), r = comm.rank();
  CHECK(comm.get() == MPI_COMM_WORLD);

  std::vector<T> v = {T(r + 1), T(2 * r), T(5 - r)};
  std::vector<T> mx = v, mn = v;
  comm.all_reduce(v.data(), v.size(), contrastive::distributed::reduce_op::sum);
  comm.all_reduce(mx.data(), mx.size(), contrastive::distributed::reduce_op::max);
  comm.all_reduce(mn.data(), mn.size(), contrastive::distributed::reduce_op::min);
  CHECK(v[0] == T(p * (p + 1) / 2));
  CHECK(v[1] == T(p * (p - 1)));
  CHECK(mx[0] == T(p));
  CHECK(mn[2] == T(5 - (p - 1)));

  const T mine[2] = {T(r), T(r + 10)};
  std::vector<T> all(2 * static_cast<std::size_t>(p));
  comm.all_gather(mine, 2, all.data());
  for (int k = 0; k < p; ++k) {
    CHECK(all[2 * k] == T(k));
    CHECK(all[2 * k + 1] == T(k + 10));
  }

  // Rank k sends k values (rank 0 none).
  std::vector<std::size_t> counts;
  std::size_t total = 0;
  for (int k = 0; k < p; ++k) {
    counts.push_back(static_cast<std::size_t>(k));
    total += static_cast<std::size_t>(k);
  }
  std::vector<T> send(static_cast<std::size_t>(r), T(r)), got(total + 1);
  comm.all_gather_v(send.data(), send.size(), got.data(), counts.data());
  std::size_t at = 0;
  for (int k = 0; k < p; ++k)
    for (int i = 0; i < k; ++i) CHECK(got[at++] == T(k));

  // Ring: rank k sends k + 1 values of k to rank k + 1.
  const int prev = (r - 1 + p) % p;
  std::vector<T> out(static_cast<std::size_t>(r + 1), T(r)), in(static_cast<std::size_t>(prev + 1));
  comm.ring_shift(out.data(), out.size(), in.data(), in.size());
  for (const T& x : in) CHECK(x == T(prev));
}
