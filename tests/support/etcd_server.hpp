#pragma once

// One etcd 3.4 member (Debian's etcd-server) on free loopback ports for a
// test, stopped by pid; it dies with the test process, even one that
// crashed, and logs to a file in its directory.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "free_ports.hpp"
#include "mnemo/actors/testkit.hpp"
#include "mnemo/runtime/coordination/etcd_client.hpp"
#include "mnemo/runtime/error.hpp"

namespace mnemo::test {

using runtime::coordination::etcd_client;
using runtime::coordination::etcd_settings;
using namespace std::chrono_literals;

inline const char* etcd_binary = "/usr/bin/etcd";

// One etcd member on free loopback ports, stopped by pid.
struct etcd_server {
  actors::temp_directory dir;
  uint16_t client_port = 0;
  pid_t pid = -1;

  etcd_server() {
    BOOST_REQUIRE_MESSAGE(::access(etcd_binary, X_OK) == 0,
                          "etcd is not installed (" << etcd_binary
                                                    << "): apt-get install "
                                                       "etcd-server");
    auto base = mnemo::test::free_port_block(2);
    client_port = base;
    auto client = "http://127.0.0.1:" + std::to_string(base);
    auto peer = "http://127.0.0.1:" + std::to_string(base + 1);
    std::vector<std::string> args{etcd_binary,
                                  "--name=t",
                                  "--data-dir=" + (dir.path() / "etcd").string(),
                                  "--listen-client-urls=" + client,
                                  "--advertise-client-urls=" + client,
                                  "--listen-peer-urls=" + peer,
                                  "--initial-advertise-peer-urls=" + peer,
                                  "--initial-cluster=t=" + peer,
                                  "--log-level=error"};
    auto log_path = (dir.path() / "etcd.log").string();
    pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      // etcd dies with the test process, even one that crashed, and writes
      // its (noisy) log to a file beside its data.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() == 1) ::_exit(127);
      auto log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (log >= 0) {
        ::dup2(log, 1);
        ::dup2(log, 2);
        ::close(log);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(etcd_binary, argv.data());
      ::_exit(127);
    }
    // Ready once the client answers.
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto c = etcd_client::connect(settings())) return;
      std::this_thread::sleep_for(50ms);
    }
    BOOST_FAIL("etcd did not answer on " << client << " within 20 s");
  }

  ~etcd_server() { stop(); }

  void stop() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
  }

  etcd_settings settings() const {
    etcd_settings s;
    s.endpoints = {"127.0.0.1:" + std::to_string(client_port)};
    s.request_timeout = 2s;
    return s;
  }

  std::unique_ptr<etcd_client> client() const {
    auto c = etcd_client::connect(settings());
    BOOST_REQUIRE_MESSAGE(c, (c ? "" : runtime::describe(c.error())));
    return std::move(*c);
  }
};


}  // namespace mnemo::test
