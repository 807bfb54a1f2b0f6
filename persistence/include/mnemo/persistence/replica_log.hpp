#pragma once

// The journal's one interface for replication (docs/replication.md). In a
// replicated cluster every member keeps one journal, as every node does;
// each event of a stream that belongs to a shard (journal_config::shard_of)
// also takes the next position of that shard's log, in the same commit. A
// shard's log has the same positions and records on every replica (stream,
// sequence, event id, commit time, metadata, payload); only the global
// positions of the member's journal, which interleave all its shards, are
// its own. A leader reads batches of a shard's records; a follower applies
// them at the same shard positions; an epoch history records which leader
// epoch wrote which positions, and a replica truncates what it holds past
// the point where its history and the new leader's part (Kafka's
// leader-epoch truncation, KIP-101). The journal knows nothing of the
// network or of etcd; the cluster knows nothing of LMDB.

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/journal.hpp"

namespace mnemo::persistence {

/// Consecutive records of a shard's log, all written in one leader epoch.
struct log_batch {
  /// The epoch of the leader that first wrote these records.
  uint64_t epoch = 0;
  /// Shard position of the first record (the others follow without gaps).
  uint64_t first_position = 0;
  /// The event records as stored (docs/format.md, section 3), checksummed,
  /// with the original commit time, but with the back link to the previous
  /// event of the stream set to 0: that is a global position of the
  /// journal that holds it, which each replica sets for itself.
  std::vector<std::string> records;

  /// Position after the last record.
  uint64_t end_position() const noexcept {
    return first_position + records.size();
  }
  /// Bytes of the records.
  size_t bytes() const noexcept;
};

/// What a replicated journal asks before it acknowledges an append to a
/// shard's stream (journal_config::gate): the replication layer answers
/// once the shard's leader has the append on a majority of the shard's
/// replicas, or refuses it. Thread safety: called from any thread.
class replication_gate {
 public:
  virtual ~replication_gate() = default;

  /// Called on the appending thread before an append to a stream of
  /// `shard` is queued: the epoch in which this member leads the shard, or
  /// an error (it does not lead it) that fails the append at once, writing
  /// nothing. The writer checks the epoch again inside its transaction:
  /// an append admitted in an epoch that is no longer the shard's newest
  /// here, or below its promise, fails with `not_leader`, writing nothing.
  virtual expected<uint64_t> admit(uint32_t shard) = 0;

  /// Called on the journal's completer thread once an append admitted in
  /// `epoch` is durable here and ends at `position` of the shard's log.
  /// Must fail it unless the shard is still led here in `epoch`. Must call
  /// `release`
  /// exactly once: without an error once a majority of the shard's
  /// replicas hold the log up to `position` durably (the append is then
  /// acknowledged), or with the error the append then fails with (e.g.
  /// leadership lost: the outcome is unknown to the caller until it asks
  /// the new leader, with the same event ids). Short; must not block.
  virtual void wait_committed(uint32_t shard, uint64_t epoch,
                              uint64_t position,
                              std::function<void(error)> release) = 0;
};

/// Where an epoch begins in a log: records from `start_position` on (up to
/// the next entry's start) were written by the leader of `epoch`.
struct epoch_start {
  uint64_t epoch = 0;
  uint64_t start_position = 0;
  friend bool operator==(const epoch_start& a, const epoch_start& b) noexcept {
    return a.epoch == b.epoch && a.start_position == b.start_position;
  }
};

/// `replica_log::digest`: the position of the last event hashed (the
/// log's end, or `to`), the hash, and the epoch history.
struct log_digest {
  uint64_t end = 0;
  uint64_t value = 0;
  std::vector<epoch_start> epochs;
  friend bool operator==(const log_digest& a, const log_digest& b) noexcept {
    return a.end == b.end && a.value == b.value;
  }
};

/// What a log answers when asked where an epoch ends (Kafka's
/// OffsetsForLeaderEpoch).
struct epoch_end {
  /// The greatest epoch of the log that is <= the one asked for (0 if the
  /// log has none that old).
  uint64_t epoch = 0;
  /// The last position written in that epoch: the position before the next
  /// epoch's start, or the log's end for its current epoch (0 if none).
  uint64_t last_position = 0;
};

/// One shard's log in a journal opened with `journal_config::shard_of`.
/// Cheap to construct; the journal must outlive it. Thread safety: as the
/// journal's.
///
/// The events of a shard's streams take no `delete_events_to` (the log
/// would have holes that cannot be shipped); the leader's own events join
/// the log through `journal::append` after `begin_epoch`.
class replica_log {
 public:
  replica_log(journal& j, uint32_t shard) noexcept
      : journal_(&j), shard_(shard) {}

  uint32_t shard() const noexcept { return shard_; }

  /// Shard position of the newest record (0 for an empty log).
  /// Errors: storage errors.
  expected<uint64_t> end_position() const;

  /// Records from shard position `from_position` on, at most `max_records`
  /// and about `max_bytes` (at least one record when there is one),
  /// stopping at the end of the epoch of the first record. Empty (epoch 0)
  /// past the end. Errors: `not_found` when a record in range was deleted
  /// (the log has a hole and cannot be shipped from there),
  /// `corrupt_record`, `storage_error`.
  expected<log_batch> read(uint64_t from_position, size_t max_records,
                           size_t max_bytes) const;

  /// The events at shard positions `from_position` to `last_position`
  /// (inclusive), at most `max_events`, decoded, in shard order, each with
  /// `position` set to its shard position (not the journal's global one):
  /// what a read model of the shard follows. Empty past the log's end.
  /// Errors: as `read`.
  expected<std::vector<event_envelope>> events(uint64_t from_position,
                                               uint64_t last_position,
                                               size_t max_events) const;

  /// Appends `batch` at its shard positions (each record at the journal's
  /// next global position), in the next group commit, on behalf of the
  /// leader of `leader_epoch`, and calls `done` once durable.
  /// Refused, writing nothing: `stale_epoch` if this replica promised a
  /// greater epoch (`promised_epoch`) or the batch's epoch is greater than
  /// `leader_epoch`; `log_mismatch` if the batch does not start right
  /// after this log's end, is of an older epoch than the log's newest, or
  /// a record does not continue its stream (sequence or back link);
  /// `corrupt_record` for a damaged record. On success the promise becomes
  /// `leader_epoch` and a batch of a new epoch starts an epoch entry.
  /// An empty batch only records the promise. `commit`, the leader's
  /// commit point the batch carried, is kept up to the log's end after the
  /// batch (`committed`), in the same commit.
  void apply(log_batch batch, uint64_t leader_epoch, write_handler done,
             uint64_t commit = 0);

  /// Blocking form of `apply`. Not from the writer thread.
  error apply(log_batch batch, uint64_t leader_epoch, uint64_t commit = 0);

  /// A new leader's first step: records that shard positions from
  /// `end_position() + 1` on belong to `epoch` (and promises it). Refused
  /// with `stale_epoch` unless `epoch` is greater than every epoch of the
  /// history and not below the promise (a leader promises its own epoch
  /// before it gathers its replicas' logs; epochs come from etcd, which
  /// gives each to one leader only). Blocking.
  error begin_epoch(uint64_t epoch);

  /// Appends the epoch marker: an event of stream `mnemo.shard/<shard>`
  /// (type `mnemo.epoch_started`, payload {"epoch": epoch}) at the shard
  /// log's end, without asking the gate. A new leader's first record: a
  /// leader counts only records of its own epoch towards its commit point,
  /// so committing the marker commits every older record before it (Raft's
  /// no-op entry). Blocking; returns the marker's shard position.
  expected<uint64_t> append_marker(uint64_t epoch);

  /// Removes every record after shard position `position` (nothing if the
  /// log ends there or before), with what indexes them: stream heads go
  /// back, event ids, tags and snapshots past the new heads go, epochs
  /// that start after `position` leave the history. The journal's global
  /// positions of the removed events stay unused. Blocking.
  /// Errors: `invalid_argument` if events were deleted from a stream past
  /// `position` (its head could not be restored), storage errors.
  error truncate_after(uint64_t position);

  /// Removes this replica's whole copy of the shard, newest records first,
  /// at most `chunk` records per commit (other writes go on between them):
  /// what `truncate_after(0)` removes, committed records included, for a
  /// member that is no replica of the shard any more (its replicas keep
  /// them); the committed point follows the kept records down. The promise
  /// (`promised_epoch`) stays, so a leader of an older epoch still cannot
  /// write here, and a later copy starts again from position 1.
  ///
  /// Before each chunk `permit` reads the promise, then checks that the
  /// member may drop the copy (e.g. etcd's voters, read after the promise,
  /// do not name it), and returns the promise it read, or nothing to stop.
  /// The chunk commits only if the promise and the log's end are still
  /// what they were: a leader that syncs this copy promises its epoch
  /// first, so a copy made a replica again (an abort, a re-add) after the
  /// check loses nothing it acknowledged; the drop stops there, leaving a
  /// prefix of the log. Blocking. Returns the number of records removed.
  /// Errors: those of `truncate_after`.
  expected<uint64_t> drop(
      uint64_t chunk, const std::function<std::optional<uint64_t>()>& permit);

  /// The epoch history, oldest first.
  expected<std::vector<epoch_start>> epochs() const;

  /// The greatest leader epoch this replica accepted (durable: survives a
  /// restart), 0 if none.
  expected<uint64_t> promised_epoch() const;

  /// Where `epoch` ends in this log (see `epoch_end`).
  expected<epoch_end> end_of(uint64_t epoch) const;

  /// Whether this replica of the shard is a *learner*: its member's data
  /// was replaced (a wiped or new directory of a member the cluster knew),
  /// so its log may lack records that were acknowledged with the lost
  /// copy's help. The replication layer does not count a learner in a new
  /// leader's majority until it caught up with the commit point of a leader
  /// of at least the epoch returned (the shard's epoch when it was marked:
  /// an older leader may have been deposed without knowing it;
  /// docs/replication.md). Durable (mnemo.meta); nothing unless marked.
  expected<std::optional<uint64_t>> learner() const;
  /// Clears the flag (`learner` false), durably, in the next group commit;
  /// `done` runs once it is durable. (`true` marks it with epoch 0.)
  void set_learner(bool learner, write_handler done);
  /// Marks shards as learners in one commit, each with the least epoch of
  /// a leader that may make it a voter again. Blocking.
  static error mark_learners(
      journal& j, const std::vector<std::pair<uint32_t, uint64_t>>& shards);

  /// The log's end and a 64-bit FNV-1a digest of every event up to shard
  /// position `to` (or the end), over what replicas share: each event's
  /// shard position, id, stream, sequence, type, schema version, commit
  /// time, correlation and causation ids, tags, metadata and payload (not
  /// the global positions nor the back links, which are each replica's
  /// own), with the epoch history, all read in one transaction. Two
  /// replicas with the same digest at the same end hold the same log
  /// there. Reads the whole log: for checks, not hot paths.
  expected<log_digest> digest(
      uint64_t to = std::numeric_limits<uint64_t>::max()) const;

  /// The greatest commit point of a leader this replica learnt with a
  /// batch, up to what it held then (0 if none): records up to it are
  /// committed, so read models of the shard log may follow them after a
  /// restart before any leader speaks again. Durable (mnemo.meta).
  expected<uint64_t> committed() const;
  /// `committed` of every shard this journal holds one of.
  static expected<std::map<uint32_t, uint64_t>> committed_points(
      const journal& j);

  /// The identity of the journal's directory (a UUID, as text), made when
  /// the directory was created: a member whose directory was wiped comes
  /// back with another one. Empty for a directory of an older version
  /// opened read-only.
  static std::string replica_id(const journal& j);

 private:
  journal* journal_;
  uint32_t shard_;
};

/// `replica_log::end_of` computed from another replica's epoch history and
/// end (as a replica answers them).
epoch_end end_of_epoch(const std::vector<epoch_start>& history,
                       uint64_t log_end, uint64_t epoch);

/// The position after which a follower must truncate before it follows a
/// leader (Kafka's KIP-101, iterated as KIP-279 does), from both logs'
/// epoch histories and ends. Starting from the follower's newest epoch
/// `e`: the leader's greatest epoch `e' <= e`; the follower's greatest
/// epoch `f <= e'`; if `f == e'`, both wrote `e'` and agree on it up to the
/// smaller of their two ends of it, which is the answer; otherwise the
/// follower holds nothing of `e'` and the search goes on from `f`. Past the
/// answer the follower holds what no majority acknowledged.
uint64_t truncation_point(const std::vector<epoch_start>& follower_epochs,
                          uint64_t follower_end,
                          const std::vector<epoch_start>& leader_epochs,
                          uint64_t leader_end);

}  // namespace mnemo::persistence
