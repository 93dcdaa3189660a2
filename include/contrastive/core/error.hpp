#ifndef CONTRASTIVE_CORE_ERROR_HPP
#define CONTRASTIVE_CORE_ERROR_HPP

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>

#include "contrastive/core/config.hpp"

CONTRASTIVE_NAMESPACE_BEGIN

/// Thrown for every bad argument at an entry point: shapes, scalars, non-finite inputs, aliasing.
class invalid_argument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

// The default handler: throw (or print and abort in builds without exceptions).
[[noreturn]] inline void default_violation_handler(const char* msg, const char* file, int line) {
#if CONTRASTIVE_USE_EXCEPTIONS
  (void)file;
  (void)line;
  throw ::contrastive::invalid_argument(msg);
#else
  std::fprintf(stderr, "contrastive: precondition violated at %s:%d: %s\n", file, line, msg);
  std::abort();
#endif
}

}  // namespace detail

CONTRASTIVE_NAMESPACE_END

// Users may predefine this (e.g. to log and exit under -fno-exceptions). If it returns, the
// library aborts: it never continues with arguments it has rejected.
#ifndef CONTRASTIVE_PRECONDITION_VIOLATION_HANDLER
#  define CONTRASTIVE_PRECONDITION_VIOLATION_HANDLER(msg, file, line) \
    ::contrastive::detail::default_violation_handler(msg, file, line)
#endif

CONTRASTIVE_NAMESPACE_BEGIN
namespace detail {

// Message building lives in a cold, out-of-line function so the checks cost one branch.
template <class... Args>
CONTRASTIVE_COLD void report_violation(const char* file, int line, const Args&... args) {
  std::ostringstream os;
  os.precision(9);
  (os << ... << args);
  const std::string msg = os.str();
  CONTRASTIVE_PRECONDITION_VIOLATION_HANDLER(msg.c_str(), file, line);
  std::abort();
}

}  // namespace detail
CONTRASTIVE_NAMESPACE_END

/// Always-on argument check: CONTRASTIVE_CHECK(cond, "fn: 'x' has ", n, " rows").
#define CONTRASTIVE_CHECK(cond, ...)                                            \
  do {                                                                          \
    if (CONTRASTIVE_UNLIKELY(!(cond)))                                          \
      ::contrastive::detail::report_violation(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

#endif  // CONTRASTIVE_CORE_ERROR_HPP
