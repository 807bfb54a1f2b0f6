#pragma once

// The events of a saga's own stream: its progress, from which a restarted
// saga resumes where it stood.

#include <cstdint>
#include <string>
#include <variant>

#include <msgpack.hpp>

#include "mnemo/persistence/event_registry.hpp"

namespace mnemo::sagas {

/// The saga started with `data` (msgpack of the saga's data type).
struct saga_started {
  std::string data;
  /// Whole-saga deadline, ms since the epoch; 0 = none.
  int64_t deadline_ms = 0;
  /// Deadline of step 0; 0 = none.
  int64_t step_due_ms = 0;
  MSGPACK_DEFINE_MAP(data, deadline_ms, step_due_ms)
};

/// Step `step` succeeded; the next step's deadline is `next_due_ms`.
struct saga_step_completed {
  uint32_t step = 0;
  int64_t next_due_ms = 0;
  MSGPACK_DEFINE_MAP(step, next_due_ms)
};

/// Attempt `attempt` of step `step` failed with `error`; a retry is due at
/// `retry_at_ms`, or never (0: the step failed for good). `failing_since_ms`
/// is when its first attempt failed (for `retry_policy::keep_transient_for`;
/// 0 in events written before it existed).
struct saga_step_failed {
  uint32_t step = 0;
  uint32_t attempt = 0;
  std::string error;
  int64_t retry_at_ms = 0;
  int64_t failing_since_ms = 0;
  MSGPACK_DEFINE_MAP(step, attempt, error, retry_at_ms, failing_since_ms)
};

/// The saga gave up going forward: the `completed` steps before it are
/// compensated in reverse order.
struct saga_compensating {
  uint32_t completed = 0;
  std::string reason;
  MSGPACK_DEFINE_MAP(completed, reason)
};

/// The compensation of step `step` succeeded.
struct saga_compensation_done {
  uint32_t step = 0;
  MSGPACK_DEFINE_MAP(step)
};

/// Attempt `attempt` of the compensation of `step` failed; retry at
/// `retry_at_ms`, or never (0: the saga needs attention).
struct saga_compensation_failed {
  uint32_t step = 0;
  uint32_t attempt = 0;
  std::string error;
  int64_t retry_at_ms = 0;
  /// As in `saga_step_failed`.
  int64_t failing_since_ms = 0;
  MSGPACK_DEFINE_MAP(step, attempt, error, retry_at_ms, failing_since_ms)
};

/// The event at position `position` of `source`, delivered to the saga
/// through its inbox, decided step `step` (the events that follow in the
/// same batch say how). Recorded so that a redelivered event is recognised.
/// `source` is empty for the node's own journal (positions are global
/// positions) and names the log otherwise, e.g. "shard/3" in a replicated
/// cluster (positions are that shard's); absent in events written before
/// sources existed, which read as empty.
struct saga_event_received {
  uint64_t position = 0;
  uint32_t step = 0;
  std::string type;
  std::string source;
  MSGPACK_DEFINE_MAP(position, step, type, source)
};

/// The event at position `position` of `source` (as in
/// `saga_event_received`), delivered through the saga's inbox, concerned
/// no waiting step: the saga was at step `step` (running:
/// that step's `await` did not take it; otherwise: no step was waiting, as
/// `reason` says) and went on unchanged. Recorded so that the event is
/// visible in the saga's history instead of dropped, and so that a
/// redelivery is recognised.
struct saga_event_ignored {
  uint64_t position = 0;
  uint32_t step = 0;
  std::string type;
  std::string reason;
  std::string source;
  MSGPACK_DEFINE_MAP(position, step, type, reason, source)
};

/// Every step succeeded.
struct saga_completed {
  bool ok = true;
  MSGPACK_DEFINE_MAP(ok)
};

/// Every needed compensation succeeded after a failed step.
struct saga_aborted {
  std::string reason;
  MSGPACK_DEFINE_MAP(reason)
};

/// A compensation failed for good: an operator must look at the saga.
struct saga_needs_attention {
  uint32_t step = 0;
  std::string error;
  MSGPACK_DEFINE_MAP(step, error)
};

// New alternatives go at the end; events are stored by type name
// ("mnemo.saga.*"), so the order does not change the stored encoding.
using saga_event =
    std::variant<saga_started, saga_step_completed, saga_step_failed,
                 saga_compensating, saga_compensation_done,
                 saga_compensation_failed, saga_completed, saga_aborted,
                 saga_needs_attention, saga_event_received, saga_event_ignored>;

/// Registers the saga event types ("mnemo.saga.*") in `types`. Call once
/// per registry before spawning sagas.
void register_types(persistence::event_registry& types);

}  // namespace mnemo::sagas
