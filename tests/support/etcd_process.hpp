#pragma once

// One etcd 3.4 member (Debian's etcd-server) on free loopback ports, for
// tests and benchmarks: started in a directory of the caller's (its data
// and its log file), stopped by pid, and dying with the process that
// started it, even one that crashed. No test framework here: a failure to
// start throws std::runtime_error.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "free_ports.hpp"
#include "mnemo/runtime/coordination/etcd_client.hpp"

namespace mnemo::test {

inline const char* etcd_binary = "/usr/bin/etcd";

class etcd_process {
 public:
  /// Starts etcd with its data and log in `dir` on free loopback ports
  /// and waits (20 s at most) until its client port answers. With a
  /// `prefix` (a command that execs its arguments in place, e.g. `ip netns
  /// exec NAME`), etcd runs through it and listens on `host`, ports 2379
  /// and 2380; this process may not reach it, so nothing waits for it.
  explicit etcd_process(const std::filesystem::path& dir,
                        std::vector<std::string> prefix = {},
                        std::string host = "127.0.0.1")
      : host_(std::move(host)) {
    if (::access(etcd_binary, X_OK) != 0)
      throw std::runtime_error(std::string{"etcd is not installed ("} +
                               etcd_binary + "): apt-get install etcd-server");
    auto base = prefix.empty() ? free_port_block(2) : uint16_t{2379};
    client_port_ = base;
    auto client = "http://" + host_ + ":" + std::to_string(base);
    auto peer = "http://" + host_ + ":" + std::to_string(base + 1);
    std::vector<std::string> args = prefix;
    for (auto& a : std::vector<std::string>{etcd_binary,
                                  "--name=t",
                                  "--data-dir=" + (dir / "etcd").string(),
                                  "--listen-client-urls=" + client,
                                  "--advertise-client-urls=" + client,
                                  "--listen-peer-urls=" + peer,
                                  "--initial-advertise-peer-urls=" + peer,
                                  "--initial-cluster=t=" + peer,
                                  "--log-level=error"})
      args.push_back(a);
    auto log_path = (dir / "etcd.log").string();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      // etcd dies with its parent, and writes its (noisy) log to a file.
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
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    if (!prefix.empty()) return;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
    while (std::chrono::steady_clock::now() < deadline) {
      if (runtime::coordination::etcd_client::connect(settings())) return;
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
    stop();
    throw std::runtime_error("etcd did not answer on " + client +
                             " within 20 s (log: " + log_path + ")");
  }

  ~etcd_process() { stop(); }
  etcd_process(const etcd_process&) = delete;
  etcd_process& operator=(const etcd_process&) = delete;

  /// SIGKILL and reap.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  uint16_t client_port() const noexcept { return client_port_; }
  /// -1 once stopped.
  pid_t pid() const noexcept { return pid_; }
  /// "<host>:<client port>".
  std::string endpoint() const {
    return host_ + ":" + std::to_string(client_port_);
  }

  runtime::coordination::etcd_settings settings() const {
    runtime::coordination::etcd_settings s;
    s.endpoints = {endpoint()};
    s.request_timeout = std::chrono::seconds{2};
    return s;
  }

 private:
  std::string host_;
  uint16_t client_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace mnemo::test
