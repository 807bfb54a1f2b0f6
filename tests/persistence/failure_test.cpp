// Failure paths of the journal: full map, full disk, sticky failure,
// read-only use, and directories that are not mnemo journals.

#include <fstream>
#include <future>
#include <sstream>

#include <lmdb.h>

#include "child_modes.hpp"
#include "mnemo/persistence/snapshot_store.hpp"
#include "test_support.hpp"

using namespace mnemo::persistence;
using mnemo::test::make_event;
using mnemo::test::temp_dir;

namespace {

expected<std::unique_ptr<journal>> try_open(const std::string& dir,
                                            bool read_only = false) {
  journal_config cfg;
  cfg.directory = dir;
  cfg.read_only = read_only;
  return journal::open(cfg);
}

void check_open_error(const std::string& dir, errc code,
                      const std::string& fragment, bool read_only = false) {
  auto j = try_open(dir, read_only);
  BOOST_REQUIRE(!j);
  BOOST_CHECK_MESSAGE(j.error().code() == code, j.error().to_string());
  BOOST_CHECK_MESSAGE(j.error().message().find(fragment) != std::string::npos,
                      j.error().message());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(failure)

BOOST_AUTO_TEST_CASE(map_full_grows_the_map_and_retries) {
  temp_dir dir;
  auto j = mnemo::test::open_journal(dir.sub("data"), durability::nosync,
                                     uint64_t{256} << 10);
  auto initial = j->map_size();
  std::string blob(16 * 1024, 'm');
  for (int i = 0; i < 200; ++i) {
    auto res = j->append("s", {make_event("test.big", blob)},
                         expected_version::exact(i));
    BOOST_REQUIRE_MESSAGE(res, mnemo::test::why(res));
  }
  BOOST_CHECK_GT(j->map_size(), initial);
  // A snapshot larger than the whole initial map also fits after growth.
  snapshot snap;
  snap.meta = {"s", 200, 0};
  snap.type = "state";
  snap.payload.assign(std::size_t{3} << 20, 0x5a);
  BOOST_REQUIRE(!j->snapshots().save(snap));
  auto loaded = j->snapshots().load("s", snapshot_criteria::latest());
  BOOST_REQUIRE(loaded && *loaded);
  BOOST_CHECK((*loaded)->payload == snap.payload);
  BOOST_CHECK(!j->failure());
  BOOST_CHECK_EQUAL(j->read_stream("s", 1, 1000, 1000)->size(), 200u);
}

BOOST_AUTO_TEST_CASE(max_map_size_fails_the_append_but_not_the_journal) {
  temp_dir dir;
  journal_config cfg;
  cfg.directory = dir.sub("data");
  cfg.mode = durability::nosync;
  cfg.initial_map_size = uint64_t{256} << 10;
  cfg.max_map_size = uint64_t{1} << 20;
  auto opened = journal::open(cfg);
  BOOST_REQUIRE(opened);
  auto& j = *opened;
  std::string blob(64 * 1024, 'm');
  error failure;
  int written = 0;
  for (; written < 100; ++written) {
    auto res =
        j->append("s", {make_event("test.big", blob)}, expected_version::any());
    if (!res) {
      failure = res.error();
      break;
    }
  }
  BOOST_REQUIRE(failure);
  BOOST_CHECK(failure.code() == errc::storage_full);
  BOOST_CHECK(failure.message().find("max_map_size") != std::string::npos);
  // Nothing of the failed batch was written, earlier events are intact and
  // the journal is not failed: a small append still fits.
  BOOST_CHECK_EQUAL(*j->highest_sequence("s"), static_cast<uint64_t>(written));
  BOOST_CHECK(!j->failure());
  BOOST_CHECK(
      j->append("t", {make_event("test.small", "x")}, expected_version::any()));
}

// At max_map_size, one request that cannot fit fails alone: the small
// appends and the snapshot of the same group commit are stored, and the
// error names the request, its size and the space left.
BOOST_AUTO_TEST_CASE(at_max_map_size_an_oversized_request_fails_alone) {
  temp_dir dir;
  journal_config cfg;
  cfg.directory = dir.sub("data");
  cfg.initial_map_size = uint64_t{1} << 20;
  cfg.max_map_size = uint64_t{1} << 20;
  constexpr int small = 300;
  std::vector<std::future<expected<append_result>>> acks;
  std::future<expected<append_result>> big;
  std::promise<error> big_snapshot;
  std::promise<error> small_snapshot;
  {
    auto opened = journal::open(cfg);
    BOOST_REQUIRE(opened);
    auto& j = **opened;
    auto append = [&j](std::string stream, std::string value) {
      auto done = std::make_shared<std::promise<expected<append_result>>>();
      auto result = done->get_future();
      j.append(std::move(stream), {make_event("test.e", std::move(value))},
               expected_version::any(), [done](expected<append_result> r) {
                 done->set_value(std::move(r));
               });
      return result;
    };
    // Everything below joins one group commit behind the gate.
    mnemo::test::writer_gate gate;
    gate.hold(j);
    for (int i = 0; i < small; ++i) {
      acks.push_back(
          append("small-" + std::to_string(i % 17), "v" + std::to_string(i)));
      if (i == small / 2) {
        big = append("huge", std::string(std::size_t{2} << 20, 'h'));
        snapshot snap;
        snap.meta = {"small-0", 1, 0};
        snap.type = "state";
        snap.payload.assign(std::size_t{3} << 20, 0x5a);
        j.write(
            [snap](write_txn& t) { return snapshot_store::save_in(t, snap); },
            [&](error e) { big_snapshot.set_value(std::move(e)); });
        snapshot ok;
        ok.meta = {"small-1", 1, 0};
        ok.type = "state";
        ok.payload.assign(100, 0x11);
        j.write([ok](write_txn& t) { return snapshot_store::save_in(t, ok); },
                [&](error e) { small_snapshot.set_value(std::move(e)); });
      }
    }
    gate.release();
    auto failed = big.get();
    BOOST_REQUIRE(!failed);
    auto& e = failed.error();
    BOOST_CHECK_MESSAGE(e.code() == errc::storage_full, e.to_string());
    for (auto* part : {"map full", "'huge'", "2097", "bytes left",
                       "max_map_size", "failed alone"})
      BOOST_CHECK_MESSAGE(e.message().find(part) != std::string::npos,
                          part << " not in: " << e.message());
    auto snap_err = big_snapshot.get_future().get();
    BOOST_CHECK_MESSAGE(snap_err.code() == errc::storage_full,
                        snap_err.to_string());
    BOOST_CHECK(snap_err.message().find("map full") != std::string::npos);
    auto ok_err = small_snapshot.get_future().get();
    BOOST_CHECK_MESSAGE(!ok_err, ok_err.to_string());
    for (auto& ack : acks) {
      auto res = ack.get();
      BOOST_REQUIRE_MESSAGE(res, mnemo::test::why(res));
    }
    BOOST_CHECK(!j.failure());
  }
  auto j = mnemo::test::open_journal(cfg.directory);
  size_t events = 0;
  for (int s = 0; s < 17; ++s) {
    auto got = j->read_stream("small-" + std::to_string(s), 1, 1000, 1000);
    BOOST_REQUIRE(got);
    events += got->size();
  }
  BOOST_CHECK_EQUAL(events, static_cast<size_t>(small));
  BOOST_CHECK_EQUAL(*j->highest_sequence("huge"), 0u);
  auto snap = j->snapshots().load("small-1", snapshot_criteria::latest());
  BOOST_REQUIRE(snap && *snap);
  BOOST_CHECK_EQUAL((*snap)->payload.size(), 100u);
  auto none = j->snapshots().load("small-0", snapshot_criteria::latest());
  BOOST_REQUIRE(none);
  BOOST_CHECK(!*none);
}

BOOST_AUTO_TEST_CASE(disk_full_is_a_clear_sticky_error_and_loses_nothing) {
  temp_dir dir;
  auto data = dir.sub("data");
  auto child =
      mnemo::test::spawn_child("fsize-writer", {data, std::to_string(2 << 20)});
  auto result = mnemo::test::finish_child(child);
  BOOST_REQUIRE_MESSAGE(result.status == 0, "child exited with "
                                                << result.status << ": "
                                                << result.out);
  std::istringstream out{result.out};
  std::string word, code;
  uint64_t acked = 0;
  out >> word >> acked;
  BOOST_REQUIRE_EQUAL(word, "acked");
  BOOST_CHECK_GT(acked, 10u);
  std::string line;
  std::getline(out, line);
  std::getline(out, line);
  BOOST_TEST_MESSAGE(line);
  // The write that hits the limit fails as EFBIG, or, when the kernel wrote
  // part of it, as LMDB's EIO for a short write, depending on where the
  // limit falls: both are storage_full naming the limit.
  BOOST_CHECK(line.rfind("failed storage_full", 0) == 0);
  BOOST_CHECK(line.find("file size limit") != std::string::npos);
  std::getline(out, line);
  BOOST_TEST_MESSAGE(line);
  // Every later append gets the original error until the journal reopens.
  BOOST_CHECK(line.rfind("again journal_failed", 0) == 0);
  BOOST_CHECK(line.find("file size limit") != std::string::npos);
  auto j = mnemo::test::open_journal(data);
  BOOST_CHECK_EQUAL(*j->highest_sequence("big"), acked);
  BOOST_CHECK_EQUAL(j->read_stream("big", 1, acked, acked)->size(), acked);
  BOOST_CHECK(j->append("big", {make_event("test.big", "after")},
                        expected_version::exact(acked)));
}

BOOST_AUTO_TEST_CASE(read_only_journal_refuses_writes) {
  temp_dir dir;
  auto data = dir.sub("data");
  {
    auto j = mnemo::test::open_journal(data);
    BOOST_REQUIRE(
        j->append("s", {make_event("t", "1")}, expected_version::any()));
  }
  auto j = try_open(data, true);
  BOOST_REQUIRE_MESSAGE(j, mnemo::test::why(j));
  BOOST_CHECK_EQUAL(*(*j)->highest_sequence("s"), 1u);
  auto res = (*j)->append("s", {make_event("t", "2")}, expected_version::any());
  BOOST_REQUIRE(!res);
  BOOST_CHECK(res.error().code() == errc::invalid_argument);
  BOOST_CHECK(res.error().message().find("read-only") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(opening_something_else_fails_clearly) {
  temp_dir dir;
  check_open_error("", errc::invalid_argument, "directory is empty");
  check_open_error(dir.sub("missing"), errc::not_found, "does not exist", true);
  auto file = dir.sub("file");
  std::ofstream{file} << "hello";
  check_open_error(file, errc::format_mismatch, "is not a directory");
  auto other = dir.sub("other");
  std::filesystem::create_directory(other);
  std::ofstream{other + "/notes.txt"} << "not a journal";
  check_open_error(other, errc::format_mismatch, "holds no mnemo journal");
  auto garbage = dir.sub("garbage");
  std::filesystem::create_directory(garbage);
  std::ofstream{garbage + "/data.mdb"} << std::string(8192, 'g');
  check_open_error(garbage, errc::format_mismatch, "mdb_env_open");
}

BOOST_AUTO_TEST_CASE(another_format_version_fails_clearly) {
  temp_dir dir;
  auto data = dir.sub("data");
  { auto j = mnemo::test::open_journal(data); }
  mnemo::test::set_format_version(data, 4);
  check_open_error(data, errc::format_mismatch, "format version 4");
  check_open_error(data, errc::format_mismatch, "format version 4", true);
}

BOOST_AUTO_TEST_CASE(plain_lmdb_environment_is_not_a_journal) {
  temp_dir dir;
  auto data = dir.sub("lmdb");
  std::filesystem::create_directory(data);
  MDB_env* env = nullptr;
  BOOST_REQUIRE_EQUAL(mdb_env_create(&env), 0);
  BOOST_REQUIRE_EQUAL(mdb_env_open(env, data.c_str(), 0, 0644), 0);
  MDB_txn* txn = nullptr;
  BOOST_REQUIRE_EQUAL(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi dbi;
  BOOST_REQUIRE_EQUAL(mdb_dbi_open(txn, nullptr, 0, &dbi), 0);
  MDB_val key{3, const_cast<char*>("foo")};
  MDB_val val{3, const_cast<char*>("bar")};
  BOOST_REQUIRE_EQUAL(mdb_put(txn, dbi, &key, &val, 0), 0);
  BOOST_REQUIRE_EQUAL(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  check_open_error(data, errc::format_mismatch, "not a mnemo journal");
}

BOOST_AUTO_TEST_CASE(damaged_stream_head_fails_only_its_own_appends) {
  temp_dir dir;
  auto data = dir.sub("data");
  {
    auto j = mnemo::test::open_journal(data);
    BOOST_REQUIRE(
        j->append("a", {make_event("t", "1")}, expected_version::any()));
    BOOST_REQUIRE(
        j->append("b", {make_event("t", "1")}, expected_version::any()));
  }
  mnemo::test::raw_put(data, "mnemo.streams", "a", "short");
  auto j = mnemo::test::open_journal(data);
  auto bad = j->append("a", {make_event("t", "2")}, expected_version::any());
  BOOST_REQUIRE(!bad);
  BOOST_CHECK(bad.error().code() == errc::corrupt_record);
  BOOST_CHECK(bad.error().message().find("'a'") != std::string::npos);
  BOOST_CHECK(
      j->append("b", {make_event("t", "2")}, expected_version::exact(1)));
  BOOST_CHECK(!j->failure());
  BOOST_CHECK(!j->read_stream("a", 1, 10, 10));
}

BOOST_AUTO_TEST_SUITE_END()
