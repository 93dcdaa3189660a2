#include "support/test_config.hpp"

// Shapes whose element counts overflow 32 bits (N = D = 65536: N D = 2^32) as views of a few
// bytes with zero strides: what can be answered without touching N D elements (workspace sizes,
// argument checks) must be exact or rejected with contrastive::invalid_argument, never wrapped.

#include <cstdint>
#include <limits>
#include <vector>

#include <contrastive/contrastive.hpp>

namespace {

using contrastive::index_t;

constexpr index_t big = index_t(1) << 16;  // N = D = 65536, N D = 2^32, N^2 = 2^32

contrastive::matrix_view<const float> broadcast(const float* p, index_t n, index_t d) {
  return contrastive::make_view(p, n, d, 0, 0);  // every element is *p
}

}  // namespace

TEST_CASE("large shapes: workspace sizes past 2^32 elements are exact", "[large]") {
  const float buf[2] = {0.5f, -0.25f};
  const auto a = broadcast(buf, big, big), b = broadcast(buf + 1, big, big);
  REQUIRE(a.size() == index_t(1) << 32);
  // Zero strides are not GEMM-ready: both inputs are packed, N D floats each.
  const std::size_t packed = 2 * (std::size_t(1) << 32) * sizeof(float);
  const std::size_t plain = contrastive::info_nce_workspace_bytes(a, b);
  CHECK(plain >= packed);
  CHECK(plain <
        packed + (std::size_t(1) << 30));  // the sweep scratch is O(tile N + tile D), not O(N D)
  contrastive::info_nce_options cached;
  cached.cache_logits = true;
  // The logit cache holds all N^2 = 2^32 logits.
  CHECK(contrastive::info_nce_workspace_bytes(a, b, cached) - plain >=
        (std::size_t(1) << 32) * sizeof(float));
  CHECK(contrastive::nt_xent_workspace_bytes(a, b) >= packed);
  CHECK(contrastive::gamma_nce_workspace_bytes(a, b) >= packed);
  CHECK(contrastive::feature_separation_workspace_bytes(a, b, a, b, a, b) >= packed);
  // The element-count overload agrees with the view overload minus the packing.
  CHECK(contrastive::info_nce_workspace_bytes<float>(big, big) + packed == plain);
}

TEST_CASE("large shapes: outputs with zero strides are rejected before any element is read",
          "[large]") {
  const float in[1] = {1.0f};
  float out[1] = {0.0f};
  const auto x = broadcast(in, big, big);
  const auto y = contrastive::make_view(out, big, big, 0, 0);
  CHECK_THROWS_AS(contrastive::l2_normalize(x, y), contrastive::invalid_argument);
  CHECK_THROWS_WITH(contrastive::l2_normalize(x, y), Catch::Contains("self-overlapping strides"));
  // Row-major strides over one row: the rows alias each other.
  std::vector<float> row(static_cast<std::size_t>(big));
  CHECK_THROWS_WITH(
      contrastive::l2_normalize(x, contrastive::make_view(row.data(), big, big, 0, 1)),
      Catch::Contains("self-overlapping strides"));
}

// [!mayfail]: today these wrap silently. With N = D = 2^31 the packed copy of one input needs
// 2^62 floats = 2^64 bytes, which does not fit in std::size_t: detail::packing_bytes
// (core/loss_common.hpp) multiplies count * sizeof(T) in detail::array_bytes (core/workspace.hpp)
// without a check, and the logit cache (tiling.hpp cache_elements) likewise, so the size query
// returns a small wrapped number instead of rejecting the shape. Expected: invalid_argument.
TEST_CASE("large shapes: a workspace that does not fit in size_t is rejected",
          "[large][!mayfail]") {
  const float buf[2] = {0.5f, -0.25f};
  const index_t huge = index_t(1) << 31;
  const auto a = broadcast(buf, huge, huge), b = broadcast(buf + 1, huge, huge);
  CHECK_THROWS_AS(contrastive::info_nce_workspace_bytes(a, b), contrastive::invalid_argument);
  CHECK_THROWS_AS(contrastive::nt_xent_workspace_bytes(a, b), contrastive::invalid_argument);
  contrastive::info_nce_options cached;
  cached.cache_logits = true;
  CHECK_THROWS_AS(contrastive::info_nce_workspace_bytes<float>(huge, 8, cached),
                  contrastive::invalid_argument);
}

// [!mayfail]: a Philox stream has 2^28 blocks (2^29 normals); philox_stream::normal takes a
// 64-bit index but block() keeps only its low 28 bits (sampling/philox.hpp), so normal m + 2^29
// silently repeats normal m. The bridge sampler draws D normals per point and K D per path from
// one stream (sampling/brownian_bridge_options.hpp bridge_normals), so D > 2^29 (points) or
// K D > 2^29 (paths) repeat their noise; no check rejects those shapes. Expected: distinct draws.
TEST_CASE("large shapes: Philox normals past 2^29 do not repeat the stream", "[large][!mayfail]") {
  const contrastive::philox_stream s{42, 7, 3, 2};
  const std::uint64_t wrap = std::uint64_t(1) << 29;
  CHECK(s.normal(5) != s.normal(5 + wrap));
  CHECK(s.normal(0) != s.normal(wrap));
}
