// Aggregates under the entity registry's supervision: a throwing handler, a
// failed persist and a failed recovery each stop the instance; the caller
// gets an error; the registry restarts it with backoff (virtual time) and
// it recovers from the journal; beyond the restart intensity it fails fast
// with the last failure, without affecting other entities.

#include <boost/test/unit_test.hpp>

#include "counter.hpp"
#include "mnemo/actors/testkit.hpp"

using namespace mnemo;
using namespace std::chrono_literals;
using counter_model::add;
using counter_model::counter;

namespace {

struct supervision_fixture : actors::aggregate_fixture<counter> {
  caf::actor reg;

  explicit supervision_fixture(size_t max_restarts = 10) {
    runtime::registry_options opts;
    opts.restarts.min_backoff = 100ms;
    opts.restarts.max_backoff = 1s;
    opts.restarts.jitter = 0;
    opts.restarts.max_restarts = max_restarts;
    opts.restarts.within = 10s;
    reg = spawn_registry(opts);
  }

  caf::expected<counter_model::count> send(const std::string& id, int64_t n) {
    return route(reg, id, add{n});
  }

  // Sends without running: the reply lands in the slot.
  std::shared_ptr<std::optional<caf::expected<counter_model::count>>> post(
      const std::string& id, int64_t n) {
    auto slot =
        std::make_shared<std::optional<caf::expected<counter_model::count>>>();
    auto msg = actors::command_message<counter>(add{n});
    auto dest = reg;
    system().spawn([=](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, runtime::route_atom::value, id, msg)
          .then([=](counter_model::count& c) { slot->emplace(c); },
                [=](caf::error& e) { slot->emplace(std::move(e)); });
    });
    return slot;
  }

  size_t restarts() {
    auto res = std::make_shared<size_t>(0);
    auto dest = reg;
    system().spawn([=](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, runtime::stats_atom::value)
          .then([=](size_t, size_t, size_t n) { *res = n; });
    });
    run();
    return *res;
  }

  // Appends an event no aggregate type knows: recovery of `id` fails there.
  void poison(const std::string& id) {
    persistence::new_event ev;
    ev.type = "counter.mystery";
    ev.payload = {0x80};  // empty msgpack map
    auto res = journal().append(actors::stream_of<counter>(id), {ev},
                                persistence::expected_version::any());
    BOOST_REQUIRE(res);
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(aggregate_supervision)

BOOST_AUTO_TEST_CASE(throwing_handler_restarts_with_backoff_and_recovers) {
  supervision_fixture f;
  BOOST_REQUIRE(f.send("c1", 5));
  auto failed = f.send("c1", -1);
  BOOST_REQUIRE(!failed);
  BOOST_CHECK(runtime::is(failed.error(), runtime::errc::handler_failed));
  // Sent during the backoff: held, then answered by the new instance.
  auto later = f.post("c1", 2);
  f.run();
  BOOST_CHECK(!later->has_value());
  counter::recoveries = 0;
  f.advance(100ms);
  BOOST_REQUIRE(later->has_value());
  BOOST_REQUIRE(**later);
  BOOST_CHECK_EQUAL((**later)->total, 7);  // 5 recovered from the journal
  BOOST_CHECK_EQUAL(counter::recoveries, 1);
  BOOST_CHECK_EQUAL(f.restarts(), 1u);
}

BOOST_AUTO_TEST_CASE(failed_persist_stops_and_the_restart_sees_the_journal) {
  supervision_fixture f;
  BOOST_REQUIRE(f.send("c1", 5));
  // Another writer got in (as after a split brain): the live instance's
  // state is now behind the journal and its next persist conflicts.
  f.given("c1", {counter_model::added{100}});
  auto conflict = f.send("c1", 1);
  BOOST_REQUIRE(!conflict);
  BOOST_CHECK_MESSAGE(
      runtime::is(conflict.error(), persistence::errc::version_conflict),
      runtime::describe(conflict.error()));
  f.advance(100ms);
  auto res = f.send("c1", 1);
  BOOST_REQUIRE_MESSAGE(res, (res ? "" : runtime::describe(res.error())));
  BOOST_CHECK_EQUAL(res->total, 106);
  auto events = f.events("c1");
  BOOST_REQUIRE(events);
  BOOST_CHECK_EQUAL(events->size(), 3u);  // nothing lost, nothing doubled
}

BOOST_AUTO_TEST_CASE(failed_recovery_names_stream_and_sequence) {
  supervision_fixture f;
  f.given("c1", {counter_model::added{1}});
  f.poison("c1");
  auto res = f.send("c1", 1);
  BOOST_REQUIRE(!res);
  auto text = runtime::describe(res.error());
  BOOST_CHECK_MESSAGE(
      runtime::is(res.error(), persistence::errc::unknown_event_type), text);
  BOOST_CHECK_MESSAGE(text.find("'counter.mystery'") != std::string::npos,
                      text);
  BOOST_CHECK_MESSAGE(
      text.find("stream 'counter-c1', sequence 2") != std::string::npos, text);
}

BOOST_AUTO_TEST_CASE(beyond_the_intensity_an_entity_fails_fast_then_retries) {
  supervision_fixture f{2};
  f.poison("bad");
  BOOST_REQUIRE(f.send("good", 1));
  // Three crashed recoveries within 10 s exhaust an intensity of 2.
  BOOST_CHECK(!f.send("bad", 1));
  f.advance(100ms);
  BOOST_CHECK(!f.send("bad", 1));
  f.advance(200ms);
  BOOST_CHECK(!f.send("bad", 1));
  auto recoveries = counter::recoveries;
  auto fast = f.send("bad", 1);
  BOOST_REQUIRE(!fast);
  auto text = runtime::describe(fast.error());
  BOOST_CHECK_MESSAGE(runtime::is(fast.error(), runtime::errc::restart_limit),
                      text);
  BOOST_CHECK_MESSAGE(text.find("counter.mystery") != std::string::npos, text);
  BOOST_CHECK_EQUAL(counter::recoveries, recoveries);  // not even started
  // Other entities are untouched.
  BOOST_CHECK_EQUAL(f.send("good", 1)->total, 2);
  // Once the window has passed, the entity gets another chance (and the
  // caller sees the real cause again).
  f.advance(10s);
  auto again = f.send("bad", 1);
  BOOST_REQUIRE(!again);
  BOOST_CHECK(!runtime::is(again.error(), runtime::errc::restart_limit));
}

BOOST_AUTO_TEST_CASE(a_restarted_entity_keeps_its_idempotent_commands) {
  supervision_fixture f;
  auto msg = [](int64_t n, std::string id) {
    return actors::command_message<counter>(add{n}, std::move(id));
  };
  auto first = f.request<counter_model::count>(
      f.reg, runtime::route_atom::value, std::string{"c1"}, msg(5, "cmd-1"));
  BOOST_REQUIRE(first);
  BOOST_REQUIRE(!f.send("c1", -1));  // crash
  f.advance(100ms);
  auto again = f.request<counter_model::count>(
      f.reg, runtime::route_atom::value, std::string{"c1"}, msg(5, "cmd-1"));
  BOOST_REQUIRE(again);
  BOOST_CHECK_EQUAL(again->total, 5);
  BOOST_CHECK_EQUAL(f.events("c1")->size(), 1u);
}

BOOST_AUTO_TEST_SUITE_END()
