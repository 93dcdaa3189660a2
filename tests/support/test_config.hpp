#ifndef CONTRASTIVE_TESTS_SUPPORT_TEST_CONFIG_HPP
#define CONTRASTIVE_TESTS_SUPPORT_TEST_CONFIG_HPP

// Included first by every test file: internal assertions throw instead of aborting, so a
// violated invariant fails one test case rather than the whole run.
#include <stdexcept>
#include <string>

namespace contrastive_test {
struct assertion_failure : std::logic_error {
  using std::logic_error::logic_error;
};
}  // namespace contrastive_test

#define CONTRASTIVE_ASSERT(cond)                                                     \
  do {                                                                               \
    if (!(cond))                                                                     \
      throw ::contrastive_test::assertion_failure(                                   \
          std::string("CONTRASTIVE_ASSERT(" #cond ") failed at ") + __FILE__ + ":" + \
          std::to_string(__LINE__));                                                 \
  } while (0)
#define eigen_assert(x) CONTRASTIVE_ASSERT(x)

#include <catch2/catch.hpp>

#endif  // CONTRASTIVE_TESTS_SUPPORT_TEST_CONFIG_HPP
