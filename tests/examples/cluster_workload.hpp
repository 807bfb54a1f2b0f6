#pragma once

// A bank workload against a cluster whose members come and go: client
// threads send deposits, withdrawals and transfers (which cross owners) to
// random running members over keep-alive connections, and a ledger sorts
// every answer into applied, not applied, or unknown. 503
// owner_unavailable is "not applied" (the router queues nothing and runs
// nothing elsewhere, docs/cluster.md); a lost connection, a timeout or any
// other 5xx is unknown and is resolved later by sending the command again
// with the same ids: a repeated command id answers the original outcome,
// and a transfer that exists starts nothing.

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "node_process.hpp"

namespace testnode {

/// Where the test reaches a member's HTTP server; port 0: not running.
struct member_address {
  uint16_t port = 0;
  std::string netns;
};

/// The current addresses of all members, updated by the test as it kills
/// and restarts them.
class member_table {
 public:
  explicit member_table(size_t n) : members_(n) {}

  void set(size_t i, member_address a) {
    std::lock_guard<std::mutex> guard{mtx_};
    members_[i] = std::move(a);
  }
  member_address get(size_t i) const {
    std::lock_guard<std::mutex> guard{mtx_};
    return members_[i];
  }
  size_t size() const { return members_.size(); }

 private:
  mutable std::mutex mtx_;
  std::vector<member_address> members_;
};

/// One keep-alive client per member, reconnecting when its address
/// changes. One per thread.
class member_clients {
 public:
  explicit member_clients(const member_table& t)
      : table_(&t), clients_(t.size()), ports_(t.size()) {}

  /// The client of member `i`, or nullptr while it does not run.
  client* of(size_t i) {
    auto a = table_->get(i);
    if (a.port == 0) return nullptr;
    if (!clients_[i] || ports_[i] != a.port) {
      clients_[i] = std::make_unique<client>(a.port, a.netns);
      ports_[i] = a.port;
    }
    return clients_[i].get();
  }

 private:
  const member_table* table_;
  std::vector<std::unique_ptr<client>> clients_;
  std::vector<uint16_t> ports_;
};

struct cluster_op {
  enum kind_t { deposit, withdraw, transfer } kind = deposit;
  std::string account;  // transfers: from
  std::string to;
  int64_t amount = 0;
  std::string id;  // command id, or transfer id

  std::string method_target() const {
    if (kind == transfer) return "/transfers";
    return "/accounts/" + account +
           (kind == deposit ? "/deposits" : "/withdrawals");
  }
  std::string body() const {
    if (kind == transfer)
      return R"({"id":")" + id + R"(","from":")" + account + R"(","to":")" +
             to + R"(","amount":)" + std::to_string(amount) + "}";
    return R"({"amount":)" + std::to_string(amount) + R"(,"command_id":")" +
           id + R"("})";
  }
};

class cluster_ledger {
 public:
  static constexpr int64_t funding = 100000;

  /// How an answer is counted.
  enum class verdict { applied, not_applied, unknown, contract_broken };

  cluster_ledger(const std::string& prefix, size_t accounts) {
    for (size_t i = 0; i < accounts; ++i)
      names_.push_back(prefix + std::to_string(i));
  }

  const std::vector<std::string>& accounts() const { return names_; }

  /// Opens and funds every account through rotating members (retries are
  /// safe). Returns an empty string or what went wrong.
  std::string open_all(member_clients& cs, size_t members) {
    for (size_t k = 0; k < names_.size(); ++k) {
      auto& id = names_[k];
      auto* c = cs.of(k % members);
      if (!c) return "member " + std::to_string(k % members) + " is down";
      auto r =
          c->call("POST", "/accounts", R"({"id":")" + id + R"(","owner":"o"})");
      if (!r || (r->status != 201 && r->status != 409))
        return "open " + id + ": " + describe(r, *c);
      auto* d = cs.of((k + 1) % members);
      auto f = d->call("POST", "/accounts/" + id + "/deposits",
                       R"({"amount":)" + std::to_string(funding) +
                           R"(,"command_id":"fund"})");
      if (!f || f->status != 200) return "fund " + id + ": " + describe(f, *d);
    }
    return {};
  }

  /// Runs one client thread until `stop`: a random op to a random running
  /// member, whatever the previous answer was.
  void work(const member_table& table, unsigned seed,
            const std::atomic<bool>& stop) {
    member_clients cs{table};
    std::mt19937 rng{seed};
    for (size_t n = 0; !stop; ++n) {
      auto* c = cs.of(rng() % table.size());
      if (!c) continue;
      auto op =
          random_op(rng, "w" + std::to_string(seed) + "-" + std::to_string(n));
      auto r = c->call("POST", op.method_target(), op.body());
      if (!r && !c->sent) {  // never written: nothing happened
        std::this_thread::sleep_for(std::chrono::milliseconds{5});
        continue;
      }
      record(op, r);
      if (!r) std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
  }

  /// Sends `op` through `c` and records the answer like a worker does.
  std::optional<reply> send(client& c, const cluster_op& op) {
    auto r = c.call("POST", op.method_target(), op.body());
    if (r || c.sent) record(op, r);
    return r;
  }

  /// Sends every unknown command again, with its ids, through running
  /// members until each has a definite answer or `timeout` passes. Returns
  /// the number still unknown.
  size_t resolve_unknown(const member_table& table,
                         std::chrono::milliseconds timeout) {
    member_clients cs{table};
    std::vector<cluster_op> ops;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      ops.swap(unknown_);
    }
    resolved_ += ops.size();
    auto deadline = std::chrono::steady_clock::now() + timeout;
    size_t k = 0;
    std::vector<cluster_op> left;
    for (auto& op : ops) {
      for (;;) {
        auto* c = cs.of(k++ % table.size());
        std::optional<reply> r;
        if (c) r = c->call("POST", op.method_target(), op.body());
        if (r && classify(op, *r) != verdict::unknown &&
            !is_owner_unavailable(*r)) {
          std::lock_guard<std::mutex> guard{mtx_};
          apply(op, *r);
          break;
        }
        if (std::chrono::steady_clock::now() > deadline) {
          left.push_back(op);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds{20});
      }
    }
    std::lock_guard<std::mutex> guard{mtx_};
    resolved_ -= left.size();
    unknown_.insert(unknown_.end(), left.begin(), left.end());
    return left.size();
  }

  /// Polls every started transfer until it no longer runs (or `timeout`);
  /// returns its last status ("?" if never answered).
  std::map<std::string, std::string> settle_transfers(
      const member_table& table, std::chrono::milliseconds timeout) {
    member_clients cs{table};
    std::map<std::string, std::string> result;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    size_t k = 0;
    for (auto& op : started_) {
      for (;;) {
        auto* c = cs.of(k++ % table.size());
        auto r = c ? c->call("GET", "/transfers/" + op.id) : std::nullopt;
        std::string status =
            r && r->status == 200 ? r->json().value("status", "?") : "?";
        result[op.id] = status;
        if ((status != "running" && status != "?") ||
            std::chrono::steady_clock::now() > deadline)
          break;
        std::this_thread::sleep_for(std::chrono::milliseconds{10});
      }
    }
    return result;
  }

  /// The balance every account must have, given final transfer statuses.
  std::map<std::string, int64_t> expected(
      const std::map<std::string, std::string>& statuses) const {
    std::map<std::string, int64_t> result;
    for (auto& id : names_) result[id] = funding;
    for (auto& [id, delta] : applied_) result[id] += delta;
    for (auto& op : started_) {
      auto i = statuses.find(op.id);
      if (i == statuses.end() || i->second != "completed") continue;
      result[op.account] -= op.amount;
      result[op.to] += op.amount;
    }
    return result;
  }

  /// Sum of all applied deposits minus applied withdrawals.
  int64_t net_deposits() const {
    int64_t sum = 0;
    for (auto& [id, delta] : applied_) sum += delta;
    return sum;
  }

  struct counts {
    size_t applied = 0;      // 200 (money), 202 (transfers)
    size_t not_applied = 0;  // 409 insufficient funds, 503 owner_unavailable
    size_t owner_unavailable = 0;
    size_t unknown = 0;   // still unresolved
    size_t resolved = 0;  // were unknown, answered by a repeat
    size_t broken = 0;    // answers the API does not allow
    size_t transfers = 0;
    size_t internal = 0;  // 500s: a lost owner must be a 503, never one
  };
  counts tally() {
    std::lock_guard<std::mutex> guard{mtx_};
    return {applied_count_, not_applied_, owner_unavailable_, unknown_.size(),
            resolved_,      broken_,      started_.size(),    internal_};
  }
  /// Up to 5 answers with status 500, as "<op> -> <status> <body>".
  std::vector<std::string> internal_samples() {
    std::lock_guard<std::mutex> guard{mtx_};
    return internal_samples_;
  }
  std::vector<std::string> broken_samples() {
    std::lock_guard<std::mutex> guard{mtx_};
    return broken_samples_;
  }

 private:
  cluster_op random_op(std::mt19937& rng, std::string tag) const {
    cluster_op op;
    auto pick = rng() % 100;
    op.account = names_[rng() % names_.size()];
    if (pick < 25) {
      op.kind = cluster_op::deposit;
      op.amount = 1 + static_cast<int64_t>(rng() % 150);
      op.id = "d" + tag;
    } else if (pick < 45) {
      op.kind = cluster_op::withdraw;
      op.amount = 1 + static_cast<int64_t>(rng() % 150);
      op.id = "w" + tag;
    } else {
      op.kind = cluster_op::transfer;
      op.to = names_[rng() % names_.size()];
      if (op.to == op.account) op.to = "ghost";  // compensated
      op.amount = 1 + static_cast<int64_t>(rng() % 50);
      op.id = "t" + tag;
    }
    return op;
  }

  static bool is_owner_unavailable(const reply& r) {
    return r.status == 503 &&
           r.json().value("error", "") == std::string{"owner_unavailable"};
  }

  static verdict classify(const cluster_op& op, const reply& r) {
    auto ok = op.kind == cluster_op::transfer ? 202u : 200u;
    if (r.status == ok) return verdict::applied;
    if (is_owner_unavailable(r)) return verdict::not_applied;
    if (r.status == 409 && op.kind == cluster_op::withdraw &&
        r.json().value("error", "") == std::string{"insufficient_funds"})
      return verdict::not_applied;
    if (r.status >= 500) return verdict::unknown;
    return verdict::contract_broken;
  }

  static std::string describe(const std::optional<reply>& r, const client& c) {
    return r ? std::to_string(r->status) + " " + r->body : c.error;
  }

  void record(const cluster_op& op, const std::optional<reply>& r) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!r) {
      unknown_.push_back(op);
      return;
    }
    if (r->status == 500) {
      ++internal_;
      if (internal_samples_.size() < 5)
        internal_samples_.push_back(op.method_target() + " " + op.body() +
                                    " -> 500 " + r->body);
    }
    if (classify(op, *r) == verdict::unknown) {
      unknown_.push_back(op);
      return;
    }
    apply(op, *r);
  }

  // Under mtx_, for a definite answer.
  void apply(const cluster_op& op, const reply& r) {
    switch (classify(op, r)) {
      case verdict::applied:
        ++applied_count_;
        if (op.kind == cluster_op::transfer)
          started_.push_back(op);
        else
          applied_[op.account] +=
              op.kind == cluster_op::deposit ? op.amount : -op.amount;
        break;
      case verdict::not_applied:
        ++not_applied_;
        if (is_owner_unavailable(r)) ++owner_unavailable_;
        break;
      case verdict::contract_broken:
        ++broken_;
        if (broken_samples_.size() < 5)
          broken_samples_.push_back(op.method_target() + " " + op.body() +
                                    " -> " + std::to_string(r.status) + " " +
                                    r.body);
        break;
      case verdict::unknown:
        unknown_.push_back(op);
        break;
    }
  }

  std::vector<std::string> names_;
  std::mutex mtx_;
  std::map<std::string, int64_t> applied_;
  std::vector<cluster_op> unknown_;
  std::vector<cluster_op> started_;
  std::vector<std::string> broken_samples_;
  std::vector<std::string> internal_samples_;
  size_t internal_ = 0;
  size_t applied_count_ = 0;
  size_t not_applied_ = 0;
  size_t owner_unavailable_ = 0;
  size_t resolved_ = 0;
  size_t broken_ = 0;
};

}  // namespace testnode
