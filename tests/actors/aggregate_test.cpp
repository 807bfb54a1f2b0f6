// The persistent aggregate on the testkit: effects, recovery, stashing,
// idempotent commands, snapshots, and failures.

#define BOOST_TEST_MODULE mnemo_actors
#include <boost/test/unit_test.hpp>

#include "../support/wallet.hpp"
#include "mnemo/actors/testkit.hpp"

using namespace mnemo;
using namespace wallet_model;
using fixture = actors::aggregate_fixture<wallet>;

namespace {

std::string why(const caf::error& err) {
  return runtime::describe(err);
}

// Boost builds messages even when a check passes: never touch error() of a
// value directly.
template <class T>
std::string why(const caf::expected<T>& x) {
  return x ? std::string{"ok"} : runtime::describe(x.error());
}

// Sends every command before running the system once, so that they queue
// up behind recovery; returns the replies in order.
std::vector<caf::expected<wallet_reply>> send_all(
    fixture& f, const std::string& id, std::vector<wallet::command> cmds) {
  auto results = std::make_shared<std::vector<caf::expected<wallet_reply>>>(
      cmds.size(), caf::expected<wallet_reply>{caf::sec::request_timeout});
  auto dest = f.actor(id);
  for (size_t i = 0; i < cmds.size(); ++i)
    f.system().spawn([=](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, actors::command_atom::value,
                    std::string{}, cmds[i])
          .then([=](wallet_reply& r) { (*results)[i] = r; },
                [=](caf::error& e) { (*results)[i] = e; });
    });
  f.run();
  return *results;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(aggregate)

BOOST_AUTO_TEST_CASE(commands_persist_events_and_reply_with_new_state) {
  fixture f;
  auto opened = f.when("a1", open_wallet{"alice"});
  BOOST_REQUIRE_MESSAGE(opened, why(opened));
  BOOST_CHECK_EQUAL(opened->balance, 0);
  BOOST_CHECK_EQUAL(f.when("a1", deposit{100})->balance, 100);
  BOOST_CHECK_EQUAL(f.when("a1", withdraw{30})->balance, 70);
  auto events = f.events("a1");
  BOOST_REQUIRE(events);
  BOOST_REQUIRE_EQUAL(events->size(), 3u);
  BOOST_CHECK(std::get<wallet_opened>((*events)[0]).owner == "alice");
  BOOST_CHECK_EQUAL(std::get<withdrawn>((*events)[2]).amount, 30);
  auto st = f.state("a1");
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->balance, 70);
  BOOST_CHECK(st->open);
}

BOOST_AUTO_TEST_CASE(rejections_persist_nothing) {
  fixture f;
  BOOST_REQUIRE(f.when("a1", open_wallet{"alice"}));
  auto over = f.when("a1", withdraw{5});
  BOOST_REQUIRE(!over);
  BOOST_CHECK(is(over.error(), wallet_errc::insufficient_funds));
  auto twice = f.when("a1", open_wallet{"bob"});
  BOOST_REQUIRE(!twice);
  BOOST_CHECK(is(twice.error(), wallet_errc::already_exists));
  auto unknown = f.when("nobody", deposit{5});
  BOOST_CHECK(!unknown && is(unknown.error(), wallet_errc::unknown_wallet));
  BOOST_CHECK_EQUAL(f.events("a1")->size(), 1u);
  BOOST_CHECK(f.events("nobody")->empty());
}

BOOST_AUTO_TEST_CASE(restart_recovers_state_from_the_journal) {
  fixture f;
  f.given("a1", {wallet_opened{"alice"}, deposited{50}, deposited{25}});
  BOOST_CHECK_EQUAL(f.when("a1", withdraw{5})->balance, 70);
  f.restart("a1");
  auto st = f.state("a1");
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->balance, 70);
  BOOST_CHECK_EQUAL(st->owner, "alice");
  BOOST_CHECK_EQUAL(f.when("a1", deposit{1})->balance, 71);
}

BOOST_AUTO_TEST_CASE(commands_during_recovery_are_stashed_in_order) {
  fixture f;
  f.given("a1", {wallet_opened{"alice"}});
  auto replies =
      send_all(f, "a1", {deposit{10}, deposit{20}, withdraw{5}, deposit{1}});
  std::vector<int64_t> balances;
  for (auto& r : replies) {
    BOOST_REQUIRE_MESSAGE(r, why(r));
    balances.push_back(r->balance);
  }
  BOOST_CHECK((balances == std::vector<int64_t>{10, 30, 25, 26}));
}

BOOST_AUTO_TEST_CASE(stash_overflow_is_answered_not_dropped) {
  actors::aggregate_options opts;
  opts.stash_limit = 2;
  fixture f{opts};
  f.given("a1", {wallet_opened{"alice"}});
  // The first command persists; two wait in the stash; the fourth finds
  // the stash full and is answered at once.
  auto replies =
      send_all(f, "a1", {deposit{1}, deposit{2}, deposit{3}, deposit{4}});
  BOOST_REQUIRE_EQUAL(replies.size(), 4u);
  for (size_t i = 0; i < 3; ++i)
    BOOST_CHECK_MESSAGE(replies[i], why(replies[i]));
  BOOST_REQUIRE(!replies[3]);
  BOOST_CHECK(runtime::is(replies[3].error(), runtime::errc::stash_overflow));
  BOOST_CHECK_EQUAL(f.state("a1")->balance, 6);
}

BOOST_AUTO_TEST_CASE(repeated_command_id_returns_original_outcome) {
  fixture f;
  BOOST_REQUIRE(f.when("a1", open_wallet{"alice"}, "c-0"));
  BOOST_CHECK_EQUAL(f.when("a1", deposit{100}, "c-1")->balance, 100);
  BOOST_CHECK_EQUAL(f.when("a1", deposit{7}, "c-2")->balance, 107);
  // A retry answers what the first execution answered, not the current
  // balance, and persists nothing.
  BOOST_CHECK_EQUAL(f.when("a1", deposit{100}, "c-1")->balance, 100);
  BOOST_CHECK_EQUAL(f.events("a1")->size(), 3u);
  f.restart("a1");
  BOOST_CHECK_EQUAL(f.when("a1", deposit{100}, "c-1")->balance, 100);
  BOOST_CHECK_EQUAL(f.when("a1", deposit{7}, "c-2")->balance, 107);
  BOOST_CHECK_EQUAL(f.events("a1")->size(), 3u);
  BOOST_CHECK_EQUAL(f.state("a1")->balance, 107);
}

BOOST_AUTO_TEST_CASE(state_atom_answers_state_and_version) {
  fixture f;
  auto fresh = f.versioned_state("a1");
  BOOST_REQUIRE(fresh);
  BOOST_CHECK(!fresh->first.exists);
  BOOST_CHECK_EQUAL(fresh->second, 0u);
  BOOST_REQUIRE(f.when("a1", open_wallet{"alice"}));
  BOOST_REQUIRE(f.when("a1", deposit{5}));
  BOOST_CHECK(!f.when("a1", withdraw{50}));
  f.restart("a1");
  auto after = f.versioned_state("a1");
  BOOST_REQUIRE(after);
  BOOST_CHECK_EQUAL(after->first.balance, 5);
  BOOST_CHECK_EQUAL(after->second, 2u);
}

BOOST_AUTO_TEST_CASE(commands_and_entities_are_counted_in_metrics) {
  runtime::metrics m;  // outlives the registry, which updates it at exit
  fixture f;
  f.context().metrics = actors::aggregate_metrics::in(m, "wallet");
  runtime::registry_options opts;
  opts.metrics = &m;
  opts.entity_type = "wallet";
  auto reg = f.spawn_registry(opts);
  BOOST_REQUIRE(f.route(reg, "a1", open_wallet{"alice"}));
  BOOST_REQUIRE(f.route(reg, "a1", deposit{10}, "c-1"));
  BOOST_REQUIRE(f.route(reg, "a1", deposit{10}, "c-1"));
  BOOST_CHECK(!f.route(reg, "a1", withdraw{99}));
  BOOST_CHECK(!f.route(reg, "a2", deposit{1}));
  auto text = m.render();
  BOOST_TEST_MESSAGE(text);
  auto has = [&](const std::string& line) {
    return text.find(line + "\n") != std::string::npos;
  };
  BOOST_CHECK(
      has(R"(mnemo_commands_total{aggregate="wallet",outcome="accepted"} 2)"));
  BOOST_CHECK(
      has(R"(mnemo_commands_total{aggregate="wallet",outcome="duplicate"} 1)"));
  BOOST_CHECK(
      has(R"(mnemo_commands_total{aggregate="wallet",outcome="rejected"} 2)"));
  BOOST_CHECK(
      has(R"(mnemo_commands_total{aggregate="wallet",outcome="failed"} 0)"));
  BOOST_CHECK(has(R"(mnemo_recovery_seconds_count{aggregate="wallet"} 2)"));
  BOOST_CHECK(has(R"(mnemo_entities_active{type="wallet"} 2)"));
  BOOST_CHECK(has(R"(mnemo_entity_activations_total{type="wallet"} 2)"));
  BOOST_CHECK(has(R"(mnemo_passivations_total{type="wallet"} 0)"));
}

BOOST_AUTO_TEST_CASE(snapshots_by_policy_bound_recovery) {
  actors::aggregate_options opts;
  opts.snapshot_every = 4;
  opts.snapshot_keep = 2;
  opts.delete_events_on_snapshot = true;
  fixture f{opts};
  BOOST_REQUIRE(f.when("a1", open_wallet{"alice"}, "open"));
  for (int i = 1; i <= 12; ++i)
    BOOST_REQUIRE(f.when("a1", deposit{i}, "d-" + std::to_string(i)));
  auto stream = actors::stream_of<wallet>("a1");
  auto snaps = f.journal().snapshots().list(stream);
  BOOST_REQUIRE(snaps);
  BOOST_REQUIRE_EQUAL(snaps->size(), 2u);
  BOOST_CHECK_EQUAL((*snaps)[0].sequence, 8u);
  BOOST_CHECK_EQUAL((*snaps)[1].sequence, 12u);
  // Events covered by the oldest kept snapshot are gone...
  auto head = f.journal().head_of(stream);
  BOOST_CHECK_EQUAL(head->deleted_to, 8u);
  BOOST_CHECK_EQUAL(head->highest_sequence, 13u);
  // ...and recovery = latest snapshot + later events, idempotency included.
  f.restart("a1");
  BOOST_CHECK_EQUAL(f.state("a1")->balance, 78);
  BOOST_CHECK_EQUAL(f.when("a1", deposit{3}, "d-3")->balance, 6);
  BOOST_CHECK_EQUAL(f.when("a1", deposit{1})->balance, 79);
}

BOOST_AUTO_TEST_CASE(unknown_event_in_the_journal_stops_recovery_clearly) {
  fixture f;
  f.given("a1", {wallet_opened{"alice"}});
  persistence::new_event alien;
  alien.type = "wallet.teleported";
  alien.payload = {0x80};
  BOOST_REQUIRE(f.journal().append(actors::stream_of<wallet>("a1"), {alien},
                                   persistence::expected_version::exact(1)));
  // The aggregate stops during recovery; its exit reason says why.
  auto reason = std::make_shared<caf::error>();
  auto target = f.actor("a1");
  f.system().spawn([=](caf::event_based_actor* self) -> caf::behavior {
    self->monitor(target);
    self->set_down_handler([=](caf::down_msg& dm) {
      *reason = dm.reason;
      self->quit();
    });
    return {[](int) {}};
  });
  f.run();
  BOOST_CHECK(runtime::is(*reason, persistence::errc::unknown_event_type));
  auto text = why(*reason);
  BOOST_CHECK_MESSAGE(text.find("wallet-a1") != std::string::npos, text);
  BOOST_CHECK_MESSAGE(text.find("sequence 2") != std::string::npos, text);
  // Nothing was reset: the events are all still there.
  BOOST_CHECK_EQUAL(*f.journal().highest_sequence("wallet-a1"), 2u);
}

BOOST_AUTO_TEST_CASE(persist_failure_stops_the_aggregate_and_restart_heals) {
  fixture f;
  BOOST_REQUIRE(f.when("a1", open_wallet{"alice"}));
  // Another writer appends behind the live instance's back: its next
  // persist conflicts, it answers with the error and stops.
  f.given("a1", {deposited{500}});
  auto res = f.when("a1", deposit{1});
  BOOST_REQUIRE(!res);
  BOOST_CHECK(runtime::is(res.error(), persistence::errc::version_conflict));
  f.restart("a1");
  BOOST_CHECK_EQUAL(f.when("a1", deposit{1})->balance, 501);
}

BOOST_AUTO_TEST_CASE(every_event_type_round_trips) {
  fixture f;
  for (wallet::event ev :
       {wallet::event{wallet_opened{"o"}}, wallet::event{deposited{5}},
        wallet::event{withdrawn{6}}, wallet::event{wallet_closed{"bye"}}}) {
    auto back = f.round_trip(ev);
    BOOST_REQUIRE_MESSAGE(back, why(back));
    BOOST_CHECK(*back == ev);
  }
}

BOOST_AUTO_TEST_SUITE_END()
