// A replicated cluster of three nodes in one process (`--cluster.etcd`
// with a real etcd on loopback): aggregates routed through the cluster go
// to their shard's leader, every shard's log is the same on all three
// members, and when a leader dies without a word (its coordinator
// abandoned, as in a killed process) another member takes its shards
// within seconds, with every acknowledged command and each command id
// applied once. The replication messages travel through the cluster's
// endpoints (joined members only).

#include <boost/test/unit_test.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include <caf/scoped_actor.hpp>

#include "../actors/counter.hpp"
#include "../support/etcd_server.hpp"
#include "../support/free_ports.hpp"
#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/actors/remote_aggregate.hpp"
#include "mnemo/persistence/replica_log.hpp"
#include "mnemo/runtime/atoms.hpp"
#include "mnemo/runtime/coordination/replica_sets.hpp"
#include "mnemo/runtime/coordination/shard_coordinator.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/node.hpp"

using namespace mnemo;
using namespace mnemo::runtime::coordination;
using namespace std::chrono_literals;
using counter_model::add;
using counter_model::count;
using counter_model::counter;
namespace pe = mnemo::persistence;

namespace {

constexpr uint32_t shards = 4;

struct ha_member {
  std::string id;
  actors::temp_directory dir;
  std::unique_ptr<runtime::node_config> cfg;
  std::unique_ptr<runtime::node> node;
  caf::actor router;
};

struct ha_fixture {
  test::etcd_server etcd;
  uint16_t port = mnemo::test::free_port_block(4);
  // a, b and c start with the fixture; d only when a test starts it.
  std::array<ha_member, 4> m;
  std::mutex log_mtx;
  size_t replicas = 3;
  size_t snapshot_every = 0;

  explicit ha_fixture(size_t replica_count = 3, size_t snapshots_every = 0)
      : replicas(replica_count), snapshot_every(snapshots_every) {
    m[0].id = "a";
    m[1].id = "b";
    m[2].id = "c";
    m[3].id = "d";
    for (size_t i = 0; i < 3; ++i) start(i);
  }

  ~ha_fixture() {
    for (auto& x : m) stop(x);
  }

  static void stop(ha_member& x) {
    x.router = nullptr;
    x.node.reset();
    x.cfg.reset();
  }

  // "id@127.0.0.1:port" of member `i`.
  std::string listed(size_t i) const {
    return m[i].id + "@127.0.0.1:" + std::to_string(port + i);
  }

  // Starts member `i` with `members` as its member list (default: a, b
  // and c).
  void start(size_t i, std::string members = {}) {
    if (members.empty())
      members = listed(0) + "," + listed(1) + "," + listed(2);
    auto& x = m[i];
    x.cfg = std::make_unique<runtime::node_config>();
    auto& c = *x.cfg;
    c.data_dir = (x.dir.path() / "data").string();
    c.durability = "nosync";
    if (snapshot_every != 0) c.snapshot_every = snapshot_every;
    c.cluster.node_id = x.id;
    c.cluster_members = members;
    c.cluster.shards = shards;
    c.cluster.secret = "replicated-test-secret-0123";
    c.cluster.plain_tcp = true;
    c.cluster.retry_ms = 50;
    c.cluster.heartbeat_ms = 100;
    c.cluster.connection_timeout_ms = 1000;
    c.cluster_etcd = "127.0.0.1:" + std::to_string(etcd.client_port);
    c.cluster_etcd_prefix = "/mnemo/replicated-test";
    c.cluster_lease_ttl_s = 2;
    c.cluster_replicas = replicas;
    auto id = x.id;
    c.cluster_events = [this, id](const std::string& what,
                                  const std::string& detail) {
      std::lock_guard<std::mutex> guard{log_mtx};
      BOOST_TEST_MESSAGE(id << ": " << what << " " << detail);
    };
    auto n = runtime::node::start(c);
    BOOST_REQUIRE_MESSAGE(n, (n ? "" : runtime::describe(n.error())));
    x.node = std::move(*n);
    counter::register_types(x.node->registry());
    auto local = actors::spawn_aggregate_registry<counter>(*x.node);
    x.router = x.node->cluster()->route(counter::type_name, local,
                                        actors::aggregate_protocol<counter>());
    x.node->track(x.router);
    auto err = x.node->start_replication();
    BOOST_REQUIRE_MESSAGE(!err, runtime::describe(err));
  }

  uint32_t shard_of(const std::string& id) {
    return runtime::entity_shard(counter::type_name, id, shards);
  }

  // Waits until every running member names the same leader for every
  // shard; returns them.
  std::map<uint32_t, std::string> leaders(std::chrono::milliseconds within) {
    auto deadline = std::chrono::steady_clock::now() + within;
    std::map<uint32_t, std::string> result;
    while (std::chrono::steady_clock::now() < deadline) {
      result.clear();
      bool agreed = true;
      for (uint32_t s = 0; s < shards && agreed; ++s)
        for (auto& x : m) {
          if (!x.node) continue;
          auto l = x.node->cluster()->leader_of(s);
          auto [i, added] = result.emplace(s, l);
          if (l.empty() || i->second != l || !m[index(l)].node) agreed = false;
        }
      if (agreed) return result;
      std::this_thread::sleep_for(20ms);
    }
    BOOST_FAIL("the members did not agree on every shard's leader");
    return result;
  }

  // What went wrong with `r` (nothing if it holds a value): Boost.Test
  // evaluates a message also when the check passes.
  template <class T>
  static std::string why(const caf::expected<T>& r) {
    return r ? std::string{} : runtime::describe(r.error());
  }

  static size_t index(const std::string& id) {
    return id == "a" ? 0 : id == "b" ? 1 : id == "c" ? 2 : 3;
  }

  // Adds `n` to counter `id` through member `i`'s router.
  caf::expected<count> add_to(size_t i, const std::string& id, int64_t n,
                              const std::string& command_id = {}) {
    caf::scoped_actor self{m[i].node->system()};
    caf::expected<count> result{count{}};
    self->request(m[i].router, 5s, runtime::route_atom::value, id,
                  actors::command_message<counter>(add{n}, command_id))
        .receive([&](count& c) { result = c; },
                 [&](caf::error& err) { result = std::move(err); });
    return result;
  }

  // The records of `shard`'s log on member `i`.
  std::vector<std::string> records(size_t i, uint32_t shard) {
    pe::replica_log log{m[i].node->journal(), shard};
    std::vector<std::string> out;
    auto end = log.end_position();
    BOOST_REQUIRE(end);
    for (uint64_t from = 1; from <= *end;) {
      auto b = log.read(from, 1000, 1 << 20);
      BOOST_REQUIRE(b);
      if (b->records.empty()) break;
      out.insert(out.end(), b->records.begin(), b->records.end());
      from = b->end_position();
    }
    return out;
  }

  // Waits until the running members hold the same log for every shard.
  void expect_identical_logs(std::chrono::milliseconds within) {
    auto deadline = std::chrono::steady_clock::now() + within;
    std::string why;
    while (std::chrono::steady_clock::now() < deadline) {
      why.clear();
      for (uint32_t s = 0; s < shards && why.empty(); ++s) {
        std::optional<std::vector<std::string>> first;
        for (size_t i = 0; i < 3 && why.empty(); ++i) {
          if (!m[i].node) continue;
          auto r = records(i, s);
          if (!first)
            first = std::move(r);
          else if (r != *first)
            why = "shard " + std::to_string(s) + ": member " + m[i].id +
                  " holds " + std::to_string(r.size()) + " records, another " +
                  std::to_string(first->size());
        }
      }
      if (why.empty()) return;
      std::this_thread::sleep_for(50ms);
    }
    BOOST_FAIL("shard logs differ: " << why);
  }
};

// Three members, two replicas per shard: each member lacks some shards.
struct two_replica_fixture : ha_fixture {
  two_replica_fixture() : ha_fixture(2) {}
};

// Aggregates snapshot every 5 events.
struct snapshotting_fixture : ha_fixture {
  snapshotting_fixture() : ha_fixture(3, 5) {}
};

// What the read models of the shard logs on one member saw: every event
// by (stream, sequence), with the position it came at per source.
struct seen_events {
  std::mutex mtx;
  std::map<std::pair<std::string, uint64_t>, int> times;
  std::map<std::string, uint64_t> last_position;  // per source
  std::vector<std::string> out_of_order;

  std::map<std::pair<std::string, uint64_t>, int> snapshot() {
    std::lock_guard<std::mutex> guard{mtx};
    return times;
  }
};

// Spawns on member `x` the copies of a cluster-wide read model that
// records into `seen` what it handles (the counters' events).
std::vector<caf::actor> spawn_read_model(ha_member& x,
                                         std::shared_ptr<seen_events> seen) {
  actors::projection_spec spec;
  spec.name = "test.counted";
  spec.filter.event_types = {"counter.added"};
  std::vector<caf::actor> result;
  for (auto copy : actors::cluster_wide(spec, x.node->cluster())) {
    auto source = copy.source;
    copy.effect = [seen, source](const std::vector<pe::event_envelope>& evs) {
      std::lock_guard<std::mutex> guard{seen->mtx};
      for (auto& e : evs) {
        ++seen->times[{e.stream_id, e.sequence}];
        auto& last = seen->last_position[source];
        if (e.position <= last)
          seen->out_of_order.push_back(source + " at " +
                                       std::to_string(e.position));
        last = e.position;
      }
      return pe::error{};
    };
    actors::projection_context ctx{&x.node->journal(), &x.node->completions(),
                                   x.node->event_bus(), nullptr,
                                   x.node->cluster()};
    auto p = actors::spawn_projection(x.node->system(), ctx, copy);
    BOOST_REQUIRE_MESSAGE(p, (p ? "" : runtime::describe(p.error())));
    result.push_back(*p);
  }
  return result;
}

// Waits until `seen` holds exactly the events `want` (once each).
bool saw_exactly(seen_events& seen,
                 const std::map<std::pair<std::string, uint64_t>, int>& want,
                 std::chrono::milliseconds within) {
  auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (seen.snapshot() == want) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// Sends exit to the read model's copies (before the node stops).
void stop_read_model(std::vector<caf::actor>& copies) {
  for (auto& a : copies) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  copies.clear();
}

// Checks that a cluster-wide read model on every member handles each
// acknowledged event of the counters once: it follows the shard logs'
// committed records, read from the member's own replica or, for a shard
// it does not hold, through a member that does; then (`failover`) that it
// goes on after the leader of a shard is stopped.
void read_models_follow_the_shards(ha_fixture& f, bool failover) {
  auto led = f.leaders(15s);
  std::array<std::shared_ptr<seen_events>, 3> seen;
  std::array<std::vector<caf::actor>, 3> models;
  for (size_t i = 0; i < 3; ++i) {
    seen[i] = std::make_shared<seen_events>();
    models[i] = spawn_read_model(f.m[i], seen[i]);
    BOOST_CHECK_EQUAL(models[i].size(), shards);
  }
  std::map<std::pair<std::string, uint64_t>, int> want;
  std::map<std::string, uint64_t> sequence;
  for (int k = 0; k < 24; ++k) {
    auto id = "k" + std::to_string(k % 8);
    auto r = f.add_to(static_cast<size_t>(k % 3), id, k + 1);
    BOOST_REQUIRE_MESSAGE(r, f.why(r));
    want[{"counter-" + id, ++sequence[id]}] = 1;
  }
  for (size_t i = 0; i < 3; ++i) {
    BOOST_CHECK_MESSAGE(saw_exactly(*seen[i], want, 10s),
                        "member " << f.m[i].id << " saw "
                                  << seen[i]->snapshot().size() << " of "
                                  << want.size() << " events");
    BOOST_CHECK(seen[i]->out_of_order.empty());
  }
  if (!failover) {
    for (auto& copies : models) stop_read_model(copies);
    return;
  }
  // The leader of k0's shard goes (a clean stop: it leaves the elections);
  // the survivors' models go on with the events of the new leader.
  auto victim = f.index(led[f.shard_of("k0")]);
  stop_read_model(models[victim]);
  ha_fixture::stop(f.m[victim]);
  auto other = (victim + 1) % 3;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  caf::expected<count> r{caf::error{}};
  while (std::chrono::steady_clock::now() < deadline) {
    r = f.add_to(other, "k0", 1000, "after-failover");
    if (r) break;
    std::this_thread::sleep_for(50ms);
  }
  BOOST_REQUIRE_MESSAGE(r, f.why(r));
  want[{"counter-k0", ++sequence["k0"]}] = 1;
  for (size_t i = 0; i < 3; ++i) {
    if (i == victim) continue;
    BOOST_CHECK_MESSAGE(saw_exactly(*seen[i], want, 10s),
                        "after the failover member "
                            << f.m[i].id << " saw "
                            << seen[i]->snapshot().size() << " of "
                            << want.size() << " events");
    BOOST_CHECK(seen[i]->out_of_order.empty());
    stop_read_model(models[i]);
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(replicated_cluster)

BOOST_FIXTURE_TEST_CASE(read_models_follow_the_committed_shard_logs,
                        ha_fixture) {
  read_models_follow_the_shards(*this, true);
}

// A shard's replica set changes while read models follow it (two replicas
// of three members): the member without a copy observes, is promoted and
// one of the two is removed. Every member's read model goes on handling
// each event once: the removed member's copy of the read model now reads
// through another member (its own copy no longer grows), the new one from
// its own copy.
BOOST_FIXTURE_TEST_CASE(read_models_follow_a_changed_replica_set,
                        two_replica_fixture) {
  leaders(15s);
  std::array<std::shared_ptr<seen_events>, 3> seen;
  std::array<std::vector<caf::actor>, 3> models;
  for (size_t i = 0; i < 3; ++i) {
    seen[i] = std::make_shared<seen_events>();
    models[i] = spawn_read_model(m[i], seen[i]);
  }
  std::map<std::pair<std::string, uint64_t>, int> want;
  std::map<std::string, uint64_t> sequence;
  int k = 0;
  // Adds to k0..k7 through any member, with command ids: a command retried
  // through an election applies once.
  auto some = [&](int n) {
    for (int j = 0; j < n; ++j, ++k) {
      auto id = "k" + std::to_string(k % 8);
      auto cmd = "cmd-" + std::to_string(k);
      caf::expected<count> r{caf::error{}};
      for (auto deadline = std::chrono::steady_clock::now() + 15s;
           std::chrono::steady_clock::now() < deadline;) {
        r = add_to(static_cast<size_t>(k % 3), id, 1, cmd);
        if (r) break;
        std::this_thread::sleep_for(50ms);
      }
      BOOST_REQUIRE_MESSAGE(r, why(r));
      want[{"counter-" + id, ++sequence[id]}] = 1;
    }
  };
  some(16);
  auto s = shard_of("k0");
  auto client = etcd.client();
  const std::string prefix = "/mnemo/replicated-test";
  auto set = [&] {
    auto r = read_replica_set(*client, prefix, s);
    BOOST_REQUIRE_MESSAGE(r, why(r));
    return *r;
  };
  auto wait_for = [&](auto pred) {
    for (auto deadline = std::chrono::steady_clock::now() + 15s;
         std::chrono::steady_clock::now() < deadline;
         std::this_thread::sleep_for(20ms))
      if (pred(set())) return true;
    return false;
  };
  auto before = set();
  BOOST_REQUIRE_EQUAL(before.voters.size(), 2u);
  std::string outsider;
  for (auto& x : m)
    if (x.node && std::find(before.voters.begin(), before.voters.end(),
                            x.id) == before.voters.end())
      outsider = x.id;
  BOOST_REQUIRE(wait_for([](const replica_set& r) { return r.established; }));
  BOOST_REQUIRE(observe(*client, prefix, s, outsider));
  BOOST_REQUIRE(wait_for([&](const replica_set& r) {
    return r.ready == std::vector<std::string>{outsider};
  }));
  auto promoted = promote(*client, prefix, s, outsider);
  BOOST_REQUIRE_MESSAGE(promoted, why(promoted));
  some(8);
  BOOST_REQUIRE(wait_for([](const replica_set& r) { return r.established; }));
  auto removed_id = before.voters.front();
  auto removed = remove_voter(*client, prefix, s, removed_id);
  BOOST_REQUIRE_MESSAGE(removed, why(removed));
  BOOST_REQUIRE(wait_for([](const replica_set& r) { return r.established; }));
  some(16);
  BOOST_TEST_MESSAGE("shard " << s << ": " << removed_id << " replaced by "
                              << outsider);
  for (size_t i = 0; i < 3; ++i) {
    BOOST_CHECK_MESSAGE(saw_exactly(*seen[i], want, 15s),
                        "member " << m[i].id << " saw "
                                  << seen[i]->snapshot().size() << " of "
                                  << want.size() << " events");
    BOOST_CHECK(seen[i]->out_of_order.empty());
  }
  // The removed member's copy of the shard is dropped; the new one holds
  // the shard's whole log.
  auto r = index(removed_id);
  auto o = index(outsider);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!records(r, s).empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  BOOST_CHECK(records(r, s).empty());
  BOOST_CHECK(!records(o, s).empty());
  for (auto& copies : models) stop_read_model(copies);
}

// A member without a replica of a shard reads it through one that has.
// (With two replicas a shard cannot lose one and still commit: no
// failover here.)
BOOST_FIXTURE_TEST_CASE(read_models_read_shards_held_elsewhere,
                        two_replica_fixture) {
  read_models_follow_the_shards(*this, false);
}

BOOST_FIXTURE_TEST_CASE(commands_reach_the_leader_and_every_replica,
                        ha_fixture) {
  auto led = leaders(15s);
  BOOST_TEST_MESSAGE("leaders: a " << led[0] << " " << led[1] << " "
                                   << led[2] << " " << led[3]);
  // Through every member, to counters of every shard.
  std::map<std::string, int64_t> expected;
  for (int k = 0; k < 24; ++k) {
    auto id = "k" + std::to_string(k % 8);
    auto r = add_to(static_cast<size_t>(k % 3), id, k + 1);
    BOOST_REQUIRE_MESSAGE(r, why(r));
    expected[id] += k + 1;
    BOOST_CHECK_EQUAL(r->total, expected[id]);
  }
  std::set<uint32_t> used;
  for (auto& [id, total] : expected) used.insert(shard_of(id));
  BOOST_CHECK_GT(used.size(), 1u);
  expect_identical_logs(5s);
  // Each acknowledged event is in its shard's log on all three members.
  size_t total_records = 0;
  for (uint32_t s = 0; s < shards; ++s) total_records += records(0, s).size();
  // 24 events plus one epoch marker per shard led.
  BOOST_CHECK_GE(total_records, 24u);
}

BOOST_FIXTURE_TEST_CASE(a_dead_leader_fails_over_with_every_acknowledged_command,
                        ha_fixture) {
  auto led = leaders(15s);
  std::string id = "victim";
  auto victim = index(led[shard_of(id)]);
  auto other = (victim + 1) % 3;
  int64_t acked = 0;
  for (int k = 1; k <= 10; ++k) {
    auto r = add_to(other, id, k, "cmd-" + std::to_string(k));
    BOOST_REQUIRE_MESSAGE(r, why(r));
    acked += k;
    BOOST_CHECK_EQUAL(r->total, acked);
  }
  // The leader dies without a word: its lease runs out in etcd.
  BOOST_TEST_MESSAGE("killing " << m[victim].id);
  auto t0 = std::chrono::steady_clock::now();
  m[victim].node->coordinator()->abandon();
  stop(m[victim]);
  // Requests fail with a retryable error until another member leads.
  caf::expected<count> r{caf::error{}};
  size_t refusals = 0;
  do {
    r = add_to(other, id, 100, "cmd-after");
    if (r) break;
    ++refusals;
    BOOST_REQUIRE_MESSAGE(runtime::means_owner_lost(r.error()) ||
                              runtime::is(r.error(), pe::errc::not_leader),
                          why(r));
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() - t0 < 10s);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0)
                .count();
  BOOST_REQUIRE_MESSAGE(r, "no member took the shard within 10 s");
  BOOST_TEST_MESSAGE("failover took " << ms << " ms, " << refusals
                                      << " refused requests");
  BOOST_CHECK_LT(ms, 5000);
  BOOST_CHECK_EQUAL(r->total, acked + 100);
  // A command sent again with its id is answered, not applied twice.
  auto again = add_to(other, id, 5, "cmd-5");
  BOOST_REQUIRE_MESSAGE(again, why(again));
  auto now = add_to(other, id, 0);
  BOOST_REQUIRE(now);
  BOOST_CHECK_EQUAL(now->total, acked + 100);
  // The dead member comes back and catches up.
  start(victim);
  leaders(15s);
  expect_identical_logs(10s);
  auto through_victim = add_to(victim, id, 1);
  BOOST_REQUIRE_MESSAGE(through_victim,
                        why(through_victim));
  BOOST_CHECK_EQUAL(through_victim->total, acked + 101);
}

// An aggregate's snapshots travel in its shard's log: every replica holds
// the same ones, so the member that leads after a failover recovers from
// one; its window of processed command ids comes with it, so a command
// retried after the failover is answered, not applied again.
BOOST_FIXTURE_TEST_CASE(snapshots_reach_every_replica_and_serve_the_next_leader,
                        snapshotting_fixture) {
  auto led = leaders(15s);
  std::string id = "snapped";
  auto stream = "counter-" + id;
  auto victim = index(led[shard_of(id)]);
  auto other = (victim + 1) % 3;
  int64_t acked = 0;
  for (int k = 1; k <= 12; ++k) {
    auto r = add_to(other, id, k, "cmd-" + std::to_string(k));
    BOOST_REQUIRE_MESSAGE(r, why(r));
    acked += k;
  }
  // Snapshots at 5 and 10 (two kept), the same on all three members.
  auto sequences = [&](size_t i) {
    std::vector<uint64_t> out;
    auto list = m[i].node->journal().snapshots().list(stream);
    BOOST_REQUIRE(list);
    for (auto& meta : *list) out.push_back(meta.sequence);
    return out;
  };
  const std::vector<uint64_t> want{5, 10};
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline &&
         !(sequences(0) == want && sequences(1) == want &&
           sequences(2) == want))
    std::this_thread::sleep_for(20ms);
  for (size_t i = 0; i < 3; ++i)
    BOOST_CHECK_MESSAGE(sequences(i) == want,
                        "member " << m[i].id << " holds "
                                  << sequences(i).size() << " snapshots");
  auto latest = [&](size_t i) {
    auto s = m[i].node->journal().snapshots().load(
        stream, pe::snapshot_criteria::latest());
    BOOST_REQUIRE(s && *s);
    return std::move(**s);
  };
  auto original = latest(victim);
  for (size_t i = 0; i < 3; ++i) {
    auto copy = latest(i);
    BOOST_CHECK_EQUAL(copy.meta.sequence, 10u);
    BOOST_CHECK_EQUAL(copy.meta.timestamp_us, original.meta.timestamp_us);
    BOOST_CHECK(copy.payload == original.payload);
    BOOST_CHECK(copy.metadata == original.metadata);
  }
  expect_identical_logs(5s);
  // The leader dies; another recovers the counter from its own copy.
  m[victim].node->coordinator()->abandon();
  stop(m[victim]);
  caf::expected<count> r{caf::error{}};
  deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    r = add_to(other, id, 100, "cmd-after");
    if (r) break;
    std::this_thread::sleep_for(50ms);
  }
  BOOST_REQUIRE_MESSAGE(r, why(r));
  BOOST_CHECK_EQUAL(r->total, acked + 100);
  auto again = add_to(other, id, 3, "cmd-3");
  BOOST_REQUIRE_MESSAGE(again, why(again));
  BOOST_CHECK_EQUAL(again->total, 6);  // the original answer
  auto now = add_to(other, id, 0);
  BOOST_REQUIRE_MESSAGE(now, why(now));
  BOOST_CHECK_EQUAL(now->total, acked + 100);
}

// A machine that was in no member list joins the running cluster through
// etcd's member directory: started with a member list of one seed and
// itself, it announces its address, the others connect to it, and no
// member restarts. `replace_member` then moves every shard of "c" to it
// (observe, promote once ready, remove "c") while commands keep coming;
// nothing acknowledged is lost, "c" leads nothing after its removal and
// can go, and started again with its old member list it joins without a
// shard-map complaint and leads nothing.
BOOST_FIXTURE_TEST_CASE(a_new_member_joins_through_etcd_and_replaces_another,
                        ha_fixture) {
  leaders(15s);
  std::map<std::string, int64_t> totals;
  int next_command = 0;
  // Adds 1 to counter `id` through member `via`, retrying with the same
  // command id through a failover or a voter change (10 s at most).
  auto add_one = [&](size_t via, const std::string& id) {
    auto cmd = "cmd-" + std::to_string(++next_command);
    caf::expected<count> r{caf::error{}};
    for (auto deadline = std::chrono::steady_clock::now() + 10s;
         std::chrono::steady_clock::now() < deadline;
         std::this_thread::sleep_for(50ms)) {
      r = add_to(via, id, 1, cmd);
      if (r) break;
      BOOST_REQUIRE_MESSAGE(runtime::means_owner_lost(r.error()) ||
                                runtime::is(r.error(),
                                            runtime::errc::owner_unavailable) ||
                                runtime::is(r.error(), pe::errc::not_leader),
                            why(r));
    }
    BOOST_REQUIRE_MESSAGE(r, "counter " << id << ": " << why(r));
    BOOST_CHECK_EQUAL(r->total, ++totals[id]);
  };
  for (int k = 0; k < 16; ++k) add_one(k % 3, "n" + std::to_string(k % 8));

  // d's member list names a seed and itself only.
  start(3, listed(0) + "," + listed(3));
  BOOST_CHECK_EQUAL(m[3].node->coordinator()->shard_map_error(), "");
  auto all_joined = [&] {
    for (size_t i = 0; i < 4; ++i) {
      std::vector<std::string> others;
      for (size_t k = 0; k < 4; ++k)
        if (k != i) others.push_back(m[k].id);
      if (m[i].node->cluster()->connected() != others) return false;
    }
    return true;
  };
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!all_joined() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  for (size_t i = 0; i < 4; ++i)
    BOOST_CHECK_EQUAL(m[i].node->cluster()->connected().size(), 3u);
  BOOST_CHECK((m[1].node->cluster()->members() ==
               std::vector<std::string>{"a", "b", "c", "d"}));

  // Every shard of c moves to d, one step at a time, while commands come.
  auto client = etcd.client();
  const std::string prefix = "/mnemo/replicated-test";
  std::set<uint32_t> pending;
  for (uint32_t s = 0; s < shards; ++s) pending.insert(s);
  std::map<std::string, int> steps;
  deadline = std::chrono::steady_clock::now() + 60s;
  for (int k = 0; !pending.empty() && std::chrono::steady_clock::now() < deadline;
       ++k) {
    for (auto i = pending.begin(); i != pending.end();) {
      auto r = replace_member(*client, prefix, *i, "c", "d");
      BOOST_REQUIRE_MESSAGE(r, why(r));
      switch (r->first.what) {
        case replace_step::done: i = pending.erase(i); continue;
        case replace_step::wait: break;
        case replace_step::observe_new: ++steps["observe"]; break;
        case replace_step::promote_new: ++steps["promote"]; break;
        case replace_step::remove_old: ++steps["remove"]; break;
        case replace_step::unobserve_old: ++steps["unobserve"]; break;
        case replace_step::refused:
          BOOST_FAIL("shard " << *i << ": " << r->first.why);
      }
      ++i;
    }
    add_one(k % 2, "n" + std::to_string(k % 8));
  }
  BOOST_REQUIRE_MESSAGE(pending.empty(),
                        pending.size() << " shard(s) not moved within 60 s");
  BOOST_CHECK_EQUAL(steps["observe"], static_cast<int>(shards));
  BOOST_CHECK_EQUAL(steps["promote"], static_cast<int>(shards));
  BOOST_CHECK_EQUAL(steps["remove"], static_cast<int>(shards));
  BOOST_CHECK_EQUAL(steps["unobserve"], 0);
  for (uint32_t s = 0; s < shards; ++s) {
    auto set = read_replica_set(*client, prefix, s);
    BOOST_REQUIRE(set);
    auto voters = set->voters;
    std::sort(voters.begin(), voters.end());
    BOOST_CHECK((voters == std::vector<std::string>{"a", "b", "d"}));
    BOOST_CHECK(set->observers.empty());
    // Done again is done: the run can be repeated.
    auto again = replace_member(*client, prefix, s, "c", "d");
    BOOST_REQUIRE(again);
    BOOST_CHECK_EQUAL(again->first.what, replace_step::done);
  }
  // c leads nothing now (once every member looked at etcd again) and goes;
  // every counter keeps its total.
  auto c_leads = [&] {
    for (auto& [s, l] : leaders(15s))
      if (l == "c") return true;
    return false;
  };
  deadline = std::chrono::steady_clock::now() + 10s;
  while (c_leads() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  BOOST_CHECK(!c_leads());
  // c drops its copies once the sets without it are established.
  deadline = std::chrono::steady_clock::now() + 15s;
  auto c_holds = [&] {
    for (uint32_t s = 0; s < shards; ++s)
      if (!records(2, s).empty()) return true;
    return false;
  };
  while (c_holds() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  BOOST_CHECK(!c_holds());
  m[2].node->coordinator()->abandon();
  stop(m[2]);
  for (int k = 0; k < 8; ++k) add_one(k % 2 == 0 ? 0 : 3, "n" + std::to_string(k));
  // a, b and d hold the same log of every shard.
  deadline = std::chrono::steady_clock::now() + 10s;
  std::string differs;
  do {
    differs.clear();
    for (uint32_t s = 0; s < shards && differs.empty(); ++s) {
      auto first = records(0, s);
      for (size_t i : {1, 3})
        if (records(i, s) != first)
          differs = "shard " + std::to_string(s) + " on " + m[i].id;
    }
    if (!differs.empty()) std::this_thread::sleep_for(50ms);
  } while (!differs.empty() && std::chrono::steady_clock::now() < deadline);
  BOOST_CHECK_MESSAGE(differs.empty(), "logs differ: " << differs);

  // c is taken out of the member directory, once its lease (and so its
  // live key) ran out: the others stop counting it as a member.
  std::optional<caf::expected<std::vector<std::string>>> forgot;
  deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    forgot = forget_member(*client, prefix, "c");
    if (*forgot || std::chrono::steady_clock::now() > deadline) break;
    BOOST_CHECK(runtime::describe(forgot->error()).find("runs") !=
                std::string::npos);
    std::this_thread::sleep_for(100ms);
  }
  BOOST_REQUIRE_MESSAGE(*forgot, why(*forgot));
  BOOST_CHECK(!(*forgot)->empty());
  auto lists_c = [&](size_t i) {
    auto ms = m[i].node->cluster()->members();
    return std::find(ms.begin(), ms.end(), "c") != ms.end();
  };
  deadline = std::chrono::steady_clock::now() + 10s;
  while ((lists_c(0) || lists_c(1) || lists_c(3)) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  BOOST_CHECK(!lists_c(0) && !lists_c(1) && !lists_c(3));
  // A forgotten member blocks no voter change (it records no protocol).
  auto protocols = check_protocols(*client, prefix);
  BOOST_CHECK_MESSAGE(!protocols, runtime::describe(protocols));
  // A running member cannot be forgotten, nor one a shard names (here an
  // observer that never started).
  auto running = forget_member(*client, prefix, "a");
  BOOST_REQUIRE(!running);
  BOOST_CHECK(runtime::describe(running.error()).find("runs") !=
              std::string::npos);
  BOOST_REQUIRE(observe(*client, prefix, 0, "zz"));
  auto held = forget_member(*client, prefix, "zz");
  BOOST_REQUIRE(!held);
  BOOST_CHECK(runtime::describe(held.error()).find("a replica of shard(s) [0]") !=
              std::string::npos);
  BOOST_REQUIRE(unobserve(*client, prefix, 0, "zz"));
  // c comes back with its old member list: it is back in the directory,
  // joins (d included, from the directory), takes part without a
  // shard-map error, and leads nothing.
  start(2);
  deadline = std::chrono::steady_clock::now() + 10s;
  while (!all_joined() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  BOOST_CHECK((m[2].node->cluster()->connected() ==
               std::vector<std::string>{"a", "b", "d"}));
  BOOST_CHECK(lists_c(0) && lists_c(1) && lists_c(3));
  BOOST_CHECK_EQUAL(m[2].node->coordinator()->shard_map_error(), "");
  std::this_thread::sleep_for(1s);
  BOOST_CHECK(!c_leads());
  for (int k = 0; k < 8; ++k) add_one(2, "n" + std::to_string(k));
}

// Members that disagree on the replication settings (and so on their
// shards' replica sets) refuse each other at join; agreeing ones join.
// Nothing here talks to etcd: the elections never start.
BOOST_AUTO_TEST_CASE(members_with_other_replication_settings_never_join) {
  auto port = mnemo::test::free_port_block(2);
  auto joins = [port](size_t replicas_of_b) {
    std::array<actors::temp_directory, 2> dirs;
    std::array<std::unique_ptr<runtime::node_config>, 2> cfgs;
    std::array<std::unique_ptr<runtime::node>, 2> nodes;
    auto refused = std::make_shared<std::atomic<int>>(0);
    for (size_t i = 0; i < 2; ++i) {
      cfgs[i] = std::make_unique<runtime::node_config>();
      auto& c = *cfgs[i];
      c.data_dir = (dirs[i].path() / "data").string();
      c.durability = "nosync";
      c.cluster.node_id = i == 0 ? "a" : "b";
      c.cluster_members = "a@127.0.0.1:" + std::to_string(port) +
                          ",b@127.0.0.1:" + std::to_string(port + 1);
      c.cluster.shards = shards;
      c.cluster.secret = "replicated-test-secret-0123";
      c.cluster.plain_tcp = true;
      c.cluster.retry_ms = 50;
      c.cluster_etcd = "127.0.0.1:1";  // never contacted
      c.cluster_replicas = i == 0 ? 2 : replicas_of_b;
      c.cluster_events = [refused](const std::string& what,
                                   const std::string& detail) {
        if (what == "join_refused" &&
            detail.find("replicas=") != std::string::npos)
          ++*refused;
      };
      auto n = runtime::node::start(c);
      BOOST_REQUIRE_MESSAGE(n, (n ? "" : runtime::describe(n.error())));
      nodes[i] = std::move(*n);
    }
    auto deadline = std::chrono::steady_clock::now() + 3s;
    bool joined = false;
    while (!joined && std::chrono::steady_clock::now() < deadline) {
      joined = !nodes[0]->cluster()->connected().empty() &&
               !nodes[1]->cluster()->connected().empty();
      std::this_thread::sleep_for(20ms);
    }
    for (auto& n : nodes) n.reset();
    return std::make_pair(joined, refused->load());
  };
  auto [joined_same, refused_same] = joins(2);
  BOOST_CHECK(joined_same);
  BOOST_CHECK_EQUAL(refused_same, 0);
  auto [joined_other, refused_other] = joins(3);
  BOOST_CHECK(!joined_other);
  BOOST_CHECK_GT(refused_other, 0);
}

BOOST_AUTO_TEST_SUITE_END()
