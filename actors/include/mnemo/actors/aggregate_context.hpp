#pragma once

#include <cstddef>
#include <cstdint>

#include <caf/atom.hpp>

#include "mnemo/persistence/event_registry.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/runtime/completion_sink.hpp"
#include "mnemo/runtime/node_config.hpp"

namespace mnemo::actors {

/// Sends a command: `(command_atom, command_id, command)`; the reply is the
/// aggregate's `reply` type or an error. An empty command id disables
/// idempotency for that command.
using command_atom = caf::atom_constant<caf::atom("mn_command")>;

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

/// What an aggregate actor needs from its node. The pointees must outlive
/// the actor.
struct aggregate_context {
  persistence::journal* journal = nullptr;
  const persistence::event_registry* registry = nullptr;
  runtime::completion_sink* completions = nullptr;
  aggregate_options options;
};

}  // namespace mnemo::actors
