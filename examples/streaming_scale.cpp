// Runs the symmetric CLIP loss forward+backward at a chosen N and D, to show that the streaming
// path needs no N x N memory. Measure peak memory with: /usr/bin/time -v ./streaming_scale N D
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>

#include <contrastive/contrastive.hpp>

template <class T>
int run(Eigen::Index n, Eigen::Index d) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  std::mt19937 gen(1);
  std::normal_distribution<T> nd;
  Mat a(n, d), b(n, d), ga(n, d), gb(n, d);
  for (Eigen::Index i = 0; i < n * d; ++i) a.data()[i] = nd(gen);
  for (Eigen::Index i = 0; i < n * d; ++i) b.data()[i] = a.data()[i] + T(0.5) * nd(gen);
  contrastive::l2_normalize(a, a);
  contrastive::l2_normalize(b, b);
  contrastive::info_nce_options opt;
  const double in_out_mib = 4.0 * double(n * d * sizeof(T)) / (1 << 20);
  const double ws_mib = double(contrastive::info_nce_workspace_bytes<T>(n, d, opt)) / (1 << 20);
  const double nxn_mib = double(n) * double(n) * sizeof(T) / (1 << 20);
  const auto t0 = std::chrono::steady_clock::now();
  const T loss = contrastive::info_nce_forward_backward(a, b, ga, gb, opt);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "N " << n << ", D " << d << ", " << (sizeof(T) == 4 ? "float" : "double")
            << ": loss " << loss << ", " << s << " s, "
            << 6.0 * double(n) * double(n) * double(d) / s / 1e9 << " GFLOP/s (6 N^2 D model)\n"
            << "inputs + gradients " << in_out_mib << " MiB, workspace " << ws_mib
            << " MiB; one N x N logit matrix would be " << nxn_mib << " MiB\n";
  return std::isfinite(double(loss)) ? 0 : 1;
}

int main(int argc, char** argv) {
  const Eigen::Index n = argc > 1 ? std::atol(argv[1]) : 4096;
  const Eigen::Index d = argc > 2 ? std::atol(argv[2]) : 128;
  const std::string type = argc > 3 ? argv[3] : "float";
  if (n <= 0 || d <= 0 || (type != "float" && type != "double")) {
    std::cerr << "usage: streaming_scale [N > 0] [D > 0] [float|double]\n";
    return 2;
  }
  return type == "float" ? run<float>(n, d) : run<double>(n, d);
}
