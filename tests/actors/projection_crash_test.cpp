// Kill -9 of a node in a loop while projections run: the exactly-once read
// model always matches its offset exactly (never double-counts, never
// skips); the at-least-once side effects cover every event up to their
// offset (repeats allowed). The node is the projection_crash_child program.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include <boost/test/unit_test.hpp>

#include "mnemo/actors/testkit.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/persistence/table_store.hpp"

using namespace mnemo;

namespace {

pid_t spawn_child(const std::string& dir, const char* mode) {
  auto pid = ::fork();
  if (pid == 0) {
    ::execl(PROJECTION_CRASH_CHILD, PROJECTION_CRASH_CHILD, dir.c_str(), mode,
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

int wait_child(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

struct check_result {
  uint64_t head = 0;
  uint64_t eo_offset = 0;
  uint64_t pipelined_offset = 0;
  uint64_t alo_offset = 0;
  size_t alo_repeats = 0;
};

// Exactly-once: the per-stream counters of `table` equal the events up to
// `offset`.
void verify_counts(persistence::journal& journal, const char* table,
                   uint64_t offset) {
  std::map<std::string, uint64_t> expected;
  for (uint64_t from = 1; from <= offset;) {
    auto evs = journal.read_all(from, 10000);
    BOOST_REQUIRE(evs && !evs->empty());
    for (auto& env : *evs)
      if (env.position <= offset) ++expected[env.stream_id];
    from = evs->back().position + 1;
  }
  std::map<std::string, uint64_t> counted;
  auto err = journal.read([&](persistence::read_txn& txn) {
    auto n = persistence::table_store::scan_in(
        txn, table, "", "", SIZE_MAX,
        [&](std::string_view k, std::string_view v) {
          counted[std::string{k}] = std::stoull(std::string{v});
          return true;
        });
    return n ? persistence::error{} : n.error();
  });
  BOOST_REQUIRE(!err);
  BOOST_CHECK_MESSAGE(counted == expected, "read model " << table);
}

// Verifies both invariants on the closed data directory.
check_result verify(const std::string& dir) {
  check_result r;
  persistence::journal_config cfg;
  cfg.directory = dir + "/data";
  auto j = persistence::journal::open(cfg);
  BOOST_REQUIRE(j);
  auto& journal = **j;
  r.head = journal.head_position();
  r.eo_offset = *journal.offsets().load("eo");
  r.pipelined_offset = *journal.offsets().load("eo_pipelined");
  r.alo_offset = *journal.offsets().load("alo");
  verify_counts(journal, "eo", r.eo_offset);
  verify_counts(journal, "eo_pipelined", r.pipelined_offset);
  // At-least-once: every position up to the offset has its side effect.
  std::ifstream log{dir + "/alo.log"};
  std::multiset<uint64_t> seen;
  for (uint64_t pos; log >> pos;) seen.insert(pos);
  for (uint64_t pos = 1; pos <= r.alo_offset; ++pos)
    if (seen.count(pos) == 0) {
      BOOST_ERROR("at-least-once lost position " << pos);
      break;
    }
  std::set<uint64_t> unique{seen.begin(), seen.end()};
  r.alo_repeats = seen.size() - unique.size();
  return r;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(projection_crash)

BOOST_AUTO_TEST_CASE(kill_9_in_a_loop_keeps_both_guarantees) {
  actors::temp_directory tmp;
  auto dir = tmp.path().string();
  std::mt19937 rng{20261123};
  uint64_t last_head = 0;
  size_t behind = 0;
  size_t repeats = 0;
  for (int round = 0; round < 12; ++round) {
    // Killed once it has done some work this round (its at-least-once
    // projection wrote a side effect), then after a random while: a fixed
    // delay alone let a slow start (sanitizers, a loaded machine) be killed
    // before its first commit in every round.
    std::error_code ec;
    auto log_size = [&] {
      auto n = std::filesystem::file_size(dir + "/alo.log", ec);
      return ec ? uintmax_t{0} : n;
    };
    auto before = log_size();
    auto pid = spawn_child(dir, "run");
    BOOST_REQUIRE(pid > 0);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{30};
    while (log_size() <= before && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    BOOST_CHECK_MESSAGE(log_size() > before, "round " << round << ": no work");
    std::this_thread::sleep_for(std::chrono::milliseconds{rng() % 200});
    ::kill(pid, SIGKILL);
    auto status = wait_child(pid);
    BOOST_REQUIRE_MESSAGE(WIFSIGNALED(status), "child exited early");
    auto r = verify(dir);
    BOOST_TEST_MESSAGE("round " << round << ": head " << r.head << " eo "
                                << r.eo_offset << " eo_pipelined "
                                << r.pipelined_offset << " alo " << r.alo_offset
                                << " repeats " << r.alo_repeats);
    if (r.eo_offset < r.head || r.alo_offset < r.head ||
        r.pipelined_offset < r.head)
      ++behind;
    repeats = r.alo_repeats;
    last_head = r.head;
  }
  BOOST_CHECK_GT(last_head, 0u);
  // The kills hit projections at work, not idle ones.
  BOOST_CHECK_GT(behind, 0u);
  BOOST_TEST_MESSAGE("kills while behind: "
                     << behind << ", repeated side effects: " << repeats);
  auto pid = spawn_child(dir, "drain");
  auto status = wait_child(pid);
  BOOST_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  auto r = verify(dir);
  BOOST_CHECK_EQUAL(r.eo_offset, r.head);
  BOOST_CHECK_EQUAL(r.pipelined_offset, r.head);
  BOOST_CHECK_EQUAL(r.alo_offset, r.head);
}

BOOST_AUTO_TEST_SUITE_END()
