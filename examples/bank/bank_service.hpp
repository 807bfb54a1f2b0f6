#pragma once

// The bank as a service on a node: the account registry, the transfer saga
// registry (resuming unfinished transfers at start), the balances
// projection, and the HTTP handler that maps `bank_api` operations onto
// them. No CAF in this header.

#include <chrono>
#include <memory>
#include <string>

#include "mnemo/http/server.hpp"
#include "bank_api.hpp"

namespace mnemo::runtime {
class node;
}  // namespace mnemo::runtime

namespace bank {

struct service_options {
  api::limits limits;
  /// Commands not answered within this time get 503 `timeout` (their
  /// outcome is unknown: retry with the same command id). Default: 10 s.
  std::chrono::milliseconds request_timeout = std::chrono::seconds{10};
  /// The read models (balances, transfer index, and in a cluster the
  /// cluster-wide balances fed by every member's journal) write at most
  /// once per this interval (`projection_options::write_interval`): they
  /// lag by up to that much more, and a busy node rewrites each balance
  /// row's page once per interval instead of in every group commit.
  /// Default: 0 (every commit).
  std::chrono::milliseconds read_model_interval{0};
};

class service {
 public:
  /// Starts the bank's actors on `n` (whose event registry gets the account
  /// and saga events). Returns null and sets `error` on failure. `n` must
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

}  // namespace bank
