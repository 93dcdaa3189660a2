#ifndef CONTRASTIVE_EXAMPLES_ENCODER_OPTIM_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_OPTIM_HPP

// AdamW (Loshchilov & Hutter, decoupled weight decay) and a cosine learning-rate schedule with
// linear warm-up.

#include <cmath>
#include <string>
#include <vector>

#include "common.hpp"
#include "layers.hpp"

namespace encoder {

struct adamw_options {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // decoupled: w <- w (1 - lr wd), only for parameters with decay
};

/// One step at learning rate lr, t = number of steps taken (1-based):
///   w <- w (1 - lr wd)                                   (if the parameter decays)
///   m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
///   w <- w - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
template <class T>
class adamw {
 public:
  adamw(std::vector<parameter<T>*> params, adamw_options o = {})
      : params_(std::move(params)), o_(o) {
    if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1) || !(o.eps > 0) ||
        !(o.weight_decay >= 0))
      throw error("adamw: need 0 <= beta1, beta2 < 1, eps > 0 and weight_decay >= 0");
    for (auto* p : params_) {
      m_.push_back(matrix<T>::Zero(p->value.rows(), p->value.cols()));
      v_.push_back(matrix<T>::Zero(p->value.rows(), p->value.cols()));
    }
  }

  void zero_grad() { encoder::zero_grad(params_); }

  void step(double lr) {
    if (!(lr >= 0) || !std::isfinite(lr))
      throw error("adamw: learning rate must be finite and >= 0");
    ++t_;
    const double bc1 = 1 - std::pow(o_.beta1, static_cast<double>(t_));
    const double bc2 = 1 - std::pow(o_.beta2, static_cast<double>(t_));
    const T b1 = T(o_.beta1), b2 = T(o_.beta2);
    const T step_size = T(lr / bc1);
    const T inv_sqrt_bc2 = T(1 / std::sqrt(bc2));
    const T eps = T(o_.eps);
    for (std::size_t k = 0; k < params_.size(); ++k) {
      parameter<T>& p = *params_[k];
      if (p.decay && o_.weight_decay > 0) p.value *= T(1 - lr * o_.weight_decay);
      m_[k] = b1 * m_[k] + (T(1) - b1) * p.grad;
      v_[k] = b2 * v_[k] + (T(1) - b2) * p.grad.cwiseProduct(p.grad);
      p.value.array() -= step_size * m_[k].array() / (v_[k].array().sqrt() * inv_sqrt_bc2 + eps);
    }
  }

  long steps() const { return t_; }
  const adamw_options& options() const { return o_; }
  const std::vector<parameter<T>*>& parameters() const { return params_; }

 private:
  std::vector<parameter<T>*> params_;
  adamw_options o_;
  std::vector<matrix<T>> m_, v_;
  long t_ = 0;
};

/// lr(step), step 0-based: base (step + 1) / warmup during warm-up, then a half cosine from base
/// down to min_lr at total_steps - 1 (and min_lr after).
struct cosine_schedule {
  double base_lr = 1e-3;
  long warmup_steps = 0;
  long total_steps = 1;
  double min_lr = 0;

  double operator()(long step) const {
    if (step < warmup_steps)
      return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    const long span = total_steps - warmup_steps - 1;
    if (span <= 0) return base_lr;
    double progress = static_cast<double>(step - warmup_steps) / static_cast<double>(span);
    if (progress > 1) progress = 1;
    const double pi = 3.14159265358979323846;
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + std::cos(pi * progress));
  }
};

}  // namespace encoder

#endif  // CONTRASTIVE_EXAMPLES_ENCODER_OPTIM_HPP
