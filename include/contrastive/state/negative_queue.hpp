#ifndef CONTRASTIVE_STATE_NEGATIVE_QUEUE_HPP
#define CONTRASTIVE_STATE_NEGATIVE_QUEUE_HPP

// A fixed-capacity ring buffer of negative keys for the MoCo-style queue loss
// (losses/moco.hpp, docs/moco.md): enqueue a batch of keys after each step, the oldest rows are
// overwritten. The loss reads it as a K x D matrix (view()); it is never differentiated.
//
// Files (save/load), with the conventions of normalizer_state (state/normalizer_state.hpp): binary
// in the saving machine's byte order with a byte-order mark, written atomically (temporary file,
// fsync, rename), read and verified whole before the queue is touched.
//
//   offset  size  field
//   0       8     magic "CTRSQUEU"
//   8       4     format version (1)
//   12      4     byte-order mark 0x01020304
//   16      4     element bytes (4: float, 8: double)
//   20      4     reserved (0)
//   24      8     capacity K
//   32      8     dimension D
//   40      8     size (rows filled, <= K)
//   48      8     head (next row to write, < K; 0 when K = 0)
//   56      K D   rows, row-major, element bytes each (unfilled rows 0)
//   end-4   4     CRC-32 (IEEE, as zlib) of every preceding byte

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "contrastive/core/checks.hpp"
#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/matrix_view.hpp"
#include "contrastive/core/traits.hpp"
#include "contrastive/state/normalizer_state.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// A ring buffer of at most `capacity` rows of dimension D (float or double).
template <class T>
class negative_queue {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "contrastive: negative_queue holds float or double");

 public:
  static constexpr std::uint32_t file_version = 1;  ///< the format version save() writes
  static constexpr std::size_t header_bytes = 56;   ///< bytes before the rows

  negative_queue() = default;

  /// An empty queue of `capacity` rows (>= 0) of dimension `dim` (> 0).
  negative_queue(index_t capacity, index_t dim) {
    CONTRASTIVE_CHECK(capacity >= 0, "negative_queue: 'capacity' must be >= 0, got ", capacity);
    CONTRASTIVE_CHECK(dim > 0, "negative_queue: 'dim' must be > 0, got ", dim);
    capacity_ = capacity;
    dim_ = dim;
    rows_.assign(static_cast<std::size_t>(capacity) * static_cast<std::size_t>(dim), T(0));
  }

  index_t capacity() const noexcept { return capacity_; }    ///< K
  index_t dim() const noexcept { return dim_; }              ///< D
  index_t size() const noexcept { return size_; }            ///< rows filled so far (<= K)
  index_t head() const noexcept { return head_; }            ///< the row the next key goes to
  bool full() const noexcept { return size_ == capacity_; }  ///< size() == capacity()

  /// The filled rows as a size() x D row-major matrix (storage order: once full, row head() is
  /// the oldest). Valid until the next enqueue, load or assignment.
  matrix_view<const T> view() const noexcept {
    return matrix_view<const T>(rows_.data(), size_, dim_, dim_, 1);
  }

  /// Appends the rows of `keys` (N x D, finite), overwriting the oldest rows when full; with N >
  /// capacity() only the last capacity() rows are kept. Throws before writing anything when the
  /// shape or a value is bad.
  template <class X>
  void enqueue(const X& keys) {
    const char* fn = "negative_queue::enqueue";
    const auto v = as_view(keys);
    static_assert(std::is_same<std::remove_const_t<typename decltype(v)::value_type>, T>::value,
                  "contrastive: negative_queue::enqueue takes keys of the queue's element type");
    detail::check_matrix(fn, "keys", v);
    CONTRASTIVE_CHECK(v.cols() == dim_, fn, ": 'keys' has ", v.cols(), " columns, expected ", dim_,
                      " (the queue's dimension)");
    for (index_t i = 0; i < v.rows(); ++i)
      for (index_t j = 0; j < v.cols(); ++j)
        CONTRASTIVE_CHECK(std::isfinite(v(i, j)), fn, ": 'keys' has a non-finite value (", v(i, j),
                          ") at row ", i, ", column ", j);
    if (capacity_ == 0) return;
    const index_t first = v.rows() > capacity_ ? v.rows() - capacity_ : 0;
    for (index_t i = first; i < v.rows(); ++i) {
      T* row = rows_.data() + static_cast<std::size_t>(head_) * static_cast<std::size_t>(dim_);
      for (index_t j = 0; j < dim_; ++j) row[j] = v(i, j);
      head_ = head_ + 1 == capacity_ ? 0 : head_ + 1;
      if (size_ < capacity_) ++size_;
    }
  }

  /// Empties the queue (capacity and dimension stay).
  void clear() noexcept {
    std::fill(rows_.begin(), rows_.end(), T(0));
    size_ = head_ = 0;
  }

  /// Bitwise equality of sizes, positions and rows.
  friend bool operator==(const negative_queue& x, const negative_queue& y) noexcept {
    return x.capacity_ == y.capacity_ && x.dim_ == y.dim_ && x.size_ == y.size_ &&
           x.head_ == y.head_ &&
           (x.rows_.empty() ||
            std::memcmp(x.rows_.data(), y.rows_.data(), x.rows_.size() * sizeof(T)) == 0);
  }
  friend bool operator!=(const negative_queue& x, const negative_queue& y) noexcept {
    return !(x == y);
  }

  /// Atomically replaces `path` with the queue (see the file format above).
  void save(const std::string& path) const {
    detail::state_write_atomically("negative_queue::save", path, serialize());
  }

  /// Replaces the queue with the one in `path`, which must have the same capacity and dimension.
  /// Throws (queue unchanged) on a missing, truncated, corrupted or mismatched file.
  void load(const std::string& path) {
    negative_queue q = read_file("negative_queue::load", path);
    CONTRASTIVE_CHECK(q.capacity_ == capacity_ && q.dim_ == dim_, "negative_queue::load: '", path,
                      "' holds ", q.capacity_, " x ", q.dim_, ", this queue is ", capacity_, " x ",
                      dim_, " (use negative_queue::from_file to take the file's sizes)");
    *this = std::move(q);
  }

  /// The queue stored in `path`, with the file's capacity and dimension.
  static negative_queue from_file(const std::string& path) {
    return read_file("negative_queue::from_file", path);
  }

 private:
  std::vector<unsigned char> serialize() const {
    const std::size_t data = rows_.size() * sizeof(T);
    std::vector<unsigned char> out(header_bytes + data + 4, 0);
    unsigned char* p = out.data();
    std::memcpy(p, "CTRSQUEU", 8);
    const std::uint32_t version = file_version, bom = 0x01020304u,
                        elem = static_cast<std::uint32_t>(sizeof(T)), reserved = 0;
    const std::uint64_t fields[4] = {
        static_cast<std::uint64_t>(capacity_), static_cast<std::uint64_t>(dim_),
        static_cast<std::uint64_t>(size_), static_cast<std::uint64_t>(head_)};
    std::memcpy(p + 8, &version, 4);
    std::memcpy(p + 12, &bom, 4);
    std::memcpy(p + 16, &elem, 4);
    std::memcpy(p + 20, &reserved, 4);
    std::memcpy(p + 24, fields, 32);
    if (data > 0) std::memcpy(p + header_bytes, rows_.data(), data);
    const std::uint32_t crc = detail::crc32_update(0, p, out.size() - 4);
    std::memcpy(p + out.size() - 4, &crc, 4);
    return out;
  }

  static negative_queue read_file(const char* fn, const std::string& path) {
    const std::vector<unsigned char> bytes = detail::state_read_file(fn, path);
    const std::size_t size = bytes.size();
    CONTRASTIVE_CHECK(size >= header_bytes + 4, fn, ": '", path, "' is truncated (", size,
                      " bytes, a queue file has at least ", header_bytes + 4, ")");
    const unsigned char* p = bytes.data();
    CONTRASTIVE_CHECK(std::memcmp(p, "CTRSQUEU", 8) == 0, fn, ": '", path,
                      "' is not a contrastive negative_queue file (bad magic)");
    std::uint32_t version, bom, elem, reserved;
    std::uint64_t f[4];
    std::memcpy(&version, p + 8, 4);
    std::memcpy(&bom, p + 12, 4);
    std::memcpy(&elem, p + 16, 4);
    std::memcpy(&reserved, p + 20, 4);
    std::memcpy(f, p + 24, 32);
    CONTRASTIVE_CHECK(bom == 0x01020304u, fn, ": '", path,
                      "' was written on a machine of the other byte order");
    CONTRASTIVE_CHECK(version == file_version, fn, ": '", path, "' has format version ", version,
                      ", this library reads version ", file_version);
    CONTRASTIVE_CHECK(elem == sizeof(T), fn, ": '", path, "' holds ", elem,
                      "-byte elements, this queue ", sizeof(T), "-byte ones");
    const std::uint64_t cap = f[0], dim = f[1], filled = f[2], head = f[3];
    const std::uint64_t limit = std::uint64_t(1) << 40;
    CONTRASTIVE_CHECK(reserved == 0 && dim > 0 && dim < limit && cap < limit && filled <= cap &&
                          (cap == 0 ? head == 0 : head < cap) && (filled == cap || head == filled),
                      fn, ": '", path, "' has a corrupted header (capacity ", cap, ", dim ", dim,
                      ", size ", filled, ", head ", head, ")");
    const std::uint64_t expected = header_bytes + cap * dim * sizeof(T) + 4;
    CONTRASTIVE_CHECK(size == expected, fn, ": '", path, "' is ",
                      size < expected ? "truncated" : "too long", " (", size, " bytes, expected ",
                      expected, ")");
    std::uint32_t stored;
    std::memcpy(&stored, p + size - 4, 4);
    const std::uint32_t crc = detail::crc32_update(0, p, size - 4);
    CONTRASTIVE_CHECK(crc == stored, fn, ": '", path, "' is corrupted (checksum ", crc,
                      " != stored ", stored, ")");
    negative_queue q;
    q.capacity_ = static_cast<index_t>(cap);
    q.dim_ = static_cast<index_t>(dim);
    q.size_ = static_cast<index_t>(filled);
    q.head_ = static_cast<index_t>(head);
    q.rows_.resize(static_cast<std::size_t>(cap * dim));
    if (!q.rows_.empty()) std::memcpy(q.rows_.data(), p + header_bytes, q.rows_.size() * sizeof(T));
    for (std::size_t k = 0; k < q.rows_.size(); ++k)
      CONTRASTIVE_CHECK(std::isfinite(q.rows_[k]), fn, ": '", path,
                        "' is corrupted (non-finite value at element ", k, ")");
    return q;
  }

  index_t capacity_ = 0, dim_ = 0, size_ = 0, head_ = 0;
  std::vector<T> rows_;
};

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_STATE_NEGATIVE_QUEUE_HPP
