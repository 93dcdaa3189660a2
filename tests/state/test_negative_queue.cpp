#include "support/test_config.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include <contrastive/contrastive.hpp>

#include "support/reference.hpp"

namespace {

template <class T>
using rmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using contrastive::negative_queue;

std::string temp_path(const char* name) {
  return std::string("/tmp/contrastive_test_queue_") + name + "_" +
         std::to_string(reinterpret_cast<std::uintptr_t>(&name) % 100000);
}

std::vector<char> read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}
void write_all(const std::string& p, const std::vector<char>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

}  // namespace

TEST_CASE("negative_queue: ring buffer", "[negative_queue]") {
  negative_queue<double> q(5, 2);
  CHECK(q.size() == 0);
  CHECK(q.view().rows() == 0);
  rmat<double> x(3, 2);
  x << 1, 2, 3, 4, 5, 6;
  q.enqueue(x);
  CHECK(q.size() == 3);
  CHECK(q.head() == 3);
  CHECK(!q.full());
  CHECK(q.view()(2, 1) == 6);
  rmat<double> y(4, 2);
  y << 7, 8, 9, 10, 11, 12, 13, 14;
  q.enqueue(y);  // rows 7.. go to 3, 4, then wrap to 0, 1
  CHECK(q.full());
  CHECK(q.head() == 2);
  const auto v = q.view();
  CHECK(v.rows() == 5);
  CHECK(v(0, 0) == 11);
  CHECK(v(1, 0) == 13);
  CHECK(v(2, 0) == 5);  // the oldest surviving row
  CHECK(v(3, 0) == 7);
  CHECK(v(4, 0) == 9);
  rmat<double> big(7, 2);
  for (int i = 0; i < 14; ++i) big.data()[i] = 100 + i;
  q.enqueue(big);  // more than the capacity: the last 5 rows stay
  CHECK(q.size() == 5);
  std::vector<double> firsts;
  for (int i = 0; i < 5; ++i) firsts.push_back(q.view()(i, 0));
  std::sort(firsts.begin(), firsts.end());
  CHECK(firsts == std::vector<double>{104, 106, 108, 110, 112});
  q.clear();
  CHECK(q.size() == 0);
  CHECK(q.head() == 0);
  negative_queue<float> zero(0, 3);
  zero.enqueue(rmat<float>(rmat<float>::Ones(2, 3)));
  CHECK(zero.size() == 0);
}

TEST_CASE("negative_queue: bad input throws and leaves the queue untouched",
          "[negative_queue][errors]") {
  negative_queue<double> q(4, 3);
  q.enqueue(rmat<double>(ref::random_matrix(2, 3, 1)));
  const negative_queue<double> before = q;
  CHECK_THROWS_WITH(q.enqueue(rmat<double>(ref::random_matrix(2, 4, 2))),
                    "negative_queue::enqueue: 'keys' has 4 columns, expected 3 (the queue's "
                    "dimension)");
  rmat<double> bad = ref::random_matrix(3, 3, 3);
  bad(2, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(q.enqueue(bad),
                    "negative_queue::enqueue: 'keys' has a non-finite value (nan) at row 2, "
                    "column 1");
  CHECK(q == before);
  CHECK_THROWS_AS(negative_queue<double>(-1, 3), contrastive::invalid_argument);
  CHECK_THROWS_AS(negative_queue<double>(3, 0), contrastive::invalid_argument);
}

TEST_CASE("negative_queue: save and load", "[negative_queue][io]") {
  const std::string path = temp_path("io");
  negative_queue<float> q(6, 4);
  q.enqueue(rmat<float>(ref::random_matrix(9, 4, 5).cast<float>()));  // wrapped, full
  q.save(path);
  CHECK(negative_queue<float>::from_file(path) == q);
  negative_queue<float> r(6, 4);
  r.load(path);
  CHECK(r == q);
  CHECK(r.head() == q.head());
  // Partly filled.
  negative_queue<float> p(6, 4);
  p.enqueue(rmat<float>(ref::random_matrix(2, 4, 6).cast<float>()));
  p.save(path);
  CHECK(negative_queue<float>::from_file(path) == p);
  q.save(path);

  SECTION("mismatched sizes and types leave the queue unchanged") {
    negative_queue<float> other(5, 4);
    const negative_queue<float> keep = other;
    CHECK_THROWS_AS(other.load(path), contrastive::invalid_argument);
    CHECK(other == keep);
    negative_queue<double> d(6, 4);
    CHECK_THROWS_WITH(d.load(path), "negative_queue::load: '" + path +
                                        "' holds 4-byte elements, this queue 8-byte ones");
  }
  SECTION("a flipped byte, a truncated file and a bad magic are rejected") {
    const std::vector<char> good = read_all(path);
    negative_queue<float> r2(6, 4);
    const negative_queue<float> keep = r2;
    std::vector<char> flip = good;
    flip[negative_queue<float>::header_bytes + 5] ^= 0x10;
    write_all(path, flip);
    CHECK_THROWS_AS(r2.load(path), contrastive::invalid_argument);
    write_all(path, std::vector<char>(good.begin(), good.end() - 3));
    CHECK_THROWS_AS(r2.load(path), contrastive::invalid_argument);
    std::vector<char> magic = good;
    magic[0] = 'X';
    write_all(path, magic);
    CHECK_THROWS_AS(r2.load(path), contrastive::invalid_argument);
    CHECK(r2 == keep);
    CHECK_THROWS_AS(r2.load(path + ".missing"), contrastive::invalid_argument);
  }
  std::remove(path.c_str());
}
