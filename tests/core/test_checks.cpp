#include "support/test_config.hpp"

// The census of bad inputs (README "Errors"): one row per class, each through a public call,
// with the exact message the user sees. Calls that have outputs are made on poisoned outputs,
// which must come back untouched.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <contrastive/contrastive.hpp>

#include "support/reference.hpp"

namespace {

using rmat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
namespace c = contrastive;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c::invalid_argument& e) {
    return e.what();
  }
  return "no exception";
}

rmat unit_rows(Eigen::Index n, Eigen::Index d, std::uint32_t seed) {
  rmat x = ref::random_matrix(n, d, seed);
  x.rowwise().normalize();
  return x;
}

struct census_row {
  const char* what;
  std::function<void()> call;
  std::string message;
};

}  // namespace

TEST_CASE("census: every bad-input class gives its message and leaves outputs untouched",
          "[checks][errors]") {
  const Eigen::Index n = 4, d = 3;
  const rmat a = unit_rows(n, d, 1), b = unit_rows(n, d, 2);
  const double poison = 7.25;
  rmat ga = rmat::Constant(n, d, poison), gb = ga, y = ga;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const c::info_nce_options o;
  const auto saved = c::info_nce_forward(a, b, o);
  const std::vector<std::int64_t> labels{0, 1, 0, 1}, labels3{0, 1, 0};
  const std::vector<std::int64_t> labels8{0, 9, 1, 9, 0, 9, 1, 9};
  c::normalizer_state state(8, 2);
  const c::gamma_nce_options go;
  const std::vector<std::int64_t> ids{0, 1, 2, 3};

  const std::vector<census_row> rows = {
      {"columns differ", [&] { c::info_nce_forward(a, rmat(rmat::Ones(n, d + 1)), o); },
       "info_nce_forward: 'b' has 4 columns, expected 3 (columns of 'a')"},
      {"rows differ", [&] { c::info_nce_forward(a, rmat(rmat::Ones(n + 1, d)), o); },
       "info_nce_forward: 'b' has 5 rows, expected 4 (rows of 'a')"},
      {"empty batch", [&] { c::info_nce_forward(rmat(0, d), rmat(0, d), o); },
       "info_nce_forward: empty batch ('a' has 0 rows)"},
      {"no columns", [&] { c::info_nce_forward(rmat(n, 0), rmat(n, 0), o); },
       "info_nce_forward: 'a' has 0 columns (D must be > 0)"},
      {"NaN input",
       [&] {
         rmat x = a;
         x(2, 1) = nan;
         c::info_nce_forward(x, b, o);
       },
       "info_nce_forward: 'a' has a non-finite value (nan) at row 2, column 1"},
      {"infinite input",
       [&] {
         rmat x = b;
         x(1, 0) = -inf;
         c::info_nce_forward(a, x, o);
       },
       "info_nce_forward: 'b' has a non-finite value (-inf) at row 1, column 0"},
      {"temperature 0",
       [&] {
         auto p = o;
         p.temperature = 0;
         c::info_nce_forward(a, b, p);
       },
       "info_nce_forward: 'temperature' must be finite and > 0, got 0"},
      {"temperature NaN",
       [&] {
         auto p = o;
         p.temperature = nan;
         c::info_nce_forward(a, b, p);
       },
       "info_nce_forward: 'temperature' must be finite and > 0, got nan"},
      {"label smoothing 1",
       [&] {
         auto p = o;
         p.label_smoothing = 1;
         c::info_nce_forward(a, b, p);
       },
       "info_nce_forward: 'label_smoothing' must lie in [0, 1), got 1"},
      {"labels on one side only",
       [&] {
         auto p = o;
         p.labels_a = labels;
         c::info_nce_forward(a, b, p);
       },
       "info_nce_forward: give both 'labels_a' and 'labels_b' or neither"},
      {"labels of the wrong length",
       [&] {
         auto p = o;
         p.labels_a = labels3;
         p.labels_b = labels;
         c::info_nce_forward(a, b, p);
       },
       "info_nce_forward: 'labels_a' has 3 labels, expected 4 (one per row)"},
      {"strided labels",
       [&] {
         auto p = o;
         p.labels_a = c::vector_view<const std::int64_t>(labels8.data(), 4, 2);
         p.labels_b = labels;
         c::info_nce_forward(a, b, p);
       },
       "info_nce_forward: 'labels_a' must be contiguous (stride 1), got stride 2"},
      {"tile size 0",
       [&] {
         auto p = o;
         p.tile_rows = 0;
         c::info_nce_forward(a, b, p);
       },
       "info_nce_forward: tile sizes must be > 0, got 0 x 256"},
      {"reduction outside the enum",
       [&] {
         auto p = o;
         p.reduction = static_cast<c::loss_reduction>(3);
         c::info_nce_forward_backward(a, b, ga, gb, p);
       },
       "info_nce_forward: 'reduction' has an invalid value (3)"},
      {"gradient of the wrong shape",
       [&] {
         rmat g = rmat::Constant(n, d + 1, poison);
         c::info_nce_backward(a, b, saved, g, gb, o);
       },
       "info_nce_backward: 'grad_a' is 4 x 4, expected 4 x 3 (the shape of 'a')"},
      {"gradient aliasing an input",
       [&] {
         rmat x = b;
         c::info_nce_backward(a, x, saved, ga, x, o);
       },
       "info_nce_backward: output 'grad_b' overlaps the memory of 'b'"},
      {"upstream not finite", [&] { c::info_nce_backward(a, b, saved, ga, gb, o, inf); },
       "info_nce_backward: 'upstream' must be finite, got inf"},
      {"saved statistics of other options",
       [&] {
         auto p = o;
         p.temperature = 0.5;
         c::info_nce_backward(a, b, saved, ga, gb, p);
       },
       "info_nce_backward: 'saved' was computed with other options (temperature 0.07, symmetric 1, "
       "label_smoothing 0) than these (temperature 0.5, symmetric 1, label_smoothing 0)"},
      {"workspace too small",
       [&] {
         std::vector<unsigned char> w(16);
         c::info_nce_forward(a, b, o, {w.data(), w.size()});
       },
       "info_nce_forward: workspace has 16 bytes, the call needs " +
           std::to_string(c::info_nce_workspace_bytes(a, b, o)) +
           " (use the matching *_workspace_bytes query)"},
      {"workspace without memory",
       [&] {
         c::info_nce_forward(a, b, o, {nullptr, 1024});
       },
       "info_nce_forward: workspace has 1024 bytes but a null data pointer"},
      {"repeated sample id",
       [&] {
         c::gamma_nce_forward_backward(a, b, std::vector<std::int64_t>{0, 1, 1, 2}, state, ga, gb,
                                       go);
       },
       "gamma_nce_forward: sample id 1 appears twice in the batch (positions 1 and 2); ids must be "
       "distinct within a batch"},
      {"sample id out of the state's range",
       [&] {
         c::gamma_nce_forward(a, b, std::vector<std::int64_t>{0, 1, 2, 8}, state, go);
       },
       "gamma_nce_forward: sample id 8 at position 3 is out of range [0, 8) of the "
       "normalizer_state"},
      {"negative sample id",
       [&] {
         c::gamma_nce_forward(a, b, std::vector<std::int64_t>{0, -1, 2, 3}, state, go);
       },
       "gamma_nce_forward: sample id -1 at position 1 is negative"},
      {"state rate without a state", [&] { c::gamma_nce_forward(a, b, ids, go); },
       "gamma_nce_forward: rate_source::state needs a normalizer_state (pass one, or choose "
       "rate_source::same_batch or ::exact)"},
      {"gamma shape 0",
       [&] {
         auto p = go;
         p.alpha = 0;
         c::gamma_nce_forward(a, b, ids, state, p);
       },
       "gamma_nce_forward: 'alpha' must be > 0 (or gamma_nce_options::deterministic), got 0"},
      {"zero-norm row",
       [&] {
         rmat z = a;
         z.row(1).setZero();
         c::feature_separation_forward(a, b, z, b, a, b, c::feature_separation_options{});
       },
       "feature_separation_forward: 'a_ind' has a row of zero norm (row 1); the inputs must be "
       "non-zero embeddings (L2-normalise them first)"},
      {"bridge time outside [0, 1]",
       [&] {
         c::brownian_bridge_loss_options p;
         p.bridge.t = 1.5;
         c::brownian_bridge_loss_forward_backward(a, b, a, ga, gb, y, p);
       },
       "brownian_bridge_loss_forward: 't' must lie in [0, 1], got 1.5"},
      {"negative Philox id",
       [&] {
         c::brownian_bridge_options p;
         const std::vector<std::int64_t> bad_ids{0, 1, -5, 3};
         p.ids = bad_ids;
         c::brownian_bridge_sample(a, b, y, p);
       },
       "brownian_bridge_sample: 'ids' has a negative id (-5) at row 2"},
      {"negative regulariser weight",
       [&] {
         c::geometric_consistency_options p;
         p.cross_modal_weight = -1;
         c::geometric_consistency_forward_backward(a, b, ga, gb, p);
       },
       "geometric_consistency_forward: 'cross_modal_weight' must be finite and >= 0, got -1"},
      {"gradients that could overflow",
       [&] {
         const rmat zero = rmat::Zero(n, d), big = rmat::Constant(n, d, 1e303);
         auto p = o;
         p.temperature = 1e-3;  // logits 0 (a = 0), but dL/da = 1e3 sum_j (p_ij - y_ij) b_j
         c::info_nce_forward_backward(zero, big, ga, gb, p);
       },
       "info_nce_backward: the gradients could overflow double (bound 2e+307 > 1.12355821e+307); "
       "scale the inputs, 'upstream', the weights or 1/temperature down"},
      {"regulariser loss that overflows",
       [&] { c::geometric_consistency_forward(rmat(rmat::Constant(n, d, 1e100)), b); },
       "geometric_consistency_forward: the loss overflows (it is not finite); scale the inputs "
       "down or normalise them"},
      {"samples that overflow",
       [&] {
         c::brownian_bridge_options p;
         p.sigma = 1e308;
         c::brownian_bridge_sample_with_noise(a, b, rmat(rmat::Constant(n, d, 1e10)), y, p);
       },
       "brownian_bridge_sample_with_noise: the results of row 0 overflow double; scale the "
       "inputs, 'sigma' or the upstream gradient down"},
      {"a workspace past 2^60 bytes",
       [&] {
         c::info_nce_options p;
         p.cache_logits = true;
         c::info_nce_workspace_bytes<double>(c::index_t(1) << 31, 8, p);
       },
       "contrastive: the problem is too large: its scratch memory would pass the 2^60 bytes a "
       "workspace may have (a product of 70368744177664 x 65536)"},
  };
  CHECK(rows.size() >= 25);
  for (const auto& r : rows) {
    CAPTURE(r.what);
    CHECK(message_of(r.call) == r.message);
  }
  for (const rmat* g : {&ga, &gb, &y}) CHECK((g->array() == poison).all());
  // The state is untouched by the failed gamma calls.
  for (std::int64_t id = 0; id < 8; ++id) CHECK_FALSE(state.visited(id, 0));
}

TEST_CASE("census: normalizer_state::load rejects a foreign or missing file, state unchanged",
          "[checks][errors]") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / "contrastive_census_test";
  std::filesystem::create_directories(dir);
  const std::string bad = (dir / "not_a_state.bin").string();
  const std::string missing = (dir / "missing.bin").string();
  {
    std::ofstream f(bad, std::ios::binary);
    f << "not a state file";
  }
  std::filesystem::remove(missing);
  contrastive::normalizer_state s(8, 2);
  CHECK(message_of([&] { s.load(bad); }) ==
        "normalizer_state::load: '" + bad +
            "' is truncated (16 bytes, a state file has at least 36)");
  CHECK(message_of([&] { s.load(missing); }) ==
        "normalizer_state::load: cannot open '" + missing + "': No such file or directory");
  CHECK(s.samples() == 8);
  CHECK_FALSE(s.visited(0, 0));
  std::filesystem::remove_all(dir);
}
