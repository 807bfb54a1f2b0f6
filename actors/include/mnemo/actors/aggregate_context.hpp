#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/atom.hpp>

#include "mnemo/persistence/event_registry.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/runtime/completion_sink.hpp"
#include "mnemo/runtime/metrics.hpp"
#include "mnemo/runtime/node_config.hpp"

namespace mnemo::actors {

/// Sends a command: `(command_atom, command_id, command)`; the reply is the
/// aggregate's `reply` type or an error. An empty command id disables
/// idempotency for that command.
using command_atom = caf::atom_constant<caf::atom("mn_command")>;

/// `(state_atom)` -> `(state, version)`: the aggregate's state and the
/// sequence of its last event (0 for none); `(caf::get_atom)` -> `state`.
using state_atom = caf::atom_constant<caf::atom("mn_state")>;

/// Internal: a journal append finished (`ticket`).
using persisted_atom = caf::atom_constant<caf::atom("mn_persist")>;

/// Internal: continue recovery with the next chunk of events.
using recover_atom = caf::atom_constant<caf::atom("mn_recover")>;

/// Per-aggregate behaviour settings.
struct aggregate_options {
  /// Snapshot every N events; 0 disables snapshots. Default: 0.
  uint64_t snapshot_every = 0;
  /// Snapshots kept per aggregate (keep-K). Default: 2.
  size_t snapshot_keep = 2;
  /// After a snapshot, delete the events covered by the oldest kept
  /// snapshot. Default: false.
  bool delete_events_on_snapshot = false;
  /// Commands buffered while recovering or persisting. Default: 10000.
  size_t stash_limit = 10000;
  /// Command ids remembered for idempotency (newest first); older ids are
  /// forgotten. Default: 1000.
  size_t processed_window = 1000;
  /// Events read per recovery step. Default: 1000.
  size_t recovery_chunk = 1000;

  /// Returns the options a node's configuration sets (snapshot policy and
  /// stash limit); the others keep their defaults.
  static aggregate_options from(const runtime::node_config& cfg) {
    aggregate_options result;
    result.snapshot_every = cfg.snapshot_every;
    result.snapshot_keep = cfg.snapshot_keep;
    result.delete_events_on_snapshot = cfg.delete_events_on_snapshot;
    result.stash_limit = cfg.stash_limit;
    return result;
  }
};

/// Where the aggregates of one type count their commands and recoveries;
/// null members are not counted. The pointees live in a `runtime::metrics`.
struct aggregate_metrics {
  /// Commands that persisted events or were answered without any.
  runtime::metric_counter* accepted = nullptr;
  /// Commands the aggregate rejected (business errors).
  runtime::metric_counter* rejected = nullptr;
  /// Commands that failed: the handler threw or the journal failed.
  runtime::metric_counter* failed = nullptr;
  /// Commands answered from the idempotency record.
  runtime::metric_counter* duplicate = nullptr;
  /// Seconds from activation to recovered.
  runtime::metric_histogram* recovery_seconds = nullptr;

  /// Returns the instruments of aggregate type `type` in `m`:
  /// `mnemo_commands_total{aggregate,outcome}` and
  /// `mnemo_recovery_seconds{aggregate}`.
  static std::shared_ptr<const aggregate_metrics> in(runtime::metrics& m,
                                                     const std::string& type) {
    auto result = std::make_shared<aggregate_metrics>();
    auto outcome = [&](const char* what) {
      return &m.counter("mnemo_commands_total",
                        "Commands handled by aggregates, by outcome.",
                        {{"aggregate", type}, {"outcome", what}});
    };
    result->accepted = outcome("accepted");
    result->rejected = outcome("rejected");
    result->failed = outcome("failed");
    result->duplicate = outcome("duplicate");
    result->recovery_seconds = &m.histogram(
        "mnemo_recovery_seconds",
        "Time from an aggregate's activation to its recovered state.",
        {{"aggregate", type}},
        {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
         2.5, 5});
    return result;
  }
};

/// What an aggregate actor needs from its node. The pointees must outlive
/// the actor.
struct aggregate_context {
  persistence::journal* journal = nullptr;
  const persistence::event_registry* registry = nullptr;
  runtime::completion_sink* completions = nullptr;
  aggregate_options options;
  /// Command and recovery counters; none if null.
  std::shared_ptr<const aggregate_metrics> metrics;
};

}  // namespace mnemo::actors
