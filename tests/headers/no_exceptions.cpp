// headers/no_exceptions: built with -fno-exceptions. A predefined violation handler prints the
// message and exits 0; ctest matches the message (WILL_FAIL would not turn abort() into a pass).
#include <cstdio>
#include <cstdlib>

[[noreturn]] void on_violation(const char* msg, const char* file, int line);
#define CONTRASTIVE_PRECONDITION_VIOLATION_HANDLER(msg, file, line) on_violation(msg, file, line)

#include <contrastive/contrastive.hpp>

#include <Eigen/Core>

#if CONTRASTIVE_USE_EXCEPTIONS
#  error "CONTRASTIVE_USE_EXCEPTIONS should default to 0 under -fno-exceptions"
#endif

[[noreturn]] void on_violation(const char* msg, const char* file, int line) {
  std::printf("violation handler: %s (%s:%d)\n", msg, file, line);
  std::fflush(stdout);
  std::exit(0);
}

int main() {
  const Eigen::MatrixXf a = Eigen::MatrixXf::Random(4, 3);
  contrastive::info_nce_options o;
  o.temperature = -1;  // rejected: the handler runs and exits 0
  (void)contrastive::info_nce_forward(a, a, o);
  std::printf("the bad temperature was accepted\n");
  return 1;
}
