// libFuzzer harness: normalizer_state::load and ::from_file on arbitrary bytes, and on files that
// are valid but for one decoded defect (version, byte order, directions, reserved word, sample
// count, length, flags, non-finite estimates, checksum recomputed or not). Contract: load either
// throws contrastive::invalid_argument and leaves the state exactly as it was, or the loaded state
// has finite estimates and saves back to the file's bytes (unvisited estimates as 0).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <contrastive/contrastive.hpp>

#include "fuzz_support.hpp"

namespace c = contrastive;

namespace {

const std::string& scratch_path(const char* suffix) {
  // save() fsyncs: a RAM file system keeps that cheap.
  static std::string base = std::string(::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") +
                            "/contrastive_fuzz_state." + std::to_string(::getpid());
  static std::string paths[2] = {base + ".in", base + ".out"};
  static const struct cleanup {
    ~cleanup() {
      for (const auto& p : paths) std::remove(p.c_str());
    }
  } at_exit;
  return paths[suffix[0] == 'o' ? 1 : 0];
}

void put32(std::vector<unsigned char>& f, std::size_t at, std::uint32_t v) {
  std::memcpy(f.data() + at, &v, 4);
}

/// A well-formed file of `samples` x `dirs` from the fuzzer's values, then one decoded defect.
std::vector<unsigned char> structured_file(fuzz::input& in) {
  const std::uint64_t samples = static_cast<std::uint64_t>(in.range(0, 6));
  const std::uint32_t dirs = static_cast<std::uint32_t>(in.range(1, 2));
  const std::size_t entries = static_cast<std::size_t>(samples * dirs);
  std::vector<unsigned char> f(32 + entries * 9 + 4, 0);
  std::memcpy(f.data(), "CTRSNORM", 8);
  put32(f, 8, 1);
  put32(f, 12, 0x01020304u);
  put32(f, 16, dirs);
  std::memcpy(f.data() + 24, &samples, 8);
  for (std::size_t k = 0; k < entries; ++k) {
    const double z = in.value();
    std::memcpy(f.data() + 32 + 8 * k, &z, 8);
    f[32 + 8 * entries + k] = static_cast<unsigned char>(in.range(0, 1));
  }
  const int defect = in.range(0, 9);
  if (defect == 1) put32(f, 8, in.byte());     // version
  if (defect == 2) put32(f, 12, 0x04030201u);  // other byte order
  if (defect == 3) put32(f, 16, in.byte());    // directions
  if (defect == 4) put32(f, 20, 1);            // reserved
  if (defect == 5) {                           // sample count
    const std::uint64_t n = in.u64();
    std::memcpy(f.data() + 24, &n, 8);
  }
  if (defect == 6) f.resize(f.size() - static_cast<std::size_t>(in.range(1, 8)));  // truncated
  if (defect == 7) f.insert(f.end() - 4, static_cast<std::size_t>(in.range(1, 8)), 0);
  if (defect == 8 && entries > 0) f[32 + 8 * entries + in.byte() % entries] = in.range(2, 255);
  if (defect == 9 && f.size() > 4) f[in.byte() % (f.size() - 4)] ^= 1;  // a flipped bit
  if (f.size() >= 4 && in.range(0, 7) != 0) {  // recompute the checksum (mostly)
    const std::uint32_t crc = c::detail::crc32_update(0, f.data(), f.size() - 4);
    put32(f, f.size() - 4, crc);
  }
  return f;
}

std::vector<unsigned char> read_all(const std::string& path) {
  std::ifstream s(path, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(s), {});
}

void run(fuzz::input& in, const std::uint8_t* data, std::size_t size) {
  const bool structured = in.flag();
  const std::vector<unsigned char> file =
      structured ? structured_file(in) : std::vector<unsigned char>(data, data + size);
  {
    std::ofstream s(scratch_path("in"), std::ios::binary | std::ios::trunc);
    s.write(reinterpret_cast<const char*>(file.data()), static_cast<std::streamsize>(file.size()));
  }
  // A state with entries of its own, to detect a partial overwrite.
  c::normalizer_state state(in.range(0, 6), in.range(1, 2));
  for (std::int64_t id = 0; id < state.samples(); ++id) state.set(id, 0, 0.25 * double(id) - 1);
  state.save(scratch_path("out"));
  const std::vector<unsigned char> before = read_all(scratch_path("out"));
  try {
    if (in.flag()) {
      state.load(scratch_path("in"));
    } else {
      state = c::normalizer_state::from_file(scratch_path("in"));
    }
  } catch (const c::invalid_argument&) {
    state.save(scratch_path("out"));
    if (read_all(scratch_path("out")) != before)
      fuzz::finding("normalizer_state changed although load threw");
    return;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    fuzz::finding("an exception other than contrastive::invalid_argument");
  }
  for (int dir = 0; dir < state.directions(); ++dir)
    for (std::int64_t id = 0; id < state.samples(); ++id)
      if (state.visited(id, dir) && !std::isfinite(state.log_normalizer(id, dir)))
        fuzz::finding("a loaded estimate is not finite");
  // Saving writes unvisited estimates as 0; otherwise the bytes must be the file's.
  std::vector<unsigned char> expected = file;
  const std::size_t entries = (expected.size() - 36) / 9;
  for (std::size_t k = 0; k < entries; ++k)
    if (expected[32 + 8 * entries + k] == 0) std::memset(expected.data() + 32 + 8 * k, 0, 8);
  put32(expected, expected.size() - 4,
        c::detail::crc32_update(0, expected.data(), expected.size() - 4));
  state.save(scratch_path("out"));
  if (read_all(scratch_path("out")) != expected)
    fuzz::finding("a loaded state does not save back to the bytes it was loaded from");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::input in(data, size);
  run(in, data, size);
  return 0;
}
