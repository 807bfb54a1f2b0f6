// The Akka Persistence TCK SnapshotStoreSpec (identical in Akka and Pekko)
// ported to the mnemo snapshot store.
//
// Mapping: persistenceId -> stream id; SnapshotMetadata -> snapshot_metadata
// (timestamps in microseconds, 0 on save means "now");
// SnapshotSelectionCriteria -> snapshot_criteria; LoadSnapshot(pid,
// criteria, toSequenceNr) -> load(stream, criteria) with the framework's
// `criteria.limit(toSequenceNr)` applied by the caller (see `limit`);
// DeleteSnapshot(md) -> remove(stream, sequence); DeleteSnapshots(pid,
// criteria) -> remove(stream, criteria). Save returns no metadata, so the
// timestamps the store assigned are read back with list(). Published plugin
// commands have no counterpart and are not checked.

#include "test_support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <msgpack.hpp>

#include "mnemo/persistence/snapshot_store.hpp"

using namespace mnemo::persistence;

namespace {

// Long.MaxValue of the spec, as a sequence and as a timestamp.
constexpr uint64_t max_long = std::numeric_limits<uint64_t>::max();
constexpr int64_t max_time = std::numeric_limits<int64_t>::max();

const std::string state_type = "tck.state";

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

int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch())
      .count();
}

// SnapshotSelectionCriteria(maxSequenceNr, maxTimestamp).
snapshot_criteria selection(uint64_t max_sequence,
                            int64_t max_timestamp_us = max_time) {
  auto c = snapshot_criteria::latest();
  c.max_sequence = max_sequence;
  c.max_timestamp_us = max_timestamp_us;
  return c;
}

// SnapshotSelectionCriteria.limit(toSequenceNr), which the Akka framework
// applies before asking the store.
snapshot_criteria limit(snapshot_criteria c, uint64_t to_sequence) {
  if (to_sequence < c.max_sequence) c.max_sequence = to_sequence;
  return c;
}

// A snapshot of `stream` at `sequence` whose state is the msgpack map
// {"v": value}; timestamp 0 lets the store fill in the current time.
snapshot tck_snapshot(const std::string& stream, uint64_t sequence,
                       const std::string& value) {
  snapshot snap;
  snap.meta.stream_id = stream;
  snap.meta.sequence = sequence;
  snap.type = state_type;
  msgpack::sbuffer buf;
  msgpack::pack(buf, std::map<std::string, std::string>{{"v", value}});
  snap.payload.assign(buf.data(), buf.data() + buf.size());
  return snap;
}

// Returns the "v" field of a state made by `make_snapshot`.
std::string snapshot_value(const snapshot& snap) {
  auto handle = msgpack::unpack(
      reinterpret_cast<const char*>(snap.payload.data()), snap.payload.size());
  return handle.get().as<std::map<std::string, std::string>>().at("v");
}

std::vector<uint64_t> sequences(const std::vector<snapshot_metadata>& mds) {
  std::vector<uint64_t> result;
  for (auto& md : mds) result.push_back(md.sequence);
  return result;
}

// The SnapshotStoreSpec beforeEach: a fresh journal whose stream `pid` has
// snapshots at 11..15 with states "s-1".."s-5", saved in order with
// timestamp 0. `metadata[k]` is the stored metadata of sequence 11 + k.
struct tck_snapshots : mnemo::test::journal_fixture {
  std::string pid = next_pid();
  std::vector<snapshot_metadata> metadata;

  tck_snapshots() {
    std::vector<int64_t> before;
    std::vector<int64_t> after;
    for (int i = 1; i <= 5; ++i) {
      before.push_back(now_us());
      require_ok(store().save(tck_snapshot(pid, static_cast<uint64_t>(i + 10),
                                            "s-" + std::to_string(i))));
      after.push_back(now_us());
    }
    metadata = require_value(store().list(pid));
    BOOST_REQUIRE_EQUAL(metadata.size(), 5u);
    for (size_t k = 0; k < 5; ++k) {
      BOOST_TEST_CONTEXT("snapshot " << 11 + k) {
        BOOST_TEST(metadata[k].stream_id == pid);
        BOOST_TEST(metadata[k].sequence == 11 + k);
        // "0 means now": the save time in microseconds since the epoch.
        BOOST_TEST(metadata[k].timestamp_us >= before[k]);
        BOOST_TEST(metadata[k].timestamp_us <= after[k]);
      }
    }
  }

  snapshot_store& store() { return j->snapshots(); }

  // LoadSnapshot(pid, criteria, toSequenceNr).
  std::optional<snapshot> load(const snapshot_criteria& criteria,
                               uint64_t to_sequence = max_long) {
    return require_value(store().load(pid, limit(criteria, to_sequence)));
  }
};

// Checks that `got` is SelectedSnapshot(md, value), timestamp included.
void expect_selected(const std::optional<snapshot>& got,
                     const snapshot_metadata& md, const std::string& value) {
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST(got->meta.stream_id == md.stream_id);
  BOOST_TEST(got->meta.sequence == md.sequence);
  BOOST_TEST(got->meta.timestamp_us == md.timestamp_us);
  BOOST_TEST(got->type == state_type);
  BOOST_TEST(snapshot_value(*got) == value);
}

// A state of `size` bytes or more whose bytes vary, so a truncated or
// shifted copy cannot compare equal.
std::string patterned(size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i)
    s[i] = static_cast<char>('a' + (i * 31) % 26);
  return s;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(snapshot_tck)

// -- A snapshot store must ----------------------------------------------------

// "not load a snapshot given an invalid persistenceId"
BOOST_FIXTURE_TEST_CASE(not_load_a_snapshot_given_an_invalid_persistence_id,
                        tck_snapshots) {
  auto got = require_value(
      store().load("invalid", limit(snapshot_criteria::latest(), max_long)));
  BOOST_TEST(!got.has_value());
}

// "not load a snapshot given non-matching timestamp criteria"
BOOST_FIXTURE_TEST_CASE(
    not_load_a_snapshot_given_non_matching_timestamp_criteria, tck_snapshots) {
  auto criteria = snapshot_criteria::latest();
  criteria.max_timestamp_us = 100;
  BOOST_TEST(!load(criteria).has_value());
}

// "not load a snapshot given non-matching sequence number criteria"
BOOST_FIXTURE_TEST_CASE(
    not_load_a_snapshot_given_non_matching_sequence_number_criteria,
    tck_snapshots) {
  BOOST_TEST(!load(selection(7)).has_value());
  BOOST_TEST(!load(snapshot_criteria::latest(), 7).has_value());
}

// "load the most recent snapshot"
BOOST_FIXTURE_TEST_CASE(load_the_most_recent_snapshot, tck_snapshots) {
  expect_selected(load(snapshot_criteria::latest()), metadata[4], "s-5");
}

// "load the most recent snapshot matching an upper sequence number bound"
BOOST_FIXTURE_TEST_CASE(
    load_the_most_recent_snapshot_matching_an_upper_sequence_number_bound,
    tck_snapshots) {
  expect_selected(load(selection(13)), metadata[2], "s-3");
  expect_selected(load(snapshot_criteria::latest(), 13), metadata[2], "s-3");
}

// "load the most recent snapshot matching upper sequence number and timestamp
// bounds"
BOOST_FIXTURE_TEST_CASE(
    load_the_most_recent_snapshot_matching_upper_sequence_number_and_timestamp_bounds,
    tck_snapshots) {
  expect_selected(load(selection(13, metadata[2].timestamp_us)), metadata[2],
                  "s-3");
  auto criteria = snapshot_criteria::latest();
  criteria.max_timestamp_us = metadata[2].timestamp_us;
  expect_selected(load(criteria, 13), metadata[2], "s-3");
}

// "delete a single snapshot identified by sequenceNr in snapshot metadata"
// Akka deletes by metadata with timestamp 0 ("any timestamp"); here removal
// by stream and sequence ignores timestamps by construction.
BOOST_FIXTURE_TEST_CASE(
    delete_a_single_snapshot_identified_by_sequence_nr_in_snapshot_metadata,
    tck_snapshots) {
  require_ok(store().remove(pid, metadata[2].sequence));
  expect_selected(load(selection(13)), metadata[1], "s-2");
  BOOST_TEST(sequences(require_value(store().list(pid))) ==
                 (std::vector<uint64_t>{11, 12, 14, 15}),
             boost::test_tools::per_element());
}

// "delete all snapshots matching upper sequence number and timestamp bounds"
BOOST_FIXTURE_TEST_CASE(
    delete_all_snapshots_matching_upper_sequence_number_and_timestamp_bounds,
    tck_snapshots) {
  auto md = metadata[2];
  auto criteria = selection(md.sequence, md.timestamp_us);
  require_ok(store().remove(pid, criteria));
  BOOST_TEST(!load(criteria).has_value());
  expect_selected(
      load(selection(metadata[3].sequence, metadata[3].timestamp_us)),
      metadata[3], "s-4");
}

// "not delete snapshots with non-matching upper timestamp bounds"
BOOST_FIXTURE_TEST_CASE(
    not_delete_snapshots_with_non_matching_upper_timestamp_bounds,
    tck_snapshots) {
  auto md = metadata[3];
  require_ok(store().remove(pid, selection(md.sequence, md.timestamp_us - 1)));
  expect_selected(load(selection(md.sequence, md.timestamp_us)), md, "s-4");
}

// "save and overwrite snapshot with same sequence number"
BOOST_FIXTURE_TEST_CASE(save_and_overwrite_snapshot_with_same_sequence_number,
                        tck_snapshots) {
  auto md = metadata[4];
  auto snap = tck_snapshot(pid, md.sequence, "s-5-modified");
  snap.meta = md;
  require_ok(store().save(snap));
  auto got = load(selection(md.sequence));
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST(got->meta.sequence == md.sequence);
  BOOST_TEST(snapshot_value(*got) == "s-5-modified");
  // Overwritten, not stored twice.
  BOOST_TEST(sequences(require_value(store().list(pid))) ==
                 (std::vector<uint64_t>{11, 12, 13, 14, 15}),
             boost::test_tools::per_element());
}

// "save bigger size snapshot (10000 bytes)"
BOOST_FIXTURE_TEST_CASE(save_bigger_size_snapshot_10000_bytes, tck_snapshots) {
  auto state = std::string(10000, '0');
  require_ok(store().save(tck_snapshot(pid, 100, state)));
  auto got = load(snapshot_criteria::latest());
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST(got->meta.sequence == 100u);
  BOOST_TEST(snapshot_value(*got) == state);
}

// -- A snapshot store optionally may ------------------------------------------

// "serialize snapshots": the state bytes, every byte value included, come
// back unchanged.
BOOST_FIXTURE_TEST_CASE(serialize_snapshots, tck_snapshots) {
  std::vector<char> bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(static_cast<char>(b));
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(1);
  pk.pack(std::string{"bin"});
  pk.pack_bin(static_cast<uint32_t>(bytes.size()));
  pk.pack_bin_body(bytes.data(), static_cast<uint32_t>(bytes.size()));
  snapshot snap;
  snap.meta.stream_id = pid;
  snap.meta.sequence = 100;
  snap.type = "tck.binary";
  snap.schema_version = 7;
  snap.payload.assign(buf.data(), buf.data() + buf.size());
  require_ok(store().save(snap));
  auto got = load(snapshot_criteria::latest());
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST(got->meta.stream_id == pid);
  BOOST_TEST(got->meta.sequence == 100u);
  BOOST_TEST(got->type == "tck.binary");
  BOOST_TEST(got->schema_version == 7u);
  BOOST_TEST(got->payload == snap.payload, boost::test_tools::per_element());
}

// "store metadata"
BOOST_FIXTURE_TEST_CASE(store_metadata, tck_snapshots) {
  auto snap = tck_snapshot(pid, 100, "snap");
  snap.metadata = {{"note", "fictional metadata"}, {"user", "alice"}};
  require_ok(store().save(snap));
  auto got = load(snapshot_criteria::latest());
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST(got->meta.sequence == 100u);
  BOOST_TEST(snapshot_value(*got) == "snap");
  BOOST_TEST((got->metadata == snap.metadata));
}

// -- Beyond the spec ----------------------------------------------------------

// Snapshot states are not limited to a page or to the spec's 10000 bytes.
BOOST_FIXTURE_TEST_CASE(save_and_load_a_snapshot_larger_than_1_mib,
                        tck_snapshots) {
  auto state = patterned((size_t{1} << 20) + 17);
  require_ok(store().save(tck_snapshot(pid, 100, state)));
  auto got = load(snapshot_criteria::latest());
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST(got->meta.sequence == 100u);
  BOOST_TEST(got->payload.size() > (size_t{1} << 20));
  BOOST_TEST((snapshot_value(*got) == state));
  // The older snapshots are untouched by the large neighbour.
  expect_selected(load(selection(15)), metadata[4], "s-5");
}

// Keep-N retention keeps the newest snapshots of one stream only.
BOOST_FIXTURE_TEST_CASE(keep_the_newest_n_snapshots_with_retain,
                        tck_snapshots) {
  require_ok(store().save(tck_snapshot("other", 1, "o-1")));
  require_ok(store().retain(pid, 2));
  BOOST_TEST(sequences(require_value(store().list(pid))) ==
                 (std::vector<uint64_t>{14, 15}),
             boost::test_tools::per_element());
  BOOST_TEST(!load(selection(13)).has_value());
  expect_selected(load(snapshot_criteria::latest()), metadata[4], "s-5");
  // Keeping more than there are deletes nothing.
  require_ok(store().retain(pid, 5));
  BOOST_TEST(require_value(store().list(pid)).size() == 2u);
  require_ok(store().retain(pid, 0));
  BOOST_TEST(require_value(store().list(pid)).empty());
  BOOST_TEST(!load(snapshot_criteria::latest()).has_value());
  BOOST_TEST(require_value(store().list("other")).size() == 1u);
}

// Deletes of snapshots that are not there succeed and change nothing.
BOOST_FIXTURE_TEST_CASE(deleting_a_snapshot_that_does_not_exist_is_not_an_error,
                        tck_snapshots) {
  require_ok(store().remove(pid, 99));
  require_ok(store().remove(pid, 13));
  require_ok(store().remove(pid, 13));
  require_ok(store().remove("never-written", 1));
  require_ok(store().remove(pid, selection(10)));
  require_ok(store().remove("never-written", snapshot_criteria::latest()));
  BOOST_TEST(sequences(require_value(store().list(pid))) ==
                 (std::vector<uint64_t>{11, 12, 14, 15}),
             boost::test_tools::per_element());
}

// Snapshots, their timestamps, deletions and large states survive closing
// and reopening the journal.
BOOST_FIXTURE_TEST_CASE(snapshots_survive_journal_reopen, tck_snapshots) {
  auto state = patterned((size_t{1} << 20) + 17);
  require_ok(store().save(tck_snapshot(pid, 100, state)));
  require_ok(store().remove(pid, 13));
  reopen();
  auto listed = require_value(store().list(pid));
  BOOST_TEST(sequences(listed) == (std::vector<uint64_t>{11, 12, 14, 15, 100}),
             boost::test_tools::per_element());
  auto got = load(snapshot_criteria::latest());
  BOOST_REQUIRE(got.has_value());
  BOOST_TEST(got->meta.sequence == 100u);
  BOOST_TEST((snapshot_value(*got) == state));
  expect_selected(load(selection(13)), metadata[1], "s-2");
  expect_selected(load(selection(15, metadata[4].timestamp_us)), metadata[4],
                  "s-5");
}

// The bounds of the selection: a negative timestamp is refused (it could
// never be selected), and the extremes that can be stored are selected by
// `latest()` and by criteria at the same extremes.
BOOST_FIXTURE_TEST_CASE(snapshot_timestamps_and_sequences_at_their_limits,
                        tck_snapshots) {
  auto negative = tck_snapshot("t-neg", 3, "neg");
  negative.meta.timestamp_us = -1;
  auto err = store().save(negative);
  BOOST_TEST(err.code() == errc::invalid_argument);
  BOOST_TEST(err.message().find("negative timestamp") != std::string::npos);
  negative.meta.timestamp_us = std::numeric_limits<int64_t>::min();
  BOOST_TEST(store().save(negative).code() == errc::invalid_argument);
  BOOST_TEST(require_value(store().list("t-neg")).empty());

  auto oldest = tck_snapshot("t-lim", 0, "zero");
  oldest.meta.timestamp_us = 1;
  require_ok(store().save(oldest));
  auto newest = tck_snapshot("t-lim", max_long, "max");
  newest.meta.timestamp_us = max_time;
  require_ok(store().save(newest));
  auto at = [&](snapshot_criteria c) {
    return require_value(store().load("t-lim", c));
  };
  expect_selected(at(snapshot_criteria::latest()), newest.meta, "max");
  expect_selected(at(selection(0)), oldest.meta, "zero");
  expect_selected(at(selection(max_long, 1)), oldest.meta, "zero");
  auto from_top = snapshot_criteria::latest();
  from_top.min_timestamp_us = max_time;
  expect_selected(at(from_top), newest.meta, "max");
  from_top.min_sequence = max_long;
  expect_selected(at(from_top), newest.meta, "max");
  BOOST_TEST(!at(snapshot_criteria::none()).has_value());
  auto empty = snapshot_criteria::latest();
  empty.min_sequence = 5;
  empty.max_sequence = 4;
  BOOST_TEST(!at(empty).has_value());
  // Deletion by criteria sees the same bounds.
  require_ok(store().remove("t-lim", selection(0)));
  BOOST_TEST(sequences(require_value(store().list("t-lim"))) ==
                 (std::vector<uint64_t>{max_long}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
