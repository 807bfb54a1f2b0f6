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

}  // namespace

BOOST_AUTO_TEST_SUITE(orders_ha)

BOOST_AUTO_TEST_CASE(fulfilments_run_across_members_and_survive_a_killed_leader) {
  ha_cluster f{MNEMO_ORDERS_NODE,
               "mnemo-orders-ha",
               8,
               {"--payment-failure-rate=0.3",
                "--payment-seed=" + std::to_string(seed),
                "--payment-timeout-ms=20000"}};
  BOOST_REQUIRE_MESSAGE(f.busiest(std::chrono::seconds{30}),
                        "no member knows a leader of every shard after 30 s");
  const std::vector<std::string> skus{"ha-a", "ha-b"};
  {
    client c{f.nodes[0]->port()};
    for (auto& sku : skus) {
      auto r = until_served(
          c, "POST", "/inventory/" + sku + "/stock",
          json{{"quantity", stocked}, {"command_id", "init"}}.dump(),
          std::chrono::seconds{30});
      BOOST_REQUIRE(r);
      BOOST_REQUIRE_EQUAL(r->status, 200u);
    }
  }
  member_ports ports{f};
  std::mutex mx;
  std::map<std::string, placed_order> acked;
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  constexpr int total = 120;
  std::vector<std::thread> workers;
  for (unsigned w = 0; w < 3; ++w)
    workers.emplace_back([&, w] {
      std::mt19937 rng{w + 1};
      for (int n = next++; n < total && !failed; n = next++) {
        auto id = "h" + std::to_string(n);
        placed_order o{skus[rng() % skus.size()],
                       1 + static_cast<int64_t>(rng() % 3)};
        if (!place(ports, rng, id, o)) {
          failed = true;
          return;
        }
        std::lock_guard<std::mutex> guard{mx};
        acked[id] = o;
      }
    });
  // Once a third of the orders is in, the busiest leader dies without a
  // word; it comes back after its shards have failed over.
  while (next < total / 3 && !failed)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  auto victim = f.busiest(std::chrono::seconds{10});
  BOOST_REQUIRE(victim);
  BOOST_TEST_MESSAGE("kill -9 of n" << *victim + 1 << " after " << next.load()
                                    << " orders");
  ports.set(*victim, 0);
  f.nodes[*victim]->kill();
  f.nodes[*victim].reset();
  std::this_thread::sleep_for(std::chrono::seconds{4});
  f.nodes[*victim] = f.start(static_cast<int>(*victim));
  ports.set(*victim, f.nodes[*victim]->port());
  for (auto& t : workers) t.join();
  BOOST_REQUIRE(!failed);
  BOOST_REQUIRE_EQUAL(acked.size(), static_cast<size_t>(total));

  // Every order settles as the provider decided: completed, or cancelled
  // with its payment declined. Asked through each member in turn (the
  // fulfilment is routed to its shard's leader).
  std::map<std::string, int64_t> shipped;
  size_t completed = 0;
  int turn = 0;
  for (auto& [id, o] : acked) {
    client c{f.nodes[turn++ % 3]->port()};
    auto st = settled(c, id, std::chrono::seconds{60});
    bool declines = orders::gateway_declines(id, decline_rate, seed);
    BOOST_CHECK_MESSAGE(st == (declines ? "compensated" : "completed"),
                        id << ": " << st);
    if (st == "completed") {
      shipped[o.sku] += o.quantity;
      ++completed;
    }
  }
  BOOST_TEST_MESSAGE(completed << " of " << total << " orders completed");
  BOOST_CHECK(completed > 0 && completed < acked.size());

  // Every member's read models say the same: the totals, each order's
  // row, and no fulfilment running or needing attention.
  int64_t revenue = 0;
  for (auto& [sku, units] : shipped) revenue += units * 10;
  for (size_t i = 0; i < 3; ++i) {
    client c{f.nodes[i]->port()};
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
    BOOST_CHECK_MESSAGE(expected(totals), "n" << i + 1 << ": " << totals.dump()
                                              << ", want " << completed
                                              << " completed, revenue "
                                              << revenue);
    for (auto& [id, o] : acked) {
      bool declines = orders::gateway_declines(id, decline_rate, seed);
      auto row = body_of(c.call("GET", "/orders/" + id));
      BOOST_CHECK_MESSAGE(
          row.value("status", "") == (declines ? "cancelled" : "completed") &&
              row.value("payment", "") == (declines ? "declined" : "captured"),
          "n" << i + 1 << ": order " << id << ": " << row.dump());
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
                          "n" << i + 1 << " " << phase << ": "
                              << listed.dump());
    }
  }

  // The stock is conserved: on hand = stocked - units of completed orders,
  // and no reservation is left (the last step took them out of the books).
  client c{f.nodes[0]->port()};
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
  for (auto& n : f.nodes) {
    own.push_back(std::make_unique<client>(n->port()));
    all.push_back(own.back().get());
  }
  auto diff =
      shard_log_difference(all, f.shards, 3, std::chrono::seconds{30});
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

BOOST_AUTO_TEST_SUITE_END()
