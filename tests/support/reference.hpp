#ifndef CONTRASTIVE_TESTS_SUPPORT_REFERENCE_HPP
#define CONTRASTIVE_TESTS_SUPPORT_REFERENCE_HPP

// Naive, materialised reference implementations in double: the full N x N logit matrix, the
// dense target matrix Q and G = dL/dS, straight from docs/info_nce.md and docs/nt_xent.md. Small N only.

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include <Eigen/Core>

namespace ref {

using mat = Eigen::MatrixXd;

struct result {
  double loss = 0;
  mat grad_a, grad_b;
  double dtheta = 0;  // dL/dlog(1/tau)
};

inline double lse_row(const mat& s, Eigen::Index i, const std::vector<bool>& cand) {
  double m = -INFINITY;
  for (Eigen::Index j = 0; j < s.cols(); ++j)
    if (cand[j]) m = std::max(m, s(i, j));
  double sum = 0;
  for (Eigen::Index j = 0; j < s.cols(); ++j)
    if (cand[j]) sum += std::exp(s(i, j) - m);
  return m + std::log(sum);
}

// One direction of the soft-target cross-entropy over the rows of S. pos(i, j): is j a positive
// of anchor i; cand(i, j): is j a candidate. Returns the reduced loss and adds c * G into g.
inline double soft_ce(const mat& s, const std::function<bool(Eigen::Index, Eigen::Index)>& pos,
                      const std::function<bool(Eigen::Index, Eigen::Index)>& cand, double eps,
                      bool mean, double c, mat& g) {
  const Eigen::Index n = s.rows(), m = s.cols();
  std::vector<double> li(n, 0.0);
  std::vector<bool> valid(n, false);
  mat grow = mat::Zero(n, m);
  Eigen::Index nvalid = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    std::vector<bool> cj(m);
    Eigen::Index np = 0, nc = 0;
    for (Eigen::Index j = 0; j < m; ++j) {
      cj[j] = cand(i, j);
      nc += cj[j];
      np += cj[j] && pos(i, j);
    }
    if (np == 0) continue;
    valid[i] = true;
    ++nvalid;
    const double l = lse_row(s, i, cj);
    double t = 0;
    for (Eigen::Index j = 0; j < m; ++j) {
      if (!cj[j]) continue;
      const double q = (1 - eps) * (pos(i, j) ? 1.0 / double(np) : 0.0) + eps / double(nc);
      t += q * s(i, j);
      grow(i, j) = std::exp(s(i, j) - l) - q;
    }
    li[i] = l - t;
  }
  const double w = nvalid == 0 ? 0.0 : (mean ? 1.0 / double(nvalid) : 1.0);
  double loss = 0;
  for (Eigen::Index i = 0; i < n; ++i)
    if (valid[i]) loss += w * li[i];
  g += c * w * grow;
  return c * loss;
}

struct options {
  double temperature = 0.07;
  bool symmetric = true;
  double eps = 0;
  bool mean = true;
  const std::vector<std::int64_t>* labels_a = nullptr;
  const std::vector<std::int64_t>* labels_b = nullptr;
};

inline result info_nce(const mat& a, const mat& b, const options& o) {
  const double lambda = 1.0 / o.temperature;
  const mat s = lambda * a * b.transpose();
  const Eigen::Index n = a.rows();
  mat g = mat::Zero(n, n);
  auto all = [](Eigen::Index, Eigen::Index) { return true; };
  auto pos_ab = [&](Eigen::Index i, Eigen::Index j) {
    return o.labels_a ? (*o.labels_a)[i] == (*o.labels_b)[j] : i == j;
  };
  auto pos_ba = [&](Eigen::Index j, Eigen::Index i) { return pos_ab(i, j); };
  const double c = o.symmetric ? 0.5 : 1.0;
  result r;
  r.loss = soft_ce(s, pos_ab, all, o.eps, o.mean, c, g);
  if (o.symmetric) {
    mat gt = mat::Zero(n, n);
    const mat st = s.transpose();
    r.loss += soft_ce(st, pos_ba, all, o.eps, o.mean, c, gt);
    g += gt.transpose();
  }
  r.grad_a = lambda * g * b;
  r.grad_b = lambda * g.transpose() * a;
  r.dtheta = (g.array() * s.array()).sum();
  return r;
}

inline result nt_xent(const mat& a, const mat& b, double temperature, double eps, bool mean,
                      const std::vector<std::int64_t>* labels) {
  const Eigen::Index n = a.rows();
  mat z(2 * n, a.cols());
  z << a, b;
  const double lambda = 1.0 / temperature;
  const mat s = lambda * z * z.transpose();
  mat g = mat::Zero(2 * n, 2 * n);
  auto cand = [](Eigen::Index i, Eigen::Index j) { return i != j; };
  auto pos = [&](Eigen::Index i, Eigen::Index j) {
    if (i == j) return false;
    if (labels) return (*labels)[i % n] == (*labels)[j % n];
    return j == (i + n) % (2 * n);
  };
  result r;
  r.loss = soft_ce(s, pos, cand, eps, mean, 1.0, g);
  const mat dz = lambda * (g + g.transpose()) * z;
  r.grad_a = dz.topRows(n);
  r.grad_b = dz.bottomRows(n);
  r.dtheta = (g.array() * s.array()).sum();
  return r;
}

inline mat random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint32_t seed,
                         double scale = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> nd(0.0, scale);
  mat m(rows, cols);
  for (Eigen::Index i = 0; i < rows; ++i)
    for (Eigen::Index j = 0; j < cols; ++j) m(i, j) = nd(gen);
  return m;
}

inline mat normalized_rows(mat m) {
  for (Eigen::Index i = 0; i < m.rows(); ++i) m.row(i).normalize();
  return m;
}

inline double max_rel_diff(const mat& x, const mat& y) {
  const double scale = std::max(1e-300, y.cwiseAbs().maxCoeff());
  return (x - y).cwiseAbs().maxCoeff() / scale;
}

}  // namespace ref

#endif  // CONTRASTIVE_TESTS_SUPPORT_REFERENCE_HPP
