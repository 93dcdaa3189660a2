#include "support/test_config.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include <contrastive/contrastive.hpp>
#include <contrastive/testing/gradcheck.hpp>
#include <contrastive/sampling/brownian_bridge.hpp>

#include "support/reference.hpp"

namespace ct = contrastive::testing;

namespace {

template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using contrastive::brownian_bridge_options;
using contrastive::philox_stream;
using mat = ref::mat;
using rmd = rmat<double>;

mat unit(Eigen::Index n, Eigen::Index d, std::uint32_t seed) {
  return ref::normalized_rows(ref::random_matrix(n, d, seed));
}

// The bridge mean of docs/brownian_bridge.md, straight from the formula.
Eigen::RowVectorXd mean_of(const mat& v, const mat& u, Eigen::Index j, double t) {
  const Eigen::RowVectorXd m = t * v.row(j) + (1 - t) * u.row(j);
  return m / std::max(m.norm(), 1e-12);
}

// Noise of the stream layout of docs/brownian_bridge.md#sampler, written out without
// philox_stream::normal: normal m uses block
// m/2, words (0,1) for even m and (2,3) for odd m.
double layout_normal(std::uint64_t seed, std::uint64_t id, std::uint32_t step, std::uint64_t m) {
  const philox_stream s{seed, id, step, 2};
  const contrastive::philox_block b = s.block(static_cast<std::uint32_t>(m / 2));
  return m % 2 == 0 ? contrastive::box_muller(b.w[0], b.w[1])
                    : contrastive::box_muller(b.w[2], b.w[3]);
}

struct point_run {
  mat y, gv, gu;
  contrastive::brownian_bridge_gradient g;
};

// Sample, then backward of L = <w, y>.
point_run run_point(const mat& v, const mat& u, const mat& w, const brownian_bridge_options& o,
                    const mat* eps = nullptr) {
  const rmd vr = v, ur = u, wr = w;
  rmd y(v.rows(), v.cols()), gv(v.rows(), v.cols()), gu(v.rows(), v.cols());
  point_run r;
  if (eps) {
    const rmd er = *eps;
    const auto saved = contrastive::brownian_bridge_sample_with_noise(vr, ur, er, y, o);
    r.g = contrastive::brownian_bridge_sample_with_noise_backward(vr, ur, er, saved, wr, gv, gu, o);
  } else {
    const auto saved = contrastive::brownian_bridge_sample(vr, ur, y, o);
    r.g = contrastive::brownian_bridge_sample_backward(vr, ur, saved, wr, gv, gu, o);
  }
  r.y = y;
  r.gv = gv;
  r.gu = gu;
  return r;
}

double point_loss(const mat& v, const mat& u, const mat& w, const brownian_bridge_options& o) {
  const rmd vr = v, ur = u;
  rmd y(v.rows(), v.cols());
  contrastive::brownian_bridge_sample(vr, ur, y, o);
  return (mat(y).array() * w.array()).sum();
}

struct path_run {
  mat x, gv, gu;
  contrastive::brownian_bridge_gradient g;
};

path_run run_path(const mat& v, const mat& u, const mat& w, const brownian_bridge_options& o,
                  const mat* xi = nullptr) {
  const rmd vr = v, ur = u, wr = w;
  rmd x(v.rows() * (o.steps + 1), v.cols()), gv(v.rows(), v.cols()), gu(v.rows(), v.cols());
  path_run r;
  if (xi) {
    const rmd xr = *xi;
    const auto saved = contrastive::brownian_bridge_trajectory_with_noise(vr, ur, xr, x, o);
    r.g = contrastive::brownian_bridge_trajectory_with_noise_backward(vr, ur, xr, saved, wr, gv, gu,
                                                                      o);
  } else {
    const auto saved = contrastive::brownian_bridge_trajectory(vr, ur, x, o);
    r.g = contrastive::brownian_bridge_trajectory_backward(vr, ur, saved, wr, gv, gu, o);
  }
  r.x = x;
  r.gv = gv;
  r.gu = gu;
  return r;
}

double path_loss(const mat& v, const mat& u, const mat& w, const brownian_bridge_options& o) {
  const rmd vr = v, ur = u;
  rmd x(v.rows() * (o.steps + 1), v.cols());
  contrastive::brownian_bridge_trajectory(vr, ur, x, o);
  return (mat(x).array() * w.array()).sum();
}

double fd_scalar(const std::function<double(double)>& f, double x0) {
  const double h = 1e-6 * std::max(1.0, std::abs(x0));
  return (f(x0 + h) - f(x0 - h)) / (2 * h);
}

bool scalar_agrees(double g, double fd) {
  return std::abs(g - fd) <= 1e-6 * std::max(1.0, std::abs(fd));
}

}  // namespace

TEST_CASE("brownian_bridge_sample: the mean, its endpoints and the noise layout",
          "[brownian_bridge]") {
  const Eigen::Index n = 7, d = 5;
  const mat v = unit(n, d, 1), u = unit(n, d, 2);
  const mat w = mat::Zero(n, d);
  brownian_bridge_options o;
  o.noise = false;
  for (const double t : {0.0, 0.25, 0.6, 1.0}) {
    o.t = t;
    const point_run r = run_point(v, u, w, o);
    for (Eigen::Index j = 0; j < n; ++j) {
      CAPTURE(t, j);
      CHECK((r.y.row(j) - mean_of(v, u, j, t)).cwiseAbs().maxCoeff() < 1e-15);
      CHECK(std::abs(r.y.row(j).norm() - 1) < 1e-15);
    }
    // t = 0 and t = 1 return the endpoints (unit inputs), to rounding.
    if (t == 0.0) CHECK((r.y - u).cwiseAbs().maxCoeff() < 4e-16);
    if (t == 1.0) CHECK((r.y - v).cwiseAbs().maxCoeff() < 4e-16);
  }
  // With noise: y - mu = sigma sqrt(t (1 - t)) eps with eps of the stream-2 layout (docs/brownian_bridge.md#sampler).
  o.noise = true;
  o.t = 0.3;
  o.seed = 1234;
  o.step = 9;
  o.first_id = 100;
  const point_run r = run_point(v, u, w, o);
  const double c = std::sqrt(0.3 * 0.7) / std::sqrt(double(d));
  for (Eigen::Index j = 0; j < n; ++j)
    for (Eigen::Index k = 0; k < d; ++k) {
      const double eps = layout_normal(1234, 100 + std::uint64_t(j), 9, std::uint64_t(k));
      CHECK(r.y(j, k) == Approx(mean_of(v, u, j, 0.3)(k) + c * eps).epsilon(1e-14).margin(1e-15));
    }
  // The same noise passed in gives the same bits; so do explicit ids.
  mat eps(n, d);
  for (Eigen::Index j = 0; j < n; ++j)
    for (Eigen::Index k = 0; k < d; ++k)
      eps(j, k) = layout_normal(1234, 100 + std::uint64_t(j), 9, std::uint64_t(k));
  CHECK(run_point(v, u, w, o, &eps).y == r.y);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  for (Eigen::Index j = 0; j < n; ++j) ids[static_cast<std::size_t>(j)] = 100 + j;
  brownian_bridge_options oi = o;
  oi.first_id = 0;
  oi.ids = ids;
  CHECK(run_point(v, u, w, oi).y == r.y);
  // Another step or seed gives other noise.
  oi.step = 10;
  CHECK((run_point(v, u, w, oi).y - r.y).cwiseAbs().maxCoeff() > 1e-3);
}

TEST_CASE("brownian_bridge_sample: random t on stream 3", "[brownian_bridge]") {
  const Eigen::Index n = 400, d = 2;
  const mat v = unit(n, d, 3), u = unit(n, d, 4);
  brownian_bridge_options o;
  o.random_t = true;
  o.t_min = 0.2;
  o.t_max = 0.7;
  o.seed = 77;
  o.noise = false;
  const rmd vr = v, ur = u;
  rmd y(n, d);
  const auto saved = contrastive::brownian_bridge_sample(vr, ur, y, o);
  double lo = 1, hi = 0, sum = 0;
  for (Eigen::Index j = 0; j < n; ++j) {
    const double t = saved.t[static_cast<std::size_t>(j)];
    const philox_stream s{77, std::uint64_t(j), 0, 3};
    CHECK(t == o.t_min + (o.t_max - o.t_min) * contrastive::uniform_open01(s.block(0).w[0]));
    CHECK(t == contrastive::brownian_bridge_time(o, j));
    CHECK((mat(y).row(j) - mean_of(v, u, j, t)).cwiseAbs().maxCoeff() < 1e-15);
    lo = std::min(lo, t);
    hi = std::max(hi, t);
    sum += t;
  }
  CHECK(lo >= 0.2);
  CHECK(hi <= 0.7);
  CHECK(hi - lo > 0.45);
  // Mean of U(0.2, 0.7) within 5 standard errors.
  CHECK(std::abs(sum / double(n) - 0.45) < 5 * 0.5 / std::sqrt(12.0 * double(n)));
}

TEST_CASE("brownian_bridge_sample: finite differences through a sampled point",
          "[brownian_bridge][gradient]") {
  struct shape {
    Eigen::Index n, d;
  };
  for (const shape sh : {shape{1, 1}, shape{2, 3}, shape{5, 4}, shape{3, 8}}) {
    const mat v = ref::random_matrix(sh.n, sh.d, 11), u = ref::random_matrix(sh.n, sh.d, 12);
    const mat w = ref::random_matrix(sh.n, sh.d, 13);
    for (const bool noise : {false, true}) {
      for (const bool reproject : {false, true}) {
        brownian_bridge_options o;
        o.t = 0.35;
        o.noise = noise;
        o.reproject = reproject;
        o.sigma = 0.4;
        o.seed = 5;
        CAPTURE(sh.n, sh.d, noise, reproject);
        const point_run r = run_point(v, u, w, o);
        CHECK(
            ct::gradcheck(ref::mat(v), r.gv, [&](const mat& x) { return point_loss(x, u, w, o); }));
        CHECK(
            ct::gradcheck(ref::mat(u), r.gu, [&](const mat& x) { return point_loss(v, x, w, o); }));
        brownian_bridge_options ot = o;
        CHECK(scalar_agrees(r.g.t, fd_scalar(
                                       [&](double t) {
                                         ot.t = t;
                                         return point_loss(v, u, w, ot);
                                       },
                                       o.t)));
        brownian_bridge_options os = o;
        const double fds = fd_scalar(
            [&](double s) {
              os.sigma = s;
              return point_loss(v, u, w, os);
            },
            o.sigma);
        CHECK(scalar_agrees(r.g.sigma, fds));
        if (!noise) CHECK(r.g.sigma == 0);
        // Caller noise: the same gradients (eps is what the stream would give).
        mat eps(sh.n, sh.d);
        for (Eigen::Index j = 0; j < sh.n; ++j)
          for (Eigen::Index k = 0; k < sh.d; ++k)
            eps(j, k) = layout_normal(5, std::uint64_t(j), 0, std::uint64_t(k));
        const point_run re = run_point(v, u, w, o, &eps);
        CHECK(re.y == r.y);
        CHECK(re.gv == r.gv);
        CHECK(re.g.t == r.g.t);
      }
    }
  }
}

TEST_CASE("brownian_bridge_sample: per-row t gradients with random t",
          "[brownian_bridge][gradient]") {
  const Eigen::Index n = 6, d = 3;
  const mat v = ref::random_matrix(n, d, 21), u = ref::random_matrix(n, d, 22),
            w = ref::random_matrix(n, d, 23);
  brownian_bridge_options o;
  o.random_t = true;
  o.seed = 8;
  o.first_id = 40;
  const point_run r = run_point(v, u, w, o);
  double total = 0;
  for (Eigen::Index j = 0; j < n; ++j) {
    // Row j alone, at its t, with its own noise (the same id).
    brownian_bridge_options oj = o;
    oj.random_t = false;
    oj.t = contrastive::brownian_bridge_time(o, j);
    oj.first_id = 40 + std::uint64_t(j);
    const mat vj = v.row(j), uj = u.row(j), wj = w.row(j);
    CHECK(run_point(vj, uj, wj, oj).y == mat(r.y.row(j)));
    const double fd = fd_scalar(
        [&](double t) {
          brownian_bridge_options ot = oj;
          ot.t = t;
          return point_loss(vj, uj, wj, ot);
        },
        oj.t);
    CHECK(scalar_agrees(r.g.t_rows[static_cast<std::size_t>(j)], fd));
    total += r.g.t_rows[static_cast<std::size_t>(j)];
  }
  CHECK(r.g.t == Approx(total).epsilon(1e-14));
  CHECK(std::abs(r.g.t) > 1e-3);
}

TEST_CASE("brownian_bridge_sample: mean and covariance of sampled points at several t",
          "[brownian_bridge][statistics]") {
  const Eigen::Index n = 40000, d = 3;
  const mat v1 = unit(1, d, 31), u1 = unit(1, d, 32);
  const mat v = v1.replicate(n, 1), u = u1.replicate(n, 1);
  const rmd vr = v, ur = u;
  rmd y(n, d);
  for (const double t : {0.1, 0.25, 0.5, 0.8}) {
    brownian_bridge_options o;
    o.t = t;
    o.sigma = 1.0;  // unit per-coordinate scale: Cov = t (1 - t) I
    o.seed = 2024;
    contrastive::brownian_bridge_sample(vr, ur, y, o);
    const Eigen::RowVectorXd mu = mean_of(v1, u1, 0, t);
    const mat c = mat(y).rowwise() - mu;
    const Eigen::RowVectorXd mean = c.colwise().mean();
    const mat cov = (c.transpose() * c) / double(n);
    const double var = t * (1 - t);
    CAPTURE(t);
    for (Eigen::Index k = 0; k < d; ++k) {
      CHECK(std::abs(mean(k)) < 5 * std::sqrt(var / double(n)));
      for (Eigen::Index l = 0; l < d; ++l) {
        const double want = k == l ? var : 0.0;
        const double se = k == l ? var * std::sqrt(2.0 / double(n)) : var / std::sqrt(double(n));
        CHECK(std::abs(cov(k, l) - want) < 5 * se);
      }
    }
  }
}

TEST_CASE("brownian_bridge_trajectory: exact endpoints, means and the noise layout",
          "[brownian_bridge]") {
  const Eigen::Index n = 4, d = 3;
  const mat v = unit(n, d, 41), u = unit(n, d, 42);
  for (const Eigen::Index kk :
       {Eigen::Index(1), Eigen::Index(2), Eigen::Index(5), Eigen::Index(8)}) {
    brownian_bridge_options o;
    o.steps = kk;
    o.seed = 3;
    o.step = 4;
    o.reproject = true;
    const mat w = mat::Zero(n * (kk + 1), d);
    const path_run r = run_path(v, u, w, o);
    CAPTURE(kk);
    for (Eigen::Index j = 0; j < n; ++j) {
      CHECK(r.x.row(j * (kk + 1)) == u.row(j));       // bitwise
      CHECK(r.x.row(j * (kk + 1) + kk) == v.row(j));  // bitwise
      for (Eigen::Index k = 1; k < kk; ++k)
        CHECK(std::abs(r.x.row(j * (kk + 1) + k).norm() - 1) < 1e-14);
    }
    // Without noise the interior points are the bridge means.
    o.noise = false;
    o.reproject = false;
    const path_run m = run_path(v, u, w, o);
    for (Eigen::Index j = 0; j < n; ++j)
      for (Eigen::Index k = 1; k < kk; ++k)
        CHECK((m.x.row(j * (kk + 1) + k) - mean_of(v, u, j, double(k) / double(kk)))
                  .cwiseAbs()
                  .maxCoeff() < 1e-15);
    // xi from the layout (m = (k-1) D + d) gives the same bits as the stream.
    o.noise = true;
    const path_run s = run_path(v, u, w, o);
    mat xi(n * std::max<Eigen::Index>(kk - 1, 0), d);
    for (Eigen::Index j = 0; j < n; ++j)
      for (Eigen::Index k = 1; k < kk; ++k)
        for (Eigen::Index i = 0; i < d; ++i)
          xi(j * (kk - 1) + k - 1, i) =
              layout_normal(3, std::uint64_t(j), 4, std::uint64_t((k - 1) * d + i));
    CHECK(run_path(v, u, w, o, &xi).x == s.x);
    // Hand-written recurrence for the last pair.
    const Eigen::Index j = n - 1;
    Eigen::RowVectorXd nk = Eigen::RowVectorXd::Zero(d);
    const double sigma = 1 / std::sqrt(double(d));
    for (Eigen::Index k = 1; k < kk; ++k) {
      const double a = double(kk - k) / double(kk - k + 1);
      const double b = std::sqrt(double(kk - k) / (double(kk) * double(kk - k + 1)));
      nk = a * nk + b * xi.row(j * (kk - 1) + k - 1);
      const Eigen::RowVectorXd want = mean_of(v, u, j, double(k) / double(kk)) + sigma * nk;
      CHECK((s.x.row(j * (kk + 1) + k) - want).cwiseAbs().maxCoeff() < 1e-15);
    }
  }
}

TEST_CASE(
    "brownian_bridge_trajectory: finite differences (v, u, sigma; with and without reproject)",
    "[brownian_bridge][gradient]") {
  struct shape {
    Eigen::Index n, d, k;
  };
  for (const shape sh : {shape{1, 1, 3}, shape{2, 3, 4}, shape{3, 4, 1}, shape{2, 2, 6}}) {
    const mat v = ref::random_matrix(sh.n, sh.d, 51), u = ref::random_matrix(sh.n, sh.d, 52);
    const mat w = ref::random_matrix(sh.n * (sh.k + 1), sh.d, 53);
    for (const bool reproject : {false, true}) {
      brownian_bridge_options o;
      o.steps = sh.k;
      o.reproject = reproject;
      o.sigma = 0.3;
      o.seed = 6;
      CAPTURE(sh.n, sh.d, sh.k, reproject);
      const path_run r = run_path(v, u, w, o);
      CHECK(ct::gradcheck(ref::mat(v), r.gv, [&](const mat& x) { return path_loss(x, u, w, o); }));
      CHECK(ct::gradcheck(ref::mat(u), r.gu, [&](const mat& x) { return path_loss(v, x, w, o); }));
      brownian_bridge_options os = o;
      CHECK(scalar_agrees(r.g.sigma, fd_scalar(
                                         [&](double s) {
                                           os.sigma = s;
                                           return path_loss(v, u, w, os);
                                         },
                                         o.sigma)));
      if (sh.k > 1 && !(reproject && sh.d == 1))
        CHECK(std::abs(r.g.sigma) > 1e-6);  // 1-D unit points do not move
    }
  }
}

TEST_CASE("brownian_bridge_trajectory: Monte Carlo covariance t_j (1 - t_k) of 2e5 paths, K = 6",
          "[brownian_bridge][statistics]") {
  const Eigen::Index n = 200000, d = 1, kk = 6;
  const rmd v = rmd::Ones(n, d), u = -rmd::Ones(n, d);  // d = 1: means are +-1 or 0
  rmd x(n * (kk + 1), d);
  brownian_bridge_options o;
  o.steps = kk;
  o.sigma = 1;
  o.seed = 99;
  contrastive::brownian_bridge_trajectory(v, u, x, o);
  // n_k = (X_k - mu_k) / sigma
  std::vector<double> mu(kk + 1);
  for (Eigen::Index k = 0; k <= kk; ++k) {
    const double t = double(k) / double(kk), m = t - (1 - t);
    mu[static_cast<std::size_t>(k)] = m / std::max(std::abs(m), 1e-12);
  }
  mat cov = mat::Zero(kk + 1, kk + 1);
  for (Eigen::Index j = 0; j < n; ++j) {
    for (Eigen::Index a = 0; a <= kk; ++a) {
      const double na = x(j * (kk + 1) + a, 0) - mu[static_cast<std::size_t>(a)];
      for (Eigen::Index b = a; b <= kk; ++b)
        cov(a, b) += na * (x(j * (kk + 1) + b, 0) - mu[static_cast<std::size_t>(b)]);
    }
  }
  cov /= double(n);
  for (Eigen::Index a = 0; a <= kk; ++a) {
    for (Eigen::Index b = a; b <= kk; ++b) {
      const double ta = double(a) / double(kk), tb = double(b) / double(kk);
      const double want = ta * (1 - tb);
      const double se = std::sqrt((ta * (1 - ta) * tb * (1 - tb) + want * want) / double(n));
      CAPTURE(a, b, cov(a, b), want);
      if (a == 0 || b == kk) {
        CHECK(cov(a, b) == 0.0);  // the endpoints are exact
      } else {
        CHECK(std::abs(cov(a, b) - want) < 5 * se);
      }
    }
  }
}

TEST_CASE("brownian_bridge: results do not depend on the thread count", "[brownian_bridge]") {
  const Eigen::Index n = 2000, d = 12;  // above the size where threads are used at all
  const mat v = unit(n, d, 61), u = unit(n, d, 62), w = ref::random_matrix(n, d, 63);
  const mat wp = ref::random_matrix(n * 5, d, 64);
  brownian_bridge_options o;
  o.random_t = true;
  o.reproject = true;
  o.steps = 4;
  o.num_threads = 1;
  const point_run p1 = run_point(v, u, w, o);
  const path_run q1 = run_path(v, u, wp, o);
  for (const int threads : {2, 3}) {
    o.num_threads = threads;
    const point_run p2 = run_point(v, u, w, o);
    const path_run q2 = run_path(v, u, wp, o);
    CHECK(p2.y == p1.y);
    CHECK(p2.gv == p1.gv);
    CHECK(p2.g.t == p1.g.t);
    CHECK(p2.g.sigma == p1.g.sigma);
    CHECK(q2.x == q1.x);
    CHECK(q2.gu == q1.gu);
    CHECK(q2.g.sigma == q1.g.sigma);
  }
}

TEST_CASE("brownian_bridge: column-major tensors give the row-major results", "[brownian_bridge]") {
  const Eigen::Index n = 6, d = 5, kk = 3;
  const mat v = unit(n, d, 75), u = unit(n, d, 76), w = ref::random_matrix(n, d, 77);
  const mat wp = ref::random_matrix(n * (kk + 1), d, 78);
  brownian_bridge_options o;
  o.random_t = true;
  o.reproject = true;
  o.steps = kk;
  const point_run p = run_point(v, u, w, o);
  const path_run q = run_path(v, u, wp, o);
  const Eigen::MatrixXd vc = v, uc = u, wc = w, wpc = wp;  // column-major
  Eigen::MatrixXd y(n, d), gv(n, d), gu(n, d), x(n * (kk + 1), d), hv(n, d), hu(n, d);
  const auto saved = contrastive::brownian_bridge_sample(vc, uc, y, o);
  const auto g = contrastive::brownian_bridge_sample_backward(vc, uc, saved, wc, gv, gu, o);
  CHECK(y == p.y);
  CHECK(gv == p.gv);
  CHECK(gu == p.gu);
  CHECK(g.t == p.g.t);
  const auto saved_path = contrastive::brownian_bridge_trajectory(vc, uc, x, o);
  const auto gp =
      contrastive::brownian_bridge_trajectory_backward(vc, uc, saved_path, wpc, hv, hu, o);
  CHECK(x == q.x);
  CHECK(hv == q.gv);
  CHECK(hu == q.gu);
  CHECK(gp.sigma == q.g.sigma);
}

TEST_CASE("brownian_bridge: float matches double", "[brownian_bridge]") {
  const Eigen::Index n = 9, d = 6;
  const mat v = unit(n, d, 71), u = unit(n, d, 72), w = ref::random_matrix(n, d, 73);
  brownian_bridge_options o;
  o.reproject = true;
  const rmat<float> vf = v.cast<float>(), uf = u.cast<float>(), wf = w.cast<float>();
  rmat<float> y(n, d), gv(n, d), gu(n, d);
  const auto saved = contrastive::brownian_bridge_sample(vf, uf, y, o);
  const auto g = contrastive::brownian_bridge_sample_backward(vf, uf, saved, wf, gv, gu, o);
  const point_run r = run_point(v, u, w, o);
  CHECK(ref::max_rel_diff(y.cast<double>(), r.y) < 1e-6);
  CHECK(ref::max_rel_diff(gv.cast<double>(), r.gv) < 1e-5);
  CHECK(g.t == Approx(r.g.t).epsilon(1e-5));
}

TEST_CASE("brownian_bridge: bad input throws contrastive::invalid_argument",
          "[brownian_bridge][errors]") {
  using contrastive::invalid_argument;
  const Eigen::Index n = 5, d = 3;
  const rmd v = unit(n, d, 81), u = unit(n, d, 82);
  rmd y(n, d), gv(n, d), gu(n, d), x(n * 9, d);
  const rmd gy = rmd::Ones(n, d), gx = rmd::Ones(n * 9, d);
  brownian_bridge_options o;
  // t outside [0, 1].
  for (const double t : {-0.01, 1.01, std::numeric_limits<double>::quiet_NaN()}) {
    brownian_bridge_options bad = o;
    bad.t = t;
    CHECK_THROWS_AS(contrastive::brownian_bridge_sample(v, u, y, bad), invalid_argument);
    CHECK_THROWS_AS(contrastive::brownian_bridge_time(bad, 0), invalid_argument);
  }
  {
    brownian_bridge_options bad = o;
    bad.random_t = true;
    bad.t_min = 0.6;
    bad.t_max = 0.4;
    CHECK_THROWS_AS(contrastive::brownian_bridge_sample(v, u, y, bad), invalid_argument);
    bad.t_min = -0.1;
    bad.t_max = 0.5;
    CHECK_THROWS_AS(contrastive::brownian_bridge_sample(v, u, y, bad), invalid_argument);
    bad.t_min = 0.5;
    bad.t_max = 1.5;
    CHECK_THROWS_AS(contrastive::brownian_bridge_sample(v, u, y, bad), invalid_argument);
  }
  // Shapes.
  const rmd short_u = unit(n - 1, d, 83), wide_u = unit(n, d + 1, 84);
  rmd bad_y(n, d + 1), bad_x(n * 8, d);
  CHECK_THROWS_AS(contrastive::brownian_bridge_sample(v, short_u, y, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::brownian_bridge_sample(v, wide_u, y, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::brownian_bridge_sample(v, u, bad_y, o), invalid_argument);
  CHECK_THROWS_AS(contrastive::brownian_bridge_trajectory(v, u, bad_x, o), invalid_argument);
  const rmd bad_eps = rmd::Zero(n, d + 1), bad_xi = rmd::Zero(n * 6, d);
  CHECK_THROWS_AS(contrastive::brownian_bridge_sample_with_noise(v, u, bad_eps, y, o),
                  invalid_argument);
  CHECK_THROWS_AS(contrastive::brownian_bridge_trajectory_with_noise(v, u, bad_xi, x, o),
                  invalid_argument);
  const rmd empty(0, d);
  rmd empty_y(0, d);
  CHECK_THROWS_AS(contrastive::brownian_bridge_sample(empty, empty, empty_y, o), invalid_argument);
  // Zero-norm rows and non-finite values.
  for (const double bad :
       {0.0, std::numeric_limits<double>::quiet_NaN(), -std::numeric_limits<double>::infinity()}) {
    rmd b = u;
    if (bad == 0.0) {
      b.row(2).setZero();
    } else {
      b(2, 1) = bad;
    }
    CAPTURE(bad);
    CHECK_THROWS_AS(contrastive::brownian_bridge_sample(v, b, y, o), invalid_argument);
    CHECK_THROWS_AS(contrastive::brownian_bridge_sample(b, u, y, o), invalid_argument);
    CHECK_THROWS_AS(contrastive::brownian_bridge_trajectory(b, u, x, o), invalid_argument);
    if (bad != 0.0) {
      rmd eps = rmd::Zero(n, d);
      eps(1, 1) = bad;
      CHECK_THROWS_AS(contrastive::brownian_bridge_sample_with_noise(v, u, eps, y, o),
                      invalid_argument);
    }
  }
  // Options.
  {
    brownian_bridge_options bad = o;
    bad.sigma = -1;
    CHECK_THROWS_AS(contrastive::brownian_bridge_sample(v, u, y, bad), invalid_argument);
    bad = o;
    bad.steps = 0;
    CHECK_THROWS_AS(contrastive::brownian_bridge_trajectory(v, u, x, bad), invalid_argument);
    bad = o;
    const std::vector<std::int64_t> ids = {1, 2, 3};
    bad.ids = ids;
    CHECK_THROWS_AS(contrastive::brownian_bridge_sample(v, u, y, bad), invalid_argument);
    const std::vector<std::int64_t> neg = {1, 2, -3, 4, 5};
    bad.ids = neg;
    CHECK_THROWS_AS(contrastive::brownian_bridge_sample(v, u, y, bad), invalid_argument);
  }
  // Backward: saved state, noise source, gradients.
  const auto saved = contrastive::brownian_bridge_sample(v, u, y, o);
  const auto saved_path = contrastive::brownian_bridge_trajectory(v, u, x, o);
  CHECK_NOTHROW(contrastive::brownian_bridge_sample_backward(v, u, saved, gy, gv, gu, o));
  brownian_bridge_options other = o;
  other.seed = 1;
  CHECK_THROWS_AS(contrastive::brownian_bridge_sample_backward(v, u, saved, gy, gv, gu, other),
                  invalid_argument);
  other = o;
  other.reproject = true;
  CHECK_THROWS_AS(contrastive::brownian_bridge_sample_backward(v, u, saved, gy, gv, gu, other),
                  invalid_argument);
  CHECK_THROWS_AS(contrastive::brownian_bridge_trajectory_backward(v, u, saved, gx, gv, gu, o),
                  invalid_argument);
  other = o;
  other.steps = 4;
  CHECK_THROWS_AS(
      contrastive::brownian_bridge_trajectory_backward(v, u, saved_path, gx, gv, gu, other),
      invalid_argument);
  const rmd eps = rmd::Zero(n, d);
  CHECK_THROWS_AS(
      contrastive::brownian_bridge_sample_with_noise_backward(v, u, eps, saved, gy, gv, gu, o),
      invalid_argument);
  rmd nan_gy = gy;
  nan_gy(0, 0) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(contrastive::brownian_bridge_sample_backward(v, u, saved, nan_gy, gv, gu, o),
                  invalid_argument);
  CHECK_THROWS_AS(contrastive::brownian_bridge_sample_backward(v, u, saved, gy, gv, gv, o),
                  invalid_argument);
  rmd small(n, d - 1);
  CHECK_THROWS_AS(contrastive::brownian_bridge_sample_backward(v, u, saved, gy, small, gu, o),
                  invalid_argument);
  // Output aliasing an input.
  rmd vv = v;
  CHECK_THROWS_AS(contrastive::brownian_bridge_sample(vv, u, vv, o), invalid_argument);
  // The message names the function, the argument and the bad value.
  try {
    brownian_bridge_options bad = o;
    bad.t = 1.5;
    contrastive::brownian_bridge_sample(v, u, y, bad);
    FAIL("no exception");
  } catch (const invalid_argument& e) {
    const std::string msg = e.what();
    CHECK(msg.find("brownian_bridge_sample") != std::string::npos);
    CHECK(msg.find("'t'") != std::string::npos);
    CHECK(msg.find("1.5") != std::string::npos);
  }
}
