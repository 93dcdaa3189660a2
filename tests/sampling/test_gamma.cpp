#include "support/test_config.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <contrastive/adapters/eigen.hpp>
#include <contrastive/adapters/raw.hpp>
#include <contrastive/sampling/gamma.hpp>

// Known answers, moments and Kolmogorov-Smirnov tests of the gamma sampler
// (docs/gamma_sampler.md).

using contrastive::gamma_params;
using contrastive::philox_stream;

namespace {

// Regularised lower incomplete gamma P(a, x): series for x < a + 1, Lentz's continued fraction
// for Q = 1 - P otherwise (Numerical Recipes' gser/gcf).
double gamma_p(double a, double x) {
  if (x <= 0) return 0.0;
  const double log_prefix = -x + a * std::log(x) - std::lgamma(a);
  if (x < a + 1) {
    double term = 1.0 / a, sum = term;
    for (int n = 1; n < 100000; ++n) {
      term *= x / (a + n);
      sum += term;
      if (std::abs(term) < std::abs(sum) * 1e-16) break;
    }
    return sum * std::exp(log_prefix);
  }
  const double tiny = 1e-300;
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 100000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::abs(del - 1) < 1e-16) break;
  }
  return 1.0 - std::exp(log_prefix) * h;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const contrastive::invalid_argument& e) {
    return e.what();
  }
  return "no exception";
}

}  // namespace

TEST_CASE("gamma sampler: known answers (seed 42, step 0, stream 0)", "[gamma]") {
  struct row {
    double alpha;
    double want[4];
  };
  const row rows[] = {
      {1.0, {0.146842102963, 0.608681614836, 0.427650730545, 0.402195406562}},
      {0.5, {0.0466122502625, 0.224853690093, 0.50223039956, 0.115376302153}},
      {4.0, {2.10498748343, 3.52831234383, 3.05854158427, 2.9865328481}},
  };
  for (const row& r : rows) {
    for (std::uint64_t id = 0; id < 4; ++id) {
      CAPTURE(r.alpha, id);
      std::uint32_t blocks = 0;
      const double g = contrastive::gamma_standard(r.alpha, philox_stream{42, id, 0, 0}, &blocks);
      CHECK(g == Approx(r.want[id]).epsilon(1e-11));
      CHECK(blocks == 1u);  // all accepted at block 0
      CHECK(contrastive::sample_gamma(id, gamma_params{r.alpha, 1.0, 42, 0, 0}) == g);
    }
  }
}

TEST_CASE("gamma sampler: the rejection path at id 17 uses block 1", "[gamma]") {
  std::uint32_t blocks = 0;
  const double g1 = contrastive::gamma_standard(1.0, philox_stream{42, 17, 0, 0}, &blocks);
  CHECK(blocks == 2u);
  CHECK(g1 == Approx(1.69393752248).epsilon(1e-11));
  const double g025 = contrastive::gamma_standard(0.25, philox_stream{42, 17, 0, 0}, &blocks);
  CHECK(blocks == 2u);
  CHECK(g025 == Approx(0.0434043238204).epsilon(1e-11));
  // Block 0 alone is rejected: redo the attempt by hand from the raw words.
  const contrastive::philox_block w = philox_stream{42, 17, 0, 0}.block(0);
  const double d = 1.0 - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  const double x = contrastive::box_muller(w.w[0], w.w[1]);
  const double v0 = 1 + c * x;
  bool accepted = false;
  if (v0 > 0) {
    const double v = v0 * v0 * v0, u = contrastive::uniform_open01(w.w[2]);
    accepted =
        u < 1 - 0.0331 * x * x * x * x || std::log(u) < 0.5 * x * x + d * (1 - v + std::log(v));
  }
  CHECK_FALSE(accepted);
}

TEST_CASE("gamma sampler: regularised incomplete gamma reference", "[gamma]") {
  for (const double x : {1e-3, 0.1, 0.7, 1.0, 2.5, 7.0, 30.0}) {
    CAPTURE(x);
    CHECK(gamma_p(1.0, x) == Approx(1.0 - std::exp(-x)).epsilon(1e-12).margin(1e-15));
    CHECK(gamma_p(0.5, x) == Approx(std::erf(std::sqrt(x))).epsilon(1e-12).margin(1e-15));
  }
}

TEST_CASE("gamma sampler: mean, variance and Kolmogorov-Smirnov for shapes 0.1 .. 16",
          "[gamma][statistics]") {
  const int n = 100000;
  std::vector<double> x(n);
  for (const double alpha : {0.1, 0.5, 1.0, 4.0, 16.0}) {
    CAPTURE(alpha);
    double blocks = 0;
    for (int i = 0; i < n; ++i) {
      std::uint32_t b = 0;
      x[i] = contrastive::gamma_standard(alpha, philox_stream{42, std::uint64_t(i), 0, 0}, &b);
      blocks += b;
    }
    double mean = 0;
    for (const double v : x) mean += v;
    mean /= n;
    double var = 0;
    for (const double v : x) var += (v - mean) * (v - mean);
    var /= (n - 1);
    CHECK(std::abs(mean - alpha) < 4 * std::sqrt(alpha / n));
    CHECK(std::abs(var - alpha) < 4 * std::sqrt((2 * alpha * alpha + 6 * alpha) / n));
    std::sort(x.begin(), x.end());
    double dn = 0;
    for (int i = 0; i < n; ++i) {
      const double f = gamma_p(alpha, x[i]);
      dn = std::max(dn, std::max(f - double(i) / n, double(i + 1) / n - f));
    }
    CAPTURE(std::sqrt(double(n)) * dn);
    CHECK(std::sqrt(double(n)) * dn < 1.95);
    // Cost: about 1.00 - 1.05 Philox blocks per draw (acceptance is lowest, about 0.951, at
    // alpha = 1, i.e. about 1.052 blocks per draw; the boost for alpha < 1 runs at alpha + 1).
    CAPTURE(blocks / n);
    CHECK(blocks / n >= 1.0);
    CHECK(blocks / n < 1.06);
  }
}

TEST_CASE("gamma sampler: the KS statistic has power", "[gamma][statistics]") {
  // Draws of shape 1 tested against shape 1.1 must fail the same test.
  const int n = 100000;
  std::vector<double> x(n);
  for (int i = 0; i < n; ++i)
    x[i] = contrastive::gamma_standard(1.0, philox_stream{42, std::uint64_t(i), 0, 0});
  std::sort(x.begin(), x.end());
  double dn = 0;
  for (int i = 0; i < n; ++i) {
    const double f = gamma_p(1.1, x[i]);
    dn = std::max(dn, std::max(f - double(i) / n, double(i + 1) / n - f));
  }
  CHECK(std::sqrt(double(n)) * dn > 1.95);
}

TEST_CASE("gamma sampler: rate, purity and independence of the streams", "[gamma]") {
  const gamma_params p{2.5, 1.0, 7, 3, 1};
  for (std::uint64_t id : {std::uint64_t(0), std::uint64_t(5), (std::uint64_t(1) << 40) + 3}) {
    const double g = contrastive::sample_gamma(id, p);
    CHECK(contrastive::sample_gamma(id, p) == g);  // a pure function
    gamma_params q = p;
    q.rate = 4.0;
    CHECK(contrastive::sample_gamma(id, q) == g / 4.0);
    for (auto change : {0, 1, 2, 3}) {
      gamma_params o = p;
      if (change == 0) o.seed += 1;
      if (change == 1) o.step += 1;
      if (change == 2) o.stream = 0;
      if (change == 3) o.alpha = 2.6;
      CHECK(contrastive::sample_gamma(id, o) != g);
    }
    CHECK(contrastive::sample_gamma(id + 1, p) != g);
  }
  // Draws of different streams are uncorrelated.
  const int n = 20000;
  double sxy = 0, sx = 0, sy = 0, sxx = 0, syy = 0;
  for (int i = 0; i < n; ++i) {
    const double a = contrastive::sample_gamma(std::uint64_t(i), gamma_params{1, 1, 9, 0, 0});
    const double b = contrastive::sample_gamma(std::uint64_t(i), gamma_params{1, 1, 9, 0, 1});
    sx += a;
    sy += b;
    sxy += a * b;
    sxx += a * a;
    syy += b * b;
  }
  const double cov = sxy / n - (sx / n) * (sy / n);
  const double corr = cov / std::sqrt((sxx / n - sx * sx / n / n) * (syy / n - sy * sy / n / n));
  CHECK(std::abs(corr) < 4 / std::sqrt(double(n)));
}

TEST_CASE("gamma sampler: log form for tiny shapes", "[gamma]") {
  for (std::uint64_t id = 0; id < 50; ++id) {
    const philox_stream s{1, id, 0, 0};
    const double g = contrastive::gamma_standard(0.3, s);
    CHECK(contrastive::gamma_log_standard(0.3, s) == Approx(std::log(g)).epsilon(1e-14));
    const contrastive::gamma_draw d = contrastive::gamma_variate(1e-4, s);
    const double lg = contrastive::gamma_log_standard(1e-4, s);
    CHECK(std::isfinite(lg));
    CHECK(lg == Approx(std::log(d.dv) + d.log_boost).epsilon(1e-15));
    CHECK(d.log_boost < 0);
  }
  // Shape 1e-4: most draws underflow in the linear form, never in the log form.
  int zeros = 0;
  for (std::uint64_t id = 0; id < 200; ++id)
    zeros += contrastive::gamma_standard(1e-4, philox_stream{1, id, 0, 0}) == 0.0;
  CHECK(zeros > 100);
}

TEST_CASE("fill_gamma: any writable tensor, element (i, j) is id first + i * cols + j", "[gamma]") {
  const gamma_params p{4.0, 2.0, 11, 5, 0};
  const Eigen::Index r = 7, c = 5;
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm(r, c);
  Eigen::MatrixXd cm(r, c);
  Eigen::MatrixXf fm(r, c);
  contrastive::fill_gamma(rm, p, 100);
  contrastive::fill_gamma(cm, p, 100);
  contrastive::fill_gamma(fm, p, 100);
  for (Eigen::Index i = 0; i < r; ++i) {
    for (Eigen::Index j = 0; j < c; ++j) {
      const double want = contrastive::sample_gamma(std::uint64_t(100 + i * c + j), p);
      CHECK(rm(i, j) == want);
      CHECK(cm(i, j) == want);
      CHECK(fm(i, j) == static_cast<float>(want));
    }
  }
  // A strided raw view (every other element of a buffer) and an Eigen block are written through.
  std::vector<double> buf(2 * r * c, -1.0);
  contrastive::fill_gamma(contrastive::make_view(buf.data(), r, c, 2 * c, 2), p, 100);
  for (Eigen::Index k = 0; k < r * c; ++k) {
    CHECK(buf[2 * k] == rm(k / c, k % c));
    CHECK(buf[2 * k + 1] == -1.0);
  }
  Eigen::MatrixXd big = Eigen::MatrixXd::Zero(r, c + 2);
  contrastive::fill_gamma(big.rightCols(c), p, 100);
  CHECK((big.rightCols(c).array() == rm.array()).all());
  CHECK((big.leftCols(2).array() == 0.0).all());

  // Explicit ids.
  const std::vector<std::int64_t> ids = {9, 3, 1000000007, 0, 42, 7};
  Eigen::MatrixXd m(2, 3);
  contrastive::fill_gamma(m, p, ids);
  for (Eigen::Index i = 0; i < 2; ++i)
    for (Eigen::Index j = 0; j < 3; ++j)
      CHECK(m(i, j) == contrastive::sample_gamma(std::uint64_t(ids[i * 3 + j]), p));
  // Empty tensors are fine.
  Eigen::MatrixXd e(0, 3);
  contrastive::fill_gamma(e, p);
}

TEST_CASE("gamma sampler: bad input throws contrastive::invalid_argument", "[gamma][errors]") {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  for (const double a : {0.0, -1.0, nan, inf}) {
    CAPTURE(a);
    CHECK_THAT(message_of([&] {
                 contrastive::sample_gamma(0, gamma_params{a, 1, 0, 0, 0});
               }),
               Catch::StartsWith("sample_gamma: 'alpha' must be finite and > 0"));
    Eigen::MatrixXd m(2, 2);
    CHECK_THAT(message_of([&] {
                 contrastive::fill_gamma(m, gamma_params{a, 1, 0, 0, 0});
               }),
               Catch::StartsWith("fill_gamma: 'alpha'"));
  }
  for (const double rate : {0.0, -2.0, nan, inf}) {
    CAPTURE(rate);
    CHECK_THAT(message_of([&] {
                 contrastive::sample_gamma(0, gamma_params{1, rate, 0, 0, 0});
               }),
               Catch::StartsWith("sample_gamma: 'rate' must be finite and > 0"));
  }
  CHECK(message_of([&] {
          contrastive::sample_gamma(0, gamma_params{1, 1, 0, 0, 16});
        }) == "sample_gamma: 'stream' must be in [0, 15] (4 bits of the counter), got 16");
  Eigen::MatrixXd m(2, 3);
  const std::vector<std::int64_t> five = {0, 1, 2, 3, 4};
  CHECK(message_of([&] { contrastive::fill_gamma(m, gamma_params{}, five); }) ==
        "fill_gamma: 'ids' has 5 entries, expected 6 (one per element of 'out', 2 x 3)");
  const std::vector<std::int64_t> neg = {0, 1, 2, -3, 4, 5};
  CHECK(message_of([&] { contrastive::fill_gamma(m, gamma_params{}, neg); }) ==
        "fill_gamma: 'ids' has a negative id (-3) at position 3");
  CHECK_THAT(message_of([&] { contrastive::fill_gamma(m, gamma_params{}, nullptr, 6); }),
             Catch::Contains("null"));
  const auto null_view = contrastive::make_view(static_cast<double*>(nullptr), 2, 2);
  CHECK_THAT(message_of([&] { contrastive::fill_gamma(null_view, gamma_params{}); }),
             Catch::Contains("null pointer"));
}
