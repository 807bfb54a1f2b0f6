#pragma once

// Test support for the example nodes: start a node binary as a child
// process on a loopback port, stop it by pid (SIGTERM or SIGKILL), and talk
// HTTP/1.1 to it with a small blocking keep-alive client (Boost.Beast).

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace testnode {

/// The admin token every node started by `process` gets (through
/// `admin_token_file()`, unless its arguments set --admin-token-file or
/// --admin-listen), and that `client` sends with requests for /admin/...
const std::string& admin_token();

/// A file holding `admin_token()`, written once per test process.
const std::string& admin_token_file();

/// An argument of `process` that is not passed on: start the node without
/// the harness's admin token (so with the admin endpoints off, unless
/// other arguments turn them on).
constexpr const char* no_admin_token = "--test-without-admin-token";

/// A node binary running as a child process.
class process {
 public:
  /// Starts `binary` with `args` and waits for its `{"event":"listening"}`
  /// line on stdout (at most `timeout`). Throws std::runtime_error when it
  /// does not come. A non-empty `prefix` is a command that runs the binary
  /// (e.g. `ip netns exec NAME`): it is looked up in PATH and must exec the
  /// binary in place, so that pid() stays the node's pid.
  process(const std::string& binary, std::vector<std::string> args,
          std::chrono::milliseconds timeout = std::chrono::seconds{20},
          std::vector<std::string> prefix = {});

  /// Kills the process (SIGKILL) if it still runs.
  ~process();

  process(const process&) = delete;
  process& operator=(const process&) = delete;

  uint16_t port() const noexcept { return port_; }
  /// The port of its --admin-listen listener, 0 without one.
  uint16_t admin_port() const noexcept { return admin_port_; }
  pid_t pid() const noexcept { return pid_; }

  /// Sends `sig`.
  void signal(int sig);

  /// Waits for the exit (at most `timeout`); returns the exit status as
  /// `waitpid` reports it, or nothing on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);

  /// SIGKILL and reap.
  void kill();

  /// Lines the process printed on stdout except the listening line, read
  /// so far and not returned before (call after it exited to get them
  /// all). A thread reads stdout all the time, so that a chatty node never
  /// blocks on a full pipe; it keeps the last 100,000 lines.
  std::vector<std::string> drain_stdout();

 private:
  void read_loop();

  pid_t pid_ = -1;
  int out_fd_ = -1;
  uint16_t port_ = 0;
  uint16_t admin_port_ = 0;
  std::string pending_;
  std::vector<std::string> early_;  // lines before the listening line
  bool reaped_ = false;
  // After the listening line: the reader thread and what it read.
  std::mutex out_mtx_;
  std::deque<std::string> lines_;
  std::atomic<bool> stop_reading_{false};
  std::atomic<bool> reader_done_{false};
  std::thread reader_;
};

/// A complete HTTP response.
struct reply {
  unsigned status = 0;
  std::string body;
  bool keep_alive = true;

  nlohmann::json json() const {
    return nlohmann::json::parse(body, nullptr, false);
  }
};

// The JSON body of a reply, or null when there was no reply.
inline nlohmann::json body_of(const std::optional<reply>& r) {
  return r ? r->json() : nlohmann::json{};
}

// A reply's HTTP status, or 0 when there was no reply.
inline unsigned status_of(const std::optional<reply>& r) {
  return r ? r->status : 0;
}

/// A blocking HTTP/1.1 client on one keep-alive connection to 127.0.0.1.
/// Not thread-safe: one per thread.
class client {
 public:
  /// Talks to 127.0.0.1:`port`; with a `netns` name, to 127.0.0.1 inside
  /// that network namespace (/run/netns/NAME, as `ip netns add` makes it):
  /// the socket is created there, the process needs CAP_SYS_ADMIN.
  explicit client(uint16_t port, std::string netns = {});
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Sends a request (connecting first if needed) and reads the answer.
  /// Returns nothing on a transport error (refused, reset, timeout),
  /// setting `error`; the connection is then closed. `sent` tells whether
  /// the request was written completely before the failure.
  std::optional<reply> call(const std::string& method,
                            const std::string& target,
                            const std::string& body = {});

  /// Sends raw bytes and returns everything the server answers until it
  /// closes the connection or `timeout` passes.
  std::string raw(const std::string& bytes,
                  std::chrono::milliseconds timeout = std::chrono::seconds{5});

  /// What `send_whole` saw.
  struct exchange {
    size_t body_written = 0;  // body bytes the socket accepted
    std::string write_error;  // empty when all of the body was written
    std::string answer;       // everything read after writing
  };

  /// Writes `head` and then `body_bytes` bytes of body before reading
  /// anything, as Python's http.client does, then reads until the server
  /// closes or `timeout` passes. A write error stops writing (and is
  /// reported) but the answer is still read.
  exchange send_whole(const std::string& head, size_t body_bytes,
                      std::chrono::milliseconds timeout = std::chrono::seconds{
                          10});

  std::string error;
  bool sent = false;
  /// Sent as `Authorization: Bearer <token>` with requests whose target
  /// starts with /admin; empty: none. Default: `admin_token()`.
  std::string token = admin_token();

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

/// Returns a fresh, empty directory under the system's temp directory.
std::string temp_dir(const std::string& name);

/// Makes a cluster CA, a certificate and key per member n1..n3 (`nN.pem`,
/// `nN.key`, CA `ca.pem`) and a self-signed certificate of another CA
/// (`other.pem`, `other.key`) in a fresh temp directory `name`, with the
/// openssl command line as docs/cluster.md shows; returns the directory.
/// Throws std::runtime_error if openssl fails.
std::string make_cluster_certificates(const std::string& name);

}  // namespace testnode
