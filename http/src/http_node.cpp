#include "mnemo/http/http_node.hpp"

#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <iostream>
#include <vector>

#include <caf/config_option_adder.hpp>
#include <nlohmann/json.hpp>

#include "mnemo/runtime/console.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/node.hpp"

namespace mnemo::http {
namespace {

using json = nlohmann::json;

// CAF reads `--key=value`; also accept `--key value` for the options
// people type most, and `--data` for `--data-dir`.
std::vector<std::string> normalize(int argc, char** argv) {
  std::vector<std::string> result;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--data" || arg.rfind("--data=", 0) == 0)
      arg = "--data-dir" + arg.substr(6);
    bool takes_value = arg == "--data-dir" || arg == "--listen" ||
                       arg == "--config-file" || arg == "--durability";
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
           "request (answered 503) before they are closed");
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
  mnemo::http::server_options http;
  if (!split_listen(cfg.listen, http)) {
    std::cerr << name << ": --listen wants HOST:PORT, got '" << cfg.listen
              << "'\n";
    return 2;
  }
  http.body_limit = cfg.body_limit;
  http.threads = cfg.http_threads;
  http.idle_timeout = std::chrono::seconds{cfg.idle_timeout_s};
  http.server_name = name;

  auto started = mnemo::runtime::node::start(cfg);
  if (!started) {
    std::cerr << name << ": " << mnemo::runtime::describe(started.error())
              << "\n";
    return 1;
  }
  std::string error;
  auto svc = start(**started, error);
  if (!svc.handle) {
    std::cerr << name << ": " << error << "\n";
    return 1;
  }
  // A replicated cluster: the service's types are routed, so this member
  // may now take part in its shards' elections.
  if (auto err = (*started)->start_replication()) {
    std::cerr << name << ": " << mnemo::runtime::describe(err) << "\n";
    return 1;
  }
  auto server = mnemo::http::server::start(http, svc.handle, error);
  if (!server) {
    std::cerr << name << ": " << error << "\n";
    return 1;
  }
  log({{"event", "listening"},
       {"host", http.host},
       {"port", server->port()},
       {"data_dir", cfg.data_dir},
       {"durability", cfg.durability},
       {"pid", ::getpid()}});

  int sig = 0;
  sigwait(&signals, &sig);
  log({{"event", "stopping"},
       {"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
       {"in_flight", server->in_flight()}});
  server->stop_accepting();
  bool drained = server->drain(std::chrono::seconds{cfg.shutdown_timeout_s});
  // Answered clients close their connections; give a request that raced
  // with the signal its 503 rather than a reset.
  server->wait_closed(std::chrono::milliseconds{cfg.shutdown_grace_ms});
  server->stop();
  server.reset();
  svc = {};
  started->reset();  // stops the actors, then flushes and closes the journal
  log({{"event", "stopped"}, {"drained", drained}});
  return drained ? 0 : 1;
}

}  // namespace mnemo::http
