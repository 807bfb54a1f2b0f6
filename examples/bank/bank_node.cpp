// mnemo-bank-node: the bank as an HTTP/1.1 JSON service on one node.
//
//   mnemo-bank-node --data DIR --listen 127.0.0.1:8080 [node options]
//   mnemo-bank-node --config-file=bank.ini
//   mnemo-bank-node --help
//
// Prints one JSON line {"event":"listening",...} when it serves. SIGTERM or
// SIGINT: stop accepting, answer every request in flight, flush the
// journal, exit 0. See docs/bank-node.md.

#include <caf/config_option_adder.hpp>

#include "mnemo/http/http_node.hpp"
#include "account.hpp"
#include "bank_service.hpp"

namespace {

struct bank_node_config : mnemo::http::http_node_config {
  int64_t max_amount = 1'000'000'000'000;
  // 5 ms: at ~1500 group commits/s the balance rows' ~11 pages are written
  // about every 8th commit instead of ~9 of them in every commit
  // (docs/bank-node.md, Benchmark).
  size_t read_model_interval_ms = 5;

  bank_node_config() {
    opt_group{custom_options_, "global"}
        .add(max_amount, "max-amount", "largest amount in minor units")
        .add(read_model_interval_ms, "read-model-interval-ms",
             "write the balances and transfer read models at most once per "
             "this many ms (0: in every group commit)");
    mnemo::runtime::add_error_category<bank::account_errc>(*this);
  }
};

}  // namespace

int main(int argc, char** argv) {
  bank_node_config cfg;
  return mnemo::http::run_http_node(
      "mnemo-bank-node", cfg, argc, argv,
      [&cfg](mnemo::runtime::node& node, std::string& error) {
        bank::service_options opts;
        opts.limits.max_amount = cfg.max_amount;
        opts.request_timeout = cfg.request_timeout();
        opts.read_model_interval =
            std::chrono::milliseconds{cfg.read_model_interval_ms};
        std::shared_ptr<bank::service> svc =
            bank::service::start(node, opts, error);
        if (!svc) return mnemo::http::node_service{};
        return mnemo::http::node_service{
            svc, [svc](mnemo::http::request&& req, mnemo::http::responder reply) {
              svc->handle(std::move(req), std::move(reply));
            }};
      });
}
