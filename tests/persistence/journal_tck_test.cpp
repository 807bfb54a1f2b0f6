// The Akka Persistence TCK JournalSpec (Akka and Pekko variants) ported to
// the mnemo journal.
//
// Mapping: persistenceId -> stream id; ReplayMessages(from, to, max) ->
// read_stream(stream, from, to, max) for the replayed events plus
// highest_sequence(stream) for RecoverySuccess(highestSequenceNr);
// DeleteMessagesTo(n) -> delete_events_to(stream, n), Long.MaxValue ->
// UINT64_MAX; a rejected AtomicWrite -> an append refused with
// version_conflict. Akka's writerUuid identifies the writer of a replayed
// event; here the event id returned by append plays that role. Published
// plugin commands and actor senders have no counterpart and are not checked.

#include "test_support.hpp"

#include <atomic>
#include <cstdint>
#include <future>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <msgpack.hpp>

using namespace mnemo::persistence;
using mnemo::test::event_value;
using mnemo::test::make_event;

namespace {

// Long.MaxValue of the spec.
constexpr uint64_t max_long = std::numeric_limits<uint64_t>::max();

// The spec's event manifest: every setup event has this type.
const std::string event_type = "tck.a";

template <class T>
T require_value(expected<T> x) {
  BOOST_REQUIRE_MESSAGE(x, (x ? std::string{} : x.error().to_string()));
  return std::move(x).value();
}

void require_ok(const error& err) {
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
}

// The spec's `pid`: "p-1", "p-2", ..., new for every test case.
std::string next_pid() {
  static std::atomic<int> counter{0};
  return "p-" + std::to_string(++counter);
}

std::future<expected<append_result>> append_async(journal& j,
                                                  std::string stream,
                                                  std::vector<new_event> events,
                                                  expected_version version) {
  auto done = std::make_shared<std::promise<expected<append_result>>>();
  auto result = done->get_future();
  j.append(
      std::move(stream), std::move(events), version,
      [done](expected<append_result> res) { done->set_value(std::move(res)); });
  return result;
}

// The JournalSpec beforeEach: a fresh journal whose stream `pid` holds
// events 1..5 with payloads "a-1".."a-5", written as four atomic writes
// (1, 2, 3, then 4+5), each acknowledged at its sequence.
struct tck_journal : mnemo::test::journal_fixture {
  std::string pid = next_pid();
  // ids[n - 1] is the id the journal gave event n.
  std::vector<event_id> ids;

  tck_journal() {
    write_messages({1});
    write_messages({2});
    write_messages({3});
    write_messages({4, 5});
  }

  void write_messages(const std::vector<uint64_t>& seqs) {
    std::vector<new_event> batch;
    for (auto n : seqs)
      batch.push_back(make_event(event_type, "a-" + std::to_string(n)));
    auto res = require_value(
        j->append(pid, std::move(batch), expected_version::exact(seqs[0] - 1)));
    BOOST_TEST(!res.duplicate);
    BOOST_TEST(res.stream_version == seqs.back());
    BOOST_REQUIRE_EQUAL(res.events.size(), seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) {
      BOOST_TEST(res.events[i].sequence == seqs[i]);
      ids.push_back(res.events[i].id);
    }
  }

  // ReplayMessages(from, to, max): checks that exactly the setup events
  // `seqs` come back, oldest first, as written, and that the highest
  // sequence (RecoverySuccess) is `highest`.
  void expect_replay(uint64_t from, uint64_t to, uint64_t max,
                     const std::vector<uint64_t>& seqs, uint64_t highest = 5) {
    auto events = require_value(j->read_stream(pid, from, to, max));
    BOOST_REQUIRE_EQUAL(events.size(), seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) {
      auto n = seqs[i];
      BOOST_TEST_CONTEXT("replayed event " << i << ", expected seq " << n) {
        BOOST_TEST(events[i].stream_id == pid);
        BOOST_TEST(events[i].sequence == n);
        BOOST_TEST(event_value(events[i]) == "a-" + std::to_string(n));
        BOOST_TEST(events[i].type == event_type);
        BOOST_TEST((events[i].id == ids.at(n - 1)));
        BOOST_TEST(events[i].metadata.empty());
      }
    }
    BOOST_TEST(require_value(j->highest_sequence(pid)) == highest);
  }

  void delete_to(uint64_t to_sequence) {
    require_ok(j->delete_events_to(pid, to_sequence));
  }
};

// A payload holding every byte value, to prove payloads are stored as
// opaque bytes: a msgpack map {"v": "b-6", "bin": <bytes 0..255>}.
std::vector<uint8_t> binary_payload() {
  std::vector<char> bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(static_cast<char>(b));
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(2);
  pk.pack(std::string{"v"});
  pk.pack(std::string{"b-6"});
  pk.pack(std::string{"bin"});
  pk.pack_bin(static_cast<uint32_t>(bytes.size()));
  pk.pack_bin_body(bytes.data(), static_cast<uint32_t>(bytes.size()));
  return {buf.data(), buf.data() + buf.size()};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(journal_tck)

// -- A journal must -----------------------------------------------------------

// "replay all messages"
BOOST_FIXTURE_TEST_CASE(replay_all_messages, tck_journal) {
  expect_replay(1, max_long, max_long, {1, 2, 3, 4, 5});
}

// "replay messages using a lower sequence number bound"
BOOST_FIXTURE_TEST_CASE(replay_messages_using_a_lower_sequence_number_bound,
                        tck_journal) {
  expect_replay(3, max_long, max_long, {3, 4, 5});
}

// "replay messages using an upper sequence number bound"
BOOST_FIXTURE_TEST_CASE(replay_messages_using_an_upper_sequence_number_bound,
                        tck_journal) {
  // The highest sequence stays 5, not the upper bound 3.
  expect_replay(1, 3, max_long, {1, 2, 3});
}

// "replay messages using a count limit"
BOOST_FIXTURE_TEST_CASE(replay_messages_using_a_count_limit, tck_journal) {
  expect_replay(1, max_long, 3, {1, 2, 3});
}

// "replay messages using a lower and upper sequence number bound"
BOOST_FIXTURE_TEST_CASE(
    replay_messages_using_a_lower_and_upper_sequence_number_bound,
    tck_journal) {
  expect_replay(2, 3, max_long, {2, 3});
}

// "replay messages using a lower and upper sequence number bound and a count
// limit"
BOOST_FIXTURE_TEST_CASE(
    replay_messages_using_a_lower_and_upper_sequence_number_bound_and_a_count_limit,
    tck_journal) {
  expect_replay(2, 5, 2, {2, 3});
}

// "replay a single if lower sequence number bound equals upper sequence
// number bound"
BOOST_FIXTURE_TEST_CASE(
    replay_a_single_if_lower_sequence_number_bound_equals_upper_sequence_number_bound,
    tck_journal) {
  expect_replay(2, 2, max_long, {2});
}

// "replay a single message if count limit equals 1"
BOOST_FIXTURE_TEST_CASE(replay_a_single_message_if_count_limit_equals_1,
                        tck_journal) {
  expect_replay(2, 4, 1, {2});
}

// "not replay messages if count limit equals 0"
BOOST_FIXTURE_TEST_CASE(not_replay_messages_if_count_limit_equals_0,
                        tck_journal) {
  expect_replay(2, 4, 0, {});
}

// "not replay messages if lower  sequence number bound is greater than upper
// sequence number bound"
BOOST_FIXTURE_TEST_CASE(
    not_replay_messages_if_lower_sequence_number_bound_is_greater_than_upper_sequence_number_bound,
    tck_journal) {
  expect_replay(3, 2, max_long, {});
}

// "not replay messages if the persistent actor has not yet written messages"
BOOST_FIXTURE_TEST_CASE(
    not_replay_messages_if_the_persistent_actor_has_not_yet_written_messages,
    tck_journal) {
  auto events =
      require_value(j->read_stream("non-existing-pid", 0, max_long, max_long));
  BOOST_TEST(events.empty());
  BOOST_TEST(require_value(j->highest_sequence("non-existing-pid")) == 0u);
  auto head = require_value(j->head_of("non-existing-pid"));
  BOOST_TEST(head.highest_sequence == 0u);
  BOOST_TEST(head.deleted_to == 0u);
}

// "retrieve highest sequenceNr without replaying events" (Akka only)
BOOST_FIXTURE_TEST_CASE(retrieve_highest_sequence_nr_without_replaying_events,
                        tck_journal) {
  expect_replay(0, 0, 1, {});
}

// "not replay permanently deleted messages (range deletion)"
BOOST_FIXTURE_TEST_CASE(not_replay_permanently_deleted_messages_range_deletion,
                        tck_journal) {
  // The asynchronous form, to check that the delete is acknowledged exactly
  // once (the spec's expectNoMessage on the delete's receiver).
  struct delete_replies {
    std::atomic<int> count{0};
    std::promise<error> first;
  };
  auto replies = std::make_shared<delete_replies>();
  j->delete_events_to(pid, 3, [replies](error err) {
    if (replies->count++ == 0) replies->first.set_value(std::move(err));
  });
  require_ok(replies->first.get_future().get());
  expect_replay(1, max_long, max_long, {4, 5});
  // The writer runs requests in order: once a later one completed, any
  // second reply to the delete would have been made.
  require_ok(j->write([](write_txn&) { return error{}; }));
  BOOST_TEST(replies->count.load() == 1);
}

// "not reset highestSequenceNr after message deletion"
BOOST_FIXTURE_TEST_CASE(not_reset_highest_sequence_nr_after_message_deletion,
                        tck_journal) {
  expect_replay(0, max_long, max_long, {1, 2, 3, 4, 5});
  delete_to(3);
  expect_replay(0, max_long, max_long, {4, 5}, 5);
}

// "not reset highestSequenceNr after journal cleanup"
BOOST_FIXTURE_TEST_CASE(not_reset_highest_sequence_nr_after_journal_cleanup,
                        tck_journal) {
  expect_replay(0, max_long, max_long, {1, 2, 3, 4, 5});
  delete_to(max_long);
  expect_replay(0, max_long, max_long, {}, 5);
}

// Each Pekko "deleted prefix" case starts with DeleteMessagesTo(pid, 3).

// "replay all surviving messages when the lower bound equals the last deleted
// sequence number" (Pekko only)
BOOST_FIXTURE_TEST_CASE(
    replay_all_surviving_messages_when_the_lower_bound_equals_the_last_deleted_sequence_number,
    tck_journal) {
  delete_to(3);
  expect_replay(3, max_long, max_long, {4, 5});
}

// "return only recovery success when the upper bound falls within a deleted
// prefix" (Pekko only)
BOOST_FIXTURE_TEST_CASE(
    return_only_recovery_success_when_the_upper_bound_falls_within_a_deleted_prefix,
    tck_journal) {
  delete_to(3);
  expect_replay(1, 2, max_long, {});
}

// "return only recovery success when the upper bound equals the last deleted
// sequence number" (Pekko only)
BOOST_FIXTURE_TEST_CASE(
    return_only_recovery_success_when_the_upper_bound_equals_the_last_deleted_sequence_number,
    tck_journal) {
  delete_to(3);
  expect_replay(1, 3, max_long, {});
}

// "replay from the first surviving message when the lower bound equals the
// first surviving sequence number" (Pekko only)
BOOST_FIXTURE_TEST_CASE(
    replay_from_the_first_surviving_message_when_the_lower_bound_equals_the_first_surviving_sequence_number,
    tck_journal) {
  delete_to(3);
  expect_replay(4, max_long, max_long, {4, 5});
}

// -- A Journal optionally may -------------------------------------------------

// "reject non-serializable events": does not apply. Payloads are bytes the
// caller already encoded, so the journal never serializes an object and
// cannot reject one. The part users rely on, that a rejected AtomicWrite
// writes nothing and does not fail the writes around it, is ported below as
// appends refused with version_conflict.

// "serialize events"
BOOST_FIXTURE_TEST_CASE(serialize_events, tck_journal) {
  auto ev = make_event("tck.binary", "b-6");
  ev.payload = binary_payload();
  ev.schema_version = 3;
  auto res = require_value(j->append(pid, {ev}, expected_version::exact(5)));
  BOOST_REQUIRE_EQUAL(res.events.size(), 1u);
  BOOST_TEST(res.events[0].sequence == 6u);
  auto events = require_value(j->read_stream(pid, 6, max_long, max_long));
  BOOST_REQUIRE_EQUAL(events.size(), 1u);
  BOOST_TEST(events[0].stream_id == pid);
  BOOST_TEST(events[0].sequence == 6u);
  BOOST_TEST((events[0].id == res.events[0].id));
  BOOST_TEST(events[0].type == "tck.binary");
  BOOST_TEST(events[0].schema_version == 3u);
  BOOST_TEST(events[0].payload == ev.payload, boost::test_tools::per_element());
  BOOST_TEST(require_value(j->highest_sequence(pid)) >= 6u);
}

// "return metadata"
BOOST_FIXTURE_TEST_CASE(return_metadata, tck_journal) {
  auto ev = make_event(event_type, "a-6");
  ev.metadata = {{"meta", "meta-data"}, {"user", "alice"}};
  auto res = require_value(j->append(pid, {ev}, expected_version::exact(5)));
  BOOST_REQUIRE_EQUAL(res.events.size(), 1u);
  BOOST_TEST(res.events[0].sequence == 6u);
  auto events = require_value(j->read_stream(pid, 6, 6, 1));
  BOOST_REQUIRE_EQUAL(events.size(), 1u);
  BOOST_TEST(events[0].sequence == 6u);
  BOOST_TEST(event_value(events[0]) == "a-6");
  BOOST_TEST((events[0].metadata == ev.metadata));
  BOOST_TEST(require_value(j->highest_sequence(pid)) == 6u);
}

// "replay only last when fromSequenceNr is -1" (Akka only). Sequences are
// unsigned here, so there is no -1 sentinel: a caller replays only the last
// event by reading from the highest sequence.
BOOST_FIXTURE_TEST_CASE(replay_only_last_when_from_sequence_nr_is_minus_1,
                        tck_journal) {
  auto highest = require_value(j->highest_sequence(pid));
  expect_replay(highest, max_long, max_long, {5});
}

// "replay surviving messages within bounds when the replay window spans a
// deleted prefix" (Pekko only)
BOOST_FIXTURE_TEST_CASE(
    replay_surviving_messages_within_bounds_when_the_replay_window_spans_a_deleted_prefix,
    tck_journal) {
  delete_to(3);
  expect_replay(1, 4, max_long, {4});
}

// -- Beyond the spec ----------------------------------------------------------

// A rejected AtomicWrite (here: a wrong expected version) writes none of its
// events, reports both versions, and leaves the stream as it was.
BOOST_FIXTURE_TEST_CASE(reject_an_atomic_write_with_a_wrong_expected_version,
                        tck_journal) {
  for (auto wrong : {expected_version::exact(4), expected_version::exact(6),
                     expected_version::no_stream()}) {
    auto res = j->append(
        pid, {make_event(event_type, "b-6"), make_event(event_type, "b-7")},
        wrong);
    BOOST_REQUIRE(!res);
    BOOST_TEST(res.error().code() == errc::version_conflict);
    auto* info = res.error().conflict();
    BOOST_REQUIRE(info != nullptr);
    BOOST_TEST(info->stream == pid);
    BOOST_TEST(info->expected == wrong.value());
    BOOST_TEST(info->actual == 5u);
  }
  expect_replay(1, max_long, max_long, {1, 2, 3, 4, 5});
  BOOST_TEST(require_value(j->head_of(pid)).highest_sequence == 5u);
}

// Mirrors "reject non-serializable events": three writes sent together, the
// middle one rejected. The others succeed and the rejected one leaves no
// trace (sequences are assigned by the journal, so "b-8" takes sequence 7).
BOOST_FIXTURE_TEST_CASE(
    a_rejected_atomic_write_does_not_fail_the_writes_around_it, tck_journal) {
  auto w6 = append_async(*j, pid, {make_event(event_type, "b-6")},
                         expected_version::exact(5));
  auto w7 = append_async(*j, pid, {make_event(event_type, "b-7")},
                         expected_version::exact(5));
  auto w8 = append_async(*j, pid, {make_event(event_type, "b-8")},
                         expected_version::exact(6));
  auto r6 = require_value(w6.get());
  auto r7 = w7.get();
  auto r8 = require_value(w8.get());
  BOOST_TEST(r6.events.at(0).sequence == 6u);
  BOOST_REQUIRE(!r7);
  BOOST_TEST(r7.error().code() == errc::version_conflict);
  BOOST_TEST(r8.events.at(0).sequence == 7u);
  auto events = require_value(j->read_stream(pid, 6, max_long, max_long));
  BOOST_REQUIRE_EQUAL(events.size(), 2u);
  BOOST_TEST(event_value(events[0]) == "b-6");
  BOOST_TEST(event_value(events[1]) == "b-8");
  BOOST_TEST(require_value(j->highest_sequence(pid)) == 7u);
}

// Deleting past the highest sequence is capped, so the stream keeps growing
// from where it was and new events are not swallowed by the deletion.
BOOST_FIXTURE_TEST_CASE(append_after_journal_cleanup_continues_the_stream,
                        tck_journal) {
  delete_to(max_long);
  BOOST_TEST(require_value(j->head_of(pid)).deleted_to == 5u);
  auto res = require_value(j->append(pid, {make_event(event_type, "a-6")},
                                     expected_version::exact(5)));
  BOOST_TEST(res.events.at(0).sequence == 6u);
  auto events = require_value(j->read_stream(pid, 0, max_long, max_long));
  BOOST_REQUIRE_EQUAL(events.size(), 1u);
  BOOST_TEST(events[0].sequence == 6u);
  BOOST_TEST(event_value(events[0]) == "a-6");
}

// Events, deletions and the highest sequence survive closing and reopening
// the journal.
BOOST_FIXTURE_TEST_CASE(replay_after_journal_reopen, tck_journal) {
  delete_to(3);
  reopen();
  expect_replay(1, max_long, max_long, {4, 5});
  expect_replay(1, 3, max_long, {});
  auto head = require_value(j->head_of(pid));
  BOOST_TEST(head.highest_sequence == 5u);
  BOOST_TEST(head.deleted_to == 3u);
  delete_to(max_long);
  reopen();
  expect_replay(0, max_long, max_long, {}, 5);
  auto res = require_value(j->append(pid, {make_event(event_type, "a-6")},
                                     expected_version::exact(5)));
  BOOST_TEST(res.events.at(0).sequence == 6u);
}

BOOST_AUTO_TEST_SUITE_END()
