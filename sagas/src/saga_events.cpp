#include "mnemo/sagas/saga_events.hpp"
#include "mnemo/sagas/saga_progress.hpp"

namespace mnemo::sagas {

void register_types(persistence::event_registry& types) {
  types.add<saga_started>("mnemo.saga.started");
  types.add<saga_step_completed>("mnemo.saga.step_completed");
  types.add<saga_step_failed>("mnemo.saga.step_failed");
  types.add<saga_compensating>("mnemo.saga.compensating");
  types.add<saga_compensation_done>("mnemo.saga.compensation_done");
  types.add<saga_compensation_failed>("mnemo.saga.compensation_failed");
  types.add<saga_completed>("mnemo.saga.completed");
  types.add<saga_aborted>("mnemo.saga.aborted");
  types.add<saga_needs_attention>("mnemo.saga.needs_attention");
  types.add<saga_event_received>("mnemo.saga.event_received");
  types.add<saga_event_ignored>("mnemo.saga.event_ignored");
  types.add<saga_progress>(saga_snapshot_type);
}

}  // namespace mnemo::sagas
