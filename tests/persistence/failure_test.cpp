// Failure paths of the journal: full map, full disk, sticky failure,
// read-only use, and directories that are not mnemo journals.

#include <fstream>
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
