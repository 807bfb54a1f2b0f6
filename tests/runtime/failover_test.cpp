// Shard leadership from etcd (shard_coordinator) over three members'
// replicators in one actor system and a real etcd on loopback: exactly one
// member leads; when the leader stops without a word (as a killed process
// does) another leads within the lease TTL plus a few polls, with every
// acknowledged record; a leader that cannot reach etcd stops leading before
// its lease can expire; a member that resigns hands over at once.

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "../support/etcd_server.hpp"
#include "mnemo/runtime/coordination/replica_sets.hpp"
#include "mnemo/runtime/coordination/shard_coordinator.hpp"
#include "replica_member.hpp"

using namespace mnemo;
using namespace mnemo::runtime::coordination;
using namespace std::chrono_literals;
using mnemo::test::event;
using mnemo::test::member;
using mnemo::test::shard;
namespace pe = mnemo::persistence;
namespace repl = mnemo::runtime::replication;

namespace {

struct failover_fixture {
  test::etcd_server etcd;
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  // a, b and c start with the fixture; d only when a test starts it.
  std::array<member, 4> m;
  std::mutex log_mtx;  // before the coordinators, which log to it
  std::array<std::unique_ptr<shard_coordinator>, 4> coord;

  // Preferred-leader election (coordinator_settings::rebalance_after):
  // off unless a test asks for it.
  std::chrono::milliseconds rebalance_after{0};
  // The shard map each member derives (coordinator_settings::shard_map).
  std::array<std::string, 4> maps;

  // `voters`: the shard's voters key as etcd holds it before the members
  // start (empty: the first member creates it from the shard map).
  explicit failover_fixture(std::chrono::milliseconds rebalance = 0ms,
                            const std::string& voters = "")
      : rebalance_after(rebalance) {
    m[0].id = "a";
    m[1].id = "b";
    m[2].id = "c";
    m[3].id = "d";
    maps.fill(shard_map_json(shard + 1, 3, sets({"a", "b", "c"})));
    // Keys of other kinds under a shard's prefix, older than every
    // candidate (docs/replica-set-changes.md puts a shard's configuration
    // there): they are not candidates, so none of them "leads".
    auto client = etcd.client();
    auto key = "/mnemo/test/shards/" + std::to_string(shard);
    BOOST_REQUIRE(client->put(key + "/note", "z"));
    BOOST_REQUIRE(client->put(key + "x/candidates/1", "z"));
    BOOST_REQUIRE(client->put(key + "/candidates", "z"));
    if (!voters.empty()) BOOST_REQUIRE(client->put(key + "/voters", voters));
    for (size_t i = 0; i < 3; ++i) m[i].start(sys, true);
    link_all();
    for (size_t i = 0; i < 3; ++i) start_coordinator(i);
  }

  // Tells every running replicator where the others are (an invalid actor
  // for a stopped one).
  void link_all() {
    for (auto& x : m)
      if (x.replicator)
        for (auto& y : m)
          if (x.id != y.id)
            caf::anon_send(x.replicator, repl::repl_peer_atom::value, y.id,
                           y.replicator);
  }

  // Member `i` stops without a word, as after kill -9: its lease runs out.
  void kill(size_t i) {
    if (coord[i]) {
      coord[i]->abandon();
      coord[i].reset();
    }
    m[i].stop();
    link_all();
  }

  // Member `i` starts again, from its directory or (`wiped`) from an empty
  // one.
  void restart(size_t i, bool wiped) {
    if (wiped) std::filesystem::remove_all(m[i].dir.path() / "data");
    m[i].start(sys, true);
    link_all();
    start_coordinator(i);
  }

  ~failover_fixture() {
    for (auto& c : coord) c.reset();
    for (auto& x : m)
      if (x.replicator) x.stop();
  }

  void start_coordinator(size_t i) {
    coordinator_settings s;
    s.prefix = "/mnemo/test";
    s.member = m[i].id;
    s.replicas[shard] = {"a", "b", "c"};
    s.lease_ttl = 2s;
    s.poll = 50ms;
    s.retry_after = 300ms;
    s.rebalance_after = rebalance_after;
    s.etcd = etcd.settings();
    s.replica_id = pe::replica_log::replica_id(*m[i].journal);
    s.shard_map = maps[i];
    s.journal = m[i].journal.get();
    s.drop_chunk = 3;
    auto id = m[i].id;
    auto t0 = std::chrono::steady_clock::now();
    auto c = shard_coordinator::start(
        sys, m[i].replicator, s,
        [this, id, t0](const std::string& what, const std::string& detail) {
          // From the coordinators' threads: Boost.Test's log is not
          // thread-safe.
          auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - t0)
                        .count();
          std::lock_guard<std::mutex> guard{log_mtx};
          BOOST_TEST_MESSAGE(ms << " ms " << id << ": " << what << " "
                                << detail);
        });
    BOOST_REQUIRE_MESSAGE(c, (c ? "" : runtime::describe(c.error())));
    coord[i] = std::move(*c);
  }

  // The index of the member that leads the shard, waiting for one.
  std::optional<size_t> leader(std::chrono::milliseconds within) {
    auto deadline = std::chrono::steady_clock::now() + within;
    do {
      for (size_t i = 0; i < coord.size(); ++i)
        if (coord[i])
          for (auto& l : coord[i]->leadership())
            if (l.leading) return i;
      std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return std::nullopt;
  }

  // The replica sets of shards 0..`shard`: other members' ("p", "q", "r")
  // for the shards before `shard` (so that these members campaign for
  // `shard` only), `replicas` for it.
  static std::vector<std::vector<std::string>> sets(
      std::vector<std::string> replicas) {
    std::vector<std::vector<std::string>> out(shard, {"p", "q", "r"});
    out.push_back(std::move(replicas));
    return out;
  }

  // Whether member `i` lists the shard in its leadership (is a voter of
  // it, as far as it knows).
  bool lists_shard(size_t i) {
    for (auto& l : coord[i]->leadership())
      if (l.shard == shard) return true;
    return false;
  }

  // The members with a candidate key for the shard in etcd.
  std::vector<std::string> candidates() {
    auto client = etcd.client();
    auto keys = client->get_prefix("/mnemo/test/shards/" +
                                   std::to_string(shard) + "/candidates/");
    BOOST_REQUIRE(keys);
    std::vector<std::string> out;
    for (auto& kv : *keys) out.push_back(kv.value);
    return out;
  }

  // The shard's replica set in etcd.
  replica_set set() {
    auto client = etcd.client();
    auto s = read_replica_set(*client, "/mnemo/test", shard);
    BOOST_REQUIRE_MESSAGE(s, (s ? "" : runtime::describe(s.error())));
    return *s;
  }

  // Waits up to `within` for `pred()` to hold.
  template <class Pred>
  static bool eventually(Pred pred, std::chrono::milliseconds within = 5s) {
    for (auto deadline = std::chrono::steady_clock::now() + within;;) {
      if (pred()) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
  }

  // Waits up to `within` for the replica set to satisfy `pred`.
  template <class Pred>
  bool set_becomes(Pred pred, std::chrono::milliseconds within = 10s) {
    return eventually([&] { return pred(set()); }, within);
  }

  // Appends `v` through whichever member leads, trying again until one
  // acknowledges it (10 s at most); records it in `acked`. Without command
  // ids a try that failed (`not_leader` while the leader steps down) may
  // still be in the log: compare with `in_order_within`.
  bool append_any(const std::string& v, std::vector<std::string>& acked) {
    for (auto deadline = std::chrono::steady_clock::now() + 10s;
         std::chrono::steady_clock::now() < deadline;) {
      auto l = leader(1s);
      if (l && append(*l, v)) {
        acked.push_back(v);
        return true;
      }
    }
    return false;
  }

  // Values appended through `add_values`, in their order.
  std::vector<std::string> added;
  int added_count = 0;

  // Appends `k` more values ("v1", "v2", ...) through whichever member
  // leads, recording them in `added`.
  void add_values(int k) {
    for (int i = 0; i < k; ++i)
      BOOST_REQUIRE(append_any("v" + std::to_string(++added_count), added));
  }

  // Starts d as an observer of the shard, with `k` values added meanwhile;
  // waits until a leader reported it ready and the voters are established.
  void observe_d(int k) {
    restart(3, false);
    auto client = etcd.client();
    BOOST_REQUIRE(observe(*client, "/mnemo/test", shard, "d"));
    add_values(k);
    BOOST_REQUIRE(set_becomes([](const replica_set& s) {
      return s.established && s.ready == std::vector<std::string>{"d"};
    }));
  }

  size_t leaders() {
    size_t n = 0;
    for (auto& c : coord)
      if (c)
        for (auto& l : c->leadership()) n += l.leading ? 1 : 0;
    return n;
  }

  pe::expected<pe::append_result> append(size_t i, const std::string& v) {
    auto p = std::make_shared<std::promise<pe::expected<pe::append_result>>>();
    auto f = p->get_future();
    m[i].journal->append("acct", {event(v)}, pe::expected_version::any(),
                         [p](pe::expected<pe::append_result> r) {
                           p->set_value(std::move(r));
                         });
    if (f.wait_for(5s) != std::future_status::ready)
      return pe::error{pe::errc::storage_error, "no answer within 5 s"};
    return f.get();
  }

  std::vector<std::string> values(size_t i) {
    std::vector<std::string> out;
    auto evs = m[i].journal->read_stream("acct", 1, UINT64_MAX, 10000);
    BOOST_REQUIRE(evs);
    for (auto& e : *evs)
      out.emplace_back(e.payload.begin() + 4, e.payload.end());
    return out;
  }
};

// "a" is the preferred replica of the shard (the first of its replicas).
struct rebalance_fixture : failover_fixture {
  rebalance_fixture() : failover_fixture(1000ms) {}
};

// etcd says the shard's voters are "b" and "c", while every member's
// options say "a", "b" and "c".
struct two_voters_fixture : failover_fixture {
  two_voters_fixture()
      : failover_fixture(0ms, R"({"voters":["b","c"],"previous":[]})") {}
};

// etcd says the shard's voters are "a" and "b"; "c" is none.
struct observer_fixture : failover_fixture {
  observer_fixture()
      : failover_fixture(0ms, R"({"voters":["a","b"],"previous":[]})") {}

  // Waits until etcd's ready key of observer `m` exists (or, with
  // `exists` false, is gone); returns its value (the leader that wrote
  // it), or "" if it did not get there within 5 s.
  std::optional<std::string> ready_key(const std::string& m,
                                       bool exists = true) {
    auto client = etcd.client();
    auto key = "/mnemo/test/shards/" + std::to_string(shard) + "/ready/" + m;
    for (auto deadline = std::chrono::steady_clock::now() + 5s;
         std::chrono::steady_clock::now() < deadline;
         std::this_thread::sleep_for(20ms)) {
      auto got = client->get(key);
      if (got && got->has_value() == exists)
        return exists ? (*got)->value : std::string{};
    }
    return std::nullopt;
  }

  void put_observers(const std::string& json) {
    auto client = etcd.client();
    BOOST_REQUIRE(client->put(
        "/mnemo/test/shards/" + std::to_string(shard) + "/observers", json));
  }
};

// The shard's voters key holds no voter list.
struct unreadable_voters_fixture : failover_fixture {
  unreadable_voters_fixture() : failover_fixture(0ms, "z") {}
};

bool in_order_within(const std::vector<std::string>& part,
                     const std::vector<std::string>& whole) {
  size_t k = 0;
  for (auto& v : whole)
    if (k < part.size() && v == part[k]) ++k;
  return k == part.size();
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(shard_failover, failover_fixture)

BOOST_AUTO_TEST_CASE(a_killed_leader_is_replaced_with_every_acknowledged_record) {
  auto first = leader(10s);
  BOOST_REQUIRE(first);
  BOOST_CHECK_EQUAL(leaders(), 1u);
  std::vector<std::string> acked;
  for (int i = 0; i < 20; ++i) {
    auto r = append(*first, "v" + std::to_string(i));
    BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().to_string()));
    acked.push_back("v" + std::to_string(i));
  }
  // The others refuse appends: they do not lead.
  BOOST_CHECK(!append((*first + 1) % 3, "elsewhere"));
  // The leader stops without a word: no resignation, its lease just runs
  // out (as after kill -9).
  auto t0 = std::chrono::steady_clock::now();
  coord[*first]->abandon();
  coord[*first].reset();
  m[*first].stop();
  std::optional<size_t> next;
  std::optional<std::chrono::steady_clock::duration> took;
  for (auto deadline = t0 + 10s; std::chrono::steady_clock::now() < deadline;) {
    next = leader(100ms);
    if (next && append(*next, "after")) {
      took = std::chrono::steady_clock::now() - t0;
      break;
    }
  }
  BOOST_REQUIRE(took);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*took);
  BOOST_TEST_MESSAGE("failover took " << ms.count() << " ms (lease TTL 2 s)");
  BOOST_CHECK_LT(ms.count(), 5000);
  acked.push_back("after");
  BOOST_CHECK(values(*next) == acked);
}

BOOST_AUTO_TEST_CASE(a_leader_cut_off_from_etcd_stops_before_its_lease_ends) {
  auto first = leader(10s);
  BOOST_REQUIRE(first);
  BOOST_REQUIRE(append(*first, "before"));
  // etcd pauses: nobody can renew. The leader must stop acknowledging
  // within the lease's TTL (2 s), before etcd could let it expire.
  BOOST_REQUIRE(etcd.pause());
  auto t0 = std::chrono::steady_clock::now();
  while (leaders() > 0 && std::chrono::steady_clock::now() - t0 < 5s)
    std::this_thread::sleep_for(10ms);
  auto stopped_after = std::chrono::steady_clock::now() - t0;
  BOOST_CHECK_EQUAL(leaders(), 0u);
  BOOST_CHECK(stopped_after < 2s);
  auto refused = append(*first, "while-paused");
  BOOST_REQUIRE(!refused);
  BOOST_CHECK_EQUAL(refused.error().code(), pe::errc::not_leader);
  // etcd is back: a leader again, with the record.
  ::kill(etcd.pid, SIGCONT);
  auto again = leader(15s);
  BOOST_REQUIRE(again);
  bool ok = false;
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       !ok && std::chrono::steady_clock::now() < deadline;) {
    auto l = leader(1s);
    ok = l && append(*l, "after");
    if (ok) again = l;
  }
  BOOST_REQUIRE(ok);
  BOOST_CHECK((values(*again) == std::vector<std::string>{"before", "after"}));
}

BOOST_AUTO_TEST_CASE(a_stopped_coordinator_hands_over_at_once) {
  auto first = leader(10s);
  BOOST_REQUIRE(first);
  BOOST_REQUIRE(append(*first, "one"));
  auto t0 = std::chrono::steady_clock::now();
  coord[*first].reset();  // resigns: revokes its lease
  std::optional<size_t> next;
  bool ok = false;
  while (!ok && std::chrono::steady_clock::now() - t0 < 5s) {
    next = leader(100ms);
    ok = next && *next != *first && append(*next, "two");
  }
  BOOST_REQUIRE(ok);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - t0);
  BOOST_TEST_MESSAGE("handover took " << ms.count() << " ms");
  BOOST_CHECK_LT(ms.count(), 2000);  // well inside the lease TTL
  BOOST_CHECK((values(*next) == std::vector<std::string>{"one", "two"}));
}

BOOST_AUTO_TEST_CASE(a_wiped_replica_does_not_vote_until_it_caught_up) {
  auto first = leader(10s);
  BOOST_REQUIRE(first);
  auto wiped = (*first + 1) % 3;
  auto lagging = (*first + 2) % 3;
  BOOST_REQUIRE(append(*first, "v0"));
  std::vector<std::string> acked{"v0"};
  // One replica stops; the leader and `wiped` acknowledge ten more.
  kill(lagging);
  for (int i = 1; i <= 10; ++i) {
    auto r = append(*first, "v" + std::to_string(i));
    BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().to_string()));
    acked.push_back("v" + std::to_string(i));
  }
  // The leader dies; `wiped` loses its disk and comes back empty; the
  // lagging replica comes back with its own directory. Together they are
  // a majority of the replicas, but neither holds v1..v10: if the wiped
  // one voted as an empty log, one of them would lead and the ten
  // acknowledged records would be gone.
  kill(*first);
  kill(wiped);
  restart(wiped, true);
  restart(lagging, false);
  auto t0 = std::chrono::steady_clock::now();
  size_t led = 0;
  while (std::chrono::steady_clock::now() - t0 < 6s) {  // 3 lease TTLs
    led = std::max(led, leaders());
    std::this_thread::sleep_for(20ms);
  }
  BOOST_CHECK_EQUAL(led, 0u);
  BOOST_CHECK(m[wiped].log().learner().value().has_value());
  BOOST_CHECK(!m[lagging].log().learner().value().has_value());
  // The old leader returns: the shard is led again, with every record.
  restart(*first, false);
  std::optional<size_t> next;
  bool ok = false;
  for (auto deadline = std::chrono::steady_clock::now() + 15s;
       !ok && std::chrono::steady_clock::now() < deadline;) {
    next = leader(100ms);
    ok = next && append(*next, "after");
  }
  BOOST_REQUIRE(ok);
  acked.push_back("after");
  BOOST_CHECK(values(*next) == acked);
  // The wiped replica catches up from the leader and votes again.
  bool caught_up = false;
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       !caught_up && std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(20ms))
    caught_up = !m[wiped].log().learner().value().has_value() && values(wiped) == acked;
  BOOST_CHECK(caught_up);
}

BOOST_FIXTURE_TEST_CASE(leadership_returns_to_the_preferred_replica,
                        rebalance_fixture) {
  auto leads_a = [&] {
    auto l = leader(100ms);
    return l && *l == 0;
  };
  bool ok = false;
  for (auto deadline = std::chrono::steady_clock::now() + 15s;
       !ok && std::chrono::steady_clock::now() < deadline;)
    ok = leads_a();
  BOOST_REQUIRE_MESSAGE(ok, "the preferred replica a does not lead");
  std::vector<std::string> acked;
  BOOST_REQUIRE(append(0, "v0"));
  acked.push_back("v0");
  // a dies: another replica leads.
  kill(0);
  ok = false;
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       !ok && std::chrono::steady_clock::now() < deadline;) {
    auto l = leader(100ms);
    ok = l && *l != 0 && append(*l, "v1");
  }
  BOOST_REQUIRE(ok);
  acked.push_back("v1");
  // a returns. Appends go on through whoever leads; after a second as a
  // candidate, a takes the shard back, and nothing acknowledged meanwhile
  // is lost.
  restart(0, false);
  auto t0 = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> back;
  int k = 0;
  while (std::chrono::steady_clock::now() - t0 < 15s) {
    auto l = leader(50ms);
    if (!l) continue;
    auto v = "w" + std::to_string(k++);
    if (append(*l, v)) {
      acked.push_back(v);
      if (*l == 0) {
        back = std::chrono::steady_clock::now();
        break;
      }
    }
  }
  BOOST_REQUIRE_MESSAGE(back, "a did not take its shard back in 15 s");
  BOOST_TEST_MESSAGE(
      "a led again "
      << std::chrono::duration_cast<std::chrono::milliseconds>(*back - t0)
             .count()
      << " ms after it restarted (rebalance after 1 s)");
  BOOST_CHECK_EQUAL(leaders(), 1u);
  auto held = values(0);
  BOOST_CHECK_MESSAGE(in_order_within(acked, held),
                      acked.size() << " acknowledged, " << held.size()
                                   << " held by a");
}

// A member configured with another shard count would place entities on
// other shards. It finds the cluster's shard map in etcd, says what
// differs, and takes no part: it neither leads nor vouches for a leader,
// so without it and the leader no majority is left. Started again with
// another member list but the cluster's shard count (a member list of
// seeds, or one that names a member added later), it votes: every member
// counts over etcd's voters keys, not over the sets its list derives.
BOOST_AUTO_TEST_CASE(a_member_with_another_shard_count_takes_no_part) {
  auto first = leader(10s);
  BOOST_REQUIRE(first);
  BOOST_REQUIRE(append(*first, "v1"));
  // The member that neither leads nor is the other voter left.
  size_t odd = (*first + 1) % 3;
  size_t voter = (*first + 2) % 3;
  kill(odd);
  auto more_shards = sets({"a", "b", "c"});
  more_shards.push_back({"a", "b", "c"});
  maps[odd] = shard_map_json(shard + 2, 3, more_shards);
  restart(odd, false);
  std::string why;
  for (auto deadline = std::chrono::steady_clock::now() + 5s;
       why.empty() && std::chrono::steady_clock::now() < deadline;)
    if (why = coord[odd]->shard_map_error(); why.empty())
      std::this_thread::sleep_for(20ms);
  BOOST_TEST_MESSAGE(why);
  BOOST_CHECK(why.find("/mnemo/test/shard-map") != std::string::npos);
  BOOST_CHECK(why.find("shards: etcd has " + std::to_string(shard + 1) +
                       ", this member " + std::to_string(shard + 2)) !=
              std::string::npos);
  // The shard is served by the two that agree.
  BOOST_REQUIRE(append(*first, "v2"));
  BOOST_CHECK_EQUAL(coord[voter]->shard_map_error(), "");
  // Without the leader, the voter alone is no majority: the member that
  // disagrees must not make it one.
  kill(*first);
  std::this_thread::sleep_for(6s);
  BOOST_CHECK_EQUAL(leaders(), 0u);
  // With the cluster's shard count and another member list ("x" for "c")
  // it takes part again; the new leader holds every acknowledged record.
  kill(odd);
  maps[odd] = shard_map_json(shard + 1, 3, sets({"a", "b", "x"}));
  restart(odd, false);
  auto next = leader(15s);
  BOOST_REQUIRE(next);
  BOOST_CHECK(*next != *first);
  BOOST_CHECK_EQUAL(coord[odd]->shard_map_error(), "");
  BOOST_REQUIRE(append(*next, "v3"));
  BOOST_CHECK((values(*next) == std::vector<std::string>{"v1", "v2", "v3"}));
  // etcd's map stays as the first member made it.
  auto client = etcd.client();
  auto map = client->get("/mnemo/test/shard-map");
  BOOST_REQUIRE(map && *map);
  BOOST_CHECK_EQUAL((*map)->value, maps[voter]);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(shard_voters)

// etcd's voters key decides who campaigns and whose promises count: "a",
// whose options name it a replica, is none by etcd, so it never becomes a
// candidate, and without the leader the other voter and "a" are no
// majority (counted over {a, b, c} they would be one, with every record).
BOOST_FIXTURE_TEST_CASE(etcds_voters_decide_who_campaigns_and_who_counts,
                        two_voters_fixture) {
  auto first = leader(10s);
  BOOST_REQUIRE(first);
  BOOST_CHECK_NE(*first, 0u);
  BOOST_REQUIRE(append(*first, "v1"));
  // "a" left the shard it listed at its start (its options).
  BOOST_CHECK(eventually([&] { return !lists_shard(0); }));
  for (auto& c : candidates()) BOOST_CHECK_NE(c, "a");
  kill(*first);
  std::this_thread::sleep_for(6s);
  BOOST_CHECK_EQUAL(leaders(), 0u);
  for (auto& c : candidates()) BOOST_CHECK_NE(c, "a");
  // The killed voter is back: the two lead again, with the record.
  restart(*first, false);
  std::optional<size_t> next;
  bool ok = false;
  for (auto deadline = std::chrono::steady_clock::now() + 15s;
       !ok && std::chrono::steady_clock::now() < deadline;) {
    next = leader(1s);
    ok = next && append(*next, "v2");
  }
  BOOST_REQUIRE(ok);
  BOOST_CHECK_NE(*next, 0u);
  BOOST_CHECK((values(*next) == std::vector<std::string>{"v1", "v2"}));
}

// An observer (`shards/<n>/observers`) gets the shard's records from its
// leader without counting in any majority; the leader records in etcd when
// it holds the commit point (`shards/<n>/ready/<m>`, bound to the
// leader's lease) and deletes that once the member observes no longer.
BOOST_FIXTURE_TEST_CASE(an_observer_catches_up_without_counting,
                        observer_fixture) {
  auto first = leader(10s);
  BOOST_REQUIRE(first);
  BOOST_CHECK_NE(*first, 2u);
  BOOST_REQUIRE(append(*first, "v1"));
  put_observers(R"(["c"])");
  auto by = ready_key("c");
  BOOST_REQUIRE_MESSAGE(by, "no ready key for the observer c");
  BOOST_CHECK_EQUAL(*by, m[*first].id);
  BOOST_CHECK((values(2) == std::vector<std::string>{"v1"}));
  BOOST_REQUIRE(append(*first, "v2"));
  for (auto& c : candidates()) BOOST_CHECK_NE(c, "c");
  BOOST_CHECK(!lists_shard(2));
  // Without the other voter nothing is acknowledged, though c holds it.
  size_t other = *first == 0 ? 1 : 0;
  kill(other);
  auto held = append(*first, "v3");
  BOOST_CHECK(!held);
  BOOST_CHECK((values(2) == std::vector<std::string>{"v1", "v2", "v3"}));
  restart(other, false);
  // No observers: the ready key goes.
  put_observers("[]");
  BOOST_CHECK(ready_key("c", false));
}

// Changes of voters are single steps guarded in etcd: an observer is
// promoted only once a leader reported it holding the commit point, and
// the next change waits until a leader of the new voters committed its
// epoch (R4). Here the new set {a, b, c, d} cannot get a leader (two of
// its members are down), so removing c is refused, while going back to
// {a, b, c} is not; once one of them is back, that set leads again, with
// every acknowledged record.
BOOST_FIXTURE_TEST_CASE(a_change_of_voters_waits_for_an_established_set,
                        failover_fixture) {
  auto first = leader(10s);
  BOOST_REQUIRE(first);
  std::vector<std::string> acked;
  BOOST_REQUIRE(append_any("v1", acked));
  BOOST_REQUIRE(set_becomes([](const replica_set& s) { return s.established; }));
  auto client = etcd.client();
  auto not_observing = promote(*client, "/mnemo/test", shard, "d");
  BOOST_REQUIRE(!not_observing);
  BOOST_TEST_MESSAGE(runtime::describe(not_observing.error()));
  BOOST_CHECK(runtime::is(not_observing.error(), runtime::errc::invalid_argument));
  BOOST_REQUIRE(observe(*client, "/mnemo/test", shard, "d"));
  // d does not run: no leader can report it ready.
  auto not_ready = promote(*client, "/mnemo/test", shard, "d");
  BOOST_REQUIRE(!not_ready);
  BOOST_CHECK(runtime::describe(not_ready.error()).find("commit point") !=
              std::string::npos);
  restart(3, false);
  BOOST_REQUIRE(set_becomes([](const replica_set& s) {
    return s.ready == std::vector<std::string>{"d"};
  }));
  BOOST_CHECK(in_order_within(acked, values(3)));
  // The two voters that do not lead go down; the leader and d are no
  // majority of four.
  auto leading = leader(1s);
  BOOST_REQUIRE(leading);
  auto lead = *leading;
  for (size_t i = 0; i < 3; ++i)
    if (i != lead) kill(i);
  auto promoted = promote(*client, "/mnemo/test", shard, "d");
  BOOST_REQUIRE_MESSAGE(promoted, (promoted ? "" : runtime::describe(promoted.error())));
  BOOST_CHECK((promoted->voters == std::vector<std::string>{"a", "b", "c", "d"}));
  BOOST_CHECK((promoted->previous == std::vector<std::string>{"a", "b", "c"}));
  BOOST_CHECK(promoted->observers.empty());
  BOOST_CHECK(!promoted->established);
  std::this_thread::sleep_for(3s);
  BOOST_CHECK_EQUAL(leaders(), 0u);
  auto early = remove_voter(*client, "/mnemo/test", shard, "c");
  BOOST_REQUIRE(!early);
  BOOST_CHECK(runtime::describe(early.error()).find("not established") !=
              std::string::npos);
  auto back = abort_change(*client, "/mnemo/test", shard);
  BOOST_REQUIRE_MESSAGE(back, (back ? "" : runtime::describe(back.error())));
  BOOST_CHECK((back->voters == std::vector<std::string>{"a", "b", "c"}));
  // One of the three is back: {a, b, c} leads again, with the record, and
  // d (no voter now) never campaigns.
  restart(lead == 0 ? 1 : 0, false);
  BOOST_REQUIRE(append_any("v2", acked));
  BOOST_REQUIRE(set_becomes([](const replica_set& s) { return s.established; }));
  auto now = leader(1s);
  BOOST_REQUIRE(now);
  BOOST_CHECK_NE(*now, 3u);
  BOOST_CHECK(in_order_within(acked, values(*now)));
  for (auto& c : candidates()) BOOST_CHECK_NE(c, "d");
}

// A member is replaced while appends go on: d observes and catches up, is
// promoted, and c is removed, each step once the one before it is
// established. No acknowledged record is lost, c leaves the shard and is
// no candidate, and the new set survives its leader's kill.
BOOST_FIXTURE_TEST_CASE(a_member_is_replaced_without_losing_a_record,
                        failover_fixture) {
  BOOST_REQUIRE(leader(10s));
  add_values(5);
  observe_d(5);
  auto client = etcd.client();
  BOOST_REQUIRE(promote(*client, "/mnemo/test", shard, "d"));
  add_values(5);  // through the election of the new set
  BOOST_REQUIRE(set_becomes([](const replica_set& s) { return s.established; }));
  BOOST_REQUIRE(lists_shard(3));
  auto removed = remove_voter(*client, "/mnemo/test", shard, "c");
  BOOST_REQUIRE_MESSAGE(removed, (removed ? "" : runtime::describe(removed.error())));
  BOOST_CHECK((removed->voters == std::vector<std::string>{"a", "b", "d"}));
  add_values(5);
  BOOST_REQUIRE(set_becomes([](const replica_set& s) { return s.established; }));
  BOOST_CHECK(eventually([&] { return !lists_shard(2); }));
  for (auto& c : candidates()) BOOST_CHECK_NE(c, "c");
  // c, a replica no more, drops its copy (3 records per commit here) and
  // keeps its promise.
  pe::replica_log c_copy{*m[2].journal, shard};
  BOOST_CHECK(eventually([&] { return c_copy.end_position().value() == 0; }));
  BOOST_CHECK_GT(c_copy.promised_epoch().value(), 0u);
  BOOST_CHECK(values(2).empty());
  // The new set's leader dies: the other two elect one with every record.
  auto l = leader(1s);
  BOOST_REQUIRE(l);
  BOOST_CHECK_NE(*l, 2u);
  kill(*l);
  add_values(3);
  auto next = leader(1s);
  BOOST_REQUIRE(next);
  BOOST_CHECK_NE(*next, 2u);
  BOOST_CHECK(in_order_within(added, values(*next)));
  // c, no voter, was not needed, and counts in no majority: down, and the
  // set still acknowledges.
  kill(2);
  add_values(2);
  auto last = leader(1s);
  BOOST_REQUIRE(last);
  BOOST_CHECK(in_order_within(added, values(*last)));
}

// Where a leaving member's shards go: to a running member without a copy,
// the least loaded first (counting the plan), ties by id; a target already
// observing a shard is kept (a run that stopped half way resumes); a shard
// no running member can take is refused, not left with fewer replicas.
BOOST_AUTO_TEST_CASE(a_decommission_spreads_the_shards_over_running_members) {
  auto set = [](uint32_t shard, std::vector<std::string> voters,
                std::vector<std::string> observers = {}) {
    replica_set s;
    s.shard = shard;
    s.voters = std::move(voters);
    s.observers = std::move(observers);
    return s;
  };
  std::vector<replica_set> sets{
      set(0, {"a", "b", "c"}), set(1, {"a", "c", "d"}),
      set(2, {"c", "b", "d"}, {"e"}), set(3, {"a", "b", "d"}),
      set(4, {"c", "a", "b"})};
  auto plan = plan_decommission(sets, {"a", "b", "c", "d", "e"}, "c");
  BOOST_REQUIRE_MESSAGE(plan, (plan ? "" : runtime::describe(plan.error())));
  // e observes shard 2 already and keeps it; holding one copy against
  // d's three, it takes 0 and 1 too, and then d and e tie for 4: d, by id.
  BOOST_CHECK((*plan == std::map<uint32_t, std::string>{
                            {0, "e"}, {1, "e"}, {2, "e"}, {4, "d"}}));
  // With b and d running only: 0 and 4 go to d, 1 to b, and shard 2
  // (held by b and d already) has nobody.
  auto stuck = plan_decommission(sets, {"b", "c", "d"}, "c");
  BOOST_REQUIRE(!stuck);
  BOOST_TEST_MESSAGE(runtime::describe(stuck.error()));
  BOOST_CHECK(runtime::describe(stuck.error()).find("shard(s) [2]") !=
              std::string::npos);
  // A member of no set has nothing to move.
  auto none = plan_decommission(sets, {"a", "b"}, "x");
  BOOST_REQUIRE(none);
  BOOST_CHECK(none->empty());
}

// A member of a build before the voters keys counts majorities over the
// shard map: while one is in the member directory (it left a key under
// members/<id>/ but records no protocol of 2), voter changes are refused,
// naming it. Every member of this build records its protocol; once the old
// one does too (upgraded), the change goes through.
BOOST_FIXTURE_TEST_CASE(voter_changes_wait_until_every_member_reads_voters,
                        failover_fixture) {
  BOOST_REQUIRE(leader(10s));
  std::vector<std::string> acked;
  BOOST_REQUIRE(append_any("v1", acked));
  restart(3, false);
  auto client = etcd.client();
  for (auto id : {"a", "b", "c", "d"}) {
    auto key = std::string{"/mnemo/test/members/"} + id + "/protocol";
    BOOST_CHECK(eventually([&] {
      auto got = client->get(key);
      return got && *got && (*got)->value == "2";
    }));
  }
  BOOST_REQUIRE(observe(*client, "/mnemo/test", shard, "d"));
  BOOST_REQUIRE(set_becomes([](const replica_set& s) {
    return s.established && s.ready == std::vector<std::string>{"d"};
  }));
  BOOST_REQUIRE(client->put("/mnemo/test/members/old/replica", "r-old"));
  auto refused = promote(*client, "/mnemo/test", shard, "d");
  BOOST_REQUIRE(!refused);
  BOOST_TEST_MESSAGE(runtime::describe(refused.error()));
  BOOST_CHECK(runtime::is(refused.error(), runtime::errc::invalid_argument));
  BOOST_CHECK(runtime::describe(refused.error()).find("[old]") !=
              std::string::npos);
  BOOST_CHECK(!remove_voter(*client, "/mnemo/test", shard, "c"));
  BOOST_CHECK((set().voters == std::vector<std::string>{"a", "b", "c"}));
  BOOST_REQUIRE(client->put("/mnemo/test/members/old/protocol", "1"));
  BOOST_CHECK(!promote(*client, "/mnemo/test", shard, "d"));
  BOOST_REQUIRE(client->put("/mnemo/test/members/old/protocol", "2"));
  auto promoted = promote(*client, "/mnemo/test", shard, "d");
  BOOST_REQUIRE_MESSAGE(promoted,
                        (promoted ? "" : runtime::describe(promoted.error())));
  BOOST_CHECK((promoted->voters ==
               std::vector<std::string>{"a", "b", "c", "d"}));
  BOOST_REQUIRE(append_any("v2", acked));
  auto l = leader(1s);
  BOOST_REQUIRE(l);
  BOOST_CHECK(in_order_within(acked, values(*l)));
}

// A copy is dropped only once an explicit change removed its member (it is
// among the voters before the change). Voters that never named it, as
// after a bootstrap from another member's map when etcd lost its keys, do
// not make it drop what may be the only copy of a record.
BOOST_FIXTURE_TEST_CASE(a_copy_is_dropped_only_after_a_change_removed_it,
                        failover_fixture) {
  BOOST_REQUIRE(leader(10s));
  add_values(5);
  BOOST_REQUIRE(eventually([&] { return values(2).size() >= 5; }));
  // What a bootstrap without c would write: voters a and b, no previous
  // set, and (as after a lost etcd) no candidacies.
  auto client = etcd.client();
  auto base = "/mnemo/test/shards/" + std::to_string(shard) + "/";
  auto done = client->txn(
      {}, {etcd_op::put(base + "voters", R"({"voters":["a","b"],"previous":[]})"),
           etcd_op::erase_prefix(base + "candidates/")});
  BOOST_REQUIRE(done && done->succeeded);
  BOOST_REQUIRE(set_becomes([](const replica_set& s) { return s.established; },
                            20s));
  std::this_thread::sleep_for(1500ms);
  BOOST_CHECK_GE(values(2).size(), 5u);
  BOOST_CHECK(pe::replica_log(*m[2].journal, shard).end_position().value() > 0);
}

// A replacement never shrinks a set: the old member is removed only while
// the voters are more than before their last change. A set that a
// removal made (or a bootstrap, with no previous set) keeps its size,
// whoever replaces whom in it.
BOOST_AUTO_TEST_CASE(a_replacement_never_shrinks_a_set) {
  auto set = [](std::vector<std::string> voters,
                std::vector<std::string> previous) {
    replica_set s;
    s.shard = 7;
    s.voters = std::move(voters);
    s.previous = std::move(previous);
    s.established = true;
    return s;
  };
  auto what = [](const replica_set& s, const char* old_member,
                 const char* new_member) {
    return next_replace_step(s, old_member, new_member).what;
  };
  // d was just promoted: either replacement may remove its member.
  auto grown = set({"a", "b", "c", "d"}, {"a", "b", "c"});
  BOOST_CHECK_EQUAL(what(grown, "c", "d"), replace_step::remove_old);
  BOOST_CHECK_EQUAL(what(grown, "b", "d"), replace_step::remove_old);
  // c went first: b by d would leave two voters.
  auto after = set({"a", "b", "d"}, {"a", "b", "c", "d"});
  BOOST_CHECK_EQUAL(what(after, "c", "d"), replace_step::done);
  auto refused = next_replace_step(after, "b", "d");
  BOOST_CHECK_EQUAL(refused.what, replace_step::refused);
  BOOST_TEST_MESSAGE(refused.why);
  BOOST_CHECK(refused.why.find("shard 7") != std::string::npos);
  // A bootstrapped set has no previous one: a member that votes already
  // replaces nobody.
  BOOST_CHECK_EQUAL(what(set({"a", "b", "c"}, {}), "b", "c"),
                    replace_step::refused);
  // Two promotions, then one removal: still above three, the other
  // replacement goes on (d and e replace c and b).
  auto two = set({"a", "b", "c", "d", "e"}, {"a", "b", "c", "d"});
  BOOST_CHECK_EQUAL(what(two, "b", "e"), replace_step::remove_old);
  BOOST_CHECK_EQUAL(what(two, "c", "d"), replace_step::remove_old);
  auto one_out = set({"a", "b", "d", "e"}, {"a", "b", "c", "d", "e"});
  BOOST_CHECK_EQUAL(what(one_out, "b", "e"), replace_step::refused);
}

// Two operators replace different members of one shard by the same new
// one at once (c by d, and b by d), each with its own etcd client, while
// appends go on. Every step is a transaction on the revisions it read, so
// each is taken once: both see d observe and promoted, then the first
// removal wins and the other replacement is refused instead of taking the
// set to two voters. The set keeps three voters, with a and d, and every
// acknowledged record.
BOOST_FIXTURE_TEST_CASE(two_replacements_racing_on_a_shard_keep_its_size,
                        failover_fixture) {
  BOOST_REQUIRE(leader(10s));
  add_values(3);
  restart(3, false);  // d runs, in no set yet
  struct outcome {
    replace_step::kind last = replace_step::wait;
    std::string why;
    std::vector<replace_step::kind> taken;
  };
  std::array<outcome, 2> out;
  std::array<std::string, 2> old_members{"c", "b"};
  std::atomic<bool> go{false};
  auto run = [&](size_t k) {
    auto client = etcd.client();
    while (!go) std::this_thread::yield();
    for (auto deadline = std::chrono::steady_clock::now() + 40s;
         std::chrono::steady_clock::now() < deadline;) {
      auto r = replace_member(*client, "/mnemo/test", shard, old_members[k], "d");
      if (!r) {
        out[k].why = runtime::describe(r.error());
        return;
      }
      out[k].last = r->first.what;
      if (r->first.what == replace_step::done ||
          r->first.what == replace_step::refused) {
        out[k].why = r->first.why;
        return;
      }
      if (r->first.what != replace_step::wait)
        out[k].taken.push_back(r->first.what);
      std::this_thread::sleep_for(20ms);
    }
    out[k].why = "no end within 40 s";
  };
  std::thread first{run, 0};
  std::thread second{run, 1};
  go = true;
  add_values(10);
  first.join();
  second.join();
  for (size_t k = 0; k < 2; ++k)
    BOOST_TEST_MESSAGE(old_members[k] << " by d: last step " << out[k].last
                                      << ", " << out[k].taken.size()
                                      << " taken; " << out[k].why);
  std::map<replace_step::kind, size_t> taken;
  for (auto& o : out)
    for (auto k : o.taken) ++taken[k];
  BOOST_CHECK_EQUAL(taken[replace_step::observe_new], 1u);
  BOOST_CHECK_EQUAL(taken[replace_step::promote_new], 1u);
  BOOST_CHECK_EQUAL(taken[replace_step::remove_old], 1u);
  size_t done = 0, refused = 0;
  for (auto& o : out) {
    done += o.last == replace_step::done ? 1 : 0;
    refused += o.last == replace_step::refused ? 1 : 0;
  }
  BOOST_CHECK_EQUAL(done, 1u);
  BOOST_CHECK_EQUAL(refused, 1u);
  auto now = set();
  BOOST_TEST_MESSAGE("voters " << now.voters.size());
  BOOST_REQUIRE_EQUAL(now.voters.size(), 3u);
  BOOST_CHECK(std::count(now.voters.begin(), now.voters.end(), "a") == 1);
  BOOST_CHECK(std::count(now.voters.begin(), now.voters.end(), "d") == 1);
  BOOST_CHECK(now.observers.empty());
  // The set the winner left leads, with every acknowledged record.
  add_values(3);
  BOOST_REQUIRE(set_becomes([](const replica_set& s) { return s.established; }));
  auto l = leader(1s);
  BOOST_REQUIRE(l);
  BOOST_CHECK(in_order_within(added, values(*l)));
}

// Ongaro's single-server change bug, with a zombie leader: the leader of
// {a, b, c} loses its coordinator (no etcd, no lease watchdog) while its
// replicator goes on leading and appends keep coming to it. d, observing
// and ready, is promoted; the candidacies go with the change (R2), so the
// new leader is one of the others, and its recovery from a majority of the
// four promises its epoch on at least one member of every majority the
// zombie could use (R1, R3): from then on the zombie acknowledges nothing,
// and what it acknowledged before is in the new leader's log. The zombie
// is removed only once the four are established (R4), and the three left
// acknowledge without it.
BOOST_FIXTURE_TEST_CASE(a_zombie_leader_is_fenced_across_a_change_of_voters,
                        failover_fixture) {
  BOOST_REQUIRE(leader(10s));
  add_values(3);
  observe_d(3);
  auto client = etcd.client();
  auto z = leader(1s);
  BOOST_REQUIRE(z);
  BOOST_REQUIRE(*z != 3u);
  // The zombie: its replicator leads on, nobody tells it otherwise.
  coord[*z]->abandon();
  coord[*z].reset();
  std::atomic<bool> stop{false};
  std::mutex zombie_mtx;
  std::vector<std::string> zombie_acked;
  std::string zombie_last_error;
  std::thread zombie{[&] {
    for (int k = 1; !stop; ++k) {
      auto v = "z" + std::to_string(k);
      auto r = append(*z, v);
      std::lock_guard<std::mutex> guard{zombie_mtx};
      if (r)
        zombie_acked.push_back(v);
      else
        zombie_last_error = r.error().to_string();
      std::this_thread::sleep_for(20ms);
    }
  }};
  std::this_thread::sleep_for(200ms);
  // Within the zombie's lease: its ready key for d is still there.
  auto promoted = promote(*client, "/mnemo/test", shard, "d");
  BOOST_REQUIRE_MESSAGE(promoted,
                        (promoted ? "" : runtime::describe(promoted.error())));
  BOOST_CHECK(!promoted->established);
  // Not before the four are established.
  auto early = remove_voter(*client, "/mnemo/test", shard, m[*z].id);
  BOOST_CHECK(!early);
  BOOST_REQUIRE(set_becomes([](const replica_set& s) { return s.established; },
                            20s));
  auto new_leader = leader(5s);
  BOOST_REQUIRE(new_leader);
  size_t zombie_acks_then = 0;
  {
    std::lock_guard<std::mutex> guard{zombie_mtx};
    zombie_acks_then = zombie_acked.size();
  }
  std::this_thread::sleep_for(500ms);
  {
    std::lock_guard<std::mutex> guard{zombie_mtx};
    BOOST_TEST_MESSAGE("the zombie acknowledged " << zombie_acked.size()
                                                  << " appends; last refusal: "
                                                  << zombie_last_error);
    // Fenced: nothing more once the new set's leader committed its epoch.
    BOOST_CHECK_EQUAL(zombie_acked.size(), zombie_acks_then);
    BOOST_CHECK(!zombie_last_error.empty());
  }
  auto removed = remove_voter(*client, "/mnemo/test", shard, m[*z].id);
  BOOST_REQUIRE_MESSAGE(removed,
                        (removed ? "" : runtime::describe(removed.error())));
  BOOST_CHECK_EQUAL(removed->voters.size(), 3u);
  stop = true;
  zombie.join();
  // The zombie goes for good; the three left acknowledge without it.
  m[*z].stop();
  link_all();
  add_values(3);
  auto last = leader(1s);
  BOOST_REQUIRE(last);
  BOOST_CHECK_NE(*last, *z);
  auto log = values(*last);
  BOOST_CHECK(in_order_within(added, log));
  // Everything the zombie acknowledged is kept, in its order.
  BOOST_CHECK(in_order_within(zombie_acked, log));
}

// A voters key that holds no voter list (an operator's mistake) is not
// read as any set: nobody becomes a candidate for the shard, and once the
// key holds a list, a leader is elected. Made unreadable later, it stops
// new candidacies only: the leader and the queued candidates, made under
// the last good voters, keep their terms and places.
BOOST_FIXTURE_TEST_CASE(an_unreadable_voters_key_holds_every_candidacy,
                        unreadable_voters_fixture) {
  std::this_thread::sleep_for(3s);
  BOOST_CHECK_EQUAL(leaders(), 0u);
  BOOST_CHECK(candidates().empty());
  auto client = etcd.client();
  BOOST_REQUIRE(client->put(
      "/mnemo/test/shards/" + std::to_string(shard) + "/voters",
      R"({"voters":["a","b","c"],"previous":[]})"));
  auto first = leader(10s);
  BOOST_REQUIRE(first);
  BOOST_CHECK(append(*first, "v1"));
  // Unreadable again while a leader runs: it keeps its term (its voters
  // are the last good ones); a member that starts now makes no candidacy,
  // while those made under the last good voters keep their places.
  BOOST_REQUIRE(client->put(
      "/mnemo/test/shards/" + std::to_string(shard) + "/voters", "[]"));
  std::this_thread::sleep_for(500ms);
  BOOST_CHECK_EQUAL(leaders(), 1u);
  BOOST_CHECK(append(*first, "v2"));
  kill(*first);
  restart(*first, false);
  auto next = leader(10s);
  BOOST_REQUIRE(next);
  BOOST_CHECK_NE(*next, *first);
  BOOST_CHECK(append(*next, "v3"));
  BOOST_CHECK((values(*next) == std::vector<std::string>{"v1", "v2", "v3"}));
  std::this_thread::sleep_for(1s);
  for (auto& c : candidates()) BOOST_CHECK_NE(c, m[*first].id);
  // Readable again: the restarted member queues as a candidate.
  BOOST_REQUIRE(client->put(
      "/mnemo/test/shards/" + std::to_string(shard) + "/voters",
      R"({"voters":["a","b","c"],"previous":[]})"));
  BOOST_CHECK(eventually([&] {
    auto c = candidates();
    return std::find(c.begin(), c.end(), m[*first].id) != c.end();
  }));
  // The leader was elected under the earlier voters: it does not vouch
  // for the ones written since (R4 needs a leader of these voters).
  std::this_thread::sleep_for(500ms);
  BOOST_CHECK(!set().established);
}

BOOST_AUTO_TEST_SUITE_END()
