#pragma once

// Child programs of the persistence tests, run in their own process by
// re-executing the test binary with `--child=<mode> args...`.

#include <string>
#include <vector>

namespace mnemo::test {

/// Runs child `mode` with its arguments; returns the process exit code.
int run_child(const std::string& mode, int argc, char** argv);

/// Result of a finished child process.
struct child_result {
  /// Everything the child wrote to stdout.
  std::string out;
  /// Exit code, or -signal if it was killed.
  int status = 0;
};

/// Starts this test binary as `--child=<mode> args...` with stdout on a
/// pipe; returns its pid and the read end of the pipe.
struct child_process {
  int pid = -1;
  int out_fd = -1;
};
child_process spawn_child(const std::string& mode,
                          const std::vector<std::string>& args);

/// Reads the child's remaining output and waits for it to end.
child_result finish_child(child_process child);

}  // namespace mnemo::test
