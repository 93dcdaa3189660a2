#include "support/test_config.hpp"

#include <string>
#include <vector>

#include <contrastive/distributed/mpi.hpp>
#include <contrastive/distributed/ring.hpp>

#include "distributed/distributed_support.hpp"

using namespace dtest;
namespace dd = contrastive::distributed::detail;
using Catch::Matchers::Contains;

TEST_CASE("dist ring: layout, visiting order and accumulators", "[dist][ring]") {
  const contrastive::distributed::mpi_communicator comm;
  const int p = comm.size(), r = comm.rank();
  const Index d = 3;
  const Index mine = r % 2 == 0 ? r + 2 : 0;  // uneven, some ranks empty
  const dd::shard_layout l = dd::make_layout(comm, mine);
  CHECK(l.local() == mine);
  Index total = 0;
  for (int k = 0; k < p; ++k) total += (k % 2 == 0 ? k + 2 : 0);
  CHECK(l.total() == total);
  CHECK(l.owner_at(0) == r);

  // Row i of rank k's block holds value 1000 k + i in every column.
  rmat<double> x(mine, d);
  for (Index i = 0; i < mine; ++i) x.row(i).setConstant(1000.0 * r + double(i));
  const contrastive::matrix_view<const double> v(x.data(), mine, d);
  std::vector<int> seen;
  bool contents_ok = true;
  dd::ring_visit<double>(
      comm, l, &v, 1, d, [&](int owner, const contrastive::matrix_view<const double>* blk) {
        seen.push_back(owner);
        if (blk[0].rows() != l.count(owner)) contents_ok = false;
        for (Index i = 0; i < blk[0].rows(); ++i)
          for (Index k = 0; k < d; ++k)
            contents_ok = contents_ok && blk[0](i, k) == 1000.0 * owner + double(i);
      });
  CHECK(contents_ok);
  REQUIRE(seen.size() == static_cast<std::size_t>(p));  // no collective follows in this case
  for (int t = 0; t < p; ++t) CHECK(seen[t] == (r - t + p) % p);

  // Every rank adds (rank + 1) to each gradient row of every block: each row gets sum_k (k + 1).
  rmat<double> g = rmat<double>::Zero(mine, d);
  const contrastive::matrix_view<double> gv(g.data(), mine, d);
  dd::ring_visit_accumulate<double>(comm, l, &v, &gv, 1, d,
                                    [&](int, const contrastive::matrix_view<const double>*,
                                        const contrastive::matrix_view<double>* acc) {
                                      for (Index i = 0; i < acc[0].rows(); ++i)
                                        for (Index k = 0; k < d; ++k) acc[0](i, k) += double(r + 1);
                                    });
  const double expect = double(p) * double(p + 1) / 2;
  CHECK((mine == 0 || (g.array() == expect).all()));
}

TEST_CASE("dist ring: agreement on values, flags and local errors", "[dist][ring]") {
  const contrastive::distributed::mpi_communicator comm;
  const int p = comm.size(), r = comm.rank();
  CHECK_NOTHROW(dd::agree_values(comm, "f", {{"x", 1.5}, {"nan", std::nan("")}}));
  CHECK_NOTHROW(dd::agree_checks(comm, [] {}));
  CHECK(dd::agree_flag(comm, "f", "labels", true, true));
  CHECK(dd::agree_flag(comm, "f", "labels", r == 0, r == 0));  // only rank 0 has rows
  double s[2] = {double(r), 1.0};
  dd::sum_in_rank_order(comm, s, 2);
  CHECK(s[0] == double(p) * double(p - 1) / 2);
  CHECK(s[1] == double(p));
  if (p > 1) {
    const std::string e = error_of([&] {
      dd::agree_values(comm, "f", {{"'x'", 1.0}, {"'y'", double(r)}});
    });
    CHECK_THAT(e, Contains("f: 'y' differs across ranks (rank 0: 0, rank 1: 1)"));
    CHECK(same_on_all_ranks(e));
    const std::string e2 = error_of(
        [&] { dd::agree_checks(comm, [&] { CONTRASTIVE_CHECK(r == 0, "g: bad on rank ", r); }); });
    CHECK_THAT(e2, Contains("g: bad on rank 1 (on rank 1 of " + std::to_string(p) +
                            (p > 2 ? ", and on 1 more rank(s))" : ")")));
    CHECK(same_on_all_ranks(e2));
  }
}
