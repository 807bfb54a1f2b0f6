#pragma once

// How replicators of different members reach each other through the
// cluster's endpoints (private to runtime). A replicator only knows a
// peer actor per member (`repl_peer_atom`); in a cluster that actor is a
// link on this node which tags each replication request with this
// member's id and delegates it to the other member's endpoint. That
// endpoint checks that the member joined (secret, TLS) and delegates the
// request to its own replicator, whose reply goes straight back to the
// requesting replicator. Only the four replication requests travel this
// way; the replicator's local control messages (lead, follow, resign) are
// never served to other nodes.

#include <string>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

namespace mnemo::runtime::replication {

/// Member to member: `(peer_*_atom, from member, ...)` with the arguments
/// of the replicator's `repl_*_atom` request of the same name.
using peer_sync_atom = caf::atom_constant<caf::atom("mn_psync")>;
using peer_truncate_atom = caf::atom_constant<caf::atom("mn_ptrunc")>;
using peer_append_atom = caf::atom_constant<caf::atom("mn_pappend")>;
using peer_read_atom = caf::atom_constant<caf::atom("mn_pread")>;

/// Spawns the link to member `peer`'s endpoint for this member `self_id`.
caf::actor spawn_replication_link(caf::actor_system& sys, std::string self_id,
                                  caf::actor peer);

}  // namespace mnemo::runtime::replication
