#ifndef CONTRASTIVE_SAMPLING_PHILOX_HPP
#define CONTRASTIVE_SAMPLING_PHILOX_HPP

// Philox4x32-10 (Salmon et al., SC 2011), counter-based: every draw is a pure function of
// (seed, id, step, stream, block), so CPU and GPU, any tiling and any thread count produce the
// same numbers. Layout (docs/gamma_sampler.md#stream-layout):
//   key     = (lo32(seed), hi32(seed))
//   counter = (lo32(id), hi32(id), lo32(step), (stream << 28) | block)
// Streams: 0 = direction a (or the only one), 1 = direction b, 2 = bridge noise, 3 = bridge t.

#include <math.h>

#include <cstdint>

#include "contrastive/core/config.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Four 32-bit words: one Philox block.
struct philox_block {
  std::uint32_t w[4];
};

namespace detail {
CONTRASTIVE_HOST_DEVICE inline void mulhilo32(std::uint32_t a, std::uint32_t b, std::uint32_t& hi,
                                              std::uint32_t& lo) noexcept {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b);
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}
}  // namespace detail

/// The raw bijection: ten rounds of Philox4x32 on counter c with key (k0, k1).
CONTRASTIVE_HOST_DEVICE inline philox_block philox4x32_10(philox_block c, std::uint32_t k0,
                                                          std::uint32_t k1) noexcept {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += W0;
      k1 += W1;
    }
    std::uint32_t hi0, lo0, hi1, lo1;
    detail::mulhilo32(M0, c.w[0], hi0, lo0);
    detail::mulhilo32(M1, c.w[2], hi1, lo1);
    c = philox_block{{hi1 ^ c.w[1] ^ k0, lo1, hi0 ^ c.w[3] ^ k1, lo0}};
  }
  return c;
}

/// Named streams of the library's layout.
enum class philox_stream_id : std::uint32_t { a = 0, b = 1, bridge_noise = 2, bridge_t = 3 };

/// The stream of one (seed, id, step, stream): blocks 0, 1, 2, ... (up to 2^28 per stream).
struct philox_stream {
  std::uint64_t seed = 0;
  std::uint64_t id = 0;
  std::uint32_t step = 0;
  std::uint32_t stream = 0;

  CONTRASTIVE_HOST_DEVICE philox_block block(std::uint32_t k) const noexcept {
    const philox_block c{{static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(id >> 32),
                          step, (stream << 28) | (k & 0x0FFFFFFFu)}};
    return philox4x32_10(c, static_cast<std::uint32_t>(seed),
                         static_cast<std::uint32_t>(seed >> 32));
  }

  /// The m-th standard normal of the stream: block m/2, words (0, 1) or (2, 3), Box-Muller
  /// (cosine branch).
  CONTRASTIVE_HOST_DEVICE double normal(std::uint64_t m) const noexcept;
};

/// u(w) = (w + 0.5) 2^-32: exact in double and strictly inside (0, 1).
CONTRASTIVE_HOST_DEVICE inline double uniform_open01(std::uint32_t w) noexcept {
  return (static_cast<double>(w) + 0.5) * (1.0 / 4294967296.0);
}

/// Box-Muller, cosine branch, from two words.
CONTRASTIVE_HOST_DEVICE inline double box_muller(std::uint32_t w0, std::uint32_t w1) noexcept {
  constexpr double two_pi = 6.283185307179586476925286766559;
  return ::sqrt(-2.0 * ::log(uniform_open01(w0))) * ::cos(two_pi * uniform_open01(w1));
}

CONTRASTIVE_HOST_DEVICE inline double philox_stream::normal(std::uint64_t m) const noexcept {
  const philox_block b = block(static_cast<std::uint32_t>(m / 2));
  return (m % 2 == 0) ? box_muller(b.w[0], b.w[1]) : box_muller(b.w[2], b.w[3]);
}

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_SAMPLING_PHILOX_HPP
