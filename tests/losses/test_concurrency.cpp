#include "support/test_config.hpp"

// Thread safety: every loss called from four std::threads at once, each on its own data (and,
// for the gamma loss, its own normaliser state), gives bitwise the results of serial calls.
// The calls share nothing but the library's code: no global state, no static scratch.

#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <contrastive/contrastive.hpp>

#include "support/reference.hpp"

namespace {

using rmf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Everything a call produced, as raw floats/doubles appended to one byte record.
struct record {
  std::vector<unsigned char> bytes;
  template <class T>
  void add(const T& v) {
    const auto* p = reinterpret_cast<const unsigned char*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void add(const rmf& m) {
    const auto* p = reinterpret_cast<const unsigned char*>(m.data());
    bytes.insert(bytes.end(), p, p + sizeof(float) * static_cast<std::size_t>(m.size()));
  }
  void add(const contrastive::temperature_gradient& g) {
    add(g.log_scale);
    add(g.temperature);
    add(g.scale);
  }
};

rmf unit_rows(Eigen::Index n, Eigen::Index d, std::uint32_t seed) {
  return ref::normalized_rows(ref::random_matrix(n, d, seed)).cast<float>();
}

// One job per loss; `seed` selects the data, so every thread works on its own inputs.
using job = std::function<record(std::uint32_t seed)>;

std::vector<std::pair<std::string, job>> jobs() {
  std::vector<std::pair<std::string, job>> out;
  out.emplace_back("clip (2 sweep threads)", [](std::uint32_t seed) {
    // N^2 D = 2.4M multiply-adds: past the threshold, so the sweep runs its own thread team.
    const Eigen::Index n = 192, d = 64;
    const rmf a = unit_rows(n, d, seed), b = unit_rows(n, d, seed + 100);
    rmf ga(n, d), gb(n, d);
    contrastive::info_nce_options o;
    o.num_threads = 2;
    contrastive::temperature_gradient tg;
    record r;
    r.add(contrastive::info_nce_forward_backward(a, b, ga, gb, o, &tg));
    r.add(ga), r.add(gb), r.add(tg);
    return r;
  });
  out.emplace_back("info_nce (one direction, labels, smoothing)", [](std::uint32_t seed) {
    const Eigen::Index n = 70, d = 24;
    const rmf a = unit_rows(n, d, seed), b = unit_rows(n, d, seed + 100);
    std::vector<std::int64_t> labels(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = std::int64_t(i % 9);
    rmf ga(n, d), gb(n, d);
    contrastive::info_nce_options o;
    o.symmetric = false;
    o.labels_a = labels;
    o.labels_b = labels;
    o.label_smoothing = 0.1;
    o.tile_rows = 16;
    o.tile_cols = 24;
    o.num_threads = 1;
    contrastive::temperature_gradient tg;
    record r;
    r.add(contrastive::info_nce_forward_backward(a, b, ga, gb, o, &tg));
    r.add(ga), r.add(gb), r.add(tg);
    return r;
  });
  out.emplace_back("nt_xent", [](std::uint32_t seed) {
    const Eigen::Index n = 80, d = 32;
    const rmf a = unit_rows(n, d, seed), b = unit_rows(n, d, seed + 100);
    rmf ga(n, d), gb(n, d);
    contrastive::nt_xent_options o;
    o.temperature = 0.2;
    o.num_threads = 2;
    contrastive::temperature_gradient tg;
    record r;
    r.add(contrastive::nt_xent_forward_backward(a, b, ga, gb, o, &tg));
    r.add(ga), r.add(gb), r.add(tg);
    return r;
  });
  out.emplace_back("gamma (own state, 3 steps)", [](std::uint32_t seed) {
    const Eigen::Index n = 48, d = 16;
    contrastive::normalizer_state state(400, 2);
    contrastive::gamma_nce_options o;
    o.alpha = 4;
    o.seed = 1234 + seed;
    o.num_threads = 1;
    record r;
    for (std::uint32_t step = 0; step < 3; ++step) {
      const rmf a = unit_rows(n, d, seed + 10 * step), b = unit_rows(n, d, seed + 10 * step + 5);
      std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
      std::iota(ids.begin(), ids.end(), std::int64_t(step * 7));  // overlapping ids: the EMA path
      o.step = step;
      rmf ga(n, d), gb(n, d);
      contrastive::temperature_gradient tg;
      r.add(contrastive::gamma_nce_forward_backward(a, b, ids, state, ga, gb, o, &tg));
      r.add(ga), r.add(gb), r.add(tg);
    }
    for (std::int64_t id = 0; id < 80; ++id)
      for (int dir = 0; dir < 2; ++dir) r.add(state.log_normalizer(id, dir));
    return r;
  });
  out.emplace_back("feature separation", [](std::uint32_t seed) {
    const Eigen::Index n = 40, d = 12;
    const rmf v = unit_rows(n, d, seed), u = unit_rows(n, d, seed + 1),
              vi = unit_rows(n, d, seed + 2), ui = unit_rows(n, d, seed + 3),
              via = unit_rows(n, d, seed + 4), uia = unit_rows(n, d, seed + 5);
    rmf g[6];
    for (auto& m : g) m.resize(n, d);
    contrastive::feature_separation_options o;
    o.num_threads = 2;
    contrastive::temperature_gradient tg;
    record r;
    r.add(contrastive::feature_separation_forward_backward(v, u, vi, ui, via, uia, g[0], g[1], g[2],
                                                           g[3], g[4], g[5], o, &tg));
    for (const auto& m : g) r.add(m);
    r.add(tg);
    return r;
  });
  out.emplace_back("brownian bridge loss (random t)", [](std::uint32_t seed) {
    const Eigen::Index n = 64, d = 20;
    const rmf v = unit_rows(n, d, seed), u = unit_rows(n, d, seed + 1),
              va = unit_rows(n, d, seed + 2);
    rmf gv(n, d), gu(n, d), ga(n, d);
    contrastive::brownian_bridge_loss_options o;
    o.bridge.random_t = true;
    o.bridge.seed = 77 + seed;
    o.num_threads = 2;
    contrastive::brownian_bridge_loss_parameter_gradients pg;
    record r;
    r.add(contrastive::brownian_bridge_loss_forward_backward(v, u, va, gv, gu, ga, o, &pg));
    r.add(gv), r.add(gu), r.add(ga), r.add(pg.t);
    for (const double t : pg.t_rows) r.add(t);
    return r;
  });
  out.emplace_back("geometric consistency (naive, gram, augmented)", [](std::uint32_t seed) {
    const Eigen::Index n = 50, d = 10;
    const rmf v = unit_rows(n, d, seed), u = unit_rows(n, d, seed + 1),
              va = unit_rows(n, d, seed + 2), ua = unit_rows(n, d, seed + 3);
    record r;
    for (const auto alg : {contrastive::gc_algorithm::naive, contrastive::gc_algorithm::gram}) {
      contrastive::geometric_consistency_options o;
      o.algorithm = alg;
      o.num_threads = 2;
      rmf gv(n, d), gu(n, d), gva(n, d), gua(n, d);
      r.add(contrastive::geometric_consistency_forward_backward(v, u, gv, gu, o));
      r.add(gv), r.add(gu);
      r.add(contrastive::geometric_consistency_augmented_forward_backward(v, u, va, ua, gv, gu, gva,
                                                                          gua, o));
      r.add(gv), r.add(gu), r.add(gva), r.add(gua);
    }
    return r;
  });
  return out;
}

}  // namespace

TEST_CASE("losses: concurrent calls from 4 threads equal serial calls bitwise", "[concurrency]") {
  constexpr int threads = 4, repeats = 4;
  const auto js = jobs();
  // Serial reference: every job on every thread's data, one after the other.
  std::vector<std::vector<record>> serial(threads);
  for (int t = 0; t < threads; ++t)
    for (const auto& j : js) serial[t].push_back(j.second(std::uint32_t(1000 * (t + 1))));

  // Concurrent: thread t runs the jobs on its data, starting at job t so that different losses
  // overlap in time. Results and errors are collected and checked on the main thread (Catch2's
  // assertions are not thread-safe).
  std::vector<std::vector<std::string>> errors(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        for (int rep = 0; rep < repeats; ++rep)
          for (std::size_t k = 0; k < js.size(); ++k) {
            const std::size_t jk = (k + std::size_t(t)) % js.size();
            const record got = js[jk].second(std::uint32_t(1000 * (t + 1)));
            const record& want = serial[t][jk];
            if (got.bytes.size() != want.bytes.size() ||
                std::memcmp(got.bytes.data(), want.bytes.data(), got.bytes.size()) != 0)
              errors[t].push_back(js[jk].first + " differs on thread " + std::to_string(t) +
                                  ", repeat " + std::to_string(rep));
          }
      } catch (const std::exception& e) {
        errors[t].push_back(std::string("thread ") + std::to_string(t) + " threw: " + e.what());
      }
    });
  }
  for (auto& th : pool) th.join();
  for (int t = 0; t < threads; ++t) {
    CAPTURE(t);
    for (const auto& e : errors[t]) FAIL_CHECK(e);
    CHECK(errors[t].empty());
  }
  // The threads' data differ, so equal records would mean the check compares nothing.
  CHECK(serial[0][0].bytes != serial[1][0].bytes);
}
