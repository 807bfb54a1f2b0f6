#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

namespace mnemo::runtime {

/// Routes a message to an entity: `(route_atom, id, message)`. The registry
/// activates the entity on first use and forwards `message` to it; the
/// entity's reply (or error) goes straight to the original sender.
using route_atom = caf::atom_constant<caf::atom("mn_route")>;

/// Sent by the registry to an entity that should passivate. The entity
/// finishes what it has started (pending writes, stashed commands) and then
/// quits normally; the registry holds new messages for it until it is gone.
using passivate_atom = caf::atom_constant<caf::atom("mn_passiv")>;

/// `(stats_atom)` -> `(size_t active, size_t passivations)`.
using stats_atom = caf::atom_constant<caf::atom("mn_stats")>;

/// Internal: periodic idle check.
using idle_check_atom = caf::atom_constant<caf::atom("mn_idle")>;

/// Creates the actor of entity `id`. Runs inside the registry.
using entity_factory =
    std::function<caf::actor(caf::actor_system&, const std::string& id)>;

/// Settings of an entity registry.
struct registry_options {
  /// Entities idle for this long passivate. Default: 5 minutes.
  std::chrono::milliseconds idle_timeout = std::chrono::minutes{5};
  /// More active entities than this passivate the least recently used.
  /// Default: 100000.
  size_t max_active = 100000;
};

/// Spawns the registry of one entity type. Guarantees at most one live
/// instance per id: an id whose instance is passivating or has crashed gets
/// a new instance only after the old one has terminated.
caf::actor spawn_entity_registry(caf::actor_system& sys, entity_factory factory,
                                 registry_options options);

}  // namespace mnemo::runtime
