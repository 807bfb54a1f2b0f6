// Three orders nodes as a replicated cluster (--cluster.etcd, one real etcd
// on loopback, --cluster.replicas=3): orders placed through every member
// are fulfilled by sagas that run on their shard's leader and are driven
// by events of other shards (the payment verdicts). The member that leads
// the most shards is killed with SIGKILL while orders come in, and comes
// back. Afterwards every acknowledged order has settled as the payment
// provider decided, every member's read models agree with it, no
// fulfilment is left running, and the stock is conserved.

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "../../examples/orders/payment_gateway.hpp"
#include "ha_cluster.hpp"
#include "node_process.hpp"
#include "orders_client.hpp"
#include "shard_logs.hpp"
#include "tool_run.hpp"

using namespace testnode;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

namespace {

constexpr uint64_t seed = 7;
constexpr double decline_rate = 0.3;
constexpr int64_t stocked = 1000;

struct placed_order {
  std::string sku;
  int64_t quantity = 0;
};

// The live members' HTTP ports; a member about to be killed is taken out
// first, so that clients stop choosing it.
class member_ports {
 public:
  explicit member_ports(const ha_cluster& f) {
    for (auto& n : f.nodes) ports_.push_back(n ? n->port() : 0);
  }
  void set(size_t i, uint16_t port) {
    std::lock_guard<std::mutex> guard{mx_};
    ports_[i] = port;
  }
  uint16_t pick(std::mt19937& rng) {
    std::lock_guard<std::mutex> guard{mx_};
    for (;;) {
      auto p = ports_[rng() % ports_.size()];
      if (p != 0) return p;
    }
  }

 private:
  std::mutex mx_;
  std::vector<uint16_t> ports_;
};

// Places order `id` through any live member until one acknowledges it
// (202). A 503 while a shard changes leaders, or a member that dies
// mid-request, is retried with the same id: placing an order again places
// nothing. False after 30 s without an acknowledgement.
bool place(member_ports& ports, std::mt19937& rng, const std::string& id,
           const placed_order& o) {
  auto deadline = steady::now() + std::chrono::seconds{30};
  while (steady::now() < deadline) {
    client c{ports.pick(rng)};
    auto r = c.call("POST", "/orders", order_json(id, o.sku, o.quantity, 10));
    if (r && r->status == 202) return true;
    if (r && r->status != 503) {
      BOOST_ERROR("placing " << id << ": " << r->status << " " << r->body);
      return false;
    }
    if (r) {
      auto code = r->json().value("error", std::string{});
      BOOST_CHECK_MESSAGE(code == "owner_unavailable" || code == "owner_lost",
                          "503 " << r->body);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
  return false;
}

// The members' processes, in member order.
std::vector<process*> nodes_of(const ha_cluster& f) {
  std::vector<process*> out;
  for (auto& n : f.nodes) out.push_back(n.get());
  return out;
}

// Checks what a run of `acked` orders must leave behind on the running
// `nodes` (three members, each with a replica of every one of `shards`).
void verify_settled(const std::vector<process*>& nodes, uint32_t shards,
                    const std::map<std::string, placed_order>& acked,
                    const std::vector<std::string>& skus) {
  auto name = [](size_t i) { return "member #" + std::to_string(i + 1); };
  // Every order settles as the provider decided: completed, or cancelled
  // with its payment declined. Asked through each member in turn (the
  // fulfilment is routed to its shard's leader).
  std::map<std::string, int64_t> shipped;
  size_t completed = 0;
  int turn = 0;
  for (auto& [id, o] : acked) {
    client c{nodes[turn++ % nodes.size()]->port()};
    auto st = settled(c, id, std::chrono::seconds{60});
    bool declines = orders::gateway_declines(id, decline_rate, seed);
    BOOST_CHECK_MESSAGE(st == (declines ? "compensated" : "completed"),
                        id << ": " << st);
    if (st == "completed") {
      shipped[o.sku] += o.quantity;
      ++completed;
    }
  }
  BOOST_TEST_MESSAGE(completed << " of " << acked.size() << " orders completed");
  BOOST_CHECK(completed > 0 && completed < acked.size());

  // Every member's read models say the same: the totals, each order's
  // row, and no fulfilment running or needing attention.
  int64_t revenue = 0;
  for (auto& [sku, units] : shipped) revenue += units * 10;
  for (size_t i = 0; i < nodes.size(); ++i) {
    client c{nodes[i]->port()};
    auto expected = [&](const json& t) {
      return t["orders"].value("completed", size_t{0}) == completed &&
             t["orders"].value("cancelled", size_t{0}) ==
                 acked.size() - completed &&
             t["orders"].size() == 2 && t.value("revenue", int64_t{-1}) == revenue;
    };
    json totals;
    auto deadline = steady::now() + std::chrono::seconds{20};
    do {
      totals = body_of(c.call("GET", "/totals"));
      if (expected(totals)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds{100});
    } while (steady::now() < deadline);
    BOOST_CHECK_MESSAGE(expected(totals), name(i) << ": " << totals.dump()
                                              << ", want " << completed
                                              << " completed, revenue "
                                              << revenue);
    for (auto& [id, o] : acked) {
      bool declines = orders::gateway_declines(id, decline_rate, seed);
      auto row = body_of(c.call("GET", "/orders/" + id));
      BOOST_CHECK_MESSAGE(
          row.value("status", "") == (declines ? "cancelled" : "completed") &&
              row.value("payment", "") == (declines ? "declined" : "captured"),
          name(i) << ": order " << id << ": " << row.dump());
    }
    for (const char* phase : {"running", "needs_attention"}) {
      json listed;
      deadline = steady::now() + std::chrono::seconds{20};
      do {
        listed = body_of(c.call("GET", std::string{"/fulfilments?status="} +
                                           phase + "&limit=1000"));
        if (listed["fulfilments"].empty()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds{100});
      } while (steady::now() < deadline);
      BOOST_CHECK_MESSAGE(listed["fulfilments"].empty(),
                          name(i) << " " << phase << ": "
                              << listed.dump());
    }
  }

  // The stock is conserved: on hand = stocked - units of completed orders,
  // and no reservation is left (the last step took them out of the books).
  client c{nodes[0]->port()};
  for (auto& sku : skus) {
    json stock;
    auto deadline = steady::now() + std::chrono::seconds{20};
    do {
      stock = body_of(c.call("GET", "/inventory/" + sku));
      if (stock.value("on_hand", int64_t{-1}) == stocked - shipped[sku] &&
          stock.value("reservations", size_t{99}) == 0)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds{100});
    } while (steady::now() < deadline);
    BOOST_CHECK_EQUAL(stock.value("on_hand", int64_t{-1}),
                      stocked - shipped[sku]);
    BOOST_CHECK_EQUAL(stock.value("available", int64_t{-1}),
                      stocked - shipped[sku]);
    BOOST_CHECK_EQUAL(stock.value("reservations", size_t{99}), 0u);
  }

  // Every replica of every shard holds the same log.
  std::vector<std::unique_ptr<client>> own;
  std::vector<client*> all;
  for (auto* n : nodes) {
    own.push_back(std::make_unique<client>(n->port()));
    all.push_back(own.back().get());
  }
  auto diff =
      shard_log_difference(all, shards, 3, std::chrono::seconds{30});
  BOOST_CHECK_MESSAGE(diff.empty(), "replicas differ: " << diff);

  // Placing an order again answers 202 and places nothing.
  auto& [first_id, first] = *acked.begin();
  auto again = c.call("POST", "/orders",
                      order_json(first_id, first.sku, first.quantity, 10));
  BOOST_REQUIRE(again);
  BOOST_CHECK_EQUAL(again->status, 202u);
  std::this_thread::sleep_for(std::chrono::milliseconds{300});
  auto totals = body_of(c.call("GET", "/totals"));
  BOOST_CHECK_EQUAL(totals["orders"].value("completed", size_t{0}) +
                        totals["orders"].value("cancelled", size_t{0}),
                    acked.size());
}

// An orders cluster of three, with the payment provider's settings the
// checks predict outcomes from, once every member knows every shard's
// leader; `skus` stocked.
struct orders_cluster : ha_cluster {
  std::vector<std::string> skus;

  orders_cluster(const std::string& prefix, std::vector<std::string> stocked_skus)
      : ha_cluster{MNEMO_ORDERS_NODE,
                   prefix,
                   8,
                   {"--payment-failure-rate=0.3",
                    "--payment-seed=" + std::to_string(seed),
                    "--payment-timeout-ms=20000"}},
        skus(std::move(stocked_skus)) {
    BOOST_REQUIRE_MESSAGE(busiest(std::chrono::seconds{30}),
                          "no member knows a leader of every shard after 30 s");
    client c{nodes[0]->port()};
    for (auto& sku : skus) {
      auto r = until_served(
          c, "POST", "/inventory/" + sku + "/stock",
          json{{"quantity", stocked}, {"command_id", "init"}}.dump(),
          std::chrono::seconds{30});
      BOOST_REQUIRE(r);
      BOOST_REQUIRE_EQUAL(r->status, 200u);
    }
  }
};

// Three clients placing `total` orders "<prefix><n>" through random live
// members, each pausing `pause` after an acknowledged one. Orders from
// `hold_at` on wait until `release()`.
struct order_clients {
  static constexpr int total = 120;
  std::mutex mx;
  std::map<std::string, placed_order> acked;
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::atomic<bool> released{false};
  std::vector<std::thread> workers;

  order_clients(member_ports& ports, const std::vector<std::string>& skus,
                const std::string& prefix, unsigned seed_base,
                std::chrono::milliseconds pause, int hold_at = total) {
    for (unsigned w = 0; w < 3; ++w)
      workers.emplace_back([&, prefix, w, seed_base, pause, hold_at] {
        std::mt19937 rng{seed_base + w};
        for (int n = next++; n < total && !failed; n = next++) {
          while (n >= hold_at && !released && !failed)
            std::this_thread::sleep_for(std::chrono::milliseconds{10});
          auto id = prefix + std::to_string(n);
          placed_order o{skus[rng() % skus.size()],
                         1 + static_cast<int64_t>(rng() % 3)};
          if (!place(ports, rng, id, o)) {
            failed = true;
            return;
          }
          {
            std::lock_guard<std::mutex> guard{mx};
            acked[id] = o;
          }
          std::this_thread::sleep_for(pause);
        }
      });
  }

  // Waits until `n` orders were started (or a client failed).
  void wait_for(int n) {
    while (next < n && !failed)
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }

  void release() { released = true; }

  // Waits for the clients; checks that every order was acknowledged.
  void finish() {
    release();
    for (auto& t : workers) t.join();
    workers.clear();
    BOOST_REQUIRE(!failed);
    BOOST_REQUIRE_EQUAL(acked.size(), static_cast<size_t>(total));
  }

  ~order_clients() {
    failed = true;
    for (auto& t : workers) t.join();
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(orders_ha)

BOOST_AUTO_TEST_CASE(fulfilments_run_across_members_and_survive_a_killed_leader) {
  orders_cluster f{"mnemo-orders-ha", {"ha-a", "ha-b"}};
  member_ports ports{f};
  order_clients clients{ports, f.skus, "h", 1, std::chrono::milliseconds{0}};
  // Once a third of the orders is in, the busiest leader dies without a
  // word; it comes back after its shards have failed over.
  clients.wait_for(order_clients::total / 3);
  auto victim = f.busiest(std::chrono::seconds{10});
  BOOST_REQUIRE(victim);
  BOOST_TEST_MESSAGE("kill -9 of n" << *victim + 1 << " after "
                                    << clients.next.load() << " orders");
  ports.set(*victim, 0);
  f.nodes[*victim]->kill();
  f.nodes[*victim].reset();
  std::this_thread::sleep_for(std::chrono::seconds{4});
  f.nodes[*victim] = f.start(static_cast<int>(*victim));
  ports.set(*victim, f.nodes[*victim]->port());
  clients.finish();
  verify_settled(nodes_of(f), f.shards, clients.acked, f.skus);
}

// A fourth member replaces n3 while orders come in: n4, started with n1 as
// its only seed, joins through etcd; `mnemo-cluster replicas replace` moves
// every shard of n3 to it (the fulfilments of the shards that move resume
// on their new leaders), and n3 goes. Every acknowledged order settles as
// the provider decided, on n1, n2 and n4 alike.
BOOST_AUTO_TEST_CASE(fulfilments_go_on_while_a_member_is_replaced) {
  orders_cluster f{"mnemo-orders-replace", {"rp-a", "rp-b"}};
  member_ports ports{f};
  // The last quarter of the orders waits until the replacement ended: the
  // fulfilments of the first three quarters run through it.
  order_clients clients{ports, f.skus, "r", 11, std::chrono::milliseconds{20},
                        order_clients::total * 3 / 4};
  clients.wait_for(order_clients::total / 4);
  auto n4_dir = temp_dir("mnemo-orders-replace-n4");
  auto n4 = f.start_new("n4", n4_dir);
  // Joined with the three: it recorded itself in etcd's member directory.
  auto joined = [&] {
    client c{n4->port()};
    auto h = c.call("GET", "/health");
    return h && h->json()["cluster"]["connected"].size() == 3;
  };
  for (auto deadline = steady::now() + std::chrono::seconds{20};
       !joined() && steady::now() < deadline;)
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  BOOST_REQUIRE_MESSAGE(joined(), "n4 did not join the three within 20 s");
  auto r = cluster_tool({"replicas", "replace", "--etcd",
                         "127.0.0.1:" + std::to_string(f.etcd.client_port),
                         "--old", "n3", "--new", "n4", "--timeout", "120"});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, r.text);
  BOOST_TEST_MESSAGE("n3 replaced by n4 after " << clients.next.load()
                                                << " orders");
  // n3 goes; clients use n4 in its place, and place the rest.
  ports.set(2, 0);
  f.nodes[2]->kill();
  f.nodes[2] = std::move(n4);
  ports.set(2, f.nodes[2]->port());
  clients.finish();
  verify_settled(nodes_of(f), f.shards, clients.acked, f.skus);
}

BOOST_AUTO_TEST_SUITE_END()
