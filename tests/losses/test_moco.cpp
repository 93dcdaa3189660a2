#include "support/test_config.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/testing/gradcheck.hpp>

#include "support/reference.hpp"

namespace ct = contrastive::testing;

namespace {

template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using contrastive::moco_options;

struct run_result {
  double loss;
  ref::mat ga, gb;
  double dtheta;
};

template <class T>
run_result run(const ref::mat& a, const ref::mat& b, const ref::mat& q, const moco_options& o) {
  const rmat<T> at = a.cast<T>(), bt = b.cast<T>(), qt = q.cast<T>();
  rmat<T> ga(a.rows(), a.cols()), gb(b.rows(), b.cols());
  contrastive::temperature_gradient tg;
  const T loss = contrastive::moco_forward_backward(at, bt, qt, ga, gb, o, &tg);
  return {double(loss), ga.template cast<double>(), gb.template cast<double>(), tg.log_scale};
}

double loss_only(const ref::mat& a, const ref::mat& b, const ref::mat& q, const moco_options& o) {
  const rmat<double> ar = a, br = b, qr = q;
  return contrastive::moco_forward(ar, br, qr, o).loss;
}

// Naive MoCo as its reference code writes it: l_pos = <q_i, k_i>, l_neg = q Q^T (and, with batch
// negatives, the other keys), logits = [l_pos, l_neg] / tau, cross-entropy with label 0.
ref::result reference(const ref::mat& a, const ref::mat& b, const ref::mat& q,
                      const moco_options& o) {
  const Eigen::Index n = a.rows(), k = q.rows();
  const double lambda = 1 / o.temperature;
  const double w = o.reduction == contrastive::loss_reduction::mean ? 1.0 / double(n) : 1.0;
  ref::result r;
  r.grad_a = ref::mat::Zero(n, a.cols());
  r.grad_b = ref::mat::Zero(n, a.cols());
  for (Eigen::Index i = 0; i < n; ++i) {
    std::vector<double> s;
    std::vector<Eigen::Index> key;  // >= 0: key index; < 0: queue row -1 - index
    for (Eigen::Index j = 0; j < n; ++j)
      if (o.batch_negatives || j == i) {
        s.push_back(lambda * a.row(i).dot(b.row(j)));
        key.push_back(j);
      }
    for (Eigen::Index j = 0; j < k; ++j) {
      s.push_back(lambda * a.row(i).dot(q.row(j)));
      key.push_back(-1 - j);
    }
    double m = -INFINITY, z = 0;
    for (double v : s) m = std::max(m, v);
    for (double v : s) z += std::exp(v - m);
    const double lse = m + std::log(z), s_pos = lambda * a.row(i).dot(b.row(i));
    r.loss += w * (lse - s_pos);
    for (std::size_t c = 0; c < s.size(); ++c) {
      const double g = w * (std::exp(s[c] - lse) - (key[c] == i ? 1.0 : 0.0));
      r.dtheta += g * s[c];
      if (key[c] >= 0) {
        r.grad_a.row(i) += lambda * g * b.row(key[c]);
        r.grad_b.row(key[c]) += lambda * g * a.row(i);
      } else {
        r.grad_a.row(i) += lambda * g * q.row(-1 - key[c]);
      }
    }
  }
  return r;
}

}  // namespace

TEMPLATE_TEST_CASE("moco: tiled equals the naive reference", "[moco]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 1e-5 : 1e-12;
  struct shape {
    Eigen::Index n, k, d;
  };
  for (const shape sh : {shape{1, 0, 3}, shape{1, 4, 2}, shape{5, 3, 4}, shape{37, 70, 8},
                         shape{130, 41, 17}, shape{20, 300, 6}}) {
    const ref::mat a = ref::normalized_rows(ref::random_matrix(sh.n, sh.d, 13 + sh.n));
    const ref::mat b = ref::normalized_rows(a + 0.5 * ref::random_matrix(sh.n, sh.d, 17 + sh.n));
    const ref::mat q = ref::normalized_rows(ref::random_matrix(sh.k, sh.d, 19 + sh.k));
    for (const bool batch : {true, false}) {
      for (const auto red : {contrastive::loss_reduction::mean, contrastive::loss_reduction::sum}) {
        moco_options o;
        o.temperature = 0.2;
        o.batch_negatives = batch;
        o.reduction = red;
        const ref::result want = reference(a, b, q, o);
        for (const Eigen::Index tile : {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64)}) {
          o.tile_rows = o.tile_cols = tile;
          CAPTURE(sh.n, sh.k, sh.d, batch, tile);
          const run_result got = run<TestType>(a, b, q, o);
          CHECK(std::abs(got.loss - want.loss) <= tol * std::max(1.0, std::abs(want.loss)));
          if (want.grad_a.cwiseAbs().maxCoeff() > 0) {
            CHECK(ref::max_rel_diff(got.ga, want.grad_a) <= tol * 10);
            CHECK(ref::max_rel_diff(got.gb, want.grad_b) <= tol * 10);
          }
          CHECK(std::abs(got.dtheta - want.dtheta) <=
                tol * 10 * std::max(1.0, std::abs(want.dtheta)));
        }
      }
    }
  }
}

TEST_CASE("moco: finite-difference gradients in double", "[moco][gradcheck]") {
  for (const Eigen::Index n : {1, 2, 5}) {
    for (const Eigen::Index k : {0, 3, 8}) {
      for (const bool batch : {true, false}) {
        const double theta = n == 2 ? 2.0 : 0.3;
        const ref::mat a = ref::random_matrix(n, 3, 23 + n, 0.7);
        const ref::mat b = ref::random_matrix(n, 3, 29 + n, 0.7);
        const ref::mat q = ref::random_matrix(k, 3, 31 + k, 0.7);
        moco_options o;
        o.temperature = std::exp(-theta);
        o.batch_negatives = batch;
        o.tile_rows = o.tile_cols = 2;
        CAPTURE(n, k, batch);
        const run_result r = run<double>(a, b, q, o);
        CHECK(ct::gradcheck(ref::mat(a), r.ga,
                            [&](const ref::mat& x) { return loss_only(x, b, q, o); }));
        CHECK(ct::gradcheck(ref::mat(b), r.gb,
                            [&](const ref::mat& x) { return loss_only(a, x, q, o); }));
        const double h = 1e-6;
        moco_options op = o, om = o;
        op.temperature = std::exp(-(theta + h));
        om.temperature = std::exp(-(theta - h));
        const double fd = (loss_only(a, b, q, op) - loss_only(a, b, q, om)) / (2 * h);
        CHECK(std::abs(r.dtheta - fd) <= 1e-6 * std::max(1.0, std::abs(fd)));
      }
    }
  }
}

TEST_CASE("moco: identities", "[moco][identity]") {
  const Eigen::Index n = 9, d = 5;
  const ref::mat a = ref::random_matrix(n, d, 3), b = ref::random_matrix(n, d, 4);
  SECTION("an empty queue with batch negatives is one-direction InfoNCE") {
    moco_options o;
    o.temperature = 0.3;
    o.tile_rows = o.tile_cols = 4;
    const run_result m = run<double>(a, b, ref::mat(0, d), o);
    contrastive::info_nce_options oi;
    oi.temperature = 0.3;
    oi.symmetric = false;
    const rmat<double> ar = a, br = b;
    rmat<double> ga(n, d), gb(n, d);
    const double want = contrastive::info_nce_forward_backward(ar, br, ga, gb, oi);
    CHECK(m.loss == Approx(want).epsilon(1e-13));
    CHECK(ref::max_rel_diff(m.ga, ga) < 1e-12);
    CHECK(ref::max_rel_diff(m.gb, gb) < 1e-12);
  }
  SECTION("MoCo's form with an empty queue is 0") {
    moco_options o;
    o.batch_negatives = false;
    CHECK(run<double>(a, b, ref::mat(0, d), o).loss == 0.0);
  }
  SECTION("a negative_queue's view works as the queue") {
    contrastive::negative_queue<double> queue(12, d);
    queue.enqueue(rmat<double>(ref::random_matrix(7, d, 8)));
    queue.enqueue(rmat<double>(ref::random_matrix(7, d, 9)));  // wraps
    REQUIRE(queue.full());
    moco_options o;
    const rmat<double> ar = a, br = b;
    const rmat<double> copy = Eigen::Map<const rmat<double>>(queue.view().data(), 12, d);
    CHECK(contrastive::moco_forward(ar, br, queue.view(), o).loss ==
          contrastive::moco_forward(ar, br, copy, o).loss);
  }
}

TEST_CASE("moco: workspace, accumulate, threads", "[moco][api]") {
  const Eigen::Index n = 157, k = 400, d = 32;
  const rmat<float> a = ref::normalized_rows(ref::random_matrix(n, d, 5)).cast<float>();
  const rmat<float> b = ref::normalized_rows(ref::random_matrix(n, d, 6)).cast<float>();
  const rmat<float> q = ref::normalized_rows(ref::random_matrix(k, d, 7)).cast<float>();
  moco_options o;
  o.tile_rows = o.tile_cols = 16;
  o.num_threads = 1;
  rmat<float> ga1(n, d), gb1(n, d);
  const float l1 = contrastive::moco_forward_backward(a, b, q, ga1, gb1, o);
  for (const int threads : {2, 3}) {
    CAPTURE(threads);
    moco_options ot = o;
    ot.num_threads = threads;
    rmat<float> ga(n, d), gb(n, d);
    CHECK(contrastive::moco_forward_backward(a, b, q, ga, gb, ot) == l1);
    CHECK((ga.array() == ga1.array()).all());
    CHECK((gb.array() == gb1.array()).all());
  }
  const std::size_t bytes = contrastive::moco_workspace_bytes<float>(n, k, d, o);
  CHECK(contrastive::moco_workspace_bytes(a, b, q, o) == bytes);
  std::vector<unsigned char> buf(bytes);
  const auto saved = contrastive::moco_forward(a, b, q, o, {buf.data(), buf.size()});
  CHECK(saved.loss == l1);
  rmat<float> ga2 = rmat<float>::Constant(n, d, 1.0f), gb2 = ga2;
  moco_options acc = o;
  acc.accumulate = true;
  contrastive::moco_backward(a, b, q, saved, ga2, gb2, acc, 2.0, {buf.data(), buf.size()});
  CHECK(ref::max_rel_diff(((ga2.array() - 1.0f) / 2.0f).cast<double>(), ga1.cast<double>()) < 1e-5);
  // The workspace does not grow with K beyond the packing of a non-row-major queue.
  CHECK(contrastive::moco_workspace_bytes<float>(n, 100 * k, d, o) == bytes);
}

TEST_CASE("moco: bad input throws and leaves the outputs untouched", "[moco][errors]") {
  using contrastive::invalid_argument;
  const Eigen::Index n = 4, k = 6, d = 3;
  const rmat<double> a = ref::random_matrix(n, d, 1), b = ref::random_matrix(n, d, 2);
  const rmat<double> q = ref::random_matrix(k, d, 3);
  moco_options o;
  const auto saved = contrastive::moco_forward(a, b, q, o);
  rmat<double> pa = rmat<double>::Constant(n, d, 3.5), pb = pa;
  auto untouched = [&] { return (pa.array() == 3.5).all() && (pb.array() == 3.5).all(); };
  const rmat<double> q_wrong = ref::random_matrix(k, d + 1, 3);
  CHECK_THROWS_WITH(contrastive::moco_forward_backward(a, b, q_wrong, pa, pb, o),
                    "moco_forward: 'queue' has 4 columns, expected 3 (columns of 'a')");
  rmat<double> qn = q;
  qn(5, 0) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(contrastive::moco_backward(a, b, qn, saved, pa, pb, o),
                    "moco_backward: 'queue' has a non-finite value (inf) at row 5, column 0");
  moco_options bad = o;
  bad.temperature = 0;
  CHECK_THROWS_WITH(contrastive::moco_forward(a, b, q, bad),
                    "moco_forward: 'temperature' must be finite and > 0, got 0");
  bad = o;
  bad.batch_negatives = false;
  CHECK_THROWS_AS(contrastive::moco_backward(a, b, q, saved, pa, pb, bad), invalid_argument);
  const rmat<double> q_short = ref::random_matrix(k - 1, d, 3);
  CHECK_THROWS_AS(contrastive::moco_backward(a, b, q_short, saved, pa, pb, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::moco_backward(a, b, q, saved, pa, pa, o), invalid_argument);
  CHECK(untouched());
  const rmat<double> wrong = ref::random_matrix(n + 1, d, 3);
  CHECK_THROWS_AS(contrastive::moco_forward(a, wrong, q, o), invalid_argument);
}
