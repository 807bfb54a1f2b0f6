// mnemo-orders-node end to end: the real binary on loopback, driven over
// HTTP; orders fulfilled or cancelled as the simulated payment provider
// decides; killed with SIGKILL in a loop while orders come in, then every
// acknowledged order settles and the stock is conserved.

#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "../../examples/orders/payment_gateway.hpp"
#include "node_process.hpp"
#include "orders_client.hpp"

using namespace testnode;
using json = nlohmann::json;

namespace {

constexpr uint64_t seed = 7;

std::unique_ptr<process> start_orders(const std::string& dir,
                                      std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--data",
                                dir,
                                "--listen",
                                "127.0.0.1:0",
                                "--payment-failure-rate=0.3",
                                "--payment-seed=" + std::to_string(seed)};
  args.insert(args.end(), extra.begin(), extra.end());
  return std::make_unique<process>(MNEMO_ORDERS_NODE, args);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(orders_node_http)

BOOST_AUTO_TEST_CASE(orders_are_fulfilled_or_cancelled_as_documented) {
  auto node = start_orders(temp_dir("mnemo-orders-http"));
  client c{node->port()};
  auto stocked = c.call("POST", "/inventory/sku-1/stock", R"({"quantity":10})");
  BOOST_REQUIRE_EQUAL(status_of(stocked), 200u);
  BOOST_CHECK_EQUAL(body_of(stocked)["on_hand"], 10);
  int completed = 0;
  for (int i = 0; i < 8; ++i) {
    auto id = "o" + std::to_string(i);
    auto placed = c.call("POST", "/orders", order_json(id, "sku-1", 1, 100));
    BOOST_REQUIRE_EQUAL(status_of(placed), 202u);
    BOOST_CHECK_EQUAL(body_of(placed)["amount"], 100);
  }
  for (int i = 0; i < 8; ++i) {
    auto id = "o" + std::to_string(i);
    bool declined = orders::gateway_declines(id, 0.3, seed);
    auto st = settled(c, id);
    BOOST_CHECK_EQUAL(st, declined ? "compensated" : "completed");
    BOOST_CHECK(summary_shows(c, id, declined ? "cancelled" : "completed"));
    auto row = body_of(c.call("GET", "/orders/" + id));
    BOOST_CHECK_EQUAL(row["payment"], declined ? "declined" : "captured");
    if (!declined) {
      BOOST_CHECK_EQUAL(row["tracking"], "trk-" + id);
      ++completed;
    }
  }
  BOOST_TEST_MESSAGE(completed << " of 8 orders paid");
  auto stock = body_of(c.call("GET", "/inventory/sku-1"));
  BOOST_CHECK_EQUAL(stock["on_hand"], 10 - completed);
  BOOST_CHECK_EQUAL(stock["available"], 10 - completed);
  auto totals = body_of(c.call("GET", "/totals"));
  BOOST_CHECK_EQUAL(totals["revenue"], 100 * completed);
  BOOST_CHECK_EQUAL(totals["orders"].value("completed", 0), completed);

  // Placing an order again answers as before and places nothing new.
  auto again = c.call("POST", "/orders", order_json("o0", "sku-1", 1, 100));
  BOOST_CHECK_EQUAL(status_of(again), 202u);
  BOOST_CHECK_EQUAL(body_of(c.call("GET", "/totals"))["revenue"],
                    100 * completed);

  // More than the stock: cancelled before any payment.
  BOOST_CHECK_EQUAL(
      status_of(c.call("POST", "/orders", order_json("big", "sku-1", 99, 5))),
      202u);
  BOOST_CHECK_EQUAL(settled(c, "big"), "compensated");
  BOOST_CHECK(summary_shows(c, "big", "cancelled"));
  BOOST_CHECK_EQUAL(body_of(c.call("GET", "/orders/big"))["payment"], "none");
  // An unknown SKU too.
  c.call("POST", "/orders", order_json("nosku", "sku-404", 1, 5));
  BOOST_CHECK_EQUAL(settled(c, "nosku"), "compensated");

  // Listings, errors, metrics.
  auto listed = body_of(c.call("GET", "/orders?status=completed"));
  BOOST_CHECK_EQUAL(listed["orders"].size(), static_cast<size_t>(completed));
  auto sagas = body_of(c.call("GET", "/fulfilments?status=completed"));
  BOOST_CHECK_EQUAL(sagas["fulfilments"].size(),
                    static_cast<size_t>(completed));
  BOOST_CHECK_EQUAL(status_of(c.call("GET", "/orders/nope")), 404u);
  BOOST_CHECK_EQUAL(status_of(c.call("GET", "/fulfilments/nope")), 404u);
  BOOST_CHECK_EQUAL(status_of(c.call("GET", "/inventory/nope")), 404u);
  BOOST_CHECK_EQUAL(
      status_of(c.call("POST", "/orders", order_json("bad", "sku-1", 0, 5))),
      400u);
  BOOST_CHECK_EQUAL(status_of(c.call("POST", "/orders", "{not json")), 400u);
  // A completed order cannot be cancelled; a cancelled one can, again.
  for (int i = 0; i < 8; ++i) {
    auto id = "o" + std::to_string(i);
    bool declined = orders::gateway_declines(id, 0.3, seed);
    auto res = c.call("POST", "/orders/" + id + "/cancel");
    BOOST_CHECK_EQUAL(status_of(res), declined ? 200u : 409u);
    if (!declined) BOOST_CHECK_EQUAL(body_of(res)["error"], "invalid_state");
  }
  BOOST_CHECK_EQUAL(status_of(c.call("DELETE", "/orders")), 405u);
  auto admin = body_of(c.call("GET", "/admin/projections"));
  BOOST_CHECK_EQUAL(admin["projections"].size(), 5u);
  auto metrics = c.call("GET", "/metrics");
  BOOST_REQUIRE(metrics);
  BOOST_CHECK(metrics->body.find(
                  R"(mnemo_sagas{type="fulfilment",phase="completed"})") !=
              std::string::npos);
  BOOST_CHECK(
      metrics->body.find(
          R"(mnemo_projection_lag_events{projection="orders.summary"})") !=
      std::string::npos);
  node->signal(SIGTERM);
  auto status = node->wait(std::chrono::seconds{30});
  BOOST_REQUIRE(status);
  BOOST_CHECK(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

// A static cluster (members without etcd) is refused with a clear message:
// the node runs alone or replicated (orders_ha).
BOOST_AUTO_TEST_CASE(a_static_cluster_is_refused) {
  auto err_file = std::string{"/tmp/mnemo-orders-cluster-"} +
                  std::to_string(::getpid()) + ".err";
  auto dir = std::string{"/tmp/mnemo-orders-cluster-"} +
             std::to_string(::getpid()) + "-data";
  auto pid = ::fork();
  if (pid == 0) {
    std::vector<std::string> args{MNEMO_ORDERS_NODE,
                                  "--data",
                                  dir,
                                  "--listen",
                                  "127.0.0.1:0",
                                  "--cluster.node-id=n1",
                                  "--cluster.members=n1@127.0.0.1:1,n2@127.0.0.1:2",
                                  "--cluster.secret=0123456789abcdef",
                                  "--cluster.plain-tcp"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::freopen("/dev/null", "w", stdout);
    ::freopen(err_file.c_str(), "w", stderr);
    ::execv(MNEMO_ORDERS_NODE, argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  BOOST_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
  std::ifstream in{err_file};
  std::string text{std::istreambuf_iterator<char>{in}, {}};
  BOOST_CHECK_MESSAGE(text.find("a static cluster of orders nodes is not "
                                "supported") !=
                          std::string::npos,
                      text);
  std::remove(err_file.c_str());
  std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(orders_node_crash)

// Clients place orders while the node is killed with SIGKILL at random
// moments. After the last restart every acknowledged order settles
// (completed or cancelled, none left running), its read-model row agrees,
// and the stock is conserved: on hand = stocked - units of completed
// orders, with no reservation left behind.
BOOST_AUTO_TEST_CASE(kill_9_loop_settles_every_acknowledged_order) {
  auto dir = temp_dir("mnemo-orders-crash");
  constexpr int64_t stocked = 400;
  const std::vector<std::string> skus{"s-a", "s-b"};
  {
    auto node = start_orders(dir);
    client c{node->port()};
    for (auto& sku : skus)
      BOOST_REQUIRE_EQUAL(
          status_of(c.call(
              "POST", "/inventory/" + sku + "/stock",
              json{{"quantity", stocked}, {"command_id", "init"}}.dump())),
          200u);
  }
  std::mutex mx;
  std::map<std::string, std::pair<std::string, int64_t>>
      acked;  // id -> sku, qty
  std::mt19937 rng{99};
  std::atomic<int> next{0};
  const std::vector<std::string> extra{"--payment-timeout-ms=2000"};
  for (int round = 0; round < 6; ++round) {
    auto node = start_orders(dir, extra);
    std::atomic<bool> stop{false};
    std::vector<std::thread> workers;
    for (unsigned w = 0; w < 4; ++w)
      workers.emplace_back([&, w] {
        client c{node->port()};
        std::mt19937 r{static_cast<unsigned>(round * 10 + w)};
        while (!stop) {
          auto id = "c" + std::to_string(next++);
          auto& sku = skus[r() % skus.size()];
          int64_t qty = 1 + static_cast<int64_t>(r() % 3);
          auto res = c.call("POST", "/orders", order_json(id, sku, qty, 10));
          if (!res) break;  // killed
          if (res->status == 202) {
            std::lock_guard<std::mutex> guard{mx};
            acked[id] = {sku, qty};
          }
        }
      });
    std::this_thread::sleep_for(
        std::chrono::milliseconds{200 + static_cast<int>(rng() % 400)});
    node->kill();
    stop = true;
    for (auto& t : workers) t.join();
  }
  auto node = start_orders(dir, extra);
  client c{node->port()};
  BOOST_TEST_MESSAGE(acked.size() << " orders acknowledged");
  BOOST_REQUIRE(!acked.empty());
  std::map<std::string, int64_t> shipped;
  int completed = 0;
  for (auto& [id, line] : acked) {
    auto st = settled(c, id, std::chrono::seconds{60});
    BOOST_CHECK_MESSAGE(st == "completed" || st == "compensated",
                        id << ": " << st);
    BOOST_CHECK(
        summary_shows(c, id, st == "completed" ? "completed" : "cancelled"));
    if (st == "completed") {
      shipped[line.first] += line.second;
      ++completed;
    }
  }
  BOOST_TEST_MESSAGE(completed << " completed");
  // Fulfilments of orders whose placement was never acknowledged may still
  // be on their way (a payment verdict, a retry): they finish too.
  json running;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{60};
  do {
    running = body_of(c.call("GET", "/fulfilments?status=running"));
    if (running["fulfilments"].empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds{100});
  } while (std::chrono::steady_clock::now() < deadline);
  BOOST_CHECK_EQUAL(running["fulfilments"].size(), 0u);
  for (auto& f : running["fulfilments"]) {
    auto id = f.value("id", std::string{});
    BOOST_TEST_MESSAGE("still running: "
                       << f.dump() << " "
                       << body_of(c.call("GET", "/fulfilments/" + id)).dump());
  }
  // Orders whose placement was cut off by a kill may exist unacknowledged:
  // they settle too; count their units from the read model (once it has
  // caught up with the last of them).
  std::map<std::string, int64_t> from_model;
  std::map<std::string, json> stocks;
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  for (bool agree = false; !agree;) {
    auto all = body_of(c.call("GET", "/orders?status=completed&limit=1000"));
    from_model.clear();
    for (auto& row : all["orders"])
      from_model[row["sku"].get<std::string>()] +=
          row["quantity"].get<int64_t>();
    agree = true;
    for (auto& sku : skus) {
      stocks[sku] = body_of(c.call("GET", "/inventory/" + sku));
      agree = agree && stocks[sku].value("on_hand", int64_t{-1}) ==
                           stocked - from_model[sku];
    }
    if (agree || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds{100});
  }
  for (auto& sku : skus) {
    auto& stock = stocks[sku];
    BOOST_CHECK_EQUAL(stock["on_hand"].get<int64_t>(),
                      stocked - from_model[sku]);
    BOOST_CHECK_EQUAL(stock["available"], stock["on_hand"]);
    BOOST_CHECK(from_model[sku] >= shipped[sku]);
  }
  // Also those whose placement was never acknowledged: none gave up half-way.
  auto stuck = body_of(c.call("GET", "/fulfilments?status=needs_attention"));
  BOOST_CHECK_MESSAGE(stuck["fulfilments"].empty(), stuck.dump());
  node->signal(SIGTERM);
  auto status = node->wait(std::chrono::seconds{30});
  BOOST_REQUIRE(status);
  BOOST_CHECK(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
