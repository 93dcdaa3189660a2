// headers/no_exceptions: built with -fno-exceptions. A predefined violation handler prints the
// message and exits 0; ctest matches the message (WILL_FAIL would not turn abort() into a pass).
#include <cstdio>
#include <cstdlib>

[[noreturn]] void on_violation(const char* msg, const char* file, int line);
#define CONTRASTIVE_PRECONDITION_VIOLATION_HANDLER(msg, file, line) on_violation(msg, file, line)

#include <contrastive/contrastive.hpp>

#if CONTRASTIVE_USE_EXCEPTIONS
#  error "CONTRASTIVE_USE_EXCEPTIONS should default to 0 under -fno-exceptions"
#endif

[[noreturn]] void on_violation(const char* msg, const char* file, int line) {
  std::printf("violation handler: %s (%s:%d)\n", msg, file, line);
  std::fflush(stdout);
  std::exit(0);
}

int main() {
  CONTRASTIVE_CHECK(false, "demo: 'x' is bad");
  std::printf("the check did not fire\n");
  return 1;
}
