// Three bank nodes as a cluster under faults, with concurrent clients:
// members killed with kill -9 and restarted on their data, and a member
// cut off the network (Linux network namespaces, its link taken down: no
// FIN, no RST) and healed. Afterwards every acknowledged command is
// reflected, unknown outcomes are resolved by repeating them with their
// ids, money is conserved, no transfer stays running, every member answers
// the same state, and each member's balances read model matches the
// accounts it owns.

#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <thread>

#include "../support/free_ports.hpp"
#include "cluster_workload.hpp"
#include "faulty_cluster.hpp"
#include "mnemo/runtime/cluster_view.hpp"
#include "netns_lab.hpp"
#include "node_process.hpp"

using namespace testnode;
using json = nlohmann::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

BOOST_AUTO_TEST_SUITE(bank_cluster)

BOOST_AUTO_TEST_CASE(money_is_conserved_across_nodes_through_kills) {
  auto t0 = steady::now();
  faulty_cluster f{nullptr, "kills"};
  BOOST_REQUIRE(f.all_joined(15s));
  cluster_ledger ledger{"c", 18};
  {
    member_clients cs{f.table};
    auto err = ledger.open_all(cs, members);
    BOOST_REQUIRE_MESSAGE(err.empty(), err);
  }
  std::set<size_t> owners;
  for (auto& id : ledger.accounts()) owners.insert(f.owner(id));
  BOOST_REQUIRE_EQUAL(owners.size(), members);
  auto seed = static_cast<unsigned>(::getpid());
  BOOST_TEST_MESSAGE("seed " << seed);
  std::mt19937 rng{seed};
  {
    workload w{ledger, f.table, seed, 4};
    for (int round = 0; round < 5; ++round) {
      std::this_thread::sleep_for(std::chrono::milliseconds{400 + rng() % 500});
      auto victim = rng() % members;
      auto killed = steady::now();
      f.kill(victim);
      std::this_thread::sleep_for(std::chrono::milliseconds{200 + rng() % 500});
      f.start(victim);
      BOOST_REQUIRE_MESSAGE(f.all_joined(15s), "round "
                                                   << round << ": "
                                                   << faulty_cluster::id(victim)
                                                   << " did not rejoin");
      BOOST_TEST_MESSAGE("round "
                         << round << ": killed " << faulty_cluster::id(victim)
                         << ", back and joined after " << seconds_since(killed)
                         << " s");
    }
    std::this_thread::sleep_for(500ms);
    w.stop();
  }
  check_converged(f, ledger);
  BOOST_TEST_MESSAGE("case took " << seconds_since(t0) << " s");
}

BOOST_AUTO_TEST_CASE(a_cut_off_member_heals_without_divergence) {
  auto t0 = steady::now();
  std::unique_ptr<netns_lab> lab;
  try {
    lab = std::make_unique<netns_lab>(members);
  } catch (const std::exception& e) {
    BOOST_FAIL(e.what());  // never a silent pass
  }
  faulty_cluster f{lab.get(), "cut"};
  BOOST_REQUIRE(f.all_joined(15s));
  cluster_ledger ledger{"x", 18};
  {
    member_clients cs{f.table};
    auto err = ledger.open_all(cs, members);
    BOOST_REQUIRE_MESSAGE(err.empty(), err);
  }
  auto seed = static_cast<unsigned>(::getpid());
  auto victim = static_cast<size_t>(seed % members);
  BOOST_TEST_MESSAGE("seed " << seed << ", cutting off "
                             << faulty_cluster::id(victim));
  workload w{ledger, f.table, seed, 3};
  std::this_thread::sleep_for(700ms);

  lab->cut(victim);
  auto cut = steady::now();
  // Loss is noticed through CAF's connection timeout, checked on every
  // heartbeat; allow scheduling slack on a loaded machine.
  auto bound = connection_timeout + 2 * heartbeat + 1500ms;
  std::vector<double> noticed(members, -1);
  while (steady::now() < cut + bound + 1s) {
    bool all = true;
    for (size_t i = 0; i < members; ++i) {
      if (noticed[i] >= 0) continue;
      auto c = f.connected(i);
      bool alone = c && (i == victim ? c->empty()
                                     : std::find(c->begin(), c->end(),
                                                 faulty_cluster::id(victim)) ==
                                           c->end());
      if (alone)
        noticed[i] = seconds_since(cut);
      else
        all = false;
    }
    if (all) break;
    std::this_thread::sleep_for(20ms);
  }
  for (size_t i = 0; i < members; ++i) {
    BOOST_TEST_MESSAGE(faulty_cluster::id(i)
                       << " noticed the cut after " << noticed[i] << " s");
    BOOST_CHECK_MESSAGE(
        noticed[i] >= 0 &&
            noticed[i] <= std::chrono::duration<double>(bound).count(),
        faulty_cluster::id(i) << " did not notice the cut in time");
  }

  // Every member serves what it can reach and refuses the rest at once.
  for (size_t i = 0; i < members; ++i) {
    auto c = f.control(i);
    for (auto& id : ledger.accounts()) {
      bool reachable =
          i == victim ? f.owner(id) == victim : f.owner(id) != victim;
      auto asked = steady::now();
      auto r = c->call("GET", "/accounts/" + id);
      auto took = seconds_since(asked);
      auto d = ledger.send(
          *c, cluster_op{cluster_op::deposit,
                         id,
                         {},
                         1,
                         "cut-" + id + "-" + faulty_cluster::id(i)});
      if (reachable) {
        BOOST_CHECK_MESSAGE(r && r->status == 200 && d && d->status == 200,
                            faulty_cluster::id(i) << " cut off from its own "
                                                  << "side's account " << id);
      } else {
        for (auto* x : {&r, &d})
          BOOST_CHECK_MESSAGE(*x && (*x)->status == 503 &&
                                  (*x)->json().value("error", "") ==
                                      std::string{"owner_unavailable"},
                              faulty_cluster::id(i)
                                  << " on " << id << " (owner across the cut): "
                                  << (*x ? (*x)->body : c->error));
        BOOST_CHECK_MESSAGE(took < 1.0, faulty_cluster::id(i)
                                            << " took " << took
                                            << " s to refuse " << id);
      }
    }
  }

  // Clients keep working on both sides of the cut for a while.
  std::this_thread::sleep_for(1500ms);
  lab->heal(victim);
  auto healed = steady::now();
  BOOST_CHECK_MESSAGE(f.all_joined(20s), "the members did not rejoin");
  BOOST_TEST_MESSAGE("cut for "
                     << std::chrono::duration<double>(healed - cut).count()
                     << " s; rejoined " << seconds_since(healed)
                     << " s after the heal");
  std::this_thread::sleep_for(500ms);
  w.stop();
  check_converged(f, ledger);
  BOOST_TEST_MESSAGE("case took " << seconds_since(t0) << " s");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bank_cluster_in_flight)

// A member that stops answering (SIGSTOP: its connections stay open):
// requests already on their way to it fail with owner_lost once the loss
// is detected, instead of waiting for the request timeout (10 s).
BOOST_AUTO_TEST_CASE(requests_in_flight_to_a_lost_member_fail_at_once) {
  faulty_cluster f{nullptr, "inflight"};
  BOOST_REQUIRE(f.all_joined(15s));
  auto c1 = f.control(0);
  std::string account;
  for (int i = 0; account.empty(); ++i)
    if (f.owner("f" + std::to_string(i)) == 2)
      account = "f" + std::to_string(i);
  BOOST_REQUIRE_EQUAL(c1->call("POST", "/accounts",
                               json{{"id", account}, {"owner", "o"}}.dump())
                          ->status,
                      201u);
  f.nodes[2]->signal(SIGSTOP);
  // Stopped for sure (all threads) before the request goes out.
  auto stopped = [pid = f.nodes[2]->pid()] {
    std::ifstream stat{"/proc/" + std::to_string(pid) + "/stat"};
    std::string text{std::istreambuf_iterator<char>{stat}, {}};
    auto close = text.rfind(')');
    return close != std::string::npos && close + 2 < text.size() &&
           text[close + 2] == 'T';
  };
  for (int i = 0; i < 200 && !stopped(); ++i) std::this_thread::sleep_for(5ms);
  BOOST_REQUIRE(stopped());
  auto t0 = steady::now();
  auto r = c1->call("GET", "/accounts/" + account);
  auto took = steady::now() - t0;
  BOOST_REQUIRE(r);
  BOOST_CHECK_EQUAL(r->status, 503u);
  BOOST_CHECK_EQUAL(r->json().value("error", ""), "owner_lost");
  BOOST_TEST_MESSAGE("answered after "
                     << std::chrono::duration<double>(took).count() << " s");
  BOOST_CHECK(took < connection_timeout + 4 * heartbeat + 1s);
  // New requests fail at once while it is gone.
  t0 = steady::now();
  r = c1->call("GET", "/accounts/" + account);
  BOOST_REQUIRE(r);
  BOOST_CHECK_EQUAL(r->json().value("error", ""), "owner_unavailable");
  BOOST_CHECK(steady::now() - t0 < 1s);
  f.nodes[2]->signal(SIGCONT);
  BOOST_REQUIRE(f.all_joined(15s));
  BOOST_CHECK_EQUAL(c1->call("GET", "/accounts/" + account)->status, 200u);
}

BOOST_AUTO_TEST_SUITE_END()
