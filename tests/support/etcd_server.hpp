#pragma once

// One etcd 3.4 member on free loopback ports for a Boost.Test test (an
// etcd_process in a temporary directory of its own; a failure to start
// fails the test).

#include <signal.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "etcd_process.hpp"
#include "mnemo/actors/testkit.hpp"
#include "mnemo/runtime/coordination/etcd_client.hpp"
#include "mnemo/runtime/error.hpp"

namespace mnemo::test {

using runtime::coordination::etcd_client;
using runtime::coordination::etcd_settings;
using namespace std::chrono_literals;

struct etcd_server {
  actors::temp_directory dir;
  std::unique_ptr<etcd_process> proc;
  uint16_t client_port = 0;
  pid_t pid = -1;

  etcd_server() {
    try {
      proc = std::make_unique<etcd_process>(dir.path());
    } catch (const std::exception& e) {
      BOOST_FAIL(e.what());
    }
    client_port = proc->client_port();
    pid = proc->pid();
  }

  void stop() {
    proc->stop();
    pid = -1;
  }

  etcd_settings settings() const { return proc->settings(); }

  /// Stops etcd with SIGSTOP and returns once the kernel reports it stopped
  /// (state 'T' in /proc/<pid>/stat): kill() only sends the signal, and on a
  /// loaded machine etcd may still answer a request sent right after.
  bool pause() const {
    if (::kill(pid, SIGSTOP) != 0) return false;
    auto stat = "/proc/" + std::to_string(pid) + "/stat";
    for (auto deadline = std::chrono::steady_clock::now() +
                         std::chrono::seconds{2};
         std::chrono::steady_clock::now() < deadline;
         std::this_thread::sleep_for(std::chrono::milliseconds{1})) {
      std::ifstream in{stat};
      std::string line;
      std::getline(in, line);
      auto close = line.rfind(')');
      if (close != std::string::npos && close + 2 < line.size() &&
          line[close + 2] == 'T')
        return true;
    }
    return false;
  }

  /// "127.0.0.1:<client port>".
  std::string endpoint() const { return proc->endpoint(); }

  std::unique_ptr<etcd_client> client() const {
    auto c = etcd_client::connect(settings());
    BOOST_REQUIRE_MESSAGE(c, (c ? "" : runtime::describe(c.error())));
    return std::move(*c);
  }
};

}  // namespace mnemo::test
