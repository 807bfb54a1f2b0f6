#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <caf/meta/type_name.hpp>

#include "mnemo/sagas/saga_events.hpp"

namespace mnemo::sagas {

/// Where a saga stands.
enum class saga_phase : uint8_t {
  /// No event yet: never started. A saga is in this phase while an event
  /// addressed to it waits for its start, or when its status is asked for
  /// an id that was never started (status "new").
  fresh,
  running,
  compensating,
  completed,
  /// Compensated: a step failed for good and every completed step was
  /// undone.
  aborted,
  /// A compensation failed for good.
  needs_attention,
};

/// Returns "new", "running", "compensating", "completed", "compensated" or
/// "needs_attention".
const char* to_string(saga_phase x) noexcept;

/// Returns whether a saga in phase `x` has nothing left to do.
inline bool finished(saga_phase x) noexcept {
  return x == saga_phase::completed || x == saga_phase::aborted ||
         x == saga_phase::needs_attention;
}

/// The state of a saga, folded from its events.
struct saga_progress {
  saga_phase phase = saga_phase::fresh;
  /// The saga's data (msgpack).
  std::string data;
  int64_t deadline_ms = 0;
  /// Running: the current step. Compensating: the number of completed steps
  /// still to compensate (the next one is `step - 1`).
  uint32_t step = 0;
  /// Failed attempts of the current step or compensation.
  uint32_t attempt = 0;
  /// Deadline of the current step; 0 = none.
  int64_t due_ms = 0;
  /// When the next attempt is due; 0 = now.
  int64_t retry_at_ms = 0;
  /// When the first attempt of the current step or compensation failed;
  /// 0 = none failed (or recorded before this was kept).
  int64_t failing_since_ms = 0;
  /// The last failure, or the reason of the compensation.
  std::string error;
  /// Global position of the last event of the node's own journal delivered
  /// through the saga's inbox that the saga recorded (it decided a step, or
  /// was ignored); deliveries at or below it are repeats.
  uint64_t last_event = 0;
  /// The same for the events of other logs, by source (e.g. "shard/3" in a
  /// replicated cluster): positions are per source.
  std::map<std::string, uint64_t> last_of_source;

  /// The last recorded position of `source` ("" = the node's journal).
  uint64_t last_event_of(const std::string& source) const {
    if (source.empty()) return last_event;
    auto i = last_of_source.find(source);
    return i == last_of_source.end() ? 0 : i->second;
  }

  /// Folds `ev` into this progress.
  void apply(const saga_event& ev);

  // A saga's snapshot ("mnemo.sagasnap.progress", saga_context::
  // snapshot_every) is its progress.
  MSGPACK_DEFINE_MAP(phase, data, deadline_ms, step, attempt, due_ms,
                     retry_at_ms, failing_since_ms, error, last_event,
                     last_of_source)
};

/// The type name of a saga's snapshot in the event registry.
constexpr const char* saga_snapshot_type = "mnemo.sagasnap.progress";

/// What a saga answers to `start_atom` and `status_atom`.
struct saga_status {
  std::string id;
  /// `to_string(saga_phase)`.
  std::string status;
  uint32_t step = 0;
  uint32_t attempt = 0;
  std::string error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, saga_status& x) {
  return f(caf::meta::type_name("saga_status"), x.id, x.status, x.step,
           x.attempt, x.error);
}

}  // namespace mnemo::sagas

MSGPACK_ADD_ENUM(mnemo::sagas::saga_phase);
