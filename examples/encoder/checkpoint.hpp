#ifndef CONTRASTIVE_EXAMPLES_ENCODER_CHECKPOINT_HPP
#define CONTRASTIVE_EXAMPLES_ENCODER_CHECKPOINT_HPP

// Binary checkpoints of a list of parameters. Layout (little-endian, as written by x86/ARM hosts):
//   8 bytes   magic "CTRENCK\0"
//   u32       format version (1)
//   u32       scalar size in bytes (4 = float, 8 = double)
//   u64       tensor count
//   per tensor: u32 name length, name bytes, i64 rows, i64 cols, rows*cols scalars (row-major)
//   u64       FNV-1a hash of every byte after the magic and before the hash
// Loading checks everything against the model (count, names, shapes, scalar type) before it
// writes a single value, and throws encoder::error naming the file and the first mismatch.

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common.hpp"
#include "layers.hpp"

namespace encoder {

constexpr char checkpoint_magic[8] = {'C', 'T', 'R', 'E', 'N', 'C', 'K', '\0'};
constexpr std::uint32_t checkpoint_version = 1;

namespace detail {

class hashing_writer {
 public:
  explicit hashing_writer(std::ofstream& os) : os_(os) {}
  void bytes(const void* p, std::size_t n) {
    os_.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
    const auto* c = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) {
      h_ ^= c[i];
      h_ *= 1099511628211ull;
    }
  }
  template <class U>
  void pod(const U& v) {
    bytes(&v, sizeof(U));
  }
  std::uint64_t hash() const { return h_; }

 private:
  std::ofstream& os_;
  std::uint64_t h_ = 1469598103934665603ull;
};

class checkpoint_reader {
 public:
  checkpoint_reader(const std::string& path, std::vector<char> data)
      : path_(path), d_(std::move(data)) {}
  void bytes(void* p, std::size_t n, const char* what) {
    if (d_.size() - pos_ < n)
      fail(std::string("truncated while reading ") + what + " (needs " + std::to_string(n) +
           " more bytes at offset " + std::to_string(pos_) + ", file has " +
           std::to_string(d_.size()) + ")");
    std::memcpy(p, d_.data() + pos_, n);
    pos_ += n;
  }
  template <class U>
  U pod(const char* what) {
    U v;
    bytes(&v, sizeof(U), what);
    return v;
  }
  std::size_t pos() const { return pos_; }
  std::size_t size() const { return d_.size(); }
  std::uint64_t hash(std::size_t from, std::size_t to) const {
    std::uint64_t h = 1469598103934665603ull;
    for (std::size_t i = from; i < to; ++i) {
      h ^= static_cast<unsigned char>(d_[i]);
      h *= 1099511628211ull;
    }
    return h;
  }
  [[noreturn]] void fail(const std::string& msg) const {
    throw error("checkpoint '" + path_ + "': " + msg);
  }

 private:
  std::string path_;
  std::vector<char> d_;
  std::size_t pos_ = 0;
};

}  // namespace detail

template <class T>
void save_checkpoint(const std::string& path, const std::vector<parameter<T>*>& params) {
  std::ofstream os(path, std::ios::binary | std::ios::trunc);
  if (!os) throw error("checkpoint '" + path + "': cannot open for writing");
  os.write(checkpoint_magic, sizeof checkpoint_magic);
  detail::hashing_writer w(os);
  w.pod(checkpoint_version);
  w.pod(static_cast<std::uint32_t>(sizeof(T)));
  w.pod(static_cast<std::uint64_t>(params.size()));
  for (const auto* p : params) {
    w.pod(static_cast<std::uint32_t>(p->name.size()));
    w.bytes(p->name.data(), p->name.size());
    w.pod(static_cast<std::int64_t>(p->value.rows()));
    w.pod(static_cast<std::int64_t>(p->value.cols()));
    w.bytes(p->value.data(), sizeof(T) * static_cast<std::size_t>(p->value.size()));
  }
  const std::uint64_t h = w.hash();
  os.write(reinterpret_cast<const char*>(&h), sizeof h);
  os.flush();
  if (!os) throw error("checkpoint '" + path + "': write failed");
}

template <class T>
void load_checkpoint(const std::string& path, const std::vector<parameter<T>*>& params) {
  std::ifstream is(path, std::ios::binary);
  if (!is) throw error("checkpoint '" + path + "': cannot open for reading");
  std::vector<char> data((std::istreambuf_iterator<char>(is)), std::istreambuf_iterator<char>());
  detail::checkpoint_reader r(path, std::move(data));

  char magic[sizeof checkpoint_magic] = {};
  if (r.size() >= sizeof magic) r.bytes(magic, sizeof magic, "the magic");
  if (std::memcmp(magic, checkpoint_magic, sizeof magic) != 0)
    r.fail("not an encoder checkpoint (bad magic; expected \"CTRENCK\")");
  const auto version = r.pod<std::uint32_t>("the version");
  if (version != checkpoint_version)
    r.fail("format version " + std::to_string(version) + ", this program reads version " +
           std::to_string(checkpoint_version));
  const auto scalar = r.pod<std::uint32_t>("the scalar size");
  if (scalar != sizeof(T))
    r.fail("stores " + std::to_string(8 * scalar) + "-bit scalars, the model uses " +
           std::to_string(8 * sizeof(T)) + "-bit scalars");
  const auto count = r.pod<std::uint64_t>("the tensor count");
  if (count != params.size())
    r.fail("holds " + std::to_string(count) + " tensors, the model has " +
           std::to_string(params.size()));

  std::vector<matrix<T>> values;
  values.reserve(params.size());
  for (std::size_t k = 0; k < params.size(); ++k) {
    const auto len = r.pod<std::uint32_t>("a tensor name length");
    if (len > 4096)
      r.fail("tensor " + std::to_string(k) + " has an implausible name length " +
             std::to_string(len));
    std::string name(len, '\0');
    r.bytes(&name[0], len, "a tensor name");
    const auto rows = r.pod<std::int64_t>("a tensor shape");
    const auto cols = r.pod<std::int64_t>("a tensor shape");
    const parameter<T>& p = *params[k];
    if (name != p.name || rows != p.value.rows() || cols != p.value.cols())
      r.fail("tensor " + std::to_string(k) + " is '" + name + "' (" +
             detail::shape_str(rows, cols) + "), the model expects '" + p.name + "' (" +
             detail::shape_str(p.value.rows(), p.value.cols()) + ")");
    values.emplace_back(rows, cols);
    r.bytes(values.back().data(), sizeof(T) * static_cast<std::size_t>(rows * cols),
            ("the values of '" + name + "'").c_str());
  }
  const std::size_t end = r.pos();
  const auto stored = r.pod<std::uint64_t>("the checksum");
  if (stored != r.hash(sizeof checkpoint_magic, end))
    r.fail("checksum mismatch (the file is corrupted)");
  if (r.pos() != r.size())
    r.fail(std::to_string(r.size() - r.pos()) + " unexpected trailing bytes");
  for (std::size_t k = 0; k < params.size(); ++k) params[k]->value = std::move(values[k]);
}

}  // namespace encoder

#endif  // CONTRASTIVE_EXAMPLES_ENCODER_CHECKPOINT_HPP
