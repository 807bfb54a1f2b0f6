#pragma once

// Tail writes of an exactly-once projection (private to the actors module):
// the live handler runs inside the group commit that writes the events,
// after them, instead of one commit later.

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/send.hpp>

#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/offset_store.hpp"
#include "mnemo/runtime/completion_sink.hpp"
#include "projection_apply.hpp"

namespace mnemo::actors::detail {

using tail_atom = caf::atom_constant<caf::atom("mn_tail")>;

/// What one tail write reports back; written on the writer thread.
struct tail_outcome {
  /// The handler's or the commit's error.
  persistence::error err;
  /// Events read after the offset (matching the filter or not) and handled;
  /// 0 if none or if the write failed.
  size_t handled = 0;
  /// Position of the last handled event, the new offset.
  uint64_t last = 0;
  /// A handler failed: the events read of the filter's streams and the
  /// failure (its index among them). Nothing of the batch was written.
  std::optional<apply_failure> failed;
  std::vector<persistence::event_envelope> batch;
  /// The next tail write of the chain was submitted.
  bool more = false;
};

/// A chain of tail writes: while a tail write handles events and the actor
/// has not asked to stop, its completion (on the writer thread) submits the
/// next one at once, so it joins the very next group commit. Shared by the
/// actor and the writer thread.
struct tail_chain {
  persistence::journal* journal = nullptr;
  runtime::completion_sink* sink = nullptr;
  /// The projection actor, told `tail_atom` per completed tail write.
  caf::actor owner;
  std::string name;
  exactly_once_apply apply;
  projection_filter filter;
  size_t batch_size = 0;
  /// End the chain after a tail write that handled a full batch: the
  /// projection is behind, and catches up off the writer thread.
  bool ends_when_full = false;
  /// End the chain after every tail write: the actor paces the next one
  /// (`projection_options::write_interval`).
  bool ends_each_write = false;
  /// Set by the actor: end the chain after the tail write in flight.
  std::atomic<bool> stop{false};
  /// Completed tail writes, oldest first, not yet seen by the actor.
  std::mutex mtx;
  std::deque<tail_outcome> done;
};

using tail_chain_ptr = std::shared_ptr<tail_chain>;

/// Submits the tail write that handles the events after `offset`. The
/// caller has called `chain->sink->expect()` for it.
void submit_tail(const tail_chain_ptr& chain, uint64_t offset);

}  // namespace mnemo::actors::detail
