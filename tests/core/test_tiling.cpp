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
  CHECK(tile_shape(256, 128, false, 1000, 50) ==
        std::make_pair<contrastive::index_t, contrastive::index_t>(256, 50));
  CHECK(tile_shape(256, 128, true, 1000, 1000) ==
        std::make_pair<contrastive::index_t, contrastive::index_t>(128, 128));
  using contrastive::detail::sweep_shape;
  auto bytes = [](contrastive::index_t n) {
    const auto t = tile_shape(256, 256, false, n, n);
    const sweep_shape sh{t.first, t.second, 512, 2};
    return contrastive::detail::pairwise_forward_bytes<float>(sh) +
           contrastive::detail::pairwise_backward_bytes<float>(sh);
  };
  // Two threads' tiles, GEMM packing buffers and chunk partials: the same at N = 2^14 and 2^20.
  CHECK(bytes(1 << 14) == bytes(1 << 20));
  CHECK(bytes(1 << 20) < (32u << 20));
  CHECK(bytes(100) < bytes(1 << 14));
}

#include <cmath>

#include <Eigen/Core>

#include "support/reference.hpp"

TEST_CASE("pairwise sweep with mask_diagonal: negatives-only statistics and gradients",
          "[tiling]") {
  using namespace contrastive;
  using rmat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const index_t n = 11, d = 4;
  const rmat a = ref::random_matrix(n, d, 1), b = ref::random_matrix(n, d, 2);
  const double lambda = 1.7;
  const rmat s = lambda * a * b.transpose();
  // Dense references over j != i.
  std::vector<double> row_lse(n), col_lse(n), wr(n), wc(n);
  for (index_t i = 0; i < n; ++i) {
    double mr = -INFINITY, mc = -INFINITY;
    for (index_t j = 0; j < n; ++j)
      if (j != i) mr = std::max(mr, s(i, j)), mc = std::max(mc, s(j, i));
    double sr = 0, sc = 0;
    for (index_t j = 0; j < n; ++j)
      if (j != i) sr += std::exp(s(i, j) - mr), sc += std::exp(s(j, i) - mc);
    row_lse[i] = mr + std::log(sr);
    col_lse[i] = mc + std::log(sc);
    wr[i] = 0.1 + 0.05 * double(i);
    wc[i] = 0.3 - 0.02 * double(i);
  }
  rmat g = rmat::Zero(n, n);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j)
      if (i != j)
        g(i, j) = wr[i] * std::exp(s(i, j) - row_lse[i]) + wc[j] * std::exp(s(i, j) - col_lse[j]);
  const rmat want_dx = lambda * g * b, want_dy = lambda * g.transpose() * a;

  for (const index_t tr : {index_t(1), index_t(3), index_t(5), index_t(16)}) {
    for (const index_t tc : {index_t(1), index_t(4), index_t(16)}) {
      CAPTURE(tr, tc);
      const matrix_view<const double> va(a.data(), n, d), vb(b.data(), n, d);
      detail::pairwise_problem<double> p;
      p.x = &va;
      p.x_segments = 1;
      p.y = &vb;
      p.y_segments = 1;
      p.mask_diagonal = true;
      p.scale = lambda;
      p.tile_rows = tr;
      p.tile_cols = tc;
      std::vector<online_softmax<double>> rs(n), cs(n);
      detail::pairwise_stats<double> st;
      st.row = rs.data();
      st.col = cs.data();
      detail::arena ar1({}, detail::pairwise_forward_bytes<double>(detail::sweep_shape_of(p)),
                        "test");
      detail::pairwise_forward(p, st, ar1);
      for (index_t i = 0; i < n; ++i) {
        CHECK(rs[i].lse() == Approx(row_lse[i]).epsilon(1e-13));
        CHECK(cs[i].lse() == Approx(col_lse[i]).epsilon(1e-13));
      }
      detail::pairwise_coefficients<double> k;
      k.row_w = wr.data();
      k.row_lse = row_lse.data();
      k.col_w = wc.data();
      k.col_lse = col_lse.data();
      rmat dx = rmat::Zero(n, d), dy = rmat::Zero(n, d);
      const matrix_view<double> vdx(dx.data(), n, d), vdy(dy.data(), n, d);
      detail::arena ar2({}, detail::pairwise_backward_bytes<double>(detail::sweep_shape_of(p)),
                        "test");
      detail::pairwise_backward(p, k, &vdx, &vdy, ar2);
      CHECK(ref::max_rel_diff(dx, want_dx) < 1e-12);
      CHECK(ref::max_rel_diff(dy, want_dy) < 1e-12);
    }
  }
}
