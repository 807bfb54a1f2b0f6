// Supervisors on CAF's deterministic scheduler with virtual time: restart
// strategies, backoff, restart intensity and escalation, restart types,
// held messages, shutdown. Plus the restart tracker's arithmetic.

#include <map>
#include <memory>
#include <optional>
#include <set>

#include <boost/test/unit_test.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/send.hpp>

#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/supervisor.hpp"

using namespace mnemo;
using namespace std::chrono_literals;
using runtime::child_spec;
using runtime::restart_type;
using runtime::supervision_strategy;
using runtime::supervisor_options;

namespace {

using crash_atom = caf::atom_constant<caf::atom("t_crash")>;
using finish_atom = caf::atom_constant<caf::atom("t_finish")>;

// Answers `get` with "<name>#<generation>"; crashes or ends on request.
caf::behavior worker(caf::event_based_actor* self, std::string name,
                     int generation) {
  return {
      [=](caf::get_atom) { return name + "#" + std::to_string(generation); },
      [=](crash_atom) {
        self->quit(runtime::make_error(runtime::errc::handler_failed,
                                       "worker " + name + " crashed"));
      },
      [=](finish_atom) { self->quit(); },
  };
}

template <class T>
using reply_slot = std::shared_ptr<std::optional<caf::expected<T>>>;

struct supervisor_fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  std::shared_ptr<std::map<std::string, int>> starts =
      std::make_shared<std::map<std::string, int>>();
  std::vector<caf::actor> supervisors;
  std::vector<caf::actor> watchers;

  supervisor_fixture()
      : sys(init(cfg)),
        sched(
            dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {}

  ~supervisor_fixture() {
    for (auto& s : supervisors)
      caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
    for (auto& w : watchers)
      caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
    run();
  }

  static caf::actor_system_config& init(caf::actor_system_config& c) {
    c.set("scheduler.policy", caf::atom("testing"));
    runtime::add_error_categories(c);
    return c;
  }

  void run() { sched.run(); }

  void advance(std::chrono::milliseconds d) {
    sched.run();  // timers armed by pending messages start before the jump
    sched.advance_time(d);
    sched.run();
  }

  child_spec spec(const std::string& name,
                  restart_type type = restart_type::permanent) {
    auto counts = starts;
    return child_spec{name,
                      [counts, name](caf::actor_system& s) {
                        auto generation = ++(*counts)[name];
                        return s.spawn(worker, name, generation);
                      },
                      type};
  }

  static supervisor_options options(
      supervision_strategy strategy = supervision_strategy::one_for_one) {
    supervisor_options opts;
    opts.strategy = strategy;
    opts.restarts.min_backoff = 100ms;
    opts.restarts.max_backoff = 1s;
    opts.restarts.jitter = 0;
    opts.restarts.max_restarts = 10;
    opts.restarts.within = 60s;
    return opts;
  }

  caf::actor supervise(std::vector<child_spec> children,
                       supervisor_options opts) {
    auto sup = runtime::spawn_supervisor(sys, std::move(children), opts);
    BOOST_REQUIRE(sup);
    supervisors.push_back(*sup);
    run();
    return *sup;
  }

  // Sends a request without running: the answer lands in the slot.
  template <class T, class... Ts>
  reply_slot<T> ask(const caf::actor& dest, Ts... xs) {
    auto slot = std::make_shared<std::optional<caf::expected<T>>>();
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, xs...)
          .then([=](T& x) { slot->emplace(std::move(x)); },
                [=](caf::error& e) { slot->emplace(std::move(e)); });
    });
    return slot;
  }

  template <class T, class... Ts>
  caf::expected<T> request(const caf::actor& dest, Ts... xs) {
    auto slot = ask<T>(dest, xs...);
    run();
    BOOST_REQUIRE_MESSAGE(slot->has_value(), "no reply");
    return std::move(**slot);
  }

  caf::actor child(const caf::actor& sup, const std::string& name) {
    auto res = request<caf::actor>(sup, runtime::child_atom::value, name);
    BOOST_REQUIRE(res);
    return *res;
  }

  caf::expected<std::string> get(const caf::actor& sup,
                                 const std::string& name) {
    return request<std::string>(sup, runtime::route_atom::value, name,
                                caf::make_message(caf::get_atom::value));
  }

  void crash(const caf::actor& sup, const std::string& name) {
    caf::anon_send(child(sup, name), crash_atom::value);
    run();
  }

  std::pair<size_t, size_t> stats(const caf::actor& sup) {
    auto res = std::make_shared<std::pair<size_t, size_t>>();
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(sup, caf::infinite, runtime::stats_atom::value)
          .then([=](size_t running, size_t restarts) {
            *res = {running, restarts};
          });
    });
    run();
    return *res;
  }

  // Records the exit reason of `target`.
  std::shared_ptr<std::optional<caf::error>> watch(const caf::actor& target) {
    auto reason = std::make_shared<std::optional<caf::error>>();
    // Held: an actor nobody references is terminated as unreachable.
    watchers.push_back(sys.spawn([=](caf::event_based_actor* self) {
      self->monitor(target);
      self->set_down_handler([=](caf::down_msg& dm) {
        reason->emplace(dm.reason);
        self->quit();
      });
      // A behavior keeps the watcher alive until the down message.
      return caf::behavior{[](caf::ok_atom) {}};
    }));
    run();
    return reason;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(restart_policy)

BOOST_AUTO_TEST_CASE(backoff_doubles_and_is_capped) {
  runtime::restart_policy p;
  p.min_backoff = 100ms;
  p.max_backoff = 1s;
  BOOST_CHECK(runtime::backoff_delay(p, 1) == 100ms);
  BOOST_CHECK(runtime::backoff_delay(p, 2) == 200ms);
  BOOST_CHECK(runtime::backoff_delay(p, 4) == 800ms);
  BOOST_CHECK(runtime::backoff_delay(p, 5) == 1s);
  BOOST_CHECK(runtime::backoff_delay(p, 1000) == 1s);
}

BOOST_AUTO_TEST_CASE(jitter_stays_within_its_factor_and_varies) {
  runtime::restart_policy p;
  p.min_backoff = 1000ms;
  p.max_backoff = 1000ms;
  p.jitter = 0.5;
  p.max_restarts = 1000;
  std::mt19937_64 rng{42};
  runtime::restart_tracker t;
  auto now = std::chrono::steady_clock::now();
  std::set<int64_t> seen;
  for (int i = 0; i < 200; ++i) {
    auto d = t.on_failure(now, p, rng);
    BOOST_REQUIRE(d);
    BOOST_CHECK(*d >= 1000ms && *d <= 1500ms);
    seen.insert(d->count());
  }
  BOOST_CHECK_GT(seen.size(), 50u);
}

BOOST_AUTO_TEST_CASE(intensity_counts_failures_in_a_sliding_window) {
  runtime::restart_policy p;
  p.max_restarts = 2;
  p.within = 10s;
  std::mt19937_64 rng{1};
  runtime::restart_tracker t;
  auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  BOOST_CHECK(t.on_failure(t0, p, rng));
  BOOST_CHECK(t.on_failure(t0 + 1s, p, rng));
  BOOST_CHECK(!t.on_failure(t0 + 2s, p, rng));  // third within 10 s
  // The failures at t0 + 1 s and t0 + 2 s are still inside the window
  // until t0 + 11 s; a failure then is the second in the window again.
  BOOST_CHECK(t.window_end(t0 + 2s, p) == t0 + 11s);
  BOOST_CHECK_EQUAL(t.failures(t0 + 11s - 1ms, p), 2u);
  BOOST_CHECK(t.on_failure(t0 + 11s, p, rng));
  BOOST_CHECK_EQUAL(t.failures(t0 + 11s, p), 2u);
  BOOST_CHECK(t.idle(t0 + 30s, p));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(supervisor)

BOOST_AUTO_TEST_CASE(one_for_one_restarts_only_the_failed_child_after_backoff) {
  supervisor_fixture f;
  auto sup = f.supervise({f.spec("a"), f.spec("b")}, supervisor_fixture::options());
  auto b = f.child(sup, "b");
  f.crash(sup, "a");
  BOOST_CHECK(!f.child(sup, "a"));  // waiting for its backoff
  f.advance(99ms);
  BOOST_CHECK_EQUAL((*f.starts)["a"], 1);
  f.advance(1ms);
  BOOST_CHECK_EQUAL((*f.starts)["a"], 2);
  BOOST_CHECK_EQUAL(*f.get(sup, "a"), "a#2");
  BOOST_CHECK(f.child(sup, "b") == b);
  BOOST_CHECK_EQUAL((*f.starts)["b"], 1);
}

BOOST_AUTO_TEST_CASE(messages_during_backoff_reach_the_new_instance) {
  supervisor_fixture f;
  auto sup = f.supervise({f.spec("a")}, supervisor_fixture::options());
  f.crash(sup, "a");
  auto reply =
      f.ask<std::string>(sup, runtime::route_atom::value, std::string{"a"},
                         caf::make_message(caf::get_atom::value));
  f.run();
  BOOST_CHECK(!reply->has_value());  // held, not lost, not failed
  f.advance(100ms);
  BOOST_REQUIRE(reply->has_value());
  BOOST_CHECK_EQUAL(**reply, "a#2");
}

BOOST_AUTO_TEST_CASE(backoff_doubles_with_each_failure_in_the_window) {
  supervisor_fixture f;
  auto sup = f.supervise({f.spec("a")}, supervisor_fixture::options());
  int generation = 1;
  for (auto delay : {100ms, 200ms, 400ms, 800ms, 1000ms, 1000ms}) {
    f.crash(sup, "a");
    f.advance(delay - 1ms);
    BOOST_CHECK_EQUAL((*f.starts)["a"], generation);
    f.advance(1ms);
    BOOST_CHECK_EQUAL((*f.starts)["a"], ++generation);
  }
}

BOOST_AUTO_TEST_CASE(all_for_one_restarts_every_child_in_order) {
  supervisor_fixture f;
  auto sup = f.supervise({f.spec("a"), f.spec("b"), f.spec("c")},
                         supervisor_fixture::options(supervision_strategy::all_for_one));
  auto a_down = f.watch(f.child(sup, "a"));
  f.crash(sup, "b");
  BOOST_REQUIRE(a_down->has_value());
  BOOST_CHECK(**a_down == caf::exit_reason::user_shutdown);
  f.advance(100ms);
  for (auto name : {"a", "b", "c"}) {
    BOOST_CHECK_EQUAL((*f.starts)[name], 2);
    BOOST_CHECK_EQUAL(*f.get(sup, name), std::string{name} + "#2");
  }
}

BOOST_AUTO_TEST_CASE(exceeding_the_intensity_escalates_with_restart_limit) {
  supervisor_fixture f;
  auto opts = supervisor_fixture::options();
  opts.restarts.max_restarts = 2;
  opts.restarts.within = 10s;
  auto sup = f.supervise({f.spec("a"), f.spec("b")}, opts);
  auto sup_down = f.watch(sup);
  auto b_down = f.watch(f.child(sup, "b"));
  f.crash(sup, "a");
  f.advance(100ms);
  f.crash(sup, "a");
  f.advance(200ms);
  BOOST_CHECK(!sup_down->has_value());
  f.crash(sup, "a");  // third failure within 10 s
  BOOST_REQUIRE(sup_down->has_value());
  auto text = runtime::describe(**sup_down);
  BOOST_CHECK_MESSAGE(runtime::is(**sup_down, runtime::errc::restart_limit),
                      text);
  BOOST_CHECK_MESSAGE(text.find("'a'") != std::string::npos, text);
  BOOST_CHECK_MESSAGE(text.find("worker a crashed") != std::string::npos, text);
  // The supervisor takes its other children down with it.
  BOOST_CHECK(b_down->has_value());
}

BOOST_AUTO_TEST_CASE(failures_spread_beyond_the_window_do_not_escalate) {
  supervisor_fixture f;
  auto opts = supervisor_fixture::options();
  opts.restarts.max_restarts = 2;
  opts.restarts.within = 1s;
  auto sup = f.supervise({f.spec("a")}, opts);
  auto sup_down = f.watch(sup);
  for (int i = 0; i < 6; ++i) {
    f.crash(sup, "a");
    f.advance(2s);
  }
  BOOST_CHECK(!sup_down->has_value());
  BOOST_CHECK_EQUAL((*f.starts)["a"], 7);
  auto [running, restarts] = f.stats(sup);
  BOOST_CHECK_EQUAL(running, 1u);
  BOOST_CHECK_EQUAL(restarts, 6u);
}

BOOST_AUTO_TEST_CASE(restart_types_follow_otp) {
  supervisor_fixture f;
  auto sup =
      f.supervise({f.spec("perm"), f.spec("trans", restart_type::transient),
                   f.spec("temp", restart_type::temporary)},
                  supervisor_fixture::options());
  // Transient: a normal end is final, and routed messages say so.
  caf::anon_send(f.child(sup, "trans"), finish_atom::value);
  f.advance(1s);
  BOOST_CHECK_EQUAL((*f.starts)["trans"], 1);
  auto res = f.get(sup, "trans");
  BOOST_REQUIRE(!res);
  BOOST_CHECK(runtime::is(res.error(), runtime::errc::entity_stopped));
  // Permanent: restarted even after a normal end.
  caf::anon_send(f.child(sup, "perm"), finish_atom::value);
  f.advance(1s);
  BOOST_CHECK_EQUAL((*f.starts)["perm"], 2);
  // Temporary: never restarted, not even after a crash.
  f.crash(sup, "temp");
  f.advance(1s);
  BOOST_CHECK_EQUAL((*f.starts)["temp"], 1);
  BOOST_CHECK(!f.get(sup, "temp"));
}

BOOST_AUTO_TEST_CASE(transient_child_is_restarted_after_a_crash) {
  supervisor_fixture f;
  auto sup =
      f.supervise({f.spec("t", restart_type::transient)}, supervisor_fixture::options());
  f.crash(sup, "t");
  f.advance(100ms);
  BOOST_CHECK_EQUAL(*f.get(sup, "t"), "t#2");
}

BOOST_AUTO_TEST_CASE(a_failing_nested_supervisor_is_restarted_by_its_parent) {
  supervisor_fixture f;
  auto inner_opts = supervisor_fixture::options();
  inner_opts.restarts.max_restarts = 0;  // any failure escalates
  auto worker_spec = f.spec("w");
  child_spec inner{"inner", [=](caf::actor_system& s) {
                     auto sup = runtime::spawn_supervisor(s, {worker_spec},
                                                          inner_opts);
                     return sup ? *sup : caf::actor{};
                   }};
  auto outer = f.supervise({inner}, supervisor_fixture::options());
  auto first_inner = f.child(outer, "inner");
  auto inner_down = f.watch(first_inner);
  f.crash(first_inner, "w");
  BOOST_REQUIRE(inner_down->has_value());
  BOOST_CHECK(runtime::is(**inner_down, runtime::errc::restart_limit));
  f.advance(100ms);
  auto second_inner = f.child(outer, "inner");
  BOOST_REQUIRE(second_inner);
  BOOST_CHECK(second_inner != first_inner);
  BOOST_CHECK_EQUAL(*f.get(second_inner, "w"), "w#2");
}

BOOST_AUTO_TEST_CASE(stopping_the_supervisor_stops_its_children) {
  supervisor_fixture f;
  auto sup = f.supervise({f.spec("a"), f.spec("b")}, supervisor_fixture::options());
  auto a_down = f.watch(f.child(sup, "a"));
  auto b_down = f.watch(f.child(sup, "b"));
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  f.run();
  BOOST_REQUIRE(a_down->has_value() && b_down->has_value());
  BOOST_CHECK(**a_down == caf::exit_reason::user_shutdown);
  // Killed (an exit nobody can trap): the children still go.
  auto sup2 = f.supervise({f.spec("c")}, supervisor_fixture::options());
  auto c_down = f.watch(f.child(sup2, "c"));
  caf::anon_send_exit(sup2, caf::exit_reason::kill);
  f.run();
  BOOST_CHECK(c_down->has_value());
}

BOOST_AUTO_TEST_CASE(bad_specs_and_unknown_children_are_clear_errors) {
  supervisor_fixture f;
  auto dup = runtime::spawn_supervisor(f.sys, {f.spec("a"), f.spec("a")},
                                       supervisor_fixture::options());
  BOOST_REQUIRE(!dup);
  BOOST_CHECK(runtime::is(dup.error(), runtime::errc::invalid_argument));
  BOOST_CHECK(!runtime::spawn_supervisor(f.sys, {child_spec{"x", nullptr}},
                                         supervisor_fixture::options()));
  auto sup = f.supervise({f.spec("a")}, supervisor_fixture::options());
  auto res = f.get(sup, "nope");
  BOOST_REQUIRE(!res);
  BOOST_CHECK(runtime::is(res.error(), runtime::errc::not_found));
}

BOOST_AUTO_TEST_CASE(a_start_function_without_actor_counts_as_a_failure) {
  supervisor_fixture f;
  auto attempts = std::make_shared<int>(0);
  child_spec flaky{"flaky", [attempts](caf::actor_system& s) {
                     // Fails twice, then starts.
                     if (++*attempts <= 2) return caf::actor{};
                     return s.spawn(worker, std::string{"flaky"}, *attempts);
                   }};
  auto sup = f.supervise({flaky}, supervisor_fixture::options());
  f.advance(100ms);
  f.advance(200ms);
  BOOST_CHECK_EQUAL(*attempts, 3);
  BOOST_CHECK_EQUAL(*f.get(sup, "flaky"), "flaky#3");
}

BOOST_AUTO_TEST_SUITE_END()
