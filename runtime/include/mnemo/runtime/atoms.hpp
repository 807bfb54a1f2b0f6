#pragma once

#include <caf/atom.hpp>

namespace mnemo::runtime {

/// Routes a message by name: `(route_atom, name, message)`. The entity
/// registry activates the entity `name` on first use; a supervisor forwards
/// to its child `name`. The reply (or error) goes straight to the original
/// sender.
using route_atom = caf::atom_constant<caf::atom("mn_route")>;

/// Sent by the registry to an entity that should passivate. The entity
/// finishes what it has started (pending writes, stashed commands) and then
/// quits normally; the registry holds new messages for it until it is gone.
using passivate_atom = caf::atom_constant<caf::atom("mn_passiv")>;

/// Asks a registry or supervisor for its counters; see their headers for
/// the reply.
using stats_atom = caf::atom_constant<caf::atom("mn_stats")>;

/// `(evict_atom, type, shard, shards)` -> `(size_t)`: a registry
/// passivates every active entity `id` whose shard
/// (`entity_shard(type, id, shards)`) is `shard`, and answers how many. The
/// next message to one of them activates a new instance, which recovers
/// from the journal: a replicated cluster does this when a shard's
/// leadership comes to or leaves this member, since another member may
/// have written its streams meanwhile.
using evict_atom = caf::atom_constant<caf::atom("mn_evict")>;

/// Internal: periodic idle check of the registry.
using idle_check_atom = caf::atom_constant<caf::atom("mn_idle")>;

/// Internal: a backoff delay has passed; restart what waited for it.
using restart_atom = caf::atom_constant<caf::atom("mn_restart")>;

/// `(child_atom, name)` -> the current `caf::actor` of a supervisor's child
/// (an invalid handle while it waits for its restart).
using child_atom = caf::atom_constant<caf::atom("mn_child")>;

}  // namespace mnemo::runtime
