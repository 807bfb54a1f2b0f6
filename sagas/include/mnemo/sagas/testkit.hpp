#pragma once

// Testkit for sagas: sagas of one type over a real journal, on CAF's
// deterministic scheduler and a wall clock that moves with virtual time,
// with the aggregates they command replaced by scripts. Given the replies
// (and errors) of the aggregates, the events delivered to event-decided
// steps and the passing of time, a test checks the commands the saga
// sent, in order (the compensations too), and its final status. See
// docs/testing.md, "Sagas".

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/deep_to_string.hpp>
#include <caf/event_based_actor.hpp>

#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/actors/testkit.hpp"
#include "mnemo/sagas/saga.hpp"

namespace mnemo::sagas {

/// A command that a saga under test sent to an aggregate.
struct sent_command {
  /// The aggregate type (`A::type_name`).
  std::string aggregate;
  /// The aggregate's id.
  std::string entity;
  /// The saga's deterministic command id: "saga-<type>-<id>/<step>/do",
  /// or ".../undo" for a compensation.
  std::string command_id;
  /// The command as CAF prints it.
  std::string command;
};

/// Test fixture for saga type `S`: its registry over the fixture's journal
/// and wall clock (`advance` moves both), the saga events registered, and
/// every aggregate type the steps command answered by a script
/// (`answer<A>`). Not thread-safe: drive it from the test's thread only.
template <class S>
class saga_fixture : public actors::system_fixture {
 public:
  using data_type = typename S::data;

  /// Sagas with steps `def` (a value, as the service would build it);
  /// `options` for their registry (passivation, restarts).
  explicit saga_fixture(definition<data_type> def,
                        runtime::registry_options options = {})
      : def_(std::move(def)), options_(std::move(options)) {
    register_types(registry_);
  }

  /// Sagas with the steps of `S::define()`.
  saga_fixture() : saga_fixture(S::define()) {}

  ~saga_fixture() override {
    if (sagas_) caf::anon_send_exit(sagas_, caf::exit_reason::user_shutdown);
    for (auto& [name, target] : targets_)
      caf::anon_send_exit(target, caf::exit_reason::user_shutdown);
    run();
  }

  /// How aggregate type `A` answers the saga's commands: `fn(entity,
  /// command)` returns the reply, or the error the aggregate rejects with
  /// (a final error makes the step fail; a transient one, e.g.
  /// `runtime::errc::owner_unavailable`, is retried). Without `fn`, every
  /// command is answered with `A::reply{}`. Every aggregate type the steps
  /// command needs a call, before the first `start`.
  template <class A>
  void answer(std::function<caf::expected<typename A::reply>(
                  const std::string& entity, const typename A::command&)>
                  fn = nullptr) {
    if (sagas_)
      throw std::logic_error(
          "saga_fixture: answer<A>() after the first start()");
    using reply = typename A::reply;
    using command = typename A::command;
    auto log = log_;
    targets_[A::type_name] =
        sys_.spawn([log, fn](caf::event_based_actor*) -> caf::behavior {
          return {
              [log, fn](runtime::route_atom, const std::string& entity,
                        caf::message& msg) -> caf::result<reply> {
                if (!msg.match_elements<actors::command_atom, std::string,
                                        command>())
                  return runtime::make_error(
                      runtime::errc::invalid_argument,
                      std::string{"saga_fixture: not a command of '"} +
                          A::type_name + "': " + caf::to_string(msg));
                auto& cmd = msg.get_as<command>(2);
                log->push_back(sent_command{A::type_name, entity,
                                            msg.get_as<std::string>(1),
                                            caf::deep_to_string(cmd)});
                auto r = fn ? fn(entity, cmd) : caf::expected<reply>{reply{}};
                if (!r) return std::move(r.error());
                return std::move(*r);
              },
          };
        });
  }

  /// Starts saga `id` with `data` and runs until it is answered (its start
  /// recorded); the saga then runs its steps as far as it can without
  /// time passing.
  caf::expected<saga_status> start(const std::string& id, data_type data) {
    auto r = request<saga_status>(
        saga_registry(), runtime::route_atom::value, id,
        caf::make_message(start_atom::value, std::move(data)));
    run();
    return r;
  }

  /// Appends `event` (a registered type: register the event types of the
  /// aggregates the steps wait for, e.g. `actors::register_types<A>(
  /// f.registry())`) to `stream` and delivers it to saga `id` as its inbox
  /// relay would, then runs until the saga recorded it: an event-decided
  /// step (`step::await`) judges it. Returns the delivery's answer (true:
  /// recorded, or a repeat) or its error.
  template <class E>
  caf::expected<bool> deliver(const std::string& id, const std::string& stream,
                              const E& event) {
    auto position = append(stream, event);
    auto r = request<bool>(saga_registry(), runtime::route_atom::value, id,
                           caf::make_message(deliver_atom::value, position));
    run();
    return r;
  }

  /// The status of saga `id` (`saga_status::status`: "running",
  /// "completed", "compensating", "compensated", "needs_attention").
  caf::expected<saga_status> status(const std::string& id) {
    return request<saga_status>(saga_registry(), runtime::route_atom::value, id,
                                caf::make_message(status_atom::value));
  }

  /// Every command the sagas sent, in the order the aggregates got them.
  const std::vector<sent_command>& sent() const noexcept { return *log_; }

  /// The command ids of `sent()`, e.g. {"saga-trip-t1/0/do",
  /// "saga-trip-t1/1/do", "saga-trip-t1/0/undo"}.
  std::vector<std::string> sent_ids() const {
    std::vector<std::string> out;
    for (auto& c : *log_) out.push_back(c.command_id);
    return out;
  }

  /// Stops the saga registry (every saga with it, as a crash of the node
  /// would between two commits); the next call spawns a new one, whose
  /// sagas recover from the journal.
  void restart_sagas() {
    if (!sagas_) return;
    // Not `kill`: the registry traps this reason and stops its sagas with
    // it; killed, it would leave them running beside the next registry's.
    caf::anon_send_exit(sagas_, caf::exit_reason::user_shutdown);
    sagas_ = nullptr;
    run();
  }

  /// `saga_context::snapshot_every` of the sagas spawned from now on.
  uint64_t snapshot_every = 0;
  /// `saga_context::stash_limit` and `recovery_chunk`, likewise.
  size_t stash_limit = saga_context{}.stash_limit;
  size_t recovery_chunk = saga_context{}.recovery_chunk;

  /// The saga registry, spawned on first use with the scripted targets.
  caf::actor saga_registry() {
    if (!sagas_) {
      saga_context ctx;
      ctx.journal = journal_.get();
      ctx.registry = &registry_;
      ctx.completions = &sink_;
      ctx.targets = targets_;
      ctx.wall_ms = wall_clock();
      ctx.snapshot_every = snapshot_every;
      ctx.stash_limit = stash_limit;
      ctx.recovery_chunk = recovery_chunk;
      sagas_ = spawn_saga_registry<S>(sys_, ctx, options_, def_);
      run();
    }
    return sagas_;
  }

 private:
  definition<data_type> def_;
  runtime::registry_options options_;
  targets targets_;
  caf::actor sagas_;
  std::shared_ptr<std::vector<sent_command>> log_ =
      std::make_shared<std::vector<sent_command>>();
};

}  // namespace mnemo::sagas
