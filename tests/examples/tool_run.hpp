#pragma once

// Runs one of the project's command-line tools to its end and collects
// its exit code and output (JSON lines parsed).

#include <boost/test/unit_test.hpp>

#include <stdio.h>
#include <sys/wait.h>

#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace testnode {

struct tool_result {
  int exit_code = -1;
  std::vector<nlohmann::json> lines;
  std::string text;
};

// Runs `binary` with `args` (each quoted in single quotes: no argument may
// hold one), stderr with stdout.
inline tool_result run(const std::string& binary,
                       const std::vector<std::string>& args) {
  std::string cmd = binary;
  for (auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  tool_result result;
  auto* pipe = ::popen(cmd.c_str(), "r");
  BOOST_REQUIRE(pipe != nullptr);
  char buf[4096];
  while (auto n = ::fread(buf, 1, sizeof buf, pipe)) result.text.append(buf, n);
  auto status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::istringstream in{result.text};
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) result.lines.push_back(j);
  }
  return result;
}

inline tool_result cluster_tool(const std::vector<std::string>& args) {
  return run(MNEMO_CLUSTER_TOOL, args);
}

}  // namespace testnode
