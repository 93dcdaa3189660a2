#include "support/test_config.hpp"

#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "encoder/augment.hpp"
#include "encoder/fashion_mnist.hpp"

namespace fs = std::filesystem;
using encoder::index_t;

namespace {

fs::path temp_dir(const std::string& name) {
  const auto dir =
      fs::temp_directory_path() / ("encoder_data_tests_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void be32(std::vector<unsigned char>& v, std::uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<unsigned char>(x >> s));
}

std::vector<unsigned char> idx_images(std::uint32_t n, std::uint32_t h, std::uint32_t w,
                                      std::uint32_t magic = 0x803) {
  std::vector<unsigned char> v;
  be32(v, magic);
  be32(v, n);
  be32(v, h);
  be32(v, w);
  for (std::uint32_t k = 0; k < n * h * w; ++k)
    v.push_back(static_cast<unsigned char>((k * 7) % 256));
  return v;
}

std::vector<unsigned char> idx_labels(std::uint32_t n, std::uint32_t magic = 0x801) {
  std::vector<unsigned char> v;
  be32(v, magic);
  be32(v, n);
  for (std::uint32_t k = 0; k < n; ++k) v.push_back(static_cast<unsigned char>(k % 10));
  return v;
}

void write_gz(const fs::path& p, const std::vector<unsigned char>& d) {
  gzFile f = gzopen(p.string().c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, d.data(), static_cast<unsigned>(d.size())) == static_cast<int>(d.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

void write_split(const fs::path& dir, const std::string& prefix, std::uint32_t n) {
  write_gz(dir / (prefix + "-images-idx3-ubyte.gz"), idx_images(n, 28, 28));
  write_gz(dir / (prefix + "-labels-idx1-ubyte.gz"), idx_labels(n));
}

}  // namespace

TEST_CASE("Fashion-MNIST loader reads IDX files through zlib", "[encoder][data]") {
  const auto dir = temp_dir("good");
  write_split(dir, "train", 12);
  write_split(dir, "t10k", 5);
  const auto tr = encoder::load_fashion_mnist(dir.string(), encoder::split::train);
  CHECK(tr.size() == 12);
  CHECK(tr.height == 28);
  CHECK(tr.width == 28);
  CHECK(tr.images.cols() == 784);
  CHECK(tr.labels[11] == 1);
  CHECK(tr.images(1, 3) == Approx(((784 + 3) * 7 % 256) / 255.0f));
  CHECK(tr.images.maxCoeff() <= 1.0f);
  const auto te = encoder::load_fashion_mnist(dir.string(), encoder::split::test, 3);
  CHECK(te.size() == 3);
  CHECK(te.labels.size() == 3);
}

TEST_CASE("Fashion-MNIST loader: missing files name the Debian package", "[encoder][data]") {
  const auto dir = temp_dir("missing");
  try {
    encoder::load_fashion_mnist(dir.string(), encoder::split::train);
    FAIL("no exception");
  } catch (const encoder::data_error& e) {
    CHECK(e.missing);
    CHECK_THAT(e.what(), Catch::Contains("dataset-fashion-mnist") &&
                             Catch::Contains("apt-get install") &&
                             Catch::Contains("train-images-idx3-ubyte.gz"));
  }
}

TEST_CASE("Fashion-MNIST loader: malformed files", "[encoder][data]") {
  const auto dir = temp_dir("bad");
  const auto img = dir / "train-images-idx3-ubyte.gz";
  const auto lab = dir / "train-labels-idx1-ubyte.gz";
  write_gz(lab, idx_labels(4));
  auto load = [&] { encoder::load_fashion_mnist(dir.string(), encoder::split::train); };
  auto expect = [&](const std::string& what) {
    try {
      load();
      FAIL("no exception");
    } catch (const encoder::data_error& e) {
      CHECK_FALSE(e.missing);
      CHECK_THAT(e.what(), Catch::Contains(what) && Catch::Contains("dataset-fashion-mnist"));
    }
  };
  SECTION("wrong magic (labels where images belong)") {
    write_gz(img, idx_labels(4));
    expect("has magic 0x00000801, expected 0x00000803");
  }
  SECTION("wrong magic in the label file") {
    write_gz(img, idx_images(4, 28, 28));
    write_gz(lab, idx_images(4, 28, 28));
    expect("expected 0x00000801");
  }
  SECTION("header announces more images than the file holds") {
    auto d = idx_images(4, 28, 28);
    d.resize(d.size() - 10);
    write_gz(img, d);
    expect("is truncated: its header announces 4 images");
  }
  SECTION("shorter than a header") {
    write_gz(img, std::vector<unsigned char>{0, 0, 8});
    expect("is truncated: 3 bytes");
  }
  SECTION("truncated gzip stream") {
    write_gz(img, idx_images(40, 28, 28));
    const auto size = fs::file_size(img);
    fs::resize_file(img, size / 2);
    expect("truncated or corrupted");
  }
  SECTION("label out of range") {
    write_gz(img, idx_images(4, 28, 28));
    auto l = idx_labels(4);
    l[9] = 10;
    write_gz(lab, l);
    expect("has label 10 at index 1");
  }
}

TEST_CASE("Fashion-MNIST from the Debian package, when installed", "[encoder][data]") {
  const std::string dir = encoder::fashion_mnist_default_dir;
  if (!fs::exists(fs::path(dir) / "t10k-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; nothing to check");
    return;
  }
  const auto te = encoder::load_fashion_mnist(dir, encoder::split::test);
  CHECK(te.size() == 10000);
  std::vector<int> count(10, 0);
  for (int y : te.labels) ++count[static_cast<std::size_t>(y)];
  for (int c : count) CHECK(c == 1000);
  CHECK(te.images.minCoeff() == 0.0f);
  CHECK(te.images.maxCoeff() == 1.0f);
}

TEST_CASE("augmentation primitives", "[encoder][augment]") {
  const int h = 4, w = 5;
  std::vector<float> in(h * w), out(h * w), back(h * w);
  for (int k = 0; k < h * w; ++k) in[static_cast<std::size_t>(k)] = static_cast<float>(k + 1);
  SECTION("shift") {
    encoder::shift_image(in.data(), out.data(), h, w, 1, -2);
    CHECK(out[0 * w + 0] == 0.0f);           // row 0 comes from row -1: zero fill
    CHECK(out[1 * w + 0] == in[0 * w + 2]);  // (1, 0) <- (0, 2)
    CHECK(out[3 * w + 2] == in[2 * w + 4]);  // (3, 2) <- (2, 4)
    CHECK(out[3 * w + 3] == 0.0f);           // from column 5: outside
  }
  SECTION("flip twice is the identity") {
    encoder::hflip_image(in.data(), out.data(), h, w);
    CHECK(out[0] == in[static_cast<std::size_t>(w - 1)]);
    encoder::hflip_image(out.data(), back.data(), h, w);
    CHECK(back == in);
  }
  SECTION("full-window resized crop is the identity; half window magnifies") {
    encoder::resized_crop_image(in.data(), out.data(), h, w, 0, 0, h, w);
    for (int k = 0; k < h * w; ++k)
      CHECK(out[static_cast<std::size_t>(k)] == Approx(in[static_cast<std::size_t>(k)]));
    encoder::resized_crop_image(in.data(), out.data(), h, w, 0, 0, h / 2.0, w);
    CHECK(out[0] == Approx(in[0]));
    CHECK(out[static_cast<std::size_t>((h - 1) * w)] <= in[static_cast<std::size_t>(2 * w)]);
  }
  SECTION("cutout zeroes exactly the clipped square") {
    out = in;
    encoder::cutout_image(out.data(), h, w, -1, 3, 3);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const bool inside = y <= 1 && x >= 3;
        CHECK((out[static_cast<std::size_t>(y * w + x)] == 0.0f) == inside);
      }
  }
}

TEST_CASE("augment_batch is seeded per (seed, sample, epoch, view)", "[encoder][augment]") {
  encoder::matrix<float> imgs(6, 28 * 28);
  encoder::rng g(3);
  for (index_t i = 0; i < imgs.rows(); ++i)
    for (index_t k = 0; k < imgs.cols(); ++k) imgs(i, k) = static_cast<float>(g.uniform());
  const encoder::augment_options o;
  const auto a = encoder::augment_batch(imgs, {1, 4, 5}, 28, 28, o, 11, 0, encoder::stream_view_a);
  const auto b = encoder::augment_batch(imgs, {4}, 28, 28, o, 11, 0, encoder::stream_view_a);
  CHECK(a.row(1) == b.row(0));  // independent of the batch it lands in
  const auto c = encoder::augment_batch(imgs, {4}, 28, 28, o, 11, 1, encoder::stream_view_a);
  const auto d = encoder::augment_batch(imgs, {4}, 28, 28, o, 11, 0, encoder::stream_view_b);
  const auto e = encoder::augment_batch(imgs, {4}, 28, 28, o, 12, 0, encoder::stream_view_a);
  CHECK(c.row(0) != b.row(0));
  CHECK(d.row(0) != b.row(0));
  CHECK(e.row(0) != b.row(0));
  CHECK(a.minCoeff() >= 0.0f);
  CHECK(a.maxCoeff() <= 1.0f);
  CHECK_THROWS_AS(encoder::augment_batch(imgs, {0}, 14, 28, o, 1, 0, 0), encoder::error);
}

TEST_CASE("augmentation noise has the requested standard deviation", "[encoder][augment]") {
  encoder::augment_options o;
  o.crop_scale_min = 1;
  o.max_shift = 0;
  o.flip_prob = 0;
  o.cutout_prob = 0;
  o.noise_std = 0.1;
  encoder::matrix<float> imgs = encoder::matrix<float>::Constant(50, 28 * 28, 0.5f);
  std::vector<index_t> idx;
  for (index_t i = 0; i < 50; ++i) idx.push_back(i);
  const auto a = encoder::augment_batch(imgs, idx, 28, 28, o, 5, 0, encoder::stream_view_a);
  const double n = static_cast<double>(a.size());
  const double mean = a.cast<double>().mean();
  const double sd = std::sqrt((a.cast<double>().array() - mean).square().sum() / n);
  CHECK(std::abs(mean - 0.5) < 4 * 0.1 / std::sqrt(n));
  CHECK(sd == Approx(0.1).epsilon(0.02));
}
