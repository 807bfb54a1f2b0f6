// Moving streams between journals: export, bundle, import, release.

#include "mnemo/persistence/snapshot_store.hpp"
#include "mnemo/persistence/stream_export.hpp"
#include "test_support.hpp"

using namespace mnemo::persistence;
using mnemo::test::event_value;
using mnemo::test::make_event;
using mnemo::test::open_journal;
using mnemo::test::temp_dir;
using mnemo::test::why;

namespace {

struct two_journals {
  temp_dir dir;
  std::unique_ptr<journal> src = open_journal(dir.sub("src"));
  std::unique_ptr<journal> dst = open_journal(dir.sub("dst"));

  // Appends `n` events "<stream>:<i>" to `stream` in `j`, one per append.
  static void fill(journal& j, const std::string& stream, int n,
                   int first = 1) {
    for (int i = first; i < first + n; ++i) {
      auto ev = make_event("t.happened", stream + ":" + std::to_string(i));
      ev.tags = {"tag-" + std::to_string(i % 2)};
      ev.metadata = {{"user", "u" + std::to_string(i)}};
      ev.correlation_id = "c" + std::to_string(i);
      auto res = j.append(stream, {ev}, expected_version::any());
      BOOST_REQUIRE_MESSAGE(res, why(res));
    }
  }

  static snapshot snap(const std::string& stream, uint64_t seq) {
    snapshot s;
    s.meta.stream_id = stream;
    s.meta.sequence = seq;
    s.type = "state";
    s.payload = {0x81, 0xa1, 'n', static_cast<uint8_t>(seq)};
    return s;
  }
};

void check_same_events(const std::vector<event_envelope>& a,
                       const std::vector<event_envelope>& b) {
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    BOOST_CHECK(a[i].id == b[i].id);
    BOOST_CHECK_EQUAL(a[i].stream_id, b[i].stream_id);
    BOOST_CHECK_EQUAL(a[i].sequence, b[i].sequence);
    BOOST_CHECK_EQUAL(a[i].type, b[i].type);
    BOOST_CHECK_EQUAL(a[i].timestamp_us, b[i].timestamp_us);
    BOOST_CHECK_EQUAL(a[i].correlation_id, b[i].correlation_id);
    BOOST_CHECK(a[i].tags == b[i].tags);
    BOOST_CHECK(a[i].metadata == b[i].metadata);
    BOOST_CHECK(a[i].payload == b[i].payload);
  }
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(stream_move, two_journals)

BOOST_AUTO_TEST_CASE(export_import_release_keeps_every_event) {
  fill(*src, "acct-1", 300);  // crosses stream-index checkpoints
  fill(*src, "acct-2", 5);
  BOOST_REQUIRE(!src->snapshots().save(snap("acct-1", 100)));
  BOOST_REQUIRE(!src->snapshots().save(snap("acct-1", 250)));
  fill(*dst, "other", 7);  // the destination has its own history
  auto dst_head = dst->head_position();

  auto ex = src->export_stream("acct-1");
  BOOST_REQUIRE_MESSAGE(ex, why(ex));
  BOOST_CHECK_EQUAL(ex->head.highest_sequence, 300u);
  BOOST_CHECK_EQUAL(ex->events.size(), 300u);
  BOOST_REQUIRE_EQUAL(ex->snapshots.size(), 2u);
  BOOST_CHECK_EQUAL(ex->snapshots[0].meta.sequence, 100u);

  // Through a bundle, as the cluster tool ships it.
  stream_bundle bundle;
  bundle.labels = {{"from", "n1"}, {"to", "n2"}};
  bundle.streams.push_back(*ex);
  auto decoded = decode_bundle(encode_bundle(bundle));
  BOOST_REQUIRE_MESSAGE(decoded, why(decoded));
  BOOST_CHECK(decoded->labels == bundle.labels);
  BOOST_REQUIRE_EQUAL(decoded->streams.size(), 1u);

  auto err = dst->import_stream(decoded->streams[0]);
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  auto original = src->read_stream("acct-1", 1, UINT64_MAX, UINT64_MAX);
  auto moved = dst->read_stream("acct-1", 1, UINT64_MAX, UINT64_MAX);
  BOOST_REQUIRE(original && moved);
  check_same_events(*original, *moved);
  // New positions after the destination's head, in order.
  for (size_t i = 0; i < moved->size(); ++i)
    BOOST_CHECK_EQUAL((*moved)[i].position, dst_head + i + 1);
  BOOST_CHECK_EQUAL(dst->head_position(), dst_head + 300);
  auto tagged = dst->read_tag("tag-1", dst_head + 1, UINT64_MAX);
  BOOST_REQUIRE(tagged);
  BOOST_CHECK_EQUAL(tagged->size(), 150u);
  auto snaps = dst->snapshots().list("acct-1");
  BOOST_REQUIRE(snaps);
  BOOST_CHECK_EQUAL(snaps->size(), 2u);
  auto latest = dst->snapshots().load("acct-1", snapshot_criteria::latest());
  BOOST_REQUIRE(latest && *latest);
  BOOST_CHECK((*latest)->payload == snap("acct-1", 250).payload);

  // The new owner appends after the moved history.
  auto next = dst->append("acct-1", {make_event("t.happened", "after")},
                          expected_version::exact(300));
  BOOST_REQUIRE_MESSAGE(next, why(next));
  BOOST_CHECK_EQUAL(next->events[0].sequence, 301u);

  // The old owner lets go: no events, no snapshots, no appends.
  err = src->release_stream("acct-1", "n2");
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  auto gone = src->read_stream("acct-1", 1, UINT64_MAX, UINT64_MAX);
  BOOST_REQUIRE(gone);
  BOOST_CHECK(gone->empty());
  BOOST_CHECK_EQUAL(*src->highest_sequence("acct-1"), 300u);
  auto snaps_left = src->snapshots().list("acct-1");
  BOOST_REQUIRE(snaps_left);
  BOOST_CHECK(snaps_left->empty());
  BOOST_CHECK_EQUAL(*src->release_generation(), 1u);
  auto to = src->moved_to("acct-1");
  BOOST_REQUIRE(to && *to);
  BOOST_CHECK_EQUAL(**to, "n2");
  auto refused = src->append("acct-1", {make_event("t.happened", "late")},
                             expected_version::exact(300));
  BOOST_REQUIRE(!refused);
  BOOST_CHECK_EQUAL(refused.error().code(), errc::stream_moved);
  BOOST_CHECK_MESSAGE(
      refused.error().message().find("'n2'") != std::string::npos,
      refused.error().message());
  // Other streams are untouched.
  auto other = src->read_stream("acct-2", 1, UINT64_MAX, UINT64_MAX);
  BOOST_REQUIRE(other);
  BOOST_CHECK_EQUAL(other->size(), 5u);
}

BOOST_AUTO_TEST_CASE(the_moved_mark_survives_a_restart) {
  fill(*src, "acct-1", 3);
  BOOST_REQUIRE(!src->release_stream("acct-1", "n3"));
  // Repeating the release changes nothing.
  BOOST_REQUIRE(!src->release_stream("acct-1", "n3"));
  src.reset();
  src = open_journal(dir.sub("src"));
  auto refused = src->append("acct-1", {make_event("t.happened", "x")},
                             expected_version::any());
  BOOST_REQUIRE(!refused);
  BOOST_CHECK_EQUAL(refused.error().code(), errc::stream_moved);
  auto missing = src->release_stream("nope", "n3");
  BOOST_CHECK_EQUAL(missing.code(), errc::not_found);
}

BOOST_AUTO_TEST_CASE(a_repeated_import_changes_nothing) {
  fill(*src, "acct-1", 10);
  BOOST_REQUIRE(!src->snapshots().save(snap("acct-1", 5)));
  auto ex = src->export_stream("acct-1");
  BOOST_REQUIRE(ex);
  BOOST_REQUIRE(!dst->import_stream(*ex));
  auto head = dst->head_position();
  auto err = dst->import_stream(*ex);
  BOOST_CHECK_MESSAGE(!err, err.to_string());
  BOOST_CHECK_EQUAL(dst->head_position(), head);
  auto events = dst->read_stream("acct-1", 1, UINT64_MAX, UINT64_MAX);
  BOOST_REQUIRE(events);
  BOOST_CHECK_EQUAL(events->size(), 10u);
}

BOOST_AUTO_TEST_CASE(a_newer_export_catches_up_an_earlier_import) {
  fill(*src, "acct-1", 10);
  auto first = src->export_stream("acct-1");
  BOOST_REQUIRE(first);
  BOOST_REQUIRE(!dst->import_stream(*first));
  // The source went on after the export (the node ran again).
  fill(*src, "acct-1", 5, 11);
  BOOST_REQUIRE(!src->snapshots().save(snap("acct-1", 12)));
  auto second = src->export_stream("acct-1");
  BOOST_REQUIRE(second);
  auto err = dst->import_stream(*second);
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  auto original = src->read_stream("acct-1", 1, UINT64_MAX, UINT64_MAX);
  auto moved = dst->read_stream("acct-1", 1, UINT64_MAX, UINT64_MAX);
  BOOST_REQUIRE(original && moved);
  check_same_events(*original, *moved);
  auto snaps = dst->snapshots().list("acct-1");
  BOOST_REQUIRE(snaps);
  BOOST_CHECK_EQUAL(snaps->size(), 1u);
  // The old export is behind what the destination has now.
  BOOST_CHECK_EQUAL(dst->import_stream(*first).code(), errc::version_conflict);
  // A destination that wrote its own events after the import diverged.
  auto third = open_journal(dir.sub("third"));
  BOOST_REQUIRE(!third->import_stream(*first));
  fill(*third, "acct-1", 1, 99);
  err = third->import_stream(*second);
  BOOST_CHECK_EQUAL(err.code(), errc::version_conflict);
  BOOST_CHECK_MESSAGE(err.message().find("other events") != std::string::npos,
                      err.message());
  BOOST_CHECK_EQUAL(*third->highest_sequence("acct-1"), 11u);
}

BOOST_AUTO_TEST_CASE(a_stream_with_deleted_events_keeps_its_sequences) {
  fill(*src, "acct-1", 20);
  BOOST_REQUIRE(!src->delete_events_to("acct-1", 12));
  auto ex = src->export_stream("acct-1");
  BOOST_REQUIRE(ex);
  BOOST_CHECK_EQUAL(ex->head.deleted_to, 12u);
  BOOST_CHECK_EQUAL(ex->events.size(), 8u);
  BOOST_REQUIRE(!dst->import_stream(*ex));
  auto head = dst->head_of("acct-1");
  BOOST_REQUIRE(head);
  BOOST_CHECK_EQUAL(head->highest_sequence, 20u);
  BOOST_CHECK_EQUAL(head->deleted_to, 12u);
  auto events = dst->read_stream("acct-1", 1, UINT64_MAX, UINT64_MAX);
  BOOST_REQUIRE(events);
  BOOST_REQUIRE_EQUAL(events->size(), 8u);
  BOOST_CHECK_EQUAL(events->front().sequence, 13u);
  BOOST_CHECK_EQUAL(event_value(events->back()), "acct-1:20");

  // Fully deleted: only the head moves.
  BOOST_REQUIRE(!src->delete_events_to("acct-1", 20));
  auto empty = src->export_stream("acct-1");
  BOOST_REQUIRE(empty);
  BOOST_CHECK(empty->events.empty());
  auto third = open_journal(dir.sub("third"));
  BOOST_REQUIRE(!third->import_stream(*empty));
  BOOST_CHECK(!third->import_stream(*empty));  // repeated
  BOOST_CHECK_EQUAL(*third->highest_sequence("acct-1"), 20u);
  auto next = third->append("acct-1", {make_event("t.happened", "n")},
                            expected_version::exact(20));
  BOOST_REQUIRE_MESSAGE(next, why(next));
  BOOST_CHECK_EQUAL(next->events[0].sequence, 21u);
}

BOOST_AUTO_TEST_CASE(imports_that_would_lose_or_mix_data_are_refused) {
  fill(*src, "acct-1", 4);
  auto ex = src->export_stream("acct-1");
  BOOST_REQUIRE(ex);
  // The destination already has another history of the stream.
  fill(*dst, "acct-1", 2);
  auto err = dst->import_stream(*ex);
  BOOST_CHECK_EQUAL(err.code(), errc::version_conflict);
  BOOST_CHECK_EQUAL(*dst->highest_sequence("acct-1"), 2u);
  // Inconsistent exports.
  auto third = open_journal(dir.sub("third"));
  auto gap = *ex;
  gap.events.erase(gap.events.begin() + 1);
  BOOST_CHECK_EQUAL(third->import_stream(gap).code(), errc::invalid_argument);
  auto renumbered = *ex;
  renumbered.events[2].sequence = 9;
  BOOST_CHECK_EQUAL(third->import_stream(renumbered).code(),
                    errc::invalid_argument);
  auto foreign_snapshot = *ex;
  foreign_snapshot.snapshots.push_back(snap("acct-9", 1));
  BOOST_CHECK_EQUAL(third->import_stream(foreign_snapshot).code(),
                    errc::invalid_argument);
  BOOST_CHECK_EQUAL(third->head_position(), 0u);
  // Ids stored under another stream.
  auto stolen = *ex;
  stolen.head.stream_id = "acct-2";
  for (auto& e : stolen.events) e.stream_id = "acct-2";
  BOOST_REQUIRE(!third->import_stream(*ex));
  BOOST_CHECK_EQUAL(third->import_stream(stolen).code(),
                    errc::duplicate_event_id);
  BOOST_CHECK_EQUAL(*third->highest_sequence("acct-2"), 0u);
  // A stream that moved away does not come back silently.
  BOOST_REQUIRE(!src->release_stream("acct-1", "n2"));
  BOOST_CHECK_EQUAL(src->import_stream(*ex).code(), errc::stream_moved);
  // Nothing to export.
  BOOST_CHECK_EQUAL(src->export_stream("nope").error().code(), errc::not_found);
}

BOOST_AUTO_TEST_CASE(damaged_bundles_are_refused) {
  fill(*src, "acct-1", 3);
  stream_bundle bundle;
  bundle.streams.push_back(*src->export_stream("acct-1"));
  auto bytes = encode_bundle(bundle);
  auto flipped = bytes;
  flipped[flipped.size() - 3] ^= 0x40;
  BOOST_CHECK_EQUAL(decode_bundle(flipped).error().code(),
                    errc::corrupt_record);
  BOOST_CHECK_EQUAL(
      decode_bundle(bytes.substr(0, bytes.size() - 10)).error().code(),
      errc::corrupt_record);
  BOOST_CHECK_EQUAL(decode_bundle("hello").error().code(),
                    errc::format_mismatch);
  auto later = bytes;
  later[14 + 3] = 9;  // format version 9
  BOOST_CHECK_EQUAL(decode_bundle(later).error().code(), errc::format_mismatch);
}

BOOST_AUTO_TEST_CASE(one_event_encodes_with_every_field_and_damage_is_refused) {
  two_journals t;
  two_journals::fill(*t.src, "order-7", 3);
  auto read = t.src->read_stream("order-7", 2, 2, 1);
  BOOST_REQUIRE_MESSAGE(read, why(read));
  BOOST_REQUIRE_EQUAL(read->size(), 1u);
  auto& original = read->front();
  auto bytes = encode_event(original);
  auto back = decode_event(bytes);
  BOOST_REQUIRE_MESSAGE(back, why(back));
  BOOST_CHECK(back->id == original.id);
  BOOST_CHECK_EQUAL(back->stream_id, "order-7");
  BOOST_CHECK_EQUAL(back->sequence, 2u);
  BOOST_CHECK_EQUAL(back->position, original.position);
  BOOST_CHECK_EQUAL(back->type, original.type);
  BOOST_CHECK_EQUAL(back->schema_version, original.schema_version);
  BOOST_CHECK_EQUAL(back->timestamp_us, original.timestamp_us);
  BOOST_CHECK_EQUAL(back->correlation_id, "c2");
  BOOST_CHECK(back->tags == original.tags);
  BOOST_CHECK(back->metadata == original.metadata);
  BOOST_CHECK(back->payload == original.payload);
  BOOST_CHECK_EQUAL(event_value(*back), "order-7:2");
  // Cut short, trailing bytes, or not an event at all: corrupt_record.
  BOOST_CHECK_EQUAL(decode_event(bytes.substr(0, bytes.size() - 3)).error().code(),
                    errc::corrupt_record);
  BOOST_CHECK_EQUAL(decode_event(bytes + "x").error().code(),
                    errc::corrupt_record);
  BOOST_CHECK_EQUAL(decode_event("").error().code(), errc::corrupt_record);
  BOOST_CHECK_EQUAL(decode_event("\x92\xa1x\x01").error().code(),
                    errc::corrupt_record);
}

BOOST_AUTO_TEST_SUITE_END()
