// Checking the backward of your own layer with contrastive::testing::gradcheck
// (docs/gradcheck.md): a projection head y = tanh(x W) in front of the CLIP loss.
#include <iostream>

#include <contrastive/contrastive.hpp>
#include <contrastive/testing/gradcheck.hpp>

using Mat = Eigen::MatrixXd;  // checks run in double

// The layer under test: forward y = tanh(x W); backward from dL/dy to dL/dx and dL/dW.
struct tanh_projection {
  Mat w;
  Mat forward(const Mat& x) const { return (x * w).array().tanh().matrix(); }
  void backward(const Mat& x, const Mat& grad_y, Mat& grad_x, Mat& grad_w) const {
    const Mat y = forward(x);
    const Mat dz = (grad_y.array() * (1 - y.array().square())).matrix();  // through tanh
    grad_x = dz * w.transpose();
    grad_w = x.transpose() * dz;
  }
};

int main() {
  namespace ct = contrastive::testing;
  const Eigen::Index n = 6, d_in = 5, d_out = 4;
  Mat x = Mat::Random(n, d_in), b = Mat::Random(n, d_out);
  tanh_projection layer{Mat::Random(d_in, d_out)};

  // 1. The layer alone: L = sum(R .* layer(x)) has dL/dy = R, so backward(R) must give dL/dx, dL/dW.
  const Mat r = Mat::Random(n, d_out);
  Mat gx, gw;
  layer.backward(x, r, gx, gw);
  const auto dx =
      ct::gradcheck(x, gx, [&](const Mat& xp) { return ct::weighted_sum(layer.forward(xp), r); });
  const auto dw = ct::gradcheck(layer.w, gw, [&] { return ct::weighted_sum(layer.forward(x), r); });

  // 2. In a graph: the CLIP loss of (layer(x), b), its dL/dy from the library, then the layer.
  contrastive::info_nce_options opt;
  opt.temperature = 0.5;
  auto clip = [&](const Mat& xp) {
    return contrastive::info_nce_forward(layer.forward(xp), b, opt).loss;
  };
  const Mat y = layer.forward(x);
  Mat gy(n, d_out), gb(n, d_out);
  contrastive::info_nce_forward_backward(y, b, gy, gb, opt);
  layer.backward(x, gy, gx, gw);
  const auto graph = ct::gradcheck(x, gx, clip);

  // 3. A wrong backward (tanh' forgotten) must fail, at the entries it gets wrong.
  const Mat wrong = r * layer.w.transpose();
  const auto bad = ct::gradcheck(
      x, wrong, [&](const Mat& xp) { return ct::weighted_sum(layer.forward(xp), r); });

  std::cout << "dL/dx:        " << dx << "\n\ndL/dW:        " << dw << "\n\nthrough CLIP: " << graph
            << "\n\nwrong dL/dx:  " << bad << "\n";
  return dx.passed && dw.passed && graph.passed && !bad.passed ? 0 : 1;
}
