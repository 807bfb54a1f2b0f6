#pragma once

// Testkit for aggregates: a temporary data directory, a real journal, CAF's
// deterministic scheduler, and given / when / then helpers. Framework
// neutral: results come back as caf::expected values to assert on with
// Boost.Test (or anything else). See docs/testing.md.

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>
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
#include "mnemo/runtime/wire.hpp"

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

namespace testkit_detail {

template <class T, class = void>
struct has_mnemo_name : std::false_type {};
template <class T>
struct has_mnemo_name<T, std::void_t<decltype(T::mnemo_type_name)>>
    : std::true_type {};

template <class T, class = void>
struct comparable : std::false_type {};
template <class T>
struct comparable<T, std::void_t<decltype(std::declval<const T&>() ==
                                          std::declval<const T&>())>>
    : std::true_type {};

// Whether `x` and `y` are equal, if the type can say.
template <class T>
bool same(const T& x, const T& y) {
  if constexpr (comparable<T>::value)
    return x == y;
  else
    return true;
}

template <class T>
std::string type_label(const T&) {
  if constexpr (has_mnemo_name<T>::value) return T::mnemo_type_name;
  return typeid(T).name();
}

}  // namespace testkit_detail

/// What every fixture of the testkit sets up: a temporary data directory
/// with a real journal (nosync), an event registry, CAF's deterministic
/// scheduler with mnemo's error categories, the completion sink that
/// `run()` drains, and a wall clock in ms that `advance` moves (for sagas'
/// due times). `aggregate_fixture` and `sagas::saga_fixture` build on it;
/// use it alone for projections. Not thread-safe: drive it from the test's
/// thread only.
class system_fixture {
 public:
  system_fixture()
      : journal_(open_journal(dir_)),
        sys_(init(cfg_)),
        sched_(
            dynamic_cast<caf::scheduler::test_coordinator&>(sys_.scheduler())) {
  }

  virtual ~system_fixture() {
    if (bus_.actor) {
      journal_->unsubscribe(bus_.listener);
      caf::anon_send_exit(bus_.actor, caf::exit_reason::user_shutdown);
      bus_.actor = nullptr;
    }
    run();
  }

  system_fixture(const system_fixture&) = delete;
  system_fixture& operator=(const system_fixture&) = delete;

  /// Runs actors and journal completions until nothing is left to do.
  void run() {
    for (;;) {
      sched_.run();
      if (sink_.drain() == 0 && sched_.jobs.empty()) return;
    }
  }

  /// Moves virtual time forward by `d` (after running what is ready, so
  /// that timers armed by pending messages start before the jump), and the
  /// fixture's wall clock with it, fires due timers, and runs until
  /// nothing is left to do.
  void advance(std::chrono::milliseconds d) {
    run();
    *clock_ += d.count();
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
    auto res = std::make_shared<caf::expected<uint64_t>>(
        runtime::make_error(runtime::errc::entity_stopped, "no reply"));
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

  /// What a projection over the fixture's journal needs: the journal, the
  /// completion sink `run()` drains, and the event bus.
  projection_context projection_ctx() {
    return projection_context{journal_.get(), &sink_, event_bus()};
  }

  /// Spawns a projection over the fixture's journal and runs until it has
  /// nothing left to do (it has caught up, unless a timer holds it: see
  /// `caught_up`). Throws `std::runtime_error` for a spec that
  /// `actors::spawn_projection` refuses.
  caf::actor spawn_projection(projection_spec spec) {
    auto p = actors::spawn_projection(sys_, projection_ctx(), std::move(spec));
    if (!p) throw std::runtime_error(runtime::describe(p.error()));
    run();
    return *p;
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

  /// Appends `events` (of registered types, any mix) to `stream` in one
  /// commit, as a writer would: the "given" of a projection's test.
  /// Throws `std::runtime_error` if one is unregistered or the append
  /// fails. Returns the global position of the last one.
  template <class... Es>
  uint64_t append(const std::string& stream, const Es&... events) {
    std::vector<persistence::new_event> batch;
    auto add = [&](const auto& ev) {
      auto encoded = registry_.to_event(ev);
      if (!encoded) throw std::runtime_error(encoded.error().to_string());
      batch.push_back(std::move(*encoded));
    };
    (add(events), ...);
    auto res = journal_->append(stream, std::move(batch),
                                persistence::expected_version::any());
    if (!res) throw std::runtime_error(res.error().to_string());
    run();
    return journal_->head_position();
  }

  /// The fixture's wall clock: ms since the epoch, starting at
  /// 2023-11-14T22:13:20Z and moved by `advance`.
  int64_t wall_ms() const noexcept { return *clock_; }
  /// The same clock as a function, e.g. for `saga_context::wall_ms`.
  std::function<int64_t()> wall_clock() const {
    auto clock = clock_;
    return [clock] { return *clock; };
  }

  /// The sink of journal completions that `run()` drains (pass it to
  /// whatever you spawn over `journal()`: projections, sagas, relays).
  runtime::deferred_completions& completions() noexcept { return sink_; }
  caf::actor_system& system() noexcept { return sys_; }
  caf::scheduler::test_coordinator& scheduler() noexcept { return sched_; }
  persistence::journal& journal() noexcept { return *journal_; }
  persistence::event_registry& registry() noexcept { return registry_; }
  const std::filesystem::path& directory() const noexcept {
    return dir_.path();
  }

 protected:
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
  runtime::event_bus_link bus_;
  std::shared_ptr<int64_t> clock_ =
      std::make_shared<int64_t>(1'700'000'000'000);
};

/// Test fixture for aggregate type `A`; its types are registered with
/// `register_types<A>` (aggregate_traits.hpp).
/// Not thread-safe: drive it from the test's thread only.
template <class A>
class aggregate_fixture : public system_fixture {
 public:
  using state_type = typename A::state;
  using event_type = typename A::event;
  using command_type = typename A::command;
  using reply_type = typename A::reply;

  explicit aggregate_fixture(aggregate_options options = {}) {
    register_types<A>(registry_);
    if (auto problems = check_types(); !problems.empty()) {
      std::string text = std::string{"aggregate_fixture<"} + A::type_name +
                         ">: types that do not survive their encodings:";
      for (auto& p : problems) text += "\n  " + p;
      throw std::logic_error(text);
    }
    ctx_.journal = journal_.get();
    ctx_.registry = &registry_;
    ctx_.completions = &sink_;
    ctx_.options = options;
  }

  /// Checks that every type of `A` survives its encodings, with a
  /// default-constructed value of each (the constructor runs this and
  /// throws `std::logic_error` with the problems, one per line):
  /// - each event alternative is registered and comes back equal from
  ///   the registry's encoding (the journal's);
  /// - the state, if registered (snapshots), likewise;
  /// - each command alternative, the state and the reply come back equal
  ///   through CAF's binary format (CAF messages and the cluster wire),
  ///   and the reply through msgpack (stored for idempotent commands).
  /// "Equal" where the type has `==` (MNEMO_MESSAGE gives it); otherwise
  /// decoding must succeed. Returns the problems (empty: none).
  std::vector<std::string> check_types() const {
    std::vector<std::string> problems;
    check_events(
        problems,
        std::make_index_sequence<std::variant_size<event_type>::value>{});
    check_commands(
        problems,
        std::make_index_sequence<std::variant_size<command_type>::value>{});
    if (registry_.template name_of<state_type>() != nullptr)
      check_in_journal(problems, "state", state_type{});
    check_on_wire(problems, "state", state_type{});
    check_on_wire(problems, "reply", reply_type{});
    try {
      msgpack::sbuffer buf;
      msgpack::pack(buf, reply_type{});
      auto handle = msgpack::unpack(buf.data(), buf.size());
      auto back = handle.get().template as<reply_type>();
      if (!testkit_detail::same(back, reply_type{}))
        problems.push_back("reply " + testkit_detail::type_label(back) +
                           ": differs after a msgpack round trip");
    } catch (const std::exception& e) {
      problems.push_back(std::string{"reply: msgpack round trip failed: "} +
                         e.what());
    }
    return problems;
  }

  ~aggregate_fixture() {
    for (auto& [id, handle] : actors_)
      caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
    actors_.clear();
    for (auto& handle : registries_)
      caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
    registries_.clear();
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
    return ask<reply_type>(id, command_atom::value, std::move(command_id),
                           std::move(cmd));
  }

  /// What `run_command` returns: the reply (or the rejection), the events
  /// the command persisted, and the state and version after them.
  struct command_result {
    caf::expected<reply_type> reply;
    std::vector<event_type> events;
    state_type state;
    uint64_t version = 0;
  };

  /// Runs `cmd` as `when` does and returns, as Akka's
  /// EventSourcedBehaviorTestKit does, its reply, the events it persisted
  /// (read back from the journal) and the state and version after it.
  /// It also checks what the encodings do to these values: the command,
  /// the reply and the state must come back equal from CAF's binary
  /// format, and a second instance recovered from the journal must hold
  /// the same state and version as the live one (an event or a snapshot
  /// that loses a field shows here); a difference throws
  /// `std::logic_error` naming it. Throws `std::runtime_error` if the
  /// events or the state cannot be read.
  command_result run_command(const std::string& id, command_type cmd,
                             std::string command_id = {}) {
    std::vector<std::string> problems;
    std::visit(
        [&](auto& alternative) {
          check_on_wire(problems, "command", alternative);
        },
        cmd);
    auto stream = stream_of<A>(id);
    auto before = journal_->head_of(stream);
    uint64_t from = before ? before->highest_sequence + 1 : 1;
    command_result out{
        when(id, std::move(cmd), std::move(command_id)), {}, {}, 0};
    auto events = events_from(id, from);
    if (!events) throw std::runtime_error(runtime::describe(events.error()));
    out.events = std::move(*events);
    auto now = versioned_state(id);
    if (!now) throw std::runtime_error(runtime::describe(now.error()));
    out.state = std::move(now->first);
    out.version = now->second;
    if (out.reply) check_on_wire(problems, "reply", *out.reply);
    check_on_wire(problems, "state", out.state);
    // What a restart would recover: a fresh instance beside the live one,
    // which only reads.
    auto fresh = sys_.spawn<aggregate_actor<A>>(ctx_, id);
    auto recovered = request_versioned(fresh);
    caf::anon_send_exit(fresh, caf::exit_reason::user_shutdown);
    run();
    if (!recovered)
      problems.push_back("recovery from the journal failed: " +
                         runtime::describe(recovered.error()));
    else if (recovered->second != out.version ||
             !testkit_detail::same(recovered->first, out.state))
      problems.push_back(
          "state " + testkit_detail::type_label(out.state) +
          ": an instance recovered from the journal differs from the live "
          "one (version " +
          std::to_string(recovered->second) + " vs " +
          std::to_string(out.version) +
          "): an event or the state loses data in its encoding, or apply "
          "is not pure");
    if (!problems.empty()) {
      std::string text = "run_command on " + stream + ":";
      for (auto& p : problems) text += "\n  " + p;
      throw std::logic_error(text);
    }
    return out;
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
    if (registries_.empty()) return request_versioned(actor(id));
    return request_versioned(
        registries_.front(),
        caf::make_message(runtime::route_atom::value, id,
                          caf::make_message(state_atom::value)));
  }

  /// Asks `dest` for state and version (`msg`: `(state_atom)` or a routed
  /// form of it) and runs until answered.
  caf::expected<std::pair<state_type, uint64_t>> request_versioned(
      const caf::actor& dest,
      caf::message msg = caf::make_message(state_atom::value)) {
    using result_type = caf::expected<std::pair<state_type, uint64_t>>;
    auto res = std::make_shared<result_type>(
        runtime::make_error(runtime::errc::entity_stopped, "no reply"));
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
    return events_from(id, 1);
  }

  /// The stored events of the aggregate from sequence `from` on, decoded.
  caf::expected<std::vector<event_type>> events_from(const std::string& id,
                                                     uint64_t from) {
    variant_codec<event_type> codec{registry_};
    auto stored =
        journal_->read_stream(stream_of<A>(id), from, UINT64_MAX, UINT64_MAX);
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

  /// Sends `xs` to aggregate `id` (through the first registry once one was
  /// spawned, else to the fixture's instance) and runs until answered.
  template <class T, class... Ts>
  caf::expected<T> ask(const std::string& id, Ts... xs) {
    if (registries_.empty()) return request<T>(actor(id), std::move(xs)...);
    return request<T>(registries_.front(), runtime::route_atom::value, id,
                      caf::make_message(std::move(xs)...));
  }

  aggregate_context& context() noexcept { return ctx_; }

 private:
  template <class T>
  void check_in_journal(std::vector<std::string>& problems, const char* what,
                        const T& value) const {
    auto label = std::string{what} + " " + testkit_detail::type_label(value);
    auto encoded = registry_.to_event(value);
    if (!encoded) {
      problems.push_back(label + ": " + encoded.error().to_string() +
                         " (name it in event_names or register_types)");
      return;
    }
    persistence::event_envelope env;
    env.type = encoded->type;
    env.schema_version = encoded->schema_version;
    env.payload = encoded->payload;
    env.stream_id = "type-check";
    auto decoded = registry_.template decode<T>(env);
    if (!decoded)
      problems.push_back(label + ": " + decoded.error().to_string());
    else if (!testkit_detail::same(*decoded, value))
      problems.push_back(label + " ('" + encoded->type +
                         "'): differs after the journal's round trip");
  }

  // `value` through CAF's binary format; `equal(back, value)` judges the
  // copy (default: == where the type has it).
  template <class T, class Equal>
  void check_on_wire(std::vector<std::string>& problems,
                     const std::string& label, const T& value,
                     Equal equal) const {
    auto copy = value;
    auto buf = runtime::wire::pack(0, copy);
    if (buf.empty()) {
      problems.push_back(label + ": CAF cannot serialize it");
      return;
    }
    T back{};
    if (auto err = runtime::wire::unpack(buf, back))
      problems.push_back(label + ": " + runtime::describe(err));
    else if (!equal(back, value))
      problems.push_back(label + ": differs after CAF's round trip");
  }

  template <class T>
  void check_on_wire(std::vector<std::string>& problems, const char* what,
                     const T& value) const {
    check_on_wire(
        problems, std::string{what} + " " + testkit_detail::type_label(value),
        value,
        [](const T& x, const T& y) { return testkit_detail::same(x, y); });
  }

  template <size_t... Is>
  void check_events(std::vector<std::string>& problems,
                    std::index_sequence<Is...>) const {
    (check_in_journal(problems, "event",
                      std::variant_alternative_t<Is, event_type>{}),
     ...);
  }

  // One alternative of the command variant, sent as the variant.
  template <size_t I>
  void check_command(std::vector<std::string>& problems) const {
    using alternative = std::variant_alternative_t<I, command_type>;
    check_on_wire(
        problems, "command " + testkit_detail::type_label(alternative{}),
        command_type{std::in_place_index<I>},
        [](const command_type& back, const command_type& sent) {
          return back.index() == I &&
                 testkit_detail::same(std::get<I>(back), std::get<I>(sent));
        });
  }

  template <size_t... Is>
  void check_commands(std::vector<std::string>& problems,
                      std::index_sequence<Is...>) const {
    (check_command<Is>(problems), ...);
  }

  aggregate_context ctx_;
  std::map<std::string, caf::actor> actors_;
  std::vector<caf::actor> registries_;
};

}  // namespace mnemo::actors
