// The distributed losses on the one-process self_communicator (no MPI needed): part of the
// normal unit tests. With one rank every distributed:: call must equal the single-process call.
#include "support/test_config.hpp"

#include <cstdint>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/distributed/communicator.hpp>
#include <contrastive/distributed/gamma_nce.hpp>
#include <contrastive/distributed/info_nce.hpp>
#include <contrastive/distributed/nt_xent.hpp>

#include "support/reference.hpp"

namespace {
template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using contrastive::distributed::self_communicator;

double max_diff(const rmat<double>& x, const rmat<double>& y) {
  return (x - y).cwiseAbs().maxCoeff();
}

struct not_a_communicator {
  int rank() const { return 0; }
};
}  // namespace

static_assert(contrastive::distributed::is_communicator<self_communicator>::value, "");
static_assert(!contrastive::distributed::is_communicator<not_a_communicator>::value, "");

TEST_CASE("self_communicator: collectives are copies", "[dist][self]") {
  const self_communicator c;
  CHECK(c.rank() == 0);
  CHECK(c.size() == 1);
  double v[2] = {1.5, -2};
  c.all_reduce(v, 2, contrastive::distributed::reduce_op::sum);
  CHECK(v[0] == 1.5);
  std::int64_t in[3] = {4, 5, 6}, out[3] = {0, 0, 0};
  c.all_gather(in, 3, out);
  CHECK(out[2] == 6);
  const std::size_t counts[1] = {2};
  float f[2] = {1, 2}, g[2] = {0, 0};
  c.all_gather_v(f, 2, g, counts);
  CHECK(g[1] == 2);
  char s[2] = {'a', 'b'}, t[2] = {0, 0};
  c.ring_shift(s, 2, t, 2);
  CHECK(t[0] == 'a');
}

TEST_CASE("dist losses on self_communicator equal the single-process losses", "[dist][self]") {
  const self_communicator comm;
  const Eigen::Index n = 21, d = 5;
  const rmat<double> a = ref::normalized_rows(ref::random_matrix(n, d, 3));
  const rmat<double> b = ref::normalized_rows(ref::random_matrix(n, d, 4));
  rmat<double> ga(n, d), gb(n, d), da(n, d), db(n, d);

  SECTION("info_nce with labels and smoothing") {
    std::vector<std::int64_t> y(static_cast<std::size_t>(n));
    for (Eigen::Index i = 0; i < n; ++i) y[i] = i % 4;
    contrastive::info_nce_options o;
    o.labels_a = y;
    o.labels_b = y;
    o.label_smoothing = 0.1;
    o.tile_rows = 4;
    const double l = contrastive::info_nce_forward_backward(a, b, ga, gb, o);
    const double dl = contrastive::distributed::info_nce_forward_backward(comm, a, b, da, db, o);
    CHECK(dl == Approx(l).epsilon(1e-14));
    CHECK(max_diff(da, ga) <= 1e-15);
    CHECK(max_diff(db, gb) <= 1e-15);
  }
  SECTION("nt_xent") {
    contrastive::nt_xent_options o;
    o.tile_rows = 6;
    const double l = contrastive::nt_xent_forward_backward(a, b, ga, gb, o);
    const double dl = contrastive::distributed::nt_xent_forward_backward(comm, a, b, da, db, o);
    CHECK(dl == Approx(l).epsilon(1e-14));
    CHECK(max_diff(da, ga) <= 1e-15);
    CHECK(max_diff(db, gb) <= 1e-15);
  }
  SECTION("gamma_nce with a state") {
    std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
    for (Eigen::Index i = 0; i < n; ++i) ids[i] = 2 * i;
    contrastive::normalizer_state s1(2 * n, 2), s2(2 * n, 2);
    contrastive::distributed::gamma_nce_options o;
    o.seed = 9;
    const auto l = contrastive::gamma_nce_forward_backward(a, b, ids, s1, ga, gb, o);
    const auto dl =
        contrastive::distributed::gamma_nce_forward_backward(comm, a, b, ids, s2, da, db, o);
    CHECK(dl == Approx(l).epsilon(1e-14));
    CHECK(max_diff(da, ga) <= 1e-15);
    CHECK(max_diff(db, gb) <= 1e-15);
    CHECK(s2.log_normalizer(4, 1) == Approx(s1.log_normalizer(4, 1)).epsilon(1e-14));
  }
}

TEST_CASE("dist losses reject the debiased and hard-negative options they do not implement",
          "[dist][self][errors]") {
  const self_communicator comm;
  const rmat<double> a = ref::random_matrix(4, 3, 1), b = ref::random_matrix(4, 3, 2);
  rmat<double> ga = rmat<double>::Constant(4, 3, 7.25), gb = ga;
  contrastive::info_nce_options io;
  io.debias_tau_plus = 0.1;
  CHECK_THROWS_WITH(contrastive::distributed::info_nce_forward_backward(comm, a, b, ga, gb, io),
                    "distributed::info_nce_forward: 'debias_tau_plus' / 'hard_negative_beta' are "
                    "not supported by the distributed losses (on rank 0 of 1)");
  contrastive::nt_xent_options no;
  no.hard_negative_beta = 1;
  CHECK_THROWS_WITH(contrastive::distributed::nt_xent_forward_backward(comm, a, b, ga, gb, no),
                    "distributed::nt_xent_forward: 'debias_tau_plus' / 'hard_negative_beta' are "
                    "not supported by the distributed losses (on rank 0 of 1)");
  CHECK((ga.array() == 7.25).all());
  CHECK((gb.array() == 7.25).all());
}

TEST_CASE("dist and single-process losses agree on rejecting logits near the range",
          "[dist][self][errors]") {
  // A fuzz finding: at tau = 1e-300 the logits are ~1e299 and each anchor's lse minus target is
  // rounding; the single-process NT-Xent rejected the temperature gradient it computed from it,
  // the distributed one (another summation order) computed 0 and accepted. The a-priori bound on
  // the temperature gradient rejects both.
  const self_communicator comm;
  rmat<double> a = rmat<double>::Constant(6, 1, -0.37761579241071419), b = a;
  a(0, 0) = b(0, 0) = 0;
  const std::vector<std::int64_t> labels = {1, -1, -1, -1, -1, -1};
  contrastive::nt_xent_options o;
  o.temperature = 1e-300;
  o.labels = labels;
  o.reduction = contrastive::loss_reduction::sum;
  rmat<double> ga = rmat<double>::Constant(6, 1, 7.25), gb = ga;
  const char* why = "the temperature gradient could overflow double";
  CHECK_THROWS_WITH(contrastive::nt_xent_forward_backward(a, b, ga, gb, o), Catch::Contains(why));
  CHECK_THROWS_WITH(contrastive::distributed::nt_xent_forward_backward(comm, a, b, ga, gb, o),
                    Catch::Contains(why));
  CHECK((ga.array() == 7.25).all());
  CHECK((gb.array() == 7.25).all());
}
