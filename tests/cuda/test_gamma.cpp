#include "support/test_config.hpp"

// The CUDA gamma sampler (cuda/gamma.cuh) against the CPU's: the same Philox words, the same
// rejection path (blocks consumed), the same values (1e-12 relative in double, where only the
// device's log/cos/exp may differ by an ulp), every element written, nothing outside written,
// bad arguments rejected. Device work runs in gamma_kernels.cu.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <contrastive/adapters/raw.hpp>
#include <contrastive/core/error.hpp>
#include <contrastive/sampling/gamma.hpp>

#include "cuda/gamma_kernels.hpp"

using contrastive::gamma_params;
using contrastive::index_t;
using contrastive::philox_stream;

namespace {

bool close_rel(double gpu, double cpu, double rel) {
  return std::abs(gpu - cpu) <= rel * std::abs(cpu);
}

/// Runs f, which must throw contrastive::invalid_argument whose message contains `needle`.
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

std::vector<double> cpu_fill(index_t rows, index_t cols, const gamma_params& p,
                             std::uint64_t first_id) {
  std::vector<double> out(static_cast<std::size_t>(rows * cols));
  contrastive::fill_gamma(contrastive::make_view(out.data(), rows, cols), p, first_id);
  return out;
}

/// Compares a device fill with the CPU's values (row-major, double) element by element.
void compare(const gpu_gamma::filled& g, const std::vector<double>& cpu, index_t rows, index_t cols,
             bool single, const char* what) {
  const double rel = single ? 1.2e-7 : 1e-12;
  int bad = 0;
  for (index_t i = 0; i < rows; ++i) {
    for (index_t j = 0; j < cols; ++j) {
      const double c = single
                           ? double(static_cast<float>(cpu[static_cast<std::size_t>(i * cols + j)]))
                           : cpu[static_cast<std::size_t>(i * cols + j)];
      const double x = g.at(i, j);
      if (!(std::isfinite(x) && close_rel(x, c, rel))) {
        if (++bad <= 5)
          FAIL_CHECK(what << ": element (" << i << ", " << j << ") is " << x << " on the GPU, " << c
                          << " on the CPU");
      }
    }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("cuda gamma: Philox blocks on the device equal the CPU's", "[cuda][gamma]") {
  const philox_stream streams[] = {{0, 0, 0, 0},
                                   {0x0123456789ABCDEFull, 0xFEDCBA9876543210ull, 77u, 15u},
                                   {42, (std::uint64_t(1) << 40) + 3, 0xFFFFFFFFu, 2u}};
  for (const philox_stream& s : streams) {
    const auto gpu = gpu_gamma::philox_blocks(s, 1000);
    int bad = 0;
    for (std::uint32_t k = 0; k < 1000; ++k) {
      const contrastive::philox_block c = s.block(k);
      for (int w = 0; w < 4; ++w) bad += gpu[k].w[w] != c.w[w];
    }
    INFO("seed " << s.seed << ", id " << s.id << ", step " << s.step << ", stream " << s.stream);
    CHECK(bad == 0);
  }
}

TEST_CASE("cuda gamma: device draws take the CPU's rejection path and values", "[cuda][gamma]") {
  std::vector<std::uint64_t> ids;
  for (std::uint64_t k = 0; k < 4000; ++k) ids.push_back(k);
  for (std::uint64_t k = 0; k < 1000; ++k) ids.push_back((std::uint64_t(1) << 50) + 977 * k);
  for (const double alpha : {0.05, 0.3, 0.9, 1.0, 2.5, 10.0, 150.0}) {
    gamma_params p;
    p.alpha = alpha;
    p.seed = 1234567;
    p.step = 9;
    p.stream = 1;
    const auto gpu = gpu_gamma::gamma_draws(p, ids);
    int bad_blocks = 0, bad_values = 0, rejections = 0;
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const contrastive::gamma_draw c =
          contrastive::gamma_variate(alpha, philox_stream{p.seed, ids[k], p.step, p.stream});
      rejections += c.blocks > 1;
      bad_blocks += gpu[k].blocks != c.blocks;
      const bool ok =
          close_rel(gpu[k].dv, c.dv, 1e-12) &&
          std::abs(gpu[k].log_boost - c.log_boost) <= 1e-12 * std::max(1.0, std::abs(c.log_boost));
      if (!ok && ++bad_values <= 5)
        FAIL_CHECK("alpha " << alpha << ", id " << ids[k] << ": GPU (dv " << gpu[k].dv
                            << ", log_boost " << gpu[k].log_boost << "), CPU (" << c.dv << ", "
                            << c.log_boost << ")");
    }
    INFO("alpha " << alpha << ": " << rejections << " draws needed more than one block");
    CHECK(rejections > 0);  // the rejection branch is exercised
    CHECK(bad_blocks == 0);
    CHECK(bad_values == 0);
  }
}

TEST_CASE("cuda gamma: fill_gamma equals the CPU element for element, every element written",
          "[cuda][gamma]") {
  const index_t rows = 37, cols = 53;
  const std::uint64_t first_id = (std::uint64_t(1) << 33) + 5;
  gamma_params p;
  p.alpha = 0.7;
  p.rate = 2.5;
  p.seed = 99;
  p.step = 3;
  p.stream = 0;
  const std::vector<double> cpu = cpu_fill(rows, cols, p, first_id);
  for (const bool single : {false, true}) {
    for (const bool async : {false, true}) {
      for (const auto l : {gpu_gamma::layout::row_major, gpu_gamma::layout::col_major,
                           gpu_gamma::layout::padded}) {
        INFO((single ? "float" : "double")
             << (async ? ", async" : ", throwing wrapper") << ", layout " << static_cast<int>(l));
        const gpu_gamma::filled g =
            gpu_gamma::fill_matrix(single, rows, cols, l, p, first_id, async);
        compare(g, cpu, rows, cols, single, "fill_gamma");
        if (l == gpu_gamma::layout::padded) {
          int written = 0;  // the 3 padding columns of each row stay NaN
          for (index_t i = 0; i < rows; ++i)
            for (index_t j = cols; j < cols + 3; ++j)
              written += !std::isnan(g.data[static_cast<std::size_t>(i * (cols + 3) + j)]);
          CHECK(written == 0);
        }
      }
    }
  }
}

TEST_CASE("cuda gamma: strided vectors and large shapes", "[cuda][gamma]") {
  gamma_params p;
  p.alpha = 3.0;
  p.seed = 5;
  const index_t n = 1001;
  for (const bool async : {false, true}) {
    const auto g = gpu_gamma::fill_vector(false, n, 3, p, 17, async);
    int bad = 0, gaps = 0;
    for (index_t k = 0; k < n; ++k) {
      const double c = contrastive::sample_gamma(17 + static_cast<std::uint64_t>(k), p);
      bad += !close_rel(g[static_cast<std::size_t>(3 * k)], c, 1e-12);
      if (k + 1 < n)
        gaps += !std::isnan(g[static_cast<std::size_t>(3 * k + 1)]) +
                !std::isnan(g[static_cast<std::size_t>(3 * k + 2)]);
    }
    CHECK(bad == 0);
    CHECK(gaps == 0);
  }
  // More elements than one grid-stride pass covers (65536 blocks x 256 threads = 2^24).
  const index_t rows = 4099, cols = 4097;
  const auto g = gpu_gamma::fill_matrix(true, rows, cols, gpu_gamma::layout::row_major, p, 0, true);
  int bad = 0;
  for (const index_t e : {index_t(0), index_t(1) << 24, (index_t(1) << 24) + 1, rows * cols - 1}) {
    const double c =
        double(static_cast<float>(contrastive::sample_gamma(static_cast<std::uint64_t>(e), p)));
    bad += !close_rel(g.data[static_cast<std::size_t>(e)], c, 1.2e-7);
  }
  int nan = 0;
  for (const double x : g.data) nan += !std::isfinite(x);
  CHECK(bad == 0);
  CHECK(nan == 0);
}

TEST_CASE("cuda gamma: the ids overload equals the CPU's", "[cuda][gamma]") {
  const index_t rows = 19, cols = 23;
  std::vector<std::int64_t> ids;
  for (index_t k = 0; k < rows * cols; ++k)
    ids.push_back(k % 7 == 0 ? std::int64_t(3) : (std::int64_t(1) << 61) + 104729 * k);
  gamma_params p;
  p.alpha = 0.25;
  p.rate = 0.5;
  p.seed = 0xABCDEF;
  p.step = 12;
  p.stream = 7;
  std::vector<double> cpu(static_cast<std::size_t>(rows * cols));
  contrastive::fill_gamma(contrastive::make_view(cpu.data(), rows, cols), p, ids);
  for (const bool single : {false, true}) {
    for (const bool async : {false, true}) {
      INFO((single ? "float" : "double") << (async ? ", async" : ", throwing wrapper"));
      gpu_gamma::filled g;
      g.data = gpu_gamma::fill_ids(single, rows, cols, ids, p, async);
      g.row_stride = cols;
      g.col_stride = 1;
      compare(g, cpu, rows, cols, single, "fill_gamma(ids)");
    }
  }
  // _async: a negative id (seen only by the device) makes its element NaN, the others are drawn.
  std::vector<std::int64_t> neg = ids;
  neg[5] = -1;
  const auto g = gpu_gamma::fill_ids(false, rows, cols, neg, p, true);
  CHECK(std::isnan(g[5]));
  CHECK(close_rel(g[6], cpu[6], 1e-12));
}

TEST_CASE("cuda gamma: bad arguments", "[cuda][gamma]") {
  const int invalid = gpu_gamma::invalid_value_code();
  gamma_params ok;
  ok.alpha = 2;
  auto with = [&](double alpha, double rate, std::uint32_t stream) {
    gamma_params p = ok;
    p.alpha = alpha;
    p.rate = rate;
    p.stream = stream;
    return p;
  };
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  SECTION("throwing wrapper: the CPU's messages") {
    require_invalid([&] { gpu_gamma::fill_checked(with(0, 1, 0), 4, false); },
                    "'alpha' must be finite and > 0");
    require_invalid([&] { gpu_gamma::fill_checked(with(inf, 1, 0), 4, false); },
                    "'alpha' must be finite and > 0");
    require_invalid([&] { gpu_gamma::fill_checked(with(nan, 1, 0), 4, false); },
                    "'alpha' must be finite and > 0");
    require_invalid([&] { gpu_gamma::fill_checked(with(1, -1, 0), 4, false); },
                    "'rate' must be finite and > 0");
    require_invalid([&] { gpu_gamma::fill_checked(with(1, 1, 16), 4, false); },
                    "'stream' must be in [0, 15]");
    require_invalid([&] { gpu_gamma::fill_checked(ok, 4, true); }, "'out' is a null pointer");
    const std::vector<std::int64_t> ids = {0, 1, 2, -7, 4, 5};
    require_invalid([&] { gpu_gamma::fill_ids(false, 2, 3, ids, ok, false); },
                    "'ids' has a negative id (-7) at position 3");
    require_invalid([&] { gpu_gamma::fill_ids(false, 2, 3, ids, ok, false, 5); },
                    "'ids' has 5 entries, expected 6");
    require_invalid([&] { gpu_gamma::fill_ids(false, 2, 3, ids, ok, false, -1, true); },
                    "'ids' is a null pointer");
    CHECK_NOTHROW(gpu_gamma::fill_checked(ok, 0, true));  // empty output, null allowed
  }
  SECTION("async: cudaErrorInvalidValue, no exception") {
    CHECK(gpu_gamma::fill_async_status(with(0, 1, 0), 4, false) == invalid);
    CHECK(gpu_gamma::fill_async_status(with(nan, 1, 0), 4, false) == invalid);
    CHECK(gpu_gamma::fill_async_status(with(1, inf, 0), 4, false) == invalid);
    CHECK(gpu_gamma::fill_async_status(with(1, 1, 16), 4, false) == invalid);
    CHECK(gpu_gamma::fill_async_status(ok, 4, true) == invalid);
    CHECK(gpu_gamma::fill_async_status(ok, 4, false) == 0);
    CHECK(gpu_gamma::fill_async_status(ok, 0, true) == 0);
    const std::vector<std::int64_t> ids = {0, 1, 2, 3};
    CHECK(gpu_gamma::fill_ids_async_status(ok, 4, ids, 3, false) == invalid);
    CHECK(gpu_gamma::fill_ids_async_status(ok, 4, ids, 4, true) == invalid);
    CHECK(gpu_gamma::fill_ids_async_status(ok, 4, ids, 4, false) == 0);
  }
}
