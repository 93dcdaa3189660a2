#ifndef CONTRASTIVE_CORE_WORKSPACE_HPP
#define CONTRASTIVE_CORE_WORKSPACE_HPP

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "contrastive/core/config.hpp"
#include "contrastive/core/error.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Caller-provided scratch memory. An empty workspace means "allocate once inside the call".
struct workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

namespace detail {

constexpr std::size_t workspace_alignment = 64;

constexpr std::size_t align_up(std::size_t n) noexcept {
  return (n + workspace_alignment - 1) / workspace_alignment * workspace_alignment;
}

/// No query reports more than 2^60 bytes (an exbibyte; 2^28 on a 32-bit size_t): a shape that
/// needs more is rejected, and the sums of a few dozen arrays below this bound cannot wrap.
constexpr std::size_t max_workspace_bytes = std::size_t(1) << (sizeof(std::size_t) >= 8 ? 60 : 28);

[[noreturn]] inline void workspace_too_large(std::size_t a, std::size_t b) {
  CONTRASTIVE_CHECK(false, "contrastive: the problem is too large: its scratch memory would pass ",
                    "the 2^60 bytes a workspace may have (a product of ", a, " x ", b, ")");
  std::abort();  // not reached: the check throws, or the violation handler does not return
}

/// a * b for element counts and byte sizes, rejecting products past max_workspace_bytes.
inline std::size_t checked_product(std::size_t a, std::size_t b) {
  if (b != 0 && a > max_workspace_bytes / b) workspace_too_large(a, b);
  return a * b;
}

/// Size arithmetic shared by the workspace queries and the carving below: one aligned array.
/// Throws invalid_argument when the array would pass max_workspace_bytes (never wraps).
template <class T>
std::size_t array_bytes(std::size_t count) {
  return align_up(checked_product(count, sizeof(T)));
}

/// Carves aligned arrays out of a workspace, or out of one owned allocation when the caller
/// passed none. Arrays are uninitialised.
class arena {
 public:
  arena(workspace ws, std::size_t required, const char* fn) {
    if (ws.data == nullptr && ws.bytes == 0) {
      owned_.reset(new std::byte[required + workspace_alignment]);
      base_ = owned_.get();
      size_ = required + workspace_alignment;
    } else {
      CONTRASTIVE_CHECK(ws.data != nullptr, fn, ": workspace has ", ws.bytes,
                        " bytes but a null data pointer");
      CONTRASTIVE_CHECK(ws.bytes >= required + workspace_alignment, fn, ": workspace has ",
                        ws.bytes, " bytes, the call needs ", required + workspace_alignment,
                        " (use the matching *_workspace_bytes query)");
      base_ = static_cast<std::byte*>(ws.data);
      size_ = ws.bytes;
    }
    // Align the start; the query reserves one alignment unit for this.
    const auto addr = reinterpret_cast<std::uintptr_t>(base_);
    offset_ = (workspace_alignment - addr % workspace_alignment) % workspace_alignment;
  }

  template <class T>
  T* take(std::size_t count) {
    const std::size_t bytes = array_bytes<T>(count);
    // Always on (one comparison per array): a size query that disagrees with the carving would
    // otherwise write past the caller's buffer.
    CONTRASTIVE_CHECK(offset_ + bytes <= size_,
                      "contrastive: internal error: workspace layout "
                      "needs more than the ",
                      size_, " bytes its size query reported");
    T* p = reinterpret_cast<T*>(base_ + offset_);
    offset_ += bytes;
    return p;
  }

 private:
  std::unique_ptr<std::byte[]> owned_;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t offset_ = 0;
};

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

#endif  // CONTRASTIVE_CORE_WORKSPACE_HPP
