#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/event_envelope.hpp"
#include "mnemo/persistence/journal_config.hpp"
#include "mnemo/persistence/transaction.hpp"

namespace mnemo::persistence {

class snapshot_store;
struct snapshot;
class offset_store;
class dead_letter_store;
struct stream_export;
struct import_info;

/// The version a caller expects a stream to have before its append
/// (optimistic concurrency).
class expected_version {
 public:
  /// Accept whatever the stream's version is.
  static expected_version any() noexcept {
    return expected_version{kind::any, 0};
  }
  /// The stream must not exist yet (version 0).
  static expected_version no_stream() noexcept {
    return expected_version{kind::exact, 0};
  }
  /// The stream's highest sequence must be exactly `version` (0 means the
  /// stream must not exist).
  static expected_version exact(uint64_t version) noexcept {
    return expected_version{kind::exact, version};
  }
  /// Returns whether this is `any()`.
  bool is_any() const noexcept { return kind_ == kind::any; }
  /// Returns the expected version. Precondition: `!is_any()`.
  uint64_t value() const noexcept { return value_; }

 private:
  enum class kind { any, exact };
  expected_version(kind k, uint64_t v) noexcept : kind_(k), value_(v) {}
  kind kind_;
  uint64_t value_;
};

/// Where one appended event landed.
struct event_ref {
  event_id id;
  uint64_t sequence = 0;
  uint64_t position = 0;
};

/// The outcome of a successful append.
struct append_result {
  /// One entry per event of the batch, in batch order.
  std::vector<event_ref> events;
  /// True if every event id was already stored (an idempotent retry): the
  /// refs are the original ones and nothing was written.
  bool duplicate = false;
  /// Highest sequence of the stream after the append.
  uint64_t stream_version = 0;
  /// In a journal with shard logs (journal_config::shard_of), the shard
  /// log position of the batch's last event; for a duplicate, the shard
  /// log's end when it was found (its events are at or before it). 0 for a
  /// stream of no shard.
  uint64_t shard_position = 0;
};

/// A stream and its head.
struct stream_head {
  std::string stream_id;
  /// Highest sequence ever written (never lowered by deletion).
  uint64_t highest_sequence = 0;
  /// Events with sequence <= this were deleted.
  uint64_t deleted_to = 0;
};

/// Completion callback of an asynchronous append. Runs on the journal's
/// completer thread after the commit is durable, in commit order, while the
/// writer thread goes on with the next commit: it should be short and must
/// not call blocking journal functions (post the result to an actor or
/// promise; appending more without waiting is fine).
using append_handler = std::function<void(expected<append_result>)>;

/// Completion callback of `write` and `delete_events_to`. Runs on the
/// writer thread after the commit is durable (so that it can queue the next
/// write in time for the next commit), before the append callbacks of that
/// commit; same rules as `append_handler`.
using write_handler = std::function<void(error)>;

/// A unit of work run inside the writer's transaction by `write`. Returning
/// an error rolls back everything it wrote and nothing else.
using write_function = std::function<error(write_txn&)>;

/// A read-only unit of work run by `read`.
using read_function = std::function<error(read_txn&)>;

/// Counters of the journal's writer since it was opened: what `/metrics`
/// endpoints export. Histograms are per bucket (not cumulative); the last
/// bucket counts everything above the last bound.
struct journal_stats {
  /// Upper bounds of the events-per-commit buckets.
  static constexpr std::array<uint64_t, 13> batch_bounds{
      1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384};
  /// Upper bounds (microseconds) of the commit-duration buckets; a commit's
  /// duration is that of `mdb_txn_commit`, which holds the fsync.
  static constexpr std::array<uint64_t, 14> commit_bounds_us{
      50,    100,   250,   500,    1000,   2500,   5000,
      10000, 25000, 50000, 100000, 250000, 500000, 1000000};

  /// Write transactions committed.
  uint64_t commits = 0;
  /// Write transactions that failed (the requests in them got the error).
  uint64_t failed_commits = 0;
  /// Requests (appends, deletions, writes) answered by successful commits.
  uint64_t requests = 0;
  /// Events written (idempotent duplicates not counted).
  uint64_t events = 0;
  /// Times the memory map grew.
  uint64_t map_grows = 0;
  /// Times the stream heads or the read-model tables were rewritten densely
  /// (a group commit does that when one of them is small, has grown by a
  /// quarter, and its pages are less than three quarters full).
  uint64_t compactions = 0;
  /// Times the head log was folded into the stream heads (every few dozen
  /// commits, and by commits that change heads without appending).
  uint64_t head_folds = 0;
  /// Events per committed transaction that wrote events.
  std::array<uint64_t, batch_bounds.size() + 1> batch_events{};
  /// Durations of the commits.
  std::array<uint64_t, commit_bounds_us.size() + 1> commit_us{};
  /// Sum of the commit durations in microseconds.
  uint64_t commit_us_sum = 0;
};

/// Called on the writer thread after each commit with the new head position.
using commit_listener = std::function<void(uint64_t head_position)>;

/// The event journal of one data directory: an LMDB environment, a single
/// group-committing writer thread, a completer thread that runs the append
/// callbacks, and lock-free readers.
///
/// Thread safety: every member function may be called from any thread
/// concurrently, except the blocking ones (documented) from inside a
/// handler or listener, which would deadlock.
class journal {
 public:
  /// Opens (creating if missing, unless read-only) the journal in
  /// `cfg.directory` and starts its writer thread.
  /// Errors: `invalid_argument` (empty directory), `format_mismatch` (not a
  /// mnemo directory, or another format version), `storage_error` (LMDB or
  /// file-system failure, with the LMDB text and the operation),
  /// `directory_in_use` (a writer in another process holds the directory,
  /// or this process already has it open, writable or read-only: LMDB allows
  /// one environment per directory and process, so share that journal).
  static expected<std::unique_ptr<journal>> open(journal_config cfg);

  /// Finishes every queued request, stops the writer and closes the
  /// environment. Requests made after destruction began fail with
  /// `journal_closed`.
  ~journal();

  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;

  /// Appends `events` to `stream` atomically and calls `done` once the group
  /// commit holding them is durable (per the durability mode).
  ///
  /// Assigns sequences highest+1.. and global positions head+1.. . The whole
  /// batch is written or none of it. If every event id is already stored in
  /// `stream` in this order, nothing is written and the original refs are
  /// returned with `duplicate` set, whatever `expected` says.
  /// Errors passed to `done`: `invalid_argument` (empty batch, bad stream id
  /// or tag), `version_conflict` (with detail), `duplicate_event_id` (some
  /// ids stored, or stored in another stream), `storage_full`,
  /// `storage_error`, `journal_failed` (sticky, after a failed commit),
  /// `journal_closed`.
  void append(std::string stream, std::vector<new_event> events,
              expected_version expected, append_handler done);

  /// Blocking form of `append`. Not from the writer thread.
  expected<append_result> append(std::string stream,
                                 std::vector<new_event> events,
                                 expected_version expected);

  /// Deletes the events of `stream` with sequence <= `to_sequence` (capped
  /// at the highest sequence). They disappear from every read; the highest
  /// sequence is never lowered. Errors: as for `append`, minus conflicts;
  /// `invalid_argument` for a stream of a shard (`journal_config::shard_of`):
  /// a shard's log is replicated whole.
  void delete_events_to(std::string stream, uint64_t to_sequence,
                        write_handler done);

  /// Blocking form of `delete_events_to`. Not from the writer thread.
  error delete_events_to(std::string stream, uint64_t to_sequence);

  /// Runs `fn` inside the next group commit, isolated in a nested
  /// transaction: if `fn` returns an error, only its writes are rolled back.
  /// `done` receives `fn`'s error or the commit's.
  void write(write_function fn, write_handler done);

  /// Blocking form of `write`. Not from the writer thread.
  error write(write_function fn);

  /// Like `write`, but `fn` runs after every append and deletion of its
  /// group commit, so it sees (through `read_all_in`) the events that
  /// commit writes; tail writes of one commit run in submission order.
  /// This is how an exactly-once projection handles events in the very
  /// commit that writes them. May also be called from a completion handler
  /// on the writer thread (it never blocks): the request then joins the
  /// next group commit. `done` receives `fn`'s error or the commit's.
  void write_after_appends(write_function fn, write_handler done);

  /// Runs `fn` in a read transaction and returns its error.
  error read(const read_function& fn) const;

  /// Returns the highest sequence of `stream`, 0 if it has none. Deleting
  /// events never lowers it.
  expected<uint64_t> highest_sequence(std::string_view stream) const;

  /// Returns the events of `stream` with `from <= sequence <= to`, oldest
  /// first, at most `max` of them, skipping deleted ones.
  /// Errors: `corrupt_record` naming stream, sequence and position;
  /// `storage_error`.
  expected<std::vector<event_envelope>> read_stream(std::string_view stream,
                                                    uint64_t from, uint64_t to,
                                                    uint64_t max) const;

  /// Returns up to `max` events with global position >= `from_position` in
  /// commit order. Errors: as for `read_stream`.
  expected<std::vector<event_envelope>> read_all(uint64_t from_position,
                                                 size_t max) const;

  /// `read_all` inside the write transaction `txn`: also sees what the
  /// transaction (and the group commit it belongs to) has written so far.
  /// Only from the write function `txn` was passed to. Errors: as for
  /// `read_stream`; a full map is reported to the writer, which retries.
  static expected<std::vector<event_envelope>> read_all_in(
      write_txn& txn, uint64_t from_position, size_t max);

  /// What the filtering `read_all_in` returns.
  struct filtered_events {
    /// The events of streams whose id starts with the prefix.
    std::vector<event_envelope> events;
    /// Events looked at, matching or not (at most `max`).
    size_t scanned = 0;
    /// Position of the last event looked at; 0 if none.
    uint64_t last_position = 0;
  };

  /// `read_all_in` that decodes only the events of streams whose id starts
  /// with `stream_prefix` (every record looked at is still verified, so a
  /// damaged one is an error, never skipped): for a projection of some
  /// streams that runs inside the group commit, where the others would
  /// cost a full decode each on the writer thread. Errors: as for
  /// `read_all_in`.
  static expected<filtered_events> read_all_in(write_txn& txn,
                                               uint64_t from_position,
                                               size_t max,
                                               std::string_view stream_prefix);

  /// Returns up to `max` events tagged `tag` with position >=
  /// `from_position`, in commit order. Errors: as for `read_stream`.
  expected<std::vector<event_envelope>> read_tag(std::string_view tag,
                                                 uint64_t from_position,
                                                 size_t max) const;

  /// Returns up to `max` stream heads with stream id > `after`, in
  /// byte order of the ids.
  expected<std::vector<stream_head>> list_streams(std::string_view after,
                                                  size_t max) const;

  /// Returns the head of `stream` (zeroes if it does not exist).
  expected<stream_head> head_of(std::string_view stream) const;

  // -- moving streams (docs/cluster.md, "Changing the members") -------------

  /// Returns everything this journal holds of `stream` (head, live events,
  /// snapshots), read in one transaction. Errors: `not_found` if the stream
  /// does not exist; as for `read_stream`.
  expected<stream_export> export_stream(std::string_view stream) const;

  /// Writes a stream exported from another journal: the same event ids,
  /// sequences, commit times, tags, metadata and payloads, with new global
  /// positions after the head (so projections here see the events as new),
  /// the same deletion mark, and the snapshots. If this journal has the
  /// stream from an earlier export already, only the newer events are
  /// written; so repeating an import changes nothing, an interrupted one
  /// is simply run again, and a newer export catches up. Blocking: not
  /// from the writer thread. Errors: `invalid_argument` (sequences not
  /// `deleted_to + 1 .. highest`, events of another stream),
  /// `version_conflict` (the stream here has other or newer events),
  /// `duplicate_event_id` (ids stored in another stream), `stream_moved`
  /// (it moved away from here before), and as for `append`.
  error import_stream(const stream_export& stream);

  /// After the new owner imported `stream`: marks it moved to member
  /// `destination`, deletes its events and snapshots and counts the release
  /// (`release_generation`), in one commit. Later appends to it fail with
  /// `stream_moved`; its highest sequence stays. Repeating it is harmless.
  /// Blocking: not from the writer thread. Errors: `not_found`, and as for
  /// `delete_events_to`.
  error release_stream(std::string stream, std::string destination);

  /// Returns the member `stream` moved to, or nothing.
  expected<std::optional<std::string>> moved_to(std::string_view stream) const;

  /// Returns how many streams were released from this journal. Read models
  /// built before a release may hold data of streams that left; projections
  /// rebuild when it grows (docs/projections.md).
  expected<uint64_t> release_generation() const;

  /// Returns the global position of the newest committed event. A read-only
  /// journal reads it from disk on each call, so it sees the commits of a
  /// writer in another process.
  uint64_t head_position() const noexcept;

  /// Registers `fn` to be told the new head position after every commit
  /// that wrote events; returns a token for `unsubscribe`. `fn` runs on the
  /// writer thread and must only post a notification.
  uint64_t subscribe(commit_listener fn);

  /// Removes a listener; blocks until it is no longer running.
  void unsubscribe(uint64_t token);

  /// Returns the sticky failure of the writer, or no error.
  error failure() const;

  /// Returns the configuration the journal was opened with.
  const journal_config& config() const noexcept;

  /// Returns the current size of the memory map in bytes.
  uint64_t map_size() const noexcept;

  /// Returns the on-disk format version of the directory (docs/format.md,
  /// 6): this build's, or 1 for a format 1 directory opened read-only (a
  /// writable open upgrades it).
  uint64_t format_version() const noexcept;

  /// Returns the writer's counters (a consistent-enough copy: each counter
  /// is read atomically, not all of them at one instant).
  journal_stats stats() const noexcept;

  /// The snapshot store in this data directory.
  snapshot_store& snapshots() noexcept;

  /// The projection offset store in this data directory.
  offset_store& offsets() noexcept;

  /// The dead letters of projections in this data directory.
  dead_letter_store& dead_letters() noexcept;

  /// Internal state, defined in the implementation.
  struct impl;

 private:
  friend class replica_log;
  friend class snapshot_store;
  // Appends to `stream` in `shard`'s log without asking the gate (the
  // epoch marker of replica_log::begin_epoch).
  void append_in_shard(std::string stream, std::vector<new_event> events,
                       uint32_t shard, append_handler done);
  // Stores `snap` (with retention `keep`) and enters it in `shard`'s log,
  // through the gate (snapshot_store::save).
  void append_snapshot(uint32_t shard, snapshot snap, uint64_t keep,
                       write_handler done);
  error import_events(const std::string& stream,
                      std::unique_ptr<import_info> info,
                      std::vector<new_event>& events);
  explicit journal(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

}  // namespace mnemo::persistence
