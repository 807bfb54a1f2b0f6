#pragma once

// One etcd 3.4 member on free loopback ports for a Boost.Test test (an
// etcd_process in a temporary directory of its own; a failure to start
// fails the test).

#include <memory>
#include <stdexcept>
#include <string>

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

  /// "127.0.0.1:<client port>".
  std::string endpoint() const { return proc->endpoint(); }

  std::unique_ptr<etcd_client> client() const {
    auto c = etcd_client::connect(settings());
    BOOST_REQUIRE_MESSAGE(c, (c ? "" : runtime::describe(c.error())));
    return std::move(*c);
  }
};

}  // namespace mnemo::test
