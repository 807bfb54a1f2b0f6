// Projection actors on the deterministic scheduler: catch-up and live
// through the same path, filters, exactly-once read models, failure
// strategies with dead letters, management (pause, resume, reset, rebuild).

#include <future>
#include <map>
#include <random>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "counter.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/actors/testkit.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/runtime/event_bus.hpp"
#include "mnemo/runtime/supervisor.hpp"

using namespace mnemo;
using namespace std::chrono_literals;
using counter_model::add;
using counter_model::added;
using counter_model::counter;
using persistence::table_store;

namespace {

using rows = std::vector<std::pair<std::string, std::string>>;

struct counter_projection_fixture : actors::aggregate_fixture<counter> {
  // While set, the handlers fail on events adding 13.
  std::shared_ptr<bool> broken = std::make_shared<bool>(false);
  std::vector<caf::actor> projections;

  ~counter_projection_fixture() {
    for (auto& p : projections)
      caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
    run();
  }

  // Sums the counters per stream into table `table`; also records the
  // last position seen in key "~last" (to prove rollbacks).
  actors::projection_spec totals(std::string name, std::string table,
                                 actors::failure_strategy strategy) {
    actors::projection_spec spec;
    spec.name = std::move(name);
    spec.options.on_failure = strategy;
    spec.options.max_retries = 2;
    spec.options.retry_backoff.min_backoff = 100ms;
    spec.options.retry_backoff.jitter = 0;
    auto* types = &registry();
    auto flag = broken;
    spec.apply =
        [types, flag, table](
            persistence::write_txn& txn,
            const persistence::event_envelope& env) -> persistence::error {
      if (auto err = table_store::put_in(txn, table, "~last",
                                         std::to_string(env.position)))
        return err;
      auto ev = types->decode_payload<added>(env.type, env.schema_version,
                                             env.payload, env.stream_id,
                                             env.sequence);
      if (!ev) return ev.error();
      if (ev->n == 13 && *flag)
        return persistence::error{persistence::errc::invalid_argument,
                                  "unlucky number"};
      auto cur = table_store::get_in(txn, table, env.stream_id);
      if (!cur) return cur.error();
      auto total = (*cur ? std::stoll(**cur) : 0) + ev->n;
      return table_store::put_in(txn, table, env.stream_id,
                                 std::to_string(total));
    };
    spec.clear = [table](persistence::write_txn& txn) {
      auto cleared = table_store::clear_in(txn, table);
      return cleared ? persistence::error{} : cleared.error();
    };
    return spec;
  }

  using calls_type = std::vector<std::vector<uint64_t>>;

  // Turns the per-event handler of `spec` into a group handler doing the
  // same, event by event, that records the positions of each call (also
  // of calls whose writes were rolled back).
  static std::shared_ptr<calls_type> as_group(actors::projection_spec& spec) {
    auto calls = std::make_shared<calls_type>();
    auto each = std::move(spec.apply);
    spec.apply = nullptr;
    spec.apply_group =
        [each, calls](persistence::write_txn& txn,
                      const std::vector<persistence::event_envelope>& events) {
          calls->emplace_back();
          for (auto& env : events) {
            calls->back().push_back(env.position);
            if (auto err = each(txn, env)) return err;
          }
          return persistence::error{};
        };
    return calls;
  }

  caf::actor spawn(actors::projection_spec spec) {
    actors::projection_context ctx{&journal(), context().completions,
                                   event_bus()};
    auto p = actors::spawn_projection(system(), ctx, std::move(spec));
    BOOST_REQUIRE(p);
    projections.push_back(*p);
    run();
    return *p;
  }

  rows dump(const std::string& table) {
    rows result;
    auto err = journal().read([&](persistence::read_txn& txn) {
      auto scanned = table_store::scan_in(
          txn, table, "", "", SIZE_MAX,
          [&](std::string_view k, std::string_view v) {
            result.emplace_back(std::string{k}, std::string{v});
            return true;
          });
      return scanned ? persistence::error{} : scanned.error();
    });
    BOOST_REQUIRE(!err);
    return result;
  }

  int64_t total(const std::string& table, const std::string& id) {
    for (auto& [k, v] : dump(table))
      if (k == actors::stream_of<counter>(id)) return std::stoll(v);
    return 0;
  }

  actors::projection_status status(const caf::actor& p) {
    auto st = request<actors::projection_status>(p, actors::status_atom::value);
    BOOST_REQUIRE(st);
    return *st;
  }

  std::vector<actors::dead_letter_info> dead_letters(const caf::actor& p) {
    auto res = request<std::vector<actors::dead_letter_info>>(
        p, actors::dead_letters_atom::value, uint64_t{0}, uint64_t{100});
    BOOST_REQUIRE(res);
    return *res;
  }

  // Sends a management request answered with nothing (caf::unit).
  template <class... Ts>
  caf::expected<caf::unit_t> command(const caf::actor& p, Ts... xs) {
    auto res = std::make_shared<caf::expected<caf::unit_t>>(
        runtime::make_error(runtime::errc::entity_stopped, "no reply"));
    system().spawn([=](caf::event_based_actor* self) {
      self->request(p, caf::infinite, xs...)
          .then([=]() { *res = caf::unit; },
                [=](caf::error& e) { *res = std::move(e); });
    });
    run();
    return *res;
  }

  // Records the exit reason of `target`.
  std::shared_ptr<std::optional<caf::error>> watch(const caf::actor& target) {
    auto reason = std::make_shared<std::optional<caf::error>>();
    watchers_.push_back(system().spawn([=](caf::event_based_actor* self) {
      self->monitor(target);
      self->set_down_handler([=](caf::down_msg& dm) {
        reason->emplace(dm.reason);
        self->quit();
      });
      return caf::behavior{[](caf::ok_atom) {}};
    }));
    return reason;
  }

  // Holds the journal's writer inside a group commit, appends `ev` to
  // `stream`, tells projection `p` of the new head `head` so that it queues
  // its tail write meanwhile, then lets the writer go: the append and the
  // tail write join the same commit.
  void append_beside_tail(const caf::actor& p, const std::string& stream,
                          persistence::new_event ev, uint64_t head) {
    auto release = hold_writer();
    journal().append(stream, {std::move(ev)},
                     persistence::expected_version::any(),
                     [](persistence::expected<persistence::append_result>) {});
    caf::anon_send(p, runtime::head_atom::value, head);
    scheduler().run();
    release->set_value();
    run();
  }

  // Holds the journal's writer inside a group commit until the returned
  // promise is set.
  std::shared_ptr<std::promise<void>> hold_writer() {
    auto release = std::make_shared<std::promise<void>>();
    auto released = release->get_future().share();
    std::promise<void> entered;
    journal().write(
        [&entered, released](persistence::write_txn&) {
          entered.set_value();
          released.wait();
          return persistence::error{};
        },
        [](persistence::error) {});
    entered.get_future().wait();
    return release;
  }

  std::vector<caf::actor> watchers_;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(projection)

BOOST_AUTO_TEST_CASE(catches_up_then_follows_live_commits) {
  counter_projection_fixture f;
  f.given("c1", {added{1}, added{2}});
  f.given("c2", {added{10}});
  auto p = f.spawn(f.totals("totals", "t", actors::failure_strategy::fail));
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 3);
  BOOST_CHECK_EQUAL(f.total("t", "c2"), 10);
  BOOST_CHECK_EQUAL(f.status(p).offset, 3u);
  // Live: new commits arrive through the event bus.
  f.given("c1", {added{4}});
  BOOST_REQUIRE(f.when("c2", add{5}));
  f.run();
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 7);
  BOOST_CHECK_EQUAL(f.total("t", "c2"), 15);
  auto st = f.status(p);
  BOOST_CHECK_EQUAL(st.offset, 5u);
  BOOST_CHECK_EQUAL(st.lag, 0u);
  BOOST_CHECK(!st.paused);
}

BOOST_AUTO_TEST_CASE(catch_up_spans_many_batches_in_order) {
  counter_projection_fixture f;
  for (int i = 0; i < 25; ++i) f.given("c" + std::to_string(i % 3), {added{i}});
  auto spec = f.totals("totals", "t", actors::failure_strategy::fail);
  spec.options.batch_size = 4;
  auto p = f.spawn(spec);
  BOOST_CHECK_EQUAL(f.status(p).offset, 25u);
  int64_t sum = 0;
  for (int i = 0; i < 3; ++i) sum += f.total("t", "c" + std::to_string(i));
  BOOST_CHECK_EQUAL(sum, 300);
  BOOST_CHECK_EQUAL(f.dump("t").front().first, "counter-c0");
  BOOST_CHECK_EQUAL(f.dump("t").back().second, "25");  // "~last"
}

BOOST_AUTO_TEST_CASE(filters_select_streams_and_types) {
  counter_projection_fixture f;
  f.given("a1", {added{1}});
  f.given("b1", {added{100}});
  auto spec = f.totals("only-a", "t", actors::failure_strategy::fail);
  spec.filter.stream_prefix = "counter-a";
  auto p = f.spawn(spec);
  BOOST_CHECK_EQUAL(f.total("t", "a1"), 1);
  BOOST_CHECK_EQUAL(f.total("t", "b1"), 0);
  // Filtered-out events still advance the offset.
  BOOST_CHECK_EQUAL(f.status(p).offset, 2u);
  auto other = f.totals("no-types", "u", actors::failure_strategy::fail);
  other.filter.event_types = {"counter.removed"};
  f.spawn(other);
  BOOST_CHECK(f.dump("u").empty());
}

BOOST_AUTO_TEST_CASE(poison_event_is_retried_with_backoff_then_parked) {
  counter_projection_fixture f;
  *f.broken = true;
  f.given("c1", {added{1}, added{13}, added{2}});
  auto p = f.spawn(
      f.totals("totals", "t", actors::failure_strategy::retry_then_skip));
  // The good prefix is committed; the failed event's writes rolled back.
  auto st = f.status(p);
  BOOST_CHECK_EQUAL(st.offset, 1u);
  BOOST_CHECK_EQUAL(st.attempts, 1u);
  BOOST_CHECK_MESSAGE(st.last_error.find("unlucky") != std::string::npos,
                      st.last_error);
  BOOST_CHECK_EQUAL(f.dump("t").back().second, "1");  // "~last"
  f.advance(99ms);
  BOOST_CHECK_EQUAL(f.status(p).attempts, 1u);
  f.advance(1ms);
  BOOST_CHECK_EQUAL(f.status(p).attempts, 2u);
  f.advance(200ms);  // the second retry fails too: parked
  st = f.status(p);
  BOOST_CHECK_EQUAL(st.offset, 3u);
  BOOST_CHECK_EQUAL(st.attempts, 0u);
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 3);
  auto dead = f.dead_letters(p);
  BOOST_REQUIRE_EQUAL(dead.size(), 1u);
  BOOST_CHECK_EQUAL(dead[0].position, 2u);
  BOOST_CHECK_EQUAL(dead[0].stream_id, "counter-c1");
  BOOST_CHECK_EQUAL(dead[0].sequence, 2u);
  BOOST_CHECK_EQUAL(dead[0].attempts, 3u);
  BOOST_CHECK(dead[0].error.find("unlucky") != std::string::npos);
  // Still broken: a retry fails, counts, and keeps the letter.
  BOOST_CHECK(!f.command(p, actors::retry_dead_atom::value, uint64_t{2}));
  BOOST_CHECK_EQUAL(f.dead_letters(p).at(0).attempts, 4u);
  // Fixed: the retry applies it exactly once and removes the letter.
  *f.broken = false;
  BOOST_REQUIRE(f.command(p, actors::retry_dead_atom::value, uint64_t{2}));
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 16);
  BOOST_CHECK(f.dead_letters(p).empty());
  BOOST_CHECK(!f.command(p, actors::retry_dead_atom::value, uint64_t{2}));
}

BOOST_AUTO_TEST_CASE(fail_strategy_stops_and_a_restart_resumes_from_offset) {
  counter_projection_fixture f;
  *f.broken = true;
  f.given("c1", {added{1}, added{13}, added{2}});
  auto p = f.spawn(f.totals("totals", "t", actors::failure_strategy::fail));
  auto reason = f.watch(p);
  f.run();
  BOOST_REQUIRE(reason->has_value());
  auto text = runtime::describe(**reason);
  BOOST_CHECK_MESSAGE(runtime::is(**reason, runtime::errc::handler_failed),
                      text);
  BOOST_CHECK_MESSAGE(
      text.find("position 2 (stream 'counter-c1', sequence 2") !=
          std::string::npos,
      text);
  *f.broken = false;
  auto again = f.spawn(f.totals("totals", "t", actors::failure_strategy::fail));
  BOOST_CHECK_EQUAL(f.status(again).offset, 3u);
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 16);  // 1 was not applied twice
}

BOOST_AUTO_TEST_CASE(pause_survives_a_restart_and_resume_catches_up) {
  counter_projection_fixture f;
  f.given("c1", {added{1}});
  auto p = f.spawn(f.totals("totals", "t", actors::failure_strategy::fail));
  BOOST_REQUIRE(f.command(p, actors::pause_atom::value));
  f.given("c1", {added{2}});
  f.run();
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 1);
  auto st = f.status(p);
  BOOST_CHECK(st.paused);
  BOOST_CHECK_EQUAL(st.lag, 1u);
  caf::anon_send_exit(p, caf::exit_reason::kill);
  f.run();
  auto q = f.spawn(f.totals("totals", "t", actors::failure_strategy::fail));
  BOOST_CHECK(f.status(q).paused);
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 1);
  BOOST_REQUIRE(f.command(q, actors::resume_atom::value));
  f.run();
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 3);
  BOOST_CHECK(!f.status(q).paused);
}

BOOST_AUTO_TEST_CASE(rebuild_equals_live_byte_for_byte) {
  counter_projection_fixture f;
  std::mt19937 rng{7};
  auto p = f.spawn(f.totals("totals", "t", actors::failure_strategy::fail));
  for (int i = 0; i < 300; ++i) {
    auto id = "c" + std::to_string(rng() % 17);
    BOOST_REQUIRE(f.when(id, add{static_cast<int64_t>(rng() % 100)}));
  }
  f.run();
  auto live = f.dump("t");
  BOOST_CHECK_EQUAL(live.size(), 18u);  // 17 counters + "~last"
  BOOST_CHECK_EQUAL(live.back().second, "300");
  BOOST_REQUIRE(f.command(p, actors::rebuild_atom::value));
  f.run();
  BOOST_CHECK(f.dump("t") == live);
  BOOST_CHECK_EQUAL(f.status(p).offset, 300u);
}

BOOST_AUTO_TEST_CASE(a_stream_released_to_another_member_leaves_the_model) {
  counter_projection_fixture f;
  f.given("c1", {added{1}, added{2}});
  f.given("c2", {added{5}});
  auto p = f.spawn(f.totals("totals", "t", actors::failure_strategy::fail));
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 3);
  caf::anon_send_exit(p, caf::exit_reason::kill);
  f.run();
  auto err = f.journal().release_stream(actors::stream_of<counter>("c1"), "n2");
  BOOST_REQUIRE_MESSAGE(!err, err.to_string());
  // The restarted projection rebuilds from what stayed.
  auto q = f.spawn(f.totals("totals", "t", actors::failure_strategy::fail));
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 0);
  BOOST_CHECK_EQUAL(f.total("t", "c2"), 5);
  BOOST_CHECK_EQUAL(f.status(q).offset, 3u);
  // Once: a later start keeps the model as it is.
  caf::anon_send_exit(q, caf::exit_reason::kill);
  f.run();
  BOOST_REQUIRE(!f.journal().write([](persistence::write_txn& txn) {
    return table_store::put_in(txn, "t", "marker", "kept");
  }));
  auto r = f.spawn(f.totals("totals", "t", actors::failure_strategy::fail));
  auto rows = f.dump("t");
  BOOST_CHECK(
      std::count(rows.begin(), rows.end(),
                 std::pair<std::string, std::string>{"marker", "kept"}) == 1);
  BOOST_CHECK_EQUAL(f.total("t", "c2"), 5);
  BOOST_CHECK_EQUAL(f.status(r).offset, 3u);
}

BOOST_AUTO_TEST_CASE(reset_moves_the_offset_without_touching_the_model) {
  counter_projection_fixture f;
  f.given("c1", {added{1}, added{2}});
  auto p = f.spawn(f.totals("totals", "t", actors::failure_strategy::fail));
  BOOST_REQUIRE(f.command(p, actors::reset_atom::value, uint64_t{1}));
  f.run();
  // Event 2 was handled again: reset is a tool for at-least-once models
  // and repairs, and does exactly what it says.
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 5);
  BOOST_CHECK_EQUAL(f.status(p).offset, 2u);
}

BOOST_AUTO_TEST_CASE(at_least_once_groups_and_isolates_the_culprit) {
  counter_projection_fixture f;
  *f.broken = true;
  for (int i = 1; i <= 7; ++i) f.given("c1", {added{i == 4 ? 13 : i}});
  auto seen = std::make_shared<std::vector<uint64_t>>();
  auto calls = std::make_shared<std::vector<size_t>>();
  auto flag = f.broken;
  auto* types = &f.registry();
  actors::projection_spec spec;
  spec.name = "mailer";
  spec.options.group_size = 3;
  spec.options.on_failure = actors::failure_strategy::skip;
  spec.effect = [=](const std::vector<persistence::event_envelope>& group)
      -> persistence::error {
    calls->push_back(group.size());
    for (auto& env : group) {
      auto ev = types->decode_payload<added>(env.type, env.schema_version,
                                             env.payload, env.stream_id,
                                             env.sequence);
      if (ev && ev->n == 13 && *flag)
        return persistence::error{persistence::errc::invalid_argument,
                                  "mail server says no"};
    }
    for (auto& env : group) seen->push_back(env.position);
    return {};
  };
  auto p = f.spawn(spec);
  BOOST_CHECK_EQUAL(f.status(p).offset, 7u);
  // Groups of 3; the failing group (4..6) was retried one by one.
  BOOST_CHECK((*seen == std::vector<uint64_t>{1, 2, 3, 5, 6, 7}));
  BOOST_CHECK_EQUAL(calls->front(), 3u);
  auto dead = f.dead_letters(p);
  BOOST_REQUIRE_EQUAL(dead.size(), 1u);
  BOOST_CHECK_EQUAL(dead[0].position, 4u);
  *f.broken = false;
  BOOST_REQUIRE(f.command(p, actors::retry_dead_atom::value, uint64_t{4}));
  BOOST_CHECK_EQUAL(seen->back(), 4u);
}

BOOST_AUTO_TEST_CASE(a_supervisor_restarts_a_failed_projection_from_offset) {
  counter_projection_fixture f;
  *f.broken = true;
  f.given("c1", {added{1}, added{13}, added{2}});
  actors::projection_context ctx{&f.journal(), f.context().completions,
                                 f.event_bus()};
  auto spec = f.totals("totals", "t", actors::failure_strategy::fail);
  runtime::supervisor_options opts;
  opts.restarts.min_backoff = 100ms;
  opts.restarts.jitter = 0;
  auto sup = runtime::spawn_supervisor(
      f.system(),
      {runtime::child_spec{"totals",
                           [ctx, spec](caf::actor_system& sys) {
                             auto p = actors::spawn_projection(sys, ctx, spec);
                             return p ? *p : caf::actor{};
                           }}},
      opts);
  BOOST_REQUIRE(sup);
  f.projections.push_back(*sup);
  f.run();
  // Fails at position 2 on every start until the cause is fixed.
  f.advance(100ms);
  f.advance(200ms);
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 1);
  *f.broken = false;
  f.advance(400ms);
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 16);
  auto status = f.request<actors::projection_status>(
      *sup, runtime::route_atom::value, std::string{"totals"},
      caf::make_message(actors::status_atom::value));
  BOOST_REQUIRE(status);
  BOOST_CHECK_EQUAL(status->offset, 3u);
}

BOOST_AUTO_TEST_CASE(queries_read_the_model_while_the_writer_is_busy) {
  counter_projection_fixture f;
  f.given("c1", {added{5}});
  f.spawn(f.totals("totals", "t", actors::failure_strategy::fail));
  auto release = f.hold_writer();
  // A query of the read model neither waits for the writer nor touches
  // the event log.
  auto query =
      std::async(std::launch::async, [&] { return f.total("t", "c1"); });
  auto ready = query.wait_for(std::chrono::seconds{10});
  release->set_value();
  BOOST_REQUIRE(ready == std::future_status::ready);
  BOOST_CHECK_EQUAL(query.get(), 5);
}

BOOST_AUTO_TEST_CASE(bad_specs_are_rejected) {
  counter_projection_fixture f;
  actors::projection_context ctx{&f.journal(), f.context().completions, {}};
  actors::projection_spec none;
  none.name = "x";
  auto res = actors::spawn_projection(f.system(), ctx, none);
  BOOST_REQUIRE(!res);
  BOOST_CHECK(runtime::is(res.error(), runtime::errc::invalid_argument));
  auto unnamed = f.totals("", "t", actors::failure_strategy::fail);
  BOOST_CHECK(!actors::spawn_projection(f.system(), ctx, unnamed));
  // Exactly one handler: not per event and grouped at once.
  auto both = f.totals("both", "t", actors::failure_strategy::fail);
  both.apply_group = [](persistence::write_txn&,
                        const std::vector<persistence::event_envelope>&) {
    return persistence::error{};
  };
  res = actors::spawn_projection(f.system(), ctx, both);
  BOOST_REQUIRE(!res);
  BOOST_CHECK_MESSAGE(
      runtime::describe(res.error()).find("exactly one handler") !=
          std::string::npos,
      runtime::describe(res.error()));
}

BOOST_AUTO_TEST_CASE(live_events_are_handled_in_the_commit_that_writes_them) {
  counter_projection_fixture f;
  // Records, per handled event, its position and the committed head at
  // that moment, and keeps the offset with the model.
  auto seen = std::make_shared<std::vector<std::pair<uint64_t, uint64_t>>>();
  auto* j = &f.journal();
  actors::projection_spec spec;
  spec.name = "live";
  spec.options.in_commit = true;
  spec.apply = [seen, j](persistence::write_txn& txn,
                         const persistence::event_envelope& env) {
    seen->emplace_back(env.position, j->head_position());
    return table_store::put_in(txn, "live", env.stream_id,
                               std::to_string(env.position));
  };
  auto p = f.spawn(spec);
  persistence::new_event ev;
  ev.type = "test.live";
  f.append_beside_tail(p, "s", ev, 1);
  BOOST_REQUIRE_EQUAL(seen->size(), 1u);
  BOOST_CHECK_EQUAL(seen->front().first, 1u);
  // Handled before the commit that wrote the event had finished.
  BOOST_CHECK_EQUAL(seen->front().second, 0u);
  BOOST_CHECK_EQUAL(f.status(p).offset, 1u);
  BOOST_CHECK_EQUAL(*j->offsets().load("live"), 1u);
  BOOST_CHECK((f.dump("live") == rows{{"s", "1"}}));
  // Later live events the same way; an idle projection stops writing.
  for (int i = 0; i < 3; ++i) {
    BOOST_REQUIRE(j->append("s", {ev}, persistence::expected_version::any()));
    f.run();
  }
  BOOST_REQUIRE_EQUAL(seen->size(), 4u);
  for (size_t i = 0; i < seen->size(); ++i)
    BOOST_CHECK_EQUAL((*seen)[i].first, i + 1);
  BOOST_CHECK_EQUAL(*j->offsets().load("live"), 4u);
  auto commits = j->stats().commits;
  f.run();
  BOOST_CHECK_EQUAL(j->stats().commits, commits);
  BOOST_CHECK_EQUAL(f.status(p).offset, 4u);
}

// Per handled event of a paced projection: its position and the commits
// finished before the transaction that handled it (equal values: one
// write).
using handled_log = std::vector<std::pair<uint64_t, uint64_t>>;

// Projection "paced", a write interval of 100 ms: records what it handles
// in `seen`, and the last position per stream in table "paced".
actors::projection_spec paced_spec(counter_projection_fixture& f,
                                   std::shared_ptr<handled_log> seen) {
  auto* j = &f.journal();
  actors::projection_spec spec;
  spec.name = "paced";
  spec.options.write_interval = 100ms;
  spec.apply = [seen, j](persistence::write_txn& txn,
                         const persistence::event_envelope& env) {
    seen->emplace_back(env.position, j->stats().commits);
    return table_store::put_in(txn, "paced", env.stream_id,
                               std::to_string(env.position));
  };
  return spec;
}

// With the first event handled just now (`p`'s offset 1): three appends
// within the interval are not handled (the model and the stored offset
// stay as they were); when the interval is over, one write handles all
// three; then nothing waits for 200 ms (no timer, no commit). Returns the
// commits counted before the three appends.
uint64_t check_three_paced(counter_projection_fixture& f, const caf::actor& p,
                           const handled_log& seen,
                           const persistence::new_event& ev) {
  auto* j = &f.journal();
  auto commits = j->stats().commits;
  for (int i = 0; i < 3; ++i) {
    BOOST_REQUIRE(j->append("s", {ev}, persistence::expected_version::any()));
    f.run();
  }
  BOOST_CHECK_EQUAL(j->stats().commits, commits + 3);
  BOOST_CHECK_EQUAL(seen.size(), 1u);
  BOOST_CHECK_EQUAL(f.status(p).offset, 1u);
  BOOST_CHECK_EQUAL(*j->offsets().load("paced"), 1u);
  BOOST_CHECK((f.dump("paced") == rows{{"s", "1"}}));
  f.advance(99ms);
  BOOST_CHECK_EQUAL(seen.size(), 1u);
  f.advance(1ms);
  BOOST_REQUIRE_EQUAL(seen.size(), 4u);
  for (size_t i = 1; i < 4; ++i) {
    BOOST_CHECK_EQUAL(seen[i].first, i + 1);
    BOOST_CHECK_EQUAL(seen[i].second, commits + 3);
  }
  BOOST_CHECK_EQUAL(j->stats().commits, commits + 4);
  BOOST_CHECK_EQUAL(f.status(p).offset, 4u);
  BOOST_CHECK_EQUAL(*j->offsets().load("paced"), 4u);
  BOOST_CHECK((f.dump("paced") == rows{{"s", "4"}}));
  f.advance(200ms);
  BOOST_CHECK_EQUAL(j->stats().commits, commits + 4);
  return commits;
}

BOOST_AUTO_TEST_CASE(a_write_interval_paces_tail_writes) {
  counter_projection_fixture f;
  auto seen = std::make_shared<handled_log>();
  auto p = f.spawn(paced_spec(f, seen));
  auto* j = &f.journal();
  persistence::new_event ev;
  ev.type = "test.paced";
  // After a quiet time the first event is handled in its own commit.
  f.append_beside_tail(p, "s", ev, 1);
  BOOST_REQUIRE_EQUAL(seen->size(), 1u);
  BOOST_CHECK_EQUAL(f.status(p).offset, 1u);
  auto commits = check_three_paced(f, p, *seen, ev);
  // After more than an interval of quiet, the next event is handled at
  // once again, in the commit of the append (the one after the writer was
  // held).
  f.append_beside_tail(p, "s", ev, 5);
  BOOST_REQUIRE_EQUAL(seen->size(), 5u);
  BOOST_CHECK_EQUAL(f.status(p).offset, 5u);
  BOOST_CHECK_EQUAL(seen->back().second, commits + 5);
  BOOST_CHECK_EQUAL(j->stats().commits, commits + 6);
}

BOOST_AUTO_TEST_CASE(a_write_interval_paces_writes_without_in_commit) {
  for (size_t pipeline : {size_t{4}, size_t{1}}) {
    BOOST_TEST_CONTEXT("write_pipeline " << pipeline) {
      counter_projection_fixture f;
      auto seen = std::make_shared<handled_log>();
      auto spec = paced_spec(f, seen);
      spec.options.in_commit = false;
      spec.options.write_pipeline = pipeline;
      auto p = f.spawn(spec);
      auto* j = &f.journal();
      persistence::new_event ev;
      ev.type = "test.paced";
      // After a quiet time the first event is handled at once, in the
      // commit after the one that wrote it.
      auto first = j->stats().commits;
      BOOST_REQUIRE(j->append("s", {ev}, persistence::expected_version::any()));
      f.run();
      BOOST_REQUIRE_EQUAL(seen->size(), 1u);
      BOOST_CHECK_EQUAL(seen->front().second, first + 1);
      BOOST_CHECK_EQUAL(f.status(p).offset, 1u);
      BOOST_CHECK_EQUAL(j->stats().commits, first + 2);
      auto commits = check_three_paced(f, p, *seen, ev);
      // After more than an interval of quiet, the next event is handled at
      // once again.
      BOOST_REQUIRE(j->append("s", {ev}, persistence::expected_version::any()));
      f.run();
      BOOST_REQUIRE_EQUAL(seen->size(), 5u);
      BOOST_CHECK_EQUAL(seen->back().second, commits + 5);
      BOOST_CHECK_EQUAL(f.status(p).offset, 5u);
      BOOST_CHECK_EQUAL(j->stats().commits, commits + 6);
    }
  }
}

// The three ways an exactly-once projection writes: tail writes live with
// a pipelined catch-up (the default), pipelined writes only, and one write
// at a time.
struct write_mode {
  const char* name;
  bool in_commit;
  size_t pipeline;
};
const write_mode write_modes[] = {
    {"in_commit", true, 4}, {"pipelined", false, 4}, {"one_write", false, 1}};

// The totals projection of `f`, writing in `mode`, 4 events per batch.
actors::projection_spec totals_in(counter_projection_fixture& f,
                                  write_mode mode,
                                  actors::failure_strategy strategy) {
  auto spec = f.totals("totals", "t", strategy);
  spec.options.batch_size = 4;
  spec.options.in_commit = mode.in_commit;
  spec.options.write_pipeline = mode.pipeline;
  return spec;
}

// Positions 1..30 of c1 add their position, except 10, which adds 13 (the
// unlucky number), and 13, which adds 31.
void given_thirty_with_an_unlucky_one(counter_projection_fixture& f) {
  for (int i = 1; i <= 30; ++i)
    f.given("c1", {added{i == 10 ? 13 : i == 13 ? 31 : i}});
}

BOOST_AUTO_TEST_CASE(
    a_failing_write_in_the_pipeline_loses_and_repeats_nothing) {
  for (auto mode : write_modes) {
    BOOST_TEST_CONTEXT("mode " << mode.name) {
      counter_projection_fixture f;
      *f.broken = true;
      given_thirty_with_an_unlucky_one(f);
      auto p = f.spawn(
          totals_in(f, mode, actors::failure_strategy::retry_then_skip));
      // [9..12] failed at 10 while the batches behind it were submitted
      // (pipelined); they changed nothing: the good prefix 9 is the offset
      // and the last position the model saw.
      auto st = f.status(p);
      BOOST_CHECK_EQUAL(st.offset, 9u);
      BOOST_CHECK_EQUAL(st.attempts, 1u);
      BOOST_CHECK_EQUAL(f.dump("t").back().second, "9");  // "~last"
      BOOST_CHECK_EQUAL(f.total("t", "c1"), 45);          // 1 + ... + 9
      f.advance(100ms);
      f.advance(200ms);  // the second retry fails too: parked, then on
      st = f.status(p);
      BOOST_CHECK_EQUAL(st.offset, 30u);
      BOOST_CHECK_EQUAL(f.total("t", "c1"), 465 - 10 - 13 + 31);
      BOOST_REQUIRE_EQUAL(f.dead_letters(p).size(), 1u);
      BOOST_CHECK_EQUAL(f.dead_letters(p)[0].position, 10u);
      // Fixed: the letter applies exactly once.
      *f.broken = false;
      BOOST_REQUIRE(f.command(p, actors::retry_dead_atom::value, uint64_t{10}));
      BOOST_CHECK_EQUAL(f.total("t", "c1"), 465 - 10 + 31);
      // Live events after it, in several batches, each once.
      for (int i = 0; i < 9; ++i) BOOST_REQUIRE(f.when("c2", add{1}));
      f.run();
      BOOST_CHECK_EQUAL(f.total("t", "c2"), 9);
      BOOST_CHECK_EQUAL(f.status(p).offset, 39u);
      BOOST_CHECK_EQUAL(*f.journal().offsets().load("totals"), 39u);
    }
  }
}

// A supervisor may start a projection again while the last write of the
// instance before it is still on its way to the disk: the new instance
// loaded the offset before that write, so its first write would apply the
// same events again. Each write checks the stored offset instead; the
// late instance stops with version_conflict (its supervisor starts it
// again from the offset now stored).
BOOST_AUTO_TEST_CASE(a_second_instance_applies_nothing_twice) {
  for (auto mode : write_modes) {
    BOOST_TEST_CONTEXT("mode " << mode.name) {
      counter_projection_fixture f;
      // Within a batch of the head: live, a tail write with in_commit.
      for (int i = 1; i <= 3; ++i) f.given("c1", {added{i}});
      actors::projection_context ctx{&f.journal(), f.context().completions,
                                     f.event_bus()};
      auto release = f.hold_writer();
      auto first = actors::spawn_projection(
          f.system(), ctx,
          totals_in(f, mode, actors::failure_strategy::retry_then_fail));
      BOOST_REQUIRE(first);
      f.projections.push_back(*first);
      f.scheduler().run();  // its first write waits for the writer
      auto second = actors::spawn_projection(
          f.system(), ctx,
          totals_in(f, mode, actors::failure_strategy::retry_then_fail));
      BOOST_REQUIRE(second);
      f.projections.push_back(*second);
      auto reason = f.watch(*second);
      f.scheduler().run();  // offset 0 loaded, its first write queued
      release->set_value();
      f.run();
      BOOST_CHECK_EQUAL(f.total("t", "c1"), 6);  // 1 + 2 + 3, once
      BOOST_CHECK_EQUAL(f.status(*first).offset, 3u);
      BOOST_REQUIRE(reason->has_value());
      BOOST_CHECK_MESSAGE(runtime::describe(**reason).find(
                              "version_conflict") != std::string::npos,
                          runtime::describe(**reason));
      BOOST_CHECK_EQUAL(*f.journal().offsets().load("totals"), 3u);
    }
  }
}

// A write that crosses the map's size fails inside the handler's put, the
// journal grows the map and runs every write of the commit again: the
// projection must judge the second run, in which the handler passed, not
// the failure its first run recorded (before, it re-sent the batch's
// prefix, whose offset check then failed, and the projection stopped).
BOOST_AUTO_TEST_CASE(a_write_run_again_after_the_map_grew_is_judged_afresh) {
  for (auto mode : write_modes) {
    if (mode.in_commit) continue;  // tail writes judge each run afresh too
    BOOST_TEST_CONTEXT("mode " << mode.name) {
      counter_projection_fixture f;
      for (int i = 1; i <= 3; ++i) f.given("c1", {added{i}});
      auto map_before = f.journal().map_size();
      auto spec = totals_in(f, mode, actors::failure_strategy::fail);
      auto inner = spec.apply;
      // Event 2 also stores a blob larger than the whole map.
      auto blob = std::make_shared<std::string>(
          static_cast<size_t>(map_before + (map_before / 8)), 'x');
      spec.apply = [inner, blob](persistence::write_txn& txn,
                                 const persistence::event_envelope& env) {
        if (env.sequence == 2)
          if (auto err = table_store::put_in(txn, "blobs", "b", *blob))
            return err;
        return inner(txn, env);
      };
      auto p = f.spawn(std::move(spec));
      auto reason = f.watch(p);
      f.run();
      BOOST_CHECK_GT(f.journal().map_size(), map_before);  // it grew
      BOOST_REQUIRE_MESSAGE(!reason->has_value(),
                            runtime::describe(reason->value_or(caf::error{})));
      auto st = f.status(p);
      BOOST_CHECK_EQUAL(st.offset, 3u);
      BOOST_CHECK_EQUAL(st.attempts, 0u);
      BOOST_CHECK_MESSAGE(st.last_error.empty(), st.last_error);
      BOOST_CHECK_EQUAL(f.total("t", "c1"), 6);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_poison_event_among_filtered_out_ones_in_a_tail_write) {
  counter_projection_fixture f;
  *f.broken = true;
  f.given("c1", {added{1}});
  auto spec =
      f.totals("only-c", "t", actors::failure_strategy::retry_then_skip);
  spec.filter.stream_prefix = "counter-c";
  auto p = f.spawn(spec);
  BOOST_REQUIRE_EQUAL(f.status(p).offset, 1u);
  // One group commit with the projection's tail write: positions 2 (x1,
  // filtered out), 3 (c1 +2), 4 (x1), 5 (c1 +13, fails), 6 (c1 +4).
  actors::variant_codec<counter::event> codec{f.registry()};
  auto release = f.hold_writer();
  auto append = [&](const std::string& id, int64_t n) {
    auto ev = codec.encode(counter::event{added{n}});
    BOOST_REQUIRE(ev);
    f.journal().append(
        actors::stream_of<counter>(id), {std::move(*ev)},
        persistence::expected_version::any(),
        [](persistence::expected<persistence::append_result>) {});
  };
  append("x1", 5);
  append("c1", 2);
  append("x1", 6);
  append("c1", 13);
  append("c1", 4);
  caf::anon_send(p, runtime::head_atom::value, uint64_t{6});
  f.scheduler().run();
  release->set_value();
  f.run();
  // The good prefix is committed (the offset may stop at the last event of
  // the filter's streams, 3, or at the filtered-out 4); the failing event
  // and what follows it are not.
  auto st = f.status(p);
  BOOST_CHECK_MESSAGE(st.offset == 3u || st.offset == 4u, st.offset);
  BOOST_CHECK_EQUAL(st.attempts, 1u);
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 3);
  BOOST_CHECK_EQUAL(f.dump("t").back().second, "3");  // "~last"
  f.advance(100ms);
  f.advance(200ms);  // retried twice more: parked, then on
  st = f.status(p);
  BOOST_CHECK_EQUAL(st.offset, 6u);
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 7);
  BOOST_CHECK_EQUAL(f.total("t", "x1"), 0);
  auto dead = f.dead_letters(p);
  BOOST_REQUIRE_EQUAL(dead.size(), 1u);
  BOOST_CHECK_EQUAL(dead[0].position, 5u);
  BOOST_CHECK_EQUAL(dead[0].stream_id, "counter-c1");
}

BOOST_AUTO_TEST_CASE(a_group_handler_gets_each_write_s_events_in_one_call) {
  for (auto mode : write_modes) {
    BOOST_TEST_CONTEXT("mode " << mode.name) {
      counter_projection_fixture f;
      // Positions 1..30: c1 adds its position, except every third event,
      // which goes to x1 and is filtered out.
      std::vector<uint64_t> matching;
      for (int i = 1; i <= 30; ++i) {
        f.given(i % 3 == 0 ? "x1" : "c1", {added{i}});
        if (i % 3 != 0) matching.push_back(static_cast<uint64_t>(i));
      }
      auto spec = totals_in(f, mode, actors::failure_strategy::fail);
      spec.filter.stream_prefix = "counter-c";
      auto calls = counter_projection_fixture::as_group(spec);
      auto p = f.spawn(spec);
      BOOST_CHECK_EQUAL(f.status(p).offset, 30u);
      BOOST_CHECK_EQUAL(f.total("t", "c1"), 465 - 165);  // without 3, 6, ..
      BOOST_CHECK_EQUAL(f.total("t", "x1"), 0);
      // One call per written batch, with its matching events in order.
      std::vector<uint64_t> seen;
      for (auto& call : *calls) {
        BOOST_CHECK(!call.empty());
        BOOST_CHECK_LE(call.size(), 3u);  // 4 read, one filtered out
        seen.insert(seen.end(), call.begin(), call.end());
      }
      BOOST_CHECK(seen == matching);
      BOOST_CHECK_EQUAL(calls->size(), 8u);  // ceil(30 / 4) batches
      // Live: the events of one commit reach the handler in one call (in
      // the commit itself with in_commit).
      calls->clear();
      actors::variant_codec<counter::event> codec{f.registry()};
      auto release = f.hold_writer();
      for (int n = 1; n <= 3; ++n) {
        auto ev = codec.encode(counter::event{added{n}});
        BOOST_REQUIRE(ev);
        f.journal().append(
            actors::stream_of<counter>("c2"), {std::move(*ev)},
            persistence::expected_version::any(),
            [](persistence::expected<persistence::append_result>) {});
      }
      caf::anon_send(p, runtime::head_atom::value, uint64_t{33});
      f.scheduler().run();
      release->set_value();
      f.run();
      // Without in_commit the projection reads them after the commit (told
      // by the event bus in a node).
      while (f.journal().head_position() < 33) std::this_thread::sleep_for(1ms);
      caf::anon_send(p, runtime::head_atom::value, uint64_t{33});
      f.run();
      BOOST_CHECK_EQUAL(f.total("t", "c2"), 6);
      BOOST_CHECK_EQUAL(f.status(p).offset, 33u);
      BOOST_CHECK(
          (*calls == counter_projection_fixture::calls_type{{31, 32, 33}}));
    }
  }
}

BOOST_AUTO_TEST_CASE(a_failing_group_is_retried_one_event_at_a_time) {
  for (auto mode : write_modes) {
    BOOST_TEST_CONTEXT("mode " << mode.name) {
      counter_projection_fixture f;
      *f.broken = true;
      given_thirty_with_an_unlucky_one(f);
      auto spec = totals_in(f, mode, actors::failure_strategy::retry_then_skip);
      auto calls = counter_projection_fixture::as_group(spec);
      auto p = f.spawn(spec);
      // The group [9..12] failed; handled again one event per call, 9
      // passed and 10 failed alone: 9 is committed, 10 meets the strategy.
      auto st = f.status(p);
      BOOST_CHECK_EQUAL(st.offset, 9u);
      BOOST_CHECK_EQUAL(st.attempts, 1u);
      BOOST_CHECK_MESSAGE(st.last_error.find("unlucky") != std::string::npos,
                          st.last_error);
      BOOST_CHECK_EQUAL(f.dump("t").back().second, "9");  // "~last"
      BOOST_CHECK_EQUAL(f.total("t", "c1"), 45);
      auto group =
          std::find(calls->begin(), calls->end(), std::vector<uint64_t>{9, 10});
      BOOST_REQUIRE(group != calls->end());  // failed at its second event
      BOOST_REQUIRE(calls->end() - group >= 3);
      BOOST_CHECK((*(group + 1) == std::vector<uint64_t>{9}));
      BOOST_CHECK((*(group + 2) == std::vector<uint64_t>{10}));
      f.advance(100ms);
      f.advance(200ms);  // the second retry fails too: parked, then on
      st = f.status(p);
      BOOST_CHECK_EQUAL(st.offset, 30u);
      BOOST_CHECK_EQUAL(st.attempts, 0u);
      BOOST_CHECK_EQUAL(f.total("t", "c1"), 465 - 10 - 13 + 31);
      auto dead = f.dead_letters(p);
      BOOST_REQUIRE_EQUAL(dead.size(), 1u);
      BOOST_CHECK_EQUAL(dead[0].position, 10u);
      // Fixed: the letter is handled as a group of one, exactly once.
      *f.broken = false;
      calls->clear();
      BOOST_REQUIRE(f.command(p, actors::retry_dead_atom::value, uint64_t{10}));
      BOOST_CHECK((*calls == counter_projection_fixture::calls_type{{10}}));
      BOOST_CHECK_EQUAL(f.total("t", "c1"), 465 - 10 + 31);
      BOOST_CHECK(f.dead_letters(p).empty());
    }
  }
}

BOOST_AUTO_TEST_CASE(a_group_that_fails_only_as_a_group_loses_nothing) {
  for (auto mode : write_modes) {
    BOOST_TEST_CONTEXT("mode " << mode.name) {
      counter_projection_fixture f;
      for (int i = 1; i <= 8; ++i) f.given("c1", {added{i}});
      auto spec = totals_in(f, mode, actors::failure_strategy::fail);
      auto calls = counter_projection_fixture::as_group(spec);
      // Refuses the first group of more than one event it is given (a
      // limit of the model, say): nothing is wrong with any single event.
      auto refused = std::make_shared<bool>(false);
      auto inner = spec.apply_group;
      spec.apply_group =
          [inner, refused](
              persistence::write_txn& txn,
              const std::vector<persistence::event_envelope>& events) {
            if (events.size() > 1 && !*refused) {
              *refused = true;
              return persistence::error{persistence::errc::invalid_argument,
                                        "group too large"};
            }
            return inner(txn, events);
          };
      auto p = f.spawn(spec);
      BOOST_CHECK(*refused);
      auto st = f.status(p);
      BOOST_CHECK_EQUAL(st.offset, 8u);
      BOOST_CHECK_EQUAL(st.attempts, 0u);
      BOOST_CHECK(st.last_error.empty());
      BOOST_CHECK_EQUAL(f.total("t", "c1"), 36);  // each event once
      BOOST_CHECK(f.dead_letters(p).empty());
      // The refused batch went one event per call, the next as a group.
      BOOST_REQUIRE_GE(calls->size(), 5u);
      for (uint64_t i = 0; i < 4; ++i)
        BOOST_CHECK(((*calls)[i] == std::vector<uint64_t>{i + 1}));
      BOOST_CHECK(((*calls)[4] == std::vector<uint64_t>{5, 6, 7, 8}));
    }
  }
}

BOOST_AUTO_TEST_CASE(a_backlog_is_caught_up_then_live_runs_in_commit) {
  counter_projection_fixture f;
  for (int i = 0; i < 20; ++i) f.given("c1", {added{1}});
  // Per handled event: its position and the committed head meanwhile.
  auto seen = std::make_shared<std::vector<std::pair<uint64_t, uint64_t>>>();
  auto* j = &f.journal();
  auto spec = f.totals("totals", "t", actors::failure_strategy::fail);
  auto count = spec.apply;
  spec.apply = [seen, j, count](persistence::write_txn& txn,
                                const persistence::event_envelope& env) {
    seen->emplace_back(env.position, j->head_position());
    return count(txn, env);
  };
  spec.options.batch_size = 4;
  auto p = f.spawn(spec);
  // The backlog (5 batches) was read and written through the pipeline.
  BOOST_CHECK_EQUAL(f.status(p).offset, 20u);
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 20);
  BOOST_REQUIRE_EQUAL(seen->size(), 20u);
  // Live again: an append and the projection's tail write commit together.
  seen->clear();
  auto ev = persistence::new_event{};
  ev.type = "counter.added";
  ev.payload = {0x81, 0xa1, 'n', 0x01};  // {"n": 1}
  f.append_beside_tail(p, actors::stream_of<counter>("c1"), ev, 21);
  BOOST_REQUIRE_EQUAL(seen->size(), 1u);
  BOOST_CHECK_EQUAL(seen->front().first, 21u);
  BOOST_CHECK_EQUAL(seen->front().second, 20u);  // in the writing commit
  // A burst of more than a batch is caught up the same way, each event once.
  for (int i = 0; i < 10; ++i) f.given("c1", {added{1}});
  f.run();
  BOOST_CHECK_EQUAL(f.total("t", "c1"), 31);
  BOOST_CHECK_EQUAL(f.status(p).offset, 31u);
  BOOST_CHECK_EQUAL(*j->offsets().load("totals"), 31u);
}

BOOST_AUTO_TEST_SUITE_END()
