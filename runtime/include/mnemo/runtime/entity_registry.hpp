#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "mnemo/runtime/atoms.hpp"
#include "mnemo/runtime/metrics.hpp"
#include "mnemo/runtime/restart_policy.hpp"

namespace mnemo::runtime {

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
  /// How a crashed entity comes back. A crash (an exit other than normal,
  /// e.g. a throwing handler, a failed persist or recovery) holds the
  /// entity's messages for the backoff delay, then starts a new instance
  /// that recovers from the journal and receives them. Beyond the restart
  /// intensity the entity is not started again until its window has passed;
  /// messages meanwhile get `restart_limit` naming the last failure. The
  /// intensity counts per entity: one bad entity never stops the others.
  restart_policy restarts;
  /// Messages held per entity while it stops or waits for its restart;
  /// more are answered with `stash_overflow`. Default: 10000.
  size_t hold_limit = 10000;
  /// Seed of the backoff jitter; 0 picks a random seed. Default: 0.
  uint64_t seed = 0;
  /// Where the registry publishes `mnemo_entities_active`,
  /// `mnemo_entity_activations_total`, `mnemo_passivations_total` and
  /// `mnemo_entity_restarts_total`, labelled `type="<entity_type>"`; none
  /// if null. Must outlive the registry.
  runtime::metrics* metrics = nullptr;
  /// The label value of the metrics, e.g. "account".
  std::string entity_type;
};

/// Spawns the registry of one entity type. Guarantees at most one live
/// instance per id: an id whose instance is passivating or has crashed gets
/// a new instance only after the old one has terminated.
///
/// Protocol:
/// - `(route_atom, id, caf::message)`: forwards the message to entity `id`,
///   activating it if needed; the reply goes to the original sender.
///   Errors: `stash_overflow` beyond `hold_limit`, `restart_limit` for an
///   entity that crashed too often (see `registry_options::restarts`).
/// - `(stats_atom)` -> `(size_t active, size_t passivations, size_t
///   restarts)`.
/// - `(evict_atom, type, shard, shards)` -> `(size_t)`: passivates the
///   entities of one shard (atoms.hpp).
/// An exit message stops all entities with the same reason.
caf::actor spawn_entity_registry(caf::actor_system& sys, entity_factory factory,
                                 registry_options options);

}  // namespace mnemo::runtime
