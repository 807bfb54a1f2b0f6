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
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "free_ports.hpp"
#include "mnemo/runtime/coordination/etcd_client.hpp"

namespace mnemo::test {

inline const char* etcd_binary = "/usr/bin/etcd";

/// How one etcd member is started.
struct etcd_member_spec {
  std::string name = "t";
  std::string host = "127.0.0.1";
  uint16_t client_port = 0;
  uint16_t peer_port = 0;
  /// "name=http://host:peer,..." of every member (empty: this one alone).
  std::string initial_cluster;
  /// A command that execs its arguments in place (`ip netns exec NAME`).
  std::vector<std::string> prefix;
};

class etcd_process {
 public:
  /// Starts etcd with its data and log in `dir` on free loopback ports
  /// and waits (20 s at most) until its client port answers. With a
  /// `prefix` (a command that execs its arguments in place, e.g. `ip netns
  /// exec NAME`), etcd runs through it and listens on `host`, ports 2379
  /// and 2380; this process may not reach it, so nothing waits for it.
  explicit etcd_process(const std::filesystem::path& dir,
                        std::vector<std::string> prefix = {},
                        std::string host = "127.0.0.1") {
    etcd_member_spec spec;
    spec.host = std::move(host);
    bool wait = prefix.empty();
    auto base = wait ? free_port_block(2) : uint16_t{2379};
    spec.client_port = base;
    spec.peer_port = static_cast<uint16_t>(base + 1);
    spec.prefix = std::move(prefix);
    launch(dir, spec);
    if (wait) wait_until_answering();
  }

  /// Starts one member of a cluster as `spec` says, without waiting (its
  /// peers may not run yet).
  etcd_process(const std::filesystem::path& dir, const etcd_member_spec& spec) {
    launch(dir, spec);
  }

  ~etcd_process() { stop(); }
  etcd_process(const etcd_process&) = delete;
  etcd_process& operator=(const etcd_process&) = delete;

  /// Waits (20 s at most) until the client port answers.
  void wait_until_answering() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
    while (std::chrono::steady_clock::now() < deadline) {
      if (runtime::coordination::etcd_client::connect(settings())) return;
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
    stop();
    throw std::runtime_error("etcd did not answer on " + endpoint() +
                             " within 20 s (log: " + log_path_ + ")");
  }

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
  void launch(const std::filesystem::path& dir, const etcd_member_spec& spec) {
    if (::access(etcd_binary, X_OK) != 0)
      throw std::runtime_error(std::string{"etcd is not installed ("} +
                               etcd_binary + "): apt-get install etcd-server");
    host_ = spec.host;
    client_port_ = spec.client_port;
    auto client = "http://" + host_ + ":" + std::to_string(spec.client_port);
    auto peer = "http://" + host_ + ":" + std::to_string(spec.peer_port);
    auto cluster = spec.initial_cluster.empty() ? spec.name + "=" + peer
                                                : spec.initial_cluster;
    std::vector<std::string> args = spec.prefix;
    for (auto& a : std::vector<std::string>{
             etcd_binary, "--name=" + spec.name,
             "--data-dir=" + (dir / ("etcd-" + spec.name)).string(),
             "--listen-client-urls=" + client,
             "--advertise-client-urls=" + client,
             "--listen-peer-urls=" + peer,
             "--initial-advertise-peer-urls=" + peer,
             "--initial-cluster=" + cluster, "--log-level=error"})
      args.push_back(a);
    log_path_ = (dir / ("etcd-" + spec.name + ".log")).string();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      // etcd dies with its parent, and writes its (noisy) log to a file.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() == 1) ::_exit(127);
      auto log = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
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
  }

  std::string host_;
  std::string log_path_;
  uint16_t client_port_ = 0;
  pid_t pid_ = -1;
};

/// Three etcd members on free loopback ports forming one etcd cluster.
class etcd_cluster {
 public:
  explicit etcd_cluster(const std::filesystem::path& dir) {
    auto base = free_port_block(6);
    std::vector<etcd_member_spec> specs(3);
    std::string initial;
    for (size_t i = 0; i < 3; ++i) {
      specs[i].name = "e" + std::to_string(i);
      specs[i].client_port = static_cast<uint16_t>(base + 2 * i);
      specs[i].peer_port = static_cast<uint16_t>(base + 2 * i + 1);
      initial += (i ? "," : "") + specs[i].name + "=http://127.0.0.1:" +
                 std::to_string(specs[i].peer_port);
    }
    for (auto& spec : specs) {
      spec.initial_cluster = initial;
      members_.push_back(std::make_unique<etcd_process>(dir, spec));
    }
    // Ready once the cluster has a leader: a write succeeds.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{30};
    while (std::chrono::steady_clock::now() < deadline) {
      auto c = runtime::coordination::etcd_client::connect(settings());
      if (c && (*c)->put("/ready", "1")) return;
      std::this_thread::sleep_for(std::chrono::milliseconds{100});
    }
    throw std::runtime_error("the etcd cluster elected no leader in 30 s");
  }

  etcd_process& member(size_t i) { return *members_[i]; }

  /// "host:port,host:port,host:port".
  std::string endpoints() const {
    std::string result;
    for (auto& m : members_) result += (result.empty() ? "" : ",") + m->endpoint();
    return result;
  }

  runtime::coordination::etcd_settings settings() const {
    runtime::coordination::etcd_settings s;
    for (auto& m : members_) s.endpoints.push_back(m->endpoint());
    s.request_timeout = std::chrono::seconds{2};
    return s;
  }

 private:
  std::vector<std::unique_ptr<etcd_process>> members_;
};

}  // namespace mnemo::test
