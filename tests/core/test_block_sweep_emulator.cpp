#include "support/test_config.hpp"

// The host emulator of the GPU block sweep (core/block_sweep_emulator.hpp) against the CPU losses:
// the GPU design (plan, block order, chunked partials and their merge order, masks, G scaling,
// the shared epilogue functions of core/math.hpp) checked in double to 1e-12 on every CI run,
// without a GPU. Small blocks and chunks make every path ragged and every merge non-trivial.

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include <contrastive/contrastive.hpp>
#include <contrastive/core/block_sweep_emulator.hpp>

#include "support/reference.hpp"

namespace {

namespace c = contrastive;
using c::index_t;
using rmat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

c::detail::block_sweep_options blocks(index_t br, index_t bc, index_t chunk, int slots = 2) {
  c::detail::block_sweep_options o;
  o.block_rows = br;
  o.block_cols = bc;
  o.min_block = 1;
  o.chunk = chunk;
  o.slots = slots;
  return o;
}

double max_abs(const rmat& m) { return m.cwiseAbs().maxCoeff(); }

template <class V>
double rel_diff(const V& got, const rmat& want) {
  double worst = 0;
  for (Eigen::Index i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::fabs(double(got[static_cast<std::size_t>(i)]) - want.data()[i]));
  return worst / std::max(1.0, max_abs(want));
}

struct emulated {
  double loss, dtheta;
  std::vector<double> lse_row, lse_col, dx, dy;
};

emulated run_info_nce(const rmat& a, const rmat& b, const c::info_nce_options& o,
                      const c::detail::block_sweep_options& bo, double upstream = 1.0) {
  const auto q = c::detail::info_nce_block_problem(a.rows(), a.cols(), o);
  c::detail::block_emulator_inputs<double> in;
  in.x = a.data();
  in.y = b.data();
  in.label_x = o.labels_a.data;
  in.label_y = o.labels_b.data;
  const auto f = c::detail::emulate_block_forward<double>(q, in, {}, bo);
  const auto g = c::detail::emulate_block_backward<double>(q, in, f, upstream, {}, bo);
  return {f.loss, g.grad_log_scale, f.row_lse, f.col_lse, g.dx, g.dy};
}

emulated run_nt_xent(const rmat& a, const rmat& b, const c::nt_xent_options& o,
                     const c::detail::block_sweep_options& bo, double upstream = 1.0) {
  rmat z(2 * a.rows(), a.cols());
  z << a, b;
  const auto q = c::detail::nt_xent_block_problem(a.rows(), a.cols(), o);
  c::detail::block_emulator_inputs<double> in;
  in.x = in.y = z.data();
  in.label_x = in.label_y = o.labels.data;
  const auto f = c::detail::emulate_block_forward<double>(q, in, {}, bo);
  const auto g = c::detail::emulate_block_backward<double>(q, in, f, upstream, {}, bo);
  return {f.loss, g.grad_log_scale, f.row_lse, f.col_lse, g.dx, g.dy};
}

void check_info_nce(const rmat& a, const rmat& b, const c::info_nce_options& o,
                    const c::detail::block_sweep_options& bo, double tol = 1e-12) {
  rmat ga(a.rows(), a.cols()), gb(b.rows(), b.cols());
  c::info_nce_parameter_gradients tg;
  const double want = c::info_nce_forward_backward(a, b, ga, gb, o, &tg);
  const auto saved = c::info_nce_forward(a, b, o);
  const emulated e = run_info_nce(a, b, o, bo);
  CHECK(std::fabs(e.loss - want) <= tol * std::max(1.0, std::fabs(want)));
  CHECK(std::fabs(e.dtheta - tg.log_scale) <= tol * std::max(1.0, std::fabs(tg.log_scale)));
  CHECK(rel_diff(e.dx, ga) <= tol);
  CHECK(rel_diff(e.dy, gb) <= tol);
  for (index_t i = 0; i < a.rows(); ++i) {
    CHECK(std::fabs(e.lse_row[i] - saved.row_lse[i]) <=
          tol * std::max(1.0, std::fabs(e.lse_row[i])));
    if (o.symmetric)
      CHECK(std::fabs(e.lse_col[i] - saved.col_lse[i]) <=
            tol * std::max(1.0, std::fabs(e.lse_col[i])));
  }
}

void check_nt_xent(const rmat& a, const rmat& b, const c::nt_xent_options& o,
                   const c::detail::block_sweep_options& bo, double tol = 1e-12) {
  rmat ga(a.rows(), a.cols()), gb(b.rows(), b.cols());
  c::nt_xent_parameter_gradients tg;
  const double want = c::nt_xent_forward_backward(a, b, ga, gb, o, &tg);
  const emulated e = run_nt_xent(a, b, o, bo);
  rmat gz(2 * a.rows(), a.cols());
  gz << ga, gb;
  CHECK(std::fabs(e.loss - want) <= tol * std::max(1.0, std::fabs(want)));
  CHECK(std::fabs(e.dtheta - tg.log_scale) <= tol * std::max(1.0, std::fabs(tg.log_scale)));
  CHECK(rel_diff(e.dx, gz) <= tol);
}

}  // namespace

TEST_CASE("block emulator: InfoNCE and CLIP match the CPU in double (ragged blocks, chunks)",
          "[block_sweep][emulator]") {
  for (index_t n : {1, 2, 37}) {
    const rmat a = ref::normalized_rows(ref::random_matrix(n, 5, 11));
    const rmat b = ref::normalized_rows(ref::random_matrix(n, 5, 12));
    for (bool sym : {false, true})
      for (double eps : {0.0, 0.1})
        for (auto red : {c::loss_reduction::mean, c::loss_reduction::sum}) {
          c::info_nce_options o;
          o.symmetric = sym;
          o.label_smoothing = eps;
          o.reduction = red;
          o.temperature = 0.2;
          INFO("n " << n << " symmetric " << sym << " eps " << eps);
          check_info_nce(a, b, o, blocks(8, 12, 5));
          check_info_nce(a, b, o, blocks(4096, 4096, 64));  // one block
          check_info_nce(a, b, o, blocks(3, 2, 1));         // every chunk one candidate
        }
  }
}

TEST_CASE("block emulator: labels (multiple positives, anchors without one) match the CPU",
          "[block_sweep][emulator]") {
  const index_t n = 29;
  const rmat a = ref::normalized_rows(ref::random_matrix(n, 4, 21));
  const rmat b = ref::normalized_rows(ref::random_matrix(n, 4, 22));
  std::vector<std::int64_t> la(n), lb(n);
  for (index_t i = 0; i < n; ++i) {
    la[i] = i % 5;
    lb[i] = (i * 3) % 7;  // labels 5 and 6 of b have no anchor in a; some b none in a
  }
  for (bool sym : {false, true})
    for (double eps : {0.0, 0.25}) {
      c::info_nce_options o;
      o.symmetric = sym;
      o.label_smoothing = eps;
      o.labels_a = la;
      o.labels_b = lb;
      INFO("symmetric " << sym << " eps " << eps);
      check_info_nce(a, b, o, blocks(6, 7, 4));
    }
}

TEST_CASE("block emulator: NT-Xent (diagonal masked across blocks, labels, smoothing)",
          "[block_sweep][emulator]") {
  for (index_t n : {1, 2, 13}) {
    const rmat a = ref::normalized_rows(ref::random_matrix(n, 6, 31));
    const rmat b = ref::normalized_rows(ref::random_matrix(n, 6, 32));
    std::vector<std::int64_t> l(n);
    for (index_t i = 0; i < n; ++i) l[i] = i % 4;
    for (bool labelled : {false, true})
      for (double eps : {0.0, 0.3}) {
        c::nt_xent_options o;
        o.temperature = 0.3;
        o.label_smoothing = eps;
        if (labelled) o.labels = l;
        INFO("n " << n << " labels " << labelled << " eps " << eps);
        check_nt_xent(a, b, o, blocks(4, 4, 3));
        check_nt_xent(a, b, o, blocks(5, 9, 2));
        check_nt_xent(a, b, o, blocks(4096, 4096, 64));
      }
  }
}

TEST_CASE("block emulator: tau = 1e-3 (logits ~1e3) neither overflows nor loses accuracy",
          "[block_sweep][emulator][stability]") {
  const rmat a = ref::normalized_rows(ref::random_matrix(23, 8, 41));
  const rmat b = ref::normalized_rows(ref::random_matrix(23, 8, 42));
  c::info_nce_options o;
  o.temperature = 1e-3;
  o.label_smoothing = 0.1;
  check_info_nce(a, b, o, blocks(5, 6, 4));
  c::nt_xent_options x;
  x.temperature = 1e-3;
  check_nt_xent(a, b, x, blocks(5, 5, 3));
}

TEST_CASE("block emulator: merge order is fixed (bitwise repeatable, independent of slots)",
          "[block_sweep][emulator]") {
  const rmat a = ref::normalized_rows(ref::random_matrix(31, 5, 51));
  const rmat b = ref::normalized_rows(ref::random_matrix(31, 5, 52));
  c::info_nce_options o;
  o.label_smoothing = 0.05;
  const emulated r1 = run_info_nce(a, b, o, blocks(8, 6, 4, 1));
  const emulated r2 = run_info_nce(a, b, o, blocks(8, 6, 4, 2));
  const emulated r3 = run_info_nce(a, b, o, blocks(8, 6, 4, 3));
  CHECK(r1.loss == r2.loss);
  CHECK(r1.loss == r3.loss);
  CHECK(r1.dx == r2.dx);
  CHECK(r1.dy == r3.dy);
  CHECK(r1.lse_col == r3.lse_col);
  // Another chunking merges in another order: equal to rounding only.
  const emulated r4 = run_info_nce(a, b, o, blocks(8, 6, 1));
  CHECK(r4.loss == Approx(r1.loss).epsilon(1e-14));
}

TEST_CASE("block emulator: G scaled by 2^k changes nothing in double; upstream and accumulate",
          "[block_sweep][emulator]") {
  const rmat a = ref::normalized_rows(ref::random_matrix(17, 4, 61));
  const rmat b = ref::normalized_rows(ref::random_matrix(17, 4, 62));
  c::info_nce_options o;
  const emulated one = run_info_nce(a, b, o, blocks(5, 5, 2), 1.0);
  const emulated three = run_info_nce(a, b, o, blocks(5, 5, 2), -3.0);
  for (std::size_t k = 0; k < one.dx.size(); ++k) {
    CHECK(three.dx[k] == Approx(-3 * one.dx[k]).epsilon(1e-13).margin(1e-15));
    CHECK(three.dy[k] == Approx(-3 * one.dy[k]).epsilon(1e-13).margin(1e-15));
  }
  CHECK(three.dtheta == Approx(-3 * one.dtheta).epsilon(1e-13));
}

TEST_CASE("block emulator: float blocks agree with the CPU at float precision",
          "[block_sweep][emulator]") {
  const index_t n = 40, d = 16;
  const rmat a = ref::normalized_rows(ref::random_matrix(n, d, 71));
  const rmat b = ref::normalized_rows(ref::random_matrix(n, d, 72));
  c::info_nce_options o;
  o.label_smoothing = 0.1;
  rmat ga(n, d), gb(n, d);
  const double want = c::info_nce_forward_backward(a, b, ga, gb, o);
  const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> af = a.cast<float>(),
                                                                              bf = b.cast<float>();
  const auto q = c::detail::info_nce_block_problem(n, d, o);
  c::detail::block_emulator_inputs<float> in;
  in.x = af.data();
  in.y = bf.data();
  const auto bo = blocks(16, 8, 4);
  const auto f = c::detail::emulate_block_forward<float>(q, in, {}, bo);
  const auto g = c::detail::emulate_block_backward<float>(q, in, f, 1.0, {}, bo);
  CHECK(f.loss == Approx(want).epsilon(1e-5));
  CHECK(rel_diff(g.dx, ga) <= 1e-5 * std::max(1.0, 1 / max_abs(ga)) * max_abs(ga) + 1e-6);
  CHECK(rel_diff(g.dy, gb) <= 1e-6);
}

TEST_CASE("block emulator: per-row / per-column offsets and -inf masks match a dense reference",
          "[block_sweep][emulator]") {
  // Generalised logits s_ij = <x_i, y_j> / tau + r_i + c_j; an offset of -inf removes a row's or
  // a column's entries (here column 2 everywhere, and row 4's). Dense double reference of the
  // loss; its gradient by central differences.
  const index_t n = 7, d = 3;
  const double tau = 0.5;
  const rmat x0 = ref::random_matrix(n, d, 81), y0 = ref::random_matrix(n, d, 82);
  std::vector<double> roff = {0.1, -0.2, 0.3, 0.0, 0.0, 0.5, -0.1};
  std::vector<double> coff = {0.0, 0.2, -INFINITY, 0.1, -0.3, 0.0, 0.4};
  roff[4] = -INFINITY;
  c::info_nce_options o;
  o.temperature = tau;
  o.label_smoothing = 0.2;
  const auto q = c::detail::info_nce_block_problem(n, d, o);
  auto dense = [&](const rmat& x, const rmat& y) {
    double loss_r = 0, loss_c = 0, valid_r = 0, valid_c = 0;
    auto s = [&](index_t i, index_t j) { return x.row(i).dot(y.row(j)) / tau + roff[i] + coff[j]; };
    for (int dir = 0; dir < 2; ++dir)
      for (index_t i = 0; i < n; ++i) {
        double m = -INFINITY, sum = 0, total = 0, pos = 0;
        int cnt = 0, cand = 0;
        for (index_t j = 0; j < n; ++j) m = std::max(m, dir == 0 ? s(i, j) : s(j, i));
        for (index_t j = 0; j < n; ++j) {
          const double v = dir == 0 ? s(i, j) : s(j, i);
          if (v == -INFINITY) continue;
          ++cand;
          sum += std::exp(v - m);
          total += v;
          if (j == i) {
            pos += v;
            ++cnt;
          }
        }
        (void)cand;
        if (cnt == 0) continue;
        const double t = (1 - 0.2) * pos / cnt + 0.2 * total / double(n);
        (dir == 0 ? loss_r : loss_c) += m + std::log(sum) - t;
        (dir == 0 ? valid_r : valid_c) += 1;
      }
    return 0.5 * loss_r / valid_r + 0.5 * loss_c / valid_c;
  };
  c::detail::block_emulator_inputs<double> in;
  in.x = x0.data();
  in.y = y0.data();
  in.row_offset = roff.data();
  in.col_offset = coff.data();
  const auto bo = blocks(3, 2, 2);
  const auto f = c::detail::emulate_block_forward<double>(q, in, {}, bo);
  CHECK(f.loss == Approx(dense(x0, y0)).epsilon(1e-13));
  const auto g = c::detail::emulate_block_backward<double>(q, in, f, 1.0, {}, bo);
  const double h = 1e-6;
  for (index_t i = 0; i < n; ++i)
    for (index_t k = 0; k < d; ++k) {
      rmat xp = x0, xm = x0, yp = y0, ym = y0;
      xp(i, k) += h;
      xm(i, k) -= h;
      yp(i, k) += h;
      ym(i, k) -= h;
      CHECK(g.dx[i * d + k] == Approx((dense(xp, y0) - dense(xm, y0)) / (2 * h)).margin(1e-7));
      CHECK(g.dy[i * d + k] == Approx((dense(x0, yp) - dense(x0, ym)) / (2 * h)).margin(1e-7));
    }
}

TEST_CASE("block emulator: a masked diagonal crossing non-square blocks, with labels",
          "[block_sweep][emulator]") {
  // Two towers whose s_ii are no candidates (negatives-only normalisers, SupCon-style positives
  // by label among the others), blocks of 4 x 3 so that the diagonal crosses blocks of every
  // kind. Dense double reference of the loss; its gradient by central differences.
  const index_t n = 11, d = 3;
  const double tau = 0.4, eps = 0.15;
  const rmat x0 = ref::random_matrix(n, d, 91), y0 = ref::random_matrix(n, d, 92);
  std::vector<std::int64_t> lx(n), ly(n);
  for (index_t i = 0; i < n; ++i) {
    lx[i] = i % 3;
    ly[i] = (i + 1) % 4;
  }
  c::info_nce_options o;
  o.temperature = tau;
  o.label_smoothing = eps;
  auto q = c::detail::info_nce_block_problem(n, d, o);
  q.mask_diagonal = true;
  q.labelled = true;
  q.row_candidates = q.col_candidates = double(n - 1);
  auto dense = [&](const rmat& x, const rmat& y) {
    double loss[2] = {0, 0}, valid[2] = {0, 0};
    for (int dir = 0; dir < 2; ++dir)
      for (index_t i = 0; i < n; ++i) {
        auto s = [&](index_t j) {
          return dir == 0 ? x.row(i).dot(y.row(j)) / tau : x.row(j).dot(y.row(i)) / tau;
        };
        double m = -INFINITY, sum = 0, total = 0, pos = 0;
        int cnt = 0;
        for (index_t j = 0; j < n; ++j)
          if (j != i) m = std::max(m, s(j));
        for (index_t j = 0; j < n; ++j) {
          if (j == i) continue;
          sum += std::exp(s(j) - m);
          total += s(j);
          if ((dir == 0 ? lx[i] == ly[j] : ly[i] == lx[j])) {
            pos += s(j);
            ++cnt;
          }
        }
        if (cnt == 0) continue;
        loss[dir] += m + std::log(sum) - ((1 - eps) * pos / cnt + eps * total / double(n - 1));
        valid[dir] += 1;
      }
    return 0.5 * loss[0] / valid[0] + 0.5 * loss[1] / valid[1];
  };
  c::detail::block_emulator_inputs<double> in;
  in.x = x0.data();
  in.y = y0.data();
  in.label_x = lx.data();
  in.label_y = ly.data();
  const auto bo = blocks(4, 3, 2);
  const auto f = c::detail::emulate_block_forward<double>(q, in, {}, bo);
  CHECK(f.loss == Approx(dense(x0, y0)).epsilon(1e-13));
  const auto g = c::detail::emulate_block_backward<double>(q, in, f, 1.0, {}, bo);
  const double h = 1e-6;
  for (index_t i = 0; i < n; ++i)
    for (index_t k = 0; k < d; ++k) {
      rmat xp = x0, xm = x0, yp = y0, ym = y0;
      xp(i, k) += h;
      xm(i, k) -= h;
      yp(i, k) += h;
      ym(i, k) -= h;
      CHECK(g.dx[i * d + k] == Approx((dense(xp, y0) - dense(xm, y0)) / (2 * h)).margin(1e-7));
      CHECK(g.dy[i * d + k] == Approx((dense(x0, yp) - dense(x0, ym)) / (2 * h)).margin(1e-7));
    }
  // The temperature gradient: d loss / d log(1/tau) by central differences in tau.
  const double ht = 1e-6;
  auto at_tau = [&](double t) {
    rmat xs = x0 * std::sqrt(tau / t), ys = y0 * std::sqrt(tau / t);  // s scales as 1/t
    return dense(xs, ys);
  };
  const double dtheta = -(at_tau(tau * (1 + ht)) - at_tau(tau * (1 - ht))) / (2 * ht);
  CHECK(g.grad_log_scale == Approx(dtheta).margin(1e-7));
}

// ---- losses beyond the InfoNCE family on the same sweep ----

namespace {

// The gamma loss: the sweep's log-normalisers against the CPU's, and with the CPU's weights r_i
// the surrogate, the gradients and the temperature gradient.
void check_gamma(const rmat& a, const rmat& b, const c::gamma_nce_options& o,
                 const c::detail::block_sweep_options& bo, double upstream) {
  const index_t n = a.rows(), d = a.cols();
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) ids[static_cast<std::size_t>(i)] = 3 * i + 1;
  const auto saved = c::gamma_nce_forward(a, b, c::vector_view<const std::int64_t>(ids), o);
  rmat ga(n, d), gb(n, d);
  const auto tg = c::gamma_nce_backward(a, b, saved, ga, gb, o, upstream);

  const auto q = c::detail::gamma_nce_block_problem(n, d, o);
  c::detail::block_emulator_inputs<double> in;
  in.x = a.data();
  in.y = b.data();
  const auto st = c::detail::emulate_block_statistics<double>(q, in, {}, bo);
  c::detail::block_forward_result f;
  f.row_lse = c::detail::block_lse(st.rows);
  f.col_lse = c::detail::block_lse(st.cols);
  REQUIRE(f.col_lse.size() == (o.symmetric ? std::size_t(n) : 0));
  for (index_t i = 0; i < n; ++i) {
    CHECK(f.row_lse[i] == Approx(saved.row.lse[i]).epsilon(1e-12));
    if (o.symmetric) CHECK(f.col_lse[i] == Approx(saved.col.lse[i]).epsilon(1e-12));
  }
  const auto s = c::detail::block_diagonal_logits(q, in);
  const double loss = c::detail::gamma_block_loss(q, s, saved.row.r, saved.col.r);
  CHECK(loss == Approx(saved.loss).epsilon(1e-12));
  const auto g = c::detail::emulate_gamma_nce_backward<double>(q, in, f, saved.row.r, saved.col.r,
                                                               upstream, {}, bo);
  CHECK(rel_diff(g.dx, ga) <= 1e-12);
  CHECK(rel_diff(g.dy, gb) <= 1e-12);
  CHECK(g.grad_log_scale == Approx(tg.log_scale).epsilon(1e-12).margin(1e-12));
}

}  // namespace

TEST_CASE(
    "block emulator: the gamma loss (weights r_i, negatives-only normalisers) matches the CPU",
    "[block_sweep][emulator][gamma_nce]") {
  for (index_t n : {2, 3, 31}) {
    const rmat a = ref::normalized_rows(ref::random_matrix(n, 6, 91));
    const rmat b = ref::normalized_rows(ref::random_matrix(n, 6, 92));
    // Exact rates far from the batch's make the r_i spread over two orders of magnitude.
    std::vector<double> za(static_cast<std::size_t>(n)), zb(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) {
      za[static_cast<std::size_t>(i)] = 2.0 * std::sin(1.7 * double(i));
      zb[static_cast<std::size_t>(i)] = 2.0 * std::cos(0.9 * double(i));
    }
    for (bool sym : {false, true})
      for (bool pin : {false, true})
        for (auto src : {c::gamma_rate_source::same_batch, c::gamma_rate_source::exact})
          for (auto red : {c::loss_reduction::mean, c::loss_reduction::sum}) {
            c::gamma_nce_options o;
            o.symmetric = sym;
            o.positive_in_normaliser = pin;
            o.rate_source = src;
            o.reduction = red;
            o.temperature = 0.15;
            o.alpha = 4;
            o.seed = 17;
            o.exact_log_normalizer_a = c::vector_view<const double>(za);
            o.exact_log_normalizer_b = c::vector_view<const double>(zb);
            INFO("n " << n << " symmetric " << sym << " positive_in_normaliser " << pin);
            check_gamma(a, b, o, blocks(8, 12, 5), 1.0);
            check_gamma(a, b, o, blocks(3, 2, 1), -0.7);
            check_gamma(a, b, o, blocks(4096, 4096, 64), 2.5);
          }
  }
}

TEST_CASE("block emulator: the gamma loss at tau = 1e-3 and in the deterministic mode",
          "[block_sweep][emulator][gamma_nce]") {
  const index_t n = 23;
  const rmat a = ref::normalized_rows(ref::random_matrix(n, 8, 93));
  const rmat b = ref::normalized_rows(ref::random_matrix(n, 8, 94));
  c::gamma_nce_options o;
  o.rate_source = c::gamma_rate_source::same_batch;
  o.temperature = 1e-3;  // logits ~1e3: the statistics must stay in the log domain
  check_gamma(a, b, o, blocks(5, 7, 3), 1.0);
  o.temperature = 0.1;
  o.alpha = c::gamma_nce_options::deterministic;
  check_gamma(a, b, o, blocks(5, 7, 3), 1.0);
}

TEST_CASE("block emulator: the uniformity term (offsets -t|x|^2, self mode) matches the CPU",
          "[block_sweep][emulator][feature_separation]") {
  for (index_t n : {2, 5, 33}) {
    const index_t d = 7;
    const rmat v = ref::normalized_rows(ref::random_matrix(n, d, 95));
    const rmat u = ref::random_matrix(n, d, 96);  // not unit rows: the offsets differ per row
    for (auto form : {c::uniformity_form::literal, c::uniformity_form::wang_isola})
      for (double t : {2.0, 0.3}) {
        c::feature_separation_options o;
        o.uniformity = form;
        o.uniformity_t = t;
        const double upstream = -1.3;
        const auto saved = c::feature_uniformity_forward(v, u, o);
        rmat gv(n, d), gu(n, d);
        c::feature_uniformity_backward(v, u, saved, gv, gu, o, upstream);

        const auto q = c::detail::uniformity_block_problem(n, d, o);
        const c::detail::uniformity_block_input<double> xv(v.data(), n, d, t),
            xu(u.data(), n, d, t);
        for (const auto& bo : {blocks(4, 4, 3), blocks(2, 2, 1), blocks(4096, 4096, 64)}) {
          INFO("n " << n << " wang_isola " << (form == c::uniformity_form::wang_isola) << " t "
                    << t);
          const auto fv = c::detail::emulate_uniformity_forward<double>(q, xv, {}, bo);
          const auto fu = c::detail::emulate_uniformity_forward<double>(q, xu, {}, bo);
          CHECK(fv.log_sum == Approx(saved.log_sum_v).epsilon(1e-12));
          CHECK(fu.log_sum == Approx(saved.log_sum_u).epsilon(1e-12));
          CHECK(c::detail::uniformity_loss(form, n, fv.log_sum, fu.log_sum) ==
                Approx(saved.loss).epsilon(1e-12));
          double nv = 0, nu = 0;
          c::detail::uniformity_normalizers(form, fv.log_sum, fu.log_sum, &nv, &nu);
          const auto dv =
              c::detail::emulate_uniformity_backward<double>(q, xv, fv, nv, upstream, {}, bo);
          const auto du =
              c::detail::emulate_uniformity_backward<double>(q, xu, fu, nu, upstream, {}, bo);
          CHECK(rel_diff(dv, gv) <= 1e-12);
          CHECK(rel_diff(du, gu) <= 1e-12);
        }
      }
  }
}
