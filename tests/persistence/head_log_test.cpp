// The head log (docs/format.md, 2.3): a group commit that appends stores its
// streams' new heads as one record of mnemo.head_log; every few dozen
// commits, and in commits that change heads without appending, the writer
// folds the log into mnemo.streams. Heads must read the same either way, in
// the process and after a crash, and a damaged record must be an error.

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <lmdb.h>

#include <boost/test/unit_test.hpp>

#include "child_modes.hpp"
#include "test_support.hpp"

using namespace mnemo::persistence;
using mnemo::test::journal_fixture;
using mnemo::test::make_event;
using mnemo::test::temp_dir;
using mnemo::test::why;
using mnemo::test::with_raw_db;

namespace {

// Entries of database `db` of the closed journal in `dir`.
size_t raw_entries(const std::string& dir, const char* db) {
  size_t n = 0;
  with_raw_db(dir, db, [&](MDB_txn* txn, MDB_dbi dbi) {
    MDB_stat st;
    BOOST_REQUIRE_EQUAL(mdb_stat(txn, dbi, &st), 0);
    n = st.ms_entries;
  });
  return n;
}

// What the journal must report: stream -> highest sequence.
using heads_map = std::map<std::string, uint64_t>;

void check_heads(const journal& j, const heads_map& expected) {
  for (auto& [stream, highest] : expected) {
    auto h = j.highest_sequence(stream);
    BOOST_REQUIRE_MESSAGE(h, why(h));
    BOOST_CHECK_MESSAGE(*h == highest,
                        stream << ": " << *h << " != " << highest);
  }
  // Every listing, whole and in pages of two, names each stream once, in
  // order, with its head.
  for (size_t page : {size_t{1000}, size_t{2}}) {
    std::vector<std::pair<std::string, uint64_t>> listed;
    std::string after;
    for (;;) {
      auto part = j.list_streams(after, page);
      BOOST_REQUIRE_MESSAGE(part, why(part));
      for (auto& h : *part)
        listed.emplace_back(h.stream_id, h.highest_sequence);
      if (part->size() < page) break;
      after = part->back().stream_id;
    }
    std::vector<std::pair<std::string, uint64_t>> want(expected.begin(),
                                                       expected.end());
    BOOST_CHECK_MESSAGE(listed == want, "listing in pages of " << page);
  }
}

// Runs the unclosed writer child on `dir` for `commits` commits.
void leave_unclosed(const std::string& dir, int commits) {
  auto child = mnemo::test::spawn_child("unclosed-writer",
                                        {dir, std::to_string(commits)});
  BOOST_REQUIRE_GT(child.pid, 0);
  auto res = mnemo::test::finish_child(child);
  BOOST_REQUIRE_EQUAL(res.out, "done\n");
  BOOST_REQUIRE_EQUAL(res.status, 0);
}

// The heads the unclosed writer leaves after `commits` commits.
heads_map unclosed_heads(int commits) {
  heads_map m;
  for (int i = 0; i < commits; ++i) ++m["s-" + std::to_string(i % 4)];
  return m;
}

// Appends one event to `stream` of `j`, expecting the version `heads`
// has for it, and counts it there.
void append_counted(journal& j, heads_map& heads, const std::string& stream) {
  auto res = j.append(stream, {make_event("t", stream)},
                      expected_version::exact(heads[stream]));
  BOOST_REQUIRE_MESSAGE(res, stream << ": " << why(res));
  ++heads[stream];
}

expected<std::unique_ptr<journal>> open_at(const std::string& dir,
                                           bool read_only) {
  journal_config cfg;
  cfg.directory = dir;
  cfg.read_only = read_only;
  return journal::open(cfg);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(head_log)

BOOST_FIXTURE_TEST_CASE(heads_read_the_same_before_and_after_folds,
                        journal_fixture) {
  heads_map expected;
  auto append = [&](const std::string& stream) {
    append_counted(*j, expected, stream);
  };
  // One append per commit: the log takes a record per commit and is
  // folded after a few dozen.
  for (int i = 0; i < 20; ++i) append("m-" + std::to_string(i % 5));
  BOOST_CHECK_EQUAL(j->stats().head_folds, 0u);
  check_heads(*j, expected);
  uint64_t folds = 0;
  int commits = 20;
  while (folds == 0) {
    BOOST_REQUIRE_LT(commits, 200);
    append("m-" + std::to_string(commits++ % 5));
    folds = j->stats().head_folds;
  }
  check_heads(*j, expected);
  // After a fold: streams updated since (in both places), streams created
  // since (only in the log, before and after all others in order), and
  // streams not touched since (only in mnemo.streams).
  append("m-1");
  append("a-first");
  append("z-last");
  append("m-22");
  append("m-1");
  check_heads(*j, expected);
  // A commit that changes a head without appending folds the log.
  BOOST_REQUIRE(!j->delete_events_to("m-1", 2));
  BOOST_CHECK_EQUAL(j->stats().head_folds, folds + 1);
  check_heads(*j, expected);
  auto listed = j->head_of("m-1");
  BOOST_REQUIRE_MESSAGE(listed, why(listed));
  BOOST_CHECK_EQUAL(listed->deleted_to, 2u);
  BOOST_CHECK_EQUAL(listed->highest_sequence, expected["m-1"]);
  // Appends go on with the right sequences after a reopen.
  reopen();
  check_heads(*j, expected);
  for (auto& [stream, highest] : heads_map{expected}) {
    auto res = j->append(stream, {make_event("t", "more")},
                         expected_version::exact(highest));
    BOOST_REQUIRE_MESSAGE(res, stream << ": " << why(res));
    BOOST_CHECK_EQUAL(res->events.front().sequence, highest + 1);
  }
}

BOOST_AUTO_TEST_CASE(
    a_journal_that_was_not_closed_reads_its_heads_from_the_log) {
  temp_dir dir;
  auto data = dir.sub("data");
  leave_unclosed(data, 21);
  // The child died with its heads only in the log.
  BOOST_CHECK_EQUAL(raw_entries(data, "mnemo.head_log"), 21u);
  BOOST_CHECK_EQUAL(raw_entries(data, "mnemo.streams"), 0u);
  auto expected = unclosed_heads(21);
  {
    auto ro = open_at(data, true);
    BOOST_REQUIRE_MESSAGE(ro, why(ro));
    check_heads(**ro, expected);
    auto events = (*ro)->read_stream("s-0", 1, 100, 100);
    BOOST_REQUIRE_MESSAGE(events, why(events));
    BOOST_CHECK_EQUAL(events->size(), 6u);
  }
  {
    auto j = open_at(data, false);
    BOOST_REQUIRE_MESSAGE(j, why(j));
    check_heads(**j, expected);
    auto res = (*j)->append("s-1", {make_event("t", "after")},
                            expected_version::exact(expected["s-1"]));
    BOOST_REQUIRE_MESSAGE(res, why(res));
    BOOST_CHECK_EQUAL(res->events.front().sequence, expected["s-1"] + 1);
    BOOST_CHECK_EQUAL(res->events.front().position, 22u);
    ++expected["s-1"];
  }
  // Closing folded the log.
  BOOST_CHECK_EQUAL(raw_entries(data, "mnemo.head_log"), 0u);
  BOOST_CHECK_EQUAL(raw_entries(data, "mnemo.streams"), 4u);
  auto ro = open_at(data, true);
  BOOST_REQUIRE_MESSAGE(ro, why(ro));
  check_heads(**ro, expected);
}

BOOST_FIXTURE_TEST_CASE(heads_stay_right_when_the_head_cache_is_cleared,
                        journal_fixture) {
  // The writer caches up to 100000 heads and folds the log from that cache
  // while it holds every stream of the log; past the bound it clears the
  // cache and folds from the log itself. Heads logged before and after the
  // clear must all arrive in mnemo.streams.
  heads_map want_heads;
  auto append = [&](const std::string& stream) {
    append_counted(*j, want_heads, stream);
  };
  for (int i = 0; i < 10; ++i) append("a-" + std::to_string(i));
  constexpr int many = 100100;
  std::mutex mtx;
  std::condition_variable cv;
  int done = 0;
  int failed = 0;
  for (int i = 0; i < many; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "b-%06d", i);
    j->append(name, {make_event("t", name)}, expected_version::no_stream(),
              [&](expected<append_result> res) {
                std::lock_guard<std::mutex> guard{mtx};
                if (!res) ++failed;
                ++done;
                cv.notify_all();
              });
    if (i % 1000 == 999) {
      // At most 1000 in flight: many commits, some folds among them.
      std::unique_lock<std::mutex> guard{mtx};
      cv.wait(guard, [&] { return done >= i - 999; });
    }
  }
  {
    std::unique_lock<std::mutex> guard{mtx};
    cv.wait(guard, [&] { return done == many; });
  }
  BOOST_REQUIRE_EQUAL(failed, 0);
  for (int i = 0; i < many; i += 997) {
    char name[16];
    std::snprintf(name, sizeof name, "b-%06d", i);
    want_heads[name] = 1;
  }
  auto folds = j->stats().head_folds;
  // Appends to old and new streams, each its own commit, until the log was
  // folded twice.
  for (int round = 0; j->stats().head_folds < folds + 2; ++round) {
    BOOST_REQUIRE_LT(round, 200);
    append("a-" + std::to_string(round % 10));
    char name[16];
    std::snprintf(name, sizeof name, "b-%06d", (round * 997) % many);
    append(name);
  }
  // Every stream is listed once, with the head expected of the sampled ones.
  auto check = [&] {
    for (auto& [stream, highest] : want_heads) {
      auto h = j->highest_sequence(stream);
      BOOST_REQUIRE_MESSAGE(h, why(h));
      BOOST_CHECK_MESSAGE(*h == highest,
                          stream << ": " << *h << " != " << highest);
    }
    size_t listed = 0;
    size_t wrong = 0;
    std::string after;
    for (;;) {
      auto part = j->list_streams(after, 5000);
      BOOST_REQUIRE_MESSAGE(part, why(part));
      for (auto& h : *part) {
        ++listed;
        auto it = want_heads.find(h.stream_id);
        if (h.highest_sequence != (it != want_heads.end() ? it->second : 1u))
          ++wrong;
      }
      if (part->size() < 5000) break;
      after = part->back().stream_id;
    }
    BOOST_CHECK_EQUAL(listed, 10u + many);
    BOOST_CHECK_EQUAL(wrong, 0u);
  };
  check();
  reopen();
  check();
}

BOOST_AUTO_TEST_CASE(a_damaged_log_record_is_a_clear_error) {
  temp_dir dir;
  auto data = dir.sub("data");
  // Commits 1..6 append to s-0, s-1, s-2, s-3, s-0, s-1.
  leave_unclosed(data, 6);
  // Cut the oldest record (commit ending at position 1) short.
  with_raw_db(data, "mnemo.head_log", [](MDB_txn* txn, MDB_dbi dbi) {
    char key[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    MDB_val k{8, key};
    MDB_val v;
    BOOST_REQUIRE_EQUAL(mdb_get(txn, dbi, &k, &v), 0);
    std::string cut(static_cast<const char*>(v.mv_data), v.mv_size - 5);
    MDB_val nv{cut.size(), cut.data()};
    BOOST_REQUIRE_EQUAL(mdb_put(txn, dbi, &k, &nv, 0), 0);
  });
  auto check_damaged = [](const error& err) {
    BOOST_CHECK(err.code() == errc::corrupt_record);
    BOOST_CHECK_MESSAGE(
        err.message().find("head log record of the commit "
                           "ending at global position 1 ") != std::string::npos,
        err.message());
  };
  {
    auto ro = open_at(data, true);
    BOOST_REQUIRE_MESSAGE(ro, why(ro));
    // A newer record has the head of s-2; nothing newer tells whether
    // "other" exists.
    auto h = (*ro)->highest_sequence("s-2");
    BOOST_REQUIRE_MESSAGE(h, why(h));
    BOOST_CHECK_EQUAL(*h, 1u);
    auto other = (*ro)->highest_sequence("other");
    BOOST_REQUIRE(!other);
    check_damaged(other.error());
    auto listed = (*ro)->list_streams("", 10);
    BOOST_REQUIRE(!listed);
    check_damaged(listed.error());
  }
  auto j = open_at(data, false);
  BOOST_REQUIRE_MESSAGE(j, why(j));
  auto ok =
      (*j)->append("s-1", {make_event("t", "x")}, expected_version::exact(2));
  BOOST_REQUIRE_MESSAGE(ok, why(ok));
  // An append that needs an unknown head fails alone.
  auto res =
      (*j)->append("other", {make_event("t", "x")}, expected_version::any());
  BOOST_REQUIRE(!res);
  check_damaged(res.error());
  // A deletion folds the log, which cannot be done: the journal refuses
  // writes with that error until it is reopened, and nothing is lost.
  auto del = (*j)->delete_events_to("s-1", 1);
  BOOST_REQUIRE(del);
  check_damaged(del);
  auto again =
      (*j)->append("s-1", {make_event("t", "x")}, expected_version::any());
  BOOST_REQUIRE(!again);
  BOOST_CHECK(again.error().code() == errc::journal_failed);
  BOOST_CHECK_EQUAL((*j)->head_position(), 7u);
  auto h = (*j)->highest_sequence("s-1");
  BOOST_REQUIRE_MESSAGE(h, why(h));
  BOOST_CHECK_EQUAL(*h, 3u);
  auto events = (*j)->read_stream("s-1", 1, 10, 10);
  BOOST_REQUIRE_MESSAGE(events, why(events));
  BOOST_CHECK_EQUAL(events->size(), 3u);
}

BOOST_AUTO_TEST_CASE(a_format_1_directory_is_read_and_upgraded) {
  temp_dir dir;
  auto data = dir.sub("data");
  heads_map expected{{"a", 2}, {"b", 1}};
  {
    auto j = mnemo::test::open_journal(data);
    BOOST_REQUIRE(j->append("a", {make_event("t", "1"), make_event("t", "2")},
                            expected_version::no_stream()));
    BOOST_REQUIRE(
        j->append("b", {make_event("t", "1")}, expected_version::no_stream()));
  }
  // What format 1 looked like: no head log, version 1.
  with_raw_db(data, "mnemo.head_log", [](MDB_txn* txn, MDB_dbi dbi) {
    BOOST_REQUIRE_EQUAL(mdb_drop(txn, dbi, 1), 0);
  });
  mnemo::test::set_format_version(data, 1);
  {
    auto ro = open_at(data, true);
    BOOST_REQUIRE_MESSAGE(ro, why(ro));
    BOOST_CHECK_EQUAL((*ro)->format_version(), 1u);
    check_heads(**ro, expected);
  }
  {
    auto j = open_at(data, false);
    BOOST_REQUIRE_MESSAGE(j, why(j));
    BOOST_CHECK_EQUAL((*j)->format_version(), 3u);
    auto res =
        (*j)->append("a", {make_event("t", "3")}, expected_version::exact(2));
    BOOST_REQUIRE_MESSAGE(res, why(res));
    ++expected["a"];
    check_heads(**j, expected);
  }
  auto ro = open_at(data, true);
  BOOST_REQUIRE_MESSAGE(ro, why(ro));
  BOOST_CHECK_EQUAL((*ro)->format_version(), 3u);
  check_heads(**ro, expected);
}

// The checkpoint sequences of `stream` in mnemo.stream_index of the closed
// journal in `dir`.
std::vector<uint64_t> raw_checkpoints(const std::string& dir,
                                      const std::string& stream) {
  std::vector<uint64_t> seqs;
  with_raw_db(dir, "mnemo.stream_index", [&](MDB_txn* txn, MDB_dbi dbi) {
    MDB_cursor* cur = nullptr;
    BOOST_REQUIRE_EQUAL(mdb_cursor_open(txn, dbi, &cur), 0);
    MDB_val k;
    MDB_val v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      std::string key{static_cast<const char*>(k.mv_data), k.mv_size};
      if (key.size() != stream.size() + 9 ||
          key.compare(0, stream.size() + 1, stream + '\0') != 0)
        continue;
      uint64_t seq = 0;
      for (size_t i = stream.size() + 1; i < key.size(); ++i)
        seq = (seq << 8) | static_cast<unsigned char>(key[i]);
      seqs.push_back(seq);
    }
    mdb_cursor_close(cur);
  });
  return seqs;
}

// Reads sequences [from, to] of "s" (values "1", "2", ... as appended).
void check_range(const journal& j, uint64_t from, uint64_t to) {
  auto evs = j.read_stream("s", from, to, UINT64_MAX);
  BOOST_REQUIRE_MESSAGE(evs, why(evs));
  BOOST_REQUIRE_EQUAL(evs->size(), to - from + 1);
  for (size_t i = 0; i < evs->size(); ++i) {
    BOOST_REQUIRE_EQUAL((*evs)[i].sequence, from + i);
    BOOST_REQUIRE_EQUAL(mnemo::test::event_value((*evs)[i]),
                        std::to_string(from + i));
  }
}

BOOST_AUTO_TEST_CASE(format_2_checkpoints_are_read_and_deleted) {
  temp_dir dir;
  auto data = dir.sub("data");
  {
    auto j = mnemo::test::open_journal(data);
    for (uint64_t n = 0; n < 300; n += 10) {
      std::vector<new_event> batch;
      for (uint64_t i = 1; i <= 10; ++i)
        batch.push_back(make_event("t", std::to_string(n + i)));
      BOOST_REQUIRE(
          j->append("s", std::move(batch), expected_version::exact(n)));
    }
  }
  // Format 3 writes a checkpoint every 128 events.
  BOOST_CHECK((raw_checkpoints(data, "s") == std::vector<uint64_t>{128, 256}));
  // What format 2 wrote: one every 32 (the only stream, so position ==
  // sequence), version 2.
  for (uint64_t q = 32; q < 300; q += 32) {
    auto seq = mnemo::test::be64_bytes(q);
    mnemo::test::raw_put(data, "mnemo.stream_index",
                         std::string{"s"} + '\0' + seq, seq);
  }
  mnemo::test::set_format_version(data, 2);
  BOOST_REQUIRE(
      (raw_checkpoints(data, "s") ==
       std::vector<uint64_t>{32, 64, 96, 128, 160, 192, 224, 256, 288}));
  {
    auto ro = open_at(data, true);
    BOOST_REQUIRE_MESSAGE(ro, why(ro));
    BOOST_CHECK_EQUAL((*ro)->format_version(), 2u);
    check_range(**ro, 1, 300);
    check_range(**ro, 33, 100);
    check_range(**ro, 129, 200);
  }
  {
    auto j = open_at(data, false);
    BOOST_REQUIRE_MESSAGE(j, why(j));
    BOOST_CHECK_EQUAL((*j)->format_version(), 3u);
    // The deletion removes the checkpoints of both intervals.
    BOOST_REQUIRE(!(*j)->delete_events_to("s", 200));
    check_range(**j, 201, 300);
    check_range(**j, 230, 260);
    std::vector<new_event> more;
    for (uint64_t i = 301; i <= 400; ++i)
      more.push_back(make_event("t", std::to_string(i)));
    BOOST_REQUIRE(
        (*j)->append("s", std::move(more), expected_version::exact(300)));
    check_range(**j, 201, 400);
  }
  BOOST_CHECK((raw_checkpoints(data, "s") ==
               std::vector<uint64_t>{224, 256, 288, 384}));
  auto ro = open_at(data, true);
  BOOST_REQUIRE_MESSAGE(ro, why(ro));
  BOOST_CHECK_EQUAL((*ro)->format_version(), 3u);
  check_range(**ro, 250, 390);
}

BOOST_AUTO_TEST_SUITE_END()
