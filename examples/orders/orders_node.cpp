// mnemo-orders-node: order fulfilment as an HTTP/1.1 JSON service on one
// node — orders, inventory, payments and shipments as aggregates, the
// fulfilment process manager, and an order-summary read model.
//
//   mnemo-orders-node --data DIR --listen 127.0.0.1:8081 [node options]
//   mnemo-orders-node --payment-failure-rate=0.2   (declines 20 %)
//   mnemo-orders-node --help
//
// Prints one JSON line {"event":"listening",...} when it serves. SIGTERM or
// SIGINT: stop accepting, answer every request in flight, flush the
// journal, exit 0. See docs/orders-node.md.

#include <caf/config_option_adder.hpp>

#include "mnemo/http/http_node.hpp"
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/node.hpp"
#include "orders_errors.hpp"
#include "orders_service.hpp"

namespace {

struct orders_node_config : mnemo::http::http_node_config {
  double payment_failure_rate = 0.0;
  size_t payment_seed = 0;
  size_t payment_timeout_ms = 30'000;

  orders_node_config() {
    listen = "127.0.0.1:8081";
    opt_group{custom_options_, "global"}
        .add(payment_failure_rate, "payment-failure-rate",
             "fraction of payments the simulated provider declines (0..1)")
        .add(payment_seed, "payment-seed",
             "picks which orders the provider declines")
        .add(payment_timeout_ms, "payment-timeout-ms",
             "how long a fulfilment waits for the payment verdict");
    mnemo::runtime::add_error_category<orders::errc>(*this);
  }
};

}  // namespace

int main(int argc, char** argv) {
  orders_node_config cfg;
  return mnemo::http::run_http_node(
      "mnemo-orders-node", cfg, argc, argv,
      [&cfg](mnemo::runtime::node& node, std::string& error) {
        // Alone or replicated; a static cluster (no etcd) would need
        // read models of every member's journal, which it does not have.
        if (node.cluster() && !node.cluster()->replicated()) {
          error =
              "runs alone or as a replicated cluster (--cluster.etcd and "
              "--cluster.replicas): a static cluster of orders nodes is not "
              "supported (see docs/orders-node.md, Replicated)";
          return mnemo::http::node_service{};
        }
        if (!(cfg.payment_failure_rate >= 0.0 &&
              cfg.payment_failure_rate <= 1.0)) {
          error = "--payment-failure-rate wants a number in [0, 1]";
          return mnemo::http::node_service{};
        }
        orders::service_options opts;
        opts.request_timeout = cfg.request_timeout();
        opts.payment_failure_rate = cfg.payment_failure_rate;
        opts.payment_seed = cfg.payment_seed;
        opts.payment_timeout =
            std::chrono::milliseconds{cfg.payment_timeout_ms};
        std::shared_ptr<orders::service> svc =
            orders::service::start(node, opts, error);
        if (!svc) return mnemo::http::node_service{};
        return mnemo::http::node_service{
            svc, [svc](mnemo::http::request&& req, mnemo::http::responder reply) {
              svc->handle(std::move(req), std::move(reply));
            }};
      });
}
