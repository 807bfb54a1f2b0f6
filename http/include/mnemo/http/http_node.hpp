#pragma once

// What the example node binaries share: the node options of an HTTP
// service (listen address, HTTP threads, limits, timeouts, shutdown), the
// command line, the JSON lines they print, and the life cycle: start the
// node and the service, serve, and on SIGTERM or SIGINT stop accepting,
// answer every request in flight, stop the actors and flush the journal.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "mnemo/http/server.hpp"
#include "mnemo/runtime/node_config.hpp"

namespace mnemo::runtime {
class node;
}  // namespace mnemo::runtime

namespace mnemo::http {

struct http_node_config : mnemo::runtime::node_config {
  std::string listen = "127.0.0.1:8080";
  size_t http_threads = 1;
  size_t body_limit = 64 * 1024;
  size_t idle_timeout_s = 60;
  size_t request_timeout_ms = 10000;
  size_t shutdown_timeout_s = 30;
  size_t shutdown_grace_ms = 1000;
  /// --admin-token-file: the bearer token of the admin endpoints (without
  /// it, the environment variable MNEMO_ADMIN_TOKEN). Set: they are
  /// served on --listen to requests that carry it.
  std::string admin_token_file;
  /// --admin-listen: a second listener for the admin endpoints, /health
  /// and /metrics only; "PORT" alone binds 127.0.0.1. Without a token it
  /// asks for none. Without this and without a token, the admin
  /// endpoints are off.
  std::string admin_listen;

  http_node_config();

  std::chrono::milliseconds request_timeout() const {
    return std::chrono::milliseconds{request_timeout_ms};
  }
};

/// A service started on a node: its request handler, and the object that
/// owns what the handler uses (released after the HTTP server stopped and
/// before the node shuts down).
struct node_service {
  std::shared_ptr<void> owner;
  mnemo::http::handler handle;
};

/// Starts the service on a running node; returns a service without handler
/// and sets `error` on failure.
using service_starter =
    std::function<node_service(mnemo::runtime::node&, std::string& error)>;

/// The `main` of a node binary called `name`: parses `argc`/`argv` into
/// `cfg` (CAF's `--key=value`, plus `--key value` for `--data`,
/// `--listen`, `--config-file`, `--durability`, `--admin-token-file` and
/// `--admin-listen`; `--data` is
/// `--data-dir`), starts the node, listens (answering `/health/live` at
/// once and the service's routes 503 `starting`), starts the service,
/// prints `{"event":"listening",...}` once it serves, runs until SIGTERM or
/// SIGINT, and returns the process exit code (0 after a clean stop, 1 if
/// requests were still in flight at the shutdown timeout or start failed,
/// 2 on bad arguments; `--version` prints "NAME VERSION" and returns 0).
/// Every listener gets `node_endpoints`; the node's
/// metrics gain `mnemo_ready` and `mnemo_build_info{version}`.
int run_http_node(const char* name, http_node_config& cfg, int argc,
                  char** argv, const service_starter& start);

/// The version of mnemo the library was built from ("0.1.0").
const char* version();

/// Splits "HOST:PORT" into `opts`; false if it is not of that form.
bool split_listen(const std::string& listen, mnemo::http::server_options& opts);

}  // namespace mnemo::http
