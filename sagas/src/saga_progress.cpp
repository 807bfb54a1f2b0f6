#include "mnemo/sagas/saga_progress.hpp"

#include <algorithm>
#include <type_traits>

namespace mnemo::sagas {

const char* to_string(saga_phase x) noexcept {
  switch (x) {
    case saga_phase::fresh:
      return "new";
    case saga_phase::running:
      return "running";
    case saga_phase::compensating:
      return "compensating";
    case saga_phase::completed:
      return "completed";
    case saga_phase::aborted:
      return "compensated";
    case saga_phase::needs_attention:
      return "needs_attention";
  }
  return "unknown";
}

void saga_progress::apply(const saga_event& ev) {
  std::visit(
      [this](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, saga_started>) {
          phase = saga_phase::running;
          data = e.data;
          deadline_ms = e.deadline_ms;
          due_ms = e.step_due_ms;
          step = 0;
        } else if constexpr (std::is_same_v<T, saga_step_completed>) {
          step = e.step + 1;
          attempt = 0;
          failing_since_ms = 0;
          retry_at_ms = 0;
          due_ms = e.next_due_ms;
          error.clear();
        } else if constexpr (std::is_same_v<T, saga_step_failed> ||
                             std::is_same_v<T, saga_compensation_failed>) {
          attempt = e.attempt;
          error = e.error;
          retry_at_ms = e.retry_at_ms;
          failing_since_ms = e.failing_since_ms;
        } else if constexpr (std::is_same_v<T, saga_compensating>) {
          phase = saga_phase::compensating;
          step = e.completed;
          attempt = 0;
          failing_since_ms = 0;
          retry_at_ms = 0;
          due_ms = 0;
          error = e.reason;
        } else if constexpr (std::is_same_v<T, saga_compensation_done>) {
          step = e.step;
          attempt = 0;
          failing_since_ms = 0;
          retry_at_ms = 0;
        } else if constexpr (std::is_same_v<T, saga_completed>) {
          phase = saga_phase::completed;
        } else if constexpr (std::is_same_v<T, saga_aborted>) {
          phase = saga_phase::aborted;
        } else if constexpr (std::is_same_v<T, saga_event_received> ||
                             std::is_same_v<T, saga_event_ignored>) {
          // Deliveries of one source are judged in position order, so
          // positions only grow; max() keeps a repeat from ever moving one
          // back.
          auto& last = e.source.empty() ? last_event : last_of_source[e.source];
          last = std::max(last, e.position);
        } else {
          static_assert(std::is_same_v<T, saga_needs_attention>,
                        "saga_progress::apply must fold every saga event");
          phase = saga_phase::needs_attention;
          error = e.error;
        }
      },
      ev);
}

}  // namespace mnemo::sagas
