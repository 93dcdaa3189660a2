#include "support/test_config.hpp"

// The CUDA Brownian-bridge sampler (cuda/brownian_bridge.cuh) against brownian_bridge_sample /
// brownian_bridge_trajectory on the CPU: the same Philox draws, the same points and paths
// (1e-12 in double, 1e-6 in float), every output element written and nothing beside it, bad
// arguments rejected. And the bridge loss against the CPU's: loss, t, the three gradients and
// dL/dt (fixed and random t, nll_weight, detach_a_aug, accumulate, upstream, the generic calls),
// and the CPU's messages for bad inputs. Device work runs in bridge_kernels.cu.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/core/error.hpp>
#include <contrastive/losses/brownian_bridge.hpp>
#include <contrastive/sampling/brownian_bridge.hpp>

#include "cuda/bridge_kernels.hpp"

using contrastive::brownian_bridge_options;
using contrastive::index_t;

namespace {

struct pair_data {
  index_t n = 0, d = 0;
  std::vector<double> v, u;
};

/// Random rows, L2-normalised (the embeddings the sampler is meant for); in float when `single`
/// so that CPU and GPU see the same numbers.
pair_data make_pairs(index_t n, index_t d, unsigned seed, bool single) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> nd;
  pair_data p;
  p.n = n;
  p.d = d;
  for (auto* x : {&p.v, &p.u}) {
    x->resize(static_cast<std::size_t>(n * d));
    for (index_t i = 0; i < n; ++i) {
      double s = 0;
      for (index_t k = 0; k < d; ++k) {
        const double a = nd(g);
        (*x)[static_cast<std::size_t>(i * d + k)] = a;
        s += a * a;
      }
      for (index_t k = 0; k < d; ++k) {
        double& a = (*x)[static_cast<std::size_t>(i * d + k)];
        a /= std::sqrt(s);
        if (single) a = static_cast<float>(a);
      }
    }
  }
  return p;
}

template <class T>
std::vector<double> cpu_run(bool path, const pair_data& p, const brownian_bridge_options& o) {
  const std::vector<T> v(p.v.begin(), p.v.end()), u(p.u.begin(), p.u.end());
  const index_t rows = path ? p.n * (o.steps + 1) : p.n;
  std::vector<T> y(static_cast<std::size_t>(rows * p.d));
  const auto vv = contrastive::make_view(v.data(), p.n, p.d);
  const auto vu = contrastive::make_view(u.data(), p.n, p.d);
  const auto vy = contrastive::make_view(y.data(), rows, p.d);
  if (path) {
    contrastive::brownian_bridge_trajectory(vv, vu, vy, o);
  } else {
    contrastive::brownian_bridge_sample(vv, vu, vy, o);
  }
  return std::vector<double>(y.begin(), y.end());
}

void compare(const std::vector<double>& gpu, const std::vector<double>& cpu, index_t d,
             bool single) {
  REQUIRE(gpu.size() == cpu.size());
  const double tol = single ? 1e-6 : 1e-12;
  int bad = 0;
  double worst = 0;
  for (std::size_t e = 0; e < cpu.size(); ++e) {
    const double diff = std::abs(gpu[e] - cpu[e]);
    const bool ok = std::isfinite(gpu[e]) && diff <= tol * std::max(1.0, std::abs(cpu[e]));
    if (std::isfinite(diff)) worst = std::max(worst, diff);
    if (!ok && ++bad <= 5)
      FAIL_CHECK("row " << e / static_cast<std::size_t>(d) << ", column "
                        << e % static_cast<std::size_t>(d) << ": GPU " << gpu[e] << ", CPU "
                        << cpu[e]);
  }
  INFO("largest difference " << worst);
  CHECK(bad == 0);
}

template <class F>
void require_invalid(F&& f, const std::string& needle) {
  bool thrown = false;
  try {
    f();
  } catch (const contrastive::invalid_argument& e) {
    thrown = true;
    INFO("message: " << e.what());
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
  INFO("expected contrastive::invalid_argument containing \"" << needle << "\"");
  CHECK(thrown);
}

/// The option combinations both tests sweep (c = 0..15).
brownian_bridge_options options_for(int c) {
  brownian_bridge_options o;
  o.random_t = (c & 1) != 0;
  o.noise = (c & 2) == 0;
  o.reproject = (c & 4) != 0;
  o.sigma = (c & 8) ? 0.4 : 0.0;
  o.t = c == 2 ? 0.0 : (c == 10 ? 1.0 : 0.3);
  o.t_min = 0.1;
  o.t_max = 0.8;
  o.seed = 0x9E3779B97F4A7C15ull + static_cast<unsigned>(c);
  o.step = 1000u + static_cast<unsigned>(c);
  o.first_id = (std::uint64_t(1) << 40) + 7;
  return o;
}

}  // namespace

TEST_CASE("cuda bridge: points equal brownian_bridge_sample", "[cuda][bridge]") {
  for (const bool single : {false, true}) {
    for (const index_t d : {index_t(1), index_t(2), index_t(17), index_t(64)}) {
      const pair_data p = make_pairs(45, d, 7u + static_cast<unsigned>(d), single);
      for (int c = 0; c < 16; ++c) {
        brownian_bridge_options o = options_for(c);
        std::vector<std::int64_t> ids;
        if (c % 3 == 0) {  // dataset ids instead of first_id + j
          for (index_t j = 0; j < p.n; ++j)
            ids.push_back((j * 7919) % 1000 + (std::int64_t(1) << 35));
          o.ids = contrastive::vector_view<const std::int64_t>(ids);
        }
        const std::vector<double> cpu =
            single ? cpu_run<float>(false, p, o) : cpu_run<double>(false, p, o);
        gpu_bridge::run_options r;
        r.single = single;
        r.async = c % 2 == 1;
        r.col_major_in = c % 4 == 2;
        r.padded_out = c % 5 == 1;
        INFO((single ? "float" : "double")
             << ", D = " << d << ", case " << c << " (random_t " << o.random_t << ", noise "
             << o.noise << ", reproject " << o.reproject << ", sigma " << o.sigma << ", ids "
             << !ids.empty() << ", async " << r.async << ", column-major inputs " << r.col_major_in
             << ")");
        const gpu_bridge::result g = gpu_bridge::sample(p.v, p.u, p.n, d, o, ids, r);
        CHECK(g.status == 0);
        compare(g.out, cpu, d, single);
        CHECK(g.padding_written == 0);
      }
    }
  }
}

TEST_CASE("cuda bridge: paths equal brownian_bridge_trajectory", "[cuda][bridge]") {
  for (const bool single : {false, true}) {
    for (const index_t d : {index_t(1), index_t(3), index_t(32)}) {
      const pair_data p = make_pairs(29, d, 100u + static_cast<unsigned>(d), single);
      for (const index_t steps : {index_t(1), index_t(2), index_t(5)}) {
        for (int c = 0; c < 16; c += 2) {  // random_t does not apply to paths
          brownian_bridge_options o = options_for(c);
          o.steps = steps;
          std::vector<std::int64_t> ids;
          if (c % 3 == 0) {
            for (index_t j = 0; j < p.n; ++j) ids.push_back(3 * j + 11);
            o.ids = contrastive::vector_view<const std::int64_t>(ids);
          }
          const std::vector<double> cpu =
              single ? cpu_run<float>(true, p, o) : cpu_run<double>(true, p, o);
          gpu_bridge::run_options r;
          r.single = single;
          r.async = c % 4 == 2;
          r.col_major_in = c % 8 == 4;
          r.padded_out = c % 6 == 0;
          INFO((single ? "float" : "double")
               << ", D = " << d << ", K = " << steps << ", case " << c << " (noise " << o.noise
               << ", reproject " << o.reproject << ", sigma " << o.sigma << ", ids " << !ids.empty()
               << ", async " << r.async << ")");
          const gpu_bridge::result g = gpu_bridge::trajectory(p.v, p.u, p.n, d, o, ids, r);
          CHECK(g.status == 0);
          compare(g.out, cpu, d, single);
          CHECK(g.padding_written == 0);
        }
      }
    }
  }
}

TEST_CASE("cuda bridge: many rows, every row written", "[cuda][bridge]") {
  const pair_data p = make_pairs(20000, 8, 3u, false);
  brownian_bridge_options o;
  o.random_t = true;
  o.reproject = true;
  o.seed = 1;
  const std::vector<double> cpu = cpu_run<double>(false, p, o);
  compare(gpu_bridge::sample(p.v, p.u, p.n, p.d, o, {}, {}).out, cpu, p.d, false);
  o.steps = 3;
  const std::vector<double> cpu_path = cpu_run<double>(true, p, o);
  compare(gpu_bridge::trajectory(p.v, p.u, p.n, p.d, o, {}, {}).out, cpu_path, p.d, false);
}

TEST_CASE("cuda bridge: bad arguments", "[cuda][bridge]") {
  const pair_data p = make_pairs(6, 4, 9u, false);
  const int invalid = gpu_bridge::invalid_value_code();
  const gpu_bridge::run_options plain;
  gpu_bridge::run_options async;
  async.async = true;
  auto opt = [](auto edit) {
    brownian_bridge_options o;
    edit(o);
    return o;
  };
  const brownian_bridge_options t_bad = opt([](brownian_bridge_options& o) { o.t = 1.5; });
  const brownian_bridge_options range_bad = opt([](brownian_bridge_options& o) {
    o.random_t = true;
    o.t_min = 0.7;
    o.t_max = 0.2;
  });
  const brownian_bridge_options sigma_bad = opt([](brownian_bridge_options& o) { o.sigma = -1; });
  const brownian_bridge_options steps_bad = opt([](brownian_bridge_options& o) { o.steps = 0; });

  SECTION("throwing wrappers: the CPU's messages") {
    require_invalid([&] { gpu_bridge::sample(p.v, p.u, p.n, p.d, t_bad, {}, plain); },
                    "'t' must lie in [0, 1], got 1.5");
    require_invalid([&] { gpu_bridge::sample(p.v, p.u, p.n, p.d, range_bad, {}, plain); },
                    "'t_min' and 't_max' must satisfy 0 <= t_min <= t_max <= 1");
    require_invalid([&] { gpu_bridge::sample(p.v, p.u, p.n, p.d, sigma_bad, {}, plain); },
                    "'sigma' must be finite and >= 0");
    require_invalid([&] { gpu_bridge::trajectory(p.v, p.u, p.n, p.d, steps_bad, {}, plain); },
                    "'steps' must be >= 1, got 0");
    gpu_bridge::run_options wrong_rows;
    wrong_rows.out_rows = p.n + 1;
    require_invalid([&] { gpu_bridge::sample(p.v, p.u, p.n, p.d, {}, {}, wrong_rows); },
                    "'y' is 7 x 4, expected 6 x 4");
    require_invalid([&] { gpu_bridge::trajectory(p.v, p.u, p.n, p.d, {}, {}, wrong_rows); },
                    "'x' is 7 x 4, expected 54 x 4");
    const std::vector<std::int64_t> neg = {0, -4, 2, 3, 4, 5};
    require_invalid([&] { gpu_bridge::sample(p.v, p.u, p.n, p.d, {}, neg, plain); },
                    "'ids' has a negative id (-4) at row 1");
    const std::vector<std::int64_t> short_ids = {0, 1, 2};
    require_invalid([&] { gpu_bridge::sample(p.v, p.u, p.n, p.d, {}, short_ids, plain); },
                    "'ids' has 3 entries, expected 6");
    std::vector<double> zero_row = p.v;
    for (index_t k = 0; k < p.d; ++k) zero_row[static_cast<std::size_t>(3 * p.d + k)] = 0;
    require_invalid([&] { gpu_bridge::sample(zero_row, p.u, p.n, p.d, {}, {}, plain); },
                    "'a' has a row of zero norm (row 3)");
    std::vector<double> nan_u = p.u;
    nan_u[static_cast<std::size_t>(2 * p.d + 1)] = std::nan("");
    require_invalid([&] { gpu_bridge::trajectory(p.v, nan_u, p.n, p.d, {}, {}, plain); },
                    "'b' has a non-finite value (nan) at row 2, column 1");
  }
  SECTION("async: cudaErrorInvalidValue, no exception") {
    CHECK(gpu_bridge::sample(p.v, p.u, p.n, p.d, t_bad, {}, async).status == invalid);
    CHECK(gpu_bridge::sample(p.v, p.u, p.n, p.d, range_bad, {}, async).status == invalid);
    CHECK(gpu_bridge::sample(p.v, p.u, p.n, p.d, sigma_bad, {}, async).status == invalid);
    CHECK(gpu_bridge::trajectory(p.v, p.u, p.n, p.d, steps_bad, {}, async).status == invalid);
    gpu_bridge::run_options wrong_rows = async;
    wrong_rows.out_rows = p.n + 1;
    CHECK(gpu_bridge::sample(p.v, p.u, p.n, p.d, {}, {}, wrong_rows).status == invalid);
    const std::vector<std::int64_t> short_ids = {0, 1, 2};
    CHECK(gpu_bridge::sample(p.v, p.u, p.n, p.d, {}, short_ids, async).status == invalid);
    gpu_bridge::run_options small_ws = async;
    small_ws.ws_delta = -8;
    CHECK(gpu_bridge::trajectory(p.v, p.u, p.n, p.d, {}, {}, small_ws).status == invalid);
    // A negative id only the device sees: its row (points) or block of K + 1 rows (paths) is NaN.
    const std::vector<std::int64_t> neg = {0, -4, 2, 3, 4, 5};
    const gpu_bridge::result g = gpu_bridge::sample(p.v, p.u, p.n, p.d, {}, neg, async);
    CHECK(g.status == 0);
    CHECK(std::isnan(g.out[static_cast<std::size_t>(p.d)]));
    CHECK(std::isfinite(g.out[0]));
    CHECK(std::isfinite(g.out[static_cast<std::size_t>(2 * p.d)]));
    brownian_bridge_options three;
    three.steps = 3;
    const gpu_bridge::result gp = gpu_bridge::trajectory(p.v, p.u, p.n, p.d, three, neg, async);
    CHECK(gp.status == 0);
    CHECK(std::isnan(gp.out[static_cast<std::size_t>(4 * p.d)]));      // X_0 of pair 1
    CHECK(std::isnan(gp.out[static_cast<std::size_t>(7 * p.d + 3)]));  // X_3 of pair 1
    CHECK(std::isfinite(gp.out[static_cast<std::size_t>(8 * p.d)]));   // pair 2
  }
}

namespace {

struct cpu_loss {
  double loss = 0, dt = 0;
  std::vector<double> t, dt_rows, ga, gb, gaa;
};

cpu_loss bridge_loss_cpu(const pair_data& p, const std::vector<double>& a,
                         const contrastive::brownian_bridge_loss_options& o, double upstream) {
  cpu_loss c;
  const auto v = contrastive::make_view(p.v.data(), p.n, p.d);
  const auto u = contrastive::make_view(p.u.data(), p.n, p.d);
  const auto va = contrastive::make_view(a.data(), p.n, p.d);
  const double init = o.accumulate ? 0.5 : 0.0;
  c.ga.assign(p.v.size(), init);
  c.gb.assign(p.v.size(), init);
  c.gaa.assign(p.v.size(), init);
  const auto s = contrastive::brownian_bridge_loss_forward(v, u, va, o);
  c.loss = s.loss;
  c.t = s.t;
  const auto g = contrastive::brownian_bridge_loss_backward(
      v, u, va, s, contrastive::make_view(c.ga.data(), p.n, p.d),
      contrastive::make_view(c.gb.data(), p.n, p.d), contrastive::make_view(c.gaa.data(), p.n, p.d),
      o, upstream);
  c.dt = g.t;
  c.dt_rows = g.t_rows;
  return c;
}

double max_diff(const std::vector<double>& x, const std::vector<double>& y) {
  REQUIRE(x.size() == y.size());
  double m = 0;
  for (std::size_t i = 0; i < x.size(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

}  // namespace

TEST_CASE("cuda bridge loss: loss, t, gradients and dL/dt equal the CPU's", "[cuda][bridge]") {
  for (const bool single : {false, true}) {
    const pair_data p = make_pairs(37, 24, 17u, single);
    const pair_data q = make_pairs(37, 24, 18u, single);  // a_aug: q.v
    const double tol = single ? 2e-5 : 1e-12;
    for (int variant = 0; variant < 5; ++variant) {
      contrastive::brownian_bridge_loss_options o;
      o.bridge.random_t = variant >= 1;
      o.bridge.seed = 5;
      o.bridge.step = 2;
      o.nll_weight = variant == 2;
      o.detach_a_aug = variant == 3;
      o.accumulate = variant == 4;
      const double upstream = variant == 4 ? -0.6 : 1.0;
      std::vector<std::int64_t> use;  // variant 1: random t keyed by explicit ids
      if (variant == 1)
        for (int i = 0; i < 37; ++i) use.push_back(3 * i + 1);
      contrastive::brownian_bridge_loss_options oc = o;
      oc.bridge.ids = use;
      const cpu_loss want = bridge_loss_cpu(p, q.v, oc, upstream);
      const auto got =
          gpu_bridge::bridge_loss(p.v, p.u, q.v, p.n, p.d, o, use, single, variant == 4, upstream);
      INFO((single ? "float" : "double") << " variant " << variant << " error " << got.error);
      REQUIRE(got.error.empty());
      CHECK(got.loss == Approx(want.loss).epsilon(tol).margin(tol));
      CHECK(max_diff(got.t, want.t) <= tol);
      CHECK(max_diff(got.ga, want.ga) <= tol);
      CHECK(max_diff(got.gb, want.gb) <= tol);
      CHECK(max_diff(got.gaa, want.gaa) <= tol);
      CHECK(max_diff(got.dt_rows, want.dt_rows) <= tol);
      CHECK(got.dt == Approx(want.dt).epsilon(tol).margin(tol));
    }
  }
}

TEST_CASE("cuda bridge loss: the kernels' row code on the host equals the CPU loss in double",
          "[cuda][bridge][host]") {
  const pair_data p = make_pairs(29, 12, 21u, false);
  const pair_data q = make_pairs(29, 12, 22u, false);
  for (int variant = 0; variant < 5; ++variant) {
    contrastive::brownian_bridge_loss_options o;
    o.bridge.random_t = variant >= 1;
    o.bridge.seed = 3;
    o.nll_weight = variant == 2;
    o.detach_a_aug = variant == 3;
    o.accumulate = variant == 4;
    const double upstream = variant == 4 ? 1.7 : 1.0;
    const cpu_loss want = bridge_loss_cpu(p, q.v, o, upstream);
    const auto got = gpu_bridge::bridge_loss_rows_on_host(p.v, p.u, q.v, p.n, p.d, o, upstream);
    INFO("variant " << variant);
    CHECK(got.loss == Approx(want.loss).epsilon(1e-12).margin(1e-14));
    CHECK(max_diff(got.t, want.t) == 0);
    CHECK(max_diff(got.ga, want.ga) <= 1e-14);
    CHECK(max_diff(got.gb, want.gb) <= 1e-14);
    CHECK(max_diff(got.gaa, want.gaa) <= 1e-14);
    CHECK(max_diff(got.dt_rows, want.dt_rows) <= 1e-13);
    CHECK(got.dt == Approx(want.dt).epsilon(1e-12).margin(1e-13));
  }
}

TEST_CASE("cuda bridge loss: bad inputs give the CPU's messages", "[cuda][bridge][errors]") {
  const pair_data p = make_pairs(6, 8, 3u, false);
  auto cpu_message = [&](const std::vector<double>& a,
                         const contrastive::brownian_bridge_loss_options& o) {
    try {
      bridge_loss_cpu(p, a, o, 1.0);
    } catch (const contrastive::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto gpu_message = [&](const std::vector<double>& a,
                         const contrastive::brownian_bridge_loss_options& o) {
    const std::string m =
        gpu_bridge::bridge_loss(p.v, p.u, a, p.n, p.d, o, {}, false, false, 1.0).error;
    const std::string prefix = "cuda::";
    return m.compare(0, prefix.size(), prefix) == 0 ? m.substr(prefix.size()) : m;
  };
  std::vector<double> a = p.v;
  a[2 * p.d + 3] = NAN;  // a_aug, row 2
  contrastive::brownian_bridge_loss_options o;
  CHECK(gpu_message(a, o) == cpu_message(a, o));
  a = p.u;
  o.nll_weight = true;
  o.bridge.t = 0;  // the weight is infinite at t = 0
  CHECK(gpu_message(a, o) == cpu_message(a, o));
  o.nll_weight = false;
  o.bridge.t = 1.5;
  CHECK(gpu_message(a, o) == cpu_message(a, o));
}

namespace {

struct cpu_sampler_gradient {
  std::vector<double> ga, gb, dt_rows;
  double dt = 0, dsigma = 0;
};

/// The CPU's backward of a point sample (trajectory: a path) on Philox noise, for upstream g.
cpu_sampler_gradient sampler_backward_cpu(const pair_data& p, const std::vector<double>& g,
                                          const brownian_bridge_options& o, bool trajectory) {
  cpu_sampler_gradient c;
  const auto v = contrastive::make_view(p.v.data(), p.n, p.d);
  const auto u = contrastive::make_view(p.u.data(), p.n, p.d);
  const index_t rows = trajectory ? p.n * (o.steps + 1) : p.n;
  std::vector<double> out(static_cast<std::size_t>(rows * p.d));
  c.ga.assign(p.v.size(), o.accumulate ? 0.5 : 0.0);
  c.gb = c.ga;
  const auto vg = contrastive::make_view(g.data(), rows, p.d);
  const auto ga = contrastive::make_view(c.ga.data(), p.n, p.d);
  const auto gb = contrastive::make_view(c.gb.data(), p.n, p.d);
  contrastive::brownian_bridge_gradient r;
  if (trajectory) {
    const auto saved = contrastive::brownian_bridge_trajectory(
        v, u, contrastive::make_view(out.data(), rows, p.d), o);
    r = contrastive::brownian_bridge_trajectory_backward(v, u, saved, vg, ga, gb, o);
  } else {
    const auto saved =
        contrastive::brownian_bridge_sample(v, u, contrastive::make_view(out.data(), rows, p.d), o);
    r = contrastive::brownian_bridge_sample_backward(v, u, saved, vg, ga, gb, o);
  }
  c.dt = r.t;
  c.dt_rows = r.t_rows;
  c.dsigma = r.sigma;
  return c;
}

std::vector<brownian_bridge_options> sampler_variants() {
  std::vector<brownian_bridge_options> out;
  for (int k = 0; k < 6; ++k) {
    brownian_bridge_options o;
    o.seed = 11;
    o.step = 4;
    o.random_t = k % 2 == 1;
    o.reproject = k >= 2;
    o.noise = k != 4;
    o.accumulate = k == 5;
    o.steps = k == 3 ? 2 : 5;
    out.push_back(o);
  }
  return out;
}

std::vector<double> upstream_values(std::size_t count, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> nd;
  std::vector<double> g(count);
  for (double& x : g) x = nd(gen);
  return g;
}

}  // namespace

TEST_CASE("cuda bridge sampler backward: the kernels' row code on the host equals the CPU's",
          "[cuda][bridge][host]") {
  const pair_data p = make_pairs(13, 10, 31u, false);
  for (const bool trajectory : {false, true})
    for (const brownian_bridge_options& o : sampler_variants()) {
      const index_t rows = trajectory ? p.n * (o.steps + 1) : p.n;
      const std::vector<double> g = upstream_values(static_cast<std::size_t>(rows * p.d), 7u);
      const cpu_sampler_gradient want = sampler_backward_cpu(p, g, o, trajectory);
      const auto got =
          gpu_bridge::sampler_backward_rows_on_host(p.v, p.u, g, p.n, p.d, o, trajectory);
      INFO("trajectory " << trajectory << " random_t " << o.random_t << " reproject " << o.reproject
                         << " noise " << o.noise << " steps " << o.steps);
      CHECK(max_diff(got.ga, want.ga) <= 1e-12);
      CHECK(max_diff(got.gb, want.gb) <= 1e-12);
      CHECK(got.dsigma == Approx(want.dsigma).epsilon(1e-12).margin(1e-12));
      if (!trajectory) {
        CHECK(max_diff(got.dt_rows, want.dt_rows) <= 1e-12);
        CHECK(got.dt == Approx(want.dt).epsilon(1e-12).margin(1e-12));
      }
    }
}

TEST_CASE("cuda bridge sampler backward: on the device, equal to the CPU's", "[cuda][bridge]") {
  for (const bool single : {false, true}) {
    const pair_data p = make_pairs(41, 16, 33u, single);
    for (const bool trajectory : {false, true})
      for (const brownian_bridge_options& o : sampler_variants()) {
        const index_t rows = trajectory ? p.n * (o.steps + 1) : p.n;
        std::vector<double> g = upstream_values(static_cast<std::size_t>(rows * p.d), 9u);
        if (single)
          for (double& x : g) x = static_cast<float>(x);
        const cpu_sampler_gradient want = sampler_backward_cpu(p, g, o, trajectory);
        const bool generic = o.reproject;  // half the runs through the generic calls
        const auto got =
            gpu_bridge::sampler_backward(p.v, p.u, g, p.n, p.d, o, trajectory, single, generic);
        INFO((single ? "float" : "double") << " trajectory " << trajectory << " reproject "
                                           << o.reproject << " error " << got.error);
        REQUIRE(got.error.empty());
        const double tol = single ? 1e-4 : 1e-11;
        CHECK(max_diff(got.ga, want.ga) <= tol);
        CHECK(max_diff(got.gb, want.gb) <= tol);
        CHECK(got.dsigma == Approx(want.dsigma).epsilon(tol).margin(tol));
        if (!trajectory) CHECK(got.dt == Approx(want.dt).epsilon(tol).margin(tol));
      }
  }
}
