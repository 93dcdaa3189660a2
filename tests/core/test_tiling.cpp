#include "support/test_config.hpp"

#include <contrastive/core/tiling.hpp>

TEST_CASE("make_blocks: tiles never straddle segments and cover every row once", "[tiling]") {
  const contrastive::index_t rows[] = {7, 5};
  const auto b = contrastive::detail::make_blocks(rows, 2, 3);
  REQUIRE(b.size() == 5);  // 3 + 3 + 1 | 3 + 2
  contrastive::index_t next = 0;
  for (const auto& blk : b) {
    CHECK(blk.global == next);
    CHECK(blk.rows <= 3);
    CHECK(blk.first + blk.rows <= rows[blk.segment]);
    next += blk.rows;
  }
  CHECK(next == 12);
  CHECK(b[2].rows == 1);
  CHECK(b[3].segment == 1);
  CHECK(b[3].first == 0);
}

TEST_CASE("tile_shape and workspace size have no N x N term", "[tiling]") {
  using contrastive::detail::tile_shape;
  CHECK(tile_shape(256, 128, false, 1000, 50) == std::make_pair<contrastive::index_t, contrastive::index_t>(256, 50));
  CHECK(tile_shape(256, 128, true, 1000, 1000) == std::make_pair<contrastive::index_t, contrastive::index_t>(128, 128));
  const auto small = contrastive::detail::pairwise_workspace_bytes<float>(tile_shape(256, 256, false, 1 << 20, 1 << 20));
  CHECK(small < (1u << 20));  // 256 x 256 floats plus vectors
}
