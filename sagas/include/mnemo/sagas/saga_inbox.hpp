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
#include "mnemo/persistence/stream_export.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "mnemo/runtime/cluster.hpp"
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
namespace detail {

/// The router's handler: records the events `correlate` maps to a saga in
/// the inbox of `S`, as events of `source` ("" = the node's journal: the
/// row names the position only; otherwise the row holds the event).
template <class S>
actors::exactly_once_handler route_to_inbox(correlate_fn correlate,
                                            std::string source) {
  auto table = inbox_table<S>();
  return [correlate = std::move(correlate), table, source = std::move(source)](
             persistence::write_txn& txn,
             const persistence::event_envelope& env) {
    auto saga_id = correlate(env);
    if (!saga_id || saga_id->empty()) return persistence::error{};
    return persistence::table_store::put_in(
        txn, table, inbox_key(*saga_id, env.position, source),
        source.empty() ? std::string{} : persistence::encode_event(env));
  };
}

}  // namespace detail

template <class S>
actors::projection_spec saga_router(std::string name,
                                    actors::projection_filter filter,
                                    correlate_fn correlate) {
  actors::projection_spec spec;
  spec.name = std::move(name);
  spec.filter = std::move(filter);
  spec.apply = detail::route_to_inbox<S>(std::move(correlate), {});
  spec.clear = [table = inbox_table<S>()](persistence::write_txn& txn) {
    auto n = persistence::table_store::clear_in(txn, table);
    return n ? persistence::error{} : n.error();
  };
  return spec;
}

/// The router of `saga_router` for a node in cluster `c` (may be null:
/// then the one router of the node's journal). In a cluster the events that
/// concern a saga are in other logs than its own: the copies of
/// `actors::cluster_wide` follow every shard log (a replicated cluster) or
/// every member's journal (a static one), and each row they write names
/// its source (the shard log, or the member, this one included) and holds
/// the event, so that the saga can judge it wherever it runs and tell a
/// repeat by its position in that source. Every member routes every event:
/// each member's inbox delivers it, and the saga records it once.
template <class S>
std::vector<actors::projection_spec>
saga_routers(std::string name, actors::projection_filter filter,
             correlate_fn correlate, const runtime::cluster* c) {
  auto base = saga_router<S>(std::move(name), std::move(filter), correlate);
  if (!c) return {std::move(base)};
  auto copies = actors::cluster_wide(base, c);
  for (auto& copy : copies)
    copy.apply = detail::route_to_inbox<S>(
        correlate, copy.source.empty() ? c->self() : copy.source);
  return copies;
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
         std::string_view v) -> std::optional<detail::relay_item> {
    auto parsed = detail::parse_inbox_key(k);
    if (!parsed) return std::nullopt;
    auto end = detail::inbox_end(parsed->saga_id);
    auto msg = parsed->source.empty()
                   ? caf::make_message(deliver_atom::value, parsed->position)
                   : caf::make_message(deliver_atom::value,
                                       std::move(parsed->source),
                                       parsed->position, std::string{v});
    return detail::relay_item{std::move(parsed->saga_id), std::move(msg),
                              std::move(end)};
  };
  return sys.spawn<detail::saga_relay<bool>>(
      &j, &sink, std::move(registry), std::move(bus), poll, inbox_table<S>(),
      std::move(decode));
}

}  // namespace mnemo::sagas
