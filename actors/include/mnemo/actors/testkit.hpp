#pragma once

// Testkit for aggregates: a temporary data directory, a real journal, CAF's
// deterministic scheduler, and given / when / then helpers. Framework
// neutral: results come back as caf::expected values to assert on with
// Boost.Test (or anything else). See docs/testing.md.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include "mnemo/actors/aggregate.hpp"
#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/runtime/completion_sink.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/event_bus.hpp"

namespace mnemo::actors {

/// A fresh directory under the system temp directory, removed on
/// destruction.
class temp_directory {
 public:
  temp_directory() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("mnemo-testkit-" + std::to_string(::getpid()) + "-" +
             std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~temp_directory() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_directory(const temp_directory&) = delete;
  temp_directory& operator=(const temp_directory&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

/// Test fixture for aggregate type `A`, which must also provide
/// `static void register_types(persistence::event_registry&)`.
/// Not thread-safe: drive it from the test's thread only.
template <class A>
class aggregate_fixture {
 public:
  using state_type = typename A::state;
  using event_type = typename A::event;
  using command_type = typename A::command;
  using reply_type = typename A::reply;

  explicit aggregate_fixture(aggregate_options options = {})
      : journal_(open_journal(dir_)),
        sys_(init(cfg_)),
        sched_(
            dynamic_cast<caf::scheduler::test_coordinator&>(sys_.scheduler())) {
    A::register_types(registry_);
    ctx_.journal = journal_.get();
    ctx_.registry = &registry_;
    ctx_.completions = &sink_;
    ctx_.options = options;
  }

  ~aggregate_fixture() {
    for (auto& [id, handle] : actors_)
      caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
    actors_.clear();
    for (auto& handle : registries_)
      caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
    registries_.clear();
    if (bus_.actor) {
      journal_->unsubscribe(bus_.listener);
      caf::anon_send_exit(bus_.actor, caf::exit_reason::user_shutdown);
      bus_.actor = nullptr;
    }
    run();
  }

  /// Appends `events` to the aggregate's stream directly (the "given").
  void given(const std::string& id, const std::vector<event_type>& events) {
    variant_codec<event_type> codec{registry_};
    std::vector<persistence::new_event> batch;
    for (auto& ev : events) {
      auto encoded = codec.encode(ev);
      if (!encoded) throw std::runtime_error(encoded.error().to_string());
      batch.push_back(std::move(*encoded));
    }
    auto res = journal_->append(stream_of<A>(id), std::move(batch),
                                persistence::expected_version::any());
    if (!res) throw std::runtime_error(res.error().to_string());
  }

  /// Sends `cmd` (with idempotency id `command_id`, may be empty) to the
  /// aggregate `id`, activating it if needed, and runs the system until the
  /// reply arrived and every journal write finished. Once the fixture has
  /// spawned a registry (`spawn_registry`), through the first one: the
  /// registry's instance is the only live one.
  caf::expected<reply_type> when(const std::string& id, command_type cmd,
                                 std::string command_id = {}) {
    if (!registries_.empty())
      return route(registries_.front(), id, std::move(cmd),
                   std::move(command_id));
    return request<reply_type>(actor(id), command_atom::value,
                               std::move(command_id), std::move(cmd));
  }

  /// Returns the aggregate's current state (activating it if needed); once
  /// a registry was spawned, the state of the registry's instance (never a
  /// second instance beside it, which would show what the journal held
  /// when it started).
  caf::expected<state_type> state(const std::string& id) {
    return ask<state_type>(id, caf::get_atom::value);
  }

  /// Returns the aggregate's state and version (the sequence of its last
  /// event), as `(state_atom)` answers them.
  caf::expected<std::pair<state_type, uint64_t>> versioned_state(
      const std::string& id) {
    using result_type = caf::expected<std::pair<state_type, uint64_t>>;
    auto res = std::make_shared<result_type>(
        runtime::make_error(runtime::errc::entity_stopped, "no reply"));
    auto dest = registries_.empty() ? actor(id) : registries_.front();
    auto msg = registries_.empty()
                   ? caf::make_message(state_atom::value)
                   : caf::make_message(runtime::route_atom::value, id,
                                       caf::make_message(state_atom::value));
    sys_.spawn([=](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, msg)
          .then(
              [=](state_type& st, uint64_t version) {
                *res = std::make_pair(std::move(st), version);
              },
              [=](caf::error& e) { *res = std::move(e); });
    });
    run();
    return std::move(*res);
  }

  /// Returns every stored event of the aggregate, decoded ("then events").
  caf::expected<std::vector<event_type>> events(const std::string& id) {
    variant_codec<event_type> codec{registry_};
    auto stored =
        journal_->read_stream(stream_of<A>(id), 1, UINT64_MAX, UINT64_MAX);
    if (!stored) return runtime::to_caf_error(stored.error());
    std::vector<event_type> result;
    for (auto& env : *stored) {
      auto ev = codec.decode(env);
      if (!ev) return runtime::to_caf_error(ev.error());
      result.push_back(std::move(*ev));
    }
    return result;
  }

  /// Kills the live instance (as a crash would) and spawns a new one that
  /// recovers from the journal. The fixture's own instance: an instance
  /// of a registry is restarted by its supervision (or, after it
  /// passivated, by the next command).
  void restart(const std::string& id) {
    if (auto i = actors_.find(id); i != actors_.end()) {
      caf::anon_send_exit(i->second, caf::exit_reason::kill);
      actors_.erase(i);
      run();
    }
    actor(id);
    run();
  }

  /// Spawns an entity registry of `A` over this fixture's journal (see
  /// `spawn_aggregate_registry`); it stops with the fixture.
  caf::actor spawn_registry(runtime::registry_options options = {}) {
    auto handle = spawn_aggregate_registry<A>(sys_, ctx_, std::move(options));
    registries_.push_back(handle);
    run();
    return handle;
  }

  /// Sends `cmd` to aggregate `id` through `registry` and runs until the
  /// reply arrived.
  caf::expected<reply_type> route(const caf::actor& registry,
                                  const std::string& id, command_type cmd,
                                  std::string command_id = {}) {
    return request<reply_type>(
        registry, runtime::route_atom::value, id,
        command_message<A>(std::move(cmd), std::move(command_id)));
  }

  /// Moves virtual time forward by `d` (after running what is ready, so
  /// that timers armed by pending messages start before the jump), fires
  /// due timers, and runs until nothing is left to do.
  void advance(std::chrono::milliseconds d) {
    run();
    sched_.advance_time(d);
    run();
  }

  /// Waits until `projection` (a projection actor) has handled every event
  /// up to global position `position` (0: the journal's head now, i.e.
  /// everything committed so far) and returns its offset then. Runs the
  /// system, and moves virtual time on in steps of `step` while the
  /// projection waits for a timer (its retry backoff, a batching delay),
  /// at most `limit` in all; an error if it got there neither way (paused,
  /// parked behind a failing event with the `stop` strategy, or stopped).
  caf::expected<uint64_t> caught_up(
      const caf::actor& projection, uint64_t position = 0,
      std::chrono::milliseconds step = std::chrono::milliseconds{100},
      std::chrono::milliseconds limit = std::chrono::seconds{60}) {
    if (position == 0) position = journal_->head_position();
    auto res = std::make_shared<caf::expected<uint64_t>>(runtime::make_error(
        runtime::errc::entity_stopped, "no reply"));
    auto answered = std::make_shared<bool>(false);
    sys_.spawn([=](caf::event_based_actor* self) {
      self->request(projection, caf::infinite, caught_up_atom::value, position)
          .then(
              [=](uint64_t offset) {
                *res = offset;
                *answered = true;
              },
              [=](caf::error& e) {
                *res = std::move(e);
                *answered = true;
              });
    });
    run();
    for (std::chrono::milliseconds waited{0}; !*answered && waited < limit;
         waited += step)
      advance(step);
    if (!*answered)
      return runtime::make_error(
          runtime::errc::entity_stopped,
          "the projection did not reach position " + std::to_string(position) +
              " within " + std::to_string(limit.count()) +
              " ms of virtual time (paused, or stuck on an event?)");
    return std::move(*res);
  }

  /// Returns the event bus of the fixture's journal, spawning it on first
  /// use (projections and sagas subscribe to it).
  caf::actor event_bus() {
    if (!bus_.actor) {
      bus_ = runtime::spawn_event_bus(sys_, *journal_, sink_);
      run();
    }
    return bus_.actor;
  }

  /// Returns the live actor of `id`, spawning it on first use.
  caf::actor actor(const std::string& id) {
    auto i = actors_.find(id);
    if (i != actors_.end()) return i->second;
    auto handle = sys_.spawn<aggregate_actor<A>>(ctx_, id);
    actors_.emplace(id, handle);
    return handle;
  }

  /// Encodes and decodes `ev` through the registry; returns the decoded
  /// copy (compare it with the original: serialization round trip).
  caf::expected<event_type> round_trip(const event_type& ev) const {
    variant_codec<event_type> codec{registry_};
    auto encoded = codec.encode(ev);
    if (!encoded) return runtime::to_caf_error(encoded.error());
    persistence::event_envelope env;
    env.type = encoded->type;
    env.schema_version = encoded->schema_version;
    env.payload = encoded->payload;
    env.stream_id = "round-trip";
    auto decoded = codec.decode(env);
    if (!decoded) return runtime::to_caf_error(decoded.error());
    return std::move(*decoded);
  }

  /// Runs actors and journal completions until nothing is left to do.
  void run() {
    for (;;) {
      sched_.run();
      if (sink_.drain() == 0 && sched_.jobs.empty()) return;
    }
  }

  /// Sends `xs` as a request to `dest` and runs until it is answered.
  /// `T` is the reply's type; `caf::unit_t` for a request answered with
  /// an empty message (`pause_atom`, `resume_atom`, ...).
  template <class T, class... Ts>
  caf::expected<T> request(const caf::actor& dest, Ts... xs) {
    auto res = std::make_shared<caf::expected<T>>(
        runtime::make_error(runtime::errc::entity_stopped, "no reply"));
    sys_.spawn([=](caf::event_based_actor* self) {
      auto sent = self->request(dest, caf::infinite, xs...);
      if constexpr (std::is_same<T, caf::unit_t>::value)
        sent.then([=]() { *res = caf::unit; },
                  [=](caf::error& e) { *res = std::move(e); });
      else
        sent.then([=](T& x) { *res = std::move(x); },
                  [=](caf::error& e) { *res = std::move(e); });
    });
    run();
    return std::move(*res);
  }

  /// Sends `xs` to aggregate `id` (through the first registry once one was
  /// spawned, else to the fixture's instance) and runs until answered.
  template <class T, class... Ts>
  caf::expected<T> ask(const std::string& id, Ts... xs) {
    if (registries_.empty()) return request<T>(actor(id), std::move(xs)...);
    return request<T>(registries_.front(), runtime::route_atom::value, id,
                      caf::make_message(std::move(xs)...));
  }

  /// The sink of journal completions that `run()` drains (pass it to
  /// whatever you spawn over `journal()`: projections, sagas, relays).
  runtime::deferred_completions& completions() noexcept { return sink_; }
  caf::actor_system& system() noexcept { return sys_; }
  caf::scheduler::test_coordinator& scheduler() noexcept { return sched_; }
  persistence::journal& journal() noexcept { return *journal_; }
  persistence::event_registry& registry() noexcept { return registry_; }
  aggregate_context& context() noexcept { return ctx_; }
  const std::filesystem::path& directory() const noexcept {
    return dir_.path();
  }

 private:
  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    runtime::add_error_categories(cfg);
    return cfg;
  }

  static std::unique_ptr<persistence::journal> open_journal(
      const temp_directory& dir) {
    persistence::journal_config cfg;
    cfg.directory = (dir.path() / "data").string();
    cfg.mode = persistence::durability::nosync;
    auto j = persistence::journal::open(cfg);
    if (!j) throw std::runtime_error(j.error().to_string());
    return std::move(*j);
  }

  temp_directory dir_;
  persistence::event_registry registry_;
  runtime::deferred_completions sink_;
  std::unique_ptr<persistence::journal> journal_;
  caf::actor_system_config cfg_;
  caf::actor_system sys_;
  caf::scheduler::test_coordinator& sched_;
  aggregate_context ctx_;
  std::map<std::string, caf::actor> actors_;
  std::vector<caf::actor> registries_;
  runtime::event_bus_link bus_;
};

}  // namespace mnemo::actors
