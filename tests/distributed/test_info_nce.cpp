#include "support/test_config.hpp"

#include <mpi.h>

#include <string>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/distributed/info_nce.hpp>
#include <contrastive/distributed/mpi.hpp>

#include "distributed/distributed_support.hpp"

using namespace dtest;
using Catch::Matchers::Contains;
using contrastive::info_nce_options;
using contrastive::loss_reduction;

namespace {

struct config {
  const char* name;
  bool symmetric;
  loss_reduction reduction;
  double eps;
  bool labelled;
  double temperature;
};

const config configs[] = {
    {"clip", true, loss_reduction::mean, 0.0, false, 0.1},
    {"one direction", false, loss_reduction::mean, 0.0, false, 0.2},
    {"clip, sum", true, loss_reduction::sum, 0.0, false, 0.5},
    {"clip, smoothing", true, loss_reduction::mean, 0.1, false, 0.1},
    {"clip, labels", true, loss_reduction::mean, 0.0, true, 0.1},
    {"one direction, labels, smoothing, sum", false, loss_reduction::sum, 0.2, true, 0.3},
};

}  // namespace

TEMPLATE_TEST_CASE("distributed::info_nce equals one process on the concatenated batch",
                   "[dist][info_nce]", float, double) {
  using T = TestType;
  const contrastive::distributed::mpi_communicator comm;
  const int p = comm.size(), r = comm.rank();
  const Index n = 29, d = 6;
  const rmat<T> A = unit_rows<T>(n, d, 7), B = unit_rows<T>(n, d, 8);
  const auto ya = labels(n, 6), yb = labels(n, 7, 3);  // some anchors have no positive
  for (const config& c : configs) {
    info_nce_options o;
    o.symmetric = c.symmetric;
    o.reduction = c.reduction;
    o.label_smoothing = c.eps;
    o.temperature = c.temperature;
    o.tile_rows = 4;
    o.tile_cols = 5;
    if (c.labelled) {
      o.labels_a = ya;
      o.labels_b = yb;
    }
    rmat<T> GA(n, d), GB(n, d);
    contrastive::temperature_gradient tg;
    const double L = contrastive::info_nce_forward_backward(A, B, GA, GB, o, &tg);
    for (shard s : {shard::even, shard::uneven, shard::empty_rank}) {
      INFO(c.name << ", " << name(s) << " shards, " << p << " ranks, rank " << r);
      const auto cnt = shard_counts(p, n, s);
      const rmat<T> a = rows_of(A, cnt, r), b = rows_of(B, cnt, r);
      const auto la = slice(ya, cnt, r), lb = slice(yb, cnt, r);
      info_nce_options lo = o;
      if (c.labelled) {
        lo.labels_a = la;
        lo.labels_b = lb;
      }
      rmat<T> ga(a.rows(), d), gb(b.rows(), d);
      contrastive::temperature_gradient dtg;
      const double l =
          contrastive::distributed::info_nce_forward_backward(comm, a, b, ga, gb, lo, &dtg);
      CHECK(rel(l, L) <= tolerance<T>());
      CHECK(rel(dtg.log_scale, tg.log_scale) <= tolerance<T>() * 10);
      CHECK(rel_rows(ga, GA, cnt, r) <= tolerance<T>());
      CHECK(rel_rows(gb, GB, cnt, r) <= tolerance<T>());
    }
  }
}

TEST_CASE("distributed::info_nce: two passes, upstream, accumulate, column-major input",
          "[dist][info_nce]") {
  using T = double;
  const contrastive::distributed::mpi_communicator comm;
  const int p = comm.size(), r = comm.rank();
  const Index n = 41, d = 9;
  const rmat<T> A = unit_rows<T>(n, d, 17), B = unit_rows<T>(n, d, 18);
  info_nce_options o;
  o.tile_rows = 8;
  o.tile_cols = 3;
  o.accumulate = true;
  rmat<T> GA = rmat<T>::Constant(n, d, 0.25), GB = rmat<T>::Constant(n, d, -0.5);
  const auto saved = contrastive::info_nce_forward(A, B, o);
  const auto tg = contrastive::info_nce_backward(A, B, saved, GA, GB, o, 0.7);

  const auto cnt = shard_counts(p, n, shard::uneven);
  const Eigen::MatrixXd a = rows_of(A, cnt, r);  // column-major: packed inside
  const rmat<T> b = rows_of(B, cnt, r);
  rmat<T> ga = rmat<T>::Constant(a.rows(), d, 0.25), gb = rmat<T>::Constant(b.rows(), d, -0.5);
  const auto ds = contrastive::distributed::info_nce_forward(comm, a, b, o);
  const auto dtg = contrastive::distributed::info_nce_backward(comm, a, b, ds, ga, gb, o, 0.7);
  CHECK(ds.n_global == n);
  CHECK(rel(ds.loss, saved.loss) <= 1e-12);
  CHECK(rel(dtg.temperature, tg.temperature) <= 1e-11);
  CHECK(rel_rows(ga, GA, cnt, r) <= 1e-12);
  CHECK(rel_rows(gb, GB, cnt, r) <= 1e-12);
}

TEST_CASE("distributed::info_nce: every rank throws the same error, none hangs",
          "[dist][info_nce][errors]") {
  const contrastive::distributed::mpi_communicator comm;
  const int p = comm.size(), r = comm.rank();
  const Index n = 12, d = 4;
  const auto cnt = shard_counts(p, n, shard::even);
  const rmat<double> a = rows_of(unit_rows<double>(n, d, 1), cnt, r);
  const rmat<double> b = rows_of(unit_rows<double>(n, d, 2), cnt, r);
  info_nce_options o;

  SECTION("D differs on the last rank") {
    if (p > 1) {
      const Index dr = r == p - 1 ? d + 1 : d;
      const rmat<double> a2 = rmat<double>::Ones(cnt[r], dr), b2 = rmat<double>::Ones(cnt[r], dr);
      const std::string e =
          error_of([&] { contrastive::distributed::info_nce_forward(comm, a2, b2, o); });
      CHECK_THAT(e, Contains("differs across ranks") && Contains("D (the columns of 'a')"));
      CHECK(same_on_all_ranks(e));
    }
  }
  SECTION("temperature differs on the last rank") {
    if (p > 1) {
      info_nce_options o2 = o;
      if (r == p - 1) o2.temperature = 0.5;
      const std::string e =
          error_of([&] { contrastive::distributed::info_nce_forward(comm, a, b, o2); });
      CHECK_THAT(e, Contains("'temperature' differs across ranks"));
      CHECK(same_on_all_ranks(e));
    }
  }
  SECTION("a local error on the last rank only: NaN input") {
    rmat<double> a2 = a;
    if (r == p - 1) a2(0, 1) = std::nan("");
    const std::string e =
        error_of([&] { contrastive::distributed::info_nce_forward(comm, a2, b, o); });
    CHECK_THAT(e, Contains("distributed::info_nce_forward: 'a' has a non-finite value") &&
                      Contains("on rank " + std::to_string(p - 1)));
    CHECK(same_on_all_ranks(e));
  }
  SECTION("local shape error on rank 0 only: b has other rows") {
    const rmat<double> b2 = r == 0 ? rmat<double>(rmat<double>::Ones(cnt[r] + 1, d)) : b;
    const std::string e =
        error_of([&] { contrastive::distributed::info_nce_forward(comm, a, b2, o); });
    CHECK_THAT(e, Contains("'b' has") && Contains("on rank 0"));
    CHECK(same_on_all_ranks(e));
  }
  SECTION("backward: wrong gradient shape on the last rank") {
    const auto saved = contrastive::distributed::info_nce_forward(comm, a, b, o);
    rmat<double> ga(a.rows(), d), gb(r == p - 1 ? b.rows() + 1 : b.rows(), d);
    const std::string e = error_of(
        [&] { contrastive::distributed::info_nce_backward(comm, a, b, saved, ga, gb, o); });
    CHECK_THAT(e, Contains("distributed::info_nce_backward: 'grad_b' is"));
    CHECK(same_on_all_ranks(e));
  }
  SECTION("upstream differs") {
    if (p > 1) {
      const auto saved = contrastive::distributed::info_nce_forward(comm, a, b, o);
      rmat<double> ga(a.rows(), d), gb(b.rows(), d);
      const std::string e = error_of([&] {
        contrastive::distributed::info_nce_backward(comm, a, b, saved, ga, gb, o,
                                                    r == 0 ? 1.0 : 2.0);
      });
      CHECK_THAT(e, Contains("'upstream' differs across ranks"));
      CHECK(same_on_all_ranks(e));
    }
  }
  SECTION("labels on some ranks only") {
    if (p > 1) {
      const auto y = labels(cnt[r], 3);
      info_nce_options o2 = o;
      if (r == 0) {
        o2.labels_a = y;
        o2.labels_b = y;
      }
      const std::string e =
          error_of([&] { contrastive::distributed::info_nce_forward(comm, a, b, o2); });
      CHECK_THAT(e, Contains("labels are given on rank 0 but not on rank 1"));
      CHECK(same_on_all_ranks(e));
    }
  }
  SECTION("cached mode is refused") {
    info_nce_options o2 = o;
    o2.cache_logits = true;
    const std::string e =
        error_of([&] { contrastive::distributed::info_nce_forward(comm, a, b, o2); });
    CHECK_THAT(e, Contains("'cache_logits' is not supported"));
    CHECK(same_on_all_ranks(e));
  }
  SECTION("an empty global batch") {
    const rmat<double> e0(0, d);
    const std::string e =
        error_of([&] { contrastive::distributed::info_nce_forward(comm, e0, e0, o); });
    CHECK_THAT(e, Contains("empty global batch"));
  }
  // Still in step afterwards: a collective that every rank reaches.
  const auto saved = contrastive::distributed::info_nce_forward(comm, a, b, o);
  CHECK(saved.n_global == n);
}
