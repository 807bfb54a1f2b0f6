#include <caf/sec.hpp>

#include "mnemo/sagas/saga.hpp"

namespace mnemo::sagas {

bool transient_error(const caf::error& err) {
  using runtime::errc;
  if (runtime::is(err, errc::stash_overflow) ||
      runtime::is(err, errc::entity_stopped) ||
      runtime::is(err, errc::restart_limit))
    return true;
  using pe = persistence::errc;
  for (auto code : {pe::version_conflict, pe::storage_full, pe::storage_error,
                    pe::journal_failed, pe::journal_closed})
    if (runtime::is(err, code)) return true;
  return err == caf::sec::request_receiver_down ||
         err == caf::sec::request_timeout;
}

}  // namespace mnemo::sagas
