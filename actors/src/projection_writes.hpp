#pragma once

// How a projection writes (private to the actors module), in three pieces
// the projection actor composes:
// - `batch_handling`: where its handler runs: inside the write that stores
//   the offset (exactly-once), or in the actor before it (at-least-once);
// - `write_plan`: how its batches reach the journal: in their own
//   transactions, up to `depth` of them in flight, and for live events of
//   this node's journal in the commit that writes them (projection_tail.hpp);
//   derived once from the handling, the source and the options;
// - `write_queue`: the writes handed to the journal, oldest first, and the
//   one bridge from the writer thread back into the actor.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <caf/actor.hpp>
#include <caf/atom.hpp>

#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/runtime/completion_sink.hpp"
#include "projection_apply.hpp"

namespace mnemo::actors::detail {

/// Told to the projection when a write of its queue completed.
using written_atom = caf::atom_constant<caf::atom("mn_written")>;

/// A projection's handler and filter.
class batch_handling {
 public:
  explicit batch_handling(const projection_spec& spec)
      : apply_{spec.apply, spec.apply_group},
        effect_(spec.effect),
        filter_(spec.filter),
        group_size_(std::max<size_t>(spec.options.group_size, 1)) {}

  /// Exactly-once: the read model changes in the write that stores the
  /// offset.
  bool in_transaction() const { return static_cast<bool>(apply_); }

  const exactly_once_apply& apply() const { return apply_; }
  const projection_filter& filter() const { return filter_; }

  /// At-least-once: runs the handler on the matching events of `batch` in
  /// groups of `group_size`; a failed group is run again one event at a
  /// time to find the culprit. Returns how many events are done and the
  /// failure's text. Exactly-once: runs nothing, all are done.
  std::pair<size_t, std::string> before_write(const envelopes& batch) const;

  /// Exactly-once: runs the handler on the matching events of `batch`
  /// inside `txn` (a group handler one event per call with `singly`); a
  /// failure is described in `failed`. At-least-once: nothing.
  persistence::error in_write(persistence::write_txn& txn,
                              const envelopes& batch, bool singly,
                              std::optional<apply_failure>& failed) const {
    if (!apply_) return {};
    return apply_events(txn, batch, apply_, filter_, singly, failed);
  }

  /// A parked event again, whatever the filter says now: the at-least-once
  /// handler here (returns its failure's text, empty if it passed), or
  /// nothing for exactly-once (see `retry_in`).
  std::string retry_before(const persistence::event_envelope& env) const;

  /// The exactly-once handler on a parked event, inside `txn`.
  persistence::error retry_in(persistence::write_txn& txn,
                              const persistence::event_envelope& env) const {
    if (!apply_) return {};
    std::optional<apply_failure> failed;
    return apply_events(txn, {env}, apply_, {}, false, failed);
  }

 private:
  exactly_once_apply apply_;
  at_least_once_handler effect_;
  projection_filter filter_;
  size_t group_size_;
};

/// How a projection's batches reach the journal.
struct write_plan {
  /// Live events are handled in the group commit that writes them (tail
  /// writes): exactly-once handling of this node's journal, `in_commit`.
  bool in_commit = false;
  /// Batch writes in flight at most: `write_pipeline` for exactly-once
  /// handling of this node's journal (read synchronously ahead of the
  /// writes), else 1.
  size_t depth = 1;
  /// Events per read and per write.
  size_t batch_size = 1;
  /// `write_interval`.
  std::chrono::milliseconds interval{0};

  static write_plan of(const projection_options& options, bool in_transaction,
                       bool local) {
    write_plan plan;
    plan.in_commit = in_transaction && local && options.in_commit;
    plan.depth = in_transaction && local
                     ? std::max<size_t>(options.write_pipeline, 1)
                     : 1;
    plan.batch_size = std::max<size_t>(options.batch_size, 1);
    plan.interval = options.write_interval;
    return plan;
  }
};

/// What a write on the writer thread reports back.
struct write_outcome {
  persistence::error err;
  /// Exactly-once: the handler failure that rolled the write back.
  std::optional<apply_failure> failed;
};

/// Where a write's outcome lands: filled on the journal's threads (a
/// handler failure by the write function, the commit's error by its
/// completion), read by the actor once `done` is set.
struct write_slot {
  std::optional<write_outcome> outcome;
  std::atomic<bool> done{false};
};

using outcome_slot = std::shared_ptr<write_slot>;

inline outcome_slot make_slot() {
  return std::make_shared<write_slot>();
}

/// The writes a projection handed to the journal, oldest first. Each
/// completion posts `written_atom` to the projection, which then runs the
/// `done` of the writes that completed, in submission order.
class write_queue {
 public:
  using done_fn = std::function<void(write_outcome)>;

  write_queue(persistence::journal* journal, runtime::completion_sink* sink)
      : journal_(journal), sink_(sink) {}

  /// Hands `fn` to the journal; its outcome lands in `slot` (where `fn`
  /// may record a handler failure). `last`: the offset a batch write
  /// stores; none for a control write.
  void submit(const caf::actor& self, persistence::write_function fn,
              outcome_slot slot, std::optional<uint64_t> last, done_fn done);

  /// Runs the `done` of the completed writes at the front, oldest first
  /// (they may submit more).
  void drain();

  bool empty() const { return writes_.empty(); }
  size_t size() const { return writes_.size(); }

  /// Every write in flight writes a batch (reads may go ahead of them).
  bool only_batches() const { return batches_ == writes_.size(); }

  /// The offset the newest batch write in flight stores, if any.
  std::optional<uint64_t> last_position() const;

 private:
  struct pending {
    outcome_slot slot;
    std::optional<uint64_t> last;
    done_fn done;
  };

  persistence::journal* journal_;
  runtime::completion_sink* sink_;
  std::deque<pending> writes_;
  size_t batches_ = 0;
};

}  // namespace mnemo::actors::detail
