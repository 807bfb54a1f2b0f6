#pragma once

// Choreography: sagas started by events, exactly once per triggering event.
//
// A trigger projection (exactly-once) records "start saga <id> with <data>"
// in an outbox table, in the same transaction as its offset. A starter
// actor sends each recorded start to the saga registry and deletes the
// entry once the saga has persisted its start. A crash anywhere leaves the
// entry (sent again: starting an existing saga starts nothing) or the
// offset (event handled again: the same id is recorded again). The saga id
// must be a function of the event, e.g. its stream or event id.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/runtime/event_bus.hpp"
#include "mnemo/sagas/saga.hpp"
#include "mnemo/sagas/saga_relay.hpp"

namespace mnemo::sagas {

/// Maps an event to the saga it starts (id and data), or to nothing.
template <class S>
using trigger_fn =
    std::function<std::optional<std::pair<std::string, typename S::data>>(
        const persistence::event_envelope&)>;

/// Returns the outbox table of saga type `S`.
template <class S>
std::string outbox_table() {
  return std::string{"mnemo.saga_outbox."} + S::type_name;
}

/// Returns the exactly-once projection `name` that records the sagas
/// `trigger` derives from the events passing `filter`. Spawn it with
/// `actors::spawn_projection` and supervise it like any projection.
template <class S>
actors::projection_spec saga_trigger(std::string name,
                                     actors::projection_filter filter,
                                     trigger_fn<S> trigger) {
  actors::projection_spec spec;
  spec.name = std::move(name);
  spec.filter = std::move(filter);
  auto table = outbox_table<S>();
  spec.apply = [trigger, table](persistence::write_txn& txn,
                                const persistence::event_envelope& env) {
    auto start = trigger(env);
    if (!start) return persistence::error{};
    return persistence::table_store::put_in(txn, table, start->first,
                                            detail::pack(start->second));
  };
  spec.clear = [table](persistence::write_txn& txn) {
    auto n = persistence::table_store::clear_in(txn, table);
    return n ? persistence::error{} : n.error();
  };
  return spec;
}

/// Spawns the actor that starts the sagas recorded in the outbox of `S`
/// through `registry`: at start, on every head announced by `bus` (may be
/// invalid) and every `poll`. The trigger may record a start in a commit
/// after the event's, which announces no head: that start is found by the
/// next poll. On virtual time, advance by at least `poll` after committing
/// events the trigger handles. Pointees must outlive it; stop it with an
/// exit message.
template <class S>
caf::actor spawn_saga_starter(
    caf::actor_system& sys, persistence::journal& j,
    runtime::completion_sink& sink, caf::actor registry, caf::actor bus,
    std::chrono::milliseconds poll = std::chrono::milliseconds{100}) {
  detail::relay_decode decode =
      [](std::string_view k,
         std::string_view v) -> std::optional<detail::relay_item> {
    typename S::data data{};
    try {
      auto h = msgpack::unpack(v.data(), v.size());
      h.get().convert(data);
    } catch (const std::exception&) {
      return std::nullopt;  // unreadable: left for an operator
    }
    // One row per saga: its key is the saga id.
    std::string end{k};
    end.push_back('\0');
    return detail::relay_item{
        std::string{k}, caf::make_message(start_atom::value, std::move(data)),
        std::move(end)};
  };
  return sys.spawn<detail::saga_relay<saga_status>>(
      &j, &sink, std::move(registry), std::move(bus), poll, outbox_table<S>(),
      std::move(decode));
}

}  // namespace mnemo::sagas
