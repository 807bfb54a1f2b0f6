#pragma once

// What the orders-node tests ask of a node over HTTP: placing an order,
// waiting for its fulfilment to settle and for the order summary to show
// it.

#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "node_process.hpp"

namespace testnode {

inline std::string order_json(const std::string& id, const std::string& sku,
                       int64_t qty, int64_t price) {
  return nlohmann::json{{"id", id},
              {"customer", "erin"},
              {"sku", sku},
              {"quantity", qty},
              {"unit_price", price}}
      .dump();
}

// Waits until fulfilment `id` has finished; returns its status.
inline std::string settled(client& c, const std::string& id,
                    std::chrono::seconds limit = std::chrono::seconds{30}) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  std::string status;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = c.call("GET", "/fulfilments/" + id);
    status = body_of(r).value("status", "");
    if (status == "completed" || status == "compensated" ||
        status == "needs_attention")
      return status;
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  return "unsettled: " + status;
}

// Waits until the order summary shows order `id` in status `want`.
inline bool summary_shows(client& c, const std::string& id, const std::string& want) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{20};
  while (std::chrono::steady_clock::now() < deadline) {
    if (body_of(c.call("GET", "/orders/" + id)).value("status", "") == want)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
  return false;
}

}  // namespace testnode
