#include "mnemo/http/http_node.hpp"

#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <iostream>
#include <optional>
#include <vector>

#include <caf/config_option_adder.hpp>
#include <nlohmann/json.hpp>

#include "mnemo/http/node_endpoints.hpp"
#include "mnemo/runtime/console.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/metrics.hpp"
#include "mnemo/runtime/node.hpp"
#include "mnemo/runtime/secrets.hpp"

namespace mnemo::http {
namespace {

using json = nlohmann::json;

// CAF reads `--key=value`; also accept `--key value` for the options
// people type most (--data, --listen, --config-file, --durability and the
// admin options), and `--data` for `--data-dir`.
std::vector<std::string> normalize(int argc, char** argv) {
  std::vector<std::string> result;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--data" || arg.rfind("--data=", 0) == 0)
      arg = "--data-dir" + arg.substr(6);
    bool takes_value = arg == "--data-dir" || arg == "--listen" ||
                       arg == "--config-file" || arg == "--durability" ||
                       arg == "--admin-token-file" || arg == "--admin-listen";
    if (takes_value && i + 1 < argc) arg += std::string{"="} + argv[++i];
    result.push_back(arg);
  }
  return result;
}

void log(const json& line) {
  mnemo::runtime::print_line(line.dump());
}

}  // namespace

http_node_config::http_node_config() {
  opt_group{custom_options_, "global"}
      .add(listen, "listen", "HOST:PORT of the HTTP server (port 0: any)")
      .add(http_threads, "http-threads", "HTTP I/O threads")
      .add(body_limit, "body-limit", "largest request body in bytes (413)")
      .add(idle_timeout_s, "idle-timeout-s", "close connections idle this long")
      .add(request_timeout_ms, "request-timeout-ms",
           "answer 503 timeout after this long")
      .add(shutdown_timeout_s, "shutdown-timeout-s",
           "longest wait for requests in flight at SIGTERM")
      .add(shutdown_grace_ms, "shutdown-grace-ms",
           "after SIGTERM, how long open connections may still send a "
           "request (answered 503) before they are closed")
      .add(admin_token_file, "admin-token-file",
           "file holding the bearer token of the admin endpoints (else "
           "MNEMO_ADMIN_TOKEN); without it and --admin-listen they are off")
      .add(admin_listen, "admin-listen",
           "HOST:PORT (or PORT, on 127.0.0.1) of a listener for the admin "
           "endpoints, /health and /metrics only");
  // Work arrives from the HTTP and journal threads in small bursts: a
  // shared queue with condition-variable wake-ups beat work stealing,
  // whose idle workers poll with 50 us sleeps (bank_http_bench, 2 cores:
  // +6 to +32 % deposits/s). `--scheduler.policy=stealing` restores it.
  set("scheduler.policy", caf::atom("sharing"));
}

bool split_listen(const std::string& listen,
                  mnemo::http::server_options& opts) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  opts.host = listen.substr(0, colon);
  try {
    auto port = std::stoul(listen.substr(colon + 1));
    if (port > 65535) return false;
    opts.port = static_cast<uint16_t>(port);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

const char* version() {
  return MNEMO_VERSION;
}

namespace {

// Stops a server that was started (at the end of `run_http_node`, or when
// the start fails half-way).
void stop_server(std::unique_ptr<server>& s) {
  if (!s) return;
  s->stop();
  s.reset();
}

}  // namespace

int run_http_node(const char* name, http_node_config& cfg, int argc,
                  char** argv, const service_starter& start) {
  // Signals are taken by `sigwait` below; block them before any thread
  // starts so that no other thread receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  for (int i = 1; i < argc; ++i)
    if (std::string{argv[i]} == "--version") {
      std::cout << name << " " << version() << "\n";
      return 0;
    }
  auto args = normalize(argc, argv);
  if (auto err = cfg.parse(args)) {
    std::cerr << name << ": " << cfg.render(err) << "\n";
    return 2;
  }
  if (cfg.cli_helptext_printed) return 0;
  if (!cfg.remainder.empty()) {
    std::cerr << name << ": unexpected argument '" << cfg.remainder[0]
              << "' (see --help)\n";
    return 2;
  }
  server_options http;
  if (!split_listen(cfg.listen, http)) {
    std::cerr << name << ": --listen wants HOST:PORT, got '" << cfg.listen
              << "'\n";
    return 2;
  }
  http.body_limit = cfg.body_limit;
  http.threads = cfg.http_threads;
  http.idle_timeout = std::chrono::seconds{cfg.idle_timeout_s};
  http.server_name = name;
  std::optional<server_options> admin_http;
  if (!cfg.admin_listen.empty()) {
    admin_http = http;
    admin_http->threads = 1;
    auto listen = cfg.admin_listen;
    if (listen.find(':') == std::string::npos) listen = "127.0.0.1:" + listen;
    if (!split_listen(listen, *admin_http)) {
      std::cerr << name << ": --admin-listen wants HOST:PORT or PORT, got '"
                << cfg.admin_listen << "'\n";
      return 2;
    }
  }
  auto token = mnemo::runtime::resolve_secret(
      "--admin-token", "", cfg.admin_token_file, "MNEMO_ADMIN_TOKEN");
  if (!token) {
    std::cerr << name << ": " << mnemo::runtime::describe(token.error())
              << "\n";
    return 2;
  }

  auto started = mnemo::runtime::node::start(cfg);
  if (!started) {
    std::cerr << name << ": " << mnemo::runtime::describe(started.error())
              << "\n";
    return 1;
  }
  auto& node = **started;
  auto ready = std::make_shared<readiness>(node);
  node.metrics().gauge_fn(
      "mnemo_ready",
      "1 when the node takes traffic (GET /health/ready answers 200), else 0.",
      {}, [ready] { return ready->check().first ? 1.0 : 0.0; });
  node.metrics().gauge_fn("mnemo_build_info",
                          "Always 1; the labels name the build.",
                          {{"version", version()}}, [] { return 1.0; });
  auto slot = std::make_shared<service_slot>();
  // Listen first: /health/live answers while the service starts, its
  // routes answer 503 starting.
  std::string error;
  auto main_server = server::start(
      http,
      node_endpoints(slot, ready, admin_access{!token->empty(), *token}, false,
                     &node.metrics()),
      error);
  if (!main_server) {
    std::cerr << name << ": " << error << "\n";
    return 1;
  }
  std::unique_ptr<mnemo::http::server> admin_server;
  if (admin_http) {
    admin_server =
        server::start(*admin_http,
                      node_endpoints(slot, ready, admin_access{true, *token},
                                     true, &node.metrics()),
                      error);
    if (!admin_server) {
      std::cerr << name << ": --admin-listen: " << error << "\n";
      stop_server(main_server);
      return 1;
    }
  }
  auto svc = start(node, error);
  if (!svc.handle) {
    std::cerr << name << ": " << error << "\n";
    stop_server(admin_server);
    stop_server(main_server);
    return 1;
  }
  slot->set(svc.handle);
  // A replicated cluster: the service's types are routed, so this member
  // may now take part in its shards' elections.
  if (auto err = node.start_replication()) {
    std::cerr << name << ": " << mnemo::runtime::describe(err) << "\n";
    stop_server(admin_server);
    stop_server(main_server);
    return 1;
  }
  ready->set_started();
  json listening{{"event", "listening"},
                 {"host", http.host},
                 {"port", main_server->port()},
                 {"data_dir", cfg.data_dir},
                 {"durability", cfg.durability},
                 {"version", version()},
                 {"admin", !token->empty() ? "token"
                           : admin_server  ? "loopback listener"
                                           : "off"},
                 {"pid", ::getpid()}};
  if (admin_server) {
    listening["admin_host"] = admin_http->host;
    listening["admin_port"] = admin_server->port();
  }
  log(listening);

  int sig = 0;
  sigwait(&signals, &sig);
  log({{"event", "stopping"},
       {"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
       {"in_flight", main_server->in_flight()}});
  main_server->stop_accepting();
  if (admin_server) admin_server->stop_accepting();
  bool drained =
      main_server->drain(std::chrono::seconds{cfg.shutdown_timeout_s});
  if (admin_server)
    drained = admin_server->drain(std::chrono::seconds{1}) && drained;
  // Answered clients close their connections; give a request that raced
  // with the signal its 503 rather than a reset.
  main_server->wait_closed(std::chrono::milliseconds{cfg.shutdown_grace_ms});
  stop_server(admin_server);
  stop_server(main_server);
  slot->clear();
  svc = {};
  started->reset();  // stops the actors, then flushes and closes the journal
  log({{"event", "stopped"}, {"drained", drained}});
  return drained ? 0 : 1;
}

}  // namespace mnemo::http
