#include "support/test_config.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <contrastive/core/math.hpp>

using contrastive::online_lse;
using contrastive::online_softmax;

namespace {
double direct_lse(const std::vector<double>& x) {
  double m = -INFINITY;
  for (double v : x) m = std::max(m, v);
  double s = 0;
  for (double v : x) s += std::exp(v - m);
  return m + std::log(s);
}
}  // namespace

TEST_CASE("online_lse: push, merge in any split, identity", "[math]") {
  std::mt19937 gen(1);
  std::uniform_real_distribution<double> u(-30, 30);
  std::vector<double> x(101);
  for (auto& v : x) v = u(gen);
  online_lse<double> all;
  for (double v : x) all.push(v);
  CHECK(all.value() == Approx(direct_lse(x)).epsilon(1e-14));
  for (std::size_t split : {std::size_t(0), std::size_t(1), std::size_t(50), std::size_t(101)}) {
    online_lse<double> l, r;
    for (std::size_t i = 0; i < split; ++i) l.push(x[i]);
    for (std::size_t i = split; i < x.size(); ++i) r.push(x[i]);
    online_lse<double> lr = l, rl = r;
    lr.merge(r);
    rl.merge(l);
    CHECK(lr.value() == Approx(direct_lse(x)).epsilon(1e-14));
    CHECK(rl.value() == Approx(direct_lse(x)).epsilon(1e-14));
  }
  online_lse<double> empty;
  CHECK(empty.value() == -std::numeric_limits<double>::infinity());
  empty.push(-std::numeric_limits<double>::infinity());
  CHECK(empty.value() == -std::numeric_limits<double>::infinity());
}

TEST_CASE("online_lse: stable for logits of magnitude 1e3 in float", "[math][stability]") {
  online_lse<float> l;
  for (float v : {1000.0f, 999.0f, -1000.0f, 998.5f}) l.push(v);
  const double want = direct_lse({1000.0, 999.0, -1000.0, 998.5});
  CHECK(std::isfinite(l.value()));
  CHECK(l.value() == Approx(want).epsilon(1e-6));
}

TEST_CASE("online_softmax: the softmax mean of the pushed values", "[math]") {
  const std::vector<double> x = {0.3, -2.0, 4.5, 1.0, 4.4};
  online_softmax<double> a, b;
  for (std::size_t i = 0; i < 2; ++i) a.push(x[i]);
  for (std::size_t i = 2; i < x.size(); ++i) b.push(x[i]);
  a.merge(b);
  const double lse = direct_lse(x);
  double mean = 0;
  for (double v : x) mean += std::exp(v - lse) * v;
  CHECK(a.lse() == Approx(lse).epsilon(1e-14));
  CHECK(a.mean() == Approx(mean).epsilon(1e-14));
  CHECK(online_softmax<double>().mean() == 0.0);
}

TEST_CASE("softmax_grad: p - q", "[math]") {
  CHECK(contrastive::softmax_grad(1.0, 1.0, 0.25) == Approx(0.75));
  CHECK(contrastive::softmax_grad(-1e3f, 0.0f, 0.0f) == 0.0f);
}

// The CUDA kernels build every gradient tile from softmax_gradient_entry; here it must reproduce
// dL/dS of docs/info_nce.md#gradient from dense row and column softmaxes for CLIP, InfoNCE and smoothing.
TEST_CASE("softmax_gradient_entry: the CLIP and InfoNCE logit gradients", "[math]") {
  const int n = 5;
  std::vector<double> s(n * n);
  for (int k = 0; k < n * n; ++k) s[k] = std::sin(1.7 * k) * 3.0;
  std::vector<double> row_lse(n), col_lse(n);
  for (int i = 0; i < n; ++i) {
    std::vector<double> r, c;
    for (int j = 0; j < n; ++j) {
      r.push_back(s[i * n + j]);
      c.push_back(s[j * n + i]);
    }
    row_lse[i] = direct_lse(r);
    col_lse[i] = direct_lse(c);
  }
  for (double eps : {0.0, 0.1}) {
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        const double t = (i == j ? 1 - eps : 0.0) + eps / n;
        const double p = std::exp(s[i * n + j] - row_lse[i]);
        const double q = std::exp(s[i * n + j] - col_lse[j]);
        // CLIP: (P + Q - 2T) / 2N up to the weight 1/2N; InfoNCE: P - T.
        CHECK(contrastive::softmax_gradient_entry(s[i * n + j], row_lse[i], col_lse[j], 1.0, 1.0,
                                                  t) == Approx(p + q - 2 * t).margin(1e-15));
        CHECK(contrastive::softmax_gradient_entry(s[i * n + j], row_lse[i],
                                                  std::numeric_limits<double>::quiet_NaN(), 1.0,
                                                  0.0, t) == Approx(p - t).margin(1e-15));
        // The transposed call (rows of B against A) sees the same entry.
        CHECK(contrastive::softmax_gradient_entry(s[i * n + j], col_lse[j], row_lse[i], 1.0, 1.0,
                                                  t) == Approx(p + q - 2 * t).margin(1e-15));
      }
    }
  }
  // Rows sum to zero for InfoNCE: sum_j (p_ij - t_ij) = 1 - 1.
  double row0 = 0;
  for (int j = 0; j < n; ++j)
    row0 +=
        contrastive::softmax_gradient_entry(s[j], row_lse[0], 0.0, 1.0, 0.0, j == 0 ? 1.0 : 0.0);
  CHECK(row0 == Approx(0.0).margin(1e-14));
}

TEST_CASE("pairwise_partial: segment partials merged in any split give the row's statistics",
          "[math][block_sweep]") {
  std::mt19937 gen(3);
  std::uniform_real_distribution<double> u(-40, 40);
  const contrastive::index_t n = 23;
  std::vector<double> s(n);
  for (auto& v : s) v = u(gen);
  contrastive::pairwise_epilogue_args<double> a;
  a.ny = n;
  a.positive_shift = 5;  // row 2's positive is column 7
  std::vector<double> coff(n, 0.0);
  coff[11] = -INFINITY;  // an offset of -inf masks a candidate
  a.col_offset = coff.data();
  using contrastive::pairwise_segment_partial;
  const auto whole = pairwise_segment_partial(a, s.data(), 1, 2, 0, n, false);
  std::vector<double> cand;
  for (contrastive::index_t j = 0; j < n; ++j)
    if (j != 11) cand.push_back(s[j]);
  CHECK(whole.lse() == Approx(direct_lse(cand)).epsilon(1e-14));
  CHECK(whole.count == 1);
  CHECK(whole.pos == s[7]);
  double total = 0;
  for (double v : cand) total += v;
  CHECK(whole.total == Approx(total).epsilon(1e-14));
  for (contrastive::index_t cut : {1, 4, 11, 12, 22}) {
    auto p = pairwise_segment_partial(a, s.data(), 1, 2, 0, cut, false);
    p.merge(pairwise_segment_partial(a, s.data() + cut, 1, 2, cut, n - cut, false));
    CHECK(p.lse() == Approx(whole.lse()).epsilon(1e-14));
    CHECK(p.count == whole.count);
  }
  // A segment whose every candidate is masked is the identity.
  contrastive::pairwise_partial<double> id =
      pairwise_segment_partial(a, s.data() + 11, 1, 2, 11, 1, false);
  CHECK(id.max == -INFINITY);
  auto w = whole;
  w.merge(id);
  CHECK(w.lse() == whole.lse());
}

TEST_CASE("pairwise_gradient and pairwise_positive_count: masks, labels, targets",
          "[math][block_sweep]") {
  contrastive::pairwise_epilogue_args<double> a;
  a.ny = 6;
  a.mask_diagonal = true;
  a.positive_shift = 3;  // NT-Xent with n = 3
  const double w[6] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, l[6] = {1, 2, 3, 4, 5, 6};
  const double q[6] = {0.01, 0.02, 0.03, 0.04, 0.05, 0.06};
  a.row_w = a.col_w = w;
  a.row_lse = a.col_lse = l;
  a.row_q = a.col_q = q;
  a.off_target = 0.05;
  using contrastive::pairwise_gradient;
  using contrastive::pairwise_logit;
  CHECK(pairwise_logit(a, 2.0, 4, 4) == -INFINITY);
  CHECK(pairwise_gradient(a, pairwise_logit(a, 2.0, 4, 4), 4, 4) == 0.0);
  const double s = 0.7;
  const double neg = w[1] * std::exp(s - l[1]) + w[2] * std::exp(s - l[2]) - (w[1] + w[2]) * 0.05;
  CHECK(pairwise_gradient(a, s, 1, 2) == Approx(neg).epsilon(1e-15));
  const double pos =
      w[1] * std::exp(s - l[1]) + w[4] * std::exp(s - l[4]) - (q[1] + q[4]) - (w[1] + w[4]) * 0.05;
  CHECK(pairwise_gradient(a, s, 1, 4) == Approx(pos).epsilon(1e-15));
  for (contrastive::index_t i = 0; i < 6; ++i) {
    CHECK(contrastive::pairwise_positive_count(a, i, 6, false) == 1);
    CHECK(contrastive::pairwise_positive_count(a, i, 6, true) == 1);
  }
  const std::int64_t labels[3] = {7, 7, 9};  // NT-Xent labels, period 3
  a.label_x = a.label_y = labels;
  a.label_period = 3;
  CHECK(contrastive::pairwise_positive_count(a, 0, 6, false) == 3);  // 1, 3, 4 (not itself)
  CHECK(contrastive::pairwise_positive_count(a, 2, 6, false) == 1);  // its other view
  double wt = 0, qt = 0;
  contrastive::pairwise_anchor_coefficients(3.0, 0.5, 0.1, &wt, &qt);
  CHECK(wt == 0.5);
  CHECK(qt == Approx(0.5 * 0.9 / 3));
  contrastive::pairwise_anchor_coefficients(0.0, 0.5, 0.1, &wt, &qt);
  CHECK(wt == 0.0);
  CHECK(qt == 0.0);
}
