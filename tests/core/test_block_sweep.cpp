#include "support/test_config.hpp"

// The plan of the GPU block sweep (core/block_sweep.hpp): every logit visited exactly once (self
// mode: the upper block triangle), ragged edges, the segment boundary, the memory bound and the
// driver's order. Host-only: these run on every CI machine.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <contrastive/core/block_sweep.hpp>

namespace c = contrastive;
using c::index_t;
using c::detail::block_plan;
using c::detail::block_problem;
using c::detail::make_block_plan;

namespace {

block_problem two_tower(index_t n, index_t d, bool symmetric = true) {
  c::info_nce_options o;
  o.symmetric = symmetric;
  return c::detail::info_nce_block_problem(n, d, o);
}

block_problem self_problem(index_t n, index_t d) {
  return c::detail::nt_xent_block_problem(n, d, c::nt_xent_options{});
}

c::detail::block_sweep_options small(index_t br, index_t bc) {
  c::detail::block_sweep_options o;
  o.block_rows = br;
  o.block_cols = bc;
  o.min_block = 1;
  o.chunk = 3;
  return o;
}

/// Times each (i, j) is covered; self mode counts (i, j) and (j, i) through one block.
std::vector<int> coverage(const block_plan& p) {
  const auto nx = p.problem.nx, ny = p.problem.ny;
  std::vector<int> hit(static_cast<std::size_t>(nx * ny), 0);
  for (const auto& b : p.blocks)
    for (index_t i = b.row0; i < b.row0 + b.rows; ++i)
      for (index_t j = b.col0; j < b.col0 + b.cols; ++j) {
        ++hit[i * ny + j];
        if (p.problem.self && !b.diag) ++hit[j * ny + i];
      }
  return hit;
}

}  // namespace

TEST_CASE("block plan: every logit once, ragged edges, row-major order", "[block_sweep]") {
  for (index_t n : {1, 5, 37, 64}) {
    for (auto shape : {std::pair<index_t, index_t>{8, 8}, {16, 5}, {7, 64}, {100, 100}}) {
      const block_plan p = make_block_plan(two_tower(n, 3), {}, small(shape.first, shape.second));
      const auto hit = coverage(p);
      for (int h : hit) REQUIRE(h == 1);
      REQUIRE(p.br <= shape.first);
      REQUIRE(p.bc <= shape.second);
      // Row bands in order, columns ascending, band_end on the last block of each band.
      for (std::size_t k = 1; k < p.blocks.size(); ++k) {
        const auto &a = p.blocks[k - 1], &b = p.blocks[k];
        REQUIRE((b.bi == a.bi ? b.bj == a.bj + 1 : (b.bi == a.bi + 1 && b.bj == 0)));
        REQUIRE(a.band_end == (b.bi != a.bi));
      }
      REQUIRE(p.blocks.back().band_end);
      // Ragged: the last blocks hold the remainder.
      REQUIRE(p.xb.back().first + p.xb.back().rows == n);
      REQUIRE(p.yb.back().first + p.yb.back().rows == n);
    }
  }
}

TEST_CASE("block plan: self mode visits J >= I, squares, never straddles the two views",
          "[block_sweep]") {
  for (index_t n : {1, 6, 13, 32}) {
    for (index_t t : {1, 4, 5, 16, 1000}) {
      const block_plan p = make_block_plan(self_problem(n, 2), {}, small(t, t + 3));
      REQUIRE(p.br == p.bc);
      const auto hit = coverage(p);
      for (int h : hit) REQUIRE(h == 1);
      for (const auto& b : p.blocks) {
        REQUIRE(b.bj >= b.bi);
        REQUIRE(b.diag == (b.bi == b.bj));
        // Blocks lie inside one view (a or b), so that a GEMM reads one contiguous matrix.
        REQUIRE((b.row0 + b.rows <= n || b.row0 >= n));
        REQUIRE((b.col0 + b.cols <= n || b.col0 >= n));
        // The masked diagonal lies only in diagonal blocks.
        REQUIRE(b.has_diagonal == b.diag);
      }
    }
  }
}

TEST_CASE("block plan: blocks crossing the diagonal of a non-square blocking are flagged",
          "[block_sweep]") {
  block_problem q = two_tower(23, 2);
  q.mask_diagonal = true;
  const block_plan p = make_block_plan(q, {}, small(4, 7));
  std::vector<int> diag_hits(23, 0);
  for (const auto& b : p.blocks) {
    bool any = false;
    for (index_t i = b.row0; i < b.row0 + b.rows; ++i)
      if (i >= b.col0 && i < b.col0 + b.cols) {
        any = true;
        ++diag_hits[i];
      }
    REQUIRE(b.has_diagonal == any);
  }
  for (int h : diag_hits) REQUIRE(h == 1);
}

TEST_CASE("block plan: <= 0.25 GiB at N = 32768, D = 512, bounded at every N", "[block_sweep]") {
  const std::size_t quarter = std::size_t(1) << 28;
  for (std::size_t g : {2u, 4u}) {  // bf16 / fp16 G, fp32 / tf32 G
    c::detail::block_element_sizes z;
    z.grad = g;
    for (bool sym : {false, true}) {
      const block_plan p = make_block_plan(two_tower(32768, 512, sym), z);
      INFO("G bytes " << g << ", symmetric " << sym << ": " << p.br << " x " << p.bc << ", "
                      << p.bytes << " bytes");
      CHECK(p.bytes <= quarter);
      CHECK(p.br >= 2048);
      CHECK(p.bc >= 2048);
    }
    const block_plan s = make_block_plan(self_problem(16384, 512), z);  // 2N = 32768 rows
    INFO("NT-Xent: " << s.br << " x " << s.bc << ", " << s.bytes << " bytes");
    CHECK(s.bytes <= quarter);
    CHECK(s.br >= 2048);
  }
  // Past N = 32768 the budget holds until the O(N D) accumulators alone fill it; beyond, the
  // bytes grow linearly in N (block buffers stay within half the budget), never as N^2.
  for (index_t n = 1024; n <= (index_t(1) << 22); n *= 4) {
    const block_plan p = make_block_plan(two_tower(n, 512), {});
    const std::size_t linear = static_cast<std::size_t>(n) * 512 * 4 * 2;  // dY, stats, slack
    INFO("n " << n << ": " << p.br << " x " << p.bc << ", " << p.bytes << " bytes");
    CHECK(p.bytes <= std::max(quarter, linear + quarter / 2));
    CHECK(p.blocks.size() <= static_cast<std::size_t>((n / 2048 + 1) * (n / 2048 + 1)));
  }
}

TEST_CASE("block plan: small problems use one block, the layout is disjoint and aligned",
          "[block_sweep]") {
  const block_plan p = make_block_plan(two_tower(100, 16), {});
  CHECK(p.blocks.size() == 1);
  CHECK(p.br == 100);
  CHECK(p.bc == 100);
  const c::detail::ws_region f[] = {p.f_logits,    p.f_row_part,  p.f_col_part,
                                    p.f_row_stats, p.f_col_stats, p.f_terms};
  const c::detail::ws_region b[] = {p.b_logits, p.b_grad, p.b_coef, p.b_dx, p.b_dy, p.b_moment};
  auto disjoint = [](const c::detail::ws_region* r, int n, std::size_t total) {
    std::size_t end = 0;
    for (int i = 0; i < n; ++i) {
      if (r[i].offset % c::detail::block_ws_align != 0 || r[i].offset < end) return false;
      end = r[i].offset + r[i].bytes;
    }
    return end + c::detail::block_ws_align <= total;
  };
  CHECK(disjoint(f, 6, p.forward_bytes));
  CHECK(disjoint(b, 6, p.backward_bytes));
  CHECK(p.bytes == std::max(p.forward_bytes, p.backward_bytes));
  // Buffer rows start 16-byte aligned for cuBLASLt even when the block width is odd.
  const block_plan odd = make_block_plan(two_tower(129, 16), {});
  CHECK(odd.bc == 129);
  CHECK(odd.ld == 136);
  CHECK(odd.b_grad.bytes >= 2 * 129 * 136 * 4);
  CHECK(p.f_col_stats.bytes > 0);
  CHECK(make_block_plan(two_tower(100, 16, false), {}).f_col_stats.bytes == 0);
}

TEST_CASE("gradient_scale_exponent: the largest |G| lands between 2^14 and 2^15", "[block_sweep]") {
  for (double bound : {1.0, 0.5 / 32768, 1.0 / 65536, 3e-9, 1e3, 7.0}) {
    const int k = c::detail::gradient_scale_exponent(bound);
    const double scaled = std::ldexp(bound, k);
    CHECK(scaled >= 16384.0);
    CHECK(scaled < 32768.0);
  }
  CHECK(c::detail::gradient_scale_exponent(0.0) == 0);
  CHECK(c::detail::gradient_scale_exponent(INFINITY) == 0);
  // CLIP, mean, N = 32768: |G| <= 1/N, so k = 29 and an entry p / (2N) with p ~ 1/N becomes
  // ~2^-2, far above fp16's subnormals (2^-14); unscaled it would be 2^-31, below them.
  CHECK(c::detail::gradient_scale_exponent(1.0 / 32768) == 29);
  CHECK(c::detail::gradient_scale_exponent(NAN) == 0);
  CHECK(c::detail::gradient_scale_exponent(1e-300) == 100);  // 2^100 is still a normal float
  CHECK(c::detail::gradient_scale_exponent(1e300) == -100);
}

TEST_CASE("coefficient_bound: the largest row share plus the largest column share",
          "[block_sweep]") {
  // |G_ij| <= |row_w_i| + |row_q_i| + |col_w_j| + |col_q_j|: the bound takes each side's maximum.
  const std::vector<double> rw = {0.5, -2.0, 1.0}, rq = {0.25, 0.5, 1.5}, cw = {1.0, 4.0},
                            cq = {-3.0, 0.0};
  c::pairwise_epilogue_args<double> ep;
  ep.row_w = rw.data();
  CHECK(c::detail::coefficient_bound(ep, 3, 2) == 2.0);
  ep.row_q = rq.data();
  CHECK(c::detail::coefficient_bound(ep, 3, 2) == 2.5);
  ep.col_w = cw.data();
  ep.col_q = cq.data();
  CHECK(c::detail::coefficient_bound(ep, 3, 2) == 6.5);
  ep.col_w = ep.row_w;  // self mode: the rows' coefficients on both sides
  ep.col_q = ep.row_q;
  CHECK(c::detail::coefficient_bound(ep, 3, 3) == 5.0);
  const std::vector<double> bad = {1.0, NAN, 0.5};
  ep.row_w = bad.data();
  CHECK(std::isnan(c::detail::coefficient_bound(ep, 3, 3)));
  CHECK(c::detail::gradient_scale_exponent(c::detail::coefficient_bound(ep, 3, 3)) == 0);
}

TEST_CASE("run_block_forward / backward: the executor sees the plan's order and slots",
          "[block_sweep]") {
  const block_plan p = make_block_plan(self_problem(9, 2), {}, small(4, 4));
  struct recorder {
    std::vector<std::string> log;
    void logits(const c::detail::sweep_block& b, int s) { add("S", b, s); }
    void forward_epilogue(const c::detail::sweep_block& b, int s) { add("E", b, s); }
    void merge(const c::detail::sweep_block& b) { add("M", b, -1); }
    void gradient_epilogue(const c::detail::sweep_block& b, int s) { add("G", b, s); }
    void products(const c::detail::sweep_block& b, int s) { add("P", b, s); }
    void finish_band(const c::detail::sweep_block& b) { add("F", b, -1); }
    void add(const char* w, const c::detail::sweep_block& b, int s) {
      log.push_back(std::string(w) + std::to_string(b.bi) + std::to_string(b.bj) +
                    (s >= 0 ? ":" + std::to_string(s) : std::string()));
    }
  } r;
  c::detail::run_block_forward(p, r);
  // 2n = 18 rows, blocks of 4 inside each view of 9: 3 + 3 bands, upper triangle = 21 blocks.
  REQUIRE(p.blocks.size() == 21);
  REQUIRE(r.log.size() == 63);
  CHECK(r.log[0] == "S00:0");
  CHECK(r.log[1] == "E00:0");
  CHECK(r.log[2] == "M00");
  CHECK(r.log[3] == "S01:1");
  CHECK(r.log[6] == "S02:0");
  r.log.clear();
  c::detail::run_block_backward(p, r);
  CHECK(r.log.size() == 21 * 3 + 6);
  CHECK(r.log[2] == "P00:0");
  CHECK(r.log[3] == "S01:1");
}
