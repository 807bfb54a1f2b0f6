// The testkit itself (actors/testkit.hpp), with a test type of its own:
// what a user of aggregate_fixture relies on beyond given/when/then.

#include <memory>
#include <optional>

#include <boost/test/unit_test.hpp>

#include "counter.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/actors/testkit.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/runtime/message.hpp"

using namespace mnemo;
using namespace std::chrono_literals;
using counter_model::add;
using counter_model::added;
using counter_model::counter;
using fixture = actors::aggregate_fixture<counter>;

namespace {

// A projection summing every counter's additions into key "sum" of table
// "sums"; fails on an addition of 13 while `broken` is set.
actors::projection_spec sum(fixture& f, std::shared_ptr<bool> broken) {
  actors::projection_spec spec;
  spec.name = "sum";
  spec.options.on_failure = actors::failure_strategy::retry_then_skip;
  spec.options.max_retries = 2;
  spec.options.retry_backoff.min_backoff = 100ms;
  spec.options.retry_backoff.jitter = 0;
  auto* types = &f.registry();
  spec.apply =
      [types, broken](
          persistence::write_txn& txn,
          const persistence::event_envelope& env) -> persistence::error {
    auto ev = types->decode_payload<added>(
        env.type, env.schema_version, env.payload, env.stream_id, env.sequence);
    if (!ev) return ev.error();
    if (ev->n == 13 && *broken)
      return persistence::error{persistence::errc::invalid_argument,
                                "unlucky number"};
    auto cur = persistence::table_store::get_in(txn, "sums", "sum");
    if (!cur) return cur.error();
    auto total = (*cur ? std::stoll(**cur) : 0) + ev->n;
    return persistence::table_store::put_in(txn, "sums", "sum",
                                            std::to_string(total));
  };
  return spec;
}

int64_t stored_sum(fixture& f) {
  int64_t total = 0;
  auto err = f.journal().read([&](persistence::read_txn& txn) {
    auto cur = persistence::table_store::get_in(txn, "sums", "sum");
    if (!cur) return cur.error();
    total = *cur ? std::stoll(**cur) : 0;
    return persistence::error{};
  });
  BOOST_REQUIRE(!err);
  return total;
}

// A tally with types of its own, declared with MNEMO_MESSAGE.
namespace tally_model {
struct bump {
  int64_t by = 0;
  MNEMO_MESSAGE(bump, by)
};
struct bumped {
  int64_t by = 0;
  MNEMO_MESSAGE(bumped, by)
};
struct tally_state {
  int64_t total = 0;
  int64_t bumps = 0;
  MNEMO_MESSAGE(tally_state, total, bumps)
};
struct tally_reply {
  int64_t total = 0;
  MNEMO_MESSAGE(tally_reply, total)
};
struct tally {
  using state = tally_state;
  using command = std::variant<bump>;
  using event = std::variant<bumped>;
  using reply = tally_reply;
  static constexpr const char* type_name = "tally";
  static void register_types(persistence::event_registry& types) {
    types.add<bumped>("tally.bumped");
    types.add<tally_state>("tally.state");
  }
  static actors::effect<tally> handle(const state&, const command& cmd) {
    auto by = std::get<bump>(cmd).by;
    if (by <= 0)
      return actors::effect<tally>::reject(runtime::make_error(
          runtime::errc::invalid_argument, "bump by a positive amount"));
    return actors::effect<tally>::persist(
        bumped{by}, [](const state& s) { return reply{s.total}; });
  }
  static state apply(state s, const event& ev) {
    s.total += std::get<bumped>(ev).by;
    ++s.bumps;
    return s;
  }
};

// The same, with an event whose declaration forgets a field: the journal
// loses it, and a recovered instance differs from the live one.
struct noted {
  std::string text;
  int64_t weight = 0;
  MNEMO_MESSAGE(noted, text)  // no `weight`
};
struct lossy {
  using state = tally_state;
  using command = std::variant<bump>;
  using event = std::variant<noted>;
  using reply = tally_reply;
  static constexpr const char* type_name = "lossy";
  static void register_types(persistence::event_registry& types) {
    types.add<noted>("lossy.noted");
  }
  static actors::effect<lossy> handle(const state&, const command& cmd) {
    return actors::effect<lossy>::persist(
        noted{"bump", std::get<bump>(cmd).by},
        [](const state& s) { return reply{s.total}; });
  }
  static state apply(state s, const event& ev) {
    s.total += std::get<noted>(ev).weight;
    ++s.bumps;
    return s;
  }
};

// The tally with its event left out of register_types.
struct unregistered : tally {
  static constexpr const char* type_name = "unregistered";
  static void register_types(persistence::event_registry& types) {
    types.add<tally_state>("unregistered.state");
  }
};
}  // namespace tally_model

}  // namespace

BOOST_AUTO_TEST_SUITE(testkit)

// run_command answers as Akka's EventSourcedBehaviorTestKit does: the
// reply, the events the command persisted, the state and version after
// it; a rejection persists nothing and leaves the state.
BOOST_AUTO_TEST_CASE(run_command_returns_reply_events_and_state) {
  using namespace tally_model;
  actors::aggregate_fixture<tally> f;
  auto first = f.run_command("t1", bump{3});
  BOOST_REQUIRE(first.reply);
  BOOST_CHECK_EQUAL(first.reply->total, 3);
  BOOST_REQUIRE_EQUAL(first.events.size(), 1u);
  BOOST_CHECK(std::get<bumped>(first.events[0]) == bumped{3});
  BOOST_CHECK(first.state == (tally_state{3, 1}));
  BOOST_CHECK_EQUAL(first.version, 1u);
  auto second = f.run_command("t1", bump{4}, "cmd-2");
  BOOST_REQUIRE_EQUAL(second.events.size(), 1u);
  BOOST_CHECK(second.state == (tally_state{7, 2}));
  BOOST_CHECK_EQUAL(second.version, 2u);
  // The same command id again: the stored reply, no new event.
  auto again = f.run_command("t1", bump{4}, "cmd-2");
  BOOST_REQUIRE(again.reply);
  BOOST_CHECK_EQUAL(again.reply->total, 7);
  BOOST_CHECK(again.events.empty());
  BOOST_CHECK_EQUAL(again.version, 2u);
  auto rejected = f.run_command("t1", bump{0});
  BOOST_REQUIRE(!rejected.reply);
  BOOST_CHECK(
      runtime::is(rejected.reply.error(), runtime::errc::invalid_argument));
  BOOST_CHECK(rejected.events.empty());
  BOOST_CHECK(rejected.state == (tally_state{7, 2}));
}

// The fixture checks its aggregate's types when it is built: an event
// left out of register_types is named before any test runs.
BOOST_AUTO_TEST_CASE(an_unregistered_event_type_is_named_at_once) {
  using namespace tally_model;
  BOOST_CHECK_EQUAL(actors::aggregate_fixture<tally>{}.check_types().size(),
                    0u);
  try {
    actors::aggregate_fixture<unregistered> f;
    BOOST_ERROR("the fixture accepted an unregistered event type");
  } catch (const std::logic_error& e) {
    std::string what = e.what();
    BOOST_TEST_MESSAGE(what);
    BOOST_CHECK(what.find("event bumped") != std::string::npos);
    BOOST_CHECK(what.find("register_types") != std::string::npos);
  }
}

// An event whose declaration forgets a field passes a round trip of a
// default value, but run_command compares the live state with one
// recovered from the journal, and names the loss.
BOOST_AUTO_TEST_CASE(an_event_that_loses_a_field_is_caught_by_run_command) {
  using namespace tally_model;
  actors::aggregate_fixture<lossy> f;
  try {
    f.run_command("l1", bump{5});
    BOOST_ERROR("run_command did not notice the lost field");
  } catch (const std::logic_error& e) {
    std::string what = e.what();
    BOOST_TEST_MESSAGE(what);
    BOOST_CHECK(what.find("recovered from the journal differs") !=
                std::string::npos);
  }
}

// Once the fixture spawned a registry, `when`, `state` and
// `versioned_state` go to the registry's instance: a second instance
// beside it would answer with what the journal held when it started, and
// its next persist would conflict with the registry's.
BOOST_AUTO_TEST_CASE(with_a_registry_the_fixture_reads_its_instance) {
  fixture f;
  auto reg = f.spawn_registry();
  BOOST_REQUIRE(f.route(reg, "c1", add{2}));
  BOOST_CHECK_EQUAL(f.state("c1")->total, 2);
  BOOST_REQUIRE(f.route(reg, "c1", add{3}));
  BOOST_CHECK_EQUAL(f.state("c1")->total, 5);
  auto versioned = f.versioned_state("c1");
  BOOST_REQUIRE(versioned);
  BOOST_CHECK_EQUAL(versioned->first.total, 5);
  BOOST_CHECK_EQUAL(versioned->second, 2u);
  auto through = f.when("c1", add{4});
  BOOST_REQUIRE_MESSAGE(through,
                        (through ? "" : runtime::describe(through.error())));
  BOOST_CHECK_EQUAL(through->total, 9);
  BOOST_CHECK_EQUAL(f.state("c1")->total, 9);
  BOOST_CHECK_EQUAL(f.events("c1")->size(), 3u);
}

// The parts a test passes to what it spawns over the fixture's journal:
// the completion sink that run() drains is the one in context(); a request
// answered with an empty message (caf::unit_t) is made like any other.
BOOST_AUTO_TEST_CASE(its_parts_and_unit_replies_are_reachable) {
  fixture f;
  BOOST_CHECK(&f.completions() == f.context().completions);
  actors::projection_context ctx{&f.journal(), &f.completions(), f.event_bus()};
  auto parts = f.projection_ctx();  // the same, in one call
  BOOST_CHECK(parts.journal == ctx.journal);
  BOOST_CHECK(parts.completions == ctx.completions);
  BOOST_CHECK(parts.event_bus == ctx.event_bus);
  auto p = actors::spawn_projection(f.system(), ctx,
                                    sum(f, std::make_shared<bool>(false)));
  BOOST_REQUIRE(p);
  f.run();
  auto paused = f.request<caf::unit_t>(*p, actors::pause_atom::value);
  BOOST_REQUIRE_MESSAGE(paused,
                        (paused ? "" : runtime::describe(paused.error())));
  auto st =
      f.request<actors::projection_status>(*p, actors::status_atom::value);
  BOOST_REQUIRE(st);
  BOOST_CHECK(st->paused);
  BOOST_REQUIRE(f.request<caf::unit_t>(*p, actors::resume_atom::value));
  BOOST_CHECK(
      !f.request<actors::projection_status>(*p, actors::status_atom::value)
           ->paused);
  caf::anon_send_exit(*p, caf::exit_reason::user_shutdown);
  f.run();
}

// Waiting for a projection instead of polling its status: caught_up
// answers once every event up to the journal's head (when asked) is
// handled; not while the projection is paused, and at once when it is
// resumed; through a failing event's retries on virtual time; and with
// entity_stopped if the projection stops before it got there.
BOOST_AUTO_TEST_CASE(caught_up_waits_until_a_projection_reached_a_position) {
  fixture f;
  auto broken = std::make_shared<bool>(false);
  f.given("c1", {added{1}, added{2}});
  auto p = f.spawn_projection(sum(f, broken));
  BOOST_REQUIRE(f.when("c1", add{4}));
  auto at = f.caught_up(p);
  BOOST_REQUIRE_MESSAGE(at, (at ? "" : runtime::describe(at.error())));
  BOOST_CHECK_EQUAL(*at, f.journal().head_position());
  BOOST_CHECK_EQUAL(stored_sum(f), 7);
  // Paused: no answer within a second of virtual time.
  BOOST_REQUIRE(f.request<caf::unit_t>(p, actors::pause_atom::value));
  BOOST_REQUIRE(f.when("c1", add{8}));
  auto waiting = f.caught_up(p, 0, 100ms, 1s);
  BOOST_REQUIRE(!waiting);
  BOOST_TEST_MESSAGE(runtime::describe(waiting.error()));
  BOOST_CHECK_EQUAL(stored_sum(f), 7);
  BOOST_REQUIRE(f.request<caf::unit_t>(p, actors::resume_atom::value));
  at = f.caught_up(p);
  BOOST_REQUIRE(at);
  BOOST_CHECK_EQUAL(stored_sum(f), 15);
  // A failing event is retried twice, 100 ms apart, then parked.
  *broken = true;
  BOOST_REQUIRE(f.when("c1", add{13}));
  BOOST_REQUIRE(f.when("c2", add{1}));
  at = f.caught_up(p);
  BOOST_REQUIRE_MESSAGE(at, (at ? "" : runtime::describe(at.error())));
  BOOST_CHECK_EQUAL(*at, f.journal().head_position());
  BOOST_CHECK_EQUAL(stored_sum(f), 16);
  // An explicit position: one already passed answers at once.
  at = f.caught_up(p, 1);
  BOOST_REQUIRE(at);
  BOOST_CHECK_EQUAL(*at, f.journal().head_position());
  // Stopped before it got there: entity_stopped, naming the projection.
  BOOST_REQUIRE(f.request<caf::unit_t>(p, actors::pause_atom::value));
  BOOST_REQUIRE(f.when("c1", add{1}));
  auto answer = std::make_shared<std::optional<caf::error>>();
  auto dest = p;
  auto target = f.journal().head_position();
  f.system().spawn([=](caf::event_based_actor* self) {
    self->request(dest, caf::infinite, actors::caught_up_atom::value, target)
        .then([=](uint64_t) { *answer = caf::error{}; },
              [=](caf::error& e) { *answer = std::move(e); });
  });
  f.run();
  BOOST_CHECK(!answer->has_value());
  caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
  f.run();
  BOOST_REQUIRE(answer->has_value());
  BOOST_CHECK(runtime::is(**answer, runtime::errc::entity_stopped));
  BOOST_CHECK(runtime::describe(**answer).find("'sum'") != std::string::npos);
}

// A projection tested alone, on the testkit's base fixture: given events
// appended to streams, then the read model once it caught up.
BOOST_AUTO_TEST_CASE(a_projection_is_tested_from_given_events) {
  actors::system_fixture f;
  f.registry().add<added>("counter.added");
  actors::projection_spec spec;
  spec.name = "sum";
  auto* types = &f.registry();
  spec.apply =
      [types](persistence::write_txn& txn,
              const persistence::event_envelope& env) -> persistence::error {
    auto ev = types->decode_payload<added>(
        env.type, env.schema_version, env.payload, env.stream_id, env.sequence);
    if (!ev) return ev.error();
    auto cur = persistence::table_store::get_in(txn, "sums", "sum");
    if (!cur) return cur.error();
    auto total = (*cur ? std::stoll(**cur) : 0) + ev->n;
    return persistence::table_store::put_in(txn, "sums", "sum",
                                            std::to_string(total));
  };
  auto p = f.spawn_projection(spec);
  f.append("counter-a", added{1}, added{2});
  auto last = f.append("counter-b", added{10});
  auto at = f.caught_up(p);
  BOOST_REQUIRE(at);
  BOOST_CHECK_EQUAL(*at, last);
  int64_t total = 0;
  BOOST_REQUIRE(!f.journal().read([&](persistence::read_txn& txn) {
    auto cur = persistence::table_store::get_in(txn, "sums", "sum");
    if (!cur) return cur.error();
    total = *cur ? std::stoll(**cur) : 0;
    return persistence::error{};
  }));
  BOOST_CHECK_EQUAL(total, 13);
  caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
  f.run();
}

BOOST_AUTO_TEST_SUITE_END()
