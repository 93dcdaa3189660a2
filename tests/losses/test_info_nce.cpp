#include "support/test_config.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/testing/gradcheck.hpp>
#include <Eigen/QR>

#include "support/reference.hpp"

namespace ct = contrastive::testing;

namespace {

template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using contrastive::info_nce_options;

struct run_result {
  double loss;
  ref::mat ga, gb;
  double dtheta;
};

template <class T>
run_result run(const ref::mat& a, const ref::mat& b, const info_nce_options& o) {
  const rmat<T> at = a.cast<T>(), bt = b.cast<T>();
  rmat<T> ga(a.rows(), a.cols()), gb(b.rows(), b.cols());
  contrastive::temperature_gradient tg;
  const T loss = contrastive::info_nce_forward_backward(at, bt, ga, gb, o, &tg);
  return {double(loss), ga.template cast<double>(), gb.template cast<double>(), tg.log_scale};
}

ref::options to_ref(const info_nce_options& o, const std::vector<std::int64_t>* la = nullptr,
                    const std::vector<std::int64_t>* lb = nullptr) {
  ref::options r;
  r.temperature = o.temperature;
  r.symmetric = o.symmetric;
  r.eps = o.label_smoothing;
  r.mean = o.reduction == contrastive::loss_reduction::mean;
  r.labels_a = la;
  r.labels_b = lb;
  return r;
}

double loss_only(const ref::mat& a, const ref::mat& b, const info_nce_options& o) {
  const rmat<double> ar = a, br = b;
  return contrastive::info_nce_forward(ar, br, o).loss;
}

}  // namespace

TEMPLATE_TEST_CASE("info_nce: tiled equals the naive reference", "[info_nce]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 1e-5 : 1e-12;
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{1, 1}, shape{2, 3}, shape{5, 4}, shape{37, 8}, shape{130, 17}}) {
    const ref::mat a = ref::normalized_rows(ref::random_matrix(sh.n, sh.d, 11 + sh.n));
    const ref::mat b = ref::normalized_rows(ref::random_matrix(sh.n, sh.d, 97 + sh.n));
    for (const bool sym : {false, true}) {
      for (const double eps : {0.0, 0.1}) {
        for (const auto red :
             {contrastive::loss_reduction::mean, contrastive::loss_reduction::sum}) {
          info_nce_options o;
          o.temperature = 0.2;
          o.symmetric = sym;
          o.label_smoothing = eps;
          o.reduction = red;
          const ref::result want = ref::info_nce(a, b, to_ref(o));
          for (const Eigen::Index tile :
               {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64), sh.n, sh.n + 5}) {
            o.tile_rows = tile;
            o.tile_cols = tile == 3 ? 64 : tile;  // also non-square tiles
            CAPTURE(sh.n, sh.d, sym, eps, tile);
            const run_result got = run<TestType>(a, b, o);
            CHECK(std::abs(got.loss - want.loss) <= tol * std::max(1.0, std::abs(want.loss)));
            CHECK(ref::max_rel_diff(got.ga, want.grad_a) <= tol * 10);
            CHECK(ref::max_rel_diff(got.gb, want.grad_b) <= tol * 10);
            CHECK(std::abs(got.dtheta - want.dtheta) <=
                  tol * 10 * std::max(1.0, std::abs(want.dtheta)));
          }
        }
      }
    }
  }
}

TEST_CASE("info_nce: labels (multiple positives) match the reference", "[info_nce]") {
  const Eigen::Index n = 23, d = 6;
  const ref::mat a = ref::normalized_rows(ref::random_matrix(n, d, 5));
  const ref::mat b = ref::normalized_rows(ref::random_matrix(n, d, 6));
  std::vector<std::int64_t> la(n), lb(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    la[i] = i % 4;
    lb[i] = (i * 7) % 5;  // label 4 has no match in la: those b anchors have no positive
  }
  for (const bool sym : {false, true}) {
    for (const double eps : {0.0, 0.2}) {
      for (const Eigen::Index tile : {Eigen::Index(4), Eigen::Index(7), Eigen::Index(64)}) {
        info_nce_options o;
        o.temperature = 0.5;
        o.symmetric = sym;
        o.label_smoothing = eps;
        o.labels_a = la;
        o.labels_b = lb;
        o.tile_rows = o.tile_cols = tile;
        CAPTURE(sym, eps, tile);
        const ref::result want = ref::info_nce(a, b, to_ref(o, &la, &lb));
        const run_result got = run<double>(a, b, o);
        CHECK(got.loss == Approx(want.loss).epsilon(1e-12));
        CHECK(ref::max_rel_diff(got.ga, want.grad_a) <= 1e-11);
        CHECK(ref::max_rel_diff(got.gb, want.grad_b) <= 1e-11);
        CHECK(got.dtheta == Approx(want.dtheta).epsilon(1e-11));
      }
    }
  }
}

TEST_CASE("info_nce: all-distinct labels equal the unlabelled loss", "[info_nce]") {
  const Eigen::Index n = 17, d = 5;
  const ref::mat a = ref::random_matrix(n, d, 1), b = ref::random_matrix(n, d, 2);
  std::vector<std::int64_t> l(n);
  for (Eigen::Index i = 0; i < n; ++i) l[i] = 1000 - 3 * i;
  info_nce_options o;
  o.temperature = 0.3;
  o.tile_rows = o.tile_cols = 6;
  const run_result plain = run<double>(a, b, o);
  o.labels_a = l;
  o.labels_b = l;
  const run_result lab = run<double>(a, b, o);
  CHECK(lab.loss == Approx(plain.loss).epsilon(1e-13));
  CHECK(ref::max_rel_diff(lab.ga, plain.ga) < 1e-12);
  CHECK(ref::max_rel_diff(lab.gb, plain.gb) < 1e-12);
}

TEST_CASE("info_nce: a batch without positives gives zero loss and zero gradients", "[info_nce]") {
  const Eigen::Index n = 6, d = 3;
  const ref::mat a = ref::random_matrix(n, d, 3), b = ref::random_matrix(n, d, 4);
  std::vector<std::int64_t> la(n, 1), lb(n, 2);
  info_nce_options o;
  o.labels_a = la;
  o.labels_b = lb;
  const run_result r = run<double>(a, b, o);
  CHECK(r.loss == 0.0);
  CHECK(r.ga.cwiseAbs().maxCoeff() == 0.0);
  CHECK(r.gb.cwiseAbs().maxCoeff() == 0.0);
  CHECK(r.dtheta == 0.0);
}

TEST_CASE("info_nce: finite-difference gradients in double", "[info_nce][gradcheck]") {
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{1, 1}, shape{2, 1}, shape{1, 4}, shape{5, 3}, shape{11, 4}}) {
    for (const double theta : {0.3, 2.0}) {
      for (const bool sym : {false, true}) {
        for (const double eps : {0.0, 0.15}) {
          const ref::mat a = ref::random_matrix(sh.n, sh.d, 21 + sh.n, 0.7);
          const ref::mat b = ref::random_matrix(sh.n, sh.d, 31 + sh.d, 0.7);
          info_nce_options o;
          o.temperature = std::exp(-theta);
          o.symmetric = sym;
          o.label_smoothing = eps;
          o.tile_rows = 3;  // ragged tiles: N is not a multiple of 3 for most shapes
          o.tile_cols = 4;
          CAPTURE(sh.n, sh.d, theta, sym, eps);
          const run_result r = run<double>(a, b, o);
          CHECK(ct::gradcheck(ref::mat(a), r.ga,
                              [&](const ref::mat& x) { return loss_only(x, b, o); }));
          CHECK(ct::gradcheck(ref::mat(b), r.gb,
                              [&](const ref::mat& x) { return loss_only(a, x, o); }));
          // dL/dtheta by differencing the temperature through theta = -log tau.
          const double h = 1e-6;
          info_nce_options op = o, om = o;
          op.temperature = std::exp(-(theta + h));
          om.temperature = std::exp(-(theta - h));
          const double fd = (loss_only(a, b, op) - loss_only(a, b, om)) / (2 * h);
          CHECK(std::abs(r.dtheta - fd) <= 1e-6 * std::max(1.0, std::abs(fd)));
        }
      }
    }
  }
}

TEST_CASE("info_nce: finite differences with labels", "[info_nce][gradcheck]") {
  const Eigen::Index n = 7, d = 3;
  const ref::mat a = ref::random_matrix(n, d, 41, 0.8), b = ref::random_matrix(n, d, 42, 0.8);
  std::vector<std::int64_t> la = {0, 1, 1, 2, 0, 3, 1}, lb = {1, 0, 2, 2, 1, 0, 4};
  for (const bool sym : {false, true}) {
    info_nce_options o;
    o.temperature = 0.4;
    o.symmetric = sym;
    o.label_smoothing = 0.1;
    o.labels_a = la;
    o.labels_b = lb;
    o.tile_rows = 2;
    o.tile_cols = 3;
    const run_result r = run<double>(a, b, o);
    CHECK(ct::gradcheck(ref::mat(a), r.ga, [&](const ref::mat& x) { return loss_only(x, b, o); }));
    CHECK(ct::gradcheck(ref::mat(b), r.gb, [&](const ref::mat& x) { return loss_only(a, x, o); }));
  }
}

TEST_CASE("info_nce: identities", "[info_nce][identity]") {
  SECTION("all rows equal gives log N and zero gradients") {
    for (const Eigen::Index n : {2, 7, 300}) {
      ref::mat a(n, 4);
      a.rowwise() = Eigen::RowVector4d(0.5, -0.5, 0.5, 0.5);
      for (const bool sym : {false, true}) {
        info_nce_options o;
        o.symmetric = sym;
        o.tile_rows = o.tile_cols = 64;
        const run_result r = run<double>(a, a, o);
        CHECK(r.loss == Approx(std::log(double(n))).epsilon(1e-12));
        CHECK(r.ga.cwiseAbs().maxCoeff() < 1e-10);
        CHECK(r.gb.cwiseAbs().maxCoeff() < 1e-10);
      }
    }
    ref::mat a2(2, 1);
    a2 << 1, 1;
    CHECK(run<double>(a2, a2, {}).loss == Approx(0.693147).epsilon(1e-6));
  }
  SECTION("orthonormal rows: -lambda + log(e^lambda + N - 1)") {
    const Eigen::Index n = 9;
    const ref::mat e = ref::mat::Identity(n, n + 2);
    info_nce_options o;
    o.temperature = 0.5;
    o.tile_rows = o.tile_cols = 4;
    const double lambda = 2.0;
    const double want = -lambda + std::log(std::exp(lambda) + double(n) - 1);
    CHECK(run<double>(e, e, o).loss == Approx(want).epsilon(1e-13));
    o.symmetric = false;
    CHECK(run<double>(e, e, o).loss == Approx(want).epsilon(1e-13));
  }
  SECTION("N = 1 gives zero") {
    const ref::mat a = ref::random_matrix(1, 5, 8), b = ref::random_matrix(1, 5, 9);
    const run_result r = run<double>(a, b, {});
    CHECK(r.loss == 0.0);
    CHECK(r.ga.cwiseAbs().maxCoeff() == 0.0);
  }
  SECTION("CLIP(a, b) = CLIP(b, a) = (InfoNCE(a, b) + InfoNCE(b, a)) / 2") {
    const ref::mat a = ref::random_matrix(13, 6, 10), b = ref::random_matrix(13, 6, 12);
    info_nce_options o;
    o.temperature = 0.3;
    o.tile_rows = 5;
    o.tile_cols = 4;
    const run_result ab = run<double>(a, b, o), ba = run<double>(b, a, o);
    CHECK(ab.loss == Approx(ba.loss).epsilon(1e-13));
    CHECK(ref::max_rel_diff(ab.ga, ba.gb) < 1e-12);
    CHECK(ref::max_rel_diff(ab.gb, ba.ga) < 1e-12);
    info_nce_options one = o;
    one.symmetric = false;
    const double mean_dirs = 0.5 * (run<double>(a, b, one).loss + run<double>(b, a, one).loss);
    CHECK(ab.loss == Approx(mean_dirs).epsilon(1e-13));
  }
  SECTION("joint row permutation permutes the gradients; rotation leaves the loss") {
    const Eigen::Index n = 10, d = 4;
    const ref::mat a = ref::random_matrix(n, d, 50), b = ref::random_matrix(n, d, 51);
    Eigen::PermutationMatrix<Eigen::Dynamic> perm(n);
    perm.setIdentity();
    std::mt19937 gen(3);
    std::shuffle(perm.indices().data(), perm.indices().data() + n, gen);
    info_nce_options o;
    o.temperature = 0.5;
    o.tile_rows = o.tile_cols = 3;
    const run_result r = run<double>(a, b, o);
    const run_result rp = run<double>(perm * a, perm * b, o);
    CHECK(rp.loss == Approx(r.loss).epsilon(1e-13));
    CHECK(ref::max_rel_diff(rp.ga, perm * r.ga) < 1e-12);
    const Eigen::HouseholderQR<ref::mat> qr(ref::random_matrix(d, d, 52));
    const ref::mat rot = qr.householderQ();
    CHECK(run<double>(a * rot, b * rot, o).loss == Approx(r.loss).epsilon(1e-12));
  }
  SECTION("one direction: invariant under b_j + c, and sum_j dL/db_j = 0") {
    const ref::mat a = ref::random_matrix(8, 3, 60), b = ref::random_matrix(8, 3, 61);
    info_nce_options o;
    o.symmetric = false;
    o.temperature = 0.7;
    const run_result r = run<double>(a, b, o);
    ref::mat shifted = b;
    shifted.rowwise() += Eigen::RowVector3d(0.3, -1.0, 2.0);
    CHECK(run<double>(a, shifted, o).loss == Approx(r.loss).epsilon(1e-12));
    CHECK(r.gb.colwise().sum().cwiseAbs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("info_nce: float is stable at tau = 1e-3 with logits up to 1e3",
          "[info_nce][stability]") {
  const Eigen::Index n = 50, d = 16;
  const ref::mat a = ref::normalized_rows(ref::random_matrix(n, d, 70));
  ref::mat b = ref::normalized_rows(a + 0.3 * ref::random_matrix(n, d, 71));
  info_nce_options o;
  o.temperature = 1e-3;
  o.tile_rows = o.tile_cols = 16;
  const run_result f = run<float>(a, b, o);
  const run_result dd = run<double>(a, b, o);
  REQUIRE(std::isfinite(f.loss));
  REQUIRE(f.ga.allFinite());
  REQUIRE(f.gb.allFinite());
  CHECK(dd.loss > 10);  // the logits really are large
  CHECK(std::abs(f.loss - dd.loss) <= 1e-4 * std::abs(dd.loss));
  // Logits of magnitude 1e3 in float carry absolute errors ~1e-4, which p = exp(s - lse) turns
  // into relative gradient errors of that order.
  CHECK(ref::max_rel_diff(f.ga, dd.ga) < 1e-3);
}

TEST_CASE("info_nce: non-contiguous layouts give bitwise identical results", "[info_nce][layout]") {
  const Eigen::Index n = 19, d = 7;
  const ref::mat a = ref::random_matrix(n, d, 80), b = ref::random_matrix(n, d, 81);
  info_nce_options o;
  o.temperature = 0.25;
  o.tile_rows = 8;
  o.tile_cols = 5;
  const rmat<double> ar = a, br = b;
  rmat<double> ga(n, d), gb(n, d);
  const double want = contrastive::info_nce_forward_backward(ar, br, ga, gb, o);

  // Column-major Eigen (packed internally), and gradients written through a column-major
  // matrix.
  const Eigen::MatrixXd ac = a, bc = b;
  Eigen::MatrixXd gac(n, d), gbc(n, d);
  CHECK(contrastive::info_nce_forward_backward(ac, bc, gac, gbc, o) == want);
  CHECK((gac.array() == ga.array()).all());
  CHECK((gbc.array() == gb.array()).all());

  // Strided raw memory: every other column of a wider buffer, and reversed rows.
  std::vector<double> wide(2 * n * d), gwide(2 * n * d, 0.0);
  for (Eigen::Index i = 0; i < n; ++i)
    for (Eigen::Index j = 0; j < d; ++j) wide[(i * d + j) * 2] = a(i, j);
  const auto va = contrastive::make_view(static_cast<const double*>(wide.data()), n, d, 2 * d, 2);
  const auto vrev = contrastive::make_view(br.data() + (n - 1) * d, n, d, -d, 1);
  const auto vga = contrastive::make_view(gwide.data(), n, d, 2 * d, 2);
  rmat<double> gb2(n, d);
  // Reversing b's rows breaks the pairing, so compare with the reversed-pair reference instead.
  rmat<double> brev = br.colwise().reverse();
  rmat<double> ga_ref(n, d), gb_ref(n, d);
  const double want_rev = contrastive::info_nce_forward_backward(ar, brev, ga_ref, gb_ref, o);
  CHECK(contrastive::info_nce_forward_backward(va, vrev, vga, gb2, o) == want_rev);
  for (Eigen::Index i = 0; i < n; ++i)
    for (Eigen::Index j = 0; j < d; ++j) CHECK(gwide[(i * d + j) * 2] == ga_ref(i, j));
  CHECK((gb2.array() == gb_ref.array()).all());
}

TEST_CASE("info_nce: forward, backward, upstream, accumulate and workspace", "[info_nce][api]") {
  const Eigen::Index n = 12, d = 5;
  const rmat<double> a = ref::random_matrix(n, d, 90), b = ref::random_matrix(n, d, 91);
  info_nce_options o;
  o.temperature = 0.3;
  o.tile_rows = o.tile_cols = 5;
  rmat<double> ga(n, d), gb(n, d);
  const auto saved = contrastive::info_nce_forward(a, b, o);
  CHECK(saved.row_lse.size() == std::size_t(n));
  CHECK(saved.col_lse.size() == std::size_t(n));
  const auto tg = contrastive::info_nce_backward(a, b, saved, ga, gb, o);
  CHECK(tg.log_scale == saved.grad_log_scale);
  CHECK(tg.temperature == Approx(-saved.grad_log_scale / o.temperature));
  CHECK(tg.scale == Approx(saved.grad_log_scale * o.temperature));

  SECTION("upstream scales everything") {
    rmat<double> ga3(n, d), gb3(n, d);
    const auto tg3 = contrastive::info_nce_backward(a, b, saved, ga3, gb3, o, 3.0);
    CHECK(ref::max_rel_diff(ga3, 3.0 * ga) < 1e-14);
    CHECK(ref::max_rel_diff(gb3, 3.0 * gb) < 1e-14);
    CHECK(tg3.log_scale == Approx(3.0 * tg.log_scale));
  }
  SECTION("accumulate adds instead of overwriting") {
    info_nce_options acc = o;
    acc.accumulate = true;
    rmat<double> ga2 = rmat<double>::Constant(n, d, 1.5), gb2 = rmat<double>::Constant(n, d, -2.0);
    contrastive::info_nce_backward(a, b, saved, ga2, gb2, acc);
    CHECK(ref::max_rel_diff(ga2.array() - 1.5, ga) < 1e-14);
    CHECK(ref::max_rel_diff(gb2.array() + 2.0, gb) < 1e-14);
  }
  SECTION("overwrite ignores previous contents") {
    rmat<double> ga2 = rmat<double>::Constant(n, d, 7.0), gb2 = rmat<double>::Constant(n, d, 7.0);
    contrastive::info_nce_backward(a, b, saved, ga2, gb2, o);
    CHECK((ga2.array() == ga.array()).all());
  }
  SECTION("a caller workspace of the queried size gives identical results") {
    const std::size_t bytes = contrastive::info_nce_workspace_bytes<double>(n, d, o);
    CHECK(bytes == contrastive::info_nce_workspace_bytes(a, b, o));
    CHECK(bytes > 0);
    std::vector<unsigned char> buf(bytes);
    const contrastive::workspace ws{buf.data(), buf.size()};
    rmat<double> ga2(n, d), gb2(n, d);
    const auto s2 = contrastive::info_nce_forward(a, b, o, ws);
    CHECK(s2.loss == saved.loss);
    contrastive::info_nce_backward(a, b, s2, ga2, gb2, o, 1.0, ws);
    CHECK((ga2.array() == ga.array()).all());
    // The query covers the larger of the two passes (here the backward).
    const contrastive::workspace small{buf.data(), bytes - 1};
    CHECK_THROWS_AS(contrastive::info_nce_backward(a, b, s2, ga2, gb2, o, 1.0, small),
                    contrastive::invalid_argument);
  }
  SECTION("Eigen Block outputs are written through") {
    rmat<double> big = rmat<double>::Zero(n, d + 3), big2 = rmat<double>::Zero(n, d + 3);
    contrastive::info_nce_backward(a, b, saved, big.leftCols(d), big2.rightCols(d), o);
    CHECK((big.leftCols(d).array() == ga.array()).all());
    CHECK((big2.rightCols(d).array() == gb.array()).all());
    CHECK(big.rightCols(3).cwiseAbs().maxCoeff() == 0.0);
  }
  SECTION("workspace grows linearly in N (no N x N term)") {
    const std::size_t w1 = contrastive::info_nce_workspace_bytes<float>(1 << 14, 512, o);
    const std::size_t w2 = contrastive::info_nce_workspace_bytes<float>(1 << 16, 512, o);
    CHECK(w2 < 4 * w1 + 4096);
  }
}

TEST_CASE("info_nce: bad input throws contrastive::invalid_argument", "[info_nce][errors]") {
  using contrastive::invalid_argument;
  const Eigen::Index n = 4, d = 3;
  const rmat<double> a = ref::random_matrix(n, d, 1), b = ref::random_matrix(n, d, 2);
  rmat<double> ga(n, d), gb(n, d);
  info_nce_options o;
  const auto saved = contrastive::info_nce_forward(a, b, o);
  auto msg_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const contrastive::invalid_argument& e) {
      return e.what();
    }
    return "no exception";
  };
  SECTION("reduction outside the enum: rejected, outputs untouched") {
    info_nce_options bad = o;
    bad.reduction = static_cast<contrastive::loss_reduction>(7);
    CHECK(msg_of([&] { contrastive::info_nce_forward(a, b, bad); }) ==
          "info_nce_forward: 'reduction' has an invalid value (7)");
    rmat<double> pa = rmat<double>::Constant(n, d, 3.5), pb = pa;
    CHECK(msg_of([&] { contrastive::info_nce_forward_backward(a, b, pa, pb, bad); }) ==
          "info_nce_forward: 'reduction' has an invalid value (7)");
    CHECK(msg_of([&] { contrastive::info_nce_backward(a, b, saved, pa, pb, bad); }) ==
          "info_nce_backward: 'reduction' has an invalid value (7)");
    CHECK((pa.array() == 3.5).all());
    CHECK((pb.array() == 3.5).all());
  }
  SECTION("shape mismatch") {
    const rmat<double> b2 = ref::random_matrix(n, d + 1, 3);
    CHECK(msg_of([&] { contrastive::info_nce_forward(a, b2, o); }) ==
          "info_nce_forward: 'b' has 4 columns, expected 3 (columns of 'a')");
    const rmat<double> b3 = ref::random_matrix(n + 1, d, 3);
    CHECK_THROWS_AS(contrastive::info_nce_forward(a, b3, o), invalid_argument);
  }
  SECTION("empty batch and D = 0") {
    const rmat<double> e0(0, d), e1(n, 0);
    CHECK_THAT(msg_of([&] { contrastive::info_nce_forward(e0, e0, o); }),
               Catch::Contains("empty batch"));
    CHECK_THAT(msg_of([&] { contrastive::info_nce_forward(e1, e1, o); }),
               Catch::Contains("0 columns"));
  }
  SECTION("temperature") {
    for (const double t : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
      info_nce_options bad = o;
      bad.temperature = t;
      CHECK_THAT(msg_of([&] { contrastive::info_nce_forward(a, b, bad); }),
                 Catch::Contains("'temperature'"));
    }
  }
  SECTION("non-finite inputs name the position") {
    rmat<double> an = a;
    an(2, 1) = std::nan("");
    CHECK(msg_of([&] { contrastive::info_nce_forward(an, b, o); }) ==
          "info_nce_forward: 'a' has a non-finite value (nan) at row 2, column 1");
    rmat<double> bi = b;
    bi(0, 0) = -std::numeric_limits<double>::infinity();
    CHECK_THAT(msg_of([&] { contrastive::info_nce_forward(a, bi, o); }), Catch::Contains("'b'"));
    CHECK_THROWS_AS(contrastive::info_nce_backward(an, b, saved, ga, gb, o), invalid_argument);
  }
  SECTION("gradient outputs of the wrong shape") {
    rmat<double> g2(n, d + 1);
    CHECK(msg_of([&] { contrastive::info_nce_backward(a, b, saved, g2, gb, o); }) ==
          "info_nce_backward: 'grad_a' is 4 x 4, expected 4 x 3 (the shape of 'a')");
    CHECK_THROWS_AS(contrastive::info_nce_backward(a, b, saved, ga, g2, o), invalid_argument);
  }
  SECTION("outputs aliasing inputs or each other") {
    rmat<double> x = a;
    CHECK_THAT(msg_of([&] { contrastive::info_nce_backward(x, b, saved, x, gb, o); }),
               Catch::Contains("overlaps"));
    CHECK_THROWS_AS(contrastive::info_nce_backward(a, b, saved, ga, ga, o), invalid_argument);
    rmat<double> both(n, 2 * d);
    // Partially overlapping strided outputs are rejected too.
    const auto v1 = contrastive::make_view(both.data(), n, d, 2 * d, 1);
    const auto v2 = contrastive::make_view(both.data() + 1, n, d, 2 * d, 1);
    CHECK_THROWS_AS(contrastive::info_nce_backward(a, b, saved, v1, v2, o), invalid_argument);
  }
  SECTION("stride-0 outputs cannot be written") {
    std::vector<double> one(d);
    const auto v = contrastive::make_view(one.data(), n, d, 0, 1);
    CHECK_THAT(msg_of([&] { contrastive::info_nce_backward(a, b, saved, v, gb, o); }),
               Catch::Contains("self-overlapping"));
  }
  SECTION("labels") {
    std::vector<std::int64_t> l3(3, 0), l4(4, 0);
    info_nce_options bad = o;
    bad.labels_a = l3;
    bad.labels_b = l4;
    CHECK_THAT(msg_of([&] { contrastive::info_nce_forward(a, b, bad); }),
               Catch::Contains("'labels_a' has 3 labels"));
    bad.labels_a = l4;
    bad.labels_b = {};
    CHECK_THROWS_AS(contrastive::info_nce_forward(a, b, bad), invalid_argument);
  }
  SECTION("label smoothing, tiles, upstream") {
    info_nce_options bad = o;
    bad.label_smoothing = 1.0;
    CHECK_THROWS_AS(contrastive::info_nce_forward(a, b, bad), invalid_argument);
    bad = o;
    bad.tile_rows = 0;
    CHECK_THROWS_AS(contrastive::info_nce_forward(a, b, bad), invalid_argument);
    CHECK_THROWS_AS(contrastive::info_nce_backward(a, b, saved, ga, gb, o, std::nan("")),
                    invalid_argument);
  }
  SECTION("saved statistics from another call") {
    info_nce_options other = o;
    other.temperature = 0.5;
    CHECK_THAT(msg_of([&] { contrastive::info_nce_backward(a, b, saved, ga, gb, other); }),
               Catch::Contains("other options"));
    const rmat<double> a5 = ref::random_matrix(n + 1, d, 7), b5 = ref::random_matrix(n + 1, d, 8);
    rmat<double> g5(n + 1, d), h5(n + 1, d);
    CHECK_THROWS_AS(contrastive::info_nce_backward(a5, b5, saved, g5, h5, o), invalid_argument);
  }
  SECTION("overflowing logits") {
    const rmat<float> big = rmat<float>::Constant(3, 2, 1e19f);
    CHECK_THAT(msg_of([&] { contrastive::info_nce_forward(big, big, o); }),
               Catch::Contains("overflow"));
  }
  SECTION("null data") {
    const auto v = contrastive::make_view(static_cast<const double*>(nullptr), n, d);
    CHECK_THAT(msg_of([&] { contrastive::info_nce_forward(v, b, o); }), Catch::Contains("null"));
  }
}

TEST_CASE("info_nce: bitwise identical for any thread count, across runs, and in cached mode",
          "[info_nce][threads]") {
  const Eigen::Index n = 301, d = 48;  // above the size where the sweep starts threads
  const rmat<float> a = ref::normalized_rows(ref::random_matrix(n, d, 5)).cast<float>();
  const rmat<float> b = ref::normalized_rows(ref::random_matrix(n, d, 6)).cast<float>();
  std::vector<std::int64_t> la(n), lb(n);
  for (Eigen::Index i = 0; i < n; ++i) la[i] = i % 7, lb[i] = (3 * i) % 7;
  for (const bool labelled : {false, true}) {
    info_nce_options o;
    o.tile_rows = 32;
    o.tile_cols = 16;  // 19 column blocks: uneven chunks
    if (labelled) {
      o.labels_a = la;
      o.labels_b = lb;
      o.label_smoothing = 0.1;
    }
    o.num_threads = 1;
    rmat<float> ga1(n, d), gb1(n, d);
    contrastive::temperature_gradient t1;
    const float l1 = contrastive::info_nce_forward_backward(a, b, ga1, gb1, o, &t1);
    for (const int threads : {1, 2, 3}) {
      for (const bool cached : {false, true}) {
        CAPTURE(labelled, threads, cached);
        info_nce_options ot = o;
        ot.num_threads = threads;
        ot.cache_logits = cached;
        rmat<float> ga(n, d), gb(n, d);
        contrastive::temperature_gradient t;
        CHECK(contrastive::info_nce_forward_backward(a, b, ga, gb, ot, &t) == l1);
        CHECK(t.log_scale == t1.log_scale);
        CHECK((ga.array() == ga1.array()).all());
        CHECK((gb.array() == gb1.array()).all());
      }
    }
  }
}

TEST_CASE("info_nce: cached mode through a caller workspace", "[info_nce][cache]") {
  const Eigen::Index n = 70, d = 9;
  const rmat<double> a = ref::random_matrix(n, d, 15), b = ref::random_matrix(n, d, 16);
  info_nce_options o;
  o.tile_rows = o.tile_cols = 16;
  rmat<double> ga(n, d), gb(n, d);
  contrastive::info_nce_forward_backward(a, b, ga, gb, o);
  o.cache_logits = true;
  const std::size_t cached = contrastive::info_nce_workspace_bytes<double>(n, d, o);
  info_nce_options plain = o;
  plain.cache_logits = false;
  // The query reports the N^2 cache on top of the streaming scratch.
  CHECK(cached >=
        contrastive::info_nce_workspace_bytes<double>(n, d, plain) + n * n * sizeof(double));
  std::vector<unsigned char> buf(cached);
  const contrastive::workspace ws{buf.data(), buf.size()};
  const auto saved = contrastive::info_nce_forward(a, b, o, ws);
  CHECK(saved.logit_cache == buf.data());
  rmat<double> ga2(n, d), gb2(n, d);
  contrastive::info_nce_backward(a, b, saved, ga2, gb2, o, 1.0, ws);
  CHECK((ga2.array() == ga.array()).all());
  // The cache is really read: poisoning it changes the result.
  std::vector<unsigned char> copy = buf;
  const auto saved2 = contrastive::info_nce_forward(a, b, o, ws);
  rmat<double> a_other = ref::random_matrix(n, d, 99);
  rmat<double> ga3(n, d), gb3(n, d);
  contrastive::info_nce_backward(a, b, saved2, ga3, gb3, o, 1.0, ws);
  CHECK((ga3.array() == ga.array()).all());
  contrastive::info_nce_forward(a_other, b, plain, {});                  // does not touch buf
  const auto saved3 = contrastive::info_nce_forward(a_other, b, o, ws);  // overwrites the cache
  rmat<double> ga4(n, d), gb4(n, d);
  contrastive::info_nce_backward(a, b, saved2, ga4, gb4, o, 1.0, ws);  // stale cache: other logits
  CHECK(!(ga4.array() == ga.array()).all());
  (void)saved3;
  (void)copy;
  // Without a workspace the forward does not cache (nothing would outlive the call).
  CHECK(contrastive::info_nce_forward(a, b, o).logit_cache == nullptr);
}
