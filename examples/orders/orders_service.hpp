#pragma once

// The order-fulfilment example as a service on a node: the order,
// inventory, payment and shipment registries, the fulfilment saga registry
// (resuming unfinished fulfilments at start), the projections (order
// summary, fulfilment trigger and router, payment gateway, saga index)
// under a supervisor, and the HTTP handler that maps `orders::api`
// operations onto them. No CAF in this header.

#include <chrono>
#include <memory>
#include <string>

#include "mnemo/http/server.hpp"
#include "orders_api.hpp"

namespace mnemo::runtime {
class node;
}  // namespace mnemo::runtime

namespace orders {

struct service_options {
  api::limits limits;
  /// Commands not answered within this time get 503 `timeout`. Default:
  /// 10 s.
  std::chrono::milliseconds request_timeout = std::chrono::seconds{10};
  /// The simulated payment provider: fraction of payments it declines and
  /// the seed that picks them.
  double payment_failure_rate = 0.0;
  uint64_t payment_seed = 0;
  /// How long a fulfilment waits for the provider's verdict before it
  /// cancels the order. Default: 30 s.
  std::chrono::milliseconds payment_timeout = std::chrono::seconds{30};
};

class service {
 public:
  /// Starts the actors on `n` (whose event registry gets the orders and
  /// saga events). Returns null and sets `error` on failure. `n` must
  /// outlive the service.
  static std::unique_ptr<service> start(mnemo::runtime::node& n,
                                        service_options opts,
                                        std::string& error);

  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  /// Handles one request; called on the HTTP server's threads.
  void handle(mnemo::http::request&& req, mnemo::http::responder reply);

  struct impl;

 private:
  explicit service(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

}  // namespace orders
