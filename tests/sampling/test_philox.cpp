#include "support/test_config.hpp"

#include <cmath>
#include <vector>

#include <contrastive/sampling/philox.hpp>

using contrastive::philox_block;
using contrastive::philox_stream;

namespace {
void check_block(const philox_block& got, std::uint32_t a, std::uint32_t b, std::uint32_t c,
                 std::uint32_t d) {
  CHECK(got.w[0] == a);
  CHECK(got.w[1] == b);
  CHECK(got.w[2] == c);
  CHECK(got.w[3] == d);
}
}  // namespace

TEST_CASE("philox4x32_10: Random123 known-answer vectors", "[philox]") {
  check_block(contrastive::philox4x32_10(philox_block{{0, 0, 0, 0}}, 0, 0), 0x6627e8d5u,
              0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u);
  check_block(
      contrastive::philox4x32_10(philox_block{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
                                 0xffffffffu, 0xffffffffu),
      0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu);
  check_block(
      contrastive::philox4x32_10(philox_block{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
                                 0xa4093822u, 0x299f31d0u),
      0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u);
}

TEST_CASE("philox_stream: the library layout's known answer", "[philox]") {
  const philox_stream s{42, 0, 0, 0};
  check_block(s.block(0), 0x9ceaf053u, 0x77f5493bu, 0x12bf50adu, 0x5742b3d7u);
  // Different ids, steps, streams and blocks give different blocks.
  const philox_block base = s.block(0);
  for (const philox_stream other :
       {philox_stream{42, 1, 0, 0}, philox_stream{42, 0, 1, 0}, philox_stream{42, 0, 0, 1},
        philox_stream{43, 0, 0, 0}, philox_stream{42, std::uint64_t(1) << 32, 0, 0}}) {
    CHECK(other.block(0).w[0] != base.w[0]);
  }
  CHECK(s.block(1).w[0] != base.w[0]);
}

TEST_CASE("uniform_open01 is exact and inside (0, 1)", "[philox]") {
  CHECK(contrastive::uniform_open01(0) == 0.5 / 4294967296.0);
  CHECK(contrastive::uniform_open01(0xffffffffu) < 1.0);
  CHECK(contrastive::uniform_open01(0x80000000u) == Approx(0.5).epsilon(1e-9));
}

TEST_CASE("philox_stream::normal: moments of 2e5 draws", "[philox][statistics]") {
  const philox_stream s{7, 3, 11, 2};
  const int n = 200000;
  double sum = 0, sum2 = 0, sum4 = 0;
  for (int m = 0; m < n; ++m) {
    const double x = s.normal(static_cast<std::uint64_t>(m));
    sum += x;
    sum2 += x * x;
    sum4 += x * x * x * x;
  }
  const double mean = sum / n, var = sum2 / n - mean * mean, kurt = sum4 / n;
  CHECK(std::abs(mean) < 4 * std::sqrt(1.0 / n));
  CHECK(std::abs(var - 1) < 4 * std::sqrt(2.0 / n));
  CHECK(std::abs(kurt - 3) < 4 * std::sqrt(96.0 / n));  // Var(x^4) = 105 - 9
  // Words (0,1) and (2,3) of one block give the even and odd normals.
  const philox_block b = s.block(5);
  CHECK(s.normal(10) == contrastive::box_muller(b.w[0], b.w[1]));
  CHECK(s.normal(11) == contrastive::box_muller(b.w[2], b.w[3]));
}
