#pragma once

// What every node serves in front of its service: liveness and readiness
// for a load balancer or an orchestrator, and the guard of the admin
// endpoints (projection control, dead letters, saga and cluster
// operations), which change state and must not be open to whoever reaches
// the port. See docs/http.md.

#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "mnemo/http/server.hpp"

namespace mnemo::runtime {
class metrics;
class node;
}  // namespace mnemo::runtime

namespace mnemo::http {

/// Whether a node takes traffic: its service started (the node recovered
/// and resumed its unfinished sagas), its journal has not failed, and in a
/// cluster of several members it has joined (been connected to another
/// member at least once). Thread-safe.
class readiness {
 public:
  explicit readiness(runtime::node& n) : node_(n) {}

  /// The service started.
  void set_started() { started_.store(true, std::memory_order_release); }

  /// Whether the node is ready, and if not, why.
  std::pair<bool, std::string> check();

 private:
  runtime::node& node_;
  std::atomic<bool> started_{false};
  std::atomic<bool> joined_{false};
};

/// Who may use the admin endpoints (`/admin/...`) on one listener.
struct admin_access {
  /// Served on this listener at all; if not, they answer 404
  /// `admin_disabled`.
  bool enabled = false;
  /// The token requests must carry as `Authorization: Bearer <token>`;
  /// empty: none is asked for (a listener only the machine reaches).
  std::string token;
};

/// The service behind the node endpoints: null until it started; requests
/// for it meanwhile are answered 503 `starting`. Set once, before
/// `readiness::set_started`.
class service_slot {
 public:
  void set(handler fn) {
    fn_ = std::move(fn);
    set_.store(true, std::memory_order_release);
  }
  /// Drops the service (after the listeners stopped: its owner is released
  /// before the node shuts down).
  void clear() {
    set_.store(false, std::memory_order_release);
    fn_ = nullptr;
  }
  const handler* get() const {
    return set_.load(std::memory_order_acquire) ? &fn_ : nullptr;
  }

 private:
  handler fn_;
  std::atomic<bool> set_{false};
};

/// The handler of one listener: `GET /health/live` (200 while the process
/// serves), `GET /health/ready` (200 `{"status":"ready"}`, or 503 with the
/// reason), the admin guard (`access`; a request without the right token
/// gets 401 `unauthorized` with `WWW-Authenticate: Bearer`, the same answer
/// for a missing and a wrong token, and one log line per client address),
/// then the service. With `admin_only`, the listener serves only the
/// admin endpoints, health and `/metrics`; the rest is 404. With
/// `metrics`, every answer counts in
/// `mnemo_http_requests_total{route,status_class}`: `route` is the first
/// path segment ("accounts", "admin", "health"; "root" for "/") if it is 1
/// to 32 characters of [a-z0-9_-] and one of the first 64 seen, else
/// "other" (a scan of random paths must not grow the series without
/// bound); `status_class` is "2xx" ... "5xx".
handler node_endpoints(std::shared_ptr<service_slot> service,
                       std::shared_ptr<readiness> ready, admin_access access,
                       bool admin_only, runtime::metrics* metrics = nullptr);

/// Compares two strings in time that depends on their lengths only.
bool same_secret(const std::string& a, const std::string& b);

}  // namespace mnemo::http
