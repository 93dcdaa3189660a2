#ifndef CONTRASTIVE_EXAMPLES_ENCODER_PROBE_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_PROBE_HPP

// Linear probe: multinomial logistic regression (one linear layer, softmax cross-entropy) on
// frozen, standardised features, trained with the encoder's own optimiser (AdamW, cosine
// schedule with warm-up), evaluated by accuracy.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common.hpp"
#include "layers.hpp"
#include "optim.hpp"
#include "progress.hpp"

namespace encoder {

/// Mean softmax cross-entropy of `logits` (N x C) against `labels`; writes dL/dlogits (of the
/// mean) into *grad when given and the number of argmax hits into *correct.
template <class T>
double softmax_cross_entropy(const matrix<T>& logits, const std::vector<int>& labels,
                             matrix<T>* grad = nullptr, index_t* correct = nullptr) {
  const index_t n = logits.rows(), c = logits.cols();
  if (static_cast<index_t>(labels.size()) != n)
    throw error("softmax_cross_entropy: " + std::to_string(labels.size()) + " labels for " +
                std::to_string(n) + " rows");
  if (grad) grad->resize(n, c);
  double loss = 0;
  index_t hits = 0;
  for (index_t i = 0; i < n; ++i) {
    const int y = labels[static_cast<std::size_t>(i)];
    if (y < 0 || y >= c)
      throw error("softmax_cross_entropy: label " + std::to_string(y) + " out of range");
    index_t arg = 0;
    const double m = static_cast<double>(logits.row(i).maxCoeff(&arg));
    double s = 0;
    for (index_t k = 0; k < c; ++k) s += std::exp(static_cast<double>(logits(i, k)) - m);
    const double lse = m + std::log(s);
    loss += lse - static_cast<double>(logits(i, y));
    hits += arg == y;
    if (grad) {
      for (index_t k = 0; k < c; ++k)
        (*grad)(i, k) =
            static_cast<T>((std::exp(static_cast<double>(logits(i, k)) - lse) - (k == y)) / n);
    }
  }
  if (correct) *correct = hits;
  return loss / static_cast<double>(n);
}

/// Per-feature standardisation fitted on the training features.
struct standardizer {
  Eigen::RowVectorXf mean, inv_std;
  void fit(const matrix<float>& x) {
    mean = x.colwise().mean();
    Eigen::RowVectorXf var = (x.rowwise() - mean).array().square().colwise().mean();
    inv_std = var.array().sqrt().max(1e-3f).inverse();
  }
  matrix<float> apply(const matrix<float>& x) const {
    return ((x.rowwise() - mean).array().rowwise() * inv_std.array()).matrix();
  }
};

struct probe_options {
  int epochs = 20;
  index_t batch = 256;
  double lr = 3e-3;
  double weight_decay = 1e-4;
  double warmup_fraction = 0.05;
  std::uint64_t seed = 0;
  int classes = 10;
  bool progress = true;
  std::string label = "probe";
};

struct probe_result {
  double train_accuracy = 0;
  double test_accuracy = 0;
  std::vector<double> losses;  // per step (mini-batch cross-entropy)
  std::vector<double> learning_rates;
  long steps_per_epoch = 0;
  double seconds = 0;
};

/// Accuracy of argmax(x W + b) against labels.
inline double accuracy(linear<float>& head, const matrix<float>& x, const std::vector<int>& y) {
  index_t hits = 0;
  const index_t chunk = 4096;
  for (index_t r = 0; r < x.rows(); r += chunk) {
    const index_t n = std::min(chunk, x.rows() - r);
    matrix<float> logits = head.forward(x.middleRows(r, n));
    for (index_t i = 0; i < n; ++i) {
      index_t arg = 0;
      logits.row(i).maxCoeff(&arg);
      hits += arg == y[static_cast<std::size_t>(r + i)];
    }
  }
  return x.rows() > 0 ? static_cast<double>(hits) / static_cast<double>(x.rows()) : 0;
}

/// Trains a logistic-regression head on standardised `xtr` and reports train/test accuracy.
inline probe_result linear_probe(const matrix<float>& xtr, const std::vector<int>& ytr,
                                 const matrix<float>& xte, const std::vector<int>& yte,
                                 const probe_options& o) {
  if (xtr.rows() == 0 || xtr.rows() != static_cast<index_t>(ytr.size()) ||
      xte.rows() != static_cast<index_t>(yte.size()) || xtr.cols() != xte.cols())
    throw error("linear_probe: inconsistent feature and label sizes");
  probe_result res;
  const auto t0 = progress_bar::clock::now();
  standardizer st;
  st.fit(xtr);
  const matrix<float> tr = st.apply(xtr);
  const matrix<float> te = st.apply(xte);

  linear<float> head(tr.cols(), o.classes, o.seed);
  head.set_name(o.label + ".head");
  head.weight().value.setZero();  // convex problem: start at 0
  adamw<float> opt(head.parameters(), adamw_options{0.9, 0.999, 1e-8, o.weight_decay});
  const index_t n = tr.rows();
  const index_t batch = std::min(o.batch, n);
  res.steps_per_epoch = (n + batch - 1) / batch;
  const long total = res.steps_per_epoch * o.epochs;
  cosine_schedule sched{o.lr, static_cast<long>(o.warmup_fraction * static_cast<double>(total)),
                        total, 0};
  progress_bar bar(o.label, total, o.epochs, "ex");
  long step = 0;
  matrix<float> grad;
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    const auto perm = permutation(n, o.seed, static_cast<std::uint32_t>(epoch));
    for (index_t start = 0; start < n; start += batch) {
      const index_t b = std::min(batch, n - start);
      std::vector<index_t> idx(perm.begin() + start, perm.begin() + start + b);
      std::vector<int> yb(idx.size());
      for (std::size_t i = 0; i < idx.size(); ++i) yb[i] = ytr[static_cast<std::size_t>(idx[i])];
      opt.zero_grad();
      const matrix<float> logits = head.forward(gather_rows(tr, idx));
      const double loss = softmax_cross_entropy(logits, yb, &grad);
      head.backward(grad);
      const double lr = sched(step);
      opt.step(lr);
      res.losses.push_back(loss);
      res.learning_rates.push_back(lr);
      ++step;
      if (o.progress) bar.update(step, epoch + 1, loss, static_cast<long>(step * batch));
    }
  }
  if (o.progress) bar.finish();
  res.train_accuracy = accuracy(head, tr, ytr);
  res.test_accuracy = accuracy(head, te, yte);
  res.seconds = std::chrono::duration<double>(progress_bar::clock::now() - t0).count();
  return res;
}

}  // namespace encoder

#endif  // CONTRASTIVE_EXAMPLES_ENCODER_PROBE_HPP
