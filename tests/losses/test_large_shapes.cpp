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

// With N = D = 2^31 the packed copy of one input needs 2^62 floats = 2^64 bytes, which does not
// fit in std::size_t; the logit cache of N = 2^31 needs 2^62 floats. Every size query does its
// arithmetic through detail::checked_product (core/workspace.hpp) and rejects such shapes.
TEST_CASE("large shapes: a workspace that does not fit in size_t is rejected", "[large]") {
  const float buf[2] = {0.5f, -0.25f};
  const index_t huge = index_t(1) << 31;
  const auto a = broadcast(buf, huge, huge), b = broadcast(buf + 1, huge, huge);
  CHECK_THROWS_AS(contrastive::info_nce_workspace_bytes(a, b), contrastive::invalid_argument);
  CHECK_THROWS_WITH(contrastive::nt_xent_workspace_bytes(a, b),
                    Catch::Contains("the problem is too large"));
  CHECK_THROWS_AS(contrastive::gamma_nce_workspace_bytes(a, b), contrastive::invalid_argument);
  contrastive::info_nce_options cached;
  cached.cache_logits = true;
  CHECK_THROWS_AS(contrastive::info_nce_workspace_bytes<float>(huge, 8, cached),
                  contrastive::invalid_argument);
}

// A Philox stream has 2^28 blocks (2^29 normals); normal m + 2^29 would repeat normal m. The
// bridge sampler draws D normals per point and K D per path from one stream, so shapes past that
// are rejected (the caller may pass the noise instead).
TEST_CASE("large shapes: bridge noise past one Philox stream is rejected", "[large]") {
  const float buf[2] = {0.5f, -0.25f};
  float out[1] = {0.0f};
  const index_t wide = (index_t(1) << 29) + 1;
  const auto v = broadcast(buf, 1, wide), u = broadcast(buf + 1, 1, wide);
  const auto y = contrastive::make_view(out, 1, wide, 0, 0);
  CHECK_THROWS_WITH(contrastive::brownian_bridge_sample(v, u, y),
                    Catch::Contains("more than the 2^29 of one Philox stream"));
  contrastive::brownian_bridge_options o;
  o.steps = 4;
  const index_t d = (index_t(1) << 27) + 1;  // 4 x d > 2^29
  CHECK_THROWS_WITH(
      contrastive::brownian_bridge_trajectory(broadcast(buf, 1, d), broadcast(buf + 1, 1, d), y, o),
      Catch::Contains("4 x 134217729 (steps x D) normals"));
  CHECK(out[0] == 0.0f);  // nothing written
}
