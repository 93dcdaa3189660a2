#include "support/test_config.hpp"

#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/testing/gradcheck.hpp>
#include <contrastive/losses/geometric_consistency.hpp>
#include <Eigen/QR>

#include "support/reference.hpp"

namespace ct = contrastive::testing;

namespace {

template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using contrastive::gc_algorithm;
using contrastive::geometric_consistency_options;
using mat = ref::mat;

// Plain loops straight from the definitions of docs/geometric_consistency.md (double).
struct loops_result {
  double loss = 0;
  mat gv, gu, gva, gua;
};

loops_result loops_gc(const mat& v, const mat& u, double wx = 1, double wi = 1) {
  const Eigen::Index n = v.rows(), d = v.cols();
  loops_result r;
  r.gv = mat::Zero(n, d);
  r.gu = mat::Zero(n, d);
  for (Eigen::Index j = 0; j < n; ++j) {
    for (Eigen::Index k = 0; k < n; ++k) {
      const double kjk = v.row(j).dot(u.row(k)) - v.row(k).dot(u.row(j));
      const double ejk = v.row(j).dot(v.row(k)) - u.row(j).dot(u.row(k));
      r.loss += (wx * kjk * kjk + wi * ejk * ejk) / double(n);
      // d/dv_j of the (j,k) and (k,j) terms: K antisymmetric, E symmetric.
      r.gv.row(j) += 4.0 / double(n) * (wx * kjk * u.row(k) + wi * ejk * v.row(k));
      r.gu.row(j) -= 4.0 / double(n) * (wx * kjk * v.row(k) + wi * ejk * u.row(k));
    }
  }
  return r;
}

loops_result loops_gca(const mat& v, const mat& u, const mat& va, const mat& ua) {
  const Eigen::Index n = v.rows(), d = v.cols();
  loops_result r;
  r.gv = mat::Zero(n, d);
  r.gu = mat::Zero(n, d);
  r.gva = mat::Zero(n, d);
  r.gua = mat::Zero(n, d);
  for (Eigen::Index j = 0; j < n; ++j) {
    for (Eigen::Index k = 0; k < n; ++k) {
      const double ev = v.row(j).dot(v.row(k)) - va.row(j).dot(va.row(k));
      const double eu = u.row(j).dot(u.row(k)) - ua.row(j).dot(ua.row(k));
      r.loss += (ev * ev + eu * eu) / double(n);
      r.gv.row(j) += 4.0 / double(n) * ev * v.row(k);
      r.gva.row(j) -= 4.0 / double(n) * ev * va.row(k);
      r.gu.row(j) += 4.0 / double(n) * eu * u.row(k);
      r.gua.row(j) -= 4.0 / double(n) * eu * ua.row(k);
    }
    const double dl = v.row(j).dot(u.row(j)) - va.row(j).dot(ua.row(j));
    r.loss += dl * dl / double(n);
    r.gv.row(j) += 2.0 / double(n) * dl * u.row(j);
    r.gu.row(j) += 2.0 / double(n) * dl * v.row(j);
    r.gva.row(j) -= 2.0 / double(n) * dl * ua.row(j);
    r.gua.row(j) -= 2.0 / double(n) * dl * va.row(j);
  }
  return r;
}

struct run_result {
  double loss = 0;
  mat gv, gu, gva, gua;
  gc_algorithm algorithm = gc_algorithm::automatic;
};

template <class T>
run_result run_gc(const mat& v, const mat& u, const geometric_consistency_options& o) {
  const rmat<T> vt = v.cast<T>(), ut = u.cast<T>();
  rmat<T> gv(v.rows(), v.cols()), gu(u.rows(), u.cols());
  const auto saved = contrastive::geometric_consistency_forward(vt, ut, o);
  contrastive::geometric_consistency_backward(vt, ut, saved, gv, gu, o);
  return {double(saved.loss), gv.template cast<double>(), gu.template cast<double>(), mat(), mat(),
          saved.algorithm};
}

template <class T>
run_result run_gca(const mat& v, const mat& u, const mat& va, const mat& ua,
                   const geometric_consistency_options& o) {
  const rmat<T> vt = v.cast<T>(), ut = u.cast<T>(), vat = va.cast<T>(), uat = ua.cast<T>();
  rmat<T> gv(v.rows(), v.cols()), gu(v.rows(), v.cols()), gva(v.rows(), v.cols()),
      gua(v.rows(), v.cols());
  const auto saved = contrastive::geometric_consistency_augmented_forward(vt, ut, vat, uat, o);
  contrastive::geometric_consistency_augmented_backward(vt, ut, vat, uat, saved, gv, gu, gva, gua,
                                                        o);
  return {double(saved.loss),          gv.template cast<double>(),  gu.template cast<double>(),
          gva.template cast<double>(), gua.template cast<double>(), saved.algorithm};
}

mat unit(Eigen::Index n, Eigen::Index d, std::uint32_t seed) {
  return ref::normalized_rows(ref::random_matrix(n, d, seed));
}

bool close(double got, double want, double tol) {
  return std::abs(got - want) <= tol * std::max(1.0, std::abs(want));
}

const gc_algorithm kAlgorithms[] = {gc_algorithm::naive, gc_algorithm::gram,
                                    gc_algorithm::gram_split};

}  // namespace

TEMPLATE_TEST_CASE("geometric_consistency: naive, gram and gram_split equal plain loops",
                   "[geometric_consistency]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 2e-5 : 1e-12;
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh :
       {shape{1, 1}, shape{2, 3}, shape{5, 4}, shape{37, 8}, shape{130, 17}, shape{9, 40}}) {
    const mat v = unit(sh.n, sh.d, 3 + std::uint32_t(sh.n));
    const mat u = unit(sh.n, sh.d, 71 + std::uint32_t(sh.n));
    for (const double wx : {1.0, 0.0, 0.7}) {
      const double wi = wx == 0.7 ? 0.2 : 1.0;
      const loops_result want = loops_gc(v, u, wx, wi);
      for (const gc_algorithm alg : kAlgorithms) {
        for (const Eigen::Index chunk :
             {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64), sh.n, sh.n + 5}) {
          geometric_consistency_options o;
          o.cross_modal_weight = wx;
          o.in_modal_weight = wi;
          o.algorithm = alg;
          o.tile_rows = chunk;
          CAPTURE(sh.n, sh.d, wx, wi, int(alg), chunk);
          const run_result got = run_gc<TestType>(v, u, o);
          CHECK(close(got.loss, want.loss, tol));
          CHECK(ref::max_rel_diff(got.gv, want.gv) <= tol * 10);
          CHECK(ref::max_rel_diff(got.gu, want.gu) <= tol * 10);
          if (alg == gc_algorithm::gram && wx != wi)
            CHECK(got.algorithm == gc_algorithm::gram_split);
          if (alg != gc_algorithm::gram) CHECK(got.algorithm == alg);
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("geometric_consistency_augmented: naive, gram and gram_split equal plain loops",
                   "[geometric_consistency]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 2e-5 : 1e-12;
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh :
       {shape{1, 1}, shape{2, 3}, shape{5, 4}, shape{37, 8}, shape{70, 17}, shape{6, 20}}) {
    const mat v = unit(sh.n, sh.d, 5), u = unit(sh.n, sh.d, 6);
    const mat va = unit(sh.n, sh.d, 7), ua = unit(sh.n, sh.d, 8);
    const loops_result want = loops_gca(v, u, va, ua);
    for (const gc_algorithm alg : kAlgorithms) {
      for (const Eigen::Index chunk :
           {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64), sh.n, sh.n + 5}) {
        geometric_consistency_options o;
        o.algorithm = alg;
        o.tile_rows = chunk;
        CAPTURE(sh.n, sh.d, int(alg), chunk);
        const run_result got = run_gca<TestType>(v, u, va, ua, o);
        CHECK(close(got.loss, want.loss, tol));
        CHECK(ref::max_rel_diff(got.gv, want.gv) <= tol * 10);
        CHECK(ref::max_rel_diff(got.gu, want.gu) <= tol * 10);
        CHECK(ref::max_rel_diff(got.gva, want.gva) <= tol * 10);
        CHECK(ref::max_rel_diff(got.gua, want.gua) <= tol * 10);
      }
    }
  }
}

TEST_CASE("geometric_consistency: finite differences (double)",
          "[geometric_consistency][gradient]") {
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{1, 1}, shape{2, 3}, shape{5, 4}, shape{5, 1}, shape{7, 3}}) {
    // Raw (non-normalised) inputs: the losses use their inputs as given.
    const mat v = ref::random_matrix(sh.n, sh.d, 21), u = ref::random_matrix(sh.n, sh.d, 22);
    for (const gc_algorithm alg : kAlgorithms) {
      geometric_consistency_options o;
      o.algorithm = alg;
      o.tile_rows = 2;
      o.cross_modal_weight = 0.6;
      o.in_modal_weight = alg == gc_algorithm::gram ? 0.6 : 1.3;
      CAPTURE(sh.n, sh.d, int(alg));
      const run_result got = run_gc<double>(v, u, o);
      auto loss = [&](const mat& a, const mat& b) {
        const rmat<double> ar = a, br = b;
        return contrastive::geometric_consistency_forward(ar, br, o).loss;
      };
      CHECK(ct::gradcheck(ref::mat(v), got.gv, [&](const mat& x) { return loss(x, u); }));
      CHECK(ct::gradcheck(ref::mat(u), got.gu, [&](const mat& x) { return loss(v, x); }));
    }
  }
}

TEST_CASE("geometric_consistency_augmented: finite differences (double)",
          "[geometric_consistency][gradient]") {
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{1, 1}, shape{2, 3}, shape{5, 4}, shape{6, 2}}) {
    const mat v = ref::random_matrix(sh.n, sh.d, 31), u = ref::random_matrix(sh.n, sh.d, 32);
    const mat va = ref::random_matrix(sh.n, sh.d, 33), ua = ref::random_matrix(sh.n, sh.d, 34);
    for (const gc_algorithm alg : kAlgorithms) {
      geometric_consistency_options o;
      o.algorithm = alg;
      o.tile_rows = 4;
      CAPTURE(sh.n, sh.d, int(alg));
      const run_result got = run_gca<double>(v, u, va, ua, o);
      auto loss = [&](const mat& a, const mat& b, const mat& c, const mat& e) {
        const rmat<double> ar = a, br = b, cr = c, er = e;
        return contrastive::geometric_consistency_augmented_forward(ar, br, cr, er, o).loss;
      };
      CHECK(ct::gradcheck(ref::mat(v), got.gv, [&](const mat& x) { return loss(x, u, va, ua); }));
      CHECK(ct::gradcheck(ref::mat(u), got.gu, [&](const mat& x) { return loss(v, x, va, ua); }));
      CHECK(ct::gradcheck(ref::mat(va), got.gva, [&](const mat& x) { return loss(v, u, x, ua); }));
      CHECK(ct::gradcheck(ref::mat(ua), got.gua, [&](const mat& x) { return loss(v, u, va, x); }));
    }
  }
}

TEST_CASE("geometric_consistency: identities", "[geometric_consistency]") {
  const Eigen::Index n = 23, d = 6;
  const mat v = unit(n, d, 41), u = unit(n, d, 42), va = unit(n, d, 43), ua = unit(n, d, 44);
  for (const gc_algorithm alg : kAlgorithms) {
    geometric_consistency_options o;
    o.algorithm = alg;
    o.tile_rows = 5;
    CAPTURE(int(alg));
    // Identical modalities: zero loss and zero gradients.
    const run_result same = run_gc<double>(v, v, o);
    CHECK(std::abs(same.loss) < 1e-13);
    CHECK(same.gv.cwiseAbs().maxCoeff() < 1e-13);
    CHECK(same.gu.cwiseAbs().maxCoeff() < 1e-13);
    // Symmetric in the two modalities.
    const run_result vu = run_gc<double>(v, u, o), uv = run_gc<double>(u, v, o);
    CHECK(vu.loss > 0.1);
    CHECK(uv.loss == Approx(vu.loss).epsilon(1e-12));
    // Invariant under a joint rotation and a joint row permutation.
    const mat rot = Eigen::HouseholderQR<mat>(ref::random_matrix(d, d, 45)).householderQ();
    CHECK(run_gc<double>(v * rot, u * rot, o).loss == Approx(vu.loss).epsilon(1e-12));
    std::vector<int> perm(static_cast<std::size_t>(n));
    std::iota(perm.begin(), perm.end(), 0);
    std::reverse(perm.begin(), perm.begin() + 10);
    std::rotate(perm.begin(), perm.begin() + 7, perm.end());
    mat vp(n, d), up(n, d);
    for (Eigen::Index j = 0; j < n; ++j) {
      vp.row(j) = v.row(perm[static_cast<std::size_t>(j)]);
      up.row(j) = u.row(perm[static_cast<std::size_t>(j)]);
    }
    CHECK(run_gc<double>(vp, up, o).loss == Approx(vu.loss).epsilon(1e-12));
    // Augmented views equal to the originals: zero.
    const run_result aug0 = run_gca<double>(v, u, v, u, o);
    CHECK(std::abs(aug0.loss) < 1e-13);
    CHECK(aug0.gv.cwiseAbs().maxCoeff() < 1e-13);
    CHECK(aug0.gua.cwiseAbs().maxCoeff() < 1e-13);
    const run_result aug = run_gca<double>(v, u, va, ua, o);
    CHECK(aug.loss > 0.1);
    CHECK(run_gca<double>(v * rot, u * rot, va * rot, ua * rot, o).loss ==
          Approx(aug.loss).epsilon(1e-12));
  }
}

TEST_CASE("geometric_consistency: automatic choice by shape, forcing either path",
          "[geometric_consistency]") {
  geometric_consistency_options o;
  CHECK(run_gc<double>(unit(20, 4, 1), unit(20, 4, 2), o).algorithm == gc_algorithm::gram);
  CHECK(run_gc<double>(unit(4, 20, 1), unit(4, 20, 2), o).algorithm == gc_algorithm::naive);
  CHECK(run_gc<double>(unit(4, 4, 1), unit(4, 4, 2), o).algorithm == gc_algorithm::naive);
  o.cross_modal_weight = 0.5;  // unequal weights: the three-Gram form
  CHECK(run_gc<double>(unit(20, 4, 1), unit(20, 4, 2), o).algorithm == gc_algorithm::gram_split);
  o.algorithm = gc_algorithm::naive;
  CHECK(run_gc<double>(unit(20, 4, 1), unit(20, 4, 2), o).algorithm == gc_algorithm::naive);
  o.algorithm = gc_algorithm::gram;
  o.cross_modal_weight = 1;
  CHECK(run_gc<double>(unit(4, 20, 1), unit(4, 20, 2), o).algorithm == gc_algorithm::gram);
  CHECK(run_gca<double>(unit(4, 20, 1), unit(4, 20, 2), unit(4, 20, 3), unit(4, 20, 4), o)
            .algorithm == gc_algorithm::gram);
}

TEST_CASE("geometric_consistency: the P/Q form keeps float accuracy when V is close to U",
          "[geometric_consistency]") {
  const Eigen::Index n = 64, d = 8;
  const mat v = unit(n, d, 51);
  const mat u = ref::normalized_rows(v + 1e-3 * ref::random_matrix(n, d, 52));
  const loops_result want = loops_gc(v, u);
  geometric_consistency_options o;
  o.algorithm = gc_algorithm::gram;
  const run_result got = run_gc<float>(v, u, o);
  CHECK(std::abs(got.loss - want.loss) <= 1e-4 * want.loss);
  CHECK(ref::max_rel_diff(got.gv, want.gv) <= 1e-4);
}

TEST_CASE("geometric_consistency: detach flags, accumulate and upstream",
          "[geometric_consistency]") {
  const Eigen::Index n = 9, d = 4;
  const mat v = unit(n, d, 61), u = unit(n, d, 62), va = unit(n, d, 63), ua = unit(n, d, 64);
  const loops_result want = loops_gca(v, u, va, ua);
  for (const gc_algorithm alg : kAlgorithms) {
    geometric_consistency_options o;
    o.algorithm = alg;
    o.tile_rows = 4;
    o.detach_a_aug = true;
    CAPTURE(int(alg));
    const rmat<double> vr = v, ur = u, var = va, uar = ua;
    rmat<double> gv = rmat<double>::Constant(n, d, 7), gu = gv, gva = gv, gua = gv;
    const auto saved = contrastive::geometric_consistency_augmented_forward(vr, ur, var, uar, o);
    contrastive::geometric_consistency_augmented_backward(vr, ur, var, uar, saved, gv, gu, gva, gua,
                                                          o);
    CHECK(gva.cwiseAbs().maxCoeff() == 0);
    CHECK(ref::max_rel_diff(gv, want.gv) <= 1e-12);
    CHECK(ref::max_rel_diff(gua, want.gua) <= 1e-12);
    o.detach_a_aug = false;
    o.detach_b_aug = true;
    o.accumulate = true;
    gv.setConstant(1);
    gu.setConstant(1);
    gva.setConstant(1);
    gua.setConstant(1);
    contrastive::geometric_consistency_augmented_backward(vr, ur, var, uar, saved, gv, gu, gva, gua,
                                                          o, 2.5);
    CHECK(ref::max_rel_diff(mat(gv.array() - 1), 2.5 * want.gv) <= 1e-12);
    CHECK(ref::max_rel_diff(mat(gva.array() - 1), 2.5 * want.gva) <= 1e-12);
    CHECK((gua.array() == 1).all());
  }
}

TEST_CASE("geometric_consistency: accumulate and upstream (L_GC)", "[geometric_consistency]") {
  const Eigen::Index n = 10, d = 3;
  const mat v = unit(n, d, 65), u = unit(n, d, 66);
  for (const gc_algorithm alg : kAlgorithms) {
    for (const double wi : {1.0, 0.3}) {
      geometric_consistency_options o;
      o.algorithm = alg;
      o.tile_rows = 3;
      o.in_modal_weight = wi;
      CAPTURE(int(alg), wi);
      const loops_result want = loops_gc(v, u, 1.0, wi);
      const rmat<double> vr = v, ur = u;
      const auto saved = contrastive::geometric_consistency_forward(vr, ur, o);
      rmat<double> gv = rmat<double>::Constant(n, d, 1), gu = gv;
      contrastive::geometric_consistency_backward(vr, ur, saved, gv, gu, o, -1.5);
      CHECK(ref::max_rel_diff(gv, -1.5 * want.gv) <= 1e-12);
      o.accumulate = true;
      gv.setConstant(1);
      gu.setConstant(1);
      contrastive::geometric_consistency_backward(vr, ur, saved, gv, gu, o, -1.5);
      CHECK(ref::max_rel_diff(mat(gv.array() - 1), -1.5 * want.gv) <= 1e-12);
      CHECK(ref::max_rel_diff(mat(gu.array() - 1), -1.5 * want.gu) <= 1e-12);
    }
  }
}

TEST_CASE("geometric_consistency: strided and column-major tensors, workspace",
          "[geometric_consistency]") {
  const Eigen::Index n = 29, d = 5;
  const mat v = unit(n, d, 71), u = unit(n, d, 72);
  const loops_result want = loops_gc(v, u);
  for (const gc_algorithm alg : kAlgorithms) {
    geometric_consistency_options o;
    o.algorithm = alg;
    o.tile_rows = 6;
    CAPTURE(int(alg));
    const Eigen::MatrixXd vc = v, uc = u;  // column-major
    Eigen::MatrixXd big_v(n, 2 * d), gu(n, d);
    big_v.setConstant(-3);
    const auto saved = contrastive::geometric_consistency_forward(vc, uc, o);
    contrastive::geometric_consistency_backward(vc, uc, saved, big_v.leftCols(d), gu, o);
    CHECK(double(saved.loss) == Approx(want.loss).epsilon(1e-12));
    CHECK(ref::max_rel_diff(big_v.leftCols(d), want.gv) <= 1e-12);
    CHECK((big_v.rightCols(d).array() == -3).all());
    CHECK(ref::max_rel_diff(gu, want.gu) <= 1e-12);
    // A caller workspace of the queried size gives the same bits; a short one is refused.
    const std::size_t bytes = contrastive::geometric_consistency_workspace_bytes<double>(n, d, o);
    std::vector<unsigned char> buf(bytes);
    const contrastive::workspace ws{buf.data(), buf.size()};
    const rmat<double> vr = v, ur = u;
    rmat<double> g1(n, d), g2(n, d), h1(n, d), h2(n, d);
    const auto s1 = contrastive::geometric_consistency_forward(vr, ur, o, ws);
    contrastive::geometric_consistency_backward(vr, ur, s1, g1, g2, o, 1.0, ws);
    const auto s2 = contrastive::geometric_consistency_forward(vr, ur, o);
    contrastive::geometric_consistency_backward(vr, ur, s2, h1, h2, o);
    CHECK(s1.loss == s2.loss);
    CHECK(g1 == h1);
    CHECK(g2 == h2);
    if (alg != gc_algorithm::naive) {
      const contrastive::workspace small{buf.data(), bytes / 2};
      CHECK_THROWS_AS(contrastive::geometric_consistency_forward(vr, ur, o, small),
                      contrastive::invalid_argument);
    }
  }
}

TEST_CASE("geometric_consistency: results do not depend on the thread count",
          "[geometric_consistency]") {
  const Eigen::Index n = 2000, d = 32;  // above the size where threads are used at all
  const rmat<float> v = unit(n, d, 81).cast<float>(), u = unit(n, d, 82).cast<float>();
  const rmat<float> va = unit(n, d, 83).cast<float>(), ua = unit(n, d, 84).cast<float>();
  rmat<float> ref_gv(n, d), ref_gu(n, d), gv(n, d), gu(n, d);
  rmat<float> a1(n, d), a2(n, d), a3(n, d), a4(n, d), b1(n, d), b2(n, d), b3(n, d), b4(n, d);
  for (const gc_algorithm alg : {gc_algorithm::gram, gc_algorithm::gram_split}) {
    geometric_consistency_options o;
    o.algorithm = alg;
    o.tile_rows = 32;
    o.num_threads = 1;
    const float l1 = contrastive::geometric_consistency_forward_backward(v, u, ref_gv, ref_gu, o);
    const float m1 = contrastive::geometric_consistency_augmented_forward_backward(v, u, va, ua, a1,
                                                                                   a2, a3, a4, o);
    for (const int threads : {2, 3, 4}) {
      o.num_threads = threads;
      CAPTURE(int(alg), threads);
      CHECK(contrastive::geometric_consistency_forward_backward(v, u, gv, gu, o) == l1);
      CHECK(gv == ref_gv);
      CHECK(gu == ref_gu);
      CHECK(contrastive::geometric_consistency_augmented_forward_backward(v, u, va, ua, b1, b2, b3,
                                                                          b4, o) == m1);
      CHECK((b1 == a1 && b2 == a2 && b3 == a3 && b4 == a4));
    }
  }
}

TEST_CASE("geometric_consistency: bad input throws contrastive::invalid_argument",
          "[geometric_consistency][errors]") {
  const Eigen::Index n = 12, d = 4;
  for (const gc_algorithm alg : kAlgorithms) {
    geometric_consistency_options o;
    o.algorithm = alg;
    o.tile_rows = 5;
    CAPTURE(int(alg));
    const rmat<double> v = unit(n, d, 91), u = unit(n, d, 92);
    rmat<double> gv(n, d), gu(n, d), gva(n, d), gua(n, d);
    using contrastive::invalid_argument;
    // Shape mismatch.
    const rmat<double> short_u = unit(n - 1, d, 93), narrow_u = unit(n, d - 1, 94);
    CHECK_THROWS_AS(contrastive::geometric_consistency_forward(v, short_u, o), invalid_argument);
    CHECK_THROWS_AS(contrastive::geometric_consistency_forward(v, narrow_u, o), invalid_argument);
    CHECK_THROWS_AS(contrastive::geometric_consistency_augmented_forward(v, u, v, short_u, o),
                    invalid_argument);
    const rmat<double> empty(0, d);
    CHECK_THROWS_AS(contrastive::geometric_consistency_forward(empty, empty, o), invalid_argument);
    // Zero-norm rows and non-finite values, in every input, on both passes.
    const auto saved = contrastive::geometric_consistency_forward(v, u, o);
    const auto saved_a = contrastive::geometric_consistency_augmented_forward(v, u, v, u, o);
    for (const int which : {0, 1}) {
      for (const double bad : {0.0, std::numeric_limits<double>::quiet_NaN(),
                               std::numeric_limits<double>::infinity()}) {
        rmat<double> x = which == 0 ? v : u;
        if (bad == 0.0) {
          x.row(7).setZero();
        } else {
          x(7, 2) = bad;
        }
        const rmat<double>& a = which == 0 ? x : v;
        const rmat<double>& b = which == 0 ? u : x;
        CAPTURE(which, bad);
        // A throwing backward leaves every gradient output as it was (poisoned here).
        for (rmat<double>* g : {&gv, &gu, &gva, &gua}) g->setConstant(7.25);
        CHECK_THROWS_AS(contrastive::geometric_consistency_forward(a, b, o), invalid_argument);
        CHECK_THROWS_AS(contrastive::geometric_consistency_backward(a, b, saved, gv, gu, o),
                        invalid_argument);
        CHECK_THROWS_AS(contrastive::geometric_consistency_augmented_forward(v, u, a, b, o),
                        invalid_argument);
        CHECK_THROWS_AS(contrastive::geometric_consistency_augmented_backward(v, u, a, b, saved_a,
                                                                              gv, gu, gva, gua, o),
                        invalid_argument);
        for (const rmat<double>* g : {&gv, &gu, &gva, &gua}) CHECK((g->array() == 7.25).all());
      }
    }
    // The message names the function, the argument and the row.
    rmat<double> z = u;
    z.row(3).setZero();
    try {
      contrastive::geometric_consistency_forward(v, z, o);
      FAIL("no exception");
    } catch (const invalid_argument& e) {
      const std::string msg = e.what();
      CHECK(msg.find("geometric_consistency_forward") != std::string::npos);
      CHECK(msg.find("'b'") != std::string::npos);
      CHECK(msg.find("row 3") != std::string::npos);
    }
    // Options, upstream, saved state and outputs.
    geometric_consistency_options bad_o = o;
    bad_o.cross_modal_weight = -1;
    CHECK_THROWS_AS(contrastive::geometric_consistency_forward(v, u, bad_o), invalid_argument);
    bad_o = o;
    bad_o.tile_rows = 0;
    CHECK_THROWS_AS(contrastive::geometric_consistency_forward(v, u, bad_o), invalid_argument);
    CHECK_THROWS_AS(contrastive::geometric_consistency_backward(
                        v, u, saved, gv, gu, o, std::numeric_limits<double>::infinity()),
                    invalid_argument);
    CHECK_THROWS_AS(contrastive::geometric_consistency_backward(v, u, saved_a, gv, gu, o),
                    invalid_argument);
    bad_o = o;
    bad_o.in_modal_weight = 0.5;
    CHECK_THROWS_AS(contrastive::geometric_consistency_backward(v, u, saved, gv, gu, bad_o),
                    invalid_argument);
    const rmat<double> v2 = unit(n + 1, d, 95), u2 = unit(n + 1, d, 96);
    CHECK_THROWS_AS(contrastive::geometric_consistency_backward(v2, u2, saved, gv, gu, o),
                    invalid_argument);
    rmat<double> small_g(n, d + 1);
    CHECK_THROWS_AS(contrastive::geometric_consistency_backward(v, u, saved, small_g, gu, o),
                    invalid_argument);
    CHECK_THROWS_AS(contrastive::geometric_consistency_backward(v, u, saved, gv, gv, o),
                    invalid_argument);
    rmat<double> vv = v;
    CHECK_THROWS_AS(contrastive::geometric_consistency_backward(vv, u, saved, vv, gu, o),
                    invalid_argument);
  }
}
