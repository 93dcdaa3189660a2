#ifndef CONTRASTIVE_EXAMPLES_ENCODER_LAYERS_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_LAYERS_HPP

// Layers of the reference encoder stack, each with a hand-written backward:
//   linear       y = x W + b                     (W is in x out; Eigen GEMMs)
//   relu, gelu   elementwise (exact, erf-based GELU)
//   layer_norm   per-row normalisation with a learned scale and shift
//   l2_norm      rows scaled to unit norm: the library's contrastive::l2_normalize
//   sequential   a chain of layers; make_mlp_encoder and make_projection_head build the usual ones
// Protocol: forward(x) keeps what backward needs; backward(dL/dy) ADDS the parameter gradients
// into parameter::grad and returns dL/dx. Rows are samples.

#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <contrastive/adapters/eigen.hpp>
#include <contrastive/core/l2_normalize.hpp>

#include "common.hpp"

namespace encoder {

/// A trainable tensor and its gradient. `decay`: whether AdamW applies weight decay to it
/// (weights yes; biases and LayerNorm scale/shift no).
template <class T>
struct parameter {
  std::string name;
  matrix<T> value;
  matrix<T> grad;
  bool decay = true;

  parameter(std::string n, index_t rows, index_t cols, bool d)
      : name(std::move(n)),
        value(matrix<T>::Zero(rows, cols)),
        grad(matrix<T>::Zero(rows, cols)),
        decay(d) {}
};

namespace detail {
inline std::string shape_str(index_t r, index_t c) {
  std::ostringstream s;
  s << r << "x" << c;
  return s.str();
}
}  // namespace detail

template <class T>
class layer {
 public:
  virtual ~layer() = default;
  virtual matrix<T> forward(const matrix<T>& x) = 0;
  virtual matrix<T> backward(const matrix<T>& grad_y) = 0;
  virtual std::vector<parameter<T>*> parameters() { return {}; }
  /// Names this layer's parameters "<prefix>.weight" and so on.
  virtual void set_name(const std::string& prefix) { name_ = prefix; }
  virtual std::string kind() const = 0;
  const std::string& name() const { return name_; }

 protected:
  void check_input(const matrix<T>& x, index_t cols) const {
    if (x.cols() != cols)
      throw error(kind() + " '" + name_ + "': input has " + std::to_string(x.cols()) +
                  " columns, expected " + std::to_string(cols));
  }
  void check_grad(const matrix<T>& g, index_t rows, index_t cols) const {
    if (g.rows() != rows || g.cols() != cols)
      throw error(kind() + " '" + name_ + "': backward got a " +
                  detail::shape_str(g.rows(), g.cols()) + " gradient, expected " +
                  detail::shape_str(rows, cols) + " (the shape of the last forward output)");
  }
  std::string name_;
};

/// y = x W + b. Initialisation (deterministic in (seed, parameter name)): W ~ N(0, 2 / in)
/// (He), b = 0.
template <class T>
class linear final : public layer<T> {
 public:
  linear(index_t in, index_t out, std::uint64_t seed)
      : w_("weight", in, out, true), b_("bias", 1, out, false), seed_(seed) {
    if (in <= 0 || out <= 0) throw error("linear: sizes must be > 0");
    set_name("linear");
  }
  void set_name(const std::string& prefix) override {
    this->name_ = prefix;
    w_.name = prefix + ".weight";
    b_.name = prefix + ".bias";
    reset_parameters();
  }
  void reset_parameters() {
    rng r(seed_, fnv1a(w_.name), 0, stream_init);
    const double s = std::sqrt(2.0 / static_cast<double>(w_.value.rows()));
    for (index_t i = 0; i < w_.value.rows(); ++i)
      for (index_t j = 0; j < w_.value.cols(); ++j) w_.value(i, j) = static_cast<T>(s * r.normal());
    b_.value.setZero();
  }
  matrix<T> forward(const matrix<T>& x) override {
    this->check_input(x, w_.value.rows());
    x_ = x;
    matrix<T> y(x.rows(), w_.value.cols());
    y.noalias() = x * w_.value;
    y.rowwise() += b_.value.row(0);
    return y;
  }
  matrix<T> backward(const matrix<T>& gy) override {
    this->check_grad(gy, x_.rows(), w_.value.cols());
    w_.grad.noalias() += x_.transpose() * gy;
    b_.grad.row(0) += gy.colwise().sum();
    if (!input_grad_) return matrix<T>();  // first layer: dL/dx is not needed
    matrix<T> gx(gy.rows(), w_.value.rows());
    gx.noalias() = gy * w_.value.transpose();
    return gx;
  }
  std::vector<parameter<T>*> parameters() override { return {&w_, &b_}; }
  std::string kind() const override { return "linear"; }
  index_t in_features() const { return w_.value.rows(); }
  index_t out_features() const { return w_.value.cols(); }
  parameter<T>& weight() { return w_; }
  parameter<T>& bias() { return b_; }
  /// With false, backward skips dL/dx (one GEMM) and returns an empty matrix: for a network's
  /// first layer, whose input is data.
  void set_input_grad(bool on) { input_grad_ = on; }

 private:
  parameter<T> w_, b_;
  std::uint64_t seed_;
  bool input_grad_ = true;
  matrix<T> x_;
};

template <class T>
class relu final : public layer<T> {
 public:
  matrix<T> forward(const matrix<T>& x) override {
    x_ = x;
    return x.cwiseMax(T(0));
  }
  matrix<T> backward(const matrix<T>& gy) override {
    this->check_grad(gy, x_.rows(), x_.cols());
    return (x_.array() > T(0)).select(gy, T(0));
  }
  std::string kind() const override { return "relu"; }

 private:
  matrix<T> x_;
};

/// GELU(x) = x Phi(x) (exact, with erf); GELU'(x) = Phi(x) + x phi(x).
template <class T>
class gelu final : public layer<T> {
 public:
  matrix<T> forward(const matrix<T>& x) override {
    x_ = x;
    cdf_ =
        x.unaryExpr([](T v) { return T(0.5) * (T(1) + std::erf(v * T(0.70710678118654752440))); });
    return x.cwiseProduct(cdf_);
  }
  matrix<T> backward(const matrix<T>& gy) override {
    this->check_grad(gy, x_.rows(), x_.cols());
    const T c = T(0.39894228040143267794);  // 1/sqrt(2 pi)
    matrix<T> pdf = x_.unaryExpr([c](T v) { return c * std::exp(T(-0.5) * v * v); });
    return gy.cwiseProduct(cdf_ + x_.cwiseProduct(pdf));
  }
  std::string kind() const override { return "gelu"; }

 private:
  matrix<T> x_, cdf_;
};

/// Per-row LayerNorm over the features: y = gamma * (x - mean) / sqrt(var + eps) + beta,
/// var the biased variance. gamma = 1, beta = 0 at initialisation.
template <class T>
class layer_norm final : public layer<T> {
 public:
  explicit layer_norm(index_t features, double eps = 1e-5)
      : g_("gamma", 1, features, false), b_("beta", 1, features, false), eps_(eps) {
    if (features <= 0) throw error("layer_norm: features must be > 0");
    g_.value.setOnes();
    set_name("layer_norm");
  }
  void set_name(const std::string& prefix) override {
    this->name_ = prefix;
    g_.name = prefix + ".gamma";
    b_.name = prefix + ".beta";
  }
  matrix<T> forward(const matrix<T>& x) override {
    this->check_input(x, g_.value.cols());
    const index_t d = x.cols();
    xhat_.resize(x.rows(), d);
    inv_std_.resize(x.rows());
    for (index_t i = 0; i < x.rows(); ++i) {
      const T mean = x.row(i).mean();
      const T var = (x.row(i).array() - mean).square().sum() / T(d);
      const T inv = T(1) / std::sqrt(var + T(eps_));
      inv_std_[i] = inv;
      xhat_.row(i) = (x.row(i).array() - mean) * inv;
    }
    matrix<T> y = xhat_.array().rowwise() * g_.value.row(0).array();
    y.rowwise() += b_.value.row(0);
    return y;
  }
  // dx = inv_std * (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)), gxhat = dy * gamma.
  matrix<T> backward(const matrix<T>& gy) override {
    this->check_grad(gy, xhat_.rows(), xhat_.cols());
    g_.grad.row(0) += gy.cwiseProduct(xhat_).colwise().sum();
    b_.grad.row(0) += gy.colwise().sum();
    matrix<T> gxhat = gy.array().rowwise() * g_.value.row(0).array();
    matrix<T> gx(gy.rows(), gy.cols());
    const T d = T(gy.cols());
    for (index_t i = 0; i < gy.rows(); ++i) {
      const T m1 = gxhat.row(i).sum() / d;
      const T m2 = gxhat.row(i).dot(xhat_.row(i)) / d;
      gx.row(i) = inv_std_[i] * (gxhat.row(i).array() - m1 - xhat_.row(i).array() * m2);
    }
    return gx;
  }
  std::vector<parameter<T>*> parameters() override { return {&g_, &b_}; }
  std::string kind() const override { return "layer_norm"; }

 private:
  parameter<T> g_, b_;
  double eps_;
  matrix<T> xhat_;
  Eigen::Matrix<T, Eigen::Dynamic, 1> inv_std_;
};

/// Rows scaled to unit L2 norm by the library's contrastive::l2_normalize (and its backward).
template <class T>
class l2_norm final : public layer<T> {
 public:
  matrix<T> forward(const matrix<T>& x) override {
    x_ = x;
    matrix<T> y(x.rows(), x.cols());
    contrastive::l2_normalize(x_, y);
    return y;
  }
  matrix<T> backward(const matrix<T>& gy) override {
    this->check_grad(gy, x_.rows(), x_.cols());
    matrix<T> gx(gy.rows(), gy.cols());
    contrastive::l2_normalize_backward(x_, gy, gx);
    return gx;
  }
  std::string kind() const override { return "l2_norm"; }

 private:
  matrix<T> x_;
};

/// A chain of layers. Parameters are named "<name>.<index>.<param>", e.g. "backbone.0.weight".
template <class T>
class sequential final : public layer<T> {
 public:
  explicit sequential(std::string name = "sequential") { this->name_ = std::move(name); }
  sequential(sequential&&) noexcept = default;
  sequential& operator=(sequential&&) noexcept = default;

  template <class L, class... Args>
  L& add(Args&&... args) {
    auto p = std::make_unique<L>(std::forward<Args>(args)...);
    L& ref = *p;
    p->set_name(this->name_ + "." + std::to_string(layers_.size()));
    layers_.push_back(std::move(p));
    return ref;
  }
  void set_name(const std::string& prefix) override {
    this->name_ = prefix;
    for (std::size_t i = 0; i < layers_.size(); ++i)
      layers_[i]->set_name(prefix + "." + std::to_string(i));
  }
  matrix<T> forward(const matrix<T>& x) override {
    if (layers_.empty()) return x;
    matrix<T> h = layers_.front()->forward(x);
    for (std::size_t i = 1; i < layers_.size(); ++i) h = layers_[i]->forward(h);
    return h;
  }
  matrix<T> backward(const matrix<T>& gy) override {
    if (layers_.empty()) return gy;
    matrix<T> g = layers_.back()->backward(gy);
    for (std::size_t i = layers_.size() - 1; i-- > 0;) g = layers_[i]->backward(g);
    return g;
  }
  std::vector<parameter<T>*> parameters() override {
    std::vector<parameter<T>*> out;
    for (auto& l : layers_)
      for (auto* p : l->parameters()) out.push_back(p);
    return out;
  }
  std::string kind() const override { return "sequential"; }
  std::size_t size() const { return layers_.size(); }
  layer<T>& operator[](std::size_t i) { return *layers_[i]; }

  /// Forward without keeping anything for backward-free uses (evaluation), in row chunks so
  /// that the per-layer caches stay small.
  matrix<T> infer(const matrix<T>& x, index_t chunk = 4096) {
    if (x.rows() <= chunk) return forward(x);
    matrix<T> first = forward(x.topRows(chunk));
    matrix<T> out(x.rows(), first.cols());
    out.topRows(chunk) = first;
    for (index_t r = chunk; r < x.rows(); r += chunk) {
      const index_t n = std::min(chunk, x.rows() - r);
      out.middleRows(r, n) = forward(x.middleRows(r, n));
    }
    return out;
  }

 private:
  std::vector<std::unique_ptr<layer<T>>> layers_;
};

/// Zeroes the gradients of `params`.
template <class T>
void zero_grad(const std::vector<parameter<T>*>& params) {
  for (auto* p : params) p->grad.setZero();
}

enum class activation { relu, gelu };

/// The backbone: for each width w in `hidden`: linear -> layer_norm -> activation.
/// Its output (the last width) is the representation that linear probes read.
/// With input_grad = false the first linear layer skips dL/dx (the input is data), and backward
/// returns an empty matrix.
template <class T>
sequential<T> make_mlp_encoder(const std::string& name, index_t in,
                               const std::vector<index_t>& hidden, std::uint64_t seed,
                               activation act = activation::gelu, bool input_grad = true) {
  if (hidden.empty()) throw error("make_mlp_encoder: at least one hidden width is needed");
  sequential<T> s(name);
  index_t prev = in;
  for (std::size_t k = 0; k < hidden.size(); ++k) {
    const index_t w = hidden[k];
    auto& lin = s.template add<linear<T>>(prev, w, seed);
    if (k == 0) lin.set_input_grad(input_grad);
    s.template add<layer_norm<T>>(w);
    if (act == activation::gelu)
      s.template add<gelu<T>>();
    else
      s.template add<relu<T>>();
    prev = w;
  }
  return s;
}

/// The two-layer MLP projection head of SimCLR: linear -> ReLU -> linear (no normalisation;
/// follow it with l2_norm for the losses).
template <class T>
sequential<T> make_projection_head(const std::string& name, index_t in, index_t hidden, index_t out,
                                   std::uint64_t seed) {
  sequential<T> s(name);
  s.template add<linear<T>>(in, hidden, seed);
  s.template add<relu<T>>();
  s.template add<linear<T>>(hidden, out, seed);
  return s;
}

/// Number of scalars in `params`.
template <class T>
index_t parameter_count(const std::vector<parameter<T>*>& params) {
  index_t n = 0;
  for (auto* p : params) n += p->value.size();
  return n;
}

}  // namespace encoder

#endif  // CONTRASTIVE_EXAMPLES_ENCODER_LAYERS_HPP
