// Test driver: runs Boost.Test, or, when the first argument is
// `--child=<mode>`, one of the child programs that the crash and disk-full
// tests start as separate processes (they re-execute this binary).
#define BOOST_TEST_MODULE mnemo_persistence
#define BOOST_TEST_NO_MAIN
#include <boost/test/unit_test.hpp>

#include <cstring>

#include "child_modes.hpp"

int main(int argc, char** argv) {
  if (argc > 1 && std::strncmp(argv[1], "--child=", 8) == 0)
    return mnemo::test::run_child(argv[1] + 8, argc - 2, argv + 2);
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
