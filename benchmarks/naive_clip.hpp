#ifndef CONTRASTIVE_BENCHMARKS_NAIVE_CLIP_HPP
#define CONTRASTIVE_BENCHMARKS_NAIVE_CLIP_HPP

// The naive materialised symmetric CLIP loss: S, P and Q held as N x N matrices (what a framework
// does eagerly). A baseline for the benchmarks where 3 N^2 elements fit in memory.

#include <Eigen/Core>

#include "bench_common.hpp"

namespace bench {

template <class T>
T naive_clip_forward_backward(const rmat<T>& a, const rmat<T>& b, T scale, rmat<T>& ga, rmat<T>& gb,
                              rmat<T>& s, rmat<T>& p, rmat<T>& q) {
  const Eigen::Index n = a.rows();
  s.noalias() = scale * (a * b.transpose());
  const Eigen::Array<T, Eigen::Dynamic, 1> rmax = s.rowwise().maxCoeff();
  const Eigen::Array<T, 1, Eigen::Dynamic> cmax = s.colwise().maxCoeff();
  p = (s.array().colwise() - rmax).exp();
  q = (s.array().rowwise() - cmax).exp();
  const Eigen::Array<T, Eigen::Dynamic, 1> rsum = p.rowwise().sum();
  const Eigen::Array<T, 1, Eigen::Dynamic> csum = q.colwise().sum();
  p.array().colwise() /= rsum;
  q.array().rowwise() /= csum;
  double loss = 0;
  for (Eigen::Index i = 0; i < n; ++i)
    loss += 0.5 * (double(rmax(i)) + std::log(double(rsum(i))) + double(cmax(i)) +
                   std::log(double(csum(i))) - 2.0 * double(s(i, i)));
  p = (p + q) / T(2 * n);  // G = (P + Q - 2I) / 2N
  p.diagonal().array() -= T(1) / T(n);
  ga.noalias() = scale * (p * b);
  gb.noalias() = scale * (p.transpose() * a);
  return static_cast<T>(loss / double(n));
}

}  // namespace bench

#endif  // CONTRASTIVE_BENCHMARKS_NAIVE_CLIP_HPP
