#include <caf/sec.hpp>

#include "mnemo/sagas/saga.hpp"

namespace mnemo::sagas {

bool transient_error(const caf::error& err) {
  using runtime::errc;
  // owner_unavailable: the owner of the entity is another member and not
  // connected; nothing was sent. Giving up on it would be wrong twice: the
  // member comes back, and an earlier attempt of the same step may have
  // reached it before it went (its outcome unknown), so compensating now
  // could undo a step that took effect on one side only. owner_lost: that
  // attempt is the one whose outcome is unknown.
  if (runtime::is(err, errc::stash_overflow) ||
      runtime::is(err, errc::entity_stopped) ||
      runtime::is(err, errc::restart_limit) ||
      runtime::is(err, errc::owner_unavailable) ||
      runtime::is(err, errc::owner_lost))
    return true;
  using pe = persistence::errc;
  // not_leader, stale_epoch: a replicated shard changed leaders under the
  // step (the next attempt reaches the new leader).
  for (auto code : {pe::version_conflict, pe::storage_full, pe::storage_error,
                    pe::journal_failed, pe::journal_closed, pe::not_leader,
                    pe::stale_epoch})
    if (runtime::is(err, code)) return true;
  // CAF's own errors of a dying connection or actor (request_receiver_down,
  // no_route_to_receiving_node, ...) mean the same as owner_lost.
  return runtime::means_owner_lost(err) || err == caf::sec::request_timeout;
}

}  // namespace mnemo::sagas
