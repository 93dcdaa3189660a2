#include "support/test_config.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <contrastive/state/normalizer_state.hpp>

using contrastive::normalizer_state;

namespace {

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const contrastive::invalid_argument& e) {
    return e.what();
  }
  return "no exception";
}

/// A fresh directory under the system temp dir, removed at the end of the test.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("contrastive_state_test_" + std::to_string(rd()) + "_" + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::size_t entries() const {
    std::size_t k = 0;
    for (const auto& e : std::filesystem::directory_iterator(path)) {
      (void)e;
      ++k;
    }
    return k;
  }
};

std::vector<unsigned char> read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string& p, const std::vector<unsigned char>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

/// A state with a mix of visited and unvisited entries in both directions.
normalizer_state sample_state(std::int64_t n = 7) {
  normalizer_state s(n, 2);
  const std::vector<std::int64_t> ids = {0, n - 2, n - 1};
  const std::vector<double> z1 = {-1.25, 0.5, 3.0625};
  s.update(ids, 0, z1.data(), 0.9);
  const std::vector<double> z2 = {2.0, -0.125, 1e-300};
  s.update(ids, 0, z2.data(), 0.3);
  const std::vector<std::int64_t> ids1 = {n - 1, 1};
  const std::vector<double> z3 = {-7.5, 0.3};
  s.update(ids1, 1, z3.data(), 0.9);
  return s;
}

}  // namespace

TEST_CASE("normalizer_state: construction and accessors", "[state]") {
  const normalizer_state s(5, 2);
  CHECK(s.samples() == 5);
  CHECK(s.directions() == 2);
  for (std::int64_t id = 0; id < 5; ++id) {
    CHECK_FALSE(s.visited(id, 0));
    CHECK_FALSE(s.visited(id, 1));
    CHECK(std::isnan(s.log_normalizer(id, 1)));
  }
  const normalizer_state one(3, 1);
  CHECK(one.directions() == 1);
  CHECK(normalizer_state().samples() == 0);
  CHECK_THAT(message_of([] { normalizer_state(-1, 2); }),
             Catch::Contains("'samples' must be >= 0"));
  CHECK(message_of([] { normalizer_state(4, 3); }) ==
        "normalizer_state: 'directions' must be 1 or 2, got 3");
  CHECK(message_of([&] { (void)s.visited(5, 0); }) ==
        "normalizer_state::visited: sample id 5 is out of range [0, 5)");
  CHECK_THAT(message_of([&] { (void)s.log_normalizer(0, 2); }),
             Catch::Contains("'direction' must be in [0, 2)"));
  CHECK_THAT(message_of([&] { (void)one.log_normalizer(0, 1); }),
             Catch::Contains("'direction' must be in [0, 1)"));
}

TEST_CASE("normalizer_state: first visit sets zeta = log Zhat, then the log-domain EMA",
          "[state]") {
  normalizer_state s(4, 2);
  const std::vector<std::int64_t> ids = {2, 0};
  const std::vector<double> lz = {1.5, -0.25};
  s.update(ids, 1, lz.data(), 0.9);
  CHECK(s.log_normalizer(2, 1) == 1.5);
  CHECK(s.log_normalizer(0, 1) == -0.25);
  CHECK_FALSE(s.visited(2, 0));  // the other direction is untouched
  CHECK_FALSE(s.visited(1, 1));
  // Second visit: zeta = log((1 - beta) e^zeta + beta Zhat).
  const std::vector<double> lz2 = {0.5, 2.0};
  s.update(ids, 1, lz2.data(), 0.25);
  CHECK(s.log_normalizer(2, 1) ==
        Approx(std::log(0.75 * std::exp(1.5) + 0.25 * std::exp(0.5))).epsilon(1e-15));
  CHECK(s.log_normalizer(0, 1) ==
        Approx(std::log(0.75 * std::exp(-0.25) + 0.25 * std::exp(2.0))).epsilon(1e-15));
  // beta = 1 keeps only the newest estimate.
  s.update(ids, 1, lz.data(), 1.0);
  CHECK(s.log_normalizer(2, 1) == 1.5);
  CHECK(s.log_normalizer(0, 1) == -0.25);
  // set() and reset().
  s.set(3, 0, -4.0);
  CHECK(s.visited(3, 0));
  CHECK(s.log_normalizer(3, 0) == -4.0);
  s.reset();
  CHECK_FALSE(s.visited(3, 0));
  CHECK(s == normalizer_state(4, 2));
}

TEST_CASE("normalizer_state: the log-domain EMA equals the linear EMA (double)", "[state]") {
  std::mt19937 gen(5);
  std::normal_distribution<double> nd(0.0, 3.0);
  std::uniform_real_distribution<double> ub(0.05, 1.0);
  normalizer_state s(1, 1);
  const std::vector<std::int64_t> id = {0};
  double linear = 0;
  for (int t = 0; t < 2000; ++t) {
    const double lz = nd(gen), beta = ub(gen);
    linear = t == 0 ? std::exp(lz) : (1 - beta) * linear + beta * std::exp(lz);
    s.update(id, 0, &lz, beta);
    REQUIRE(s.log_normalizer(0, 0) == Approx(std::log(linear)).epsilon(1e-12));
  }
  // Far outside exp's range the log domain still works (the linear form would overflow).
  normalizer_state big(1, 1);
  const double huge = 2000.0, huger = 2001.0;
  big.update(id, 0, &huge, 0.5);
  big.update(id, 0, &huger, 0.5);
  CHECK(big.log_normalizer(0, 0) ==
        Approx(2000.0 + std::log(0.5 + 0.5 * std::exp(1.0))).epsilon(1e-15));
  // The static helper is the same rule.
  CHECK(normalizer_state::ema(0.3, false, 1.7, 0.4) == 1.7);
  CHECK(normalizer_state::ema(0.3, true, 1.7, 0.4) ==
        Approx(std::log(0.6 * std::exp(0.3) + 0.4 * std::exp(1.7))).epsilon(1e-15));
}

TEST_CASE("normalizer_state: bad batches throw and leave the state unchanged", "[state][errors]") {
  normalizer_state s = sample_state();
  const normalizer_state before = s;
  const std::vector<double> lz = {0.1, 0.2, 0.3};
  SECTION("out-of-range ids") {
    const std::vector<std::int64_t> hi = {1, 7, 2};
    CHECK(message_of([&] { s.update(hi, 0, lz.data(), 0.9); }) ==
          "normalizer_state::update: sample id 7 at position 1 is out of range [0, 7)");
    const std::vector<std::int64_t> neg = {-1, 0, 2};
    CHECK_THAT(message_of([&] { s.update(neg, 0, lz.data(), 0.9); }),
               Catch::Contains("sample id -1 at position 0 is out of range"));
  }
  SECTION("duplicate ids") {
    const std::vector<std::int64_t> dup = {4, 2, 4};
    CHECK(message_of([&] { s.update(dup, 1, lz.data(), 0.9); }) ==
          "normalizer_state::update: sample id 4 appears twice in the batch (positions 0 and 2); "
          "ids must be distinct within a batch");
  }
  SECTION("beta") {
    const std::vector<std::int64_t> ids = {0, 1, 2};
    for (const double beta : {0.0, -0.5, 1.5, std::nan("")}) {
      CAPTURE(beta);
      CHECK_THAT(message_of([&] { s.update(ids, 0, lz.data(), beta); }),
                 Catch::StartsWith("normalizer_state::update: 'beta' must lie in (0, 1]"));
    }
  }
  SECTION("non-finite estimates, null pointers, bad direction") {
    const std::vector<std::int64_t> ids = {0, 1, 2};
    const std::vector<double> bad = {0.1, std::numeric_limits<double>::infinity(), 0.3};
    CHECK(message_of([&] { s.update(ids, 0, bad.data(), 0.9); }) ==
          "normalizer_state::update: 'log_zhat' has a non-finite value (inf) at position 1");
    CHECK_THAT(message_of([&] { s.update(ids, 0, nullptr, 0.9); }),
               Catch::Contains("'log_zhat' is a null pointer"));
    CHECK_THAT(message_of([&] {
                 s.update(contrastive::vector_view<const std::int64_t>(nullptr, 3), 0, lz.data(),
                          0.9);
               }),
               Catch::Contains("'ids' is a null pointer"));
    CHECK_THAT(message_of([&] { s.update(ids, 2, lz.data(), 0.9); }),
               Catch::Contains("'direction'"));
    CHECK_THAT(message_of([&] { s.set(0, 0, std::nan("")); }),
               Catch::Contains("'zeta' must be finite"));
    CHECK_THAT(message_of([&] { s.set(9, 0, 1.0); }), Catch::Contains("out of range"));
  }
  CHECK(s == before);
  // An empty batch is a no-op.
  s.update(contrastive::vector_view<const std::int64_t>(), 0, nullptr, 0.5);
  CHECK(s == before);
}

TEST_CASE("normalizer_state: CRC-32 check value", "[state]") {
  CHECK(contrastive::detail::crc32_update(0, "123456789", 9) == 0xCBF43926u);
  CHECK(contrastive::detail::crc32_update(0, "", 0) == 0u);
}

TEST_CASE("normalizer_state: save/load round trip is bit-exact", "[state][io]") {
  const temp_dir dir;
  const normalizer_state s = sample_state();
  const std::string p = dir.file("state.bin");
  s.save(p);
  CHECK(dir.entries() == 1);  // no temporary left behind
  const std::vector<unsigned char> bytes = read_bytes(p);
  CHECK(bytes.size() == 32 + 9 * 7 * 2 + 4);
  CHECK(std::memcmp(bytes.data(), "CTRSNORM", 8) == 0);

  normalizer_state t(7, 2);
  t.load(p);
  CHECK(t == s);
  for (std::int64_t id = 0; id < 7; ++id) {
    for (int d = 0; d < 2; ++d) {
      CHECK(t.visited(id, d) == s.visited(id, d));
      if (s.visited(id, d)) {
        const double x = s.log_normalizer(id, d), y = t.log_normalizer(id, d);
        CHECK(std::memcmp(&x, &y, sizeof x) == 0);
      }
    }
  }
  const normalizer_state u = normalizer_state::from_file(p);
  CHECK(u == s);
  // Saving again over the file replaces it atomically with the new contents.
  normalizer_state v = s;
  v.set(2, 1, 42.0);
  v.save(p);
  CHECK(dir.entries() == 1);
  CHECK(normalizer_state::from_file(p) == v);
  CHECK(normalizer_state::from_file(p) != s);
  // Continuing after a load gives the same trajectory as never having saved.
  normalizer_state w = normalizer_state::from_file(p);
  const std::vector<std::int64_t> ids = {2, 5};
  const std::vector<double> lz = {0.7, -0.7};
  w.update(ids, 1, lz.data(), 0.6);
  v.update(ids, 1, lz.data(), 0.6);
  CHECK(w == v);
  // Empty and one-direction states too.
  const normalizer_state e(0, 1);
  e.save(dir.file("empty.bin"));
  CHECK(normalizer_state::from_file(dir.file("empty.bin")) == e);
}

TEST_CASE("normalizer_state: bad files are rejected and the state is left unchanged",
          "[state][io][errors]") {
  const temp_dir dir;
  const normalizer_state s = sample_state(3);
  const std::string p = dir.file("state.bin");
  s.save(p);
  const std::vector<unsigned char> good = read_bytes(p);
  normalizer_state target(3, 2);
  target.set(1, 1, -9.0);
  const normalizer_state before = target;
  const std::string q = dir.file("bad.bin");

  SECTION("missing file") {
    CHECK_THAT(message_of([&] { target.load(dir.file("nope.bin")); }),
               Catch::StartsWith("normalizer_state::load: cannot open '"));
  }
  SECTION("truncated at every length") {
    for (std::size_t len = 0; len < good.size(); ++len) {
      CAPTURE(len);
      write_bytes(q, std::vector<unsigned char>(good.begin(),
                                                good.begin() + static_cast<std::ptrdiff_t>(len)));
      const std::string m = message_of([&] { target.load(q); });
      CHECK(m != "no exception");
      if (len >= 36) CHECK_THAT(m, Catch::Contains("is truncated"));
    }
    std::vector<unsigned char> longer = good;
    longer.push_back(0);
    write_bytes(q, longer);
    CHECK_THAT(message_of([&] { target.load(q); }), Catch::Contains("too long"));
  }
  SECTION("every single-byte corruption") {
    for (std::size_t k = 0; k < good.size(); ++k) {
      CAPTURE(k);
      std::vector<unsigned char> bad = good;
      bad[k] ^= 0x10;
      write_bytes(q, bad);
      CHECK(message_of([&] { target.load(q); }) != "no exception");
    }
    std::vector<unsigned char> bad = good;
    bad[40] ^= 0x01;  // inside the estimates
    write_bytes(q, bad);
    CHECK_THAT(message_of([&] { target.load(q); }), Catch::Contains("is corrupted (checksum"));
    bad = good;
    bad[0] = 'X';
    write_bytes(q, bad);
    CHECK_THAT(message_of([&] { target.load(q); }), Catch::Contains("bad magic"));
  }
  SECTION("another format version, with a valid checksum") {
    std::vector<unsigned char> bad = good;
    const std::uint32_t v2 = 2;
    std::memcpy(bad.data() + 8, &v2, 4);
    const std::uint32_t crc = contrastive::detail::crc32_update(0, bad.data(), bad.size() - 4);
    std::memcpy(bad.data() + bad.size() - 4, &crc, 4);
    write_bytes(q, bad);
    CHECK_THAT(message_of([&] { target.load(q); }),
               Catch::EndsWith("has format version 2, this library reads version 1"));
  }
  SECTION("an invalid flag with a valid checksum") {
    std::vector<unsigned char> bad = good;
    bad[32 + 8 * 6] = 7;  // first visited flag
    const std::uint32_t crc = contrastive::detail::crc32_update(0, bad.data(), bad.size() - 4);
    std::memcpy(bad.data() + bad.size() - 4, &crc, 4);
    write_bytes(q, bad);
    CHECK_THAT(message_of([&] { target.load(q); }), Catch::Contains("visited flag 7"));
  }
  SECTION("mismatched sizes") {
    normalizer_state other(4, 2);
    const normalizer_state other_before = other;
    CHECK_THAT(message_of([&] { other.load(p); }),
               Catch::Contains("holds 3 samples x 2 directions, this state has 4 x 2"));
    CHECK(other == other_before);
    normalizer_state one(3, 1);
    CHECK_THROWS_AS(one.load(p), contrastive::invalid_argument);
    CHECK(one == normalizer_state(3, 1));
  }
  CHECK(target == before);
}

TEST_CASE("normalizer_state: failed saves leave no file behind", "[state][io][errors]") {
  const temp_dir dir;
  const normalizer_state s = sample_state(3);
  CHECK_THAT(message_of([&] { s.save(dir.file("no/such/dir/state.bin")); }),
             Catch::StartsWith("normalizer_state::save: cannot create '"));
  CHECK(dir.entries() == 0);
  // Renaming over a non-empty directory fails after the temporary was written: it is removed.
  std::filesystem::create_directories(dir.path / "occupied" / "x");
  CHECK_THAT(message_of([&] { s.save(dir.file("occupied")); }), Catch::Contains("cannot rename"));
  CHECK(dir.entries() == 1);
  CHECK_THAT(message_of([&] { s.save(""); }), Catch::Contains("'path' is empty"));
}
