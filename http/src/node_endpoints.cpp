#include "mnemo/http/node_endpoints.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "mnemo/http/api_support.hpp"
#include "mnemo/http/service_support.hpp"
#include "mnemo/runtime/cluster.hpp"
#include "mnemo/runtime/console.hpp"
#include "mnemo/runtime/metrics.hpp"
#include "mnemo/runtime/node.hpp"

namespace mnemo::http {

namespace {

using json = nlohmann::json;

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// "accounts" of "/accounts/a1"; "" of "/".
std::string_view first_segment(std::string_view path) {
  auto seg = path.substr(path.empty() ? 0 : 1);
  return seg.substr(0, seg.find('/'));
}

// Whether `path` is under /admin: its first segment, percent-decoded and
// in lower case, is "admin" (so that "/%61dmin/..." or "/Admin/..." cannot
// pass the guard for a service that decodes or folds its paths).
bool is_admin(std::string_view path) {
  std::string seg{first_segment(path)};
  auto plain = api_support::percent_decoded(seg).value_or(seg);
  for (auto& c : plain)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return plain == "admin";
}

// One log line per client address that was refused, at most `limit`
// addresses (a scan from many addresses must not grow it without bound).
class refusal_log {
 public:
  void note(const std::string& peer, const char* reason) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (logged_.size() >= limit || !logged_.insert(peer).second) return;
    runtime::print_line(json{{"event", "admin_unauthorized"},
                             {"client", peer},
                             {"reason", reason},
                             {"note", "logged once per client address"}}
                            .dump());
  }

 private:
  static constexpr size_t limit = 10000;
  std::mutex mtx_;
  std::unordered_set<std::string> logged_;
};

// The counters of mnemo_http_requests_total, by route and status class:
// a request takes the lock once, to find its route; its answer counts
// without it (a counter is created, under the lock, only the first time a
// route answers with a class).
class request_counts {
 public:
  using route = std::pair<const std::string,
                          std::array<std::atomic<runtime::metric_counter*>, 5>>;

  explicit request_counts(runtime::metrics& m) : metrics_(m) {}

  // The route of `path`: its first segment if plain and among the first
  // `max_routes`, else "other"; "root" for "/".
  route& route_of(std::string_view path) {
    auto seg = first_segment(path);
    bool plain = seg.size() <= 32;
    for (char c : seg)
      plain = plain && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                        c == '_' || c == '-');
    std::string name = seg.empty() ? "root"
                       : plain     ? std::string{seg}
                                   : "other";
    std::lock_guard<std::mutex> guard{mtx_};
    auto it = routes_.find(name);
    if (it == routes_.end()) {
      if (routes_.size() >= max_routes) name = "other";
      it = routes_.try_emplace(name).first;  // value-initialized: null
    }
    return *it;
  }

  void count(route& r, unsigned status) {
    auto cls = std::min<unsigned>(std::max<unsigned>(status / 100, 1), 5) - 1;
    auto* c = r.second[cls].load(std::memory_order_acquire);
    if (c == nullptr) {
      std::lock_guard<std::mutex> guard{mtx_};
      c = r.second[cls].load(std::memory_order_relaxed);
      if (c == nullptr) {
        static const char* classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
        c = &metrics_.counter(
            "mnemo_http_requests_total",
            "HTTP requests answered, by the first path segment and the "
            "status class.",
            {{"route", r.first}, {"status_class", classes[cls]}});
        r.second[cls].store(c, std::memory_order_release);
      }
    }
    c->inc();
  }

 private:
  // "other" may be one more.
  static constexpr size_t max_routes = 64;
  runtime::metrics& metrics_;
  std::mutex mtx_;
  // Nodes of a std::map stay where they are: a request keeps a reference.
  std::map<std::string, route::second_type> routes_;
};

}  // namespace

bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  auto n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    auto x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    auto y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

std::pair<bool, std::string> readiness::check() {
  if (!started_.load(std::memory_order_acquire))
    return {false, "starting: recovering and resuming unfinished sagas"};
  if (auto err = node_.journal().failure())
    return {false, "journal failed: " + err.to_string()};
  if (auto* c = node_.cluster();
      c != nullptr && !joined_.load(std::memory_order_acquire)) {
    if (c->members().size() > 1 && c->connected().empty())
      return {false,
              "not joined: no other member of the cluster connected "
              "yet"};
    joined_.store(true, std::memory_order_release);
  }
  return {true, {}};
}

handler node_endpoints(std::shared_ptr<service_slot> service,
                       std::shared_ptr<readiness> ready, admin_access access,
                       bool admin_only, runtime::metrics* metrics) {
  auto refused = std::make_shared<refusal_log>();
  std::shared_ptr<request_counts> counts;
  if (metrics != nullptr) counts = std::make_shared<request_counts>(*metrics);
  return [service, ready, access, admin_only, refused, counts](
             request&& req, responder reply) {
    auto path = req.path();
    // Origin-form only ("/..."): an absolute-form target
    // ("http://host/admin/...") must not reach a service past the guard.
    if (path.empty() || path.front() != '/')
      return reply(error_response(400, "invalid_target",
                                  "the request target must start with '/'"));
    if (counts)
      reply = responder::observed(
          std::move(reply),
          [counts, r = &counts->route_of(path)](const response& res) {
            counts->count(*r, res.status);
          });
    if (path == "/health/live") {
      if (req.method != "GET")
        return reply(error_response(405, "method_not_allowed",
                                    "use GET on /health/live"));
      return reply(json_response(200, json{{"status", "live"}}));
    }
    if (path == "/health/ready") {
      if (req.method != "GET")
        return reply(error_response(405, "method_not_allowed",
                                    "use GET on /health/ready"));
      auto [ok, why] = ready->check();
      if (ok) return reply(json_response(200, json{{"status", "ready"}}));
      return reply(
          json_response(503, json{{"status", "not_ready"}, {"reason", why}}));
    }
    if (is_admin(path)) {
      if (!access.enabled)
        return reply(error_response(
            404, "admin_disabled",
            "the admin endpoints are off on this listener: start the node "
            "with --admin-token-file (or MNEMO_ADMIN_TOKEN), or use the "
            "listener of --admin-listen"));
      if (!access.token.empty()) {
        auto* auth = req.header("authorization");
        const char* reason = nullptr;
        if (auth == nullptr || !starts_with(*auth, "Bearer "))
          reason = "no bearer token";
        else if (!same_secret(auth->substr(7), access.token))
          reason = "wrong bearer token";
        if (reason != nullptr) {
          refused->note(req.peer, reason);
          auto res = error_response(
              401, "unauthorized",
              "the admin endpoints need the header Authorization: Bearer "
              "<admin token>");
          res.headers.emplace_back("WWW-Authenticate",
                                   "Bearer realm=\"mnemo-admin\"");
          return reply(std::move(res));
        }
      }
    } else if (admin_only && path != "/metrics" && path != "/health") {
      return reply(error_response(
          404, "not_found",
          "this listener serves the admin endpoints, /health and /metrics "
          "only"));
    }
    auto* fn = service->get();
    if (fn == nullptr)
      return reply(error_response(503, "starting",
                                  "the node is starting; retry shortly"));
    (*fn)(std::move(req), std::move(reply));
  };
}

}  // namespace mnemo::http
