// The event bus: subscribers learn new head positions after commits
// ("notify, then pull"), wake-ups coalesce, each subscriber has at most one
// unanswered notification, silent and dead subscribers cost nothing, and the
// node shuts down with subscribers attached. Deterministic scheduler plus a
// real journal for the protocol; the node's real scheduler for the wiring.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include "mnemo/actors/testkit.hpp"
#include "mnemo/runtime/completion_sink.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/event_bus.hpp"
#include "mnemo/runtime/node.hpp"

using namespace mnemo;
using runtime::head_atom;
using runtime::stats_atom;
using runtime::subscribe_atom;
using runtime::unsubscribe_atom;

namespace {

using release_atom = caf::atom_constant<caf::atom("t_release")>;
using count_atom = caf::atom_constant<caf::atom("t_count")>;

// Positions a subscriber was told, in arrival order. Only for the
// deterministic scheduler, where everything runs on the test thread.
using position_log = std::shared_ptr<std::vector<uint64_t>>;

position_log make_log() {
  return std::make_shared<std::vector<uint64_t>>();
}

// Answers each notification at once with an empty reply.
caf::behavior recorder(caf::event_based_actor*, position_log log) {
  return {[log](head_atom, uint64_t position) { log->push_back(position); }};
}

// Answers each notification with a value (its new offset, say).
caf::behavior value_replier(caf::event_based_actor*, position_log log) {
  return {[log](head_atom, uint64_t position) {
    log->push_back(position);
    return position;
  }};
}

// Answers each notification with an error.
caf::behavior error_replier(caf::event_based_actor*, position_log log) {
  return {[log](head_atom, uint64_t position) -> caf::result<void> {
    log->push_back(position);
    return runtime::make_error(runtime::errc::handler_failed, "pull failed");
  }};
}

struct holder_state {
  std::vector<caf::response_promise> held;
  size_t notifications = 0;
};

// Answers notifications only when told: `release_atom` answers all held
// ones, `(release_atom, n)` the oldest n; never, if not told to.
// `count_atom` -> notifications received so far.
caf::behavior holder(caf::stateful_actor<holder_state>* self,
                     position_log log) {
  auto release = [self](size_t n) {
    auto& held = self->state.held;
    n = std::min(n, held.size());
    for (size_t i = 0; i < n; ++i) held[i].deliver(caf::unit);
    held.erase(held.begin(), held.begin() + static_cast<ptrdiff_t>(n));
  };
  return {
      [self, log](head_atom, uint64_t position) {
        if (log) log->push_back(position);
        ++self->state.notifications;
        auto rp = self->make_response_promise();
        self->state.held.push_back(rp);
        return rp;
      },
      [release](release_atom) { release(SIZE_MAX); },
      [release](release_atom, size_t n) { release(n); },
      [self](count_atom) { return self->state.notifications; },
  };
}

struct bus_stats {
  size_t subscribers = 0;
  size_t awaiting = 0;
  uint64_t notifications = 0;
  uint64_t wakeups = 0;
};

persistence::new_event some_event() {
  return persistence::new_event{{}, "t", 1, {0x80}, {}, {}, {}, {}};
}

// A real journal, a deferred completion sink and CAF's deterministic
// scheduler, with the bus attached to the journal.
struct bus_fixture {
  actors::temp_directory dir;
  runtime::deferred_completions sink;
  std::unique_ptr<persistence::journal> journal;
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  runtime::event_bus_link bus;
  std::vector<caf::actor> actors;

  bus_fixture()
      : journal(open_journal(dir)),
        sys(init(cfg)),
        sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())),
        bus(runtime::spawn_event_bus(sys, *journal, sink)) {}

  ~bus_fixture() {
    journal->unsubscribe(bus.listener);
    caf::anon_send_exit(bus.actor, caf::exit_reason::user_shutdown);
    for (auto& a : actors) caf::anon_send_exit(a, caf::exit_reason::kill);
    run();
  }

  static caf::actor_system_config& init(caf::actor_system_config& c) {
    c.set("scheduler.policy", caf::atom("testing"));
    runtime::add_error_categories(c);
    return c;
  }

  static std::unique_ptr<persistence::journal> open_journal(
      const actors::temp_directory& d) {
    persistence::journal_config jc;
    jc.directory = (d.path() / "data").string();
    jc.mode = persistence::durability::nosync;
    auto j = persistence::journal::open(jc);
    BOOST_REQUIRE(j);
    return std::move(*j);
  }

  // Runs actors and posted wake-ups until nothing is left to do.
  void run() {
    for (;;) {
      sched.run();
      if (sink.drain() == 0 && sched.jobs.empty()) return;
    }
  }

  // Makes `n` commits of one event each; returns once the writer has run
  // the listener for the last one (a write queued after them completes only
  // after that). Runs no actor.
  void commit(size_t n) {
    for (size_t i = 0; i < n; ++i)
      BOOST_REQUIRE(journal->append("s", {some_event()},
                                    persistence::expected_version::any()));
    BOOST_REQUIRE(!journal->write(
        [](persistence::write_txn&) { return persistence::error{}; }));
  }

  template <class F, class... Ts>
  caf::actor spawn(F fun, Ts... xs) {
    auto handle = sys.spawn(fun, xs...);
    actors.push_back(handle);
    return handle;
  }

  // Sends `xs` to the bus as a request and runs until it is answered.
  template <class T, class... Ts>
  caf::expected<T> ask(Ts... xs) {
    auto res = std::make_shared<caf::expected<T>>(
        runtime::make_error(runtime::errc::not_found, "no reply"));
    auto dest = bus.actor;
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, xs...)
          .then([=](T& x) { *res = std::move(x); },
                [=](caf::error& e) { *res = std::move(e); });
    });
    run();
    return std::move(*res);
  }

  uint64_t subscribe(const caf::actor& who) {
    auto head = ask<uint64_t>(subscribe_atom::value, who);
    if (!head)
      BOOST_FAIL("subscribe failed: " << runtime::describe(head.error()));
    return *head;
  }

  bus_stats stats() {
    auto res = std::make_shared<std::optional<bus_stats>>();
    auto dest = bus.actor;
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, stats_atom::value)
          .then([=](size_t subs, size_t awaiting, uint64_t sent,
                    uint64_t wakeups) {
            *res = bus_stats{subs, awaiting, sent, wakeups};
          });
    });
    run();
    BOOST_REQUIRE(*res);
    return **res;
  }
};

using positions = std::vector<uint64_t>;

}  // namespace

BOOST_AUTO_TEST_SUITE(event_bus)

BOOST_FIXTURE_TEST_CASE(subscriber_learns_heads_and_ends_at_final_head,
                        bus_fixture) {
  auto log = make_log();
  BOOST_CHECK_EQUAL(subscribe(spawn(recorder, log)), 0u);
  commit(1);
  run();
  BOOST_CHECK(*log == positions({1}));
  commit(3);  // three commits before the bus runs: one notification
  run();
  BOOST_CHECK(*log == positions({1, 4}));
  commit(1);
  run();
  commit(1);
  run();
  BOOST_CHECK(*log == positions({1, 4, 5, 6}));
  BOOST_CHECK_EQUAL(log->back(), journal->head_position());
  // A late subscriber learns the head from the answer, then only newer ones.
  auto late = make_log();
  BOOST_CHECK_EQUAL(subscribe(spawn(recorder, late)), 6u);
  run();
  BOOST_CHECK(late->empty());
  commit(1);
  run();
  BOOST_CHECK(*late == positions({7}));
  BOOST_CHECK(*log == positions({1, 4, 5, 6, 7}));
}

BOOST_FIXTURE_TEST_CASE(commits_made_before_the_bus_are_its_start_head,
                        bus_fixture) {
  commit(3);
  run();
  // A second bus on a journal that already has events.
  auto second = runtime::spawn_event_bus(sys, *journal, sink);
  journal->unsubscribe(bus.listener);
  caf::anon_send_exit(bus.actor, caf::exit_reason::user_shutdown);
  bus = second;
  BOOST_CHECK_EQUAL(subscribe(spawn(recorder, make_log())), 3u);
}

BOOST_FIXTURE_TEST_CASE(commits_coalesce_into_one_wake_up, bus_fixture) {
  auto log = make_log();
  subscribe(spawn(recorder, log));
  commit(100);
  // The writer posted one wake-up for 100 commits.
  BOOST_CHECK_EQUAL(sink.drain(), 1u);
  run();
  BOOST_CHECK(*log == positions({100}));
  auto st = stats();
  BOOST_CHECK_EQUAL(st.wakeups, 1u);
  BOOST_CHECK_EQUAL(st.notifications, 1u);
  BOOST_CHECK_EQUAL(st.awaiting, 0u);
}

BOOST_FIXTURE_TEST_CASE(one_unanswered_notification_per_subscriber, bus_fixture) {
  auto log = make_log();
  auto slow = spawn(holder, log);
  subscribe(slow);
  commit(1);
  run();
  BOOST_CHECK(*log == positions({1}));
  BOOST_CHECK_EQUAL(stats().awaiting, 1u);
  for (int i = 0; i < 5; ++i) {
    commit(10);
    run();
  }
  // Still waiting for the answer: nothing more was sent.
  BOOST_CHECK(*log == positions({1}));
  BOOST_CHECK_EQUAL(stats().notifications, 1u);
  caf::anon_send(slow, release_atom::value);
  run();
  // The answer lets the newest head through, skipping those in between.
  BOOST_CHECK(*log == positions({1, 51}));
  caf::anon_send(slow, release_atom::value);
  run();
  BOOST_CHECK(*log == positions({1, 51}));  // the head has not moved
  BOOST_CHECK_EQUAL(stats().awaiting, 0u);
  commit(1);
  run();
  BOOST_CHECK(*log == positions({1, 51, 52}));
}

BOOST_FIXTURE_TEST_CASE(a_value_or_an_error_counts_as_an_answer, bus_fixture) {
  auto values = make_log();
  auto errors = make_log();
  subscribe(spawn(value_replier, values));
  subscribe(spawn(error_replier, errors));
  for (int i = 0; i < 3; ++i) {
    commit(1);
    run();
  }
  BOOST_CHECK(*values == positions({1, 2, 3}));
  BOOST_CHECK(*errors == positions({1, 2, 3}));
  BOOST_CHECK_EQUAL(stats().awaiting, 0u);
}

BOOST_FIXTURE_TEST_CASE(silent_subscriber_does_not_hold_up_others, bus_fixture) {
  auto silent = make_log();
  auto live = make_log();
  subscribe(spawn(holder, silent));
  subscribe(spawn(recorder, live));
  positions expected;
  for (uint64_t i = 1; i <= 20; ++i) {
    commit(1);
    run();
    expected.push_back(i);
  }
  BOOST_CHECK(*live == expected);
  BOOST_CHECK(*silent == positions({1}));
  auto st = stats();
  BOOST_CHECK_EQUAL(st.subscribers, 2u);
  BOOST_CHECK_EQUAL(st.awaiting, 1u);
  BOOST_CHECK_EQUAL(st.notifications, 21u);
}

BOOST_FIXTURE_TEST_CASE(dead_subscribers_are_dropped, bus_fixture) {
  auto live = make_log();
  auto doomed = spawn(recorder, make_log());
  auto silent = spawn(holder, make_log());
  subscribe(spawn(recorder, live));
  subscribe(doomed);
  subscribe(silent);
  commit(1);
  run();
  auto before = stats();
  BOOST_CHECK_EQUAL(before.subscribers, 3u);
  BOOST_CHECK_EQUAL(before.awaiting, 1u);
  BOOST_CHECK_EQUAL(before.notifications, 3u);
  caf::anon_send_exit(doomed, caf::exit_reason::kill);
  caf::anon_send_exit(silent, caf::exit_reason::kill);  // while awaiting
  run();
  auto after = stats();
  BOOST_CHECK_EQUAL(after.subscribers, 1u);
  BOOST_CHECK_EQUAL(after.awaiting, 0u);
  commit(1);
  run();
  BOOST_CHECK_EQUAL(stats().notifications, 4u);  // only the live one
  BOOST_CHECK(*live == positions({1, 2}));
  // Subscribing an actor that is already dead leaves nothing behind.
  subscribe(doomed);
  BOOST_CHECK_EQUAL(stats().subscribers, 1u);
}

BOOST_FIXTURE_TEST_CASE(unsubscribe_ends_notifications, bus_fixture) {
  auto log = make_log();
  auto sub = spawn(recorder, log);
  subscribe(sub);
  commit(1);
  run();
  BOOST_CHECK(*log == positions({1}));
  auto removed = ask<bool>(unsubscribe_atom::value, sub);
  BOOST_REQUIRE(removed);
  BOOST_CHECK(*removed);
  auto again = ask<bool>(unsubscribe_atom::value, sub);
  BOOST_REQUIRE(again);
  BOOST_CHECK(!*again);
  commit(1);
  run();
  BOOST_CHECK(*log == positions({1}));
  BOOST_CHECK_EQUAL(stats().subscribers, 0u);
}

BOOST_FIXTURE_TEST_CASE(late_answer_from_an_old_subscription_is_ignored,
                        bus_fixture) {
  auto log = make_log();
  auto slow = spawn(holder, log);
  subscribe(slow);
  commit(1);
  run();
  BOOST_REQUIRE(ask<bool>(unsubscribe_atom::value, slow));
  BOOST_CHECK_EQUAL(subscribe(slow), 1u);
  commit(1);
  run();
  // The new subscription does not wait for the old notification's answer.
  BOOST_CHECK(*log == positions({1, 2}));
  BOOST_CHECK_EQUAL(stats().awaiting, 1u);
  commit(1);
  caf::anon_send(slow, release_atom::value, size_t{1});  // the old one
  run();
  // Position 2 is still unanswered: 3 must wait.
  BOOST_CHECK(*log == positions({1, 2}));
  BOOST_CHECK_EQUAL(stats().awaiting, 1u);
  caf::anon_send(slow, release_atom::value);
  run();
  BOOST_CHECK(*log == positions({1, 2, 3}));
}

BOOST_FIXTURE_TEST_CASE(actors_subscribe_and_unsubscribe_themselves, bus_fixture) {
  auto log = make_log();
  auto dest = bus.actor;
  auto self_subscriber =
      spawn([log, dest](caf::event_based_actor* self) -> caf::behavior {
        self->request(dest, caf::infinite, subscribe_atom::value)
            .then([log](uint64_t head) { log->push_back(head); });
        return {
            [log](head_atom, uint64_t position) { log->push_back(position); },
            [self, dest](release_atom) {
              self->request(dest, caf::infinite, unsubscribe_atom::value)
                  .then([](bool) {});
            },
        };
      });
  run();
  commit(2);
  run();
  BOOST_CHECK(*log == positions({0, 2}));
  caf::anon_send(self_subscriber, release_atom::value);
  run();
  BOOST_CHECK_EQUAL(stats().subscribers, 0u);
  commit(1);
  run();
  BOOST_CHECK(*log == positions({0, 2}));
}

BOOST_FIXTURE_TEST_CASE(invalid_subscriber_is_rejected, bus_fixture) {
  auto res = ask<uint64_t>(subscribe_atom::value, caf::actor{});
  BOOST_REQUIRE(!res);
  BOOST_CHECK(runtime::is(res.error(), runtime::errc::invalid_argument));
  BOOST_CHECK_EQUAL(stats().subscribers, 0u);
}

// -- the node's bus on the real scheduler -------------------------------------

namespace {

constexpr auto receive_timeout = std::chrono::seconds{30};

struct node_fixture {
  actors::temp_directory dir;
  runtime::node_config cfg;
  std::unique_ptr<runtime::node> node;

  node_fixture() {
    cfg.data_dir = (dir.path() / "data").string();
    cfg.durability = "nosync";
    auto n = runtime::node::start(cfg);
    if (!n) BOOST_FAIL("node start failed: " << runtime::describe(n.error()));
    node = std::move(*n);
  }

  // Spawns (and tracks) a subscriber that sends every position to `dest`.
  caf::actor forwarder(const caf::actor& dest) {
    auto handle = node->system().spawn(
        [dest](caf::event_based_actor* self) -> caf::behavior {
          return {[self, dest](head_atom, uint64_t position) {
            self->send(dest, position);
          }};
        });
    node->track(handle);
    return handle;
  }

  uint64_t subscribe(caf::scoped_actor& self, const caf::actor& who) {
    uint64_t head = 0;
    self->request(node->event_bus(), receive_timeout, subscribe_atom::value,
                  who)
        .receive([&](uint64_t h) { head = h; },
                 [&](caf::error& e) {
                   BOOST_FAIL("subscribe failed: " << runtime::describe(e));
                 });
    return head;
  }

  // Receives forwarded positions until `final_head` arrived; checks that
  // they grow strictly; returns how many arrived.
  size_t receive_until(caf::scoped_actor& self, uint64_t final_head) {
    size_t received = 0;
    uint64_t last = 0;
    while (last < final_head) {
      self->receive(
          [&](uint64_t position) {
            BOOST_REQUIRE_GT(position, last);
            last = position;
            ++received;
          },
          caf::after(receive_timeout) >>
              [&] {
                BOOST_FAIL("no notification of head " << final_head
                                                      << "; last was " << last);
              });
    }
    BOOST_CHECK_EQUAL(last, final_head);
    return received;
  }

  bus_stats stats(caf::scoped_actor& self) {
    bus_stats st;
    self->request(node->event_bus(), receive_timeout, stats_atom::value)
        .receive(
            [&](size_t subs, size_t awaiting, uint64_t sent, uint64_t wakeups) {
              st = bus_stats{subs, awaiting, sent, wakeups};
            },
            [&](caf::error& e) {
              BOOST_FAIL("stats failed: " << runtime::describe(e));
            });
    return st;
  }
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(node_announces_commits_to_subscribers, node_fixture) {
  caf::scoped_actor self{node->system()};
  auto fwd = forwarder(caf::actor_cast<caf::actor>(self));
  BOOST_CHECK_EQUAL(subscribe(self, fwd), 0u);
  for (int i = 0; i < 5; ++i)
    BOOST_REQUIRE(node->journal().append("s", {some_event()},
                                         persistence::expected_version::any()));
  auto received = receive_until(self, 5);
  BOOST_CHECK_GE(received, 1u);
  BOOST_CHECK_LE(received, 5u);
  BOOST_CHECK_EQUAL(node->journal().head_position(), 5u);
}

BOOST_FIXTURE_TEST_CASE(silent_subscriber_costs_appends_nothing, node_fixture) {
  caf::scoped_actor self{node->system()};
  auto silent = node->system().spawn(holder, position_log{});
  node->track(silent);
  auto fwd = forwarder(caf::actor_cast<caf::actor>(self));
  subscribe(self, silent);
  subscribe(self, fwd);
  constexpr uint64_t appends = 10000;
  for (uint64_t i = 0; i < appends; ++i)
    BOOST_REQUIRE(node->journal().append("s", {some_event()},
                                         persistence::expected_version::any()));
  BOOST_REQUIRE_EQUAL(node->journal().head_position(), appends);
  auto received = receive_until(self, appends);
  BOOST_CHECK_LE(received, appends);
  auto st = stats(self);
  BOOST_CHECK_EQUAL(st.subscribers, 2u);
  BOOST_CHECK_EQUAL(st.awaiting, 1u);  // the silent one
  // Every notification sent went to the forwarder, except the silent one's.
  BOOST_CHECK_EQUAL(st.notifications, received + 1);
  BOOST_CHECK_LE(st.wakeups, appends);
  // The bus told the silent subscriber before it answered `stats`, so that
  // notification is ahead of this request in the silent one's mailbox.
  self->request(silent, receive_timeout, count_atom::value)
      .receive([&](size_t n) { BOOST_CHECK_EQUAL(n, 1u); },
               [&](caf::error& e) {
                 BOOST_FAIL("count failed: " << runtime::describe(e));
               });
}

BOOST_FIXTURE_TEST_CASE(node_shuts_down_with_subscribers_and_commits_in_flight,
                        node_fixture) {
  {
    caf::scoped_actor self{node->system()};
    auto silent = node->system().spawn(holder, position_log{});
    node->track(silent);
    subscribe(self, silent);
    subscribe(self, forwarder(caf::actor_cast<caf::actor>(self)));
    BOOST_REQUIRE(node->journal().append("s", {some_event()},
                                         persistence::expected_version::any()));
    receive_until(self, 1);
  }
  // Commits still queued while the node goes down: the writer finishes
  // them after the bus listener is gone.
  for (int i = 0; i < 1000; ++i)
    node->journal().append(
        "s", {some_event()}, persistence::expected_version::any(),
        [](persistence::expected<persistence::append_result>) {});
  node.reset();  // must return
  BOOST_CHECK(!node);
}

BOOST_AUTO_TEST_SUITE_END()
