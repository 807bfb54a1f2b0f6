#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/event_envelope.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/transaction.hpp"

namespace mnemo::persistence {

class journal;

/// Identifies a snapshot: the stream, the sequence of the last event it
/// includes, and when it was taken.
struct snapshot_metadata {
  std::string stream_id;
  uint64_t sequence = 0;
  /// Microseconds since the Unix epoch; 0 on save means "now". Negative
  /// values are refused on save (`invalid_argument`), so every stored
  /// snapshot has a timestamp in [1, INT64_MAX] and `latest()` sees it.
  int64_t timestamp_us = 0;
};

/// A stored snapshot of an actor's state.
struct snapshot {
  snapshot_metadata meta;
  /// Registered type name of the state.
  std::string type;
  /// Schema version of `payload`.
  uint32_t schema_version = 1;
  /// The state, a msgpack map keyed by field name. Any size up to the map.
  std::vector<uint8_t> payload;
  /// Free-form metadata.
  event_metadata metadata;
};

/// Selects snapshots by sequence and timestamp ranges, both inclusive (the
/// Akka SnapshotSelectionCriteria). Every bound is usable as it is: a
/// snapshot at sequence 0 matches `max_sequence == 0`, one stamped
/// INT64_MAX matches `min_timestamp_us == INT64_MAX`. An empty range
/// (min above max) matches nothing.
struct snapshot_criteria {
  uint64_t max_sequence = std::numeric_limits<uint64_t>::max();
  int64_t max_timestamp_us = std::numeric_limits<int64_t>::max();
  uint64_t min_sequence = 0;
  int64_t min_timestamp_us = 0;

  /// Matches every snapshot.
  static snapshot_criteria latest() noexcept { return {}; }
  /// Matches no snapshot (recover from events only).
  static snapshot_criteria none() noexcept { return {0, 0, 0, 0}; }
  /// Returns whether `meta` lies inside both ranges.
  bool matches(const snapshot_metadata& meta) const noexcept {
    return meta.sequence >= min_sequence && meta.sequence <= max_sequence &&
           meta.timestamp_us >= min_timestamp_us &&
           meta.timestamp_us <= max_timestamp_us;
  }
};

/// Snapshots by (stream, sequence) in the journal's data directory.
/// Blocking members write through the journal's writer (one group commit)
/// and must not run on the writer thread; `*_in` members work inside a
/// transaction the caller already has. Reads may run on any thread.
class snapshot_store {
 public:
  /// Internal: made by the journal.
  explicit snapshot_store(journal& owner) noexcept : journal_(&owner) {}

  /// Stores `snap`, then keeps only the `keep` snapshots of its stream
  /// with the highest sequences (0: all of them), in one group commit;
  /// `done` runs once that is durable. A snapshot with the same stream and
  /// sequence is overwritten. A zero timestamp is replaced by the current
  /// time. Errors: `invalid_argument` (bad stream id, negative timestamp:
  /// it could never be selected), `storage_full`, `storage_error`,
  /// `journal_failed`, `journal_closed`.
  ///
  /// In a replicated journal (`journal_config::shard_of`), a snapshot of a
  /// shard's stream also joins the shard's log, as an event of type
  /// `mnemo.snapshot` in the stream `mnemo.shard/<shard>`, in the same
  /// commit: every replica of the shard stores it (and applies the same
  /// `keep`) when it applies that record, so a new leader's aggregates
  /// recover from it. The journal's gate admits it only where this member
  /// leads the shard (else `not_leader`, nothing stored), and `done` runs
  /// once a majority of the replicas hold it. Its sequence must not be
  /// past the stream's head here (`invalid_argument`): replicas store it
  /// right after the events it covers.
  void save(snapshot snap, size_t keep, write_handler done);
  /// Blocking `save(snap, 0, ...)`. Not from the writer thread.
  error save(snapshot snap);
  /// Stores `snap` inside `txn`, in this journal only: never replicated.
  static error save_in(write_txn& txn, snapshot snap);

  /// Returns the matching snapshot with the highest sequence (ties cannot
  /// happen), or nothing. Errors: `corrupt_record` naming stream and
  /// sequence; `storage_error`.
  expected<std::optional<snapshot>> load(
      std::string_view stream, const snapshot_criteria& criteria) const;
  /// `load` inside `txn`.
  static expected<std::optional<snapshot>> load_in(
      read_txn& txn, std::string_view stream,
      const snapshot_criteria& criteria);

  /// Deletes the snapshot of `stream` at `sequence`; deleting a missing one
  /// is not an error. Errors: as for `save`.
  error remove(std::string_view stream, uint64_t sequence);

  /// Deletes every snapshot of `stream` that `criteria` matches.
  error remove(std::string_view stream, const snapshot_criteria& criteria);
  /// `remove` by criteria inside `txn`.
  static error remove_in(write_txn& txn, std::string_view stream,
                         const snapshot_criteria& criteria);

  /// Keeps the `keep` snapshots of `stream` with the highest sequences and
  /// deletes the rest (keep-N retention). `keep == 0` deletes all.
  error retain(std::string_view stream, size_t keep);
  /// `retain` inside `txn`.
  static error retain_in(write_txn& txn, std::string_view stream, size_t keep);

  /// Returns the metadata of every snapshot of `stream`, oldest first.
  expected<std::vector<snapshot_metadata>> list(std::string_view stream) const;

  /// Returns the metadata of snapshots of all streams, ordered by stream
  /// then sequence, starting after (`after_stream`, `after_sequence`), at
  /// most `max`.
  expected<std::vector<snapshot_metadata>> list_all(
      std::string_view after_stream, uint64_t after_sequence, size_t max) const;

 private:
  journal* journal_;
};

}  // namespace mnemo::persistence
