#pragma once

// Process managers: sagas advanced by events. A router projection
// (exactly-once) maps each event passing its filter to the saga it concerns
// (the correlation: a saga id computed from the event, e.g. the order id in
// the stream id of a payment) and records "event at position P for saga X"
// in the inbox table of the saga type, in the same transaction as its
// offset. The inbox actor delivers the rows of each saga in commit order,
// one at a time (`deliver_atom`), and deletes a row once the saga has
// recorded what the event did (decided a step, or was ignored). A saga
// that cannot judge an event yet (it has not started, or no step of it
// waits at the moment) holds the delivery unanswered, so the row stays: it
// is the event's durable hold. A crash anywhere leaves the row (sent
// again: the saga recognises the position) or the offset (the event is
// routed again: the same row is written again). See docs/sagas.md.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/sagas/saga.hpp"
#include "mnemo/sagas/saga_inbox_table.hpp"
#include "mnemo/sagas/saga_relay.hpp"

namespace mnemo::sagas {

/// Maps an event to the id of the saga it concerns, or to nothing.
using correlate_fn = std::function<std::optional<std::string>(
    const persistence::event_envelope&)>;

/// Returns the exactly-once projection `name` that routes the events
/// passing `filter` to the sagas of type `S` that `correlate` names.
/// Spawn it with `actors::spawn_projection` and supervise it like any
/// projection; spawn the inbox with `spawn_saga_inbox`.
template <class S>
actors::projection_spec saga_router(std::string name,
                                    actors::projection_filter filter,
                                    correlate_fn correlate) {
  actors::projection_spec spec;
  spec.name = std::move(name);
  spec.filter = std::move(filter);
  auto table = inbox_table<S>();
  spec.apply = [correlate, table](persistence::write_txn& txn,
                                  const persistence::event_envelope& env) {
    auto saga_id = correlate(env);
    if (!saga_id || saga_id->empty()) return persistence::error{};
    return persistence::table_store::put_in(
        txn, table, detail::inbox_key(*saga_id, env.position), "");
  };
  spec.clear = [table](persistence::write_txn& txn) {
    auto n = persistence::table_store::clear_in(txn, table);
    return n ? persistence::error{} : n.error();
  };
  return spec;
}

/// Spawns the actor that delivers the inbox of `S` to `registry`: at start,
/// on every head announced by `bus` (may be invalid) and every `poll`.
/// The router may write a row in a commit after the event's (its first
/// tail write after a quiet spell), and such a commit announces no head:
/// that row is found by the next poll. On virtual time, advance by at
/// least `poll` after committing events the router handles. Pointees must
/// outlive it; stop it with an exit message.
template <class S>
caf::actor spawn_saga_inbox(
    caf::actor_system& sys, persistence::journal& j,
    runtime::completion_sink& sink, caf::actor registry, caf::actor bus,
    std::chrono::milliseconds poll = std::chrono::milliseconds{100}) {
  detail::relay_decode decode =
      [](std::string_view k,
         std::string_view) -> std::optional<detail::relay_item> {
    auto parsed = detail::parse_inbox_key(k);
    if (!parsed) return std::nullopt;
    auto end = detail::inbox_end(parsed->first);
    return detail::relay_item{
        std::move(parsed->first),
        caf::make_message(deliver_atom::value, parsed->second), std::move(end)};
  };
  return sys.spawn<detail::saga_relay<bool>>(
      &j, &sink, std::move(registry), std::move(bus), poll, inbox_table<S>(),
      std::move(decode));
}

}  // namespace mnemo::sagas
