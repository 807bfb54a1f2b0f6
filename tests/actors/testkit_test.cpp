// The testkit itself (actors/testkit.hpp), with a test type of its own:
// what a user of aggregate_fixture relies on beyond given/when/then.

#include <memory>
#include <optional>

#include <boost/test/unit_test.hpp>

#include "counter.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/actors/testkit.hpp"
#include "mnemo/persistence/table_store.hpp"

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
  spec.apply = [types, broken](persistence::write_txn& txn,
                               const persistence::event_envelope& env)
      -> persistence::error {
    auto ev = types->decode_payload<added>(env.type, env.schema_version,
                                           env.payload, env.stream_id,
                                           env.sequence);
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

}  // namespace

BOOST_AUTO_TEST_SUITE(testkit)

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
  BOOST_REQUIRE_MESSAGE(through, (through ? "" : runtime::describe(through.error())));
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
  actors::projection_context ctx{&f.journal(), &f.completions(),
                                 f.event_bus()};
  auto p = actors::spawn_projection(f.system(), ctx,
                                    sum(f, std::make_shared<bool>(false)));
  BOOST_REQUIRE(p);
  f.run();
  auto paused = f.request<caf::unit_t>(*p, actors::pause_atom::value);
  BOOST_REQUIRE_MESSAGE(paused, (paused ? "" : runtime::describe(paused.error())));
  auto st = f.request<actors::projection_status>(*p, actors::status_atom::value);
  BOOST_REQUIRE(st);
  BOOST_CHECK(st->paused);
  BOOST_REQUIRE(f.request<caf::unit_t>(*p, actors::resume_atom::value));
  BOOST_CHECK(!f.request<actors::projection_status>(*p, actors::status_atom::value)
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
  actors::projection_context ctx{&f.journal(), &f.completions(),
                                 f.event_bus()};
  auto p = actors::spawn_projection(f.system(), ctx, sum(f, broken));
  BOOST_REQUIRE(p);
  BOOST_REQUIRE(f.when("c1", add{4}));
  auto at = f.caught_up(*p);
  BOOST_REQUIRE_MESSAGE(at, (at ? "" : runtime::describe(at.error())));
  BOOST_CHECK_EQUAL(*at, f.journal().head_position());
  BOOST_CHECK_EQUAL(stored_sum(f), 7);
  // Paused: no answer within a second of virtual time.
  BOOST_REQUIRE(f.request<caf::unit_t>(*p, actors::pause_atom::value));
  BOOST_REQUIRE(f.when("c1", add{8}));
  auto waiting = f.caught_up(*p, 0, 100ms, 1s);
  BOOST_REQUIRE(!waiting);
  BOOST_TEST_MESSAGE(runtime::describe(waiting.error()));
  BOOST_CHECK_EQUAL(stored_sum(f), 7);
  BOOST_REQUIRE(f.request<caf::unit_t>(*p, actors::resume_atom::value));
  at = f.caught_up(*p);
  BOOST_REQUIRE(at);
  BOOST_CHECK_EQUAL(stored_sum(f), 15);
  // A failing event is retried twice, 100 ms apart, then parked.
  *broken = true;
  BOOST_REQUIRE(f.when("c1", add{13}));
  BOOST_REQUIRE(f.when("c2", add{1}));
  at = f.caught_up(*p);
  BOOST_REQUIRE_MESSAGE(at, (at ? "" : runtime::describe(at.error())));
  BOOST_CHECK_EQUAL(*at, f.journal().head_position());
  BOOST_CHECK_EQUAL(stored_sum(f), 16);
  // An explicit position: one already passed answers at once.
  at = f.caught_up(*p, 1);
  BOOST_REQUIRE(at);
  BOOST_CHECK_EQUAL(*at, f.journal().head_position());
  // Stopped before it got there: entity_stopped, naming the projection.
  BOOST_REQUIRE(f.request<caf::unit_t>(*p, actors::pause_atom::value));
  BOOST_REQUIRE(f.when("c1", add{1}));
  auto answer = std::make_shared<std::optional<caf::error>>();
  auto dest = *p;
  auto target = f.journal().head_position();
  f.system().spawn([=](caf::event_based_actor* self) {
    self->request(dest, caf::infinite, actors::caught_up_atom::value, target)
        .then([=](uint64_t) { *answer = caf::error{}; },
              [=](caf::error& e) { *answer = std::move(e); });
  });
  f.run();
  BOOST_CHECK(!answer->has_value());
  caf::anon_send_exit(*p, caf::exit_reason::user_shutdown);
  f.run();
  BOOST_REQUIRE(answer->has_value());
  BOOST_CHECK(runtime::is(**answer, runtime::errc::entity_stopped));
  BOOST_CHECK(runtime::describe(**answer).find("'sum'") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
