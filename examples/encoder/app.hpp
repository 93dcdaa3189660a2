#ifndef CONTRASTIVE_EXAMPLES_ENCODER_APP_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_APP_HPP

// Small helpers shared by the training programs (train_simclr, train_two_tower).

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "common.hpp"

#ifdef _OPENMP
#  include <omp.h>
#endif

namespace encoder {

/// Exit code that ctest maps to "skipped" (SKIP_RETURN_CODE 77): the dataset is not installed.
constexpr int exit_skipped = 77;
/// Exit code of a failed --check (the loss did not fall, or the probe did not beat chance).
constexpr int exit_check_failed = 2;

/// "<directory of this executable>/runs", so outputs land in the build tree by default.
inline std::string default_out_dir(const char* argv0) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path exe = fs::canonical("/proc/self/exe", ec);
  if (ec) exe = fs::absolute(argv0, ec);
  return (exe.parent_path() / "runs").string();
}

inline std::string absolute_path(const std::string& p) {
  std::error_code ec;
  const auto a = std::filesystem::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

/// Mean of v[from, to).
inline double mean_of(const std::vector<double>& v, std::size_t from, std::size_t to) {
  double s = 0;
  for (std::size_t i = from; i < to; ++i) s += v[i];
  return to > from ? s / static_cast<double>(to - from) : 0;
}

/// The loss fell: the mean over the last quarter of the steps is below the mean over the first
/// quarter by at least 1% and by three standard errors of the difference, the batch-to-batch
/// noise being estimated from the last quarter (the first one also holds the initial descent).
/// Noise alone, e.g. at learning rate 0, does not pass.
inline bool loss_fell(const std::vector<double>& losses, double* first = nullptr,
                      double* last = nullptr) {
  const std::size_t n = losses.size();
  const std::size_t q = n / 4;
  if (first) *first = q ? mean_of(losses, 0, q) : 0;
  if (last) *last = q ? mean_of(losses, n - q, n) : 0;
  if (q < 2) return false;
  const double a = mean_of(losses, 0, q), b = mean_of(losses, n - q, n);
  auto var = [&](std::size_t from, double m) {
    double s = 0;
    for (std::size_t i = from; i < from + q; ++i) s += (losses[i] - m) * (losses[i] - m);
    return s / static_cast<double>(q - 1);
  };
  const double se = std::sqrt(2 * var(n - q, b) / static_cast<double>(q));
  return a - b > 0.01 * std::abs(a) && a - b > 3 * se;
}

/// Accuracy that beats chance (1 / classes) by three binomial standard errors on n examples.
inline double chance_threshold(index_t n, int classes = 10) {
  const double p = 1.0 / classes;
  return p + 3 * std::sqrt(p * (1 - p) / static_cast<double>(n > 0 ? n : 1));
}

/// Threads for Eigen's GEMMs and the library's OpenMP tile sweeps (0 = leave the OpenMP
/// default, all cores). Returns the count in effect.
inline int set_threads(int n) {
#ifdef _OPENMP
  if (n > 0) omp_set_num_threads(n);
  const int t = omp_get_max_threads();
  Eigen::setNbThreads(t);
  return t;
#else
  (void)n;
  return 1;
#endif
}

class stopwatch {
 public:
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

}  // namespace encoder

#endif  // CONTRASTIVE_EXAMPLES_ENCODER_APP_HPP
