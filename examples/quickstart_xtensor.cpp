// The quickstart on xtensor: the same calls, a different tensor type.
#include <cmath>
#include <iostream>

#include <xtensor/xrandom.hpp>
#include <xtensor/xtensor.hpp>

#include <contrastive/adapters/xtensor.hpp>
#include <contrastive/contrastive.hpp>

int main() {
  const std::size_t n = 8, d = 16;
  xt::random::seed(7);
  xt::xtensor<double, 2> a = xt::random::randn<double>({n, d});
  xt::xtensor<double, 2> b = a + 0.3 * xt::random::randn<double>({n, d});
  xt::xtensor<double, 2> ga = xt::zeros<double>({n, d}), gb = xt::zeros<double>({n, d});
  contrastive::nt_xent_options opt;  // SimCLR's NT-Xent over the 2N views [a; b]
  opt.temperature = 0.5;
  const double loss = contrastive::nt_xent_forward_backward(a, b, ga, gb, opt);
  std::cout << "NT-Xent loss " << loss << " (chance level log(2N-1) = " << std::log(2.0 * n - 1)
            << "), dL/da[0][0] = " << ga(0, 0) << "\n";
  return std::isfinite(loss) ? 0 : 1;
}
