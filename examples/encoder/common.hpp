#ifndef CONTRASTIVE_EXAMPLES_ENCODER_COMMON_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_COMMON_HPP

// Shared pieces of the reference encoder stack (examples/encoder/): row-major Eigen matrices,
// the error type, and counter-based random numbers on the library's Philox4x32-10, so that every
// draw is a pure function of (seed, id, step, stream, position) and a run is reproducible
// whatever the batch order.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "contrastive/sampling/philox.hpp"

namespace encoder {

/// Activations and weights: one row per sample, row-major (what the losses read fastest).
template <class T>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using index_t = Eigen::Index;

/// Everything the encoder stack throws (bad shapes, bad files, bad options).
struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Philox streams used by the examples (the library's layout allows 16 per (seed, id, step)).
enum rng_stream : std::uint32_t {
  stream_init = 0,      // weight initialisation, id = hash of the parameter name
  stream_shuffle = 1,   // epoch permutation, step = epoch
  stream_view_a = 2,    // augmentation of the first view, id = sample index, step = epoch
  stream_view_b = 3,    // augmentation of the second view
  stream_modality = 4,  // the two-tower modality noise, id = sample index, step = epoch
  stream_eval = 5,      // fixed evaluation noise (step 0)
  stream_misc = 6,
};

/// FNV-1a, 64 bit: stable ids from names (weight init depends on (seed, name) only).
inline std::uint64_t fnv1a(const std::string& s, std::uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

/// Sequential draws from one Philox stream.
class rng {
 public:
  explicit rng(std::uint64_t seed, std::uint64_t id = 0, std::uint32_t step = 0,
               std::uint32_t stream = 0)
      : s_{seed, id, step, stream & 0xFu} {}

  std::uint32_t next_u32() {
    if (word_ == 4) {
      cur_ = s_.block(block_++);
      word_ = 0;
    }
    return cur_.w[word_++];
  }
  /// Uniform in the open interval (0, 1).
  double uniform() { return contrastive::uniform_open01(next_u32()); }
  /// Standard normal (Box-Muller on two words).
  double normal() {
    const std::uint32_t a = next_u32();
    const std::uint32_t b = next_u32();
    return contrastive::box_muller(a, b);
  }
  /// Uniform integer in [0, n), n < 2^32 (multiply-shift; bias < n / 2^32).
  std::uint32_t below(std::uint32_t n) {
    return static_cast<std::uint32_t>((static_cast<std::uint64_t>(next_u32()) * n) >> 32);
  }
  /// Uniform integer in [lo, hi] (lo when hi <= lo).
  int between(int lo, int hi) {
    return hi <= lo ? lo : lo + static_cast<int>(below(static_cast<std::uint32_t>(hi - lo + 1)));
  }
  bool bernoulli(double p) { return uniform() < p; }

 private:
  contrastive::philox_stream s_;
  std::uint32_t block_ = 0;
  int word_ = 4;
  contrastive::philox_block cur_{};
};

/// A seeded permutation of 0..n-1 (Fisher-Yates), e.g. one per epoch.
inline std::vector<index_t> permutation(index_t n, std::uint64_t seed, std::uint32_t step) {
  std::vector<index_t> p(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) p[static_cast<std::size_t>(i)] = i;
  rng r(seed, 0, step, stream_shuffle);
  for (index_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<index_t>(r.below(static_cast<std::uint32_t>(i + 1)));
    std::swap(p[static_cast<std::size_t>(i)], p[static_cast<std::size_t>(j)]);
  }
  return p;
}

/// Rows `idx` of x, in that order.
template <class T>
matrix<T> gather_rows(const matrix<T>& x, const std::vector<index_t>& idx) {
  matrix<T> out(static_cast<index_t>(idx.size()), x.cols());
  for (std::size_t i = 0; i < idx.size(); ++i) out.row(static_cast<index_t>(i)) = x.row(idx[i]);
  return out;
}

}  // namespace encoder

#endif  // CONTRASTIVE_EXAMPLES_ENCODER_COMMON_HPP
