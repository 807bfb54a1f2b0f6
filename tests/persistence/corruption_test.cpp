// Flipped bytes in stored records: reads fail with an error naming stream
// and sequence; nothing is skipped or reset.

#include <fstream>
#include <iterator>

#include "mnemo/persistence/snapshot_store.hpp"
#include "test_support.hpp"

using namespace mnemo::persistence;
using mnemo::test::make_event;
using mnemo::test::temp_dir;

namespace {

// Flips one byte of every copy of `marker` inside the LMDB data file, as a
// bad disk sector would (copy-on-write leaves stale copies of a page in free
// pages, so the live one is among them); returns whether any was found.
bool flip_in_file(const std::string& dir, const std::string& marker) {
  auto path = dir + "/data.mdb";
  std::string bytes;
  {
    std::ifstream in{path, std::ios::binary};
    bytes.assign(std::istreambuf_iterator<char>{in}, {});
  }
  std::fstream out{path, std::ios::binary | std::ios::in | std::ios::out};
  bool found = false;
  for (auto at = bytes.find(marker); at != std::string::npos;
       at = bytes.find(marker, at + 1)) {
    auto off = at + marker.size() / 2;
    out.seekp(static_cast<std::streamoff>(off));
    out.put(static_cast<char>(bytes[off] ^ 0x20));
    found = true;
  }
  return found && static_cast<bool>(out);
}

void fill(const std::string& data) {
  auto j = mnemo::test::open_journal(data, durability::sync);
  for (int i = 1; i <= 5; ++i) {
    auto res = j->append(
        "acct-7",
        {make_event("test.value", "MARKER-value-number-" + std::to_string(i))},
        expected_version::exact(i - 1));
    BOOST_REQUIRE(res);
  }
  BOOST_REQUIRE(j->append("other", {make_event("test.value", "fine")},
                          expected_version::any()));
}

void check_corrupt(const error& err, const std::string& fragment) {
  BOOST_CHECK_MESSAGE(err.code() == errc::corrupt_record, err.to_string());
  BOOST_CHECK_MESSAGE(err.message().find(fragment) != std::string::npos,
                      err.message());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(corruption)

BOOST_AUTO_TEST_CASE(flipped_payload_byte_names_stream_and_sequence) {
  temp_dir dir;
  auto data = dir.sub("data");
  fill(data);
  BOOST_REQUIRE(flip_in_file(data, "MARKER-value-number-3"));
  auto j = mnemo::test::open_journal(data);
  // Recovery-style replay of the whole stream fails at the damaged record.
  auto replay = j->read_stream("acct-7", 1, UINT64_MAX, UINT64_MAX);
  BOOST_REQUIRE(!replay);
  check_corrupt(replay.error(), "stream 'acct-7' at sequence 3");
  check_corrupt(replay.error(), "checksum mismatch");
  // Reads that do not touch the damaged record still work.
  auto before = j->read_stream("acct-7", 1, 2, 10);
  BOOST_REQUIRE(before);
  BOOST_CHECK_EQUAL(before->size(), 2u);
  BOOST_CHECK(j->read_stream("other", 1, 10, 10));
  // The global log reports the position; nothing is skipped silently.
  auto all = j->read_all(1, 100);
  BOOST_REQUIRE(!all);
  check_corrupt(all.error(), "global position 3");
  // The journal keeps the record as it is: a reopen reports it again.
  j.reset();
  j = mnemo::test::open_journal(data);
  BOOST_CHECK(!j->read_stream("acct-7", 3, 3, 1));
  BOOST_CHECK_EQUAL(*j->highest_sequence("acct-7"), 5u);
}

BOOST_AUTO_TEST_CASE(filtered_read_reports_a_damaged_record_it_would_skip) {
  temp_dir dir;
  auto data = dir.sub("data");
  fill(data);
  BOOST_REQUIRE(flip_in_file(data, "MARKER-value-number-3"));
  auto j = mnemo::test::open_journal(data);
  // A projection of "other" streams does not decode acct-7's events, but
  // it still meets the damage instead of passing it by.
  auto err = j->write([&](write_txn& txn) -> error {
    auto res = journal::read_all_in(txn, 1, 100, "other");
    return res ? error{} : res.error();
  });
  check_corrupt(err, "global position 3");
  check_corrupt(err, "checksum mismatch");
}

BOOST_AUTO_TEST_CASE(flipped_envelope_byte_is_detected) {
  temp_dir dir;
  auto data = dir.sub("data");
  {
    auto j = mnemo::test::open_journal(data, durability::sync);
    auto ev = make_event("test.value", "x");
    ev.correlation_id = "CORRELATION-MARKER-abcdef";
    BOOST_REQUIRE(j->append("s-1", {ev}, expected_version::any()));
  }
  BOOST_REQUIRE(flip_in_file(data, "CORRELATION-MARKER-abcdef"));
  auto j = mnemo::test::open_journal(data);
  auto replay = j->read_stream("s-1", 1, 1, 1);
  BOOST_REQUIRE(!replay);
  check_corrupt(replay.error(), "stream 's-1' at sequence 1");
}

BOOST_AUTO_TEST_CASE(corrupt_snapshot_names_stream_and_sequence) {
  temp_dir dir;
  auto data = dir.sub("data");
  {
    auto j = mnemo::test::open_journal(data, durability::sync);
    snapshot snap;
    snap.meta = {"acct-9", 42, 0};
    snap.type = "state";
    std::string marker = "SNAPSHOT-MARKER-payload";
    snap.payload.assign(marker.begin(), marker.end());
    BOOST_REQUIRE(!j->snapshots().save(snap));
  }
  BOOST_REQUIRE(flip_in_file(data, "SNAPSHOT-MARKER-payload"));
  auto j = mnemo::test::open_journal(data);
  auto loaded = j->snapshots().load("acct-9", snapshot_criteria::latest());
  BOOST_REQUIRE(!loaded);
  check_corrupt(loaded.error(), "stream 'acct-9' at sequence 42");
}

BOOST_AUTO_TEST_SUITE_END()
