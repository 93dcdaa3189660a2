#include "support/test_config.hpp"

#include <cmath>
#include <string>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/distributed/gamma_nce.hpp>
#include <contrastive/distributed/mpi.hpp>

#include "distributed/distributed_support.hpp"

using namespace dtest;
using Catch::Matchers::Contains;
using contrastive::gamma_rate_source;
using contrastive::normalizer_state;

namespace {

/// Every visited entry of `mine` equals `ref`, and (when `all`) the visited sets are equal.
bool states_agree(const normalizer_state& mine, const normalizer_state& ref, bool all, double tol) {
  for (std::int64_t id = 0; id < ref.samples(); ++id)
    for (int dir = 0; dir < ref.directions(); ++dir) {
      if (mine.visited(id, dir)) {
        if (!ref.visited(id, dir)) return false;
        if (rel(mine.log_normalizer(id, dir), ref.log_normalizer(id, dir)) > tol &&
            std::abs(mine.log_normalizer(id, dir) - ref.log_normalizer(id, dir)) > tol)
          return false;
      } else if (all && ref.visited(id, dir)) {
        return false;
      }
    }
  return true;
}

}  // namespace

TEMPLATE_TEST_CASE("distributed::gamma_nce equals one process, state replicated or sharded",
                   "[dist][gamma_nce]", float, double) {
  using T = TestType;
  const contrastive::distributed::mpi_communicator comm;
  const int p = comm.size(), r = comm.rank();
  const Index n = 26, d = 6, samples = 200;
  for (auto mode : {contrastive::distributed::gamma_state_mode::replicated,
                    contrastive::distributed::gamma_state_mode::sharded}) {
    for (bool sym : {true, false}) {
      for (bool pin : {false, true}) {
        normalizer_state ref_state(samples, 2), state(samples, 2);
        for (std::uint32_t step = 0; step < 3; ++step) {
          // Each step draws other rows for the same ids, and the ids move: a fixed partition
          // (id -> rank) in sharded mode, any placement when replicated.
          const rmat<T> A = unit_rows<T>(n, d, 100 + step), B = unit_rows<T>(n, d, 200 + step);
          std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
          for (Index i = 0; i < n; ++i)
            ids[i] =
                7 * i + (mode == contrastive::distributed::gamma_state_mode::replicated ? step : 0);
          contrastive::distributed::gamma_nce_options o;
          o.state_mode = mode;
          o.symmetric = sym;
          o.positive_in_normaliser = pin;
          o.temperature = 0.25;
          o.alpha = 2;
          o.seed = 0x1234567890abcdefull;
          o.step = step;
          o.tile_rows = 4;
          o.tile_cols = 7;
          rmat<T> GA(n, d), GB(n, d);
          contrastive::temperature_gradient tg;
          const auto L = contrastive::gamma_nce_forward(A, B, ids, ref_state, o);
          tg = contrastive::gamma_nce_backward(A, B, L, GA, GB, o);
          const shard s = step == 1 ? shard::empty_rank : shard::uneven;
          const auto cnt = shard_counts(
              p, n,
              mode == contrastive::distributed::gamma_state_mode::sharded ? shard::uneven : s);
          INFO((mode == contrastive::distributed::gamma_state_mode::replicated ? "replicated"
                                                                               : "sharded")
               << ", symmetric " << sym << ", positive_in_normaliser " << pin << ", step " << step
               << ", rank " << r << " of " << p);
          const rmat<T> a = rows_of(A, cnt, r), b = rows_of(B, cnt, r);
          const auto li = slice(ids, cnt, r);
          rmat<T> ga(a.rows(), d), gb(b.rows(), d);
          contrastive::temperature_gradient dtg;
          const auto l = contrastive::distributed::gamma_nce_forward(comm, a, b, li, state, o);
          dtg = contrastive::distributed::gamma_nce_backward(comm, a, b, l, ga, gb, o);
          CHECK(rel(l.loss, L.loss) <= tolerance<T>());
          CHECK(rel(l.info_nce, L.info_nce) <= tolerance<T>());
          CHECK(rel(l.rate_loss, L.rate_loss) <= tolerance<T>() * 10);
          CHECK(rel(dtg.log_scale, tg.log_scale) <= tolerance<T>() * 10);
          CHECK(rel_rows(ga, GA, cnt, r) <= tolerance<T>());
          CHECK(rel_rows(gb, GB, cnt, r) <= tolerance<T>());
          for (Index i = 0; i < a.rows(); ++i)
            CHECK(l.row.r[i] == Approx(L.row.r[offset_of(cnt, r) + i]).epsilon(1e-5));
          const bool replicated = mode == contrastive::distributed::gamma_state_mode::replicated;
          CHECK(states_agree(state, ref_state, replicated,
                             std::is_same<T, float>::value ? 1e-5 : 1e-12));
        }
      }
    }
  }
}

TEST_CASE("distributed::gamma_nce: same-batch and exact rates, deterministic alpha, no state",
          "[dist][gamma_nce]") {
  const contrastive::distributed::mpi_communicator comm;
  const int p = comm.size(), r = comm.rank();
  const Index n = 19, d = 4;
  const rmat<double> A = unit_rows<double>(n, d, 5), B = unit_rows<double>(n, d, 6);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) ids[i] = 1000 - 3 * i;
  std::vector<double> za(static_cast<std::size_t>(n)), zb(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    za[i] = 0.3 * std::sin(double(i));
    zb[i] = 0.2 * std::cos(double(i));
  }
  for (auto src : {gamma_rate_source::same_batch, gamma_rate_source::exact}) {
    contrastive::distributed::gamma_nce_options o;
    o.rate_source = src;
    o.alpha = src == gamma_rate_source::exact ? contrastive::gamma_nce_options::deterministic : 4.0;
    o.reduction = contrastive::loss_reduction::sum;
    o.tile_rows = 3;
    if (src == gamma_rate_source::exact) {
      o.exact_log_normalizer_a = za;
      o.exact_log_normalizer_b = zb;
    }
    rmat<double> GA(n, d), GB(n, d);
    const auto L = contrastive::gamma_nce_forward_backward(A, B, ids, GA, GB, o);
    const auto cnt = shard_counts(p, n, shard::empty_rank);
    const auto zal = slice(za, cnt, r), zbl = slice(zb, cnt, r);
    if (src == gamma_rate_source::exact) {
      o.exact_log_normalizer_a = zal;
      o.exact_log_normalizer_b = zbl;
    }
    const rmat<double> a = rows_of(A, cnt, r), b = rows_of(B, cnt, r);
    rmat<double> ga(a.rows(), d), gb(b.rows(), d);
    const auto li = slice(ids, cnt, r);
    const auto l = contrastive::distributed::gamma_nce_forward_backward(comm, a, b, li, ga, gb, o);
    CHECK(rel(l, L) <= 1e-12);
    CHECK(rel_rows(ga, GA, cnt, r) <= 1e-12);
    CHECK(rel_rows(gb, GB, cnt, r) <= 1e-12);
  }
}

TEST_CASE("distributed::gamma_nce: every rank throws the same error", "[dist][gamma_nce][errors]") {
  const contrastive::distributed::mpi_communicator comm;
  const int p = comm.size(), r = comm.rank();
  const Index n = 9, d = 3;
  const auto cnt = shard_counts(p, n, shard::even);
  const rmat<double> a = rows_of(unit_rows<double>(n, d, 1), cnt, r);
  const rmat<double> b = rows_of(unit_rows<double>(n, d, 2), cnt, r);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) ids[i] = i;
  normalizer_state state(n, 2);
  contrastive::distributed::gamma_nce_options o;
  SECTION("an id repeated on two ranks (distinct locally)") {
    if (p > 1) {
      std::vector<std::int64_t> li = slice(ids, cnt, r);
      if (r == p - 1) li[0] = 0;  // rank 0 holds id 0 as well
      const std::string e =
          error_of([&] { contrastive::distributed::gamma_nce_forward(comm, a, b, li, state, o); });
      CHECK_THAT(e, Contains("distributed::gamma_nce_forward") && Contains("sample id 0"));
      CHECK(same_on_all_ranks(e));
      CHECK(!state.visited(0, 0));  // nothing was written
    }
  }
  SECTION("an id out of the state's range on the last rank") {
    std::vector<std::int64_t> li = slice(ids, cnt, r);
    if (r == p - 1) li.back() = 1000;
    const std::string e =
        error_of([&] { contrastive::distributed::gamma_nce_forward(comm, a, b, li, state, o); });
    CHECK_THAT(e, Contains("out of range") && Contains("on rank " + std::to_string(p - 1)));
    CHECK(same_on_all_ranks(e));
  }
  SECTION("seed differs") {
    if (p > 1) {
      contrastive::distributed::gamma_nce_options o2 = o;
      o2.seed = r == 0 ? 1 : 2;
      const auto li = slice(ids, cnt, r);
      const std::string e =
          error_of([&] { contrastive::distributed::gamma_nce_forward(comm, a, b, li, state, o2); });
      CHECK_THAT(e, Contains("'seed' (low 32 bits) differs across ranks"));
      CHECK(same_on_all_ranks(e));
    }
  }
  SECTION("state sizes differ in replicated mode") {
    if (p > 1) {
      normalizer_state s2(r == 0 ? n : n + 1, 2);
      const auto li = slice(ids, cnt, r);
      const std::string e =
          error_of([&] { contrastive::distributed::gamma_nce_forward(comm, a, b, li, s2, o); });
      CHECK_THAT(e, Contains("samples (replicated mode) differs across ranks"));
      CHECK(same_on_all_ranks(e));
    }
  }
  const auto li = slice(ids, cnt, r);
  const auto saved = contrastive::distributed::gamma_nce_forward(comm, a, b, li, state, o);
  CHECK(saved.n_global == n);
}
