#include "test_support.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "mnemo/persistence/dead_letter_store.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/persistence/read_model.hpp"
#include "mnemo/persistence/snapshot_store.hpp"

extern char** environ;

namespace mp = mnemo::persistence;
using nlohmann::json;

namespace {

/// What one run of mnemo-inspect produced.
struct run_result {
  int exit_code = -1;
  std::string out;
  std::string err;

  /// Parses every stdout line as one JSON object.
  std::vector<json> lines() const {
    std::vector<json> result;
    std::istringstream in{out};
    for (std::string line; std::getline(in, line);) {
      BOOST_REQUIRE_MESSAGE(json::accept(line), "not JSON: " << line);
      result.push_back(json::parse(line));
    }
    return result;
  }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out{path, std::ios::binary | std::ios::trunc};
  out << bytes;
  BOOST_REQUIRE(out.good());
}

/// Runs mnemo-inspect with `args`, capturing stdout, stderr and exit code.
run_result run_inspect(std::vector<std::string> args) {
  mnemo::test::temp_dir scratch;
  auto out_path = scratch.sub("stdout");
  auto err_path = scratch.sub("stderr");
  args.insert(args.begin(), MNEMO_INSPECT_PATH);
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  auto rc = posix_spawn(&pid, MNEMO_INSPECT_PATH, &actions, nullptr,
                        argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  BOOST_REQUIRE_MESSAGE(rc == 0, "cannot run " MNEMO_INSPECT_PATH);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) BOOST_REQUIRE_EQUAL(errno, EINTR);
  BOOST_REQUIRE_MESSAGE(WIFEXITED(status), "mnemo-inspect did not exit");
  return {WEXITSTATUS(status), read_bytes(out_path), read_bytes(err_path)};
}

/// An event whose payload is {"v": value}, with tags, metadata and ids.
mp::new_event event(const std::string& type, const std::string& value,
                    std::vector<std::string> tags) {
  auto ev = mnemo::test::make_event(type, value);
  ev.tags = std::move(tags);
  ev.metadata = {{"user", "alice"}, {"source", "test"}};
  ev.correlation_id = "corr-" + value;
  ev.causation_id = "cause-" + value;
  return ev;
}

mp::snapshot make_snapshot(const std::string& stream, uint64_t sequence,
                           const std::string& value) {
  auto ev = mnemo::test::make_event("account.state", value);
  mp::snapshot snap;
  snap.meta = {stream, sequence, int64_t{1000} + int64_t(sequence)};
  snap.type = ev.type;
  snap.payload = ev.payload;
  snap.metadata = {{"reason", "test"}};
  return snap;
}

/// Replaces every occurrence of `from` in the file at `path` by `to`;
/// returns how many were replaced.
size_t patch_file(const std::string& path, const std::string& from,
                  const std::string& to) {
  auto bytes = read_bytes(path);
  size_t count = 0;
  for (auto i = bytes.find(from); i != std::string::npos;
       i = bytes.find(from, i + 1), ++count)
    bytes.replace(i, from.size(), to);
  write_bytes(path, bytes);
  return count;
}

/// A closed journal with five events in two interleaved streams:
///   position 1: account-1/1 deposited "10"  tags account, money
///   position 2: account-1/2 deposited "20"  tags account, money
///   position 3: account-2/1 opened "bob"    tags account
///   position 4: account-1/3 withdrawn "5"   tags account, money
///   position 5: account-2/2 deposited "7"   tags money
/// snapshots account-1@2, account-1@3, account-2@1; offsets audit=2,
/// balances=4.
struct inspect_fixture {
  mnemo::test::temp_dir dir;
  std::string data = dir.sub("data");
  std::vector<mp::event_ref> refs;  // index = position - 1
  int64_t start_us = now_us();

  inspect_fixture() {
    auto j = mnemo::test::open_journal(data);
    append(*j, "account-1",
           {event("account.deposited", "10", {"account", "money"}),
            event("account.deposited", "20", {"account", "money"})});
    append(*j, "account-2", {event("account.opened", "bob", {"account"})});
    append(*j, "account-1",
           {event("account.withdrawn", "5", {"account", "money"})});
    append(*j, "account-2", {event("account.deposited", "7", {"money"})});
    for (auto [stream, seq, value] :
         {std::tuple{"account-1", 2, "30"}, std::tuple{"account-1", 3, "25"},
          std::tuple{"account-2", 1, "0"}})
      BOOST_REQUIRE(!j->snapshots().save(make_snapshot(stream, seq, value)));
    BOOST_REQUIRE(!j->offsets().store("balances", 4));
    BOOST_REQUIRE(!j->offsets().store("audit", 2));
  }

  static int64_t now_us() {
    using namespace std::chrono;
    return duration_cast<microseconds>(system_clock::now().time_since_epoch())
        .count();
  }

  void append(mp::journal& j, const std::string& stream,
              std::vector<mp::new_event> events) {
    auto res = j.append(stream, std::move(events), mp::expected_version::any());
    BOOST_REQUIRE_MESSAGE(res, mnemo::test::why(res));
    refs.insert(refs.end(), res->events.begin(), res->events.end());
  }

  /// Runs mnemo-inspect on the data directory; requires exit code 0.
  std::vector<json> run(std::vector<std::string> args) const {
    args.insert(args.begin(), data);
    auto res = run_inspect(args);
    BOOST_REQUIRE_MESSAGE(res.exit_code == 0,
                          "exit " << res.exit_code << ": " << res.err);
    BOOST_CHECK(res.err.empty());
    return res.lines();
  }

  /// Positions of the printed events, in print order.
  static std::vector<uint64_t> positions(const std::vector<json>& lines) {
    std::vector<uint64_t> result;
    for (auto& line : lines)
      result.push_back(line.at("position").get<uint64_t>());
    return result;
  }
};

using positions_t = std::vector<uint64_t>;

/// Checks a failed run: exit code 1, one stderr line quoting `path` as the
/// library does and holding `fragment`. Events read before a damaged
/// record may have been printed.
void check_failure(const run_result& res, const std::string& path,
                   const std::string& fragment) {
  BOOST_CHECK_EQUAL(res.exit_code, 1);
  BOOST_CHECK_MESSAGE(res.err.find("'" + path + "'") != std::string::npos,
                      res.err);
  BOOST_CHECK_MESSAGE(res.err.find(fragment) != std::string::npos, res.err);
  BOOST_CHECK_EQUAL(std::count(res.err.begin(), res.err.end(), '\n'), 1);
}

/// Checks a run that failed to open `path`: nothing on stdout.
void check_open_failure(const run_result& res, const std::string& path,
                        const std::string& fragment) {
  check_failure(res, path, fragment);
  BOOST_CHECK(res.out.empty());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(inspect)

BOOST_FIXTURE_TEST_CASE(streams_prints_each_head, inspect_fixture) {
  auto lines = run({"streams"});
  BOOST_REQUIRE_EQUAL(lines.size(), 2u);
  BOOST_CHECK_EQUAL(lines[0], (json{{"stream", "account-1"},
                                    {"highest_sequence", 3},
                                    {"deleted_to", 0}}));
  BOOST_CHECK_EQUAL(lines[1], (json{{"stream", "account-2"},
                                    {"highest_sequence", 2},
                                    {"deleted_to", 0}}));
}

BOOST_FIXTURE_TEST_CASE(stream_prints_every_envelope_field, inspect_fixture) {
  auto lines = run({"stream", "account-1"});
  BOOST_REQUIRE_EQUAL(lines.size(), 3u);
  auto& first = lines[0];
  BOOST_CHECK_EQUAL(first.at("id"), refs[0].id.to_string());
  BOOST_CHECK_EQUAL(first.at("stream"), "account-1");
  BOOST_CHECK_EQUAL(first.at("sequence"), 1);
  BOOST_CHECK_EQUAL(first.at("position"), 1);
  BOOST_CHECK_EQUAL(first.at("type"), "account.deposited");
  BOOST_CHECK_EQUAL(first.at("schema_version"), 1);
  BOOST_CHECK_GE(first.at("timestamp_us").get<int64_t>(), start_us);
  BOOST_CHECK_LE(first.at("timestamp_us").get<int64_t>(), now_us());
  BOOST_CHECK_EQUAL(first.at("correlation_id"), "corr-10");
  BOOST_CHECK_EQUAL(first.at("causation_id"), "cause-10");
  BOOST_CHECK_EQUAL(first.at("tags"), (json{"account", "money"}));
  BOOST_CHECK_EQUAL(first.at("metadata"),
                    (json{{"source", "test"}, {"user", "alice"}}));
  BOOST_CHECK_EQUAL(first.at("payload"), (json{{"v", "10"}}));
  BOOST_CHECK(!first.contains("payload_error"));
  BOOST_CHECK_EQUAL(lines[2].at("id"), refs[3].id.to_string());
  BOOST_CHECK_EQUAL(lines[2].at("type"), "account.withdrawn");
  BOOST_CHECK_EQUAL(lines[2].at("payload"), (json{{"v", "5"}}));
  BOOST_CHECK(positions(lines) == (positions_t{1, 2, 4}));
}

BOOST_FIXTURE_TEST_CASE(stream_honours_from_to_and_max, inspect_fixture) {
  BOOST_CHECK(positions(run({"stream", "account-1", "--from", "2"})) ==
              (positions_t{2, 4}));
  BOOST_CHECK(positions(run({"stream", "account-1", "--to", "2"})) ==
              (positions_t{1, 2}));
  BOOST_CHECK(positions(run({"stream", "account-1", "--max", "1", "--from",
                             "2"})) == (positions_t{2}));
  BOOST_CHECK(run({"stream", "no-such-stream"}).empty());
}

BOOST_FIXTURE_TEST_CASE(log_prints_events_in_position_order, inspect_fixture) {
  auto lines = run({"log"});
  BOOST_REQUIRE(positions(lines) == (positions_t{1, 2, 3, 4, 5}));
  std::vector<std::string> streams;
  for (auto& line : lines) streams.push_back(line.at("stream"));
  BOOST_CHECK((streams == std::vector<std::string>{"account-1", "account-1",
                                                   "account-2", "account-1",
                                                   "account-2"}));
  for (size_t i = 0; i < lines.size(); ++i)
    BOOST_CHECK_EQUAL(lines[i].at("id"), refs[i].id.to_string());
  BOOST_CHECK_EQUAL(lines[4].at("payload"), (json{{"v", "7"}}));
  BOOST_CHECK(positions(run({"log", "--from", "3", "--max", "2"})) ==
              (positions_t{3, 4}));
}

BOOST_FIXTURE_TEST_CASE(tag_prints_tagged_events, inspect_fixture) {
  BOOST_CHECK(positions(run({"tag", "money"})) == (positions_t{1, 2, 4, 5}));
  BOOST_CHECK(positions(run({"tag", "account", "--from", "2", "--max", "2"})) ==
              (positions_t{2, 3}));
  BOOST_CHECK(run({"tag", "unused"}).empty());
}

BOOST_FIXTURE_TEST_CASE(snapshots_prints_metadata_and_payload,
                        inspect_fixture) {
  auto all = run({"snapshots"});
  BOOST_REQUIRE_EQUAL(all.size(), 3u);
  BOOST_CHECK_EQUAL(
      all[0],
      (json{{"stream", "account-1"}, {"sequence", 2}, {"timestamp_us", 1002}}));
  BOOST_CHECK_EQUAL(all[1].at("sequence"), 3);
  BOOST_CHECK_EQUAL(all[2].at("stream"), "account-2");
  auto one = run({"snapshots", "account-1", "--payload"});
  BOOST_REQUIRE_EQUAL(one.size(), 2u);
  BOOST_CHECK_EQUAL(one[1], (json{{"stream", "account-1"},
                                  {"sequence", 3},
                                  {"timestamp_us", 1003},
                                  {"type", "account.state"},
                                  {"schema_version", 1},
                                  {"metadata", {{"reason", "test"}}},
                                  {"payload", {{"v", "25"}}}}));
}

BOOST_FIXTURE_TEST_CASE(offsets_and_info, inspect_fixture) {
  auto offsets = run({"offsets"});
  BOOST_REQUIRE_EQUAL(offsets.size(), 2u);
  BOOST_CHECK_EQUAL(offsets[0], (json{{"name", "audit"}, {"position", 2}}));
  BOOST_CHECK_EQUAL(offsets[1], (json{{"name", "balances"}, {"position", 4}}));
  auto info = run({"info"});
  BOOST_REQUIRE_EQUAL(info.size(), 1u);
  BOOST_CHECK_EQUAL(info[0], (json{{"format_version", 3},
                                   {"head_position", 5},
                                   {"streams", 2},
                                   {"map_size", uint64_t{64} << 20}}));
}

BOOST_FIXTURE_TEST_CASE(reading_never_modifies_the_data_file, inspect_fixture) {
  auto before = read_bytes(data + "/data.mdb");
  for (auto cmd : {"streams", "log", "snapshots", "offsets", "info"})
    run({cmd});
  BOOST_CHECK(read_bytes(data + "/data.mdb") == before);
}

BOOST_FIXTURE_TEST_CASE(deleted_events_leave_holes, inspect_fixture) {
  {
    auto j = mnemo::test::open_journal(data);
    BOOST_REQUIRE(!j->delete_events_to("account-1", 2));
  }
  BOOST_CHECK_EQUAL(run({"streams"})[0], (json{{"stream", "account-1"},
                                               {"highest_sequence", 3},
                                               {"deleted_to", 2}}));
  BOOST_CHECK(positions(run({"log"})) == (positions_t{3, 4, 5}));
  BOOST_CHECK(positions(run({"stream", "account-1"})) == (positions_t{4}));
  BOOST_CHECK(positions(run({"tag", "money"})) == (positions_t{4, 5}));
  BOOST_CHECK_EQUAL(run({"info"})[0].at("head_position"), 5);
}

BOOST_AUTO_TEST_CASE(large_journals_stream_out_in_batches) {
  mnemo::test::temp_dir dir;
  auto data = dir.sub("data");
  {
    auto j = mnemo::test::open_journal(data);
    for (int batch = 0; batch < 5; ++batch) {
      std::vector<mp::new_event> events;
      for (int i = 0; i < 500; ++i)
        events.push_back(mnemo::test::make_event("tick", std::to_string(i)));
      BOOST_REQUIRE(
          j->append("clock", std::move(events), mp::expected_version::any()));
    }
  }
  auto log = run_inspect({data, "log"});
  BOOST_REQUIRE_EQUAL(log.exit_code, 0);
  auto lines = log.lines();
  BOOST_REQUIRE_EQUAL(lines.size(), 2500u);
  for (size_t i = 0; i < lines.size(); ++i)
    BOOST_REQUIRE_EQUAL(lines[i].at("position"), i + 1);
  auto part =
      run_inspect({data, "stream", "clock", "--from", "900", "--max", "1200"})
          .lines();
  BOOST_REQUIRE_EQUAL(part.size(), 1200u);
  BOOST_CHECK_EQUAL(part.front().at("sequence"), 900);
  BOOST_CHECK_EQUAL(part.back().at("sequence"), 2099);
}

BOOST_AUTO_TEST_CASE(read_model_tables_and_dead_letters_are_listed) {
  mnemo::test::temp_dir dir;
  auto data = dir.sub("data");
  {
    auto j = mnemo::test::open_journal(data);
    mp::table<std::string, int64_t> totals{"shop.totals"};
    auto err = j->write([&](mp::write_txn& txn) {
      if (auto e = totals.put(txn, "b", 2)) return e;
      return totals.put(txn, "a", 1);
    });
    BOOST_REQUIRE(!err);
    for (uint64_t pos : {7, 3, 9}) {
      mp::dead_letter d;
      d.projection = "shop";
      d.position = pos;
      d.stream_id = "order-1";
      d.sequence = pos;
      d.event_type = "order.placed";
      d.error = "boom " + std::to_string(pos);
      d.attempts = 2;
      BOOST_REQUIRE(!j->dead_letters().park(d));
    }
  }
  auto tables = run_inspect({data, "tables"}).lines();
  BOOST_REQUIRE_EQUAL(tables.size(), 1u);
  BOOST_CHECK_EQUAL(tables[0], (json{{"table", "shop.totals"}, {"rows", 2}}));
  auto rows = run_inspect({data, "table", "shop.totals"}).lines();
  BOOST_REQUIRE_EQUAL(rows.size(), 2u);
  BOOST_CHECK_EQUAL(rows[0].at("key"), "a");
  BOOST_CHECK_EQUAL(rows[0].at("value"), 1);
  BOOST_CHECK_EQUAL(rows[1].at("value"), 2);
  BOOST_CHECK_EQUAL(
      run_inspect({data, "table", "shop.totals", "--max", "1"}).lines().size(),
      1u);
  BOOST_CHECK(run_inspect({data, "table", "nothing"}).lines().empty());
  auto letters = run_inspect({data, "dead-letters", "shop"}).lines();
  BOOST_REQUIRE_EQUAL(letters.size(), 3u);
  BOOST_CHECK_EQUAL(letters[0].at("position"), 3);
  BOOST_CHECK_EQUAL(letters[2].at("error"), "boom 9");
  BOOST_CHECK_EQUAL(letters[1].at("type"), "order.placed");
  auto later =
      run_inspect({data, "dead-letters", "shop", "--from", "4", "--max", "1"})
          .lines();
  BOOST_REQUIRE_EQUAL(later.size(), 1u);
  BOOST_CHECK_EQUAL(later[0].at("position"), 7);
}

BOOST_AUTO_TEST_CASE(undecodable_payload_is_printed_as_hex) {
  mnemo::test::temp_dir dir;
  auto data = dir.sub("data");
  {
    auto j = mnemo::test::open_journal(data);
    mp::new_event ev;
    ev.type = "opaque";
    ev.payload = {0xc1, 0x00, 0xff};
    BOOST_REQUIRE(j->append("s", {ev}, mp::expected_version::any()));
  }
  auto res = run_inspect({data, "log"});
  BOOST_REQUIRE_EQUAL(res.exit_code, 0);
  auto lines = res.lines();
  BOOST_REQUIRE_EQUAL(lines.size(), 1u);
  BOOST_CHECK(!lines[0].contains("payload"));
  BOOST_CHECK_EQUAL(lines[0].at("payload_hex"), "c100ff");
  auto text = lines[0].at("payload_error").get<std::string>();
  BOOST_CHECK_MESSAGE(text.find("opaque") != std::string::npos, text);
}

BOOST_FIXTURE_TEST_CASE(reads_a_journal_held_open_by_a_writer,
                        inspect_fixture) {
  auto j = mnemo::test::open_journal(data);
  BOOST_REQUIRE(j->append("account-3", {event("account.opened", "eve", {})},
                          mp::expected_version::no_stream()));
  BOOST_CHECK_EQUAL(run({"info"})[0].at("head_position"), 6);
  BOOST_CHECK(positions(run({"stream", "account-3"})) == (positions_t{6}));
}

BOOST_AUTO_TEST_CASE(missing_directory_fails) {
  mnemo::test::temp_dir dir;
  auto path = dir.sub("absent");
  check_open_failure(run_inspect({path, "info"}), path, "does not exist");
}

BOOST_AUTO_TEST_CASE(regular_file_fails) {
  mnemo::test::temp_dir dir;
  auto path = dir.sub("file");
  write_bytes(path, "not a directory\n");
  check_open_failure(run_inspect({path, "streams"}), path, "not a directory");
}

BOOST_AUTO_TEST_CASE(foreign_directory_fails) {
  mnemo::test::temp_dir dir;
  write_bytes(dir.sub("notes.txt"), "hello\n");
  auto path = dir.path().string();
  check_open_failure(run_inspect({path, "log"}), path, "format_mismatch");
  write_bytes(dir.sub("data.mdb"), std::string(8192, 'x'));
  check_open_failure(run_inspect({path, "log"}), path, "format_mismatch");
}

BOOST_FIXTURE_TEST_CASE(other_format_version_fails, inspect_fixture) {
  std::string three("\0\0\0\0\0\0\0\3", 8);
  std::string four("\0\0\0\0\0\0\0\4", 8);
  BOOST_REQUIRE_GE(patch_file(data + "/data.mdb", "format_version" + three,
                              "format_version" + four),
                   1u);
  check_open_failure(run_inspect({data, "info"}), data, "format version 4");
}

BOOST_FIXTURE_TEST_CASE(corrupt_record_fails, inspect_fixture) {
  {
    auto j = mnemo::test::open_journal(data);
    BOOST_REQUIRE(j->append("victim",
                            {mnemo::test::make_event("t", "marker-9f3e1a")},
                            mp::expected_version::any()));
  }
  BOOST_REQUIRE_GE(
      patch_file(data + "/data.mdb", "marker-9f3e1a", "marker-9f3e1b"), 1u);
  auto log = run_inspect({data, "log"});
  check_failure(log, data, "corrupt_record");
  BOOST_CHECK_MESSAGE(log.err.find("position 6") != std::string::npos, log.err);
  for (auto& line : log.lines())
    BOOST_CHECK_LT(line.at("position").get<uint64_t>(), 6u);
  check_failure(run_inspect({data, "stream", "victim"}), data,
                "stream 'victim' at sequence 1");
  BOOST_CHECK_EQUAL(run_inspect({data, "stream", "account-1"}).exit_code, 0);
}

BOOST_AUTO_TEST_CASE(bad_usage_exits_2) {
  for (auto args :
       std::vector<std::vector<std::string>>{{},
                                             {"/tmp"},
                                             {"/tmp", "frobnicate"},
                                             {"/tmp", "stream"},
                                             {"/tmp", "log", "--to", "3"},
                                             {"/tmp", "log", "--max", "ten"},
                                             {"/tmp", "log", "--from"},
                                             {"/tmp", "offsets", "--bogus"}}) {
    auto res = run_inspect(args);
    BOOST_CHECK_EQUAL(res.exit_code, 2);
    BOOST_CHECK(res.out.empty());
    BOOST_CHECK_MESSAGE(res.err.find("usage:") != std::string::npos, res.err);
  }
  auto help = run_inspect({"--help"});
  BOOST_CHECK_EQUAL(help.exit_code, 0);
  BOOST_CHECK(help.out.find("usage:") != std::string::npos);
  BOOST_CHECK(help.err.empty());
}

BOOST_AUTO_TEST_SUITE_END()
