#include "support/test_config.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/testing/gradcheck.hpp>

#include "support/reference.hpp"

namespace ct = contrastive::testing;

// The gamma-auxiliary loss against a dense reference written straight from
// docs/gamma_nce.md#surrogate-loss (the direct derivative of -s_ii + u~_i Zhat_i), the tests that
// pin the reconstruction down (docs/gamma_nce.md#tests-that-pin-the-reconstruction), SogCLR
// (alpha -> infinity), finite differences with the auxiliary variables held fixed
// (docs/README.md#testing-oracles), the API and every bad input.

namespace {

template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using contrastive::gamma_nce_options;
using contrastive::gamma_rate_source;
using contrastive::gamma_update_order;
using contrastive::normalizer_state;
using ref::mat;

constexpr double deterministic = gamma_nce_options::deterministic;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const contrastive::invalid_argument& e) {
    return e.what();
  }
  return "no exception";
}

// ---------------------------------------------------------------------------------------------
// Dense reference: the surrogate with u~ held fixed, L = c w sum_i (-s_ii + u~_i Zhat_i) per
// direction, and its direct derivative G = dL/dS (no r-form, no log-sum-exp).
struct dense_result {
  double loss = 0;
  mat g;  // dL/dS
  mat ga, gb;
  double dtheta = 0;
  std::vector<double> log_zhat_row, log_zhat_col;
};

struct dense_setup {
  double lambda = 1;
  bool symmetric = true;
  bool pos_in = false;
  bool mean = true;
};

// log Zhat of every anchor, per direction (the mean of exp(s) over N_i).
void dense_log_zhat(const mat& s, bool pos_in, std::vector<double>& row, std::vector<double>& col) {
  const Eigen::Index n = s.rows();
  const double cnt = double(pos_in ? n : n - 1);
  row.assign(n, 0.0);
  col.assign(n, 0.0);
  for (Eigen::Index i = 0; i < n; ++i) {
    double zr = 0, zc = 0;
    for (Eigen::Index j = 0; j < n; ++j) {
      if (j == i && !pos_in) continue;
      zr += std::exp(s(i, j));
      zc += std::exp(s(j, i));
    }
    row[i] = std::log(zr / cnt);
    col[i] = std::log(zc / cnt);
  }
}

dense_result dense_surrogate(const mat& a, const mat& b, const dense_setup& o,
                             const std::vector<double>& u_row, const std::vector<double>& u_col) {
  const Eigen::Index n = a.rows();
  const mat s = o.lambda * a * b.transpose();
  const double cnt = double(o.pos_in ? n : n - 1);
  const double cw = (o.symmetric ? 0.5 : 1.0) * (o.mean ? 1.0 / double(n) : 1.0);
  dense_result r;
  r.g = mat::Zero(n, n);
  dense_log_zhat(s, o.pos_in, r.log_zhat_row, r.log_zhat_col);
  for (Eigen::Index i = 0; i < n; ++i) {
    r.loss += cw * (-s(i, i) + u_row[i] * std::exp(r.log_zhat_row[i]));
    r.g(i, i) -= cw;
    for (Eigen::Index j = 0; j < n; ++j)
      if (j != i || o.pos_in) r.g(i, j) += cw * u_row[i] * std::exp(s(i, j)) / cnt;
  }
  if (o.symmetric) {
    for (Eigen::Index j = 0; j < n; ++j) {
      r.loss += cw * (-s(j, j) + u_col[j] * std::exp(r.log_zhat_col[j]));
      r.g(j, j) -= cw;
      for (Eigen::Index i = 0; i < n; ++i)
        if (i != j || o.pos_in) r.g(i, j) += cw * u_col[j] * std::exp(s(i, j)) / cnt;
    }
  }
  r.ga = o.lambda * r.g * b;
  r.gb = o.lambda * r.g.transpose() * a;
  r.dtheta = (r.g.array() * s.array()).sum();
  return r;
}

double dense_loss_only(const mat& a, const mat& b, const dense_setup& o,
                       const std::vector<double>& ur, const std::vector<double>& uc) {
  return dense_surrogate(a, b, o, ur, uc).loss;
}

/// g_i / alpha exactly as docs/gamma_sampler.md lays out the streams: key = seed, counter = (id, step, dir).
double draw(double alpha, std::uint64_t seed, std::int64_t id, std::uint32_t step, int dir) {
  if (!(alpha < deterministic)) return 1.0;
  return contrastive::gamma_standard(
             alpha, contrastive::philox_stream{seed, std::uint64_t(id), step, std::uint32_t(dir)}) /
         alpha;
}

template <class T>
struct lib_result {
  contrastive::gamma_nce_saved<T> saved;
  mat ga, gb;
  double dtheta = 0;
};

template <class T>
lib_result<T> run(const mat& a, const mat& b, const std::vector<std::int64_t>& ids,
                  normalizer_state* state, const gamma_nce_options& o_in) {
  // These batches are tiny: one thread unless a test asks for more (a thread team per call
  // costs more than the sweep, and much more on a loaded machine).
  gamma_nce_options o = o_in;
  if (o.num_threads == 0) o.num_threads = 1;
  const rmat<T> at = a.cast<T>(), bt = b.cast<T>();
  rmat<T> ga(a.rows(), a.cols()), gb(b.rows(), b.cols());
  contrastive::temperature_gradient tg;
  lib_result<T> r;
  if (state)
    r.saved = contrastive::gamma_nce_forward(at, bt, ids, *state, o);
  else
    r.saved = contrastive::gamma_nce_forward(at, bt, ids, o);
  tg = contrastive::gamma_nce_backward(at, bt, r.saved, ga, gb, o);
  r.ga = ga.template cast<double>();
  r.gb = gb.template cast<double>();
  r.dtheta = tg.log_scale;
  return r;
}

std::vector<std::int64_t> iota_ids(Eigen::Index n, std::int64_t first = 0) {
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  std::iota(ids.begin(), ids.end(), first);
  return ids;
}

// u~ = (g/alpha) exp(-zeta) from what the library saved.
std::vector<double> fixed_u(const contrastive::gamma_nce_direction<double>& d) {
  std::vector<double> u(d.g.size());
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = d.g[i] * std::exp(-d.zeta[i]);
  return u;
}

}  // namespace

TEMPLATE_TEST_CASE("gamma_nce: tiled equals the dense reference", "[gamma_nce]", float, double) {
  const double tol = std::is_same<TestType, float>::value ? 2e-5 : 1e-12;
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{2, 1}, shape{5, 4}, shape{37, 8}, shape{70, 5}}) {
    const mat a = ref::normalized_rows(ref::random_matrix(sh.n, sh.d, 21 + sh.n));
    const mat b = ref::normalized_rows(ref::random_matrix(sh.n, sh.d, 77 + sh.n));
    std::vector<double> exact_a(sh.n), exact_b(sh.n);
    for (Eigen::Index i = 0; i < sh.n; ++i) {
      exact_a[i] = 0.3 + 0.01 * double(i);
      exact_b[i] = -0.2 + 0.02 * double(i);
    }
    const auto ids = iota_ids(sh.n, 1000);
    for (const bool sym : {false, true}) {
      for (const bool pos_in : {false, true}) {
        for (const auto src :
             {gamma_rate_source::same_batch, gamma_rate_source::exact, gamma_rate_source::state}) {
          for (const double alpha : {1.0, 0.5, deterministic}) {
            gamma_nce_options o;
            o.temperature = 0.4;
            o.symmetric = sym;
            o.positive_in_normaliser = pos_in;
            o.rate_source = src;
            o.alpha = alpha;
            o.seed = 99;
            o.step = 7;
            o.reduction =
                sh.n == 5 ? contrastive::loss_reduction::sum : contrastive::loss_reduction::mean;
            o.exact_log_normalizer_a = exact_a;
            o.exact_log_normalizer_b = exact_b;
            // Independent reference: own log Zhat, own zeta, draws from the sampler.
            dense_setup ds{1.0 / o.temperature, sym, pos_in,
                           o.reduction == contrastive::loss_reduction::mean};
            std::vector<double> lzr, lzc;
            dense_log_zhat(ds.lambda * a * b.transpose(), pos_in, lzr, lzc);
            std::vector<double> ur(sh.n), uc(sh.n);
            for (Eigen::Index i = 0; i < sh.n; ++i) {
              const double zr = src == gamma_rate_source::exact
                                    ? exact_a[i]
                                    : lzr[i];  // fresh state: first visit
              const double zc = src == gamma_rate_source::exact ? exact_b[i] : lzc[i];
              ur[i] = draw(alpha, 99, ids[i], 7, 0) * std::exp(-zr);
              uc[i] = draw(alpha, 99, ids[i], 7, 1) * std::exp(-zc);
            }
            const dense_result want = dense_surrogate(a, b, ds, ur, uc);
            for (const Eigen::Index tile :
                 {Eigen::Index(1), Eigen::Index(3), Eigen::Index(64), sh.n + 5}) {
              o.tile_rows = tile;
              o.tile_cols = tile == 3 ? 64 : tile;
              o.num_threads =
                  1;  // thread teams cost more than these tiny sweeps (threads: see below)
              CAPTURE(sh.n, sh.d, sym, pos_in, int(src), alpha, tile);
              normalizer_state st(2000, 2);
              const auto got =
                  run<TestType>(a, b, ids, src == gamma_rate_source::state ? &st : nullptr, o);
              CHECK(std::abs(double(got.saved.loss) - want.loss) <=
                    tol * std::max(1.0, std::abs(want.loss)));
              ct::gradcheck_options cmp;
              cmp.rtol = tol * 10;  // relative to max(1, max |g|)
              CHECK(ct::compare_gradients(got.ga, want.ga, cmp));
              CHECK(ct::compare_gradients(got.gb, want.gb, cmp));
              CHECK(std::abs(got.dtheta - want.dtheta) <=
                    tol * 10 * std::max(1.0, std::abs(want.dtheta)));
              for (Eigen::Index i = 0; i < sh.n; ++i) {
                CHECK(got.saved.row.log_zhat[i] == Approx(lzr[i]).epsilon(tol).margin(tol));
                CHECK(got.saved.row.g[i] == draw(alpha, 99, ids[i], 7, 0));
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("gamma_nce: the r-form G equals the direct derivative of -s_ii + u~ Zhat",
          "[gamma_nce]") {
  // r_i pn_ij with r_i = u~_i Zhat_i and pn from a stable log-sum-exp, against u~_i e^{s_ij}/|N_i|.
  const Eigen::Index n = 9;
  const mat a = ref::random_matrix(n, 4, 3), b = ref::random_matrix(n, 4, 4);
  const mat s = 1.3 * a * b.transpose();
  std::vector<double> u(n);
  for (Eigen::Index i = 0; i < n; ++i) u[i] = 0.2 + 0.1 * double(i);
  double worst = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    double m = -INFINITY;
    for (Eigen::Index j = 0; j < n; ++j)
      if (j != i) m = std::max(m, s(i, j));
    double sum = 0;
    for (Eigen::Index j = 0; j < n; ++j)
      if (j != i) sum += std::exp(s(i, j) - m);
    const double lse = m + std::log(sum), log_zhat = lse - std::log(double(n - 1));
    const double r = u[i] * std::exp(log_zhat);
    for (Eigen::Index j = 0; j < n; ++j) {
      if (j == i) continue;
      const double rform = r * std::exp(s(i, j) - lse);
      const double direct = u[i] * std::exp(s(i, j)) / double(n - 1);
      worst = std::max(worst, std::abs(rform - direct) / std::abs(direct));
    }
  }
  CHECK(worst < 1e-14);
  // And the library's gradient (r-form) equals the direct-derivative reference at 1e-15 scale.
  gamma_nce_options o;
  o.temperature = 1 / 1.3;
  o.symmetric = false;
  o.rate_source = gamma_rate_source::same_batch;
  o.alpha = 4.0;
  const auto ids = iota_ids(n);
  const auto got = run<double>(a, b, ids, nullptr, o);
  const dense_result want =
      dense_surrogate(a, b, dense_setup{1.3, false, false, true}, fixed_u(got.saved.row), {});
  CHECK(ref::max_rel_diff(got.ga, want.ga) < 1e-14);
  CHECK(ref::max_rel_diff(got.gb, want.gb) < 1e-14);
}

TEST_CASE("gamma_nce: finite differences with the auxiliary variables held fixed",
          "[gamma_nce][fd]") {
  struct shape {
    Eigen::Index n, d;
  };
  int cases = 0;
  for (const shape sh :
       {shape{1, 3}, shape{2, 1}, shape{2, 4}, shape{5, 3}, shape{5, 1}, shape{13, 4}}) {
    for (const double theta : {0.3, 2.0}) {
      for (const bool sym : {false, true}) {
        for (const bool pos_in : {false, true}) {
          if (sh.n == 1 && !pos_in) continue;  // no negatives
          CAPTURE(sh.n, sh.d, theta, sym, pos_in);
          const mat a = ref::normalized_rows(ref::random_matrix(sh.n, sh.d, 5 + sh.n));
          const mat b = ref::normalized_rows(ref::random_matrix(sh.n, sh.d, 9 + sh.d));
          gamma_nce_options o;
          o.temperature = std::exp(-theta);
          o.symmetric = sym;
          o.positive_in_normaliser = pos_in;
          o.alpha = 1.0;
          o.seed = 3;
          o.step = 11;
          o.tile_rows = 3;
          o.tile_cols = 2;
          // State source, second visit, so that zeta is an EMA and not just log Zhat.
          normalizer_state st(sh.n + 3, 2);
          const auto ids = iota_ids(sh.n, 2);
          (void)run<double>(ref::random_matrix(sh.n, sh.d, 1), ref::random_matrix(sh.n, sh.d, 2),
                            ids, &st, o);
          o.step = 12;
          const auto got = run<double>(a, b, ids, &st, o);
          const std::vector<double> ur = fixed_u(got.saved.row);
          const std::vector<double> uc = sym ? fixed_u(got.saved.col) : std::vector<double>();
          dense_setup ds{std::exp(theta), sym, pos_in, true};
          CHECK(ct::gradcheck(mat(a), got.ga,
                              [&](const mat& x) { return dense_loss_only(x, b, ds, ur, uc); }));
          CHECK(ct::gradcheck(mat(b), got.gb,
                              [&](const mat& x) { return dense_loss_only(a, x, ds, ur, uc); }));
          const double h = 1e-6 * std::max(1.0, theta);
          dense_setup dp = ds, dm = ds;
          dp.lambda = std::exp(theta + h);
          dm.lambda = std::exp(theta - h);
          const double ft =
              (dense_loss_only(a, b, dp, ur, uc) - dense_loss_only(a, b, dm, ur, uc)) / (2 * h);
          CHECK(std::abs(got.dtheta - ft) <= 1e-6 * std::max(1.0, std::abs(ft)));
          CHECK(got.saved.temperature_grad().temperature == Approx(-got.dtheta / o.temperature));
          CHECK(double(got.saved.loss) == Approx(dense_loss_only(a, b, ds, ur, uc)).epsilon(1e-13));
          ++cases;
        }
      }
    }
  }
  CHECK(cases == 44);
}

namespace {

// Setting of docs/gamma_nce.md#tests-that-pin-the-reconstruction: one anchor a, its positive p,
// M = 6 fixed negatives; a batch is a pair of
// negatives. Rows 1 and 2 of `a` are other anchors, which do not touch dL/da_0.
struct population {
  mat anchor, positive, negatives;  // 1 x D, 1 x D, 6 x D
  double lambda = 1.5;
  std::vector<std::pair<int, int>> pairs;

  population() {
    anchor = ref::random_matrix(1, 3, 41);
    positive = ref::random_matrix(1, 3, 42);
    negatives = ref::random_matrix(6, 3, 43);
    for (int j = 0; j < 6; ++j)
      for (int k = j + 1; k < 6; ++k) pairs.emplace_back(j, k);
  }
  double log_z() const {  // log mean_m exp s(a, n_m)
    double z = 0;
    for (int m = 0; m < 6; ++m) z += std::exp(lambda * anchor.row(0).dot(negatives.row(m)));
    return std::log(z / 6);
  }
  // grad_a (-s(a,p) + log mean_m exp s(a, n_m))
  Eigen::RowVectorXd gradient() const {
    Eigen::RowVectorXd g = -lambda * positive.row(0);
    double z = 0;
    Eigen::RowVectorXd num = Eigen::RowVectorXd::Zero(3);
    for (int m = 0; m < 6; ++m) {
      const double e = std::exp(lambda * anchor.row(0).dot(negatives.row(m)));
      z += e;
      num += e * negatives.row(m);
    }
    return g + lambda * num / z;
  }
  // The in-batch log-mean-exp gradient (InfoNCE over the negatives of the batch).
  Eigen::RowVectorXd batch_gradient(int j, int k) const {
    const double ej = std::exp(lambda * anchor.row(0).dot(negatives.row(j)));
    const double ek = std::exp(lambda * anchor.row(0).dot(negatives.row(k)));
    return -lambda * positive.row(0) +
           lambda * (ej * negatives.row(j) + ek * negatives.row(k)) / (ej + ek);
  }
  void batch(int j, int k, mat& a, mat& b) const {
    a = mat(3, 3);
    b = mat(3, 3);
    a.row(0) = anchor.row(0);
    a.row(1) = ref::random_matrix(1, 3, 50).row(0);
    a.row(2) = ref::random_matrix(1, 3, 51).row(0);
    b.row(0) = positive.row(0);
    b.row(1) = negatives.row(j);
    b.row(2) = negatives.row(k);
  }
};

}  // namespace

TEST_CASE("gamma_nce 3.5.1: the exact rate gives an unbiased gradient", "[gamma_nce][recon]") {
  const population pop;
  gamma_nce_options o;
  o.temperature = 1 / pop.lambda;
  o.symmetric = false;
  o.reduction = contrastive::loss_reduction::sum;
  o.alpha = deterministic;
  o.rate_source = gamma_rate_source::exact;
  const std::vector<double> exact = {pop.log_z(), 0.0, 0.0};
  o.exact_log_normalizer_a = exact;
  Eigen::RowVectorXd mean = Eigen::RowVectorXd::Zero(3);
  for (const auto& pr : pop.pairs) {
    mat a, b;
    pop.batch(pr.first, pr.second, a, b);
    const auto got = run<double>(a, b, {0, 1, 2}, nullptr, o);
    mean += got.ga.row(0) / double(pop.pairs.size());
  }
  const double err = (mean - pop.gradient()).cwiseAbs().maxCoeff();
  CAPTURE(err);
  CHECK(err < 1e-12);
}

TEST_CASE("gamma_nce 3.5.2: the same-batch rate gives the in-batch (biased) gradient",
          "[gamma_nce][recon]") {
  const population pop;
  gamma_nce_options o;
  o.temperature = 1 / pop.lambda;
  o.symmetric = false;
  o.reduction = contrastive::loss_reduction::sum;
  o.alpha = deterministic;  // g/alpha := 1, the expectation of the draw
  o.rate_source = gamma_rate_source::same_batch;
  Eigen::RowVectorXd mean = Eigen::RowVectorXd::Zero(3);
  double worst = 0;
  for (const auto& pr : pop.pairs) {
    mat a, b;
    pop.batch(pr.first, pr.second, a, b);
    const auto got = run<double>(a, b, {0, 1, 2}, nullptr, o);
    worst = std::max(
        worst, (got.ga.row(0) - pop.batch_gradient(pr.first, pr.second)).cwiseAbs().maxCoeff());
    mean += got.ga.row(0) / double(pop.pairs.size());
    CHECK(got.saved.row.r[0] == 1.0);  // r = exp(log Zhat - log Zhat)
  }
  CHECK(worst < 1e-14);
  // Its average misses the population gradient by far more than test 1's 1e-12: test 1 has power.
  const double miss = (mean - pop.gradient()).cwiseAbs().maxCoeff();
  CAPTURE(miss);
  CHECK(miss > 1e-3);
}

TEST_CASE("gamma_nce 3.4: same-batch rate with the positive in the normaliser is InfoNCE / CLIP",
          "[gamma_nce][recon]") {
  for (const bool sym : {false, true}) {
    for (const Eigen::Index n : {Eigen::Index(1), Eigen::Index(4), Eigen::Index(23)}) {
      CAPTURE(sym, n);
      const mat a = ref::normalized_rows(ref::random_matrix(n, 6, 60 + n));
      const mat b = ref::normalized_rows(ref::random_matrix(n, 6, 61 + n));
      gamma_nce_options o;
      o.temperature = 0.15;
      o.symmetric = sym;
      o.positive_in_normaliser = true;
      o.rate_source = gamma_rate_source::same_batch;
      o.alpha = deterministic;
      o.tile_rows = o.tile_cols = 5;
      const auto got = run<double>(a, b, iota_ids(n), nullptr, o);
      contrastive::info_nce_options io;
      io.temperature = 0.15;
      io.symmetric = sym;
      io.num_threads = 1;
      const rmat<double> ar = a, br = b;
      rmat<double> ga(n, 6), gb(n, 6);
      contrastive::temperature_gradient tg;
      const double loss = contrastive::info_nce_forward_backward(ar, br, ga, gb, io, &tg);
      CHECK(ref::max_rel_diff(got.ga, ga) < 1e-13);
      CHECK(ref::max_rel_diff(got.gb, gb) < 1e-13);
      CHECK(got.dtheta == Approx(tg.log_scale).epsilon(1e-12).margin(1e-14));
      // The monitoring value is the InfoNCE / CLIP loss itself.
      CHECK(got.saved.info_nce == Approx(loss).epsilon(1e-13));
    }
  }
}

TEST_CASE("gamma_nce: the reported InfoNCE and rate losses", "[gamma_nce]") {
  const Eigen::Index n = 11;
  const mat a = ref::normalized_rows(ref::random_matrix(n, 5, 70));
  const mat b = ref::normalized_rows(ref::random_matrix(n, 5, 71));
  for (const bool sym : {false, true}) {
    gamma_nce_options o;
    o.temperature = 0.3;
    o.symmetric = sym;
    normalizer_state st(n, 2);
    const auto ids = iota_ids(n);
    (void)run<double>(ref::normalized_rows(ref::random_matrix(n, 5, 72)), b, ids, &st, o);
    const auto got = run<double>(a, b, ids, &st, o);
    contrastive::info_nce_options io;
    io.temperature = 0.3;
    io.symmetric = sym;
    CHECK(got.saved.info_nce ==
          Approx(contrastive::info_nce_forward(rmat<double>(a), rmat<double>(b), io).loss)
              .epsilon(1e-13));
    const mat s = (a * b.transpose()) / 0.3;
    double want = 0;
    for (Eigen::Index i = 0; i < n; ++i) {
      want += (sym ? 0.5 : 1.0) * (got.saved.row.zeta[i] - s(i, i)) / double(n);
      if (sym) want += 0.5 * (got.saved.col.zeta[i] - s(i, i)) / double(n);
    }
    CHECK(got.saved.rate_loss == Approx(want).epsilon(1e-13));
  }
}

TEST_CASE(
    "gamma_nce 3.5.3: stochastic draws with the exact rate average to the population gradient",
    "[gamma_nce][recon][statistics]") {
  const population pop;
  const Eigen::RowVectorXd want = pop.gradient();
  const std::vector<double> exact = {pop.log_z(), 0.0, 0.0};
  for (const double alpha : {1.0, 4.0}) {
    CAPTURE(alpha);
    gamma_nce_options o;
    o.temperature = 1 / pop.lambda;
    o.symmetric = false;
    o.reduction = contrastive::loss_reduction::sum;
    o.alpha = alpha;
    o.seed = 2022;
    o.num_threads = 1;  // 2e5 calls on 3 x 3 batches: no thread team
    o.rate_source = gamma_rate_source::exact;
    o.exact_log_normalizer_a = exact;
    std::vector<mat> as(pop.pairs.size()), bs(pop.pairs.size());
    for (std::size_t k = 0; k < pop.pairs.size(); ++k)
      pop.batch(pop.pairs[k].first, pop.pairs[k].second, as[k], bs[k]);
    std::vector<rmat<double>> ar(as.begin(), as.end()), br(bs.begin(), bs.end());
    rmat<double> ga(3, 3), gb(3, 3);
    const std::vector<std::int64_t> ids = {0, 1, 2};
    std::mt19937 gen(7);
    std::uniform_int_distribution<int> pick(0, int(pop.pairs.size()) - 1);
    const int draws = 100000;
    Eigen::RowVectorXd sum = Eigen::RowVectorXd::Zero(3), sum2 = Eigen::RowVectorXd::Zero(3);
    for (int t = 0; t < draws; ++t) {
      o.step = std::uint32_t(t);
      const int k = pick(gen);
      (void)contrastive::gamma_nce_forward_backward(ar[k], br[k], ids, ga, gb, o);
      const Eigen::RowVectorXd g = ga.row(0);
      sum += g;
      sum2 += g.cwiseProduct(g);
    }
    const Eigen::RowVectorXd mean = sum / draws;
    const Eigen::RowVectorXd var =
        (sum2 / draws - mean.cwiseProduct(mean)) * (double(draws) / (draws - 1));
    for (int c = 0; c < 3; ++c) {
      const double se = std::sqrt(var(c) / draws);
      CAPTURE(c, mean(c), want(c), se);
      CHECK(std::abs(mean(c) - want(c)) < 5 * se);
    }
  }
}

TEST_CASE("gamma_nce 3.4: alpha -> infinity with update-then-sample is SogCLR",
          "[gamma_nce][recon]") {
  // A direct SogCLR computation: linear state u <- (1 - beta) u + beta Zhat (Zhat on the first
  // visit), r = Zhat / u, gradient -grad s_ii + r grad log Zhat (negatives only).
  const std::int64_t data = 12;
  const Eigen::Index n = 5, d = 4;
  const mat emb_a = ref::normalized_rows(ref::random_matrix(data, d, 80));
  const mat emb_b = ref::normalized_rows(ref::random_matrix(data, d, 81));
  for (const bool sym : {false, true}) {
    CAPTURE(sym);
    gamma_nce_options o;
    o.temperature = 0.5;
    o.symmetric = sym;
    o.alpha = deterministic;
    o.beta = 0.35;
    o.tile_rows = o.tile_cols = 2;
    normalizer_state st(data, sym ? 2 : 1);
    std::vector<double> u_lin[2] = {std::vector<double>(data, 0.0), std::vector<double>(data, 0.0)};
    std::mt19937 gen(3);
    for (int step = 0; step < 8; ++step) {
      std::vector<std::int64_t> all(data);
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), gen);
      const std::vector<std::int64_t> ids(all.begin(), all.begin() + n);
      mat a(n, d), b(n, d);
      for (Eigen::Index i = 0; i < n; ++i) {
        a.row(i) = emb_a.row(ids[i]) * (1.0 + 0.05 * step);
        b.row(i) = emb_b.row(ids[i]);
      }
      o.step = std::uint32_t(step);
      const auto got = run<double>(a, b, ids, &st, o);
      // SogCLR by hand.
      const mat s = (a * b.transpose()) / o.temperature;
      std::vector<double> r[2];
      for (int dir = 0; dir < (sym ? 2 : 1); ++dir) {
        r[dir].resize(n);
        for (Eigen::Index i = 0; i < n; ++i) {
          double zhat = 0;
          for (Eigen::Index j = 0; j < n; ++j)
            if (j != i) zhat += std::exp(dir == 0 ? s(i, j) : s(j, i)) / double(n - 1);
          double& u = u_lin[dir][ids[i]];
          u = u == 0.0 ? zhat : (1 - o.beta) * u + o.beta * zhat;
          r[dir][i] = zhat / u;
          CHECK(st.log_normalizer(ids[i], dir) == Approx(std::log(u)).epsilon(1e-13));
        }
      }
      mat g = mat::Zero(n, n);
      const double c = sym ? 0.5 : 1.0;
      for (Eigen::Index i = 0; i < n; ++i) {
        double zr = 0, zc = 0;
        for (Eigen::Index j = 0; j < n; ++j)
          if (j != i) zr += std::exp(s(i, j)), zc += std::exp(s(j, i));
        g(i, i) -= c * (sym ? 2 : 1) / double(n);
        for (Eigen::Index j = 0; j < n; ++j) {
          if (j == i) continue;
          g(i, j) += c * r[0][i] * std::exp(s(i, j)) / zr / double(n);
        }
        if (sym)
          for (Eigen::Index k = 0; k < n; ++k)
            if (k != i) g(k, i) += c * r[1][i] * std::exp(s(k, i)) / zc / double(n);
      }
      for (Eigen::Index i = 0; i < n; ++i) {
        CHECK(got.saved.row.r[i] == Approx(r[0][i]).epsilon(1e-13));
        if (sym) CHECK(got.saved.col.r[i] == Approx(r[1][i]).epsilon(1e-13));
      }
      CHECK(ref::max_rel_diff(got.ga, g * b / o.temperature) < 1e-13);
      CHECK(ref::max_rel_diff(got.gb, g.transpose() * a / o.temperature) < 1e-13);
      // update-then-sample bounds the weights: r <= 1 / beta.
      for (const double x : got.saved.row.r) CHECK(x <= 1 / o.beta + 1e-12);
    }
  }
}

TEST_CASE("gamma_nce: state updates, update order and first visits", "[gamma_nce][state]") {
  const Eigen::Index n = 6, d = 3;
  const mat a1 = ref::normalized_rows(ref::random_matrix(n, d, 90)),
            b1 = ref::normalized_rows(ref::random_matrix(n, d, 91));
  const mat a2 = ref::normalized_rows(ref::random_matrix(n, d, 92)),
            b2 = ref::normalized_rows(ref::random_matrix(n, d, 93));
  const std::vector<std::int64_t> ids = {8, 2, 5, 0, 9, 3};
  for (const auto order :
       {gamma_update_order::update_then_sample, gamma_update_order::sample_then_update}) {
    CAPTURE(int(order));
    gamma_nce_options o;
    o.temperature = 0.5;
    o.beta = 0.6;
    o.alpha = 2.0;
    o.order = order;
    normalizer_state st(10, 2);
    const auto first = run<double>(a1, b1, ids, &st, o);
    for (Eigen::Index i = 0; i < n; ++i) {
      // First visit: zeta = log Zhat in both orders, so r = g/alpha.
      CHECK(first.saved.row.zeta[i] == first.saved.row.log_zhat[i]);
      CHECK(first.saved.row.r[i] == first.saved.row.g[i]);
      CHECK(st.log_normalizer(ids[i], 0) == first.saved.row.log_zhat[i]);
      CHECK(st.log_normalizer(ids[i], 1) == first.saved.col.log_zhat[i]);
    }
    CHECK_FALSE(st.visited(1, 0));
    CHECK_FALSE(st.visited(4, 1));
    const normalizer_state after_first = st;
    o.step = 1;
    const auto second = run<double>(a2, b2, ids, &st, o);
    for (Eigen::Index i = 0; i < n; ++i) {
      const double old_r = after_first.log_normalizer(ids[i], 0);
      const double updated = normalizer_state::ema(old_r, true, second.saved.row.log_zhat[i], 0.6);
      CHECK(st.log_normalizer(ids[i], 0) == updated);
      const double used = order == gamma_update_order::update_then_sample ? updated : old_r;
      CHECK(second.saved.row.zeta[i] == used);
      CHECK(second.saved.row.r[i] ==
            Approx(second.saved.row.g[i] * std::exp(second.saved.row.log_zhat[i] - used))
                .epsilon(1e-15));
      CHECK(second.saved.row.g[i] == draw(2.0, 0, ids[i], 1, 0));
      CHECK(second.saved.col.g[i] == draw(2.0, 0, ids[i], 1, 1));
    }
  }
  // A one-direction loss only needs (and only touches) direction 0.
  gamma_nce_options o;
  o.symmetric = false;
  normalizer_state one(10, 1);
  (void)run<double>(a1, b1, ids, &one, o);
  CHECK(one.visited(8, 0));
}

TEST_CASE("gamma_nce: determinism across tiles, threads and calls; draws change with the step",
          "[gamma_nce]") {
  const Eigen::Index n = 40, d = 8;
  const mat a = ref::normalized_rows(ref::random_matrix(n, d, 100)),
            b = ref::normalized_rows(ref::random_matrix(n, d, 101));
  const auto ids = iota_ids(n, 17);
  gamma_nce_options o;
  o.temperature = 0.2;
  o.seed = 5;
  o.step = 3;
  o.tile_rows = 7;
  o.tile_cols = 9;
  o.num_threads = 1;
  normalizer_state s1(100, 2), s2(100, 2);
  const auto r1 = run<double>(a, b, ids, &s1, o);
  o.num_threads = 2;
  const auto r2 = run<double>(a, b, ids, &s2, o);
  CHECK(r1.saved.loss == r2.saved.loss);
  CHECK((r1.ga.array() == r2.ga.array()).all());
  CHECK((r1.gb.array() == r2.gb.array()).all());
  CHECK(s1 == s2);
  // The draws do not depend on the tiling; only the LSE summation order does.
  o.tile_rows = o.tile_cols = 64;
  normalizer_state s3(100, 2);
  const auto r3 = run<double>(a, b, ids, &s3, o);
  CHECK(r3.saved.row.g == r1.saved.row.g);
  CHECK(r3.saved.col.g == r1.saved.col.g);
  // Another step gives other draws.
  o.step = 4;
  normalizer_state s4(100, 2);
  const auto r4 = run<double>(a, b, ids, &s4, o);
  CHECK(r4.saved.row.g != r1.saved.row.g);
  // Reordering the batch permutes everything along (draws follow the sample id, not the row).
  std::vector<Eigen::Index> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  std::reverse(perm.begin(), perm.end());
  mat ap(n, d), bp(n, d);
  std::vector<std::int64_t> idp(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    ap.row(i) = a.row(perm[i]);
    bp.row(i) = b.row(perm[i]);
    idp[i] = ids[perm[i]];
  }
  o.step = 3;
  normalizer_state s5(100, 2);
  const auto r5 = run<double>(ap, bp, idp, &s5, o);
  for (Eigen::Index i = 0; i < n; ++i) {
    CHECK(r5.saved.row.g[i] == r1.saved.row.g[perm[i]]);
    CHECK(r5.saved.row.r[i] == Approx(r1.saved.row.r[perm[i]]).epsilon(1e-13));
  }
  CHECK(ref::max_rel_diff(r5.ga, r1.ga.colwise().reverse()) < 1e-12);
  for (Eigen::Index i = 0; i < n; ++i)
    CHECK(s5.log_normalizer(ids[i], 0) == Approx(s1.log_normalizer(ids[i], 0)).epsilon(1e-13));
}

TEST_CASE("gamma_nce: float at tau = 1e-3 with logits up to 1e3 stays finite", "[gamma_nce]") {
  const Eigen::Index n = 16, d = 8;
  const rmat<float> a = ref::normalized_rows(ref::random_matrix(n, d, 110)).cast<float>();
  const rmat<float> b = ref::normalized_rows(ref::random_matrix(n, d, 111)).cast<float>();
  rmat<float> ga(n, d), gb(n, d);
  gamma_nce_options o;
  o.temperature = 1e-3;
  normalizer_state st(n, 2);
  const auto ids = iota_ids(n);
  for (std::uint32_t step = 0; step < 3; ++step) {
    o.step = step;
    const auto saved = contrastive::gamma_nce_forward(a, b, ids, st, o);
    contrastive::gamma_nce_backward(a, b, saved, ga, gb, o);
    CHECK(std::isfinite(saved.loss));
    CHECK(std::isfinite(saved.info_nce));
    CHECK(ga.allFinite());
    CHECK(gb.allFinite());
  }
}

TEST_CASE("gamma_nce: forward, backward, upstream, accumulate, workspace and layouts",
          "[gamma_nce][api]") {
  const Eigen::Index n = 12, d = 5;
  const rmat<double> a = ref::random_matrix(n, d, 120), b = ref::random_matrix(n, d, 121);
  const auto ids = iota_ids(n);
  gamma_nce_options o;
  o.temperature = 0.7;
  o.tile_rows = o.tile_cols = 5;
  o.rate_source = gamma_rate_source::same_batch;
  const auto saved = contrastive::gamma_nce_forward(a, b, ids, o);
  CHECK(saved.row.r.size() == std::size_t(n));
  CHECK(saved.col.r.size() == std::size_t(n));
  rmat<double> ga(n, d), gb(n, d);
  const auto tg = contrastive::gamma_nce_backward(a, b, saved, ga, gb, o);
  CHECK(tg.log_scale == saved.grad_log_scale);
  CHECK(tg.scale == Approx(saved.grad_log_scale * o.temperature));

  SECTION("upstream scales everything") {
    rmat<double> ga3(n, d), gb3(n, d);
    const auto tg3 = contrastive::gamma_nce_backward(a, b, saved, ga3, gb3, o, -2.5);
    CHECK(ref::max_rel_diff(ga3, -2.5 * ga) < 1e-14);
    CHECK(ref::max_rel_diff(gb3, -2.5 * gb) < 1e-14);
    CHECK(tg3.log_scale == Approx(-2.5 * tg.log_scale));
  }
  SECTION("accumulate adds instead of overwriting") {
    gamma_nce_options acc = o;
    acc.accumulate = true;
    rmat<double> ga2 = rmat<double>::Constant(n, d, 1.5), gb2 = rmat<double>::Constant(n, d, -2.0);
    contrastive::gamma_nce_backward(a, b, saved, ga2, gb2, acc);
    CHECK(ref::max_rel_diff(ga2.array() - 1.5, ga) < 1e-14);
    CHECK(ref::max_rel_diff(gb2.array() + 2.0, gb) < 1e-14);
  }
  SECTION("a caller workspace of the queried size gives identical results") {
    const std::size_t bytes = contrastive::gamma_nce_workspace_bytes<double>(n, d, o);
    CHECK(bytes == contrastive::gamma_nce_workspace_bytes(a, b, o));
    std::vector<unsigned char> buf(bytes);
    const contrastive::workspace ws{buf.data(), buf.size()};
    const auto s2 = contrastive::gamma_nce_forward(a, b, ids, o, ws);
    CHECK(s2.loss == saved.loss);
    rmat<double> ga2(n, d), gb2(n, d);
    contrastive::gamma_nce_backward(a, b, s2, ga2, gb2, o, 1.0, ws);
    CHECK((ga2.array() == ga.array()).all());
    CHECK((gb2.array() == gb.array()).all());
    const contrastive::workspace small{buf.data(), 64};
    CHECK_THAT(message_of([&] { contrastive::gamma_nce_forward(a, b, ids, o, small); }),
               Catch::Contains("workspace has 64 bytes, the call needs"));
    CHECK_THROWS_AS(contrastive::gamma_nce_backward(a, b, s2, ga2, gb2, o, 1.0, small),
                    contrastive::invalid_argument);
    const contrastive::workspace one_short{buf.data(), bytes - 1};  // the larger of the two fails
    const bool fwd_fails = message_of([&] {
                             contrastive::gamma_nce_forward(a, b, ids, o, one_short);
                           }) != "no exception";
    const bool bwd_fails = message_of([&] {
                             contrastive::gamma_nce_backward(a, b, s2, ga2, gb2, o, 1.0, one_short);
                           }) != "no exception";
    CHECK((fwd_fails || bwd_fails));
  }
  SECTION("workspace grows linearly in N (no N x N term)") {
    const std::size_t w1 = contrastive::gamma_nce_workspace_bytes<float>(1 << 14, 512, o);
    const std::size_t w2 = contrastive::gamma_nce_workspace_bytes<float>(1 << 16, 512, o);
    CHECK(w2 < 4 * w1 + 4096);
  }
  SECTION("column-major, strided and Block layouts give bitwise identical results") {
    const Eigen::MatrixXd ac = a, bc = b;
    Eigen::MatrixXd gac(n, d), gbc(n, d);
    contrastive::gamma_nce_parameter_gradients pg;
    const double lc = contrastive::gamma_nce_forward_backward(ac, bc, ids, gac, gbc, o, &pg);
    CHECK(lc == saved.loss);
    CHECK(pg.log_scale == contrastive::gamma_nce_backward(a, b, saved, ga, gb, o).log_scale);
    CHECK((gac.array() == ga.array()).all());
    CHECK((gbc.array() == gb.array()).all());
    std::vector<double> wide(2 * n * d), gwide(2 * n * d, 0.0);
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < d; ++j) wide[(i * d + j) * 2] = a(i, j);
    const auto va = contrastive::make_view(static_cast<const double*>(wide.data()), n, d, 2 * d, 2);
    const auto vga = contrastive::make_view(gwide.data(), n, d, 2 * d, 2);
    rmat<double> big = rmat<double>::Zero(n, d + 3);
    (void)contrastive::gamma_nce_forward_backward(va, b, ids, vga, big.rightCols(d), o);
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j < d; ++j) CHECK(gwide[(i * d + j) * 2] == ga(i, j));
    CHECK((big.rightCols(d).array() == gb.array()).all());
    CHECK(big.leftCols(3).cwiseAbs().maxCoeff() == 0.0);
  }
}

TEST_CASE("gamma_nce: bad input throws and leaves the state unchanged", "[gamma_nce][errors]") {
  using contrastive::invalid_argument;
  const Eigen::Index n = 4, d = 3;
  const rmat<double> a = ref::random_matrix(n, d, 1), b = ref::random_matrix(n, d, 2);
  rmat<double> ga(n, d), gb(n, d);
  const std::vector<std::int64_t> ids = {3, 1, 0, 2};
  normalizer_state st(5, 2);
  (void)contrastive::gamma_nce_forward(a, b, ids, st);  // some visited entries
  const normalizer_state before = st;
  gamma_nce_options o;
  const auto saved = contrastive::gamma_nce_forward(a, b, ids, st, o);
  st = before;
  auto fwd = [&](const gamma_nce_options& opt) {
    return message_of([&] { contrastive::gamma_nce_forward(a, b, ids, st, opt); });
  };

  SECTION("shapes, empty batch, D = 0, a single row without negatives") {
    const rmat<double> b2 = ref::random_matrix(n, d + 1, 3);
    CHECK(message_of([&] { contrastive::gamma_nce_forward(a, b2, ids, st); }) ==
          "gamma_nce_forward: 'b' has 4 columns, expected 3 (columns of 'a')");
    const rmat<double> b3 = ref::random_matrix(n + 1, d, 3);
    CHECK_THAT(message_of([&] { contrastive::gamma_nce_forward(a, b3, ids, st); }),
               Catch::Contains("'b' has 5 rows"));
    const rmat<double> e0(0, d), e1(n, 0);
    CHECK_THAT(message_of([&] {
                 contrastive::gamma_nce_forward(e0, e0, std::vector<std::int64_t>{}, st);
               }),
               Catch::Contains("empty batch"));
    CHECK_THAT(message_of([&] { contrastive::gamma_nce_forward(e1, e1, ids, st); }),
               Catch::Contains("0 columns"));
    const rmat<double> one = ref::random_matrix(1, d, 4);
    CHECK(
        message_of(
            [&] { contrastive::gamma_nce_forward(one, one, std::vector<std::int64_t>{0}, st); }) ==
        "gamma_nce_forward: a batch of 1 has no negatives (use N >= 2 or positive_in_normaliser)");
  }
  SECTION("scalar options") {
    for (const double t : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
      gamma_nce_options bad = o;
      bad.temperature = t;
      CHECK_THAT(fwd(bad), Catch::Contains("'temperature' must be finite and > 0"));
    }
    for (const double al : {0.0, -1.0, std::nan("")}) {
      gamma_nce_options bad = o;
      bad.alpha = al;
      CHECK_THAT(fwd(bad), Catch::StartsWith("gamma_nce_forward: 'alpha' must be > 0"));
    }
    for (const double be : {0.0, -0.1, 1.5, std::nan("")}) {
      gamma_nce_options bad = o;
      bad.beta = be;
      CHECK_THAT(fwd(bad), Catch::StartsWith("gamma_nce_forward: 'beta' must lie in (0, 1]"));
    }
    gamma_nce_options bad = o;
    bad.tile_rows = 0;
    CHECK_THAT(fwd(bad), Catch::Contains("tile sizes must be > 0"));
    bad = o;
    bad.rate_source = static_cast<gamma_rate_source>(7);
    CHECK_THAT(fwd(bad), Catch::Contains("'rate_source' has an invalid value (7)"));
    bad = o;
    bad.order = static_cast<gamma_update_order>(-1);
    CHECK_THAT(fwd(bad), Catch::Contains("'order' has an invalid value"));
    bad = o;
    bad.reduction = static_cast<contrastive::loss_reduction>(5);
    CHECK_THAT(fwd(bad), Catch::Contains("'reduction' has an invalid value"));
  }
  SECTION("sample ids") {
    const std::vector<std::int64_t> three = {0, 1, 2};
    CHECK(message_of([&] { contrastive::gamma_nce_forward(a, b, three, st); }) ==
          "gamma_nce_forward: 'ids' has 3 sample ids, expected 4 (one per row)");
    const std::vector<std::int64_t> out = {0, 1, 5, 2};
    CHECK(message_of([&] { contrastive::gamma_nce_forward(a, b, out, st); }) ==
          "gamma_nce_forward: sample id 5 at position 2 is out of range [0, 5) of the "
          "normalizer_state");
    const std::vector<std::int64_t> neg = {0, -1, 3, 2};
    CHECK_THAT(message_of([&] { contrastive::gamma_nce_forward(a, b, neg, st); }),
               Catch::Contains("sample id -1 at position 1 is negative"));
    const std::vector<std::int64_t> dup = {0, 2, 3, 2};
    CHECK(message_of([&] { contrastive::gamma_nce_forward(a, b, dup, st); }) ==
          "gamma_nce_forward: sample id 2 appears twice in the batch (positions 1 and 3); ids must "
          "be "
          "distinct within a batch");
    gamma_nce_options sb = o;
    sb.rate_source = gamma_rate_source::same_batch;
    CHECK_THROWS_AS(contrastive::gamma_nce_forward(a, b, dup, sb),
                    invalid_argument);  // also without a state
    CHECK_THAT(message_of([&] {
                 contrastive::gamma_nce_forward(
                     a, b, contrastive::vector_view<const std::int64_t>(nullptr, 4), st);
               }),
               Catch::Contains("'ids' is a null pointer"));
  }
  SECTION("rate sources") {
    CHECK_THAT(message_of([&] { contrastive::gamma_nce_forward(a, b, ids, o); }),
               Catch::Contains("rate_source::state needs a normalizer_state"));
    normalizer_state one_dir(5, 1);
    CHECK(message_of([&] { contrastive::gamma_nce_forward(a, b, ids, one_dir, o); }) ==
          "gamma_nce_forward: the normalizer_state has 1 direction(s), a symmetric loss needs 2");
    CHECK(one_dir == normalizer_state(5, 1));
    gamma_nce_options ex = o;
    ex.rate_source = gamma_rate_source::exact;
    CHECK_THAT(fwd(ex), Catch::Contains("rate_source::exact needs 'exact_log_normalizer_a'"));
    const std::vector<double> three = {0.0, 0.0, 0.0}, four = {0.0, 0.1, 0.2, 0.3},
                              bad4 = {0.0, std::nan(""), 0.2, 0.3};
    ex.exact_log_normalizer_a = three;
    CHECK_THAT(fwd(ex), Catch::Contains("'exact_log_normalizer_a' has 3 values, expected 4"));
    ex.exact_log_normalizer_a = four;
    CHECK_THAT(fwd(ex), Catch::Contains("'exact_log_normalizer_b'"));
    ex.exact_log_normalizer_b = bad4;
    CHECK(fwd(ex) ==
          "gamma_nce_forward: 'exact_log_normalizer_b' has a non-finite value (nan) at position 1");
    ex.symmetric = false;  // b is not needed for one direction
    CHECK(fwd(ex) == "no exception");
  }
  SECTION("non-finite inputs and overflowing weights") {
    rmat<double> an = a;
    an(2, 1) = std::nan("");
    CHECK(message_of([&] { contrastive::gamma_nce_forward(an, b, ids, st); }) ==
          "gamma_nce_forward: 'a' has a non-finite value (nan) at row 2, column 1");
    CHECK_THROWS_AS(contrastive::gamma_nce_backward(an, b, saved, ga, gb, o), invalid_argument);
    // A rate far below the batch's Zhat with sample_then_update: r overflows, nothing is written.
    normalizer_state tiny(5, 2);
    for (std::int64_t id = 0; id < 5; ++id) tiny.set(id, 0, -1000.0), tiny.set(id, 1, -1000.0);
    const normalizer_state tiny_before = tiny;
    gamma_nce_options stu = o;
    stu.order = gamma_update_order::sample_then_update;
    CHECK_THAT(message_of([&] { contrastive::gamma_nce_forward(a, b, ids, tiny, stu); }),
               Catch::Contains("the loss is not finite"));
    CHECK(tiny == tiny_before);
    const rmat<float> big = rmat<float>::Constant(3, 2, 1e19f);
    CHECK_THAT(message_of([&] {
                 contrastive::gamma_nce_forward(big, big, std::vector<std::int64_t>{0, 1, 2}, st);
               }),
               Catch::Contains("not finite"));
  }
  SECTION("backward: outputs, upstream, saved from another call") {
    rmat<double> g2(n, d + 1);
    CHECK(message_of([&] { contrastive::gamma_nce_backward(a, b, saved, g2, gb, o); }) ==
          "gamma_nce_backward: 'grad_a' is 4 x 4, expected 4 x 3 (the shape of 'a')");
    rmat<double> x = a;
    CHECK_THAT(message_of([&] { contrastive::gamma_nce_backward(x, b, saved, x, gb, o); }),
               Catch::Contains("overlaps"));
    CHECK_THROWS_AS(contrastive::gamma_nce_backward(a, b, saved, ga, ga, o), invalid_argument);
    std::vector<double> one(d);
    const auto v = contrastive::make_view(one.data(), n, d, 0, 1);
    CHECK_THAT(message_of([&] { contrastive::gamma_nce_backward(a, b, saved, v, gb, o); }),
               Catch::Contains("self-overlapping"));
    CHECK_THAT(
        message_of([&] { contrastive::gamma_nce_backward(a, b, saved, ga, gb, o, std::nan("")); }),
        Catch::Contains("'upstream' must be finite"));
    gamma_nce_options other = o;
    other.positive_in_normaliser = true;
    CHECK_THAT(message_of([&] { contrastive::gamma_nce_backward(a, b, saved, ga, gb, other); }),
               Catch::Contains("other options"));
    const rmat<double> a5 = ref::random_matrix(n + 1, d, 7), b5 = ref::random_matrix(n + 1, d, 8);
    rmat<double> g5(n + 1, d), h5(n + 1, d);
    CHECK_THAT(message_of([&] { contrastive::gamma_nce_backward(a5, b5, saved, g5, h5, o); }),
               Catch::Contains("'saved' belongs to a 4 x 3 batch"));
    contrastive::gamma_nce_saved<double> hollow = saved;
    hollow.col.r.clear();
    CHECK_THAT(message_of([&] { contrastive::gamma_nce_backward(a, b, hollow, ga, gb, o); }),
               Catch::Contains("incomplete"));
  }
  SECTION("null data") {
    const auto nv = contrastive::make_view(static_cast<const double*>(nullptr), n, d);
    CHECK_THAT(message_of([&] { contrastive::gamma_nce_forward(nv, b, ids, st); }),
               Catch::Contains("null"));
  }
  CHECK(st == before);
}
