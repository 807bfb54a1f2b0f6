#pragma once

// Three bank nodes under faults, for the cluster fault tests: members on
// loopback or each in its own network namespace (netns_lab), killed and
// restarted on their data; client threads running a cluster_ledger
// workload; and the check that the cluster converged afterwards.

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../support/free_ports.hpp"
#include "cluster_workload.hpp"
#include "mnemo/runtime/cluster_view.hpp"
#include "netns_lab.hpp"
#include "node_process.hpp"
#include "shard_logs.hpp"

namespace testnode {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using json = nlohmann::json;

inline constexpr const char* secret = "0123456789abcdef-test-secret";
inline constexpr size_t members = 3;
// The runtime's defaults (cluster_settings), which these tests rely on.
inline constexpr auto heartbeat = 500ms;
inline constexpr auto connection_timeout = 2000ms;

inline double seconds_since(steady::time_point t0) {
  return std::chrono::duration<double>(steady::now() - t0).count();
}

// Three members, on loopback or each in its own network namespace.
struct faulty_cluster {
  netns_lab* lab;
  std::string members_option;
  std::vector<std::string> dirs;
  std::vector<std::unique_ptr<process>> nodes;
  member_table table{members};
  std::optional<mnemo::runtime::cluster_view> view;

  // With `etcd_endpoint` (host:port), a replicated cluster (each shard on
  // `replicas` members, lease TTL 2 s).
  std::string etcd;
  size_t replicas = 3;

  faulty_cluster(netns_lab* net, const std::string& name,
                 std::string etcd_endpoint = {}, size_t replica_count = 3)
      : lab(net), etcd(std::move(etcd_endpoint)), replicas(replica_count) {
    auto base =
        lab ? uint16_t{0}
            : mnemo::test::free_port_block(static_cast<uint16_t>(members));
    std::vector<mnemo::runtime::cluster_member> parsed;
    for (size_t i = 0; i < members; ++i) {
      auto entry = id(i) + "@" +
                   (lab ? lab->address(i) + ":7100"
                        : "127.0.0.1:" + std::to_string(base + i));
      members_option += (i ? "," : "") + entry;
      std::string why;
      parsed.push_back(*mnemo::runtime::parse_member(entry, why));
      dirs.push_back(temp_dir("mnemo-" + name + "-" + id(i)));
    }
    std::string why;
    view = mnemo::runtime::cluster_view::make(parsed, 64, why);
    BOOST_REQUIRE_MESSAGE(view, why);
    nodes.resize(members);
    for (size_t i = 0; i < members; ++i) start(i);
  }

  ~faulty_cluster() {
    // Before the namespaces go: kill by pid.
    for (auto& n : nodes) n.reset();
  }

  static std::string id(size_t i) { return "n" + std::to_string(i + 1); }

  // The member that owns account `id`, as every node computes it.
  size_t owner(const std::string& account) const {
    auto& o = view->owner("account", account);
    return static_cast<size_t>(o[1] - '1');
  }

  // Starts member `i` (again), with `members_list` as its
  // --cluster.members if given (the cluster's otherwise).
  void start(size_t i, const std::string& members_list = {}) {
    auto args = node_args(id(i), dirs[i],
                          members_list.empty() ? members_option : members_list);
    nodes[i] = std::make_unique<process>(
        MNEMO_BANK_NODE, args, 20s,
        lab ? lab->exec_prefix(i) : std::vector<std::string>{});
    table.set(i, {nodes[i]->port(), lab ? lab->netns(i) : std::string{}});
  }

  // The bank node's arguments for member `node_id` on `dir` with
  // `members_list` as its --cluster.members.
  std::vector<std::string> node_args(const std::string& node_id,
                                     const std::string& dir,
                                     const std::string& members_list) const {
    std::vector<std::string> args{"--data",
                                  dir,
                                  "--listen",
                                  "127.0.0.1:0",
                                  "--cluster.node-id=" + node_id,
                                  "--cluster.members=" + members_list,
                                  "--cluster.secret=" + std::string{secret},
                                  "--cluster.plain-tcp",
                                  "--cluster.retry-ms=100"};
    if (!etcd.empty())
      for (auto opt : {"--cluster.etcd=" + etcd,
                       "--cluster.replicas=" + std::to_string(replicas),
                       std::string{"--cluster.lease-ttl-s=2"}})
        args.push_back(opt);
    return args;
  }

  void kill(size_t i) {
    table.set(i, {});
    nodes[i]->kill();
    nodes[i].reset();
  }

  std::unique_ptr<client> control(size_t i) const {
    auto a = table.get(i);
    return std::make_unique<client>(a.port, a.netns);
  }

  // The "cluster" part of node `i`'s GET /health (nothing if it does not
  // answer or is not in a cluster).
  std::optional<json> cluster_health(size_t i) const {
    auto c = control(i);
    auto r = c->call("GET", "/health");
    if (!r || r->status != 200) return std::nullopt;
    auto body = r->json();
    if (!body.contains("cluster")) return std::nullopt;
    return body["cluster"];
  }

  // The members node `i` reports connected (nothing if it does not answer).
  std::optional<std::vector<std::string>> connected(size_t i) const {
    auto h = cluster_health(i);
    if (!h) return std::nullopt;
    return (*h)["connected"].get<std::vector<std::string>>();
  }

  // Replicated: the shards that member `i` leads (nothing if it does not
  // answer or knows no leader for some shard).
  std::optional<std::vector<uint32_t>> leading(size_t i) const {
    auto h = cluster_health(i);
    if (!h || h->value("leaderless", size_t{1}) != 0) return std::nullopt;
    return (*h)["leading"].get<std::vector<uint32_t>>();
  }

  // Replicated: how many shards' copies on member `i` do not vote yet
  // (its directory was replaced and they have not caught up); nothing if
  // it does not answer.
  std::optional<size_t> learners(size_t i) const {
    auto h = cluster_health(i);
    if (!h || !h->contains("learners")) return std::nullopt;
    return (*h)["learners"].get<size_t>();
  }

  // Waits until every member is connected to every other one (and, when
  // replicated, every running member knows a leader for every shard).
  bool all_joined(std::chrono::milliseconds limit) const {
    auto deadline = steady::now() + limit;
    while (steady::now() < deadline) {
      bool ok = true;
      for (size_t i = 0; i < members && ok; ++i) {
        auto c = connected(i);
        ok = c && c->size() == members - 1;
        if (ok && !etcd.empty()) ok = leading(i).has_value();
      }
      if (ok) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
};

// Runs `threads` workers of `ledger` until stop() or destruction.
struct workload {
  std::atomic<bool> stop_flag{false};
  std::vector<std::thread> threads;

  workload(cluster_ledger& ledger, const member_table& table, unsigned seed,
           size_t n) {
    for (size_t k = 0; k < n; ++k)
      threads.emplace_back([&ledger, &table, seed, k, this] {
        ledger.work(table, seed * 16 + static_cast<unsigned>(k), stop_flag);
      });
  }
  void stop() {
    stop_flag = true;
    for (auto& t : threads)
      if (t.joinable()) t.join();
  }
  ~workload() { stop(); }
};

// Resolves unknown outcomes, waits for transfers, then checks that every
// member answers the same state, that state is what the acknowledged
// commands imply, money is conserved, and each member's balances read
// model covers exactly the accounts it owns.
inline void check_converged(faulty_cluster& f, cluster_ledger& ledger) {
  BOOST_REQUIRE(f.all_joined(15s));
  auto t0 = steady::now();
  BOOST_CHECK_EQUAL(ledger.resolve_unknown(f.table, 20s), 0u);
  auto statuses = ledger.settle_transfers(f.table, 20s);
  std::map<std::string, size_t> by_status;
  for (auto& [id, st] : statuses) ++by_status[st];
  std::string summary;
  for (auto& [st, n] : by_status) summary += " " + st + "=" + std::to_string(n);
  auto tally = ledger.tally();
  BOOST_TEST_MESSAGE("commands applied="
                     << tally.applied << " not_applied=" << tally.not_applied
                     << " (owner_unavailable=" << tally.owner_unavailable
                     << ") resolved_by_repeat=" << tally.resolved
                     << "; transfers:" << summary << "; settled in "
                     << seconds_since(t0) << " s");
  BOOST_CHECK_EQUAL(tally.broken, 0u);
  for (auto& s : ledger.broken_samples()) BOOST_TEST_MESSAGE("broken: " << s);
  // Members were killed, paused or cut off: their requests in flight are
  // 503 owner_lost or owner_unavailable, never 500.
  BOOST_CHECK_EQUAL(tally.internal, 0u);
  for (auto& s : ledger.internal_samples()) BOOST_TEST_MESSAGE("500: " << s);
  BOOST_CHECK_MESSAGE(by_status["running"] == 0 && by_status["?"] == 0,
                      "transfers not finished:" << summary);
  BOOST_CHECK_MESSAGE(by_status["needs_attention"] == 0,
                      "transfers needing attention:" << summary);
  BOOST_CHECK(by_status["completed"] > 0);
  {
    auto c = f.control(0);
    for (auto& [id, st] : statuses)
      if (st != "completed" && st != "compensated") {
        auto r = c->call("GET", "/transfers/" + id);
        BOOST_TEST_MESSAGE("transfer " << id << ": "
                                       << (r ? r->body : c->error));
      }
  }

  // Every member answers the same state, the one the ledger implies.
  auto expected = ledger.expected(statuses);
  std::vector<std::unique_ptr<client>> cs;
  for (size_t i = 0; i < members; ++i) cs.push_back(f.control(i));
  int64_t total = 0;
  std::map<std::string, int64_t> actual;
  size_t mismatches = 0;
  for (auto& id : ledger.accounts()) {
    json first;
    for (size_t i = 0; i < members; ++i) {
      // A shard whose leadership moves back to its preferred member
      // (--cluster.rebalance-after-s) answers 503 for a moment: ask again.
      auto r = cs[i]->call("GET", "/accounts/" + id);
      for (auto until = std::chrono::steady_clock::now() +
                        std::chrono::seconds{10};
           r && r->status == 503 && std::chrono::steady_clock::now() < until;
           r = cs[i]->call("GET", "/accounts/" + id))
        std::this_thread::sleep_for(std::chrono::milliseconds{50});
      auto body = r ? r->json() : json{};
      json state{{"balance", body.value("balance", int64_t{-1})},
                 {"version", body.value("version", int64_t{-1})}};
      if (i == 0) first = state;
      if (!r || r->status != 200 || state != first) {
        if (++mismatches <= 5)
          BOOST_ERROR("account " << id << " on " << faulty_cluster::id(i)
                                 << ": " << (r ? r->body : cs[i]->error)
                                 << " vs " << first.dump());
      }
    }
    actual[id] = first["balance"].get<int64_t>();
    total += actual[id];
    if (actual[id] != expected[id] && ++mismatches <= 5)
      BOOST_ERROR("account " << id << " (owner " << f.owner(id) << "): balance "
                             << actual[id] << ", expected " << expected[id]);
  }
  BOOST_CHECK_EQUAL(mismatches, 0u);
  auto funded =
      static_cast<int64_t>(ledger.accounts().size()) * cluster_ledger::funding;
  BOOST_CHECK_EQUAL(total, funded + ledger.net_deposits());
  // Replicated: every replica of every shard holds the same log (the same
  // end and digest, GET /admin/shards/{n}) once the followers caught up.
  if (!f.etcd.empty()) {
    std::vector<client*> all;
    for (auto& c : cs) all.push_back(c.get());
    auto diff = shard_log_difference(all, f.view->shards(), f.replicas, 30s);
    BOOST_CHECK_MESSAGE(diff.empty(), "replicas differ: " << diff);
  }
  // Replicated: every member's read side follows the shards' committed
  // logs: its cluster-wide balances, its balances of every account and its
  // transfer index come to what the aggregates and sagas say, each event
  // counted once whatever failed over.
  if (!f.etcd.empty()) {
    auto deadline = steady::now() + 15s;
    std::string diff;
    auto transfers_in = [&](client& c, const std::string& phase) {
      size_t n = 0;
      std::string after;
      for (;;) {
        auto r = c.call("GET", "/transfers?status=" + phase + "&limit=1000" +
                                   (after.empty() ? "" : "&after=" + after));
        if (!r || r->status != 200) return std::numeric_limits<size_t>::max();
        auto body = r->json();
        n += body["transfers"].size();
        if (body["next"].is_null()) return n;
        after = body["next"].get<std::string>();
      }
    };
    do {
      diff.clear();
      for (size_t i = 0; i < members && diff.empty(); ++i) {
        for (auto target : {"/cluster/balances", "/balances"}) {
          auto r = cs[i]->call("GET", target);
          auto body = r ? r->json() : json{};
          if (!r || r->status != 200 ||
              body.value("accounts", uint64_t{0}) !=
                  ledger.accounts().size() ||
              body.value("total", int64_t{0}) != total) {
            diff = faulty_cluster::id(i) + " " + target + ": " +
                   (r ? r->body : cs[i]->error) + ", accounts " +
                   std::to_string(ledger.accounts().size()) + " with " +
                   std::to_string(total);
            break;
          }
        }
        for (auto& id : ledger.accounts()) {
          if (!diff.empty()) break;
          auto r = cs[i]->call("GET", "/balances/" + id);
          if (!r || r->status != 200 ||
              r->json().value("balance", int64_t{-1}) != actual[id])
            diff = faulty_cluster::id(i) + " /balances/" + id + ": " +
                   (r ? std::to_string(r->status) + " " + r->body
                      : cs[i]->error) +
                   ", aggregate " + std::to_string(actual[id]);
        }
        for (auto& [phase, want] :
             {std::pair<std::string, size_t>{"completed", by_status["completed"]},
              {"compensated", by_status["compensated"]},
              {"running", 0}}) {
          if (!diff.empty()) break;
          auto n = transfers_in(*cs[i], phase);
          if (n != want)
            diff = faulty_cluster::id(i) + " /transfers?status=" + phase +
                   ": " + std::to_string(n) + ", the sagas say " +
                   std::to_string(want);
        }
      }
      if (!diff.empty()) std::this_thread::sleep_for(100ms);
    } while (!diff.empty() && steady::now() < deadline);
    BOOST_CHECK_MESSAGE(diff.empty(), "read side: " << diff);
    return;
  }

  // Each member's read model: its own accounts, with the aggregates'
  // balances (the projection follows its journal: poll until caught up).
  auto deadline = steady::now() + 15s;
  std::string diff;
  do {
    diff.clear();
    for (size_t i = 0; i < members && diff.empty(); ++i) {
      uint64_t owned = 0;
      int64_t owned_total = 0;
      for (auto& id : ledger.accounts()) {
        auto r = cs[i]->call("GET", "/balances/" + id);
        bool mine = f.owner(id) == i;
        owned += mine ? 1 : 0;
        owned_total += mine ? actual[id] : 0;
        auto want = mine ? 200u : 404u;
        if (!r || r->status != want ||
            (mine && r->json().value("balance", int64_t{-1}) != actual[id])) {
          diff =
              faulty_cluster::id(i) + " /balances/" + id + ": " +
              (r ? std::to_string(r->status) + " " + r->body : cs[i]->error) +
              (mine ? ", aggregate " + std::to_string(actual[id])
                    : ", not its account");
          break;
        }
      }
      if (!diff.empty()) break;
      auto r = cs[i]->call("GET", "/balances");
      auto body = r ? r->json() : json{};
      if (body.value("accounts", uint64_t{0}) != owned ||
          body.value("total", int64_t{0}) != owned_total)
        diff = faulty_cluster::id(i) +
               " /balances: " + (r ? r->body : cs[i]->error) + ", owns " +
               std::to_string(owned) + " with " + std::to_string(owned_total);
    }
    if (!diff.empty()) std::this_thread::sleep_for(50ms);
  } while (!diff.empty() && steady::now() < deadline);
  BOOST_CHECK_MESSAGE(diff.empty(), "read model: " << diff);
}


}  // namespace testnode
