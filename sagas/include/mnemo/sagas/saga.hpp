#pragma once

// Orchestrated sagas: a saga is a persistent actor that runs an ordered
// list of steps (commands to aggregates, by type and id), retries transient
// failures with backoff, compensates completed steps in reverse order when
// a step fails for good, and records its progress as its own event stream,
// so that a restarted saga resumes where it stood. See docs/sagas.md.
//
// A saga type `S` declares:
//   using data = ...;   // MNEMO_MESSAGE struct; the saga's input
//   static constexpr const char* type_name = "transfer";
// and its steps are a `definition<data>` value given to
// `spawn_saga_registry<S>(sys, ctx, options, definition)` (or, without
// one, `static definition<data> define()`).

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/typed_response_promise.hpp>

#include "mnemo/actors/aggregate.hpp"
#include "mnemo/actors/aggregate_registry.hpp"
#include "mnemo/actors/variant_codec.hpp"
#include "mnemo/persistence/stream_export.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/runtime/entity_registry.hpp"
#include "mnemo/runtime/error.hpp"
#include "mnemo/runtime/restart_policy.hpp"
#include "mnemo/sagas/saga_events.hpp"
#include "mnemo/sagas/saga_inbox_table.hpp"
#include "mnemo/sagas/saga_progress.hpp"

namespace mnemo::sagas {

/// `(start_atom, S::data)` -> `saga_status`: starts the saga once; a saga
/// that exists answers its status and starts nothing.
using start_atom = caf::atom_constant<caf::atom("mn_sstart")>;
/// `(status_atom)` -> `saga_status`; also activates (resumes) the saga. A
/// saga that was never started answers status "new".
using status_atom = caf::atom_constant<caf::atom("mn_sstatus")>;
/// Internal messages of the saga actor.
using saga_persisted_atom = caf::atom_constant<caf::atom("mn_spers")>;
using saga_retry_atom = caf::atom_constant<caf::atom("mn_sretry")>;
using saga_deadline_atom = caf::atom_constant<caf::atom("mn_sdue")>;
using saga_reply_atom = caf::atom_constant<caf::atom("mn_sreply")>;
/// `(deliver_atom, uint64_t position)` -> `bool`: the event at `position`
/// concerns the saga (sent by its inbox, see saga_inbox.hpp). Answers true
/// once the saga has recorded what the event did: it decided the waiting
/// step (`saga_event_received`), or it concerned no waiting step
/// (`saga_event_ignored`), now or in an earlier delivery. A saga that
/// cannot judge the event yet (not started, persisting, or running a step
/// that waits for no event) holds the request until it can, judging held
/// events in position order. Errors: `entity_stopped` if the saga stops
/// first; the journal's errors, or `not_found`, if the event cannot be
/// read. (Earlier versions answered false, and recorded nothing, for an
/// event that concerned no waiting step.)
/// `(deliver_atom, std::string source, uint64_t position, std::string
/// event)` -> `bool`: the same for an event of another log (`source`, e.g.
/// "shard/3"; positions are that log's), carried as
/// `persistence::encode_event` bytes; repeats are told by source and
/// position. Errors also: `invalid_argument` (no source or no event),
/// `corrupt_record` (the event does not decode).
using deliver_atom = caf::atom_constant<caf::atom("mn_sdeliv")>;

/// Returns whether `err` is transient: the command was not applied and a
/// later attempt may succeed (a stopped or restarting entity, a full stash,
/// a journal write failure, an unreachable receiver, an owning cluster
/// member that is not connected). Business rejections (other error
/// categories) are not.
bool transient_error(const caf::error& err);

/// Retries of one step or compensation.
struct retry_policy {
  /// Attempts in total, the first one included. Default: 8, about 13 s
  /// with the default backoff (the last at 0.1 + 0.2 + ... + 6.4 s): well
  /// past a failover of a replicated cluster (the lease TTL plus a poll, 2
  /// to 3 s with the nodes' defaults) or a member's restart, so that
  /// neither makes a saga give up and compensate.
  uint32_t max_attempts = 8;
  /// Delay before attempt k+1: `min_backoff * 2^(k-1)` capped at
  /// `max_backoff`, times [1, 1 + jitter]. Defaults: 100 ms, 10 s, 0.2.
  runtime::restart_policy backoff;
  /// Which errors are retried; empty means `transient_error`.
  std::function<bool(const caf::error&)> retryable;
  /// A budget in time: errors that `retryable` takes are retried past
  /// `max_attempts` until this long after the first failed attempt (of the
  /// step, or of the compensation), e.g. longer than the longest outage a
  /// step should ride out. Deadlines still end a step. 0 (the default):
  /// only `max_attempts` counts.
  std::chrono::milliseconds keep_transient_for{0};
};

/// The aggregate registries a saga sends to, by aggregate type name.
using targets = std::map<std::string, caf::actor>;

/// Sends a step's command: `done` gets no error on success.
template <class Data>
using command_fn = std::function<void(
    caf::event_based_actor* self, const targets& to, const Data& data,
    const std::string& command_id, std::function<void(caf::error)> done)>;

/// Returns a command function that sends `make(data)` to aggregate
/// `entity(data)` of type `A` through its registry in `targets`, with the
/// saga's deterministic command id (the aggregate's idempotency makes a
/// re-sent step apply once).
template <class A, class Data>
command_fn<Data> command(std::function<std::string(const Data&)> entity,
                         std::function<typename A::command(const Data&)> make) {
  return [entity, make](caf::event_based_actor* self, const targets& to,
                        const Data& data, const std::string& command_id,
                        std::function<void(caf::error)> done) {
    auto i = to.find(A::type_name);
    if (i == to.end())
      return done(runtime::make_error(
          runtime::errc::not_found,
          std::string{"saga has no registry for aggregate type '"} +
              A::type_name + "'"));
    self->request(i->second, caf::infinite, runtime::route_atom::value,
                  entity(data),
                  actors::command_message<A>(make(data), command_id))
        .then([done](typename A::reply&) { done(caf::error{}); },
              [done](caf::error& err) { done(std::move(err)); });
  };
}

/// Decides a step that waits for an event: given an event delivered to the
/// saga, returns nothing if the event does not concern the step, no error
/// if the step succeeded, or the error the step failed with (for good: its
/// compensation and those of the completed steps run).
template <class Data>
using await_fn = std::function<std::optional<caf::error>(
    const persistence::event_registry& types,
    const persistence::event_envelope& env, const Data& data)>;

/// Returns an await function that decodes events of aggregate `A` and lets
/// `decide` judge them; events of other types do not concern the step.
template <class A, class Data>
await_fn<Data> await_event(std::function<std::optional<caf::error>(
                               const typename A::event&, const Data&)>
                               decide) {
  return [decide](const persistence::event_registry& types,
                  const persistence::event_envelope& env,
                  const Data& data) -> std::optional<caf::error> {
    actors::variant_codec<typename A::event> codec{types};
    auto ev = codec.decode(env);
    if (!ev) return std::nullopt;
    return decide(*ev, data);
  };
}

/// One step of a saga. A step is a command (`action`) whose reply decides
/// it, or, with `await`, a command whose acceptance only starts it and an
/// event correlated to the saga that decides it (a process manager step;
/// `action` may then be empty: the step only waits).
template <class Data>
struct step {
  /// For status and logs.
  std::string name;
  command_fn<Data> action;
  /// Undoes `action`; empty if there is nothing to undo.
  command_fn<Data> compensation;
  /// Makes this an event-decided step. When such a step fails (its event
  /// says so, its command is rejected, or its timeout passes while it
  /// waits), its own compensation runs too, before those of the completed
  /// steps: its command may have taken effect. That compensation must be
  /// harmless when it did not.
  await_fn<Data> await;
  retry_policy retry;
  /// Time for the step, all attempts and the wait for its event together;
  /// 0 = none. After it no new attempt starts (an outstanding one still
  /// decides the outcome); a step waiting for its event fails.
  std::chrono::milliseconds timeout{0};
  /// When the step's time ends, computed from the saga's data when the
  /// step starts: wall-clock ms since the epoch (`saga_context::wall_ms`),
  /// e.g. a due date the data holds; 0 = none. Replaces `timeout` when set.
  std::function<int64_t(const Data&)> due_at;
};

/// A saga type's steps and whole-saga deadline: a value, built where the
/// service is wired (`spawn_saga_registry<S>(..., definition)`), so that
/// its timeouts may come from the service's options.
template <class Data>
struct definition {
  std::vector<step<Data>> steps;
  /// 0 = none. After it no new attempt of a forward step starts.
  std::chrono::milliseconds deadline{0};
  /// The deadline computed from the saga's data when it starts (wall-clock
  /// ms since the epoch, 0 = none); replaces `deadline` when set.
  std::function<int64_t(const Data&)> deadline_at;
};

/// Where a passivated saga that is not finished asks to be woken (its
/// retry or deadline is due, or a command was in flight): set once the
/// saga registry's cluster router exists. Thread-safe.
class saga_wake {
 public:
  void set(caf::actor via) {
    std::lock_guard<std::mutex> guard{mtx_};
    via_ = std::move(via);
  }
  caf::actor get() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return via_;
  }

 private:
  mutable std::mutex mtx_;
  caf::actor via_;
};

/// What saga actors need from their node. Pointees must outlive them.
struct saga_context {
  persistence::journal* journal = nullptr;
  const persistence::event_registry* registry = nullptr;
  runtime::completion_sink* completions = nullptr;
  sagas::targets targets;
  /// Wall clock in ms since the epoch (persisted due times); replaceable in
  /// tests. Default: std::chrono::system_clock.
  std::function<int64_t()> wall_ms;
  /// In a replicated cluster: the router of the saga registry (empty or
  /// unset: the registry that passivated the saga). A member that stops
  /// leading a shard passivates its sagas; woken through the router, such
  /// a saga runs where its shard is led now, never again on this member.
  std::shared_ptr<saga_wake> wake_via;
  /// Snapshot a saga's progress every N of its events (0: never): a long
  /// running saga (a process manager with many deliveries, retries) then
  /// recovers from its latest snapshot and the events after it instead of
  /// its whole stream. The latest snapshot is kept.
  uint64_t snapshot_every = 0;
  /// Requests (starts, status queries, deliveries) a saga keeps while it
  /// recovers or persists, and events it holds for judging; past it they
  /// are answered with `stash_overflow` (a relay delivers again later).
  size_t stash_limit = 10000;
  /// Events read per recovery step: a saga with a long history recovers
  /// in steps between which its node's other actors run.
  size_t recovery_chunk = 1000;
};

/// Returns the stream id of saga `S` with id `id`: "saga-<type_name>-<id>".
template <class S>
std::string saga_stream(const std::string& id) {
  return std::string{"saga-"} + S::type_name + "-" + id;
}

}  // namespace mnemo::sagas

#include "mnemo/sagas/saga_actor.hpp"
#include "mnemo/sagas/saga_resume.hpp"
