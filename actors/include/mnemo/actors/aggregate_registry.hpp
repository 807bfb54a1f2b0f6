#pragma once

#include <string>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/message.hpp>

#include "mnemo/actors/aggregate.hpp"
#include "mnemo/runtime/entity_registry.hpp"
#include "mnemo/runtime/node.hpp"

namespace mnemo::actors {

/// Spawns the entity registry of aggregate type `A`: `(route_atom, id,
/// command_message(...))` reaches aggregate `id`, activated (recovered) on
/// first use, passivated when idle or least recently used, restarted with
/// backoff after a crash. Call from any thread; `ctx` must stay valid while
/// the registry lives.
template <class A>
caf::actor spawn_aggregate_registry(caf::actor_system& sys,
                                    aggregate_context ctx,
                                    runtime::registry_options options) {
  return runtime::spawn_entity_registry(
      sys,
      [ctx](caf::actor_system& s, const std::string& id) {
        return s.spawn<aggregate_actor<A>>(ctx, id);
      },
      std::move(options));
}

/// Spawns the registry of `A` on node `n` with the node's settings
/// (snapshot policy, stash limit, passivation, restart policy) and its
/// metrics (commands by outcome, recovery time, entity counts); the node
/// stops it on shutdown. The event types of `A` must be registered in
/// `n.registry()` first.
template <class A>
caf::actor spawn_aggregate_registry(runtime::node& n) {
  aggregate_context ctx{&n.journal(), &n.registry(), &n.completions(),
                        aggregate_options::from(n.config()),
                        aggregate_metrics::in(n.metrics(), A::type_name)};
  auto options = n.config().registry_settings();
  options.metrics = &n.metrics();
  options.entity_type = A::type_name;
  auto handle = spawn_aggregate_registry<A>(n.system(), ctx, options);
  n.track(handle);
  return handle;
}

/// Returns the message that carries command `cmd` (with idempotency id
/// `command_id`, empty for none) to an aggregate of type `A`, for
/// `route_atom`.
template <class A>
caf::message command_message(typename A::command cmd,
                             std::string command_id = {}) {
  return caf::make_message(command_atom::value, std::move(command_id),
                           std::move(cmd));
}

}  // namespace mnemo::actors
