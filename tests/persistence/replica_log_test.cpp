// Shard logs in a member's journal (replica_log.hpp): a follower applies
// the leader's records at the same shard positions (its own global
// positions interleave its other streams); refused batches (gaps, old
// epochs, damaged or out-of-order records) write nothing; the promise
// survives a restart; truncation puts heads, ids, tags and snapshots back;
// and Kafka's leader-epoch truncation (KIP-101) leaves every replica with
// the same log and no acknowledged record lost.

#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>

#include <msgpack.hpp>

#include "mnemo/persistence/replica_log.hpp"
#include "mnemo/persistence/snapshot_store.hpp"
#include "test_support.hpp"

#include <thread>

using namespace mnemo::persistence;
using mnemo::test::event_value;
using mnemo::test::make_event;
using mnemo::test::open_journal;
using mnemo::test::temp_dir;

namespace {

// Streams "local-..." belong to no shard, "other/..." to shard 9, every
// other stream to shard 7 (the shard under test).
std::unique_ptr<journal> open_member(
    const std::string& dir, std::shared_ptr<replication_gate> gate = {}) {
  journal_config cfg;
  cfg.gate = std::move(gate);
  cfg.directory = dir;
  cfg.mode = durability::nosync;
  cfg.shard_of = [](std::string_view stream) -> std::optional<uint32_t> {
    if (stream.rfind("local-", 0) == 0) return std::nullopt;
    if (stream.rfind("other/", 0) == 0) return 9;
    return 7;
  };
  auto j = journal::open(cfg);
  BOOST_REQUIRE_MESSAGE(j, mnemo::test::why(j));
  return std::move(j).value();
}

// A gate that leads shard 7 only and releases appends when told to.
struct test_gate : replication_gate {
  std::mutex mtx;
  std::vector<std::pair<uint64_t, std::function<void(error)>>> waiting;
  uint64_t epoch = 1;
  expected<uint64_t> admit(uint32_t shard) override {
    if (shard == 7) return epoch;
    return error{errc::not_leader,
                 "not the leader of shard " + std::to_string(shard)};
  }
  void wait_committed(uint32_t, uint64_t, uint64_t position,
                      std::function<void(error)> release) override {
    std::lock_guard<std::mutex> guard{mtx};
    waiting.emplace_back(position, std::move(release));
  }
  // Releases every waiting append up to `position` with `err`; returns how
  // many.
  size_t release(uint64_t position, error err = {}) {
    std::vector<std::function<void(error)>> ready;
    {
      std::lock_guard<std::mutex> guard{mtx};
      for (auto i = waiting.begin(); i != waiting.end();) {
        if (i->first <= position) {
          ready.push_back(std::move(i->second));
          i = waiting.erase(i);
        } else {
          ++i;
        }
      }
    }
    for (auto& f : ready) f(err);
    return ready.size();
  }
  size_t count() {
    std::lock_guard<std::mutex> guard{mtx};
    return waiting.size();
  }
};

// A replica: a member's journal in its own directory, seen as shard 7.
struct replica {
  temp_dir dir;
  std::unique_ptr<journal> j = open_member(dir.sub("data"));
  replica_log log{*j, 7};

  void reopen() {
    j.reset();
    j = open_member(dir.sub("data"));
    log = replica_log{*j, 7};
  }

  uint64_t end() const { return log.end_position().value(); }

  void append(const std::string& stream, const std::string& value,
              std::vector<std::string> tags = {}) {
    auto ev = make_event("test.value", value);
    ev.tags = std::move(tags);
    std::vector<new_event> evs;
    evs.push_back(std::move(ev));
    auto res = j->append(stream, std::move(evs), expected_version::any());
    BOOST_REQUIRE_MESSAGE(res, mnemo::test::why(res));
  }

  // Every record from 1 to the end, as shipped.
  std::vector<std::string> records() const {
    std::vector<std::string> out;
    for (uint64_t from = 1; from <= end();) {
      auto b = log.read(from, 1000, 1 << 20);
      BOOST_REQUIRE_MESSAGE(b, mnemo::test::why(b));
      BOOST_REQUIRE(!b->records.empty());
      out.insert(out.end(), b->records.begin(), b->records.end());
      from = b->end_position();
    }
    return out;
  }

  std::vector<std::string> values(const std::string& stream) const {
    auto evs = j->read_stream(stream, 1, UINT64_MAX, 100000);
    BOOST_REQUIRE_MESSAGE(evs, mnemo::test::why(evs));
    std::vector<std::string> out;
    for (auto& e : *evs) out.push_back(event_value(e));
    return out;
  }
};

// Ships everything `from` has past `to`'s end to `to`, in batches of at
// most `max_records`, as the leader of `leader_epoch`.
void ship(const replica& from, replica& to, uint64_t leader_epoch,
          size_t max_records = 1000) {
  while (to.end() < from.end()) {
    auto b = from.log.read(to.end() + 1, max_records, 1 << 20);
    BOOST_REQUIRE_MESSAGE(b, mnemo::test::why(b));
    auto err = to.log.apply(std::move(*b), leader_epoch);
    BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  }
}

// A follower catching up with a leader: leader-epoch truncation, then the
// leader's records.
void follow(replica& follower, const replica& leader, uint64_t leader_epoch) {
  auto mine = follower.log.epochs();
  BOOST_REQUIRE(mine);
  if (!mine->empty()) {
    auto keep = truncation_point(*mine, follower.end(),
                                 leader.log.epochs().value(), leader.end());
    auto err = follower.log.truncate_after(keep);
    BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  }
  ship(leader, follower, leader_epoch);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(replica_log_suite)

BOOST_AUTO_TEST_CASE(a_follower_holds_the_leaders_shard_log) {
  replica leader, follower;
  BOOST_REQUIRE(!leader.log.begin_epoch(5));
  // The follower's own unreplicated streams take global positions too:
  // shard positions are the same everywhere, global ones are not.
  follower.append("local-1", "mine");
  for (int i = 0; i < 300; ++i) {  // past a stream-index checkpoint (128)
    leader.append(i % 3 == 0 ? "b" : "a", "v" + std::to_string(i),
                  i % 7 == 0 ? std::vector<std::string>{"seven"}
                             : std::vector<std::string>{});
    if (i % 50 == 0) leader.append("other/1", "not shard 7");
    if (i % 60 == 0) leader.append("local-2", "not replicated");
  }
  BOOST_CHECK_EQUAL(leader.end(), 300u);
  BOOST_CHECK_GT(leader.j->head_position(), 300u);
  ship(leader, follower, 5, 37);
  BOOST_CHECK_EQUAL(follower.end(), 300u);
  BOOST_CHECK(follower.records() == leader.records());
  BOOST_CHECK(follower.log.epochs().value() == leader.log.epochs().value());
  BOOST_CHECK_EQUAL(follower.log.promised_epoch().value(), 5u);
  // Streams, heads and tags read the same; the other shard's and the
  // unreplicated streams did not travel, and the follower's stayed.
  BOOST_CHECK(follower.values("a") == leader.values("a"));
  BOOST_CHECK(follower.values("b") == leader.values("b"));
  BOOST_CHECK_EQUAL(follower.j->highest_sequence("a").value(), 200u);
  BOOST_CHECK_EQUAL(follower.j->highest_sequence("other/1").value(), 0u);
  BOOST_CHECK_EQUAL(follower.j->highest_sequence("local-2").value(), 0u);
  BOOST_CHECK_EQUAL(follower.values("local-1").front(), "mine");
  BOOST_CHECK_EQUAL(follower.j->read_tag("seven", 1, 1000)->size(),
                    leader.j->read_tag("seven", 1, 1000)->size());
  BOOST_CHECK_EQUAL(replica_log(*leader.j, 9).end_position().value(), 6u);
  BOOST_CHECK_EQUAL(replica_log(*follower.j, 9).end_position().value(), 0u);
  auto ev_f = follower.j->read_stream("a", 1, UINT64_MAX, 1000).value();
  auto ev_l = leader.j->read_stream("a", 1, UINT64_MAX, 1000).value();
  BOOST_REQUIRE_EQUAL(ev_f.size(), ev_l.size());
  for (size_t i = 0; i < ev_f.size(); ++i) {
    BOOST_CHECK(ev_f[i].id == ev_l[i].id);
    BOOST_CHECK_EQUAL(ev_f[i].sequence, ev_l[i].sequence);
    BOOST_CHECK_EQUAL(ev_f[i].timestamp_us, ev_l[i].timestamp_us);
  }
  BOOST_CHECK_NE(ev_f[0].position, ev_l[0].position);  // global: its own
  // The event ids replicated: a retried append on the follower (as a new
  // leader) is recognised as a duplicate and answered with the original.
  std::vector<new_event> retry{make_event("test.value", "v1")};
  retry[0].id = ev_l[0].id;
  auto again =
      follower.j->append("a", std::move(retry), expected_version::any());
  BOOST_REQUIRE_MESSAGE(again, mnemo::test::why(again));
  BOOST_CHECK(again->duplicate);
  BOOST_CHECK_EQUAL(again->events[0].sequence, 1u);
  // And the follower goes on as a leader of a later epoch after a restart.
  follower.reopen();
  BOOST_CHECK(follower.records() == leader.records());
  BOOST_REQUIRE(!follower.log.begin_epoch(6));
  follower.append("a", "after");
  BOOST_CHECK_EQUAL(follower.values("a").back(), "after");
  BOOST_CHECK_EQUAL(follower.j->highest_sequence("a").value(), 201u);
  BOOST_CHECK_EQUAL(follower.end(), 301u);
  BOOST_CHECK_EQUAL(follower.log.read(301, 10, 1 << 20)->epoch, 6u);
}

BOOST_AUTO_TEST_CASE(pipelined_batches_apply_in_order_through_group_commits) {
  replica leader, follower;
  BOOST_REQUIRE(!leader.log.begin_epoch(1));
  for (int i = 0; i < 500; ++i) leader.append("s" + std::to_string(i % 5), "x");
  // Many batches in flight at once, as a leader pipelines them.
  std::vector<std::promise<error>> done(50);
  for (size_t k = 0; k < done.size(); ++k) {
    auto b = leader.log.read(k * 10 + 1, 10, 1 << 20).value();
    BOOST_REQUIRE_EQUAL(b.records.size(), 10u);
    follower.log.apply(std::move(b), 1, [&, k](error err) {
      done[k].set_value(std::move(err));
    });
  }
  for (auto& d : done) {
    auto err = d.get_future().get();
    BOOST_CHECK_MESSAGE(!err, err.to_string());
  }
  BOOST_CHECK(follower.records() == leader.records());
  BOOST_CHECK_EQUAL(follower.j->highest_sequence("s4").value(), 100u);
}

BOOST_AUTO_TEST_CASE(refused_batches_write_nothing_and_say_why) {
  replica leader, follower;
  BOOST_REQUIRE(!leader.log.begin_epoch(3));
  for (int i = 0; i < 6; ++i) leader.append(i < 3 ? "a" : "b", "v");
  ship(leader, follower, 3, 2);
  BOOST_REQUIRE_EQUAL(follower.end(), 6u);
  for (int i = 0; i < 4; ++i) leader.append("a", "w");
  auto next = leader.log.read(7, 100, 1 << 20).value();
  auto expect = [&](log_batch b, uint64_t epoch, errc code,
                    const std::string& words) {
    auto end = follower.end();
    auto err = follower.log.apply(std::move(b), epoch);
    BOOST_CHECK_EQUAL(err.code(), code);
    BOOST_CHECK_MESSAGE(err.message().find(words) != std::string::npos,
                        err.message());
    BOOST_CHECK_EQUAL(follower.end(), end);
  };
  // A gap.
  auto gap = leader.log.read(8, 100, 1 << 20).value();
  expect(gap, 3, errc::log_mismatch, "ends at 6");
  // A record placed at another position than the leader's.
  auto moved = next;
  moved.first_position = 6;
  expect(moved, 3, errc::log_mismatch, "ends at 6");
  // Records that do not continue their stream: the leader's position 8
  // offered as position 7 skips sequence 4 of "a".
  auto skipped = gap;
  skipped.first_position = 7;
  expect(skipped, 3, errc::log_mismatch, "does not continue its stream");
  // A damaged record (one payload byte flipped): the checksum catches it.
  auto damaged = next;
  damaged.records[1][damaged.records[1].size() - 1] ^= 0x20;
  expect(damaged, 3, errc::corrupt_record, "damaged");
  // Records claiming a newer epoch than their sender's.
  auto newer = next;
  newer.epoch = 4;
  expect(newer, 3, errc::stale_epoch, "cannot come from the leader of epoch 3");
  // The follower learns of epoch 4 (an empty batch carries the promise),
  // then refuses the old leader, also after a restart.
  BOOST_REQUIRE(!follower.log.apply(log_batch{0, 7, {}}, 4));
  BOOST_CHECK_EQUAL(follower.log.promised_epoch().value(), 4u);
  follower.reopen();
  expect(next, 3, errc::stale_epoch, "follows epoch 4");
  BOOST_CHECK_EQUAL(follower.log.begin_epoch(3).code(), errc::stale_epoch);
  BOOST_CHECK_EQUAL(follower.log.begin_epoch(2).code(), errc::stale_epoch);
  // The records of epoch 3 still apply when the leader of epoch 4 ships
  // them (they are its log too).
  BOOST_REQUIRE(!follower.log.apply(next, 4));
  BOOST_CHECK(follower.records() == leader.records());
  // Records of an older epoch than the log's newest cannot follow it.
  BOOST_REQUIRE(!leader.log.begin_epoch(4));
  leader.append("a", "e4");
  ship(leader, follower, 4);
  leader.append("a", "e4b");
  auto old = leader.log.read(12, 10, 1 << 20).value();
  old.epoch = 3;
  expect(old, 4, errc::log_mismatch, "cannot follow records of epoch 4");
  BOOST_CHECK_EQUAL(follower.end(), 11u);
}

BOOST_AUTO_TEST_CASE(reads_stop_at_epoch_bounds_sizes_and_holes) {
  replica r;
  BOOST_REQUIRE(!r.log.begin_epoch(1));
  for (int i = 0; i < 4; ++i) r.append("a", std::string(100, 'x'));
  BOOST_REQUIRE(!r.log.begin_epoch(2));
  for (int i = 0; i < 4; ++i) r.append("b", "y");
  auto first = r.log.read(1, 100, 1 << 20).value();
  BOOST_CHECK_EQUAL(first.epoch, 1u);
  BOOST_CHECK_EQUAL(first.records.size(), 4u);  // not into epoch 2
  auto second = r.log.read(5, 100, 1 << 20).value();
  BOOST_CHECK_EQUAL(second.epoch, 2u);
  BOOST_CHECK_EQUAL(second.first_position, 5u);
  BOOST_CHECK_EQUAL(second.records.size(), 4u);
  BOOST_CHECK_EQUAL(r.log.read(2, 2, 1 << 20)->records.size(), 2u);
  BOOST_CHECK_EQUAL(r.log.read(1, 100, 150)->records.size(), 1u);
  BOOST_CHECK_EQUAL(r.log.read(1, 100, 1)->records.size(), 1u);  // at least one
  auto past = r.log.read(9, 100, 1 << 20).value();
  BOOST_CHECK(past.records.empty());
  BOOST_CHECK_EQUAL(past.epoch, 0u);
  // KIP-101's question: where does an epoch end here?
  BOOST_CHECK_EQUAL(r.log.end_of(1)->last_position, 4u);
  BOOST_CHECK_EQUAL(r.log.end_of(2)->last_position, 8u);
  BOOST_CHECK_EQUAL(r.log.end_of(3)->epoch, 2u);  // the newest <= 3
  BOOST_CHECK_EQUAL(r.log.end_of(3)->last_position, 8u);
  BOOST_CHECK_EQUAL(r.log.end_of(0)->epoch, 0u);
  BOOST_CHECK_EQUAL(r.log.end_of(0)->last_position, 0u);
  // A shard's events cannot be deleted; one lost (here by plain LMDB, as a
  // bug or another tool might) leaves a hole that cannot be shipped.
  auto refused = r.j->delete_events_to("a", 2);
  BOOST_CHECK_EQUAL(refused.code(), errc::invalid_argument);
  BOOST_CHECK_EQUAL(r.j->read_stream("a", 1, 4, 10)->size(), 4u);
  // Nor released (a stream move of a static cluster), which would delete
  // them all.
  auto unreleased = r.j->release_stream("a", "n2");
  BOOST_CHECK_EQUAL(unreleased.code(), errc::invalid_argument);
  BOOST_CHECK_MESSAGE(unreleased.message().find("shard 7") != std::string::npos,
                      unreleased.message());
  BOOST_CHECK_EQUAL(r.j->read_stream("a", 1, 4, 10)->size(), 4u);
  BOOST_CHECK(!r.j->moved_to("a").value());
  r.j.reset();
  mnemo::test::with_raw_db(
      r.dir.sub("data"), "mnemo.events", [](MDB_txn* txn, MDB_dbi dbi) {
        for (uint64_t pos : {1, 2}) {
          auto k = mnemo::test::be64_bytes(pos);
          MDB_val key{k.size(), k.data()};
          BOOST_REQUIRE_EQUAL(mdb_del(txn, dbi, &key, nullptr), 0);
        }
      });
  r.reopen();
  auto hole = r.log.read(1, 100, 1 << 20);
  BOOST_REQUIRE(!hole);
  BOOST_CHECK_EQUAL(hole.error().code(), errc::not_found);
  BOOST_CHECK(r.log.read(3, 100, 1 << 20));
}

BOOST_AUTO_TEST_CASE(truncation_puts_heads_ids_tags_and_snapshots_back) {
  replica r;
  BOOST_REQUIRE(!r.log.begin_epoch(1));
  for (int i = 0; i < 200; ++i) r.append("c", "c" + std::to_string(i));
  r.append("a", "a1", {"t"});
  r.append("a", "a2", {"t"});
  BOOST_REQUIRE(!r.log.begin_epoch(2));
  r.append("a", "a3", {"t"});
  for (int i = 200; i < 300; ++i) r.append("c", "c" + std::to_string(i));
  r.append("d", "d1");
  auto a3_id = r.j->read_stream("a", 3, 3, 1)->front().id;
  snapshot snap;
  snap.meta.stream_id = "a";
  snap.meta.sequence = 3;
  snap.type = "test.state";
  snap.payload = {0x80};
  // Stored here only (`save_in`), as before snapshots joined shard logs:
  // truncation must also clean up what no record of the log names.
  auto save_here = [&r](snapshot s) {
    return r.j->write(
        [&s](write_txn& txn) { return snapshot_store::save_in(txn, s); });
  };
  BOOST_REQUIRE(!save_here(snap));
  snap.meta.sequence = 2;
  BOOST_REQUIRE(!save_here(snap));
  BOOST_REQUIRE_EQUAL(r.end(), 304u);
  // Keep epoch 1 and 50 records of epoch 2: a3 and c200..c248.
  BOOST_REQUIRE(!r.log.truncate_after(252));
  BOOST_CHECK_EQUAL(r.end(), 252u);
  BOOST_CHECK_EQUAL(r.j->highest_sequence("a").value(), 3u);
  BOOST_CHECK_EQUAL(r.j->highest_sequence("c").value(), 249u);
  BOOST_CHECK_EQUAL(r.j->highest_sequence("d").value(), 0u);
  BOOST_REQUIRE(!r.log.truncate_after(201));  // into epoch 1
  BOOST_CHECK_EQUAL(r.j->highest_sequence("a").value(), 1u);
  BOOST_CHECK_EQUAL(r.j->highest_sequence("c").value(), 200u);
  BOOST_CHECK(r.log.epochs().value() == (std::vector<epoch_start>{{1, 1}}));
  BOOST_CHECK_EQUAL(r.j->read_tag("t", 1, 10)->size(), 1u);
  auto latest = r.j->snapshots().load("a", snapshot_criteria::latest());
  BOOST_REQUIRE(latest);
  BOOST_CHECK(!latest->has_value());  // both were past sequence 1
  // The removed ids are free again: another stream may use a3's.
  std::vector<new_event> reuse{make_event("test.value", "z")};
  reuse[0].id = a3_id;
  BOOST_CHECK(r.j->append("z", std::move(reuse), expected_version::any()));
  // The log goes on from there, also after a restart, and reads walk
  // across the stream-index checkpoint at sequence 128.
  BOOST_REQUIRE(!r.log.begin_epoch(3));
  r.append("a", "new2");
  r.append("c", "c-new");
  r.reopen();
  BOOST_CHECK((r.values("a") == std::vector<std::string>{"a1", "new2"}));
  auto c = r.values("c");
  BOOST_REQUIRE_EQUAL(c.size(), 201u);
  BOOST_CHECK_EQUAL(c[127], "c127");
  BOOST_CHECK_EQUAL(c[199], "c199");
  BOOST_CHECK_EQUAL(c[200], "c-new");
  BOOST_CHECK_EQUAL(r.end(), 204u);  // z took 202
  BOOST_CHECK(
      (r.log.epochs().value() == std::vector<epoch_start>{{1, 1}, {3, 203}}));
  // Truncating at or past the end changes nothing.
  BOOST_REQUIRE(!r.log.truncate_after(204));
  BOOST_REQUIRE(!r.log.truncate_after(900));
  BOOST_CHECK_EQUAL(r.end(), 204u);
}

BOOST_AUTO_TEST_CASE(leader_epoch_truncation_loses_no_acknowledged_record) {
  // Three replicas of one shard. KIP-101's first case: the leader A of
  // epoch 1 wrote positions 1-3; B and C hold 1-2 (acknowledged: a
  // majority had them), position 3 is only on A.
  replica a, b, c;
  BOOST_REQUIRE(!a.log.begin_epoch(1));
  a.append("x", "m1");
  a.append("y", "m2");
  ship(a, b, 1);
  ship(a, c, 1);
  a.append("x", "m3-unacknowledged");
  // A dies. B holds every acknowledged record and leads epoch 2: it writes
  // m4 at position 3, C follows (m4 is acknowledged).
  BOOST_REQUIRE(!b.log.begin_epoch(2));
  b.append("x", "m4");
  follow(c, b, 2);
  // A comes back as a follower: its position 3 was never acknowledged and
  // differs from B's position 3. It truncates before it follows.
  auto answer = b.log.end_of(1).value();
  BOOST_CHECK_EQUAL(answer.epoch, 1u);
  BOOST_CHECK_EQUAL(answer.last_position, 2u);
  BOOST_CHECK_EQUAL(truncation_point(a.log.epochs().value(), a.end(),
                                     b.log.epochs().value(), b.end()),
                    2u);
  follow(a, b, 2);
  BOOST_CHECK((a.values("x") == std::vector<std::string>{"m1", "m4"}));
  BOOST_CHECK(a.records() == b.records());
  BOOST_CHECK(c.records() == b.records());
  // The second case: C leads epoch 3 and writes m5 that reaches nobody,
  // then B (holding every acknowledged record) leads epoch 4 and writes m6.
  BOOST_REQUIRE(!c.log.begin_epoch(3));
  c.append("y", "m5-unacknowledged");
  BOOST_REQUIRE(!b.log.begin_epoch(4));
  b.append("y", "m6");
  follow(a, b, 4);
  // C's newest epoch (3) is unknown to B, which answers with epoch 2 and
  // its end: C keeps 1-3 and drops m5, then takes m6.
  auto c_answer = b.log.end_of(3).value();
  BOOST_CHECK_EQUAL(c_answer.epoch, 2u);
  BOOST_CHECK_EQUAL(c_answer.last_position, 3u);
  follow(c, b, 4);
  BOOST_CHECK((c.values("y") == std::vector<std::string>{"m2", "m6"}));
  BOOST_CHECK(a.records() == b.records());
  BOOST_CHECK(c.records() == b.records());
  BOOST_CHECK(c.log.epochs().value() == b.log.epochs().value());
  // Every acknowledged record (m1, m2, m4, m6) is on every replica.
  for (auto* r : {&a, &b, &c}) {
    BOOST_CHECK((r->values("x") == std::vector<std::string>{"m1", "m4"}));
    BOOST_CHECK((r->values("y") == std::vector<std::string>{"m2", "m6"}));
  }
}

BOOST_AUTO_TEST_CASE(truncation_looks_back_until_both_logs_share_an_epoch) {
  using h = std::vector<epoch_start>;
  // The follower's newest epoch (30) is unknown to the leader, whose
  // greatest older one (20) the follower never saw: one round of KIP-101
  // would keep the follower's epoch-10 record at 12 where the leader has
  // epoch 20's. Looking further back finds no shared epoch after 10 on
  // the follower's side and none at all on the leader's: keep 10.
  h follower{{10, 11}, {30, 13}};
  h leader{{20, 11}, {40, 15}};
  BOOST_CHECK_EQUAL(truncation_point(follower, 13, leader, 15), 10u);
  // Both wrote epoch 10, the follower further: keep the leader's end of it.
  BOOST_CHECK_EQUAL(truncation_point(h{{10, 1}}, 9, h{{10, 1}, {12, 6}}, 8),
                    5u);
  // Same epochs, the follower behind: nothing to truncate.
  BOOST_CHECK_EQUAL(truncation_point(h{{10, 1}}, 4, h{{10, 1}}, 8), 4u);
  // A follower with no epochs keeps nothing.
  BOOST_CHECK_EQUAL(truncation_point(h{}, 0, h{{10, 1}}, 8), 0u);
}

BOOST_AUTO_TEST_CASE(learner_flags_and_the_replica_id_are_durable) {
  replica r;
  replica other;
  auto id = replica_log::replica_id(*r.j);
  BOOST_CHECK_EQUAL(id.size(), 36u);  // a UUID as text
  BOOST_CHECK(id != replica_log::replica_id(*other.j));
  BOOST_CHECK(!r.log.learner().value().has_value());
  auto err = replica_log::mark_learners(*r.j, {{7, 12}, {9, 0}});
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_CHECK(r.log.learner().value().has_value());
  BOOST_CHECK_EQUAL(r.log.learner().value().value_or(0), 12u);
  BOOST_CHECK((replica_log{*r.j, 9}.learner().value().has_value()));
  BOOST_CHECK(!(replica_log{*r.j, 8}.learner().value().has_value()));
  std::promise<error> cleared;
  r.log.set_learner(false, [&](error e) { cleared.set_value(std::move(e)); });
  err = cleared.get_future().get();
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  r.reopen();
  // Both outlive a restart: the id is the directory's, not the process's.
  BOOST_CHECK_EQUAL(replica_log::replica_id(*r.j), id);
  BOOST_CHECK(!r.log.learner().value().has_value());
  BOOST_CHECK((replica_log{*r.j, 9}.learner().value().has_value()));
  // A wiped directory is another replica.
  r.j.reset();
  std::filesystem::remove_all(r.dir.sub("data"));
  r.reopen();
  BOOST_CHECK(replica_log::replica_id(*r.j) != id);
  BOOST_CHECK(!(replica_log{*r.j, 9}.learner().value().has_value()));
}

BOOST_AUTO_TEST_CASE(the_commit_point_a_batch_carried_is_durable) {
  replica leader, follower;
  BOOST_REQUIRE(!leader.log.begin_epoch(3));
  for (int i = 0; i < 10; ++i) leader.append("a", "v" + std::to_string(i));
  BOOST_CHECK_EQUAL(follower.log.committed().value(), 0u);
  auto batch = [&](uint64_t from, size_t n) {
    auto b = leader.log.read(from, n, 1 << 20);
    BOOST_REQUIRE_MESSAGE(b, mnemo::test::why(b));
    return std::move(*b);
  };
  // Records 1..4 with the leader's commit point 9: kept up to what the
  // follower holds, 4.
  auto err = follower.log.apply(batch(1, 4), 3, 9);
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_CHECK_EQUAL(follower.log.committed().value(), 4u);
  err = follower.log.apply(batch(5, 6), 3, 7);
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_CHECK_EQUAL(follower.log.committed().value(), 7u);
  // A commit point alone (an empty batch) moves it; an older one does not
  // move it back; a refused batch writes nothing.
  err = follower.log.apply(log_batch{0, 11, {}}, 3, 10);
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_CHECK_EQUAL(follower.log.committed().value(), 10u);
  err = follower.log.apply(log_batch{0, 11, {}}, 3, 2);
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_CHECK_EQUAL(follower.log.committed().value(), 10u);
  BOOST_CHECK(follower.log.apply(batch(1, 2), 3, 99));  // log_mismatch
  BOOST_CHECK(follower.log.apply(batch(1, 2), 2, 99));  // stale epoch
  BOOST_CHECK_EQUAL(follower.log.committed().value(), 10u);
  // A commit point alone that does not name this log's end (the leader's
  // idea of it is wrong) is not taken.
  err = follower.log.apply(log_batch{0, 5, {}}, 3, 12);
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_CHECK_EQUAL(follower.log.committed().value(), 10u);
  // Committed records are never truncated: a request to is refused.
  auto cut = follower.log.truncate_after(6);
  BOOST_CHECK_EQUAL(cut.code(), errc::invalid_argument);
  BOOST_CHECK_EQUAL(follower.end(), 10u);
  // Per shard, and after a restart.
  BOOST_CHECK_EQUAL((replica_log{*follower.j, 9}.committed().value()), 0u);
  follower.reopen();
  BOOST_CHECK_EQUAL(follower.log.committed().value(), 10u);
  auto all = replica_log::committed_points(*follower.j);
  BOOST_REQUIRE(all);
  BOOST_CHECK(
      (*all == std::map<uint32_t, uint64_t>{{follower.log.shard(), 10}}));
}

// A member that is no replica of a shard any more drops its copy: the
// committed records too, newest first in chunks, with their heads, ids,
// tags and snapshots. The promise stays (a leader of an older epoch still
// cannot write here), and a new copy starts again from position 1. Stopped
// half way, it keeps a prefix of the log.
BOOST_AUTO_TEST_CASE(a_dropped_copy_keeps_its_promise_and_starts_again) {
  replica leader, follower;
  BOOST_REQUIRE(!leader.log.begin_epoch(3));
  for (int i = 0; i < 25; ++i)
    leader.append("a", "v" + std::to_string(i), {"t"});
  leader.append("b", "b1");
  auto all = [&] {
    auto b = leader.log.read(1, 1000, 1 << 20);
    BOOST_REQUIRE_MESSAGE(b, mnemo::test::why(b));
    return std::move(*b);
  };
  auto err = follower.log.apply(all(), 3, 26);
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  snapshot snap;
  snap.meta.stream_id = "a";
  snap.meta.sequence = 20;
  snap.type = "test.state";
  snap.payload = {0x80};
  BOOST_REQUIRE(!follower.j->write(
      [&snap](write_txn& txn) { return snapshot_store::save_in(txn, snap); }));
  BOOST_REQUIRE_EQUAL(follower.log.committed().value(), 26u);
  // The permit a member's coordinator gives: the promise as it is now.
  auto promise_now = [&]() -> std::optional<uint64_t> {
    return follower.log.promised_epoch().value();
  };
  // Stopped after two chunks of 5: positions 1..16 stay, a consistent
  // prefix (v0..v15), committed as far as it goes.
  int chunks = 0;
  auto removed = follower.log.drop(5, [&]() -> std::optional<uint64_t> {
    if (++chunks > 2) return std::nullopt;
    return promise_now();
  });
  BOOST_REQUIRE_MESSAGE(removed, mnemo::test::why(removed));
  BOOST_CHECK_EQUAL(*removed, 10u);
  BOOST_CHECK_EQUAL(follower.end(), 16u);
  BOOST_CHECK_EQUAL(follower.log.committed().value(), 16u);
  BOOST_CHECK_EQUAL(follower.values("a").size(), 16u);
  BOOST_CHECK(follower.values("b").empty());
  // A leader syncs the copy between the permit and the chunk (the member
  // was made a replica again): it promised epoch 4 first, so the chunk is
  // refused, writes nothing, and the drop stops.
  removed = follower.log.drop(5, [&]() -> std::optional<uint64_t> {
    auto before = promise_now();
    auto synced = follower.log.apply(log_batch{0, 17, {}}, 4, 16);
    BOOST_REQUIRE_MESSAGE(!synced, synced.to_string());
    return before;
  });
  BOOST_REQUIRE_MESSAGE(removed, mnemo::test::why(removed));
  BOOST_CHECK_EQUAL(*removed, 0u);
  BOOST_CHECK_EQUAL(follower.end(), 16u);
  BOOST_CHECK_EQUAL(follower.log.committed().value(), 16u);
  // The rest.
  removed = follower.log.drop(5, promise_now);
  BOOST_REQUIRE_MESSAGE(removed, mnemo::test::why(removed));
  BOOST_CHECK_EQUAL(*removed, 16u);
  BOOST_CHECK_EQUAL(follower.end(), 0u);
  BOOST_CHECK(follower.log.epochs().value().empty());
  BOOST_CHECK_EQUAL(follower.log.committed().value(), 0u);
  BOOST_CHECK_EQUAL(follower.log.promised_epoch().value(), 4u);
  BOOST_CHECK_EQUAL(follower.j->highest_sequence("a").value(), 0u);
  BOOST_CHECK(follower.j->read_tag("t", 1, 10)->empty());
  auto latest = follower.j->snapshots().load("a", snapshot_criteria::latest());
  BOOST_REQUIRE(latest);
  BOOST_CHECK(!latest->has_value());
  // Dropping an empty copy removes nothing; a restart keeps it all so.
  BOOST_CHECK_EQUAL(follower.log.drop(5, promise_now).value(), 0u);
  follower.reopen();
  BOOST_CHECK_EQUAL(follower.end(), 0u);
  BOOST_CHECK_EQUAL(follower.log.promised_epoch().value(), 4u);
  // A leader of an older epoch is refused; the current one copies the log
  // again from position 1.
  BOOST_CHECK_EQUAL(follower.log.apply(all(), 3, 26).code(), errc::stale_epoch);
  err = follower.log.apply(all(), 4, 26);
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  BOOST_CHECK(follower.records() == leader.records());
  BOOST_CHECK_EQUAL(follower.values("a").size(), 25u);
}

BOOST_AUTO_TEST_CASE(digests_tell_identical_logs_from_different_ones) {
  replica leader, follower, other;
  BOOST_REQUIRE(!leader.log.begin_epoch(2));
  BOOST_REQUIRE(!other.log.begin_epoch(2));
  follower.append("local-1", "mine");  // the follower's own stream: not hashed
  for (int i = 0; i < 40; ++i)
    leader.append(
        i % 2 ? "a" : "b", "v" + std::to_string(i),
        i % 5 ? std::vector<std::string>{} : std::vector<std::string>{"five"});
  ship(leader, follower, 2, 7);
  auto l = leader.log.digest();
  auto f = follower.log.digest();
  BOOST_REQUIRE(l && f);
  BOOST_CHECK_EQUAL(l->end, 40u);
  BOOST_CHECK(l->epochs == leader.log.epochs().value());
  BOOST_CHECK(*l == *f);  // same records, other global positions
  // Up to a position: a prefix of both.
  BOOST_CHECK(*leader.log.digest(20) == *follower.log.digest(20));
  BOOST_CHECK(leader.log.digest(20)->value != l->value);
  BOOST_CHECK_EQUAL(leader.log.digest(500)->end, 40u);
  // The same values written by another leader are other events (ids,
  // times): another digest.
  for (int i = 0; i < 40; ++i)
    other.append(i % 2 ? "a" : "b", "v" + std::to_string(i));
  BOOST_CHECK(other.log.digest()->value != l->value);
  // Truncated back, the follower matches the leader's prefix again.
  BOOST_REQUIRE(!follower.log.truncate_after(25));
  BOOST_CHECK(*follower.log.digest() == *leader.log.digest(25));
  BOOST_CHECK_EQUAL(replica_log(*follower.j, 9).digest()->end, 0u);
}

BOOST_AUTO_TEST_CASE(a_gate_acknowledges_appends_once_committed) {
  temp_dir dir;
  auto gate = std::make_shared<test_gate>();
  auto j = open_member(dir.sub("data"), gate);
  replica_log log{*j, 7};
  BOOST_REQUIRE(!log.begin_epoch(1));
  // Appends to a shard this member does not lead fail at once, writing
  // nothing; streams of no shard never ask the gate.
  auto refused =
      j->append("other/1", {make_event("t", "x")}, expected_version::any());
  BOOST_REQUIRE(!refused);
  BOOST_CHECK_EQUAL(refused.error().code(), errc::not_leader);
  BOOST_CHECK_EQUAL(j->highest_sequence("other/1").value(), 0u);
  BOOST_CHECK(
      j->append("local-1", {make_event("t", "x")}, expected_version::any()));
  // An append to shard 7 is durable here but waits for the gate.
  auto first_id = event_id::make_v7();
  std::vector<new_event> first{make_event("t", "a1")};
  first[0].id = first_id;
  std::promise<expected<append_result>> p1, p2, p3;
  j->append("a", std::move(first), expected_version::any(),
            [&](expected<append_result> r) { p1.set_value(std::move(r)); });
  j->append("a", {make_event("t", "a2")}, expected_version::any(),
            [&](expected<append_result> r) { p2.set_value(std::move(r)); });
  auto f1 = p1.get_future();
  auto f2 = p2.get_future();
  for (int i = 0; i < 500 && gate->count() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  BOOST_REQUIRE_EQUAL(gate->count(), 2u);
  BOOST_CHECK(f1.wait_for(std::chrono::milliseconds(50)) ==
              std::future_status::timeout);
  BOOST_CHECK_EQUAL(log.end_position().value(), 2u);
  // Committed up to 1: the first is acknowledged, the second still waits.
  BOOST_CHECK_EQUAL(gate->release(1), 1u);
  auto r1 = f1.get();
  BOOST_REQUIRE_MESSAGE(r1, mnemo::test::why(r1));
  BOOST_CHECK_EQUAL(r1->shard_position, 1u);
  BOOST_CHECK(f2.wait_for(std::chrono::milliseconds(20)) ==
              std::future_status::timeout);
  // Leadership lost before a majority had the second: it fails.
  BOOST_CHECK_EQUAL(gate->release(2, error{errc::not_leader, "lost"}), 1u);
  auto r2 = f2.get();
  BOOST_REQUIRE(!r2);
  BOOST_CHECK_EQUAL(r2.error().code(), errc::not_leader);
  // A retry of the first (same id) is a duplicate, acknowledged once the
  // shard's log is committed up to its end when it was found.
  std::vector<new_event> retry{make_event("t", "a1")};
  retry[0].id = first_id;
  j->append("a", std::move(retry), expected_version::any(),
            [&](expected<append_result> r) { p3.set_value(std::move(r)); });
  auto f3 = p3.get_future();
  for (int i = 0; i < 500 && gate->count() < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  BOOST_REQUIRE_EQUAL(gate->count(), 1u);
  BOOST_CHECK_EQUAL(gate->release(2), 1u);
  auto r3 = f3.get();
  BOOST_REQUIRE_MESSAGE(r3, mnemo::test::why(r3));
  BOOST_CHECK(r3->duplicate);
  BOOST_CHECK_EQUAL(r3->shard_position, 2u);
  BOOST_CHECK_EQUAL(r3->events[0].sequence, 1u);
  // A deposed leader: the gate still admits in epoch 1, but the shard
  // promised epoch 2 (a new leader synced it). The writer refuses the
  // append in its transaction; nothing is written.
  BOOST_REQUIRE(!log.apply(log_batch{0, 3, {}}, 2));
  auto fenced =
      j->append("a", {make_event("t", "late")}, expected_version::any());
  BOOST_REQUIRE(!fenced);
  BOOST_CHECK_EQUAL(fenced.error().code(), errc::not_leader);
  BOOST_CHECK_EQUAL(log.end_position().value(), 2u);
  BOOST_CHECK_EQUAL(j->highest_sequence("a").value(), 2u);
}

namespace {

snapshot test_snapshot(const std::string& stream, uint64_t sequence,
                       uint8_t n) {
  snapshot s;
  s.meta.stream_id = stream;
  s.meta.sequence = sequence;
  s.type = "test.state";
  s.schema_version = 2;
  s.payload = {0x81, 0xa1, 'n', n};  // {"n": n}
  s.metadata["window"] = "w" + std::to_string(n);
  return s;
}

error save_snapshot(journal& j, snapshot s, size_t keep) {
  std::promise<error> p;
  auto f = p.get_future();
  j.snapshots().save(std::move(s), keep,
                     [&p](error err) { p.set_value(std::move(err)); });
  return f.get();
}

std::vector<uint64_t> snapshot_sequences(journal& j, const std::string& s) {
  std::vector<uint64_t> out;
  auto list = j.snapshots().list(s);  // kept: value() refers into it
  BOOST_REQUIRE(list);
  for (auto& m : *list) out.push_back(m.sequence);
  return out;
}

// The payload of a `mnemo.snapshot` record as a peer might send it: the
// fields given, in this order.
template <class... Fields>
std::vector<uint8_t> forged_snapshot(Fields&&... fields) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(sizeof...(fields) / 2);
  (pk.pack(fields), ...);
  return {buf.data(), buf.data() + buf.size()};
}

}  // namespace

// Snapshots of a shard's streams join the shard's log (snapshot_store::save
// in a replicated journal): every replica stores them with the leader's
// retention, read models see them as records of the shard's own stream,
// truncation keeps the ones whose events stay; a snapshot past its stream's
// head, a damaged one or one of another shard's stream is refused.
BOOST_AUTO_TEST_CASE(snapshots_of_a_shards_streams_travel_in_its_log) {
  replica leader, follower;
  BOOST_REQUIRE(!leader.log.begin_epoch(3));
  for (int i = 1; i <= 5; ++i) leader.append("a", "a" + std::to_string(i));
  leader.append("local-1", "x");
  BOOST_REQUIRE(!save_snapshot(*leader.j, test_snapshot("a", 2, 1), 2));
  BOOST_REQUIRE(!save_snapshot(*leader.j, test_snapshot("a", 4, 2), 2));
  leader.append("a", "a6");
  BOOST_REQUIRE(!save_snapshot(*leader.j, test_snapshot("a", 6, 3), 2));
  // a1..a5 at 1..5, snapshots 2 and 4 at 6 and 7, a6 at 8, snapshot 6 at 9.
  BOOST_REQUIRE_EQUAL(leader.end(), 9u);
  // Past the head: refused, nothing written.
  auto past = save_snapshot(*leader.j, test_snapshot("a", 7, 4), 2);
  BOOST_CHECK_EQUAL(past.code(), errc::invalid_argument);
  BOOST_CHECK_EQUAL(leader.end(), 9u);
  BOOST_CHECK(
      (snapshot_sequences(*leader.j, "a") == std::vector<uint64_t>{4, 6}));
  // A stream of no shard: stored here only.
  BOOST_REQUIRE(!save_snapshot(*leader.j, test_snapshot("local-1", 1, 5), 0));
  BOOST_CHECK_EQUAL(leader.end(), 9u);
  BOOST_CHECK_EQUAL(snapshot_sequences(*leader.j, "local-1").size(), 1u);

  ship(leader, follower, 3, 2);
  BOOST_CHECK(follower.records() == leader.records());
  BOOST_CHECK(
      (snapshot_sequences(*follower.j, "a") == std::vector<uint64_t>{4, 6}));
  BOOST_CHECK(snapshot_sequences(*follower.j, "local-1").empty());
  auto theirs = leader.j->snapshots().load("a", snapshot_criteria::latest());
  auto mine = follower.j->snapshots().load("a", snapshot_criteria::latest());
  BOOST_REQUIRE(theirs && *theirs && mine && *mine);
  BOOST_CHECK_EQUAL((*mine)->meta.sequence, 6u);
  BOOST_CHECK_EQUAL((*mine)->meta.timestamp_us, (*theirs)->meta.timestamp_us);
  BOOST_CHECK_EQUAL((*mine)->type, "test.state");
  BOOST_CHECK_EQUAL((*mine)->schema_version, 2u);
  BOOST_CHECK((*mine)->payload == (*theirs)->payload);
  BOOST_CHECK((*mine)->metadata == (*theirs)->metadata);
  BOOST_CHECK_EQUAL((*mine)->metadata.at("window"), "w3");
  // What read models of the shard see: three records of its own stream.
  auto evs = follower.log.events(1, 9, 100).value();
  BOOST_REQUIRE_EQUAL(evs.size(), 9u);
  size_t carried = 0;
  for (auto& e : evs)
    if (e.type == "mnemo.snapshot") {
      ++carried;
      BOOST_CHECK_EQUAL(e.stream_id, "mnemo.shard/7");
    }
  BOOST_CHECK_EQUAL(carried, 3u);
  BOOST_CHECK(follower.log.digest().value() == leader.log.digest().value());
  follower.reopen();
  BOOST_CHECK(
      (snapshot_sequences(*follower.j, "a") == std::vector<uint64_t>{4, 6}));
  // Truncated back to 7: a6 and the snapshot at 6 go, the one at 4 (whose
  // events stay) is still there.
  BOOST_REQUIRE(!follower.log.truncate_after(7));
  BOOST_CHECK(
      (snapshot_sequences(*follower.j, "a") == std::vector<uint64_t>{4}));

  // Forged records, each as the next record of the leader's log: refused
  // whole, writing nothing. The stream `mnemo.shard/7` is shard 7's here.
  ship(leader, follower, 3);  // back to the leader's end (9)
  auto forge = [&](std::vector<uint8_t> payload) {
    replica l2;
    BOOST_REQUIRE(!l2.log.begin_epoch(3));
    ship(leader, l2, 3);
    new_event ev;
    ev.type = "mnemo.snapshot";
    ev.payload = std::move(payload);
    std::vector<new_event> evs2;
    evs2.push_back(std::move(ev));
    BOOST_REQUIRE(l2.j->append("mnemo.shard/7", std::move(evs2),
                               expected_version::any()));
    auto b = l2.log.read(10, 10, 1 << 20).value();
    BOOST_REQUIRE_EQUAL(b.records.size(), 1u);
    auto err = follower.log.apply(std::move(b), 3);
    BOOST_CHECK_EQUAL(follower.end(), 9u);
    BOOST_CHECK(
        (snapshot_sequences(*follower.j, "a") == std::vector<uint64_t>{4, 6}));
    return err;
  };
  auto damaged = forge({0x81, 0xa1});  // cut short
  BOOST_CHECK_EQUAL(damaged.code(), errc::corrupt_record);
  BOOST_TEST_MESSAGE(damaged.to_string());
  auto missing = forge(forged_snapshot(std::string{"stream"}, std::string{"a"},
                                       std::string{"sequence"}, 5));
  BOOST_CHECK_EQUAL(missing.code(), errc::corrupt_record);
  auto full = [&](const std::string& stream, uint64_t seq) {
    return forged_snapshot(
        std::string{"stream"}, stream, std::string{"sequence"}, seq,
        std::string{"timestamp_us"}, int64_t{1}, std::string{"type"},
        std::string{"test.state"}, std::string{"schema_version"}, 1u,
        std::string{"metadata"}, std::map<std::string, std::string>{},
        std::string{"payload"}, std::vector<char>{'\x7f'}, std::string{"keep"},
        0u);
  };
  auto beyond = forge(full("a", 7));
  BOOST_CHECK_EQUAL(beyond.code(), errc::log_mismatch);
  BOOST_CHECK_MESSAGE(
      beyond.message().find("past the stream's head") != std::string::npos,
      beyond.message());
  auto elsewhere = forge(full("other/1", 0));
  BOOST_CHECK_EQUAL(elsewhere.code(), errc::corrupt_record);
  BOOST_CHECK_MESSAGE(
      elsewhere.message().find("not in this shard") != std::string::npos,
      elsewhere.message());
}

// A shard's records travel in one message each: an event larger than the
// limit fails its append, writing nothing; a larger snapshot is stored on
// this replica only; streams of no shard have no such limit.
BOOST_AUTO_TEST_CASE(shard_records_stay_within_the_message_limit) {
  temp_dir dir;
  journal_config cfg;
  cfg.directory = dir.sub("data");
  cfg.mode = durability::nosync;
  cfg.shard_of = [](std::string_view stream) -> std::optional<uint32_t> {
    if (stream.rfind("local-", 0) == 0) return std::nullopt;
    return 7;
  };
  cfg.max_shard_record_bytes = 4096;
  auto opened = journal::open(cfg);
  BOOST_REQUIRE_MESSAGE(opened, mnemo::test::why(opened));
  auto& j = **opened;
  replica_log log{j, 7};
  BOOST_REQUIRE(!log.begin_epoch(1));
  auto big = make_event("test.value", std::string(5000, 'x'));
  auto small = make_event("test.value", "fits");
  std::vector<new_event> evs;
  evs.push_back(small);
  evs.push_back(big);
  auto refused = j.append("a", std::move(evs), expected_version::any());
  BOOST_REQUIRE(!refused);
  BOOST_CHECK_EQUAL(refused.error().code(), errc::invalid_argument);
  BOOST_CHECK_MESSAGE(refused.error().message().find(
                          "event 2 of an append to 'a'") != std::string::npos,
                      refused.error().message());
  BOOST_CHECK_EQUAL(j.highest_sequence("a").value(), 0u);
  BOOST_CHECK_EQUAL(log.end_position().value(), 0u);
  BOOST_CHECK(j.append("local-1", {big}, expected_version::any()));
  BOOST_REQUIRE(j.append("a", {small}, expected_version::any()));
  BOOST_CHECK_EQUAL(log.end_position().value(), 1u);
  auto large = test_snapshot("a", 1, 1);
  large.payload.assign(5000, 0x00);
  large.payload[0] = 0x80;
  BOOST_REQUIRE(!save_snapshot(j, large, 1));
  BOOST_CHECK_EQUAL(log.end_position().value(), 1u);  // not in the log
  BOOST_CHECK_EQUAL(snapshot_sequences(j, "a").size(), 1u);
  BOOST_REQUIRE(!save_snapshot(j, test_snapshot("a", 1, 2), 1));
  BOOST_CHECK_EQUAL(log.end_position().value(), 2u);  // this one is
}

// Only the shard's leader saves a snapshot of its streams: the gate
// refuses it elsewhere, and admits it (acknowledged once committed) here.
BOOST_AUTO_TEST_CASE(a_gate_admits_snapshots_like_appends) {
  temp_dir dir;
  auto gate = std::make_shared<test_gate>();
  auto j = open_member(dir.sub("data"), gate);
  replica_log log{*j, 7};
  BOOST_REQUIRE(!log.begin_epoch(1));
  auto refused = save_snapshot(*j, test_snapshot("other/1", 0, 1), 1);
  BOOST_CHECK_EQUAL(refused.code(), errc::not_leader);
  BOOST_CHECK(snapshot_sequences(*j, "other/1").empty());
  BOOST_CHECK_EQUAL(replica_log(*j, 9).end_position().value(), 0u);
  std::promise<expected<append_result>> p1;
  j->append("a", {make_event("t", "a1")}, expected_version::any(),
            [&](expected<append_result> r) { p1.set_value(std::move(r)); });
  for (int i = 0; i < 500 && gate->count() < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  BOOST_REQUIRE_EQUAL(gate->release(1), 1u);
  BOOST_REQUIRE(p1.get_future().get());
  std::promise<error> p2;
  j->snapshots().save(test_snapshot("a", 1, 2), 1,
                      [&](error err) { p2.set_value(std::move(err)); });
  auto f2 = p2.get_future();
  for (int i = 0; i < 500 && gate->count() < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  BOOST_REQUIRE_EQUAL(gate->count(), 1u);
  BOOST_CHECK(f2.wait_for(std::chrono::milliseconds(20)) ==
              std::future_status::timeout);
  BOOST_CHECK_EQUAL(log.end_position().value(), 2u);
  BOOST_CHECK_EQUAL(gate->release(2), 1u);
  BOOST_CHECK(!f2.get());
  BOOST_CHECK_EQUAL(snapshot_sequences(*j, "a").size(), 1u);
}

BOOST_AUTO_TEST_SUITE_END()
