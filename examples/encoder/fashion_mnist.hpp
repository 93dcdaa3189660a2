#ifndef CONTRASTIVE_EXAMPLES_ENCODER_FASHION_MNIST_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_FASHION_MNIST_HPP

// Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017) as shipped by the Debian package
// dataset-fashion-mnist: gzipped IDX files in /usr/share/datasets/fashion-mnist, read with zlib.
//   images: magic 0x00000803, u32 count, u32 rows, u32 cols (big-endian), then bytes
//   labels: magic 0x00000801, u32 count, then one byte per label (0..9)
// Every failure throws data_error naming the file and, where it helps, the package.

#include <zlib.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "common.hpp"

namespace encoder {

constexpr const char* fashion_mnist_package = "dataset-fashion-mnist";
constexpr const char* fashion_mnist_default_dir = "/usr/share/datasets/fashion-mnist";
constexpr const char* fashion_mnist_classes[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

struct data_error : error {
  data_error(const std::string& msg, bool is_missing) : error(msg), missing(is_missing) {}
  bool missing;  // the file does not exist (programs exit with 77, "skipped", then)
};

/// Images (one row per image, pixels in [0, 1], row-major h x w) and labels.
struct image_dataset {
  matrix<float> images;
  std::vector<int> labels;
  int height = 0;
  int width = 0;
  index_t size() const { return images.rows(); }
};

enum class split { train, test };

namespace detail {

inline std::string install_hint() {
  return std::string("install the Debian package ") + fashion_mnist_package +
         " (sudo apt-get install " + fashion_mnist_package +
         "), or point --data-dir / CONTRASTIVE_FASHION_MNIST_DIR at a directory "
         "holding the four *-ubyte.gz files";
}

inline std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}

inline std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(v));
  return buf;
}

}  // namespace detail

/// The whole decompressed content of a gzip file (zlib also reads uncompressed files as is).
inline std::vector<unsigned char> read_gzip_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    throw data_error("Fashion-MNIST: cannot find '" + path + "' (" + std::strerror(errno) + "); " +
                         detail::install_hint(),
                     true);
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f)
    throw data_error("Fashion-MNIST: cannot open '" + path + "' (" + std::strerror(errno) + ")",
                     false);
  std::vector<unsigned char> out;
  unsigned char buf[1 << 16];
  for (;;) {
    const int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int code = 0;
      const std::string msg = gzerror(f, &code);
      gzclose(f);
      throw data_error("Fashion-MNIST: '" + path + "' is not a valid gzip file (" + msg +
                           "); reinstall " + fashion_mnist_package,
                       false);
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  const int rc = gzclose(f);
  if (rc != Z_OK)
    throw data_error("Fashion-MNIST: '" + path + "' is truncated or corrupted (" +
                         (rc == Z_BUF_ERROR ? std::string("unexpected end of the gzip stream")
                                            : "zlib error " + std::to_string(rc)) +
                         "); reinstall " + fashion_mnist_package,
                     false);
  return out;
}

/// Parses IDX images (magic 0x00000803) into [0, 1] floats; keeps the first `limit` (0 = all).
inline matrix<float> parse_idx_images(const std::vector<unsigned char>& b, const std::string& path,
                                      int& height, int& width, index_t limit = 0) {
  const std::string where = "Fashion-MNIST: '" + path + "' ";
  if (b.size() >= 4 && detail::be32(b.data()) != 0x00000803u)
    throw data_error(
        where + "has magic " + detail::hex32(detail::be32(b.data())) +
            ", expected 0x00000803 (IDX unsigned-byte images); not a Fashion-MNIST image file, "
            "reinstall " +
            fashion_mnist_package,
        false);
  if (b.size() < 16)
    throw data_error(where + "is truncated: " + std::to_string(b.size()) +
                         " bytes, an IDX image header needs 16; reinstall " + fashion_mnist_package,
                     false);
  const std::uint64_t n = detail::be32(b.data() + 4);
  const std::uint64_t h = detail::be32(b.data() + 8);
  const std::uint64_t w = detail::be32(b.data() + 12);
  if (h == 0 || w == 0 || h > 4096 || w > 4096)
    throw data_error(
        where + "has implausible image size " + std::to_string(h) + "x" + std::to_string(w), false);
  const std::uint64_t need = 16 + n * h * w;
  if (b.size() < need)
    throw data_error(where + "is truncated: its header announces " + std::to_string(n) +
                         " images of " + std::to_string(h) + "x" + std::to_string(w) + " (" +
                         std::to_string(need) + " bytes) but it has " + std::to_string(b.size()) +
                         " bytes; reinstall " + fashion_mnist_package,
                     false);
  const index_t keep =
      (limit > 0 && static_cast<std::uint64_t>(limit) < n) ? limit : static_cast<index_t>(n);
  const auto d = static_cast<index_t>(h * w);
  matrix<float> x(keep, d);
  const unsigned char* p = b.data() + 16;
  for (index_t i = 0; i < keep; ++i)
    for (index_t k = 0; k < d; ++k) x(i, k) = static_cast<float>(p[i * d + k]) * (1.0f / 255.0f);
  height = static_cast<int>(h);
  width = static_cast<int>(w);
  return x;
}

/// Parses IDX labels (magic 0x00000801), checking each is in [0, classes).
inline std::vector<int> parse_idx_labels(const std::vector<unsigned char>& b,
                                         const std::string& path, index_t limit = 0,
                                         int classes = 10) {
  const std::string where = "Fashion-MNIST: '" + path + "' ";
  if (b.size() >= 4 && detail::be32(b.data()) != 0x00000801u)
    throw data_error(
        where + "has magic " + detail::hex32(detail::be32(b.data())) +
            ", expected 0x00000801 (IDX unsigned-byte labels); not a Fashion-MNIST label file, "
            "reinstall " +
            fashion_mnist_package,
        false);
  if (b.size() < 8)
    throw data_error(where + "is truncated: " + std::to_string(b.size()) +
                         " bytes, an IDX label header needs 8; reinstall " + fashion_mnist_package,
                     false);
  const std::uint64_t n = detail::be32(b.data() + 4);
  if (b.size() < 8 + n)
    throw data_error(where + "is truncated: its header announces " + std::to_string(n) +
                         " labels but it has " + std::to_string(b.size() - 8) + "; reinstall " +
                         fashion_mnist_package,
                     false);
  const index_t keep =
      (limit > 0 && static_cast<std::uint64_t>(limit) < n) ? limit : static_cast<index_t>(n);
  std::vector<int> y(static_cast<std::size_t>(keep));
  for (index_t i = 0; i < keep; ++i) {
    y[static_cast<std::size_t>(i)] = b[8 + static_cast<std::size_t>(i)];
    if (y[static_cast<std::size_t>(i)] >= classes)
      throw data_error(where + "has label " + std::to_string(y[static_cast<std::size_t>(i)]) +
                           " at index " + std::to_string(i) + ", expected 0.." +
                           std::to_string(classes - 1) + "; reinstall " + fashion_mnist_package,
                       false);
  }
  return y;
}

/// The data directory: `cli` if not empty, else $CONTRASTIVE_FASHION_MNIST_DIR, else the
/// Debian package's directory.
inline std::string fashion_mnist_dir(const std::string& cli = "") {
  if (!cli.empty()) return cli;
  if (const char* env = std::getenv("CONTRASTIVE_FASHION_MNIST_DIR"))
    if (*env) return env;
  return fashion_mnist_default_dir;
}

/// Loads one split (train: 60000 images, test: 10000), keeping the first `limit` (0 = all).
inline image_dataset load_fashion_mnist(const std::string& dir, split s, index_t limit = 0) {
  const std::string prefix = dir + "/" + (s == split::train ? "train" : "t10k");
  const std::string ipath = prefix + "-images-idx3-ubyte.gz";
  const std::string lpath = prefix + "-labels-idx1-ubyte.gz";
  image_dataset d;
  d.images = parse_idx_images(read_gzip_file(ipath), ipath, d.height, d.width, limit);
  d.labels = parse_idx_labels(read_gzip_file(lpath), lpath, limit);
  if (static_cast<index_t>(d.labels.size()) != d.images.rows())
    throw data_error("Fashion-MNIST: '" + ipath + "' has " + std::to_string(d.images.rows()) +
                         " images but '" + lpath + "' has " + std::to_string(d.labels.size()) +
                         " labels; reinstall " + fashion_mnist_package,
                     false);
  return d;
}

}  // namespace encoder

#endif  // CONTRASTIVE_EXAMPLES_ENCODER_FASHION_MNIST_HPP
