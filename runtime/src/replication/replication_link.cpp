#include "replication_link.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "mnemo/runtime/replication/replicator.hpp"

namespace mnemo::runtime::replication {

namespace {

caf::behavior link(caf::event_based_actor* self, std::string from,
                   caf::actor peer) {
  return {
      [=](repl_sync_atom, uint32_t shard, uint64_t epoch) {
        return self->delegate(peer, peer_sync_atom::value, from, shard, epoch);
      },
      [=](repl_truncate_atom, uint32_t shard, uint64_t epoch, uint64_t keep) {
        return self->delegate(peer, peer_truncate_atom::value, from, shard,
                              epoch, keep);
      },
      [=](repl_append_atom, std::vector<char>& bundle) {
        return self->delegate(peer, peer_append_atom::value, from,
                              std::move(bundle));
      },
      [=](repl_read_atom, uint32_t shard, uint64_t from_position,
          uint64_t max_records) {
        return self->delegate(peer, peer_read_atom::value, from, shard,
                              from_position, max_records);
      },
  };
}

}  // namespace

caf::actor spawn_replication_link(caf::actor_system& sys, std::string self_id,
                                  caf::actor peer) {
  return sys.spawn(link, std::move(self_id), std::move(peer));
}

}  // namespace mnemo::runtime::replication
