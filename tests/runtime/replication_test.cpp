// Quorum replication of shard logs between three members' replicators in
// one actor system, each over its own journal: an append is acknowledged
// once a majority holds it and never before; a new leader takes over the
// most up-to-date log of a majority, so an acknowledged record survives
// the loss of its leader even when the new leader lacked it; what no
// majority held is truncated; an old leader is fenced by the followers'
// promises; a restarted follower catches up; malformed batches from a peer
// are refused. Leadership is given by hand here (etcd decides it in a
// cluster). Every new leader writes an epoch marker first, so shard
// positions count one marker per leadership.

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <future>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include "mnemo/actors/testkit.hpp"
#include "replica_member.hpp"
#include "mnemo/persistence/replica_log.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/replication/replicator.hpp"

using namespace mnemo;
using namespace mnemo::runtime::replication;
namespace repl = mnemo::runtime::replication;
using namespace std::chrono_literals;
namespace pe = mnemo::persistence;

namespace {

using mnemo::test::event;
using mnemo::test::member;
using mnemo::test::shard;

struct cluster_fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::array<member, 3> m;

  cluster_fixture() {
    m[0].id = "a";
    m[1].id = "b";
    m[2].id = "c";
    for (auto& x : m) x.start(sys);
    for (auto& x : m) connect_all(x);
  }

  ~cluster_fixture() {
    for (auto& x : m)
      if (x.replicator) x.stop();
  }

  member& get(const std::string& id) {
    for (auto& x : m)
      if (x.id == id) return x;
    BOOST_FAIL("no member " << id);
    return m[0];
  }

  // Tells `x` where every other member's replicator is.
  void connect_all(member& x) {
    for (auto& y : m)
      if (y.id != x.id) caf::anon_send(x.replicator, repl_peer_atom::value, y.id,
                                       y.replicator);
    for (auto& y : m)
      if (y.id != x.id && y.replicator)
        caf::anon_send(y.replicator, repl_peer_atom::value, x.id, x.replicator);
  }

  // `from` can no longer reach `to` (a cut link, one way).
  void cut(const std::string& from, const std::string& to) {
    caf::anon_send(get(from).replicator, repl_peer_atom::value, to,
                   caf::actor{});
  }
  void heal(const std::string& from, const std::string& to) {
    caf::anon_send(get(from).replicator, repl_peer_atom::value, to,
                   get(to).replicator);
  }

  caf::error lead(const std::string& id, uint64_t epoch,
                  std::vector<std::string> followers, bool strict = false) {
    caf::scoped_actor self{sys};
    caf::error result;
    self->request(get(id).replicator, 5s, repl_lead_atom::value, shard, epoch,
                  followers, strict)
        .receive([] {}, [&](caf::error& err) { result = std::move(err); });
    return result;
  }

  // `members` observe the shard while `id` leads it.
  void observe(const std::string& id, std::vector<std::string> members) {
    caf::anon_send(get(id).replicator, repl_observers_atom::value, shard,
                   std::move(members));
  }

  // Whether `id`, leading the shard, reports `member` ready (synced, a
  // voter, holding the commit point), waiting up to `within` for it.
  bool is_ready(const std::string& id, const std::string& member,
                std::chrono::milliseconds within = 0ms) {
    auto deadline = std::chrono::steady_clock::now() + within;
    for (;;) {
      caf::scoped_actor self{sys};
      bool r = false;
      self->request(get(id).replicator, 5s, repl_ready_atom::value, shard,
                    member)
          .receive([&](bool x) { r = x; }, [](caf::error&) {});
      if (r || std::chrono::steady_clock::now() >= deadline) return r;
      std::this_thread::sleep_for(10ms);
    }
  }

  void resign(const std::string& id) {
    caf::anon_send(get(id).replicator, repl_resign_atom::value, shard);
  }

  // Appends one event to `stream` on member `id`; the future holds the
  // acknowledgement.
  std::future<pe::expected<pe::append_result>> append(
      const std::string& id, const std::string& stream, const std::string& v) {
    auto p = std::make_shared<std::promise<pe::expected<pe::append_result>>>();
    auto f = p->get_future();
    std::vector<pe::new_event> evs{event(v)};
    get(id).journal->append(stream, std::move(evs), pe::expected_version::any(),
                            [p](pe::expected<pe::append_result> r) {
                              p->set_value(std::move(r));
                            });
    return f;
  }

  // Waits until the shard logs of `ids` equal `id0`'s.
  bool converged(const std::vector<std::string>& ids,
                 std::chrono::milliseconds within = 5s) {
    auto deadline = std::chrono::steady_clock::now() + within;
    for (;;) {
      auto ref = get(ids[0]).records();
      bool same = true;
      for (size_t i = 1; i < ids.size(); ++i)
        same = same && get(ids[i]).records() == ref;
      if (same) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(10ms);
    }
  }

  // `id`'s copy of the shard becomes a learner (its data was replaced)
  // that a leader of `epoch` or later makes a voter again.
  void make_learner(const std::string& id, uint64_t epoch) {
    caf::scoped_actor self{sys};
    self->request(get(id).replicator, 5s,
                  runtime::replication::repl_identity_atom::value,
                  std::vector<uint64_t>{shard, epoch})
        .receive([] {}, [](caf::error&) {});
  }

  // Waits until `id`'s copy of the shard votes again.
  bool votes_again(const std::string& id) {
    for (auto deadline = std::chrono::steady_clock::now() + 5s;
         std::chrono::steady_clock::now() < deadline;
         std::this_thread::sleep_for(10ms))
      if (!get(id).log().learner().value().has_value()) return true;
    return false;
  }

  std::vector<std::string> values(const std::string& id,
                                  const std::string& stream) {
    std::vector<std::string> out;
    auto evs = get(id).journal->read_stream(stream, 1, UINT64_MAX, 10000);
    BOOST_REQUIRE(evs);
    for (auto& e : *evs) out.emplace_back(e.payload.begin() + 4, e.payload.end());
    return out;
  }
};

template <class F>
bool ready(F& f, std::chrono::milliseconds within) {
  return f.wait_for(within) == std::future_status::ready;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(replication, cluster_fixture)

BOOST_AUTO_TEST_CASE(an_append_is_acknowledged_once_a_majority_holds_it) {
  BOOST_REQUIRE(!lead("a", 10, {"b", "c"}));
  // Appends to a shard a member does not lead are refused at once.
  auto elsewhere = append("b", "x", "no");
  BOOST_REQUIRE(ready(elsewhere, 2s));
  auto refused = elsewhere.get();
  BOOST_REQUIRE(!refused);
  BOOST_CHECK_EQUAL(refused.error().code(), pe::errc::not_leader);
  // Many appends in flight, all acknowledged, all on every replica.
  std::vector<std::future<pe::expected<pe::append_result>>> acks;
  for (int i = 0; i < 300; ++i)
    acks.push_back(append("a", "s" + std::to_string(i % 7), "v" + std::to_string(i)));
  for (auto& f : acks) {
    BOOST_REQUIRE(ready(f, 10s));
    auto r = f.get();
    BOOST_REQUIRE_MESSAGE(r, (r ? "" : r.error().to_string()));
  }
  BOOST_CHECK(converged({"a", "b", "c"}));
  BOOST_CHECK_EQUAL(get("c").log().end_position().value(), 301u);
  // One follower away: a majority (a, b) still acknowledges.
  cut("a", "c");
  auto with_b = append("a", "s0", "with-b");
  BOOST_REQUIRE(ready(with_b, 5s));
  BOOST_CHECK(with_b.get());
  // Both away: held, not acknowledged, not failed.
  cut("a", "b");
  auto alone = append("a", "s0", "alone");
  BOOST_CHECK(!ready(alone, 300ms));
  BOOST_CHECK_EQUAL(get("a").log().end_position().value(), 303u);
  // c comes back: it catches up, and a majority holds the append again.
  heal("a", "c");
  BOOST_REQUIRE(ready(alone, 5s));
  BOOST_CHECK(alone.get());
  heal("a", "b");
  BOOST_CHECK(converged({"a", "b", "c"}));
}

BOOST_AUTO_TEST_CASE(an_acknowledged_record_survives_its_leader) {
  BOOST_REQUIRE(!lead("a", 10, {"b", "c"}));
  // Acknowledged by a and b; c never got it.
  cut("a", "c");
  auto acked = append("a", "acct", "acked");
  BOOST_REQUIRE(ready(acked, 5s));
  BOOST_REQUIRE(acked.get());
  // a crashes. c, which lacks the record, wins the next election: it
  // takes the record from b (the most up-to-date log of the majority
  // b, c) before it leads.
  get("a").stop();
  BOOST_REQUIRE(!lead("c", 11, {"a", "b"}));
  BOOST_CHECK((values("c", "acct") == std::vector<std::string>{"acked"}));
  auto after = append("c", "acct", "after");
  BOOST_REQUIRE(ready(after, 5s));
  BOOST_REQUIRE(after.get());
  BOOST_CHECK(converged({"c", "b"}));
  // a comes back and follows: the same log everywhere.
  get("a").start(sys);
  connect_all(get("a"));
  BOOST_CHECK(converged({"c", "a", "b"}));
  BOOST_CHECK(
      (values("a", "acct") == std::vector<std::string>{"acked", "after"}));
}

BOOST_AUTO_TEST_CASE(a_new_leader_truncates_what_no_majority_held) {
  BOOST_REQUIRE(!lead("a", 10, {"b", "c"}));
  auto first = append("a", "acct", "first");
  BOOST_REQUIRE(ready(first, 5s));
  BOOST_REQUIRE(first.get());
  BOOST_REQUIRE(converged({"a", "b", "c"}));
  // a is cut off from both and takes an append no majority will hold.
  cut("a", "b");
  cut("a", "c");
  cut("b", "a");
  auto lost = append("a", "acct", "never-acknowledged");
  BOOST_CHECK(!ready(lost, 200ms));
  // a loses the shard: the append fails (its outcome unknown to the
  // client, which would retry it with the same id on the new leader).
  resign("a");
  BOOST_REQUIRE(ready(lost, 2s));
  auto lost_r = lost.get();
  BOOST_REQUIRE(!lost_r);
  BOOST_CHECK_EQUAL(lost_r.error().code(), pe::errc::not_leader);
  // b leads epoch 11 with c (a unreachable) and writes; when a is back it
  // drops its unheld record and takes b's.
  BOOST_REQUIRE(!lead("b", 11, {"a", "c"}));
  auto second = append("b", "acct", "second");
  BOOST_REQUIRE(ready(second, 5s));
  BOOST_REQUIRE(second.get());
  heal("b", "a");
  BOOST_CHECK(converged({"b", "a", "c"}));
  for (auto id : {"a", "b", "c"})
    BOOST_CHECK((values(id, "acct") ==
                 std::vector<std::string>{"first", "second"}));
  BOOST_CHECK(get("a").log().epochs().value() ==
              get("b").log().epochs().value());
}

BOOST_AUTO_TEST_CASE(a_leader_without_a_majority_does_not_lead) {
  cut("a", "b");
  cut("a", "c");
  auto err = lead("a", 10, {"b", "c"});
  BOOST_REQUIRE(err);
  BOOST_CHECK(runtime::is(err, runtime::errc::owner_unavailable));
  auto refused = append("a", "acct", "x");
  BOOST_REQUIRE(ready(refused, 2s));
  BOOST_CHECK(!refused.get());
  heal("a", "b");
  BOOST_CHECK(!lead("a", 12, {"b", "c"}));
}

BOOST_AUTO_TEST_CASE(an_old_leader_is_fenced_by_the_followers_promises) {
  BOOST_REQUIRE(!lead("a", 10, {"b", "c"}));
  auto first = append("a", "acct", "first");
  BOOST_REQUIRE(ready(first, 5s));
  BOOST_REQUIRE(first.get());
  BOOST_REQUIRE(converged({"a", "b", "c"}));
  // b takes over in epoch 11 while a, cut off from b, still thinks it
  // leads (a paused leader, or one whose lease ran out unnoticed).
  cut("b", "a");
  BOOST_REQUIRE(!lead("b", 11, {"a", "c"}));
  auto by_b = append("b", "acct", "by-b");
  BOOST_REQUIRE(ready(by_b, 5s));
  BOOST_REQUIRE(by_b.get());
  // a's next append reaches b and c, which follow epoch 11 now: refused,
  // and a steps down; the append is never acknowledged.
  auto stale = append("a", "acct", "stale");
  BOOST_REQUIRE(ready(stale, 5s));
  auto stale_r = stale.get();
  BOOST_REQUIRE(!stale_r);
  BOOST_CHECK_EQUAL(stale_r.error().code(), pe::errc::not_leader);
  auto after = append("a", "acct", "after");
  BOOST_REQUIRE(ready(after, 2s));
  BOOST_CHECK(!after.get());  // refused at once: a no longer leads
  // The link heals: b syncs a, which drops its stale record.
  heal("b", "a");
  BOOST_CHECK(converged({"b", "a", "c"}));
  for (auto id : {"a", "b", "c"})
    BOOST_CHECK(
        (values(id, "acct") == std::vector<std::string>{"first", "by-b"}));
}

// An observer (repl_observers_atom) gets the shard's records like a
// follower, but its copy counts in no majority: with the voters a, b and
// the observer c, a and c alone acknowledge nothing. The observers stay
// with the shard across leaderships, and an emptied list stops shipping.
BOOST_AUTO_TEST_CASE(observers_catch_up_without_counting) {
  observe("b", {"c"});  // before b leads: kept for when it does
  observe("a", {"c"});
  BOOST_REQUIRE(!lead("a", 10, {"b"}));
  std::vector<std::future<pe::expected<pe::append_result>>> acks;
  for (int i = 0; i < 40; ++i)
    acks.push_back(append("a", "s" + std::to_string(i % 3), "v" + std::to_string(i)));
  for (auto& f : acks) {
    BOOST_REQUIRE(ready(f, 10s));
    BOOST_REQUIRE(f.get());
  }
  BOOST_CHECK(converged({"a", "b", "c"}));
  BOOST_CHECK(is_ready("a", "c", 5s));
  BOOST_CHECK(is_ready("a", "b", 5s));
  BOOST_CHECK(!is_ready("a", "x"));
  // Without b: c holds the record, which is still not acknowledged.
  cut("a", "b");
  auto held = append("a", "s0", "held");
  BOOST_CHECK(!ready(held, 300ms));
  auto end = get("a").log().end_position().value();
  for (auto deadline = std::chrono::steady_clock::now() + 5s;
       get("c").log().end_position().value() < end &&
       std::chrono::steady_clock::now() < deadline;)
    std::this_thread::sleep_for(10ms);
  BOOST_CHECK_EQUAL(get("c").log().end_position().value(), end);
  BOOST_CHECK(!ready(held, 200ms));
  heal("a", "b");
  BOOST_REQUIRE(ready(held, 5s));
  BOOST_CHECK(held.get());
  // b leads the next epoch with a as its follower: c is its observer too.
  resign("a");
  BOOST_REQUIRE(!lead("b", 11, {"a"}));
  auto next = append("b", "s1", "next");
  BOOST_REQUIRE(ready(next, 5s));
  BOOST_REQUIRE(next.get());
  BOOST_CHECK(converged({"b", "a", "c"}));
  BOOST_CHECK(is_ready("b", "c", 5s));
  // No observers: c gets nothing more.
  observe("b", {});
  auto c_end = get("c").log().end_position().value();
  auto last = append("b", "s1", "last");
  BOOST_REQUIRE(ready(last, 5s));
  BOOST_REQUIRE(last.get());
  BOOST_CHECK(converged({"b", "a"}));
  std::this_thread::sleep_for(200ms);
  BOOST_CHECK_EQUAL(get("c").log().end_position().value(), c_end);
  BOOST_CHECK(!is_ready("b", "c"));
}

BOOST_AUTO_TEST_CASE(a_restarted_follower_catches_up) {
  BOOST_REQUIRE(!lead("a", 10, {"b", "c"}));
  for (int i = 0; i < 20; ++i) {
    auto f = append("a", "acct", "v" + std::to_string(i));
    BOOST_REQUIRE(ready(f, 5s));
    BOOST_REQUIRE(f.get());
  }
  BOOST_REQUIRE(converged({"a", "b", "c"}));
  // c stops; a and b go on.
  cut("a", "c");
  get("c").stop();
  for (int i = 20; i < 120; ++i) {
    auto f = append("a", "acct", "v" + std::to_string(i));
    BOOST_REQUIRE(ready(f, 5s));
    BOOST_REQUIRE(f.get());
  }
  // c restarts from its data directory and is caught up.
  get("c").start(sys);
  connect_all(get("c"));
  BOOST_CHECK(converged({"a", "b", "c"}));
  BOOST_CHECK_EQUAL(get("c").log().end_position().value(), 121u);
  BOOST_CHECK_EQUAL(values("c", "acct").back(), "v119");
}

BOOST_AUTO_TEST_CASE(learners_fence_but_do_not_vouch) {
  BOOST_REQUIRE(!lead("a", 5, {"b", "c"}));
  auto f = append("a", "acct", "v0");
  BOOST_REQUIRE(ready(f, 5s) && f.get());
  BOOST_REQUIRE(converged({"a", "b", "c"}));
  // b lost its data (its copy is a learner now) and c is unreachable: a
  // alone vouches for its log, which is not enough of three replicas.
  resign("a");
  make_learner("b", 6);  // a (epoch 5) may still be resigning
  cut("a", "c");
  auto err = lead("a", 7, {"b", "c"});
  BOOST_CHECK_MESSAGE(runtime::is(err, runtime::errc::owner_unavailable),
                      (err ? runtime::describe(err) : std::string{"led"}));
  // With c back, a and c vouch (two of three) and b fences: a leads, and b
  // votes again once it holds the commit point.
  heal("a", "c");
  BOOST_REQUIRE(!lead("a", 9, {"b", "c"}));
  auto g = append("a", "acct", "v1");
  BOOST_REQUIRE(ready(g, 5s) && g.get());
  BOOST_CHECK(votes_again("b"));
}

BOOST_AUTO_TEST_CASE(only_a_leader_as_new_as_its_marking_makes_a_learner_vote) {
  BOOST_REQUIRE(!lead("a", 5, {"b", "c"}));
  auto f = append("a", "acct", "v0");
  BOOST_REQUIRE(ready(f, 5s) && f.get());
  // b's data was replaced while etcd named a leader of epoch 7: a (epoch 5)
  // may be deposed without knowing it, and its commit point miss what the
  // newer leader committed with b's lost copy. b promises epoch 7 again
  // (its lost copy's promise went with it), so a cannot count it towards
  // an acknowledgement, nor make it a voter.
  BOOST_REQUIRE(converged({"a", "b", "c"}));
  make_learner("b", 7);
  BOOST_CHECK_EQUAL(get("b").log().promised_epoch().value(), 7u);
  std::this_thread::sleep_for(200ms);  // a's ticks reach b, and are refused
  BOOST_CHECK_EQUAL(get("b").log().learner().value().value_or(0), 7u);
  BOOST_CHECK_EQUAL(get("b").log().end_position().value(),
                    get("c").log().end_position().value());
  // A leader of epoch 8 makes it a voter.
  resign("a");
  BOOST_REQUIRE(!lead("c", 8, {"a", "b"}));
  auto h = append("c", "acct", "v6");
  BOOST_REQUIRE(ready(h, 5s) && h.get());
  BOOST_CHECK(votes_again("b"));
}

BOOST_AUTO_TEST_CASE(with_two_replicas_the_voter_leads_alone_beside_a_learner) {
  BOOST_REQUIRE(!lead("a", 5, {"b"}));
  auto f = append("a", "acct", "v0");
  BOOST_REQUIRE(ready(f, 5s) && f.get());
  resign("a");
  make_learner("b", 6);  // a (epoch 5) may still be resigning
  // Both acknowledged everything (two of two), so a's log has it all: a
  // vouches, b answering fences the old epoch, and a leads. (Before, a
  // learner's copy made a majority of two impossible: no leader at all.)
  auto err = lead("a", 9, {"b"});
  BOOST_REQUIRE_MESSAGE(!err, runtime::describe(err));
  auto g = append("a", "acct", "v1");
  BOOST_REQUIRE(ready(g, 5s) && g.get());
  BOOST_CHECK((values("a", "acct") == std::vector<std::string>{"v0", "v1"}));
  // Unreachable, a cannot vouch, and b alone leads nothing.
  resign("a");
  cut("b", "a");
  BOOST_CHECK(
      runtime::is(lead("b", 11, {"a"}), runtime::errc::owner_unavailable));
}

// The first leader after a change of voters recovers strictly: a
// majority of its voters must answer as voters. Here X was acknowledged by
// b and c of {a, b, c}; c is removed, leaving {a, b}, and b's copy is a
// learner (its data replaced). a and the learner b must not elect a: a
// lacks X, and b may have lost it (a voter of two beside a learner is
// enough only when both acknowledged every record, i.e. without a change).
BOOST_AUTO_TEST_CASE(a_strict_recovery_needs_a_majority_of_voters) {
  BOOST_REQUIRE(!lead("c", 10, {"a", "b"}));
  cut("c", "a");
  auto x = append("c", "acct", "X");
  BOOST_REQUIRE(ready(x, 5s));
  BOOST_REQUIRE(x.get());
  get("c").stop();
  make_learner("b", 11);
  auto err = lead("a", 12, {"b"}, true);
  BOOST_REQUIRE(err);
  BOOST_TEST_MESSAGE(runtime::describe(err));
  BOOST_CHECK(runtime::is(err, runtime::errc::owner_unavailable));
  BOOST_CHECK(runtime::describe(err).find("b: a learner") != std::string::npos);
  // Without `strict` (no change of voters) the same two would elect a.
  BOOST_CHECK(!lead("a", 13, {"b"}));
}

BOOST_AUTO_TEST_CASE(a_restarted_follower_of_an_idle_shard_hears_the_commit_point) {
  BOOST_REQUIRE(!lead("a", 5, {"b", "c"}));
  for (int i = 0; i < 5; ++i) {
    auto f = append("a", "acct", "v" + std::to_string(i));
    BOOST_REQUIRE(ready(f, 5s) && f.get());
  }
  BOOST_REQUIRE(converged({"a", "b", "c"}));
  auto end = get("a").log().end_position().value();
  // The commit point c knows, as its replicator reports it.
  auto known_by_c = [&] {
    caf::scoped_actor self{sys};
    self->send(get("c").replicator,
               runtime::replication::repl_watch_atom::value);
    uint64_t known = 0;
    for (auto deadline = std::chrono::steady_clock::now() + 3s;
         known < end && std::chrono::steady_clock::now() < deadline;)
      self->receive(
          [&](runtime::replication::repl_committed_atom, uint32_t s,
              uint64_t position) {
            if (s == shard) known = std::max(known, position);
          },
          caf::after(100ms) >> [] {});
    return known;
  };
  // c heard the final commit point (so the leader has told it all)...
  BOOST_REQUIRE_EQUAL(known_by_c(), end);
  // ...then restarts and the shard stays idle: it knows the commit point
  // from its own journal, and the leader tells it again.
  get("c").stop();
  get("c").start(sys);
  connect_all(get("c"));
  BOOST_CHECK_EQUAL(known_by_c(), end);
  // With no leader at all (everyone else stopped): from its journal alone,
  // so that read models of the shard log follow what is committed.
  get("a").stop();
  get("b").stop();
  get("c").stop();
  get("c").start(sys);
  BOOST_CHECK_EQUAL(known_by_c(), end);
}

// Whether `decode` refuses bytes as malformed (`invalid_argument`).
template <class Decode>
auto refused_by(Decode decode) {
  return [decode](const std::vector<char>& x) {
    auto r = decode(x);
    return !r && runtime::is(r.error(), runtime::errc::invalid_argument);
  };
}

// Every cut of `buf` (each `step` bytes) and `buf` with a byte more are
// refused.
template <class Refused>
void check_cuts_and_padding(const std::vector<char>& buf, size_t step,
                            Refused refused) {
  for (size_t cut_at = 0; cut_at < buf.size(); cut_at += step)
    BOOST_CHECK(refused(std::vector<char>(buf.begin(), buf.begin() + cut_at)));
  auto padded = buf;
  padded.push_back(0);
  BOOST_CHECK(refused(padded));
}

BOOST_AUTO_TEST_CASE(malformed_batches_from_a_peer_are_refused) {
  pe::log_batch b{4, 9, {"abc", std::string(300, 'x')}};
  auto buf = encode_batch(b);
  auto back = decode_batch(buf);
  BOOST_REQUIRE(back);
  BOOST_CHECK_EQUAL(back->epoch, 4u);
  BOOST_CHECK_EQUAL(back->first_position, 9u);
  BOOST_CHECK(back->records == b.records);
  auto refused = refused_by([](const std::vector<char>& x) {
    return decode_batch(x);
  });
  check_cuts_and_padding(buf, 7, refused);
  auto other = buf;
  other[0] = 9;
  BOOST_CHECK(refused(other));
  auto huge = buf;
  huge[17] = 0x7f;  // a record count far beyond the bytes
  BOOST_CHECK(refused(huge));
  // A damaged record inside a well-formed batch reaches the journal, which
  // refuses it whole (checked by the persistence tests).
}

BOOST_AUTO_TEST_CASE(malformed_bundles_from_a_peer_are_refused) {
  std::vector<repl::bundle_item> items(3);
  items[0] = {3, 7, 12, pe::log_batch{7, 13, {"abc", "de"}}};
  items[1] = {9, 8, 0, pe::log_batch{0, 1, {}}};  // only the commit point
  items[2] = {64, 7, 5, pe::log_batch{6, 4, {std::string(300, 'x')}}};
  auto buf = repl::encode_bundle(items);
  auto back = repl::decode_bundle(buf);
  BOOST_REQUIRE(back);
  BOOST_REQUIRE_EQUAL(back->size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    BOOST_CHECK_EQUAL((*back)[k].shard, items[k].shard);
    BOOST_CHECK_EQUAL((*back)[k].epoch, items[k].epoch);
    BOOST_CHECK_EQUAL((*back)[k].commit, items[k].commit);
    BOOST_CHECK_EQUAL((*back)[k].batch.first_position,
                      items[k].batch.first_position);
    BOOST_CHECK((*back)[k].batch.records == items[k].batch.records);
  }
  auto refused = refused_by([](const std::vector<char>& x) {
    return repl::decode_bundle(x);
  });
  check_cuts_and_padding(buf, 5, refused);
  auto many = buf;
  many[0] = 0x40;  // a count far beyond the bytes
  BOOST_CHECK(refused(many));
  auto empty = repl::encode_bundle({});
  BOOST_CHECK(repl::decode_bundle(empty) && repl::decode_bundle(empty)->empty());
}

BOOST_AUTO_TEST_SUITE_END()
