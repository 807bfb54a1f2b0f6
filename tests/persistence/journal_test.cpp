// Journal semantics beyond the Akka TCK: positions, optimistic concurrency,
// idempotent appends, group commit, reads by position and tag, deletion.

#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "child_modes.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "test_support.hpp"

using namespace mnemo::persistence;
using mnemo::test::journal_fixture;
using mnemo::test::make_event;

namespace {

std::vector<new_event> events_of(std::initializer_list<const char*> values) {
  std::vector<new_event> result;
  for (auto v : values) result.push_back(make_event("test.value", v));
  return result;
}

// Waits until `n` callbacks have called `done()`.
struct latch {
  std::mutex mtx;
  std::condition_variable cv;
  size_t count = 0;
  void done() {
    std::lock_guard<std::mutex> guard{mtx};
    ++count;
    cv.notify_all();
  }
  void wait(size_t n) {
    std::unique_lock<std::mutex> guard{mtx};
    cv.wait(guard, [&] { return count >= n; });
  }
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(journal, journal_fixture)

BOOST_AUTO_TEST_CASE(append_assigns_gap_free_sequences_and_positions) {
  auto a = j->append("a", events_of({"a1", "a2"}), expected_version::any());
  auto b = j->append("b", events_of({"b1"}), expected_version::any());
  auto c = j->append("a", events_of({"a3"}), expected_version::any());
  BOOST_REQUIRE(a && b && c);
  BOOST_CHECK_EQUAL(a->events[0].sequence, 1u);
  BOOST_CHECK_EQUAL(a->events[1].sequence, 2u);
  BOOST_CHECK_EQUAL(a->events[1].position, 2u);
  BOOST_CHECK_EQUAL(b->events[0].sequence, 1u);
  BOOST_CHECK_EQUAL(b->events[0].position, 3u);
  BOOST_CHECK_EQUAL(c->events[0].sequence, 3u);
  BOOST_CHECK_EQUAL(c->events[0].position, 4u);
  BOOST_CHECK_EQUAL(c->stream_version, 3u);
  BOOST_CHECK(!c->duplicate);
  BOOST_CHECK_EQUAL(j->head_position(), 4u);
  reopen();
  BOOST_CHECK_EQUAL(j->head_position(), 4u);
  auto d = j->append("b", events_of({"b2"}), expected_version::any());
  BOOST_REQUIRE(d);
  BOOST_CHECK_EQUAL(d->events[0].position, 5u);
  BOOST_CHECK_EQUAL(d->events[0].sequence, 2u);
}

BOOST_AUTO_TEST_CASE(envelope_round_trips_every_field) {
  auto ev = make_event("test.full", "payload");
  ev.id = event_id::make_v7();
  ev.schema_version = 3;
  ev.correlation_id = "corr-1";
  ev.causation_id = "cause-1";
  ev.tags = {"blue", "green"};
  ev.metadata = {{"user", "alice"}, {"source", "test"}};
  auto before = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  auto res = j->append("full-1", {ev}, expected_version::no_stream());
  BOOST_REQUIRE(res);
  reopen();
  auto read = j->read_stream("full-1", 1, 1, 1);
  BOOST_REQUIRE(read);
  BOOST_REQUIRE_EQUAL(read->size(), 1u);
  auto& env = read->front();
  BOOST_CHECK(env.id == ev.id);
  BOOST_CHECK_EQUAL(env.stream_id, "full-1");
  BOOST_CHECK_EQUAL(env.sequence, 1u);
  BOOST_CHECK_EQUAL(env.position, 1u);
  BOOST_CHECK_EQUAL(env.type, "test.full");
  BOOST_CHECK_EQUAL(env.schema_version, 3u);
  BOOST_CHECK_GE(env.timestamp_us, before);
  BOOST_CHECK_LE(env.timestamp_us, before + 60'000'000);
  BOOST_CHECK_EQUAL(env.correlation_id, "corr-1");
  BOOST_CHECK_EQUAL(env.causation_id, "cause-1");
  BOOST_CHECK(env.tags == ev.tags);
  BOOST_CHECK(env.metadata == ev.metadata);
  BOOST_CHECK(env.payload == ev.payload);
}

BOOST_AUTO_TEST_CASE(expected_version_exact_no_stream_and_any) {
  BOOST_REQUIRE(
      j->append("s", events_of({"1"}), expected_version::no_stream()));
  BOOST_REQUIRE(
      j->append("s", events_of({"2", "3"}), expected_version::exact(1)));
  BOOST_REQUIRE(j->append("s", events_of({"4"}), expected_version::any()));
  auto again = j->append("s", events_of({"x"}), expected_version::no_stream());
  BOOST_REQUIRE(!again);
  BOOST_CHECK(again.error().code() == errc::version_conflict);
  auto* info = again.error().conflict();
  BOOST_REQUIRE(info != nullptr);
  BOOST_CHECK_EQUAL(info->stream, "s");
  BOOST_CHECK_EQUAL(info->expected, 0u);
  BOOST_CHECK_EQUAL(info->actual, 4u);
  auto stale =
      j->append("s", events_of({"x", "y"}), expected_version::exact(2));
  BOOST_REQUIRE(!stale);
  BOOST_CHECK(stale.error().code() == errc::version_conflict);
  BOOST_CHECK_EQUAL(stale.error().conflict()->expected, 2u);
  BOOST_CHECK_EQUAL(stale.error().conflict()->actual, 4u);
  BOOST_CHECK(stale.error().message().find("expected version 2") !=
              std::string::npos);
  // A rejected batch writes nothing.
  BOOST_CHECK_EQUAL(*j->highest_sequence("s"), 4u);
  BOOST_CHECK_EQUAL(j->head_position(), 4u);
  auto missing = j->append("t", events_of({"x"}), expected_version::exact(3));
  BOOST_REQUIRE(!missing);
  BOOST_CHECK_EQUAL(missing.error().conflict()->actual, 0u);
  BOOST_CHECK_EQUAL(*j->highest_sequence("t"), 0u);
}

BOOST_AUTO_TEST_CASE(idempotent_append_returns_original_refs_across_restart) {
  auto batch = events_of({"1", "2"});
  batch[0].id = event_id::make_v7();
  batch[1].id = event_id::make_v7();
  auto first = j->append("s", batch, expected_version::no_stream());
  BOOST_REQUIRE(first);
  BOOST_REQUIRE(j->append("other", events_of({"o"}), expected_version::any()));
  reopen();
  // The retry carries an expected version that no longer holds: it is still
  // answered with the original outcome.
  auto retry = j->append("s", batch, expected_version::no_stream());
  BOOST_REQUIRE_MESSAGE(retry, mnemo::test::why(retry));
  BOOST_CHECK(retry->duplicate);
  BOOST_REQUIRE_EQUAL(retry->events.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    BOOST_CHECK(retry->events[i].id == first->events[i].id);
    BOOST_CHECK_EQUAL(retry->events[i].sequence, first->events[i].sequence);
    BOOST_CHECK_EQUAL(retry->events[i].position, first->events[i].position);
  }
  BOOST_CHECK_EQUAL(*j->highest_sequence("s"), 2u);
  BOOST_CHECK_EQUAL(j->head_position(), 3u);
}

BOOST_AUTO_TEST_CASE(ids_older_than_stored_ones_are_indexed_for_retries) {
  // Ids that sort before the newest stored id (made earlier, or by a caller
  // with its own scheme) are indexed like any other: a retry of each batch
  // is recognised, also after a restart.
  auto early = events_of({"early-1", "early-2"});
  early[0].id = event_id::make_v7();
  early[1].id = event_id::make_v7();
  auto low = events_of({"low"});
  low[0].id = *event_id::parse("00000000-0000-7000-8000-000000000001");
  auto late = events_of({"late"});
  late[0].id = event_id::make_v7();
  BOOST_REQUIRE(j->append("s", late, expected_version::any()));
  BOOST_REQUIRE(j->append("s", events_of({"x", "y"}), expected_version::any()));
  auto first_early = j->append("t", early, expected_version::any());
  BOOST_REQUIRE(first_early);
  auto first_low = j->append("u", low, expected_version::any());
  BOOST_REQUIRE(first_low);
  reopen();
  for (auto* batch : {&late, &early, &low}) {
    auto stream = batch == &late ? "s" : batch == &early ? "t" : "u";
    auto retry = j->append(stream, *batch, expected_version::any());
    BOOST_REQUIRE_MESSAGE(retry, mnemo::test::why(retry));
    BOOST_CHECK(retry->duplicate);
    BOOST_REQUIRE_EQUAL(retry->events.size(), batch->size());
    for (size_t i = 0; i < batch->size(); ++i)
      BOOST_CHECK(retry->events[i].id == (*batch)[i].id);
  }
  BOOST_CHECK_EQUAL(first_early->events[1].position, 5u);
  BOOST_CHECK_EQUAL(first_low->events[0].position, 6u);
  auto foreign = j->append("v", low, expected_version::any());
  BOOST_REQUIRE(!foreign);
  BOOST_CHECK(foreign.error().code() == errc::duplicate_event_id);
  BOOST_CHECK_EQUAL(j->head_position(), 6u);
}

BOOST_AUTO_TEST_CASE(partial_or_foreign_duplicate_ids_are_rejected) {
  auto batch = events_of({"1"});
  batch[0].id = event_id::make_v7();
  BOOST_REQUIRE(j->append("s", batch, expected_version::any()));
  auto partial = batch;
  partial.push_back(make_event("test.value", "2"));
  auto res = j->append("s", partial, expected_version::any());
  BOOST_REQUIRE(!res);
  BOOST_CHECK(res.error().code() == errc::duplicate_event_id);
  auto foreign = j->append("t", batch, expected_version::any());
  BOOST_REQUIRE(!foreign);
  BOOST_CHECK(foreign.error().code() == errc::duplicate_event_id);
  BOOST_CHECK(foreign.error().message().find(batch[0].id.to_string()) !=
              std::string::npos);
  auto twice = events_of({"a", "b"});
  twice[1].id = twice[0].id = event_id::make_v7();
  auto dup = j->append("u", twice, expected_version::any());
  BOOST_REQUIRE(!dup);
  BOOST_CHECK(dup.error().code() == errc::invalid_argument);
  BOOST_CHECK_EQUAL(j->head_position(), 1u);
  BOOST_CHECK_EQUAL(*j->highest_sequence("s"), 1u);
  BOOST_CHECK_EQUAL(*j->highest_sequence("t"), 0u);
}

BOOST_AUTO_TEST_CASE(invalid_arguments_are_rejected_with_clear_errors) {
  auto check = [&](std::string stream, std::vector<new_event> evs,
                   const char* fragment) {
    auto res =
        j->append(std::move(stream), std::move(evs), expected_version::any());
    BOOST_REQUIRE(!res);
    BOOST_CHECK(res.error().code() == errc::invalid_argument);
    BOOST_CHECK_MESSAGE(
        res.error().message().find(fragment) != std::string::npos,
        res.error().message());
  };
  check("", events_of({"x"}), "stream id is empty");
  check(std::string{"a\0b", 3}, events_of({"x"}), "NUL");
  check(std::string(401, 's'), events_of({"x"}), "401 bytes");
  check("s", {}, "no events");
  auto untyped = events_of({"x"});
  untyped[0].type.clear();
  check("s", untyped, "empty type");
  auto badtag = events_of({"x"});
  badtag[0].tags = {""};
  check("s", badtag, "tag is empty");
  BOOST_CHECK_EQUAL(j->head_position(), 0u);
  BOOST_CHECK(!j->read_stream("", 1, 10, 10));
  BOOST_CHECK(!j->read_tag("", 0, 10));
}

BOOST_AUTO_TEST_CASE(group_commit_batches_concurrent_appends) {
  std::atomic<size_t> commits{0};
  auto token = j->subscribe([&](uint64_t) { ++commits; });
  constexpr size_t threads = 4;
  constexpr size_t per_thread = 500;
  latch all;
  std::atomic<size_t> failures{0};
  std::vector<std::thread> workers;
  for (size_t t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (size_t i = 0; i < per_thread; ++i)
        j->append("stream-" + std::to_string((t * per_thread + i) % 50),
                  events_of({"v"}), expected_version::any(),
                  [&](expected<append_result> res) {
                    if (!res) ++failures;
                    all.done();
                  });
    });
  for (auto& w : workers) w.join();
  all.wait(threads * per_thread);
  j->unsubscribe(token);
  BOOST_CHECK_EQUAL(failures.load(), 0u);
  BOOST_CHECK_EQUAL(j->head_position(), threads * per_thread);
  BOOST_TEST_MESSAGE("commits for " << threads * per_thread
                                    << " appends: " << commits.load());
  BOOST_CHECK_LT(commits.load(), threads * per_thread);
  for (int s = 0; s < 50; ++s) {
    auto evs = j->read_stream("stream-" + std::to_string(s), 1, UINT64_MAX,
                              UINT64_MAX);
    BOOST_REQUIRE(evs);
    BOOST_REQUIRE_EQUAL(evs->size(), threads * per_thread / 50);
    for (size_t i = 0; i < evs->size(); ++i)
      BOOST_REQUIRE_EQUAL((*evs)[i].sequence, i + 1);
  }
}

BOOST_AUTO_TEST_CASE(stats_count_commits_events_and_batches) {
  auto before = j->stats();
  BOOST_CHECK_EQUAL(before.events, 0u);
  constexpr size_t appends = 300;
  latch all;
  for (size_t i = 0; i < appends; ++i)
    j->append("s-" + std::to_string(i % 7), events_of({"a", "b"}),
              expected_version::any(),
              [&](expected<append_result>) { all.done(); });
  all.wait(appends);
  // A duplicate writes nothing but is answered by a commit.
  auto first = j->read_stream("s-0", 1, 2, 2);
  BOOST_REQUIRE(first);
  std::vector<new_event> again;
  for (auto& env : *first) {
    auto ev = make_event("test.value", "again");
    ev.id = env.id;
    again.push_back(ev);
  }
  BOOST_REQUIRE(j->append("s-0", again, expected_version::any()));
  auto st = j->stats();
  BOOST_CHECK_EQUAL(st.events, 2 * appends);
  BOOST_CHECK_EQUAL(st.requests, appends + 1);
  BOOST_CHECK_GE(st.commits, 2u);
  BOOST_CHECK_LE(st.commits, appends + 1);
  BOOST_CHECK_EQUAL(st.failed_commits, 0u);
  uint64_t batches = 0;
  for (auto n : st.batch_events) batches += n;
  uint64_t timed = 0;
  for (auto n : st.commit_us) timed += n;
  // Every commit is timed; the duplicate's commit wrote no events.
  BOOST_CHECK_EQUAL(timed, st.commits);
  BOOST_CHECK_EQUAL(batches, st.commits - 1);
  // Two events per append: nothing lands in the bucket "1 event".
  BOOST_CHECK_EQUAL(st.batch_events[0], 0u);
  BOOST_CHECK_GT(st.commit_us_sum, 0u);
}

BOOST_AUTO_TEST_CASE(a_second_writer_of_a_directory_is_refused) {
  journal_config cfg;
  cfg.directory = dir.sub("data");
  auto pid = std::to_string(::getpid());
  // Another process: refused for writing, naming this process; it may read.
  auto writer = mnemo::test::finish_child(
      mnemo::test::spawn_child("try-open", {cfg.directory, "rw"}));
  BOOST_TEST_MESSAGE(writer.out);
  BOOST_CHECK(writer.out.find("directory_in_use") != std::string::npos);
  BOOST_CHECK(writer.out.find("in use by another process (pid " + pid + ")") !=
              std::string::npos);
  auto reader = mnemo::test::finish_child(
      mnemo::test::spawn_child("try-open", {cfg.directory, "ro"}));
  BOOST_CHECK_EQUAL(reader.out, "ok\n");
  // This process: refused in any mode (LMDB allows one open per directory
  // and process), saying so.
  for (bool read_only : {false, true}) {
    cfg.read_only = read_only;
    auto second = mnemo::persistence::journal::open(cfg);
    BOOST_REQUIRE(!second);
    BOOST_CHECK_EQUAL(second.error().code(), errc::directory_in_use);
    BOOST_TEST_MESSAGE(second.error().to_string());
    BOOST_CHECK(second.error().message().find(
                    "already open in this process (pid " + pid +
                    ", writable)") != std::string::npos);
    BOOST_CHECK(second.error().message().find("another process") ==
                std::string::npos);
  }
  // Once the writer closes, the directory is free again.
  j.reset();
  cfg.read_only = false;
  auto third = mnemo::persistence::journal::open(cfg);
  BOOST_REQUIRE(third);
  BOOST_CHECK(!mnemo::persistence::journal::open(cfg));
  third->reset();
  cfg.read_only = true;
  auto ro = mnemo::persistence::journal::open(cfg);
  BOOST_REQUIRE(ro);
  cfg.read_only = false;
  auto refused = mnemo::persistence::journal::open(cfg);
  BOOST_REQUIRE(!refused);
  BOOST_CHECK(refused.error().message().find("(pid " + pid + ", read-only)") !=
              std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_directory_holding_only_the_lock_file_opens) {
  auto path = dir.sub("fresh");
  std::filesystem::create_directories(path);
  { std::ofstream{path + "/mnemo.lock"} << "123\n"; }
  journal_config cfg;
  cfg.directory = path;
  BOOST_CHECK(mnemo::persistence::journal::open(cfg));
}

BOOST_AUTO_TEST_CASE(a_bad_request_fails_alone_in_its_group_commit) {
  BOOST_REQUIRE(j->append("s", events_of({"1"}), expected_version::any()));
  latch all;
  std::vector<int> ok(200, -1);
  // Queue many requests at once so that they share group commits; every
  // tenth carries a stale expected version.
  for (int i = 0; i < 200; ++i) {
    auto ev =
        i % 10 == 5 ? expected_version::exact(99) : expected_version::any();
    j->append(i % 10 == 5 ? "s" : "g-" + std::to_string(i), events_of({"v"}),
              ev, [&, i](expected<append_result> res) {
                ok[i] = res ? 1 : 0;
                if (!res)
                  BOOST_CHECK(res.error().code() == errc::version_conflict);
                all.done();
              });
  }
  all.wait(200);
  for (int i = 0; i < 200; ++i) BOOST_CHECK_EQUAL(ok[i], i % 10 == 5 ? 0 : 1);
  BOOST_CHECK_EQUAL(j->head_position(), 1u + 180u);
  BOOST_CHECK_EQUAL(*j->highest_sequence("s"), 1u);
}

BOOST_AUTO_TEST_CASE(read_all_pages_in_commit_order) {
  for (int i = 0; i < 25; ++i)
    BOOST_REQUIRE(j->append("s-" + std::to_string(i % 3), events_of({"a", "b"}),
                            expected_version::any()));
  uint64_t next = 1;
  size_t pages = 0;
  for (;;) {
    auto page = j->read_all(next, 7);
    BOOST_REQUIRE(page);
    if (page->empty()) break;
    BOOST_CHECK_LE(page->size(), 7u);
    ++pages;
    for (auto& ev : *page) BOOST_REQUIRE_EQUAL(ev.position, next++);
  }
  BOOST_CHECK_EQUAL(next - 1, 50u);
  BOOST_CHECK_EQUAL(pages, 8u);
  BOOST_CHECK(j->read_all(51, 10)->empty());
  BOOST_CHECK(j->read_all(1, 0)->empty());
}

BOOST_AUTO_TEST_CASE(read_by_tag_and_list_streams) {
  auto tagged = [&](const char* v, std::vector<std::string> tags) {
    auto evs = events_of({v});
    evs[0].tags = std::move(tags);
    return evs;
  };
  BOOST_REQUIRE(j->append("a", tagged("1", {"red"}), expected_version::any()));
  BOOST_REQUIRE(j->append("b", tagged("2", {"blue"}), expected_version::any()));
  BOOST_REQUIRE(
      j->append("c", tagged("3", {"red", "blue"}), expected_version::any()));
  BOOST_REQUIRE(j->append("a", tagged("4", {"red"}), expected_version::any()));
  auto red = j->read_tag("red", 0, 10);
  BOOST_REQUIRE(red);
  BOOST_REQUIRE_EQUAL(red->size(), 3u);
  BOOST_CHECK_EQUAL((*red)[0].position, 1u);
  BOOST_CHECK_EQUAL((*red)[1].position, 3u);
  BOOST_CHECK_EQUAL((*red)[2].position, 4u);
  auto from3 = j->read_tag("red", 3, 1);
  BOOST_REQUIRE_EQUAL(from3->size(), 1u);
  BOOST_CHECK_EQUAL(from3->front().position, 3u);
  BOOST_CHECK(j->read_tag("re", 0, 10)->empty());
  BOOST_CHECK(j->read_tag("green", 0, 10)->empty());
  auto streams = j->list_streams("", 2);
  BOOST_REQUIRE_EQUAL(streams->size(), 2u);
  BOOST_CHECK_EQUAL((*streams)[0].stream_id, "a");
  BOOST_CHECK_EQUAL((*streams)[0].highest_sequence, 2u);
  BOOST_CHECK_EQUAL((*streams)[1].stream_id, "b");
  auto rest = j->list_streams("b", 10);
  BOOST_REQUIRE_EQUAL(rest->size(), 1u);
  BOOST_CHECK_EQUAL(rest->front().stream_id, "c");
}

BOOST_AUTO_TEST_CASE(deletion_removes_events_from_every_read) {
  for (int i = 0; i < 3; ++i) {
    auto evs = events_of({"x"});
    evs[0].tags = {"t"};
    BOOST_REQUIRE(j->append("d", std::move(evs), expected_version::any()));
    BOOST_REQUIRE(j->append("keep", events_of({"k"}), expected_version::any()));
  }
  BOOST_REQUIRE(!j->delete_events_to("d", 2));
  auto tag = j->read_tag("t", 0, 10);
  BOOST_REQUIRE_EQUAL(tag->size(), 1u);
  BOOST_CHECK_EQUAL(tag->front().sequence, 3u);
  auto all = j->read_all(1, 100);
  BOOST_REQUIRE_EQUAL(all->size(), 4u);
  BOOST_CHECK_EQUAL((*all)[0].stream_id, "keep");
  auto head = j->head_of("d");
  BOOST_CHECK_EQUAL(head->highest_sequence, 3u);
  BOOST_CHECK_EQUAL(head->deleted_to, 2u);
  BOOST_REQUIRE(!j->delete_events_to("d", UINT64_MAX));
  BOOST_CHECK(j->read_stream("d", 1, UINT64_MAX, UINT64_MAX)->empty());
  BOOST_CHECK_EQUAL(*j->highest_sequence("d"), 3u);
  reopen();
  BOOST_CHECK_EQUAL(*j->highest_sequence("d"), 3u);
  auto next = j->append("d", events_of({"y"}), expected_version::exact(3));
  BOOST_REQUIRE(next);
  BOOST_CHECK_EQUAL(next->events[0].sequence, 4u);
  BOOST_CHECK_EQUAL(j->read_stream("d", 1, 10, 10)->size(), 1u);
}

BOOST_AUTO_TEST_CASE(long_streams_read_correctly_across_checkpoints) {
  // Two interleaved streams of 300 events in batches of 1..7, so that reads
  // start between, on and after the sparse index checkpoints.
  std::mt19937 rng{42};
  uint64_t n = 0;
  while (n < 300) {
    auto size = std::min<uint64_t>(1 + rng() % 7, 300 - n);
    std::vector<new_event> batch;
    for (uint64_t i = 0; i < size; ++i)
      batch.push_back(make_event("test.value", std::to_string(n + i + 1)));
    BOOST_REQUIRE(
        j->append("long", std::move(batch), expected_version::exact(n)));
    BOOST_REQUIRE(
        j->append("noise", events_of({"x"}), expected_version::any()));
    n += size;
  }
  auto check = [&](uint64_t deleted_to) {
    for (int k = 0; k < 300; ++k) {
      uint64_t from = rng() % 320;
      uint64_t to = from + rng() % 100;
      uint64_t max = k % 3 == 0 ? UINT64_MAX : rng() % 40;
      auto evs = j->read_stream("long", from, to, max);
      BOOST_REQUIRE_MESSAGE(evs, mnemo::test::why(evs));
      auto first = std::max({from, deleted_to + 1, uint64_t{1}});
      auto last = std::min<uint64_t>(to, 300);
      uint64_t expected_count = first > last ? 0 : last - first + 1;
      expected_count = std::min(expected_count, max);
      BOOST_REQUIRE_EQUAL(evs->size(), expected_count);
      for (size_t i = 0; i < evs->size(); ++i) {
        BOOST_REQUIRE_EQUAL((*evs)[i].sequence, first + i);
        BOOST_REQUIRE_EQUAL(mnemo::test::event_value((*evs)[i]),
                            std::to_string(first + i));
      }
    }
  };
  check(0);
  BOOST_REQUIRE(!j->delete_events_to("long", 70));
  check(70);
  // 130: past the checkpoint at 128.
  BOOST_REQUIRE(!j->delete_events_to("long", 130));
  check(130);
  reopen();
  check(130);
  BOOST_REQUIRE(
      j->append("long", events_of({"301"}), expected_version::exact(300)));
  auto tail = j->read_stream("long", 299, UINT64_MAX, UINT64_MAX);
  BOOST_REQUIRE_EQUAL(tail->size(), 3u);
  BOOST_CHECK_EQUAL(mnemo::test::event_value(tail->back()), "301");
}

BOOST_AUTO_TEST_CASE(commit_listeners_see_each_new_head) {
  std::mutex mtx;
  std::vector<uint64_t> heads;
  auto token = j->subscribe([&](uint64_t h) {
    std::lock_guard<std::mutex> guard{mtx};
    heads.push_back(h);
  });
  BOOST_REQUIRE(j->append("s", events_of({"1", "2"}), expected_version::any()));
  BOOST_REQUIRE(j->append("s", events_of({"3"}), expected_version::any()));
  // A commit without events (an offset write) announces nothing.
  BOOST_REQUIRE(!j->offsets().store("p", 1));
  j->unsubscribe(token);
  BOOST_REQUIRE(j->append("s", events_of({"4"}), expected_version::any()));
  std::lock_guard<std::mutex> guard{mtx};
  BOOST_REQUIRE_EQUAL(heads.size(), 2u);
  BOOST_CHECK_EQUAL(heads[0], 2u);
  BOOST_CHECK_EQUAL(heads[1], 3u);
}

BOOST_AUTO_TEST_CASE(closing_drains_queued_appends) {
  latch all;
  std::atomic<size_t> ok{0};
  for (int i = 0; i < 1000; ++i)
    j->append("s", events_of({"v"}), expected_version::any(),
              [&](expected<append_result> res) {
                if (res) ++ok;
                all.done();
              });
  reopen();
  all.wait(1000);
  BOOST_CHECK_EQUAL(ok.load(), 1000u);
  BOOST_CHECK_EQUAL(*j->highest_sequence("s"), 1000u);
}

BOOST_AUTO_TEST_CASE(append_callbacks_run_in_commit_order_off_the_writer) {
  // The writer thread: where write functions and their callbacks run.
  std::thread::id writer;
  std::thread::id write_done;
  latch wrote;
  j->write(
      [&](write_txn&) {
        writer = std::this_thread::get_id();
        return error{};
      },
      [&](error) {
        write_done = std::this_thread::get_id();
        wrote.done();
      });
  wrote.wait(1);
  BOOST_CHECK(write_done == writer);
  // Many appends in flight from two threads: their callbacks come in
  // position order, from one other thread.
  std::mutex mtx;
  std::vector<std::pair<uint64_t, std::thread::id>> seen;
  latch all;
  auto submit = [&](int from) {
    for (int i = from; i < from + 1000; ++i)
      j->append("s" + std::to_string(i % 10), events_of({"v"}),
                expected_version::any(), [&](expected<append_result> res) {
                  BOOST_REQUIRE(res);
                  {
                    std::lock_guard<std::mutex> guard{mtx};
                    seen.emplace_back(res->events.at(0).position,
                                      std::this_thread::get_id());
                  }
                  all.done();
                });
  };
  std::thread other{submit, 1000};
  submit(0);
  other.join();
  all.wait(2000);
  std::lock_guard<std::mutex> guard{mtx};
  BOOST_REQUIRE_EQUAL(seen.size(), 2000u);
  for (size_t i = 0; i < seen.size(); ++i) {
    BOOST_CHECK_EQUAL(seen[i].first, i + 1);
    BOOST_CHECK(seen[i].second != writer);
    BOOST_CHECK(seen[i].second == seen[0].second);
  }
}

BOOST_AUTO_TEST_CASE(every_durability_mode_persists_across_reopen) {
  for (auto mode :
       {durability::sync, durability::nometasync, durability::nosync}) {
    auto path = dir.sub(std::string{"mode-"} + to_string(mode));
    {
      auto jj = mnemo::test::open_journal(path, mode);
      BOOST_CHECK(jj->config().mode == mode);
      BOOST_REQUIRE(
          jj->append("s", events_of({"1", "2"}), expected_version::any()));
    }
    auto jj = mnemo::test::open_journal(path, mode);
    BOOST_CHECK_EQUAL(*jj->highest_sequence("s"), 2u);
  }
}

BOOST_AUTO_TEST_CASE(filtered_read_in_a_write_decodes_only_matching_streams) {
  BOOST_REQUIRE(
      j->append("acct-1", events_of({"a1", "a2"}), expected_version::any()));
  BOOST_REQUIRE(j->append("other-1", events_of({"o1", "o2", "o3"}),
                          expected_version::any()));
  BOOST_REQUIRE(
      j->append("acct-2", events_of({"a3"}), expected_version::any()));
  auto read = [&](uint64_t from, size_t max, std::string prefix) {
    mnemo::persistence::journal::filtered_events got;
    auto err = j->write([&](write_txn& txn) -> error {
      auto res =
          mnemo::persistence::journal::read_all_in(txn, from, max, prefix);
      if (!res) return res.error();
      got = std::move(*res);
      return {};
    });
    BOOST_REQUIRE_MESSAGE(!err, err.to_string());
    return got;
  };
  // Positions 1-2 acct-1, 3-5 other-1, 6 acct-2.
  auto all = read(1, 100, "acct-");
  BOOST_TEST(all.scanned == 6u);
  BOOST_TEST(all.last_position == 6u);
  BOOST_REQUIRE(all.events.size() == 3u);
  BOOST_TEST(all.events[0].position == 1u);
  BOOST_TEST(all.events[1].stream_id == "acct-1");
  BOOST_TEST(all.events[2].stream_id == "acct-2");
  BOOST_TEST(all.events[2].sequence == 1u);
  // `max` bounds the events looked at, matching or not.
  auto part = read(2, 3, "acct-");
  BOOST_TEST(part.scanned == 3u);
  BOOST_TEST(part.last_position == 4u);
  BOOST_REQUIRE(part.events.size() == 1u);
  BOOST_TEST(part.events[0].position == 2u);
  auto none = read(3, 3, "acct-");
  BOOST_TEST(none.scanned == 3u);
  BOOST_TEST(none.last_position == 5u);
  BOOST_TEST(none.events.empty());
  // An empty prefix takes everything; past the head nothing is looked at.
  BOOST_TEST(read(1, 100, "").events.size() == 6u);
  auto past = read(7, 100, "acct-");
  BOOST_TEST(past.scanned == 0u);
  BOOST_TEST(past.last_position == 0u);
}

BOOST_AUTO_TEST_CASE(tail_write_runs_after_the_appends_of_its_commit) {
  mnemo::test::writer_gate gate;
  gate.hold(*j);
  latch all;
  // Submitted first, but must see both appends of its commit.
  std::vector<uint64_t> seen;
  error tail_err{errc::storage_error, "not run"};
  j->write_after_appends(
      [&](write_txn& txn) -> error {
        auto evs = mnemo::persistence::journal::read_all_in(txn, 1, 100);
        if (!evs) return evs.error();
        for (auto& e : *evs) seen.push_back(e.position);
        if (evs->empty()) return {};
        return offset_store::store_in(txn, "tail", evs->back().position);
      },
      [&](error err) {
        tail_err = std::move(err);
        all.done();
      });
  std::vector<uint64_t> appended;
  std::mutex mtx;
  for (auto* stream : {"a", "b"})
    j->append(stream, events_of({"1", "2"}), expected_version::any(),
              [&](expected<append_result> res) {
                std::lock_guard<std::mutex> guard{mtx};
                if (res)
                  for (auto& ref : res->events)
                    appended.push_back(ref.position);
                all.done();
              });
  // A failing tail write rolls back only its own writes.
  error failed_err;
  j->write_after_appends(
      [&](write_txn& txn) -> error {
        if (auto err = offset_store::store_in(txn, "failed", 9)) return err;
        return error{errc::invalid_argument, "handler failed"};
      },
      [&](error err) {
        failed_err = std::move(err);
        all.done();
      });
  auto commits_before = j->stats().commits;
  gate.release();
  all.wait(4);
  BOOST_CHECK(!tail_err);
  BOOST_CHECK(failed_err.code() == errc::invalid_argument);
  std::sort(appended.begin(), appended.end());
  BOOST_CHECK((appended == std::vector<uint64_t>{1, 2, 3, 4}));
  BOOST_CHECK((seen == std::vector<uint64_t>{1, 2, 3, 4}));
  // The gate's commit and the one holding all four requests.
  BOOST_CHECK_EQUAL(j->stats().commits, commits_before + 2);
  BOOST_CHECK_EQUAL(*j->offsets().load("tail"), 4u);
  BOOST_CHECK_EQUAL(*j->offsets().load("failed"), 0u);
  BOOST_CHECK_EQUAL(j->head_position(), 4u);
}

BOOST_AUTO_TEST_CASE(tail_write_may_be_chained_from_its_completion) {
  // A completion handler (writer thread) appends and submits the next tail
  // write without blocking: both join the next group commit, and the tail
  // write sees the append.
  latch all;
  std::vector<size_t> counts;
  std::function<void()> submit = [&] {
    j->write_after_appends(
        [&](write_txn& txn) -> error {
          auto from = counts.empty() ? 1 : 1 + counts.back();
          auto evs = mnemo::persistence::journal::read_all_in(txn, from, 100);
          if (!evs) return evs.error();
          counts.push_back(from - 1 + evs->size());
          return {};
        },
        [&](error err) {
          if (err) counts.push_back(999);
          if (counts.size() == 1) {
            j->append("a", events_of({"1"}), expected_version::any(),
                      [&](expected<append_result> res) {
                        if (!res) counts.push_back(999);
                        all.done();
                      });
            submit();
          }
          all.done();
        });
  };
  submit();
  all.wait(3);
  BOOST_REQUIRE_EQUAL(counts.size(), 2u);
  BOOST_CHECK_EQUAL(counts[0], 0u);
  BOOST_CHECK_EQUAL(counts[1], 1u);
}

BOOST_AUTO_TEST_SUITE_END()
