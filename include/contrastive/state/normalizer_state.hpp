#ifndef CONTRASTIVE_STATE_NORMALIZER_STATE_HPP
#define CONTRASTIVE_STATE_NORMALIZER_STATE_HPP

// Per-sample log-normaliser estimates for the gamma-auxiliary loss (docs/gamma_nce.md#normaliser-state,
// [RECON]: the paper's full text was not available; this implements the reconstruction described
// there).
//
// For every dataset sample id and direction (0 = a -> b, 1 = b -> a) the state holds
// zeta = log Zbar (double) and a visited flag. The moving average runs in the log domain, with
// beta weighting the new estimate:
//
//   first visit:  zeta = log Zhat
//   otherwise:    zeta = logaddexp(log(1 - beta) + zeta, log(beta) + log Zhat)
//
// which is the linear EMA Zbar <- (1 - beta) Zbar + beta Zhat without ever forming Zbar.
// Memory is O(samples x directions) (9 bytes per entry).
//
// Batches: an id outside [0, samples()) is an error, and so is an id that appears twice in one
// batch (its two estimates would race for one entry): both throw contrastive::invalid_argument
// before anything is written.
//
// Files (save/load): binary in the saving machine's byte order (with a byte-order mark), rejected
// on any mismatch.
//
//   offset  size  field
//   0       8     magic "CTRSNORM"
//   8       4     format version (1)
//   12      4     byte-order mark 0x01020304 (as written by the saving machine)
//   16      4     directions (1 or 2)
//   20      4     reserved (0)
//   24      8     samples
//   32      8 S D zeta, direction-major (unvisited entries are written as 0)
//   ...     S D   visited flags (0 or 1), direction-major
//   end-4   4     CRC-32 (IEEE, as zlib) of every preceding byte
//
// save() writes a temporary file next to the target, flushes it (fsync on POSIX) and renames it
// over the target, so a crash leaves either the old or the new file, never a mix. load() reads and
// verifies the whole file (size, magic, version, byte order, sizes, checksum, flags) before it
// touches the state: a truncated, corrupted or mismatched file throws and leaves the state
// exactly as it was.

#include <math.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#  include <fcntl.h>
#  include <unistd.h>
#  define CONTRASTIVE_STATE_POSIX 1
#else
#  define CONTRASTIVE_STATE_POSIX 0
#endif

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"
#include "contrastive/core/math.hpp"
#include "contrastive/core/matrix_view.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

namespace detail {

/// CRC-32 (IEEE 802.3 polynomial, reflected, as zlib's crc32); crc32("123456789") = 0xCBF43926.
inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t n) noexcept {
  struct table_t {
    std::uint32_t t[256];
    table_t() noexcept {
      for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
      }
    }
  };
  static const table_t table;
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table.t[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

struct normalizer_state_access;

/// A distinct temporary name next to `path` (for concurrent saves in one process too).
inline std::string state_temporary_name(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  std::string t = path + ".tmp.";
#if CONTRASTIVE_STATE_POSIX
  t += std::to_string(static_cast<long long>(::getpid())) + ".";
#endif
  t += std::to_string(++counter);
  return t;
}

#if CONTRASTIVE_STATE_POSIX
/// Makes a rename durable; failure here is not an error (the data is already safe from a process
/// crash, only a power loss could undo the rename).
inline void state_sync_directory(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int fd = ::open(dir.c_str(), O_RDONLY);
  if (fd >= 0) {
    (void)::fsync(fd);
    (void)::close(fd);
  }
}
#endif

/// The one atomic write of the state files (normalizer_state, negative_queue): a temporary file
/// in the same directory, flush, fsync, rename over `path`, fsync of the directory. Throws
/// contrastive::invalid_argument on any failure, leaving the old file (if any) and no temporary.
inline void state_write_atomically(const char* fn, const std::string& path,
                                   const std::vector<unsigned char>& bytes) {
  CONTRASTIVE_CHECK(!path.empty(), fn, ": 'path' is empty");
  const std::string tmp = state_temporary_name(path);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  CONTRASTIVE_CHECK(f != nullptr, fn, ": cannot create '", tmp, "': ", std::strerror(errno));
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  bool flushed = std::fflush(f) == 0;
#if CONTRASTIVE_STATE_POSIX
  flushed = flushed && ::fsync(::fileno(f)) == 0;
#endif
  const int err = errno;
  const bool closed = std::fclose(f) == 0;
  if (!(written && flushed && closed)) {
    std::remove(tmp.c_str());
    CONTRASTIVE_CHECK(false, fn, ": writing '", tmp, "' failed: ", std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int rerr = errno;
    std::remove(tmp.c_str());
    CONTRASTIVE_CHECK(false, fn, ": cannot rename '", tmp, "' to '", path,
                      "': ", std::strerror(rerr));
  }
#if CONTRASTIVE_STATE_POSIX
  state_sync_directory(path);
#endif
}

/// The whole file, or a throw naming it.
inline std::vector<unsigned char> state_read_file(const char* fn, const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  CONTRASTIVE_CHECK(f != nullptr, fn, ": cannot open '", path, "': ", std::strerror(errno));
  std::vector<unsigned char> bytes;
  unsigned char buf[1 << 16];
  std::size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.insert(bytes.end(), buf, buf + got);
  const bool read_error = std::ferror(f) != 0;
  std::fclose(f);
  CONTRASTIVE_CHECK(!read_error, fn, ": reading '", path, "' failed");
  return bytes;
}

}  // namespace detail

/// Per-sample, per-direction log-domain normaliser estimates indexed by dataset sample id.
class normalizer_state {
 public:
  static constexpr std::uint32_t file_version = 1;
  static constexpr char file_magic[9] = "CTRSNORM";

  normalizer_state() = default;

  /// `samples` dataset ids (>= 0) and 1 or 2 directions (2 for symmetric losses); all unvisited.
  explicit normalizer_state(std::int64_t samples, int directions = 2) {
    CONTRASTIVE_CHECK(samples >= 0, "normalizer_state: 'samples' must be >= 0, got ", samples);
    CONTRASTIVE_CHECK(directions == 1 || directions == 2,
                      "normalizer_state: 'directions' must be 1 or 2, got ", directions);
    samples_ = samples;
    directions_ = directions;
    zeta_.assign(static_cast<std::size_t>(samples) * static_cast<std::size_t>(directions), 0.0);
    visited_.assign(zeta_.size(), 0);
  }

  std::int64_t samples() const noexcept { return samples_; }
  int directions() const noexcept { return directions_; }

  /// Has (id, direction) received an estimate?
  bool visited(std::int64_t id, int direction = 0) const {
    return visited_[index("normalizer_state::visited", id, direction)] != 0;
  }
  /// zeta = log Zbar of (id, direction); quiet NaN while unvisited.
  double log_normalizer(std::int64_t id, int direction = 0) const {
    const std::size_t k = index("normalizer_state::log_normalizer", id, direction);
    return visited_[k] ? zeta_[k] : std::numeric_limits<double>::quiet_NaN();
  }
  /// Sets zeta (finite) and marks the entry visited.
  void set(std::int64_t id, int direction, double zeta) {
    const std::size_t k = index("normalizer_state::set", id, direction);
    CONTRASTIVE_CHECK(std::isfinite(zeta), "normalizer_state::set: 'zeta' must be finite, got ",
                      zeta);
    zeta_[k] = zeta;
    visited_[k] = 1;
  }
  /// Forgets every estimate (e.g. after the temperature has moved far).
  void reset() noexcept {
    std::fill(zeta_.begin(), zeta_.end(), 0.0);
    std::fill(visited_.begin(), visited_.end(), std::uint8_t(0));
  }

  /// The value the EMA gives: log_zhat on a first visit, else
  /// logaddexp(log(1 - beta) + zeta, log(beta) + log_zhat).
  static double ema(double zeta, bool visited, double log_zhat, double beta) noexcept {
    return detail::log_ema(zeta, visited, log_zhat, beta);
  }

  /// EMA update of every id of a batch in one direction with its log Zhat. beta in (0, 1];
  /// ids in [0, samples()), distinct; log_zhat finite. Nothing is written unless all checks pass.
  void update(vector_view<const std::int64_t> ids, int direction, const double* log_zhat,
              double beta) {
    const char* fn = "normalizer_state::update";
    check_beta(fn, beta);
    check_direction(fn, direction);
    check_ids(fn, ids);
    CONTRASTIVE_CHECK(ids.size == 0 || log_zhat != nullptr, fn, ": 'log_zhat' is a null pointer");
    for (index_t i = 0; i < ids.size; ++i)
      CONTRASTIVE_CHECK(std::isfinite(log_zhat[i]), fn, ": 'log_zhat' has a non-finite value (",
                        log_zhat[i], ") at position ", i);
    for (index_t i = 0; i < ids.size; ++i) {
      const std::size_t k = slot(ids.data[i], direction);
      zeta_[k] = ema(zeta_[k], visited_[k] != 0, log_zhat[i], beta);
      visited_[k] = 1;
    }
  }

  /// Bitwise equality of sizes, flags and estimates.
  friend bool operator==(const normalizer_state& x, const normalizer_state& y) noexcept {
    return x.samples_ == y.samples_ && x.directions_ == y.directions_ && x.visited_ == y.visited_ &&
           (x.zeta_.empty() ||
            std::memcmp(x.zeta_.data(), y.zeta_.data(), x.zeta_.size() * sizeof(double)) == 0);
  }
  friend bool operator!=(const normalizer_state& x, const normalizer_state& y) noexcept {
    return !(x == y);
  }

  /// Atomically replaces `path` with the state (temporary file in the same directory, flush,
  /// fsync, rename). Throws contrastive::invalid_argument on any I/O failure, leaving the old
  /// file (if any) in place and no temporary behind.
  void save(const std::string& path) const {
    const char* fn = "normalizer_state::save";
    CONTRASTIVE_CHECK(!path.empty(), fn, ": 'path' is empty");
    detail::state_write_atomically(fn, path, serialize());
  }

  /// Replaces the state with the one in `path`, which must have the same samples() and
  /// directions(). Throws (state unchanged) on a missing, truncated, corrupted or mismatched file.
  void load(const std::string& path) {
    normalizer_state s = read_file("normalizer_state::load", path);
    CONTRASTIVE_CHECK(s.samples_ == samples_ && s.directions_ == directions_,
                      "normalizer_state::load: '", path, "' holds ", s.samples_, " samples x ",
                      s.directions_, " directions, this state has ", samples_, " x ", directions_,
                      " (use normalizer_state::from_file to take the file's sizes)");
    *this = std::move(s);
  }

  /// A state of the file's own sizes.
  static normalizer_state from_file(const std::string& path) {
    return read_file("normalizer_state::from_file", path);
  }

 private:
  friend struct detail::normalizer_state_access;

  std::int64_t samples_ = 0;
  int directions_ = 1;
  std::vector<double> zeta_;  // direction-major: [direction * samples + id]
  std::vector<std::uint8_t> visited_;

  static constexpr std::size_t header_bytes = 32;

  std::size_t slot(std::int64_t id, int direction) const noexcept {
    return static_cast<std::size_t>(direction) * static_cast<std::size_t>(samples_) +
           static_cast<std::size_t>(id);
  }
  void check_direction(const char* fn, int direction) const {
    CONTRASTIVE_CHECK(direction >= 0 && direction < directions_, fn,
                      ": 'direction' must be in [0, ", directions_, "), got ", direction);
  }
  std::size_t index(const char* fn, std::int64_t id, int direction) const {
    check_direction(fn, direction);
    CONTRASTIVE_CHECK(id >= 0 && id < samples_, fn, ": sample id ", id, " is out of range [0, ",
                      samples_, ")");
    return slot(id, direction);
  }
  static void check_beta(const char* fn, double beta) {
    CONTRASTIVE_CHECK(beta > 0 && beta <= 1, fn, ": 'beta' must lie in (0, 1], got ", beta);
  }

 public:
  /// Range and uniqueness checks of a batch of ids (O(n log n)); throws naming the bad id.
  void check_ids(const char* fn, vector_view<const std::int64_t> ids) const {
    CONTRASTIVE_CHECK(ids.size >= 0, fn, ": 'ids' has a negative size (", ids.size, ")");
    CONTRASTIVE_CHECK(ids.size == 0 || ids.data != nullptr, fn, ": 'ids' is a null pointer");
    CONTRASTIVE_CHECK(ids.stride == 1, fn, ": 'ids' must be contiguous (stride 1), got stride ",
                      ids.stride);
    for (index_t i = 0; i < ids.size; ++i)
      CONTRASTIVE_CHECK(ids.data[i] >= 0 && ids.data[i] < samples_, fn, ": sample id ", ids.data[i],
                        " at position ", i, " is out of range [0, ", samples_, ")");
    std::vector<std::int64_t> sorted(ids.data, ids.data + ids.size);
    check_distinct(fn, ids, sorted.data());
  }

  /// Duplicate check with caller scratch of ids.size entries (holds the sorted ids afterwards).
  static void check_distinct(const char* fn, vector_view<const std::int64_t> ids,
                             std::int64_t* scratch) {
    std::copy(ids.data, ids.data + ids.size, scratch);
    std::sort(scratch, scratch + ids.size);
    const std::int64_t* dup = std::adjacent_find(scratch, scratch + ids.size);
    if (CONTRASTIVE_UNLIKELY(dup != scratch + ids.size)) {
      index_t first = -1, second = -1;
      for (index_t i = 0; i < ids.size; ++i) {
        if (ids.data[i] != *dup) continue;
        if (first < 0) {
          first = i;
        } else {
          second = i;
          break;
        }
      }
      CONTRASTIVE_CHECK(false, fn, ": sample id ", *dup, " appears twice in the batch (positions ",
                        first, " and ", second, "); ids must be distinct within a batch");
    }
  }

 private:
  std::vector<unsigned char> serialize() const {
    const std::size_t entries = zeta_.size();
    std::vector<unsigned char> out(header_bytes + entries * (sizeof(double) + 1) + 4, 0);
    unsigned char* p = out.data();
    std::memcpy(p, file_magic, 8);
    const std::uint32_t version = file_version, bom = 0x01020304u;
    const auto dirs = static_cast<std::uint32_t>(directions_), reserved = std::uint32_t(0);
    const auto n = static_cast<std::uint64_t>(samples_);
    std::memcpy(p + 8, &version, 4);
    std::memcpy(p + 12, &bom, 4);
    std::memcpy(p + 16, &dirs, 4);
    std::memcpy(p + 20, &reserved, 4);
    std::memcpy(p + 24, &n, 8);
    unsigned char* z = p + header_bytes;
    for (std::size_t k = 0; k < entries; ++k) {
      const double v = visited_[k] ? zeta_[k] : 0.0;
      std::memcpy(z + k * sizeof(double), &v, sizeof(double));
    }
    if (entries > 0) std::memcpy(z + entries * sizeof(double), visited_.data(), entries);
    const std::uint32_t crc = detail::crc32_update(0, p, out.size() - 4);
    std::memcpy(p + out.size() - 4, &crc, 4);
    return out;
  }

  static normalizer_state read_file(const char* fn, const std::string& path) {
    const std::vector<unsigned char> bytes = detail::state_read_file(fn, path);

    const std::size_t size = bytes.size();
    CONTRASTIVE_CHECK(size >= header_bytes + 4, fn, ": '", path, "' is truncated (", size,
                      " bytes, a state file has at least ", header_bytes + 4, ")");
    const unsigned char* p = bytes.data();
    CONTRASTIVE_CHECK(std::memcmp(p, file_magic, 8) == 0, fn, ": '", path,
                      "' is not a contrastive normalizer_state file (bad magic)");
    std::uint32_t version, bom, dirs, reserved;
    std::uint64_t n;
    std::memcpy(&version, p + 8, 4);
    std::memcpy(&bom, p + 12, 4);
    std::memcpy(&dirs, p + 16, 4);
    std::memcpy(&reserved, p + 20, 4);
    std::memcpy(&n, p + 24, 8);
    CONTRASTIVE_CHECK(bom == 0x01020304u, fn, ": '", path,
                      "' was written on a machine of the other byte order");
    CONTRASTIVE_CHECK(version == file_version, fn, ": '", path, "' has format version ", version,
                      ", this library reads version ", file_version);
    CONTRASTIVE_CHECK((dirs == 1 || dirs == 2) && reserved == 0, fn, ": '", path,
                      "' has a corrupted header (directions ", dirs, ")");
    const std::uint64_t max_n = (std::numeric_limits<std::uint64_t>::max() / 32);
    CONTRASTIVE_CHECK(n <= max_n, fn, ": '", path, "' has a corrupted header (samples ", n, ")");
    const std::uint64_t entries = n * dirs;
    const std::uint64_t expected = header_bytes + entries * (sizeof(double) + 1) + 4;
    CONTRASTIVE_CHECK(size == expected, fn, ": '", path, "' is ",
                      size < expected ? "truncated" : "too long", " (", size, " bytes, expected ",
                      expected, " for ", n, " samples x ", dirs, " directions)");
    std::uint32_t stored;
    std::memcpy(&stored, p + size - 4, 4);
    const std::uint32_t crc = detail::crc32_update(0, p, size - 4);
    CONTRASTIVE_CHECK(crc == stored, fn, ": '", path, "' is corrupted (checksum ", crc,
                      " != stored ", stored, ")");

    normalizer_state s;
    s.samples_ = static_cast<std::int64_t>(n);
    s.directions_ = static_cast<int>(dirs);
    s.zeta_.resize(static_cast<std::size_t>(entries));
    s.visited_.resize(static_cast<std::size_t>(entries));
    const unsigned char* z = p + header_bytes;
    if (entries > 0) {
      std::memcpy(s.zeta_.data(), z, static_cast<std::size_t>(entries) * sizeof(double));
      std::memcpy(s.visited_.data(), z + entries * sizeof(double),
                  static_cast<std::size_t>(entries));
    }
    for (std::size_t k = 0; k < s.zeta_.size(); ++k) {
      CONTRASTIVE_CHECK(s.visited_[k] <= 1, fn, ": '", path, "' is corrupted (visited flag ",
                        int(s.visited_[k]), " at entry ", k, ")");
      CONTRASTIVE_CHECK(!s.visited_[k] || std::isfinite(s.zeta_[k]), fn, ": '", path,
                        "' is corrupted (non-finite estimate at entry ", k, ")");
      if (!s.visited_[k]) s.zeta_[k] = 0.0;
    }
    return s;
  }
};

namespace detail {

/// Unchecked access for the losses, which validate a whole batch once.
struct normalizer_state_access {
  /// The arrays as they are ([direction * samples + id]), for the device state's copies.
  static std::vector<double>& zetas(normalizer_state& s) noexcept { return s.zeta_; }
  static const std::vector<double>& zetas(const normalizer_state& s) noexcept { return s.zeta_; }
  static std::vector<std::uint8_t>& flags(normalizer_state& s) noexcept { return s.visited_; }
  static const std::vector<std::uint8_t>& flags(const normalizer_state& s) noexcept {
    return s.visited_;
  }
  static double zeta(const normalizer_state& s, std::int64_t id, int direction) noexcept {
    return s.zeta_[s.slot(id, direction)];
  }
  static bool visited(const normalizer_state& s, std::int64_t id, int direction) noexcept {
    return s.visited_[s.slot(id, direction)] != 0;
  }
  static void set(normalizer_state& s, std::int64_t id, int direction, double zeta) noexcept {
    const std::size_t k = s.slot(id, direction);
    s.zeta_[k] = zeta;
    s.visited_[k] = 1;
  }
  static void restore(normalizer_state& s, std::int64_t id, int direction, double zeta,
                      bool visited) noexcept {
    const std::size_t k = s.slot(id, direction);
    s.zeta_[k] = zeta;
    s.visited_[k] = visited ? 1 : 0;
  }
};

/// The entries of one batch's ids (every direction), to put back when a call that has already
/// updated them throws afterwards (the backward of gamma_nce_forward_backward), so that a call
/// that throws leaves the state as it was. O(batch) memory; out-of-range ids are skipped (the
/// forward rejects them before it updates anything).
class normalizer_state_snapshot {
 public:
  normalizer_state_snapshot(const normalizer_state& s, vector_view<const std::int64_t> ids) {
    for (int dir = 0; dir < s.directions(); ++dir)
      for (index_t i = 0; i < ids.size; ++i) {
        const std::int64_t id = ids.data[i * ids.stride];
        if (id < 0 || id >= s.samples()) continue;
        entries_.push_back({id, dir, normalizer_state_access::zeta(s, id, dir),
                            normalizer_state_access::visited(s, id, dir)});
      }
  }
  void restore(normalizer_state& s) const noexcept {
    for (const entry& e : entries_)
      normalizer_state_access::restore(s, e.id, e.direction, e.zeta, e.visited);
  }

 private:
  struct entry {
    std::int64_t id;
    int direction;
    double zeta;
    bool visited;
  };
  std::vector<entry> entries_;
};

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_STATE_NORMALIZER_STATE_HPP
