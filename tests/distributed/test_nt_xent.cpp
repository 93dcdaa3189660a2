#include "support/test_config.hpp"

#include <string>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/distributed/mpi.hpp>
#include <contrastive/distributed/nt_xent.hpp>

#include "distributed/distributed_support.hpp"

using namespace dtest;
using Catch::Matchers::Contains;
using contrastive::loss_reduction;
using contrastive::nt_xent_options;

TEMPLATE_TEST_CASE("distributed::nt_xent equals one process on the concatenated batch",
                   "[dist][nt_xent]", float, double) {
  using T = TestType;
  const contrastive::distributed::mpi_communicator comm;
  const int p = comm.size(), r = comm.rank();
  const Index n = 23, d = 5;
  const rmat<T> A = unit_rows<T>(n, d, 31), B = unit_rows<T>(n, d, 32);
  const auto y = labels(n, 5);
  struct config {
    const char* name;
    loss_reduction reduction;
    double eps;
    bool labelled;
  };
  for (const config& c : {config{"plain", loss_reduction::mean, 0.0, false},
                          config{"sum, smoothing", loss_reduction::sum, 0.15, false},
                          config{"labels", loss_reduction::mean, 0.0, true},
                          config{"labels, smoothing", loss_reduction::mean, 0.1, true}}) {
    nt_xent_options o;
    o.temperature = 0.2;
    o.reduction = c.reduction;
    o.label_smoothing = c.eps;
    o.tile_rows = 4;
    o.tile_cols = 6;
    if (c.labelled) o.labels = y;
    rmat<T> GA(n, d), GB(n, d);
    contrastive::temperature_gradient tg;
    const double L = contrastive::nt_xent_forward_backward(A, B, GA, GB, o, &tg);
    for (shard s : {shard::even, shard::uneven, shard::empty_rank}) {
      INFO(c.name << ", " << name(s) << " shards, " << p << " ranks, rank " << r);
      const auto cnt = shard_counts(p, n, s);
      const rmat<T> a = rows_of(A, cnt, r), b = rows_of(B, cnt, r);
      const auto yl = slice(y, cnt, r);
      nt_xent_options lo = o;
      if (c.labelled) lo.labels = yl;
      rmat<T> ga(a.rows(), d), gb(b.rows(), d);
      contrastive::temperature_gradient dtg;
      const double l =
          contrastive::distributed::nt_xent_forward_backward(comm, a, b, ga, gb, lo, &dtg);
      CHECK(rel(l, L) <= tolerance<T>());
      CHECK(rel(dtg.log_scale, tg.log_scale) <= tolerance<T>() * 10);
      CHECK(rel_rows(ga, GA, cnt, r) <= tolerance<T>());
      CHECK(rel_rows(gb, GB, cnt, r) <= tolerance<T>());
    }
  }
}

TEST_CASE("distributed::nt_xent: two passes with upstream and accumulate", "[dist][nt_xent]") {
  const contrastive::distributed::mpi_communicator comm;
  const int p = comm.size(), r = comm.rank();
  const Index n = 37, d = 8;
  const rmat<double> A = unit_rows<double>(n, d, 41), B = unit_rows<double>(n, d, 42);
  nt_xent_options o;
  o.tile_rows = 5;
  o.accumulate = true;
  rmat<double> GA = rmat<double>::Constant(n, d, 1.0), GB = rmat<double>::Constant(n, d, 2.0);
  const auto saved = contrastive::nt_xent_forward(A, B, o);
  contrastive::nt_xent_backward(A, B, saved, GA, GB, o, -1.5);
  const auto cnt = shard_counts(p, n, shard::empty_rank);
  const rmat<double> a = rows_of(A, cnt, r), b = rows_of(B, cnt, r);
  rmat<double> ga = rmat<double>::Constant(a.rows(), d, 1.0),
               gb = rmat<double>::Constant(b.rows(), d, 2.0);
  const auto ds = contrastive::distributed::nt_xent_forward(comm, a, b, o);
  contrastive::distributed::nt_xent_backward(comm, a, b, ds, ga, gb, o, -1.5);
  CHECK(rel(ds.loss, saved.loss) <= 1e-12);
  CHECK(rel_rows(ga, GA, cnt, r) <= 1e-12);
  CHECK(rel_rows(gb, GB, cnt, r) <= 1e-12);
}

TEST_CASE("distributed::nt_xent: every rank throws the same error", "[dist][nt_xent][errors]") {
  const contrastive::distributed::mpi_communicator comm;
  const int p = comm.size(), r = comm.rank();
  const Index n = 10, d = 3;
  const auto cnt = shard_counts(p, n, shard::even);
  const rmat<double> a = rows_of(unit_rows<double>(n, d, 1), cnt, r);
  const rmat<double> b = rows_of(unit_rows<double>(n, d, 2), cnt, r);
  nt_xent_options o;
  SECTION("D differs on the last rank") {
    if (p > 1) {
      const Index dr = r == p - 1 ? d + 2 : d;
      const rmat<double> a2 = rmat<double>::Ones(cnt[r], dr);
      const std::string e =
          error_of([&] { contrastive::distributed::nt_xent_forward(comm, a2, a2, o); });
      CHECK_THAT(
          e, Contains("distributed::nt_xent_forward: D (the columns of 'a') differs across ranks"));
      CHECK(same_on_all_ranks(e));
    }
  }
  SECTION("label count wrong on the last rank") {
    const auto y = labels(r == p - 1 ? cnt[r] + 1 : cnt[r], 3);
    nt_xent_options o2 = o;
    o2.labels = y;
    const std::string e =
        error_of([&] { contrastive::distributed::nt_xent_forward(comm, a, b, o2); });
    CHECK_THAT(e, Contains("'labels' has") && Contains("on rank " + std::to_string(p - 1)));
    CHECK(same_on_all_ranks(e));
  }
  SECTION("smoothing differs") {
    if (p > 1) {
      nt_xent_options o2 = o;
      o2.label_smoothing = r == 1 ? 0.1 : 0.0;
      const std::string e =
          error_of([&] { contrastive::distributed::nt_xent_forward(comm, a, b, o2); });
      CHECK_THAT(e, Contains("'label_smoothing' differs across ranks (rank 0: 0, rank 1: 0.1"));
      CHECK(same_on_all_ranks(e));
    }
  }
  const auto saved = contrastive::distributed::nt_xent_forward(comm, a, b, o);
  CHECK(saved.n_global == n);
}
